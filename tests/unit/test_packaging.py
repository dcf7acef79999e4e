"""Templates, inventories and playbooks ship inside the package: a plain (non-editable) install finds them."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_non_editable_install_finds_package_data(tmp_path):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--disable-pip-version-check", "--target", str(target), str(REPO)],
                   check=True, cwd=tmp_path, capture_output=True)
    probe = ("import orchestrator, orchestrator.core.render as r; "
             "print(orchestrator.__file__); "
             "print(r.render('local/sshd_config.j2', lab='x', node='n', address='1.2.3.4').splitlines()[2]); "
             "print(r.resource_text('orchestrator.inventories', 'local.yaml').count('cluster:')); "
             "print(r.resource_text('orchestrator.playbooks', 'README.md').startswith('# Lessons'))")
    out = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env={"PYTHONPATH": str(target)},
                         capture_output=True, text=True, check=True).stdout.splitlines()
    assert out[0].startswith(str(target))  # the installed copy, not the repository
    assert out[1:] == ["ListenAddress 1.2.3.4", "1", "True"]


def test_every_package_of_the_source_is_installed():
    """A folder of modules missing from pyproject's package list would be missing from a plain install."""
    import tomllib
    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(REPO).parts) for p in (REPO / "orchestrator").rglob("__init__.py")}
    assert found - listed == set()

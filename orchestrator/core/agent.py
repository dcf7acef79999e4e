"""The node agent as the controller sees it: the zipapp `lab deploy` installs on a node, where it is, and its
command lines. The only code that builds agent calls; pipeline, layers and verify all use it."""

from __future__ import annotations

import hashlib
import io
import sys
import zipfile
from functools import lru_cache
from importlib import resources
from pathlib import Path

from orchestrator.agent.contract import AGENT_FILE, agent_path
from orchestrator.core.script import quote_argv


PACKAGE = "labagent"  # the agent package's name inside the zipapp
ENTRY = f"import sys\nfrom {PACKAGE}.main import main\nsys.exit(main())\n"


@lru_cache(maxsize=1)
def agent_zipapp() -> bytes:
    """The agent package as one zipapp. Built the same way every time (sorted names, fixed timestamps), so
    its digest changes only when the code does and `lab deploy` reinstalls it only then."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        def add(name: str, text: str) -> None:
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, text)
        add("__main__.py", ENTRY)
        package = resources.files("orchestrator.agent")
        for name in sorted(p.name for p in package.iterdir() if p.name.endswith(".py") and p.name != "__main__.py"):
            add(f"{PACKAGE}/{name}", package.joinpath(name).read_text())
    return buffer.getvalue()


def agent_files() -> dict[str, tuple[bytes, str, str]]:
    """What the lab installs in its folder on every node: relative path -> (content, sha256, mode)."""
    data = agent_zipapp()
    return {AGENT_FILE: (data, hashlib.sha256(data).hexdigest(), "0755")}


def agent_argv(lab: str, *args: str) -> list[str]:
    """The agent's command line on a node, e.g. agent_argv("demo", "proxy-sync")."""
    return ["python3", agent_path(lab), *args]


def agent_command(lab: str, *args: str) -> str:
    """The same, quoted for a shell script."""
    return quote_argv(agent_argv(lab, *args))


def local_agent_argv(*args: str) -> list[str]:
    """The agent run on this machine from the source tree (the lab's outside host serves and probes with it)."""
    source = str(Path(__file__).resolve().parents[2])
    return [sys.executable, "-c", f"import sys; sys.path.insert(0, {source!r}); "
            "from orchestrator.agent.main import main; sys.exit(main())", *args]

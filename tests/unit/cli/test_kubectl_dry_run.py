"""`--dry-run=client -o json` of the lab's create commands against Debian's kubectl 1.20 (kubernetes-client,
unpacked into .venv by scripts/setup.sh), field by field. Both run offline; fields kubectl prints empty
(creationTimestamp: null, resources: {}, strategy: {}, status) carry nothing and are left out of the comparison."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
KUBECTL = REPO / ".venv" / "opt" / "kubectl-1.20" / "usr" / "bin" / "kubectl"

# where kubectl 1.20 itself is behind Kubernetes, the lab follows Kubernetes: the differences allowed, and why
OPAQUE = ".type: lab 'Opaque', kubectl None"  # 1.20 leaves a generic Secret's type out; the API server writes it
SERVICE_NAMESPACE = ".metadata.namespace: lab 'shop', kubectl None"  # 1.20's create service drops -n (fixed later)
CASES = [
    (["create", "deployment", "web", "--image=nginx:1.27", "--replicas=2", "--port=80"], []),
    (["create", "deployment", "tools", "--image=docker.io/nicolaka/netshoot:v0.13", "-n", "shop"], []),
    (["create", "service", "clusterip", "web", "--tcp=80:8080"], []),
    (["create", "service", "nodeport", "web", "--tcp=80:8080", "--node-port=30080"], []),
    (["create", "service", "loadbalancer", "web", "--tcp=443:8443", "-n", "shop"], [SERVICE_NAMESPACE]),
    (["create", "namespace", "shop"], []),
    (["create", "secret", "generic", "db", "--from-literal=password=s3cret", "--from-literal=user=admin"], [OPAQUE]),
    (["create", "secret", "generic", "app", "--from-env-file=app.env"], [OPAQUE]),
    (["create", "configmap", "site", "--from-literal=color=blue", "--from-file=site", "-n", "shop"], []),
    (["create", "configmap", "app", "--from-env-file=app.env"], []),
    (["create", "configmap", "page", "--from-file=home=site/index.html", "--from-file=site/logo.bin"], []),
]
FILES = {"site/index.html": b"<h1>shop</h1>\n", "site/logo.bin": bytes(range(250, 256)),
         "app.env": b"# settings\nCOLOR=blue\n\nSIZE=3\n"}  # the files the cases read, in their folder


def debian_has_kubernetes_client() -> bool:
    policy = subprocess.run(["apt-cache", "policy", "kubernetes-client"], capture_output=True, text=True).stdout
    return "Candidate:" in policy and "Candidate: (none)" not in policy


def significant(value):
    """`value` without the fields that carry nothing."""
    if isinstance(value, dict):
        kept = {k: significant(v) for k, v in value.items()
                if k != "status" and not (k == "creationTimestamp" and v is None)}
        return {k: v for k, v in kept.items() if v not in ({}, None)}
    if isinstance(value, list):
        return [significant(v) for v in value]
    return value


def differences(ours, theirs, path="") -> list[str]:
    if isinstance(ours, dict) and isinstance(theirs, dict):
        return [d for key in sorted(ours.keys() | theirs.keys())
                for d in differences(ours.get(key), theirs.get(key), f"{path}.{key}")]
    if isinstance(ours, list) and isinstance(theirs, list) and len(ours) == len(theirs):
        return [d for i, (a, b) in enumerate(zip(ours, theirs, strict=True)) for d in differences(a, b, f"{path}[{i}]")]
    return [] if ours == theirs else [f"{path}: lab {ours!r}, kubectl {theirs!r}"]


@pytest.fixture(scope="module")
def kubectl():
    if not KUBECTL.exists():
        if not debian_has_kubernetes_client():
            pytest.skip("this distribution has no kubernetes-client package to compare with")
        pytest.fail(f"{KUBECTL} is missing: scripts/setup.sh unpacks Debian's kubernetes-client there")
    return str(KUBECTL)


@pytest.mark.parametrize("args, allowed", CASES, ids=[" ".join(a[:3]) for a, _ in CASES])
def test_the_labs_dry_run_is_kubectls_field_by_field(kubectl, args, allowed, tmp_path):
    env = dict(os.environ, HOME=str(tmp_path), LAB_STATE_DIR=str(tmp_path / "state"))
    env.pop("KUBECONFIG", None)
    for name, content in FILES.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(content)
    dry = ["--dry-run=client", "-o", "json"]
    theirs = subprocess.run([kubectl, *args, *dry], capture_output=True, text=True, env=env, check=True,
                            cwd=tmp_path).stdout
    ours = subprocess.run([sys.executable, "-m", "orchestrator.cli", *args, *dry], capture_output=True, text=True,
                          env=env, check=True, cwd=tmp_path).stdout
    assert differences(significant(json.loads(ours)), significant(json.loads(theirs))) == allowed

"""kubectl's imperative commands with --dry-run=client: the YAML a student edits (no anchors, ever), and the
Secrets `lab create secret` makes; a file that cannot be read is one line naming the flag."""

from __future__ import annotations

import base64
import subprocess
import sys

import yaml

from tests.unit.layers.gateway.certs import self_signed


def lab(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "orchestrator.cli", *args], capture_output=True, text=True)


def test_a_dry_run_prints_yaml_without_anchors():
    proc = lab("create", "deploy", "web2", "--replicas", "2", "--dry-run=client", "-o", "yaml")
    assert proc.returncode == 0, proc.stderr
    assert "&id" not in proc.stdout and "*id" not in proc.stdout
    doc = yaml.safe_load(proc.stdout)
    assert doc["metadata"]["labels"] == doc["spec"]["selector"]["matchLabels"] == {"app": "web2"}


def test_create_secret_tls_and_generic_make_what_kubectl_makes(tmp_path):
    cert, key = self_signed("shop.example.com")
    (tmp_path / "tls.crt").write_text(cert)
    (tmp_path / "tls.key").write_text(key)
    proc = lab("create", "secret", "tls", "shop-tls", "--cert", str(tmp_path / "tls.crt"), "--key",
               str(tmp_path / "tls.key"), "--dry-run=client", "-o", "yaml")
    doc = yaml.safe_load(proc.stdout)
    assert (doc["kind"], doc["type"], doc["metadata"]["name"]) == ("Secret", "kubernetes.io/tls", "shop-tls")
    assert base64.b64decode(doc["data"]["tls.key"]).decode() == key
    proc = lab("create", "secret", "generic", "db", "--from-literal", "user=admin", "--from-file",
               f"ca={tmp_path / 'tls.crt'}", "--dry-run=client", "-o", "yaml")
    doc = yaml.safe_load(proc.stdout)
    assert doc["type"] == "Opaque" and base64.b64decode(doc["data"]["user"]) == b"admin"
    assert base64.b64decode(doc["data"]["ca"]).decode() == cert


def test_create_secret_tls_with_a_missing_file_is_one_line():
    proc = lab("create", "secret", "tls", "shop-tls", "--cert", "/nonexistent.crt", "--key", "/nonexistent.key",
               "--dry-run=client")
    assert proc.returncode != 0 and proc.stderr.count("\n") == 1
    assert "lab create secret tls shop-tls: --cert /nonexistent.crt: No such file or directory" in proc.stderr


def test_api_resources_lists_every_kind_of_the_registry():
    from orchestrator.kinds import KINDS
    proc = lab("api-resources")
    rows = [line.split() for line in proc.stdout.splitlines()]
    assert rows[0] == ["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"]
    assert {row[0] for row in rows[1:]} == set(KINDS)
    assert ["services", "svc", "v1", "true", "Service"] in rows


def test_create_namespace_writes_a_namespace():
    doc = yaml.safe_load(lab("create", "namespace", "shop", "--dry-run=client", "-o", "yaml").stdout)
    assert doc == {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}}


def test_explain_reads_the_schemas_the_lab_validates_with():
    proc = lab("explain", "networkpolicy.spec.ingress.ports")
    assert proc.returncode == 0, proc.stderr
    assert "FIELD: ports <[]NetworkPolicyPort>" in proc.stdout and "  endPort\t<integer>" in proc.stdout
    crd = lab("explain", "httproute.spec.rules.matches.path")  # a Gateway API CRD's schema
    assert "FIELD: path <Object>" in crd.stdout and "  type\t<string>" in crd.stdout
    containers = lab("explain", "pod.spec.containers")
    assert "FIELD: containers <[]Container>" in containers.stdout and "  name\t<string> -required-" in containers.stdout
    wrong = lab("explain", "pod.spec.nope")
    assert wrong.returncode != 0 and wrong.stderr.strip() == (
        'lab: error: field "nope" does not exist in pod.spec; see `lab explain pod.spec`')

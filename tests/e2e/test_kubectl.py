"""kubectl habits on the lab: get with short names, lists of kinds, all, label and field selectors and every
output; describe of each kind; exec into a pod by its name; a pod's log. On an emulated 2-node lab."""

import json
from pathlib import Path

import pytest
import yaml

from .conftest import running_lab
from .labtools import lab_cli

REPO = Path(__file__).resolve().parents[2]
PODS = """
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {team: shop}}
---
apiVersion: v1
kind: Pod
metadata: {name: front, namespace: shop, labels: {app: front, tier: web}}
spec: {nodeName: node1, containers: [{name: c, image: nginx, ports: [{name: http, containerPort: 80}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: back, namespace: shop, labels: {app: back, tier: api}}
spec: {nodeName: node2, containers: [{name: c, image: nginx, ports: [{containerPort: 80}]}]}
"""


@pytest.fixture(scope="module")
def kube(state_dir):
    with running_lab(state_dir, "k", "--nodes", "2") as lab:
        lab_cli("deploy", "-i", lab.inventory_path, check=True)
        lab_cli("apply", "-i", lab.inventory_path, "-f", str(REPO / "examples" / "nginx.yaml"), check=True)
        lab_cli("apply", "-i", lab.inventory_path, "-f", "-", input=PODS, check=True)
        yield lab


def lab(kube, command: str, *args: str, check: bool = True):
    return lab_cli(command, "-i", kube.inventory_path, *args, check=check)  # before any `--`


def column(text: str, name: str) -> list[str]:
    lines = text.splitlines()
    at = lines[0].split().index(name)
    return [line.split()[at] for line in lines[1:] if line.strip()]


def test_get_with_short_names_selectors_and_field_selectors(kube):
    assert column(lab(kube, "get", "po", "-n", "shop", "-l", "tier in (web,api),app!=back").stdout, "NAME") == ["front"]
    assert column(lab(kube, "get", "pods", "-A", "--field-selector", "spec.nodeName=node2", "-l", "tier").stdout,
                  "NAME") == ["back"]
    assert column(lab(kube, "get", "ns", "--show-labels").stdout, "NAME")[-1] == "shop"
    assert "team=shop" in lab(kube, "get", "ns", "shop", "--show-labels").stdout


def test_get_several_kinds_and_all(kube):
    out = lab(kube, "get", "deploy,svc").stdout
    assert "deployment.apps/nginx   3/3" in out and "service/nginx" in out
    everything = lab(kube, "get", "all", "-A").stdout
    assert "pod/front" in everything and "service/kube-dns" in everything and "deployment.apps/kube-dns" in everything


def test_every_output_format(kube):
    assert lab(kube, "get", "pods", "-n", "shop", "-o", "name").stdout.split() == ["pod/back", "pod/front"]
    doc = yaml.safe_load(lab(kube, "get", "pod", "front", "-n", "shop", "-o", "yaml").stdout)
    assert (doc["kind"], doc["metadata"]["labels"]["app"]) == ("Pod", "front")
    ips = lab(kube, "get", "pods", "-n", "shop", "-o", "jsonpath={.items[*].status.podIP}").stdout.split()
    listed = json.loads(lab(kube, "get", "pods", "-n", "shop", "-o", "json").stdout)["items"]
    assert ips == [p["status"]["podIP"] for p in listed] and len(ips) == 2


def test_describe_each_kind(kube):
    pod = lab(kube, "describe", "pod", "front", "-n", "shop").stdout
    assert "Node:              node1/" in pod and "Port:          80/TCP (http)" in pod
    assert "PodCIDR:" in lab(kube, "describe", "node", "node2").stdout
    assert "3 desired | 3 updated | 3 total | 3 available | 0 unavailable" in lab(kube, "describe", "deploy",
                                                                                    "nginx").stdout
    assert "team=shop" in lab(kube, "describe", "ns", "shop").stdout


def test_exec_finds_the_pods_node_and_logs_show_who_connected(kube):
    back = json.loads(lab(kube, "get", "pod", "back", "-n", "shop", "-o", "json").stdout)["status"]["podIP"]
    front = json.loads(lab(kube, "get", "pod", "front", "-n", "shop", "-o", "json").stdout)["status"]["podIP"]
    assert lab(kube, "exec", "front", "-n", "shop", "--", "curl", "-s", f"http://{back}/hostname").stdout == "back\n"
    log = lab(kube, "logs", "back", "-n", "shop").stdout
    assert f" {front}:" in log and "GET /hostname 200" in log


@pytest.mark.parametrize("args, message", [
    (("get", "pods", "nope"), 'lab: error: Error from server (NotFound): pods "nope" not found'),
    (("get", "widgets"), 'the server doesn\'t have a resource type "widgets"'),
    (("get", "pods", "-l", "app=("), "lab: error: -l app=(: cannot read the selector"),
    (("describe", "pod", "nope"), 'lab: error: Error from server (NotFound): pods "nope" not found in namespace'),
    (("logs", "nope"), 'lab: error: Error from server (NotFound): pods "nope" not found'),
])
def test_mistakes_get_kubectl_like_one_line_errors(kube, args, message):
    proc = lab(kube, *args, check=False)
    assert proc.returncode != 0 and message in proc.stderr and proc.stderr.count("\n") == 1

"""`lab trace --explain`: the path the rendered rules predict, from the objects alone (verify/paper_trace.py),
on both service backends: each endpoint with its chance, the rules that decided, NetworkPolicy's verdict."""

from ipaddress import IPv4Network as Net
from pathlib import Path

import pytest

from orchestrator.core import inventory
from orchestrator.core.objects import LabObjects, Pod
from orchestrator.kinds import load_text, plan
from orchestrator.layers.services.plan import AddressBook, service_record
from orchestrator.verify.kernel_trace import resolve
from orchestrator.verify.paper_trace import explain

WEB = {"web-0": ("10.244.0.5", "node1"), "web-1": ("10.244.1.5", "node2")}
DENY_WEB_1 = """apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-web-1, namespace: default}
spec: {podSelector: {matchLabels: {idx: "1"}}, policyTypes: [Ingress]}
"""


def lab(proxy_mode: str, policy: bool):
    inv = inventory.parse(f"cluster: {{name: demo, proxy_mode: {proxy_mode}}}\nnodes:\n"
                          "  - {name: node1, address: 198.18.0.11}\n  - {name: node2, address: 198.18.0.12}\n",
                          "demo.yaml", Path("."))
    pods = {f"default/{name}": Pod(name, "default", labels={"app": "web", "idx": name[-1]}, ip=ip, node=node)
            for name, (ip, node) in WEB.items()}
    pods["default/client"] = Pod("client", "default", labels={"app": "client"}, ip="10.244.0.9", node="node1")
    [svc] = load_text("apiVersion: v1\nkind: Service\nmetadata: {name: web}\n"
                      "spec: {selector: {app: web}, ports: [{port: 8080, targetPort: 80}]}\n", "web.yaml")
    objects = LabObjects(pods=pods, services={svc.key: service_record(svc, None, AddressBook({}, Net("10.96.0.0/12")),
                                                                       "now")},
                         subnets={"node1": "10.244.0.0/24", "node2": "10.244.1.0/24"})
    if policy:
        plan(inv.cluster, list(inv.nodes), objects, load_text(DENY_WEB_1, "deny.yaml"), "now")
    return inv, objects


def paper(inv, objects, src: str, dst: str, port: int) -> list[str]:
    return explain(inv, objects, resolve(src, inv, objects, "default", True),
                   resolve(dst, inv, objects, "default", False), port, "tcp")


@pytest.mark.parametrize("proxy_mode", ["iptables", "nftables"])
def test_a_service_packet_ends_at_each_endpoint_by_chance_and_policy_drops_one(proxy_mode):
    inv, objects = lab(proxy_mode, policy=True)
    lines = paper(inv, objects, "client", "svc/web", 8080)
    assert lines[0] == f"on paper (the rules the lab renders, {proxy_mode}):"
    cluster_ip = objects.services["default/web"].cluster_ip
    assert lines[1] == f"  enters node1 (PREROUTING): 10.244.0.9 -> {cluster_ip}:8080/TCP"
    endings = [i for i, line in enumerate(lines) if line.startswith("  50%")]
    assert [lines[i] for i in endings] == ["  50%: DNAT to 10.244.0.5:80", "  50%: DNAT to 10.244.1.5:80"]
    first, second = lines[endings[0]:endings[1]], lines[endings[1]:]
    decided = ("nat -A KUBE-SEP-" if proxy_mode == "iptables" else "lb-2: dnat ip to ")  # the DNAT, as rendered
    assert any(rule.strip().startswith(decided) for rule in first[1:]), first
    assert first[-1] == "      NetworkPolicy: let through (node1: not isolated)"  # web-0 is not isolated
    assert second[-1] == "      NetworkPolicy: dropped on node2 by lab-policy forward (default deny ingress)"


def test_without_the_policy_nothing_is_judged_and_a_nodes_own_packet_leaves_through_output():
    inv, objects = lab("nftables", policy=False)
    assert not any("NetworkPolicy" in line for line in paper(inv, objects, "client", "svc/web", 8080))
    lines = paper(inv, objects, "node/node2", "web-1", 80)
    assert lines[1:3] == ["  enters node2 (OUTPUT): 198.18.0.12 -> 10.244.1.5:80/TCP",
                          "  100%: on to 10.244.1.5:80"]

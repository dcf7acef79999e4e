"""lab trace's pure parts: the trace table it loads, and what it makes of `nft monitor trace` (recorded from a
lab whose x/a a default-deny policy isolates: y/a's SYN, sent twice, arriving over flannel.1)."""

from pathlib import Path

import pytest

from orchestrator.core import inventory
from orchestrator.core.errors import InputError
from orchestrator.core.objects import LabObjects, Pod
from orchestrator.verify.kernel_trace import decision, parse_trace, resolve, summary, trace_table, wiring

DENIED = (Path(__file__).resolve().parents[1] / "data" / "nft_trace_denied.txt").read_text()
INV = inventory.parse("""
cluster: {name: demo}
emulated: {}
nodes:
  - {name: node1, address: 198.18.0.11}
  - {name: node2, address: 198.18.0.12}
""", "demo.yaml", Path("."))
OBJECTS = LabObjects.from_json({
    "pods": {"x/a": {"namespace": "x", "name": "a", "ip": "10.244.0.3", "node": "node1", "labels": {}},
             "default/web": {"namespace": "default", "name": "web", "ip": "10.244.1.5", "node": "node2", "labels": {}}},
    "services": {"default/web": {"namespace": "default", "name": "web", "cluster_ip": "10.96.0.7"}},
    "endpoints": {"default/web": {"": [{"ip": "10.244.1.5", "port": 8080, "node": "node2", "pod": "web"}]}},
})


def test_the_trace_table_marks_only_new_packets_of_the_source_to_the_ports():
    text = trace_table("10.244.1.4", (80, 8080), "tcp")
    assert "type filter hook prerouting priority -350" in text and "type filter hook output priority -350" in text
    assert "ip saddr 10.244.1.4 meta l4proto tcp th dport { 80, 8080 } tcp flags syn meta nftrace set 1" in text
    assert "tcp flags" not in trace_table("10.244.1.4", (53,), "udp")


def test_the_hops_the_rule_that_dropped_and_the_policy_it_names():
    hops = parse_trace("node1", DENIED)
    assert {h.table for h in hops} == {"nat", "lab-policy"}  # the trace table's own lines are left out
    assert len({h.packet for h in hops}) == 2  # the SYN and its retransmission
    assert decision(hops) == "DROPPED on node1 by lab-policy ingress (default deny ingress)"
    lines = summary(hops)
    assert lines[0] == "node1:" and lines[1].endswith("in flannel.1, 10.244.1.4 -> 10.244.0.3:80")
    assert any("nat PREROUTING" in line and "jump KUBE-SERVICES" in line for line in lines)
    assert decision([]) == "no packet seen"


def test_ends_are_pods_services_nodes_the_outside_or_addresses():
    assert resolve("x/a", INV, OBJECTS, "default", True).source == "pod:x/a"
    assert resolve("a", INV, OBJECTS, "x", True).ip == "10.244.0.3"
    service = resolve("svc/web", INV, OBJECTS, "default", False)
    assert (service.ip, service.ports) == ("10.96.0.7", (8080,))  # the port after DNAT is traced too
    assert resolve("node/node2", INV, OBJECTS, "default", True).source == "node:node2"
    assert resolve("outside", INV, OBJECTS, "default", True).ip == "203.0.113.10"
    assert resolve("10.1.2.3", INV, OBJECTS, "default", False).ip == "10.1.2.3"
    with pytest.raises(InputError, match='pods "nope" not found in namespace \'default\''):
        resolve("nope", INV, OBJECTS, "default", True)
    with pytest.raises(InputError, match="a Service is no source"):
        resolve("svc/web", INV, OBJECTS, "default", True)


def test_a_pod_end_is_its_eth0_its_veth_and_the_bridge_in_the_packets_direction():
    pod = Pod(namespace="default", name="client", ip="10.244.1.4", node="node2")
    link = ("7: veth5d3f1a2b@if2: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1450 qdisc noqueue master cni0 state UP "
            "mode DEFAULT group default \\    link/ether 6e:1f:00:aa:bb:cc brd ff:ff:ff:ff:ff:ff link-netns demo-x")
    assert wiring(pod, link, leaving=True) == \
        "from default/client eth0 (10.244.1.4) -> veth5d3f1a2b on node2 -> cni0"
    assert wiring(pod, link, leaving=False) == \
        "to cni0 on node2 -> veth5d3f1a2b -> default/client eth0 (10.244.1.4)"
    assert wiring(pod, "", leaving=True) == "default/client: eth0 (10.244.1.4) on node2"

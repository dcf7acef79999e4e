"""An underlay with several subnets: the inventory's subnets, flannel's rules over them (host-gw refused
across subnets, vxlan DirectRouting), the emulated lab's segments and router, and `lab graph`."""

from ipaddress import IPv4Network as Net
from pathlib import Path

import pytest

from orchestrator.cli.graph import topology_dot
from orchestrator.core import inventory
from orchestrator.core.errors import InputError
from orchestrator.core.model import Emulated, Inventory
from orchestrator.core.objects import LabObjects, Pod
from orchestrator.layers.nodes.facts import NodeFacts
from orchestrator.layers.overlay.plan import plan_overlay, vtep_mac
from orchestrator.providers.emulated_plan import infra_commands, layout, node_link_commands, underlay_neighbour_commands
from orchestrator.providers.local import check_subnets_fit_backend, same_subnets
from orchestrator.providers.qemu import seed_files, tap_commands
from orchestrator.verify.checks import plan_checks


RACKS = """
cluster: {{name: demo, overlay: {overlay}}}
subnets:
  - {{name: rack1, cidr: 192.168.1.0/24}}
  - {{name: rack2, cidr: 192.168.2.0/24}}
nodes:
  - {{name: node1, address: 192.168.1.11}}
  - {{name: node2, address: 192.168.2.11, subnet: rack2}}
  - {{name: node3, address: 192.168.1.12, subnet: {node3_subnet}}}
"""
PODS = {"node1": Net("10.244.0.0/24"), "node2": Net("10.244.1.0/24"), "node3": Net("10.244.2.0/24")}
FACTS = {name: NodeFacts("eth0", 1500) for name in PODS}


def racks(overlay: str = "{backend: vxlan}", node3_subnet: str = "rack1") -> Inventory:
    return inventory.parse(RACKS.format(overlay=overlay, node3_subnet=node3_subnet), "racks.yaml", Path("."))


def test_nodes_are_on_the_subnet_they_name_or_the_one_holding_their_address():
    inv = racks()
    assert [(n.name, n.subnet) for n in inv.nodes] == [("node1", "rack1"), ("node2", "rack2"), ("node3", "rack1")]
    assert inv.same_segment(inv.node("node1"), inv.node("node3"))
    assert not inv.same_segment(inv.node("node1"), inv.node("node2"))
    assert inv.node("node2").labels["topology.kubernetes.io/zone"] == "rack2"  # for nodeSelector and `-l`
    text = inventory.dump(inv, Path("."))
    assert "labels" not in text  # the zone label comes from the subnet again
    again = inventory.parse(text, "again.yaml", Path("."))
    assert again.subnets == inv.subnets and [n.subnet for n in again.nodes] == ["rack1", "rack2", "rack1"]
    assert again.node("node2").labels == inv.node("node2").labels


@pytest.mark.parametrize("overlay, node3_subnet, field, words", [
    ("{backend: vxlan}", "rack3", "nodes[2].subnet", "no subnet named 'rack3' (did you mean 'rack2'?); name one that "
                                                    "exists; subnets are: rack1, rack2"),
    ("{backend: vxlan}", "rack2", "nodes[2].address", "192.168.1.12 is not in its subnet rack2 192.168.2.0/24"),
    ("{backend: host-gw}", "rack1", "cluster.overlay.backend",
     "host-gw needs every node on one L2 segment, but the nodes are on 2 subnets: rack1 (node1 node3), rack2 (node2); "
     "use `backend: vxlan` (with `directRouting: true`"),
    ("{backend: host-gw, directRouting: true}", "rack1", "cluster.overlay.directRouting",
     "is an option of the vxlan backend, not of host-gw"),
])
def test_bad_subnets_get_one_line_naming_file_field_and_fix(overlay, node3_subnet, field, words):
    with pytest.raises(InputError) as caught:
        racks(overlay, node3_subnet)
    message = str(caught.value)
    assert "\n" not in message and message.startswith(f"racks.yaml: {field}: "), message
    assert words in message, message


def test_a_subnet_named_without_any_declared_says_how_to_declare_them():
    with pytest.raises(InputError, match=r"^x.yaml: nodes\[0\].subnet: no subnet named 'rack1'; name one that exists; "
                                         r"the inventory declares no subnets \(add them under `subnets:`"):
        inventory.parse("cluster: {name: demo}\nnodes: [{name: n1, address: 10.0.0.1, subnet: rack1}]", "x.yaml",
                        Path("."))


def test_host_gw_is_refused_before_an_emulated_lab_with_subnets_is_made():
    with pytest.raises(InputError, match=r"^x.yaml: cluster.overlay.backend: host-gw needs every node on one L2 "
                                         r"segment, but emulated.subnets is 2; use `backend: vxlan`"):
        inventory.parse("cluster: {name: demo, overlay: {backend: host-gw}}\nemulated: {subnets: 2}", "x.yaml",
                        Path("."))
    hostgw = inventory.parse("cluster: {name: demo, overlay: {backend: host-gw}}\nemulated: {}", "h.yaml", Path("."))
    with pytest.raises(InputError, match=r"^--subnets 2: h.yaml: cluster.overlay.backend is host-gw, which needs"):
        check_subnets_fit_backend(hostgw, 2)
    check_subnets_fit_backend(hostgw, 1)


def test_a_running_lab_keeps_its_number_of_subnets():
    record = {"nodes": {"node1": {}}, "subnets": 2}
    assert same_subnets("demo", record, 1, explicit=False) == 2  # `lab up` again without --subnets
    assert same_subnets("demo", {}, 3, explicit=True) == 3  # a new lab takes what it is given
    with pytest.raises(InputError, match=r"^lab demo is up with 2 underlay subnet\(s\), not 3; give --subnets 2, or"):
        same_subnets("demo", record, 3, explicit=True)


def routes(inv: Inventory, node: str) -> list[tuple[str, str, str]]:
    overlay = plan_overlay(inv, inv.node(node), PODS, FACTS, 1450)
    return [(str(r.dst), str(r.via), r.dev) for r in overlay.routes]


def test_direct_routing_routes_same_subnet_peers_via_the_node_and_vxlan_to_the_others():
    inv = racks("{backend: vxlan, directRouting: true}")
    assert routes(inv, "node1") == [("10.244.1.0/24", "10.244.1.0", "flannel.1"),  # node2, rack2: VXLAN
                                    ("10.244.2.0/24", "192.168.1.12", "eth0")]  # node3, rack1: plain route
    overlay = plan_overlay(inv, inv.node("node1"), PODS, FACTS, 1450)
    assert [str(n.address) for n in overlay.neighbours] == ["10.244.1.0"]
    assert [(f.mac, str(f.dst)) for f in overlay.fdb] == [(vtep_mac("demo", "node2"), "192.168.2.11")]
    assert overlay.vtep is not None  # the device stays, for the peers across subnets
    assert routes(inv, "node2") == [("10.244.0.0/24", "10.244.0.0", "flannel.1"),
                                    ("10.244.2.0/24", "10.244.2.0", "flannel.1")]


def test_without_direct_routing_every_peer_is_vxlan():
    assert [via for _, via, _ in routes(racks(), "node1")] == ["10.244.1.0", "10.244.2.0"]


LAY = layout("demo", Emulated(subnets=2), 5, Net("198.18.4.0/24"))


def test_nodes_take_turns_over_the_subnets_and_keep_their_addresses_as_the_lab_grows():
    assert [(n.name, str(n.address), LAY.segment_of(n).name) for n in LAY.nodes] == [
        ("node1", "198.18.4.11", "rack1"), ("node2", "198.18.4.139", "rack2"), ("node3", "198.18.4.12", "rack1"),
        ("node4", "198.18.4.140", "rack2"), ("node5", "198.18.4.13", "rack1")]
    assert [(s.name, str(s.cidr)) for s in LAY.subnets] == [("rack1", "198.18.4.0/25"), ("rack2", "198.18.4.128/25")]
    assert layout("demo", Emulated(subnets=2), 6, Net("198.18.4.0/24")).nodes[:5] == LAY.nodes
    assert layout("demo", Emulated(), 3, Net("198.18.4.0/24")).subnets == ()  # one subnet: the inventory as before
    with pytest.raises(InputError, match=r"^--nodes: 230 nodes do not fit 2 subnets of the /24 underlay; use at most "):
        layout("demo", Emulated(subnets=2), 230, Net("198.18.4.0/24"))


def batch(commands, namespace) -> list[str]:
    target = ("ip", "-n", namespace, "-batch", "-") if namespace else ("ip", "-batch", "-")
    return [line for c in commands if c.argv == target for line in c.stdin.splitlines()]


def test_each_subnet_is_its_own_bridge_and_the_router_routes_between_them():
    infra = infra_commands(LAY)
    underlay = batch(infra + node_link_commands(LAY, LAY.nodes), "demo-underlay")
    assert {"link add br0 mtu 1500 type bridge", "link add br1 mtu 1500 type bridge", "link set router master br0 up",
            "link set router_s2 master br1 up", "link set node1 master br0 up", "link set node2 master br1 up",
            "link set host master br0 up"} <= set(underlay)
    router = batch(infra, "demo-router")
    assert "addr add 198.18.4.126/25 dev eth0" in router and "addr add 198.18.4.254/25 dev eth2" in router
    assert not any(line.startswith("route add") for line in router)  # connected routes only, no default route
    sysctl = next(c.argv for c in infra if "sysctl" in c.argv)
    assert "net.ipv4.conf.eth0.proxy_arp=1" in sysctl  # the root namespace's /24 reaches rack2 through it
    assert batch(node_link_commands(LAY, LAY.nodes), "demo-node2") == [
        "link set lo up", "addr add 198.18.4.139/25 dev eth0", "link set eth0 up", "route add default via 198.18.4.254"]
    root = batch(infra, None)
    assert [line for line in root if line.startswith("link add") and " netns " not in line.split(" type ")[0]] == [
        "link add demo-host mtu 1500 type veth peer name host netns demo-underlay"]


def test_pinned_neighbours_cover_only_the_nodes_own_segment_and_its_gateway():
    commands = underlay_neighbour_commands(LAY, {"eth0": "02:00:00:00:00:fe", "eth2": "02:00:00:00:00:fd"},
                                           "02:00:00:00:00:01")
    node2 = batch(commands, "demo-node2")
    assert node2 == ["neigh flush dev eth0 nud permanent",
                     f"neigh replace 198.18.4.140 lladdr {LAY.nodes[3].mac} dev eth0 nud permanent",
                     "neigh replace 198.18.4.254 lladdr 02:00:00:00:00:fd dev eth0 nud permanent"]
    node1 = batch(commands, "demo-node1")
    assert [line.split()[2] for line in node1[1:]] == ["198.18.4.12", "198.18.4.13", "198.18.4.126", "198.18.4.1"]
    router = batch(commands, "demo-router")
    assert "neigh flush dev eth2 nud permanent" in router
    assert f"neigh replace 198.18.4.139 lladdr {LAY.nodes[1].mac} dev eth2 nud permanent" in router
    assert not any("198.18.4.139" in line and "dev eth0" in line for line in router)


def test_a_vm_in_the_second_subnet_gets_its_tap_there_and_its_gateway():
    vms = layout("vms", Emulated(provider="qemu", subnets=2), 2, Net("198.18.3.0/24"))
    [cmd] = tap_commands(vms, vms.nodes)
    assert "link set node2 mtu 1500 master br1 up" in cmd.stdin.splitlines()
    network = seed_files(vms, vms.nodes[1], "K", "P", "A")["/etc/systemd/network/10-cluster-lab.network"][0]
    assert "Address=198.18.3.139/25\nGateway=198.18.3.254\n" in network


def test_graph_draws_each_subnet_and_says_which_pairs_are_routed_and_which_tunnelled():
    dot = topology_dot(racks("{backend: vxlan, directRouting: true}"), LabObjects())
    assert 'subgraph "cluster_subnet_rack1"' in dot and 'label="subnet rack2\\n192.168.2.0/24 (one L2 segment)"' in dot
    assert '"node1/vtep" -> "node3/vtep" [dir=both, color="#4f8a3a", penwidth=2, label="route"]' in dot
    assert '"node1/vtep" -> "node2/vtep" [dir=both, color="#d08a1f", penwidth=2, label="VXLAN"]' in dot


def test_verify_blames_vxlan_only_for_pairs_that_use_it():
    pods = [Pod(name=f"web-{n}", namespace="default", labels={"app": "web"}, node=n, ip=f"10.244.{i}.2", tcp=[80])
            for i, n in enumerate(("node1", "node2", "node3"))]
    objects = LabObjects(subnets={n: str(net) for n, net in PODS.items()}, pods={p.key: p for p in pods})
    layers = {(c.source, c.col): c.layer for c in plan_checks(racks("{backend: vxlan, directRouting: true}"), objects)
              if c.family == "pod-to-pod" and c.target["proto"] == "tcp"}
    assert "node routes (direct, one subnet);" in layers[("pod:default/web-node1", "web-node3")]
    assert "node routes, VXLAN neighbour and FDB entries;" in layers[("pod:default/web-node1", "web-node2")]

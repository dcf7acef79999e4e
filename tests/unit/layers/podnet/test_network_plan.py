"""The pod network plan and its diff against real node states (captured from emulated nodes of lab
"demo" into tests/unit/data: one before `lab deploy`, one after it and `lab apply` of the talk's nginx)."""

import json
from ipaddress import IPv4Network as Net
from pathlib import Path

import pytest

from orchestrator.core import inventory
from orchestrator.layers.nodes.facts import NodeFacts, parse_facts
from orchestrator.layers.overlay.plan import vtep_mac
from orchestrator.layers.podnet import changes as diff
from orchestrator.layers.podnet.plan import masquerade_rules, plan_node


DATA = Path(__file__).resolve().parents[2] / "data"
SUBNETS = {"node1": Net("10.244.0.0/24"), "node2": Net("10.244.1.0/24"), "node3": Net("10.244.2.0/24")}
FACTS = {name: NodeFacts("eth0", 1500) for name in SUBNETS}


def demo(backend="vxlan"):
    return inventory.parse(f"""
cluster: {{name: demo, overlay: {{backend: {backend}}}}}
nodes:
  - {{name: node1, address: 198.18.0.11}}
  - {{name: node2, address: 198.18.0.12}}
  - {{name: node3, address: 198.18.0.13}}
""", "demo.yaml", Path("."))


def state(name):
    return parse_facts((DATA / f"facts_node1_{name}.txt").read_text())


def test_facts_are_parsed():
    fresh, deployed = state("fresh"), state("deployed")
    assert fresh.hostname == "node1" and fresh.missing() == []
    assert fresh.cni_plugins["bridge"].endswith("/bridge") and fresh.cni_dir in ("/usr/lib/cni", "/opt/cni/bin")
    assert fresh.device_with_address("198.18.0.11")["ifname"] == "eth0"
    assert fresh.chain("nat", "LAB-MASQ") is None
    assert deployed.chain("nat", "LAB-MASQ") == list(
        masquerade_rules(demo().cluster, SUBNETS["node1"])[("nat", "LAB-MASQ")])
    assert deployed.link("flannel.1")["address"] == vtep_mac("demo", "node1")
    assert set(deployed.pods.values()) == {"running"} and "agent.pyz" in deployed.files


def test_conflist_is_the_bridge_plugin_without_masquerade():
    net = plan_node(demo(), demo().node("node2"), SUBNETS, FACTS)
    conf = json.loads(net.conflist)
    assert (conf["cniVersion"], conf["name"]) == ("1.0.0", "demo")
    bridge = conf["plugins"][0]
    assert (bridge["ipMasq"], bridge["isGateway"], bridge["hairpinMode"], bridge["mtu"]) == (False, True, True, 1450)
    assert bridge["ipam"]["ranges"] == [[{"subnet": "10.244.1.0/24", "gateway": "10.244.1.1"}]]
    assert conf["plugins"][1]["capabilities"] == {"portMappings": True}


def test_vxlan_peers_follow_flannel():
    net = plan_node(demo(), demo().node("node1"), SUBNETS, FACTS)
    vtep = net.overlay.vtep
    assert (vtep.device, vtep.vni, vtep.port, str(vtep.address), vtep.mtu) == ("flannel.1", 1, 8472, "10.244.0.0", 1450)
    assert [(str(r.dst), str(r.via), r.dev, r.onlink) for r in net.overlay.routes] == [
        ("10.244.1.0/24", "10.244.1.0", "flannel.1", True), ("10.244.2.0/24", "10.244.2.0", "flannel.1", True)]
    assert [(str(n.address), n.mac) for n in net.overlay.neighbours] == [
        ("10.244.1.0", vtep_mac("demo", "node2")), ("10.244.2.0", vtep_mac("demo", "node3"))]
    assert sorted((f.mac, str(f.dst)) for f in net.overlay.fdb) == sorted([
        (vtep_mac("demo", "node2"), "198.18.0.12"), (vtep_mac("demo", "node3"), "198.18.0.13")])


def test_host_gw_is_plain_routes_via_the_node_addresses():
    net = plan_node(demo("host-gw"), demo("host-gw").node("node1"), SUBNETS, FACTS)
    assert net.overlay.vtep is None and net.overlay.neighbours == () and net.overlay.fdb == ()
    assert [(str(r.dst), str(r.via), r.dev, r.onlink) for r in net.overlay.routes] == [
        ("10.244.1.0/24", "198.18.0.12", "eth0", False), ("10.244.2.0/24", "198.18.0.13", "eth0", False)]
    assert net.pod_mtu == 1500


def test_masquerade_only_what_leaves_the_cluster():
    rules = masquerade_rules(demo().cluster, SUBNETS["node1"])[("nat", "LAB-MASQ")]
    assert rules[0] == ('-A LAB-MASQ -s 10.244.0.0/16 -d 10.244.0.0/16 -m comment --comment "pod to pod: no NAT" '
                        '-j RETURN')
    assert rules[2] == ('-A LAB-MASQ -s 10.244.0.0/16 -m comment --comment "pod to outside: SNAT to the node" '
                        '-j MASQUERADE --random-fully')


def test_fresh_node_needs_everything_in_order():
    net = plan_node(demo(), demo().node("node1"), SUBNETS, FACTS)
    whats = [c.what for c in diff.network_changes(net, state("fresh"), demo().cluster)]
    assert whats == [
        "set net.ipv4.ip_forward=1 (was 0)",
        "write CNI config /etc/cni/net.d/10-demo.conflist (subnet 10.244.0.0/24, MTU 1450)",
        "create VXLAN device flannel.1 (VNI 1, UDP 8472, MTU 1450, 10.244.0.0/32, via eth0)",
        f"neighbour 10.244.1.0 -> {vtep_mac('demo', 'node2')} on flannel.1",
        f"neighbour 10.244.2.0 -> {vtep_mac('demo', 'node3')} on flannel.1",
        *sorted([f"FDB {vtep_mac('demo', 'node2')} -> 198.18.0.12 on flannel.1",
                 f"FDB {vtep_mac('demo', 'node3')} -> 198.18.0.13 on flannel.1"]),
        "route 10.244.1.0/24 via 10.244.1.0 dev flannel.1 onlink",
        "route 10.244.2.0/24 via 10.244.2.0 dev flannel.1 onlink",
        "load rules: LAB-MASQ, LAB-FORWARD, jump POSTROUTING -> LAB-MASQ, jump FORWARD -> LAB-FORWARD",
    ]


def test_deployed_node_needs_nothing():
    net = plan_node(demo(), demo().node("node1"), SUBNETS, FACTS)
    assert diff.network_changes(net, state("deployed"), demo().cluster) == []


def test_a_removed_node_leaves_no_trace_on_its_peers():
    two = {k: v for k, v in SUBNETS.items() if k != "node3"}
    inv = inventory.parse("""
cluster: {name: demo}
nodes: [{name: node1, address: 198.18.0.11}, {name: node2, address: 198.18.0.12}]
""", "demo.yaml", Path("."))
    net = plan_node(inv, inv.node("node1"), two, FACTS)
    whats = [c.what for c in diff.network_changes(net, state("deployed"), inv.cluster)]
    assert whats == ["remove neighbour 10.244.2.0 on flannel.1",
                     f"remove FDB {vtep_mac('demo', 'node3')} -> 198.18.0.13 on flannel.1",
                     "remove route 10.244.2.0/24 (no such node any more)"]


def test_changing_the_vni_recreates_the_device():
    inv = inventory.parse("""
cluster: {name: demo, overlay: {vni: 2}}
nodes: [{name: node1, address: 198.18.0.11}, {name: node2, address: 198.18.0.12}, {name: node3, address: 198.18.0.13}]
""", "demo.yaml", Path("."))
    whats = [c.what for c in diff.network_changes(plan_node(inv, inv.node("node1"), SUBNETS, FACTS),
                                                  state("deployed"), inv.cluster)]
    assert whats[:2] == ["remove VXLAN device flannel.1", "create VXLAN device flannel.2 (VNI 2, UDP 8472, "
                         "MTU 1450, 10.244.0.0/32, via eth0)"]


def test_teardown_of_a_deployed_node():
    whats = [c.what for c in diff.teardown(state("deployed"), demo().cluster, None)]
    assert whats == [
        "remove flannel.1 (with its routes, neighbours and FDB entries)",
        "remove cni0 (with its routes)",
        "remove chains LAB-MASQ (nat)",
        "remove chains LAB-FORWARD (filter)",
        "remove /etc/cni/net.d/10-demo.conflist",
        "restore sysctls and remove /var/lib/cluster-lab/demo",
    ]
    assert diff.teardown(state("fresh"), demo().cluster, None) == []


def test_rendered_script_names_the_failing_change():
    script = diff.render_script([diff.Change("route x", ("ip route replace 10.0.0.0/24 via 10.0.0.1",))])
    assert script.splitlines() == [
        "set -eu -o pipefail",
        "trap 'echo \"lab: failed at: $LAB_STEP: $BASH_COMMAND\" >&2' ERR",
        "LAB_STEP='route x'",
        "ip route replace 10.0.0.0/24 via 10.0.0.1",
    ]


@pytest.mark.parametrize("text", ["it's", "a\nb", "$(reboot)", '{"json": "x"}'])
def test_written_files_are_quoted(text, tmp_path):
    import subprocess
    lines = diff.write_file(str(tmp_path / "f"), text)
    subprocess.run(["bash", "-c", "\n".join(lines)], check=True)
    assert (tmp_path / "f").read_text() == text


def test_chains_go_in_one_rule_load_with_their_jumps_first():
    removal = next(c for c in diff.teardown(state("deployed"), demo().cluster, None) if c.what.endswith("(nat)"))
    (script,) = removal.lines
    assert script.splitlines() == [
        "iptables-restore --noflush <<'LAB_RULES'", "*nat",
        '-D POSTROUTING -m comment --comment "cluster-lab masquerade" -j LAB-MASQ',
        ":LAB-MASQ - [0:0]", "-X LAB-MASQ", "COMMIT", "LAB_RULES"]

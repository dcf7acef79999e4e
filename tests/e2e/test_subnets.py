"""An underlay with several subnets, end to end on emulated nodes: `lab up --nodes 4 --subnets 2` puts node1
and node3 on rack1, node2 and node4 on rack2, each its own bridge, routed by the lab's router. Pods reach
each other across subnets over VXLAN without NAT; with directRouting, same-subnet peers are plain routes;
host-gw and a subnet that does not exist are refused before any node changes. Tests run in file order."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from .conftest import running_lab
from .labtools import copy_inventory, lab_cli, namespaces_of, node_snapshot, sh, unique_lab_name
from .test_pod_network import apply, pods, probe_from

WEB = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 4
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: nginx}]
"""


@pytest.fixture(scope="module")
def racks(state_dir, tmp_path_factory):
    """4 emulated nodes over 2 subnets, the pod network deployed (vxlan) and one `web` pod per node."""
    with running_lab(state_dir, "sn", "--nodes", "4", "--subnets", "2") as lab:
        lab.workdir = tmp_path_factory.mktemp("subnets")
        lab_cli("deploy", "-i", lab.inventory_path, check=True)
        apply(lab, WEB)
        yield lab


def route_to(lab, node: str, address: str) -> str:
    return lab.transport.run(node, ["ip", "route", "get", address]).stdout.split("\n")[0]


def every_pair_failures(lab) -> list[str]:
    """Every pod reaches every pod over HTTP, seen with its own pod IP (no NAT)."""
    everyone = pods(lab, "web")
    assert sorted(p["spec"]["nodeName"] for p in everyone) == ["node1", "node2", "node3", "node4"]
    failures = []
    for src in everyone:
        targets = [{"proto": "tcp", "host": dst["status"]["podIP"], "port": 80, "path": "/clientip"}
                   for dst in everyone]
        for dst, seen in zip(everyone, probe_from(lab, src, targets), strict=True):
            pair = f"{src['spec']['nodeName']} -> {dst['spec']['nodeName']}"
            if not seen["ok"]:
                failures.append(f"{pair}: {seen.get('error')}")
            elif seen["reply"] != src["status"]["podIP"]:
                failures.append(f"{pair}: seen as {seen['reply']}, not {src['status']['podIP']} (NAT)")
    return failures


def test_nodes_take_turns_over_two_subnets_each_its_own_l2_segment(racks):
    inv = racks.inventory
    assert [(n.name, n.subnet) for n in inv.nodes] == [("node1", "rack1"), ("node2", "rack2"), ("node3", "rack1"),
                                                       ("node4", "rack2")]
    for bridge, members in (("br0", {"host", "router", "node1", "node3"}), ("br1", {"router_s2", "node2", "node4"})):
        ports = {line.split(": ")[1].split("@")[0] for line in
                 sh("ip", "-n", f"{racks.name}-underlay", "-o", "link", "show", "master", bridge).splitlines()}
        assert ports == members
    node = {n.name: str(n.address) for n in inv.nodes}
    assert "via" not in route_to(racks, "node1", node["node3"])  # on-link: the same segment
    assert f"via {inv.subnets[0].cidr[-2]}" in route_to(racks, "node1", node["node2"])  # through the router
    pinned = racks.transport.run("node1", ["ip", "neigh", "show", "nud", "permanent"]).stdout
    assert node["node3"] in pinned and node["node2"] not in pinned and node["node4"] not in pinned


def test_up_again_changes_nothing_and_keeps_the_subnets(racks):
    again = lab_cli("up", "--name", racks.name, "--nodes", "4", check=True)
    assert f"lab {racks.name} is already up with 4 nodes: no changes" in again.stderr
    other = lab_cli("up", "--name", racks.name, "--subnets", "3")
    assert other.returncode != 0 and other.stderr.strip() == (
        f"lab: error: lab {racks.name} is up with 2 underlay subnet(s), not 3; give --subnets 2, or remove the lab "
        f"with `lab down --name {racks.name}` and bring it up again")
    hostgw = racks.workdir / "hostgw-up.yaml"  # an inventory that says nothing of subnets: the lab keeps its 2
    hostgw.write_text("cluster: {name: demo, overlay: {backend: host-gw}}\nemulated: {nodes: 4}\n")
    written = Path(racks.inventory_path).read_text()
    refused = lab_cli("up", "--name", racks.name, "-i", str(hostgw))
    assert refused.returncode != 0 and refused.stderr.strip().startswith(
        f"lab: error: --subnets 2: {hostgw}: cluster.overlay.backend is host-gw, which needs every node on one L2 ")
    assert Path(racks.inventory_path).read_text() == written


def test_the_root_namespace_keeps_its_one_link_and_route(racks):
    routes = [line for line in sh("ip", "-4", "route").splitlines() if f"{racks.name}-host" in line]
    assert len(routes) == 1 and routes[0].startswith(f"{racks.inventory.subnets[0].cidr.supernet().network_address}/24")
    assert [link.name for link in Path("/sys/class/net").iterdir() if link.name.startswith(f"{racks.name}-")] == [
        f"{racks.name}-host"]


def test_every_pod_reaches_every_pod_without_nat_across_subnets_over_vxlan(racks):
    assert every_pair_failures(racks) == []
    pod2 = next(p for p in pods(racks, "web") if p["spec"]["nodeName"] == "node2")
    assert "dev flannel.1" in route_to(racks, "node1", pod2["status"]["podIP"])


def test_direct_routing_uses_plain_routes_inside_a_subnet_and_vxlan_across(racks):
    direct = copy_inventory(racks, racks.workdir, cluster={"overlay": {"directRouting": True}})
    lab_cli("deploy", "-i", str(direct), check=True)
    on = {p["spec"]["nodeName"]: p["status"]["podIP"] for p in pods(racks, "web")}
    node3 = str(racks.inventory.node("node3").address)
    assert f"via {node3} dev eth0" in route_to(racks, "node1", on["node3"])
    assert "dev flannel.1" in route_to(racks, "node1", on["node2"])
    fdb = racks.transport.run("node1", ["bridge", "fdb", "show", "dev", "flannel.1"]).stdout
    assert node3 not in fdb and str(racks.inventory.node("node2").address) in fdb
    assert every_pair_failures(racks) == []
    again = lab_cli("deploy", "-i", str(direct), check=True)
    assert again.stdout.strip().endswith("no changes")
    lab_cli("deploy", "-i", racks.inventory_path, check=True)  # back to plain vxlan


@pytest.mark.parametrize("change, words", [
    ({"cluster": {"overlay": {"backend": "host-gw"}}},
     ": cluster.overlay.backend: host-gw needs every node on one L2 segment, but the nodes are on 2 subnets: "
     "rack1 (node1 node3), rack2 (node2 node4); use `backend: vxlan`"),
    ({"node2_subnet": "rack9"}, ": nodes[1].subnet: no subnet named 'rack9' (did you mean 'rack2'?); name one that "
                                "exists; subnets are: rack1, rack2"),
])
def test_bad_input_is_one_line_and_changes_no_node(racks, change, words):
    path = copy_inventory(racks, racks.workdir, cluster=change.get("cluster"))
    if "node2_subnet" in change:
        data = yaml.safe_load(path.read_text())
        data["nodes"][1]["subnet"] = change["node2_subnet"]
        path.write_text(yaml.safe_dump(data))
    before = {n.name: node_snapshot(racks.transport, n.name) for n in racks.inventory.nodes}
    proc = lab_cli("deploy", "-i", str(path))
    assert proc.returncode != 0 and proc.stdout == ""
    assert proc.stderr.startswith(f"lab: error: {path}{words}") and len(proc.stderr.strip().splitlines()) == 1, \
        proc.stderr
    assert {n.name: node_snapshot(racks.transport, n.name) for n in racks.inventory.nodes} == before


def test_up_with_subnets_and_host_gw_is_refused_before_anything_is_made(racks):
    hostgw = racks.workdir / "hostgw.yaml"
    hostgw.write_text("cluster: {name: demo, overlay: {backend: host-gw}}\nemulated: {nodes: 2}\n")
    name = unique_lab_name("sn")
    proc = lab_cli("up", "--name", name, "--subnets", "2", "-i", str(hostgw))
    assert proc.returncode != 0 and proc.stdout == ""
    assert proc.stderr.strip() == (
        f"lab: error: --subnets 2: {hostgw}: cluster.overlay.backend is host-gw, which needs every node on one L2 "
        "segment; use `backend: vxlan` (with `directRouting: true` for plain routes inside a subnet), or --subnets 1")
    assert namespaces_of(name) == [] and not (racks.state_dir / name).exists()

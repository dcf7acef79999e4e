"""The emulated lab's plan: names, addresses and the commands that build it (no side effects)."""

from ipaddress import IPv4Address as Addr, IPv4Network as Net

import pytest

from orchestrator.core.errors import InputError
from orchestrator.core.model import Emulated
from orchestrator.core.state import LabFiles
from orchestrator.providers.emulated_plan import (OUTSIDE_NET, choose_underlay, infra_commands, layout,
        node_link_commands, start_command, underlay_neighbour_commands)


def test_layout_names_and_addresses():
    lay = layout("demo", Emulated(), 3, Net("198.18.4.0/24"))
    assert [(n.name, n.namespace, n.address) for n in lay.nodes] == [
        ("node1", "demo-node1", Addr("198.18.4.11")),
        ("node2", "demo-node2", Addr("198.18.4.12")),
        ("node3", "demo-node3", Addr("198.18.4.13")),
    ]
    assert lay.host_link == "demo-host" and len(lay.host_link) <= 15
    assert lay.host_address == Addr("198.18.4.1")
    assert lay.router_address == Addr("198.18.4.254")
    assert lay.outside_address in OUTSIDE_NET
    assert lay.infra_namespaces == ("demo-underlay", "demo-router", "demo-outside")


def test_adding_a_node_keeps_the_others_addresses():
    three = layout("demo", Emulated(), 3, Net("198.18.0.0/24"))
    four = layout("demo", Emulated(), 4, Net("198.18.0.0/24"))
    assert four.nodes[:3] == three.nodes


def test_too_many_nodes_for_the_underlay():
    with pytest.raises(InputError, match="do not fit"):
        layout("demo", Emulated(), 250, Net("198.18.0.0/24"))


def test_choose_underlay_avoids_routes_of_the_root_namespace():
    assert choose_underlay([Net("198.18.0.0/24"), Net("192.0.2.0/24")]) == Net("198.18.1.0/24")


def test_only_one_link_is_made_in_the_root_namespace():
    lay = layout("demo", Emulated(), 2, Net("198.18.0.0/24"))
    root_batches = [c for c in infra_commands(lay) + node_link_commands(lay, lay.nodes)
                    if c.argv == ("ip", "-batch", "-")]
    links_in_root = [line for c in root_batches for line in c.stdin.splitlines()
                     if line.startswith("link add") and " netns " not in line.split(" type ")[0]]
    assert links_in_root == ["link add demo-host mtu 1500 type veth peer name host netns demo-underlay"]


def test_no_namespace_routes_through_the_root_namespace():
    lay = layout("demo", Emulated(), 3, Net("198.18.0.0/24"))
    routes = [line for c in infra_commands(lay) + node_link_commands(lay, lay.nodes)
              if c.stdin for line in c.stdin.splitlines() if line.startswith("route add")]
    assert routes  # nodes and the outside host do have default routes ...
    assert not any(str(lay.host_address) in line for line in routes)  # ... but never via the root namespace
    assert all("via 198.18.0.254" in line or f"via {lay.outside_gateway}" in line for line in routes)


def test_start_command_quotes_paths_and_detaches(tmp_path):
    lay = layout("demo", Emulated(), 1, Net("198.18.0.0/24"))
    files = LabFiles("demo", tmp_path / "it's here")
    cmd = start_command(lay, lay.nodes[0], files)
    assert cmd.argv[:6] == ("setsid", "-f", "ip", "netns", "exec", "demo-node1")
    script = cmd.argv[-1]
    assert "'" + str(files.node_dir("node1") / "sshd.pid").replace("'", "'\"'\"'") + "'" in script
    assert "hostname node1" in script
    assert script.rstrip().endswith("exec /usr/sbin/sshd -D -e -f /run/lab/sshd_config")


def test_every_underlay_neighbour_is_pinned_in_every_node_and_the_router_but_not_itself():
    lay = layout("demo", Emulated(), 3, Net("198.18.4.0/24"))
    commands = underlay_neighbour_commands(lay, {"eth0": "02:00:00:00:00:fe"}, "02:00:00:00:00:01")
    assert [c.argv[:3] for c in commands] == [("ip", "-n", "demo-node1"), ("ip", "-n", "demo-node2"),
                                              ("ip", "-n", "demo-node3"), ("ip", "-n", "demo-router")]
    node2 = commands[1].stdin.splitlines()
    assert node2[0] == "neigh flush dev eth0 nud permanent"  # a node removed since leaves no entry behind
    assert node2[1:] == [f"neigh replace 198.18.4.11 lladdr {lay.nodes[0].mac} dev eth0 nud permanent",
                         f"neigh replace 198.18.4.13 lladdr {lay.nodes[2].mac} dev eth0 nud permanent",
                         "neigh replace 198.18.4.254 lladdr 02:00:00:00:00:fe dev eth0 nud permanent",
                         "neigh replace 198.18.4.1 lladdr 02:00:00:00:00:01 dev eth0 nud permanent"]
    router = commands[3].stdin.splitlines()
    assert len(router) == 1 + 3 + 1 and "198.18.4.254" not in " ".join(router)

"""Inventory validation: every bad input gets one line naming file, field and fix."""

from __future__ import annotations

import textwrap
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest

from orchestrator.core import inventory
from orchestrator.core.errors import InputError
from orchestrator.core.render import resource_text


GOOD = """
cluster:
  name: demo
nodes:
  - name: node1
    address: 192.168.56.11
  - name: node2
    address: 192.168.56.12
"""


def parse(text: str, base: Path = Path("/nonexistent")):
    return inventory.parse(textwrap.dedent(text), "inv.yaml", base)


def test_defaults_follow_kubernetes_conventions():
    inv = parse(GOOD)
    assert inv.cluster.cluster_cidr == IPv4Network("10.244.0.0/16")
    assert inv.cluster.service_cidr == IPv4Network("10.96.0.0/12")
    assert inv.cluster.node_subnet_size == 24
    assert inv.cluster.dns_domain == "cluster.local"
    assert (inv.cluster.overlay.backend, inv.cluster.overlay.vni, inv.cluster.overlay.port) == ("vxlan", 1, 8472)
    assert inv.cluster.overlay.pod_mtu(1500) == 1450
    assert [n.name for n in inv.nodes] == ["node1", "node2"]
    assert inv.nodes[0].address == IPv4Address("192.168.56.11")
    assert inv.nodes[0].ssh_host == "192.168.56.11"
    assert inv.nodes[0].ssh.user == "root" and not inv.nodes[0].ssh.become


def test_node_settings_override_ssh_defaults(tmp_path):
    (tmp_path / "k1").write_text("key")
    (tmp_path / "k2").write_text("key")
    inv = parse("""
        cluster: {name: vag, overlay: {backend: host-gw, mtu: 1400}}
        ssh: {user: vagrant, become: true, key: k1, port: 2222}
        nodes:
          - {name: a, address: 10.0.0.1}
          - {name: b, address: 10.0.0.2, key: k2, user: admin, ssh_host: b.example.com, labels: {zone: x}}
        """, tmp_path)
    a, b = inv.nodes
    assert (a.ssh.user, a.ssh.become, a.ssh.port, a.ssh.key) == ("vagrant", True, 2222, tmp_path / "k1")
    assert (b.ssh.user, b.ssh.become, b.ssh.key, b.ssh_host) == ("admin", True, tmp_path / "k2", "b.example.com")
    assert b.labels == {"kubernetes.io/hostname": "b", "kubernetes.io/os": "linux", "zone": "x"}  # the kubelet's too
    assert inv.cluster.overlay.pod_mtu(1500) == 1400


# (inventory text, field named in the message, words of the problem or fix)
BAD = [
    ("cluster: {name: demo}\nnodes: [{name: n1, address: 10.0.0.1, adress: x}]",
     "nodes[0].adress", "did you mean 'address'"),
    ("cluster: {name: demo, clustr_cidr: 10.0.0.0/8}\nnodes: [{name: n1, address: 1.2.3.4}]",
     "cluster.clustr_cidr", "did you mean 'cluster_cidr'"),
    ("clustr: {name: demo}\nnodes: []", "clustr", "did you mean 'cluster'"),
    ("cluster: {name: demo}\nnodes:\n - {name: n1, address: 10.0.0.1}\n - {name: n1, address: 10.0.0.2}",
     "nodes[1].name", "duplicate node name 'n1'"),
    ("cluster: {name: demo}\nnodes:\n - {name: n1, address: 10.0.0.1}\n - {name: n2, address: 10.0.0.1}",
     "nodes[1].address", "duplicate address 10.0.0.1"),
    ("cluster: {name: demo, cluster_cidr: 10.244.0.0/33}\nnodes: [{name: n1, address: 10.0.0.1}]",
     "cluster.cluster_cidr", "is not a CIDR"),
    ("cluster: {name: demo, cluster_cidr: 10.244.1.0/16}\nnodes: [{name: n1, address: 10.0.0.1}]",
     "cluster.cluster_cidr", "did you mean 10.244.0.0/16"),
    ("cluster: {name: demo, cluster_cidr: 10.244.0.0}\nnodes: [{name: n1, address: 10.0.0.1}]",
     "cluster.cluster_cidr", "no prefix length"),
    ("cluster: {name: demo, service_cidr: 10.244.128.0/20}\nnodes: [{name: n1, address: 10.0.0.1}]",
     "cluster.service_cidr", "overlaps cluster_cidr"),
    ("cluster: {name: demo, node_subnet_size: 16}\nnodes: [{name: n1, address: 10.0.0.1}]",
     "cluster.node_subnet_size", "does not fit"),
    ("cluster: {name: demo, node_subnet_size: 30}\nnodes: [{name: n1, address: 10.0.0.1}]",
     "cluster.node_subnet_size", "does not fit"),
    ("cluster: {name: demo, cluster_cidr: 10.244.0.0/23}\nnodes:\n"
     " - {name: n1, address: 10.0.0.1}\n - {name: n2, address: 10.0.0.2}\n - {name: n3, address: 10.0.0.3}",
     "cluster.node_subnet_size", "holds 2 /24 node subnets, but there are 3 nodes"),
    ("cluster: {name: demo}\nnodes: [{name: Node_1, address: 10.0.0.1}]", "nodes[0].name", "not a valid hostname"),
    ("cluster: {name: demo}\nnodes: [{name: averyveryverylongname, address: 10.0.0.1}]",
     "nodes[0].name", "Linux limits to 15"),
    ("cluster: {name: demo}\nnodes: [{name: router, address: 10.0.0.1}]", "nodes[0].name", "reserved"),
    ("cluster: {name: Demo-Lab}\nnodes: [{name: n1, address: 10.0.0.1}]", "cluster.name", "not a valid lab name"),
    ("cluster: {}\nnodes: [{name: n1, address: 10.0.0.1}]", "cluster.name", "missing"),
    ("cluster: {name: demo}\nnodes: [{name: n1, address: 10.0.0.300}]", "nodes[0].address", "not an IP address"),
    ("cluster: {name: demo}\nnodes: [{name: n1, address: 10.244.3.4}]",
     "nodes[0].address", "inside cluster.cluster_cidr"),
    ("cluster: {name: demo}\nnodes: [{name: n1}]", "nodes[0].address", "missing"),
    ("cluster: {name: demo}\nnodes: [{name: n1, address: 10.0.0.1, key: nokey}]", "nodes[0].key", "cannot read"),
    ("cluster: {name: demo}\nssh: {known_hosts: /nonexistent/kh}\nnodes: [{name: n1, address: 10.0.0.1}]",
     "ssh.known_hosts", "cannot read"),
    ("cluster: {name: demo, overlay: {backend: vxlam}}\nnodes: [{name: n1, address: 10.0.0.1}]",
     "cluster.overlay.backend", "did you mean 'vxlan'"),
    ("cluster: {name: demo, overlay: {vni: 0}}\nnodes: [{name: n1, address: 10.0.0.1}]",
     "cluster.overlay.vni", "from 1 to 16777215"),
    ("cluster: {name: demo, overlay: {mtu: 100}}\nnodes: [{name: n1, address: 10.0.0.1}]",
     "cluster.overlay.mtu", "from 576 to 9000"),
    ("cluster: {name: demo}\nssh: {become: yes please}\nnodes: [{name: n1, address: 10.0.0.1}]",
     "ssh.become", "true or false"),
    ("cluster: {name: demo}\nssh: {port: 70000}\nnodes: [{name: n1, address: 10.0.0.1}]", "ssh.port", "1 to 65535"),
    ("cluster: {name: demo}\nnodes: {name: n1}", "nodes", "expected a list"),
    ("cluster: {name: demo}", "nodes", "no nodes listed"),
    ("cluster: {name: demo, dns_domain: Cluster..local}\nnodes: [{name: n1, address: 10.0.0.1}]",
     "cluster.dns_domain", "not a valid DNS domain"),
    ("cluster: {name: demo}\nnodes: [{name: n1, address: 10.0.0.1, labels: [a]}]", "nodes[0].labels", "mapping"),
    ("cluster: {name: demo\nnodes: []", "line", "not valid YAML"),
    ("- just\n- a list", "", "expected a mapping"),
]


@pytest.mark.parametrize("text,field,words", BAD, ids=[f"{i}-{case[1] or 'top'}" for i, case in enumerate(BAD)])
def test_bad_inventory_gets_one_precise_line(tmp_path, text, field, words):
    with pytest.raises(InputError) as caught:
        inventory.parse(text, "inv.yaml", tmp_path)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"inv.yaml: {field}"), message
    assert words in message, message
    assert ";" in message, "the message must say how to fix it: " + message


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(InputError, match=r"nope.yaml: cannot read the inventory: No such file"):
        inventory.load(tmp_path / "nope.yaml")


def test_shipped_local_inventory_is_valid():
    inv = inventory.parse(resource_text("orchestrator.inventories", "local.yaml"), "local.yaml", Path("."))
    assert inv.emulated is not None and inv.emulated.nodes == 3
    assert inv.emulated.node_names() == ["node1", "node2", "node3"]
    assert inv.nodes == ()


@pytest.mark.parametrize("name", ["vagrant.yaml", "cloud.example.yaml"])
def test_shipped_vm_inventories_are_valid_once_their_files_exist(tmp_path, monkeypatch, name):
    text = resource_text("orchestrator.inventories", name)
    monkeypatch.setenv("HOME", str(tmp_path))
    data_dir = tmp_path / "inventories"
    data_dir.mkdir()
    for rel in ("vagrant_known_hosts", "cloud_known_hosts", ".ssh/id_ed25519",
                *(f"../.vagrant/machines/node{i}/virtualbox/private_key" for i in (1, 2, 3))):
        path = (data_dir / rel) if not rel.startswith(".ssh") else tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x")
    inv = inventory.parse(text, name, data_dir)
    assert len(inv.nodes) == 3
    assert all(node.ssh.become for node in inv.nodes)


def test_dump_round_trips(tmp_path):
    (tmp_path / "key").write_text("k")
    (tmp_path / "kh").write_text("")
    inv = parse("""
        cluster: {name: demo, overlay: {backend: host-gw}}
        ssh: {key: key, known_hosts: kh}
        nodes: [{name: n1, address: 10.0.0.1, labels: {zone: a}}]
        emulated: {nodes: 1}
        """, tmp_path)
    again = inventory.parse(inventory.dump(inv, tmp_path), "again.yaml", tmp_path)
    assert again.cluster == inv.cluster
    assert again.nodes == inv.nodes and again.nodes[0].labels == inv.nodes[0].labels
    assert "kubernetes.io/hostname" not in inventory.dump(inv, tmp_path)  # the well-known labels are not written back
    assert again.emulated == inv.emulated

"""The pod network of each node, as data: what `lab deploy` wants a node to have.

Pure: from the inventory, the subnet leases and a few facts read from each node (its underlay device
and MTU), compute per node the CNI config, the sysctls, the overlay device and its peers (routes,
neighbours, FDB entries, flannel-style), and the masquerade rules. `plan/diff.py` compares this with
what a node has; nothing here touches a node.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from typing import Optional

from ..model import Cluster, Inventory, Node
from ..render import render

CNI_CONF_DIR = "/etc/cni/net.d"
BRIDGE = "cni0"
NODE_LIB = "/var/lib/cluster-lab"  # the lab's files on a node (overlaid, hence private, on emulated nodes)
MASQ_CHAIN = "LAB-MASQ"
FORWARD_CHAIN = "LAB-FORWARD"
SYSCTLS = {"net.ipv4.ip_forward": "1", "net.bridge.bridge-nf-call-iptables": "1"}


def conflist_path(lab: str) -> str:
    return f"{CNI_CONF_DIR}/10-{lab}.conflist"


def node_lib(lab: str) -> str:
    return f"{NODE_LIB}/{lab}"


def vxlan_device(vni: int) -> str:
    """flannel's name for the VXLAN device: flannel.<VNI>."""
    return f"flannel.{vni}"


def stable_mac(key: str, first: int = 0x0E) -> str:
    """A locally administered unicast MAC that depends only on `key`."""
    digest = hashlib.sha256(key.encode()).digest()
    return ":".join(f"{b:02x}" for b in (first, *digest[:5]))


def vtep_mac(lab: str, node: str) -> str:
    """A stable MAC for a node's VXLAN device, so peers can be planned without asking the node (flannel
    publishes its random MAC through the API server instead)."""
    return stable_mac(f"{lab}/{node}")


@dataclass(frozen=True)
class NodeFacts:
    """What planning needs to know about a node that only the node can tell."""

    underlay_device: str
    underlay_mtu: int


@dataclass(frozen=True)
class Vtep:
    device: str
    vni: int
    port: int
    local: IPv4Address
    underlay_device: str
    mac: str
    address: IPv4Address  # the subnet's .0, as flannel assigns it
    mtu: int


@dataclass(frozen=True, order=True)
class Route:
    dst: IPv4Network
    via: IPv4Address
    dev: str
    onlink: bool = False


@dataclass(frozen=True, order=True)
class Neighbour:
    address: IPv4Address
    mac: str
    dev: str


@dataclass(frozen=True, order=True)
class FdbEntry:
    mac: str
    dst: IPv4Address
    dev: str


@dataclass(frozen=True)
class NodeNetwork:
    """The desired pod network of one node."""

    node: str
    subnet: IPv4Network
    pod_mtu: int
    conflist_path: str
    conflist: str
    sysctls: dict = field(hash=False)
    vtep: Optional[Vtep]
    routes: tuple[Route, ...]
    neighbours: tuple[Neighbour, ...]
    fdb: tuple[FdbEntry, ...]
    rules: dict = field(hash=False)  # (table, chain) -> iptables-save lines of that chain
    jumps: dict = field(hash=False)  # (table, builtin chain) -> the rule that jumps to the lab's chain

    @property
    def gateway(self) -> IPv4Address:
        return self.subnet[1]


def render_conflist(cluster: Cluster, subnet: IPv4Network, mtu: int) -> str:
    """The CNI network configuration list for a node (bridge + host-local, portmap chained)."""
    text = render("cni.conflist.j2", name=cluster.name, bridge=BRIDGE, mtu=mtu, subnet=subnet,
                  gateway=subnet[1])
    json.loads(text)  # a template mistake must fail here, not in the plugin on the node
    return text


def masquerade_rules(cluster: Cluster, subnet: IPv4Network) -> dict:
    """flannel's masquerade rules: pod<->pod never NATed; only cluster -> outside is masqueraded."""
    pods = cluster.cluster_cidr
    return {
        ("nat", MASQ_CHAIN): (
            f'-A {MASQ_CHAIN} -s {pods} -d {pods} -m comment --comment "pod to pod: no NAT" -j RETURN',
            f"-A {MASQ_CHAIN} -s {pods} -d 224.0.0.0/4 -j RETURN",
            f'-A {MASQ_CHAIN} -s {pods} -m comment --comment "pod to outside: SNAT to the node" '
            f"-j MASQUERADE --random-fully",
            f"-A {MASQ_CHAIN} ! -s {pods} -d {subnet} -j RETURN",
            f'-A {MASQ_CHAIN} ! -s {pods} -d {pods} -m comment --comment "node to remote pods" '
            f"-j MASQUERADE --random-fully",
        ),
        ("filter", FORWARD_CHAIN): (
            f"-A {FORWARD_CHAIN} -s {pods} -j ACCEPT",
            f"-A {FORWARD_CHAIN} -d {pods} -j ACCEPT",
        ),
    }


def chain_jumps() -> dict:
    return {
        ("nat", "POSTROUTING"): f'-A POSTROUTING -m comment --comment "cluster-lab masquerade" -j {MASQ_CHAIN}',
        ("filter", "FORWARD"): f'-A FORWARD -m comment --comment "cluster-lab pod traffic" -j {FORWARD_CHAIN}',
    }


def plan_node(inv: Inventory, node: Node, subnets: dict[str, IPv4Network],
              facts: dict[str, NodeFacts]) -> NodeNetwork:
    """The desired network of `node`, given every node's subnet and facts."""
    cluster = inv.cluster
    overlay = cluster.overlay
    own = facts[node.name]
    subnet = subnets[node.name]
    pod_mtu = overlay.pod_mtu(own.underlay_mtu)
    peers = [n for n in inv.nodes if n.name != node.name and n.name in subnets]
    vtep = None
    routes: list[Route] = []
    neighbours: list[Neighbour] = []
    fdb: list[FdbEntry] = []
    if overlay.backend == "vxlan":
        vtep = Vtep(device=vxlan_device(overlay.vni), vni=overlay.vni, port=overlay.port, local=node.address,
                    underlay_device=own.underlay_device, mac=vtep_mac(cluster.name, node.name),
                    address=subnet.network_address, mtu=pod_mtu)
        for peer in peers:
            peer_subnet = subnets[peer.name]
            mac = vtep_mac(cluster.name, peer.name)
            # flannel's order per peer: route via the peer's VTEP address (onlink), its neighbour, its FDB entry
            routes.append(Route(peer_subnet, peer_subnet.network_address, vtep.device, onlink=True))
            neighbours.append(Neighbour(peer_subnet.network_address, mac, vtep.device))
            fdb.append(FdbEntry(mac, peer.address, vtep.device))
    else:
        routes = [Route(subnets[p.name], p.address, own.underlay_device) for p in peers]
    return NodeNetwork(
        node=node.name, subnet=subnet, pod_mtu=pod_mtu, conflist_path=conflist_path(cluster.name),
        conflist=render_conflist(cluster, subnet, pod_mtu), sysctls=dict(SYSCTLS), vtep=vtep,
        routes=tuple(sorted(routes)), neighbours=tuple(sorted(neighbours)), fdb=tuple(sorted(fdb)),
        rules=masquerade_rules(cluster, subnet), jumps=chain_jumps())

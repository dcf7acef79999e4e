"""The pod network of each node, as data: what `lab deploy` wants a node to have.

Pure: from the inventory, the subnet leases and what each node told (its underlay device and MTU),
compute per node the CNI config (bridge + host-local, portmap chained), the sysctls, the masquerade and
forward chains, and (from layers/overlay) the overlay that joins the nodes. `changes.py` compares this
with what a node has; nothing here touches a node.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network

from orchestrator.core.model import Cluster, Inventory, Node
from orchestrator.core.render import render
from orchestrator.layers.nodes.facts import NodeFacts, SYSCTLS, conflist_path
from orchestrator.layers.overlay.plan import Overlay, plan_overlay


BRIDGE = "cni0"
MASQ_CHAIN = "LAB-MASQ"
FORWARD_CHAIN = "LAB-FORWARD"

ChainRules = dict[tuple[str, str], tuple[str, ...]]  # (table, chain) -> iptables-save lines of that chain
ChainJumps = dict[tuple[str, str], str]  # (table, builtin chain) -> the rule that jumps to the lab's chain


@dataclass(frozen=True)
class NodeNetwork:
    """The desired pod network of one node."""

    node: str
    subnet: IPv4Network
    pod_mtu: int
    conflist_path: str
    conflist: str
    sysctls: dict[str, str] = field(hash=False)
    overlay: Overlay
    rules: ChainRules = field(hash=False)  # (table, chain) -> iptables-save lines of that chain
    jumps: ChainJumps = field(hash=False)  # (table, builtin chain) -> the rule that jumps to the lab's chain

    @property
    def gateway(self) -> IPv4Address:
        return self.subnet[1]


def render_conflist(cluster: Cluster, subnet: IPv4Network, mtu: int) -> str:
    """The CNI network configuration list for a node (bridge + host-local, portmap chained)."""
    text = render("podnet/cni.conflist.j2", name=cluster.name, bridge=BRIDGE, mtu=mtu, subnet=subnet,
                  gateway=subnet[1])
    json.loads(text)  # a template mistake must fail here, not in the plugin on the node
    return text


def masquerade_rules(cluster: Cluster, subnet: IPv4Network) -> ChainRules:
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


def chain_jumps() -> ChainJumps:
    return {
        ("nat", "POSTROUTING"): f'-A POSTROUTING -m comment --comment "cluster-lab masquerade" -j {MASQ_CHAIN}',
        ("filter", "FORWARD"): f'-A FORWARD -m comment --comment "cluster-lab pod traffic" -j {FORWARD_CHAIN}',
    }


def plan_node(inv: Inventory, node: Node, subnets: dict[str, IPv4Network],
              facts: dict[str, NodeFacts]) -> NodeNetwork:
    """The desired network of `node`, given every node's subnet and facts."""
    cluster = inv.cluster
    subnet = subnets[node.name]
    pod_mtu = cluster.overlay.pod_mtu(facts[node.name].underlay_mtu)
    return NodeNetwork(
        node=node.name, subnet=subnet, pod_mtu=pod_mtu, conflist_path=conflist_path(cluster.name),
        conflist=render_conflist(cluster, subnet, pod_mtu), sysctls=dict(SYSCTLS),
        overlay=plan_overlay(inv, node, subnets, facts, pod_mtu),
        rules=masquerade_rules(cluster, subnet), jumps=chain_jumps())

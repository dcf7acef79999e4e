"""`lab trace --explain`: the path the lab's rendered rules predict for the traced packet, on paper (pure).

The service rules are rendered as the controller renders them for every node (services/apply.py: the lab-proxy
nftables table, or kube-proxy's iptables chains with the lab's masquerade and their jumps from the built-in
chains) and walked by the services layer's tracer from the node the packet enters; each way it can end (an
endpoint and its chance) is then judged by the lab-policy table (policy/trace.py) on the forward hooks it
crosses. Printed beside the kernel's real trace, a difference between the two is where to look.
"""

from __future__ import annotations

from ipaddress import IPv4Network, ip_network
from typing import TYPE_CHECKING, Optional

from orchestrator.core.model import Inventory
from orchestrator.core.objects import LabObjects
from orchestrator.layers.podnet.plan import chain_jumps, masquerade_rules
from orchestrator.layers.policy.enforcement import render_policy
from orchestrator.layers.policy.trace import PolicyPacket, judge
from orchestrator.layers.services.iptables import JUMPS, render_iptables
from orchestrator.layers.services.nftables import render_nft
from orchestrator.layers.services.plan import all_endpoints, node_addresses
from orchestrator.layers.services.trace import Ending, Packet, TraceError, parse_iptables, trace_iptables, trace_nft

if TYPE_CHECKING:
    from orchestrator.verify.kernel_trace import End

BRIDGE, OVERLAY, UPLINK = "cni0", "overlay", "uplink"  # the policy table tells only the bridge from the rest


def node_iptables(inv: Inventory, objects: LabObjects, node: str) -> dict:
    """What `node` holds with the iptables backend, as parse_iptables reads iptables-save: the service chains,
    the lab's masquerade and forward chains, and the built-in chains' jumps to them (the lab's own first in
    POSTROUTING, as the node agent inserts it)."""
    cluster = inv.cluster
    tables = render_iptables(objects.services, all_endpoints(objects.services, objects.pods), cluster.cluster_cidr,
                             objects.announced, node_addresses(inv))
    subnet = objects.subnets.get(node)
    if subnet is not None:
        for (table, chain), rules in masquerade_rules(cluster, IPv4Network(subnet)).items():
            tables.setdefault(table, {})[chain] = list(rules)
        for table, chain, jump in JUMPS:
            tables[table].setdefault(chain, []).append(jump)
        for (table, chain), jump in chain_jumps().items():
            chain_rules = tables[table].setdefault(chain, [])
            chain_rules.insert(0 if chain == "POSTROUTING" else len(chain_rules), jump)
    else:
        for table, chain, jump in JUMPS:
            tables.setdefault(table, {}).setdefault(chain, []).append(jump)
    text = "".join(f"*{t}\n" + "".join(f":{c} - [0:0]\n" for c in chains) +
                   "".join(r + "\n" for rules in chains.values() for r in rules) + "COMMIT\n"
                   for t, chains in tables.items())
    return parse_iptables(text)


def entry(inv: Inventory, objects: LabObjects, src: "End", dst: "End") -> tuple[Optional[str], str]:
    """The node the packet first crosses, and the hook it enters there (None when the rules cannot say)."""
    if src.pod:
        return src.pod.node, "PREROUTING"
    if src.source.startswith("node:"):
        return src.source.partition(":")[2], "OUTPUT"
    for node in inv.nodes:  # from outside: the node it is sent to
        if str(node.address) == dst.ip:
            return node.name, "PREROUTING"
    return (dst.pod.node, "PREROUTING") if dst.pod else (None, "PREROUTING")


def forward_hops(src: "End", node: str, hook: str, dst_node: str) -> list[tuple[str, str, str]]:
    """(node, in, out) of each forward hook the packet crosses from the entry `node` to a pod on `dst_node`."""
    first_in = BRIDGE if src.pod else UPLINK
    if hook == "OUTPUT":  # the node's own packet: no forward hook there
        return [] if node == dst_node else [(dst_node, OVERLAY, BRIDGE)]
    if node == dst_node:
        return [(node, first_in, BRIDGE)]
    return [(node, first_in, OVERLAY), (dst_node, OVERLAY, BRIDGE)]


def policy_line(objects: LabObjects, policy: Optional[dict], src: "End", source_ip: str, ending: Ending,
                node: str, hook: str, protocol: str) -> Optional[str]:
    """What the lab-policy table does to one ending that reaches a pod, or None (no policy, or no pod)."""
    ip, _, port = ending.destination.rpartition(":")
    pod = next((p for p in objects.pods.values() if p.ip == ip), None)
    if policy is None or pod is None or ending.verdict == "REJECT":
        return None
    reasons = []
    for where, iif, oif in forward_hops(src, node, hook, str(pod.node)):
        allowed, why = judge(policy, PolicyPacket(source_ip, ip, protocol, int(port), iif, oif))
        if not allowed:
            return f"NetworkPolicy: dropped on {where} by lab-policy forward ({why})"
        reasons.append(f"{where}: {'not isolated' if why == 'end of forward' else why}")
    return f"NetworkPolicy: let through ({'; '.join(reasons)})" if reasons else None


def explain(inv: Inventory, objects: LabObjects, src: "End", dst: "End", port: int, protocol: str) -> list[str]:
    """The report's lines: each way the packet ends by the rendered rules, its chance, the rules that decided."""
    node, hook = entry(inv, objects, src, dst)
    backend = inv.cluster.proxy_mode
    head = f"on paper (the rules the lab renders, {backend}):"
    if node is None:
        return [head, f"  which node {dst.ip} is reached through from {src.label} is not in the rules; "
                      "trace to node/NAME:PORT to see a NodePort"]
    me = inv.node(node)
    subnet = objects.subnets.get(node)
    local = {str(me.address)} | ({str(next(ip_network(subnet).hosts()))} if subnet else set())  # + the bridge
    packet = Packet(src.ip, dst.ip, port, protocol, hook, frozenset(local))
    try:
        if backend == "nftables":
            eps = all_endpoints(objects.services, objects.pods)
            endings = trace_nft(render_nft(objects.services, eps, inv.cluster.cluster_cidr, objects.announced,
                                           node_addresses(inv)), packet)
        else:
            endings = trace_iptables(node_iptables(inv, objects, node), packet)
    except TraceError as exc:
        return [head, f"  the tracer cannot follow the rules: {exc}"]
    lines = [head, f"  enters {node} ({hook}): {src.ip} -> {dst.ip}:{port}/{protocol.upper()}"]
    policy = render_policy(objects)
    for ending in endings:
        what = {"DNAT": f"DNAT to {ending.destination}", "REJECT": "REJECT",
                "ACCEPT": f"on to {ending.destination}"}[ending.verdict]
        lines.append(f"  {ending.probability:.0%}: {what}" + (", source masqueraded to the node" if ending.masquerade
                                                              else ""))
        lines += [f"      {rule}" for rule in ending.path]
        source_ip = str(me.address) if ending.masquerade else src.ip
        said = policy_line(objects, policy, src, source_ip, ending, node, hook, protocol)
        if said:
            lines.append(f"      {said}")
    return lines


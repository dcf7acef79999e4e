"""NetworkPolicy as one nftables table, `ip lab-policy`, the same on every node (pure).

Why nftables sets (as kube-network-policies does) rather than iptables chains with ipsets (Calico,
kube-router): one table holds the sets and the rules, loads atomically with `nft -f`, and a pod that comes
or goes changes set elements only, never a rule; interval sets take an ipBlock minus its excepts as plain
prefixes, and concatenated sets take named ports (address . protocol . port). It needs no ipset tool, and
it works the same whichever service backend the lab uses.

The table is the same on every node: `forward` checks egress only for packets that come from the node's
own pods (in through cni0, bridged or routed) and ingress only for packets that go to them (out through
cni0), so each connection is judged once on each end's own node, and traffic a node sends itself (its
OUTPUT, not FORWARD) always reaches its pods. Sets hold pod addresses of the whole cluster:

  egress-isolated / ingress-isolated   pods some policy isolates in that direction
  <policy>-pods                        the pods the policy selects
  <policy>-<in|eg><rule>               the rule's peers: pod addresses and ipBlock prefixes (interval)
  <policy>-<in|eg><rule>-named         address . protocol . port of the named ports the rule allows

With no policy there is no table at all.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from ipaddress import IPv4Address, IPv4Network, collapse_addresses
from typing import Any, Optional

from orchestrator.agent.contract import POLICY_TABLE
from orchestrator.core.objects import LabObjects, Pod
from orchestrator.core.policy_spec import Peer, Rule
from orchestrator.layers.podnet.plan import BRIDGE
from orchestrator.layers.pods.namespaces import namespace_labels
from orchestrator.layers.policy.plan import Endpoint, Policy, peer_matches, pod_endpoint, policies, selects

TABLE = POLICY_TABLE
ADDRESSES = "type ipv4_addr"
PREFIXES = "type ipv4_addr; flags interval"
NAMED = "type ipv4_addr . inet_proto . inet_service"
NftSets = dict[str, tuple[str, list[str]]]  # set name -> (declaration, elements)


def policy_id(policy: Policy) -> str:
    """A set-name prefix that stays the same while the policy exists (so pod churn changes elements only)."""
    return "p" + hashlib.sha256(policy.key.encode()).hexdigest()[:10]


def prefixes(addresses: Iterable[IPv4Network]) -> list[str]:
    """Non-overlapping prefixes covering `addresses` (nft interval sets refuse overlaps)."""
    return [str(net) for net in collapse_addresses(addresses)]


def peer_prefixes(peers: tuple[Peer, ...], policy: Policy, pods: list[Endpoint],
                  namespaces: dict[str, dict[str, str]]) -> list[str]:
    nets: list[IPv4Network] = []
    for peer in peers:
        if peer.ip_block is not None:
            block = [peer.ip_block.cidr]
            for cut in peer.ip_block.excepts:
                block = [part for net in block
                         for part in ((net,) if not net.overlaps(cut) else
                                      (() if net.subnet_of(cut) else net.address_exclude(cut)))]
            nets += block
        else:
            nets += [IPv4Network(p.ip) for p in pods if peer_matches(peer, policy, p, namespaces)]
    return prefixes(nets)


def named_elements(port: str, protocol: str, pods: list[Endpoint]) -> list[str]:
    return sorted(f"{p.ip} . {protocol.lower()} . {number}" for p in pods
                  for name, proto, number in p.ports if name == port and proto == protocol)


def port_clauses(rule: Rule, direction_pods: list[Endpoint], set_prefix: str, sets: NftSets) -> list[str]:
    """The port part of a rule's nft lines, one per protocol (numbers and ranges) and one per named port."""
    if rule.ports is None:
        return [""]
    clauses: list[str] = []
    named: list[list[str]] = []
    for protocol in ("TCP", "UDP"):
        ports = [p for p in rule.ports if p.protocol == protocol]
        numbers = [f"{p.port}" if not p.end_port else f"{p.port}-{p.end_port}" for p in ports
                   if isinstance(p.port, int)]
        if any(p.port is None for p in ports):
            clauses.append(f"meta l4proto {protocol.lower()}")
        elif numbers:
            clauses.append(f"meta l4proto {protocol.lower()} th dport {{ {', '.join(numbers)} }}")
        named += [named_elements(p.port, protocol, direction_pods) for p in ports if isinstance(p.port, str)]
    if any(isinstance(p.port, str) for p in rule.ports):
        sets[f"{set_prefix}-named"] = (NAMED, sorted({e for group in named for e in group}))
        clauses.append(f"ip daddr . meta l4proto . th dport @{set_prefix}-named")
    return clauses


def render_policy(objects: LabObjects) -> Optional[dict[str, Any]]:
    """The lab-policy table for the lab's objects ({"sets": {name: (declaration, elements)}, "chains": {name:
    [lines]}}, the shape the node agent loads), or None when there is no NetworkPolicy."""
    found = policies(objects)
    if not found:
        return None
    namespaces = namespace_labels(objects)
    pods = [pod_endpoint(p) for p in objects.pods.values() if p.ip]
    sets: NftSets = {}
    chains: dict[str, list[str]] = {"egress": [], "ingress": []}
    isolated: dict[str, set[str]] = {"egress": set(), "ingress": set()}
    for policy in found:
        pid = policy_id(policy)
        selected = [p for p in pods if selects(policy, p)]
        sets[f"{pid}-pods"] = (ADDRESSES, sorted(str(p.ip) for p in selected))
        for direction, short, rules, peer_side in (("ingress", "in", policy.spec.ingress, "saddr"),
                                                   ("egress", "eg", policy.spec.egress, "daddr")):
            if direction.capitalize() not in policy.spec.policy_types:
                continue
            isolated[direction].update(str(p.ip) for p in selected)
            own = "daddr" if direction == "ingress" else "saddr"
            for i, rule in enumerate(rules):
                name = f"{pid}-{short}{i}"
                peers = ""
                if rule.peers is not None:
                    sets[name] = (PREFIXES, peer_prefixes(rule.peers, policy, pods, namespaces))
                    peers = f" ip {peer_side} @{name}"
                # named ports resolve on the destination: the selected pods for ingress, any pod for egress
                for clause in port_clauses(rule, selected if direction == "ingress" else pods, name, sets):
                    match = f" {clause}" if clause else ""
                    chains[direction].append(f"ip {own} @{pid}-pods{peers}{match} counter return "
                                             f"comment \"{policy.key} {direction} rule {i + 1}\"")
    for direction in ("egress", "ingress"):
        sets[f"{direction}-isolated"] = (ADDRESSES, sorted(isolated[direction]))
        chains[direction].append(f"counter drop comment \"default deny {direction}\"")
    chains["forward"] = ["type filter hook forward priority filter; policy accept;",
                         "ct state established,related accept",
                         f"iifname \"{BRIDGE}\" ip saddr @egress-isolated jump egress",
                         f"oifname \"{BRIDGE}\" ip daddr @ingress-isolated jump ingress"]
    return {"table": TABLE, "sets": sets, "chains": chains}


def policy_sets(objects: LabObjects, pod: Pod) -> list[str]:
    """The address sets a new pod belongs to that isolate it or name it as selected: the node agent adds it
    to them before its server starts. (Sets where it is someone else's peer follow with the next sync:
    until then it is refused there, never let through.)"""
    found = policies(objects)
    if not found:
        return []
    me = Endpoint(ip=IPv4Address("0.0.0.0"), namespace=pod.namespace, name=pod.name,
                  labels=tuple(sorted(pod.labels.items())))
    names: set[str] = set()
    for policy in found:
        if selects(policy, me):
            names.add(f"{policy_id(policy)}-pods")
            names.update(f"{t.lower()}-isolated" for t in policy.spec.policy_types)
    return sorted(names)

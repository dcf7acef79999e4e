"""NetworkPolicies: who may talk to whom, enforced by the lab-policy nftables table on every node."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Optional

from orchestrator.core.manifests import Doc, Manifest, Warn, fmt_labels
from orchestrator.core.model import Inventory
from orchestrator.core.objects import LabObjects, NetworkPolicy, applied
from orchestrator.core.policy_spec import Peer, non_standard_cidrs, parse_policy_spec, parse_selector
from orchestrator.kinds.registry import Item, Kind, Plan, forgotten, register
from orchestrator.kinds.show import age, lead, lead_columns


def parse(doc: Doc, head: Manifest, warn: Warn) -> Manifest:
    spec = doc.sub("spec", required=True).data
    for line in non_standard_cidrs(spec):
        warn(f"{head.source}: {line}")
    return replace(head, policy=parse_policy_spec(spec, head.source))


def record(m: Manifest, plan: Plan) -> str:
    """Keep the policy's spec as written (the policy layer reads it again)."""
    old = plan.objects.policies.get(m.key)
    policy = NetworkPolicy(m.name, m.namespace, dict(m.labels), m.raw["spec"], old.created if old else plan.stamp)
    plan.objects.policies[m.key] = policy
    return applied(old, old == policy)


def forget(m: Manifest, plan: Plan) -> str:
    return forgotten(plan.objects.policies, m.key)


def items(inv: Inventory, objects: LabObjects) -> list[Item]:
    return [Item(p.name, p.namespace, p.labels, p) for _, p in sorted(objects.policies.items())]


def to_json(item: Item, inv: Inventory, objects: LabObjects) -> dict[str, Any]:
    policy: NetworkPolicy = item.record
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": policy.name, "namespace": policy.namespace, "labels": policy.labels,
                         "creationTimestamp": policy.created}, "spec": policy.spec}


def table(found: list[Item], inv: Inventory, objects: LabObjects, all_namespaces: bool,
          wide: bool) -> tuple[list[str], list[list[str]]]:
    """`kubectl get netpol [-A]` columns and rows."""
    rows = []
    for item in found:
        policy: NetworkPolicy = item.record
        selector = parse_selector(policy.spec.get("podSelector"), "", "").text()
        rows.append(lead(policy.namespace, all_namespaces) + [policy.name, selector, age(policy.created)])
    return lead_columns(all_namespaces) + ["NAME", "POD-SELECTOR", "AGE"], rows


def describe_peers(peers: Optional[tuple[Peer, ...]], word: str) -> list[tuple[str, str]]:
    if peers is None:
        return [(f"    {word}:", f"<any> (traffic not restricted by {'source' if word == 'From' else 'destination'})")]
    lines: list[tuple[str, str]] = []
    for peer in peers:
        lines.append((f"    {word}:", ""))
        if peer.ip_block is not None:
            lines += [("      IPBlock:", ""), ("        CIDR:", str(peer.ip_block.cidr)),
                      ("        Except:", ", ".join(str(e) for e in peer.ip_block.excepts))]
        if peer.namespace_selector is not None:
            lines.append(("      NamespaceSelector:", peer.namespace_selector.text()))
        if peer.pod_selector is not None:
            lines.append(("      PodSelector:", peer.pod_selector.text()))
    return lines


def describe(item: Item, inv: Inventory, objects: LabObjects) -> list[tuple[str, str]]:
    """`kubectl describe netpol` as (label, value) lines."""
    record: NetworkPolicy = item.record
    spec = parse_policy_spec(record.spec, f"networkpolicy {record.namespace}/{record.name}")
    lines = [("Name:", record.name), ("Namespace:", record.namespace), ("Created on:", record.created),
             ("Labels:", fmt_labels(record.labels) or "<none>"), ("Annotations:", "<none>"), ("Spec:", ""),
             ("  PodSelector:", spec.pod_selector.text().replace("<none>", "<none> (Allowing the specific traffic "
                                                                           "to all pods in this namespace)"))]
    for direction, rules, word in (("Ingress", spec.ingress, "From"), ("Egress", spec.egress, "To")):
        if direction not in spec.policy_types:
            lines.append((f"  Not affecting {direction.lower()} traffic", ""))
            continue
        lines.append((f"  Allowing {direction.lower()} traffic:", ""))
        if not rules:
            lines.append(("    <none> (Selected pods are isolated for " + direction.lower() + " connectivity)", ""))
        for i, rule in enumerate(rules):
            if i:
                lines.append(("    ----------", ""))
            if rule.ports is None:
                lines.append(("    To Port:", "<any> (traffic allowed to all ports)"))
            for port in rule.ports or ():
                number = port.port if port.port is not None else "<any>"
                ranged = f"-{port.end_port}" if port.end_port else ""
                lines.append(("    To Port:", f"{number}{ranged}/{port.protocol}"))
            lines += describe_peers(rule.peers, word)
    lines.append(("  Policy Types:", ", ".join(spec.policy_types)))
    return lines


NETWORK_POLICY = register(Kind("NetworkPolicy", "networkpolicies", "networkpolicy.networking.k8s.io",
                               api_version="networking.k8s.io/v1", short_names=("netpol",), parse=parse,
                               schema_first=True, order=10, record=record, forget=forget, items=items,
                               to_json=to_json, table=table, describe=describe))

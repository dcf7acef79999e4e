"""Nodes: the inventory's machines, as `lab get nodes` and `lab describe node` show them (no manifest makes one)."""

from __future__ import annotations

from typing import Any

from orchestrator import __version__
from orchestrator.core.manifests import fmt_labels
from orchestrator.core.model import Inventory, Node
from orchestrator.core.objects import LabObjects
from orchestrator.kinds.registry import Item, Kind, register


def readiness(node: Node, objects: LabObjects) -> tuple[bool, str]:
    """Whether `node` is Ready, and why not: it has no pod network yet, or (as it reported just now, when asked)
    it does not answer or is still restoring the lab after a boot."""
    why = objects.observed.get(f"node/{node.name}", "")
    if not why and not objects.subnets.get(node.name):
        why = "no pod network: run `lab deploy`"
    return not why, why


def items(inv: Inventory, objects: LabObjects) -> list[Item]:
    return [Item(n.name, "", n.labels, n) for n in inv.nodes]


def to_json(item: Item, inv: Inventory, objects: LabObjects) -> dict[str, Any]:
    node: Node = item.record
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": node.name, "labels": node.labels},
            "spec": {"podCIDR": objects.subnets.get(node.name)},
            "status": {"addresses": [{"type": "InternalIP", "address": str(node.address)}]}}


def table(found: list[Item], inv: Inventory, objects: LabObjects, all_namespaces: bool,
          wide: bool) -> tuple[list[str], list[list[str]]]:
    """`kubectl get nodes [-o wide]` columns and rows (a node is Ready once it has a pod subnet). The lab has no
    kubelet: VERSION is the lab's, AGE unknown; -o wide adds the pod CIDR, which is what a student looks for."""
    subnets = objects.subnets
    columns = ["NAME", "STATUS", "ROLES", "AGE", "VERSION"]
    columns += ["INTERNAL-IP", "EXTERNAL-IP", "POD-CIDR"] if wide else []
    rows = []
    for item in found:
        n: Node = item.record
        rows.append([n.name, "Ready" if readiness(n, objects)[0] else "NotReady", "<none>", "<unknown>",
                     f"cluster-lab-{__version__}"]
                    + ([str(n.address), "<none>", subnets.get(n.name) or "<none>"] if wide else []))
    return columns, rows


def describe(item: Item, inv: Inventory, objects: LabObjects) -> list[tuple[str, str]]:
    """`kubectl describe node` as (label, value) lines: addresses, pod CIDR and the pods on it."""
    node: Node = item.record
    subnet = objects.subnets.get(node.name)
    pods = sorted((p for p in objects.pods.values() if p.node == node.name), key=lambda p: (p.namespace, p.name))
    lines = [("Name:", node.name), ("Roles:", "<none>"), ("Labels:", fmt_labels(node.labels) or "<none>"),
             ("Addresses:", ""), ("  InternalIP:", str(node.address)), ("  Hostname:", node.name),
             ("PodCIDR:", subnet or "<none>"), ("PodCIDRs:", subnet or "<none>"),
             ("Ready:", "True" if readiness(node, objects)[0] else f"False ({readiness(node, objects)[1]})"),
             ("Non-terminated Pods:", f"({len(pods)} in total)"), ("  Namespace", "Name  IP")]
    lines += [(f"  {p.namespace}", f"{p.name}  {p.ip or '<none>'}") for p in pods]
    return lines + [("Events:", "<none>")]


NODE = register(Kind("Node", "nodes", "node", short_names=("no",), namespaced=False, items=items, to_json=to_json,
                     table=table, describe=describe))

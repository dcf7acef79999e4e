"""Namespaces: the built-in ones and those applied, with their labels (NetworkPolicies select by them); deleting
one deletes everything in it."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from orchestrator.core.errors import InputError
from orchestrator.core.manifests import NAMESPACE_NAME_LABEL, Doc, Manifest, Warn
from orchestrator.core.model import Inventory
from orchestrator.core.objects import LabObjects, Namespace, applied
from orchestrator.kinds.registry import Item, Kind, Plan, register
from orchestrator.kinds.show import age, described_labels
from orchestrator.layers.pods.namespaces import BUILT_IN_NAMESPACES, drop_namespace, namespace_labels


def parse(doc: Doc, head: Manifest, warn: Warn) -> Manifest:
    return replace(head, labels={**head.labels, NAMESPACE_NAME_LABEL: head.name})


def record(m: Manifest, plan: Plan) -> str:
    old = plan.objects.namespaces.get(m.name)
    namespace = Namespace(m.name, dict(m.labels), old.created if old else plan.stamp)
    plan.objects.namespaces[m.name] = namespace
    return applied(old, old == namespace)


def forget(m: Manifest, plan: Plan) -> str:
    """Forget the namespace and what is in it; its pods join the pods the plan deletes."""
    if m.name in BUILT_IN_NAMESPACES:
        raise InputError(f"{m.source}: metadata.name: namespace {m.name!r} is built in and cannot be deleted; "
                         "delete the objects in it instead")
    existed = m.name in plan.objects.namespaces
    doomed = {id(p) for p in plan.pods.delete}
    plan.pods.delete += [p for p in drop_namespace(plan.objects, m.name) if id(p) not in doomed]
    return "deleted" if existed else "not found"


def items(inv: Inventory, objects: LabObjects) -> list[Item]:
    return [Item(name, "", labels, name) for name, labels in sorted(namespace_labels(objects).items())]


def to_json(item: Item, inv: Inventory, objects: LabObjects) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": item.name, "labels": item.labels}}


def table(found: list[Item], inv: Inventory, objects: LabObjects, all_namespaces: bool,
          wide: bool) -> tuple[list[str], list[list[str]]]:
    """`kubectl get ns` columns and rows (a built-in namespace's age is unknown)."""
    kept = objects.namespaces
    return ["NAME", "STATUS", "AGE"], [[item.name, "Active", age(kept[item.name].created) if item.name in kept
                                        else "<unknown>"] for item in found]


def describe(item: Item, inv: Inventory, objects: LabObjects) -> list[tuple[str, str]]:
    return [("Name:", item.name), ("Labels:", described_labels(item.labels)),
            ("Annotations:", "<none>"), ("Status:", "Active"), ("", ""),
            ("No resource quota.", ""), ("", ""), ("No LimitRange resource.", "")]


NAMESPACE = register(Kind("Namespace", "namespaces", "namespace", short_names=("ns",), namespaced=False,
                          parse=parse, name_rule="label", schema_first=True, order=0, record=record, forget=forget,
                          items=items, to_json=to_json, table=table, describe=describe))

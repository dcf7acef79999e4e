"""What kinds kept as written share (MetalLB's and the Gateway API's): their spec is checked when applied, stored
as written with its creation time, listed by `lab get` and shown by `-o json` with the status derived now."""

from __future__ import annotations

from typing import Any, Callable, Optional

from orchestrator.core.manifests import Manifest
from orchestrator.core.model import Inventory
from orchestrator.core.objects import LabObjects, applied
from orchestrator.kinds.registry import Item, Plan, forgotten
from orchestrator.kinds.show import kept_items, kept_json


def kept_record(name: str, namespace: str, labels: Any, spec: Any, created: str,
                annotations: Any = None) -> dict[str, Any]:
    """How such an object is kept: its spec as written, checked when it was applied (and its annotations, where
    it has any: an IngressClass's say whether it is the default)."""
    record = {"name": name, "namespace": namespace, "labels": dict(labels), "spec": spec, "created": created}
    return {**record, "annotations": dict(annotations)} if annotations else record


def written_spec(m: Manifest) -> Any:
    return m.raw.get("spec") or {}


def recorder(kind: str, kept_part: Callable[[Manifest], Any] = written_spec) -> Callable[[Manifest, Plan], str]:
    """`record` for a kept kind: store the manifest's spec (or what `kept_part` takes of it), keeping its creation
    time when it changes."""
    def record(m: Manifest, plan: Plan) -> str:
        store = plan.objects.kept(kind)
        old = store.get(m.key)
        new = kept_record(m.name, m.namespace, m.labels, kept_part(m), old["created"] if old else plan.stamp,
                          m.annotations)
        store[m.key] = new
        return applied(old, old == new)
    return record


def forgetter(kind: str) -> Callable[[Manifest, Plan], str]:
    def forget(m: Manifest, plan: Plan) -> str:
        return forgotten(plan.objects.kept(kind), m.key)
    return forget


def lister(kind: str) -> Callable[[Inventory, LabObjects], list[Item]]:
    def items(inv: Inventory, objects: LabObjects) -> list[Item]:
        return [Item(*fields) for fields in kept_items(objects.kept(kind))]
    return items


def json_shower(kind: str, api_version: str, status: Optional[Callable[[Item, LabObjects], dict[str, Any]]] = None
                ) -> Callable[[Item, Inventory, LabObjects], dict[str, Any]]:
    def to_json(item: Item, inv: Inventory, objects: LabObjects) -> dict[str, Any]:
        shown = kept_json(item.record, api_version, kind)
        if status is not None:
            shown["status"] = status(item, objects)
        return shown
    return to_json

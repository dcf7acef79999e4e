"""A kind the lab does not ship, added as one module, as the edge kinds were: a Widget (example.com/v1, data:
string to string; no published schema), kept with the lab's objects, shown by `lab get wg` and `lab describe
wg`, and put on every node (its `converge`: here, the number of Widgets, sent to each node's agent as a
flush-caches call stands for a file a real kind would write). Importing it registers it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from orchestrator.core.manifests import Doc, Manifest, Warn
from orchestrator.core.model import Inventory
from orchestrator.core.objects import LabObjects, applied
from orchestrator.kinds.registry import Item, Kind, Plan, forgotten, register
from orchestrator.kinds.show import age, lead, lead_columns


@dataclass
class Widget:
    name: str
    namespace: str
    data: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    created: str = ""


def parse(doc: Doc, head: Manifest, warn: Warn) -> Manifest:
    data = doc.data.get("data") or {}
    if not isinstance(data, dict):
        raise doc.error("data", "expected a mapping of key: value", "write e.g. `data: {color: blue}`")
    for key, value in data.items():
        if not isinstance(value, str):
            raise doc.error(f"data.{key}", f"{value!r} is not a string", "quote the value")
    return replace(head, spec=dict(data))


def record(m: Manifest, plan: Plan) -> str:
    kept = plan.objects.kept("Widget")
    old = kept.get(m.key)
    new = Widget(m.name, m.namespace, m.spec, dict(m.labels), old["created"] if old else plan.stamp)
    kept[m.key] = asdict(new)
    return applied(old, old == kept[m.key])


def forget(m: Manifest, plan: Plan) -> str:
    return forgotten(plan.objects.kept("Widget"), m.key)


def items(inv: Inventory, objects: LabObjects) -> list[Item]:
    found = [Widget(**record) for _, record in sorted(objects.kept("Widget").items())]
    return [Item(c.name, c.namespace, c.labels, c) for c in found]


def to_json(item: Item, inv: Inventory, objects: LabObjects) -> dict:
    c: Widget = item.record
    return {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": c.name, "namespace": c.namespace},
            "data": c.data}


def table(found: list[Item], inv: Inventory, objects: LabObjects, all_namespaces: bool,
          wide: bool) -> tuple[list[str], list[list[str]]]:
    return (lead_columns(all_namespaces) + ["NAME", "DATA", "AGE"],
            [lead(i.namespace, all_namespaces) + [i.name, str(len(i.record.data)), age(i.record.created)]
             for i in found])


def describe(item: Item, inv: Inventory, objects: LabObjects) -> list[tuple[str, str]]:
    c: Widget = item.record
    return [("Name:", c.name), ("Namespace:", c.namespace), ("Data", ""), ("====", "")] + \
        [(f"{key}:", value) for key, value in sorted(c.data.items())]


def converge(inv: Inventory, transport: Any, objects: LabObjects) -> list[str]:
    """Tell every node how many Widgets the lab has (what a real kind would write is its own config)."""
    failures = []
    for node in inv.nodes:
        try:
            transport.run(node, ["widgets", str(len(objects.kept("Widget")))])
        except Exception as exc:  # noqa: BLE001 - a node's failure is reported, the others go on
            failures.append(str(exc))
    return failures


WIDGET = register(Kind("Widget", "widgets", "widget", api_version="example.com/v1", short_names=("wg",),
                       schema=None, parse=parse, record=record, forget=forget, items=items, to_json=to_json,
                       table=table, describe=describe, converge=converge))

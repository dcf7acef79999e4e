"""Events (`lab get events`, `lab events`, and the Events of `lab describe`): what the lab recorded it did
(core/events.py), shown as kubectl shows Kubernetes' events. Never applied."""

from __future__ import annotations

import hashlib
from typing import Any

from orchestrator.core.events import Event, events_of
from orchestrator.core.model import Inventory
from orchestrator.core.objects import LabObjects
from orchestrator.kinds.registry import Item, Kind, register
from orchestrator.kinds.show import age, lead, lead_columns


def event_name(event: Event) -> str:
    """<object>.<16 hex>, as the API server names events."""
    digest = hashlib.sha256(f"{event.kind}/{event.namespace}/{event.name}/{event.reason}/{event.message}/"
                            f"{event.first}".encode()).hexdigest()[:16]
    return f"{event.name}.{digest}"


def items(inv: Inventory, objects: LabObjects) -> list[Item]:
    return [Item(event_name(e), e.namespace, {}, e) for e in sorted(objects.events, key=lambda e: e.last)]


def to_json(item: Item, inv: Inventory, objects: LabObjects) -> dict[str, Any]:
    e: Event = item.record
    return {"apiVersion": "v1", "kind": "Event", "metadata": {"name": item.name, "namespace": e.namespace},
            "involvedObject": {"kind": e.kind, "name": e.name, "namespace": e.namespace},
            "reason": e.reason, "message": e.message, "type": e.type, "count": e.count,
            "firstTimestamp": e.first, "lastTimestamp": e.last, "source": {"component": e.source},
            "reportingComponent": e.source}


def table(found: list[Item], inv: Inventory, objects: LabObjects, all_namespaces: bool,
          wide: bool) -> tuple[list[str], list[list[str]]]:
    """`kubectl get events` columns and rows, oldest first."""
    rows = []
    for item in found:
        e: Event = item.record
        seen = age(e.last) + (f" (x{e.count} over {age(e.first)})" if e.count > 1 else "")
        rows.append(lead(e.namespace, all_namespaces) + [seen, e.type, e.reason, f"{e.kind.lower()}/{e.name}",
                                                         e.message])
    return lead_columns(all_namespaces) + ["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"], rows


def described(objects: LabObjects, kind: str, namespace: str, name: str) -> list[tuple[str, str]]:
    """`kubectl describe`'s Events of one object: Type, Reason, Age, From, Message."""
    rows = [(e.type, e.reason, age(e.last) + (f" (x{e.count} over {age(e.first)})" if e.count > 1 else ""),
             e.source, e.message) for e in events_of(objects.events, kind, namespace, name)]
    if not rows:
        return [("Events:", "<none>")]
    table_ = [("Type", "Reason", "Age", "From", "Message"), ("----", "------", "----", "----", "-------"), *rows]
    widths = [max(len(r[i]) for r in table_) for i in range(4)]
    return [("Events:", "")] + [("  " + "  ".join(c.ljust(w) for c, w in zip(r[:4], widths, strict=True)) + "  "
                                 + r[4], "") for r in table_]


EVENTS = register(Kind("Event", "events", "event", short_names=("ev",), items=items, to_json=to_json, table=table))

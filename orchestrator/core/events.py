"""Events: what the lab did to an object, as Kubernetes' components report it (pure). A pod scheduled to a node,
its network set up and its process started, stopped; a Deployment scaled; a Service's endpoints changed; a
NetworkPolicy's rules loaded; a check of `lab verify` failed. The same event again (same object, reason and
message) counts up instead of adding a line, as the API server aggregates them; the newest EVENTS_KEPT stay."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

EVENTS_KEPT = 1000
NORMAL, WARNING = "Normal", "Warning"


@dataclass
class Event:
    type: str  # Normal or Warning
    reason: str  # Scheduled, Started, Killing, ScalingReplicaSet, ...
    kind: str  # the object's kind (Pod, Deployment, Service, NetworkPolicy)
    namespace: str
    name: str
    message: str
    source: str  # the component that reports it: default-scheduler, kubelet, ...
    first: str  # timestamps, as the lab writes them (2026-12-05T18:00:00Z)
    last: str
    count: int = 1

    @property
    def involved(self) -> tuple[str, str, str]:
        return self.kind, self.namespace, self.name

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Event":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def add_event(events: list[Event], now: str, type_: str, reason: str, involved: tuple[str, str, str], message: str,
              source: str) -> None:
    """Record one event in `events` (oldest first): the same one again counts up and moves to the end."""
    kind, namespace, name = involved
    for i, event in enumerate(events):
        if (event.involved, event.reason, event.message, event.type) == (involved, reason, message, type_):
            event.count += 1
            event.last = now
            events.append(events.pop(i))
            break
    else:
        events.append(Event(type_, reason, kind, namespace, name, message, source, now, now))
    del events[:-EVENTS_KEPT]


def events_of(events: list[Event], kind: str, namespace: str, name: str) -> list[Event]:
    """The events of one object, oldest first."""
    return [e for e in events if e.involved == (kind, namespace, name)]

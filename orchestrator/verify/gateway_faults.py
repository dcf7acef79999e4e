"""Faults made of Gateway API objects (pure planning): a route's backend port written wrong, a listener hostname
that no route's hostnames match. `lab break` applies the changed object and records the one it replaced;
`lab fix` applies that again. Unlike a NetworkPolicy, a route carries its intent in what it names, so
`lab verify` needs no record of what was meant: its checks send each match's request and expect the route's
backends to answer."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from orchestrator.core.errors import InputError
from orchestrator.core.objects import LabObjects
from orchestrator.layers.gateway.routes import GATEWAY_API, GATEWAY_KIND, ROUTE_KIND
from orchestrator.layers.gateway.world import attachment_of


@dataclass(frozen=True)
class ObjectBreak:
    document: dict[str, Any]  # the object as `lab break` applies it
    restore: dict[str, Any]  # the object as it was, which `lab fix` applies again
    summary: str

    def record(self, fault: str) -> dict[str, Any]:
        meta = self.document["metadata"]
        return {"fault": fault, "kind": self.document["kind"], "key": f"{meta['namespace']}/{meta['name']}",
                "document": self.document, "restore": self.restore}


def manifest_of(kind: str, record: dict[str, Any]) -> dict[str, Any]:
    """A kept record as the manifest that made it."""
    return {"apiVersion": GATEWAY_API, "kind": kind,
            "metadata": {"name": record["name"], "namespace": record["namespace"],
                         "labels": record.get("labels") or {}},
            "spec": copy.deepcopy(record["spec"])}


def wrong_backend_port(objects: LabObjects, node: str) -> ObjectBreak:
    """The first served route's first Service backendRef gets a port its Service does not have."""
    _, attachment = attachment_of(objects)
    served = sorted({a.route for a in attachment.attached})
    for key in served:
        record = objects.kept(ROUTE_KIND)[key]
        for r, rule in enumerate(record["spec"].get("rules") or []):
            for b, backend in enumerate(rule.get("backendRefs") or []):
                service = objects.services.get(f"{backend.get('namespace') or record['namespace']}/{backend['name']}")
                if service is None or backend.get("kind", "Service") != "Service":
                    continue
                wrong = max(p.port for p in service.ports) + 1
                document = manifest_of(ROUTE_KIND, record)
                document["spec"]["rules"][r]["backendRefs"][b]["port"] = wrong
                return ObjectBreak(document, manifest_of(ROUTE_KIND, record),
                                   f"changed HTTPRoute {key} rule {r}: backendRef {service.name} port "
                                   f"{backend.get('port')} -> {wrong}, a port the Service does not have")
    raise InputError("fault gateway-backend-port needs an HTTPRoute a Gateway serves, to a Service; "
                     "lab apply -f examples/gateway.yaml")


def listener_hostname(objects: LabObjects, node: str) -> ObjectBreak:
    """A served listener whose routes name hostnames gets a hostname none of them matches."""
    world, attachment = attachment_of(objects)
    for attached in sorted(attachment.attached, key=lambda a: (a.gateway, a.listener)):
        if not world.routes[attached.route].hostnames:
            continue
        record = objects.kept(GATEWAY_KIND)[attached.gateway]
        document = manifest_of(GATEWAY_KIND, record)
        listener = next(li for li in document["spec"]["listeners"] if li["name"] == attached.listener)
        old = listener.get("hostname") or "(any)"
        listener["hostname"] = "nothing.invalid"
        return ObjectBreak(document, manifest_of(GATEWAY_KIND, record),
                           f"changed Gateway {attached.gateway} listener {attached.listener} hostname {old} -> "
                           "nothing.invalid: no route's hostnames match it")
    raise InputError("fault listener-hostname needs a Gateway serving an HTTPRoute with hostnames; "
                     "lab apply -f examples/gateway.yaml")


BREAKS = {"gateway-backend-port": wrong_backend_port, "listener-hostname": listener_hostname}

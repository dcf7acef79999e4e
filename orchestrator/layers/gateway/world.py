"""The lab's objects as the Gateway API controller reads them, and the status it derives, in the JSON shape the
spec's objects carry (read every time from what the lab has now: nothing of it is stored)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from orchestrator.core.objects import LabObjects, key_of
from orchestrator.layers.gateway.routes import (CLASS_KIND, CONTROLLER_NAME, GATEWAY_KIND, GRANT_KIND, ROUTE_KIND,
                                                Attachment, Condition, Gateway, GatewayStatus, ParentStatus, World,
                                                attach, parse_class, parse_gateway, parse_grant, parse_route)
from orchestrator.layers.gateway.ingress import (INGRESS_CLASS_KIND, INGRESS_GATEWAY, INGRESS_GATEWAY_CLASS,
                                                 INGRESS_KIND, class_of, ingress_routes, served_classes, tls_listeners)
from orchestrator.layers.gateway.tls import SECRET_KIND, TLS_TYPE, tls_pair
from orchestrator.layers.pods.namespaces import namespace_labels


def proxy_name(gateway: Gateway) -> str:
    """The name of a Gateway's proxy Deployment and Service: <gateway>-<class>, shortened with a digest where that
    is longer than a label may be."""
    if gateway.proxy:
        return gateway.proxy
    name = f"{gateway.name}-{gateway.class_name}"
    return name if len(name) <= 63 else name[:54] + "-" + hashlib.sha256(name.encode()).hexdigest()[:8]


def proxy_key(gateway: Gateway) -> str:
    return key_of(gateway.namespace, proxy_name(gateway))


def world_of(objects: LabObjects) -> World:
    """Every Gateway API object the lab keeps (checked when applied), with the Services and namespaces, and each
    Gateway's address (its proxy Service's) and whether its proxy pod runs."""
    def kept(kind: str) -> Iterable[tuple[str, dict[str, Any]]]:
        return sorted(objects.extra.get(kind, {}).items())
    world = World(
        classes={r["name"]: parse_class(r["name"], r["spec"], r["created"], f"{CLASS_KIND} {k}")
                 for k, r in kept(CLASS_KIND)},
        gateways={k: parse_gateway(r["namespace"], r["name"], r["spec"], r["created"], f"{GATEWAY_KIND} {k}")
                  for k, r in kept(GATEWAY_KIND)},
        routes={k: parse_route(r["namespace"], r["name"], r["spec"], r["created"], f"{ROUTE_KIND} {k}")
                for k, r in kept(ROUTE_KIND)},
        grants=[parse_grant(r["namespace"], r["name"], r["spec"], f"{GRANT_KIND} {k}") for k, r in kept(GRANT_KIND)],
        services={k: tuple(p.port for p in s.ports) for k, s in objects.services.items()},
        secrets={k: tls_pair(r["spec"]["data"]) for k, r in kept(SECRET_KIND) if r["spec"]["type"] == TLS_TYPE},
        namespace_labels=namespace_labels(objects))
    add_ingresses(world, objects)
    for key, gateway in world.gateways.items():
        proxy = objects.services.get(proxy_key(gateway))
        if proxy is not None and proxy.load_balancer_ip:
            world.addresses[key] = proxy.load_balancer_ip
        if any(p.ip and p.node for p in objects.pods_of(f"Deployment/{proxy_key(gateway)}")):
            world.programmed.add(key)
    return world


def served_ingresses(objects: LabObjects) -> list[tuple[str, dict[str, Any]]]:
    """(key, record) of the Ingresses the lab's controller serves: of its IngressClass, or of none where that is
    the default."""
    ours, default = served_classes(objects.extra.get(INGRESS_CLASS_KIND, {}))
    return [(key, r) for key, r in sorted(objects.extra.get(INGRESS_KIND, {}).items())
            if class_of(r["spec"], default) in ours]


def ingress_address(objects: LabObjects, key: str) -> str:
    """The ingress controller's address for Ingress `key` (namespace/name), where the controller serves it; else
    "" (status.loadBalancer.ingress stays empty)."""
    if not any(served == key for served, _ in served_ingresses(objects)):
        return ""
    return world_of(objects).addresses.get(INGRESS_GATEWAY.key, "")


def add_ingresses(world: World, objects: LabObjects) -> None:
    """The served Ingresses as routes on the ingress Gateway (one controller, two front-ends)."""
    served = served_ingresses(objects)
    if not served:
        return
    ports = {k: tuple(s.ports) for k, s in objects.services.items()}
    world.classes.setdefault(INGRESS_GATEWAY_CLASS.name, INGRESS_GATEWAY_CLASS)
    oldest_first = sorted(served, key=lambda item: (item[1]["created"], item[0]))
    world.gateways[INGRESS_GATEWAY.key] = replace(INGRESS_GATEWAY, listeners=INGRESS_GATEWAY.listeners + tls_listeners(
        [(r["namespace"], r["spec"]) for _, r in oldest_first]))
    for _, record in served:
        for route in ingress_routes(record["namespace"], record["name"], record["spec"], record["created"], ports):
            world.routes[route.key] = route


def conditions_json(conditions: Iterable[Condition], since: str) -> list[dict[str, Any]]:
    return [{"type": c.type, "status": c.status, "reason": c.reason, "message": c.message,
             "lastTransitionTime": since, "observedGeneration": 1} for c in conditions]


def gateway_json(status: GatewayStatus, since: str) -> dict[str, Any]:
    return {"addresses": [{"type": "IPAddress", "value": status.address}] if status.address else [],
            "conditions": conditions_json(status.conditions, since),
            "listeners": [{"name": li.name, "attachedRoutes": li.attached_routes,
                           "supportedKinds": [{"group": "gateway.networking.k8s.io", "kind": ROUTE_KIND}],
                           "conditions": conditions_json(li.conditions, since)} for li in status.listeners]}


def route_json(parents: Iterable[ParentStatus], since: str) -> dict[str, Any]:
    return {"parents": [{"parentRef": p.ref.as_json(), "controllerName": CONTROLLER_NAME,
                         "conditions": conditions_json(p.conditions, since)} for p in parents]}


def condition(conditions: Iterable[Condition], kind: str) -> str:
    """kubectl's column for one condition: True, False or Unknown."""
    return next((c.status for c in conditions if c.type == kind), "Unknown")


def described_conditions(conditions: Iterable[Condition]) -> str:
    """Conditions as `kubectl describe` lists them: Type Status Reason Message, one a line."""
    return "\n".join(f"{c.type} {c.status} {c.reason}{': ' + c.message if c.message else ''}"
                     for c in conditions) or "<none>"


def attachment_of(objects: LabObjects) -> tuple[World, Attachment]:
    world = world_of(objects)
    return world, attach(world)

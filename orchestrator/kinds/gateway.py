"""Gateway (gateway.networking.k8s.io/v1): listeners (port, protocol, hostname, TLS, which routes they take) on
an address from the LoadBalancer pool, served by the lab's proxy when its class is the lab's."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from orchestrator.core.manifests import Doc, Manifest, Warn
from orchestrator.core.model import Inventory
from orchestrator.core.objects import LabObjects
from orchestrator.kinds import ipaddresspool
from orchestrator.kinds.kept import forgetter, json_shower, lister, recorder
from orchestrator.kinds.registry import Item, Kind, Plan, load_text, manifest, manifest_kind, register
from orchestrator.kinds.show import age, described_labels, lead, lead_columns
from orchestrator.layers.gateway.proxy import is_proxy_service, proxy_configs, proxy_yaml
from orchestrator.layers.gateway.routes import GATEWAY_API, GATEWAY_KIND, parse_gateway
from orchestrator.layers.gateway.world import attachment_of, condition, described_conditions, gateway_json, world_of
from orchestrator.layers.services.apply import contribute

contribute(proxy_configs)  # every service sync carries the proxies' nginx.conf


def parse(doc: Doc, head: Manifest, warn: Warn) -> Manifest:
    return replace(head, spec=parse_gateway(head.namespace, head.name, doc.data.get("spec"), "", head.source))


def settle(plan: Plan) -> None:
    """Every Gateway of the lab's class has its proxy (Deployment and LoadBalancer Service, made as the Gateway's
    listeners say), and no other Gateway has one; the proxies' Services then get their addresses."""
    world = world_of(plan.objects)
    wanted = [m for key, gateway in sorted(world.gateways.items()) if world.classes.get(gateway.class_name)
              and world.classes[gateway.class_name].ours for m in load_text(*proxy_yaml(gateway))]
    for m in wanted:
        manifest_kind(m).record(m, plan)  # type: ignore[misc]
    keep = {m.key for m in wanted}
    for key, service in sorted(plan.objects.services.items()):
        if key not in keep and is_proxy_service(service.labels):
            for kind in ("Deployment", "Service"):
                m = manifest(kind, service.name, service.namespace, f"the proxy of a Gateway gone ({key})")
                manifest_kind(m).forget(m, plan)  # type: ignore[misc]
    ipaddresspool.settle(plan)


def status(item: Item, objects: LabObjects) -> dict[str, Any]:
    found = attachment_of(objects)[1].gateways.get(f"{item.namespace}/{item.name}")
    return gateway_json(found, item.record["created"]) if found else {}


def table(found: list[Item], inv: Inventory, objects: LabObjects, all_namespaces: bool,
          wide: bool) -> tuple[list[str], list[list[str]]]:
    """The CRD's columns: NAME, CLASS, ADDRESS, PROGRAMMED, AGE."""
    gateways = attachment_of(objects)[1].gateways
    rows = []
    for item in found:
        state = gateways.get(f"{item.namespace}/{item.name}")
        rows.append(lead(item.namespace, all_namespaces) + [
            item.name, str(item.record["spec"].get("gatewayClassName", "")), (state.address or "") if state else "",
            condition(state.conditions, "Programmed") if state else "Unknown", age(item.record["created"])])
    return lead_columns(all_namespaces) + ["NAME", "CLASS", "ADDRESS", "PROGRAMMED", "AGE"], rows


def describe(item: Item, inv: Inventory, objects: LabObjects) -> list[tuple[str, str]]:
    state = attachment_of(objects)[1].gateways.get(f"{item.namespace}/{item.name}")
    gateway = parse_gateway(item.namespace, item.name, item.record["spec"], item.record["created"], item.name)
    lines = [("Name:", item.name), ("Namespace:", item.namespace), ("Labels:", described_labels(item.labels)),
             ("API Version:", GATEWAY_API), ("Kind:", GATEWAY_KIND), ("Gateway Class Name:", gateway.class_name),
             ("Addresses:", (state.address or "<none>") if state else "<none>")]
    if state is None:
        return lines + [("Conditions:", "<none> (its class is not the lab's)"), ("Events:", "<none>")]
    lines.append(("Conditions:", described_conditions(state.conditions)))
    for listener, shown in zip(gateway.listeners, state.listeners, strict=True):
        lines.append((f"Listener {listener.name}:", f"{listener.protocol} port {listener.port}, hostname "
                      f"{listener.hostname or '*'}, routes from {listener.routes_from}, "
                      f"{shown.attached_routes} attached\n{described_conditions(shown.conditions)}"))
    return lines + [("Events:", "<none>")]


GATEWAY = register(Kind(GATEWAY_KIND, "gateways", "gateway.gateway.networking.k8s.io", api_version=GATEWAY_API,
                        short_names=("gtw",), parse=parse, order=60, record=recorder(GATEWAY_KIND), settle=settle,
                        forget=forgetter(GATEWAY_KIND), items=lister(GATEWAY_KIND),
                        to_json=json_shower(GATEWAY_KIND, GATEWAY_API, status), table=table, describe=describe))

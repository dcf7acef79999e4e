"""HTTPRoute (gateway.networking.k8s.io/v1): hostnames, matches (path, headers, query, method), filters and
weighted backends, attached to Gateway listeners; its status says per parent whether it is served, and why not."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from orchestrator.core.manifests import Doc, Manifest, Warn
from orchestrator.core.model import Inventory
from orchestrator.core.objects import LabObjects
from orchestrator.kinds.kept import forgetter, json_shower, lister, recorder
from orchestrator.kinds.registry import Item, Kind, register
from orchestrator.kinds.show import age, described_labels, lead, lead_columns
from orchestrator.layers.gateway.routes import GATEWAY_API, ROUTE_KIND, parse_route
from orchestrator.layers.gateway.world import attachment_of, described_conditions, route_json


def parse(doc: Doc, head: Manifest, warn: Warn) -> Manifest:
    return replace(head, spec=parse_route(head.namespace, head.name, doc.data.get("spec"), "", head.source))


def status(item: Item, objects: LabObjects) -> dict[str, Any]:
    return route_json(attachment_of(objects)[1].routes.get(f"{item.namespace}/{item.name}", ()),
                      item.record["created"])


def table(found: list[Item], inv: Inventory, objects: LabObjects, all_namespaces: bool,
          wide: bool) -> tuple[list[str], list[list[str]]]:
    """The CRD's columns: NAME, HOSTNAMES, AGE."""
    rows = [lead(item.namespace, all_namespaces) + [
        item.name, '["' + '","'.join(item.record["spec"].get("hostnames")) + '"]'
        if item.record["spec"].get("hostnames") else "", age(item.record["created"])] for item in found]
    return lead_columns(all_namespaces) + ["NAME", "HOSTNAMES", "AGE"], rows


def describe(item: Item, inv: Inventory, objects: LabObjects) -> list[tuple[str, str]]:
    route = parse_route(item.namespace, item.name, item.record["spec"], item.record["created"], item.name)
    lines = [("Name:", item.name), ("Namespace:", item.namespace), ("Labels:", described_labels(item.labels)),
             ("API Version:", GATEWAY_API), ("Kind:", ROUTE_KIND),
             ("Hostnames:", ", ".join(route.hostnames) or "<any>")]
    for i, rule in enumerate(route.rules):
        matches = "; ".join(f"{m.path.type} {m.path.value}" + (f" {m.method}" if m.method else "")
                            + "".join(f" header {h.name}={h.value}" for h in m.headers)
                            + "".join(f" query {q.name}={q.value}" for q in m.query) for m in rule.matches)
        backends = ", ".join(f"{b.key}:{b.port} weight {b.weight}" for b in rule.backends) or "<none>"
        lines.append((f"Rule {i}:", f"{matches} -> {backends}"))
    parents = attachment_of(objects)[1].routes.get(f"{item.namespace}/{item.name}", ())
    for parent in parents:
        lines.append((f"Parent {parent.ref.key}:", described_conditions(parent.conditions)))
    if not parents:
        lines.append(("Parents:", "<none> of the lab's Gateways"))
    return lines + [("Events:", "<none>")]


HTTP_ROUTE = register(Kind(ROUTE_KIND, "httproutes", "httproute.gateway.networking.k8s.io", api_version=GATEWAY_API,
                           parse=parse, order=60, record=recorder(ROUTE_KIND),
                           forget=forgetter(ROUTE_KIND), items=lister(ROUTE_KIND),
                           to_json=json_shower(ROUTE_KIND, GATEWAY_API, status), table=table, describe=describe))

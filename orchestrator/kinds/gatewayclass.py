"""GatewayClass (gateway.networking.k8s.io/v1): which controller serves the Gateways of a class. The lab's
controller serves the classes naming it (`lab deploy` installs one, `lab`, as an implementation's install does)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from orchestrator.core.manifests import Doc, Manifest, Warn
from orchestrator.core.model import Inventory
from orchestrator.core.objects import LabObjects
from orchestrator.kinds.kept import forgetter, json_shower, lister, recorder
from orchestrator.kinds.registry import Item, Kind, register
from orchestrator.kinds.show import age, described_labels
from orchestrator.layers.gateway.routes import CLASS_KIND, GATEWAY_API, parse_class
from orchestrator.layers.gateway.world import (attachment_of, condition, conditions_json, described_conditions)


def parse(doc: Doc, head: Manifest, warn: Warn) -> Manifest:
    return replace(head, spec=parse_class(head.name, doc.data.get("spec"), "", head.source))


def status(item: Item, objects: LabObjects) -> dict[str, Any]:
    conditions = attachment_of(objects)[1].classes.get(item.name)
    return {"conditions": conditions_json(conditions, item.record["created"])} if conditions else {}


def table(found: list[Item], inv: Inventory, objects: LabObjects, all_namespaces: bool,
          wide: bool) -> tuple[list[str], list[list[str]]]:
    """The CRD's columns: NAME, CONTROLLER, ACCEPTED, AGE (and DESCRIPTION with -o wide)."""
    classes = attachment_of(objects)[1].classes
    rows = [[item.name, str(item.record["spec"].get("controllerName", "")),
             condition(classes.get(item.name, ()), "Accepted"), age(item.record["created"])]
            + ([str(item.record["spec"].get("description") or "")] if wide else []) for item in found]
    return ["NAME", "CONTROLLER", "ACCEPTED", "AGE"] + (["DESCRIPTION"] if wide else []), rows


def describe(item: Item, inv: Inventory, objects: LabObjects) -> list[tuple[str, str]]:
    spec = item.record["spec"]
    conditions = attachment_of(objects)[1].classes.get(item.name, ())
    return [("Name:", item.name), ("Labels:", described_labels(item.labels)), ("API Version:", GATEWAY_API),
            ("Kind:", CLASS_KIND), ("Controller Name:", str(spec.get("controllerName", ""))),
            ("Description:", str(spec.get("description") or "<none>")),
            ("Conditions:", described_conditions(conditions) if conditions else "<none> (another controller's class)"),
            ("Events:", "<none>")]


GATEWAY_CLASS = register(Kind(CLASS_KIND, "gatewayclasses", "gatewayclass.gateway.networking.k8s.io",
                              api_version=GATEWAY_API, short_names=("gc",), namespaced=False, parse=parse,
                              order=20, record=recorder(CLASS_KIND), forget=forgetter(CLASS_KIND),
                              items=lister(CLASS_KIND), to_json=json_shower(CLASS_KIND, GATEWAY_API, status),
                              table=table, describe=describe))

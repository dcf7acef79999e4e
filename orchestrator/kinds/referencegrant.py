"""ReferenceGrant (gateway.networking.k8s.io/v1beta1): lives in the namespace of what it shares, and lets routes
(or Gateways) of other namespaces refer to it; without one, a cross-namespace backendRef or certificateRef is
refused in the referrer's status (RefNotPermitted)."""

from __future__ import annotations

from dataclasses import replace

from orchestrator.core.manifests import Doc, Manifest, Warn
from orchestrator.core.model import Inventory
from orchestrator.core.objects import LabObjects
from orchestrator.kinds.kept import forgetter, json_shower, lister, recorder
from orchestrator.kinds.registry import Item, Kind, register
from orchestrator.kinds.show import age, described_labels, lead, lead_columns
from orchestrator.layers.gateway.routes import GRANT_API, GRANT_KIND, parse_grant


def parse(doc: Doc, head: Manifest, warn: Warn) -> Manifest:
    return replace(head, spec=parse_grant(head.namespace, head.name, doc.data.get("spec"), head.source))


def table(found: list[Item], inv: Inventory, objects: LabObjects, all_namespaces: bool,
          wide: bool) -> tuple[list[str], list[list[str]]]:
    rows = [lead(item.namespace, all_namespaces) + [item.name, age(item.record["created"])] for item in found]
    return lead_columns(all_namespaces) + ["NAME", "AGE"], rows


def describe(item: Item, inv: Inventory, objects: LabObjects) -> list[tuple[str, str]]:
    grant = parse_grant(item.namespace, item.name, item.record["spec"], item.name)
    return [("Name:", item.name), ("Namespace:", item.namespace), ("Labels:", described_labels(item.labels)),
            ("API Version:", GRANT_API), ("Kind:", GRANT_KIND),
            ("From:", "\n".join(f"{kind}.{group or 'core'} in {ns}" for group, kind, ns in grant.sources)),
            ("To:", "\n".join(f"{kind}.{group or 'core'} {name or '(any name)'}"
                               for group, kind, name in grant.targets)),
            ("Events:", "<none>")]


REFERENCE_GRANT = register(Kind(GRANT_KIND, "referencegrants", "referencegrant.gateway.networking.k8s.io",
                                api_version=GRANT_API, short_names=("refgrant",), parse=parse, order=20,
                                record=recorder(GRANT_KIND), forget=forgetter(GRANT_KIND), items=lister(GRANT_KIND),
                                to_json=json_shower(GRANT_KIND, GRANT_API), table=table, describe=describe))

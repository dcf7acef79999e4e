"""L2Advertisement (metallb.io/v1beta1): which pools' addresses are announced on the nodes' network by ARP, and
from which nodes (layers/services/loadbalancer.py elects one node per address)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from orchestrator.core.manifests import Doc, Manifest, Warn
from orchestrator.core.model import Inventory
from orchestrator.core.objects import LabObjects
from orchestrator.kinds.kept import forgetter, json_shower, lister, recorder
from orchestrator.kinds.registry import Item, Kind, register
from orchestrator.kinds.show import age, described_labels, lead, lead_columns
from orchestrator.layers.services.loadbalancer import ADVERT_KIND, METALLB_API, parse_advertisement


def parse(doc: Doc, head: Manifest, warn: Warn) -> Manifest:
    return replace(head, spec=parse_advertisement(head.key, head.name, doc.data.get("spec"), head.source))


def listed(values: Any) -> str:
    return "[" + ",".join(f'"{v}"' for v in values) + "]" if values else ""


def table(found: list[Item], inv: Inventory, objects: LabObjects, all_namespaces: bool,
          wide: bool) -> tuple[list[str], list[list[str]]]:
    """The columns MetalLB's CRD prints: NAME, IPADDRESSPOOLS, IPADDRESSPOOL SELECTORS, INTERFACES."""
    rows = []
    for item in found:
        spec = item.record["spec"]
        rows.append(lead(item.namespace, all_namespaces) + [
            item.name, listed(spec.get("ipAddressPools")), str(spec.get("ipAddressPoolSelectors") or ""),
            listed(spec.get("interfaces")), age(item.record["created"])])
    return lead_columns(all_namespaces) + ["NAME", "IPADDRESSPOOLS", "IPADDRESSPOOL SELECTORS", "INTERFACES",
                                           "AGE"], rows


def describe(item: Item, inv: Inventory, objects: LabObjects) -> list[tuple[str, str]]:
    spec = item.record["spec"]
    return [("Name:", item.name), ("Namespace:", item.namespace), ("Labels:", described_labels(item.labels)),
            ("API Version:", METALLB_API), ("Kind:", ADVERT_KIND),
            ("IP Address Pools:", ", ".join(spec.get("ipAddressPools") or []) or "<all>"),
            ("Node Selectors:", str(spec.get("nodeSelectors")) if spec.get("nodeSelectors") else "<all nodes>"),
            ("Events:", "<none>")]


L2_ADVERTISEMENT = register(Kind(ADVERT_KIND, "l2advertisements", "l2advertisement.metallb.io",
                                 api_version=METALLB_API, parse=parse, schema=None, order=20,
                                 record=recorder(ADVERT_KIND), forget=forgetter(ADVERT_KIND), items=lister(ADVERT_KIND),
                                 to_json=json_shower(ADVERT_KIND, METALLB_API), table=table, describe=describe))

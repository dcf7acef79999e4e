"""Ingress (networking.k8s.io/v1): host and path rules to Services, served by the lab's controller on the same
proxy as the Gateway API (layers/gateway/ingress.py), with its address in status.loadBalancer.ingress."""

from __future__ import annotations

from typing import Any

from orchestrator.core.errors import InputError
from orchestrator.core.manifests import Doc, Manifest, Warn
from orchestrator.core.model import Inventory
from orchestrator.core.objects import LabObjects
from orchestrator.kinds.kept import forgetter, json_shower, lister, recorder
from orchestrator.kinds.registry import Item, Kind, Plan, register
from orchestrator.kinds.show import age, described_labels, lead, lead_columns
from orchestrator.layers.gateway.ingress import INGRESS_API, INGRESS_KIND, check_ingress, host_paths
from orchestrator.layers.gateway.world import ingress_address


def parse(doc: Doc, head: Manifest, warn: Warn) -> Manifest:
    check_ingress(doc.data.get("spec") or {}, head.source)
    return head


def record(m: Manifest, plan: Plan) -> str:
    """Refuses a host and path another Ingress routes already (the controller could serve only one of them)."""
    mine = host_paths(m.raw.get("spec") or {})
    for key, other in sorted(plan.objects.kept(INGRESS_KIND).items()):
        clash = sorted(mine & host_paths(other["spec"]))
        if key != m.key and clash:
            host, path, kind = clash[0]
            raise InputError(f"{m.source}: spec.rules: host {host} path {path} ({kind}) is routed by Ingress {key} "
                             "already; give one Ingress each host and path")
    return recorder(INGRESS_KIND)(m, plan)


def address(objects: LabObjects, item: Item) -> str:
    return ingress_address(objects, f"{item.namespace}/{item.name}")


def status(item: Item, objects: LabObjects) -> dict[str, Any]:
    found = address(objects, item)
    return {"loadBalancer": {"ingress": [{"ip": found}]} if found else {}}


def hosts(spec: dict[str, Any]) -> str:
    names = [r.get("host") or "*" for r in spec.get("rules") or []]
    return ",".join(dict.fromkeys(names)) or "*"


def table(found: list[Item], inv: Inventory, objects: LabObjects, all_namespaces: bool,
          wide: bool) -> tuple[list[str], list[list[str]]]:
    """kubectl's columns: NAME, CLASS, HOSTS, ADDRESS, PORTS, AGE."""
    rows = [lead(item.namespace, all_namespaces) + [
        item.name, str(item.record["spec"].get("ingressClassName") or "<none>"), hosts(item.record["spec"]),
        address(objects, item), "80, 443" if item.record["spec"].get("tls") else "80", age(item.record["created"])]
        for item in found]
    return lead_columns(all_namespaces) + ["NAME", "CLASS", "HOSTS", "ADDRESS", "PORTS", "AGE"], rows


def backend_text(backend: dict[str, Any]) -> str:
    service = backend.get("service") or {}
    port = service.get("port") or {}
    return f"{service.get('name', '?')}:{port.get('number') or port.get('name') or '?'}"


def describe(item: Item, inv: Inventory, objects: LabObjects) -> list[tuple[str, str]]:
    spec = item.record["spec"]
    rules = [f"{rule.get('host') or '*'}  {p.get('path', '/')} ({p.get('pathType')})  {backend_text(p['backend'])}"
             for rule in spec.get("rules") or [] for p in (rule.get("http") or {}).get("paths") or []]
    return [("Name:", item.name), ("Namespace:", item.namespace), ("Labels:", described_labels(item.labels)),
            ("Address:", address(objects, item) or "<none>"),
            ("Ingress Class:", str(spec.get("ingressClassName") or "<none> (the default class)")),
            ("Default backend:", backend_text(spec["defaultBackend"]) if spec.get("defaultBackend") else "<default>"),
            ("TLS:", "\n".join(f"{t.get('secretName') or '<no secret>'} terminates {','.join(t.get('hosts') or ['*'])}"
                               for t in spec["tls"]) if spec.get("tls") else "<none>"),
            ("Rules:", "\n".join(["Host  Path (type)  Backends", *rules]) if rules else "<none>"),
            ("Events:", "<none>")]


INGRESS = register(Kind(INGRESS_KIND, "ingresses", "ingress.networking.k8s.io", api_version=INGRESS_API,
                        short_names=("ing",), parse=parse, order=60, record=record, forget=forgetter(INGRESS_KIND),
                        items=lister(INGRESS_KIND), to_json=json_shower(INGRESS_KIND, INGRESS_API, status),
                        table=table, describe=describe))

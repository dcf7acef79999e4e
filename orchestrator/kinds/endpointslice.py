"""EndpointSlices (discovery.k8s.io/v1): the same ready pods as a Service's Endpoints, in the form kube-proxy
reads since Kubernetes 1.21. One slice per Service (the lab's Services are far below the 100 endpoints a slice
holds), named as the EndpointSlice controller names them (<service>-<5 characters>) and labelled
kubernetes.io/service-name, so `lab get endpointslices -l kubernetes.io/service-name=web` finds it. Never applied."""

from __future__ import annotations

import hashlib
from typing import Any

from orchestrator.core.model import Inventory
from orchestrator.core.objects import Endpoint, LabObjects, Service
from orchestrator.kinds.registry import Item, Kind, register
from orchestrator.kinds.show import age, described_labels, lead, lead_columns
from orchestrator.layers.pods.plan import SUFFIX_ALPHABET

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
MANAGED_BY_LABEL = "endpointslice.kubernetes.io/managed-by"
MANAGER = "endpointslice-controller.k8s.io"
SHOWN_ENDPOINTS = 3  # kubectl's ENDPOINTS column: the first three, then "+ N more..."


def slice_name(service: Service) -> str:
    """<service>-<5 characters of Kubernetes' suffix alphabet>, the same for the same Service every time."""
    digest = hashlib.sha256(f"{service.namespace}/{service.name}/{service.created}".encode()).digest()
    return f"{service.name}-{''.join(SUFFIX_ALPHABET[b % len(SUFFIX_ALPHABET)] for b in digest[:5])}"


def items(inv: Inventory, objects: LabObjects) -> list[Item]:
    return [Item(slice_name(s), s.namespace, {SERVICE_NAME_LABEL: s.name, MANAGED_BY_LABEL: MANAGER}, s)
            for _, s in sorted(objects.services.items()) if s.selector]


def slice_of(s: Service, objects: LabObjects) -> tuple[list[dict[str, Any]], list[Endpoint]]:
    """The slice's ports (the target port each Service port reaches) and its endpoints, one per pod."""
    by_port = objects.endpoints.get(s.key, {})
    ports: list[dict[str, Any]] = []
    pods: dict[str, Endpoint] = {}
    for port in s.ports:
        eps = by_port.get(port.name or "", [])
        ports.append({k: v for k, v in {"name": port.name or "", "port": eps[0].port if eps else None,
                                        "protocol": port.protocol}.items() if v is not None})
        for e in eps:
            pods.setdefault(e.pod, e)
    return ports, [pods[name] for name in sorted(pods, key=lambda n: tuple(int(x) for x in pods[n].ip.split(".")))]


def to_json(item: Item, inv: Inventory, objects: LabObjects) -> dict[str, Any]:
    s: Service = item.record
    ports, endpoints = slice_of(s, objects)
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": item.name, "namespace": s.namespace, "labels": item.labels,
                         "ownerReferences": [{"apiVersion": "v1", "kind": "Service", "name": s.name,
                                              "controller": True, "blockOwnerDeletion": True}]},
            "addressType": "IPv4",
            "endpoints": [{"addresses": [e.ip], "conditions": {"ready": True, "serving": True, "terminating": False},
                           **({"nodeName": e.node} if e.node else {}),
                           "targetRef": {"kind": "Pod", "name": e.pod, "namespace": s.namespace}}
                          for e in endpoints],
            "ports": ports}


def table(found: list[Item], inv: Inventory, objects: LabObjects, all_namespaces: bool,
          wide: bool) -> tuple[list[str], list[list[str]]]:
    """`kubectl get endpointslices` columns and rows."""
    rows = []
    for item in found:
        s: Service = item.record
        ports, endpoints = slice_of(s, objects)
        numbers = ",".join(str(p["port"]) for p in ports if "port" in p) or "<unset>"
        shown = ",".join(e.ip for e in endpoints[:SHOWN_ENDPOINTS]) or "<unset>"
        if len(endpoints) > SHOWN_ENDPOINTS:
            shown += f" + {len(endpoints) - SHOWN_ENDPOINTS} more..."
        rows.append(lead(s.namespace, all_namespaces) + [item.name, "IPv4", numbers, shown, age(s.created)])
    return lead_columns(all_namespaces) + ["NAME", "ADDRESSTYPE", "PORTS", "ENDPOINTS", "AGE"], rows


def describe(item: Item, inv: Inventory, objects: LabObjects) -> list[tuple[str, str]]:
    """`kubectl describe endpointslice` as (label, value) lines."""
    s: Service = item.record
    ports, endpoints = slice_of(s, objects)
    lines = [("Name:", item.name), ("Namespace:", s.namespace), ("Labels:", described_labels(item.labels)),
             ("Annotations:", "<none>"), ("AddressType:", "IPv4"), ("Ports:", ""), ("  Name", "Port  Protocol"),
             ("  ----", "----  --------")]
    lines += [(f"  {p['name'] or '<unset>'}", f"{p.get('port', '<unset>')}  {p['protocol']}") for p in ports]
    lines.append(("Endpoints:", "" if endpoints else "<none>"))
    for e in endpoints:
        lines += [("  - Addresses:", e.ip), ("    Conditions:", ""), ("      Ready:", "true"),
                  ("    Hostname:", "<unset>"), ("    TargetRef:", f"Pod/{e.pod}"),
                  ("    NodeName:", e.node or "<unset>"), ("    Zone:", "<unset>")]
    return lines + [("Events:", "<none>")]


ENDPOINT_SLICES = register(Kind("EndpointSlice", "endpointslices", "endpointslice.discovery.k8s.io",
                                api_version="discovery.k8s.io/v1", items=items, to_json=to_json, table=table,
                                describe=describe))

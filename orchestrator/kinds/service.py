"""Services: a ClusterIP (and NodePorts) in front of the pods a selector picks; and their Endpoints, which
`lab get ep` shows as a kind of their own."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from orchestrator.core.manifests import Doc, Manifest, Warn, fmt_labels, service_spec
from orchestrator.core.model import Inventory
from orchestrator.core.objects import LabObjects, Service, applied
from orchestrator.kinds.registry import Item, Kind, Plan, forgotten, register
from orchestrator.kinds.show import age, described_labels, events, lead, lead_columns
from orchestrator.layers.services.loadbalancer import (adverts_of, check_requested, not_announced_reason,
                                                       pending_reason, pools_of, serves_lab)
from orchestrator.layers.pods.namespaces import namespace_labels
from orchestrator.layers.services.plan import AddressBook, check_target_ports, service_record


def parse(doc: Doc, head: Manifest, warn: Warn) -> Manifest:
    spec = doc.sub("spec", required=True)
    return replace(head, selector=spec.labels("selector"), service=service_spec(spec, head.annotations))


def address_book(plan: Plan) -> AddressBook:
    """The ClusterIPs and NodePorts taken, kept current over all the Services of one plan."""
    book = plan.context.get("service-addresses")
    if book is None:
        book = plan.context["service-addresses"] = AddressBook(plan.objects.services, plan.cluster.service_cidr)
    return book


def record(m: Manifest, plan: Plan) -> str:
    old = plan.objects.services.get(m.key)
    service = service_record(m, old, address_book(plan), plan.stamp)
    check_target_ports(service, m.source, plan.pods_after())
    check_requested(service, m.source, pools_of(plan.objects.extra), plan.objects.services)
    plan.objects.services[m.key] = service
    return applied(old, old == service)


def forget(m: Manifest, plan: Plan) -> str:
    return forgotten(plan.objects.services, m.key)


def items(inv: Inventory, objects: LabObjects) -> list[Item]:
    return [Item(s.name, s.namespace, s.labels, s) for _, s in sorted(objects.services.items())]


def ports_text(service: Service) -> str:
    """kubectl's PORT(S): 80/TCP, 80:30080/TCP, 53/UDP,53/TCP."""
    return ",".join(f"{p.port}" + (f":{p.node_port}" if p.node_port else "") + f"/{p.protocol}"
                    for p in service.ports)


def to_json(item: Item, inv: Inventory, objects: LabObjects) -> dict[str, Any]:
    s: Service = item.record
    ports = [{k: v for k, v in {"name": p.name, "protocol": p.protocol, "port": p.port,
                                "targetPort": p.target_port, "nodePort": p.node_port}.items()
              if v is not None} for p in s.ports]
    spec: dict[str, Any] = {"type": s.type, "clusterIP": s.cluster_ip, "clusterIPs": [s.cluster_ip],
                            "selector": s.selector, "ports": ports, "sessionAffinity": s.session_affinity}
    if s.type != "ClusterIP":
        spec["externalTrafficPolicy"] = s.external_traffic_policy
    if s.type == "LoadBalancer":
        spec["allocateLoadBalancerNodePorts"] = s.allocate_node_ports
        spec.update({k: v for k, v in (("healthCheckNodePort", s.health_check_node_port),
                                       ("loadBalancerClass", s.load_balancer_class)) if v is not None})
    ingress = [{"ip": s.load_balancer_ip, "ipMode": "VIP"}] if s.load_balancer_ip else []
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": s.name, "namespace": s.namespace, "labels": s.labels,
                         **({"annotations": s.annotations} if s.annotations else {}), "creationTimestamp": s.created},
            "spec": spec, "status": {"loadBalancer": {"ingress": ingress} if ingress else {}}}


def external_ip(service: Service) -> str:
    """kubectl's EXTERNAL-IP: the LoadBalancer's address, <pending> until it has one, <none> for other types."""
    if service.type != "LoadBalancer":
        return "<none>"
    return service.load_balancer_ip or "<pending>"


def table(found: list[Item], inv: Inventory, objects: LabObjects, all_namespaces: bool,
          wide: bool) -> tuple[list[str], list[list[str]]]:
    """`kubectl get svc [-A] [-o wide]` columns and rows."""
    columns = lead_columns(all_namespaces) + ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"] + \
        (["SELECTOR"] if wide else [])
    rows = []
    for item in found:
        s: Service = item.record
        rows.append(lead(s.namespace, all_namespaces) + [s.name, s.type, s.cluster_ip, external_ip(s), ports_text(s),
                                                         age(s.created)]
                    + ([fmt_labels(s.selector) or "<none>"] if wide else []))
    return columns, rows


def describe(item: Item, inv: Inventory, objects: LabObjects) -> list[tuple[str, str]]:
    """`kubectl describe svc` as (label, value) lines."""
    s: Service = item.record
    lines = [("Name:", s.name), ("Namespace:", s.namespace), ("Labels:", described_labels(s.labels)),
             ("Annotations:", described_labels(s.annotations)), ("Selector:", fmt_labels(s.selector) or "<none>"),
             ("Type:", s.type), ("IP:", s.cluster_ip)]
    if s.load_balancer_ip:
        lines.append(("LoadBalancer Ingress:", s.load_balancer_ip))
    for port in s.ports:
        eps = objects.endpoints.get(s.key, {}).get(port.name or "", [])
        lines += [("Port:", f"{port.name or '<unset>'} {port.port}/{port.protocol}"),
                  ("TargetPort:", f"{port.target_port}/{port.protocol}")]
        if port.node_port:
            lines.append(("NodePort:", f"{port.name or '<unset>'} {port.node_port}/{port.protocol}"))
        lines.append(("Endpoints:", ",".join(e.address for e in eps) or "<none>"))
    lines.append(("Session Affinity:", s.session_affinity))
    if s.type != "ClusterIP":
        lines.append(("External Traffic Policy:", s.external_traffic_policy))
    if s.health_check_node_port:
        lines.append(("HealthCheck NodePort:", str(s.health_check_node_port)))
    if s.load_balancer_class:
        lines.append(("LoadBalancer Class:", s.load_balancer_class))
    return lines + load_balancer_events(s, objects)


def load_balancer_events(s: Service, objects: LabObjects) -> list[tuple[str, str]]:
    """MetalLB's events for a LoadBalancer Service: the address given (or why none) and the node announcing it."""
    if s.type != "LoadBalancer":
        return [("Events:", "<none>")]
    pools = pools_of(objects.extra)
    if not s.load_balancer_ip:
        why = pending_reason(s, pools, namespace_labels(objects)) if serves_lab(s) else \
            f"loadBalancerClass {s.load_balancer_class} is not the lab's"
        return events([("Warning", "AllocationFailed", "lab-controller", why)])
    node = objects.announced.get(s.load_balancer_ip)
    ready = any(objects.endpoints.get(s.key, {}).values())
    assigned = ("Normal", "IPAllocated", "lab-controller", f'Assigned IP ["{s.load_balancer_ip}"]')
    if node:
        return events([assigned, ("Normal", "nodeAssigned", "lab-speaker",
                                  f'announcing from node "{node}" with protocol "layer2"')])
    return events([assigned, ("Warning", "notAnnounced", "lab-speaker",
                              not_announced_reason(s, pools, adverts_of(objects.extra), set(), ready))])


SERVICE = register(Kind("Service", "services", "service", short_names=("svc",), in_all=2, parse=parse,
                        name_rule="label", order=30, record=record, forget=forget, items=items, to_json=to_json,
                        table=table, describe=describe))


# ---- Endpoints: kept by the lab for every Service, never applied ----

def endpoints_json(item: Item, inv: Inventory, objects: LabObjects) -> dict[str, Any]:
    s: Service = item.record
    subsets = []
    for port in s.ports:
        eps = objects.endpoints.get(s.key, {}).get(port.name or "", [])
        if eps:
            subsets.append({"addresses": [{"ip": e.ip, "nodeName": e.node,
                                           "targetRef": {"kind": "Pod", "name": e.pod}} for e in eps],
                            "ports": [{k: v for k, v in {"name": port.name, "port": eps[0].port,
                                                         "protocol": port.protocol}.items() if v is not None}]})
    return {"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": s.name, "namespace": s.namespace},
            "subsets": subsets}


def endpoints_table(found: list[Item], inv: Inventory, objects: LabObjects, all_namespaces: bool,
                    wide: bool) -> tuple[list[str], list[list[str]]]:
    """`kubectl get ep [-A]` columns and rows."""
    rows = []
    for item in found:
        s: Service = item.record
        addresses = [e.address for eps in objects.endpoints.get(s.key, {}).values() for e in eps]
        rows.append(lead(s.namespace, all_namespaces) + [s.name, ",".join(addresses) or "<none>", age(s.created)])
    return lead_columns(all_namespaces) + ["NAME", "ENDPOINTS", "AGE"], rows


def describe_endpoints(item: Item, inv: Inventory, objects: LabObjects) -> list[tuple[str, str]]:
    """`kubectl describe ep` as (label, value) lines."""
    s: Service = item.record
    lines = [("Name:", s.name), ("Namespace:", s.namespace), ("Labels:", described_labels(s.labels)),
             ("Annotations:", "<none>"), ("Subsets:", "")]
    for port in s.ports:
        eps = objects.endpoints.get(s.key, {}).get(port.name or "", [])
        lines += [("  Addresses:", ",".join(e.ip for e in eps) or "<none>"), ("  NotReadyAddresses:", "<none>"),
                  ("  Ports:", ""), ("    Name", "Port  Protocol"), ("    ----", "----  --------"),
                  (f"    {port.name or '<unset>'}", f"{eps[0].port if eps else port.target_port}     "
                                                    f"{port.protocol}")]
    return lines + [("Events:", "<none>")]


ENDPOINTS = register(Kind("Endpoints", "endpoints", "endpoints", short_names=("ep",), items=items,
                          to_json=endpoints_json, table=endpoints_table, describe=describe_endpoints))

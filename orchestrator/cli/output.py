"""How the lab shows things: kubectl's table layout, AGE, and kubectl's JSON shapes for pods, services
and endpoints (so `-o json` output works with the tools people already use on it)."""

from __future__ import annotations

import datetime

from rich.table import Table
from rich.text import Text

from orchestrator import __version__
from orchestrator.cli.common import err, out
from orchestrator.core.manifests import fmt_labels
from orchestrator.core.model import Inventory
from orchestrator.core.objects import LabObjects, NetworkPolicy, Pod, Service
from orchestrator.core.policy_spec import parse_selector


def age(created: str) -> str:
    """kubectl's AGE: 45s, 2m4s, 3h, 2d."""
    then = datetime.datetime.strptime(created, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc)
    seconds = max(0, int((datetime.datetime.now(datetime.timezone.utc) - then).total_seconds()))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 600:
        return f"{seconds // 60}m{seconds % 60}s"
    if seconds < 3 * 3600:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h" if seconds < 2 * 86400 else f"{seconds // 86400}d"


def pod_json(pod: Pod, inv: Inventory) -> dict:
    node = next((n for n in inv.nodes if n.name == pod.node), None)
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": pod.name, "namespace": pod.namespace, "uid": pod.uid,
                     "labels": pod.labels, "creationTimestamp": pod.created,
                     **({"ownerReferences": [{"kind": pod.owner.split("/")[0],
                                              "name": pod.owner.rsplit("/", 1)[1]}]} if pod.owner else {})},
        "spec": {"nodeName": pod.node, **({"nodeSelector": pod.node_selector} if pod.node_selector else {}),
                 "containers": [{"name": "server", **({"image": pod.image} if pod.image else {}), "ports": [
            {k: v for k, v in {"containerPort": p.container_port, "protocol": p.protocol,
                               "hostPort": p.host_port, "name": p.name}.items() if v is not None}
            for p in pod.ports]}]},
        "status": {"phase": "Running", "podIP": pod.ip, "podIPs": [{"ip": pod.ip}],
                   "hostIP": str(node.address) if node else None},
    }


def print_table(columns: list[str], rows: list[list[str]]) -> None:
    """kubectl's plain column layout (no box), so it reads like the talk's output and greps well."""
    widths = [max(len(str(v)) for v in [c, *(r[i] for r in rows)]) for i, c in enumerate(columns)]
    for row in [columns, *rows]:
        print("   ".join(str(v).ljust(w) for v, w in zip(row, widths)).rstrip())


def service_ports_text(service: Service) -> str:
    """kubectl's PORT(S): 80/TCP, 80:30080/TCP, 53/UDP,53/TCP."""
    return ",".join(f"{p.port}" + (f":{p.node_port}" if p.node_port else "") + f"/{p.protocol}"
                    for p in service.ports)


def endpoint_addresses(objects: LabObjects, key: str) -> list[str]:
    return [e.address for eps in objects.endpoints.get(key, {}).values() for e in eps]


def service_json(s: Service) -> dict:
    ports = [{k: v for k, v in {"name": p.name, "protocol": p.protocol, "port": p.port,
                                "targetPort": p.target_port, "nodePort": p.node_port}.items()
              if v is not None} for p in s.ports]
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": s.name, "namespace": s.namespace, "labels": s.labels,
                         "creationTimestamp": s.created},
            "spec": {"type": s.type, "clusterIP": s.cluster_ip, "clusterIPs": [s.cluster_ip],
                     "selector": s.selector, "ports": ports, "sessionAffinity": s.session_affinity}}


def endpoints_json(s: Service, objects: LabObjects, key: str) -> dict:
    subsets = []
    for port in s.ports:
        eps = objects.endpoints.get(key, {}).get(port.name or "", [])
        if eps:
            subsets.append({"addresses": [{"ip": e.ip, "nodeName": e.node,
                                           "targetRef": {"kind": "Pod", "name": e.pod}} for e in eps],
                            "ports": [{k: v for k, v in {"name": port.name, "port": eps[0].port,
                                                         "protocol": port.protocol}.items() if v is not None}]})
    return {"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": s.name, "namespace": s.namespace},
            "subsets": subsets}


def print_reports(title: str, reports, show_changes: bool) -> int:
    """A per-node table (ok / changed / failed), the changes when asked, errors last; exit code."""
    styles = {"ok": "green", "changed": "yellow", "removed": "yellow", "would change": "yellow", "failed": "red"}
    table = Table(title=title, title_justify="left")
    for column in ("NODE", "POD SUBNET", "RESULT", "CHANGES"):
        table.add_column(column)
    for r in reports:
        style = styles.get(r.status, "")
        table.add_row(r.node, r.subnet or "", Text(r.status, style=style), str(len(r.changes)))
    out.print(table)
    if show_changes:
        for r in reports:
            for what in r.changes:
                out.print(f"  {r.node}: {what}", markup=False, highlight=False, soft_wrap=True)
    failed = [r for r in reports if r.status == "failed"]
    for r in failed:
        for line in (r.error or "failed").splitlines():
            err.print(f"lab: {line}", style="red", markup=False, soft_wrap=True)
    if not failed and all(r.status == "ok" for r in reports):
        out.print("no changes")
    return 1 if failed else 0


def node_json(node, objects: LabObjects) -> dict:
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": node.name, "labels": node.labels},
            "spec": {"podCIDR": objects.subnets.get(node.name)},
            "status": {"addresses": [{"type": "InternalIP", "address": str(node.address)}]}}


def node_table(inv: Inventory, objects: LabObjects, wide: bool = False) -> tuple[list, list]:
    """`kubectl get nodes [-o wide]` columns and rows (a node is Ready once it has a pod subnet). The lab has no
    kubelet: VERSION is the lab's, AGE unknown; -o wide adds the pod CIDR, which is what a student looks for."""
    subnets = objects.subnets
    columns = ["NAME", "STATUS", "ROLES", "AGE", "VERSION"] + (["INTERNAL-IP", "EXTERNAL-IP", "POD-CIDR"] if wide else [])
    return columns, [[n.name, "Ready" if subnets.get(n.name) else "NotReady", "<none>", "<unknown>",
                      f"cluster-lab-{__version__}"] + ([str(n.address), "<none>", subnets.get(n.name) or "<none>"]
                                                       if wide else []) for n in inv.nodes]


def pod_table(pods: list[Pod], all_namespaces: bool, wide: bool) -> tuple[list, list]:
    """`kubectl get pods [-A] [-o wide]` columns and rows."""
    columns = (["NAMESPACE"] if all_namespaces else []) + ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    if wide:
        columns += ["IP", "NODE", "NOMINATED NODE", "READINESS GATES"]
    rows = []
    for p in pods:
        row = ([p.namespace] if all_namespaces else []) + [p.name, "1/1", "Running", "0", age(p.created)]
        rows.append(row + ([p.ip, p.node, "<none>", "<none>"] if wide else []))
    return columns, rows


def service_table(items: list[tuple[str, Service]], all_namespaces: bool, wide: bool) -> tuple[list, list]:
    """`kubectl get svc [-A] [-o wide]` columns and rows."""
    lead = ["NAMESPACE"] if all_namespaces else []
    columns = lead + ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"] + (["SELECTOR"] if wide else [])
    rows = [([s.namespace] if lead else []) + [s.name, s.type, s.cluster_ip, "<none>", service_ports_text(s),
                                               age(s.created)]
            + ([fmt_labels(s.selector) or "<none>"] if wide else []) for _, s in items]
    return columns, rows


def endpoints_table(items: list[tuple[str, Service]], objects: LabObjects, all_namespaces: bool) -> tuple[list, list]:
    """`kubectl get ep [-A]` columns and rows."""
    lead = ["NAMESPACE"] if all_namespaces else []
    return (lead + ["NAME", "ENDPOINTS", "AGE"],
            [([s.namespace] if lead else []) + [s.name, ",".join(endpoint_addresses(objects, k)) or "<none>",
                                                age(s.created)] for k, s in items])


def namespace_table(namespaces: dict, objects: LabObjects) -> tuple[list, list]:
    """`kubectl get ns` columns and rows (the built-in namespaces are as old as the lab's first object)."""
    created = objects.namespaces
    return ["NAME", "STATUS", "AGE"], [[name, "Active", age(created[name].created) if name in created else "<unknown>"]
                                       for name in sorted(namespaces)]


def netpol_table(records: list[NetworkPolicy], all_namespaces: bool) -> tuple[list, list]:
    """`kubectl get netpol [-A]` columns and rows."""
    lead = ["NAMESPACE"] if all_namespaces else []
    return (lead + ["NAME", "POD-SELECTOR", "AGE"],
            [([r.namespace] if lead else []) + [r.name, parse_selector(r.spec.get("podSelector"), "", "")
                                                .text(), age(r.created)] for r in records])


def netpol_json(record: NetworkPolicy) -> dict:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": record.name, "namespace": record.namespace, "labels": record.labels,
                         "creationTimestamp": record.created}, "spec": record.spec}

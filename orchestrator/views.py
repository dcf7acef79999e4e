"""How the lab shows things: kubectl's table layout, AGE, and kubectl's JSON shapes for pods, services
and endpoints (so `-o json` output works with the tools people already use on it)."""

from __future__ import annotations

import datetime

from .model import Inventory


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


def pod_json(pod: dict, inv: Inventory) -> dict:
    node = next((n for n in inv.nodes if n.name == pod["node"]), None)
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": pod["name"], "namespace": pod["namespace"], "uid": pod["uid"],
                     "labels": pod["labels"], "creationTimestamp": pod["created"],
                     **({"ownerReferences": [{"kind": pod["owner"].split("/")[0],
                                              "name": pod["owner"].rsplit("/", 1)[1]}]} if pod.get("owner") else {})},
        "spec": {"nodeName": pod["node"], "containers": [{"name": "server", "ports": [
            {k: v for k, v in {"containerPort": p["container_port"], "protocol": p["protocol"],
                               "hostPort": p["host_port"], "name": p["name"]}.items() if v is not None}
            for p in pod["ports"]]}]},
        "status": {"phase": "Running", "podIP": pod["ip"], "podIPs": [{"ip": pod["ip"]}],
                   "hostIP": str(node.address) if node else None},
    }


def print_table(columns: list[str], rows: list[list[str]]) -> None:
    """kubectl's plain column layout (no box), so it reads like the talk's output and greps well."""
    widths = [max(len(str(v)) for v in [c, *(r[i] for r in rows)]) for i, c in enumerate(columns)]
    for row in [columns, *rows]:
        print("   ".join(str(v).ljust(w) for v, w in zip(row, widths)).rstrip())


def service_ports_text(service: dict) -> str:
    """kubectl's PORT(S): 80/TCP, 80:30080/TCP, 53/UDP,53/TCP."""
    return ",".join(f"{p['port']}" + (f":{p['node_port']}" if p.get("node_port") else "") + f"/{p['protocol']}"
                    for p in service["ports"])


def endpoint_addresses(objects: dict, key: str) -> list[str]:
    return [f"{e['ip']}:{e['port']}" for eps in objects["endpoints"].get(key, {}).values() for e in eps]


def service_json(s: dict) -> dict:
    ports = [{k: v for k, v in {"name": p["name"], "protocol": p["protocol"], "port": p["port"],
                                "targetPort": p["target_port"], "nodePort": p.get("node_port")}.items()
              if v is not None} for p in s["ports"]]
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": s["name"], "namespace": s["namespace"], "labels": s["labels"],
                         "creationTimestamp": s["created"]},
            "spec": {"type": s["type"], "clusterIP": s["cluster_ip"], "clusterIPs": [s["cluster_ip"]],
                     "selector": s["selector"], "ports": ports, "sessionAffinity": s["session_affinity"]}}


def endpoints_json(s: dict, objects: dict, key: str) -> dict:
    subsets = []
    for port in s["ports"]:
        eps = objects["endpoints"].get(key, {}).get(port["name"] or "", [])
        if eps:
            subsets.append({"addresses": [{"ip": e["ip"], "nodeName": e["node"],
                                           "targetRef": {"kind": "Pod", "name": e["pod"]}} for e in eps],
                            "ports": [{k: v for k, v in {"name": port["name"], "port": eps[0]["port"],
                                                         "protocol": port["protocol"]}.items() if v is not None}]})
    return {"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": s["name"], "namespace": s["namespace"]},
            "subsets": subsets}

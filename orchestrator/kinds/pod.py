"""Pods: a network namespace on a node with the lab's pod server (or dnsmasq) in it."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from orchestrator.core.manifests import Doc, Manifest, Warn, pod_template
from orchestrator.core.model import Inventory
from orchestrator.core.objects import LabObjects, Pod
from orchestrator.kinds.registry import Item, Kind, Plan, register
from orchestrator.kinds.show import age, described_labels, lead, lead_columns
from orchestrator.layers.pods.plan import plan_pod, unplan_pod


def parse(doc: Doc, head: Manifest, warn: Warn) -> Manifest:
    return replace(head, template=pod_template(doc.sub("spec", required=True), head.labels, warn))


def record(m: Manifest, plan: Plan) -> str:
    return plan_pod(plan.cluster, m, plan.objects, plan.pods, plan.stamp)


def forget(m: Manifest, plan: Plan) -> str:
    return unplan_pod(m, plan.objects, plan.pods)


def phase(pod: Pod, objects: LabObjects) -> tuple[str, str]:
    """kubectl's STATUS of `pod` and why, from what its node reported (objects.observed); as the lab recorded
    it where no node was asked."""
    if pod.node is None or pod.ip is None:
        return "Pending", "not placed on a node yet" if pod.node is None else f"no address yet on {pod.node}"
    seen = objects.observed.get(pod.key, "running")
    if seen == "running":
        return "Running", ""
    if seen == "stopped":
        return "Error", f"its server is not running on {pod.node}: `lab deploy` starts it again"
    if seen.startswith("unknown: "):  # the node did not say; why, in its own words
        return "Unknown", seen.removeprefix("unknown: ")
    return "Unknown", f"{pod.node} does not hold it (its network namespace is gone): `lab apply` makes it again"


def items(inv: Inventory, objects: LabObjects) -> list[Item]:
    pods = sorted(objects.pods.values(), key=lambda p: (p.namespace, p.name))
    return [Item(p.name, p.namespace, p.labels, p) for p in pods]


def to_json(item: Item, inv: Inventory, objects: LabObjects) -> dict[str, Any]:
    pod: Pod = item.record
    node = next((n for n in inv.nodes if n.name == pod.node), None)
    status, reason = phase(pod, objects)
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
        "status": {"phase": status, "podIP": pod.ip, "podIPs": [{"ip": pod.ip}],
                   "hostIP": str(node.address) if node else None, **({"message": reason} if reason else {})},
    }


def table(found: list[Item], inv: Inventory, objects: LabObjects, all_namespaces: bool,
          wide: bool) -> tuple[list[str], list[list[str]]]:
    """`kubectl get pods [-A] [-o wide]` columns and rows."""
    columns = lead_columns(all_namespaces) + ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    if wide:
        columns += ["IP", "NODE", "NOMINATED NODE", "READINESS GATES"]
    rows = []
    for item in found:
        p: Pod = item.record
        status, _ = phase(p, objects)
        ready = "1/1" if status == "Running" else "0/1"
        row = lead(p.namespace, all_namespaces) + [p.name, ready, status, "0", age(p.created)]
        rows.append(row + ([str(p.ip), str(p.node), "<none>", "<none>"] if wide else []))
    return columns, rows


def describe(item: Item, inv: Inventory, objects: LabObjects) -> list[tuple[str, str]]:
    """`kubectl describe pod` as (label, value) lines."""
    pod: Pod = item.record
    node = next((n for n in inv.nodes if n.name == pod.node), None)
    status, reason = phase(pod, objects)
    lines = [("Name:", pod.name), ("Namespace:", pod.namespace),
             ("Node:", f"{pod.node}/{node.address}" if node else str(pod.node)), ("Start Time:", pod.created),
             ("Labels:", described_labels(pod.labels)),
             ("Annotations:", "<none>"), ("Status:", status), *([("Message:", reason)] if reason else []),
             ("IP:", pod.ip or "<none>"), ("IPs:", ""), ("  IP:", pod.ip or "<none>")]
    if pod.owner:
        lines.append(("Controlled By:", f"{pod.owner.split('/', 1)[0]}/{pod.owner.rsplit('/', 1)[1]}"))
    lines += [("Containers:", ""), ("  server:", ""), ("    Image:", "cluster-lab's pod server (the image is not run)")]
    for port in pod.ports:
        lines.append(("    Port:", f"{port.container_port}/{port.protocol}" + (f" ({port.name})" if port.name else "")))
        if port.host_port:
            lines.append(("    Host Port:", f"{port.host_port}/{port.protocol}"))
    lines += [("    State:", "Running" if status == "Running" else "Waiting"),
              ("    Ready:", "True" if status == "Running" else "False"),
              ("Network:", f"netns {pod.netns} on {pod.node}"), ("Events:", "<none>")]
    return lines


POD = register(Kind("Pod", "pods", "pod", short_names=("po",), in_all=1, parse=parse, order=20, record=record,
                    forget=forget, items=items, to_json=to_json, table=table, describe=describe))

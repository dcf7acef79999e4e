"""Pods on the nodes: `lab apply` / `lab delete`. One node-agent call per node, all nodes in parallel."""

from __future__ import annotations

import datetime
import json
from typing import Callable

from ..errors import InputError, LabError
from ..manifests import Manifest
from ..model import Inventory
from ..plan.facts import CNI_PATH
from ..plan.network import conflist_path
from ..plan.pods import PodChanges, plan_apply, plan_delete, schedule
from ..plan.services import AddressBook, check_target_ports, service_record
from . import services as services_mod
from ..state import LabFiles
from ..transport import Transport
from .agent import agent_argv

# "ip": None for a new pod; a pod made again (deploy restoring it) asks for the IP it had
AGENT_SPEC_KEYS = ("key", "name", "netns", "tcp", "udp", "port_mappings", "role", "dns_domain", "resolv_conf", "ip")


def agent_pod(pod: dict) -> dict:
    spec = {k: pod.get(k) for k in AGENT_SPEC_KEYS}
    spec["id"] = pod["uid"]
    return spec


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def sync(inv: Inventory, transport: Transport, objects: dict, changes: PodChanges) -> list[str]:
    """Delete and create pods per `changes` on their nodes; record the outcome in `objects` (the caller
    writes them). Returns the failures, one line each (the other pods' changes still happen)."""
    by_node: dict[str, dict] = {}
    for pod in changes.delete:
        by_node.setdefault(pod["node"], {"delete": [], "add": []})["delete"].append(pod)
    for pod in changes.create:
        by_node.setdefault(pod["node"], {"delete": [], "add": []})["add"].append(pod)
    known = {n.name for n in inv.nodes}
    failures = []
    for name in sorted(set(by_node) - known):  # pods on a node that left the inventory: forget them
        for pod in by_node.pop(name)["delete"]:
            objects["pods"].pop(f"{pod['namespace']}/{pod['name']}", None)

    def on_node(node):
        work = by_node[node.name]
        request = {"conflist": conflist_path(inv.name), "cni_path": CNI_PATH,
                   "delete": [agent_pod(p) for p in work["delete"]], "add": [agent_pod(p) for p in work["add"]]}
        return json.loads(transport.run(node, agent_argv(inv.name, "pods-apply"),
                                        stdin=json.dumps(request)).stdout)

    results = transport.run_all(on_node, [n for n in inv.nodes if n.name in by_node])
    for node_name, outcome in results.items():
        work = by_node[node_name]
        if isinstance(outcome, BaseException):
            failures.append(str(outcome))
            continue
        for pod in work["delete"]:
            objects["pods"].pop(f"{pod['namespace']}/{pod['name']}", None)
        for pod in work["add"]:
            got = outcome["added"].get(pod["key"], {})
            if "error" in got:
                failures.append(f"{node_name}: pod {pod['namespace']}/{pod['name']}: {got['error']}")
                continue
            objects["pods"][f"{pod['namespace']}/{pod['name']}"] = dict(pod, ip=got["ip"])
    return failures


def require_network(inv: Inventory, objects: dict) -> None:
    missing = [n.name for n in inv.nodes if n.name not in objects["subnets"]]
    if missing:
        raise InputError(f"no pod network on {', '.join(missing)} yet: run `lab deploy` first")


def apply(inv: Inventory, transport: Transport, files: LabFiles, manifests: list[Manifest],
          progress: Callable[[str], None] = lambda line: None, resync: bool = True) -> list[str]:
    """Make the lab's pods and services match `manifests`; return kubectl-style result lines.
    Everything is validated before anything changes on a node. The service rules are synced after; with
    `resync` False (the caller has just synced them) only when a pod or service changed."""
    objects = files.read_objects()
    require_network(inv, objects)
    stamp = now()
    changes = plan_apply(inv.cluster, manifests, objects, stamp)
    deleted = {id(p) for p in changes.delete}
    staying = [p for p in objects["pods"].values() if id(p) not in deleted]
    schedule(changes.create, list(inv.nodes), staying)
    services = dict(objects["services"])
    book = AddressBook(services, inv.cluster.service_cidr)
    results = []
    for m in manifests:
        if m.kind == "Service":
            old = services.get(m.key)
            record = service_record(m, old, book, stamp)
            check_target_ports(record, m.source, staying + changes.create)
            services[m.key] = record
            results.append(f"{m.ref} {'created' if old is None else 'unchanged' if old == record else 'configured'}")
    for m in manifests:
        if m.kind == "Deployment":
            objects["deployments"][m.key] = {"replicas": m.replicas, "selector": m.selector,
                                             "template_hash": m.template.digest()}
    if changes.create or changes.delete:
        progress(f"{len(changes.create)} pod(s) to create, {len(changes.delete)} to delete")
    failures = sync(inv, transport, objects, changes)
    if resync or changes.create or changes.delete or services != objects["services"]:
        objects["services"] = services
        failures += [str(e) for e in services_mod.sync(inv, transport, objects).failures.values()]
    files.write_objects(objects)
    if failures:
        raise LabError("\n".join(failures))
    return changes.results + results


def delete(inv: Inventory, transport: Transport, files: LabFiles, manifests: list[Manifest],
           progress: Callable[[str], None] = lambda line: None) -> list[str]:
    """Delete what `manifests` name (a Deployment with its pods); return kubectl-style result lines."""
    objects = files.read_objects()
    changes = plan_delete(manifests, objects)
    if changes.delete:
        progress(f"{len(changes.delete)} pod(s) to delete")
    for m in manifests:
        if m.kind == "Deployment":
            objects["deployments"].pop(m.key, None)
        elif m.kind == "Service":
            existed = objects["services"].pop(m.key, None) is not None
            changes.results.append(f"service/{m.name} {'deleted' if existed else 'not found'}")
    failures = sync(inv, transport, objects, changes)
    failures += [str(e) for e in services_mod.sync(inv, transport, objects).failures.values()]
    files.write_objects(objects)
    if failures:
        raise LabError("\n".join(failures))
    return changes.results

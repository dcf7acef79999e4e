"""Pods on the nodes: `lab apply` / `lab delete`. One node-agent call per node, all nodes in parallel."""

from __future__ import annotations

import datetime
from dataclasses import replace
from typing import Any, Callable, Iterable, Optional

from orchestrator.agent.contract import (GATEWAY_NAME_LABEL, PodsApply, PodsApplyAnswer, PodsEnsure, PodsReattach,
                                         PodsStatus, is_pod_netns)
from orchestrator.core.agent import call
from orchestrator.core.events import NORMAL, WARNING, add_event
from orchestrator.core.model import Inventory, Node
from orchestrator.core.objects import LabObjects, Pod
from orchestrator.core.report import Reports
from orchestrator.core.state import LabFiles
from orchestrator.core.transport import FleetResult, Transport
from orchestrator.layers.nodes.facts import conflist_path
from orchestrator.layers.pods.env import resolved_env
from orchestrator.layers.pods.images import image_root
from orchestrator.layers.pods.plan import PodChanges


def agent_pod(pod: Pod, env: Optional[list[str]] = None) -> dict[str, Any]:
    """The pod as the agent's pods-apply takes it. "ip": None for a new pod; a pod made again (deploy
    restoring it) asks for the IP it had. `env`: NAME=VALUE for what runs in it (layers/pods/env.py)."""
    return {"key": pod.node_key, "id": pod.uid, "name": pod.name, "netns": pod.netns, "tcp": pod.tcp,
            "udp": pod.udp, "port_mappings": [m.to_cni() for m in pod.port_mappings], "role": pod.role,
            "dns_domain": pod.dns_domain, "resolv_conf": pod.resolv_conf, "ip": pod.ip, "image": pod.image,
            "image_root": image_root(pod.image).to_agent(), "env": env or [],
            **({"gateway": f"{pod.namespace}/{pod.labels[GATEWAY_NAME_LABEL]}"} if pod.role == "gateway" else {})}


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def apply_pod_changes(inv: Inventory, transport: Transport, objects: LabObjects, changes: PodChanges,
                      isolation: Callable[[Pod], list[str]] = lambda pod: []) -> list[str]:
    """Delete and create pods per `changes` on their nodes; record the outcome in `objects` (the caller
    writes them). `isolation(pod)`: the NetworkPolicy sets a new pod goes into before its server starts.
    Returns the failures, one line each (the other pods' changes still happen)."""
    by_node: dict[str, dict[str, list[Pod]]] = {}
    for pod in changes.delete:
        by_node.setdefault(pod.node or "", {"delete": [], "add": []})["delete"].append(pod)
    for pod in changes.create:
        by_node.setdefault(pod.node or "", {"delete": [], "add": []})["add"].append(pod)
    known = {n.name for n in inv.nodes}
    failures = []
    for name in sorted(set(by_node) - known):  # pods on a node that left the inventory: forget them
        for pod in by_node.pop(name)["delete"]:
            objects.pods.pop(pod.key, None)

    env_of = {}
    for pod in changes.create:
        env_of[pod.key], problems = resolved_env(pod, objects)
        for problem in problems:
            pod_event(objects, pod, WARNING, "Failed", problem, "kubelet")

    def on_node(node: Node) -> PodsApplyAnswer:
        work = by_node[node.name]
        request = PodsApply(conflist=conflist_path(inv.name), delete=[agent_pod(p) for p in work["delete"]],
                            add=[dict(agent_pod(p, env_of[p.key]), policy_sets=isolation(p)) for p in work["add"]])
        return call(transport, node, inv.name, request)

    results = transport.run_all(on_node, [n for n in inv.nodes if n.name in by_node])
    for node_name, outcome in results.items():
        work = by_node[node_name]
        if isinstance(outcome, BaseException):
            failures.append(str(outcome))
            continue
        for pod in work["delete"]:
            objects.pods.pop(pod.key, None)
            pod_event(objects, pod, NORMAL, "Killing", "Stopping the pod's process; its network namespace and "
                      "address go (CNI DEL)", "kubelet")
        for pod in work["add"]:
            got = outcome.added.get(pod.node_key, {})
            pod_event(objects, pod, NORMAL, "Scheduled", f"Successfully assigned {pod.key} to {node_name}",
                      "default-scheduler")
            if "error" in got:
                failures.append(f"{node_name}: pod {pod.key}: {got['error']}")
                pod_event(objects, pod, WARNING, "FailedCreatePodSandBox", got["error"], "kubelet")
                continue
            objects.pods[pod.key] = replace(pod, ip=got["ip"])
            pod_event(objects, pod, NORMAL, "AddedInterface", f"Add eth0 [{got['ip']}] from the pod network "
                      "(CNI ADD: bridge, host-local)", "kubelet")
            pod_event(objects, pod, NORMAL, "Started", f"Started the pod's process ({PROCESSES.get(pod.role, pod.role)}"
                      f"; image {pod.image or '<none>'}: {image_root(pod.image).describe()} for lab exec)", "kubelet")
    scaling_events(objects, changes)
    return failures


PROCESSES = {"server": "cluster-lab's pod server", "dns": "dnsmasq", "gateway": "nginx"}


def pod_event(objects: LabObjects, pod: Pod, type_: str, reason: str, message: str, source: str) -> None:
    add_event(objects.events, now(), type_, reason, ("Pod", pod.namespace, pod.name), message, source)


def scaling_events(objects: LabObjects, changes: PodChanges) -> None:
    """A Deployment's ScalingReplicaSet events: each of its templates (ReplicaSets) whose pods were made or
    deleted, scaled to the number it has now."""
    touched: dict[tuple[str, str], str] = {}
    for pod, word in [*((p, "up") for p in changes.create), *((p, "down") for p in changes.delete)]:
        if pod.owner and pod.owner.startswith("Deployment/") and pod.labels.get("pod-template-hash"):
            touched.setdefault((pod.owner, pod.labels["pod-template-hash"]), word)
    for (owner, template), word in sorted(touched.items()):
        namespace, name = owner.removeprefix("Deployment/").split("/", 1)
        count = sum(p.labels.get("pod-template-hash") == template for p in objects.pods_of(owner))
        add_event(objects.events, now(), NORMAL, "ScalingReplicaSet", ("Deployment", namespace, name),
                  f"Scaled {word} replica set {name}-{template} to {count}", "deployment-controller")


def pods_on(objects: LabObjects, node: str) -> list[Pod]:
    """The lab's pods on `node`."""
    return [p for p in objects.pods.values() if p.node == node]


def lost_pods(objects: LabObjects, node: str, held: dict[str, str]) -> list[Pod]:
    """The lab's pods on `node` that the node lacks or holds without their network namespace (after a reboot,
    or when the node lost its state), in name order. `held`: the node's pods as it reports them, node key ->
    state (running, stopped, gone, ...)."""
    return sorted((p for p in pods_on(objects, node) if held.get(p.node_key) in (None, "gone")),
                  key=lambda p: p.node_key)


def ensure_request(lab: str, objects: LabObjects, node: str) -> PodsEnsure:
    """pods-ensure for `node`, keeping just the lab's pods there: the rest of what the node holds of lab pods
    (a record, a namespace, a lease) goes."""
    return PodsEnsure(lab=lab, keep=[{"key": p.node_key, "netns": p.netns, "id": p.uid}
                                     for p in pods_on(objects, node)],
                      conflist=conflist_path(lab))


def unwanted(lab: str, objects: LabObjects, node: str, held: dict[str, str], netns: Iterable[str]) -> list[str]:
    """What node `node` holds of lab pods that the lab does not have there, as its facts show it: pod records
    (`held`: node key -> state) and pod network namespaces (`netns`: all of the node's)."""
    ours = pods_on(objects, node)
    keys, netnses = {p.node_key for p in ours}, {p.netns for p in ours}
    return sorted(held.keys() - keys) + sorted(n for n in netns if is_pod_netns(lab, n) and n not in netnses)


def without_nodes(changes: PodChanges, nodes: Iterable[str]) -> PodChanges:
    """`changes` but those on `nodes` (which do not answer: a pod planned there is planned again next time)."""
    skip = set(nodes)
    return PodChanges(create=[p for p in changes.create if p.node not in skip],
                      delete=[p for p in changes.delete if p.node not in skip])


def held_pods(inv: Inventory, transport: Transport, objects: LabObjects) -> FleetResult:
    """The pods each node holds, as it reports them after removing what is not the lab's pods any more and
    restarting the pod servers that had stopped (the agent's pods-ensure): node key -> running, restarted,
    failed or gone, and "removed" for what went (a key, a namespace or a lease); a node that does not answer
    gives its exception."""
    def held_by(node: Node) -> dict[str, str]:
        answer = call(transport, node, inv.name, ensure_request(inv.name, objects, node.name))
        return {key: str(got.get("state")) for key, got in answer.pods.items()}

    return transport.run_all(held_by, list(inv.nodes))


def removed_lines(held: FleetResult) -> list[str]:
    """One line per node that removed what was not the lab's any more (held_pods)."""
    lines = []
    for node, pods in sorted(held.items()):
        gone = [] if isinstance(pods, BaseException) else sorted(k for k, state in pods.items() if state == "removed")
        if gone:
            lines.append(f"{node}: removed what the lab no longer has: {', '.join(gone)}")
    return lines


OBSERVE_TIMEOUT = 5.0  # a node that does not say how its pods are within this: its pods are Unknown


def observe_pods(inv: Inventory, transport: Transport, objects: LabObjects) -> None:
    """Ask the nodes how the lab's pods are (pods-status, which changes nothing) and note it in `objects.observed`:
    running, stopped, gone (the node does not hold it) or `unknown: WHY` (the node did not say: it does not
    answer, or its agent is not the lab's)."""
    nodes = [n for n in inv.nodes if any(p.node == n.name for p in objects.pods.values())]

    def states(node: Node) -> dict[str, str]:
        answer = call(transport, node, inv.name, PodsStatus(), timeout=OBSERVE_TIMEOUT)
        return {key: str(got.get("state")) for key, got in answer.pods.items()}

    seen = transport.run_all(states, nodes)
    for pod in objects.pods.values():
        held = seen.get(pod.node or "")
        if held is not None:
            objects.observed[pod.key] = f"unknown: {held}" if isinstance(held, BaseException) else \
                held.get(pod.node_key, "gone")


def pods_to_make_again(objects: LabObjects, held: FleetResult, changes: PodChanges) -> list[Pod]:
    """The lab's pods that their node, which answered, lacks (a power cut during their creation, a namespace
    deleted by hand, a record lost): made again with the address they had, unless `changes` deletes them."""
    doomed = {id(p) for p in changes.delete}
    return [p for node, pods in held.items() if not isinstance(pods, BaseException)
            for p in lost_pods(objects, node, pods) if id(p) not in doomed]


def restore_pods(inv: Inventory, transport: Transport, files: LabFiles, lost: dict[str, list[Pod]],
                 reports: Reports) -> None:
    """Create the `lost` pods again on the nodes that did not fail, each asking for the IP it had; record their
    IPs (another one where that was taken), which the service sync then uses."""
    pods = [pod for name, pods in lost.items() if reports[name].status != "failed" for pod in pods]
    if not pods:
        return
    objects = files.read_objects()
    failures = apply_pod_changes(inv, transport, objects, PodChanges(create=pods))
    files.write_objects(objects)
    for line in failures:
        name = line.split(":", 1)[0]
        if name in reports:
            reports[name].status, reports[name].error = "failed", line
    for name in lost:
        if lost[name] and reports[name].status != "failed":
            reports[name].status = "changed"


def reattach(inv: Inventory, transport: Transport, files: LabFiles, nodes: list[Node]) -> FleetResult:
    """Re-attach the pods of `nodes` set up with an older CNI config (as after `ipMasq: true`): DEL with
    the old config, ADD with the node's current one; record their new IPs. Returns, per node, its pods'
    results ({key: {"ip"} or {"error"}}) or the node's exception."""
    request = PodsReattach(conflist=conflist_path(inv.name))
    results = transport.run_all(lambda node: call(transport, node, inv.name, request).pods, nodes)
    objects = files.read_objects()
    by_node_key = {p.node_key: p for p in objects.pods.values()}
    for outcome in results.values():
        for key, got in ({} if isinstance(outcome, BaseException) else outcome).items():
            pod = by_node_key.get(key)
            if pod and "ip" in got:
                pod.ip = got["ip"]
    files.write_objects(objects)
    return results


def reattach_pods(inv: Inventory, transport: Transport, files: LabFiles, stale: dict[str, list[str]],
                  reports: Reports) -> None:
    """Re-attach the stale pods of the nodes that did not fail (see reattach); report per node."""
    busy = [n for n in inv.nodes if n.name in stale and reports[n.name].status != "failed"]
    if not busy:
        return
    for node_name, outcome in reattach(inv, transport, files, busy).items():
        if isinstance(outcome, BaseException):
            reports[node_name].status, reports[node_name].error = "failed", str(outcome)
            continue
        reports[node_name].status = "changed"
        for key, got in outcome.items():
            if "error" in got:
                reports[node_name].status, reports[node_name].error = "failed", f"{node_name}: {key}: {got['error']}"

"""Which pods should exist, and where: reconcile Pods and Deployments with the lab's pods (pure).

A Deployment's pods are named like Kubernetes names them (<deployment>-<template hash>-<5 chars>);
re-applying with other replicas or another template converges: pods of the current template are
kept (oldest first), the rest deleted, the missing ones created and spread over the nodes.
"""

from __future__ import annotations

import random
import uuid
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any, Optional

from orchestrator.agent.contract import GATEWAY_IMAGE, GATEWAY_NAME_LABEL, pod_netns_name
from orchestrator.core.errors import InputError
from orchestrator.core.manifests import Manifest, PodTemplate, fmt_labels
from orchestrator.core.model import Cluster, Node, dns_ip
from orchestrator.core.objects import Deployment, LabObjects, Pod, PortMapping, applied


SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # Kubernetes' alphabet for generated name suffixes


@dataclass
class PodChanges:
    create: list[Pod] = field(default_factory=list)  # new pods (node chosen, no IP yet)
    delete: list[Pod] = field(default_factory=list)  # existing pods


def resolv_conf(namespace: str, cluster: Cluster) -> str:
    """A pod's /etc/resolv.conf: the cluster DNS and Kubernetes' search path, so `curl http://nginx` works."""
    d = cluster.dns_domain
    return (f"nameserver {dns_ip(cluster.service_cidr)}\nsearch {namespace}.svc.{d} svc.{d} {d}\n"
            "options ndots:5\n")


def role_of(template: PodTemplate) -> str:
    """What the pod runs: dnsmasq for images named *dnsmasq* (the cluster DNS), nginx for the Gateways' proxy
    image, the built-in server for every other."""
    if "dnsmasq" in template.image:
        return "dns"
    if template.image == GATEWAY_IMAGE and GATEWAY_NAME_LABEL in template.labels:
        return "gateway"
    return "server"


def new_pod(cluster: Cluster, name: str, namespace: str, template: PodTemplate, owner: Optional[str],
            now: str, template_hash: str = "") -> Pod:
    """A pod of `template`; a Deployment's carries its `template_hash` as the pod-template-hash label, as a
    ReplicaSet's pods do."""
    tcp, udp = template.served_ports()
    labels = {**template.labels, **({"pod-template-hash": template_hash} if template_hash else {})}
    return Pod(
        name=name, namespace=namespace, uid=uuid.uuid4().hex, labels=labels, owner=owner,
        template_hash=template.digest(), image=template.image, node=template.node_name,
        node_selector=dict(template.node_selector), netns=pod_netns_name(cluster.name, namespace, name),
        tcp=tcp, udp=udp,
        port_mappings=[PortMapping(p.host_port, p.container_port, p.protocol.lower())
                       for p in template.ports if p.host_port],
        ports=list(template.ports), env=list(template.env), created=now, role=role_of(template),
        dns_domain=cluster.dns_domain, resolv_conf=resolv_conf(namespace, cluster))


def deployment_record(m: Manifest) -> Deployment:
    """What the lab keeps of Deployment `m`."""
    assert m.template is not None
    return Deployment(m.name, m.namespace, m.replicas, dict(m.selector), m.template.digest(), m.raw)


CHANGE_CAUSE = "kubernetes.io/change-cause"


def revisions_after(old: Optional[Deployment], m: Manifest) -> list[dict[str, Any]]:
    """Deployment `m`'s revisions once applied, as Kubernetes numbers them: a template not seen before is the
    next revision; one seen before (rollout undo) takes the next number and leaves its old one."""
    assert m.template is not None
    digest = m.template.digest()
    before = list(old.revisions) if old else []
    if before and before[-1]["template_hash"] == digest:
        return before
    cause = ((m.raw.get("metadata") or {}).get("annotations") or {}).get(CHANGE_CAUSE, "")
    number = max((r["revision"] for r in before), default=0) + 1
    template = (m.raw.get("spec") or {}).get("template") or {}
    return [r for r in before if r["template_hash"] != digest] + [
        {"revision": number, "template_hash": digest, "template": template, "change_cause": cause}]


def plan_pod(cluster: Cluster, m: Manifest, objects: LabObjects, changes: PodChanges, now: str) -> str:
    """Add to `changes` what makes bare Pod `m` run as written; kubectl's word for it."""
    assert m.template is not None
    old = objects.pods.get(m.key)
    if old and old.owner:
        raise InputError(f"{m.source}: metadata.name: pod {m.key} belongs to {old.owner}; give the pod another name")
    # a nodeName that names the node the pod runs on is the scheduler's choice written back (as in
    # `lab get pod -o yaml`): the same pod
    unplaced = replace(m.template, node_name=None) if old and m.template.node_name == old.node else None
    if old and old.template_hash in (m.template.digest(), unplaced and unplaced.digest()):
        return "unchanged"
    if old:
        changes.delete.append(old)
    changes.create.append(new_pod(cluster, m.name, m.namespace, m.template, None, now))
    return applied(old, False)


def plan_deployment(cluster: Cluster, m: Manifest, objects: LabObjects, changes: PodChanges, now: str,
                    rng: random.Random) -> str:
    """Add to `changes` what gives Deployment `m` its replicas of its template: pods of the current template
    are kept (oldest first), the rest deleted, the missing ones created; kubectl's word for it."""
    assert m.template is not None
    wanted = deployment_record(m)
    owned = sorted(objects.pods_of(wanted.owner), key=lambda p: p.created)
    keep = [p for p in owned if p.template_hash == wanted.template_hash][: m.replicas]
    changes.delete += [p for p in owned if p not in keep]
    taken = {p.name for p in objects.pods.values()} | {p.name for p in changes.create}
    for _ in range(m.replicas - len(keep)):
        name = unique_name(f"{m.name}-{wanted.template_hash}", taken, rng)
        taken.add(name)
        changes.create.append(new_pod(cluster, name, m.namespace, m.template, wanted.owner, now,
                                      wanted.template_hash))
    old = objects.deployments.get(m.key)
    same = old is not None and (old.replicas, old.selector, old.template_hash) == \
        (wanted.replicas, wanted.selector, wanted.template_hash)
    return applied(old, same)


def unplan_pod(m: Manifest, objects: LabObjects, changes: PodChanges) -> str:
    """Add bare Pod `m` to the pods `changes` deletes; kubectl's word for it."""
    pod = objects.pods.get(m.key)
    if pod is None or pod.owner:
        return "not found"
    changes.delete.append(pod)
    return "deleted"


def unplan_deployment(m: Manifest, objects: LabObjects, changes: PodChanges) -> str:
    """Add the pods of Deployment `m` to the pods `changes` deletes; kubectl's word for it."""
    changes.delete += objects.pods_of(f"Deployment/{m.key}")
    return "deleted" if m.key in objects.deployments else "not found"


def unique_name(prefix: str, taken: set[str], rng: random.Random) -> str:
    while True:
        name = f"{prefix}-{''.join(rng.choice(SUFFIX_ALPHABET) for _ in range(5))}"
        if name not in taken:
            return name


def schedule(new_pods: list[Pod], nodes: list[Node], staying: list[Pod]) -> None:
    """Put each new pod on the node with the fewest pods that may run it (nodeName, nodeSelector, free
    hostPorts); ties go to the first node in the inventory. Sets each pod's node."""
    counts = Counter(p.node for p in staying)
    host_ports = {(p.node, m.host_port, m.protocol) for p in staying for m in p.port_mappings}
    for pod in new_pods:
        fits = []
        for node in nodes:
            if pod.node and pod.node != node.name:
                continue
            if any(node.labels.get(k) != v for k, v in pod.node_selector.items()):
                continue
            if any((node.name, m.host_port, m.protocol) in host_ports for m in pod.port_mappings):
                continue
            fits.append(node)
        if not fits:
            if pod.node and pod.node not in {n.name for n in nodes}:
                why = f"nodeName {pod.node!r} is not a node of the lab"
            else:
                wanted = [f"nodeName {pod.node}"] if pod.node else []
                wanted += [f"nodeSelector {fmt_labels(pod.node_selector)}"] if pod.node_selector else []
                ports = ", ".join(f"{m.host_port}/{m.protocol.upper()}" for m in pod.port_mappings)
                why = (f"no node {'with ' + ' and '.join(wanted) + ' ' if wanted else ''}has "
                       f"{'hostPort ' + ports + ' free' if ports else 'room'}")
            raise InputError(f"pod {pod.key}: cannot be scheduled: {why}; change the "
                             "pod's nodeName, nodeSelector or hostPort")
        chosen = min(fits, key=lambda n: counts[n.name])
        pod.node = chosen.name
        counts[chosen.name] += 1
        host_ports |= {(chosen.name, m.host_port, m.protocol) for m in pod.port_mappings}

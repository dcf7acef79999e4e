"""Faults made of objects: NetworkPolicies written the way people get them wrong (pure planning).

A kernel fault breaks the kernel away from the lab's objects, so `lab verify` catches it by comparing
the two. A policy fault is an object, and the kernel obeys it to the letter: comparing them shows
nothing. So `lab break` also records what the lab meant (the intent): the policy as it should have
been, or no policy at all. `lab verify` then judges every pod pair by the policies the lab meant where
they differ from those it has, and `lab fix` deletes what the fault applied. Once the user repairs the
policy themselves, meant and present agree again and `lab verify` passes.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, replace
from typing import Any, Optional

from orchestrator.core.errors import InputError
from orchestrator.core.objects import LabObjects, NetworkPolicy, Pod, key_of, split_key


@dataclass(frozen=True)
class PolicyBreak:
    document: dict  # the NetworkPolicy manifest `lab break` applies
    meant: Optional[dict]  # the spec the lab meant it to have; None: the lab meant no such policy
    summary: str

    @property
    def key(self) -> str:
        return key_of(self.document["metadata"]["namespace"], self.document["metadata"]["name"])

    def record(self, fault: str) -> dict:
        """What `lab fix` and `lab verify` read back later."""
        return {"fault": fault, "key": self.key, "meant": self.meant, "document": self.document}


def server_pods(objects: LabObjects, node: str) -> list[Pod]:
    """The lab's server pods with an address: a Service's endpoints first (what a policy usually guards), then
    those on `node` (the user's `lab break --node`)."""
    served = {key_of(split_key(key)[0], e.pod) for key, ports in objects.endpoints.items()
              for eps in ports.values() for e in eps}
    pods = [p for p in objects.pods.values() if p.ip and p.role == "server"]
    return sorted(pods, key=lambda p: (p.key not in served, p.node != node, p.namespace, p.name))


def free_name(objects: LabObjects, namespace: str, name: str) -> str:
    """`name`, or `name-2`, `name-3`...: the first no policy of `namespace` has."""
    taken = set(objects.policies)
    candidate, n = name, 1
    while key_of(namespace, candidate) in taken:
        n += 1
        candidate = f"{name}-{n}"
    return candidate


def dns_name(text: str) -> str:
    """A label value made fit for a name (RFC 1123: lower case, digits and '-')."""
    return re.sub(r"-+", "-", re.sub(r"[^a-z0-9-]", "-", text.lower())).strip("-")[:40] or "pods"


def policy_document(namespace: str, name: str, spec: dict) -> dict:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": namespace}, "spec": spec}


def typo(value: str) -> str:
    """`value` as fingers get it wrong: two neighbouring letters swapped (nginx -> ngnix), or the last one
    doubled when no two differ."""
    for i in range(len(value) // 2, len(value) - 1):
        if value[i] != value[i + 1]:
            return value[:i] + value[i + 1] + value[i] + value[i + 2:]
    return value + value[-1:] if value else "x"


def deny_all(objects: LabObjects, node: str) -> PolicyBreak:
    """A default deny for ingress, left in a namespace with servers (as after an exercise): nothing gets in."""
    pods = server_pods(objects, node)
    if not pods:
        raise InputError("fault deny-all needs a pod; apply examples/nginx.yaml")
    namespace = pods[0].namespace
    name = free_name(objects, namespace, "default-deny-ingress")
    document = policy_document(namespace, name, {"podSelector": {}, "policyTypes": ["Ingress"]})
    return PolicyBreak(document, None, f"applied NetworkPolicy {namespace}/{name}, a default deny for ingress "
                                       f"that nobody meant to leave: no pod of namespace {namespace} gets "
                                       "connections any more")


def selector_typo(objects: LabObjects, node: str) -> PolicyBreak:
    """A policy that lets one app's pods into another's, with a typo in the peer's selector: it isolates the
    servers and admits nobody."""
    pods = server_pods(objects, node)
    for server in pods:
        for client in pods:
            if client.namespace != server.namespace:
                continue
            target = distinct_label(server, client)
            source = distinct_label(client, server)
            if target and source:
                return typo_break(objects, server.namespace, target, source)
    raise InputError("fault selector-typo needs two pods with different labels in one namespace; apply "
                     "examples/nginx.yaml and run `lab run client --image=busybox`")


def distinct_label(pod: Pod, other: Pod) -> Optional[tuple[str, str]]:
    """A label of `pod` that `other` lacks, `app` first: selecting by it picks `pod` and not `other`."""
    labels = sorted(pod.labels.items(), key=lambda kv: (kv[0] != "app", kv[0]))
    return next(((k, v) for k, v in labels if other.labels.get(k) != v and v), None)


def typo_break(objects: LabObjects, namespace: str, target: tuple[str, str], source: tuple[str, str]) -> PolicyBreak:
    (tk, tv), (sk, sv) = target, source
    name = free_name(objects, namespace, f"{dns_name(tv)}-allow-{dns_name(sv)}")
    meant: dict[str, Any] = {"podSelector": {"matchLabels": {tk: tv}}, "policyTypes": ["Ingress"],
             "ingress": [{"from": [{"podSelector": {"matchLabels": {sk: sv}}}]}]}
    wrong = copy.deepcopy(meant)
    wrong["ingress"][0]["from"][0]["podSelector"]["matchLabels"][sk] = typo(sv)
    return PolicyBreak(policy_document(namespace, name, wrong), meant,
                       f"applied NetworkPolicy {namespace}/{name}: it should let pods {sk}={sv} into pods "
                       f"{tk}={tv}, but its peer selector says {sk}={typo(sv)}")


def intended_objects(objects: LabObjects, records: list[dict]) -> Optional[LabObjects]:
    """The lab's objects with each policy a fault applied as the lab meant it (or gone); None when no fault
    applied any."""
    records = [r for r in records if "restore" not in r]  # gateway_faults' changes carry no separate intent
    if not records:
        return None
    meant = replace(objects, policies=dict(objects.policies))
    for record in records:
        namespace, name = split_key(record["key"])
        if record["meant"] is None:
            meant.policies.pop(record["key"], None)
        else:
            meant.policies[record["key"]] = NetworkPolicy(name=name, namespace=namespace, spec=record["meant"])
    return meant


BREAKS = {"deny-all": deny_all, "selector-typo": selector_typo}

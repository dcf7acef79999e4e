"""Namespaces as the lab keeps them (pure): the built-in ones, those applied with their labels (and the
`kubernetes.io/metadata.name` label the API server sets), the check that every object's namespace exists,
and what deleting a namespace takes with it."""

from __future__ import annotations

from typing import Any

from orchestrator.core.errors import InputError
from orchestrator.core.manifests import NAMESPACE_NAME_LABEL, Manifest
from orchestrator.core.objects import LabObjects, Pod

BUILT_IN_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


def namespace_labels(objects: LabObjects) -> dict[str, dict[str, str]]:
    """Every namespace the lab knows (the built-in ones, those applied) -> its labels."""
    found = {name: {NAMESPACE_NAME_LABEL: name} for name in BUILT_IN_NAMESPACES}
    for name, record in objects.namespaces.items():
        found[name] = {**record.labels, NAMESPACE_NAME_LABEL: name}
    return found


def require_namespaces(manifests: list[Manifest], objects: LabObjects) -> None:
    """Every namespaced object goes into a namespace that exists or is applied along with it (kubectl says
    NotFound otherwise)."""
    known = set(namespace_labels(objects)) | {m.name for m in manifests if m.kind == "Namespace"}
    for m in manifests:
        if m.kind != "Namespace" and m.namespace and m.namespace not in known:  # "": a cluster-scoped kind
            raise InputError(f"{m.source}: metadata.namespace: Error from server (NotFound): namespaces "
                             f"\"{m.namespace}\" not found; create it first (kind: Namespace, or `lab apply` "
                             "it in the same file)")


def drop_namespace(objects: LabObjects, name: str) -> list[Pod]:
    """Forget namespace `name` and everything in it (Deployments, Services, NetworkPolicies and the objects of
    other namespaced kinds); return its pods, which the caller deletes on their nodes."""
    objects.namespaces.pop(name, None)
    stores: tuple[dict[str, Any], ...] = (objects.deployments, objects.services, objects.endpoints, objects.policies,
                                          *objects.extra.values())
    for kept in stores:
        for key in [k for k in kept if k.startswith(f"{name}/")]:
            del kept[key]
    return [p for p in objects.pods.values() if p.namespace == name]

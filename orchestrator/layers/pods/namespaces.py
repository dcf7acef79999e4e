"""Namespaces as the lab keeps them (pure): the built-in ones, those applied with their labels (and the
`kubernetes.io/metadata.name` label the API server sets), the check that every object's namespace exists,
and what deleting a namespace takes with it."""

from __future__ import annotations

from orchestrator.core.errors import InputError
from orchestrator.core.manifests import NAMESPACE_NAME_LABEL, Manifest

BUILT_IN_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


def namespace_labels(objects: dict) -> dict[str, dict]:
    """Every namespace the lab knows (the built-in ones, those applied) -> its labels."""
    found = {name: {NAMESPACE_NAME_LABEL: name} for name in BUILT_IN_NAMESPACES}
    for name, record in objects.get("namespaces", {}).items():
        found[name] = {**record.get("labels", {}), NAMESPACE_NAME_LABEL: name}
    return found


def require_namespaces(manifests: list[Manifest], objects: dict) -> None:
    """Every namespaced object goes into a namespace that exists or is applied along with it (kubectl says
    NotFound otherwise)."""
    known = set(namespace_labels(objects)) | {m.name for m in manifests if m.kind == "Namespace"}
    for m in manifests:
        if m.kind != "Namespace" and m.namespace not in known:
            raise InputError(f"{m.source}: metadata.namespace: Error from server (NotFound): namespaces "
                             f"\"{m.namespace}\" not found; create it first (kind: Namespace, or `lab apply` "
                             "it in the same file)")


def apply_namespaces(manifests: list[Manifest], objects: dict, stamp: str) -> list[str]:
    """Record the Namespace manifests; kubectl's result lines."""
    results = []
    spaces = objects.setdefault("namespaces", {})
    for m in manifests:
        if m.kind == "Namespace":
            old = spaces.get(m.name)
            record = {"name": m.name, "labels": m.labels, "created": old["created"] if old else stamp}
            spaces[m.name] = record
            results.append(f"{m.ref} {'created' if old is None else 'unchanged' if old == record else 'configured'}")
    return results


def refuse_built_in(manifests: list[Manifest]) -> None:
    for m in manifests:
        if m.kind == "Namespace" and m.name in BUILT_IN_NAMESPACES:
            raise InputError(f"{m.source}: metadata.name: namespace {m.name!r} is built in and cannot be deleted; "
                             "delete the objects in it instead")


def drop_namespace(objects: dict, name: str) -> list[dict]:
    """Forget namespace `name` and the Deployments, Services and NetworkPolicies in it; return its pods,
    which the caller deletes on their nodes."""
    objects.get("namespaces", {}).pop(name, None)
    for kind in ("deployments", "services", "endpoints", "policies"):
        for key in [k for k in objects.get(kind, {}) if k.split("/", 1)[0] == name]:
            del objects[kind][key]
    return [p for p in objects["pods"].values() if p["namespace"] == name]

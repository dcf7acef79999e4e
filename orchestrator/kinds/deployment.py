"""Deployments: a number of pods of one template, named as Kubernetes names them, spread over the nodes."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from orchestrator.core.errors import field_error
from orchestrator.core.manifests import Doc, Manifest, Warn, fmt_labels, pod_template
from orchestrator.core.model import Inventory
from orchestrator.core.objects import Deployment, LabObjects
from orchestrator.kinds.registry import Item, Kind, Plan, register
from orchestrator.kinds.show import age, lead, lead_columns
from orchestrator.layers.pods.plan import deployment_record, plan_deployment, revisions_after, unplan_deployment

LONGEST_NAME = 47  # pod names add "-<10-character template hash>-<5 characters>" and must stay within 63


def parse(doc: Doc, head: Manifest, warn: Warn) -> Manifest:
    if len(head.name) > LONGEST_NAME:
        raise field_error(head.source, "metadata.name", f"{head.name!r} is longer than {LONGEST_NAME} characters",
                          "shorten it: pod names add a hash and a suffix to it")
    spec = doc.sub("spec", required=True)
    replicas = spec.integer("replicas", 1, 0, 1000)
    selector = spec.sub("selector", required=True)
    match = selector.labels("matchLabels")
    if not match:
        raise selector.error(selector.path("matchLabels"), "missing or empty",
                             "select the template's pods, e.g. `matchLabels: {app: nginx}`")
    if selector.data.get("matchExpressions"):
        raise selector.error(selector.path("matchExpressions"), "not supported", "use matchLabels")
    template = spec.sub("template", required=True)
    template_labels = template.sub("metadata").labels("labels")
    mismatch = {k: v for k, v in match.items() if template_labels.get(k) != v}
    if mismatch:
        raise selector.error(selector.path("matchLabels"),
                             f"selector {fmt_labels(match)} does not match the template's labels "
                             f"{fmt_labels(template_labels) or '(none)'}",
                             "give spec.template.metadata.labels every label of the selector")
    return replace(head, template=pod_template(template.sub("spec", required=True), template_labels, warn),
                   replicas=replicas if replicas is not None else 1, selector=match)


def record(m: Manifest, plan: Plan) -> str:
    word = plan_deployment(plan.cluster, m, plan.objects, plan.pods, plan.stamp, plan.rng)
    plan.objects.deployments[m.key] = replace(deployment_record(m),
                                              revisions=revisions_after(plan.objects.deployments.get(m.key), m))
    return word


def forget(m: Manifest, plan: Plan) -> str:
    word = unplan_deployment(m, plan.objects, plan.pods)
    plan.objects.deployments.pop(m.key, None)
    return word


@dataclass(frozen=True)
class DeploymentView:
    """A Deployment as `lab get` and `lab describe` show it: with how many of its pods are ready, and since when."""

    deployment: Deployment
    ready: int
    created: str


def items(inv: Inventory, objects: LabObjects) -> list[Item]:
    found = []
    for _, d in sorted(objects.deployments.items()):
        pods = objects.pods_of(d.owner)
        view = DeploymentView(d, sum(1 for p in pods if p.ip), min((p.created for p in pods), default=""))
        found.append(Item(d.name, d.namespace, dict(d.selector), view))
    return found


def to_json(item: Item, inv: Inventory, objects: LabObjects) -> dict[str, Any]:
    """The Deployment as applied (so `-o yaml` goes back through `lab apply -f -` unchanged), and its status."""
    view: DeploymentView = item.record
    d = view.deployment
    applied = d.manifest or {"apiVersion": "apps/v1", "kind": "Deployment",
                             "metadata": {"name": d.name, "namespace": d.namespace, "labels": item.labels},
                             "spec": {"replicas": d.replicas, "selector": {"matchLabels": d.selector}}}
    return {**applied, "status": {"replicas": d.replicas, "readyReplicas": view.ready,
                                  "availableReplicas": view.ready}}


def table(found: list[Item], inv: Inventory, objects: LabObjects, all_namespaces: bool,
          wide: bool) -> tuple[list[str], list[list[str]]]:
    columns = lead_columns(all_namespaces) + ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"] + \
        (["SELECTOR"] if wide else [])
    rows = []
    for item in found:
        view: DeploymentView = item.record
        d = view.deployment
        rows.append(lead(d.namespace, all_namespaces) + [
            d.name, f"{view.ready}/{d.replicas}", str(d.replicas), str(view.ready),
            age(view.created) if view.created else "<unknown>"] + ([fmt_labels(d.selector)] if wide else []))
    return columns, rows


def describe(item: Item, inv: Inventory, objects: LabObjects) -> list[tuple[str, str]]:
    """`kubectl describe deploy` as (label, value) lines."""
    view: DeploymentView = item.record
    d, ready = view.deployment, view.ready
    n = d.replicas
    return [("Name:", d.name), ("Namespace:", d.namespace),
            ("CreationTimestamp:", view.created or "<unknown>"), ("Selector:", fmt_labels(d.selector)),
            ("Replicas:", f"{n} desired | {n} updated | {n} total | {ready} available | {n - ready} unavailable"),
            ("StrategyType:", "Recreate (the lab's pods are made again when the template changes)"),
            ("Pod Template:", ""), ("  Labels:", fmt_labels(d.selector)), ("Events:", "<none>")]


DEPLOYMENT = register(Kind("Deployment", "deployments", "deployment.apps", api_version="apps/v1",
                           short_names=("deploy",), in_all=3, parse=parse, order=20, record=record, forget=forget,
                           items=items, to_json=to_json, table=table, describe=describe))

"""The kinds `lab get` knows, kubectl's way: names and short names, how each lists, filters (namespace, names,
-l label selector, --field-selector) and prints (table, wide, json, yaml, name, jsonpath)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Callable, Optional

import yaml

from orchestrator.cli.output import (age, endpoints_json, endpoints_table, namespace_table, netpol_json, netpol_table,
                                     node_json, node_table, pod_json, pod_table, service_json, service_table)
from orchestrator.core.errors import InputError
from orchestrator.core.manifests import fmt_labels
from orchestrator.core.model import Inventory, Node
from orchestrator.core.objects import LabObjects
from orchestrator.core.policy_spec import Selector
from orchestrator.layers.pods.namespaces import namespace_labels


@dataclass(frozen=True)
class Kind:
    name: str  # kubectl's plural
    ref: str  # what -o name prints before the name: pod, service, deployment.apps, ...
    namespaced: bool
    items: Callable  # (inv, objects) -> list of records, each with .namespace, .name and .labels
    to_json: Callable  # (record, inv, objects) -> the object as kubectl -o json prints it
    table: Callable  # (records, inv, objects, all_namespaces, wide) -> (columns, rows)


@dataclass
class DeploymentRecord:
    """A Deployment as `lab get` and `lab describe` show it: with how many of its pods are ready, and since when."""

    namespace: str
    name: str
    labels: dict[str, str]
    replicas: int
    ready: int
    selector: dict[str, str]
    created: str
    manifest: dict


@dataclass
class NodeRecord:
    """A node as `lab get nodes` lists it."""

    name: str
    labels: dict[str, str]
    node: Node
    namespace: str = ""


@dataclass
class NamespaceRecord:
    """A namespace as `lab get ns` lists it (built in, applied, or named by an object)."""

    name: str
    labels: dict[str, str]
    namespace: str = ""


def deployment_records(inv: Inventory, objects: LabObjects) -> list[DeploymentRecord]:
    records = []
    for _, d in sorted(objects.deployments.items()):
        pods = objects.pods_of(d.owner)
        records.append(DeploymentRecord(namespace=d.namespace, name=d.name, labels=dict(d.selector),
                                        replicas=d.replicas, ready=sum(1 for p in pods if p.ip), selector=d.selector,
                                        created=min((p.created for p in pods), default=""), manifest=d.manifest))
    return records


def deployment_json(d: DeploymentRecord, inv: Inventory, objects: LabObjects) -> dict:
    """The Deployment as applied (so `-o yaml` goes back through `lab apply -f -` unchanged), and its status."""
    applied = d.manifest or {"apiVersion": "apps/v1", "kind": "Deployment",
                             "metadata": {"name": d.name, "namespace": d.namespace, "labels": d.labels},
                             "spec": {"replicas": d.replicas, "selector": {"matchLabels": d.selector}}}
    return {**applied, "status": {"replicas": d.replicas, "readyReplicas": d.ready, "availableReplicas": d.ready}}


def deployment_table(records, inv, objects, all_namespaces: bool, wide: bool) -> tuple[list, list]:
    lead = ["NAMESPACE"] if all_namespaces else []
    columns = lead + ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"] + (["SELECTOR"] if wide else [])
    return columns, [([d.namespace] if lead else []) + [d.name, f"{d.ready}/{d.replicas}",
                     str(d.replicas), str(d.ready), age(d.created) if d.created else "<unknown>"]
                     + ([fmt_labels(d.selector)] if wide else []) for d in records]


def sorted_values(mapping: dict) -> list:
    return [v for _, v in sorted(mapping.items())]


KINDS = {k.name: k for k in (
    Kind("pods", "pod", True, lambda inv, o: sorted(o.pods.values(), key=lambda p: (p.namespace, p.name)),
         lambda p, inv, o: pod_json(p, inv),
         lambda r, inv, o, a, w: pod_table(r, a, w)),
    Kind("services", "service", True, lambda inv, o: sorted_values(o.services),
         lambda s, inv, o: service_json(s),
         lambda r, inv, o, a, w: service_table([(s.key, s) for s in r], a, w)),
    Kind("endpoints", "endpoints", True, lambda inv, o: sorted_values(o.services),
         lambda s, inv, o: endpoints_json(s, o, s.key),
         lambda r, inv, o, a, w: endpoints_table([(s.key, s) for s in r], o, a)),
    Kind("deployments", "deployment.apps", True, deployment_records, deployment_json, deployment_table),
    Kind("networkpolicies", "networkpolicy.networking.k8s.io", True,
         lambda inv, o: sorted_values(o.policies), lambda r, inv, o: netpol_json(r),
         lambda r, inv, o, a, w: netpol_table(r, a)),
    Kind("nodes", "node", False,
         lambda inv, o: [NodeRecord(n.name, n.labels, n) for n in inv.nodes],
         lambda r, inv, o: node_json(r.node, o),
         lambda r, inv, o, a, w: (node_table(inv, o, w)[0], [row for row in node_table(inv, o, w)[1]
                                                             if row[0] in {x.name for x in r}])),
    Kind("namespaces", "namespace", False,
         lambda inv, o: [NamespaceRecord(n, labels) for n, labels in sorted(namespace_labels(o).items())],
         lambda r, inv, o: {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": r.name, "labels": r.labels}},
         lambda r, inv, o, a, w: namespace_table({x.name: x.labels for x in r}, o)),
)}
ALIASES = {"pod": "pods", "po": "pods", "service": "services", "svc": "services", "ep": "endpoints",
           "deployment": "deployments", "deploy": "deployments", "deployment.apps": "deployments",
           "networkpolicy": "networkpolicies", "netpol": "networkpolicies", "node": "nodes", "no": "nodes",
           "namespace": "namespaces", "ns": "namespaces", **{name: name for name in KINDS}}
ALL = ("pods", "services", "deployments")  # what `lab get all` shows, as kubectl's `all` category does


def kinds_of(text: str) -> list[Kind]:
    """`pods`, `po,svc`, `all`: the kinds, or kubectl's error for one it does not know."""
    found = []
    for word in text.split(","):
        names = ALL if word == "all" else (ALIASES.get(word.lower()),)
        if names == (None,):
            raise InputError(f'the server doesn\'t have a resource type "{word}"; use one of: '
                             f"{', '.join(sorted(set(ALIASES)))}, all")
        found += [KINDS[n] for n in names if KINDS[n] not in found]
    return found


def field_value(doc: dict, path: str):
    value = doc
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def every(doc: dict) -> bool:
    """The field filter without --field-selector: `select` then builds no JSON at all."""
    return True


def field_filter(text: Optional[str]) -> Callable[[dict], bool]:
    """--field-selector metadata.name=x,spec.nodeName!=node1 over the -o json form of each object."""
    if not text:
        return every
    terms = []
    for term in text.split(","):
        path, op, value = term.partition("!=") if "!=" in term else term.partition("==") if "==" in term \
            else term.partition("=")
        if not op or not path:
            raise InputError(f"--field-selector {text}: {term!r} is not FIELD=VALUE or FIELD!=VALUE; "
                             "write e.g. spec.nodeName=node1")
        terms.append((path.strip(), op == "!=", value.strip()))
    return lambda doc: all((str(field_value(doc, path) or "") == value) != negate for path, negate, value in terms)


def select(kind: Kind, inv: Inventory, objects: LabObjects, names: list[str], namespace: Optional[str],
           labels: Optional[Selector], fields: Callable[[dict], bool] = every) -> list:
    """The records of `kind` that pass every filter (namespace None: all namespaces)."""
    return [r for r in kind.items(inv, objects)
            if (not kind.namespaced or namespace is None or r.namespace == namespace)
            and (not names or r.name in names) and (labels is None or labels.matches(r.labels))
            and (fields is every or fields(kind.to_json(r, inv, objects)))]


def jsonpath(template: str, doc) -> str:
    """kubectl's -o jsonpath={.items[*].metadata.name}: the values, space separated (range is not supported)."""
    from jsonpath_ng.ext import parse  # the one command that needs it pays its import
    expression = template.strip()
    if expression.startswith("{") and expression.endswith("}"):
        expression = expression[1:-1]
    if "range" in expression:
        raise InputError("-o jsonpath: {range} templates are not supported; ask for one path, e.g. "
                         "jsonpath={.items[*].status.podIP}")
    try:
        found = parse("$" + expression if expression.startswith((".", "[")) else expression).find(doc)
    except Exception as exc:  # noqa: BLE001 - jsonpath-ng raises its own types for bad paths
        raise InputError(f"-o jsonpath={template}: not a path ({exc}); write e.g. {{.items[*].metadata.name}}") \
            from None
    return " ".join(v if isinstance(v, str) else json.dumps(v) for v in (m.value for m in found))


def render_docs(docs: list[dict], single: bool, output: str) -> str:
    """json, yaml or jsonpath=...: the object asked for by name, else a kubectl List."""
    doc = docs[0] if single and len(docs) == 1 else {"apiVersion": "v1", "kind": "List", "items": docs}
    if output == "json":
        return json.dumps(doc, indent=2)
    if output == "yaml":
        return yaml.safe_dump(doc, sort_keys=False).rstrip("\n")
    return jsonpath(output[len("jsonpath="):], doc)

"""The kinds the lab knows, each declared by one module of this package and registered here, as containerlab's
node kinds register themselves: how a manifest of the kind is parsed and validated, where it is recorded in a
plan, how it is applied and deleted (with what it takes along), and how `lab get` and `lab describe` show it.
pipeline.py and cli/ go through this registry; they never switch on a kind's name.

Adding a kind is one module that builds a `Kind` and calls `register`, plus its import in `kinds/__init__.py`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import yaml

from orchestrator.core.errors import InputError, yaml_error
from orchestrator.core.inventory import did_you_mean
from orchestrator.core.manifests import Doc, Manifest, StrictLoader, Warn, load_documents
from orchestrator.core.model import Cluster, Inventory, Node
from orchestrator.core.names import DNS_LABEL, DNS_SUBDOMAIN
from orchestrator.core.objects import LabObjects, Pod, key_of
from orchestrator.core.schema import schema_error
from orchestrator.layers.pods.plan import PodChanges, schedule


@dataclass(frozen=True)
class Item:
    """One object as `lab get` lists and filters it."""

    name: str
    namespace: str  # "" for a cluster-scoped object
    labels: dict[str, str]
    record: Any


@dataclass
class Plan:
    """What one `lab apply` or `lab delete` changes, gathered kind by kind in the lab's objects before anything
    touches a node: the pods to create and delete, for the pipeline to carry out."""

    cluster: Cluster
    nodes: list[Node]
    objects: LabObjects
    stamp: str
    rng: random.Random = field(default_factory=random.Random)
    pods: PodChanges = field(default_factory=PodChanges)
    context: dict[str, Any] = field(default_factory=dict)  # what a kind keeps between its manifests

    def pods_after(self) -> list[Pod]:
        """The pods the lab will have once the plan is carried out."""
        doomed = {id(p) for p in self.pods.delete}
        return [p for p in self.objects.pods.values() if id(p) not in doomed] + self.pods.create


Parser = Callable[[Doc, Manifest, Warn], Manifest]  # (document, the manifest with its metadata) -> the manifest
Table = Callable[[list[Item], Inventory, LabObjects, bool, bool], tuple[list[str], list[list[str]]]]


@dataclass(frozen=True)
class Kind:
    """Everything the lab does with one kind."""

    kind: str  # as manifests name it: "Deployment"; for a kind only `lab get` shows, its kubectl name
    resource: str  # kubectl's plural: "deployments"
    ref: str  # what result lines and `-o name` print before the name: "deployment.apps"
    api_version: str = "v1"
    short_names: tuple[str, ...] = ()
    namespaced: bool = True
    in_all: int = 0  # its place in `lab get all` (kubectl's `all` category, in kubectl's order); 0: not there
    # `lab apply`: None for a kind no manifest makes (nodes, endpoints)
    parse: Optional[Parser] = None
    name_rule: str = "subdomain"  # "subdomain" (RFC 1123, 253) or "label" (RFC 1123 label, 63)
    schema: Optional[Callable[[Any, str], Optional[InputError]]] = schema_error  # (document, source) -> the first
    # error of the kind's published schema (Kubernetes' own for built-in kinds; a CRD's for others), or None
    schema_first: bool = False  # the schema checks it before the lab's own (more precise) checks
    order: int = 50  # where it is recorded in a plan: lower first (namespaces before what is in them)
    record: Optional[Callable[[Manifest, Plan], str]] = None  # -> created | unchanged | configured
    forget: Optional[Callable[[Manifest, Plan], str]] = None  # -> deleted | not found (dependents go too)
    # how its objects reach the nodes, for a kind whose objects change nodes beyond pods and service rules (an
    # Ingress's proxy config): (inventory, transport, objects) -> failures, one line each; the pipeline calls
    # it after the pods, before the service rules, whenever an apply or delete names the kind
    converge: Optional[Callable[[Inventory, Any, LabObjects], list[str]]] = None
    # what the kind derives from all the lab's objects once a plan has recorded its manifests, whatever kinds they
    # were (the addresses of LoadBalancer Services, from the pools): (plan) -> None, changing plan.objects
    settle: Optional[Callable[[Plan], None]] = None
    # `lab get` and `lab describe`
    items: Callable[[Inventory, LabObjects], list[Item]] = lambda inv, objects: []
    to_json: Callable[[Item, Inventory, LabObjects], dict[str, Any]] = lambda item, inv, objects: {}
    table: Optional[Table] = None
    describe: Optional[Callable[[Item, Inventory, LabObjects], list[tuple[str, str]]]] = None

    @property
    def names(self) -> tuple[str, ...]:
        """Every name kubectl takes for it: plural, singular, short names, with the API group."""
        group = self.api_version.split("/")[0] if "/" in self.api_version else ""
        singular = self.kind.lower()
        return tuple(dict.fromkeys((self.resource, singular, *self.short_names,
                                    *((f"{singular}.{group}", f"{self.resource}.{group}") if group else ()))))

    def not_found(self, name: str, namespace: str = "") -> str:
        """kubectl's NotFound error for an object of this kind."""
        where = f" in namespace {namespace!r}" if namespace and self.namespaced else ""
        plural = self.ref.replace(self.ref.split(".")[0], self.resource, 1)  # deployments.apps, pods
        return f'Error from server (NotFound): {plural} "{name}" not found{where}'


KINDS: dict[str, Kind] = {}  # by resource name, in registration order
BY_NAME: dict[str, Kind] = {}  # every name kubectl takes (pods, pod, po, ...) and every manifest kind


def register(kind: Kind) -> Kind:
    """Make `kind` known to `lab apply`, `lab get` and the rest. A name taken twice is a programming error."""
    taken = [n for n in (*kind.names, kind.kind) if BY_NAME.get(n, kind) is not kind]
    if taken or kind.resource in KINDS:
        raise ValueError(f"kind {kind.kind}: {', '.join(taken or [kind.resource])} already registered")
    KINDS[kind.resource] = kind
    BY_NAME.update((n, kind) for n in (*kind.names, kind.kind))
    return kind


def unregister(kind: Kind) -> None:
    """Forget `kind` (tests that register one of their own)."""
    KINDS.pop(kind.resource, None)
    for name in [n for n, k in BY_NAME.items() if k is kind]:
        del BY_NAME[name]


def by_name(word: str) -> Optional[Kind]:
    """The kind kubectl would take `word` for (`po`, `Deployment`, `networkpolicies.networking.k8s.io`)."""
    return BY_NAME.get(word) or BY_NAME.get(word.lower())


def applicable() -> dict[str, Kind]:
    """Manifest kind -> Kind, for the kinds `lab apply` takes."""
    return {k.kind: k for k in KINDS.values() if k.parse is not None}


def manifest_kind(m: Manifest) -> Kind:
    return applicable()[m.kind]


# ---- parsing ----

def parse(data: Any, source: str, warn: Warn) -> Manifest:
    """One manifest, checked by its kind's own rules and by Kubernetes' schema (before the kind's rules where
    the kind says so, else after its more precise messages)."""
    doc = Doc(data, "", source)
    kinds = applicable()
    name = doc.data.get("kind")
    kind = kinds.get(name) if isinstance(name, str) else None
    if kind is None or kind.parse is None:
        raise doc.error("kind", f"{name!r} is not supported{did_you_mean(str(name), kinds)}",
                        f"the lab understands: {', '.join(kinds)}")
    api = doc.data.get("apiVersion")
    if api != kind.api_version:
        raise doc.error("apiVersion", f"{api!r} is not the apiVersion of a {kind.kind}",
                        f"write apiVersion: {kind.api_version}")
    if kind.schema_first and kind.schema:
        problem = kind.schema(data, source)
        if problem:
            raise problem
    manifest = kind.parse(doc, head(doc, kind), warn)
    if not kind.schema_first and kind.schema:
        problem = kind.schema(data, source)
        if problem:
            raise problem
    return manifest


def head(doc: Doc, kind: Kind) -> Manifest:
    """The manifest as far as its metadata says: kind, name, namespace, labels."""
    meta = doc.sub("metadata", required=True)
    name = meta.data.get("name")
    rule = DNS_LABEL if kind.name_rule == "label" else DNS_SUBDOMAIN
    if not isinstance(name, str) or not rule.match(name):
        raise meta.error(meta.path("name"), f"{name!r} is not a valid {kind.kind} name",
                         "use lowercase letters, digits and '-', starting and ending with a letter or digit")
    namespace = meta.data.get("namespace") or "default"
    if not isinstance(namespace, str) or not DNS_LABEL.match(namespace):
        raise meta.error(meta.path("namespace"), f"{namespace!r} is not a valid namespace",
                         "use lowercase letters, digits and '-'")
    return Manifest(kind.kind, name, namespace if kind.namespaced else "", doc.source, meta.labels("labels"),
                    raw=doc.data, resource=kind.ref, annotations=doc.annotations())


def manifest(kind_name: str, name: str, namespace: str, source: str) -> Manifest:
    """A manifest that only names an object (as `lab delete KIND NAME` does)."""
    kind = applicable()[kind_name]
    return Manifest(kind.kind, name, namespace if kind.namespaced else "", source, {}, resource=kind.ref)


def load_text(text: str, source: str) -> list[Manifest]:
    """Manifests from YAML text the lab ships (templates) or keeps (a Deployment's manifest); no warnings."""
    try:
        docs = [doc for doc in yaml.load_all(text, Loader=StrictLoader) if doc is not None]
    except yaml.YAMLError as exc:
        raise yaml_error(source, exc) from None
    return [parse(doc, source, lambda line: None) for doc in docs]


def in_namespace(doc: Any, namespace: Optional[str], source: str, enforce: bool = True) -> Any:
    """The document as `-n NAMESPACE` makes it (kubectl's rule): in that namespace where it names none; naming
    another is an error where the namespace is enforced (given with -n, not the context's)."""
    if namespace is None or not isinstance(doc, dict) or not isinstance(doc.get("metadata"), dict):
        return doc
    written = doc["metadata"].get("namespace")
    if written and not enforce:
        return doc
    if written and written != namespace:
        raise InputError(f"{source}: metadata.namespace: the namespace from the provided object {written!r} does not "
                         f"match the namespace {namespace!r}; pass --namespace={written}, or leave it out of the "
                         "file")
    return {**doc, "metadata": {**doc["metadata"], "namespace": namespace}}


def parse_all(target: str, warn: Warn, namespace: Optional[str] = None, enforce: bool = True) -> list[Manifest]:
    """Every manifest in `target` (a file, a folder, or - for stdin), validated, in `namespace` (-n, or the
    context's: not `enforce`d) where the manifest names none; an object defined twice (same kind, namespace,
    name) is an error."""
    manifests = [parse(in_namespace(doc, namespace, source, enforce), source, warn)
                 for source, doc in load_documents(target)]
    seen: dict[tuple[str, str, str], str] = {}
    for m in manifests:
        key = (m.kind, m.namespace, m.name)
        if key in seen:
            raise InputError(f"{m.source}: metadata.name: {m.kind} {m.key} is also defined in {seen[key]}; "
                             "give each object its own name")
        seen[key] = m.source
    return manifests


def in_order(manifests: list[Manifest]) -> list[Manifest]:
    """`manifests` in the order their kinds are recorded (stable within a kind)."""
    return sorted(manifests, key=lambda m: manifest_kind(m).order)


def plan(cluster: Cluster, nodes: list[Node], objects: LabObjects, manifests: list[Manifest], stamp: str,
         deleting: bool = False, rng: Optional[random.Random] = None) -> tuple[Plan, list[str]]:
    """Record (or, `deleting`, forget) every manifest in `objects`, kind by kind in the registry's order, and place
    the new pods on nodes; the plan and kubectl's result lines, in the manifests' order. Pure: nothing touches a
    node, and an error (an unschedulable pod, a taken address) leaves the caller's file unwritten."""
    planned = Plan(cluster, nodes, objects, stamp, rng or random.Random())
    words: dict[int, str] = {}
    for m in in_order(manifests):
        kind = manifest_kind(m)
        action = kind.forget if deleting else kind.record
        assert action is not None, kind.kind
        words[id(m)] = action(m, planned)
    for kind in KINDS.values():
        if kind.settle is not None:
            kind.settle(planned)
    if not deleting:
        doomed = {id(p) for p in planned.pods.delete}
        schedule(planned.pods.create, nodes, [p for p in objects.pods.values() if id(p) not in doomed])
    return planned, [result_line(m, words[id(m)]) for m in manifests]


def forgotten(store: dict[str, Any], key: str) -> str:
    """Forget `key` in one of the lab's stores; kubectl's word for it."""
    return "deleted" if store.pop(key, None) is not None else "not found"


def result_line(m: Manifest, word: str) -> str:
    """kubectl's result line: deployment.apps/nginx created."""
    return f"{m.ref} {word}"


def object_key(item: Item) -> str:
    return key_of(item.namespace, item.name) if item.namespace else item.name

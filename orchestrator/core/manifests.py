"""Kubernetes YAML as validated objects, or one precise error: the parts every kind's parser shares (documents,
the `Doc` reader, metadata, pod templates, service specs). Which kinds exist, and how each is parsed, is the kind
registry's (orchestrator/kinds/): a kind module declares its parser there.

The lab runs its own small server in every pod instead of the image, so fields about images,
commands, resources or volumes are accepted with a warning (ignoring them is safe); fields that would
change networking and are not supported are errors.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Union, overload

import yaml

from orchestrator.core.errors import InputError, field_error, yaml_error
from orchestrator.core.inventory import did_you_mean
from orchestrator.core.names import DNS_LABEL, label_problem
from orchestrator.core.policy_spec import PolicySpec

NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"  # set on every namespace by the API server


PROTOCOLS = ("TCP", "UDP")
# Pod spec fields that only concern what runs in the container: the lab's own server runs instead.
IGNORED_CONTAINER_FIELDS = {"image", "imagePullPolicy", "command", "args", "resources",
                            "volumeMounts", "livenessProbe", "readinessProbe", "startupProbe", "securityContext",
                            "workingDir", "lifecycle", "terminationMessagePath", "terminationMessagePolicy",
                            "stdin", "tty"}
IGNORED_POD_FIELDS = {"volumes", "restartPolicy", "terminationGracePeriodSeconds", "securityContext",
                      "serviceAccountName", "serviceAccount", "imagePullSecrets", "tolerations", "affinity",
                      "dnsPolicy", "priorityClassName", "schedulerName", "initContainers", "enableServiceLinks",
                      "automountServiceAccountToken"}
POD_FIELDS = {"containers", "nodeName", "nodeSelector", "hostname"} | IGNORED_POD_FIELDS


@dataclass(frozen=True)
class ContainerPort:
    container_port: int
    protocol: str = "TCP"
    host_port: Optional[int] = None
    name: Optional[str] = None


@dataclass(frozen=True)
class EnvVar:
    """One variable of a container's env (or all keys of an envFrom source, `name` then being the prefix): a
    value, or a key of a ConfigMap or Secret (`source` "ConfigMap" or "Secret"; `key` "" for envFrom)."""

    name: str
    value: str = ""
    source: str = ""
    source_name: str = ""
    key: str = ""
    optional: bool = False


@dataclass(frozen=True)
class PodTemplate:
    labels: dict[str, str] = field(hash=False)
    ports: tuple[ContainerPort, ...]
    image: str = ""  # the first container's; an image named *dnsmasq* runs the real dnsmasq
    node_name: Optional[str] = None
    node_selector: dict[str, str] = field(default_factory=dict, hash=False)
    env: tuple[EnvVar, ...] = ()  # the first container's envFrom, then its env, in Kubernetes' order

    def digest(self) -> str:
        """A short hash of the template, like Kubernetes' pod-template-hash."""
        data = json.dumps({"labels": self.labels, "ports": [p.__dict__ for p in self.ports], "image": self.image,
                           "node": self.node_name, "selector": self.node_selector,
                           **({"env": [e.__dict__ for e in self.env]} if self.env else {})}, sort_keys=True)
        return hashlib.sha256(data.encode()).hexdigest()[:10]

    def served_ports(self) -> tuple[list[int], list[int]]:
        """(TCP ports, UDP ports) the lab's pod server listens on: every declared port number, TCP and
        UDP, or port 80 when none is declared (as for the talk's nginx)."""
        numbers = sorted({p.container_port for p in self.ports}) or [80]
        return numbers, numbers


@dataclass(frozen=True)
class ServicePort:
    name: Optional[str]
    protocol: str
    port: int
    target_port: Union[int, str]  # a number, or the name of a containerPort
    node_port: Optional[int] = None


@dataclass(frozen=True)
class ServiceSpec:
    type: str = "ClusterIP"
    ports: tuple[ServicePort, ...] = ()
    cluster_ip: Optional[str] = None
    session_affinity: str = "None"
    affinity_timeout: int = 10800
    external_traffic_policy: str = "Cluster"  # NodePort and LoadBalancer: Cluster (any endpoint) or Local
    health_check_node_port: Optional[int] = None  # LoadBalancer with Local: asked for; else allocated
    allocate_node_ports: bool = True  # LoadBalancer: allocateLoadBalancerNodePorts
    load_balancer_ip: Optional[str] = None  # spec.loadBalancerIP or the metallb.io/loadBalancerIPs annotation
    load_balancer_class: Optional[str] = None  # None: the lab's own (MetalLB-style) controller serves it
    address_pool: Optional[str] = None  # the metallb.io/address-pool annotation: take the address from this pool


@dataclass(frozen=True)
class Manifest:
    kind: str
    name: str
    namespace: str
    source: str  # "file.yaml (document 2)" for messages
    labels: dict[str, str] = field(hash=False)
    template: Optional[PodTemplate] = None  # Pod, Deployment
    replicas: int = 1  # Deployment
    selector: dict[str, str] = field(default_factory=dict, hash=False)  # Deployment matchLabels, Service selector
    raw: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    service: Optional[ServiceSpec] = None  # Service
    policy: Optional[PolicySpec] = None  # NetworkPolicy
    resource: str = ""  # kubectl's name of the kind in result lines: deployment.apps, pod, service
    spec: Any = field(default=None, hash=False, compare=False)  # a registered kind's own parsed spec
    annotations: dict[str, str] = field(default_factory=dict, hash=False)

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}" if self.namespace else self.name

    @property
    def ref(self) -> str:
        """kubectl's way of naming it: deployment.apps/nginx, pod/x, service/y."""
        return f"{self.resource}/{self.name}"


Warn = Callable[[str], None]


class Doc:
    """One YAML mapping of a manifest, read with errors naming source and field."""

    def __init__(self, data: Any, where: str, source: str):
        self.where, self.source = where, source
        if not isinstance(data, dict):
            raise self.error(where or "document", f"expected a mapping, got {type(data).__name__}",
                             "write it as `key: value` lines")
        self.data = data

    def error(self, field_name: str, problem: str, fix: str) -> InputError:
        return field_error(self.source, field_name, problem, fix)

    def path(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def sub(self, key: str, required: bool = False) -> "Doc":
        value = self.data.get(key)
        if value is None:
            if required:
                raise self.error(self.path(key), "missing", f"add `{key}:`")
            value = {}
        return Doc(value, self.path(key), self.source)

    def annotations(self) -> dict[str, str]:
        """metadata.annotations of a manifest's top mapping (what is not text there, Kubernetes' schema refuses)."""
        value = self.sub("metadata").data.get("annotations")
        return {str(k): v for k, v in value.items() if isinstance(v, str)} if isinstance(value, dict) else {}

    def labels(self, key: str) -> dict[str, str]:
        value = self.data.get(key) or {}
        if not isinstance(value, dict) or not all(isinstance(v, (str, int, float, bool)) for v in value.values()):
            raise self.error(self.path(key), "expected a mapping of label: value", "write e.g. `app: nginx`")
        labels = {str(k): str(v) for k, v in value.items()}
        for k, v in labels.items():
            problem = label_problem(k, v)
            if problem:
                raise self.error(f"{self.path(key)}.{k}", problem, "write e.g. `app: nginx` or "
                                                                  "`app.kubernetes.io/name: web`")
        return labels

    @overload
    def integer(self, key: str, default: int, low: int, high: int) -> int: ...

    @overload
    def integer(self, key: str, default: Optional[int], low: int, high: int) -> Optional[int]: ...

    def integer(self, key: str, default: Optional[int], low: int, high: int) -> Optional[int]:
        value = self.data.get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise self.error(self.path(key), f"{value!r} is not a whole number from {low} to {high}",
                             f"give a number from {low} to {high}")
        return value


def load_documents(target: str) -> list[tuple[str, Any]]:
    """(source, document) for every YAML document in a file, a folder's *.yaml/*.yml files, or stdin (-)."""
    if target == "-":
        texts = [("<stdin>", sys.stdin.read())]
    else:
        path = Path(target)
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml", ".json"))
            if not files:
                raise InputError(f"{target}: no .yaml, .yml or .json files in this folder; give a file or a "
                                 "folder of manifests")
        elif path.is_file():
            files = [path]
        else:
            raise InputError(f"{target}: no such file or folder; give a manifest file, a folder, or - for stdin")
        texts = [(str(p), p.read_text()) for p in files]
    documents = []
    for source, text in texts:
        try:
            docs = [d for d in yaml.load_all(text, Loader=StrictLoader) if d is not None]
        except yaml.YAMLError as exc:
            raise yaml_error(source, exc) from None
        for index, doc in enumerate(docs):
            if isinstance(doc, dict) and doc.get("kind") == "List":
                documents += [(f"{source} (document {index + 1}, item {i + 1})", item)
                              for i, item in enumerate(doc.get("items") or [])]
            else:
                documents.append((f"{source} (document {index + 1})" if len(docs) > 1 else source, doc))
    return documents


class StrictLoader(yaml.SafeLoader):
    """YAML as kubectl reads it: a key given twice in one mapping is an error (PyYAML keeps the last one, so two
    objects without the `---` between them would silently become one)."""

    def construct_mapping(self, node, deep=False):  # type: ignore[no-untyped-def]
        seen: dict[Any, Any] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} is given twice (a missing '---' between two objects?)",
                    key_node.start_mark)
            seen[key] = True
        return super().construct_mapping(node, deep=deep)


SERVICE_TYPES = ("ClusterIP", "NodePort", "LoadBalancer")
NODE_PORT_TYPES = ("NodePort", "LoadBalancer")  # the types whose ports get a NodePort
PORT_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,13}[a-z0-9])?$")


def service_spec(spec: Doc, annotations: Mapping[str, str]) -> ServiceSpec:
    kind = spec.data.get("type", "ClusterIP")
    if kind not in SERVICE_TYPES:
        raise spec.error(spec.path("type"), f"{kind!r} is not supported", "use ClusterIP, NodePort or LoadBalancer "
                         "(ExternalName: the lab has no DNS outside the cluster to point at)")
    raw_ports = spec.data.get("ports")
    if not isinstance(raw_ports, list) or not raw_ports:
        raise spec.error(spec.path("ports"), "missing or empty", "list at least one port, e.g. `- port: 80`")
    ports, seen = [], set()
    for i, raw in enumerate(raw_ports):
        p = Doc(raw, spec.path(f"ports[{i}]"), spec.source)
        name = p.data.get("name")
        if name is None and len(raw_ports) > 1:
            raise p.error(p.path("name"), "missing", "name every port when a service has more than one")
        if name is not None and (not isinstance(name, str) or not DNS_LABEL.match(name)):  # 63: a Service's
            raise p.error(p.path("name"), f"{name!r} is not a valid port name", "use up to 63 lowercase letters, "
                          "digits and '-'")
        protocol = p.data.get("protocol", "TCP")
        if protocol not in PROTOCOLS:
            raise p.error(p.path("protocol"), f"{protocol!r} is not supported", "use TCP or UDP")
        number = p.integer("port", None, 1, 65535)
        if number is None:
            raise p.error(p.path("port"), "missing", "give the service's port, 1 to 65535")
        if (number, protocol) in seen:
            raise p.error(p.path("port"), f"{number}/{protocol} is listed twice", "list each port once")
        seen.add((number, protocol))
        target = p.data.get("targetPort", number)
        if isinstance(target, str) and not target.isdigit():
            if not PORT_NAME.match(target):
                raise p.error(p.path("targetPort"), f"{target!r} is neither a port number nor a port name",
                              "give a number or the name of a containerPort")
        else:
            target = int(target)
            if not 1 <= target <= 65535:
                raise p.error(p.path("targetPort"), f"{target} is out of range", "give a number from 1 to 65535")
        node_port = p.integer("nodePort", None, 30000, 32767)
        if node_port is not None and kind not in NODE_PORT_TYPES:
            raise p.error(p.path("nodePort"), "only NodePort and LoadBalancer services have a nodePort",
                          "remove it or set type: NodePort")
        ports.append(ServicePort(name, protocol, number, target, node_port))
    cluster_ip = spec.data.get("clusterIP")
    if cluster_ip == "None":
        raise spec.error(spec.path("clusterIP"), "headless services are not supported", "remove clusterIP")
    affinity = spec.data.get("sessionAffinity", "None")
    if affinity not in ("None", "ClientIP"):
        raise spec.error(spec.path("sessionAffinity"), f"{affinity!r} is not valid", "use None or ClientIP")
    timeout = spec.sub("sessionAffinityConfig").sub("clientIP").integer("timeoutSeconds", 10800, 1, 86400)
    return ServiceSpec(kind, tuple(ports), str(cluster_ip) if cluster_ip else None, affinity, timeout,
                       **external_fields(spec, kind, annotations))


def external_fields(spec: Doc, kind: str, annotations: Mapping[str, str]) -> dict[str, Any]:
    """What a NodePort or LoadBalancer Service says about traffic from outside the cluster, as Kubernetes
    validates it: externalTrafficPolicy only on those types, the LoadBalancer fields only on a LoadBalancer."""
    policy = spec.data.get("externalTrafficPolicy")
    if policy is not None and kind not in NODE_PORT_TYPES:
        raise spec.error(spec.path("externalTrafficPolicy"), "may only be set when type is NodePort or "
                         "LoadBalancer", "remove it or set type: LoadBalancer")
    if policy not in (None, "Cluster", "Local"):
        raise spec.error(spec.path("externalTrafficPolicy"), f"{policy!r} is not valid", "use Cluster or Local")
    health = spec.integer("healthCheckNodePort", None, 30000, 32767)
    if health is not None and not (kind == "LoadBalancer" and policy == "Local"):
        raise spec.error(spec.path("healthCheckNodePort"), "may only be set when type is LoadBalancer and "
                         "externalTrafficPolicy is Local", "remove it or set both")
    allocate = spec.data.get("allocateLoadBalancerNodePorts", True)
    if not isinstance(allocate, bool):
        raise spec.error(spec.path("allocateLoadBalancerNodePorts"), f"{allocate!r} is not true or false",
                         "write true or false")
    wanted = spec.data.get("loadBalancerIP")
    annotated = annotations.get(LOAD_BALANCER_IPS)
    if annotated is not None:
        if wanted is not None:
            raise spec.error(spec.path("loadBalancerIP"), f"the {LOAD_BALANCER_IPS} annotation names the address too",
                             "keep one of the two (spec.loadBalancerIP is deprecated since Kubernetes 1.24)")
        wanted = annotated.split(",")[0].strip()
    lb_class = spec.data.get("loadBalancerClass")
    fields_given = {"loadBalancerIP": wanted, "loadBalancerClass": lb_class,
                    "allocateLoadBalancerNodePorts": spec.data.get("allocateLoadBalancerNodePorts")}
    for name, value in fields_given.items():
        if value is not None and kind != "LoadBalancer":
            raise spec.error(spec.path(name), "may only be set when type is LoadBalancer",
                             "remove it or set type: LoadBalancer")
    if wanted is not None:
        try:
            wanted = str(IPv4Address(str(wanted)))
        except ValueError:
            raise spec.error(spec.path("loadBalancerIP"), f"{wanted!r} is not an IPv4 address",
                             "give an address of an IPAddressPool, or leave it out") from None
    if lb_class is not None and (not isinstance(lb_class, str) or "/" not in lb_class):
        raise spec.error(spec.path("loadBalancerClass"), f"{lb_class!r} is not a label-style name with a prefix",
                         "write e.g. example.com/internal-vip, or leave it out for the lab's own")
    return {"external_traffic_policy": policy or "Cluster", "health_check_node_port": health,
            "allocate_node_ports": allocate, "load_balancer_ip": wanted, "load_balancer_class": lb_class,
            "address_pool": annotations.get(ADDRESS_POOL) if kind == "LoadBalancer" else None}


LOAD_BALANCER_IPS = "metallb.io/loadBalancerIPs"  # MetalLB's annotation for the address(es) a Service wants
ADDRESS_POOL = "metallb.io/address-pool"  # and for the pool to take it from


def fmt_labels(labels: Mapping[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def pod_template(spec: Doc, labels: dict[str, str], warn: Warn) -> PodTemplate:
    for key in spec.data:
        if key not in POD_FIELDS:
            raise spec.error(spec.path(key), f"not supported{did_you_mean(key, POD_FIELDS)}",
                             "remove it (the lab supports containers, nodeName, nodeSelector)")
        if key in IGNORED_POD_FIELDS:
            warn(f"{spec.source}: {spec.path(key)}: ignored (the lab runs its own pod server)")
    containers = spec.data.get("containers")
    if not isinstance(containers, list) or not containers:
        raise spec.error(spec.path("containers"), "missing or empty", "list at least one container")
    ports: list[ContainerPort] = []
    seen_host: set[tuple[int, str]] = set()
    for i, raw in enumerate(containers):
        c = Doc(raw, spec.path(f"containers[{i}]"), spec.source)
        if not c.data.get("name"):
            raise c.error(c.path("name"), "missing", "name the container")
        for key in c.data:
            if key in IGNORED_CONTAINER_FIELDS:
                if key != "image":
                    warn(f"{c.source}: {c.path(key)}: ignored (the lab runs its own pod server)")
            elif key not in ("name", "ports", "env", "envFrom"):
                raise c.error(c.path(key), "not supported", "remove it")
        for j, raw_port in enumerate(c.data.get("ports") or []):
            p = Doc(raw_port, c.path(f"ports[{j}]"), c.source)
            number = p.integer("containerPort", None, 1, 65535)
            if number is None:
                raise p.error(p.path("containerPort"), "missing", "give the port the container listens on")
            protocol = p.data.get("protocol", "TCP")
            if protocol not in PROTOCOLS:
                raise p.error(p.path("protocol"), f"{protocol!r} is not supported", "use TCP or UDP")
            host = p.integer("hostPort", None, 1, 65535)
            if host is not None:
                if (host, protocol) in seen_host:
                    raise p.error(p.path("hostPort"), f"{host}/{protocol} is declared twice", "use another hostPort")
                seen_host.add((host, protocol))
            ports.append(ContainerPort(number, protocol, host, p.data.get("name")))
    node_name = spec.data.get("nodeName")
    first = Doc(containers[0], spec.path("containers[0]"), spec.source)
    return PodTemplate(labels=labels, ports=tuple(ports), image=str(containers[0].get("image") or ""),
                       node_name=node_name,
                       node_selector=spec.labels("nodeSelector"), env=container_env(first, warn))


ENV_SOURCES = {"configMapKeyRef": "ConfigMap", "secretKeyRef": "Secret"}
ENV_FROM_SOURCES = {"configMapRef": "ConfigMap", "secretRef": "Secret"}


def container_env(container: Doc, warn: Warn) -> tuple[EnvVar, ...]:
    """The variables `lab exec` in the pod sees: envFrom's (each key of a ConfigMap or Secret), then env's (a
    value, or one key of a ConfigMap or Secret); other sources (fieldRef, resourceFieldRef) warn and are left
    out. The schema has already checked the fields' types."""
    found: list[EnvVar] = []
    for entry in container.data.get("envFrom") or []:
        for ref_field, kind in ENV_FROM_SOURCES.items():
            if isinstance(entry.get(ref_field), dict):
                ref = entry[ref_field]
                found.append(EnvVar(str(entry.get("prefix") or ""), source=kind, source_name=str(ref.get("name", "")),
                                    optional=bool(ref.get("optional"))))
    for i, entry in enumerate(container.data.get("env") or []):
        name = str(entry.get("name", ""))
        reference = entry.get("valueFrom") or {}
        known = [(ENV_SOURCES[k], v) for k, v in reference.items() if k in ENV_SOURCES and isinstance(v, dict)]
        if known:
            kind, ref = known[0]
            found.append(EnvVar(name, source=kind, source_name=str(ref.get("name", "")), key=str(ref.get("key", "")),
                                optional=bool(ref.get("optional"))))
        elif reference:
            warn(f"{container.source}: {container.path(f'env[{i}].valueFrom')}: {', '.join(reference)} is not "
                 f"supported: {name} is left out of the pod's env")
        else:
            found.append(EnvVar(name, value=str(entry.get("value", ""))))
    return tuple(found)

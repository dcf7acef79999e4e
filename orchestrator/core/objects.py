"""The lab's objects as it keeps them (`.lab/<name>/objects.json`): one typed record per kind, one loader that
gives every field its default, one key spelling (`namespace/name`).

The records are what the lab made of the manifests (a Pod's node and IP, a Service's ClusterIP and NodePorts),
not the manifests themselves; `to_json` / `from_json` are the only way in and out of the file, so a record
read back from an older file has every field, and `pod.node` never needs a `.get`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Optional, TypeVar, Union

from orchestrator.agent.contract import pod_node_key
from orchestrator.core.events import Event
from orchestrator.core.manifests import ContainerPort, EnvVar, ServicePort


def key_of(namespace: str, name: str) -> str:
    """The one spelling of a namespaced object's key."""
    return f"{namespace}/{name}"


def split_key(key: str) -> tuple[str, str]:
    """(namespace, name) of a key."""
    namespace, _, name = key.partition("/")
    return namespace, name


def applied(old: object, same: bool) -> str:
    """kubectl's word for an object `lab apply` recorded: created (there was none), unchanged or configured."""
    return "created" if old is None else "unchanged" if same else "configured"


def known_fields(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    """The entries of `data` that are fields of `cls` (a file written by a newer lab may hold more)."""
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in data.items() if k in names}


R = TypeVar("R", bound="Record")


@dataclass
class Record:
    """What every kept object shares: its JSON form in the lab's file, and the one loader, which gives a field
    the file lacks its default and leaves out a field it does not know."""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls: type[R], data: dict[str, Any]) -> R:
        return cls(**known_fields(cls, data))


@dataclass
class PortMapping:
    """A hostPort of a pod, as the CNI portmap plugin takes it (protocol in lower case)."""

    host_port: int
    container_port: int
    protocol: str = "tcp"

    def to_cni(self) -> dict[str, Union[int, str]]:
        return {"hostPort": self.host_port, "containerPort": self.container_port, "protocol": self.protocol}


@dataclass
class Pod(Record):
    """A pod as the lab runs it: where, at which address, with which server ports."""

    name: str
    namespace: str
    uid: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    owner: Optional[str] = None  # "Deployment/<namespace>/<name>" or None for a bare Pod
    template_hash: str = ""
    image: str = ""
    node: Optional[str] = None  # None until scheduled (or nodeName before scheduling)
    node_selector: dict[str, str] = field(default_factory=dict)
    ip: Optional[str] = None  # None until the node's CNI ADD gave it one
    netns: str = ""
    tcp: list[int] = field(default_factory=list)  # ports the pod server listens on
    udp: list[int] = field(default_factory=list)
    port_mappings: list[PortMapping] = field(default_factory=list)
    ports: list[ContainerPort] = field(default_factory=list)  # the containerPorts as declared
    env: list[EnvVar] = field(default_factory=list)  # as declared; resolved when the pod is made (layers/pods/env.py)
    created: str = ""
    role: str = "server"  # "server" (the lab's pod server) or "dns" (dnsmasq)
    dns_domain: str = "cluster.local"
    resolv_conf: str = ""

    @property
    def key(self) -> str:
        return key_of(self.namespace, self.name)

    @property
    def node_key(self) -> str:
        """The pod's name in its node's files and the agent's answers."""
        return pod_node_key(self.namespace, self.name)

    def port_named(self, name: str, protocol: str) -> Optional[int]:
        """The number of this pod's containerPort called `name` for `protocol`, if it declares one."""
        return next((p.container_port for p in self.ports if p.name == name and p.protocol == protocol), None)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Pod":
        values = known_fields(cls, data)
        values["port_mappings"] = [PortMapping(m.get("host_port", m.get("hostPort")),
                                               m.get("container_port", m.get("containerPort")),
                                               m.get("protocol", "tcp"))
                                   for m in values.get("port_mappings") or []]
        values["ports"] = [ContainerPort(**known_fields(ContainerPort, p)) for p in values.get("ports") or []]
        values["env"] = [EnvVar(**known_fields(EnvVar, e)) for e in values.get("env") or []]
        return cls(**values)


@dataclass
class Deployment(Record):
    """A Deployment: how many pods of which template, and the manifest it was applied with (for scale,
    rollout restart and `-o yaml`)."""

    name: str
    namespace: str
    replicas: int = 1
    selector: dict[str, str] = field(default_factory=dict)
    template_hash: str = ""
    manifest: dict[str, Any] = field(default_factory=dict)
    # its templates so far, as ReplicaSets keep them: {revision, template_hash, template, change_cause}, oldest
    # first; the last is the current one (rollout history, rollout undo)
    revisions: list[dict[str, Any]] = field(default_factory=list)

    @property
    def key(self) -> str:
        return key_of(self.namespace, self.name)

    @property
    def owner(self) -> str:
        """What its pods name as their owner."""
        return f"Deployment/{self.key}"


@dataclass
class Service(Record):
    """A Service with the ClusterIP and NodePorts the lab gave it."""

    name: str
    namespace: str
    cluster_ip: str
    type: str = "ClusterIP"
    ports: list[ServicePort] = field(default_factory=list)
    selector: dict[str, str] = field(default_factory=dict)
    session_affinity: str = "None"
    affinity_timeout: int = 10800
    labels: dict[str, str] = field(default_factory=dict)
    created: str = ""
    annotations: dict[str, str] = field(default_factory=dict)
    external_traffic_policy: str = "Cluster"
    health_check_node_port: Optional[int] = None
    allocate_node_ports: bool = True
    load_balancer_class: Optional[str] = None  # None: the lab's own load balancer serves it
    requested_ip: Optional[str] = None  # spec.loadBalancerIP or the metallb.io/loadBalancerIPs annotation
    address_pool: Optional[str] = None  # the metallb.io/address-pool annotation
    load_balancer_ip: Optional[str] = None  # the address it was given (status.loadBalancer.ingress); None: pending

    @property
    def key(self) -> str:
        return key_of(self.namespace, self.name)

    @property
    def local_traffic(self) -> bool:
        """externalTrafficPolicy Local: traffic from outside goes only to the endpoints of the node it reached,
        which keeps the client's address."""
        return self.external_traffic_policy == "Local"

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Service":
        values = known_fields(cls, data)
        values["ports"] = [ServicePort(**known_fields(ServicePort, p)) for p in values.get("ports") or []]
        return cls(**values)


@dataclass(frozen=True)
class Endpoint:
    """A ready pod behind a Service port."""

    ip: str
    port: int
    node: Optional[str]
    pod: str

    @property
    def address(self) -> str:
        return f"{self.ip}:{self.port}"


# Service key -> port name ("" when unnamed) -> its endpoints, ordered by address
Endpoints = dict[str, dict[str, list[Endpoint]]]


@dataclass
class Namespace(Record):
    """A Namespace applied with `lab apply` (the built-in ones are not kept)."""

    name: str
    labels: dict[str, str] = field(default_factory=dict)
    created: str = ""


@dataclass
class NetworkPolicy(Record):
    """A NetworkPolicy, its spec as written (core/policy_spec.py reads it)."""

    name: str
    namespace: str
    labels: dict[str, str] = field(default_factory=dict)
    spec: dict[str, Any] = field(default_factory=dict)
    created: str = ""

    @property
    def key(self) -> str:
        return key_of(self.namespace, self.name)


@dataclass
class LabObjects:
    """Everything the lab manages: subnet leases, the objects `lab apply` made, the endpoints last synced, and
    each node's last boot ID."""

    subnets: dict[str, str] = field(default_factory=dict)  # node -> pod CIDR
    pods: dict[str, Pod] = field(default_factory=dict)
    deployments: dict[str, Deployment] = field(default_factory=dict)
    services: dict[str, Service] = field(default_factory=dict)
    endpoints: Endpoints = field(default_factory=dict)
    namespaces: dict[str, Namespace] = field(default_factory=dict)
    policies: dict[str, NetworkPolicy] = field(default_factory=dict)
    boots: dict[str, str] = field(default_factory=dict)  # node -> boot ID
    # LoadBalancer address -> the node that answers ARP for it, as the nodes were told at the last sync
    announced: dict[str, str] = field(default_factory=dict)
    # the objects of kinds registered beyond these (orchestrator/kinds/): kind -> key -> the record's JSON, which
    # the kind's own module reads and writes
    extra: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    # what the nodes reported of the pods just now (pod key -> running, stopped, gone or `unknown: WHY`), when a
    # command asked them (`lab get pods`): observed, never stored; empty when nobody asked
    observed: dict[str, str] = field(default_factory=dict, compare=False)
    events: list[Event] = field(default_factory=list, compare=False)  # what the lab did, oldest first

    def kept(self, kind: str) -> dict[str, dict[str, Any]]:
        """The records of registered kind `kind`, as JSON, by key (made empty on first use)."""
        return self.extra.setdefault(kind, {})

    def pods_of(self, owner: str) -> list[Pod]:
        return [p for p in self.pods.values() if p.owner == owner]

    def to_json(self) -> dict[str, Any]:
        return {
            "subnets": dict(self.subnets), "boots": dict(self.boots), "announced": dict(self.announced),
            "pods": {k: v.to_json() for k, v in self.pods.items()},
            "deployments": {k: v.to_json() for k, v in self.deployments.items()},
            "services": {k: v.to_json() for k, v in self.services.items()},
            "namespaces": {k: v.to_json() for k, v in self.namespaces.items()},
            "policies": {k: v.to_json() for k, v in self.policies.items()},
            "endpoints": {k: {port: [asdict(e) for e in eps] for port, eps in ports.items()}
                          for k, ports in self.endpoints.items()},
            "extra": {kind: dict(records) for kind, records in self.extra.items() if records},
            "events": [e.to_json() for e in self.events],
        }

    @classmethod
    def from_json(cls, data: Any) -> "LabObjects":
        """The objects in `data` (a parsed objects.json); anything missing or not a mapping reads as empty."""
        data = data if isinstance(data, dict) else {}

        def section(name: str) -> dict[str, Any]:
            value = data.get(name)
            return value if isinstance(value, dict) else {}

        deployments = {}
        for key, record in section("deployments").items():
            namespace, name = split_key(key)
            deployments[key] = Deployment.from_json({"namespace": namespace, "name": name, **record})
        return cls(
            subnets={k: str(v) for k, v in section("subnets").items()},
            boots={k: str(v) for k, v in section("boots").items()},
            announced={k: str(v) for k, v in section("announced").items()},
            pods={k: Pod.from_json(v) for k, v in section("pods").items()},
            deployments=deployments,
            services={k: Service.from_json(v) for k, v in section("services").items()},
            namespaces={k: Namespace.from_json(v) for k, v in section("namespaces").items()},
            policies={k: NetworkPolicy.from_json(v) for k, v in section("policies").items()},
            endpoints={k: {port: [Endpoint(**known_fields(Endpoint, e)) for e in eps] for port, eps in ports.items()}
                       for k, ports in section("endpoints").items()},
            extra={kind: dict(records) for kind, records in section("extra").items() if isinstance(records, dict)},
            events=[Event.from_json(e) for e in data.get("events") or [] if isinstance(e, dict)],
        )

"""NetworkPolicy: who may talk to whom, as Kubernetes defines it, computed here (pure).

Semantics (the Kubernetes documentation): a pod is isolated for ingress (egress) when a policy of its
namespace selects it and lists that type; an isolated pod accepts (sends) only what some rule of some
policy selecting it allows, and policies add up: there is no deny rule. A connection needs the source's
egress and the destination's ingress. Peers: podSelector (pods of the policy's namespace),
namespaceSelector (every pod of those namespaces), both in one peer (pods of those namespaces that match:
AND), or an ipBlock (addresses, minus its excepts). Ports by number, range (endPort) or name (the
destination pod's containerPort of that name; a name no pod has matches nothing). Replies are allowed,
a pod's own node can always reach it, and so can the pod itself at its own address (that never leaves it).

`verdict` answers for one connection and says which policy decided; `verify` compares it with what the
kernel does. `enforcement.py` turns the same semantics into nftables sets and rules.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address
from typing import Optional

from orchestrator.core.objects import LabObjects, Pod
from orchestrator.core.policy_spec import Peer, PolicyPort, PolicySpec, Rule, parse_policy_spec
from orchestrator.layers.pods.namespaces import namespace_labels


@dataclass(frozen=True)
class Policy:
    namespace: str
    name: str
    spec: PolicySpec

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class Endpoint:
    """One end of a connection: a pod (namespace set) or an address outside the pods (namespace None)."""

    ip: IPv4Address
    namespace: Optional[str] = None
    name: str = ""
    labels: tuple[tuple[str, str], ...] = ()  # (key, value) pairs
    ports: tuple[tuple[Optional[str], str, int], ...] = ()  # (name, protocol, number) of the pod's containerPorts
    node: Optional[str] = None

    @property
    def is_pod(self) -> bool:
        return self.namespace is not None

    def label_dict(self) -> dict[str, str]:
        return dict(self.labels)


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    reason: str  # "no policy selects ...", "allowed by x/allow-web (ingress rule 1)", "default deny ingress of ..."
    direction: str = ""  # "egress" or "ingress": which side decided a denial
    policies: tuple[str, ...] = ()  # keys of the policies that decided: those allowing, or those isolating


def policies(objects: LabObjects) -> list[Policy]:
    """The lab's NetworkPolicies, in name order (parsed again from what `lab apply` stored)."""
    return [Policy(r.namespace, r.name, parse_policy_spec(r.spec, f"networkpolicy {key}"))
            for key, r in sorted(objects.policies.items())]


def pod_endpoint(pod: Pod) -> Endpoint:
    """A running pod (it has an IP) as one end of a connection."""
    assert pod.ip is not None, pod.key
    ports = tuple((p.name, p.protocol, p.container_port) for p in pod.ports)
    return Endpoint(IPv4Address(pod.ip), pod.namespace, pod.name, tuple(sorted(pod.labels.items())), ports, pod.node)


def selects(policy: Policy, pod: Endpoint) -> bool:
    return pod.is_pod and pod.namespace == policy.namespace and policy.spec.pod_selector.matches(pod.label_dict())


def peer_matches(peer: Peer, policy: Policy, other: Endpoint, namespaces: dict[str, dict[str, str]]) -> bool:
    if peer.ip_block is not None:
        return peer.ip_block.contains(other.ip)
    if other.namespace is None:  # not a pod (is_pod)
        return False
    if peer.namespace_selector is None:
        in_namespace = other.namespace == policy.namespace
    else:
        in_namespace = peer.namespace_selector.matches(namespaces.get(other.namespace, {}))
    return in_namespace and (peer.pod_selector is None or peer.pod_selector.matches(other.label_dict()))


def port_matches(port: PolicyPort, destination: Endpoint, number: int, protocol: str) -> bool:
    if port.protocol != protocol:
        return False
    if port.port is None:
        return True
    if isinstance(port.port, str):  # named: the destination pod's own port of that name
        return any(name == port.port and proto == protocol and value == number
                   for name, proto, value in destination.ports)
    return port.port <= number <= (port.end_port or port.port)


def rule_allows(rule: Rule, policy: Policy, other: Endpoint, destination: Endpoint, number: int, protocol: str,
                namespaces: dict[str, dict[str, str]]) -> bool:
    return ((rule.peers is None or any(peer_matches(p, policy, other, namespaces) for p in rule.peers))
            and (rule.ports is None or any(port_matches(p, destination, number, protocol) for p in rule.ports)))


def side(direction: str, pod: Endpoint, other: Endpoint, destination: Endpoint, number: int, protocol: str,
         all_policies: list[Policy], namespaces: dict[str, dict[str, str]]) -> Optional[Verdict]:
    """None when `pod` is not isolated in `direction`; else whether a rule lets the connection through."""
    typ = direction.capitalize()
    isolating = [p for p in all_policies if typ in p.spec.policy_types and selects(p, pod)]
    if not isolating:
        return None
    for policy in isolating:
        rules = policy.spec.ingress if direction == "ingress" else policy.spec.egress
        for i, rule in enumerate(rules):
            if rule_allows(rule, policy, other, destination, number, protocol, namespaces):
                return Verdict(True, f"allowed by {policy.key} ({direction} rule {i + 1})", direction, (policy.key,))
    names = ", ".join(p.key for p in isolating)
    return Verdict(False, f"{direction} of {pod.namespace}/{pod.name} is isolated by {names} and no rule allows "
                          f"it (default deny)", direction, tuple(p.key for p in isolating))


def verdict(source: Endpoint, destination: Endpoint, number: int, protocol: str, all_policies: list[Policy],
            namespaces: dict[str, dict[str, str]], same_node: bool = False) -> Verdict:
    """Whether a new connection from `source` to `destination`:`number`/`protocol` is allowed, and why.
    `same_node`: the source is the destination pod's own node (always allowed)."""
    if same_node:
        return Verdict(True, "a pod's own node can always reach it")
    if source.is_pod and source.ip == destination.ip:
        return Verdict(True, "a pod reaches its own address locally: no policy can block it (as localhost)")
    allowing = []
    if source.is_pod:
        out = side("egress", source, destination, destination, number, protocol, all_policies, namespaces)
        if out is not None and not out.allowed:
            return out
        allowing.append(out)
    if destination.is_pod:
        into = side("ingress", destination, source, destination, number, protocol, all_policies, namespaces)
        if into is not None and not into.allowed:
            return into
        allowing.append(into)
    decided = [v for v in allowing if v is not None]
    return Verdict(True, "; ".join(v.reason for v in decided) or "no policy isolates either end",
                   policies=tuple(key for v in decided for key in v.policies))


class Judge:
    """The verdicts of the lab's current policies, for `lab verify`: None everywhere when there are none."""

    def __init__(self, objects: LabObjects, namespaces: dict[str, dict[str, str]]):
        self.policies = policies(objects)
        self.namespaces = namespaces

    def __bool__(self) -> bool:
        return bool(self.policies)

    def pods(self, source: Pod, destination: Pod, number: int, protocol: str) -> Optional[Verdict]:
        if not self.policies:
            return None
        return verdict(pod_endpoint(source), pod_endpoint(destination), number, protocol, self.policies,
                       self.namespaces)

    def isolated(self, pod: Pod, direction: str) -> bool:
        """Whether some policy isolates `pod` in `direction` ("Ingress" or "Egress")."""
        me = pod_endpoint(pod)
        return any(direction in p.spec.policy_types and selects(p, me) for p in self.policies)


def selectors_matching_nothing(objects: LabObjects) -> list[str]:
    """Selectors of the lab's policies that match no pod now: often a typo (app=ngnix), sometimes pods still to
    come. `lab verify` prints them as notes: a typo'd selector is obeyed to the letter, so the matrix alone shows
    only its effect."""
    pods = [pod_endpoint(p) for p in objects.pods.values() if p.ip]
    namespaces = namespace_labels(objects)
    notes = []
    for policy in policies(objects):
        if not any(selects(policy, p) for p in pods):
            notes.append(f"{policy.key}: spec.podSelector {policy.spec.pod_selector.text()} selects no pod of "
                         f"namespace {policy.namespace}")
        for direction, rules in (("ingress", policy.spec.ingress), ("egress", policy.spec.egress)):
            for i, rule in enumerate(rules):
                for j, peer in enumerate(rule.peers or ()):
                    if peer.ip_block is None and not any(peer_matches(peer, policy, p, namespaces) for p in pods):
                        what = " and ".join(f"{name} {sel.text()}" for name, sel in (
                            ("namespaceSelector", peer.namespace_selector), ("podSelector", peer.pod_selector)) if sel)
                        notes.append(f"{policy.key}: {direction} rule {i + 1}, peer {j + 1} ({what}) matches no pod")
    return notes

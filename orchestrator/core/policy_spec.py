"""NetworkPolicy and label selectors as data (networking.k8s.io/v1), with the checks the schema cannot make.

The schema (core/schema.py) has already checked types and field names; this module reads the spec into
dataclasses and refuses what the Kubernetes API server refuses beyond the schema (selector operators and
their values, ipBlock with other peer fields, except outside its CIDR, endPort without a numeric port or
below it) and what the lab cannot enforce (SCTP: its pods serve TCP and UDP only). Pure.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, ip_network
from typing import Any, Optional, Union

from orchestrator.core.errors import InputError, field_error
from orchestrator.core.names import label_problem

OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")
POLICY_TYPES = ("Ingress", "Egress")


@dataclass(frozen=True)
class Requirement:
    key: str
    operator: str
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        if self.operator == "In":
            return labels.get(self.key) in self.values
        if self.operator == "NotIn":
            return labels.get(self.key) not in self.values  # a missing key is "not in"
        return (self.key in labels) == (self.operator == "Exists")


@dataclass(frozen=True)
class Selector:
    """A label selector: every matchLabels pair and every requirement must hold; empty selects everything."""

    match_labels: tuple[tuple[str, str], ...] = ()
    requirements: tuple[Requirement, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        return (all(labels.get(k) == v for k, v in self.match_labels)
                and all(r.matches(labels) for r in self.requirements))

    def text(self) -> str:
        """kubectl's way of writing it: app=web,tier in (a,b); <none> when empty."""
        parts = [f"{k}={v}" for k, v in self.match_labels]
        for r in self.requirements:
            parts.append({"In": f"{r.key} in ({','.join(r.values)})", "NotIn": f"{r.key} notin ({','.join(r.values)})",
                          "Exists": r.key, "DoesNotExist": f"!{r.key}"}[r.operator])
        return ",".join(parts) or "<none>"


@dataclass(frozen=True)
class IpBlock:
    cidr: IPv4Network
    excepts: tuple[IPv4Network, ...] = ()

    def contains(self, address: IPv4Address) -> bool:
        return address in self.cidr and not any(address in e for e in self.excepts)


@dataclass(frozen=True)
class Peer:
    """One entry of from/to: pods (in this or selected namespaces), or an IP block."""

    pod_selector: Optional[Selector] = None
    namespace_selector: Optional[Selector] = None
    ip_block: Optional[IpBlock] = None


@dataclass(frozen=True)
class PolicyPort:
    protocol: str = "TCP"
    port: Union[int, str, None] = None  # None: every port of the protocol; a str: a named container port
    end_port: Optional[int] = None


@dataclass(frozen=True)
class Rule:
    peers: Optional[tuple[Peer, ...]] = None  # None (or empty): every source / destination
    ports: Optional[tuple[PolicyPort, ...]] = None  # None (or empty): every port


@dataclass(frozen=True)
class PolicySpec:
    pod_selector: Selector
    policy_types: tuple[str, ...]
    ingress: tuple[Rule, ...] = ()
    egress: tuple[Rule, ...] = ()


def parse_selector(data: Any, source: str, where: str) -> Selector:
    data = data or {}
    requirements: list[Requirement] = []
    for i, expr in enumerate(data.get("matchExpressions") or []):
        at = f"{where}.matchExpressions[{i}]"
        op, values = expr.get("operator"), tuple(str(v) for v in expr.get("values") or ())
        if op not in OPERATORS:
            raise field_error(source, f"{at}.operator", f"{op!r} is not a selector operator",
                              f"use one of {', '.join(OPERATORS)}")
        if op in ("In", "NotIn") and not values:
            raise field_error(source, f"{at}.values", f"{op} needs at least one value", "list the values to match")
        if op in ("Exists", "DoesNotExist") and values:
            raise field_error(source, f"{at}.values", f"{op} takes no values", "remove values")
        requirements.append(Requirement(str(expr.get("key")), op, values))
    labels = tuple(sorted((str(k), str(v)) for k, v in (data.get("matchLabels") or {}).items()))
    for key, value in labels + tuple((r.key, v) for r in requirements for v in r.values or ("",)):
        problem = label_problem(key, value)
        if problem:
            raise field_error(source, where, problem, "write a label key and value, e.g. `app: web`")
    return Selector(labels, tuple(requirements))


def parse_network(text: Any, source: str, where: str) -> IPv4Network:
    """An ipBlock CIDR; host bits set (10.244.0.3/4) are dropped, as Kubernetes reads it (with a warning:
    `non_standard_cidrs`)."""
    try:
        network = ip_network(str(text), strict=False)
    except ValueError:
        raise field_error(source, where, f"{text!r} is not an IPv4 CIDR", "write e.g. 10.0.0.0/8") from None
    if not isinstance(network, IPv4Network):
        raise field_error(source, where, f"{text} is IPv6; the lab is IPv4 only", "use an IPv4 CIDR")
    return network


def non_standard_cidrs(spec: Any) -> list[str]:
    """Kubernetes' warnings for ipBlock CIDRs with host bits set: accepted, read as the network they are in."""
    found = []
    for direction, side in (("ingress", "from"), ("egress", "to")):
        for i, rule in enumerate((spec or {}).get(direction) or []):
            for j, peer in enumerate((rule or {}).get(side) or []):
                block = (peer or {}).get("ipBlock") or {}
                texts = [("cidr", block.get("cidr"))] + [(f"except[{k}]", t)
                                                         for k, t in enumerate(block.get("except") or [])]
                for field_name, text in texts:
                    try:
                        network = ip_network(str(text), strict=False)
                    except ValueError:
                        continue
                    if str(network) != str(text):
                        found.append(f"spec.{direction}[{i}].{side}[{j}].ipBlock.{field_name}: non-standard CIDR "
                                     f'value "{text}" will be considered invalid in a future Kubernetes release: '
                                     f'use "{network}"')
    return found


def parse_peer(data: dict[str, Any], source: str, where: str) -> Peer:
    if "ipBlock" in data:
        if "podSelector" in data or "namespaceSelector" in data:
            raise field_error(source, where, "ipBlock goes alone in a peer",
                              "make the ipBlock a peer of its own (a separate `- ipBlock:` entry)")
        cidr = parse_network(data["ipBlock"].get("cidr"), source, f"{where}.ipBlock.cidr")
        excepts: list[IPv4Network] = []
        for i, text in enumerate(data["ipBlock"].get("except") or []):
            net = parse_network(text, source, f"{where}.ipBlock.except[{i}]")
            if not (net.subnet_of(cidr) and net != cidr):
                raise field_error(source, f"{where}.ipBlock.except[{i}]", f"{net} is not inside {cidr}",
                                  f"give a range within {cidr}, or drop it")
            excepts.append(net)
        return Peer(ip_block=IpBlock(cidr, tuple(excepts)))
    if "podSelector" not in data and "namespaceSelector" not in data:
        raise field_error(source, where, "a peer needs podSelector, namespaceSelector or ipBlock",
                          "add one (an empty `podSelector: {}` means every pod of the policy's namespace)")
    pods = parse_selector(data["podSelector"], source, f"{where}.podSelector") if "podSelector" in data else None
    namespaces = (parse_selector(data["namespaceSelector"], source, f"{where}.namespaceSelector")
                  if "namespaceSelector" in data else None)
    return Peer(pod_selector=pods, namespace_selector=namespaces)


def parse_port(data: dict[str, Any], source: str, where: str) -> PolicyPort:
    protocol = data.get("protocol", "TCP")
    if protocol == "SCTP":
        raise field_error(source, f"{where}.protocol", "SCTP: the lab's pods serve TCP and UDP only",
                          "use TCP or UDP")
    if protocol not in ("TCP", "UDP"):
        raise field_error(source, f"{where}.protocol", f"{protocol!r} is not a protocol", "use TCP or UDP")
    port, end = data.get("port"), data.get("endPort")
    if isinstance(port, str) and port.isdigit():
        port = int(port)
    if isinstance(port, int) and not 1 <= port <= 65535:
        raise field_error(source, f"{where}.port", f"{port} is not a port", "give 1-65535 or a port name")
    if end is not None:
        if not isinstance(port, int):
            raise field_error(source, f"{where}.endPort", "endPort needs a numeric port",
                              "give `port:` a number (the start of the range)")
        if not port <= end <= 65535:
            raise field_error(source, f"{where}.endPort", f"{end} is below port {port} or above 65535",
                              f"give a number from {port} to 65535")
    return PolicyPort(protocol, port, end)


def parse_rules(items: Optional[list[Any]], source: str, where: str, peers_key: str) -> tuple[Rule, ...]:
    rules: list[Rule] = []
    for i, item in enumerate(items or []):
        at = f"{where}[{i}]"
        peers = tuple(parse_peer(p, source, f"{at}.{peers_key}[{j}]") for j, p in enumerate(item.get(peers_key) or []))
        ports = tuple(parse_port(p, source, f"{at}.ports[{j}]") for j, p in enumerate(item.get("ports") or []))
        rules.append(Rule(peers or None, ports or None))
    return tuple(rules)


def parse_policy_spec(spec: dict[str, Any], source: str) -> PolicySpec:
    """A NetworkPolicy's spec (already schema-checked), or the InputError of its first problem."""
    types = spec.get("policyTypes")
    if types is None:  # the API server's default
        types = ["Ingress"] + (["Egress"] if "egress" in spec else [])
    for i, t in enumerate(types):
        if t not in POLICY_TYPES:
            raise field_error(source, f"spec.policyTypes[{i}]", f"{t!r} is not a policy type", "use Ingress or Egress")
    if not isinstance(spec.get("podSelector"), dict):
        raise InputError(f"{source}: spec.podSelector: missing; add `podSelector: {{}}` to select every pod of "
                         "the namespace")
    return PolicySpec(pod_selector=parse_selector(spec["podSelector"], source, "spec.podSelector"),
                      policy_types=tuple(dict.fromkeys(types)),
                      ingress=parse_rules(spec.get("ingress"), source, "spec.ingress", "from"),
                      egress=parse_rules(spec.get("egress"), source, "spec.egress", "to"))


SELECTOR_TERM = re.compile(r"^\s*(?:(?P<not>!)\s*(?P<absent>[^\s,=!()]+)"
                           r"|(?P<key>[^\s,=!()]+)\s*(?:(?P<op>==|=|!=)\s*(?P<value>[^\s,=!()]*)"
                           r"|\s+(?P<set>in|notin)\s*\((?P<values>[^)]*)\))?)\s*(?:,|$)")


def selector_from_text(text: str) -> Selector:
    """kubectl's -l/--selector: `app=web,tier!=db`, `env in (a,b)`, `env notin (c)`, `key`, `!key`; or an
    InputError saying where it stops being one."""
    labels: list[tuple[str, str]] = []
    requirements: list[Requirement] = []
    rest = text.strip()
    while rest:
        m = SELECTOR_TERM.match(rest)
        if not m or not m.group(0).strip():
            raise InputError(f"-l {text}: cannot read the selector from {rest!r}; write e.g. app=web,tier!=db or "
                             "'env in (a,b)'")
        if m["absent"]:
            requirements.append(Requirement(m["absent"], "DoesNotExist"))
        elif m["set"]:
            values = tuple(v.strip() for v in m["values"].split(",") if v.strip())
            requirements.append(Requirement(m["key"], "In" if m["set"] == "in" else "NotIn", values))
        elif m["op"] == "!=":
            requirements.append(Requirement(m["key"], "NotIn", (m["value"],)))
        elif m["op"]:
            labels.append((m["key"], m["value"]))
        else:
            requirements.append(Requirement(m["key"], "Exists"))
        rest = rest[m.end():].strip()
    for key, value in labels + [(r.key, v) for r in requirements for v in r.values or ("",)]:
        problem = label_problem(key, value)
        if problem:
            raise InputError(f"-l {text}: {problem}; write e.g. app=web")
    return Selector(tuple(sorted(labels)), tuple(requirements))

"""The Gateway API's objects as the lab's controller reads them (pure): GatewayClass, Gateway, HTTPRoute and
ReferenceGrant parsed from what `lab apply` kept, which routes attach to which listeners (and the status the
spec asks for when they do not), and the order in which a request meets the routes' matches.

Facts from the Gateway API (gateway.networking.k8s.io/v1): a listener hostname `*.example.com` covers one or
more labels in front of `.example.com`, never `example.com` itself; a route attaches to a listener when the
listener allows its namespace and kind and their hostnames intersect; across everything attached to a
listener, a request goes to the first match in this order: the most characters of a matching non-wildcard
hostname, then of any matching hostname, an Exact path over a prefix, the longest path, a method match, the
most header matches, the most query parameter matches; then the oldest route, then by "namespace/name", then
the rules and matches in the order written. RegularExpression paths come after the Exact and prefix paths of
the same length (their precedence is left to implementations).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Optional

from orchestrator.core.errors import field_error
from orchestrator.core.policy_spec import Selector, parse_selector
from orchestrator.core.render import render
from orchestrator.layers.gateway.tls import TLSPair

GROUP = "gateway.networking.k8s.io"
GATEWAY_API = f"{GROUP}/v1"
GRANT_API = f"{GROUP}/v1beta1"
CLASS_KIND, GATEWAY_KIND, ROUTE_KIND, GRANT_KIND = "GatewayClass", "Gateway", "HTTPRoute", "ReferenceGrant"
CONTROLLER_NAME = "cluster-lab.dev/gateway-controller"  # the GatewayClasses naming it are the lab's to serve
LAB_CLASS = "lab"  # the GatewayClass `lab deploy` installs, as an implementation's install does
CLASS_TEMPLATE = "gateway/gatewayclass.yaml.j2"

HTTP_PROTOCOLS = ("HTTP", "HTTPS")
METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH")
PATH_TYPES = ("Exact", "PathPrefix", "RegularExpression")
VALUE_TYPES = ("Exact", "RegularExpression")
FILTER_TYPES = ("RequestHeaderModifier", "ResponseHeaderModifier", "RequestRedirect", "URLRewrite")
HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+\-.^_`|~]+$")
PATH_CHARACTERS = re.compile(r"^(?:[-A-Za-z0-9/._~!$&'()*+,;=:@]|%[0-9a-fA-F]{2})+$")
HOSTNAME = re.compile(r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


@dataclass(frozen=True)
class Condition:
    """One status condition, as the spec's objects carry them."""

    type: str
    status: str  # "True" | "False" | "Unknown"
    reason: str
    message: str = ""

    @property
    def true(self) -> bool:
        return self.status == "True"


@dataclass(frozen=True)
class GatewayClass:
    name: str
    controller: str
    created: str

    @property
    def ours(self) -> bool:
        return self.controller == CONTROLLER_NAME


@dataclass(frozen=True)
class Listener:
    name: str
    port: int
    protocol: str
    hostname: Optional[str] = None
    certificate_refs: tuple[tuple[str, str], ...] = ()  # (namespace, Secret name)
    routes_from: str = "Same"  # allowedRoutes.namespaces.from: Same | All | Selector
    routes_selector: Optional[Selector] = None
    route_kinds: tuple[str, ...] = ()  # allowedRoutes.kinds; empty: what the protocol takes (HTTPRoute)
    any_namespace_certificates: bool = False  # the ingress controller's: it reads the Secrets of every namespace

    @property
    def certificate_key(self) -> str:
        """The key (namespace/name) of the Secret the listener is served with: its first certificateRef."""
        return "/".join(self.certificate_refs[0])


@dataclass(frozen=True)
class Gateway:
    namespace: str
    name: str
    class_name: str
    listeners: tuple[Listener, ...]
    created: str
    address: Optional[str] = None  # spec.addresses: the IPAddress it asks for (its proxy Service requests it)
    proxy: Optional[str] = None  # the name of its proxy's Deployment and Service, where not <gateway>-<class>
    tls_ports: tuple[int, ...] = ()  # ports served with TLS even while no listener is on them (the ingress's 443)

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class PathMatch:
    type: str
    value: str


@dataclass(frozen=True)
class ValueMatch:
    """A header or query parameter match."""

    type: str  # Exact | RegularExpression
    name: str
    value: str


@dataclass(frozen=True)
class Match:
    path: PathMatch = PathMatch("PathPrefix", "/")
    headers: tuple[ValueMatch, ...] = ()
    query: tuple[ValueMatch, ...] = ()
    method: Optional[str] = None


@dataclass(frozen=True)
class BackendRef:
    name: str
    namespace: str
    port: Optional[int]
    weight: int = 1
    group: str = ""
    kind: str = "Service"

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class Rule:
    matches: tuple[Match, ...]
    backends: tuple[BackendRef, ...]
    filters: tuple[Mapping[str, Any], ...] = ()
    timeouts: Mapping[str, str] = field(default_factory=dict, hash=False)


@dataclass(frozen=True)
class ParentRef:
    name: str
    namespace: str
    section: Optional[str] = None
    port: Optional[int] = None
    group: str = GROUP
    kind: str = GATEWAY_KIND

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"group": self.group, "kind": self.kind, "name": self.name,
                               "namespace": self.namespace}
        if self.section is not None:
            out["sectionName"] = self.section
        if self.port is not None:
            out["port"] = self.port
        return out


@dataclass(frozen=True)
class HTTPRoute:
    namespace: str
    name: str
    parents: tuple[ParentRef, ...]
    hostnames: tuple[str, ...]
    rules: tuple[Rule, ...]
    created: str
    one_label_wildcards: bool = False  # an Ingress's: its `*.example.com` covers exactly one label

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class ReferenceGrant:
    """Lives in the namespace of what it lets others refer to."""

    namespace: str
    name: str
    sources: tuple[tuple[str, str, str], ...]  # (group, kind, namespace) allowed to refer
    targets: tuple[tuple[str, str, Optional[str]], ...]  # (group, kind, name or None for any)

    def permits(self, group: str, kind: str, namespace: str, to_group: str, to_kind: str, to_name: str) -> bool:
        return (any(s == (group, kind, namespace) for s in self.sources)
                and any(t[:2] == (to_group, to_kind) and t[2] in (None, to_name) for t in self.targets))


# ---- parsing (what `lab apply` checks beyond the CRD schema; each error names the field) -----------------


def _list(value: Any, source: str, where: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise field_error(source, where, f"must be a list, not {type(value).__name__}", "write it as a YAML list")
    return value


def _map(value: Any, source: str, where: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise field_error(source, where, f"must be a mapping, not {type(value).__name__}", "write KEY: VALUE lines")
    return value


def check_hostname(value: Any, source: str, where: str) -> str:
    if not isinstance(value, str) or not HOSTNAME.match(value) or len(value) > 253:
        raise field_error(source, where, f"{value!r} is not a hostname", "write a DNS name such as "
                          "app.example.com or *.example.com (lower case, no port, no IP address)")
    return value


def check_regex(value: str, source: str, where: str) -> str:
    try:
        re.compile(value)
    except re.error as exc:
        raise field_error(source, where, f"invalid regular expression {value!r} ({exc})",
                          "fix the expression (PCRE syntax, as nginx reads it)") from None
    return value


def lab_class_yaml() -> tuple[str, str]:
    """The lab's GatewayClass as `lab deploy` installs it; as YAML, and where it comes from."""
    return render(CLASS_TEMPLATE, name=LAB_CLASS, controller=CONTROLLER_NAME), f"templates/{CLASS_TEMPLATE}"


def parse_class(name: str, spec: Any, created: str, source: str) -> GatewayClass:
    controller = _map(spec, source, "spec").get("controllerName")
    if not isinstance(controller, str) or not controller:
        raise field_error(source, "spec.controllerName", "missing", f"the lab's controller is {CONTROLLER_NAME}")
    return GatewayClass(name, controller, created)


def parse_gateway(namespace: str, name: str, spec: Any, created: str, source: str) -> Gateway:
    data = _map(spec, source, "spec")
    class_name = data.get("gatewayClassName")
    if not isinstance(class_name, str) or not class_name:
        raise field_error(source, "spec.gatewayClassName", "missing", f"the lab's GatewayClass is {LAB_CLASS!r}")
    listeners = []
    seen: set[str] = set()
    raw_listeners = _list(data.get("listeners"), source, "spec.listeners")
    if not raw_listeners:
        raise field_error(source, "spec.listeners", "a Gateway needs at least one listener",
                          "add - {name: http, port: 80, protocol: HTTP}")
    for i, raw in enumerate(raw_listeners):
        where = f"spec.listeners[{i}]"
        item = _map(raw, source, where)
        lname = item.get("name")
        if not isinstance(lname, str) or not lname:
            raise field_error(source, f"{where}.name", "missing", "name each listener (http, https)")
        if lname in seen:
            raise field_error(source, f"{where}.name", f"listener {lname!r} is named twice", "give each its own name")
        seen.add(lname)
        port = item.get("port")
        if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
            raise field_error(source, f"{where}.port", f"{port!r} is not a port", "give a number from 1 to 65535")
        protocol = item.get("protocol")
        if not isinstance(protocol, str) or not protocol:
            raise field_error(source, f"{where}.protocol", "missing", "write HTTP or HTTPS")
        hostname = item.get("hostname")
        if hostname is not None:
            check_hostname(hostname, source, f"{where}.hostname")
        tls = _map(item.get("tls"), source, f"{where}.tls")
        if tls.get("mode", "Terminate") != "Terminate":
            raise field_error(source, f"{where}.tls.mode", f"the lab's proxy does not serve {tls.get('mode')!r}",
                              "write Terminate (the proxy ends TLS and routes the HTTP inside it)")
        refs = []
        for j, ref in enumerate(_list(tls.get("certificateRefs"), source, f"{where}.tls.certificateRefs")):
            ref = _map(ref, source, f"{where}.tls.certificateRefs[{j}]")
            if (ref.get("group", ""), ref.get("kind", "Secret")) != ("", "Secret"):
                raise field_error(source, f"{where}.tls.certificateRefs[{j}].kind", f"{ref.get('kind')!r} is not "
                                  "served", "name a Secret of type kubernetes.io/tls (group \"\", kind Secret)")
            refs.append((str(ref.get("namespace") or namespace), str(ref.get("name", ""))))
        if protocol == "HTTPS" and not refs:
            raise field_error(source, f"{where}.tls.certificateRefs", "an HTTPS listener needs a certificate",
                              "name a Secret of type kubernetes.io/tls (lab create secret tls NAME --cert --key)")
        allowed = _map(item.get("allowedRoutes"), source, f"{where}.allowedRoutes")
        spaces = _map(allowed.get("namespaces"), source, f"{where}.allowedRoutes.namespaces")
        routes_from = spaces.get("from", "Same")
        if routes_from not in ("Same", "All", "Selector"):
            raise field_error(source, f"{where}.allowedRoutes.namespaces.from", f"{routes_from!r} is not one of "
                              "Same, All, Selector", "write one of them")
        selector = None
        if routes_from == "Selector":
            selector = parse_selector(spaces.get("selector"), source, f"{where}.allowedRoutes.namespaces.selector")
        kinds = tuple(str(_map(k, source, f"{where}.allowedRoutes.kinds").get("kind", ""))
                      for k in _list(allowed.get("kinds"), source, f"{where}.allowedRoutes.kinds"))
        listeners.append(Listener(lname, port, protocol, hostname, tuple(refs), routes_from, selector, kinds))
    addresses = [_map(a, source, f"spec.addresses[{i}]")
                 for i, a in enumerate(_list(data.get("addresses"), source, "spec.addresses"))]
    wanted = [a.get("value") for a in addresses if a.get("type", "IPAddress") == "IPAddress"]
    if len(wanted) > 1 or len(wanted) != len(addresses):
        raise field_error(source, "spec.addresses", "the lab gives a Gateway one IPAddress",
                          "give one {type: IPAddress, value: ADDRESS} from a pool, or none")
    return Gateway(namespace, name, class_name, tuple(listeners), created, wanted[0] if wanted else None)


def parse_match(raw: Any, source: str, where: str) -> Match:
    data = _map(raw, source, where)
    path_data = _map(data.get("path"), source, f"{where}.path")
    path_type = path_data.get("type", "PathPrefix")
    value = path_data.get("value", "/")
    if path_type not in PATH_TYPES:
        raise field_error(source, f"{where}.path.type", f"{path_type!r} is not one of {', '.join(PATH_TYPES)}",
                          "write one of them (Ingress says Prefix; the Gateway API says PathPrefix)")
    if not isinstance(value, str) or not value:
        raise field_error(source, f"{where}.path.value", "missing", "write a path such as /api")
    if path_type == "RegularExpression":
        check_regex(value, source, f"{where}.path.value")
    elif not value.startswith("/") or "//" in value or "/./" in value or "/../" in value or "%2f" in value.lower() \
            or "#" in value or value.endswith(("/..", "/.")) or not PATH_CHARACTERS.match(value):
        raise field_error(source, f"{where}.path.value", f"{value!r} is not an absolute, clean path",
                          "start it with / and leave out //, /./, /../, %2f and #")
    headers = tuple(parse_value_match(h, source, f"{where}.headers[{i}]", header=True)
                    for i, h in enumerate(_list(data.get("headers"), source, f"{where}.headers")))
    query = tuple(parse_value_match(q, source, f"{where}.queryParams[{i}]", header=False)
                  for i, q in enumerate(_list(data.get("queryParams"), source, f"{where}.queryParams")))
    for kind, values in (("headers", headers), ("queryParams", query)):
        names = [v.name for v in values]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise field_error(source, f"{where}.{kind}", f"{twice[0]!r} is matched twice", "match each name once")
    headers = tuple({h.name.lower(): h for h in reversed(headers)}.values())[::-1]  # Foo after foo: the first only
    method = data.get("method")
    if method is not None and method not in METHODS:
        raise field_error(source, f"{where}.method", f"{method!r} is not an HTTP method",
                          f"write one of {', '.join(METHODS)}")
    return Match(PathMatch(path_type, value), headers, query, method)


def parse_value_match(raw: Any, source: str, where: str, header: bool) -> ValueMatch:
    data = _map(raw, source, where)
    kind = data.get("type", "Exact")
    name, value = data.get("name"), data.get("value")
    if kind not in VALUE_TYPES:
        raise field_error(source, f"{where}.type", f"{kind!r} is not Exact or RegularExpression", "write one of them")
    if not isinstance(name, str) or not name or (header and not HEADER_NAME.match(name)):
        raise field_error(source, f"{where}.name", f"{name!r} is not a {'header' if header else 'parameter'} name",
                          "write a name such as version")
    if not isinstance(value, str):
        raise field_error(source, f"{where}.value", "missing", "write the value to match (a string)")
    if kind == "RegularExpression":
        check_regex(value, source, f"{where}.value")
    return ValueMatch(kind, name, value)


def parse_backend(raw: Any, namespace: str, source: str, where: str) -> BackendRef:
    data = _map(raw, source, where)
    name = data.get("name")
    if not isinstance(name, str) or not name:
        raise field_error(source, f"{where}.name", "missing", "name the Service to send the traffic to")
    port = data.get("port")
    group, kind = str(data.get("group", "")), str(data.get("kind", "Service"))
    if port is None and (group, kind) == ("", "Service"):
        raise field_error(source, f"{where}.port", "missing", "give the Service's port (a backendRef to a Service "
                          "needs one)")
    weight = data.get("weight", 1)
    if not isinstance(weight, int) or isinstance(weight, bool) or not 0 <= weight <= 1_000_000:
        raise field_error(source, f"{where}.weight", f"{weight!r} is not a weight", "give 0 to 1000000")
    return BackendRef(name, str(data.get("namespace") or namespace), port, weight, group, kind)


def parse_route(namespace: str, name: str, spec: Any, created: str, source: str) -> HTTPRoute:
    data = _map(spec, source, "spec")
    parents = []
    for i, raw in enumerate(_list(data.get("parentRefs"), source, "spec.parentRefs")):
        ref = _map(raw, source, f"spec.parentRefs[{i}]")
        if not isinstance(ref.get("name"), str):
            raise field_error(source, f"spec.parentRefs[{i}].name", "missing", "name the Gateway to attach to")
        parents.append(ParentRef(ref["name"], str(ref.get("namespace") or namespace), ref.get("sectionName"),
                                 ref.get("port"), str(ref.get("group", GROUP)), str(ref.get("kind", GATEWAY_KIND))))
    hostnames = tuple(check_hostname(h, source, f"spec.hostnames[{i}]")
                      for i, h in enumerate(_list(data.get("hostnames"), source, "spec.hostnames")))
    rules = []
    for i, raw in enumerate(_list(data.get("rules"), source, "spec.rules") or [{}]):
        where = f"spec.rules[{i}]"
        rule = _map(raw, source, where)
        matches = tuple(parse_match(m, source, f"{where}.matches[{j}]")
                        for j, m in enumerate(_list(rule.get("matches"), source, f"{where}.matches"))) or (Match(),)
        backends = tuple(parse_backend(b, namespace, source, f"{where}.backendRefs[{j}]")
                         for j, b in enumerate(_list(rule.get("backendRefs"), source, f"{where}.backendRefs")))
        filters = tuple(_map(f, source, f"{where}.filters[{j}]")
                        for j, f in enumerate(_list(rule.get("filters"), source, f"{where}.filters")))
        for j, item in enumerate(filters):
            if item.get("type") not in FILTER_TYPES:
                raise field_error(source, f"{where}.filters[{j}].type", f"the lab does not serve {item.get('type')!r}",
                                  f"use one of {', '.join(FILTER_TYPES)}")
        timeouts = {k: str(v) for k, v in _map(rule.get("timeouts"), source, f"{where}.timeouts").items()}
        rules.append(Rule(matches, backends, filters, timeouts))
    return HTTPRoute(namespace, name, tuple(parents), hostnames, tuple(rules), created)


def parse_grant(namespace: str, name: str, spec: Any, source: str) -> ReferenceGrant:
    data = _map(spec, source, "spec")
    sources = tuple((str(f.get("group", "")), str(f.get("kind", "")), str(f.get("namespace", "")))
                    for f in (_map(x, source, "spec.from") for x in _list(data.get("from"), source, "spec.from")))
    targets = tuple((str(t.get("group", "")), str(t.get("kind", "")), t.get("name"))
                    for t in (_map(x, source, "spec.to") for x in _list(data.get("to"), source, "spec.to")))
    if not sources or not targets:
        raise field_error(source, "spec.from" if not sources else "spec.to", "empty",
                          "say who may refer (from: group, kind, namespace) to what (to: group, kind)")
    return ReferenceGrant(namespace, name, sources, targets)


# ---- hostnames --------------------------------------------------------------------------------------------


def host_covers(pattern: str, host: str, one_label: bool = False) -> bool:
    """Whether `pattern` (maybe `*.example.com`) covers `host` (maybe a wildcard itself); with `one_label`, the `*`
    stands for one label only (as an Ingress's)."""
    if pattern.startswith("*."):
        covered = host.endswith(pattern[1:]) and len(host) > len(pattern) - 1
        return covered and not (one_label and "." in host[:-len(pattern) + 1])
    return host == pattern


def intersect(listener: Optional[str], route: Sequence[str]) -> Optional[tuple[str, ...]]:
    """The hostnames a route serves on a listener: () for any host, None when they have none in common."""
    if not route:
        return (listener,) if listener else ()
    if listener is None:
        return tuple(route)
    out = [h if host_covers(listener, h) else listener for h in route
           if host_covers(listener, h) or host_covers(h, listener)]
    return tuple(dict.fromkeys(out)) or None


# ---- attachment and status --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Attached:
    """A route on one listener, with the hostnames it serves there."""

    gateway: str
    listener: str
    route: str
    hostnames: tuple[str, ...]


@dataclass(frozen=True)
class ParentStatus:
    ref: ParentRef
    conditions: tuple[Condition, ...]


@dataclass(frozen=True)
class ListenerStatus:
    name: str
    attached_routes: int
    conditions: tuple[Condition, ...]


@dataclass(frozen=True)
class GatewayStatus:
    conditions: tuple[Condition, ...]
    listeners: tuple[ListenerStatus, ...]
    address: Optional[str]


@dataclass
class World:
    """What the controller reads: the Gateway API's objects and the cluster's Services, Secrets and namespaces."""

    classes: dict[str, GatewayClass]
    gateways: dict[str, Gateway]
    routes: dict[str, HTTPRoute]
    grants: list[ReferenceGrant]
    services: Mapping[str, Sequence[int]]  # Service key -> its ports
    secrets: Mapping[str, TLSPair] = field(default_factory=dict)  # Secrets of type kubernetes.io/tls, by key
    namespace_labels: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    addresses: dict[str, str] = field(default_factory=dict)  # Gateway key -> its LoadBalancer address
    programmed: set[str] = field(default_factory=set)  # Gateways whose proxy pod runs


@dataclass
class Attachment:
    """The outcome: every object's status, and what each listener serves."""

    classes: dict[str, tuple[Condition, ...]] = field(default_factory=dict)
    gateways: dict[str, GatewayStatus] = field(default_factory=dict)
    routes: dict[str, tuple[ParentStatus, ...]] = field(default_factory=dict)
    attached: list[Attached] = field(default_factory=list)

    def served(self, gateway: str, listener: str) -> list[Attached]:
        return [a for a in self.attached if (a.gateway, a.listener) == (gateway, listener)]


def class_conditions(gateway_class: GatewayClass) -> tuple[Condition, ...]:
    return (Condition("Accepted", "True", "Accepted", f"served by {CONTROLLER_NAME}"),)


def listener_admits(listener: Listener, gateway: Gateway, route: HTTPRoute,
                    namespace_labels: Mapping[str, Mapping[str, str]]) -> bool:
    """Whether the listener's allowedRoutes take this route (its namespace and its kind)."""
    if listener.route_kinds and ROUTE_KIND not in listener.route_kinds:
        return False
    if listener.protocol not in HTTP_PROTOCOLS:
        return False
    if listener.routes_from == "All":
        return True
    if listener.routes_from == "Same":
        return route.namespace == gateway.namespace
    assert listener.routes_selector is not None
    return listener.routes_selector.matches(namespace_labels.get(route.namespace, {}))


def backend_problem(route: HTTPRoute, backend: BackendRef, world: World) -> Optional[tuple[str, str]]:
    """(reason, message) when a backendRef cannot be resolved, or None."""
    if (backend.group, backend.kind) != ("", "Service"):
        return "InvalidKind", f"backendRef {backend.name}: kind {backend.kind!r} is not served (only Service)"
    if backend.namespace != route.namespace and not any(
            g.namespace == backend.namespace and g.permits(GROUP, ROUTE_KIND, route.namespace, "", "Service",
                                                           backend.name) for g in world.grants):
        return "RefNotPermitted", (f"backendRef {backend.key}: no ReferenceGrant in namespace {backend.namespace} "
                                   f"lets HTTPRoutes of {route.namespace} refer to it")
    ports = world.services.get(backend.key)
    if ports is None:
        return "BackendNotFound", f"backendRef {backend.key}: no such Service"
    if backend.port not in ports:
        return "BackendNotFound", f"backendRef {backend.key}: the Service has no port {backend.port}"
    return None


def route_conditions(route: HTTPRoute, world: World) -> Condition:
    """The ResolvedRefs condition of a route (the same on every parent)."""
    for rule in route.rules:
        for backend in rule.backends:
            problem = backend_problem(route, backend, world)
            if problem:
                return Condition("ResolvedRefs", "False", *problem)
    return Condition("ResolvedRefs", "True", "ResolvedRefs", "every backendRef resolved")


def certificate_problem(gateway: Gateway, listener: Listener, world: World) -> Optional[tuple[str, str]]:
    """(reason, message) when an HTTPS listener's certificate cannot be served, or None."""
    if listener.protocol == "HTTPS" and not listener.certificate_refs:
        return "InvalidCertificateRef", "no certificateRef: a Secret of type kubernetes.io/tls is needed"
    for namespace, name in listener.certificate_refs:
        if namespace != gateway.namespace and not listener.any_namespace_certificates and not any(
                g.namespace == namespace and g.permits(GROUP, GATEWAY_KIND, gateway.namespace, "", "Secret", name)
                for g in world.grants):
            return "RefNotPermitted", f"certificateRef {namespace}/{name}: no ReferenceGrant in {namespace} allows it"
        if f"{namespace}/{name}" not in world.secrets:
            return "InvalidCertificateRef", f"certificateRef {namespace}/{name}: no Secret of type kubernetes.io/tls"
    return None


def conflicts(gateway: Gateway) -> dict[str, tuple[str, str]]:
    """Listeners that clash with another on the same port: name -> (reason, message)."""
    out: dict[str, tuple[str, str]] = {}
    for i, one in enumerate(gateway.listeners):
        for other in gateway.listeners[:i] + gateway.listeners[i + 1:]:
            if one.port != other.port:
                continue
            if one.protocol != other.protocol:
                out[one.name] = ("ProtocolConflict", f"port {one.port} is {other.protocol} on listener {other.name}")
            elif one.hostname == other.hostname:
                out[one.name] = ("HostnameConflict", f"listener {other.name} has the same port and hostname")
    return out


def attach(world: World) -> Attachment:
    """Which routes each listener serves, and the status of every object the lab's controller owns."""
    result = Attachment()
    ours = {name for name, c in world.classes.items() if c.ours}
    for name in sorted(ours):
        result.classes[name] = class_conditions(world.classes[name])
    attached_count: dict[tuple[str, str], int] = {}
    for key in sorted(world.routes):
        route = world.routes[key]
        resolved = route_conditions(route, world)
        parents = []
        for ref in route.parents:
            gateway = world.gateways.get(ref.key) if (ref.group, ref.kind) == (GROUP, GATEWAY_KIND) else None
            if gateway is not None and gateway.class_name not in ours:
                continue  # another controller's Gateway: its status is not ours to write
            accepted = attach_to(route, ref, gateway, world, result, attached_count)
            parents.append(ParentStatus(ref, (accepted, resolved)))
        result.routes[key] = tuple(parents)
    for key in sorted(world.gateways):
        gateway = world.gateways[key]
        if gateway.class_name not in ours:
            continue
        result.gateways[key] = gateway_status(gateway, world, attached_count)
    return result


def attach_to(route: HTTPRoute, ref: ParentRef, gateway: Optional[Gateway], world: World, result: Attachment,
              attached_count: dict[tuple[str, str], int]) -> Condition:
    """Attach `route` to the listeners of `ref`'s Gateway that take it; its Accepted condition there."""
    if gateway is None:
        return Condition("Accepted", "False", "NoMatchingParent", f"no Gateway {ref.key}")
    candidates = [li for li in gateway.listeners if (ref.section is None or li.name == ref.section)
                  and (ref.port is None or li.port == ref.port)]
    if not candidates:
        return Condition("Accepted", "False", "NoMatchingParent",
                         f"Gateway {ref.key} has no listener {ref.section or ''}{'' if ref.port is None else ref.port}")
    allowed = [li for li in candidates if listener_admits(li, gateway, route, world.namespace_labels)]
    if not allowed:
        return Condition("Accepted", "False", "NotAllowedByListeners",
                         f"no listener of Gateway {ref.key} allows HTTPRoutes from namespace {route.namespace}")
    hosted = [(li, intersect(li.hostname, route.hostnames)) for li in allowed]
    hosted = [(li, names) for li, names in hosted if names is not None]
    if not hosted:
        return Condition("Accepted", "False", "NoMatchingListenerHostname",
                         f"no listener hostname of Gateway {ref.key} matches {', '.join(route.hostnames)}")
    for listener, names in hosted:
        assert names is not None
        result.attached.append(Attached(gateway.key, listener.name, route.key, names))
        attached_count[(gateway.key, listener.name)] = attached_count.get((gateway.key, listener.name), 0) + 1
    return Condition("Accepted", "True", "Accepted", f"attached to {', '.join(li.name for li, _ in hosted)}")


def gateway_status(gateway: Gateway, world: World, attached_count: Mapping[tuple[str, str], int]) -> GatewayStatus:
    clashes = conflicts(gateway)
    listeners = []
    for listener in gateway.listeners:
        conds = []
        if listener.protocol not in HTTP_PROTOCOLS:
            conds.append(Condition("Accepted", "False", "UnsupportedProtocol",
                                   f"the lab serves HTTP and HTTPS, not {listener.protocol}"))
        else:
            conds.append(Condition("Accepted", "True", "Accepted"))
        cert = certificate_problem(gateway, listener, world)
        conds.append(Condition("ResolvedRefs", "False", *cert) if cert else Condition("ResolvedRefs", "True",
                                                                                      "ResolvedRefs"))
        clash = clashes.get(listener.name)
        conds.append(Condition("Conflicted", "True", *clash) if clash else Condition("Conflicted", "False",
                                                                                    "NoConflicts"))
        good = conds[0].true and conds[1].true and not clash
        conds.append(Condition("Programmed", "True", "Programmed") if good and gateway.key in world.programmed
                     else Condition("Programmed", "False", "Invalid" if not good else "Pending",
                                    "" if not good else "the gateway's proxy does not serve it yet"))
        listeners.append(ListenerStatus(listener.name, attached_count.get((gateway.key, listener.name), 0),
                                        tuple(conds)))
    address = world.addresses.get(gateway.key)
    programmed = gateway.key in world.programmed and address is not None
    return GatewayStatus(
        (Condition("Accepted", "True", "Accepted"),
         Condition("Programmed", "True", "Programmed", f"served at {address}") if programmed
         else Condition("Programmed", "False", "AddressNotAssigned" if address is None else "Pending",
                        "no LoadBalancer address yet" if address is None else "the gateway's proxy is not ready")),
        tuple(listeners), address)


# ---- the order requests meet the matches ------------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    """One match of one rule of an attached route, on a hostname ("" for any host)."""

    hostname: str
    match: Match
    route: HTTPRoute
    rule_index: int
    match_index: int

    @property
    def rule(self) -> Rule:
        return self.route.rules[self.rule_index]


def precedence(entry: Entry) -> tuple[Any, ...]:
    """Sort key: the spec's precedence, most specific first."""
    host, match = entry.hostname, entry.match
    path = match.path
    return (-(len(host) if host and not host.startswith("*") else 0), -len(host),
            path.type != "Exact", -len(path.value), path.type == "RegularExpression",
            match.method is None, -len(match.headers), -len(match.query),
            entry.route.created, entry.route.key, entry.rule_index, entry.match_index)


def table(attachment: Attachment, routes: Mapping[str, HTTPRoute], gateway: str, listener: str) -> list[Entry]:
    """Every match a listener serves, in the order a request meets them."""
    entries = []
    for attached in attachment.served(gateway, listener):
        route = routes[attached.route]
        for host in attached.hostnames or ("",):
            for r, rule in enumerate(route.rules):
                for m, match in enumerate(rule.matches):
                    entries.append(Entry(host, match, route, r, m))
    return sorted(entries, key=precedence)


@dataclass(frozen=True)
class Request:
    host: str
    path: str = "/"
    method: str = "GET"
    headers: Mapping[str, str] = field(default_factory=dict)
    query: Mapping[str, str] = field(default_factory=dict)


def path_matches(path: PathMatch, request_path: str) -> bool:
    if path.type == "Exact":
        return request_path == path.value
    if path.type == "RegularExpression":
        return re.fullmatch(path.value, request_path) is not None
    prefix = path.value.rstrip("/")
    return request_path == prefix or request_path.startswith(prefix + "/") or not prefix


def value_matches(match: ValueMatch, value: Optional[str]) -> bool:
    if value is None:
        return False
    if match.type == "Exact":
        return value == match.value
    return re.fullmatch(match.value, value) is not None


def matches(entry: Entry, request: Request) -> bool:
    host = request.host.split(":")[0].lower()
    if entry.hostname and not host_covers(entry.hostname, host, entry.route.one_label_wildcards):
        return False
    match = entry.match
    headers = {k.lower(): v for k, v in request.headers.items()}
    return (path_matches(match.path, request.path.split("?")[0])
            and (match.method is None or match.method == request.method)
            and all(value_matches(h, headers.get(h.name.lower())) for h in match.headers)
            and all(value_matches(q, request.query.get(q.name)) for q in match.query))


def listener_for(gateway: Gateway, port: int, host: str) -> Optional[Listener]:
    """The listener a request on `port` for `host` reaches: the one with that exact hostname, else the longest
    wildcard covering it, else one without a hostname (as a proxy picks its server block)."""
    host = host.split(":")[0].lower()
    on_port = [li for li in gateway.listeners if li.port == port and li.protocol in HTTP_PROTOCOLS]
    exact = [li for li in on_port if li.hostname == host]
    wild = sorted((li for li in on_port if li.hostname and li.hostname.startswith("*.")
                   and host_covers(li.hostname, host)), key=lambda li: -len(li.hostname or ""))
    return next(iter(exact + wild + [li for li in on_port if li.hostname is None]), None)


def route_request(entries: Sequence[Entry], request: Request) -> Optional[Entry]:
    """The match a request is routed by (entries as `table` orders them), or None: a 404."""
    return next((e for e in entries if matches(e, request)), None)


def sample_request(entry: Entry, listener: Listener, fallback_host: str) -> Optional[Request]:
    """A request that meets `entry`'s match on `listener` (a name under a wildcard, the match's path, method,
    headers and query parameters), or None where a regular expression leaves it to guess."""
    match = entry.match
    if match.path.type == "RegularExpression" or any(
            v.type != "Exact" for v in (*match.headers, *match.query)):
        return None
    host = entry.hostname or listener.hostname or fallback_host
    if host.startswith("*."):
        host = "lab-verify" + host[1:]
    query = "&".join(f"{q.name}={q.value}" for q in match.query)
    path = match.path.value + (f"?{query}" if query else "")
    return Request(host, path, match.method or "GET", {h.name: h.value for h in match.headers},
                   {q.name: q.value for q in match.query})


def redirect_location(spec: Mapping[str, Any], match: Match, listener: Listener, request: Request) -> str:
    """The Location a RequestRedirect filter answers `request` with: the filter's scheme, hostname, port and path
    where it names them, the request's own otherwise (a port the scheme implies is left out)."""
    scheme = spec.get("scheme") or ("https" if listener.protocol == "HTTPS" else "http")
    port = spec.get("port") or ({"http": 80, "https": 443}[spec["scheme"]] if spec.get("scheme") else listener.port)
    host = spec.get("hostname") or request.host.split(":")[0]
    path, _, query = request.path.partition("?")
    modifier = spec.get("path") or {}
    if modifier.get("type") == "ReplaceFullPath":
        path = modifier.get("replaceFullPath", "/")
    elif modifier.get("type") == "ReplacePrefixMatch":
        prefix = match.path.value.rstrip("/")
        path = (str(modifier.get("replacePrefixMatch", "")).rstrip("/") + path[len(prefix):]) or "/"
    shown = "" if (scheme, port) in (("http", 80), ("https", 443)) else f":{port}"
    return f"{scheme}://{host}{shown}{path}" + (f"?{query}" if query else "")


def split_percentages(weights: Sequence[int]) -> list[float]:
    """Each backend's share of requests in percent (two decimals, as nginx's split_clients takes them), adding
    up to 100 when any weight is above 0."""
    total = sum(weights)
    if total == 0:
        return [0.0 for _ in weights]
    shares = [round(100 * w / total, 2) for w in weights]
    last = max(i for i, w in enumerate(weights) if w > 0)
    shares[last] = round(100 - sum(shares[:last]) - sum(shares[last + 1:]), 2)
    return shares


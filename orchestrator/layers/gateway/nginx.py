"""A Gateway's nginx configuration (pure): one server block per listener, and in each, the routes attached to it
in the order the spec's precedence gives (routes.table).

nginx picks the server by port and Host as the Gateway API picks the listener (an exact hostname, then the
longest wildcard, then the listener without one). Inside it, one `map` decides the match: its key is the
request's host, method, path and the headers and query parameters the matches name, one a line (a header value
cannot hold a newline), and its regular expressions, one per match, are tried in precedence order. The match
found sends the request to an internal location that applies the rule's filters and passes it to the rule's
backends: the Services' ready endpoints, split by weight with split_clients. A backendRef that does not resolve
gets 500 for its share, a Service without ready endpoints 503, as the spec asks; no match is a 404.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Optional

from orchestrator.agent.contract import TLS_FOLDER
from orchestrator.core.objects import Endpoints, Service
from orchestrator.core.render import render
from orchestrator.layers.gateway.routes import (HTTP_PROTOCOLS, Attachment, BackendRef, Entry, Gateway, HTTPRoute,
                                                Listener, Match, World, backend_problem, certificate_problem,
                                                conflicts, split_percentages, table)

TEMPLATE = "gateway/nginx.conf.j2"
ENTRY_PREFIX = "/_lab_gateway"  # the internal locations' paths (a client asking for one gets a 404)
UNRESOLVED, NO_ENDPOINTS = "_500", "_503"
BASE_HEADERS = (("Host", "$http_host"), ("Connection", '""'), ("X-Forwarded-For", "$proxy_add_x_forwarded_for"),
                ("X-Forwarded-Proto", "$scheme"))


def quoted(text: str) -> str:
    """`text` as one quoted nginx token (nginx unescapes \\\\ and \\" inside quotes)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def nginx_string(text: str) -> str:
    """`text` as a quoted value where nginx expands variables: a `$` of the text stays a `$` (${dollar})."""
    return quoted(text).replace("$", "${dollar}")


def header_variable(name: str) -> str:
    return "$http_" + name.lower().replace("-", "_")


def query_variable(name: str) -> str:
    return "$arg_" + name


def upstream_name(service_key: str, port: int) -> str:
    return "svc_" + re.sub(r"[^A-Za-z0-9_]", "_", service_key) + f"_{port}"


@dataclass
class Target:
    """Where one backendRef's share goes: an upstream, or the status code standing for it."""

    name: str
    percent: float


@dataclass
class Location:
    """One match of one rule: its path in the internal locations, and what it does."""

    id: str
    pattern: str  # the map's regular expression
    source: str  # the route, rule and match it comes from, for the comment above it
    targets: list[Target] = field(default_factory=list)
    redirect: Optional[str] = None  # `return CODE URL;` arguments
    # proxy_set_header NAME VALUE: all of them, as a location that sets one inherits none from above
    request_headers: list[tuple[str, str]] = field(default_factory=lambda: list(BASE_HEADERS))
    # RequestHeaderModifier add: (variable, the header's variable, its value when absent, when present)
    add_maps: list[tuple[str, str, str, str]] = field(default_factory=list)
    hide_headers: list[str] = field(default_factory=list)
    add_headers: list[tuple[str, str]] = field(default_factory=list)
    uri: str = "$request_uri"
    prefix_capture: Optional[str] = None  # the regex whose group 1 is the path after a replaced prefix
    timeout: Optional[str] = None


@dataclass
class Server:
    id: str
    port: int
    hostname: str  # nginx server_name: "_" for a listener without one
    default: bool
    key: str  # the map's source: host, method, path, headers, query, one a line
    locations: list[Location]
    tls: bool = False  # the port speaks TLS
    certificate: Optional[str] = None  # the PEM file (certificate and key); None on a TLS port: handshakes refused


@dataclass(frozen=True)
class ProxyConfig:
    """What a gateway pod is given: its nginx.conf, and the files it names (TLS_FOLDER/NAME -> content)."""

    text: str
    files: Mapping[str, str] = field(default_factory=dict)


def field_pattern(match: Match, hostname: str, headers: Sequence[str], query: Sequence[str],
                  one_label: bool = False) -> str:
    """The regular expression one match is, over the key the server's map reads (`one_label`: a wildcard host
    covers one label, as an Ingress's)."""
    if not hostname:
        host = ".*"
    elif hostname.startswith("*."):
        host = (r"[^.\n]+" if one_label else r"[^\n]+") + re.escape(hostname[1:])
    else:
        host = re.escape(hostname)
    path = match.path
    if path.type == "Exact":
        path_re = re.escape(path.value)
    elif path.type == "RegularExpression":
        path_re = f"(?:{path.value})"
    else:
        path_re = re.escape(path.value.rstrip("/")) + "(?:/.*)?"
    wanted_headers = {h.name.lower(): h for h in match.headers}
    wanted_query = {q.name: q for q in match.query}
    parts = [host, re.escape(match.method) if match.method else ".*", path_re]
    for name in headers:
        h = wanted_headers.get(name)
        parts.append(".*" if h is None else re.escape(h.value) if h.type == "Exact" else f"(?:{h.value})")
    for name in query:
        q = wanted_query.get(name)
        parts.append(".*" if q is None else re.escape(q.value) if q.type == "Exact" else f"(?:{q.value})")
    return "^" + "\n".join(parts) + "$"


def map_pattern(pattern: str) -> str:
    """A regular expression of field_pattern as the map's quoted key: `~` then the expression, each newline
    written as nginx's \\n escape."""
    return quoted("~" + pattern).replace("\n", "\\n")


def resolve_targets(route: HTTPRoute, backends: Sequence[BackendRef], world: World,
                    services: Mapping[str, Service], eps: Endpoints,
                    upstreams: dict[str, list[str]]) -> list[Target]:
    shares = split_percentages([b.weight for b in backends])
    targets = []
    for backend, share in zip(backends, shares, strict=True):
        if share == 0:
            continue
        if backend_problem(route, backend, world):
            targets.append(Target(UNRESOLVED, share))
            continue
        service = services[backend.key]
        port = next(p for p in service.ports if p.port == backend.port)
        ready = eps.get(backend.key, {}).get(port.name or "", [])
        if not ready:
            targets.append(Target(NO_ENDPOINTS, share))
            continue
        name = upstream_name(backend.key, port.port)
        upstreams[name] = sorted(e.address for e in ready)
        targets.append(Target(name, share))
    return targets or [Target(UNRESOLVED, 100.0)]


def set_request_header(location: Location, name: str, value: str) -> None:
    kept = [(n, v) for n, v in location.request_headers if n.lower() != name.lower()]
    location.request_headers = kept + [(name, value)]


def apply_filters(location: Location, entry: Entry, listener: Listener) -> None:
    """The rule's filters, as nginx directives on its location."""
    for item in entry.rule.filters:
        kind = item["type"]
        if kind == "RequestHeaderModifier":
            spec = item.get("requestHeaderModifier") or {}
            for header in spec.get("set") or []:
                set_request_header(location, header["name"], nginx_string(header["value"]))
            for header in spec.get("add") or []:
                variable = f"$gw_add_{location.id}_{len(location.add_maps)}"
                value = nginx_string(header["value"])
                current = header_variable(header["name"])
                location.add_maps.append((variable, current, value, f'"{current},{value[1:]}'))
                set_request_header(location, header["name"], variable)
            for name in spec.get("remove") or []:
                set_request_header(location, name, '""')
        elif kind == "ResponseHeaderModifier":
            spec = item.get("responseHeaderModifier") or {}
            for header in spec.get("set") or []:
                location.hide_headers.append(header["name"])
                location.add_headers.append((header["name"], nginx_string(header["value"])))
            for header in spec.get("add") or []:
                location.add_headers.append((header["name"], nginx_string(header["value"])))
            location.hide_headers.extend(spec.get("remove") or [])
        elif kind == "RequestRedirect":
            location.redirect = redirect(item.get("requestRedirect") or {}, entry, listener, location)
        elif kind == "URLRewrite":
            spec = item.get("urlRewrite") or {}
            if spec.get("hostname"):
                set_request_header(location, "Host", nginx_string(spec["hostname"]))
            path = spec.get("path")
            if path:
                location.uri = rewritten_path(path, entry, location) + "$is_args$args"
    if entry.rule.timeouts:
        location.timeout = entry.rule.timeouts.get("backendRequest") or entry.rule.timeouts.get("request")
        if location.timeout in ("0s", "0ms"):
            location.timeout = None


def rewritten_path(path: Mapping[str, Any], entry: Entry, location: Location) -> str:
    """The path a RequestRedirect or URLRewrite gives, as nginx text (variables included)."""
    if path.get("type") == "ReplaceFullPath":
        return nginx_string(path.get("replaceFullPath", "/"))[1:-1]
    prefix = entry.match.path.value.rstrip("/")
    location.prefix_capture = "^" + re.escape(prefix) + "(/.*)?$"
    replacement = str(path.get("replacePrefixMatch", "")).rstrip("/")
    return (nginx_string(replacement)[1:-1] if replacement else "") + "$gw_rest"


def redirect(spec: Mapping[str, Any], entry: Entry, listener: Listener, location: Location) -> str:
    """`return` arguments: the status code and the URL (the request's own parts where the filter names none;
    the path as the client sent it, saved in $gw_uri before the request was routed to the match's location)."""
    scheme = spec.get("scheme")
    port = spec.get("port")
    if port is None:
        port = {"http": 80, "https": 443}[scheme] if scheme else listener.port
    scheme = scheme or ("https" if listener.protocol == "HTTPS" else "http")
    host = nginx_string(spec["hostname"])[1:-1] if spec.get("hostname") else "$host"
    shown_port = "" if (scheme, port) in (("http", 80), ("https", 443)) else f":{port}"
    path = rewritten_path(spec["path"], entry, location) if spec.get("path") else "$gw_uri"
    code = int(spec.get("statusCode", 302))
    return f'{code} "{scheme}://{host}{shown_port}{path}$is_args$args"'


def servers(gateway: Gateway, attachment: Attachment, world: World, services: Mapping[str, Service],
            eps: Endpoints, upstreams: dict[str, list[str]], files: dict[str, str], run_dir: str) -> list[Server]:
    """A server block per listener the proxy can serve (not conflicted; HTTPS with its certificate), and a default
    one on each port without a listener for any host: a 404, or on a TLS port a refused handshake."""
    out: list[Server] = []
    clashes = conflicts(gateway)
    served = [li for li in gateway.listeners if li.protocol in HTTP_PROTOCOLS and li.name not in clashes
              and not certificate_problem(gateway, li, world)]
    with_default = {li.port for li in served if li.hostname is None}
    for listener in served:
        certificate = None
        if listener.protocol == "HTTPS":
            pair = world.secrets[listener.certificate_key]
            rel = f"{TLS_FOLDER}/{pair.file_name}"
            files[rel] = pair.bundle
            certificate = f"{run_dir}/{rel}"
        entries = table(attachment, world.routes, gateway.key, listener.name)
        headers = sorted({h.name.lower() for e in entries for h in e.match.headers})
        query = sorted({q.name for e in entries for q in e.match.query})
        server_id = f"s{len(out)}"
        locations = []
        for i, entry in enumerate(entries):
            location = Location(f"{server_id}_{i}", field_pattern(entry.match, entry.hostname, headers, query,
                                                                  entry.route.one_label_wildcards),
                                f"{entry.route.key} rule {entry.rule_index} match {entry.match_index}")
            apply_filters(location, entry, listener)
            if location.redirect is None:
                location.targets = resolve_targets(entry.route, entry.rule.backends, world, services, eps,
                                                   upstreams)
            locations.append(location)
        key = "\\n".join(["$host", "$request_method", "$uri", *(header_variable(h) for h in headers),
                          *(query_variable(q) for q in query)])
        out.append(Server(server_id, listener.port, listener.hostname or "_", listener.hostname is None, key,
                          locations, listener.protocol == "HTTPS", certificate))
    tls_ports = {li.port for li in gateway.listeners if li.protocol == "HTTPS"} | set(gateway.tls_ports)
    http_ports = {li.port for li in gateway.listeners if li.protocol == "HTTP"} - tls_ports
    for port in sorted((http_ports | tls_ports) - with_default):
        out.append(Server(f"s{len(out)}", port, "_", True, "", [], port in tls_ports))
    return out


def render_config(gateway: Gateway, attachment: Attachment, world: World, services: Mapping[str, Service],
                  eps: Endpoints, run_dir: str) -> ProxyConfig:
    """The nginx.conf of `gateway`'s proxy pod and the certificates it names; `run_dir` holds its PID file, logs,
    temporary files and certificates."""
    upstreams: dict[str, list[str]] = {}
    files: dict[str, str] = {}
    blocks = servers(gateway, attachment, world, services, eps, upstreams, files, run_dir)
    return ProxyConfig(render(TEMPLATE, gateway=gateway.key, run_dir=run_dir, servers=blocks, upstreams=upstreams,
                              map_pattern=map_pattern, quote=quoted, entry_prefix=ENTRY_PREFIX,
                              special=(UNRESOLVED, NO_ENDPOINTS)), files)

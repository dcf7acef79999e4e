"""`lab verify` for the Gateway API: from the outside host, for every match of every route a Gateway serves, a
request that meets it (routes.sample_request) must get what the spec's precedence says (routes.route_request
on the same table nginx is configured from): the pods of that rule's backends, in the shares their weights give
(within SHARE_TOLERANCE over SHARE_REQUESTS requests), or the rule's redirect."""

from __future__ import annotations

from typing import Optional

from orchestrator.core.objects import LabObjects
from orchestrator.layers.gateway.ingress import INGRESS_GATEWAY
from orchestrator.layers.gateway.routes import (Attachment, Entry, Listener, Request, World, backend_problem,
                                                certificate_problem, redirect_location, route_request, sample_request,
                                                split_percentages, table)
from orchestrator.layers.gateway.world import attachment_of, proxy_key
from orchestrator.verify.checks import OUTSIDE, Check

SHARE_REQUESTS = 100
SHARE_TOLERANCE = 20.0  # percentage points: 4 standard deviations of a 50/50 split over 100 requests


def gateway_checks(objects: LabObjects) -> list[Check]:
    world, attachment = attachment_of(objects)
    checks: list[Check] = []
    for key, status in sorted(attachment.gateways.items()):
        if status.address is None:
            continue
        for listener in world.gateways[key].listeners:
            entries = table(attachment, world.routes, key, listener.name)
            samples: dict[tuple, Request] = {}
            for entry in entries:
                sample = sample_request(entry, listener, status.address)
                if sample is not None:
                    samples.setdefault((sample.host, sample.path, sample.method, tuple(sorted(sample.headers.items()))),
                                       sample)
            for sample in samples.values():
                chosen = route_request(entries, sample)
                check = chosen and route_check(objects, world, key, status.address, listener, sample, chosen)
                if check:
                    checks.append(check)
    return checks + refused_route_checks(objects, world, attachment)


def refused_route_checks(objects: LabObjects, world: World, attachment: Attachment) -> list[Check]:
    """A route a served Gateway refuses (no listener hostname matching, not allowed, no such listener) still
    says what its author meant: its first match's request, expecting its backends, fails with the reason."""
    checks = []
    for key, parents in sorted(attachment.routes.items()):
        route = world.routes[key]
        for parent in parents:
            accepted = parent.conditions[0]
            status = attachment.gateways.get(parent.ref.key)
            if accepted.true or status is None or status.address is None or not route.rules[0].matches:
                continue
            gateway = world.gateways[parent.ref.key]
            listener = next((li for li in gateway.listeners if li.protocol == "HTTP"), None)
            if listener is None:
                continue
            entry = Entry(route.hostnames[0] if route.hostnames else "", route.rules[0].matches[0], route, 0, 0)
            sample = sample_request(entry, listener, status.address)
            check = sample and route_check(objects, world, gateway.key, status.address, listener, sample, entry,
                                           f"HTTPRoute {key}: Accepted False {accepted.reason}: {accepted.message}")
            if check:
                checks.append(check)
    return checks


def redirects(entry: Entry) -> bool:
    return any(f.get("type") == "RequestRedirect" for f in entry.rule.filters)


def route_check(objects: LabObjects, world: World, gateway_key: str, address: str, listener: Listener,
                sample: Request, chosen: Entry, refused: str = "") -> Optional[Check]:
    """The check for one sample request, by the entry the precedence picks for it (`refused`: why the Gateway
    does not serve the route at all)."""
    route, rule = chosen.route, chosen.rule
    family = "ingress" if gateway_key == INGRESS_GATEWAY.key else "gateway"
    where = f"{route.key} rule {chosen.rule_index} (match {chosen.match_index})"
    target = {"proto": "tcp", "host": address, "port": listener.port, "path": sample.path,
              "http_host": sample.host, "method": sample.method, "headers": dict(sample.headers),
              "reply_header": "X-Pod-Name"}
    gateway = world.gateways[gateway_key]
    tls_problem = certificate_problem(gateway, listener, world) if listener.protocol == "HTTPS" else None
    if listener.protocol == "HTTPS":  # asked for by name (SNI); the certificate served must be the Secret's
        target["tls"] = sample.host.split(":")[0]
        if not tls_problem:
            target["certificate"] = world.secrets[listener.certificate_key].fingerprint
    why_not = "; ".join(filter(None, [refused, tls_problem and f"listener {listener.name}: ResolvedRefs False "
                                      f"{tls_problem[0]}: {tls_problem[1]}"]))
    name = (f"{gateway_key}/{listener.name} {sample.method} {sample.host}{sample.path}"
            + "".join(f" [{k}: {v}]" for k, v in sorted(sample.headers.items()))
            + (f" (as {route.key} meant it)" if refused else ""))
    gateway_namespace, gateway_name = gateway_key.split("/")
    show = (f"lab describe ingress {route.name.split(':')[0]} -n {route.namespace}" if family == "ingress" else
            f"lab describe httproute {route.name} -n {route.namespace}; "
            f"lab describe gateway {gateway_name} -n {gateway_namespace}")
    if redirects(chosen):
        spec = next(f for f in rule.filters if f.get("type") == "RequestRedirect").get("requestRedirect") or {}
        code = str(spec.get("statusCode", 302))
        location = redirect_location(spec, chosen.match, listener, sample)
        return Check(id=f"{family}/outside->{name}", family=family, source=OUTSIDE,
                     target=dict(target, reply_header="Location"), want=("status", code, location),
                     label=f"outside -> {name}: {code} redirect to {location} ({where})",
                     layer="; ".join([f"Gateway {gateway_key}'s proxy: a RequestRedirect filter ({where})",
                                      *filter(None, [why_not])]), show=show, on_paper=bool(why_not))
    shares: dict[str, float] = {}
    pods: dict[str, str] = {}
    problems = [why_not] if why_not else []
    for backend, share in zip(rule.backends, split_percentages([b.weight for b in rule.backends]), strict=True):
        if share == 0:
            continue
        shares[backend.key] = shares.get(backend.key, 0.0) + share
        problem = backend_problem(route, backend, world)
        if problem:  # its share gets a 500, as the spec says; the route's intent fails, and this says why
            problems.append(f"ResolvedRefs False {problem[0]}: {problem[1]}")
            continue
        service = objects.services[backend.key]
        port = next(p for p in service.ports if p.port == backend.port)
        ready = objects.endpoints.get(backend.key, {}).get(port.name or "", [])
        if not ready:
            problems.append(f"Service {backend.key} has no ready endpoint (503)")
        pods.update({e.pod: backend.key for e in ready})
    if not shares:
        return None
    count = SHARE_REQUESTS if len(shares) > 1 else 10
    layer = f"Gateway {gateway_key}'s proxy (nginx in its gateway pod), then {where}"
    proxies = tuple(p.key for p in objects.pods_of(f"Deployment/{proxy_key(gateway)}"))
    return Check(id=f"{family}/outside->{name}", family=family, source=OUTSIDE, target=target,
                 want=("shares", pods, shares, SHARE_TOLERANCE), count=count,
                 label=f"outside -> {name}: " + ", ".join(f"{k} {v:g}%" for k, v in shares.items()) + f" ({where})",
                 reaches=proxies + tuple(f"{objects.services[k].namespace}/{p}" for p, k in pods.items()),
                 layer="; ".join([layer, *problems]), show=show, on_paper=bool(problems))

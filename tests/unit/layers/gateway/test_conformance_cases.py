"""The Gateway API conformance suite's HTTPRoute cases, ported as data (tests/unit/data/gateway_conformance.yaml):
each request must reach the backend the suite expects, through the listener and the match the spec's
precedence picks; routes whose hostnames meet no listener are refused as the suite checks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator.layers.gateway.routes import (CONTROLLER_NAME, Gateway, GatewayClass, Listener, Request, World,
                                                attach, listener_for, parse_route, route_request, split_percentages,
                                                table)

DATA = yaml.safe_load((Path(__file__).parents[2] / "data" / "gateway_conformance.yaml").read_text())
NAMESPACE = "gateway-conformance-infra"
BACKENDS = {f"{NAMESPACE}/infra-backend-v{i}": (8080,) for i in (1, 2, 3)}
GATEWAY_ADDRESS = "198.18.0.240:80"  # where a test that sets no Host sends its requests


def gateway_of(test: dict[str, Any]) -> Gateway:
    listeners = tuple(Listener(li["name"], 80, "HTTP", li.get("hostname")) for li in test.get("listeners", [])) \
        or (Listener("http", 80, "HTTP"),)
    return Gateway(NAMESPACE, test.get("gateway", "same-namespace"), "lab", listeners, "2026-01-01T00:00:00Z")


def routes_of(test: dict[str, Any], gateway: Gateway) -> dict:
    routes = {}
    for r in test["routes"]:
        sections = r.get("sectionName")
        parents = [{"name": gateway.name, "sectionName": s}
                   for s in (sections if isinstance(sections, list) else [sections])]
        spec = {"parentRefs": parents, "hostnames": r.get("hostnames") or [], "rules": r["rules"]}
        route = parse_route(r["namespace"], r["name"], spec, f"2026-01-01T00:00:{r.get('created', 0):02d}Z",
                            f"{test['test']}:{r['name']}")
        routes[route.key] = route
    return routes


def world_of(test: dict[str, Any]) -> tuple[World, Gateway]:
    gateway = gateway_of(test)
    world = World(classes={"lab": GatewayClass("lab", CONTROLLER_NAME, "")}, gateways={gateway.key: gateway},
                  routes=routes_of(test, gateway), grants=[], services=BACKENDS)
    return world, gateway


def case_id(test: dict[str, Any], case: dict[str, Any]) -> str:
    request = case["request"]
    return f"{test['test']}:{request['host']}{request['path']}:{request['method']}:{request['headers']}:" \
           f"{request['query']}"


CASES = [(test, case) for test in DATA for case in test["cases"] if not isinstance(case["backend"], dict)]


@pytest.mark.parametrize(("test", "case"), CASES, ids=[case_id(t, c) for t, c in CASES])
def test_each_request_reaches_the_backend_the_suite_expects(test, case):
    world, gateway = world_of(test)
    attachment = attach(world)
    request = case["request"]
    host = request["host"] or GATEWAY_ADDRESS
    listener = listener_for(gateway, 80, host)
    chosen = None
    if listener is not None:
        entries = table(attachment, world.routes, gateway.key, listener.name)
        chosen = route_request(entries, Request(host, request["path"], request["method"], request["headers"],
                                                {k: str(v) for k, v in request["query"].items()}))
    assert (chosen.rule.backends[0].name if chosen else None) == case["backend"]


@pytest.mark.parametrize("test", [t for t in DATA if any("accepted" in r for r in t["routes"])
                                  or any("attachedRoutes" in li for li in t.get("listeners", []))],
                         ids=lambda t: t["test"])
def test_routes_are_accepted_or_refused_and_counted_as_the_suite_checks(test):
    world, gateway = world_of(test)
    attachment = attach(world)
    for r in test["routes"]:
        if "accepted" in r:
            accepted = attachment.routes[f"{r['namespace']}/{r['name']}"][0].conditions[0]
            assert (accepted.status == "True", accepted.reason) == (r["accepted"], r.get("reason", "Accepted"))
    counts = {li.name: li.attached_routes for li in attachment.gateways[gateway.key].listeners}
    for li in test.get("listeners", []):
        if "attachedRoutes" in li:
            assert counts[li["name"]] == li["attachedRoutes"], li["name"]


def test_weights_split_requests_in_the_shares_the_suite_expects():
    test = next(t for t in DATA if t["test"] == "HTTPRouteWeight")
    world, gateway = world_of(test)
    rule = next(iter(world.routes.values())).rules[0]
    shares = dict(zip((b.name for b in rule.backends), split_percentages([b.weight for b in rule.backends]),
                      strict=True))
    expected = test["cases"][0]["backend"]
    assert {name: share / 100 for name, share in shares.items()} == pytest.approx(expected)

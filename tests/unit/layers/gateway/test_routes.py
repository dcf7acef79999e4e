"""Attachment and status as the spec words them (each reason where it applies), what `lab apply` refuses in a
route or a Gateway (one line naming the field), and the weights' split."""

from __future__ import annotations

import pytest

from orchestrator.core.errors import InputError
from orchestrator.layers.gateway.routes import (CONTROLLER_NAME, GatewayClass, Listener, Match, PathMatch,
                                                ReferenceGrant, Request, World, attach, intersect, parse_gateway,
                                                parse_route, redirect_location, split_percentages)

CREATED = "2026-12-01T00:00:00Z"


def gateway(listeners=None, namespace="infra"):
    spec = {"gatewayClassName": "lab", "listeners": listeners or [{"name": "http", "port": 80, "protocol": "HTTP"}]}
    return parse_gateway(namespace, "gw", spec, CREATED, "gw.yaml")


def route(namespace="infra", hostnames=(), backend=None, section=None, name="r"):
    ref = {"name": "gw", "namespace": "infra", **({"sectionName": section} if section else {})}
    spec = {"parentRefs": [ref], "hostnames": list(hostnames),
            "rules": [{"backendRefs": [backend or {"name": "web", "port": 80}]}]}
    return parse_route(namespace, name, spec, CREATED, "route.yaml")


def outcome(gw, rt, grants=(), services=None, labels=None, other_class=False):
    world = World(classes={"lab": GatewayClass("lab", "example.com/other" if other_class else CONTROLLER_NAME, "")},
                  gateways={gw.key: gw}, routes={rt.key: rt}, grants=list(grants),
                  services=services if services is not None else {f"{rt.namespace}/web": (80,)},
                  namespace_labels=labels or {})
    return attach(world)


def conditions(result, rt):
    return {c.type: (c.status, c.reason) for c in result.routes[rt.key][0].conditions}


def test_a_route_in_the_gateways_namespace_is_accepted_and_resolved():
    result = outcome(gateway(), route())
    assert conditions(result, route()) == {"Accepted": ("True", "Accepted"), "ResolvedRefs": ("True", "ResolvedRefs")}
    assert result.gateways["infra/gw"].listeners[0].attached_routes == 1


def test_a_route_from_another_namespace_needs_the_listener_to_allow_it():
    rt = route(namespace="team")
    assert conditions(outcome(gateway(), rt), rt)["Accepted"] == ("False", "NotAllowedByListeners")
    everyone = gateway([{"name": "http", "port": 80, "protocol": "HTTP",
                         "allowedRoutes": {"namespaces": {"from": "All"}}}])
    assert conditions(outcome(everyone, rt), rt)["Accepted"] == ("True", "Accepted")
    chosen = gateway([{"name": "http", "port": 80, "protocol": "HTTP", "allowedRoutes": {"namespaces": {
        "from": "Selector", "selector": {"matchLabels": {"shared": "yes"}}}}}])
    assert conditions(outcome(chosen, rt, labels={"team": {"shared": "yes"}}), rt)["Accepted"][0] == "True"
    assert conditions(outcome(chosen, rt, labels={"team": {}}), rt)["Accepted"][0] == "False"


def test_hostnames_that_meet_no_listener_and_a_missing_section_are_reasons_not_errors():
    gw = gateway([{"name": "http", "port": 80, "protocol": "HTTP", "hostname": "*.example.com"}])
    rt = route(hostnames=["example.net"])
    assert conditions(outcome(gw, rt), rt)["Accepted"] == ("False", "NoMatchingListenerHostname")
    assert outcome(gw, rt).gateways["infra/gw"].listeners[0].attached_routes == 0
    rt = route(section="https")
    assert conditions(outcome(gw, rt), rt)["Accepted"] == ("False", "NoMatchingParent")


def test_a_cross_namespace_backend_needs_a_reference_grant_in_the_backends_namespace():
    rt = route(backend={"name": "web", "namespace": "shop", "port": 80})
    services = {"shop/web": (80,)}
    assert conditions(outcome(gateway(), rt, services=services), rt)["ResolvedRefs"] == ("False", "RefNotPermitted")
    grant = ReferenceGrant("shop", "routes", (("gateway.networking.k8s.io", "HTTPRoute", "infra"),),
                           (("", "Service", None),))
    assert conditions(outcome(gateway(), rt, [grant], services), rt)["ResolvedRefs"] == ("True", "ResolvedRefs")
    elsewhere = ReferenceGrant("infra", "routes", grant.sources, grant.targets)  # in the referrer's namespace
    assert conditions(outcome(gateway(), rt, [elsewhere], services), rt)["ResolvedRefs"][1] == "RefNotPermitted"


def test_a_missing_service_or_port_is_backend_not_found():
    rt = route()
    assert conditions(outcome(gateway(), rt, services={}), rt)["ResolvedRefs"] == ("False", "BackendNotFound")
    assert conditions(outcome(gateway(), rt, services={"infra/web": (8080,)}), rt)["ResolvedRefs"][1] == \
        "BackendNotFound"


def test_listeners_on_one_port_with_one_hostname_conflict():
    gw = gateway([{"name": "a", "port": 80, "protocol": "HTTP"}, {"name": "b", "port": 80, "protocol": "HTTP"},
                  {"name": "c", "port": 8080, "protocol": "HTTP"}])
    conflicted = {li.name: next(c for c in li.conditions if c.type == "Conflicted")
                  for li in outcome(gw, route()).gateways["infra/gw"].listeners}
    assert {n: (c.status, c.reason) for n, c in conflicted.items()} == {
        "a": ("True", "HostnameConflict"), "b": ("True", "HostnameConflict"), "c": ("False", "NoConflicts")}


def test_a_gateway_without_its_proxy_and_address_is_accepted_but_not_programmed():
    status = outcome(gateway(), route()).gateways["infra/gw"]
    assert {c.type: (c.status, c.reason) for c in status.conditions} == {
        "Accepted": ("True", "Accepted"), "Programmed": ("False", "AddressNotAssigned")}


def test_another_controllers_gateway_gets_no_status_from_the_lab():
    result = outcome(gateway(), route(), other_class=True)
    assert result.gateways == {} and result.routes["infra/r"] == () and result.classes == {}


def test_intersecting_hostnames():
    assert intersect("*.example.com", ["a.example.com", "example.com", "*.b.example.com"]) == \
        ("a.example.com", "*.b.example.com")
    assert intersect("a.example.com", ["*.example.com"]) == ("a.example.com",)
    assert intersect(None, []) == () and intersect("x.io", []) == ("x.io",) and intersect("x.io", ["y.io"]) is None


@pytest.mark.parametrize(("spec", "field"), [
    ({"rules": [{"matches": [{"path": {"type": "Prefix", "value": "/"}}]}]}, "spec.rules[0].matches[0].path.type"),
    ({"rules": [{"matches": [{"path": {"type": "RegularExpression", "value": "/v[0-9"}}]}]},
     "spec.rules[0].matches[0].path.value"),
    ({"rules": [{"matches": [{"path": {"value": "api"}}]}]}, "spec.rules[0].matches[0].path.value"),
    ({"rules": [{"matches": [{"path": {"value": "/a//b"}}]}]}, "spec.rules[0].matches[0].path.value"),
    ({"rules": [{"backendRefs": [{"name": "web"}]}]}, "spec.rules[0].backendRefs[0].port"),
    ({"rules": [{"matches": [{"method": "FETCH"}]}]}, "spec.rules[0].matches[0].method"),
    ({"rules": [{"matches": [{"headers": [{"name": "v", "value": "1"}, {"name": "v", "value": "2"}]}]}]},
     "spec.rules[0].matches[0].headers"),
    ({"hostnames": ["Example.COM"]}, "spec.hostnames[0]"),
    ({"rules": [{"filters": [{"type": "RequestMirror"}]}]}, "spec.rules[0].filters[0].type"),
])
def test_a_route_that_cannot_be_served_is_refused_naming_the_field(spec, field):
    with pytest.raises(InputError) as caught:
        parse_route("infra", "r", {"parentRefs": [{"name": "gw"}], **spec}, CREATED, "route.yaml")
    message = str(caught.value)
    assert message.startswith(f"route.yaml: {field}: ") and "\n" not in message and "; " in message


def test_an_https_listener_needs_a_certificate():
    with pytest.raises(InputError, match=r"^gw.yaml: spec.listeners\[0\].tls.certificateRefs: .*lab create secret"):
        gateway([{"name": "https", "port": 443, "protocol": "HTTPS"}])


def test_weights_split_into_percentages_that_add_up():
    assert split_percentages([1, 1, 1]) == [33.33, 33.33, 33.34]
    assert split_percentages([90, 10]) == [90.0, 10.0]
    assert split_percentages([0, 5]) == [0.0, 100.0]
    assert split_percentages([0, 0]) == [0.0, 0.0]


@pytest.mark.parametrize(("spec", "path", "location"), [
    ({"scheme": "https", "statusCode": 301}, "/login?next=/", "https://shop.example.com/login?next=/"),
    ({"hostname": "www.example.com", "port": 8080}, "/a", "http://www.example.com:8080/a"),
    ({"path": {"type": "ReplaceFullPath", "replaceFullPath": "/new"}}, "/old/x", "http://shop.example.com/new"),
    # the spec's ReplacePrefixMatch table, for the prefix /foo
    ({"path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/xyz"}}, "/foo/bar", "http://shop.example.com/xyz/bar"),
    ({"path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/xyz/"}}, "/foo/bar", "http://shop.example.com/xyz/bar"),
    ({"path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/xyz"}}, "/foo/", "http://shop.example.com/xyz/"),
    ({"path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": ""}}, "/foo", "http://shop.example.com/"),
])
def test_a_redirect_names_the_location_the_spec_gives(spec, path, location):
    match = Match(PathMatch("PathPrefix", "/foo"))
    assert redirect_location(spec, match, Listener("http", 80, "HTTP"), Request("shop.example.com", path)) == location

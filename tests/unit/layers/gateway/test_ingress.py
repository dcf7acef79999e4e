"""Ingress as Kubernetes defines it, served as routes on the lab's ingress Gateway: hosts (a wildcard covers one
label), Prefix by path element, Exact, defaultBackend, service ports by name, the default IngressClass."""

from __future__ import annotations

import pytest

from orchestrator.core.errors import InputError
from orchestrator.core.manifests import ServicePort
from orchestrator.layers.gateway.ingress import (INGRESS_CONTROLLER, INGRESS_GATEWAY, INGRESS_GATEWAY_CLASS,
                                                 check_ingress, ingress_routes, served_classes)
from orchestrator.layers.gateway.routes import Request, World, attach, route_request, table

PORTS = {f"shop/{name}": (ServicePort("http", "TCP", 8080, 80),) for name in ("web", "api", "www", "fallback")}
SPEC = {
    "defaultBackend": {"service": {"name": "fallback", "port": {"number": 8080}}},
    "rules": [
        {"host": "shop.example.com", "http": {"paths": [
            {"path": "/api", "pathType": "Prefix", "backend": {"service": {"name": "api", "port": {"name": "http"}}}},
            {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "web", "port": {"number": 8080}}}},
            {"path": "/exact", "pathType": "Exact", "backend": {"service": {"name": "www", "port": {"number": 8080}}}},
        ]}},
        {"host": "*.example.com", "http": {"paths": [
            {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "www", "port": {"number": 8080}}}},
        ]}},
    ],
}


def served(host: str, path: str) -> str | None:
    routes = {r.key: r for r in ingress_routes("shop", "shop", SPEC, "2026-12-01T00:00:00Z", PORTS)}
    world = World(classes={INGRESS_GATEWAY_CLASS.name: INGRESS_GATEWAY_CLASS},
                  gateways={INGRESS_GATEWAY.key: INGRESS_GATEWAY}, routes=routes, grants=[],
                  services={k: (8080,) for k in PORTS})
    attachment = attach(world)
    assert all(p.conditions[1].true for parents in attachment.routes.values() for p in parents)  # ports resolved
    chosen = route_request(table(attachment, routes, INGRESS_GATEWAY.key, "http"), Request(host, path))
    return chosen.rule.backends[0].name if chosen else None


@pytest.mark.parametrize(("host", "path", "backend"), [
    ("shop.example.com", "/api", "api"), ("shop.example.com", "/api/v1/items", "api"),
    ("shop.example.com", "/apis", "web"),  # Prefix matches by path element
    ("shop.example.com", "/exact", "www"), ("shop.example.com", "/exact/more", "web"),
    ("shop.example.com", "/", "web"), ("blog.example.com", "/anything", "www"),
    ("a.blog.example.com", "/", "fallback"),  # an Ingress wildcard covers one label only
    ("example.com", "/", "fallback"), ("other.net", "/x", "fallback"),
])
def test_a_request_reaches_the_backend_the_ingress_rules_name(host, path, backend):
    assert served(host, path) == backend


def test_the_default_class_serves_ingresses_without_a_class_name():
    classes = {"lab": {"spec": {"controller": INGRESS_CONTROLLER},
                       "annotations": {"ingressclass.kubernetes.io/is-default-class": "true"}},
               "other": {"spec": {"controller": "example.com/nginx"}}}
    assert served_classes(classes) == ({"lab"}, "lab")
    classes["other"]["annotations"] = {"ingressclass.kubernetes.io/is-default-class": "true"}
    assert served_classes(classes) == ({"lab"}, None)  # two defaults: none is


@pytest.mark.parametrize(("spec", "field"), [
    ({"rules": [{"host": "Shop.Example.com", "http": {"paths": []}}]}, "spec.rules[0].host"),
    ({"rules": [{"http": {"paths": [{"path": "/", "backend": {}}]}}]}, "spec.rules[0].http.paths[0].pathType"),
    ({"rules": [{"http": {"paths": [{"path": "api", "pathType": "Prefix", "backend": {}}]}}]},
     "spec.rules[0].http.paths[0].path"),
    ({}, "spec"),
])
def test_an_ingress_kubernetes_would_refuse_is_one_line_naming_the_field(spec, field):
    with pytest.raises(InputError, match=rf"^ing.yaml: {field.replace('[', '.').replace(']', '.')}: "):
        check_ingress(spec, "ing.yaml")

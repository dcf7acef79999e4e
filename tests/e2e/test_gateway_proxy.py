"""The Gateway API conformance suite's HTTPRoute cases (tests/unit/data/gateway_conformance.yaml) through the real
nginx, configured as the lab configures a Gateway's proxy (layers/gateway/nginx.py): in a network namespace of
the test's own, with the lab's pod servers as the three backends, every request must reach the backend the
suite expects (the pod names itself in a header of its reply), or get a 404."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from orchestrator.agent.pods import wait_listening
from orchestrator.agent.contract import Probe
from orchestrator.core.agent import call_local, local_agent_argv
from orchestrator.core.manifests import ServicePort
from orchestrator.core.objects import Endpoint, Service
from orchestrator.layers.gateway.nginx import render_config
from orchestrator.layers.gateway.routes import (CONTROLLER_NAME, GatewayClass, Request, World, attach, parse_gateway,
                                                parse_route, path_matches, redirect_location)
from orchestrator.layers.gateway.tls import TLSPair
from tests.unit.layers.gateway.certs import self_signed
from tests.unit.layers.gateway.test_conformance_cases import DATA, NAMESPACE, case_id, world_of
from .labtools import http_requests

BACKENDS = {f"infra-backend-v{i}": 8080 + i for i in (1, 2, 3)}
SERVICES = {f"{NAMESPACE}/{name}": Service(name=name, namespace=NAMESPACE, cluster_ip="10.96.0.9",
                                           ports=[ServicePort(None, "TCP", 8080, port)])
            for name, port in BACKENDS.items()}
ENDPOINTS = {f"{NAMESPACE}/{name}": {"": [Endpoint("127.0.0.1", port, None, name)]} for name, port in BACKENDS.items()}


@pytest.fixture(scope="module")
def namespace():
    """A network namespace of this test's own (loopback only), with the three backends serving in it."""
    name = f"lab-gwproxy-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    servers = []
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        for backend, port in BACKENDS.items():
            servers.append(subprocess.Popen(["ip", "netns", "exec", name, *local_agent_argv(
                "serve", "--name", backend, "--tcp", str(port))], stdout=subprocess.DEVNULL))
            assert wait_listening({"pid": servers[-1].pid, "tcp": [port]})
        yield name
    finally:
        for server in servers:
            server.terminate()
            server.wait()
        subprocess.run(["ip", "netns", "del", name], check=True)


def run_requests(namespace: str, test: dict, tmp_path: Path, requests: list[dict],
                 keep_location: bool = False) -> list[list]:
    world, gateway = world_of(test)
    run = tmp_path / "run"
    run.mkdir(exist_ok=True)
    conf = tmp_path / "nginx.conf"
    conf.write_text(render_config(gateway, attach(world), world, SERVICES, ENDPOINTS, str(run)).text)
    checked = subprocess.run(["nginx", "-t", "-q", "-c", str(conf)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    proxy = subprocess.Popen(["ip", "netns", "exec", namespace, "nginx", "-c", str(conf)], stderr=subprocess.PIPE)
    try:
        assert wait_listening({"pid": proxy.pid, "tcp": [80]}), proxy.stderr.read() if proxy.stderr else ""
        return [answer if keep_location else answer[:2] for answer in http_requests(namespace, "127.0.0.1", requests)]
    finally:
        proxy.terminate()
        proxy.wait()


def as_sent(request: dict) -> dict:
    query = "&".join(f"{k}={v}" for k, v in request["query"].items())
    return {"host": request["host"] or "198.18.0.240", "path": request["path"] + (f"?{query}" if query else ""),
            "method": request["method"], "headers": request["headers"]}


TESTS = [t for t in DATA if not any(isinstance(c["backend"], dict) for c in t["cases"])]


@pytest.mark.parametrize("test", TESTS, ids=[f"{t['test']}:{t.get('gateway', 'same-namespace')}" for t in TESTS])
def test_nginx_routes_each_request_to_the_backend_the_suite_expects(namespace, test, tmp_path):
    got = run_requests(namespace, test, tmp_path, [as_sent(c["request"]) for c in test["cases"]])
    wanted = [[200, c["backend"]] if c["backend"] else [404, None] for c in test["cases"]]
    wrong = [f"{case_id(test, c)}: got {g}, wanted {w}" for c, g, w in zip(test["cases"], got, wanted, strict=True)
             if g != w]
    assert not wrong, "\n".join(wrong)


def test_weights_split_the_requests_as_the_suite_expects(namespace, tmp_path):
    test = next(t for t in DATA if t["test"] == "HTTPRouteWeight")
    shares = test["cases"][0]["backend"]
    got = run_requests(namespace, test, tmp_path, [as_sent(test["cases"][0]["request"])] * 500)
    counts = {name: sum(1 for status, pod in got if pod == name) for name in shares}
    assert all(status == 200 for status, _ in got)
    for name, share in shares.items():
        assert abs(counts[name] / 500 - share) <= 0.08, counts  # split_clients hashes each request's id


REDIRECTS = {
    "/login": {"scheme": "https", "statusCode": 301},
    "/old": {"path": {"type": "ReplaceFullPath", "replaceFullPath": "/new"}},
    "/foo": {"path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/xyz"}, "hostname": "www.example.com"},
    "/bar": {"path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/"}, "port": 8080, "statusCode": 308},
}


def test_nginx_redirects_where_the_spec_says(namespace, tmp_path):
    rules = [{"matches": [{"path": {"type": "PathPrefix", "value": prefix}}],
              "filters": [{"type": "RequestRedirect", "requestRedirect": spec}]} for prefix, spec in REDIRECTS.items()]
    test = {"test": "redirects", "routes": [{"name": "redirects", "namespace": NAMESPACE, "rules": rules}]}
    world, gateway = world_of(test)
    route = next(iter(world.routes.values()))
    paths = ["/login", "/login?next=/a", "/old/x", "/foo", "/foo/", "/foo/bar?q=1", "/bar/baz"]
    got = run_requests(namespace, test, tmp_path, [{"host": "shop.example.com", "path": p} for p in paths],
                       keep_location=True)
    wanted = []
    for path in paths:
        rule = next(r for r in route.rules if path_matches(r.matches[0].path, path.split("?")[0]))
        spec = rule.filters[0]["requestRedirect"]
        wanted.append([int(spec.get("statusCode", 302)), None, redirect_location(
            spec, rule.matches[0], gateway.listeners[0], Request("shop.example.com", path))])
    assert got == wanted


def test_nginx_serves_each_https_listener_with_its_secrets_certificate(namespace, tmp_path):
    """Two HTTPS listeners on 443 with certificates of their own (the files the sync gives, where nginx.conf names
    them): asked for by name (SNI), each name gets its certificate and its route; a name no listener has gets
    no handshake; the same route over HTTP on 80 still answers."""
    pairs = {host: TLSPair(*self_signed(host)) for host in ("shop.example.com", "blog.example.com")}
    listeners = [{"name": "http", "port": 80, "protocol": "HTTP"}] + [
        {"name": host.split(".")[0], "port": 443, "protocol": "HTTPS", "hostname": host,
         "tls": {"certificateRefs": [{"name": host.split(".")[0]}]}} for host in pairs]
    gateway = parse_gateway(NAMESPACE, "gw", {"gatewayClassName": "lab", "listeners": listeners}, "", "gw.yaml")
    routes = [parse_route(NAMESPACE, host.split(".")[0], {
        "parentRefs": [{"name": "gw"}], "hostnames": [host],
        "rules": [{"backendRefs": [{"name": f"infra-backend-v{i}", "port": 8080}]}]}, "", "r.yaml")
        for i, host in enumerate(pairs, start=1)]
    world = World(classes={"lab": GatewayClass("lab", CONTROLLER_NAME, "")}, gateways={gateway.key: gateway},
                  routes={r.key: r for r in routes}, grants=[], services={k: (8080,) for k in SERVICES},
                  secrets={f"{NAMESPACE}/{host.split('.')[0]}": pair for host, pair in pairs.items()})
    run = tmp_path / "run"
    config = render_config(gateway, attach(world), world, SERVICES, ENDPOINTS, str(run))
    for rel, text in config.files.items():
        (run / rel).parent.mkdir(parents=True, exist_ok=True)
        (run / rel).write_text(text)
    conf = tmp_path / "nginx.conf"
    conf.write_text(config.text)
    proxy = subprocess.Popen(["ip", "netns", "exec", namespace, "nginx", "-c", str(conf)], stderr=subprocess.PIPE)
    try:
        assert wait_listening({"pid": proxy.pid, "tcp": [80, 443]}), proxy.stderr.read() if proxy.stderr else ""
        targets = [{"proto": "tcp", "host": "127.0.0.1", "port": 443, "path": "/", "http_host": host, "tls": host,
                    "reply_header": "X-Pod-Name"} for host in (*pairs, "other.example.com")]
        targets.append({"proto": "tcp", "host": "127.0.0.1", "port": 80, "path": "/", "http_host": "shop.example.com",
                        "reply_header": "X-Pod-Name"})
        replies = call_local(Probe(targets=targets, timeout=5), ("ip", "netns", "exec", namespace)).results
    finally:
        proxy.terminate()
        proxy.wait()
    shop, blog, other, plain = replies
    assert (shop["reply"], shop["certificate"]) == ("infra-backend-v1", pairs["shop.example.com"].fingerprint)
    assert (blog["reply"], blog["certificate"]) == ("infra-backend-v2", pairs["blog.example.com"].fingerprint)
    assert not other["ok"] and other["error"].startswith("TLS")
    assert plain["reply"] == "infra-backend-v1" and "certificate" not in plain

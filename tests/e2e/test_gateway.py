"""The Gateway API end to end on an emulated lab: a Gateway of the lab's class gets its proxy (nginx in a gateway
pod behind a LoadBalancer Service) and that address; from the outside host, an HTTPRoute's matches reach the
backends they name, a redirect redirects, weights split, a route to a missing Service is a status and a 500,
a route changed while a client sends requests drops none of them, bad input changes nothing, and deleting the
Gateway takes its proxy along."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import pytest

from orchestrator.agent.contract import Probe, node_lib
from orchestrator.core.agent import call_local

from .labtools import HTTP_CLIENT, http_requests, lab_cli
from .test_pod_network import apply

APPS = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: web-v1}
spec:
  replicas: 2
  selector: {matchLabels: {app: web, version: v1}}
  template:
    metadata: {labels: {app: web, version: v1}}
    spec: {containers: [{name: web, image: nginx, ports: [{containerPort: 80}]}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web-v2}
spec:
  replicas: 1
  selector: {matchLabels: {app: web, version: v2}}
  template:
    metadata: {labels: {app: web, version: v2}}
    spec: {containers: [{name: web, image: nginx, ports: [{containerPort: 80}]}]}
---
apiVersion: v1
kind: Service
metadata: {name: web-v1}
spec: {selector: {app: web, version: v1}, ports: [{port: 8080, targetPort: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: web-v2}
spec: {selector: {app: web, version: v2}, ports: [{port: 8080, targetPort: 80}]}
"""

GATEWAY = """
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: shop}
spec:
  gatewayClassName: lab
  listeners: [{name: http, port: 80, protocol: HTTP, hostname: "*.example.com"}]
"""

ROUTE = """
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: shop}
spec:
  parentRefs: [{name: shop}]
  hostnames: [shop.example.com]
  rules:
    - matches: [{path: {type: PathPrefix, value: /v2}}, {headers: [{name: version, value: two}]}]
      backendRefs: [{name: web-v2, port: 8080}]
    - matches: [{path: {type: Exact, value: /old}}]
      filters:
        - type: RequestRedirect
          requestRedirect: {path: {type: ReplaceFullPath, replaceFullPath: /new}, statusCode: 301}
    - matches: [{path: {type: PathPrefix, value: /canary}}]
      backendRefs: [{name: web-v1, port: 8080, weight: 1}, {name: web-v2, port: 8080, weight: 1}]
    - matches: [{path: {type: PathPrefix, value: /gone}}]
      backendRefs: [{name: nosuch, port: 8080}]
    - backendRefs: [{name: web-v1, port: 8080}]
"""

# The talk's nginx behind a Gateway (the VM tier applies it too)
NGINX_GATEWAY = """
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: talk}
spec:
  gatewayClassName: lab
  listeners: [{name: http, port: 80, protocol: HTTP}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: talk}
spec:
  parentRefs: [{name: talk}]
  rules:
    - matches: [{path: {type: PathPrefix, value: /api}, headers: [{name: version, value: two}]}]
      backendRefs: [{name: nginx, port: 80}]
    - backendRefs: [{name: nginx, port: 80}]
"""


@pytest.fixture(scope="module")
def shop(lab3):
    lab_cli("deploy", "-i", lab3.inventory_path, check=True)
    apply(lab3, APPS)
    apply(lab3, GATEWAY)
    apply(lab3, ROUTE)
    yield lab3
    lab_cli("destroy", "-i", lab3.inventory_path, check=True)


def gateway_json(lab) -> dict:
    return json.loads(lab_cli("get", "gateway", "shop", "-o", "json", "-i", lab.inventory_path, check=True).stdout)


def address(lab) -> str:
    return gateway_json(lab)["status"]["addresses"][0]["value"]


def send(lab, requests: list[dict]) -> list[list]:
    return http_requests(f"{lab.name}-outside", address(lab), requests)


def pod_app(name: str | None) -> str | None:
    return None if name is None else name.rsplit("-", 2)[0]  # web-v1-<hash>-<suffix> -> web-v1


def test_the_gateway_gets_its_proxy_and_an_address_from_the_pool(shop):
    status = gateway_json(shop)["status"]
    assert {c["type"]: c["status"] for c in status["conditions"]} == {"Accepted": "True", "Programmed": "True"}
    assert status["listeners"][0]["attachedRoutes"] == 1
    table = lab_cli("get", "gateway", "-i", shop.inventory_path, check=True).stdout.split()
    assert table[5:10] == ["shop", "lab", address(shop), "True", table[9]]
    proxy = json.loads(lab_cli("get", "svc", "shop-lab", "-o", "json", "-i", shop.inventory_path, check=True).stdout)
    assert proxy["spec"]["type"] == "LoadBalancer" and proxy["status"]["loadBalancer"]["ingress"][0]["ip"] == \
        address(shop)


def test_each_match_reaches_the_backend_it_names(shop):
    host = "shop.example.com"
    answers = send(shop, [{"host": host, "path": "/v2/cart"},
                          {"host": host, "path": "/", "headers": {"version": "two"}},
                          {"host": host, "path": "/v2x"}, {"host": host, "path": "/"},
                          {"host": "other.example.com", "path": "/"}, {"host": "shop.example.net", "path": "/"}])
    assert [(status, pod_app(pod)) for status, pod, _ in answers] == [
        (200, "web-v2"), (200, "web-v2"), (200, "web-v1"), (200, "web-v1"), (404, None), (404, None)]


def test_a_redirect_filter_answers_with_its_location(shop):
    [(status, _, location)] = send(shop, [{"host": "shop.example.com", "path": "/old?x=1"}])
    assert (status, location) == (301, "http://shop.example.com/new?x=1")


def test_weights_split_the_requests_between_the_backends(shop):
    answers = send(shop, [{"host": "shop.example.com", "path": f"/canary/{i}"} for i in range(200)])
    counts = Counter(pod_app(pod) for _, pod, _ in answers)
    assert set(counts) == {"web-v1", "web-v2"} and all(60 <= n <= 140 for n in counts.values()), counts


def test_a_route_to_a_missing_service_is_a_status_and_a_500(shop):
    [(status, _, _)] = send(shop, [{"host": "shop.example.com", "path": "/gone"}])
    assert status == 500
    described = lab_cli("describe", "httproute", "shop", "-i", shop.inventory_path, check=True).stdout
    assert "ResolvedRefs False BackendNotFound: backendRef default/nosuch: no such Service" in described


def test_a_route_changed_while_a_client_sends_requests_drops_none(shop):
    requests = [{"host": "shop.example.com", "path": f"/steady/{i}"} for i in range(400)]
    client = subprocess.Popen(["ip", "netns", "exec", f"{shop.name}-outside", sys.executable, "-c", HTTP_CLIENT,
                               address(shop), "80"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    first = threading.Event()

    def read() -> list[list]:
        lines = []
        assert client.stdout is not None
        for line in client.stdout:
            lines.append(json.loads(line))
            first.set()
        return lines

    answers: list[list] = []
    reader = threading.Thread(target=lambda: answers.extend(read()))
    reader.start()
    assert client.stdin is not None
    client.stdin.write(json.dumps(requests))
    client.stdin.close()
    assert first.wait(30)
    changed = ROUTE.replace("value: two", "value: three")
    apply(shop, changed)  # each apply reloads the proxy: the old workers finish what they serve
    apply(shop, ROUTE)
    reader.join(120)
    client.wait(30)
    assert len(answers) == 400 and {a[0] for a in answers} == {200}, Counter(a[0] for a in answers)


def test_bad_input_is_one_line_and_changes_nothing(shop):
    before = lab_cli("get", "httproute", "shop", "-o", "json", "-i", shop.inventory_path, check=True).stdout
    broken = ROUTE.replace("{type: PathPrefix, value: /canary}", "{type: RegularExpression, value: '/canary[0-9'}")
    proc = lab_cli("apply", "-i", shop.inventory_path, "-f", "-", input=broken)
    assert proc.returncode != 0 and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert "spec.rules[2].matches[0].path.value: invalid regular expression" in proc.stderr
    assert lab_cli("get", "httproute", "shop", "-o", "json", "-i", shop.inventory_path, check=True).stdout == before


def test_lab_verify_checks_each_match_from_the_outside_host(shop):
    report = json.loads(lab_cli("verify", "-o", "json", "-i", shop.inventory_path).stdout)
    checks = {c["id"]: c for c in report["checks"] if c["family"] == "gateway"}
    failed = [c for c in checks.values() if not c["ok"]]
    assert [(c["label"].split(": ")[0], c["reason"]) for c in failed] == [
        ("outside -> default/shop/http GET shop.example.com/gone", "HTTP 500 (10/10)")]
    assert "ResolvedRefs False BackendNotFound: backendRef default/nosuch: no such Service" in failed[0]["layer"]
    labels = " | ".join(c["label"] for c in checks.values())
    assert "GET shop.example.com/v2: default/web-v2 100%" in labels
    assert "GET shop.example.com/canary: default/web-v1 50%, default/web-v2 50%" in labels
    assert "GET shop.example.com/old: 301 redirect" in labels
    assert "[version: two]" in labels


def test_deleting_the_gateway_takes_its_proxy_along(shop):
    apply(shop, GATEWAY, verb="delete")
    listed = lab_cli("get", "deploy,svc", "-i", shop.inventory_path, check=True).stdout
    assert "shop-lab" not in listed
    served = [p for p in Path("/proc").iterdir() if p.name.isdigit() and conf_of(p, shop.name)]
    assert served == []
    parents = json.loads(lab_cli("get", "httproute", "shop", "-o", "json", "-i", shop.inventory_path,
                                 check=True).stdout)["status"]["parents"]
    assert parents[0]["conditions"][0]["reason"] == "NoMatchingParent"
    apply(shop, GATEWAY)  # as the module found it
    assert gateway_json(shop)["status"]["addresses"]


def conf_of(proc: Path, lab: str) -> bool:
    """Whether process `proc` is an nginx serving a Gateway of lab `lab`."""
    try:
        argv = (proc / "cmdline").read_bytes()
    except OSError:
        return False
    return b"nginx" in argv and f"/cluster-lab/{lab}/gateways/".encode() in argv and os.path.exists(proc)


INGRESS = """
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: shop}
spec:
  defaultBackend: {service: {name: web-v1, port: {number: 8080}}}
  rules:
    - host: www.example.org
      http:
        paths:
          - {path: /v2, pathType: Prefix, backend: {service: {name: web-v2, port: {number: 8080}}}}
          - {path: /, pathType: Prefix, backend: {service: {name: web-v1, port: {number: 8080}}}}
    - host: "*.example.org"
      http:
        paths:
          - {path: /, pathType: Prefix, backend: {service: {name: web-v2, port: {number: 8080}}}}
"""


def test_an_ingress_without_a_class_is_served_by_the_default_class_on_the_same_proxy(shop):
    apply(shop, INGRESS)
    try:
        ingress = json.loads(lab_cli("get", "ingress", "shop", "-o", "json", "-i", shop.inventory_path,
                                     check=True).stdout)
        address = ingress["status"]["loadBalancer"]["ingress"][0]["ip"]
        assert "ingress-lab" in lab_cli("get", "deploy,svc", "-n", "kube-system", "-i", shop.inventory_path,
                                        check=True).stdout
        answers = http_requests(f"{shop.name}-outside", address, [
            {"host": "www.example.org", "path": "/v2/x"}, {"host": "www.example.org", "path": "/v2x"},
            {"host": "blog.example.org", "path": "/"}, {"host": "a.blog.example.org", "path": "/"},
            {"host": "example.net", "path": "/"}])
        assert [pod_app(pod) for _, pod, _ in answers] == ["web-v2", "web-v1", "web-v2", "web-v1", "web-v1"]
        twice = INGRESS.replace("name: shop", "name: again")
        proc = lab_cli("apply", "-i", shop.inventory_path, "-f", "-", input=twice)
        assert proc.returncode != 0 and proc.stderr.count("\n") == 1
        assert "spec.rules: host *.example.org path / (Prefix) is routed by Ingress default/shop already" in proc.stderr
    finally:
        apply(shop, INGRESS, verb="delete")
    assert "ingress-lab" not in lab_cli("get", "deploy,svc", "-n", "kube-system", "-i", shop.inventory_path,
                                        check=True).stdout


GATEWAY_TLS = GATEWAY.replace(
    'listeners: [{name: http, port: 80, protocol: HTTP, hostname: "*.example.com"}]',
    'listeners:\n    - {name: http, port: 80, protocol: HTTP, hostname: "*.example.com"}\n'
    '    - {name: https, port: 443, protocol: HTTPS, hostname: shop.example.com,\n'
    '       tls: {certificateRefs: [{name: shop-tls}]}}')

INGRESS_TLS = """
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: www}
spec:
  tls: [{hosts: [www.example.org], secretName: www-tls}]
  rules:
    - host: www.example.org
      http:
        paths:
          - {path: /v2, pathType: Prefix, backend: {service: {name: web-v2, port: {number: 8080}}}}
"""


def openssl_pair(folder: Path, name: str, host: str) -> tuple[str, str]:
    """A self-signed certificate and its key, made with openssl as a student makes them."""
    cert, key = folder / f"{name}.crt", folder / f"{name}.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", f"/CN={host}",
                    "-addext", f"subjectAltName=DNS:{host}"], check=True, capture_output=True)
    return str(cert), str(key)


def fingerprint(cert: str) -> str:
    out = subprocess.run(["openssl", "x509", "-in", cert, "-noout", "-fingerprint", "-sha256"], check=True,
                         capture_output=True, text=True).stdout
    return out.strip().split("=", 1)[1].replace(":", "").lower()


def https_get(lab, address: str, host: str, path: str) -> dict:
    """One HTTPS request from the outside host, asking for `host` by name (SNI): who answered, and the
    certificate's SHA-256."""
    target = {"proto": "tcp", "host": address, "port": 443, "path": path, "http_host": host, "tls": host,
              "reply_header": "X-Pod-Name"}
    return call_local(Probe(targets=[target], timeout=5), ("ip", "netns", "exec", f"{lab.name}-outside")).results[0]


def pem_files(lab) -> list[str]:
    """The certificate files the lab's gateway pods are given, on every node."""
    found = []
    for node in ("node1", "node2", "node3"):
        out = lab_cli("exec", "--inventory", lab.inventory_path, node, "--", "find", node_lib(lab.name), "-name",
                      "*.pem", "-perm", "600", check=True).stdout
        found += out.split()
    return found


def test_https_is_served_with_the_secrets_certificate_and_a_wrong_key_changes_nothing(shop, tmp_path):
    cert, key = openssl_pair(tmp_path, "shop", "shop.example.com")
    _, other_key = openssl_pair(tmp_path, "other", "shop.example.com")
    proc = lab_cli("create", "secret", "tls", "shop-tls", "--cert", cert, "--key", other_key,
                   "-i", shop.inventory_path)
    assert proc.returncode != 0 and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert "lab create secret tls shop-tls: data.tls.key: the private key does not match the certificate" in proc.stderr
    assert lab_cli("get", "secret", "shop-tls", "-i", shop.inventory_path).returncode != 0
    assert lab_cli("create", "secret", "tls", "shop-tls", "--cert", cert, "--key", key, "-i", shop.inventory_path,
                   check=True).stdout.strip() == "secret/shop-tls created"
    apply(shop, GATEWAY_TLS)
    try:
        listeners = gateway_json(shop)["status"]["listeners"]
        https = next(li for li in listeners if li["name"] == "https")
        assert {c["type"]: c["status"] for c in https["conditions"]}["ResolvedRefs"] == "True"
        answer = https_get(shop, address(shop), "shop.example.com", "/v2/cart")
        assert (pod_app(answer["reply"]), answer["certificate"]) == ("web-v2", fingerprint(cert))
        refused = https_get(shop, address(shop), "blog.example.com", "/")  # no listener has the name: no handshake
        assert not refused["ok"] and refused["error"].startswith("TLS")
        # one file (certificate and key) on each node, for a gateway pod there to read; readable by root only
        assert len(pem_files(shop)) == 3 and len({Path(f).name for f in pem_files(shop)}) == 1
        report = json.loads(lab_cli("verify", "-o", "json", "-i", shop.inventory_path).stdout)
        checks = {c["label"].split(": ")[0]: c for c in report["checks"] if c["family"] == "gateway"}
        assert checks["outside -> default/shop/https GET shop.example.com/v2"]["ok"]
    finally:
        apply(shop, GATEWAY)  # as the module found it
        lab_cli("delete", "secret", "shop-tls", "-i", shop.inventory_path, check=True)
    assert pem_files(shop) == []


def test_an_ingress_with_tls_is_served_on_443_with_its_secret(shop, tmp_path):
    cert, key = openssl_pair(tmp_path, "www", "www.example.org")
    lab_cli("create", "secret", "tls", "www-tls", "--cert", cert, "--key", key, "-i", shop.inventory_path, check=True)
    apply(shop, INGRESS_TLS)
    try:
        ingress = json.loads(lab_cli("get", "ingress", "www", "-o", "json", "-i", shop.inventory_path,
                                     check=True).stdout)
        address = ingress["status"]["loadBalancer"]["ingress"][0]["ip"]
        answer = https_get(shop, address, "www.example.org", "/v2/x")
        assert (pod_app(answer["reply"]), answer["certificate"]) == ("web-v2", fingerprint(cert))
        assert "80, 443" in lab_cli("get", "ingress", "www", "-i", shop.inventory_path, check=True).stdout
        report = json.loads(lab_cli("verify", "-o", "json", "-i", shop.inventory_path).stdout)
        tls_checks = [c for c in report["checks"] if c["family"] == "ingress" and "/https-www.example.org " in c["id"]]
        assert tls_checks and all(c["ok"] for c in tls_checks), tls_checks
    finally:
        apply(shop, INGRESS_TLS, verb="delete")
        lab_cli("delete", "secret", "www-tls", "-i", shop.inventory_path, check=True)

"""TLS: Secrets of type kubernetes.io/tls checked as `kubectl create secret tls` checks them (one line naming the
field), HTTPS listeners served with their Secret's certificate (a Secret of another namespace only with a
ReferenceGrant), handshakes refused where no certificate serves the name, and Ingress `tls` as HTTPS listeners on
the ingress Gateway's 443."""

from __future__ import annotations

import base64
from dataclasses import replace

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from orchestrator import kinds
from orchestrator.core.errors import InputError
from orchestrator.core.manifests import ServicePort
from orchestrator.core.objects import Endpoint, Service
from orchestrator.layers.gateway.ingress import INGRESS_GATEWAY, INGRESS_GATEWAY_CLASS, ingress_routes, tls_listeners
from orchestrator.layers.gateway.nginx import render_config
from orchestrator.layers.gateway.proxy import proxy_yaml
from orchestrator.layers.gateway.routes import (CONTROLLER_NAME, GatewayClass, ReferenceGrant, World, attach,
                                                parse_gateway, parse_route)
from orchestrator.layers.gateway.tls import TLSPair, check_tls
from tests.unit.layers.gateway.certs import encrypted_key, self_signed

CERT, KEY = self_signed("shop.example.com", "www.shop.example.com")
OTHER_CERT, OTHER_KEY = self_signed("shop.example.com")
CREATED = "2026-12-01T00:00:00Z"


def secret_doc(cert: str = CERT, key: str = KEY, **extra) -> dict:
    data = {"tls.crt": base64.b64encode(cert.encode()).decode(), "tls.key": base64.b64encode(key.encode()).decode()}
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "shop-tls", "namespace": "shop"},
            "type": "kubernetes.io/tls", "data": data, **extra}


def parse_error(doc: dict) -> str:
    with pytest.raises(InputError) as caught:
        kinds.parse(doc, "shop-tls.yaml", lambda line: None)
    message = str(caught.value)
    assert "\n" not in message and message.startswith("shop-tls.yaml")
    return message


def test_a_tls_secret_whose_key_is_its_certificates_is_kept_with_its_data():
    manifest = kinds.parse(secret_doc(), "shop-tls.yaml", lambda line: None)
    assert manifest.spec["type"] == "kubernetes.io/tls"
    assert base64.b64decode(manifest.spec["data"]["tls.crt"]).decode() == CERT


def test_a_key_that_is_not_the_certificates_is_refused_naming_the_field():
    message = parse_error(secret_doc(key=OTHER_KEY))
    assert "data.tls.key: the private key does not match the certificate in data.tls.crt" in message


@pytest.mark.parametrize(("change", "wanted"), [
    ({"data": {"tls.crt": "not base64!"}}, "data.tls.crt: is not base64"),
    ({"data": {"tls.crt": base64.b64encode(CERT.encode()).decode()}}, "data.tls.key: missing"),
    ({"data": {"tls.crt": base64.b64encode(b"hello").decode(), "tls.key": base64.b64encode(KEY.encode()).decode()}},
     "data.tls.crt: is not a PEM certificate"),
    ({"data": {"tls.crt": base64.b64encode(CERT.encode()).decode(),
               "tls.key": base64.b64encode(encrypted_key(KEY).encode()).decode()}},
     "data.tls.key: the private key is encrypted"),
])
def test_a_broken_tls_secret_is_one_line_naming_the_field(change, wanted):
    assert wanted in parse_error(secret_doc(**change))


def test_string_data_is_folded_into_data_as_kubernetes_does():
    doc = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db", "namespace": "shop"},
           "data": {"user": base64.b64encode(b"admin").decode()}, "stringData": {"password": "s3cret"}}
    spec = kinds.parse(doc, "db.yaml", lambda line: None).spec
    assert spec == {"type": "Opaque", "data": {"password": base64.b64encode(b"s3cret").decode(),
                                               "user": base64.b64encode(b"admin").decode()}}


def test_the_fingerprint_is_the_certificates_sha256():
    pair = check_tls({"tls.crt": CERT.encode(), "tls.key": KEY.encode()}, "x")
    wanted = x509.load_pem_x509_certificate(CERT.encode()).fingerprint(hashes.SHA256()).hex()
    assert pair.fingerprint == wanted
    assert pair.file_name != TLSPair(OTHER_CERT, OTHER_KEY).file_name  # a new certificate is a new file name


SERVICES = {"shop/web": Service(name="web", namespace="shop", cluster_ip="10.96.0.9",
                                ports=[ServicePort(None, "TCP", 80, 8080)])}
ENDPOINTS = {"shop/web": {"": [Endpoint("10.244.1.5", 8080, "node1", "web-1")]}}


def https_world(ref: dict, grants=(), secrets=None) -> World:
    listeners = [{"name": "http", "port": 80, "protocol": "HTTP"},
                 {"name": "https", "port": 443, "protocol": "HTTPS", "hostname": "shop.example.com",
                  "tls": {"certificateRefs": [ref]}}]
    gw = parse_gateway("shop", "gw", {"gatewayClassName": "lab", "listeners": listeners}, CREATED, "gw.yaml")
    rt = parse_route("shop", "web", {"parentRefs": [{"name": "gw"}], "hostnames": ["shop.example.com"],
                                     "rules": [{"backendRefs": [{"name": "web", "port": 80}]}]}, CREATED, "r.yaml")
    return World(classes={"lab": GatewayClass("lab", CONTROLLER_NAME, "")}, gateways={gw.key: gw},
                 routes={rt.key: rt}, grants=list(grants), services={"shop/web": (80,)},
                 secrets={"shop/shop-tls": TLSPair(CERT, KEY)} if secrets is None else secrets)


def listener_status(world: World, name: str) -> dict:
    status = attach(world).gateways["shop/gw"]
    found = next(li for li in status.listeners if li.name == name)
    return {c.type: (c.status, c.reason) for c in found.conditions}


def test_an_https_listener_is_served_with_its_secrets_certificate():
    world = https_world({"name": "shop-tls"})
    assert listener_status(world, "https")["ResolvedRefs"] == ("True", "ResolvedRefs")
    config = render_config(world.gateways["shop/gw"], attach(world), world, SERVICES, ENDPOINTS, "/run/gw")
    pair = TLSPair(CERT, KEY)
    assert config.files == {f"tls/{pair.file_name}": pair.bundle}
    assert "listen 443 ssl;" in config.text and f"ssl_certificate /run/gw/tls/{pair.file_name};" in config.text
    assert "listen 443 ssl default_server;" in config.text  # other names on 443: the handshake is refused
    assert "ssl_reject_handshake on;" in config.text


def test_an_https_listener_without_its_secret_is_not_served():
    world = https_world({"name": "shop-tls"}, secrets={})
    assert listener_status(world, "https")["ResolvedRefs"] == ("False", "InvalidCertificateRef")
    assert listener_status(world, "https")["Programmed"][0] == "False"
    config = render_config(world.gateways["shop/gw"], attach(world), world, SERVICES, ENDPOINTS, "/run/gw")
    assert not config.files and "ssl_certificate " not in config.text and "ssl_reject_handshake on;" in config.text


def test_a_secret_of_another_namespace_needs_a_reference_grant():
    ref = {"name": "shop-tls", "namespace": "certs"}
    secrets = {"certs/shop-tls": TLSPair(CERT, KEY)}
    assert listener_status(https_world(ref, secrets=secrets), "https")["ResolvedRefs"] == ("False", "RefNotPermitted")
    grant = ReferenceGrant("certs", "shop", (("gateway.networking.k8s.io", "Gateway", "shop"),),
                           (("", "Secret", None),))
    assert listener_status(https_world(ref, [grant], secrets), "https")["ResolvedRefs"][0] == "True"


def test_a_tls_listener_asks_for_its_mode_and_kind_the_lab_serves():
    listener = {"name": "https", "port": 443, "protocol": "HTTPS", "tls": {"mode": "Passthrough"}}
    with pytest.raises(InputError, match=r"spec.listeners\[0\].tls.mode: the lab's proxy does not serve"):
        parse_gateway("shop", "gw", {"gatewayClassName": "lab", "listeners": [listener]}, CREATED, "gw.yaml")


def ingress_spec(host: str, secret: str) -> dict:
    return {"tls": [{"hosts": [host], "secretName": secret}],
            "rules": [{"host": host, "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": {
                "service": {"name": "web", "port": {"number": 80}}}}]}}]}


def test_ingress_tls_is_an_https_listener_per_host_the_first_ingress_naming_it_wins():
    listeners = tls_listeners([("shop", ingress_spec("shop.example.com", "shop-tls")),
                               ("blog", ingress_spec("shop.example.com", "blog-tls")),
                               ("blog", {"tls": [{"secretName": "default-tls"}]})])
    assert [(li.name, li.port, li.hostname, li.certificate_refs) for li in listeners] == [
        ("https-shop.example.com", 443, "shop.example.com", (("shop", "shop-tls"),)),
        ("https-default", 443, None, (("blog", "default-tls"),))]


def test_the_ingress_controller_reads_the_secret_in_the_ingress_namespace_without_a_grant():
    spec = ingress_spec("shop.example.com", "shop-tls")
    gateway = replace(INGRESS_GATEWAY, listeners=INGRESS_GATEWAY.listeners + tls_listeners([("shop", spec)]))
    ports = {"shop/web": tuple(SERVICES["shop/web"].ports)}
    routes = {r.key: r for r in ingress_routes("shop", "shop", spec, CREATED, ports)}
    world = World(classes={INGRESS_GATEWAY_CLASS.name: INGRESS_GATEWAY_CLASS}, gateways={gateway.key: gateway},
                  routes=routes, grants=[], services={"shop/web": (80,)}, secrets={"shop/shop-tls": TLSPair(CERT, KEY)})
    status = attach(world).gateways[gateway.key]
    https = next(li for li in status.listeners if li.name == "https-shop.example.com")
    assert https.attached_routes == 1
    assert {c.type: c.status for c in https.conditions}["ResolvedRefs"] == "True"
    config = render_config(gateway, attach(world), world, SERVICES, ENDPOINTS, "/run/gw")
    assert "server_name shop.example.com;" in config.text and len(config.files) == 1


def test_the_ingress_proxy_service_has_80_and_443_whether_or_not_an_ingress_asks_for_tls():
    text, _ = proxy_yaml(INGRESS_GATEWAY)
    assert "{name: http, port: 80, targetPort: 80, protocol: TCP}" in text
    assert "{name: https, port: 443, targetPort: 443, protocol: TCP}" in text
    with_tls = replace(INGRESS_GATEWAY, listeners=INGRESS_GATEWAY.listeners
                       + tls_listeners([("shop", ingress_spec("a.example.com", "t"))]))
    assert proxy_yaml(with_tls)[0] == text


def test_a_secret_shows_type_and_data_where_other_kinds_have_spec():
    from orchestrator.kinds.registry import Item
    from orchestrator.kinds.secret import to_json
    record = {"name": "shop-tls", "namespace": "shop", "labels": {}, "created": CREATED,
              "spec": {"type": "kubernetes.io/tls", "data": secret_doc()["data"]}}
    shown = to_json(Item("shop-tls", "shop", {}, record), None, None)  # type: ignore[arg-type]
    assert (shown["kind"], shown["type"], shown["data"]) == ("Secret", "kubernetes.io/tls", secret_doc()["data"])
    assert "spec" not in shown and shown["metadata"]["name"] == "shop-tls"

"""What `lab verify` notes about a Service that is likely not what was meant, and what a failed service check
names as its cause: a selector that picks no pod, a targetPort no selected pod listens on."""

from __future__ import annotations

from orchestrator.core.manifests import ContainerPort, ServicePort
from orchestrator.core.objects import Pod, Service
from orchestrator.layers.services.plan import service_notes, unserved_target_port

PODS = {f"default/web-{i}": Pod(name=f"web-{i}", namespace="default", labels={"app": "web"}, ip=f"10.244.0.{i}",
                                tcp=[80], ports=[ContainerPort(80, name="http")]) for i in (1, 2)}


def service(target, selector=None) -> Service:
    return Service(name="web", namespace="default", cluster_ip="10.96.0.20",
                   ports=[ServicePort(None, "TCP", 80, target)], selector=selector or {"app": "web"})


def test_a_service_that_matches_its_pods_ports_has_no_note():
    assert service_notes({"default/web": service(80)}, PODS) == []
    assert service_notes({"default/web": service("http")}, PODS) == []


def test_a_target_port_no_pod_listens_on_is_named():
    web = service(8080)
    assert unserved_target_port(web, web.ports[0], PODS.values()) == (
        "Service default/web port 80: targetPort 8080 is a port its pods do not listen on (they listen on 80)")
    assert service_notes({"default/web": web}, PODS) == [unserved_target_port(web, web.ports[0], PODS.values())]


def test_a_selector_that_picks_no_pod_is_a_note():
    assert service_notes({"default/web": service(80, {"app": "wbe"})}, PODS) == [
        "Service default/web: spec.selector app=wbe selects no pod of namespace default, so it has no endpoints"]

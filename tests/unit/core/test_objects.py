"""The lab's typed objects: one loader gives every field its default, one key spelling, a round trip through
the file that loses nothing."""

import json

from orchestrator.core.manifests import ContainerPort, ServicePort
from orchestrator.core.objects import (Deployment, Endpoint, LabObjects, NetworkPolicy, Pod, PortMapping, Service,
                                       applied)
from orchestrator.core.state import LabFiles


def full_objects() -> LabObjects:
    pod = Pod("web-1", "shop", uid="u1", labels={"app": "web"}, owner="Deployment/shop/web", template_hash="h",
              image="nginx", node="node2", ip="10.244.1.4", netns="lab-shop-web-1-0123456789", tcp=[80], udp=[80],
              port_mappings=[PortMapping(8080, 80, "tcp")], ports=[ContainerPort(80, "TCP", 8080, "http")],
              created="t0", resolv_conf="nameserver 10.96.0.10\n")
    service = Service("web", "shop", "10.96.0.5", "NodePort", [ServicePort("http", "TCP", 80, "http", 30080)],
                      {"app": "web"}, labels={"tier": "front"}, created="t1")
    return LabObjects(
        subnets={"node2": "10.244.1.0/24"}, boots={"node2": "b-1"}, pods={pod.key: pod},
        deployments={"shop/web": Deployment("web", "shop", 1, {"app": "web"}, "h", {"kind": "Deployment"})},
        services={service.key: service},
        endpoints={service.key: {"http": [Endpoint("10.244.1.4", 80, "node2", "web-1")]}},
        policies={"shop/deny": NetworkPolicy("deny", "shop", spec={"podSelector": {}}, created="t2")})


def test_objects_go_through_the_file_and_come_back_the_same(tmp_path, monkeypatch):
    monkeypatch.setenv("LAB_STATE_DIR", str(tmp_path))
    files = LabFiles.of("demo")
    files.write_objects(full_objects())
    assert files.read_objects() == full_objects()


def test_a_missing_or_broken_file_reads_as_no_objects(tmp_path, monkeypatch):
    monkeypatch.setenv("LAB_STATE_DIR", str(tmp_path))
    files = LabFiles.of("demo")
    assert files.read_objects() == LabObjects()
    files.create()
    files.objects.write_text("")  # as a crash can leave it
    assert files.read_objects() == LabObjects()
    files.objects.write_text(json.dumps({"pods": [], "services": None}))
    assert files.read_objects() == LabObjects()


def test_an_older_record_gets_every_field_its_default():
    """Records written by earlier versions lack fields (a deployment without its manifest, a pod without
    ports); the one loader fills them in, and a key spelled the node's way is not kept."""
    old = {"pods": {"default/p": {"name": "p", "namespace": "default", "key": "default_p", "node": "node1",
                                  "port_mappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]}},
           "deployments": {"default/web": {"replicas": 2, "selector": {"app": "web"}, "template_hash": "h"}}}
    objects = LabObjects.from_json(old)
    pod = objects.pods["default/p"]
    assert (pod.key, pod.node_key, pod.ip, pod.ports, pod.labels) == ("default/p", "default_p", None, [], {})
    assert pod.port_mappings == [PortMapping(8080, 80, "tcp")]
    assert pod.port_mappings[0].to_cni() == {"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}
    web = objects.deployments["default/web"]
    assert (web.namespace, web.name, web.manifest, web.owner) == ("default", "web", {}, "Deployment/default/web")
    assert "key" not in json.dumps(objects.to_json()["pods"]["default/p"])


def test_named_ports_resolve_on_the_pod():
    pod = full_objects().pods["shop/web-1"]
    assert pod.port_named("http", "TCP") == 80
    assert pod.port_named("http", "UDP") is None and pod.port_named("https", "TCP") is None


def test_kubectls_words_for_an_applied_object():
    assert [applied(None, False), applied("old", True), applied("old", False)] == ["created", "unchanged",
                                                                                   "configured"]

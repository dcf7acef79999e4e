"""Reconciling Deployments and Pods, and spreading pods over nodes (pure)."""

import random
from dataclasses import dataclass
from ipaddress import IPv4Address

import pytest

from orchestrator.core.errors import InputError
from orchestrator.core.model import Cluster, Node, Ssh
from orchestrator.core.objects import LabObjects, Pod, PortMapping
from orchestrator.kinds import parse, plan
from orchestrator.layers.pods.plan import schedule


CLUSTER = Cluster(name="lab")
NODES = [Node(f"node{i}", IPv4Address(f"10.0.0.{i}"), f"10.0.0.{i}", Ssh(), labels={"zone": "a" if i < 3 else "b"})
         for i in (1, 2, 3)]


def deployment(replicas=3, label="web", **extra_spec):
    spec = {"containers": [{"name": "c", "image": "x"}], **extra_spec}
    return parse({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
                  "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": label}},
                           "template": {"metadata": {"labels": {"app": label}}, "spec": spec}}}, "d.yaml", print)


def empty():
    return LabObjects()


@dataclass
class Planned:
    create: list
    delete: list
    results: list


def planned(objects, manifest, now="2026-01-01T00:00:00Z", deleting=False) -> Planned:
    """What `lab apply` (or `lab delete`) of `manifest` plans, through the kind registry."""
    done, lines = plan(CLUSTER, NODES, objects, [manifest], now, deleting=deleting, rng=random.Random(1))
    return Planned(done.pods.create, done.pods.delete, lines)


def applied(objects, manifest, now="2026-01-01T00:00:00Z") -> Planned:
    """Apply `manifest` to `objects` as the pipeline would (pods get an IP; nothing fails)."""
    changes = planned(objects, manifest, now)
    for pod in changes.delete:
        del objects.pods[pod.key]
    for pod in changes.create:
        pod.ip = "10.244.0.9"
        objects.pods[pod.key] = pod
    return changes


def test_deployment_pods_are_named_like_kubernetes_and_spread():
    objects = empty()
    changes = applied(objects, deployment(replicas=5))
    assert changes.results == ["deployment.apps/web created"]
    names = [p.name for p in changes.create]
    digest = deployment().template.digest()
    assert all(n.startswith(f"web-{digest}-") and len(n.split("-")[-1]) == 5 for n in names)
    assert len(set(names)) == 5
    assert [p.node for p in changes.create] == ["node1", "node2", "node3", "node1", "node2"]
    assert all(p.netns.startswith(f"lab-default-{p.name}-") and p.owner == "Deployment/default/web"
               for p in changes.create)


def test_reapplying_converges():
    objects = empty()
    applied(objects, deployment(replicas=3))
    again = applied(objects, deployment(replicas=3))
    assert (again.create, again.delete, again.results) == ([], [], ["deployment.apps/web unchanged"])
    down = applied(objects, deployment(replicas=1))
    assert (len(down.create), len(down.delete), down.results) == (0, 2, ["deployment.apps/web configured"])
    zero = applied(objects, deployment(replicas=0))
    assert len(zero.delete) == 1 and objects.pods == {}
    # a new template replaces every pod
    applied(objects, deployment(replicas=2))
    relabel = applied(objects, deployment(replicas=2, nodeSelector={"zone": "b"}))
    assert len(relabel.delete) == 2 and [p.node for p in relabel.create] == ["node3", "node3"]


def test_delete_removes_a_deployments_pods():
    objects = empty()
    applied(objects, deployment(replicas=2))
    changes = planned(objects, deployment(), deleting=True)
    assert len(changes.delete) == 2 and changes.results == ["deployment.apps/web deleted"]


def test_host_ports_never_collide_on_a_node():
    pods = [Pod(f"p{i}", "default", port_mappings=[PortMapping(8080, 80, "tcp")]) for i in range(4)]
    with pytest.raises(InputError, match="cannot be scheduled: no node has hostPort 8080/TCP free"):
        schedule(pods, NODES, [])
    schedule(pods[:3], NODES, [])
    assert sorted(p.node for p in pods[:3]) == ["node1", "node2", "node3"]


def test_unknown_node_name_is_a_clear_error():
    pod = Pod("p", "default", node="node9")
    with pytest.raises(InputError, match="nodeName 'node9' is not a node of the lab"):
        schedule([pod], NODES, [])


def bare_pod(node_name=None):
    spec = {"containers": [{"name": "c", "image": "x"}], **({"nodeName": node_name} if node_name else {})}
    return parse({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "solo"}, "spec": spec}, "p.yaml", print)


def test_a_pod_given_back_with_the_node_it_runs_on_is_unchanged():
    """`lab get pod -o yaml` writes the scheduler's nodeName; applying that again is the same pod."""
    objects = empty()
    applied(objects, bare_pod())
    node = objects.pods["default/solo"].node
    assert planned(objects, bare_pod(node)).results == ["pod/solo unchanged"]
    other = next(n.name for n in NODES if n.name != node)
    assert planned(objects, bare_pod(other)).results == ["pod/solo configured"]


def test_a_deployment_record_with_its_manifest_is_unchanged_when_applied_again():
    objects = empty()
    applied(objects, deployment())
    objects.deployments["default/web"].manifest = {"kept": "for scale and rollout restart"}
    assert planned(objects, deployment()).results == ["deployment.apps/web unchanged"]

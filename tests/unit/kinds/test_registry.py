"""The kind registry: a kind added as one module goes through `lab apply`, `get`, `describe` and `delete` like the
built-in ones; and the pipeline, driven through the registry against nodes that answer as the agent does."""

import importlib
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from orchestrator import kinds, pipeline
from orchestrator.agent.contract import VERBS, PodsApply, PodsEnsure
from orchestrator.cli.resources import kinds_of, select
from orchestrator.core import inventory
from orchestrator.core.errors import InputError, LabError
from orchestrator.core.state import LabFiles
from orchestrator.core.transport import FleetResult, NodeUnreachable, Result

REPO = Path(__file__).resolve().parents[3]
INVENTORY = "cluster: {name: demo}\nnodes: [{name: node1, address: 198.18.0.11}, {name: node2, address: 198.18.0.12}]\n"
WIDGETS = """
apiVersion: example.com/v1
kind: Widget
metadata: {name: colors, namespace: team}
data: {sky: blue}
---
apiVersion: v1
kind: Namespace
metadata: {name: team}
"""


class Nodes:
    """Nodes whose agent answers as the contract says: pods-apply gives each new pod an address and the node
    holds it, pods-ensure reports the pods held, proxy-sync has nothing to change; they remember the verbs
    they were sent."""

    def __init__(self):
        self.verbs: list[tuple[str, str]] = []
        self.held: dict[str, dict[str, str]] = {}  # node -> pod key -> its state
        self.next_ip = 2
        self.silent: set[str] = set()  # nodes that do not answer over SSH

    def run(self, node, argv, stdin=None, **kwargs):
        if node.name in self.silent:
            self.verbs.append((node.name, "(no answer)"))
            raise NodeUnreachable(node.name, "lost the SSH connection")
        if argv[0] == "widgets":  # what the Widget test kind's converge sends
            self.verbs.append((node.name, " ".join(argv)))
            return Result(node.name, " ".join(argv), 0, "", "")
        request = VERBS[argv[-1]].from_json(stdin)
        self.verbs.append((node.name, request.VERB))
        answer = request.ANSWER()
        held = self.held.setdefault(node.name, {})
        if isinstance(request, PodsApply):
            for pod in request.delete:
                held.pop(pod["key"], None)
            for pod in request.add:
                answer.added[pod["key"]] = {"ip": pod["ip"] or f"10.244.{node.name[-1]}.{self.next_ip}"}
                held[pod["key"]] = "running"
                self.next_ip += 1
        elif isinstance(request, PodsEnsure):
            answer.pods = {key: {"state": state} for key, state in held.items()}
        return Result(node.name, " ".join(argv), 0, answer.to_json(), "")

    def run_all(self, action, nodes=None):
        """Each node's result or, as the real transport gives it, its exception."""
        def outcome(node):
            try:
                return action(node)
            except NodeUnreachable as exc:
                return exc

        return FleetResult((node.name, outcome(node)) for node in nodes)


@pytest.fixture
def lab(tmp_path, monkeypatch):
    """A lab with a pod network on two nodes (as after `lab deploy`), its files in tmp_path."""
    monkeypatch.setenv("LAB_STATE_DIR", str(tmp_path))
    inv = inventory.parse(INVENTORY, "inventory.yaml", tmp_path)
    files = LabFiles.of("demo")
    objects = files.read_objects()
    objects.subnets = {"node1": "10.244.1.0/24", "node2": "10.244.2.0/24"}
    files.write_objects(objects)
    return SimpleNamespace(inv=inv, files=files, nodes=Nodes())


@pytest.fixture
def widgets():
    """The Widget kind of tests.unit.kinds.widget_kind.py, registered by importing that one module."""
    module = importlib.import_module("tests.unit.kinds.widget_kind")
    yield module.WIDGET
    kinds.registry.unregister(module.WIDGET)
    sys.modules.pop("tests.unit.kinds.widget_kind")


def manifests(text: str, tmp_path: Path) -> list:
    path = tmp_path / "m.yaml"
    path.write_text(text)
    return kinds.parse_all(str(path), lambda line: None)


def test_a_kind_added_as_one_module_is_applied_listed_described_and_deleted(lab, widgets, tmp_path):
    assert kinds.by_name("wg") is widgets and kinds_of("widgets,po") == [widgets, kinds.by_name("pods")]
    applied = manifests(WIDGETS, tmp_path)
    lines = pipeline.apply_manifests(lab.inv, lab.nodes, lab.files, applied)
    assert lines == ["widget/colors created", "namespace/team created"]  # in the file's order
    # the kind's own converge put it on every node, after the pods and before the service rules
    assert [v for v in lab.nodes.verbs if v[1].startswith("widgets")] == [("node1", "widgets 1"),
                                                                           ("node2", "widgets 1")]
    assert [verb for _, verb in lab.nodes.verbs][-2:] == ["proxy-sync", "proxy-sync"]
    assert pipeline.apply_manifests(lab.inv, lab.nodes, lab.files, applied) == ["widget/colors unchanged",
                                                                                "namespace/team unchanged"]
    objects = lab.files.read_objects()
    (found,) = select(widgets, lab.inv, objects, ["colors"], "team", None)
    assert widgets.to_json(found, lab.inv, objects)["data"] == {"sky": "blue"}
    assert widgets.table([found], lab.inv, objects, False, False)[1][0][:2] == ["colors", "1"]
    assert ("sky:", "blue") in widgets.describe(found, lab.inv, objects)
    assert widgets.not_found("nope", "team") == 'Error from server (NotFound): widgets "nope" not found in ' \
                                                   "namespace 'team'"
    # deleting the namespace takes the Widget along, as it takes pods and services
    (namespace,) = [m for m in applied if m.kind == "Namespace"]
    assert pipeline.delete_manifests(lab.inv, lab.nodes, lab.files, [namespace]) == ["namespace/team deleted"]
    assert select(widgets, lab.inv, lab.files.read_objects(), [], None, None) == []


def test_a_registered_kinds_own_checks_and_unknown_kinds_are_one_line_errors(widgets, tmp_path):
    with pytest.raises(InputError, match=r"m.yaml: data.sky: 3 is not a string; quote the value"):
        manifests("apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: c}\ndata: {sky: 3}\n", tmp_path)
    with pytest.raises(InputError, match=r"kind: 'Servce' is not supported \(did you mean 'Service'\?\); the lab "
                                         r"understands: Pod, Deployment, Service, Namespace, NetworkPolicy, "
                                         r"IPAddressPool, L2Advertisement, GatewayClass, Gateway, HTTPRoute, "
                                         r"ReferenceGrant, IngressClass, Ingress, Secret, ConfigMap, Widget"):
        manifests("apiVersion: v1\nkind: Servce\nmetadata: {name: s}\n", tmp_path)


def test_a_name_taken_by_another_kind_cannot_be_registered():
    with pytest.raises(ValueError, match="po"):
        kinds.register(kinds.Kind("Potato", "potatoes", "potato", short_names=("po",)))


def test_apply_creates_pods_before_it_syncs_rules_and_a_second_apply_changes_nothing(lab, tmp_path):
    nginx = kinds.parse_all(str(REPO / "examples" / "nginx.yaml"), lambda line: None)
    lines = pipeline.apply_manifests(lab.inv, lab.nodes, lab.files, nginx)
    assert lines == ["deployment.apps/nginx created", "service/nginx created"]
    assert [verb for _, verb in lab.nodes.verbs] == ["pods-ensure", "pods-ensure", "pods-apply", "pods-apply",
                                                     "proxy-sync", "proxy-sync"]
    objects = lab.files.read_objects()
    assert sorted(p.node for p in objects.pods.values()) == ["node1", "node1", "node2"]
    assert all(p.ip and p.ip.startswith(f"10.244.{p.node[-1]}.") for p in objects.pods.values())
    assert {e.ip for e in objects.endpoints["default/nginx"][""]} == {p.ip for p in objects.pods.values()}
    lab.nodes.verbs.clear()
    assert pipeline.apply_manifests(lab.inv, lab.nodes, lab.files, nginx) == ["deployment.apps/nginx unchanged",
                                                                              "service/nginx unchanged"]
    assert "pods-apply" not in {verb for _, verb in lab.nodes.verbs}


def test_a_plan_that_cannot_be_carried_out_changes_nothing(lab, tmp_path):
    """An unschedulable pod is refused while planning: no node is sent anything and the lab's file stays."""
    before = lab.files.objects.read_text()
    pod = manifests("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  nodeName: node9\n"
                    "  containers: [{name: c, image: x}]\n", tmp_path)
    with pytest.raises(InputError, match="nodeName 'node9' is not a node of the lab"):
        pipeline.apply_manifests(lab.inv, lab.nodes, lab.files, pod)
    assert lab.nodes.verbs == [] and lab.files.objects.read_text() == before


def test_deleting_a_deployment_deletes_its_pods_and_a_missing_one_is_not_found(lab, tmp_path):
    nginx = kinds.parse_all(str(REPO / "examples" / "nginx.yaml"), lambda line: None)
    pipeline.apply_manifests(lab.inv, lab.nodes, lab.files, nginx)
    deployment = kinds.manifest("Deployment", "nginx", "default", "lab delete deploy nginx")
    assert pipeline.delete_manifests(lab.inv, lab.nodes, lab.files, [deployment]) == ["deployment.apps/nginx deleted"]
    objects = lab.files.read_objects()
    assert objects.pods == {} and objects.deployments == {} and objects.endpoints["default/nginx"] == {"": []}
    assert pipeline.delete_manifests(lab.inv, lab.nodes, lab.files, [deployment]) == [
        "deployment.apps/nginx not found"]


def test_a_pod_its_node_lost_is_made_again_by_the_next_apply_with_its_address(lab, tmp_path):
    """Level-triggered: what the node holds decides, not what was sent it. A pod whose node lost it (a power cut,
    a namespace deleted by hand) comes back with the address it had, and kubectl's word is configured."""
    nginx = kinds.parse_all(str(REPO / "examples" / "nginx.yaml"), lambda line: None)
    pipeline.apply_manifests(lab.inv, lab.nodes, lab.files, nginx)
    victim = next(iter(lab.files.read_objects().pods.values()))
    lab.nodes.held[victim.node][victim.node_key] = "gone"
    lab.nodes.verbs.clear()
    assert pipeline.apply_manifests(lab.inv, lab.nodes, lab.files, nginx) == ["deployment.apps/nginx configured",
                                                                              "service/nginx unchanged"]
    assert (victim.node, "pods-apply") in lab.nodes.verbs
    again = lab.files.read_objects().pods[victim.key]
    assert again.ip == victim.ip and lab.nodes.held[victim.node][victim.node_key] == "running"
    lab.nodes.verbs.clear()
    assert pipeline.apply_manifests(lab.inv, lab.nodes, lab.files, nginx)[0] == "deployment.apps/nginx unchanged"
    assert "pods-apply" not in {verb for _, verb in lab.nodes.verbs}


def test_a_pods_status_is_what_its_node_reports():
    from orchestrator.core.objects import LabObjects, Pod
    from orchestrator.kinds.pod import phase
    pods = {f"default/p{i}": Pod(f"p{i}", "default", node="node1", ip=f"10.244.1.{i}") for i in range(5)}
    objects = LabObjects(pods=pods, observed={"default/p1": "running", "default/p2": "stopped",
                                              "default/p3": "gone",
                                              "default/p4": "unknown: node1: cannot connect to root@node1:22"})
    words = {key: phase(pod, objects)[0] for key, pod in pods.items()}
    assert words == {"default/p0": "Running", "default/p1": "Running", "default/p2": "Error",
                     "default/p3": "Unknown", "default/p4": "Unknown"}
    assert phase(pods["default/p4"], objects)[1] == "node1: cannot connect to root@node1:22"
    assert phase(Pod("new", "default"), objects) == ("Pending", "not placed on a node yet")


def test_a_node_that_does_not_answer_is_asked_once_and_its_share_waits_for_the_next_apply(lab):
    """A silent node costs one wait (pods-ensure), not one per step: its pods and rules are left for the next
    apply, which, with the node back, creates them."""
    nginx = kinds.parse_all(str(REPO / "examples" / "nginx.yaml"), lambda line: None)
    lab.nodes.silent.add("node2")
    with pytest.raises(LabError, match=r"^node2: lost the SSH connection; its pods and rules are left for the next "
                                       r"`lab apply`$"):
        pipeline.apply_manifests(lab.inv, lab.nodes, lab.files, nginx)
    assert [verb for node, verb in lab.nodes.verbs if node == "node2"] == ["(no answer)"]
    assert {p.node for p in lab.files.read_objects().pods.values()} == {"node1"}
    lab.nodes.silent.clear()
    # the Deployment as written did not change (kubectl says unchanged); its missing replica is made now
    assert pipeline.apply_manifests(lab.inv, lab.nodes, lab.files, nginx) == ["deployment.apps/nginx unchanged",
                                                                              "service/nginx unchanged"]
    assert sorted(p.node for p in lab.files.read_objects().pods.values()) == ["node1", "node1", "node2"]

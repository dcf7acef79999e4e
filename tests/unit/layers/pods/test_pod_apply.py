"""What `lab apply` and `lab deploy` make of what the nodes report holding (pure)."""

from orchestrator.agent.contract import pod_netns_name
from orchestrator.core.objects import LabObjects, Pod
from orchestrator.layers.nodes.facts import conflist_path
from orchestrator.layers.pods.apply import ensure_request, lost_pods, removed_lines, unwanted


def lab_pods(*names: str, node: str = "node1") -> LabObjects:
    objects = LabObjects()
    for name in names:
        objects.pods[f"default/{name}"] = Pod(name, "default", node=node, uid=f"uid-{name}",
                                              netns=pod_netns_name("lab", "default", name))
    return objects


def test_a_node_keeps_just_the_lab_pods_it_should_run():
    objects = lab_pods("web-1", "web-2")
    objects.pods["default/db"] = Pod("db", "default", node="node2", uid="uid-db", netns="lab-default-db-0123456789")
    request = ensure_request("lab", objects, "node1")
    assert request.lab == "lab" and request.conflist == conflist_path("lab")
    assert request.keep == [{"key": "default_web-1", "netns": pod_netns_name("lab", "default", "web-1"),
                             "id": "uid-web-1"},
                            {"key": "default_web-2", "netns": pod_netns_name("lab", "default", "web-2"),
                             "id": "uid-web-2"}]


def test_what_a_node_holds_that_the_lab_does_not_have_is_unwanted_and_a_lessons_namespace_is_not():
    objects = lab_pods("web-1")
    held = {"default_web-1": "running", "default_web-9": "running"}  # web-9: deleted while node1 was away
    netns = [pod_netns_name("lab", "default", "web-1"), pod_netns_name("lab", "default", "half-made"),
             "lab-l07-c1", pod_netns_name("other", "default", "web-1")]
    assert unwanted("lab", objects, "node1", held, netns) == [
        "default_web-9", pod_netns_name("lab", "default", "half-made")]
    assert unwanted("lab", objects, "node1", {"default_web-1": "running"}, netns[:1]) == []


def test_a_pod_its_node_lacks_or_reports_gone_is_made_again():
    objects = lab_pods("web-1", "web-2", "web-3")
    lost = lost_pods(objects, "node1", {"default_web-1": "running", "default_web-2": "gone"})
    assert [p.name for p in lost] == ["web-2", "web-3"]


def test_removals_are_one_line_per_node_and_a_node_that_did_not_answer_says_nothing_here():
    held = {"node2": {"default_web-9": "removed", "lease 10.244.1.7": "removed", "default_web-1": "running"},
            "node1": {"default_web-2": "running"}, "node3": TimeoutError("node3: unreachable")}
    assert removed_lines(held) == ["node2: removed what the lab no longer has: default_web-9, lease 10.244.1.7"]

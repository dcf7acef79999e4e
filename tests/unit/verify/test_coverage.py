"""Coverage mode: the pod pairs `lab verify` probes in a big lab, instead of all of them."""

from ipaddress import IPv4Address

from orchestrator.core.model import Cluster, Inventory, Node, Ssh
from orchestrator.core.objects import LabObjects, NetworkPolicy, Pod
from orchestrator.verify.checks import COVERAGE_AFTER, coverage_pairs, plan_checks, server_pods

NODES = 10
INV = Inventory("lab.yaml", Cluster("demo"), tuple(
    Node(f"node{i}", IPv4Address(f"198.18.0.{10 + i}"), f"198.18.0.{10 + i}", Ssh()) for i in range(1, NODES + 1)))


def lab(pods_per_node: int, labels=lambda i: {"app": "web"}) -> LabObjects:
    pods = [Pod(f"web-{n}-{i}", "default", labels=labels(i), node=f"node{n}", ip=f"10.244.{n}.{i + 2}", tcp=[80],
                udp=[80]) for n in range(1, NODES + 1) for i in range(pods_per_node)]
    return LabObjects(subnets={f"node{n}": f"10.244.{n}.0/24" for n in range(1, NODES + 1)},
                      pods={p.key: p for p in pods})


def test_every_node_pair_and_every_pod_both_ways_in_a_fraction_of_the_pairs():
    objects = lab(30)
    pods = server_pods(objects)
    pairs = coverage_pairs(pods, objects)
    node = {p.key: p.node for p in pods}
    assert {(node[s], node[d]) for s, d in pairs} == {(f"node{a}", f"node{b}") for a in range(1, NODES + 1)
                                                      for b in range(1, NODES + 1)}
    assert {s for s, _ in pairs} == {d for _, d in pairs} == set(node)
    assert len(pairs) <= 2 * len(pods) + NODES * NODES and len(pods) ** 2 == 90_000


def test_each_pair_of_policy_classes_is_probed():
    objects = lab(12, labels=lambda i: {"app": "web" if i % 3 else "db"})
    objects.policies["default/db"] = NetworkPolicy("db", "default", spec={
        "podSelector": {"matchLabels": {"app": "db"}},
        "ingress": [{"from": [{"ipBlock": {"cidr": "10.244.1.0/24", "except": ["10.244.1.0/29"]}}]}]})
    pods = server_pods(objects)
    pairs = coverage_pairs(pods, objects)
    by_key = {p.key: p for p in pods}

    def kind(pod: Pod) -> tuple:
        inside = pod.ip.startswith("10.244.1.") and int(pod.ip.rsplit(".", 1)[1]) >= 8  # in the cidr, not except
        return pod.labels["app"], inside
    assert len({kind(p) for p in pods}) == 4  # web and db, each inside the ipBlock and outside it
    assert {(kind(by_key[s]), kind(by_key[d])) for s, d in pairs} == {(a, b) for a in
                                                                      {kind(p) for p in pods} for b in
                                                                      {kind(p) for p in pods}}


def test_past_the_threshold_the_matrix_is_the_coverage_pairs_unless_all_pairs():
    small = lab(COVERAGE_AFTER // NODES)
    assert len([c for c in plan_checks(INV, small) if c.family == "pod-to-pod"]) == 2 * COVERAGE_AFTER ** 2
    big = lab(COVERAGE_AFTER // NODES + 2)
    count = len(server_pods(big))
    covered = [c for c in plan_checks(INV, big) if c.family == "pod-to-pod"]
    assert len(covered) == 2 * len(coverage_pairs(server_pods(big), big)) < count ** 2
    assert len([c for c in plan_checks(INV, big, all_pairs=True) if c.family == "pod-to-pod"]) == 2 * count ** 2

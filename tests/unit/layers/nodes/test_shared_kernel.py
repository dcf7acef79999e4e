"""What emulated nodes need from the kernel they share, counted before anything is made."""

from orchestrator.core.objects import Pod
from orchestrator.layers.nodes.shared_kernel import neighbour_entries_learned, neighbour_room_error, probe_waves


def pods(count: int, nodes: int) -> list[Pod]:
    return [Pod(f"web-{i}", "default", node=f"node{i % nodes + 1}") for i in range(count)]


def test_the_learned_entries_grow_with_the_pods_not_with_pairs_of_nodes():
    assert neighbour_entries_learned(50, [2] * 50) == 50 + 200 + 2 + 8
    assert neighbour_entries_learned(100, [10] * 100) == 100 + 2000 + 90 + 8
    assert neighbour_entries_learned(3, []) == 3 + 8


def test_a_lab_that_would_overflow_the_table_is_refused_with_the_numbers_and_the_way_out():
    names = [f"node{i}" for i in range(1, 51)]
    assert neighbour_room_error("lab apply", names, pods(100, 50), 1024) is None
    error = neighbour_room_error("lab apply", names, pods(500, 50), 1024)
    assert error is not None and str(error) == (
        "lab apply: 500 pods on 50 emulated nodes need about 1148 learned neighbour entries in this machine's one "
        "ARP table, which holds at most 1024 for every namespace together (net.ipv4.neigh.default.gc_thresh3); "
        "nothing was changed. Use fewer pods, or raise the limit in the root namespace yourself (the lab never "
        "does): sysctl -w net.ipv4.neigh.default.gc_thresh3=2296")


def test_verify_probes_from_as_many_nodes_at_once_as_half_the_room_left_allows():
    names = [f"node{i}" for i in range(1, 11)]
    # 10 x 10 pods: 1024 - (10 + 8 + 200) leaves 806, half of it 403: four nodes' 90 entries each per wave
    assert probe_waves(names, dict.fromkeys(names, 10), 1024) == [names[0:4], names[4:8], names[8:10]]
    assert probe_waves(names[:3], dict.fromkeys(names[:3], 2), 1024) == [names[:3]]  # a small lab: all at once
    # a node whose pods alone exceed the room still probes, alone
    assert probe_waves(["node1", "node2"], {"node1": 40, "node2": 1}, 1024) == [["node1"], ["node2"]]

"""What emulated nodes take from the one kernel they share (pure). Network namespaces each have their own
neighbour entries, but the kernel keeps one ARP table for all of them, and its learned entries (not the
permanent ones) are capped by net.ipv4.neigh.default.gc_thresh3, which only the root namespace can set
(1024 by default). Past it the kernel drops new entries ("neighbor table overflow") and traffic times out.
The lab pins its underlay entries (providers/emulated_plan.py), so what is learned grows with the pods."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Optional

from orchestrator.core.errors import InputError
from orchestrator.core.objects import Pod

def neighbour_entries_learned(nodes: int, pods_per_node: Sequence[int]) -> int:
    """About how many neighbour entries an emulated lab has the shared kernel learn: the root namespace's for
    each node (SSH), each node's for its pods on cni0 and each pod's for its gateway, the pod-to-pod pairs of
    the node `lab verify` probes from (it forgets them before the next node's), and a few of the router's and
    the outside host's."""
    pods = sum(pods_per_node)
    return nodes + 2 * pods + max((p * (p - 1) for p in pods_per_node), default=0) + 8


def learned_needed(node_names: Sequence[str], pods: Iterable[Pod]) -> int:
    """neighbour_entries_learned for `pods` placed on the nodes `node_names`."""
    per_node = Counter(p.node for p in pods)
    return neighbour_entries_learned(len(node_names), [per_node[n] for n in node_names])


def neighbour_room_error(source: str, node_names: Sequence[str], pods: Iterable[Pod],
                         limit: int) -> Optional[InputError]:
    """A one-line error when `pods` on emulated nodes `node_names` would need more learned neighbour entries
    than the shared kernel allows (`limit`, its gc_thresh3), else None."""
    pods = list(pods)
    needed = learned_needed(node_names, pods)
    if needed <= limit:
        return None
    total = len(pods)
    return InputError(
        f"{source}: {total} pods on {len(node_names)} emulated nodes need about {needed} learned neighbour entries "
        f"in this machine's one ARP table, which holds at most {limit} for every namespace together "
        f"(net.ipv4.neigh.default.gc_thresh3); nothing was changed. Use fewer pods, or raise the limit in the "
        f"root namespace yourself (the lab never does): sysctl -w net.ipv4.neigh.default.gc_thresh3={2 * needed}")


def probe_waves(nodes: Sequence[str], pods_per_node: Mapping[str, int], limit: int) -> list[list[str]]:
    """The nodes whose pods `lab verify` probes from at once, wave after wave (their learned neighbours are
    forgotten after each): what a wave's pods learn among themselves, p x (p - 1) per node, fits half of what
    `limit` leaves beside the lab's steady entries (the other half for labs probing beside it). A node that
    does not fit with others goes alone."""
    steady = neighbour_entries_learned(len(nodes), [0] * len(nodes)) + 2 * sum(pods_per_node.get(n, 0) for n in nodes)
    room = (limit - steady) // 2
    waves: list[list[str]] = []
    used = 0
    for node in nodes:
        cost = pods_per_node.get(node, 0) * (pods_per_node.get(node, 0) - 1)
        if waves and used + cost <= room:
            waves[-1].append(node)
            used += cost
        else:
            waves.append([node])
            used = cost
    return waves

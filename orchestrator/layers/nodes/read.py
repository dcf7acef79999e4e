"""Reading a node: one SSH command (templates/nodes/node-facts.sh.j2) parsed into a NodeState (facts.py), the
checks before planning (`preflight`), and the boot IDs deploy remembers."""

from __future__ import annotations

import time
from typing import Callable

from orchestrator.agent.contract import (AGENT_FILE, ANNOUNCED, HEALTH_SERVER, PODS_DIR, RESTORE_STAMP, lab_file,
                                         node_lib)
from orchestrator.core.model import Inventory, Node
from orchestrator.core.render import render
from orchestrator.core.state import LabFiles
from orchestrator.core.transport import NodeError, Transport
from orchestrator.layers.nodes import boot
from orchestrator.layers.nodes.boot import KNOWN_MODULES, etc_files, unit_link
from orchestrator.layers.nodes.facts import (CNI_CONF_DIR, CNI_DIRS, CNI_PLUGINS, KERNEL_FEATURES, NodeFacts,
        NodeState, OTHER_TOOLS, REQUIRED_TOOLS, SYSCTLS, conflist_path, parse_facts)


GC_THRESH3 = "/proc/sys/net/ipv4/neigh/default/gc_thresh3"


def shared_kernel_limit(inv: Inventory) -> int | None:
    """For emulated nodes sharing this machine's kernel, its cap on learned neighbour entries; else None."""
    if inv.emulated is None or not inv.emulated.shares_kernel:
        return None
    return host_neighbour_limit()


def host_neighbour_limit() -> int | None:
    """This machine's cap on learned neighbour entries, for every namespace together (None: it does not say)."""
    try:
        with open(GC_THRESH3) as handle:
            return int(handle.read())
    except (OSError, ValueError):
        return None


def host_neighbour_entries() -> int | None:
    """How many entries this machine's ARP table holds now, in every namespace, permanent ones included."""
    try:
        with open("/proc/net/stat/arp_cache") as handle:
            return int(handle.read().splitlines()[1].split()[0], 16)
    except (OSError, ValueError, IndexError):
        return None


def facts_script(lab: str, vni: int = 1) -> str:
    return render("nodes/node-facts.sh.j2", tools=REQUIRED_TOOLS + OTHER_TOOLS, kernel_features=KERNEL_FEATURES,
                  plugins=CNI_PLUGINS, cni_dirs=CNI_DIRS, sysctls=list(SYSCTLS),
                  conf_dir=CNI_CONF_DIR, conflist=conflist_path(lab), lib=node_lib(lab),
                  pods_dir=lab_file(lab, PODS_DIR), restore_stamp=lab_file(lab, RESTORE_STAMP),
                  announced=lab_file(lab, ANNOUNCED), health_server=lab_file(lab, HEALTH_SERVER),
                  modules=sorted(KNOWN_MODULES.items()), etc_files=etc_files(lab), unit_link=unit_link(lab),
                  agent_file=AGENT_FILE)


def read_state(transport: Transport, node: Node, lab: str) -> NodeState:
    """Read `node`'s state over SSH (one command)."""
    return parse_facts(transport.script(node, facts_script(lab)).stdout)


def preflight(inv: Inventory, node: Node, state: NodeState) -> NodeFacts:
    """The facts planning needs, or a NodeError saying what the node lacks."""
    lacks = state.missing()
    if lacks:
        raise NodeError(node.name, f"lacks {', '.join(lacks)}; `lab bootstrap` installs them (on Debian/Ubuntu: "
                                   "iproute2 iptables python3 containernetworking-plugins)")
    modules = boot.missing_modules(inv.cluster, state)
    if modules:
        raise NodeError(node.name, f"lacks {', '.join(modules)}; install its kernel's modules (on Ubuntu: "
                                   f"linux-modules-extra-{state.kernel or '$(uname -r)'}), or change {inv.source} "
                                   "so that the lab does not need it")
    foreign = [f for f in state.conflists if f.startswith("10-") and f.endswith(".conflist")
               and f != f"10-{inv.name}.conflist"]
    if foreign:
        other = foreign[0][3:-len(".conflist")]
        raise NodeError(node.name, f"already carries lab {other!r} (/etc/cni/net.d/{foreign[0]}); run "
                                   f"`lab destroy` with that lab's inventory first")
    device = state.device_with_address(node.address)
    if device is None:
        raise NodeError(node.name, f"no interface has the address {node.address}; fix the node's `address` in "
                                   f"{inv.source}")
    return NodeFacts(underlay_device=device["ifname"], underlay_mtu=int(device.get("mtu", 1500)))


def remember_boots(files: LabFiles, boots: dict[str, str]) -> None:
    """Record each node's boot ID: the next deploy says which nodes booted again in between."""
    objects = files.read_objects()
    if any(objects.boots.get(name) != boot for name, boot in boots.items() if boot):
        objects.boots.update((name, boot) for name, boot in boots.items() if boot)
        files.write_objects(objects)


def lost_the_lab(states: dict[str, NodeState]) -> list[str]:
    """The nodes that hold none of the lab's files: made again blank (an emulated node whose power was cut; a
    machine rebuilt), so the lab must be put back on them."""
    return [name for name, state in states.items() if AGENT_FILE not in state.files]


def wait_until_ready(transport: Transport, nodes: list[Node], lab: str, seconds: float,
                     progress: Callable[[str], None],
                     deployed_in: dict[str, str]) -> tuple[dict[str, str], dict[str, NodeState]]:
    """Wait (a condition, bounded by `seconds`) until every node answers and none is still restoring the lab after
    a boot (a node answers SSH some seconds before its boot unit is done). Returns the nodes that still are not
    ready, and why, and what the nodes that answered hold. What a boot unit could not restore is said, and counts
    as ready: the next `lab deploy` repairs it."""
    deadline = time.monotonic() + seconds
    said: set[str] = set()
    while True:
        read = transport.run_all(lambda node: read_state(transport, node, lab), nodes)
        states = {name: state for name, state in read.items() if not isinstance(state, BaseException)}
        waiting = {name: f"unreachable: {state}" for name, state in read.items() if isinstance(state, BaseException)}
        waiting.update((name, "restoring the lab after a boot") for name, state in states.items()
                       if state.restoring(deployed_in.get(name, "")))
        for name, why in sorted(waiting.items()):
            if name not in said:
                progress(f"{name}: not ready yet ({why})")
                said.add(name)
        if not waiting or time.monotonic() > deadline:
            break
        time.sleep(1.0)
    for name in sorted(said - set(waiting)):
        problems = "; ".join(states[name].restore_errors)
        progress(f"{name}: ready" + (f" (its boot unit could not restore: {problems}; `lab deploy` repairs it)"
                                     if problems else ""))
    return waiting, states


def not_ready(transport: Transport, nodes: list[Node], lab: str, deployed_in: dict[str, str]) -> dict[str, str]:
    """The nodes that are not ready for the lab now, and why (see wait_until_ready), without waiting."""
    return wait_until_ready(transport, nodes, lab, 0.0, lambda line: None, deployed_in)[0]

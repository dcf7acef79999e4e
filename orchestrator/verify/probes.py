"""Running the checks: one agent call per node probing from the node and its pods (the outside host's
apart), each source with all its targets at once, then a verdict per check."""

from __future__ import annotations

import contextlib
from collections import Counter
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Iterator

from orchestrator.agent.pods import wait_listening
from orchestrator.agent.probes import PROBE_WORKERS, SOURCES_AT_ONCE
from orchestrator.agent.contract import FlushCaches, Probe, ProbeFrom
from orchestrator.core.agent import call, call_local, local_agent_argv
from orchestrator.core.errors import LabError
from orchestrator.core.model import Inventory, Node
from orchestrator.core.objects import LabObjects
from orchestrator.core.transport import CommandKilled, Transport
from orchestrator.layers.nodes.read import shared_kernel_limit
from orchestrator.layers.nodes.shared_kernel import probe_waves
from orchestrator.verify.checks import Check, OUTSIDE, Outcome, evaluate, node_of, nodes_needed


PROBE_TIMEOUT = 2.0
UNREACHABLE_AFTER = 5.0  # a node that does not run `true` within this is not probed (its checks fail as such)


def batch_timeout(targets: list) -> float:
    """How long one source's probes may take when every one of them times out (connect, then the reply),
    PROBE_WORKERS at a time: a pod that gets nothing still reports each probe instead of failing as a whole."""
    rounds = -(-len(targets) // PROBE_WORKERS)
    return rounds * 2 * PROBE_TIMEOUT + 30


def probe_group(inv: Inventory, objects: LabObjects, transport: Transport, group: list[str],
                targets: dict[str, list]) -> dict[str, list]:
    """The replies to each source's targets, for the sources of one group: the outside host's by itself, a
    node's and its pods' in one agent call on that node (ProbeFrom), the prober run once more if it is ended."""
    if group == [OUTSIDE]:
        outside = Probe(targets=targets[OUTSIDE], timeout=PROBE_TIMEOUT)
        return {OUTSIDE: call_local(outside, ("ip", "netns", "exec", f"{inv.name}-outside")).results}
    sources: list[dict] = []
    for source in group:
        kind, _, name = source.partition(":")
        sources.append({"netns": "" if kind == "node" else objects.pods[name].netns, "targets": targets[source]})
    node = source_node(objects, group[0])
    rounds = -(-len(sources) // SOURCES_AT_ONCE)
    timeout = rounds * max(batch_timeout(s["targets"]) for s in sources)
    request = ProbeFrom(sources=sources, timeout=PROBE_TIMEOUT)
    try:
        answer = call(transport, node, inv.name, request, timeout=timeout)
    except CommandKilled:  # the prober itself was ended, not answered by the network: once more
        answer = call(transport, node, inv.name, request, timeout=timeout)
    return dict(zip(group, answer.results, strict=True))


def unreachable_nodes(transport: Transport) -> dict[str, str]:
    """The nodes that do not answer a trivial command within UNREACHABLE_AFTER seconds -> when that was seen."""
    def answers(node: Node) -> None:
        transport.run(node, ["true"], timeout=UNREACHABLE_AFTER)

    seen = time.strftime("%H:%M:%S")
    return {name: seen for name, answer in transport.run_all(answers).items() if isinstance(answer, BaseException)}


def run_checks(inv: Inventory, objects: LabObjects, transport: Transport, checks: list[Check]) -> list[Outcome]:
    """Probe every check's target(s), batched per source; return the outcomes in check order. A check that
    needs a node that does not answer over SSH is not probed: it fails as `unreachable` (its failure is that
    node's, not the overlay's). A check that failed by timeout only (a connection lost while something
    converges) is probed once more, half a second later; a broken path fails again."""
    down = unreachable_nodes(transport)
    skipped: dict[str, Outcome] = {}
    for check in checks:
        lost = sorted(nodes_needed(check, inv, objects) & set(down))
        if lost:
            skipped[check.id] = Outcome(check, False, f"not probed: {lost[0]} is unreachable over SSH since "
                                                      f"{down[lost[0]]}", unreachable=lost[0])
    probed = probe_checks(inv, objects, transport, [c for c in checks if c.id not in skipped])
    return [skipped.get(c.id) or probed[c.id] for c in checks]


def probe_checks(inv: Inventory, objects: LabObjects, transport: Transport,
                 checks: list[Check]) -> dict[str, Outcome]:
    """The outcome of each of `checks` (by id), a check that timed out probed once more."""
    if not checks:
        return {}
    outcomes = probe_round(inv, objects, transport, checks)
    again = [o.check for o in outcomes if not o.ok and o.check.want[0] not in ("closed", "refused")
             and o.reason.startswith("timeout")]
    if again:
        time.sleep(0.5)
        second = {o.check.id: o for o in probe_round(inv, objects, transport, again)}
        for o in second.values():
            o.retried = True
        outcomes = [second.get(o.check.id, o) for o in outcomes]
    return {o.check.id: o for o in outcomes}


def source_node(objects: LabObjects, source: str) -> str:
    """The node a source probes from (the outside host is its own)."""
    kind, _, name = source.partition(":")
    return name if kind == "node" else node_of(objects.pods[name]) if kind == "pod" else source


def source_groups(objects: LabObjects, sources) -> dict[str, list[str]]:
    """The sources by node (the node and its pods; the outside host alone)."""
    groups: dict[str, list[str]] = {}
    for source in sources:
        groups.setdefault(source_node(objects, source), []).append(source)
    return groups


def probe_order(inv: Inventory, objects: LabObjects, transport: Transport, groups: list[str]) -> list[list[str]]:
    """The groups (by node; the outside host's its own) probed at once, wave after wave: all at once on VMs
    and SSH nodes; emulated nodes share this machine's ARP table (layers/nodes/shared_kernel.py), so their
    waves fit it, and the outside host goes last, alone."""
    if inv.emulated is None:
        return [groups]
    limit = shared_kernel_limit(inv)
    nodes = [node for node in groups if node in transport.nodes]
    per_node = Counter(p.node for p in objects.pods.values() if p.node)
    waves = probe_waves(nodes, per_node, limit) if limit is not None else [[node] for node in nodes]
    return waves + [[group] for group in groups if group not in transport.nodes]


def probe_round(inv: Inventory, objects: LabObjects, transport: Transport, checks: list[Check]) -> list[Outcome]:
    by_source: dict[str, list[Check]] = {}
    for check in checks:
        by_source.setdefault(check.source, []).append(check)
    targets = {source: [check.target for check in found for _ in range(check.count)]
               for source, found in by_source.items()}

    def work(group: list[str]) -> dict[str, list]:
        try:
            return probe_group(inv, objects, transport, group, targets)
        except Exception as exc:  # noqa: BLE001 - the group's prober failed; every check from it fails so
            return {source: [{"ok": False, "error": f"could not probe from {source}: {exc}"}] * len(targets[source])
                    for source in group}

    def forget(node: str) -> None:
        with contextlib.suppress(LabError):  # a node that does not answer: its checks say so
            call(transport, node, inv.name, FlushCaches())

    groups = source_groups(objects, by_source)
    shared = inv.emulated is not None
    replies: dict[str, list] = {}
    with ThreadPoolExecutor(max_workers=16) as pool:
        for wave in probe_order(inv, objects, transport, list(groups)):
            for found in pool.map(work, [groups[node] for node in wave]):
                replies.update(found)
            if shared:  # forget what the wave's pods learned in the shared ARP table before the next wave
                list(pool.map(forget, [node for node in wave if node in transport.nodes]))
    outcomes: dict[str, Outcome] = {}
    for source, source_checks in by_source.items():
        position = 0
        for check in source_checks:
            outcomes[check.id] = evaluate(check, replies[source][position:position + check.count])
            position += check.count
    return [outcomes[c.id] for c in checks]


@contextlib.contextmanager
def outside_server(inv: Inventory) -> Iterator[None]:
    """An HTTP server on the emulated lab's outside host (OUTSIDE_HOST:80) for the egress checks."""
    if inv.emulated is None:
        yield
        return
    server = subprocess.Popen(["ip", "netns", "exec", f"{inv.name}-outside", *local_agent_argv("serve",
                               "--name", "outside", "--tcp", "80")], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        if not wait_listening({"pid": server.pid, "tcp": [80]}):
            raise LabError(f"the outside host's server did not start (lab {inv.name}: `lab up` makes it again)")
        yield
    finally:
        server.terminate()
        server.wait()

"""Running the checks: one probe command per source (a pod, a node, the outside host) with all its
targets at once, the sources in parallel, then a verdict per check."""

from __future__ import annotations

import contextlib
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Iterator

from orchestrator.agent.pods import wait_listening
from orchestrator.agent.probes import PROBE_WORKERS
from orchestrator.agent.contract import FlushCaches, Probe
from orchestrator.core.agent import call, call_local, local_agent_argv
from orchestrator.core.errors import LabError
from orchestrator.core.model import Inventory, Node
from orchestrator.core.objects import LabObjects
from orchestrator.core.transport import CommandKilled, Transport
from orchestrator.verify.checks import Check, OUTSIDE, Outcome, evaluate, node_of, nodes_needed


PROBE_TIMEOUT = 2.0
UNREACHABLE_AFTER = 5.0  # a node that does not run `true` within this is not probed (its checks fail as such)


def batch_timeout(targets: list) -> float:
    """How long one source's probes may take when every one of them times out (connect, then the reply),
    PROBE_WORKERS at a time: a pod that gets nothing still reports each probe instead of failing as a whole."""
    rounds = -(-len(targets) // PROBE_WORKERS)
    return rounds * 2 * PROBE_TIMEOUT + 30


def probe_source(inv: Inventory, objects: LabObjects, transport: Transport, source: str, targets: list) -> list:
    request = Probe(targets=targets, timeout=PROBE_TIMEOUT)
    if source == OUTSIDE:
        return call_local(request, ("ip", "netns", "exec", f"{inv.name}-outside")).results
    kind, _, name = source.partition(":")
    if kind == "node":
        return call(transport, name, inv.name, request, timeout=batch_timeout(targets)).results
    pod = objects.pods[name]
    return call(transport, node_of(pod), inv.name, request, ("ip", "netns", "exec", pod.netns),
                timeout=batch_timeout(targets)).results


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


def source_groups(objects: LabObjects, sources) -> dict[str, list[str]]:
    """The sources by node (the node and its pods; the outside host alone), probed one group after the
    other. On one machine all namespaces share the kernel's ARP table, capped by the root namespace's
    gc_thresh3 (1024 entries, not ours to change): all pairs of 100 pods need more neighbour entries than
    that at once (every pod learns its node's other pods); one node's pods at a time need a few hundred."""
    groups: dict[str, list[str]] = {}
    for source in sources:
        kind, _, name = source.partition(":")
        node = name if kind == "node" else node_of(objects.pods[name]) if kind == "pod" else source
        groups.setdefault(node, []).append(source)
    return groups


def probe_round(inv: Inventory, objects: LabObjects, transport: Transport, checks: list[Check]) -> list[Outcome]:
    by_source: dict[str, list[Check]] = {}
    for check in checks:
        by_source.setdefault(check.source, []).append(check)

    def work(source: str):
        targets = [check.target for check in by_source[source] for _ in range(check.count)]
        try:
            try:
                return probe_source(inv, objects, transport, source, targets)
            except CommandKilled:  # the prober itself was ended, not answered by the network: once more
                return probe_source(inv, objects, transport, source, targets)
        except Exception as exc:  # noqa: BLE001 - the source itself failed; every check from it fails so
            return [{"ok": False, "error": f"could not probe from {source}: {exc}"}] * len(targets)

    replies: dict[str, list] = {}
    with ThreadPoolExecutor(max_workers=min(16, len(by_source) or 1)) as pool:
        for node, group in source_groups(objects, by_source).items():
            replies.update(zip(group, pool.map(work, group), strict=True))
            if inv.emulated is not None and node in transport.nodes:
                # Emulated nodes share this machine's ARP table (see source_groups): the neighbours this
                # node's pods just learned are forgotten before the next node's pods probe.
                with contextlib.suppress(LabError):  # a node that does not answer: its checks say so
                    call(transport, node, inv.name, FlushCaches())
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

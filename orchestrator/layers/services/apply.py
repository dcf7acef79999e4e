"""The mini service controller: endpoints from pods, kube-proxy rules and DNS records to every node.

One call of the node agent's `proxy-sync` per node, all nodes in parallel. Like kube-proxy, the
controller remembers what it sent (`SentRules`: a digest per iptables chain, in the lab's folder) and
sends a node only the chains that changed since; the node checks that it holds what the change builds
on (else it asks for everything) and loads it atomically, with one iptables-restore.
"""

from __future__ import annotations

import json
import time
from functools import partial
from dataclasses import asdict, dataclass, field
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Optional

from orchestrator.agent.contract import FlushCaches, ProxySync, SyncAnswer, chain_digest
from orchestrator.core.agent import call
from orchestrator.core.model import Inventory, Node
from orchestrator.core.objects import Endpoints, LabObjects, Service
from orchestrator.core.report import Reports
from orchestrator.core.state import LabFiles, atomic_write
from orchestrator.core.transport import FleetResult, Transport
from orchestrator.layers.policy.enforcement import render_policy
from orchestrator.layers.services.iptables import JUMPS, render_iptables
from orchestrator.layers.services.loadbalancer import adverts_of, announcers, pools_of
from orchestrator.layers.services.nftables import render_nft
from orchestrator.layers.services.plan import all_endpoints, dns_records, node_addresses


# How often the running controller has every node read its rules back and repair what was changed by
# hand (kube-proxy's periodic full sync); the syncs in between write only what changed.
VERIFY_EVERY = 30.0


def stale_udp_endpoints(old: Endpoints, new: Endpoints, services: dict[str, Service]) -> list[str]:
    """IPs of UDP endpoints that went away: their conntrack entries must go too."""
    stale: set[str] = set()
    for key, ports in old.items():
        service = services.get(key)
        udp_ports = {p.name or "" for p in (service.ports if service else []) if p.protocol == "UDP"}
        for port, eps in ports.items():
            if service is None or port in udp_ports:
                gone = {e.ip for e in eps} - {e.ip for e in new.get(key, {}).get(port, [])}
                stale |= gone
    return sorted(stale)


# table -> chain -> its rules (iptables-save form), and table -> chain -> the digest of its rules
Tables = dict[str, dict[str, list[str]]]
Digests = dict[str, dict[str, str]]


def rules_request(backend: str, services: dict[str, Service], eps: Endpoints, cluster_cidr: IPv4Network,
                  announced: Mapping[str, str] = {}, node_addresses: Mapping[str, str] = {}) -> dict[str, Any]:
    """The service rules part of a node agent's proxy-sync request, for the cluster's proxy mode."""
    request: dict[str, Any] = {"backend": backend, "jumps": [list(j) for j in JUMPS]}
    if backend == "nftables":
        request["nft"] = render_nft(services, eps, cluster_cidr, announced, node_addresses)
    else:
        request["tables"] = render_iptables(services, eps, cluster_cidr, announced, node_addresses)
    return request


@dataclass
class SentRules:
    """What the controller last sent the nodes (iptables): a digest per chain, the generation those name,
    and the generation each node confirmed holding."""

    generation: str = ""
    digests: Digests = field(default_factory=dict)
    nodes: dict[str, str] = field(default_factory=dict)  # node -> the generation it confirmed

    @classmethod
    def read(cls, path: Path) -> "SentRules":
        try:
            return cls(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError):
            return cls()

    def write(self, path: Path) -> None:
        atomic_write(path, json.dumps(asdict(self)))


def chain_digests(tables: Tables) -> Digests:
    """table -> chain -> digest of a rendered iptables rule set."""
    return {table: {chain: chain_digest(rules) for chain, rules in chains.items()} for table, chains in tables.items()}


def generation_of(digests: Digests) -> str:
    """A rule set's generation: the digest of its chain digests. Not sorted: rendering the same rules gives
    the same order, and another order would only cost a full load, never a wrong change."""
    return chain_digest([json.dumps(digests)])


def change_request(request: dict[str, Any], digests: Digests, sent: SentRules) -> dict[str, Any]:
    """The request that turns a node holding `sent` into `request` (whose chain digests are `digests`):
    the chains that differ, the chains that went, and the generation it builds on."""
    before = sent.digests
    tables = {table: {chain: request["tables"][table][chain] for chain, digest in chains.items()
                      if before.get(table, {}).get(chain) != digest} for table, chains in digests.items()}
    removed = {table: [chain for chain in chains if chain not in digests.get(table, {})]
               for table, chains in before.items()}
    return {**request, "tables": {t: c for t, c in tables.items() if c},
            "removed": {t: c for t, c in removed.items() if c}, "base": sent.generation}


def push_rules(transport: Transport, lab: str, nodes: list[Node], request: dict[str, Any],
               sent: SentRules) -> FleetResult:
    """Send every node in `nodes` the proxy-sync `request`, and update `sent`: with iptables, a node that
    holds what was sent last gets only the changes; the others, and a node that answers it holds something
    else, get everything. Returns each node's answer or exception; a failing node keeps its previous rules."""
    change: Optional[ProxySync] = None
    base, generation = sent.generation, ""
    if request["backend"] == "iptables":
        digests = chain_digests(request["tables"])
        generation = generation_of(digests)
        request = {**request, "generation": generation}
        if base and not (request.get("force") or request.get("verify")):
            change = ProxySync.from_dict(change_request(request, digests, sent))
        sent.generation, sent.digests = generation, digests
    else:
        sent.generation, sent.digests = "", {}
    changed_only = {n.name for n in nodes if change and sent.nodes.get(n.name) == base}
    whole = ProxySync.from_dict(request)

    def push(node: Node) -> SyncAnswer:
        if node.name not in changed_only:
            return call(transport, node, lab, whole)
        assert change is not None  # a node gets only the changes when there are changes to send
        answer = call(transport, node, lab, change)
        if answer.resync:
            answer = call(transport, node, lab, ProxySync.from_dict({**request, "verify": True}))
        return answer

    results = transport.run_all(push, nodes)
    sent.nodes = {name: generation for name, answer in results.items()
                  if not isinstance(answer, BaseException) and generation and answer.generation == generation}
    return results


# What the layers above add to every node's service sync, so that it stays one sync (the Gateways' proxy configs):
# (inventory, objects, the endpoints the sync stands for) -> request fields. Registered by contribute().
SyncPart = Callable[[Inventory, LabObjects, Endpoints], dict[str, Any]]
SYNC_PARTS: list[SyncPart] = []


def contribute(part: SyncPart) -> SyncPart:
    if part not in SYNC_PARTS:
        SYNC_PARTS.append(part)
    return part


def sync_request(inv: Inventory, objects: LabObjects, lost: set[str], force: bool = False,
                 verify: bool = False) -> tuple[dict[str, Any], Endpoints, dict[str, str]]:
    """The whole proxy-sync request for the lab's objects (the pods of `lost` nodes are not ready, and the
    nodes do not announce LoadBalancer addresses), the endpoints it stands for, and who announces what."""
    services = objects.services
    ready = {k: p for k, p in objects.pods.items() if p.node not in lost}
    eps = all_endpoints(services, ready)
    pools = pools_of(objects.extra)
    announced = announcers(services, pools, adverts_of(objects.extra), {n.name: n.labels for n in inv.nodes}, eps,
                           lost)
    addresses = node_addresses(inv)
    request = rules_request(inv.cluster.proxy_mode, services, eps, inv.cluster.cluster_cidr, announced, addresses)
    request.update({
        "announce": {ip: addresses[node] for ip, node in announced.items()},
        "lb_ranges": [[str(r.first), str(r.last)] for pool in pools for r in pool.ranges],
        "health_checks": health_checks(services, eps, addresses),
        "force": force,
        "verify": verify,
        "stale_udp": stale_udp_endpoints(objects.endpoints, eps, services),
        "dns_hosts": "".join(f"{ip} {name}\n" for ip, name in dns_records(services, objects.pods,
                                                                         inv.cluster.dns_domain)),
        "policy": render_policy(objects),  # NetworkPolicy rides the same sync: one atomic load per node
    })
    for part in SYNC_PARTS:
        request.update(part(inv, objects, eps))
    return request, eps, announced


def health_checks(services: Mapping[str, Service], eps: Endpoints, addresses: Mapping[str, str]) -> dict[str, Any]:
    """healthCheckNodePort -> the Service and its ready endpoints per node address, for each Local LoadBalancer
    (kube-proxy counts the endpoints of the node; an endpoint serving several ports counts once)."""
    checks = {}
    for key, service in sorted(services.items()):
        if service.health_check_node_port and service.local_traffic:
            pods = {(e.node, e.ip) for ports in eps.get(key, {}).values() for e in ports}
            local: dict[str, int] = {}
            for node, _ in pods:
                address = addresses.get(node or "")
                if address is not None:
                    local[address] = local.get(address, 0) + 1
            checks[str(service.health_check_node_port)] = {"namespace": service.namespace, "name": service.name,
                                                           "local": local}
    return checks


def sync_rules(inv: Inventory, transport: Transport, objects: LabObjects, lost_nodes: Iterable[str] = (),
         force: bool = False, verify: bool = False) -> FleetResult:
    """Recompute endpoints and rules from `objects`; push them to every node (but `lost_nodes`, whose pods
    are not ready either). Nodes write only what changed since the last sync; with `verify` they first
    read their rules and also repair what was changed by hand; with `force` they reload everything.
    Returns each node's answer (what it wrote and deleted) or exception; a node that fails keeps its
    previous rules and gets the new ones next sync."""
    lost = set(lost_nodes)
    request, stored, announced = sync_request(inv, objects, lost, force, verify)
    ledger = LabFiles.of(inv.name).sent_rules
    sent = SentRules.read(ledger)
    results = push_rules(transport, inv.name, [n for n in inv.nodes if n.name not in lost], request, sent)
    sent.write(ledger)
    objects.endpoints, objects.announced = stored, announced
    return results


def preview(inv: Inventory, transport: Transport, objects: LabObjects, nodes: Iterable[Node]) -> FleetResult:
    """What a sync would write and delete on `nodes`, changing nothing."""
    request, _, _ = sync_request(inv, objects, set())
    dry_run = ProxySync.from_dict({**request, "dry_run": True})
    return transport.run_all(lambda node: call(transport, node, inv.name, dry_run), nodes)


def answers_at_all(transport: Transport, node: Node, timeout: float) -> None:
    """Whether `node` answers within `timeout` (a NodeError when not)."""
    transport.run(node, ["true"], timeout=timeout)


def run_controller(inv: Inventory, files: LabFiles, interval: float = 0.5, once: bool = False,
                   report: Callable[[str], None] = print, stop: Optional[Callable[[], bool]] = None) -> None:
    """Keep every node's service rules current: re-sync when the lab's objects change (lab apply/delete
    from anywhere) and when a node stops or starts answering (its pods leave or rejoin the endpoints)."""
    lost: set[str] = set()
    seen_mtime = None
    verified = 0.0
    with Transport(inv.nodes) as transport:
        while True:
            probe_timeout = max(interval * 2, 1.0)
            answers = transport.run_all(partial(answers_at_all, transport, timeout=probe_timeout))
            now_lost = {name for name, answer in answers.items() if isinstance(answer, BaseException)}
            mtime = files.objects.stat().st_mtime_ns if files.objects.exists() else None
            verify = time.monotonic() - verified >= VERIFY_EVERY
            if now_lost != lost or mtime != seen_mtime or verify:
                for name in sorted(now_lost - lost):
                    report(f"node {name} is not answering: its pods leave the endpoints")
                for name in sorted(lost - now_lost):
                    report(f"node {name} answers again: its pods rejoin the endpoints")
                with files.lock():
                    objects = files.read_objects()
                    before = dict(objects.announced)
                    answers = sync_rules(inv, transport, objects, now_lost, verify=verify)
                    for line in announcement_changes(before, objects.announced, objects.services):
                        report(line)
                    failures = [str(e) for e in answers.failures.values()]
                    if verify:
                        verified = time.monotonic()
                    files.write_objects(objects)
                    seen_mtime = files.objects.stat().st_mtime_ns
                lost = now_lost
                ready = sum(len(e) for ports in objects.endpoints.values() for e in ports.values())
                failed = f"; failed: {'; '.join(failures)}" if failures else ""
                report(f"synced {len(objects.services)} service(s), {ready} endpoint(s) to "
                       f"{len(inv.nodes) - len(lost)} node(s){failed}")
            if once or (stop and stop()):
                return
            time.sleep(interval)


def announcement_changes(before: Mapping[str, str], after: Mapping[str, str],
                         services: Mapping[str, Service]) -> list[str]:
    """One line per LoadBalancer address whose announcing node changed (MetalLB's nodeAssigned events)."""
    owners = {s.load_balancer_ip: key for key, s in services.items() if s.load_balancer_ip}
    lines = []
    for address in sorted(set(before) | set(after)):
        old, new = before.get(address), after.get(address)
        if old == new:
            continue
        what = f"{address} ({owners.get(address, 'no service now')})"
        lines.append(f"{what}: announced from {new}" + (f" instead of {old}" if old else "") if new
                     else f"{what}: no longer announced by {old}")
    return lines


def report_line(answer: SyncAnswer, dry_run: bool = False) -> Optional[str]:
    """A node's proxy-sync answer as one line of its report, or None when nothing changes."""
    names = answer.written + answer.deleted
    written, removed = ("to write", "to remove") if dry_run else ("written", "removed")
    parts = [f"service rules: {len(answer.written)} {written}, {len(answer.deleted)} {removed}"
             + (f" ({', '.join(names)})" if len(names) <= 4 else "")] if names else []
    if answer.announced:
        parts.append(f"{'would announce' if dry_run else 'announces'} {', '.join(answer.announced)}")
    if answer.withdrawn:
        parts.append(f"{'would stop announcing' if dry_run else 'stopped announcing'} {', '.join(answer.withdrawn)}")
    if answer.proxies:
        parts.append(f"proxy config of Gateway {', '.join(answer.proxies)} written (served ones reloaded)")
    return "; ".join(parts) or None


def preview_service_rules(inv: Inventory, transport: Transport, files: LabFiles, reports: Reports,
                          nodes: list[Node]) -> None:
    """For --dry-run: note in `reports` what a sync would write and delete on `nodes`. A node without the
    lab's agent, or with one of another protocol (deploy replaces it), cannot say: nothing is noted."""
    for name, answer in preview(inv, transport, files.read_objects(), nodes).items():
        line = None if isinstance(answer, BaseException) else report_line(answer, dry_run=True)
        if line:
            reports[name].changes.append(line)
            reports[name].status = "would change"


def sync_service_rules(inv: Inventory, transport: Transport, files: LabFiles, reports: Reports, force: bool) -> None:
    """Bring every node's service rules up to the lab's objects and note it in `reports`: what changed (a
    switch of proxy_mode, say) or, with `force` (`lab fix`: caches flushed, everything reloaded), what the
    reload repaired."""
    if force:
        transport.run_all(lambda node: call(transport, node, inv.name, FlushCaches()))
    objects = files.read_objects()
    answers = sync_rules(inv, transport, objects, force=force)
    files.write_objects(objects)
    for name, answer in answers.items():
        report = reports[name]
        if isinstance(answer, BaseException):
            report.status, report.error = "failed", str(answer)
            continue
        if force:
            repaired = answer.repaired + [f"LoadBalancer address {a}" for a in answer.announced]
            line = f"service rules reloaded; repaired {', '.join(repaired)}" if repaired else None
        else:
            line = report_line(answer)
        if line:
            report.changes.append(line)
            report.status = "changed"

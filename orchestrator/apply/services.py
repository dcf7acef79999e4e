"""The mini service controller: endpoints from pods, kube-proxy rules and DNS records to every node.

One call of the node agent's `proxy-sync` per node, all nodes in parallel, each given the whole
desired rule set; the agent writes only the chains that changed since its last load (nothing at
all when none did), atomically, with one iptables-restore.
"""

from __future__ import annotations

import json
import time
from ipaddress import IPv4Network
from typing import Callable, Iterable, Optional

from ..model import Inventory
from ..plan.proxy import JUMPS, render_iptables
from ..plan.proxy_nft import render_nft
from ..plan.services import dns_records, endpoints
from ..state import LabFiles
from ..transport import Transport

# How often the running controller has every node read its rules back and repair what was changed by
# hand (kube-proxy's periodic full sync); the syncs in between write only what changed.
VERIFY_EVERY = 30.0
from .deploy import agent_path


def stale_udp_endpoints(old: dict, new: dict, services: dict) -> list[str]:
    """IPs of UDP endpoints that went away: their conntrack entries must go too."""
    stale = set()
    for key, ports in old.items():
        service = services.get(key)
        udp_ports = {p["name"] or "" for p in (service or {}).get("ports", []) if p["protocol"] == "UDP"}
        for port, eps in ports.items():
            if service is None or port in udp_ports:
                gone = {e["ip"] for e in eps} - {e["ip"] for e in new.get(key, {}).get(port, [])}
                stale |= gone
    return sorted(stale)


def rules_request(backend: str, services: dict, eps: dict, cluster_cidr: IPv4Network) -> dict:
    """The service rules part of a node agent's proxy-sync request, for the cluster's proxy mode."""
    request = {"backend": backend, "jumps": [list(j) for j in JUMPS]}
    if backend == "nftables":
        request["nft"] = render_nft(services, eps, cluster_cidr)
    else:
        request["tables"] = render_iptables(services, eps, cluster_cidr)
    return request


def sync(inv: Inventory, transport: Transport, objects: dict, lost_nodes: Iterable[str] = (),
         force: bool = False, verify: bool = False) -> list[str]:
    """Recompute endpoints and rules from `objects`; push them to every node (but `lost_nodes`, whose pods
    are not ready either). Nodes write only what changed since the last sync; with `verify` they first
    read their rules and also repair what was changed by hand; with `force` they reload everything.
    Returns the failures (one line per node); a node that fails keeps its previous rules and gets the
    new ones next sync."""
    lost = set(lost_nodes)
    services = objects["services"]
    ready = {k: p for k, p in objects["pods"].items() if p["node"] not in lost}
    eps = {key: endpoints(service, ready) for key, service in services.items()}
    stored = {key: {port: [e.__dict__ for e in lst] for port, lst in ports.items()} for key, ports in eps.items()}
    request = rules_request(inv.cluster.proxy_mode, services, eps, inv.cluster.cluster_cidr)
    request.update({
        "force": force,
        "verify": verify,
        "stale_udp": stale_udp_endpoints(objects.get("endpoints", {}), stored, services),
        "dns_hosts": "".join(f"{ip} {name}\n" for ip, name in dns_records(services, objects["pods"],
                                                                         inv.cluster.dns_domain)),
    })
    payload = json.dumps(request)
    results = transport.run_all(lambda node: json.loads(
        transport.run(node, ["python3", agent_path(inv.name), "proxy-sync"], stdin=payload).stdout),
        [n for n in inv.nodes if n.name not in lost])
    objects["endpoints"] = stored
    return [str(r) for r in results.values() if isinstance(r, BaseException)]


def run_controller(inv: Inventory, files: LabFiles, interval: float = 0.5, once: bool = False,
                   report: Callable[[str], None] = print, stop: Optional[Callable[[], bool]] = None) -> None:
    """Keep every node's service rules current: re-sync when the lab's objects change (lab apply/delete
    from anywhere) and when a node stops or starts answering (its pods leave or rejoin the endpoints)."""
    lost: set = set()
    seen_mtime = None
    verified = 0.0
    with Transport(inv.nodes) as transport:
        while True:
            probe_timeout = max(interval * 2, 1.0)
            answers = transport.run_all(lambda node: transport.run(node, ["true"], timeout=probe_timeout))
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
                    failures = sync(inv, transport, objects, now_lost, verify=verify)
                    if verify:
                        verified = time.monotonic()
                    files.write_objects(objects)
                    seen_mtime = files.objects.stat().st_mtime_ns
                lost = now_lost
                ready = sum(len(e) for ports in objects["endpoints"].values() for e in ports.values())
                report(f"synced {len(objects['services'])} service(s), {ready} endpoint(s) to "
                       f"{len(inv.nodes) - len(lost)} node(s)" + (f"; failed: {'; '.join(failures)}" if failures else ""))
            if once or (stop and stop()):
                return
            time.sleep(interval)

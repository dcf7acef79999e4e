"""The mini service controller: endpoints from pods, kube-proxy rules and DNS records to every node.

One call of the node agent's `proxy-sync` per node, all nodes in parallel, each given the whole
desired rule set; the agent writes only the chains that changed since its last load (nothing at
all when none did), atomically, with one iptables-restore.
"""

from __future__ import annotations

import json

from ..model import Inventory
from ..plan.proxy import JUMPS, render_iptables
from ..plan.services import dns_records, endpoints
from ..transport import Transport
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


def sync(inv: Inventory, transport: Transport, objects: dict) -> list[str]:
    """Recompute endpoints and rules from `objects`; push them to every node. Returns the failures
    (one line per node); a node that fails keeps its previous rules and gets the new ones next sync."""
    services = objects["services"]
    eps = {key: endpoints(service, objects["pods"]) for key, service in services.items()}
    stored = {key: {port: [e.__dict__ for e in lst] for port, lst in ports.items()} for key, ports in eps.items()}
    request = {
        "tables": render_iptables(services, eps, inv.cluster.cluster_cidr),
        "jumps": [list(j) for j in JUMPS],
        "stale_udp": stale_udp_endpoints(objects.get("endpoints", {}), stored, services),
        "dns_hosts": "".join(f"{ip} {name}\n" for ip, name in dns_records(services, objects["pods"],
                                                                         inv.cluster.dns_domain)),
    }
    payload = json.dumps(request)
    results = transport.run_all(lambda node: json.loads(
        transport.run(node, ["python3", agent_path(inv.name), "proxy-sync"], stdin=payload).stdout))
    objects["endpoints"] = stored
    return [str(r) for r in results.values() if isinstance(r, BaseException)]

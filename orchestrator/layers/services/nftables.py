"""The service rules as one nftables table, `ip lab-proxy` (pure). The scalable backend.

kube-proxy's nftables mode already looks services up in a verdict map (`ip daddr . meta l4proto .
th dport vmap @service-ips`), so the lookup does not grow with the number of services as iptables'
linear KUBE-SERVICES chain does; but it still writes a chain per service and per endpoint, and
loading 10,000 services that way takes ~44 s on this kind of machine (DESIGN.md). Here no chain
depends on a service: the service map jumps to `lb-<N>`, one chain per endpoint *count*, which DNATs
through one `backends` map keyed by service and slot (`numgen random mod N`). Adding a service or
moving an endpoint is then only map elements, which the node agent changes in place. Services with
ClientIP affinity use kube-proxy's shape (a chain per endpoint with a dynamic set of clients).

The desired state is data: chains (name -> lines), and sets/maps (name -> declaration, elements);
the node agent turns it into `nft -f` input (agent/nftables.py: nft_table_text / nft_element_changes).
"""

from __future__ import annotations

from ipaddress import IPv4Network
from typing import Any, Mapping

from orchestrator.agent.contract import NFT_TABLE
from orchestrator.core.objects import Endpoints, Service
from orchestrator.layers.services.iptables import MASQ_MARK, local_endpoints, port_proto_hash, service_port_name


TABLE = NFT_TABLE
KEY = "ip daddr . meta l4proto . th dport"
NODEPORT_KEY = "meta l4proto . th dport"


def _chain_name(prefix: str, text: str) -> str:
    return f"{prefix}-{port_proto_hash(text)[:12].lower()}"


def render_nft(services: dict[str, Service], endpoints: Endpoints, cluster_cidr: IPv4Network,
               announced: Mapping[str, str] = {}, node_addresses: Mapping[str, str] = {}) -> dict[str, Any]:
    """{"chains": {name: [lines]}, "sets": {name: [declaration, [elements]]}} for the lab-proxy table.

    A LoadBalancer address is one more key of the service map: with externalTrafficPolicy Cluster it leads to
    every endpoint (traffic from outside the cluster masqueraded, as to a ClusterIP); with Local only to the
    endpoints of the node announcing it, unmasqueraded. A Local NodePort is keyed by each node's own address,
    so that the same table on every node sends a packet only to the endpoints of the node it was sent to."""
    service_ips: dict[str, str] = {}
    backends: dict[str, str] = {}
    nodeports: dict[str, str] = {}
    nodeport_backends: dict[str, str] = {}
    hairpin: set[str]  # "<ip> . <ip>" of every endpoint, which may reach itself through its service
    no_endpoints, no_endpoint_nodeports, hairpin, external = {}, {}, set(), set()
    lb_addresses = sorted({s.load_balancer_ip for s in services.values() if s.load_balancer_ip})
    chains: dict[str, list[str]] = {
        "services": [f"ip saddr != {cluster_cidr} {KEY} @service-keys meta mark set meta mark | {MASQ_MARK}",
                     f"{KEY} vmap @service-ips",
                     f"fib daddr type local {NODEPORT_KEY} vmap @service-nodeports"],
        "nat-prerouting": ["type nat hook prerouting priority dstnat; policy accept;", "jump services"],
        "nat-output": ["type nat hook output priority -100; policy accept;", "jump services"],
        "nat-postrouting": ["type nat hook postrouting priority srcnat; policy accept;",
                            "ct status dnat ip saddr . ip daddr @hairpin masquerade fully-random",
                            f"meta mark & {MASQ_MARK} == {MASQ_MARK} meta mark set meta mark ^ {MASQ_MARK} "
                            "masquerade fully-random"],
        "filter-forward": ["type filter hook forward priority -110; policy accept;",
                           f"ct state new {KEY} vmap @no-endpoint-services"],
        "filter-output": ["type filter hook output priority -110; policy accept;",
                          f"ct state new {KEY} vmap @no-endpoint-services"],
        "filter-input": ["type filter hook input priority -110; policy accept;",
                         f"ct state new {KEY} vmap @no-endpoint-services",
                         f"ct state new fib daddr type local {NODEPORT_KEY} vmap @no-endpoint-nodeports",
                         # a LoadBalancer address is its announcing node's own: only the service's ports answer
                         "ct state new ip daddr @load-balancer-ips goto reject-packet"],
        "reject-packet": ["reject with icmp type port-unreachable"],
        "drop-packet": ["drop"],
        "mark-for-masquerade": [f"meta mark set meta mark | {MASQ_MARK}"],
    }
    counts = set()
    affinity_sets: dict[str, int] = {}
    for key in sorted(services):
        service = services[key]
        for port in service.ports:
            proto = port.protocol.lower()
            vip = f"{service.cluster_ip} . {proto} . {port.port}"
            np = f"{proto} . {port.node_port}" if port.node_port else None
            eps = endpoints.get(key, {}).get(port.name or "", [])
            lb = f"{service.load_balancer_ip} . {proto} . {port.port}" if service.load_balancer_ip else None
            if service.local_traffic and service.type != "ClusterIP":
                if np:  # reached a node without an endpoint of its own (those with one DNAT before input)
                    no_endpoint_nodeports[np] = "goto drop-packet"
                by_node = local_endpoints(eps, node_addresses)
                keyed = [(f"{node_addresses[node]} . {proto} . {port.node_port}", mine)
                         for node, mine in by_node.items() if np]
                if lb and announced.get(str(service.load_balancer_ip)) in by_node:
                    keyed.append((lb, by_node[announced[str(service.load_balancer_ip)]]))
                for local_key, mine in keyed:
                    counts.add(len(mine))
                    service_ips[local_key] = f"goto lb-{len(mine)}"
                    backends.update((f"{local_key} . {slot}", f"{ep.ip} . {ep.port}") for slot, ep in enumerate(mine))
                np = lb = None  # Local: not through the NodePort map, nor to every endpoint
            if not eps:
                no_endpoints[vip] = "goto reject-packet"
                if np:
                    no_endpoint_nodeports[np] = "goto reject-packet"
                continue
            external.add(vip)
            hairpin.update(f"{ep.ip} . {ep.ip}" for ep in eps)
            if service.session_affinity == "ClientIP":
                name = service_port_name(service, port) + proto
                svc = _chain_name("svc", name)
                picks = []
                for i, ep in enumerate(eps):
                    ep_chain = _chain_name("ep", name + ep.address)
                    affinity_sets[f"{ep_chain}-clients"] = service.affinity_timeout
                    chains[ep_chain] = [f"update @{ep_chain}-clients {{ ip saddr }}",
                                        f"meta l4proto {proto} dnat to {ep.address}"]
                    picks.append(f"{i} : goto {ep_chain}")
                chains[svc] = [f"ip saddr @{_chain_name('ep', name + ep.address)}-clients goto "
                               f"{_chain_name('ep', name + ep.address)}" for ep in eps]
                chains[svc].append(f"numgen random mod {len(eps)} vmap {{ {', '.join(picks)} }}")
                service_ips[vip] = f"goto {svc}"
                if np:
                    nodeports[np] = f"goto {svc}"
                if lb:
                    service_ips[lb] = f"goto {svc}"
                    external.add(lb)
                continue
            counts.add(len(eps))
            for address in [vip] + ([lb] if lb else []):
                service_ips[address] = f"goto lb-{len(eps)}"
                backends.update((f"{address} . {slot}", f"{ep.ip} . {ep.port}") for slot, ep in enumerate(eps))
            if lb:
                external.add(lb)  # from outside the cluster: masqueraded, as traffic to a ClusterIP is
            for slot, ep in enumerate(eps):
                if np:
                    nodeport_backends[f"{np} . {slot}"] = f"{ep.ip} . {ep.port}"
            if np:
                nodeports[np] = f"goto np-lb-{len(eps)}"
    # lb-1..lb-8 always exist, so that scaling a service (within 8 endpoints) changes only elements
    for n in sorted(counts | set(range(1, 9))):
        chains[f"lb-{n}"] = [f"dnat ip to {KEY} . numgen random mod {n} map @backends"]
        chains[f"np-lb-{n}"] = ["jump mark-for-masquerade",
                                f"dnat ip to {NODEPORT_KEY} . numgen random mod {n} map @nodeport-backends"]
    sets = {
        "service-ips": [f"typeof {KEY} : verdict", service_ips],
        "service-keys": [f"typeof {KEY}", sorted(external)],
        "service-nodeports": [f"typeof {NODEPORT_KEY} : verdict", nodeports],
        "backends": [f"typeof {KEY} . numgen random mod 1 : ip daddr . th dport", backends],
        "nodeport-backends": [f"typeof {NODEPORT_KEY} . numgen random mod 1 : ip daddr . th dport",
                              nodeport_backends],
        "no-endpoint-services": [f"typeof {KEY} : verdict", no_endpoints],
        "no-endpoint-nodeports": [f"typeof {NODEPORT_KEY} : verdict", no_endpoint_nodeports],
        "hairpin": ["typeof ip saddr . ip daddr", sorted(hairpin)],
        "load-balancer-ips": ["typeof ip daddr", lb_addresses],
    }
    for name, timeout in affinity_sets.items():
        sets[name] = [f"type ipv4_addr; flags dynamic,timeout; timeout {timeout}s", []]
    return {"chains": chains, "sets": sets}

"""The rules kube-proxy's iptables mode would write for the lab's services (pure).

Chain names are kube-proxy's own (KUBE-SVC-/KUBE-SEP-/KUBE-EXT- + 16 characters of base32(sha256)),
so a student can compare them with a real cluster: `default/kubernetes:https` over tcp is
KUBE-SVC-NPX46M4PTMTKRN6Y here too. The result maps (table, chain) to that chain's rules in
iptables-save form; the node agent loads only the chains that changed (like kube-proxy's partial
sync), with one `iptables-restore --noflush` per node.
"""

from __future__ import annotations

import base64
import hashlib
from ipaddress import IPv4Network
from typing import Mapping

from orchestrator.core.manifests import ServicePort
from orchestrator.core.objects import Endpoint, Endpoints, Service


MASQ_MARK = "0x4000"
NAT_BASE = ("KUBE-SERVICES", "KUBE-NODEPORTS", "KUBE-POSTROUTING", "KUBE-MARK-MASQ")
FILTER_BASE = ("KUBE-SERVICES", "KUBE-EXTERNAL-SERVICES")
JUMPS = (
    ("nat", "PREROUTING", '-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES'),
    ("nat", "OUTPUT", '-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES'),
    ("nat", "POSTROUTING", '-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING'),
    ("filter", "INPUT", '-A INPUT -m conntrack --ctstate NEW -m comment --comment "kubernetes service portals" '
                        '-j KUBE-SERVICES'),
    ("filter", "INPUT", '-A INPUT -m conntrack --ctstate NEW -m comment --comment "kubernetes externally-visible '
                        'service portals" -j KUBE-EXTERNAL-SERVICES'),
    ("filter", "FORWARD", '-A FORWARD -m conntrack --ctstate NEW -m comment --comment "kubernetes service portals" '
                          '-j KUBE-SERVICES'),
    ("filter", "OUTPUT", '-A OUTPUT -m conntrack --ctstate NEW -m comment --comment "kubernetes service portals" '
                         '-j KUBE-SERVICES'),
)


def port_proto_hash(text: str) -> str:
    return base64.b32encode(hashlib.sha256(text.encode()).digest()).decode()[:16]


def service_port_name(service: Service, port: ServicePort) -> str:
    """kube-proxy's ServicePortName: "ns/name" plus ":port-name" when the port has a name."""
    return service.key + (f":{port.name}" if port.name else "")


def svc_chain(service: Service, port: ServicePort) -> str:
    return "KUBE-SVC-" + port_proto_hash(service_port_name(service, port) + port.protocol.lower())


def ext_chain(service: Service, port: ServicePort) -> str:
    return "KUBE-EXT-" + port_proto_hash(service_port_name(service, port) + port.protocol.lower())


def svl_chain(service: Service, port: ServicePort, node: str) -> str:
    """The chain of one node's own endpoints of a service port (externalTrafficPolicy Local). kube-proxy writes
    one KUBE-SVL- chain per service port, different on every node; the lab loads the same rules on every node,
    so each node's local endpoints get a chain named after the node as well, chosen by the address the packet
    was sent to (the node's own, or the LoadBalancer address the node announces)."""
    return "KUBE-SVL-" + port_proto_hash(service_port_name(service, port) + port.protocol.lower() + "@" + node)


def local_endpoints(eps: list[Endpoint], node_addresses: Mapping[str, str]) -> dict[str, list[Endpoint]]:
    """node -> its endpoints among `eps`, for the nodes of `node_addresses`."""
    by_node: dict[str, list[Endpoint]] = {}
    for ep in eps:
        if ep.node is not None and ep.node in node_addresses:
            by_node.setdefault(ep.node, []).append(ep)
    return dict(sorted(by_node.items()))


def sep_chain(service: Service, port: ServicePort, endpoint: Endpoint) -> str:
    return "KUBE-SEP-" + port_proto_hash(service_port_name(service, port) + port.protocol.lower()
                                         + endpoint.address)


def probability(n: int, i: int) -> str:
    """The chance the i-th of n endpoint rules takes a packet that reached it: 1/(n-i), so that every
    endpoint ends up with 1/n. Written as iptables-save prints it (the kernel keeps it as a fraction of
    2^31, shown with 11 decimals: 1/3 is 0.33333333349), so rules read back compare equal as text."""
    scaled = int(0x80000000 / (n - i) + 0.5)  # libxt_statistic's lround(0x80000000 * p)
    return f"{scaled / 0x80000000:.11f}"


def render_iptables(services: dict[str, Service], endpoints: Endpoints, cluster_cidr: IPv4Network,
                    announced: Mapping[str, str] = {},
                    node_addresses: Mapping[str, str] = {}) -> dict[str, dict[str, list[str]]]:
    """(table, chain) -> rules for every service port; `endpoints` maps service key -> port name -> list;
    `announced` a LoadBalancer address -> its announcing node, `node_addresses` node -> address (both for
    externalTrafficPolicy Local)."""
    nat: dict[str, list[str]] = {chain: [] for chain in NAT_BASE}
    filt: dict[str, list[str]] = {chain: [] for chain in FILTER_BASE}
    # kube-proxy writes --or-mark / --xor-mark; these are the same targets as iptables-save prints them
    nat["KUBE-MARK-MASQ"] = [f"-A KUBE-MARK-MASQ -j MARK --set-xmark {MASQ_MARK}/{MASQ_MARK}"]
    nat["KUBE-POSTROUTING"] = [
        f"-A KUBE-POSTROUTING -m mark ! --mark {MASQ_MARK}/{MASQ_MARK} -j RETURN",
        f"-A KUBE-POSTROUTING -j MARK --set-xmark {MASQ_MARK}/0x0",
        '-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" '
        "-j MASQUERADE --random-fully",
    ]
    for key in sorted(services):
        service = services[key]
        for port in service.ports:
            name = service_port_name(service, port)
            proto = port.protocol.lower()
            cip = service.cluster_ip
            eps = endpoints.get(key, {}).get(port.name or "", [])
            match = f"-d {cip}/32 -p {proto}"
            local = service.local_traffic and service.type != "ClusterIP"
            if local and port.node_port:
                filt["KUBE-EXTERNAL-SERVICES"].append(
                    f'-A KUBE-EXTERNAL-SERVICES -p {proto} -m comment --comment "{name} has no local endpoints" '
                    f"-m addrtype --dst-type LOCAL -m {proto} --dport {port.node_port} -j DROP")
            if not eps:
                filt["KUBE-SERVICES"].append(
                    f'-A KUBE-SERVICES {match} -m comment --comment "{name} has no endpoints" -m {proto} '
                    f"--dport {port.port} -j REJECT --reject-with icmp-port-unreachable")
                if port.node_port:
                    filt["KUBE-EXTERNAL-SERVICES"].append(
                        f'-A KUBE-EXTERNAL-SERVICES -p {proto} -m comment --comment "{name} has no endpoints" '
                        f"-m addrtype --dst-type LOCAL -m {proto} --dport {port.node_port} "
                        "-j REJECT --reject-with icmp-port-unreachable")
                continue
            svc = svc_chain(service, port)
            nat["KUBE-SERVICES"].append(f'-A KUBE-SERVICES {match} -m comment --comment "{name} cluster IP" '
                                        f"-m {proto} --dport {port.port} -j {svc}")
            rules = [f'-A {svc} ! -s {cluster_cidr} {match} -m comment --comment "{name} cluster IP" '
                     f"-m {proto} --dport {port.port} -j KUBE-MARK-MASQ"]
            affinity = service.session_affinity == "ClientIP"
            if affinity:
                rules += [f'-A {svc} -m comment --comment "{name} -> {ep.address}" -m recent --rcheck --seconds '
                          f"{service.affinity_timeout} --reap --name {sep_chain(service, port, ep)} "
                          f"--mask 255.255.255.255 --rsource -j {sep_chain(service, port, ep)}" for ep in eps]
            for i, ep in enumerate(eps):
                sep = sep_chain(service, port, ep)
                chance = f" -m statistic --mode random --probability {probability(len(eps), i)}" \
                    if i < len(eps) - 1 else ""
                rules.append(f'-A {svc} -m comment --comment "{name} -> {ep.address}"{chance} -j {sep}')
                remember = f" -m recent --set --name {sep} --mask 255.255.255.255 --rsource" if affinity else ""
                nat[sep] = [f'-A {sep} -s {ep.ip}/32 -m comment --comment "{name}" -j KUBE-MARK-MASQ',
                            f'-A {sep} -p {proto} -m comment --comment "{name}"{remember} -m {proto} '
                            f"-j DNAT --to-destination {ep.address}"]
            nat[svc] = rules
            lb_ip = service.load_balancer_ip
            if not (port.node_port or lb_ip):
                continue
            ext = ext_chain(service, port)
            if port.node_port:
                nat["KUBE-NODEPORTS"].append(f'-A KUBE-NODEPORTS -p {proto} -m comment --comment "{name}" '
                                             f"-m {proto} --dport {port.node_port} -j {ext}")
            if lb_ip:
                nat["KUBE-SERVICES"].append(f'-A KUBE-SERVICES -d {lb_ip}/32 -p {proto} -m comment --comment '
                                            f'"{name} loadbalancer IP" -m {proto} --dport {port.port} -j {ext}')
            if not local:
                nat[ext] = [f'-A {ext} -m comment --comment "masquerade traffic for {name} external destinations" '
                            "-j KUBE-MARK-MASQ",
                            f"-A {ext} -j {svc}"]
                continue
            # Local: a packet addressed to node N (or to the address N announces) goes only to N's endpoints
            nat[ext] = [f'-A {ext} -s {cluster_cidr} -m comment --comment "pod traffic for {name} external '
                        f'destinations" -j {svc}',
                        f'-A {ext} -m comment --comment "masquerade LOCAL traffic for {name} external destinations" '
                        "-m addrtype --src-type LOCAL -j KUBE-MARK-MASQ",
                        f'-A {ext} -m comment --comment "route LOCAL traffic for {name} external destinations" '
                        f"-m addrtype --src-type LOCAL -j {svc}"]
            by_node = local_endpoints(eps, node_addresses)
            for node, mine in by_node.items():
                svl = svl_chain(service, port, node)
                if port.node_port:
                    nat[ext].append(f'-A {ext} -d {node_addresses[node]}/32 -m comment --comment "{name} endpoints '
                                    f'of {node}" -j {svl}')
                if lb_ip and announced.get(lb_ip) == node:
                    nat[ext].append(f'-A {ext} -d {lb_ip}/32 -m comment --comment "{name} endpoints of {node}, '
                                    f'which announces {lb_ip}" -j {svl}')
                nat[svl] = [f'-A {svl} -m comment --comment "{name} -> {ep.address}"'
                            + (f" -m statistic --mode random --probability {probability(len(mine), i)}"
                               if i < len(mine) - 1 else "") + f" -j {sep_chain(service, port, ep)}"
                            for i, ep in enumerate(mine)]
        if service.load_balancer_ip:  # the address is the announcing node's own: nothing else may answer on it
            filt["KUBE-EXTERNAL-SERVICES"].append(
                f"-A KUBE-EXTERNAL-SERVICES -d {service.load_balancer_ip}/32 -m comment --comment "
                f'"{service.key} answers only on its ports at its loadbalancer IP" '
                "-j REJECT --reject-with icmp-port-unreachable")
    nat["KUBE-SERVICES"].append(
        '-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule '
        'in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS')
    return {"nat": nat, "filter": filt}

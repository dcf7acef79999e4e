"""Services as data: ClusterIP and NodePort allocation, endpoints from pod labels, DNS records (pure)."""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, ip_address
from typing import Optional

from ..errors import InputError
from ..manifests import Manifest, fmt_labels

NODE_PORTS = range(30000, 32768)
DNS_SERVICE = "kube-system/kube-dns"


def dns_ip(service_cidr: IPv4Network) -> IPv4Address:
    """The cluster DNS address: the 10th of the service range (10.96.0.10 by default)."""
    return service_cidr[10]


def reserved_ips(service_cidr: IPv4Network) -> set:
    """.0 and the broadcast; .1 (the API server's `kubernetes` service on a real cluster); the DNS address."""
    return {service_cidr[0], service_cidr[1], service_cidr[-1], dns_ip(service_cidr)}


@dataclass(frozen=True)
class Endpoint:
    ip: str
    port: int
    node: str
    pod: str

    @property
    def address(self) -> str:
        return f"{self.ip}:{self.port}"


def service_record(m: Manifest, services: dict, service_cidr: IPv4Network, now: str) -> dict:
    """The stored form of Service `m`, with its ClusterIP and NodePorts kept, taken as asked, or allocated."""
    spec = m.service
    old = services.get(m.key)
    others = {k: v for k, v in services.items() if k != m.key}
    taken_ips = {v["cluster_ip"]: k for k, v in others.items()}
    if spec.cluster_ip:
        try:
            wanted = ip_address(spec.cluster_ip)
        except ValueError:
            raise InputError(f"{m.source}: spec.clusterIP: {spec.cluster_ip!r} is not an IP address; give an "
                             f"address of {service_cidr} or leave it out") from None
        if wanted not in service_cidr:
            raise InputError(f"{m.source}: spec.clusterIP: {wanted} is outside the service CIDR {service_cidr}; "
                             f"give an address of {service_cidr} or leave it out")
        if str(wanted) in taken_ips:
            raise InputError(f"{m.source}: spec.clusterIP: {wanted} is taken by service {taken_ips[str(wanted)]}; "
                             "give another address or leave it out")
        if wanted in reserved_ips(service_cidr) and not (m.key == DNS_SERVICE and wanted == dns_ip(service_cidr)):
            raise InputError(f"{m.source}: spec.clusterIP: {wanted} is reserved; give another address or leave it out")
        cluster_ip = str(wanted)
    elif old:
        cluster_ip = old["cluster_ip"]
    else:
        cluster_ip = next((str(a) for a in service_cidr.hosts() if str(a) not in taken_ips
                           and a not in reserved_ips(service_cidr)), None)
        if cluster_ip is None:
            raise InputError(f"{m.source}: no free address left in the service CIDR {service_cidr}")
    taken_ports = {p["node_port"]: k for k, v in others.items() for p in v["ports"] if p.get("node_port")}
    old_ports = {(p["port"], p["protocol"]): p.get("node_port") for p in (old or {}).get("ports", [])}
    ports = []
    for i, p in enumerate(spec.ports):
        node_port = None
        if spec.type == "NodePort":
            node_port = p.node_port or old_ports.get((p.port, p.protocol))
            if node_port in taken_ports:
                raise InputError(f"{m.source}: spec.ports[{i}].nodePort: {node_port} is already used by service "
                                 f"{taken_ports[node_port]}; give another port from 30000-32767 or leave it out")
            if node_port is None:
                used = set(taken_ports) | {q["node_port"] for q in ports if q["node_port"]}
                node_port = next(n for n in NODE_PORTS if n not in used)
            taken_ports[node_port] = m.key
        ports.append({"name": p.name, "protocol": p.protocol, "port": p.port, "target_port": p.target_port,
                      "node_port": node_port})
    return {"name": m.name, "namespace": m.namespace, "type": spec.type, "cluster_ip": cluster_ip, "ports": ports,
            "selector": dict(m.selector), "session_affinity": spec.session_affinity,
            "affinity_timeout": spec.affinity_timeout, "labels": dict(m.labels),
            "created": (old or {}).get("created", now)}


def selected(service: dict, pod: dict) -> bool:
    """Does the service's selector pick `pod`? (An empty selector picks none: no managed endpoints.)"""
    return (bool(service["selector"]) and pod["namespace"] == service["namespace"]
            and all(pod["labels"].get(k) == v for k, v in service["selector"].items()))


def target_port(port: dict, pod: dict) -> Optional[int]:
    """The pod's port for a service port: the number, or the containerPort named so (None: not declared)."""
    target = port["target_port"]
    if isinstance(target, int):
        return target
    for p in pod.get("ports", []):
        if p.get("name") == target and p["protocol"] == port["protocol"]:
            return p["container_port"]
    return None


def endpoints(service: dict, pods: dict) -> dict:
    """Per service port name ("" when unnamed): the ready endpoints, ordered by address."""
    result = {}
    for port in service["ports"]:
        eps = []
        for pod in pods.values():
            if pod.get("ip") and selected(service, pod):
                number = target_port(port, pod)
                if number is not None:
                    eps.append(Endpoint(pod["ip"], number, pod["node"], pod["name"]))
        result[port["name"] or ""] = sorted(eps, key=lambda e: tuple(int(x) for x in e.ip.split(".")) + (e.port,))
    return result


def check_target_ports(service: dict, source: str, candidates: list[dict]) -> None:
    """A named targetPort must be declared by some pod the selector picks (when it picks any)."""
    picked = [p for p in candidates if selected(service, p)]
    for i, port in enumerate(service["ports"]):
        if isinstance(port["target_port"], str) and picked and all(target_port(port, p) is None for p in picked):
            raise InputError(f"{source}: spec.ports[{i}].targetPort: no container of the pods selected by "
                             f"{fmt_labels(service['selector'])} declares a port named {port['target_port']!r}; "
                             "name the containerPort so, or give a number")


def dns_records(services: dict, pods: dict, domain: str) -> list[tuple[str, str]]:
    """(address, name) for every service (<svc>.<ns>.svc.<domain>) and pod (<a-b-c-d>.<ns>.pod.<domain>)."""
    records = [(s["cluster_ip"], f"{s['name']}.{s['namespace']}.svc.{domain}") for s in services.values()]
    records += [(p["ip"], f"{p['ip'].replace('.', '-')}.{p['namespace']}.pod.{domain}")
                for p in pods.values() if p.get("ip")]
    return sorted(records)

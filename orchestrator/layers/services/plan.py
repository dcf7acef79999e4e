"""Services as data: ClusterIP and NodePort allocation, endpoints from pod labels, DNS records (pure)."""

from __future__ import annotations

from dataclasses import replace
from ipaddress import IPv4Address, IPv4Network, ip_address
from collections.abc import Iterable, Mapping
from typing import Optional

from orchestrator.core.errors import InputError
from orchestrator.core.manifests import NODE_PORT_TYPES, Manifest, ServicePort, fmt_labels
from orchestrator.core.model import Inventory, dns_ip
from orchestrator.core.objects import Endpoint, Endpoints, Pod, Service


NODE_PORTS = range(30000, 32768)
DNS_SERVICE = "kube-system/kube-dns"


def reserved_ips(service_cidr: IPv4Network) -> set[IPv4Address]:
    """.0 and the broadcast; .1 (the API server's `kubernetes` service on a real cluster); the DNS address."""
    return {service_cidr[0], service_cidr[1], service_cidr[-1], dns_ip(service_cidr)}


class AddressBook:
    """The ClusterIPs and NodePorts the services hold, kept current while many services are recorded in one
    pass: lookups are dictionary lookups and the lowest free address is found from a cursor, so recording
    10,000 services is linear, not a scan of every service per service."""

    def __init__(self, services: dict[str, Service], service_cidr: IPv4Network):
        self.cidr = service_cidr
        self.reserved = reserved_ips(service_cidr)
        self.ips = {v.cluster_ip: k for k, v in services.items()}
        self.node_ports = {port: k for k, v in services.items() for port in node_ports_of(v)}
        self._ip_cursor = int(service_cidr.network_address)
        self._port_cursor = NODE_PORTS.start

    def ip_owner(self, ip: str, key: str) -> Optional[str]:
        """The other service holding `ip`, if any."""
        owner = self.ips.get(ip)
        return owner if owner != key else None

    def port_owner(self, port: int, key: str) -> Optional[str]:
        """The other service holding NodePort `port`, if any."""
        owner = self.node_ports.get(port)
        return owner if owner != key else None

    def free_ip(self) -> Optional[str]:
        """The lowest address of the service CIDR nobody holds and that is not reserved."""
        last = int(self.cidr.broadcast_address)
        while self._ip_cursor < last:
            candidate = IPv4Address(self._ip_cursor)
            if str(candidate) not in self.ips and candidate not in self.reserved:
                return str(candidate)
            self._ip_cursor += 1
        return None

    def free_node_port(self, also_taken: set[int]) -> Optional[int]:
        """The lowest NodePort nobody holds and not in `also_taken` (ports the service being recorded takes)."""
        while self._port_cursor < NODE_PORTS.stop and self._port_cursor in self.node_ports:
            self._port_cursor += 1
        port = self._port_cursor
        while port < NODE_PORTS.stop and (port in self.node_ports or port in also_taken):
            port += 1
        return port if port < NODE_PORTS.stop else None

    def hold(self, key: str, old: Optional[Service], record: Service) -> None:
        """`key` now holds what `record` names, and no longer what `old` named but `record` does not."""
        kept_ports = set(node_ports_of(record))
        for ip in [old.cluster_ip] if old and old.cluster_ip != record.cluster_ip else []:
            if self.ips.get(ip) == key:
                del self.ips[ip]
                self._ip_cursor = min(self._ip_cursor, int(IPv4Address(ip)))
        for port in [port for port in (node_ports_of(old) if old else []) if port not in kept_ports]:
            if self.node_ports.get(port) == key:
                del self.node_ports[port]
                self._port_cursor = min(self._port_cursor, port)
        self.ips[record.cluster_ip] = key
        self.node_ports.update((port, key) for port in kept_ports)


def node_ports_of(service: Service) -> list[int]:
    """Every NodePort a service holds: its ports' and its health check's."""
    return [p.node_port for p in service.ports if p.node_port] + (
        [service.health_check_node_port] if service.health_check_node_port else [])


def service_record(m: Manifest, old: Optional[Service], book: AddressBook, now: str) -> Service:
    """The stored form of Service `m` (`old`: its stored form so far), with its ClusterIP and NodePorts kept,
    taken as asked, or allocated from `book`, which then holds them."""
    spec = m.service
    assert spec is not None
    service_cidr = book.cidr
    if spec.cluster_ip:
        try:
            wanted = ip_address(spec.cluster_ip)
        except ValueError:
            raise InputError(f"{m.source}: spec.clusterIP: {spec.cluster_ip!r} is not an IP address; give an "
                             f"address of {service_cidr} or leave it out") from None
        if wanted not in service_cidr:
            raise InputError(f"{m.source}: spec.clusterIP: {wanted} is outside the service CIDR {service_cidr}; "
                             f"give an address of {service_cidr} or leave it out")
        if book.ip_owner(str(wanted), m.key):
            raise InputError(f"{m.source}: spec.clusterIP: {wanted} is taken by service "
                             f"{book.ip_owner(str(wanted), m.key)}; give another address or leave it out")
        if wanted in book.reserved and not (m.key == DNS_SERVICE and wanted == dns_ip(service_cidr)):
            raise InputError(f"{m.source}: spec.clusterIP: {wanted} is reserved; give another address or leave it out")
        cluster_ip = str(wanted)
    elif old:
        cluster_ip = old.cluster_ip
    else:
        free = book.free_ip()
        if free is None:
            raise InputError(f"{m.source}: no free address left in the service CIDR {service_cidr}")
        cluster_ip = free
    old_ports = {(p.port, p.protocol): p.node_port for p in (old.ports if old else [])}
    # NodePorts asked for (or kept) first, so that allocating the others cannot take one of them
    node_ports: list[Optional[int]] = [None] * len(spec.ports)
    if spec.type == "NodePort" or (spec.type == "LoadBalancer" and spec.allocate_node_ports):
        for i, p in enumerate(spec.ports):
            node_port = p.node_port or old_ports.get((p.port, p.protocol))
            if node_port is None:
                continue
            if node_port in node_ports:
                raise InputError(f"{m.source}: spec.ports[{i}].nodePort: {node_port} is given to another port of "
                                 "this service too; give each port its own or leave it out")
            if book.port_owner(node_port, m.key):
                raise InputError(f"{m.source}: spec.ports[{i}].nodePort: {node_port} is already used by service "
                                 f"{book.port_owner(node_port, m.key)}; give another port from 30000-32767 or "
                                 "leave it out")
            node_ports[i] = node_port
        for i in [i for i, port in enumerate(node_ports) if port is None]:
            node_ports[i] = book.free_node_port({port for port in node_ports if port})
            if node_ports[i] is None:
                raise InputError(f"{m.source}: spec.ports[{i}]: no free NodePort left in 30000-32767; delete a "
                                 "NodePort service or use type ClusterIP")
    ports = [replace(p, node_port=node_port) for p, node_port in zip(spec.ports, node_ports, strict=True)]
    record = Service(name=m.name, namespace=m.namespace, type=spec.type, cluster_ip=cluster_ip, ports=ports,
                     selector=dict(m.selector), session_affinity=spec.session_affinity,
                     affinity_timeout=spec.affinity_timeout, labels=dict(m.labels), created=old.created if old else now,
                     annotations=dict(m.annotations),
                     external_traffic_policy=(spec.external_traffic_policy if spec.type in NODE_PORT_TYPES
                                              else "Cluster"),
                     allocate_node_ports=spec.allocate_node_ports, load_balancer_class=spec.load_balancer_class,
                     requested_ip=spec.load_balancer_ip, address_pool=spec.address_pool,
                     # kept until the pools are settled (kinds/ipaddresspool.py): still valid, or given another, or none
                     load_balancer_ip=old.load_balancer_ip if old and spec.type == "LoadBalancer" else None)
    if spec.type == "LoadBalancer" and spec.external_traffic_policy == "Local":
        record.health_check_node_port = health_check_port(m, spec.health_check_node_port, old, book,
                                                          {p for p in node_ports if p})
    book.hold(m.key, old, record)
    return record


def health_check_port(m: Manifest, wanted: Optional[int], old: Optional[Service], book: AddressBook,
                      taken: set[int]) -> int:
    """The NodePort of a Local LoadBalancer's health check (kube-proxy answers on it whether the node has an
    endpoint): as asked, kept, or allocated like a NodePort."""
    port = wanted or (old.health_check_node_port if old else None)
    if port is not None and (port in taken or book.port_owner(port, m.key)):
        if wanted:
            raise InputError(f"{m.source}: spec.healthCheckNodePort: {port} is already used by "
                             f"{'this service' if port in taken else 'service ' + str(book.port_owner(port, m.key))}; "
                             "give another port from 30000-32767 or leave it out")
        port = None
    if port is None:
        port = book.free_node_port(taken)
        if port is None:
            raise InputError(f"{m.source}: spec.healthCheckNodePort: no free NodePort left in 30000-32767; delete a "
                             "NodePort service or use externalTrafficPolicy: Cluster")
    return port


def selected(service: Service, pod: Pod) -> bool:
    """Does the service's selector pick `pod`? (An empty selector picks none: no managed endpoints.)"""
    return (bool(service.selector) and pod.namespace == service.namespace
            and all(pod.labels.get(k) == v for k, v in service.selector.items()))


def target_port(port: ServicePort, pod: Pod) -> Optional[int]:
    """The pod's port for a service port: the number, or the containerPort named so (None: not declared)."""
    if isinstance(port.target_port, int):
        return port.target_port
    return pod.port_named(port.target_port, port.protocol)


def endpoints(service: Service, pods: dict[str, Pod]) -> dict[str, list[Endpoint]]:
    """Per service port name ("" when unnamed): the ready endpoints, ordered by address."""
    result = {}
    for port in service.ports:
        eps = []
        for pod in pods.values():
            if pod.ip and selected(service, pod):
                number = target_port(port, pod)
                if number is not None:
                    eps.append(Endpoint(pod.ip, number, pod.node, pod.name))
        result[port.name or ""] = sorted(eps, key=lambda e: tuple(int(x) for x in e.ip.split(".")) + (e.port,))
    return result


def all_endpoints(services: dict[str, Service], pods: dict[str, Pod]) -> Endpoints:
    return {key: endpoints(service, pods) for key, service in services.items()}


def check_target_ports(service: Service, source: str, candidates: list[Pod]) -> None:
    """A named targetPort must be declared by some pod the selector picks (when it picks any)."""
    picked = [p for p in candidates if selected(service, p)]
    for i, port in enumerate(service.ports):
        if isinstance(port.target_port, str) and picked and all(target_port(port, p) is None for p in picked):
            raise InputError(f"{source}: spec.ports[{i}].targetPort: no container of the pods selected by "
                             f"{fmt_labels(service.selector)} declares a port named {port.target_port!r}; "
                             "name the containerPort so, or give a number")


def unserved_target_port(service: Service, port: ServicePort, pods: Iterable[Pod]) -> Optional[str]:
    """Why the pods a Service selects would refuse its port: a targetPort their servers do not listen on (a
    Service sending to 8080 where the containers listen on 80), or None. Only pods the lab's server runs in."""
    picked = [p for p in pods if selected(service, p) and p.role == "server"]
    if not picked or port.protocol != "TCP":
        return None
    numbers = {target_port(port, p) for p in picked}
    listening = sorted({n for p in picked for n in p.tcp})
    if numbers - {None} <= set(listening):
        return None
    return (f"Service {service.key} port {port.port}: targetPort {port.target_port} is a port its pods do not listen "
            f"on (they listen on {', '.join(map(str, listening))})")


def service_notes(services: Mapping[str, Service], pods: Mapping[str, Pod]) -> list[str]:
    """What `lab verify` notes about Services that pass their checks but are likely not what was meant: a
    selector that picks no pod (the Service has no endpoints: a typo?), a targetPort no selected pod listens
    on."""
    notes = []
    for key, service in sorted(services.items()):
        if service.selector and not any(selected(service, p) for p in pods.values()):
            notes.append(f"Service {key}: spec.selector {fmt_labels(service.selector)} selects no pod of namespace "
                         f"{service.namespace}, so it has no endpoints")
        notes += [problem for port in service.ports
                  if (problem := unserved_target_port(service, port, pods.values()))]
    return notes


def dns_records(services: dict[str, Service], pods: dict[str, Pod], domain: str) -> list[tuple[str, str]]:
    """(address, name) for every service (<svc>.<ns>.svc.<domain>) and pod (<a-b-c-d>.<ns>.pod.<domain>)."""
    records = [(s.cluster_ip, f"{s.name}.{s.namespace}.svc.{domain}") for s in services.values()]
    records += [(p.ip, f"{p.ip.replace('.', '-')}.{p.namespace}.pod.{domain}") for p in pods.values() if p.ip]
    return sorted(records)


def node_addresses(inv: Inventory) -> dict[str, str]:
    """node -> its address: what a packet sent to the node is addressed to (Local NodePorts are keyed by it)."""
    return {n.name: str(n.address) for n in inv.nodes}

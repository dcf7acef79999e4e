"""Service type LoadBalancer in L2 mode, as MetalLB does it (pure): address pools and L2 advertisements as
typed data, the address each LoadBalancer Service gets, and the node that answers ARP for each address.

Everything here is a function of the lab's objects, recomputed on every apply and every controller pass
(level-triggered): an address stays with its Service while the pool still serves it; a Service no pool can
serve stays <pending> until one can; the announcing node is elected from the nodes that may announce the
address, as MetalLB's speakers elect one (the lowest hash of node and address), so every party computes the
same node without asking anyone.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, ip_network
from typing import Any, Iterator, Mapping, Optional

from orchestrator.core.errors import InputError, field_error
from orchestrator.core.objects import Endpoints, Service
from orchestrator.core.policy_spec import Selector, parse_selector
from orchestrator.core.render import render


POOL_KIND = "IPAddressPool"
ADVERT_KIND = "L2Advertisement"
METALLB_API = "metallb.io/v1beta1"
SYSTEM_NAMESPACE = "metallb-system"  # where MetalLB's users keep its objects, and the lab its default pool
DEFAULT_POOL = "default"
DEFAULT_POOL_FIRST, DEFAULT_POOL_LAST = 240, 250  # of the emulated underlay /24 (.254 is its router)
HOSTNAME_LABEL = "kubernetes.io/hostname"
DEFAULT_POOL_TEMPLATE = "loadbalancer/default-pool.yaml.j2"


@dataclass(frozen=True)
class AddressRange:
    first: IPv4Address
    last: IPv4Address
    text: str  # as written: a CIDR or first-last

    def __contains__(self, address: IPv4Address) -> bool:
        return self.first <= address <= self.last

    def overlaps(self, other: "AddressRange") -> bool:
        return self.first <= other.last and other.first <= self.last


@dataclass(frozen=True)
class AddressPool:
    """An IPAddressPool: its ranges and whom it serves (serviceAllocation)."""

    key: str
    name: str
    ranges: tuple[AddressRange, ...]
    auto_assign: bool = True
    avoid_buggy_ips: bool = False
    priority: Optional[int] = None  # serviceAllocation.priority: lower first; pools without one come last
    namespaces: tuple[str, ...] = ()
    namespace_selectors: tuple[Selector, ...] = ()
    service_selectors: tuple[Selector, ...] = ()
    labels: Mapping[str, str] = ()  # type: ignore[assignment]
    allocation: bool = False  # whether serviceAllocation was given at all

    def __contains__(self, address: IPv4Address) -> bool:
        return any(address in r for r in self.ranges) and not (self.avoid_buggy_ips and buggy(address))

    def addresses(self) -> Iterator[IPv4Address]:
        """Its addresses in order, without the .0 and .255 ones when avoidBuggyIPs."""
        for r in self.ranges:
            for value in range(int(r.first), int(r.last) + 1):
                address = IPv4Address(value)
                if not (self.avoid_buggy_ips and buggy(address)):
                    yield address

    def serves(self, service: Service, namespace_labels: Mapping[str, Mapping[str, str]]) -> bool:
        """Whether serviceAllocation lets `service` take addresses from this pool (no serviceAllocation: all)."""
        if self.namespaces and service.namespace not in self.namespaces:
            return False
        if self.namespace_selectors and not any(s.matches(namespace_labels.get(service.namespace, {}))
                                                for s in self.namespace_selectors):
            return False
        return not self.service_selectors or any(s.matches(service.labels) for s in self.service_selectors)

    @property
    def text(self) -> str:
        return ",".join(r.text for r in self.ranges)


@dataclass(frozen=True)
class Advertisement:
    """An L2Advertisement: which pools' addresses are announced, and from which nodes."""

    key: str
    name: str
    pools: tuple[str, ...] = ()
    pool_selectors: tuple[Selector, ...] = ()
    node_selectors: tuple[Selector, ...] = ()
    interfaces: tuple[str, ...] = ()

    def covers(self, pool: AddressPool) -> bool:
        """No pools named or selected: every pool."""
        if not self.pools and not self.pool_selectors:
            return True
        return pool.name in self.pools or any(s.matches(pool.labels) for s in self.pool_selectors)

    def allows(self, labels: Mapping[str, str]) -> bool:
        return not self.node_selectors or any(s.matches(labels) for s in self.node_selectors)


def buggy(address: IPv4Address) -> bool:
    """An address ending in .0 or .255, which some old client stacks take for a broadcast."""
    return int(address) & 0xFF in (0, 255)


# ---- parsing (the manifests' spec, as MetalLB's webhooks check them) ----

POOL_FIELDS = ("addresses", "autoAssign", "avoidBuggyIPs", "serviceAllocation")
ALLOCATION_FIELDS = ("priority", "namespaces", "namespaceSelectors", "serviceSelectors")
ADVERT_FIELDS = ("ipAddressPools", "ipAddressPoolSelectors", "nodeSelectors", "interfaces")


def unknown_fields(spec: Mapping[str, Any], known: tuple[str, ...], source: str, where: str) -> None:
    for key in spec:
        if key not in known:
            raise field_error(source, f"{where}.{key}", "unknown field", f"use {', '.join(known)}")


def parse_range(text: Any, source: str, where: str) -> AddressRange:
    """A CIDR (192.168.10.0/24) or a range (192.168.9.1-192.168.9.5), IPv4."""
    value = str(text).strip()
    try:
        if "-" in value:
            first_text, last_text = (part.strip() for part in value.split("-", 1))
            first, last = IPv4Address(first_text), IPv4Address(last_text)
        else:
            network = ip_network(value)
            if not isinstance(network, IPv4Network):
                raise ValueError(value)
            first, last = network[0], network[-1]
    except ValueError:
        raise field_error(source, where, f"{text!r} is not an IPv4 CIDR or range (the lab has no IPv6)",
                          "write e.g. 192.168.10.0/24 or 192.168.9.1-192.168.9.5") from None
    if last < first:
        raise field_error(source, where, f"{text!r} ends before it starts", "write the lower address first")
    return AddressRange(first, last, value)


def parse_pool(key: str, name: str, labels: Mapping[str, str], spec: Any, source: str) -> AddressPool:
    if not isinstance(spec, dict):
        raise field_error(source, "spec", "missing or not a mapping", "add spec.addresses")
    unknown_fields(spec, POOL_FIELDS, source, "spec")
    raw = spec.get("addresses")
    if not isinstance(raw, list) or not raw:
        raise field_error(source, "spec.addresses", "missing or empty", "list CIDRs or ranges, e.g. - 192.168.10.0/24")
    ranges = tuple(parse_range(text, source, f"spec.addresses[{i}]") for i, text in enumerate(raw))
    for i, a in enumerate(ranges):
        for b in ranges[i + 1:]:
            if a.overlaps(b):
                raise field_error(source, "spec.addresses", f"{a.text} overlaps {b.text}", "list each address once")
    flags = {}
    for field_name in ("autoAssign", "avoidBuggyIPs"):
        value = spec.get(field_name, field_name == "autoAssign")
        if not isinstance(value, bool):
            raise field_error(source, f"spec.{field_name}", f"{value!r} is not true or false", "write true or false")
        flags[field_name] = value
    allocation = spec.get("serviceAllocation")
    if allocation is not None and not isinstance(allocation, dict):
        raise field_error(source, "spec.serviceAllocation", "not a mapping", "give priority, namespaces, "
                          "namespaceSelectors or serviceSelectors")
    allocation = allocation or {}
    unknown_fields(allocation, ALLOCATION_FIELDS, source, "spec.serviceAllocation")
    priority = allocation.get("priority")
    if priority is not None and (isinstance(priority, bool) or not isinstance(priority, int) or priority < 0):
        raise field_error(source, "spec.serviceAllocation.priority", f"{priority!r} is not a whole number >= 0",
                          "give e.g. 10 (lower numbers are used first)")
    namespaces = allocation.get("namespaces") or []
    if not isinstance(namespaces, list) or not all(isinstance(n, str) for n in namespaces):
        raise field_error(source, "spec.serviceAllocation.namespaces", "not a list of namespace names",
                          "write e.g. [default, web]")
    return AddressPool(key, name, ranges, flags["autoAssign"], flags["avoidBuggyIPs"], priority, tuple(namespaces),
                       selectors(allocation, "namespaceSelectors", source, "spec.serviceAllocation"),
                       selectors(allocation, "serviceSelectors", source, "spec.serviceAllocation"),
                       dict(labels), bool(allocation))


def selectors(spec: Mapping[str, Any], field_name: str, source: str, where: str) -> tuple[Selector, ...]:
    raw = spec.get(field_name) or []
    if not isinstance(raw, list) or not all(isinstance(s, dict) for s in raw):
        raise field_error(source, f"{where}.{field_name}", "not a list of label selectors",
                          "write e.g. - matchLabels: {kubernetes.io/hostname: node1}")
    return tuple(parse_selector(s, source, f"{where}.{field_name}[{i}]") for i, s in enumerate(raw))


def parse_advertisement(key: str, name: str, spec: Any, source: str) -> Advertisement:
    spec = spec if spec is not None else {}
    if not isinstance(spec, dict):
        raise field_error(source, "spec", "not a mapping", "give ipAddressPools or nodeSelectors, or leave spec empty")
    unknown_fields(spec, ADVERT_FIELDS, source, "spec")
    names = spec.get("ipAddressPools") or []
    interfaces = spec.get("interfaces") or []
    for field_name, value in (("ipAddressPools", names), ("interfaces", interfaces)):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise field_error(source, f"spec.{field_name}", "not a list of names", "write e.g. [default]")
    return Advertisement(key, name, tuple(names), selectors(spec, "ipAddressPoolSelectors", source, "spec"),
                         selectors(spec, "nodeSelectors", source, "spec"), tuple(interfaces))


def overlapping(pool: AddressPool, others: list[AddressPool]) -> Optional[str]:
    """The first overlap of `pool` with another pool, as text (MetalLB refuses overlapping pools)."""
    for other in others:
        if other.key == pool.key:
            continue
        for mine in pool.ranges:
            for theirs in other.ranges:
                if mine.overlaps(theirs):
                    return f"{mine.text} overlaps {theirs.text} of IPAddressPool {other.key}"
    return None


# ---- allocation ----

def serves_lab(service: Service) -> bool:
    """A LoadBalancer Service the lab's own load balancer serves (another loadBalancerClass: someone else's)."""
    return service.type == "LoadBalancer" and service.load_balancer_class is None


def eligible_pools(service: Service, pools: list[AddressPool],
                   namespace_labels: Mapping[str, Mapping[str, str]]) -> list[AddressPool]:
    """The pools `service` may take an address from, in the order MetalLB tries them."""
    if service.address_pool is not None:
        return [p for p in pools if p.name == service.address_pool and p.serves(service, namespace_labels)]
    usable = [p for p in pools if p.serves(service, namespace_labels)
              and (p.auto_assign or service.requested_ip is not None)]
    return sorted(usable, key=lambda p: (not p.allocation, p.priority if p.priority is not None else 1 << 30, p.key))


def pending_reason(service: Service, pools: list[AddressPool],
                   namespace_labels: Mapping[str, Mapping[str, str]]) -> str:
    """Why a LoadBalancer Service has no address (MetalLB's AllocationFailed event), for `lab describe`."""
    if service.load_balancer_class is not None:
        return f"its loadBalancerClass {service.load_balancer_class} is not the lab's: no address is given here"
    if not pools:
        return "no IPAddressPool: apply one (lab get ipaddresspools -A)"
    if service.address_pool is not None and not any(p.name == service.address_pool for p in pools):
        return f"no IPAddressPool named {service.address_pool!r} (annotation metallb.io/address-pool)"
    candidates = eligible_pools(service, pools, namespace_labels)
    if service.requested_ip is not None:
        if not any(IPv4Address(service.requested_ip) in p for p in pools):
            return f"{service.requested_ip} is in no IPAddressPool"
        if not any(IPv4Address(service.requested_ip) in p for p in candidates):
            return f"the pool of {service.requested_ip} does not serve this Service (its serviceAllocation)"
        return f"{service.requested_ip} is taken by another Service"
    if not candidates:
        return "no IPAddressPool serves this Service (autoAssign false, or its serviceAllocation)"
    return f"no free address left in {', '.join(p.key for p in candidates)}"


def assign_addresses(services: dict[str, Service], pools: list[AddressPool],
                     namespace_labels: Mapping[str, Mapping[str, str]]) -> dict[str, Optional[str]]:
    """Service key -> its address (None: pending), for every LoadBalancer Service the lab serves: an address it
    holds stays while a pool still gives it to that Service; then the addresses asked for; then the lowest free
    address of the first pool that has one, in the order the Services were created."""
    lb = {k: s for k, s in sorted(services.items()) if serves_lab(s)}
    taken: dict[str, str] = {}
    result: dict[str, Optional[str]] = {k: None for k in lb}

    def allowed(service: Service, address: str) -> bool:
        ip = IPv4Address(address)
        return (address not in taken and (service.requested_ip in (None, address))
                and any(ip in p for p in eligible_pools(service, pools, namespace_labels)))

    for key, service in lb.items():
        if service.load_balancer_ip and allowed(service, service.load_balancer_ip):
            result[key] = taken[service.load_balancer_ip] = service.load_balancer_ip
    for key, service in lb.items():
        if result[key] is None and service.requested_ip and allowed(service, service.requested_ip):
            result[key] = taken[service.requested_ip] = service.requested_ip
    for key, service in sorted(lb.items(), key=lambda kv: (kv[1].created, kv[0])):
        if result[key] is not None or service.requested_ip:
            continue
        for pool in eligible_pools(service, pools, namespace_labels):
            free = next((str(a) for a in pool.addresses() if str(a) not in taken), None)
            if free:
                result[key] = taken[free] = free
                break
    return result


def check_requested(service: Service, source: str, pools: list[AddressPool],
                    services: dict[str, Service]) -> None:
    """The address a Service being applied asks for must be in a pool and free: else a one-line error."""
    wanted = service.requested_ip
    if wanted is None or not serves_lab(service):
        return
    if not any(IPv4Address(wanted) in p for p in pools):
        known = "; ".join(f"{p.key} {p.text}" for p in pools) or "none yet"
        raise InputError(f"{source}: spec.loadBalancerIP: {wanted} is in no IPAddressPool (pools: {known}); give an "
                         "address of a pool, or leave it out")
    owner = next((k for k, s in services.items() if k != service.key and s.load_balancer_ip == wanted), None)
    if owner:
        raise InputError(f"{source}: spec.loadBalancerIP: {wanted} is taken by Service {owner}; give another address "
                         "of the pool, or leave it out")


# ---- announcing ----

def pool_of(address: str, pools: list[AddressPool]) -> Optional[AddressPool]:
    ip = IPv4Address(address)
    return next((p for p in pools if ip in p), None)


def election_order(node: str, address: str) -> bytes:
    """MetalLB's speakers each compute this for every node and take the lowest: no vote is needed."""
    return hashlib.sha256(f"{node}#{address}".encode()).digest()


def announcers(services: dict[str, Service], pools: list[AddressPool], adverts: list[Advertisement],
               nodes: Mapping[str, Mapping[str, str]], endpoints: Endpoints, lost: set[str]) -> dict[str, str]:
    """LoadBalancer address -> the node that answers ARP for it. Candidates are the nodes an L2Advertisement of the
    address's pool names, that answer, and (externalTrafficPolicy Local) that run a ready endpoint of the Service.
    An address no node may announce is absent (assigned, but nobody answers for it)."""
    chosen = {}
    for key, service in sorted(services.items()):
        address = service.load_balancer_ip
        if not address or not serves_lab(service):
            continue
        pool = pool_of(address, pools)
        covering = [a for a in adverts if pool is not None and a.covers(pool)]
        candidates = {name for name, labels in nodes.items() if name not in lost
                      and any(a.allows(node_labels(name, labels)) for a in covering)}
        ready = {e.node for eps in endpoints.get(key, {}).values() for e in eps}
        # as MetalLB's speakers: no ready endpoint, no announcement (Local: none on the node itself)
        candidates &= ready if service.local_traffic else (candidates if ready else set())
        if candidates:
            chosen[address] = min(candidates, key=lambda n: election_order(n, address))
    return chosen


def node_labels(name: str, labels: Mapping[str, str]) -> dict[str, str]:
    """A node's labels as a selector sees them: the inventory's, and kubernetes.io/hostname."""
    return {HOSTNAME_LABEL: name, "kubernetes.io/os": "linux", **labels}


def not_announced_reason(service: Service, pools: list[AddressPool], adverts: list[Advertisement],
                         lost: set[str], endpoints_ready: bool = True) -> str:
    """Why an assigned address has no announcing node, for `lab describe`."""
    pool = pool_of(service.load_balancer_ip or "", pools)
    if pool is None or not any(a.covers(pool) for a in adverts):
        return f"no L2Advertisement names IPAddressPool {pool.key if pool else '?'}: the address is not announced"
    if service.local_traffic:
        return "externalTrafficPolicy Local and no node with a ready endpoint may announce it"
    if not endpoints_ready:
        return "the Service has no ready endpoint: the address is not announced"
    return "no node an L2Advertisement allows is answering" + (f" (not answering: {', '.join(sorted(lost))})"
                                                                 if lost else "")


def default_pool_yaml(node_addresses: list[IPv4Address]) -> tuple[str, str]:
    """The lab's load balancer as installed in an emulated or VM lab: its namespace, the default pool (.240-.250
    of the underlay /24 the nodes are on, which the outside host reaches through the lab's router) and an
    L2Advertisement; as YAML, and where it comes from."""
    underlay = IPv4Network(f"{node_addresses[0]}/24", strict=False)
    addresses = f"{underlay[DEFAULT_POOL_FIRST]}-{underlay[DEFAULT_POOL_LAST]}"
    return render(DEFAULT_POOL_TEMPLATE, addresses=addresses), f"templates/{DEFAULT_POOL_TEMPLATE}"


# ---- the records the kinds keep (LabObjects.extra), typed ----

def pools_of(extra: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> list[AddressPool]:
    return [parse_pool(key, r["name"], r.get("labels") or {}, r["spec"], f"{POOL_KIND} {key}")
            for key, r in sorted(extra.get(POOL_KIND, {}).items())]


def adverts_of(extra: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> list[Advertisement]:
    return [parse_advertisement(key, r["name"], r.get("spec"), f"{ADVERT_KIND} {key}")
            for key, r in sorted(extra.get(ADVERT_KIND, {}).items())]

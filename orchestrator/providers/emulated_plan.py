"""The pure plan of an emulated lab (providers/local.py applies it): the names and addresses of its
namespaces, links and nodes (`layout()`, `choose_underlay()`), and the commands that make them
(`infra_commands()`, `node_link_commands()`, `start_command()`), as data.

The lab's /24 underlay is one subnet, or (`lab up --subnets N`) N equal parts of it, each its own L2
segment (`Segment`: a bridge in the underlay namespace) routed by the router namespace; nodes take turns
over the segments (node1 in the first, node2 in the second, ...).
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from math import ceil, log2
from typing import Iterable, Mapping, Optional, Sequence

from orchestrator.core.errors import InputError, LabError
from orchestrator.core.ipam import first_free_subnet
from orchestrator.core.model import Emulated, Subnet, stable_mac
from orchestrator.core.render import render
from orchestrator.core.state import LabFiles
from orchestrator.layers.services.loadbalancer import DEFAULT_POOL_FIRST


# RFC 2544's benchmarking range: reserved, never routed on the internet; one /24 per lab.
UNDERLAY_POOL = IPv4Network("198.18.0.0/15")
OUTSIDE_NET = IPv4Network("203.0.113.0/24")  # TEST-NET-3, inside the lab's "outside" namespace only
OUTSIDE_HOST = OUTSIDE_NET[10]  # the "outside" host egress tests talk to


@dataclass(frozen=True)
class Segment:
    """One underlay subnet of a lab: its own bridge in the underlay namespace, and a router interface."""

    index: int  # 0: the first, where the root namespace's link and the router's eth0 are
    network: IPv4Network

    @property
    def name(self) -> str:
        return f"rack{self.index + 1}"

    @property
    def bridge(self) -> str:
        return f"br{self.index}"

    @property
    def gateway(self) -> IPv4Address:
        """The router's address here, the nodes' default gateway."""
        return self.network[-2]

    @property
    def router_device(self) -> str:
        """The router's interface on this segment (eth1 leads to the outside host)."""
        return "eth0" if self.index == 0 else f"eth{self.index + 1}"

    @property
    def router_port(self) -> str:
        """Its peer on the bridge; the '_' keeps it apart from node names, which name the nodes' ports."""
        return "router" if self.index == 0 else f"router_s{self.index + 1}"


@dataclass(frozen=True)
class EmulatedNode:
    name: str
    index: int  # node<index>: fixes the address, so adding a node never renumbers the others
    namespace: str
    address: IPv4Address
    segment: int = 0  # the index of its Segment

    @property
    def mac(self) -> str:
        """eth0's MAC, the same each time the node is made: a node made again is not a stranger to the
        neighbour caches that still hold its address (as a real machine's NIC keeps its MAC)."""
        return stable_mac(f"{self.namespace}/eth0", first=0x0A)


@dataclass(frozen=True)
class LabLayout:
    """Names and addresses of everything one emulated lab consists of."""

    lab: str
    underlay: IPv4Network
    mtu: int
    nodes: tuple[EmulatedNode, ...]
    sudo_user: Optional[str] = None  # the user the lab logs in as (with sudo); None: root
    segments: tuple[Segment, ...] = ()  # () only for a hand-made layout: then the whole underlay is one

    def __post_init__(self) -> None:
        if not self.segments:
            object.__setattr__(self, "segments", (Segment(0, self.underlay),))

    def segment_of(self, node: EmulatedNode) -> Segment:
        return self.segments[node.segment]

    @property
    def subnets(self) -> tuple[Subnet, ...]:
        """The inventory's subnets: none when the lab has one (its inventory stays as it was)."""
        if len(self.segments) == 1:
            return ()
        return tuple(Subnet(seg.name, seg.network) for seg in self.segments)

    @property
    def host_link(self) -> str:
        """The one link in the root namespace."""
        return f"{self.lab}-host"

    @property
    def host_address(self) -> IPv4Address:
        return self.underlay[1]

    @property
    def router_address(self) -> IPv4Address:
        """The router's address on the first segment (where the root namespace's link is)."""
        return self.segments[0].gateway

    @property
    def underlay_ns(self) -> str:
        return f"{self.lab}-underlay"

    @property
    def router_ns(self) -> str:
        return f"{self.lab}-router"

    @property
    def outside_ns(self) -> str:
        return f"{self.lab}-outside"

    @property
    def outside_gateway(self) -> IPv4Address:
        return OUTSIDE_NET[1]

    @property
    def outside_address(self) -> IPv4Address:
        """The "outside" host egress tests talk to."""
        return OUTSIDE_HOST

    @property
    def infra_namespaces(self) -> tuple[str, ...]:
        return (self.underlay_ns, self.router_ns, self.outside_ns)


def segments(underlay: IPv4Network, count: int) -> tuple[Segment, ...]:
    """`underlay` split into `count` equal subnets (the next power of two; the rest stays unused)."""
    prefix = underlay.prefixlen + ceil(log2(count)) if count > 1 else underlay.prefixlen
    return tuple(Segment(i, net) for i, net in enumerate(underlay.subnets(new_prefix=prefix)) if i < count)


def node_place(segs: Sequence[Segment], index: int) -> tuple[int, int]:
    """(segment, offset in it) of node<index>: nodes take turns over the segments, and the j-th node of a
    segment gets its .10+j, so adding a node never moves the others."""
    return (index - 1) % len(segs), 10 + (index - 1) // len(segs) + 1


def fits(underlay: IPv4Network, segs: Sequence[Segment], index: int) -> bool:
    """Whether node<index> has an address below its gateway and below the LoadBalancer pool (.240 on)."""
    segment, offset = node_place(segs, index)
    network = segs[segment].network
    return (offset < network.num_addresses - 2
            and int(network.network_address) + offset - int(underlay.network_address) < DEFAULT_POOL_FIRST)


def layout(lab: str, emulated: Emulated, count: int, underlay: IPv4Network) -> LabLayout:
    """The plan for `count` emulated nodes of lab `lab` on `underlay` (split in emulated.subnets)."""
    segs = segments(underlay, emulated.subnets)
    too_many = next((i for i in range(1, count + 1) if not fits(underlay, segs, i)), None)
    if too_many is not None:
        most = too_many - 1
        where = f"{len(segs)} subnets of the /{underlay.prefixlen}" if len(segs) > 1 else f"the /{underlay.prefixlen}"
        raise InputError(f"--nodes: {count} nodes do not fit {where} underlay; use at most {most}")
    nodes = []
    for i, name in enumerate(emulated.node_names(count), start=1):
        segment, offset = node_place(segs, i)
        nodes.append(EmulatedNode(name, i, f"{lab}-{name}", segs[segment].network[offset], segment))
    return LabLayout(lab, underlay, emulated.underlay_mtu, tuple(nodes), emulated.sudo_user, segs)


def choose_underlay(taken: Iterable[IPv4Network]) -> IPv4Network:
    """The first /24 of the underlay pool that overlaps no route of the root namespace."""
    subnet = first_free_subnet(UNDERLAY_POOL, 24, taken)
    if subnet is None:
        raise LabError(f"no free /24 left in {UNDERLAY_POOL} for another lab; remove a lab with `lab down`")
    return subnet


@dataclass(frozen=True)
class Cmd:
    """A local command: argv plus optional stdin."""

    argv: tuple[str, ...]
    stdin: Optional[str] = None


def ip_batch(namespace: Optional[str], lines: Sequence[str]) -> Cmd:
    """One `ip -batch` process for many iproute2 commands (in `namespace`, or the root namespace)."""
    target = ("-n", namespace) if namespace else ()
    return Cmd(("ip", *target, "-batch", "-"), "".join(line + "\n" for line in lines))


def infra_commands(lay: LabLayout) -> list[Cmd]:
    """Underlay bridges (one per segment), router and outside host, and the root namespace's one link."""
    prefix = lay.underlay.prefixlen
    mtu = lay.mtu
    segs = lay.segments
    # The root namespace's link keeps the whole /24 on-link: for the segments past the first, the router
    # answers its ARP requests (proxy ARP), so the root namespace needs no route and the lab no second link.
    proxy_arp = ("net.ipv4.conf.eth0.proxy_arp=1", "net.ipv4.neigh.eth0.proxy_delay=0") if len(segs) > 1 else ()
    return [
        ip_batch(None, [
            *(f"netns add {ns}" for ns in lay.infra_namespaces),
            f"link add {lay.host_link} mtu {mtu} type veth peer name host netns {lay.underlay_ns}",
            *(f"link add {seg.router_device} mtu {mtu} netns {lay.router_ns} type veth peer name {seg.router_port} "
              f"netns {lay.underlay_ns}" for seg in segs),
            f"link add eth0 netns {lay.outside_ns} type veth peer name eth1 netns {lay.router_ns}",
            f"addr add {lay.host_address}/{prefix} dev {lay.host_link}",
            f"link set {lay.host_link} up",
        ]),
        ip_batch(lay.underlay_ns, [
            "link set lo up",
            *(line for seg in segs for line in (f"link add {seg.bridge} mtu {mtu} type bridge",
                                                 f"link set {seg.bridge} up")),
            "link set host master br0 up",
            *(f"link set {seg.router_port} master {seg.bridge} up" for seg in segs),
        ]),
        ip_batch(lay.router_ns, [
            "link set lo up",
            *(line for seg in segs for line in (
                f"addr add {seg.gateway}/{seg.network.prefixlen} dev {seg.router_device}",
                f"link set {seg.router_device} up")),
            f"addr add {lay.outside_gateway}/{OUTSIDE_NET.prefixlen} dev eth1",
            "link set eth1 up",
        ]),
        # The router forwards between the segments and the outside net; it has no default route.
        Cmd(("ip", "netns", "exec", lay.router_ns, "sysctl", "-qw", "net.ipv4.ip_forward=1", *proxy_arp)),
        ip_batch(lay.outside_ns, [
            "link set lo up",
            f"addr add {lay.outside_address}/{OUTSIDE_NET.prefixlen} dev eth0",
            "link set eth0 up",
            f"route add default via {lay.outside_gateway}",
        ]),
    ]


def node_link_commands(lay: LabLayout, nodes: Sequence[EmulatedNode]) -> list[Cmd]:
    """Namespaces and underlay links of `nodes`, in as few processes as iproute2 allows."""
    if not nodes:
        return []
    commands = [
        ip_batch(None, [line for n in nodes for line in (
            f"netns add {n.namespace}",
            f"link add eth0 address {n.mac} mtu {lay.mtu} netns {n.namespace} type veth peer name {n.name} "
            f"netns {lay.underlay_ns}",
        )]),
        ip_batch(lay.underlay_ns, [f"link set {n.name} master {lay.segment_of(n).bridge} up" for n in nodes]),
    ]
    for n in nodes:
        seg = lay.segment_of(n)
        commands.append(ip_batch(n.namespace, [
            "link set lo up",
            f"addr add {n.address}/{seg.network.prefixlen} dev eth0",
            "link set eth0 up",
            f"route add default via {seg.gateway}",
        ]))
    return commands


def underlay_neighbour_commands(lay: LabLayout, router_macs: Mapping[str, str], host_mac: str) -> list[Cmd]:
    """Each node's and the router's neighbour entries for the other addresses of their segment, made
    permanent (`router_macs`: the router's MAC per interface): learned, the underlay alone would need
    N x (N + 1) of the shared kernel's entries (why that matters: layers/nodes/shared_kernel.py)."""
    def members(seg: Segment) -> list[tuple[IPv4Address, str]]:
        return [(n.address, n.mac) for n in lay.nodes if n.segment == seg.index]

    def host(seg: Segment) -> list[tuple[IPv4Address, str]]:
        return [(lay.host_address, host_mac)] if seg.index == 0 else []

    def pinned(dev: str, entries: list[tuple[IPv4Address, str]], own: Optional[IPv4Address]) -> list[str]:
        return [f"neigh flush dev {dev} nud permanent"] + [
            f"neigh replace {address} lladdr {mac} dev {dev} nud permanent" for address, mac in entries
            if address != own]
    nodes = []
    for n in lay.nodes:
        seg = lay.segment_of(n)
        gateway = [(seg.gateway, router_macs[seg.router_device])]
        nodes.append(ip_batch(n.namespace, pinned("eth0", members(seg) + gateway + host(seg), n.address)))
    router = [line for seg in lay.segments for line in pinned(seg.router_device, members(seg) + host(seg), None)]
    return nodes + [ip_batch(lay.router_ns, router)]


def start_command(lay: LabLayout, node: EmulatedNode, files: LabFiles) -> Cmd:
    """The command that starts node's sshd inside its namespaces, detached (setsid -f)."""
    node_dir = files.node_dir(node.name)
    script = render("local/node-init.sh.j2", lab=lay.lab, node=node.name, pidfile=node_dir / "sshd.pid",
                    sshd_config=node_dir / "sshd_config", host_key=node_dir / "ssh_host_ed25519_key",
                    authorized_keys=files.client_key.with_suffix(".pub"), sudo_user=lay.sudo_user)
    return Cmd(("setsid", "-f", "ip", "netns", "exec", node.namespace,
                "unshare", "--mount", "--uts", "--propagation", "private", "--", "/bin/sh", "-c", script))

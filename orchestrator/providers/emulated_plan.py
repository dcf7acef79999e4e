"""The pure plan of an emulated lab (providers/local.py applies it): the names and addresses of its
namespaces, links and nodes (`layout()`, `choose_underlay()`), and the commands that make them
(`infra_commands()`, `node_link_commands()`, `start_command()`), as data.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from typing import Iterable, Optional, Sequence

from orchestrator.core.errors import InputError, LabError
from orchestrator.core.ipam import first_free_subnet
from orchestrator.core.model import Emulated, stable_mac
from orchestrator.core.render import render
from orchestrator.core.state import LabFiles
from orchestrator.layers.services.loadbalancer import DEFAULT_POOL_FIRST


# RFC 2544's benchmarking range: reserved, never routed on the internet; one /24 per lab.
UNDERLAY_POOL = IPv4Network("198.18.0.0/15")
OUTSIDE_NET = IPv4Network("203.0.113.0/24")  # TEST-NET-3, inside the lab's "outside" namespace only
OUTSIDE_HOST = OUTSIDE_NET[10]  # the "outside" host egress tests talk to


@dataclass(frozen=True)
class EmulatedNode:
    name: str
    index: int  # node<index>: fixes the address, so adding a node never renumbers the others
    namespace: str
    address: IPv4Address

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

    @property
    def host_link(self) -> str:
        """The one link in the root namespace."""
        return f"{self.lab}-host"

    @property
    def host_address(self) -> IPv4Address:
        return self.underlay[1]

    @property
    def router_address(self) -> IPv4Address:
        return self.underlay[-2]

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


def layout(lab: str, emulated: Emulated, count: int, underlay: IPv4Network) -> LabLayout:
    """The plan for `count` emulated nodes of lab `lab` on `underlay`."""
    most = DEFAULT_POOL_FIRST - 11  # .1 is the root namespace's, .11 on the nodes', from .240 the LoadBalancer pool's
    if count > most:
        raise InputError(f"--nodes: {count} nodes do not fit the /{underlay.prefixlen} underlay; use at most {most}")
    nodes = tuple(EmulatedNode(name, i, f"{lab}-{name}", underlay[10 + i])
                  for i, name in enumerate(emulated.node_names(count), start=1))
    return LabLayout(lab, underlay, emulated.underlay_mtu, nodes, emulated.sudo_user)


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
    """Underlay bridge, router and outside host, and the root namespace's one link."""
    prefix = lay.underlay.prefixlen
    mtu = lay.mtu
    return [
        ip_batch(None, [
            *(f"netns add {ns}" for ns in lay.infra_namespaces),
            f"link add {lay.host_link} mtu {mtu} type veth peer name host netns {lay.underlay_ns}",
            f"link add eth0 mtu {mtu} netns {lay.router_ns} type veth peer name router netns {lay.underlay_ns}",
            f"link add eth0 netns {lay.outside_ns} type veth peer name eth1 netns {lay.router_ns}",
            f"addr add {lay.host_address}/{prefix} dev {lay.host_link}",
            f"link set {lay.host_link} up",
        ]),
        ip_batch(lay.underlay_ns, [
            "link set lo up",
            f"link add br0 mtu {mtu} type bridge",
            "link set br0 up",
            "link set host master br0 up",
            "link set router master br0 up",
        ]),
        ip_batch(lay.router_ns, [
            "link set lo up",
            f"addr add {lay.router_address}/{prefix} dev eth0",
            "link set eth0 up",
            f"addr add {lay.outside_gateway}/{OUTSIDE_NET.prefixlen} dev eth1",
            "link set eth1 up",
        ]),
        # The router forwards between the underlay and the outside net; it has no default route.
        Cmd(("ip", "netns", "exec", lay.router_ns, "sysctl", "-qw", "net.ipv4.ip_forward=1")),
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
    prefix = lay.underlay.prefixlen
    commands = [
        ip_batch(None, [line for n in nodes for line in (
            f"netns add {n.namespace}",
            f"link add eth0 address {n.mac} mtu {lay.mtu} netns {n.namespace} type veth peer name {n.name} "
            f"netns {lay.underlay_ns}",
        )]),
        ip_batch(lay.underlay_ns, [f"link set {n.name} master br0 up" for n in nodes]),
    ]
    for n in nodes:
        commands.append(ip_batch(n.namespace, [
            "link set lo up",
            f"addr add {n.address}/{prefix} dev eth0",
            "link set eth0 up",
            f"route add default via {lay.router_address}",
        ]))
    return commands


def underlay_neighbour_commands(lay: LabLayout, router_mac: str, host_mac: str) -> list[Cmd]:
    """Each node's and the router's neighbour entries for every other underlay address, made permanent.
    Emulated nodes share this machine's kernel, whose one ARP table for all namespaces holds at most
    net.ipv4.neigh.default.gc_thresh3 learned entries (1024 by default): learned, the underlay alone needs
    N x (N + 1) of them, and 50 nodes overflow it. Permanent entries do not count against that limit."""
    peers = [(n.address, n.mac) for n in lay.nodes] + [(lay.router_address, router_mac),
                                                       (lay.host_address, host_mac)]

    def pinned(own: Optional[IPv4Address]) -> list[str]:
        return ["neigh flush dev eth0 nud permanent"] + [
            f"neigh replace {address} lladdr {mac} dev eth0 nud permanent" for address, mac in peers if address != own]
    return [ip_batch(n.namespace, pinned(n.address)) for n in lay.nodes] + \
        [ip_batch(lay.router_ns, pinned(lay.router_address))]


def start_command(lay: LabLayout, node: EmulatedNode, files: LabFiles) -> Cmd:
    """The command that starts node's sshd inside its namespaces, detached (setsid -f)."""
    node_dir = files.node_dir(node.name)
    script = render("local/node-init.sh.j2", lab=lay.lab, node=node.name, pidfile=node_dir / "sshd.pid",
                    sshd_config=node_dir / "sshd_config", host_key=node_dir / "ssh_host_ed25519_key",
                    authorized_keys=files.client_key.with_suffix(".pub"), sudo_user=lay.sudo_user)
    return Cmd(("setsid", "-f", "ip", "netns", "exec", node.namespace,
                "unshare", "--mount", "--uts", "--propagation", "private", "--", "/bin/sh", "-c", script))

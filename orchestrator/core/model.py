"""The validated inventory as plain, immutable data. `inventory.load()` builds it; nothing here does I/O."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Optional

from orchestrator.core.errors import InputError
from orchestrator.core.script import quote_argv


OVERLAY_BACKENDS = ("vxlan", "host-gw")
PROVIDERS = ("local", "qemu")  # how `lab up` makes nodes: emulated (namespaces), or real VMs under qemu
ACCELERATORS = ("auto", "kvm", "tcg")
PROXY_MODES = ("iptables", "nftables")
# flannel's VXLAN encapsulation costs 50 bytes (outer Ethernet 14 + IP 20 + UDP 8 + VXLAN 8).
VXLAN_OVERHEAD = 50


@dataclass(frozen=True)
class Overlay:
    """How nodes carry pod traffic to each other."""

    backend: str = "vxlan"
    vni: int = 1
    port: int = 8472
    mtu: Optional[int] = None  # None: underlay MTU minus the encapsulation overhead
    # flannel's vxlan DirectRouting: plain routes via the node to peers on the node's own subnet, VXLAN to the others
    direct_routing: bool = False

    def pod_mtu(self, underlay_mtu: int) -> int:
        """The MTU pods get: explicit, or derived from the underlay's."""
        if self.mtu is not None:
            return self.mtu
        return underlay_mtu - VXLAN_OVERHEAD if self.backend == "vxlan" else underlay_mtu


@dataclass(frozen=True)
class Cluster:
    """Cluster-wide settings: the lab's name and its address plan."""

    name: str
    cluster_cidr: IPv4Network = IPv4Network("10.244.0.0/16")
    node_subnet_size: int = 24
    service_cidr: IPv4Network = IPv4Network("10.96.0.0/12")
    dns_domain: str = "cluster.local"
    overlay: Overlay = field(default_factory=Overlay)
    proxy_mode: str = "iptables"  # how services are implemented on the nodes, like kube-proxy's --proxy-mode


@dataclass(frozen=True)
class Ssh:
    """How to reach a node over SSH."""

    user: str = "root"
    port: int = 22
    key: Optional[Path] = None  # None: the SSH agent and ~/.ssh keys
    known_hosts: Optional[Path] = None  # None: ~/.ssh/known_hosts
    become: bool = False  # run commands through `sudo -n`
    jump: Optional[str] = None  # [user@]host[:port] of a jump host
    connect_timeout: float = 10.0
    command_timeout: float = 120.0

    @property
    def sudo(self) -> bool:
        """Whether commands go through `sudo -n` (become, and not already root)."""
        return self.become and self.user != "root"

    def openssh_options(self) -> list[str]:
        """OpenSSH client options (`-o NAME=VALUE` pairs) that reach the node as the lab's transport does: host
        keys only from `known_hosts` and never accepted unseen, only the inventory's key, and a jump host
        held to the same (a ProxyCommand: `-J` would check the jump host against the user's defaults)."""
        def path(value: Path) -> str:  # ssh splits option values at spaces unless double-quoted
            text = str(Path(value).absolute())
            return f'"{text}"' if " " in text else text

        pinned = ["-o", "StrictHostKeyChecking=yes"]
        if self.known_hosts is not None:
            pinned += ["-o", f"UserKnownHostsFile={path(self.known_hosts)}", "-o", "GlobalKnownHostsFile=/dev/null"]
        if self.key is not None:
            pinned += ["-o", f"IdentityFile={path(self.key)}", "-o", "IdentitiesOnly=yes"]
        if not self.jump:
            return pinned
        user, host, port = split_jump(self.jump, self.user)
        through = quote_argv(["ssh", "-W", "%h:%p", "-p", str(port), *pinned, f"{user}@{host}"])
        return pinned + ["-o", f"ProxyCommand={through}"]


def split_jump(spec: str, default_user: str) -> tuple[str, str, int]:
    """(user, host, port) of a jump host written [user@]host[:port]; port 22 by default."""
    user, _, rest = spec.rpartition("@")
    host, _, port = rest.rpartition(":") if ":" in rest else (rest, "", "")
    return user or default_user, host, int(port or 22)


@dataclass(frozen=True)
class Node:
    """One machine of the cluster."""

    name: str
    address: IPv4Address  # the node's address on the cluster network (overlay endpoints, host-gw routes)
    ssh_host: str  # where SSH connects to; the address unless the inventory says otherwise
    ssh: Ssh
    labels: dict[str, str] = field(default_factory=dict, hash=False, compare=False)
    subnet: Optional[str] = None  # the name of the underlay subnet (rack, zone) it is on; None: the one subnet


@dataclass(frozen=True)
class Subnet:
    """One underlay subnet of the inventory: one L2 segment, routed to the others by a router."""

    name: str
    cidr: IPv4Network


@dataclass(frozen=True)
class Emulated:
    """Settings for the nodes `lab up` makes on this machine, inside the lab's namespaces (the same underlay,
    router and outside host for both providers): emulated nodes (provider local) or real VMs (qemu)."""

    nodes: int = 3
    node_prefix: str = "node"
    underlay_mtu: int = 1500
    # A user made on every node, with passwordless sudo; the lab logs in as it (`become`), not as root.
    sudo_user: Optional[str] = None
    provider: str = "local"
    memory: int = 1024  # MiB per VM (qemu)
    accel: str = "auto"  # qemu's accelerator: auto probes KVM and falls back to TCG
    subnets: int = 1  # underlay subnets (L2 segments) behind the lab's router; nodes take turns over them

    @property
    def shares_kernel(self) -> bool:
        """Emulated nodes run this machine's kernel and programs; VMs have their own."""
        return self.provider == "local"

    def node_names(self, count: Optional[int] = None) -> list[str]:
        """Names of the emulated nodes: node1, node2, ..."""
        return [f"{self.node_prefix}{i}" for i in range(1, (count or self.nodes) + 1)]


@dataclass(frozen=True)
class Inventory:
    """A validated inventory: the cluster and its nodes."""

    source: str  # the file it came from, for messages
    cluster: Cluster
    nodes: tuple[Node, ...] = ()
    emulated: Optional[Emulated] = None
    subnets: tuple[Subnet, ...] = ()

    @property
    def name(self) -> str:
        return self.cluster.name

    def same_segment(self, a: Node, b: Node) -> bool:
        """Whether nodes `a` and `b` share one L2 segment (an inventory without subnets has one)."""
        return a.subnet == b.subnet

    def node(self, name: str) -> Node:
        """The node called `name`; an InputError listing the known nodes otherwise."""
        for node in self.nodes:
            if node.name == name:
                return node
        known = ", ".join(n.name for n in self.nodes) or "none"
        raise InputError(f"{self.source}: no node named {name!r}; nodes are: {known}")


def stable_mac(key: str, first: int = 0x0E) -> str:
    """A locally administered unicast MAC that depends only on `key`."""
    digest = hashlib.sha256(key.encode()).digest()
    return ":".join(f"{b:02x}" for b in (first, *digest[:5]))


def dns_ip(service_cidr: IPv4Network) -> IPv4Address:
    """The cluster DNS address, kubelet's --cluster-dns: the 10th of the service range (10.96.0.10 by default)."""
    return service_cidr[10]

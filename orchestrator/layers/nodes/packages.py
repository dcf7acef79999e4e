"""What a node lacks for the lab, as packages to install (`lab bootstrap`). Pure: facts in, a plan out.

The needs are what `lab deploy` checks (facts.py: the commands, the CNI plugins) plus what pods and
services use on the node (conntrack, dnsmasq for the cluster DNS, nft for NetworkPolicy and proxy_mode
nftables), each
mapped to its package name per package manager.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from orchestrator.core.model import Cluster
from orchestrator.layers.nodes.facts import CNI_PLUGINS, NodeState


APT, DNF = "apt", "dnf"
# The command that tells a package manager is there (as the facts list them) -> its name here.
MANAGERS = {"apt-get": APT, "dnf": DNF}


@dataclass(frozen=True)
class Need:
    """One thing a node must have, and the package that brings it with each package manager."""

    what: str  # as a person reads it: "ip (command)", "CNI plugin bridge"
    apt: str
    dnf: str
    tool: Optional[str] = None  # a command the facts list under `tools`
    plugin: Optional[str] = None  # a CNI plugin the facts list under `cni`

    def met(self, state: NodeState) -> bool:
        if self.tool is not None:
            return self.tool in state.tools
        return self.plugin in state.cni_plugins

    def package(self, manager: str) -> str:
        return self.apt if manager == APT else self.dnf


def command(tool: str, apt: str, dnf: str) -> Need:
    return Need(f"{tool} (command)", apt, dnf, tool=tool)


BASE_NEEDS = (
    command("ip", "iproute2", "iproute"),
    command("bridge", "iproute2", "iproute"),
    command("iptables-save", "iptables", "iptables-nft"),
    command("iptables-restore", "iptables", "iptables-nft"),
    command("python3", "python3", "python3"),
    command("conntrack", "conntrack", "conntrack-tools"),  # stale UDP flows to removed endpoints
    command("dnsmasq", "dnsmasq-base", "dnsmasq"),  # the cluster DNS pods
    command("nginx", "nginx-light", "nginx"),  # the Gateways' proxy pods
    command("ping", "iputils-ping", "iputils"),  # lab verify's MTU checks
    command("sysctl", "procps", "procps-ng"),  # the lessons
    command("curl", "curl", "curl"),  # the lessons
    command("busybox", "busybox-static", "busybox"),  # what busybox images' pods run (layers/pods/images.py)
    command("nc", "netcat-openbsd", "nmap-ncat"),  # nc -z in pods
    command("dig", "bind9-dnsutils", "bind-utils"),  # dig and nslookup in pods of tool images
    *(Need(f"CNI plugin {p}", "containernetworking-plugins", "containernetworking-plugins", plugin=p)
      for p in CNI_PLUGINS),
)
NFT_NEED = command("nft", "nftables", "nftables")  # NetworkPolicy; services in proxy_mode nftables


def needs(cluster: Cluster) -> tuple[Need, ...]:
    """Everything a node of `cluster` must have."""
    return BASE_NEEDS + (NFT_NEED,)  # every lab may get a NetworkPolicy


def install_commands(manager: str, packages: tuple[str, ...]) -> list[list[str]]:
    """The commands that install `packages` without a question (argument lists; the transport adds sudo)."""
    if not packages:
        return []
    if manager == APT:
        apt = ["env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "-q", "-y", "-o", "Dpkg::Use-Pty=0"]
        return [[*apt, "update"], [*apt, "install", "--no-install-recommends", *packages]]
    if manager == DNF:
        return [["dnf", "install", "-y", "-q", "--setopt=install_weak_deps=False", *packages]]
    raise ValueError(f"unknown package manager {manager!r}")


@dataclass(frozen=True)
class Plan:
    """What `lab bootstrap` does on one node."""

    lacks: tuple[str, ...] = ()  # what the node lacks that packages bring, as words
    packages: tuple[str, ...] = ()  # to install, sorted, each once
    manager: Optional[str] = None  # apt | dnf; None when the node has neither
    commands: tuple[tuple[str, ...], ...] = ()
    not_packaged: tuple[str, ...] = ()  # lacks no package brings (kernel features)
    error: Optional[str] = None  # why the node can't be bootstrapped

    @property
    def nothing_to_install(self) -> bool:
        return not self.packages and self.error is None


def plan(state: NodeState, cluster: Cluster) -> Plan:
    """What to install on a node in `state` so that it has everything a node of `cluster` needs."""
    missing = [need for need in needs(cluster) if not need.met(state)]
    not_packaged = tuple(state.missing_kernel_features)
    manager = next((MANAGERS[m] for m in MANAGERS if m in state.package_managers), None)
    lacks = tuple(need.what for need in missing)
    if not missing:
        return Plan(manager=manager, not_packaged=not_packaged)
    if manager is None:
        where = f" ({state.os})" if state.os else ""
        return Plan(lacks=lacks, not_packaged=not_packaged,
                    error=f"lacks {', '.join(lacks)} and has no package manager lab bootstrap knows{where}: it "
                          f"needs apt-get (Debian/Ubuntu) or dnf (Fedora/RHEL); install them by hand")
    packages = tuple(sorted({need.package(manager) for need in missing}))
    return Plan(lacks=lacks, packages=packages, manager=manager, not_packaged=not_packaged,
                commands=tuple(tuple(argv) for argv in install_commands(manager, packages)))

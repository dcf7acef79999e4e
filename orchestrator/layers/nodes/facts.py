"""A node's state as read over SSH, as data (`parse_facts` reads the output of templates/nodes/node-facts.sh.j2)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from typing import Any, Optional

from orchestrator.agent.contract import CNI_PATH


CNI_PLUGINS = ("bridge", "host-local", "portmap", "loopback")
CNI_DIRS = tuple(CNI_PATH.split(":"))  # the node agent's, which runs the plugins
REQUIRED_TOOLS = ("ip", "bridge", "iptables-save", "iptables-restore", "python3")
# Also read (packages.py installs them): what pods, services, `lab verify` and the lessons use.
OTHER_TOOLS = ("iptables", "nft", "conntrack", "dnsmasq", "ping", "curl", "sysctl", "nginx", "busybox", "nc", "dig")
KERNEL_FEATURES = ("vxlan", "bridge")  # listed in `tools` as kernel:<name>
# What a node needs before pods, as kubeadm's preflight checks it; deploy sets them (and destroy restores them).
SYSCTLS = {"net.ipv4.ip_forward": "1", "net.bridge.bridge-nf-call-iptables": "1"}
CNI_CONF_DIR = "/etc/cni/net.d"  # where the node's CNI runtime looks for network configs (kubelet's default)


def conflist_path(lab: str) -> str:
    """The lab's CNI network config on a node."""
    return f"{CNI_CONF_DIR}/10-{lab}.conflist"


@dataclass(frozen=True)
class NodeFacts:
    """What planning needs to know about a node that only the node can tell."""

    underlay_device: str
    underlay_mtu: int


@dataclass(frozen=True)
class NodeState:
    """A node as read over SSH."""

    hostname: str = ""
    kernel: str = ""
    tools: frozenset[str] = frozenset()
    cni_plugins: dict[str, str] = field(default_factory=dict)  # plugin -> path
    addrs: list[dict[str, Any]] = field(default_factory=list)  # `ip -j -d addr show`
    routes: list[dict[str, Any]] = field(default_factory=list)  # `ip -j route show table main`
    neighbours: list[dict[str, Any]] = field(default_factory=list)  # `ip -j neigh show nud permanent`
    fdb: list[dict[str, Any]] = field(default_factory=list)  # `bridge -j fdb show`
    sysctls: dict[str, str] = field(default_factory=dict)
    conflists: tuple[str, ...] = ()  # file names in /etc/cni/net.d
    conflist: str = ""  # the lab's own conflist, "" when absent
    iptables: str = ""  # `iptables-save`
    files: dict[str, str] = field(default_factory=dict)  # path below the lab's node folder -> sha256
    pods: dict[str, str] = field(default_factory=dict)  # pod key -> "running" | "stopped" (its server)
    pod_confs: dict[str, str] = field(default_factory=dict)  # pod key -> digest of the CNI config it was attached with
    netns: tuple[str, ...] = ()  # `ip netns list` names
    nft_tables: tuple[str, ...] = ()  # `nft list tables` lines, e.g. "table ip lab-proxy"
    package_managers: tuple[str, ...] = ()  # which of apt-get, dnf the node has
    os: str = ""  # PRETTY_NAME of /etc/os-release, e.g. "Debian GNU/Linux 12 (bookworm)"
    modules: dict[str, str] = field(default_factory=dict)  # kernel module -> "present" | "loadable" | "missing"
    boot_id: str = ""  # this boot of the node (/proc/sys/kernel/random/boot_id)
    systemd: bool = False  # whether systemd runs the node (it gets the lab's boot unit)
    etc_files: dict[str, str] = field(default_factory=dict)  # the lab's files outside its folder: path -> sha256
    unit_enabled: bool = False  # whether the lab's boot unit runs at boot
    restored: tuple[str, ...] = ()  # the boot the unit last restored the lab for, then what it could not restore
    announced: tuple[str, ...] = ()  # the LoadBalancer addresses the lab put on the node (agent/announce.py)
    health_server: str = ""  # the PID of the lab's health check server when it runs (agent/healthz.py)

    def restoring(self, deployed_in: str) -> bool:
        """Whether the boot unit has still to bring the lab back in this boot (it runs once per boot).
        `deployed_in`: the boot the lab's last deploy on the node ran in; a deploy in this boot put the lab there
        itself (the unit, installed by it, never ran in this boot)."""
        return self.unit_enabled and self.restored[:1] != (self.boot_id,) and deployed_in != self.boot_id

    @property
    def restore_errors(self) -> tuple[str, ...]:
        """What the boot unit could not restore in this boot."""
        return self.restored[1:] if self.restored[:1] == (self.boot_id,) else ()

    @property
    def missing_plugins(self) -> list[str]:
        return [p for p in CNI_PLUGINS if p not in self.cni_plugins]

    @property
    def cni_dir(self) -> Optional[str]:
        """The folder the CNI plugins are in, for CNI_PATH."""
        paths = [path.rsplit("/", 1)[0] for path in self.cni_plugins.values()]
        return paths[0] if paths else None

    @property
    def missing_kernel_features(self) -> list[str]:
        """The kernel features the node lacks, as words (no package brings them)."""
        return [f"kernel {m} support" for m in KERNEL_FEATURES if f"kernel:{m}" not in self.tools]

    def missing(self) -> list[str]:
        """What the node lacks for the pod network, as words a person can act on."""
        lacks = [f"{tool} (command)" for tool in REQUIRED_TOOLS if tool not in self.tools]
        lacks += self.missing_kernel_features
        lacks += [f"CNI plugin {p}" for p in self.missing_plugins]
        return lacks

    def link(self, name: str) -> Optional[dict[str, Any]]:
        return next((a for a in self.addrs if a.get("ifname") == name), None)

    def device_with_address(self, address: IPv4Address) -> Optional[dict[str, Any]]:
        """The link holding `address` (a node's underlay device)."""
        for link in self.addrs:
            for info in link.get("addr_info", []):
                if info.get("local") == str(address):
                    return link
        return None

    def chains(self, table: str) -> list[str]:
        """Names of the chains of `table`."""
        names: list[str] = []
        current: Optional[str] = None
        for line in self.iptables.splitlines():
            if line.startswith("*"):
                current = line[1:]
            elif current == table and line.startswith(":"):
                names.append(line[1:].split()[0])
        return names

    def chain(self, table: str, chain: str) -> Optional[list[str]]:
        """The `-A CHAIN ...` lines of `chain` in `table`, or None when the chain does not exist."""
        lines: Optional[list[str]] = None
        current = None
        for line in self.iptables.splitlines():
            if line.startswith("*"):
                current = line[1:]
            elif current == table and line.startswith(f":{chain} "):
                lines = [] if lines is None else lines
            elif current == table and line.startswith(f"-A {chain} "):
                lines = (lines or []) + [line]
        return lines


def parse_facts(text: str) -> NodeState:
    """Parse the output of the facts script."""
    sections: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        if line.startswith("### "):
            current = line[4:].strip()
            sections[current] = []
        elif current is not None:
            sections[current].append(line)

    def body(name: str) -> str:
        return "\n".join(sections.get(name, [])).strip()

    def as_json(name: str) -> list[Any]:
        try:
            value = json.loads(body(name) or "[]")
        except ValueError:
            return []
        return value if isinstance(value, list) else []

    etc_files, enabled = {}, False
    for line in sections.get("etc", []):
        digest, _, path = line.partition("  ")
        if digest == "enabled":
            enabled = True
        elif path:
            etc_files[path] = digest
    files = {}
    for line in sections.get("files", []):
        digest, _, path = line.partition("  ")
        if path:
            files[path[2:] if path.startswith("./") else path] = digest
    return NodeState(
        hostname=body("hostname"), kernel=body("kernel"), tools=frozenset(sections.get("tools", [])),
        cni_plugins=dict(line.split("=", 1) for line in sections.get("cni", []) if "=" in line),
        addrs=as_json("addr"), routes=as_json("route"), neighbours=as_json("neigh"), fdb=as_json("fdb"),
        sysctls=dict(line.split("=", 1) for line in sections.get("sysctl", []) if "=" in line),
        conflists=tuple(sections.get("conflists", [])), conflist=body("conflist"),
        iptables=body("iptables"), files=files,
        pods={line.split("=", 1)[0]: line.split("=", 1)[1].split()[0] for line in sections.get("pods", [])
              if "=" in line},
        pod_confs={line.split("=", 1)[0]: line.rsplit("conf=", 1)[1] for line in sections.get("pods", [])
                   if "conf=" in line},
        netns=tuple(sections.get("netns", [])), nft_tables=tuple(sections.get("nft", [])),
        package_managers=tuple(line for line in sections.get("packaging", []) if line), os=body("os"),
        modules=dict(line.split("=", 1) for line in sections.get("modules", []) if "=" in line),
        boot_id=body("boot"), systemd=body("init") == "systemd", etc_files=etc_files, unit_enabled=enabled,
        restored=tuple(line for line in sections.get("restored", []) if line.strip()),
        announced=tuple(line.strip() for line in sections.get("announced", []) if line.strip()),
        health_server="".join(sections.get("healthz", [])).strip())

"""Emulated nodes on this machine (`lab up` / `lab down`).

Each node is a network namespace `<lab>-<node>` whose eth0 is a veth into an underlay bridge; inside
it, `unshare --mount --uts` gives the node its own hostname and private /run, /etc, /var/lib, /root,
/home, /tmp and /var/log (see templates/node-init.sh.j2), and a real sshd listens on the node's address. So the SSH
code that drives real VMs is the code the tests run.

The underlay bridge lives in a namespace of its own (`<lab>-underlay`), as do a router and an
"outside" host on TEST-NET-3 for egress tests. The root namespace gets exactly one link, `<lab>-host`,
to reach the nodes' SSH ports; no lab namespace routes through it (nodes route via the lab's router,
which has no default route, so nothing leaves the lab).

`layout()` and the `*_commands()` functions are the pure plan; `LocalProvider` applies it.
"""

from __future__ import annotations

import contextlib
import grp
import ipaddress
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, replace
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Callable, Iterable, Optional, Sequence

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from .. import inventory as inventory_mod
from ..errors import InputError, LabError
from ..model import Emulated, Inventory, Node, Ssh
from ..plan.ipam import first_free_subnet
from ..plan.network import stable_mac
from ..render import render, resource_text
from ..state import LabFiles, atomic_write, current_lab, set_current_lab

# RFC 2544's benchmarking range: reserved, never routed on the internet; one /24 per lab.
UNDERLAY_POOL = IPv4Network("198.18.0.0/15")
OUTSIDE_NET = IPv4Network("203.0.113.0/24")  # TEST-NET-3, inside the lab's "outside" namespace only
SSHD = "/usr/sbin/sshd"
REQUIRED_TOOLS = ("ip", "unshare", "setsid", "nsenter")
SUDO_USER_TOOLS = (("sudo", "sudo"), ("useradd", "passwd"))  # (command, Debian package) for emulated.sudo_user
SSH_WAIT_SECONDS = 20.0

Progress = Callable[[str], None]


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
        return OUTSIDE_NET[10]

    @property
    def infra_namespaces(self) -> tuple[str, ...]:
        return (self.underlay_ns, self.router_ns, self.outside_ns)


def layout(lab: str, emulated: Emulated, count: int, underlay: IPv4Network) -> LabLayout:
    """The plan for `count` emulated nodes of lab `lab` on `underlay`."""
    most = underlay.num_addresses - 13  # .1 is the root namespace's, .11 on the nodes', the last two router/broadcast
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


def start_command(lay: LabLayout, node: EmulatedNode, files: LabFiles) -> Cmd:
    """The command that starts node's sshd inside its namespaces, detached (setsid -f)."""
    node_dir = files.node_dir(node.name)
    script = render("node-init.sh.j2", lab=lay.lab, node=node.name, pidfile=node_dir / "sshd.pid",
                    sshd_config=node_dir / "sshd_config", host_key=node_dir / "ssh_host_ed25519_key",
                    authorized_keys=files.client_key.with_suffix(".pub"), sudo_user=lay.sudo_user)
    return Cmd(("setsid", "-f", "ip", "netns", "exec", node.namespace,
                "unshare", "--mount", "--uts", "--propagation", "private", "--", "/bin/sh", "-c", script))


# ---- side effects -------------------------------------------------------------------------------


def run_local(cmd: Cmd, **kwargs) -> subprocess.CompletedProcess:
    """Run a local command; a failure is a LabError with the command and its error."""
    proc = subprocess.run(cmd.argv, input=cmd.stdin, capture_output=True, text=True, **kwargs)
    if proc.returncode != 0:
        detail = (proc.stderr.strip() or proc.stdout.strip() or f"exit {proc.returncode}").splitlines()[-1]
        shown = " ".join(cmd.argv[:6]) + (" ..." if len(cmd.argv) > 6 else "")
        raise LabError(f"`{shown}` failed: {detail}")
    return proc


def generate_key(path: Path, comment: str) -> str:
    """Write an ed25519 private key (OpenSSH format, 0600) and its .pub; return the public key line."""
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                           serialization.PublicFormat.OpenSSH).decode() + f" {comment}"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(private)
    path.with_suffix(".pub").write_text(public + "\n")
    return public


def ensure_key(path: Path, comment: str) -> str:
    """The public key of `path`, generating the pair once."""
    pub = path.with_suffix(".pub")
    if path.exists() and pub.exists():
        return pub.read_text().strip()
    return generate_key(path, comment)


def lab_namespaces(lab: str) -> list[str]:
    """Every network namespace of lab `lab` (names `<lab>-*`; lab names contain no '-')."""
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return sorted(line.split()[0] for line in out.splitlines() if line.split() and
                  line.split()[0].startswith(f"{lab}-"))


def link_exists(name: str) -> bool:
    return Path("/sys/class/net", name).exists()


def namespace_inode(namespace: str) -> Optional[int]:
    try:
        return os.stat(f"/run/netns/{namespace}").st_ino
    except OSError:
        return None


def ns_inode(pid: int, kind: str) -> Optional[int]:
    try:
        return os.stat(f"/proc/{pid}/ns/{kind}").st_ino
    except OSError:
        return None


def pids_in_namespace(namespace: str) -> set[int]:
    out = subprocess.run(["ip", "netns", "pids", namespace], capture_output=True, text=True).stdout
    return {int(p) for p in out.split() if p.isdigit()}


def all_pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def node_run_mount(lab: str, node: str = "") -> Callable[[str], bool]:
    """Whether a mount source is the private /run of `node` of `lab` (of any of its nodes without `node`):
    templates/node-init.sh.j2 names it <lab>-<node>-run; lab names have no dash."""
    if node:
        return lambda source: source == f"{lab}-{node}-run"
    return lambda source: source.startswith(f"{lab}-") and source.endswith("-run")


def has_mount(pid: int, is_wanted: Callable[[str], bool]) -> bool:
    """Whether process `pid` has a mount whose source `is_wanted`: with a node's /run, it is something the
    node started, in whichever of its namespaces (`ip netns exec` gives pods and lessons mount namespaces
    of their own, copies of the node's), even once the node's sshd is gone."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/mountinfo").read_text().splitlines():
            fields = line.split(" - ", 1)[-1].split()
            if len(fields) > 1 and is_wanted(fields[1]):
                return True
    return False


def lab_processes(lab: str, namespaces: Iterable[str], mount_namespaces: Iterable[int], node: str = "") -> set[int]:
    """PIDs the lab (or its `node`) started: those in its network namespaces, those in the nodes' mount
    namespaces, and all that run with a node's private /run (pods, lessons)."""
    own_mnt = ns_inode(os.getpid(), "mnt")
    pids: set[int] = set()
    mnts = set(mount_namespaces)
    for namespace in namespaces:
        for pid in pids_in_namespace(namespace):
            pids.add(pid)
            mnt = ns_inode(pid, "mnt")
            if mnt is not None:
                mnts.add(mnt)
    mnts.discard(own_mnt)  # never match processes that merely share our mount namespace
    node_run = node_run_mount(lab, node)
    pids.update(pid for pid in all_pids() if ns_inode(pid, "mnt") in mnts or has_mount(pid, node_run))
    pids.discard(os.getpid())
    return pids


def end_processes(pids: set[int], grace: float = 2.0) -> None:
    """SIGTERM, then SIGKILL what is left after `grace` seconds; return once all are gone."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while pids and time.monotonic() < deadline:
            pids = {pid for pid in pids if process_alive(pid)}
            if pids:
                time.sleep(0.02)
        if not pids:
            return


def process_alive(pid: int) -> bool:
    """True while `pid` runs (a zombie counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def root_routes() -> list[IPv4Network]:
    """Destinations of the root namespace's IPv4 routes (default route excluded)."""
    out = subprocess.run(["ip", "-j", "-4", "route", "show", "table", "all"], capture_output=True, text=True).stdout
    nets = []
    for route in json.loads(out or "[]"):
        dst = route.get("dst", "default")
        if dst == "default" or route.get("type") in ("broadcast", "local"):
            continue
        with contextlib.suppress(ValueError):
            nets.append(ipaddress.ip_network(dst, strict=False))
    return nets


class LocalProvider:
    """Brings emulated labs up and down; `progress` receives one line per step."""

    provider = "local"

    def __init__(self, progress: Progress = lambda line: None):
        self.progress = progress

    def check_host(self) -> None:
        check_host()

    def record_extra(self) -> dict:
        """What else this provider notes in the lab's record."""
        return {}

    def _start_services(self, lay: LabLayout, files: LabFiles, record: dict) -> bool:
        """Start what the lab's own namespaces serve the nodes, where it is not running; True if it was not."""
        return False

    # -- up ---------------------------------------------------------------------------------------

    def up(self, name: str, count: Optional[int], base: Inventory, sudo_user: Optional[str] = None) -> Inventory:
        """Converge lab `name` to `count` running nodes; return its inventory. Idempotent. With `sudo_user`
        (or the inventory's emulated.sudo_user), the nodes get that user with passwordless sudo and the lab
        logs in as it."""
        inventory_mod.check_lab_name(name)
        emulated = base.emulated or Emulated()
        if sudo_user is not None:
            problem = inventory_mod.user_name_problem(sudo_user)
            if problem:
                raise InputError(f"--sudo-user: {problem[0]}; {problem[1]}")
            emulated = replace(emulated, sudo_user=sudo_user)
        self.check_host()
        count = count or emulated.nodes
        emulated = replace(emulated, nodes=count)
        files = LabFiles.of(name)
        with files.lock():
            record = files.read_record()
            made_by = record.get("provider", "local")
            if record.get("nodes") and made_by != self.provider:
                raise InputError(f"lab {name} is up with {made_by} nodes, not {self.provider}; give --provider "
                                 f"{made_by}, or remove the lab with `lab down --name {name}` first")
            emulated = replace(emulated, sudo_user=same_sudo_user(name, record, emulated.sudo_user,
                                                                  explicit=sudo_user is not None))
            if emulated.sudo_user:  # also when it comes from the running lab (new nodes get the user too)
                check_sudo_user(emulated.sudo_user)
            infra_ok = record.get("underlay") and all(
                namespace_inode(ns) for ns in (f"{name}-underlay", f"{name}-router", f"{name}-outside")
            ) and link_exists(f"{name}-host")
            if not infra_ok and (lab_namespaces(name) or link_exists(f"{name}-host") or files.exists()):
                self.progress(f"lab {name} is incomplete: removing what is left of it first")
                self._teardown(name, files)
                record = {}
            underlay = IPv4Network(record["underlay"]) if infra_ok else choose_underlay(root_routes())
            lay = layout(name, emulated, count, underlay)
            files.create()
            # what a provider noted of a running lab (a server's PID, say) stays, unless the lab is made anew
            record = {**(record if infra_ok else {}), "lab": name, "underlay": str(underlay), "status": "creating",
                      "provider": self.provider, "sudo_user": emulated.sudo_user,
                      "nodes": record.get("nodes", {}) if infra_ok else {}, **self.record_extra()}
            files.write_record(record)
            if not infra_ok:
                self.progress(f"creating the underlay {underlay}, router and outside host")
                for cmd in infra_commands(lay):
                    run_local(cmd)
            healthy = {n for n, info in record["nodes"].items() if self._node_running(name, n, info)}
            wanted = {n.name for n in lay.nodes}
            present = set(record["nodes"]) | {ns[len(name) + 1:] for ns in lab_namespaces(name)
                                              if ns not in lay.infra_namespaces}
            changed = not infra_ok or bool(present - wanted)
            for extra in sorted(present - wanted):
                self.progress(f"removing node {extra}")
                self._remove_node(name, extra, record["nodes"].pop(extra, {}), files)
            missing = [n for n in lay.nodes if n.name not in healthy]
            if missing:
                changed = True
                self._create_nodes(lay, missing, files, record)
            changed = self._start_services(lay, files, record) or changed
            record["status"] = "up"
            files.write_record(record)
            inv = self._write_inventory(base, lay, emulated, files)
            set_current_lab(name)
            if not changed:
                self.progress(f"lab {name} is already up with {count} nodes: no changes")
            return inv

    def _create_nodes(self, lay: LabLayout, nodes: list[EmulatedNode], files: LabFiles, record: dict) -> None:
        ensure_key(files.client_key, f"cluster-lab@{lay.lab}")  # its .pub is each node's authorized_keys
        for node in nodes:
            # What is left of a node that died (its namespace, its processes) goes before it is made again.
            # It keeps its folder: its host key stays the one pinned, as a real machine's does.
            if namespace_inode(node.namespace):
                self.progress(f"node {node.name} is not running: making it again")
                self._remove_node(lay.lab, node.name, record["nodes"].pop(node.name, {}), files, keep_files=True)
            node_dir = files.node_dir(node.name)
            node_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            ensure_key(node_dir / "ssh_host_ed25519_key", f"root@{node.name}")
            (node_dir / "sshd_config").write_text(
                render("sshd_config.j2", lab=lay.lab, node=node.name, address=node.address, sudo_user=lay.sudo_user))
            with contextlib.suppress(FileNotFoundError):
                (node_dir / "sshd.pid").unlink()
        self.progress(f"creating {len(nodes)} node namespace(s) and links")
        for cmd in node_link_commands(lay, nodes):
            run_local(cmd)
        self.progress(f"starting sshd on {len(nodes)} node(s)")
        for node in nodes:
            # The detached sshd keeps its stdout/stderr: a log file, never a pipe we would wait on.
            with open(files.node_dir(node.name) / "sshd.log", "ab") as log:
                proc = subprocess.run(start_command(lay, node, files).argv, stdin=subprocess.DEVNULL,
                                      stdout=log, stderr=log)
            if proc.returncode != 0:
                raise LabError(f"node {node.name}: could not start its namespaces (exit {proc.returncode}); "
                               f"see {files.node_dir(node.name) / 'sshd.log'}")
        self._wait_for_ssh(lay, nodes, files, record)

    def _wait_for_ssh(self, lay: LabLayout, nodes: list[EmulatedNode], files: LabFiles, record: dict) -> None:
        pending = {n.name: n for n in nodes}
        deadline = time.monotonic() + SSH_WAIT_SECONDS
        while pending:
            for name, node in list(pending.items()):
                pid = read_pid(files.node_dir(name) / "sshd.pid")
                if pid and ns_inode(pid, "net") == namespace_inode(node.namespace) and port_open(node.address, 22):
                    record["nodes"][name] = {"address": str(node.address), "pid": pid,
                                             "mntns": ns_inode(pid, "mnt"), "netns": node.namespace}
                    del pending[name]
                elif pid and not process_alive(pid) or time.monotonic() > deadline:
                    files.write_record(record)
                    log = files.node_dir(name) / "sshd.log"
                    tail = log.read_text(errors="replace").strip().splitlines()[-1:] if log.exists() else []
                    raise LabError(f"node {name}: sshd did not come up on {node.address}:22"
                                   f"{': ' + tail[0] if tail else ''} (log: {log}); `lab down --name {lay.lab}` "
                                   f"removes what was made")
            if pending:
                self.progress(f"waiting for SSH: {len(nodes) - len(pending)}/{len(nodes)} nodes ready")
                time.sleep(0.05)
        files.write_record(record)

    def _node_running(self, lab: str, node: str, info: dict) -> bool:
        pid = info.get("pid")
        return bool(pid) and process_alive(pid) and ns_inode(pid, "net") == namespace_inode(f"{lab}-{node}")

    def _write_inventory(self, base: Inventory, lay: LabLayout, emulated: Emulated, files: LabFiles) -> Inventory:
        """Write known_hosts (the pinned host keys) and the inventory of the lab; return it, re-read."""
        known_hosts = "".join(
            f"{n.address} {(files.node_dir(n.name) / 'ssh_host_ed25519_key.pub').read_text().strip()}\n"
            for n in lay.nodes)
        ssh = Ssh(user=lay.sudo_user or "root", become=lay.sudo_user is not None, key=files.client_key,
                  known_hosts=files.known_hosts, connect_timeout=5.0 if emulated.shares_kernel else 20.0)
        nodes = tuple(Node(n.name, n.address, str(n.address), ssh) for n in lay.nodes)
        inv = Inventory(str(files.inventory), replace(base.cluster, name=lay.lab), nodes, emulated)
        atomic_write(files.known_hosts, known_hosts, mode=0o644)
        atomic_write(files.inventory, inventory_mod.dump(inv, files.root), mode=0o644)
        return inventory_mod.load(files.inventory)

    # -- down -------------------------------------------------------------------------------------

    def down(self, name: str) -> bool:
        """Remove lab `name` entirely; False when there was nothing of it."""
        files = LabFiles.of(name)
        with files.lock():
            if not (files.exists() or lab_namespaces(name) or link_exists(f"{name}-host")):
                return False
            check_host()
            self._teardown(name, files)
            if current_lab() is None:
                set_current_lab(None)
            return True

    def _teardown(self, name: str, files: LabFiles) -> None:
        namespaces = lab_namespaces(name)
        recorded_mnt = [info.get("mntns") for info in files.read_record().get("nodes", {}).values()
                        if info.get("mntns")]
        pids = lab_processes(name, namespaces, recorded_mnt)
        if pids:
            self.progress(f"ending {len(pids)} process(es) of lab {name}")
            end_processes(pids)
        if link_exists(f"{name}-host"):
            run_local(Cmd(("ip", "link", "del", f"{name}-host")))
        if namespaces:
            self.progress(f"deleting {len(namespaces)} namespace(s)")
            run_local(ip_batch(None, [f"netns del {ns}" for ns in namespaces]))
        shutil.rmtree(files.root, ignore_errors=True)

    def _remove_node(self, lab: str, node: str, info: dict, files: LabFiles, keep_files: bool = False) -> None:
        namespace = f"{lab}-{node}"
        pids = lab_processes(lab, [namespace] if namespace_inode(namespace) else [],
                             [info["mntns"]] if info.get("mntns") else [], node=node)
        end_processes(pids)
        if namespace_inode(namespace):
            run_local(Cmd(("ip", "netns", "del", namespace)))
        # The node's underlay port goes with its namespace, asynchronously: wait, so a re-create can't collide.
        wait_until(lambda: not port_link_exists(lab, node), 5.0)
        if not keep_files:
            shutil.rmtree(files.node_dir(node), ignore_errors=True)


def port_link_exists(lab: str, node: str) -> bool:
    proc = subprocess.run(["ip", "-n", f"{lab}-underlay", "link", "show", "dev", node], capture_output=True)
    return proc.returncode == 0


def wait_until(predicate: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def read_pid(path: Path) -> Optional[int]:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def port_open(address: IPv4Address, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((str(address), port)) == 0


def check_host() -> None:
    """Emulated nodes need root and a few tools; say exactly what is missing."""
    if os.geteuid() != 0:
        raise LabError("emulated nodes need root (they create network namespaces): run as root, e.g. sudo lab up")
    missing = [tool for tool in REQUIRED_TOOLS if shutil.which(tool) is None]
    if not Path(SSHD).exists():
        missing.append(SSHD + " (openssh-server)")
    report_missing(missing)


def report_missing(missing: list[str]) -> None:
    if missing:
        raise LabError(f"missing on this machine: {', '.join(missing)}; install them (`make setup` does)")


def check_sudo_user(name: str) -> None:
    """Nodes with a sudo user need sudo and useradd here, and a name new on this machine."""
    report_missing([f"{tool} ({package})" for tool, package in SUDO_USER_TOOLS if shutil.which(tool) is None])
    check_new_account(name)


def check_new_account(name: str) -> None:
    """The nodes' /etc starts as a copy of this machine's: the sudo user must be a new name there."""
    for kind, lookup in (("user", pwd.getpwnam), ("group", grp.getgrnam)):
        try:
            lookup(name)
        except KeyError:
            continue
        raise InputError(f"sudo user: {name!r} is already a {kind} on this machine, and the nodes' /etc starts as "
                         f"a copy of this machine's; choose a new name, e.g. lab")


def same_sudo_user(lab: str, record: dict, wanted: Optional[str], explicit: bool) -> Optional[str]:
    """The sudo user of lab `lab`: running nodes keep the one they were made with. Not asking for one keeps
    it; asking for another is an error (the nodes would have to be made again)."""
    if not record.get("nodes"):
        return wanted
    current = record.get("sudo_user")
    if wanted == current or (wanted is None and not explicit):
        return current
    have = f"sudo user {current!r}" if current else "no sudo user (root logins)"
    return_to = f"--sudo-user {current}" if current else "no sudo user"
    raise InputError(f"lab {lab} is up with {have}, not {wanted!r}; give {return_to}, or remove the lab with "
                     f"`lab down --name {lab}` and bring it up again")


def base_inventory(path: Optional[str]) -> Inventory:
    """The inventory `lab up` starts from: the given file, else the packaged inventories/local.yaml."""
    if path:
        return inventory_mod.load(path)
    return inventory_mod.parse(resource_text("orchestrator.inventories", "local.yaml"),
                               "inventories/local.yaml", Path.cwd())

"""Emulated nodes on this machine (`lab up` / `lab down`).

Each node is a network namespace `<lab>-<node>` whose eth0 is a veth into an underlay bridge; inside
it, `unshare --mount --uts` gives the node its own hostname and private /run, /etc, /var/lib, /root,
/home, /tmp and /var/log (see templates/local/node-init.sh.j2), and a real sshd listens on the node's
address. So the SSH code that drives real VMs is the code the tests run.

The underlay bridge lives in a namespace of its own (`<lab>-underlay`), as do a router and an
"outside" host on TEST-NET-3 for egress tests. The root namespace gets exactly one link, `<lab>-host`,
to reach the nodes' SSH ports; no lab namespace routes through it (nodes route via the lab's router,
which has no default route, so nothing leaves the lab).

`LocalProvider` applies the pure plan of providers/emulated_plan.py, with the processes, namespaces and
links of providers/processes.py.
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import shutil
import subprocess
import time
from dataclasses import replace
from ipaddress import IPv4Network
from pathlib import Path
from typing import Callable, Optional

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from orchestrator.core import inventory as inventory_mod
from orchestrator.core.errors import InputError, LabError
from orchestrator.core.model import Emulated, Inventory, Node, Ssh
from orchestrator.core.render import render, resource_text
from orchestrator.core.state import LabFiles, atomic_write, current_lab, set_current_lab
from orchestrator.providers.emulated_plan import (Cmd, EmulatedNode, LabLayout, choose_underlay, infra_commands,
        ip_batch, layout, node_link_commands, start_command, underlay_neighbour_commands)
from orchestrator.providers.processes import (end_processes, lab_namespaces, lab_processes, link_exists, link_mac,
        namespace_inode, ns_inode, port_link_exists, port_open, process_alive, read_pid, root_namespace_lock,
        root_routes, run_local, wait_until)


SSHD = "/usr/sbin/sshd"
REQUIRED_TOOLS = ("ip", "unshare", "setsid", "nsenter")
SUDO_USER_TOOLS = (("sudo", "sudo"), ("useradd", "passwd"))  # (command, Debian package) for emulated.sudo_user
SSH_WAIT_SECONDS = 20.0

Progress = Callable[[str], None]


def generate_key(path: Path, comment: str) -> str:
    """Write an ed25519 private key (OpenSSH format, 0600) and its .pub; return the public key line."""
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                           serialization.PublicFormat.OpenSSH).decode() + f" {comment}"
    atomic_write(path, private, mode=0o600)
    atomic_write(path.with_suffix(".pub"), public + "\n", mode=0o644)
    return public


def ensure_key(path: Path, comment: str) -> str:
    """The public key of `path`, generating the pair once."""
    pub = path.with_suffix(".pub")
    if path.exists() and pub.exists():
        return pub.read_text().strip()
    return generate_key(path, comment)



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

    def up(self, name: str, count: Optional[int], base: Inventory, sudo_user: Optional[str] = None,
           subnets: Optional[int] = None) -> Inventory:
        """Converge lab `name` to `count` running nodes; return its inventory. Idempotent. With `sudo_user`
        (or the inventory's emulated.sudo_user), the nodes get that user with passwordless sudo and the lab
        logs in as it. With `subnets` (or emulated.subnets) > 1, the nodes take turns over that many
        underlay subnets, each its own L2 segment behind the lab's router."""
        inventory_mod.check_lab_name(name)
        emulated = base.emulated or Emulated()
        if subnets is not None:
            emulated = replace(emulated, subnets=subnets)
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
                                                                  explicit=sudo_user is not None),
                               subnets=same_subnets(name, record, emulated.subnets, explicit=subnets is not None))
            check_subnets_fit_backend(base, emulated.subnets)  # also a running lab's, which its inventory may not say
            if emulated.sudo_user:  # also when it comes from the running lab (new nodes get the user too)
                check_sudo_user(emulated.sudo_user)
            infra_ok = record.get("underlay") and all(
                namespace_inode(ns) for ns in (f"{name}-underlay", f"{name}-router", f"{name}-outside")
            ) and link_exists(f"{name}-host")
            if not infra_ok and (lab_namespaces(name) or link_exists(f"{name}-host") or files.exists()):
                self.progress(f"lab {name} is incomplete: removing what is left of it first")
                self._teardown(name, files)
                record = {}
            with root_namespace_lock():
                underlay = IPv4Network(record["underlay"]) if infra_ok else choose_underlay(root_routes())
                lay = layout(name, emulated, count, underlay)
                files.create()
                # what a provider noted of a running lab (a server's PID, say) stays, unless the lab is made anew
                record = {**(record if infra_ok else {}), "lab": name, "underlay": str(underlay),
                          "status": "creating", "provider": self.provider, "sudo_user": emulated.sudo_user,
                          "subnets": emulated.subnets,
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
            self._pin_underlay_neighbours(lay)
            changed = self._start_services(lay, files, record) or changed
            record["status"] = "up"
            files.write_record(record)
            inv = self._write_inventory(base, lay, emulated, files)
            set_current_lab(name)
            if not changed:
                self.progress(f"lab {name} is already up with {count} nodes: no changes")
            return inv

    def _pin_underlay_neighbours(self, lay: LabLayout) -> None:
        """Every node's and the router's underlay neighbours as permanent entries (emulated_plan says why),
        for the nodes there are now: run on each `lab up`, as it costs one `ip -batch` per namespace."""
        router_macs = {seg.router_device: link_mac(lay.router_ns, seg.router_device) for seg in lay.segments}
        for cmd in underlay_neighbour_commands(lay, router_macs, link_mac(None, lay.host_link)):
            run_local(cmd)

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
                render("local/sshd_config.j2", lab=lay.lab, node=node.name, address=node.address,
                       sudo_user=lay.sudo_user))
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
        if not pid:
            return False
        return process_alive(pid) and ns_inode(pid, "net") == namespace_inode(f"{lab}-{node}")

    def _write_inventory(self, base: Inventory, lay: LabLayout, emulated: Emulated, files: LabFiles) -> Inventory:
        """Write known_hosts (the pinned host keys) and the inventory of the lab; return it, re-read."""
        known_hosts = "".join(
            f"{n.address} {(files.node_dir(n.name) / 'ssh_host_ed25519_key.pub').read_text().strip()}\n"
            for n in lay.nodes)
        ssh = Ssh(user=lay.sudo_user or "root", become=lay.sudo_user is not None, key=files.client_key,
                  known_hosts=files.known_hosts, connect_timeout=5.0 if emulated.shares_kernel else 20.0)
        nodes = tuple(Node(n.name, n.address, str(n.address), ssh,
                           subnet=lay.segment_of(n).name if lay.subnets else None) for n in lay.nodes)
        inv = Inventory(str(files.inventory), replace(base.cluster, name=lay.lab), nodes, emulated, lay.subnets)
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


def check_subnets_fit_backend(base: Inventory, subnets: int) -> None:
    """host-gw across subnets is refused before anything is made (flannel's host-gw needs one L2 segment)."""
    if subnets > 1 and base.cluster.overlay.backend == "host-gw":
        raise InputError(f"--subnets {subnets}: {base.source}: cluster.overlay.backend is host-gw, which needs every "
                         "node on one L2 segment; use `backend: vxlan` (with `directRouting: true` for plain routes "
                         "inside a subnet), or --subnets 1")


def same_subnets(lab: str, record: dict, wanted: int, explicit: bool) -> int:
    """The number of underlay subnets of lab `lab`: running nodes keep theirs (their addresses depend on it);
    asking for another is an error."""
    if not record.get("nodes"):
        return wanted
    current = int(record.get("subnets", 1))
    if wanted == current or not explicit:
        return current
    raise InputError(f"lab {lab} is up with {current} underlay subnet(s), not {wanted}; give --subnets {current}, "
                     f"or remove the lab with `lab down --name {lab}` and bring it up again")


def base_inventory(path: Optional[str]) -> Inventory:
    """The inventory `lab up` starts from: the given file, else the packaged inventories/local.yaml."""
    if path:
        return inventory_mod.load(path)
    return inventory_mod.parse(resource_text("orchestrator.inventories", "local.yaml"),
                               "inventories/local.yaml", Path.cwd())

"""Real VMs on this machine (`lab up --provider qemu`): Debian with its own kernel, one qemu process each.

The lab's namespaces are the emulated provider's (an underlay bridge, a router without a default route,
an "outside" host, one link into the root namespace): a VM's NIC is a tap on the underlay bridge, and qemu
runs inside the underlay namespace, so nothing a VM sends can leave the lab. Never qemu's user-mode network.

Each VM boots the cached image (providers/image.py) through a copy-on-write overlay of its own, plus a
small seed disk with what makes it this node: hostname, its static address, the host key the lab made
(pinned in the lab's known_hosts before the first boot) and the lab's client key. A reboot from inside
restarts the guest in the same qemu process with the same disks, as a real machine comes back.

`qemu_command()`, `seed_files()`, `tap_commands()` and `choose_accel()` are the pure plan; `QemuProvider`
applies it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional, Sequence

from orchestrator.core.errors import InputError, LabError
from orchestrator.core.inventory import check_lab_name
from orchestrator.core.model import Emulated, Inventory
from orchestrator.core.state import LabFiles, atomic_write
from orchestrator.providers.emulated_plan import Cmd, EmulatedNode, LabLayout, ip_batch
from orchestrator.providers.image import CachedImage, default_recipe, ensure_image, image_cache, seed_image
from orchestrator.providers.local import LocalProvider, check_subnets_fit_backend, ensure_key, report_missing
from orchestrator.providers.processes import end_processes, port_open, process_alive, read_pid, run_local, wait_until


QEMU = "qemu-system-x86_64"
REQUIRED_TOOLS = ((QEMU, "qemu-system-x86"), ("qemu-img", "qemu-utils"), ("debootstrap", "debootstrap"),
                  ("mkfs.ext4", "e2fsprogs"), ("ip", "iproute2"))
SSH_WAIT_SECONDS = 600.0  # three VMs booting at once under TCG on two cores take two to three minutes
PROBE_SECONDS = 20.0  # a kernel without a root disk reaches its panic in ~4 s under TCG, well under 1 s with KVM
MEMORY_RESERVE_MIB = 512  # left to this machine (the controller, sshd, the lab's other processes)
REPO_PORT = 3142  # the lab's package repository on its router (apt-cacher's port, by custom)


@dataclass(frozen=True)
class VmPaths:
    """A VM's files in the lab's folder."""

    folder: Path

    @property
    def disk(self) -> Path:
        return self.folder / "disk.qcow2"

    @property
    def seed(self) -> Path:
        return self.folder / "seed.img"

    @property
    def pidfile(self) -> Path:
        return self.folder / "qemu.pid"

    @property
    def console(self) -> Path:
        return self.folder / "console.log"

    @property
    def host_key(self) -> Path:
        return self.folder / "ssh_host_ed25519_key"


def qemu_command(lay: LabLayout, node: EmulatedNode, image: CachedImage, paths: VmPaths, accel: str,
                 memory: int) -> list[str]:
    """The command that starts `node`'s VM inside the lab's underlay namespace, daemonized (its PID in the
    pidfile). No -no-reboot: a reboot from inside restarts the guest in place."""
    accel_args = ["-accel", "kvm", "-cpu", "host"] if accel == "kvm" else ["-accel", "tcg,thread=multi", "-cpu", "max"]
    return [
        "ip", "netns", "exec", lay.underlay_ns, QEMU,
        "-name", f"{lay.lab}-{node.name},process={lay.lab}-{node.name}",
        "-nodefaults", "-no-user-config", *accel_args, "-smp", "1", "-m", str(memory),
        "-kernel", str(image.kernel), "-initrd", str(image.initrd),
        "-append", f"root=/dev/vda rw console=ttyS0 net.ifnames=0 systemd.hostname={node.name}",
        "-drive", f"file={paths.disk},if=virtio,format=qcow2",
        "-drive", f"file={paths.seed},if=virtio,format=raw,readonly=on",
        "-netdev", f"tap,id=net0,ifname={node.name},script=no,downscript=no",
        "-device", f"virtio-net-pci,netdev=net0,mac={node.mac}",
        "-display", "none", "-monitor", "none",
        "-chardev", f"file,id=console,path={paths.console},append=on", "-serial", "chardev:console",
        "-pidfile", str(paths.pidfile), "-daemonize",
    ]


def repo_url(lay: LabLayout) -> str:
    """Where VMs get packages: the lab's router serves the image's own packages (nothing outside the lab)."""
    return f"http://{lay.router_address}:{REPO_PORT}/"


def repo_command(lay: LabLayout, image: CachedImage) -> list[str]:
    """The package repository's server, inside the router namespace, on the underlay address only."""
    return ["ip", "netns", "exec", lay.router_ns, sys.executable, "-m", "http.server", str(REPO_PORT),
            "--bind", str(lay.router_address), "--directory", str(image.repo)]


def seed_files(lay: LabLayout, node: EmulatedNode, host_key: str, host_key_pub: str,
               authorized_key: str) -> dict[str, tuple[str, int]]:
    """What makes a VM node `node` (guest path -> (text, mode)): copied onto its disk at every boot."""
    network = (f"# cluster-lab {lay.lab}: the node's underlay address, written by `lab up`\n"
               f"[Match]\nMACAddress={node.mac}\n\n[Link]\nMTUBytes={lay.mtu}\n\n"
               f"[Network]\nAddress={node.address}/{lay.segment_of(node).network.prefixlen}\n"
               f"Gateway={lay.segment_of(node).gateway}\n"
               "LinkLocalAddressing=no\nIPv6AcceptRA=no\n")
    return {
        "/etc/hostname": (f"{node.name}\n", 0o644),
        "/etc/hosts": (f"127.0.0.1 localhost\n127.0.1.1 {node.name}\n", 0o644),
        "/etc/systemd/network/10-cluster-lab.network": (network, 0o644),
        "/etc/ssh/ssh_host_ed25519_key": (host_key, 0o600),
        "/etc/ssh/ssh_host_ed25519_key.pub": (host_key_pub, 0o644),
        "/root/.ssh/authorized_keys": (authorized_key, 0o600),
        # apt's only source: the lab's repository (unsigned, but served inside the lab)
        "/etc/apt/sources.list.d/cluster-lab.list": (f"deb [trusted=yes] {repo_url(lay)} ./\n", 0o644),
    }


def tap_commands(lay: LabLayout, nodes: Sequence[EmulatedNode]) -> list[Cmd]:
    """A tap per VM on the underlay bridge, named after its node (qemu opens it by name)."""
    if not nodes:
        return []
    return [ip_batch(lay.underlay_ns, [line for n in nodes for line in (
        f"tuntap add dev {n.name} mode tap",
        f"link set {n.name} mtu {lay.mtu} master {lay.segment_of(n).bridge} up",
    )])]


def choose_accel(requested: str, kvm_device: bool, kvm_works: Optional[bool]) -> tuple[str, str]:
    """(accelerator, why) for `requested` (auto|kvm|tcg); `kvm_works` is the probe's answer (None: not
    probed). Asking for kvm where it cannot work is an error, not a silent TCG."""
    if requested == "tcg":
        return "tcg", "asked for"
    if not kvm_device:
        if requested == "kvm":
            raise InputError("--accel kvm: this machine has no /dev/kvm; use --accel tcg (software emulation) or auto")
        return "tcg", "no /dev/kvm"
    if kvm_works is False:
        if requested == "kvm":
            raise InputError("--accel kvm: a VM under KVM does not boot here (a probe kernel did not finish in "
                             f"{PROBE_SECONDS:.0f} s; nested virtualisation?); use --accel tcg or auto")
        return "tcg", f"KVM did not boot a probe kernel in {PROBE_SECONDS:.0f} s"
    return "kvm", "asked for" if requested == "kvm" else "a probe kernel booted under KVM"


def memory_problem(count: int, memory: int, available_mib: int) -> Optional[str]:
    """Why `count` VMs of `memory` MiB do not fit `available_mib`, or None."""
    wanted = count * memory
    if count == 0 or wanted + MEMORY_RESERVE_MIB <= available_mib:
        return None
    most = max(0, (available_mib - MEMORY_RESERVE_MIB) // memory)
    return (f"{count} VMs x {memory} MiB = {wanted} MiB, but this machine has {available_mib} MiB available "
            f"(and keeps {MEMORY_RESERVE_MIB} MiB for itself); "
            f"use --memory {max(256, (available_mib - MEMORY_RESERVE_MIB) // max(count, 1))} "
            f"or at most {most} nodes")


# ---- side effects -------------------------------------------------------------------------------


def available_memory_mib() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) // 1024
    return 0


def probe_kvm(image: CachedImage, progress) -> bool:
    """Whether a guest runs under KVM here: a kernel with no root disk must reach its panic and end qemu
    (-no-reboot, panic=-1) within PROBE_SECONDS. The answer is kept per boot of this machine and qemu."""
    version = subprocess.run([QEMU, "--version"], capture_output=True, text=True).stdout.splitlines()[:1]
    boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    cache = image_cache() / "kvm-probe.json"
    key = f"{boot} {version[0] if version else ''}"
    with contextlib.suppress(OSError, ValueError):
        known = json.loads(cache.read_text())
        if known.get("key") == key:
            return bool(known["works"])
    progress(f"probing KVM: booting a kernel without a root disk (at most {PROBE_SECONDS:.0f} s)")
    proc = subprocess.Popen([QEMU, "-nodefaults", "-no-user-config", "-accel", "kvm", "-m", "256", "-kernel",
                             str(image.kernel), "-append", "console=ttyS0 panic=-1", "-no-reboot", "-display", "none"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        works = proc.wait(timeout=PROBE_SECONDS) == 0
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        works = False
    atomic_write(cache, json.dumps({"key": key, "works": works}) + "\n", mode=0o644)
    return works


def check_tools() -> None:
    if os.geteuid() != 0:
        raise LabError("VMs need root (taps and namespaces): run as root, e.g. sudo lab up --provider qemu")
    report_missing([f"{tool} ({package})" for tool, package in REQUIRED_TOOLS if shutil.which(tool) is None])


class QemuProvider(LocalProvider):
    """Brings labs of real VMs up; `lab down` is the emulated provider's (the VMs' qemu processes run in the
    lab's underlay namespace, their taps and overlays go with the namespaces and the lab's folder)."""

    provider = "qemu"

    def up(self, name: str, count: Optional[int], base: Inventory, sudo_user: Optional[str] = None,
           subnets: Optional[int] = None, memory: Optional[int] = None, accel: Optional[str] = None) -> Inventory:
        """Converge lab `name` to `count` running VMs; return its inventory. Idempotent."""
        check_lab_name(name)
        if sudo_user is not None:
            raise InputError("--sudo-user is for emulated nodes; VMs are reached as root with the lab's key")
        emulated = replace(base.emulated or Emulated(), provider="qemu", sudo_user=None)
        emulated = replace(emulated, memory=memory or emulated.memory, accel=accel or emulated.accel)
        check_subnets_fit_backend(base, subnets or emulated.subnets)
        check_tools()
        # VMs that run already hold their memory (it is not in MemAvailable): count only the ones to start
        running = sum(1 for node, info in LabFiles.of(name).read_record().get("nodes", {}).items()
                      if self._node_running(name, node, info))
        problem = memory_problem(max(0, (count or emulated.nodes) - running), emulated.memory, available_memory_mib())
        if problem:
            raise InputError(f"--memory: {problem}")
        self.image = ensure_image(default_recipe(), self.progress)
        kvm_device = os.path.exists("/dev/kvm")
        probed = probe_kvm(self.image, self.progress) if kvm_device and emulated.accel == "auto" else None
        self.accel, why = choose_accel(emulated.accel, kvm_device, probed)
        self.progress(f"accelerator: {self.accel} ({why})")
        self.memory = emulated.memory
        return super().up(name, count, replace(base, emulated=emulated), subnets=subnets)

    def check_host(self) -> None:
        check_tools()

    def _pin_underlay_neighbours(self, lay: LabLayout) -> None:
        """Nothing: each VM has its own kernel and neighbour table; the router learns one entry per VM."""

    def record_extra(self) -> dict:
        return {"accel": self.accel, "memory": self.memory, "image": self.image.key}

    def _create_nodes(self, lay: LabLayout, nodes: list[EmulatedNode], files: LabFiles, record: dict) -> None:
        authorized = ensure_key(files.client_key, f"cluster-lab@{lay.lab}")
        for node in nodes:
            paths = VmPaths(files.node_dir(node.name))
            if node.name in record["nodes"] or paths.pidfile.exists():
                self.progress(f"VM {node.name} is not running: starting it again")
                self._remove_node(lay.lab, node.name, record["nodes"].pop(node.name, {}), files, keep_files=True)
            paths.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            public = ensure_key(paths.host_key, f"root@{node.name}")
            seed_image(paths.seed, seed_files(lay, node, paths.host_key.read_text(), public + "\n", authorized + "\n"))
            if not paths.disk.exists():  # a VM started again keeps its disk, as a real machine does
                run_local(Cmd(("qemu-img", "create", "-q", "-f", "qcow2", "-b", str(self.image.disk), "-F", "raw",
                               str(paths.disk))))
        self.progress(f"creating {len(nodes)} tap(s) on the underlay bridge")
        for cmd in tap_commands(lay, nodes):
            run_local(cmd)
        self.progress(f"starting {len(nodes)} VM(s) ({self.accel}, {self.memory} MiB each)")
        started = time.monotonic()
        for node in nodes:
            paths = VmPaths(files.node_dir(node.name))
            paths.pidfile.unlink(missing_ok=True)
            proc = subprocess.run(qemu_command(lay, node, self.image, paths, self.accel, self.memory),
                                  stdin=subprocess.DEVNULL, capture_output=True, text=True)
            pid = read_pid(paths.pidfile)
            if proc.returncode != 0 or pid is None:
                detail = (proc.stderr.strip() or f"exit {proc.returncode}").splitlines()[-1]
                raise LabError(f"VM {node.name}: qemu did not start: {detail}; `lab down --name {lay.lab}` removes "
                               f"what was made")
            record["nodes"][node.name] = {"address": str(node.address), "pid": pid, "provider": "qemu"}
        files.write_record(record)
        self._wait_for_vms(lay, nodes, files, started)

    def _wait_for_vms(self, lay: LabLayout, nodes: list[EmulatedNode], files: LabFiles, started: float) -> None:
        pending = {n.name: n for n in nodes}
        shown = 0.0
        while pending:
            for name, node in list(pending.items()):
                paths = VmPaths(files.node_dir(name))
                if port_open(node.address, 22):
                    del pending[name]
                elif not process_alive(read_pid(paths.pidfile) or 0):
                    raise LabError(f"VM {name} stopped while booting: {console_tail(paths.console)} (console: "
                                   f"{paths.console}); `lab down --name {lay.lab}` removes what was made")
            waited = time.monotonic() - started
            if pending and waited > SSH_WAIT_SECONDS:
                name = sorted(pending)[0]
                raise LabError(f"VM {name}: no SSH on {pending[name].address}:22 after {waited:.0f} s: "
                               f"{console_tail(VmPaths(files.node_dir(name)).console)} (console: "
                               f"{VmPaths(files.node_dir(name)).console}); `lab down --name {lay.lab}` removes it")
            if pending and waited - shown >= 10:
                shown = waited
                self.progress(f"waiting for SSH: {len(nodes) - len(pending)}/{len(nodes)} VMs ready ({waited:.0f} s)")
            if pending:
                time.sleep(0.5)
        self.progress(f"{len(nodes)} VM(s) reachable over SSH after {time.monotonic() - started:.0f} s")

    def _start_services(self, lay: LabLayout, files: LabFiles, record: dict) -> bool:
        pid = record.get("repo_pid")
        if pid and process_alive(pid) and is_command(pid, f"{image_cache()}"):
            return False
        self.progress(f"serving the image's packages to the VMs at {repo_url(lay)} (in {lay.router_ns})")
        with open(files.root / "repo.log", "ab") as log:
            server = subprocess.Popen(repo_command(lay, self.image), stdin=subprocess.DEVNULL, stdout=log,
                                      stderr=log, start_new_session=True)
        if not wait_until(lambda: port_open(lay.router_address, REPO_PORT) or server.poll() is not None, 10.0) \
                or server.poll() is not None:
            raise LabError(f"the lab's package repository did not start (see {files.root / 'repo.log'}); "
                           f"`lab down --name {lay.lab}` removes what was made")
        record["repo_pid"] = server.pid
        return True

    def _node_running(self, lab: str, node: str, info: dict) -> bool:
        pid = info.get("pid")
        if not pid:
            return False
        return process_alive(pid) and is_vm_process(pid, f"{lab}-{node}")

    def _remove_node(self, lab: str, node: str, info: dict, files: LabFiles, keep_files: bool = False) -> None:
        pid = info.get("pid") or read_pid(VmPaths(files.node_dir(node)).pidfile)
        if pid and process_alive(pid) and is_vm_process(pid, f"{lab}-{node}"):
            end_processes({pid}, grace=10.0)  # SIGTERM: qemu stops the guest at once
        subprocess.run(["ip", "-n", f"{lab}-underlay", "link", "del", node], capture_output=True)
        if not keep_files:
            shutil.rmtree(files.node_dir(node), ignore_errors=True)


def is_command(pid: int, prefix: str) -> bool:
    """Whether process `pid` has an argument starting with `prefix` (a PID read from a file may have been
    reused since)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return any(arg.startswith(prefix.encode()) for arg in argv)


def is_vm_process(pid: int, vm_name: str) -> bool:
    """Whether `pid` is the qemu of VM `vm_name`."""
    return is_command(pid, f"{vm_name},")


def console_tail(console: Path) -> str:
    """The last line the VM printed on its serial console, for an error message."""
    with contextlib.suppress(OSError):
        lines = [line.strip() for line in console.read_text(errors="replace").splitlines() if line.strip()]
        if lines:
            return f"its console last said {lines[-1][:160]!r}"
    return "its console is empty"

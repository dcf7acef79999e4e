"""What a lab is made of on this machine, seen and ended from the root namespace: running a local command,
the lab's namespaces and links, the processes it started (`lab_processes()`, `end_processes()`), PID files,
open ports and the root namespace's routes.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import os
import signal
import socket
import subprocess
import time
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Callable, Iterable, Iterator, Optional

from orchestrator.core.errors import LabError
from orchestrator.providers.emulated_plan import Cmd


def run_local(cmd: Cmd, **kwargs) -> subprocess.CompletedProcess:
    """Run a local command; a failure is a LabError with the command and its error."""
    proc = subprocess.run(cmd.argv, input=cmd.stdin, capture_output=True, text=True, **kwargs)
    if proc.returncode != 0:
        detail = (proc.stderr.strip() or proc.stdout.strip() or f"exit {proc.returncode}").splitlines()[-1]
        shown = " ".join(cmd.argv[:6]) + (" ..." if len(cmd.argv) > 6 else "")
        raise LabError(f"`{shown}` failed: {detail}")
    return proc


def link_mac(namespace: Optional[str], link: str) -> str:
    """The MAC address of `link` (in network namespace `namespace`, or the root one)."""
    target = ("-n", namespace) if namespace else ()
    shown = json.loads(run_local(Cmd(("ip", *target, "-j", "link", "show", "dev", link))).stdout)
    return str(shown[0]["address"])


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
    templates/local/node-init.sh.j2 names it <lab>-<node>-run; lab names have no dash."""
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


ROOT_LOCK = Path("/run/lock/cluster-lab-root-namespace.lock")


@contextlib.contextmanager
def root_namespace_lock() -> Iterator[None]:
    """Hold the machine's one lock on what labs add to the root namespace: two `lab up` at once (of any state
    folder) would otherwise both take the first free underlay before either has its link there."""
    ROOT_LOCK.parent.mkdir(parents=True, exist_ok=True)
    with open(ROOT_LOCK, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def root_routes() -> list[IPv4Network]:
    """Destinations of the root namespace's IPv4 routes (default route excluded)."""
    out = subprocess.run(["ip", "-j", "-4", "route", "show", "table", "all"], capture_output=True, text=True).stdout
    nets = []
    for route in json.loads(out or "[]"):
        dst = route.get("dst", "default")
        if dst == "default" or route.get("type") in ("broadcast", "local"):
            continue
        with contextlib.suppress(ValueError):
            nets.append(ipaddress.IPv4Network(dst, strict=False))  # `ip -4`: IPv4 routes only
    return nets


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

"""`lab top`: the CPU and memory the node's pods and the node use, read from /proc twice, a sample apart, as
metrics-server reads the kubelet's cgroup counters. A pod's processes are those in its network namespace (its
server and whatever `lab exec` runs there); CPU is their user and system time over the sample, memory their
resident set. A node with its own kernel (a VM, a machine) reports the kernel's totals; an emulated node, which
shares this machine's kernel, reports the processes in its own and its pods' namespaces, against the machine's
CPUs and memory (`shared_kernel`)."""

from __future__ import annotations

import os
import time
from typing import Optional

from .pods import read_pod_records

TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def netns_of(pid: str) -> Optional[int]:
    try:
        return os.stat(f"/proc/{pid}/ns/net").st_ino
    except OSError:  # gone, or a kernel thread
        return None


def cpu_ticks(pid: str) -> int:
    """User and system time of process `pid` so far, in clock ticks (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of proc(5))
    except (OSError, IndexError, ValueError):
        return 0


def resident_bytes(pid: str) -> int:
    try:
        with open(f"/proc/{pid}/statm") as handle:
            return int(handle.read().split()[1]) * PAGE
    except (OSError, IndexError, ValueError):
        return 0


def processes_by_netns(wanted: set[int]) -> dict[int, list[str]]:
    """The processes in each network namespace of `wanted` (by inode)."""
    found: dict[int, list[str]] = {inode: [] for inode in wanted}
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            inode = netns_of(pid)
            if inode in found:
                found[inode].append(pid)
    return found


def kernel_busy_ticks() -> int:
    """The ticks every CPU of this kernel spent busy (all but idle and iowait), from /proc/stat."""
    with open("/proc/stat") as handle:
        values = [int(v) for v in handle.readline().split()[1:]]
    return sum(values[:8]) - values[3] - values[4]  # user nice system idle iowait irq softirq steal


def memory_info() -> dict[str, int]:
    with open("/proc/meminfo") as handle:
        return {line.split(":")[0]: int(line.split()[1]) * 1024 for line in handle}


def usage(lib: str, seconds: float) -> tuple[dict, dict]:
    """({pod key: {cpu_m, memory}}, the node's {cpu_m, memory, cpus, memory_total, shared_kernel})."""
    pods = {}
    for key, record in read_pod_records(lib):
        try:
            pods[key] = os.stat(f"/run/netns/{record['netns']}").st_ino if record else None
        except OSError:
            pods[key] = None
    node_ns = os.stat("/proc/self/ns/net").st_ino
    shared_kernel = netns_of("1") != node_ns  # PID 1 of this kernel lives in another network namespace
    wanted = {inode for inode in pods.values() if inode} | {node_ns}
    started = time.monotonic()
    before = {pid: cpu_ticks(pid) for pids in processes_by_netns(wanted).values() for pid in pids}
    busy_before = kernel_busy_ticks()
    time.sleep(seconds)
    groups = processes_by_netns(wanted)
    elapsed = time.monotonic() - started
    busy = kernel_busy_ticks() - busy_before

    def cpu_m(pids: list[str]) -> int:
        ticks = sum(max(0, cpu_ticks(pid) - before.get(pid, 0)) for pid in pids)
        return round(ticks / TICKS / elapsed * 1000)

    found = {key: {"cpu_m": cpu_m(groups[inode]), "memory": sum(resident_bytes(p) for p in groups[inode])}
             for key, inode in pods.items() if inode}
    memory = memory_info()
    if shared_kernel:
        mine = [pid for inode in wanted for pid in groups[inode]]
        node = {"cpu_m": cpu_m(mine), "memory": sum(resident_bytes(p) for p in mine)}
    else:
        node = {"cpu_m": round(busy / TICKS / elapsed * 1000),
                "memory": memory["MemTotal"] - memory.get("MemAvailable", memory.get("MemFree", 0))}
    return found, {**node, "cpus": os.cpu_count() or 1, "memory_total": memory["MemTotal"],
                   "shared_kernel": shared_kernel}

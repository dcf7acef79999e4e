"""`lab top`'s counters, read from this machine's /proc as the agent reads a node's."""

import os
import time

from orchestrator.agent.usage import cpu_ticks, kernel_busy_ticks, processes_by_netns, resident_bytes
from orchestrator.cli.top import mebibytes, sort_rows


def test_a_process_is_found_in_its_network_namespace_with_its_cpu_time_and_memory():
    me = str(os.getpid())
    own = os.stat("/proc/self/ns/net").st_ino
    assert me in processes_by_netns({own})[own]
    ticks, busy = cpu_ticks(me), kernel_busy_ticks()
    held = b"m" * (64 << 20)  # written, so resident
    deadline = time.process_time() + 0.2
    while time.process_time() < deadline:  # spin on this process's own CPU time, not the clock
        pass
    assert cpu_ticks(me) > ticks and kernel_busy_ticks() > busy
    assert resident_bytes(me) >= len(held)
    assert cpu_ticks("999999999") == 0 and resident_bytes("999999999") == 0  # gone: nothing, no error


def test_rows_sort_as_kubectl_top_sorts_and_memory_is_in_whole_mebibytes():
    rows = [["b", 5, 300 << 20], ["a", 50, 100 << 20], ["c", 1, 200 << 20]]
    assert [r[0] for r in sort_rows(rows, None, 0)] == ["a", "b", "c"]
    assert [r[0] for r in sort_rows(rows, "cpu", 0)] == ["a", "b", "c"]
    assert [r[0] for r in sort_rows(rows, "memory", 0)] == ["b", "c", "a"]
    assert mebibytes((5 << 20) + 1000) == "5Mi"

"""Shared by the benchmarks: timing, a private state folder, and recording figures in docs/benchmarks.md."""

from __future__ import annotations

import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "docs" / "benchmarks.md"


def use_private_state() -> Path:
    """Benchmarks keep their labs out of the user's `.lab`."""
    path = Path(tempfile.mkdtemp(prefix="lab-bench-"))
    os.environ["LAB_STATE_DIR"] = str(path)
    return path


def lab(*args: str) -> float:
    """Run `lab ARGS` and return its wall-clock seconds; fail loudly if it fails."""
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "orchestrator.cli", *args], capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"lab {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
    return elapsed


def record(title: str, lines: list[str]) -> None:
    """Print the figures and append them, dated, to docs/benchmarks.md."""
    stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    machine = f"{platform.node()}, {os.cpu_count()} cores, kernel {platform.release()}"
    block = [f"## {title} ({stamp}; {machine})", "", *lines, ""]
    print("\n".join(block))
    RESULTS.parent.mkdir(exist_ok=True)
    if not RESULTS.exists():
        RESULTS.write_text("# Benchmarks\n\nFigures printed by `bench/*.py`, newest last. "
                           "Run them as root on an idle machine: `.venv/bin/python bench/NAME.py`.\n\n")
    with RESULTS.open("a") as handle:
        handle.write("\n".join(block) + "\n")


def deployment_yaml(name: str, replicas: int) -> str:
    """A Deployment of `replicas` pods labelled app=<name> (the lab runs its own server in them)."""
    return (f"apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {name}}}\nspec:\n  replicas: {replicas}\n"
            f"  selector: {{matchLabels: {{app: {name}}}}}\n  template:\n    metadata: {{labels: {{app: {name}}}}}\n"
            f"    spec: {{containers: [{{name: c, image: x}}]}}\n")


def iperf_gbits(report: str) -> float:
    """Gbit/s the server received, from `iperf3 -J` output."""
    return json.loads(report)["end"]["sum_received"]["bits_per_second"] / 1e9


def medians_in_turns(underlay: Callable[[], float], pods: Callable[[], float], runs: int = 3) -> tuple[float, float]:
    """Median of `runs` measurements of each, taken in turns (so a slow moment of the machine hits both)."""
    a, b = [], []
    for _ in range(runs):
        a.append(underlay())
        b.append(pods())
    return statistics.median(a), statistics.median(b)

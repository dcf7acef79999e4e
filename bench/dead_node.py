"""How soon a node that stops answering is reported: in the middle of a command, and by whole lab commands.

A node is silenced by taking its port on the lab's underlay bridge down: its packets go nowhere, as when a
machine loses its power or its network (its kernel can no longer answer, so no reset comes either).
Prints, for each case, the median seconds from the silence to the one line that names the node, and the
ratio to the transport's bound (core/transport.py DEAD_AFTER):
- mid-command: an SSH command running on the node (`sleep 60`) when it falls silent;
- `lab apply` (scaling a Deployment over all nodes) and `lab verify`, with the node silent from the start.
Aim: about DEAD_AFTER (15 s) each, not the 120 s of a command's own timeout.
Run as root: .venv/bin/python bench/dead_node.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import deployment_yaml, lab, record, use_private_state  # noqa: E402

from orchestrator.core import inventory  # noqa: E402
from orchestrator.core.errors import LabError  # noqa: E402
from orchestrator.core.transport import DEAD_AFTER, Transport  # noqa: E402

NAME = "benchdead"
VICTIM = "node2"


def silence(on: bool) -> None:
    """Take the victim's underlay port down (on) or up again."""
    subprocess.run(["ip", "-n", f"{NAME}-underlay", "link", "set", VICTIM, "down" if on else "up"], check=True)


def mid_command(inv) -> tuple[float, str]:
    """Seconds from the silence to the error of a command running on the victim, and that error."""
    with Transport(inv.nodes) as transport:
        transport.run(VICTIM, ["true"])
        outcome: dict[str, object] = {}

        def sleeper() -> None:
            try:
                transport.run(VICTIM, ["sleep", "60"], timeout=120)
                outcome["error"] = "the command ended normally"
            except LabError as exc:
                outcome["error"] = str(exc)
            outcome["at"] = time.monotonic()

        thread = threading.Thread(target=sleeper)
        thread.start()
        time.sleep(1)  # the command is running on the node
        silent_at = time.monotonic()
        silence(True)
        thread.join()
    silence(False)
    return float(outcome["at"]) - silent_at, str(outcome["error"])


def whole_command(*args: str, stdin: str = "") -> tuple[float, str]:
    """Seconds `lab ARGS` takes with the victim silent from the start, and its last line about the victim."""
    silence(True)
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "orchestrator.cli", *args], input=stdin, capture_output=True,
                          text=True)
    elapsed = time.monotonic() - start
    silence(False)
    said = [line for line in (proc.stdout + proc.stderr).splitlines() if VICTIM in line]
    return elapsed, (said[-1] if said else f"(exit {proc.returncode}, {VICTIM} not named)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    state = use_private_state()
    lab("up", "--name", NAME, "--nodes", "3")
    cases: dict[str, list[tuple[float, str]]] = {"mid-command (`sleep 60` on the node)": [],
                                                 "`lab apply` (3 -> 6 pods, then back)": [], "`lab verify`": []}
    try:
        inv_path = str(state / NAME / "inventory.yaml")
        inv = inventory.load(inv_path)
        lab("deploy", "-i", inv_path)
        subprocess.run([sys.executable, "-m", "orchestrator.cli", "apply", "-i", inv_path, "-f", "-"],
                       input=deployment_yaml("web", 3), capture_output=True, text=True, check=True)
        titles = list(cases)
        for i in range(args.repeat):
            cases[titles[0]].append(mid_command(inv))
            cases[titles[1]].append(whole_command("apply", "-i", inv_path, "-f", "-",
                                                  stdin=deployment_yaml("web", 6 if i % 2 == 0 else 3)))
            cases[titles[2]].append(whole_command("verify", "-i", inv_path))
    finally:
        lab("down", "--name", NAME)
    lines = [f"{args.repeat} runs each, 3 emulated nodes, {VICTIM} silenced (its underlay port down); "
             f"DEAD_AFTER = {DEAD_AFTER} s.", "",
             "| case | median seconds to the line naming the node | / DEAD_AFTER | what was said |",
             "|---|---|---|---|"]
    for title, runs in cases.items():
        median = statistics.median(seconds for seconds, _ in runs)
        lines.append(f"| {title} | {median:.1f} s | {median / DEAD_AFTER:.2f} | {runs[-1][1][:110]} |")
    lines += ["", "Aim: about DEAD_AFTER each (a command's own timeout is 120 s)."]
    record("a node that stops answering (bench/dead_node.py)", lines)


if __name__ == "__main__":
    main()

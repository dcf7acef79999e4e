"""Traffic from outside: how long a LoadBalancer address is unreachable when its announcing node is lost.

With `lab controller run` running, the node announcing a LoadBalancer Service's address is cut off (its port on
the underlay bridge taken down: `lab link svc/NAME down`); the outside host sends a request every 0.1 s (each
waiting at most 0.5 s) until one is served through another node. Prints the median and worst seconds from the
cut to the first request served again, and their ratio to the aim (< 5 s on emulated nodes), and what each
part costs: the controller's detection (its probe) and the takeover (sync, address, gratuitous ARP).
Run as root: .venv/bin/python bench/edge.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import deployment_yaml, lab, record, use_private_state  # noqa: E402

from orchestrator.agent.contract import Probe  # noqa: E402
from orchestrator.core.agent import call_local  # noqa: E402
from orchestrator.core.state import LabFiles  # noqa: E402

NAME = "benchedge"
AIM = 5.0


def served(address: str) -> bool:
    target = {"proto": "tcp", "host": address, "port": 80, "path": "/hostname"}
    reply = call_local(Probe(targets=[target], timeout=0.5), ("ip", "netns", "exec", f"{NAME}-outside")).results
    return bool(reply[0]["ok"])


def failover(inv_path: str, address: str) -> tuple[float, float]:
    """(seconds until served again, seconds until the controller named the new node) for one cut."""
    log = Path(f"/tmp/{NAME}-controller.log")
    with log.open("w") as sink:
        controller = subprocess.Popen([sys.executable, "-u", "-m", "orchestrator.cli", "controller", "run", "-i",
                                       inv_path], stdout=sink, stderr=subprocess.STDOUT)
        try:
            while "synced" not in log.read_text():
                time.sleep(0.1)
            cut_at = time.monotonic()
            lab("link", "-i", inv_path, "svc/web-lb", "down")
            while not served(address):
                time.sleep(0.1)
            back = time.monotonic() - cut_at
            while "announced from" not in log.read_text():
                time.sleep(0.05)
            named = time.monotonic() - cut_at
        finally:
            lab("link", "-i", inv_path, "all", "up")
            controller.terminate()
            controller.wait()
    lab("controller", "run", "--once", "-i", inv_path)  # settled again before the next cut
    return back, named


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    state = use_private_state()
    lab("up", "--name", NAME, "--nodes", "3")
    runs = []
    try:
        inv_path = str(state / NAME / "inventory.yaml")
        lab("deploy", "-i", inv_path)
        subprocess.run([sys.executable, "-m", "orchestrator.cli", "apply", "-i", inv_path, "-f", "-"],
                       input=deployment_yaml("web", 3), capture_output=True, text=True, check=True)
        lab("expose", "-i", inv_path, "deploy", "web", "--port", "80", "--type=LoadBalancer", "--name", "web-lb")
        address = LabFiles.of(NAME).read_objects().services["default/web-lb"].load_balancer_ip
        assert address and served(address), "the LoadBalancer does not answer before the first cut"
        runs = [failover(inv_path, address) for _ in range(args.repeat)]
    finally:
        lab("down", "--name", NAME)
    back = [b for b, _ in runs]
    named = [n for _, n in runs]
    lines = [f"{args.repeat} cuts, 3 emulated nodes, `lab controller run` (probe every 0.5 s, 1 s timeout); the "
             "outside host asks every 0.1 s.", "",
             "| LoadBalancer failover | median | worst | median / aim (5 s) |", "|---|---|---|---|",
             f"| cut -> served again through another node | {statistics.median(back):.1f} s | {max(back):.1f} s | "
             f"{statistics.median(back) / AIM:.2f} |",
             f"| cut -> the controller names the new node | {statistics.median(named):.1f} s | {max(named):.1f} s | "
             f"{statistics.median(named) / AIM:.2f} |"]
    record("LoadBalancer failover (bench/edge.py)", lines)


if __name__ == "__main__":
    main()

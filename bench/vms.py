"""Real VMs on this machine (`lab up --provider qemu`): how long each step takes, with the accelerator named.

Prints: the image build, cold (into a scratch cache, so the real one stays) and cached; then for 2 and 3
VMs: `lab up` from the cached image to SSH-ready, `lab deploy`, `lab apply` of the talk's nginx, `lab
verify`, the sum of those (a lab from nothing to verified), and a reboot from inside one VM until it is
healthy again by itself (its boot unit has restored network, rules and pods), then `lab verify`.
Aims here (TCG): 3 VMs from a cached image to `lab verify` passed in under 4 minutes; a rebooted node
healthy again in under 90 s.
Run as root: .venv/bin/python bench/vms.py [--sizes 2 3] [--cold]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import REPO, lab, record, use_private_state  # noqa: E402

from orchestrator.core import inventory  # noqa: E402
from orchestrator.core.transport import Transport  # noqa: E402
from orchestrator.providers.image import default_recipe, ensure_image  # noqa: E402


def image_seconds(cold: bool) -> tuple[float | None, float]:
    """(cold build, cached call) seconds; the cold build goes to a scratch cache, removed after."""
    cold_seconds = None
    if cold:
        scratch = tempfile.mkdtemp(prefix="lab-bench-images-")
        os.environ["LAB_IMAGE_CACHE"] = scratch
        try:
            start = time.perf_counter()
            ensure_image(default_recipe(), print)
            cold_seconds = time.perf_counter() - start
        finally:
            os.environ.pop("LAB_IMAGE_CACHE")
            shutil.rmtree(scratch, ignore_errors=True)
    ensure_image(default_recipe(), print)  # the real cache: built here if it is not yet
    start = time.perf_counter()
    ensure_image(default_recipe())
    return cold_seconds, time.perf_counter() - start


def reboot_until_healthy(state: Path, name: str, node: str) -> float:
    """Seconds from `systemctl reboot` inside `node` until it answers from a new boot with its lab unit
    done (network, rules and pods restored by the node itself)."""
    inv = inventory.load(state / name / "inventory.yaml")
    unit = f"cluster-lab-{name}.service"
    with Transport(inv.nodes) as transport:
        old = transport.run(node, ["cat", "/proc/sys/kernel/random/boot_id"]).stdout.strip()
        start = time.perf_counter()
        transport.run(node, ["sh", "-c", "systemctl reboot &"], check=False)
    while time.perf_counter() - start < 900:
        with Transport(inv.nodes) as transport:
            try:
                boot = transport.run(node, ["cat", "/proc/sys/kernel/random/boot_id"], timeout=10).stdout.strip()
                state_now = transport.run(node, ["systemctl", "show", "-P", "ActiveState", unit], timeout=10)
                if boot != old and state_now.stdout.strip() == "active":
                    return time.perf_counter() - start
            except Exception:  # noqa: BLE001 - unreachable while it reboots
                pass
        time.sleep(1)
    raise SystemExit(f"{node} was not healthy 900 s after its reboot")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2, 3])
    parser.add_argument("--cold", action="store_true", help="also time a cold image build (~3 minutes)")
    args = parser.parse_args()
    cold, cached = image_seconds(args.cold)
    state = use_private_state()
    lines = [f"Image: cold build {f'{cold:.0f} s' if cold is not None else 'not timed (--cold)'}, "
             f"cached {cached * 1000:.0f} ms (debootstrap of Debian bookworm + cloud kernel, `mkfs.ext4 -d`).", "",
             "| VMs | accelerator | lab up (to SSH) | lab deploy | lab apply | lab verify | up to verified | "
             "reboot to healthy | verify after |",
             "|---|---|---|---|---|---|---|---|---|"]
    for n in args.sizes:
        name = f"benchvm{n}"
        try:
            up = lab("up", "--provider", "qemu", "--name", name, "--nodes", str(n), "--memory", "768")
            accel = json.loads((state / name / "lab.json").read_text()).get("accel", "?")
            inv = str(state / name / "inventory.yaml")
            deploy = lab("deploy", "-i", inv)
            apply = lab("apply", "-i", inv, "-f", str(REPO / "examples"))
            verify = lab("verify", "-i", inv)
            reboot = reboot_until_healthy(state, name, f"node{n}")
            after = lab("verify", "-i", inv)
        finally:
            lab("down", "--name", name)
        total = up + deploy + apply + verify
        lines.append(f"| {n} | {accel} | {up:.0f} s | {deploy:.0f} s | {apply:.0f} s | {verify:.0f} s | {total:.0f} s "
                     f"| {reboot:.0f} s | {after:.0f} s |")
    lines += ["", "Aims (TCG): 3 VMs from a cached image to `lab verify` passed in under 4 minutes; a rebooted node "
              "healthy again (boot unit done: network, rules and pods restored) in under 90 s.",
              "Each VM has 1 vCPU and 768 MiB; under TCG, N VMs share this machine's 2 cores, so boots and "
              "commands slow down with N."]
    record("real VMs under qemu (bench/vms.py)", lines)


if __name__ == "__main__":
    main()

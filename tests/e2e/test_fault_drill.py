"""The fault drill: a node loses its power at a random point of a lab command; `lab up` (which makes an emulated
node again, and puts the lab back on it) and the command again bring `lab verify` to pass, with no traceback on
the way. The point is drawn from a seed that is printed: LAB_DRILL_SEED=N replays it."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest

from .conftest import running_lab
from .labtools import lab_cli

NODES = ("node1", "node2", "node3")


def web(replicas: int) -> str:
    return f"""
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      containers: [{{name: web, image: nginx}}]
"""


def drill_rng(command: str) -> random.Random:
    seed = int(os.environ.get("LAB_DRILL_SEED") or random.SystemRandom().randrange(1_000_000))
    print(f"fault drill ({command}): seed {seed}; LAB_DRILL_SEED={seed} replays it")
    return random.Random(seed)


def cut_power(lab, node: str) -> None:
    """An emulated node's power cut: its first process (sshd's parent, holding its mount namespace) dies, and
    with it every pod namespace the node had."""
    record = json.loads((lab.state_dir / lab.name / "lab.json").read_text())
    os.kill(record["nodes"][node]["pid"], signal.SIGKILL)


@pytest.mark.parametrize("command", ["apply", "deploy"])
def test_a_node_that_loses_its_power_during_a_command_converges_after_up_and_the_command_again(state_dir, tmp_path,
                                                                                          command):
    rng = drill_rng(command)
    few, many = tmp_path / "web3.yaml", tmp_path / "web6.yaml"
    few.write_text(web(3))
    many.write_text(web(6))
    with running_lab(state_dir, "d", "--nodes", "3") as lab:
        inventory = lab.inventory_path
        lab_cli("deploy", "-i", inventory, check=True)
        lab_cli("apply", "-i", inventory, "-f", str(few), check=True)
        if command == "deploy":
            lab_cli("destroy", "-i", inventory, check=True)
        argv = ["apply", "-i", inventory, "-f", str(many)] if command == "apply" else ["deploy", "-i", inventory]
        victim, delay = rng.choice(NODES), rng.uniform(0.0, 3.0)
        print(f"{victim} loses its power {delay:.2f} s into lab {command}")
        proc = subprocess.Popen([sys.executable, "-m", "orchestrator.cli", *argv], stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            time.sleep(delay)
            cut_power(lab, victim)
            _, err = proc.communicate(timeout=300)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert "Traceback" not in err, err
        up = lab_cli("up", "--name", lab.name, "--nodes", "3", check=True)
        assert f"node {victim} is not running: making it again" in up.stderr, up.stderr
        lab_cli(*argv, check=True)  # the command again
        if command == "deploy":  # lab destroy took the pods: the lab gets them again
            lab_cli("apply", "-i", inventory, "-f", str(many), check=True)
        verify = lab_cli("verify", "-i", inventory, timeout=300)
        assert verify.returncode == 0, verify.stdout + verify.stderr

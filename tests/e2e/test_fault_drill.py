"""The fault drill: a node loses its sshd or its power at a random point of a lab command; `lab up` (which makes
an emulated node again, and puts the lab back on it) and the command again bring `lab verify` to pass, with no
traceback on the way. The node, the fault and the point are drawn from a seed that is printed:
LAB_DRILL_SEED=N replays them."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from .conftest import running_lab
from .labtools import drill_rng, lab_cli, processes_of_node

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


def kill_sshd(lab, node: str) -> None:
    """An emulated node's sshd dies: its first process (the node's init execs sshd), which holds its mount
    namespace; the pods' servers run on until `lab up` makes the node again."""
    record = json.loads((lab.state_dir / lab.name / "lab.json").read_text())
    os.kill(record["nodes"][node]["pid"], signal.SIGKILL)


def cut_power(lab, node: str) -> None:
    """An emulated node's power cut: every process of the node dies at once (sshd, the commands it runs, the
    pods' servers: all that sees the node's own /run), and with them the node's namespaces."""
    kill_sshd(lab, node)
    for pid in processes_of_node(lab.name, node):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


FAULTS = {"sshd": kill_sshd, "power": cut_power}


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
        victim, delay, fault = rng.choice(NODES), rng.uniform(0.0, 3.0), rng.choice(sorted(FAULTS))
        print(f"{victim}: {fault} {delay:.2f} s into lab {command}")
        proc = subprocess.Popen([sys.executable, "-m", "orchestrator.cli", *argv], stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            time.sleep(delay)
            FAULTS[fault](lab, victim)
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

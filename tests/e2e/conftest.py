"""Fixtures for end-to-end tests: real emulated labs, created and removed by the `lab` CLI."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from orchestrator.core import inventory
from orchestrator.core.model import Inventory
from orchestrator.core.transport import Transport
from .labtools import LabProcesses, lab_cli, leftovers, unique_lab_name


def pytest_collection_modifyitems(items):
    for item in items:
        if "/e2e/" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def state_dir(tmp_path_factory) -> Path:
    """A state folder of the test session's own: tests never touch the user's `.lab`."""
    if os.geteuid() != 0:
        pytest.fail("end-to-end tests create network namespaces: run them as root (make test does)")
    path = tmp_path_factory.mktemp("labstate")
    os.environ["LAB_STATE_DIR"] = str(path)
    return path


@dataclass
class RunningLab:
    name: str
    state_dir: Path
    inventory: Inventory
    transport: Transport

    @property
    def inventory_path(self) -> str:
        return str(self.state_dir / self.name / "inventory.yaml")

    def cli(self, *args: str, **kwargs):
        return lab_cli(*args, **kwargs)


@contextlib.contextmanager
def running_lab(state_dir: Path, prefix: str, *up_args: str):
    """`lab up --name <prefix><random> UP_ARGS...` as a RunningLab; `lab down` at the end, checked to leave nothing."""
    name = unique_lab_name(prefix)
    processes = LabProcesses()
    try:
        lab_cli("up", "--name", name, *up_args, check=True)
        processes = LabProcesses.of(name)
        inv = inventory.load(state_dir / name / "inventory.yaml")
        with Transport(inv.nodes) as transport:
            yield RunningLab(name, state_dir, inv, transport)
    finally:
        processes.pids |= LabProcesses.of(name).pids  # and what its nodes started since (pods, lessons)
        lab_cli("down", "--name", name, check=True)
        assert leftovers(name, state_dir, processes) == []


@pytest.fixture(scope="session")
def lab3(state_dir):
    """A 3-node emulated lab for the whole session; removed at the end, and checked to leave nothing.
    With LAB_E2E_SUDO_USER=NAME, its nodes are reached as NAME through sudo (`lab up --sudo-user`)."""
    sudo_user = os.environ.get("LAB_E2E_SUDO_USER")
    with running_lab(state_dir, "e", "--nodes", "3", *(["--sudo-user", sudo_user] if sudo_user else [])) as lab:
        yield lab

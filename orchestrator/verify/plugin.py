"""pytest plugin (installed with the package): testinfra hosts of a lab for your own tests.

    def test_web_pods_listen(lab_pods):
        for name, pod in lab_pods.items():
            if name.startswith("default/web-"):
                assert pod.socket("tcp://0.0.0.0:80").is_listening

    def test_node_routes(lab_nodes):
        assert "flannel.1" in lab_nodes["node1"].run("ip route").stdout

Fixtures: `lab_inventory`, `lab_nodes` (node name -> host), `lab_pods` ("namespace/name" -> host),
`lab_pod` (a function: lab_pod("web-1") or lab_pod("web-1", namespace="team")). The lab is the one
of --lab-inventory, else $LAB_INVENTORY, else the lab brought up last.

A program that runs pytest itself over a lab it already holds (`lab verify` does) hands the plugin a
`LabSession`: `pytest.main(args, plugins=[LabSession(inventory, transport, outcomes)])`. The fixtures then
use that inventory and that open transport (one SSH connection per node for the whole run), and tests read
the session with `lab_session(config)` (or the `lab_session` fixture).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence

import pytest

from orchestrator.core.model import Inventory
from orchestrator.core.objects import LabObjects, key_of
from orchestrator.core.state import LabFiles
from orchestrator.core.transport import Transport
from orchestrator.verify.hosts import node_host, pod_host


@dataclass
class LabSession:
    """A lab run shared with the plugin: the inventory, its open transport (the caller closes it) and what
    the caller found before pytest started (`lab verify`: the reachability outcomes, one test each)."""

    inventory: Inventory
    transport: Transport
    outcomes: Sequence[Any] = ()

    def pytest_configure(self, config) -> None:
        config.stash[SESSION_KEY] = self


SESSION_KEY = pytest.StashKey[LabSession]()


def lab_session(config) -> Optional[LabSession]:
    """The `LabSession` the program running pytest registered, or None (plain `pytest`)."""
    return config.stash.get(SESSION_KEY, None)


def pytest_addoption(parser):
    parser.addoption("--lab-inventory", default=None, metavar="FILE",
                     help="cluster-lab: the lab's inventory (default: $LAB_INVENTORY, else the lab brought up last)")


@pytest.fixture(scope="session")
def lab_inventory(request) -> Inventory:
    session = lab_session(request.config)
    if session is not None:
        return session.inventory
    from orchestrator.cli.common import resolve_inventory  # the CLI's rules for finding the lab
    return resolve_inventory(request.config.getoption("--lab-inventory"))


@pytest.fixture(scope="session", name="lab_session")
def lab_session_fixture(request) -> Optional[LabSession]:
    return lab_session(request.config)


@pytest.fixture(scope="session")
def lab_transport(request, lab_inventory):
    session = lab_session(request.config)
    if session is not None:
        yield session.transport
        return
    with Transport(lab_inventory.nodes) as transport:
        yield transport


@pytest.fixture(scope="session")
def lab_objects(lab_inventory) -> LabObjects:
    return LabFiles.of(lab_inventory.name).read_objects()


@pytest.fixture(scope="session")
def lab_nodes(lab_inventory, lab_transport) -> dict:
    return {node.name: node_host(lab_transport, node) for node in lab_inventory.nodes}


@pytest.fixture(scope="session")
def lab_pods(lab_inventory, lab_transport, lab_objects) -> dict:
    """The pods on a node (a pending one has no network namespace to run in)."""
    return {key: pod_host(lab_transport, lab_inventory, pod) for key, pod in sorted(lab_objects.pods.items())
            if pod.node is not None}


@pytest.fixture(scope="session")
def lab_pod(lab_pods):
    def find(name: str, namespace: str = "default"):
        key = key_of(namespace, name)
        if key not in lab_pods:
            pytest.fail(f"no pod {key} in the lab; pods are: {', '.join(lab_pods) or 'none'}")
        return lab_pods[key]
    return find

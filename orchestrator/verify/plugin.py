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
"""

from __future__ import annotations

import pytest

from orchestrator.core.model import Inventory
from orchestrator.core.objects import LabObjects, key_of
from orchestrator.core.state import LabFiles
from orchestrator.core.transport import Transport
from orchestrator.verify.hosts import node_host, pod_host


def pytest_addoption(parser):
    parser.addoption("--lab-inventory", default=None, metavar="FILE",
                     help="cluster-lab: the lab's inventory (default: $LAB_INVENTORY, else the lab brought up last)")


@pytest.fixture(scope="session")
def lab_inventory(request) -> Inventory:
    from orchestrator.cli.common import resolve_inventory  # the CLI's rules for finding the lab
    return resolve_inventory(request.config.getoption("--lab-inventory"))


@pytest.fixture(scope="session")
def lab_transport(lab_inventory):
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
    return {key: pod_host(lab_transport, lab_inventory, pod) for key, pod in sorted(lab_objects.pods.items())}


@pytest.fixture(scope="session")
def lab_pod(lab_pods):
    def find(name: str, namespace: str = "default"):
        key = key_of(namespace, name)
        if key not in lab_pods:
            pytest.fail(f"no pod {key} in the lab; pods are: {', '.join(lab_pods) or 'none'}")
        return lab_pods[key]
    return find

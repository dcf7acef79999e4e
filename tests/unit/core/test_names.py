"""kubectl label's changes: set, remove, and its errors."""

from ipaddress import IPv4Address

import pytest

from orchestrator.cli.common import with_node_labels
from orchestrator.core.errors import InputError
from orchestrator.core.model import Cluster, Inventory, Node, Ssh
from orchestrator.core.names import relabelled


def test_labels_are_set_removed_and_changed_only_with_overwrite():
    assert relabelled({"a": "1", "b": "2"}, {"c": "3", "b": None}, overwrite=False) == {"a": "1", "c": "3"}
    assert relabelled({"a": "1"}, {"a": "1"}, overwrite=False) == {"a": "1"}
    with pytest.raises(InputError, match=r"'a' already has a value \(1\), and --overwrite is false"):
        relabelled({"a": "1"}, {"a": "2"}, overwrite=False)
    assert relabelled({"a": "1"}, {"a": "2"}, overwrite=True) == {"a": "2"}
    with pytest.raises(InputError, match="not"):
        relabelled({}, {"bad key!": "x"}, overwrite=False)


def test_label_node_changes_lie_over_the_inventorys_labels():
    def node(name: str, **labels: str) -> Node:
        return Node(name, IPv4Address("10.0.0.1"), "10.0.0.1", Ssh(), labels=dict(labels))
    inv = Inventory("inv.yaml", Cluster("demo"), (node("node1", zone="a", os="linux"), node("node2")))
    changed = with_node_labels(inv, {"node1": {"zone": None, "disktype": "ssd"}})
    assert changed.nodes[0].labels == {"os": "linux", "disktype": "ssd"}
    assert changed.nodes[1].labels == {} and with_node_labels(inv, {}) is inv

"""What `lab break` says it broke: where first (the node, then the object), in a form a test or a user can read."""

from orchestrator.verify.faults import Broken


def test_a_break_names_the_node_then_the_object_before_what_it_did():
    assert str(Broken(("node node1", "service default/web"), "removed a chain")) == \
        "on node node1, service default/web: removed a chain"
    assert str(Broken(("networkpolicy default/deny",), "applied it")) == "on networkpolicy default/deny: applied it"

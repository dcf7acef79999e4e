"""Command quoting and sudo: the one place a command line is built."""

from ipaddress import IPv4Address

from orchestrator.core.model import Node, Ssh
from orchestrator.core.transport import FleetResult, Transport, short


def node(**ssh) -> Node:
    return Node("n1", IPv4Address("10.0.0.1"), "10.0.0.1", Ssh(**ssh))


def test_arguments_are_quoted_never_pasted():
    line = Transport([]).command_line(node(), ["echo", "a b", "$(reboot)", "x;y", "it's"])
    assert line == "echo 'a b' '$(reboot)' 'x;y' 'it'\"'\"'s'"


def test_become_adds_noninteractive_sudo_for_non_root_users():
    assert Transport([]).command_line(node(user="vagrant", become=True), ["ip", "route"]) == \
        "sudo -n -- ip route"
    assert Transport([]).command_line(node(user="root", become=True), ["ip", "route"]) == "ip route"
    assert Transport([]).command_line(node(user="vagrant"), ["ip", "route"]) == "ip route"


def test_fleet_result_reports_every_failed_node():
    result = FleetResult(a=1, b=ValueError("b: broken"), c=RuntimeError("c: down"))
    assert list(result.failures) == ["b", "c"]
    try:
        result.raise_on_failure()
    except Exception as exc:  # noqa: BLE001
        assert str(exc) == "b: broken\nc: down"
    else:
        raise AssertionError("expected a failure")


def test_short_keeps_messages_to_one_line():
    assert short("a\n  b\tc") == "a b c"
    assert len(short("x" * 500)) == 160

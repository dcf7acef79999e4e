"""What `lab verify` prints of a failed check inside a pod or node: one human line, never Python internals."""

from types import SimpleNamespace

from orchestrator.core.model import Node, Ssh
from orchestrator.verify.hosts import LabBackend, LabCommandResult
from orchestrator.verify.report import failure_line


def test_a_failed_command_reads_as_the_command_where_and_why():
    backend = LabBackend(transport=None, node=Node("node1", "198.18.0.11", "198.18.0.11", Ssh()), netns="demo-x",
                         label="default/web")
    result = LabCommandResult(backend, 255, b"cat /sys/class/net/eth0/mtu", b"",
                              b'Cannot open network namespace "demo-x": No such file or directory\n')
    text = f"Unexpected exit code 255 for {result!r}"
    assert text == ("Unexpected exit code 255 for `cat /sys/class/net/eth0/mtu` on default/web: exit 255: "
                    'Cannot open network namespace "demo-x": No such file or directory')
    assert "object at 0x" not in text and "CommandResult(" not in text


def test_only_the_first_line_of_a_failure_is_shown_without_the_exception_class():
    crash = SimpleNamespace(message="AssertionError: node2: net.ipv4.ip_forward is off\nassert 0 == 1\n"
                                    " +  where 0 = <bound method Sysctl of <testinfra.host.Host object at 0x7f>>")
    assert failure_line(SimpleNamespace(longrepr=SimpleNamespace(reprcrash=crash))) == \
        "node2: net.ipv4.ip_forward is off"
    raw = "Traceback ...\n    ...\norchestrator.transport.NodeError: node2: cannot connect"
    assert failure_line(SimpleNamespace(longrepr=raw)) == "node2: cannot connect"


def test_a_node_that_does_not_answer_reads_without_its_exception_class():
    crash = SimpleNamespace(message="orchestrator.core.transport.NodeUnreachable: node2: cannot connect to "
                                    "root@198.18.0.12:22: timed out")
    assert failure_line(SimpleNamespace(longrepr=SimpleNamespace(reprcrash=crash))) == \
        "node2: cannot connect to root@198.18.0.12:22: timed out"
    assert failure_line(SimpleNamespace(longrepr=SimpleNamespace(reprcrash=SimpleNamespace(
        message="DNS: backend.shop not found")))) == "DNS: backend.shop not found"

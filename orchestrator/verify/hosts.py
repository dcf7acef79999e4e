"""testinfra hosts for the lab's nodes and pods.

A node host runs commands over the lab's own SSH transport (host keys pinned, sudo when the node
says become). A pod host is the same SSH connection to the pod's node, with every command run
inside the pod's network namespace (`ip netns exec`), so `host.addr(...)`, `host.socket(...)`,
`host.interface("eth0")`, `host.run(...)` and the other testinfra modules work inside a pod:

    >>> pod = pod_host(transport, inv, objects.pods["default/web-1"])
    >>> pod.interface("eth0").addresses
    ['10.244.1.2', ...]
"""

from __future__ import annotations

from typing import Any, Optional

import testinfra.host
from testinfra.backend.base import BaseBackend, CommandResult

from orchestrator.core.errors import InputError
from orchestrator.core.model import Inventory, Node
from orchestrator.core.objects import Pod
from orchestrator.core.transport import Transport


class LabCommandResult(CommandResult):
    """A command's result that reads as one human line in a failure message (testinfra puts the result's
    repr into "Unexpected exit code ..." errors; the dataclass repr would show Python objects)."""

    def __repr__(self) -> str:
        detail = (self.stderr.strip() or self.stdout.strip()).splitlines()[-1:]
        return (f"`{self.backend.decode(self.command)}` on {self.backend.hostname}: exit {self.exit_status}"
                + (f": {detail[0]}" if detail else ""))

    __str__ = __repr__


class LabBackend(BaseBackend):
    """testinfra backend over the lab's transport, optionally inside a network namespace."""

    NAME = "lab"

    def __init__(self, transport: Transport, node: Node, netns: Optional[str] = None,
                 label: Optional[str] = None, **kwargs: Any):
        super().__init__(label or node.name, **kwargs)
        self.transport, self.node, self.netns = transport, node, netns

    def run(self, command: str, *args: str, **kwargs: Any) -> CommandResult:
        cmd = self.get_command(command, *args)
        argv = ["ip", "netns", "exec", self.netns, "sh", "-c", cmd] if self.netns else ["sh", "-c", cmd]
        result = self.transport.run(self.node, argv, check=False)
        return LabCommandResult(self, result.exit_code, self.encode(cmd), result.stdout.encode(),
                                result.stderr.encode())


def make_host(backend: LabBackend) -> testinfra.host.Host:
    host = testinfra.host.Host(backend)
    backend.set_host(host)
    return host


def node_host(transport: Transport, node: Node) -> testinfra.host.Host:
    """A testinfra host for `node`."""
    return make_host(LabBackend(transport, node))


def pod_host(transport: Transport, inv: Inventory, pod: Pod) -> testinfra.host.Host:
    """A testinfra host whose commands run inside `pod` (a record of the lab's pods, scheduled on a node)."""
    if pod.node is None:
        raise InputError(f"pod {pod.key} is not on a node yet: no network namespace to run commands in")
    return make_host(LabBackend(transport, inv.node(pod.node), netns=pod.netns, label=pod.key))

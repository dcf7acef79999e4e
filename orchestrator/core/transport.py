"""The one way the lab talks to nodes: SSH through Fabric/paramiko, with host keys verified.

- One connection per node per process (`Transport` caches them), opened by Fabric (so jump hosts work)
  with paramiko's RejectPolicy: an unknown or changed host key is refused, never added.
- Commands are argument lists, quoted in one place (`shlex.join`); `sudo -n` is added when the node
  says `become: true`. Nothing is built by pasting unquoted input into a shell string.
- Commands run on a raw session channel of the Fabric connection, not through `Connection.run`: that
  costs ~17 ms a command for Invoke's runner threads against ~3 ms here, and the appliers run many.
- `run_all` runs on every node in parallel (a bounded thread pool) and returns each node's result or
  error, like Fabric's GroupResult, so one failing node does not hide the others.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import logging
import math
import select
import shlex
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, BinaryIO, Callable, Iterable, Optional, Sequence, Union

import fabric
import paramiko

from orchestrator.core.errors import LabError
from orchestrator.core.model import Node, Ssh, split_jump
from orchestrator.core.script import write_file


# paramiko logs a node that hangs up from its transport thread, tracebacks and all, through logging's
# last-resort handler; the transport says it in one line of its own (NodeError), for the CLI, the pytest
# plugin and the benchmarks alike.
_paramiko_log = logging.getLogger("paramiko")
_paramiko_log.addHandler(logging.NullHandler())
_paramiko_log.propagate = False

MAX_PARALLEL = 32


@dataclass(frozen=True)
class Result:
    """What one command did on one node."""

    node: str
    command: str
    exit_code: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    @property
    def killed(self) -> bool:
        """Whether sshd reported a signal instead of an exit status (paramiko's exit status -1)."""
        return self.exit_code == -1


def short(command: str, limit: int = 160) -> str:
    """`command` cut to one readable line for messages."""
    line = " ".join(command.split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


class NodeError(LabError):
    """Something failed on one node; the message names the node (and the command, where there was one)."""

    def __init__(self, node: str, message: str, command: Optional[str] = None):
        self.node, self.command = node, command
        where = f"{node}: `{short(command)}`: " if command else f"{node}: "
        super().__init__(where + message)


class NodeUnreachable(NodeError):
    """The node does not answer over SSH: no connection to it, or the connection went silent."""


class CommandKilled(NodeError):
    """A command ended without an exit status: sshd reported a signal instead (paramiko's exit status -1)."""


class CommandTimedOut(NodeError):
    """A command ran past its time limit (its channel was closed)."""


class CommandFailed(NodeError):
    """A command exited non-zero."""

    def __init__(self, result: Result):
        self.result = result
        detail = (result.stderr.strip() or result.stdout.strip()).splitlines()
        reason = detail[-1] if detail else "no output"
        super().__init__(result.node, f"exited {result.exit_code}: {reason}", result.command)


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH's SHA256 fingerprint of `key`."""
    digest = base64.b64encode(hashlib.sha256(key.asbytes()).digest()).decode().rstrip("=")
    return f"{key.get_name()} SHA256:{digest}"


# A node that answers nothing for this long is taken for dead (powered off, or cut off): the command fails
# then, naming the node, instead of waiting for its own timeout (120 s by default).
DEAD_AFTER = 15
UNLIMITED = math.inf  # a command's time limit that is none (`lab exec`, as kubectl exec has none)


def detect_dead_peer(sock: socket.socket) -> None:
    """Make the kernel give up on a connection whose peer stopped answering: keepalive probes from 5 s of
    silence on (a node idle in a long command), and no unacknowledged data kept longer than DEAD_AFTER (a node
    gone while the lab sends). Linux's options; elsewhere the commands' own timeouts stay the bound."""
    options = [(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)]
    for name, value in (("TCP_KEEPIDLE", 5), ("TCP_KEEPINTVL", 2), ("TCP_KEEPCNT", (DEAD_AFTER - 5) // 2),
                        ("TCP_USER_TIMEOUT", DEAD_AFTER * 1000)):
        if hasattr(socket, name):
            options.append((socket.IPPROTO_TCP, getattr(socket, name), value))
    for level, option, value in options:
        sock.setsockopt(level, option, value)


class NodeConnection:
    """An SSH connection to one node, opened on first use."""

    def __init__(self, node: Node):
        self.node = node
        self._lock = threading.Lock()
        self._conn: Optional[fabric.Connection] = None

    def _new_connection(self, host: str, user: str, port: int, ssh: Ssh, connect_timeout: float,
                        gateway: Optional[fabric.Connection] = None) -> fabric.Connection:
        auth: dict[str, Union[bool, str]] = {"look_for_keys": ssh.key is None, "allow_agent": ssh.key is None}
        if ssh.key is not None:
            auth["key_filename"] = str(ssh.key)
        # An empty SSHConfig: the inventory is the whole truth, ~/.ssh/config does not change behaviour.
        config = fabric.Config(ssh_config=paramiko.SSHConfig())
        conn = fabric.Connection(host=host, user=user, port=port, config=config, gateway=gateway,
                                 connect_timeout=connect_timeout, connect_kwargs=auth)
        # Fabric accepts unknown host keys by default; the lab never does.
        conn.client.set_missing_host_key_policy(paramiko.RejectPolicy())
        if ssh.known_hosts is not None:
            conn.client.load_host_keys(str(ssh.known_hosts))
        else:
            conn.client.load_system_host_keys()
        return conn

    def _open(self, connect_timeout: float) -> fabric.Connection:
        node, ssh = self.node, self.node.ssh
        gateway = None
        if ssh.jump:
            jump_user, jump_host, jump_port = split_jump(ssh.jump, ssh.user)
            gateway = self._new_connection(jump_host, jump_user, jump_port, ssh, connect_timeout)
        conn = self._new_connection(node.ssh_host, ssh.user, ssh.port, ssh, connect_timeout, gateway)
        target = f"{ssh.user}@{node.ssh_host}:{ssh.port}"
        known_hosts = ssh.known_hosts or "~/.ssh/known_hosts"
        try:
            conn.open()
        except paramiko.BadHostKeyException as exc:
            raise NodeError(node.name, f"host key of {target} has CHANGED: it offers {fingerprint(exc.key)}, "
                                       f"{known_hosts} expects {fingerprint(exc.expected_key)}; refusing to "
                                       f"connect. If the node was rebuilt and you trust it, remove its old line "
                                       f"from {known_hosts}") from None
        except paramiko.AuthenticationException:
            raise NodeError(node.name, f"SSH login as {ssh.user} refused by {target} "
                                       f"(key {ssh.key or 'from agent/~/.ssh'}); check the node's "
                                       f"authorized_keys and the inventory's ssh.key") from None
        except paramiko.SSHException as exc:
            if "not found in known_hosts" in str(exc):
                raise NodeError(node.name, f"host key of {target} is unknown: not in {known_hosts}; refusing "
                                           f"to connect. Check the key's fingerprint on the node and add it "
                                           f"to {known_hosts}") from None
            raise NodeError(node.name, f"SSH to {target} failed: {exc}") from None
        except (OSError, EOFError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
            raise NodeUnreachable(node.name, f"cannot connect to {target}: {reason}") from None
        sock = conn.transport.sock
        if isinstance(sock, socket.socket):
            # Without it, Nagle + delayed ACK add ~40 ms to every short command.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            detect_dead_peer(sock)
        conn.transport.set_keepalive(DEAD_AFTER // 3)
        return conn

    def connection(self, within: Optional[float] = None) -> fabric.Connection:
        """The kept connection, or a new one (connecting for at most the inventory's connect_timeout, or `within`
        seconds when that is shorter: a command given 1 s does not wait 10 s for a node to answer)."""
        with self._lock:
            if self._conn is None or not self._conn.is_connected:
                limit = self.node.ssh.connect_timeout
                self._conn = self._open(min(limit, within) if within else limit)
            return self._conn

    def drop(self, transport: paramiko.Transport) -> None:
        """Forget the connection whose `transport` failed (the next use opens a new one)."""
        with self._lock:
            if self._conn is not None and self._conn.transport is transport:
                with contextlib.suppress(Exception):
                    self._conn.close()
                self._conn = None

    def lost(self, command: str) -> NodeError:
        return NodeUnreachable(self.node.name, f"lost the SSH connection (the node did not answer for {DEAD_AFTER} "
                                               "s: powered off, or cut off its network); what the command had not "
                                               "done is done by the next one once the node is back (`lab up`)",
                               command)

    def execute(self, command: str, stdin: Optional[bytes], timeout: float,
                stream: Optional[tuple[BinaryIO, BinaryIO]] = None) -> tuple[int, bytes, bytes]:
        """Run the shell command line `command`; return (exit code, stdout, stderr)."""
        for attempt in range(2):
            reused = self._conn is not None and self._conn.is_connected
            transport = self.connection(timeout).transport
            try:
                chan = transport.open_session(timeout=min(timeout, self.node.ssh.command_timeout))
                break
            except (paramiko.SSHException, EOFError, OSError) as exc:
                self.drop(transport)
                # a kept connection can have died meanwhile (a node cut off for a while): one new one is tried
                if not reused or attempt == 1:
                    raise NodeError(self.node.name, f"SSH session failed: {exc}", command) from None
        out: list[bytes] = []
        err: list[bytes] = []
        deadline = time.monotonic() + timeout
        try:
            chan.exec_command(command)
            if stdin:
                chan.sendall(stdin)
            chan.shutdown_write()
            # Read until EOF: sshd may send the exit status before the last output.
            while True:
                got = False
                while chan.recv_ready():
                    got = True
                    out.append(self._forward(chan.recv(65536), stream and stream[0]))
                while chan.recv_stderr_ready():
                    got = True
                    err.append(self._forward(chan.recv_stderr(65536), stream and stream[1]))
                if not transport.is_active():  # the kernel gave the connection up: its channels read as closed
                    raise self.lost(command)
                if (chan.eof_received or chan.closed) and not chan.recv_ready() and not chan.recv_stderr_ready():
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise CommandTimedOut(self.node.name, f"timed out after {timeout:g} s", command)
                if not got:
                    select.select([chan], [], [], min(remaining, 0.5))
            if not chan.status_event.wait(None if timeout == UNLIMITED else max(deadline - time.monotonic(), 0.01)):
                raise CommandTimedOut(self.node.name, f"timed out after {timeout:g} s", command)
            if not transport.is_active() and chan.exit_status == -1:  # closed with the connection, no status
                raise self.lost(command)
            return chan.recv_exit_status(), b"".join(out), b"".join(err)
        except (paramiko.SSHException, EOFError, OSError) as exc:
            raise NodeError(self.node.name, f"SSH channel failed: {exc}", command) from None
        finally:
            chan.close()

    @staticmethod
    def _forward(chunk: bytes, sink: Optional[BinaryIO]) -> bytes:
        if sink:
            sink.write(chunk)
            sink.flush()
        return chunk

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


class FleetResult(dict[str, Any]):
    """Node name -> Result (or whatever the action returned) or the exception that node raised, in inventory
    order."""

    @property
    def failures(self) -> dict[str, BaseException]:
        return {name: value for name, value in self.items() if isinstance(value, BaseException)}

    def raise_on_failure(self) -> "FleetResult":
        """Raise one LabError naming every failed node (one line each); return self when all succeeded."""
        failures = self.failures
        if failures:
            raise LabError("\n".join(str(exc) for exc in failures.values()))
        return self


Command = Sequence[str]


class Transport:
    """SSH to the nodes of one inventory: one connection per node, commands in parallel."""

    def __init__(self, nodes: Iterable[Node], max_parallel: int = MAX_PARALLEL):
        self.nodes = {node.name: node for node in nodes}
        self.max_parallel = max_parallel
        self._connections = {name: NodeConnection(node) for name, node in self.nodes.items()}

    def __enter__(self) -> "Transport":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def command_line(self, node: Node, argv: Command) -> str:
        """The quoted command line sent for `argv` on `node` (with `sudo -n` when the node says become)."""
        if not argv:
            raise ValueError("empty command")
        if node.ssh.sudo:
            argv = ["sudo", "-n", "--", *argv]
        return shlex.join(argv)

    def run(self, node: Union[str, Node], argv: Command, *, stdin: Union[str, bytes, None] = None,
            timeout: Optional[float] = None, check: bool = True,
            stream: Optional[tuple[BinaryIO, BinaryIO]] = None) -> Result:
        """Run `argv` on `node`. With check, a non-zero exit raises CommandFailed."""
        node = self.nodes[node] if isinstance(node, str) else node
        command = self.command_line(node, argv)
        data = stdin.encode() if isinstance(stdin, str) else stdin
        code, out, err = self._connections[node.name].execute(
            command, data, timeout or node.ssh.command_timeout, stream)
        result = Result(node.name, command, code, out.decode(errors="replace"), err.decode(errors="replace"))
        if check and not result.ok:
            raise CommandFailed(result)
        return result

    def open_stream(self, node: Union[str, Node], argv: Command) -> paramiko.Channel:
        """`argv` started on `node` with its stdin and stdout as a byte stream, the channel (`lab port-forward`)."""
        node = self.nodes[node] if isinstance(node, str) else node
        command = self.command_line(node, argv)
        try:
            chan = self._connections[node.name].connection().transport.open_session(timeout=node.ssh.connect_timeout)
            chan.exec_command(command)
        except (paramiko.SSHException, EOFError, OSError) as exc:
            raise NodeError(node.name, f"SSH session failed: {exc}", command) from None
        return chan

    def script(self, node: Union[str, Node], text: str, **kwargs: Any) -> Result:
        """Run a shell script (rendered by the lab, values quoted by the template) on `node`."""
        return self.run(node, ["sh", "-ec", text], **kwargs)

    def put(self, node: Union[str, Node], path: str, data: Union[str, bytes], mode: str = "0644") -> Result:
        """Write `data` to `path` on `node` atomically and durably, creating the folder (core/script.write_file)."""
        return self.script(node, "\n".join(write_file(path, data, mode)))

    def run_all(self, action: Callable[[Node], object], nodes: Optional[Iterable[Node]] = None) -> FleetResult:
        """Call `action(node)` for every node in parallel; collect each return value or exception."""
        targets = list(nodes) if nodes is not None else list(self.nodes.values())
        results = FleetResult()
        if not targets:
            return results
        with ThreadPoolExecutor(max_workers=min(self.max_parallel, len(targets))) as pool:
            futures = {node.name: pool.submit(action, node) for node in targets}
        for name, future in futures.items():
            exc = future.exception()
            results[name] = exc if exc is not None else future.result()
        return results

    def run_everywhere(self, argv: Command, nodes: Optional[Iterable[Node]] = None, **kwargs: Any) -> FleetResult:
        """Run the same `argv` on every node in parallel (check=False: see each Result's exit code)."""
        kwargs.setdefault("check", False)
        return self.run_all(lambda node: self.run(node, argv, **kwargs), nodes)

    def close(self) -> None:
        for conn in self._connections.values():
            conn.close()

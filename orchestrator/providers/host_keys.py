"""Host keys taken on first use (TOFU) into a known_hosts file, for `lab inventory from-*`.

An imported ssh_config (Vagrant's turns host key checking off) does not vouch for the nodes' keys, so
the key each host offers now is fetched with a bare SSH handshake (no login, through the jump host when
there is one) and pinned, with a notice and its fingerprint; a key that differs from one already
there is refused.
"""

from __future__ import annotations

import contextlib
import os
import socket
import tempfile
from concurrent.futures import ThreadPoolExecutor
from ipaddress import IPv4Address
from pathlib import Path
from typing import Callable, Iterator, Sequence

import paramiko

from orchestrator.core.errors import InputError, LabError
from orchestrator.core.model import Node, Ssh, split_jump
from orchestrator.core.transport import NodeConnection, fingerprint
from orchestrator.providers.ssh_config import SshHost


Notice = Callable[[str], None]

CONNECT_TIMEOUT = 10.0
RSA_TYPES = ["rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"]


def key_kind(key: paramiko.PKey) -> str:
    """The name of the host key file that holds `key` on the node: ed25519, ecdsa, rsa."""
    name = key.get_name()
    return "ecdsa" if name.startswith("ecdsa") else name.removeprefix("ssh-")


def fetch_host_key(host: SshHost, known: KnownHosts, sock=None) -> paramiko.PKey:
    """The key `host` offers, from a bare SSH handshake (no login), over `sock` if given; of the types
    `known` has for it, if any (so that a key of another type is not taken for a changed one)."""
    target = f"{host.name}: {host.hostname}:{host.port}"
    key_types = known.known_types(host.known_hosts_name)
    try:
        sock = sock or socket.create_connection((host.hostname, host.port), timeout=CONNECT_TIMEOUT)
    except OSError as exc:
        raise LabError(f"{target}: cannot connect: {exc.strerror or exc}; is the machine up?") from None
    transport = paramiko.Transport(sock)
    try:
        if key_types:
            transport.get_security_options().key_types = [
                t for kind in key_types for t in (RSA_TYPES if kind == "ssh-rsa" else [kind])]
        transport.start_client(timeout=CONNECT_TIMEOUT)
        return transport.get_remote_server_key()
    except (paramiko.SSHException, EOFError, OSError) as exc:
        raise LabError(f"{target}: SSH handshake failed: {exc}; is sshd running there?") from None
    finally:
        transport.close()


class KnownHosts:
    """A known_hosts file: the lines it had, plus the keys pinned now."""

    def __init__(self, path: Path):
        self.path = path
        self.keys = paramiko.HostKeys()
        try:
            self.text = path.read_text()
            self.keys.load(str(path))
        except FileNotFoundError:
            self.text = ""
        except (OSError, paramiko.SSHException) as exc:
            raise InputError(f"{path}: cannot read it as known_hosts ({exc}); fix or remove it") from None

    def known_types(self, name: str) -> list[str]:
        return list(self.keys.lookup(name) or {})

    def pin(self, name: str, key: paramiko.PKey, label: str) -> bool:
        """Add `key` for `name`; False when it was there already. A different key there is refused."""
        known = self.keys.lookup(name) or {}
        if key.get_name() in known:
            if known[key.get_name()] == key:
                return False
            raise LabError(f"{label}: host key of {name} has CHANGED: it offers {fingerprint(key)}, {self.path} has "
                           f"{fingerprint(known[key.get_name()])}; refusing it. If the machine was rebuilt "
                           f"(vagrant destroy/up) and you trust it, remove its line from {self.path} and run again")
        self.keys.add(name, key.get_name(), key)
        if self.text and not self.text.endswith("\n"):
            self.text += "\n"
        self.text += f"{name} {key.get_name()} {key.get_base64()}\n"
        return True


def pin_host_keys(hosts: Sequence[SshHost], known: KnownHosts, notice: Notice, how_to_check: str) -> None:
    """Take every host's (and the jump host's) key on first use into `known`; say so with fingerprints."""
    jump = hosts[0].jump if hosts else None
    if jump:
        user, hostname, port = split_jump(jump, hosts[0].user)
        jump_host = SshHost(name="jump host", hostname=hostname, user=user, port=port, key=hosts[0].key)
        pin_one(jump_host, fetch_host_key(jump_host, known), known, notice,
                "on the jump host: ssh-keygen -lf /etc/ssh/ssh_host_{kind}_key.pub")
        keys = fetch_through_jump(hosts, jump_host, known)
    else:
        with ThreadPoolExecutor(max_workers=min(16, len(hosts))) as pool:
            keys = list(pool.map(lambda host: fetch_host_key(host, known), hosts))
    for host, key in zip(hosts, keys, strict=True):
        pin_one(host, key, known, notice, how_to_check)


def pin_one(host: SshHost, key: paramiko.PKey, known: KnownHosts, notice: Notice, how_to_check: str) -> None:
    check = how_to_check.format(node=host.name, kind=key_kind(key))
    if known.pin(host.known_hosts_name, key, host.name):
        notice(f"{host.name} ({host.hostname}:{host.port}): host key {fingerprint(key)} taken on first use "
               f"into {known.path}; compare it with `{check}`")
    else:
        notice(f"{host.name} ({host.hostname}:{host.port}): host key {fingerprint(key)} already in {known.path}")


def fetch_through_jump(hosts: Sequence[SshHost], jump: SshHost, known: KnownHosts) -> list[paramiko.PKey]:
    """Each host's key, from a handshake over a channel of a logged-in connection to the jump host."""
    with temporary_known_hosts(known) as path:
        ssh = Ssh(user=jump.user, port=jump.port, key=jump.key, known_hosts=path, connect_timeout=CONNECT_TIMEOUT)
        conn = NodeConnection(Node("jump", IPv4Address("0.0.0.0"), jump.hostname, ssh))
        try:
            transport = conn.connection().transport
            keys = []
            for host in hosts:
                try:
                    channel = transport.open_channel("direct-tcpip", (host.hostname, host.port), ("127.0.0.1", 0),
                                                     timeout=CONNECT_TIMEOUT)
                except (paramiko.SSHException, OSError) as exc:
                    raise LabError(f"{host.name}: the jump host {jump.target} cannot reach "
                                   f"{host.hostname}:{host.port}: {exc}") from None
                keys.append(fetch_host_key(host, known, sock=channel))
            return keys
        finally:
            conn.close()


@contextlib.contextmanager
def temporary_known_hosts(known: KnownHosts) -> Iterator[Path]:
    """`known`'s text in a temporary file, for connections made before the real file is written."""
    fd, name = tempfile.mkstemp(prefix="lab-known-hosts-")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(known.text)
        yield Path(name)
    finally:
        os.unlink(name)

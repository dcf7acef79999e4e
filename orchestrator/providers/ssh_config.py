"""The hosts of an ssh_config (or of `vagrant ssh-config`), resolved as ssh would, for `lab inventory`.

paramiko's ssh_config parser reads the Host blocks, so Host * defaults, quoting and ~ work as in ssh;
each Host alias names a node, and HostName, User, Port, IdentityFile and ProxyJump say how to reach it.
"""

from __future__ import annotations

import getpass
import os
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional, Sequence

import paramiko

from orchestrator.core import inventory as inventory_mod
from orchestrator.core.errors import InputError


@dataclass(frozen=True)
class SshHost:
    """One Host block of an ssh_config, resolved as ssh would (Host * defaults applied)."""

    name: str  # the Host alias: the node's name
    hostname: str
    user: str
    port: int = 22
    key: Optional[Path] = None
    jump: Optional[str] = None  # user@host:port

    @property
    def become(self) -> bool:
        return self.user != "root"

    @property
    def known_hosts_name(self) -> str:
        """How OpenSSH and paramiko name this host in known_hosts."""
        return self.hostname if self.port == 22 else f"[{self.hostname}]:{self.port}"

    @property
    def target(self) -> str:
        return f"{self.user}@{self.hostname}:{self.port}"



def host_aliases(text: str, source: str) -> list[str]:
    """The Host aliases of an ssh_config in the order written, without patterns (*, ?, !)."""
    aliases: list[str] = []
    for number, line in enumerate(text.splitlines(), 1):
        match = re.match(r"^\s*host(?:\s*=\s*|\s+)(.*)$", line, re.IGNORECASE)
        if not match:
            continue
        try:
            words = shlex.split(match.group(1))
        except ValueError as exc:
            raise InputError(f"{source}: line {number}: {exc}; fix the quoting of the Host line") from None
        aliases += [w for w in words if not any(c in w for c in "*?!") and w not in aliases]
    return aliases


def parse_ssh_config(text: str, source: str, only: Sequence[str] = (), cwd: Optional[Path] = None) -> list[SshHost]:
    """The hosts of an ssh_config (`only` these, when given), in the order written."""
    try:
        config = paramiko.SSHConfig.from_text(text)
    except (paramiko.ssh_exception.ConfigParseError, ValueError) as exc:
        raise InputError(f"{source}: not a valid ssh_config ({exc}); fix that line") from None
    aliases = host_aliases(text, source)
    if not aliases:
        raise InputError(f"{source}: no Host blocks (Host NAME followed by HostName, User, Port, IdentityFile); "
                         "give an ssh_config that names the nodes, e.g. from `vagrant ssh-config`")
    for wanted in only:
        if wanted not in aliases:
            raise InputError(f"{source}: no Host {wanted!r}; hosts there are: {', '.join(aliases)}")
    hosts = [resolve_host(config, alias, source, cwd or Path.cwd()) for alias in (only or aliases)]
    jumps = {h.jump for h in hosts}
    if len(jumps) > 1:
        first, other = hosts[0], next(h for h in hosts if h.jump != hosts[0].jump)
        raise InputError(f"{source}: Host {other.name}: ProxyJump {other.jump or 'none'} differs from Host "
                         f"{first.name}'s ({first.jump or 'none'}); an inventory has one jump host for all "
                         "nodes: give them the same ProxyJump, or make an inventory per jump host")
    return hosts


def resolve_host(config: paramiko.SSHConfig, alias: str, source: str, cwd: Path) -> SshHost:
    where = f"{source}: Host {alias}"
    check_node_name(alias, where)
    try:
        found = config.lookup(alias)
    except Exception as exc:  # noqa: BLE001 - paramiko raises several kinds here (canonicalization, Match exec)
        raise InputError(f"{where}: cannot resolve it ({exc}); fix the Host block") from None
    if found.get("proxycommand"):
        raise InputError(f"{where}: ProxyCommand is not supported; use ProxyJump [user@]host[:port] instead")
    return SshHost(name=alias, hostname=found.get("hostname", alias), user=found.get("user") or local_user(),
                   port=port_number(found.get("port", 22), f"{where}: Port"),
                   key=identity(found.get("identityfile", []), where, cwd),
                   jump=jump_spec(config, found.get("proxyjump"), where))


def check_node_name(alias: str, where: str) -> None:
    """The Host alias names the node: it must be a usable node name."""
    if (not inventory_mod.HOSTNAME_LABEL.match(alias) or len(alias) > inventory_mod.IFNAMSIZ
            or alias in inventory_mod.RESERVED_NODE_NAMES):
        raise InputError(f"{where}: {alias!r} cannot name a node (1-{inventory_mod.IFNAMSIZ} lowercase letters, "
                         "digits and '-', not underlay/router/outside/host); name the Host blocks like nodes, "
                         "e.g. `Host node1`, or list the hosts to take after the file")


def local_user() -> str:
    """ssh's default user: the local one."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "root"


def port_number(value, where: str) -> int:
    try:
        port = int(value)
    except (TypeError, ValueError):
        port = 0
    if not 1 <= port <= 65535:
        raise InputError(f"{where}: {value!r} is not a port; give a number from 1 to 65535")
    return port


def identity(paths: Iterable[str], where: str, cwd: Path) -> Optional[Path]:
    """The first readable IdentityFile (relative paths start at the current folder, as in ssh);
    None when there is none (then the SSH agent and ~/.ssh keys are used)."""
    candidates = [Path(os.path.expanduser(p)) for p in paths]
    candidates = [p if p.is_absolute() else cwd / p for p in candidates]
    for path in candidates:
        if os.access(path, os.R_OK) and path.is_file():
            return path
    if candidates:
        raise InputError(f"{where}: IdentityFile: cannot read {', '.join(map(str, candidates))}; "
                         "give the path of the private key that logs in to the node")
    return None


def jump_spec(config: paramiko.SSHConfig, value: Optional[str], where: str) -> Optional[str]:
    """ProxyJump as the inventory's `jump` (user@host:port), resolved through the config as ssh does."""
    if not value or value.lower() == "none":
        return None
    if "," in value:
        raise InputError(f"{where}: ProxyJump {value}: more than one jump host is not supported; "
                         "use a single jump host")
    match = re.match(r"^(?:ssh://)?(?:([^@]+)@)?(\[[^\]]+\]|[^:@]+)(?::(\d+))?$", value)
    if not match:
        raise InputError(f"{where}: ProxyJump {value!r} is not [user@]host[:port]; write it like admin@bastion:22")
    user, host, port = match.groups()
    host = host.strip("[]")
    found = config.lookup(host)
    hostname = found.get("hostname", host)
    return f"{user or found.get('user') or local_user()}@{hostname}:{port or found.get('port', 22)}"


def read_ssh_config(path: str, only: Sequence[str] = ()) -> list[SshHost]:
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise InputError(f"{path}: cannot read the ssh_config: {exc.strerror}; give an existing file") from None
    return parse_ssh_config(text, path, only)


def vagrant_ssh_config(directory: str) -> list[SshHost]:
    """The hosts `vagrant ssh-config` describes in the Vagrant project `directory`."""
    if not Path(directory).is_dir():
        raise InputError(f"{directory}: no such folder; give the folder of the Vagrantfile")
    vagrant = shutil.which("vagrant")
    if vagrant is None:
        raise InputError("vagrant is not installed (no `vagrant` on PATH); install it (Debian 12: "
                         "apt-get install vagrant), or write an ssh_config and use `lab inventory from-ssh-config`")
    command = [vagrant, "ssh-config"]
    try:
        proc = subprocess.run(command, cwd=directory, capture_output=True, text=True, timeout=300,
                              env={**os.environ, "VAGRANT_NO_COLOR": "1"})
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise InputError(f"{directory}: `vagrant ssh-config` failed: {exc}; check `vagrant status` there") from None
    if proc.returncode != 0 or "Host " not in proc.stdout:
        paragraph = (proc.stderr.strip() or proc.stdout.strip() or "no output").split("\n\n")[0]
        raise InputError(f"{directory}: `vagrant ssh-config` exited {proc.returncode}: "
                         f"{' '.join(paragraph.split()).rstrip('.')}; the folder needs a Vagrantfile and running "
                         "VMs: `vagrant up` there (see `vagrant status`)")
    return parse_ssh_config(proc.stdout, f"{directory}: vagrant ssh-config")

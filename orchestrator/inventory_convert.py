"""Inventories from what already describes the machines, and for other tools (`lab inventory ...`).

- `from-ssh-config`: the Host blocks of an ssh_config (HostName, User, Port, IdentityFile, ProxyJump)
  become nodes; `from-vagrant` does the same with what `vagrant ssh-config` prints. One pipeline
  serves both (`import_hosts`):
  1. parse the Host blocks (paramiko's ssh_config parser, so Host * defaults, quoting and ~ work as in ssh);
  2. pin each host's key on first use: Vagrant's ssh-config turns host key checking off, so the key a
     host offers now is taken into a known_hosts file (a bare SSH handshake, no login), with a notice
     and its fingerprint; a key that differs from one already there is refused;
  3. ask each node for its address on the cluster network (`ip -4 -o addr`, `ip -4 route show default`,
     logged in with the pinned key). That address is the node's `address`, which the overlay uses;
     SSH keeps going where the ssh_config says (`ssh_host`, `port`). Vagrant's forwarded
     127.0.0.1:2222 is no node address, and the NAT interface (10.0.2.15 on every VirtualBox VM) is
     no cluster network: for Vagrant the address is the one on an interface other than the
     default route's (the private network), for other configs the HostName when the node has it,
     else the default route's interface; `--network CIDR` picks explicitly.
  4. write the inventory, checked by `inventory.parse` before it is written.
- `export --format ansible`: a lab's inventory as an Ansible inventory (YAML), host keys pinned too.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import re
import shlex
import shutil
import socket
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path
from typing import Callable, Iterable, Iterator, Optional, Sequence

import paramiko
import yaml

from . import inventory as inventory_mod
from .errors import InputError, LabError
from .model import Cluster, Inventory, Node, Ssh, split_jump
from .state import LabFiles, atomic_write
from .transport import NodeConnection, Transport, fingerprint

Notice = Callable[[str], None]

CONNECT_TIMEOUT = 10.0
# Interfaces that are never the node's own network: container and VM bridges, and the lab's own
# (a deployed node has cni0 and flannel.1, whose addresses are in the cluster CIDR anyway).
FOREIGN_INTERFACES = ("lo", "docker", "br-", "virbr", "cni", "flannel", "kube", "lxc", "lxd", "cilium", "weave")
VAGRANT_CHECK = "vagrant ssh {node} -c 'ssh-keygen -lf /etc/ssh/ssh_host_{kind}_key.pub'"
NODE_CHECK = "on {node}: ssh-keygen -lf /etc/ssh/ssh_host_{kind}_key.pub"
ADDRESS_SCRIPT = "ip -4 -o addr show scope global; echo ---; ip -4 route show default"


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


# ---- 1. ssh_config ------------------------------------------------------------------------------


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
    except Exception as exc:  # paramiko raises several kinds here (canonicalization, Match exec)
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


# ---- 2. host keys, taken on first use -----------------------------------------------------------


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
        user, host, port = split_jump(jump, hosts[0].user)
        jump_host = SshHost(name="jump host", hostname=host, user=user, port=port, key=hosts[0].key)
        pin_one(jump_host, fetch_host_key(jump_host, known), known, notice,
                "on the jump host: ssh-keygen -lf /etc/ssh/ssh_host_{kind}_key.pub")
        keys = fetch_through_jump(hosts, jump_host, known)
    else:
        with ThreadPoolExecutor(max_workers=min(16, len(hosts))) as pool:
            keys = list(pool.map(lambda host: fetch_host_key(host, known), hosts))
    for host, key in zip(hosts, keys):
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


# ---- 3. the nodes' addresses --------------------------------------------------------------------


def parse_addresses(text: str) -> tuple[list[tuple[str, IPv4Interface]], set[str]]:
    """(interface, address) pairs from `ip -4 -o addr`, and the default route's interfaces, from ADDRESS_SCRIPT."""
    addr_part, _, route_part = text.partition("---")
    addresses = []
    for line in addr_part.splitlines():
        words = line.split()
        if len(words) >= 4 and words[2] == "inet":
            addresses.append((words[1].split("@")[0], IPv4Interface(words[3])))
    default = set()
    for line in route_part.splitlines():
        words = line.split()
        if "dev" in words[:-1]:
            default.add(words[words.index("dev") + 1])
    return addresses, default


def pick_address(node: str, addresses: Sequence[tuple[str, IPv4Interface]], default_ifs: set[str], *,
                 private_network: bool, ssh_host: str, network: Optional[IPv4Network],
                 exclude: Sequence[IPv4Network] = ()) -> IPv4Address:
    """The node's address on the cluster network (see the module's docstring)."""
    usable = [(ifname, iface.ip) for ifname, iface in addresses
              if not ifname.startswith(FOREIGN_INTERFACES) and not any(iface.ip in net for net in exclude)]
    listed = ", ".join(f"{ip} ({ifname})" for ifname, ip in usable) or "none"
    if network is not None:
        inside = [ip for _, ip in usable if ip in network]
        if not inside:
            raise LabError(f"{node}: no address in {network}; it has: {listed}. Give --network the cluster "
                           "network's CIDR")
        return inside[0]
    if not usable:
        raise LabError(f"{node}: no IPv4 address for the cluster network (it has none besides loopback and "
                       "bridges); give the machine one")
    on_default = [ip for ifname, ip in usable if ifname in default_ifs]
    others = [ip for ifname, ip in usable if ifname not in default_ifs]
    if private_network:
        # Vagrant: the first interface is NAT (VirtualBox) or management (libvirt) and has the default route.
        return (others or on_default)[0]
    for _, ip in usable:
        if str(ip) == ssh_host:
            return ip
    return (on_default or others)[0]


def discover_addresses(hosts: Sequence[SshHost], known_hosts: Path, *, private_network: bool,
                       network: Optional[IPv4Network], exclude: Sequence[IPv4Network]) -> dict[str, IPv4Address]:
    """Log in to every host (pinned key, no sudo) and pick its cluster-network address."""
    nodes = [Node(h.name, IPv4Address("0.0.0.0"), h.hostname,
                  Ssh(user=h.user, port=h.port, key=h.key, known_hosts=known_hosts, jump=h.jump,
                      connect_timeout=CONNECT_TIMEOUT, command_timeout=60.0)) for h in hosts]
    with Transport(nodes) as transport:
        results = transport.run_all(lambda node: transport.run(node, ["sh", "-c", ADDRESS_SCRIPT]).stdout)
    results.raise_on_failure()
    return pick_addresses(hosts, results, private_network=private_network, network=network, exclude=exclude)


def pick_addresses(hosts: Sequence[SshHost], outputs: dict[str, str], *, private_network: bool,
                   network: Optional[IPv4Network], exclude: Sequence[IPv4Network]) -> dict[str, IPv4Address]:
    """Each host's address from its ADDRESS_SCRIPT output; no two nodes may share one."""
    found: dict[str, IPv4Address] = {}
    for host in hosts:
        addresses, default_ifs = parse_addresses(outputs[host.name])
        address = pick_address(host.name, addresses, default_ifs, private_network=private_network,
                               ssh_host=host.hostname, network=network, exclude=exclude)
        other = next((name for name, taken in found.items() if taken == address), None)
        if other:
            raise LabError(f"{other} and {host.name} both have {address} as their address: they share no "
                           "cluster network (VirtualBox gives every VM 10.0.2.15 on NAT). Give the machines a "
                           "private network (the repository's Vagrantfile does), or choose it with --network CIDR")
        found[host.name] = address
    return found


# ---- 4. the inventory ---------------------------------------------------------------------------


def inventory_data(name: str, hosts: Sequence[SshHost], addresses: dict[str, IPv4Address], known_hosts: Path,
                   relative_to: Optional[Path]) -> dict:
    """The inventory as YAML data: SSH defaults from the first host, per node only what differs."""

    def path_text(path: Path) -> str:
        if relative_to is not None:
            try:
                return str(path.resolve().relative_to(relative_to.resolve()))
            except ValueError:
                pass
        return str(path.resolve())

    first = hosts[0]
    defaults = {"user": first.user, "port": first.port, "key": first.key, "become": first.become}
    ssh = {"user": first.user, "become": first.become}
    if first.port != 22:
        ssh["port"] = first.port
    if first.key is not None:
        ssh["key"] = path_text(first.key)
    ssh["known_hosts"] = path_text(known_hosts)
    if first.jump:
        ssh["jump"] = first.jump
    nodes = []
    for host in hosts:
        node: dict = {"name": host.name, "address": str(addresses[host.name])}
        if host.hostname != node["address"]:
            node["ssh_host"] = host.hostname
        for field in ("user", "port", "key", "become"):
            value = getattr(host, field)
            if value != defaults[field]:
                node[field] = path_text(value) if field == "key" and value is not None else value
        nodes.append(node)
    return {"cluster": {"name": name}, "ssh": ssh, "nodes": nodes}


@dataclass(frozen=True)
class Source:
    """Where the hosts came from, for the inventory's header and the notices."""

    description: str  # e.g. "`vagrant ssh-config` in /path"
    how_to_check: str  # a command showing a host key's fingerprint on the node
    private_network: bool  # Vagrant: the address is on the private network, not the default route's


def import_hosts(hosts: Sequence[SshHost], source: Source, *, name: str, output: Optional[str],
                 network: Optional[str], notice: Notice) -> str:
    """The whole pipeline (see the module's docstring): the inventory's text, written to `output` if given."""
    inventory_mod.check_lab_name(name, example="vagrant")
    wanted_network = None
    if network:
        try:
            wanted_network = IPv4Network(network, strict=False)
        except ValueError:
            raise InputError(f"--network: {network!r} is not an IPv4 CIDR; write it like 192.168.56.0/24") from None
    out_path = Path(output).absolute() if output else None
    if out_path is not None:
        if not out_path.parent.is_dir():
            raise InputError(f"-o: no folder {out_path.parent}; create it first or give another path")
        known_path = out_path.parent / f"{out_path.stem}_known_hosts"
    else:
        # not the lab's own known_hosts: `lab up` of an emulated lab with this name would overwrite that
        known_path = LabFiles.of(name).root / "imported_known_hosts"
    known = KnownHosts(known_path)
    notice(f"host keys: {source.description} does not vouch for them, so each node's key is checked against "
           f"{known_path} and, where none is there yet, taken now on first use (TOFU):")
    pin_host_keys(hosts, known, notice, source.how_to_check)
    cluster = Cluster(name=name)
    with temporary_known_hosts(known) as temporary:
        addresses = discover_addresses(hosts, temporary, private_network=source.private_network,
                                       network=wanted_network, exclude=(cluster.cluster_cidr, cluster.service_cidr))
        # Checked as the lab will load it (with the keys pinned so far), before anything is written.
        check = inventory_data(name, hosts, addresses, temporary, None)
        inventory_mod.parse(yaml.safe_dump(check, sort_keys=False), str(out_path or "the new inventory"), Path.cwd())
    data = inventory_data(name, hosts, addresses, known_path, out_path.parent if out_path else None)
    header = (f"# Made by `lab inventory` from {source.description}.\n"
              f"# Host keys were taken on first use into {data['ssh']['known_hosts']}: compare their\n"
              f"# fingerprints with the nodes' (`{source.how_to_check.format(node='NODE', kind='ed25519')}`).\n"
              "# Cluster settings not given here are the defaults (see inventories/local.yaml).\n")
    text = header + yaml.safe_dump(data, sort_keys=False)
    if out_path is None:
        LabFiles.of(name).create()
    atomic_write(known_path, known.text, mode=0o644)
    if out_path is not None:
        atomic_write(out_path, text, mode=0o644)
    return text


# ---- export -------------------------------------------------------------------------------------


def ansible_inventory(inv: Inventory, subnets: dict[str, str]) -> str:
    """`inv` as an Ansible YAML inventory: group cluster_lab, child group nodes; host keys stay pinned."""
    hosts = {}
    for node in inv.nodes:
        ssh = node.ssh
        host = {"ansible_host": node.ssh_host, "ansible_port": ssh.port, "ansible_user": ssh.user,
                "ansible_become": ssh.sudo}
        if ssh.key is not None:
            host["ansible_ssh_private_key_file"] = str(Path(ssh.key).absolute())
        host["ansible_ssh_common_args"] = shlex.join(ssh.openssh_options())
        host["node_address"] = str(node.address)
        if subnets.get(node.name):
            host["pod_subnet"] = subnets[node.name]
        if node.labels:
            host["node_labels"] = dict(node.labels)
        hosts[node.name] = host
    cluster = inv.cluster
    data = {"cluster_lab": {
        "children": {"nodes": {"hosts": hosts}},
        "vars": {"cluster_name": cluster.name, "cluster_cidr": str(cluster.cluster_cidr),
                 "service_cidr": str(cluster.service_cidr), "dns_domain": cluster.dns_domain,
                 "overlay_backend": cluster.overlay.backend,
                 "ansible_python_interpreter": "/usr/bin/python3"},
    }}
    return (f"# Ansible inventory of lab {cluster.name}, made by `lab inventory export --format ansible` "
            f"from {inv.source}.\n# Try: ansible -i THIS_FILE nodes -m ping\n"
            + yaml.safe_dump(data, sort_keys=False))


# ---- the command --------------------------------------------------------------------------------


def run(args, resolve_inventory: Callable[[Optional[str]], Inventory], notice: Notice) -> int:
    """`lab inventory from-vagrant|from-ssh-config|export`: the text to stdout, or to -o FILE."""
    action = args.inventory_command
    if action == "export":
        inv = resolve_inventory(args.inventory)
        text = ansible_inventory(inv, LabFiles.of(inv.name).read_objects()["subnets"])
        if args.output:
            atomic_write(Path(args.output), text, mode=0o644)
            notice(f"wrote {args.output}: {len(inv.nodes)} nodes of lab {inv.name}")
        else:
            print(text, end="")
        return 0
    if action == "from-vagrant":
        directory = str(Path(args.directory).absolute())
        hosts = vagrant_ssh_config(args.directory)
        source = Source(f"`vagrant ssh-config` in {directory}", VAGRANT_CHECK, private_network=True)
        name = args.name or "vagrant"
    else:
        hosts = read_ssh_config(args.file, args.hosts)
        source = Source(f"the ssh_config {Path(args.file).absolute()}", NODE_CHECK, private_network=False)
        name = args.name or "lab"
    text = import_hosts(hosts, source, name=name, output=args.output, network=args.network, notice=notice)
    if args.output:
        notice(f"wrote {args.output}: {len(hosts)} nodes; next: lab status -i {args.output}")
    else:
        print(text, end="")
    return 0

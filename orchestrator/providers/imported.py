"""Inventories from what already describes the machines, and for other tools (`lab inventory ...`).

- `from-ssh-config`: the Host blocks of an ssh_config (HostName, User, Port, IdentityFile, ProxyJump)
  become nodes; `from-vagrant` does the same with what `vagrant ssh-config` prints. One pipeline
  serves both (`import_hosts`):
  1. parse the Host blocks (paramiko's ssh_config parser, so Host * defaults, quoting and ~ work as in ssh;
     `providers.ssh_config`);
  2. pin each host's key on first use: Vagrant's ssh-config turns host key checking off, so the key a
     host offers now is taken into a known_hosts file (a bare SSH handshake, no login), with a notice
     and its fingerprint; a key that differs from one already there is refused (`providers.host_keys`);
  3. ask each node for its address on the cluster network (`ip -4 -o addr`, `ip -4 route show default`,
     logged in with the pinned key). That address is the node's `address`, which the overlay uses;
     SSH keeps going where the ssh_config says (`ssh_host`, `port`). Vagrant's forwarded
     127.0.0.1:2222 is no node address, and the NAT interface (10.0.2.15 on every VirtualBox VM) is
     no cluster network: for Vagrant the address is the one on an interface other than the
     default route's (the private network), for other configs the HostName when the node has it,
     else the default route's interface; `--network CIDR` picks explicitly.
  4. write the inventory, checked by `inventory.parse` before it is written.
- `export --format ansible`: a lab's inventory as an Ansible inventory (YAML), host keys pinned too
  (`providers.ansible`).
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path
from typing import Callable, Optional, Sequence

from orchestrator.core import inventory as inventory_mod
from orchestrator.core.errors import InputError, LabError
from orchestrator.core.model import Cluster, Inventory, Node, Ssh
from orchestrator.core.render import dump_yaml
from orchestrator.core.state import LabFiles, atomic_write
from orchestrator.core.transport import Transport
from orchestrator.providers.ansible import ansible_inventory
from orchestrator.providers.host_keys import CONNECT_TIMEOUT, KnownHosts, Notice, pin_host_keys, temporary_known_hosts
from orchestrator.providers.ssh_config import SshHost, read_ssh_config, vagrant_ssh_config


# Interfaces that are never the node's own network: container and VM bridges, and the lab's own
# (a deployed node has cni0 and flannel.1, whose addresses are in the cluster CIDR anyway).
FOREIGN_INTERFACES = ("lo", "docker", "br-", "virbr", "cni", "flannel", "kube", "lxc", "lxd", "cilium", "weave")
VAGRANT_CHECK = "vagrant ssh {node} -c 'ssh-keygen -lf /etc/ssh/ssh_host_{kind}_key.pub'"
NODE_CHECK = "on {node}: ssh-keygen -lf /etc/ssh/ssh_host_{kind}_key.pub"
ADDRESS_SCRIPT = "ip -4 -o addr show scope global; echo ---; ip -4 route show default"


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
        inventory_mod.parse(dump_yaml(check), str(out_path or "the new inventory"), Path.cwd())
    data = inventory_data(name, hosts, addresses, known_path, out_path.parent if out_path else None)
    header = (f"# Made by `lab inventory` from {source.description}.\n"
              f"# Host keys were taken on first use into {data['ssh']['known_hosts']}: compare their\n"
              f"# fingerprints with the nodes' (`{source.how_to_check.format(node='NODE', kind='ed25519')}`).\n"
              "# Cluster settings not given here are the defaults (see inventories/local.yaml).\n")
    text = header + dump_yaml(data)
    if out_path is None:
        LabFiles.of(name).create()
    atomic_write(known_path, known.text, mode=0o644)
    if out_path is not None:
        atomic_write(out_path, text, mode=0o644)
    return text


# ---- the command --------------------------------------------------------------------------------


def run(args, resolve_inventory: Callable[[Optional[str]], Inventory], notice: Notice) -> int:
    """`lab inventory from-vagrant|from-ssh-config|export`: the text to stdout, or to -o FILE."""
    action = args.inventory_command
    if action == "export":
        inv = resolve_inventory(args.inventory)
        text = ansible_inventory(inv, LabFiles.of(inv.name).read_objects().subnets)
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

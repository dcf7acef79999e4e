"""Reading inventories: YAML in, a validated `model.Inventory` out, or one precise error.

Two stages, so bad input fails before anything is touched: `Section` reads one mapping of the raw YAML
with typed getters (each error names file, field and fix), and `parse()` assembles and cross-checks
the model (duplicates, overlaps, sizes).
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
from pathlib import Path
from collections.abc import Iterable
from typing import Any, Literal, Optional, overload

import yaml

from orchestrator.core.errors import InputError, field_error, yaml_error
from orchestrator.core.model import (ACCELERATORS, Cluster, Emulated, Inventory, Node, OVERLAY_BACKENDS, Overlay,
        PROVIDERS, PROXY_MODES, Ssh, Subnet)
from orchestrator.core.render import dump_yaml


ZONE_LABEL = "topology.kubernetes.io/zone"


def well_known_labels(node: str, subnet: Optional[str] = None) -> dict[str, str]:
    """The labels the kubelet puts on every node, which nodeSelector and `lab get nodes -l` may use; a node on
    one of the inventory's subnets has it as its zone, as a cloud provider labels a node with its zone."""
    return {"kubernetes.io/hostname": node, "kubernetes.io/os": "linux", **({ZONE_LABEL: subnet} if subnet else {})}


def own_labels(node: Node) -> dict[str, str]:
    """A node's labels but the well-known ones the lab gives every node: what its inventory says."""
    return {k: v for k, v in node.labels.items() if well_known_labels(node.name, node.subnet).get(k) != v}


LAB_NAME = re.compile(r"^[a-z][a-z0-9]{0,9}$")
HOSTNAME_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
IFNAMSIZ = 15  # longest Linux interface name
# Names the emulated provider gives its own namespaces (<lab>-underlay, ...); nodes can't take them.
RESERVED_NODE_NAMES = ("underlay", "router", "outside", "host")

TOP_KEYS = ("cluster", "ssh", "subnets", "nodes", "emulated")
CLUSTER_KEYS = ("name", "cluster_cidr", "node_subnet_size", "service_cidr", "dns_domain", "overlay", "proxy_mode")
OVERLAY_KEYS = ("backend", "vni", "port", "mtu", "directRouting")
SSH_KEYS = ("user", "port", "key", "known_hosts", "become", "jump", "connect_timeout", "command_timeout")
NODE_KEYS = ("name", "address", "ssh_host", "user", "port", "key", "become", "labels", "subnet")
SUBNET_KEYS = ("name", "cidr")
EMULATED_KEYS = ("nodes", "node_prefix", "underlay_mtu", "sudo_user", "provider", "memory", "accel", "subnets")
MAX_SUBNETS = 4  # an emulated lab's /24 underlay, split in up to four
USER_NAME = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """' (did you mean X?)' for the closest choice, or ''."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


class Section:
    """One mapping of the raw YAML, read with typed getters that fail with a one-line error."""

    def __init__(self, data: Any, where: str, source: str, base_dir: Path, allowed: tuple[str, ...]):
        self.where, self.source, self.base_dir = where, source, base_dir
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise self.error(self.where, f"expected a mapping, got {type(data).__name__}",
                             "write it as `key: value` lines")
        self.data = data
        for key in data:
            if key not in allowed:
                raise self.error(
                    self.path(str(key)), f"unknown key{did_you_mean(str(key), allowed)}",
                    f"allowed here: {', '.join(allowed)}")

    def path(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def error(self, field: str, problem: str, fix: str) -> InputError:
        return field_error(self.source, field, problem, fix)

    def has(self, key: str) -> bool:
        return self.data.get(key) is not None

    def raw(self, key: str, default: Any = None) -> Any:
        value = self.data.get(key)
        return default if value is None else value

    @overload
    def string(self, key: str, default: str, *, required: bool = False) -> str: ...

    @overload
    def string(self, key: str, default: None = None, *, required: Literal[True]) -> str: ...

    @overload
    def string(self, key: str, default: Optional[str] = None, *, required: bool = False) -> Optional[str]: ...

    def string(self, key: str, default: Optional[str] = None, *, required: bool = False) -> Optional[str]:
        value = self.data.get(key)
        if value is None:
            if required:
                raise self.error(self.path(key), "missing", f"add `{key}:`")
            return default
        if not isinstance(value, (str, int)) or isinstance(value, bool):
            raise self.error(self.path(key), f"expected text, got {value!r}", "give a plain string")
        return str(value)

    def integer(self, key: str, default: int, low: int, high: int) -> int:
        value = self.data.get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(self.path(key), f"expected a whole number, got {value!r}",
                             f"give a number from {low} to {high}")
        if not low <= value <= high:
            raise self.error(self.path(key), f"{value} is out of range", f"give a number from {low} to {high}")
        return value

    def number(self, key: str, default: float) -> float:
        value = self.data.get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise self.error(self.path(key), f"expected a positive number of seconds, got {value!r}",
                             "give e.g. 10")
        return float(value)

    def items(self, key: str) -> list[Any]:
        """A list (empty when missing)."""
        value = self.data.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.error(self.path(key), f"expected a list, got {type(value).__name__}", "write it as a YAML list")
        return value

    def mapping(self, key: str) -> dict[str, str]:
        """A mapping of names to text (empty when missing)."""
        value = self.data.get(key)
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.error(self.path(key), f"expected a mapping, got {type(value).__name__}",
                             "write it as `key: value` lines")
        return {str(k): str(v) for k, v in value.items()}

    def boolean(self, key: str, default: bool) -> bool:
        value = self.data.get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise self.error(self.path(key), f"expected true or false, got {value!r}", "write true or false")
        return value

    def network(self, key: str, default: str) -> ipaddress.IPv4Network:
        text = self.string(key, default)
        try:
            net = ipaddress.ip_network(text, strict=False)
        except ValueError:
            raise self.error(self.path(key), f"{text!r} is not a CIDR", "write it like 10.244.0.0/16") from None
        if not isinstance(net, ipaddress.IPv4Network):
            raise self.error(self.path(key), f"{text} is IPv6", "only IPv4 is supported; give an IPv4 CIDR")
        if str(net) != text and "/" in text:
            raise self.error(self.path(key), f"{text} has host bits set", f"did you mean {net}?")
        if "/" not in text:
            raise self.error(self.path(key), f"{text!r} has no prefix length", "write it like 10.244.0.0/16")
        return net

    def address(self, key: str) -> ipaddress.IPv4Address:
        text = self.string(key, required=True)
        try:
            addr = ipaddress.ip_address(text)
        except ValueError:
            raise self.error(self.path(key), f"{text!r} is not an IP address",
                             "give the node's IPv4 address, e.g. 192.168.56.11") from None
        if not isinstance(addr, ipaddress.IPv4Address):
            raise self.error(self.path(key), f"{text} is IPv6", "only IPv4 is supported; give an IPv4 address")
        return addr

    def file(self, key: str, *, must_exist: bool = True) -> Optional[Path]:
        """A path relative to the inventory's folder (or absolute, or ~); checked readable."""
        text = self.string(key)
        if text is None:
            return None
        path = Path(os.path.expanduser(text))
        if not path.is_absolute():
            path = self.base_dir / path
        if must_exist:
            try:
                with open(path, "rb") as handle:
                    handle.read(1)
            except OSError as exc:
                raise self.error(self.path(key), f"cannot read {path}: {exc.strerror}",
                                 "give the path of a readable file (relative paths start at the inventory's folder)"
                                 ) from None
        return path

    def section(self, key: str, allowed: tuple[str, ...]) -> "Section":
        return Section(self.data.get(key), self.path(key), self.source, self.base_dir, allowed)


def load(path: os.PathLike[str] | str) -> Inventory:
    """Read and validate the inventory at `path`."""
    source = str(path)
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise InputError(f"{source}: cannot read the inventory: {exc.strerror}; "
                         "give an existing file with -i/--inventory or LAB_INVENTORY") from None
    return parse(text, source, Path(path).resolve().parent)


def parse(text: str, source: str, base_dir: Path) -> Inventory:
    """Validate inventory YAML `text` (read from `source`); relative paths start at `base_dir`."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise yaml_error(source, exc) from None
    top = Section(data, "", source, base_dir, TOP_KEYS)
    cluster = parse_cluster(top.section("cluster", CLUSTER_KEYS))
    ssh = parse_ssh(top.section("ssh", SSH_KEYS))
    emulated = parse_emulated(top.section("emulated", EMULATED_KEYS)) if top.has("emulated") else None
    subnets = parse_subnets(top, cluster)
    nodes = parse_nodes(top, ssh, subnets)
    if not nodes and emulated is None:
        raise top.error("nodes", "no nodes listed", "list the nodes, or use `lab up` for emulated nodes")
    check_node_subnets(top, cluster, len(nodes) or (emulated.nodes if emulated else 0))
    for index, node in enumerate(nodes):
        for label, net in (("cluster_cidr", cluster.cluster_cidr), ("service_cidr", cluster.service_cidr)):
            if node.address in net:
                raise top.error(f"nodes[{index}].address", f"{node.address} is inside cluster.{label} {net}",
                                "node addresses must be outside the pod and service ranges; change one of them")
    check_one_segment_for_host_gw(top, cluster, nodes, emulated)
    return Inventory(source=source, cluster=cluster, nodes=tuple(nodes), emulated=emulated, subnets=subnets)


def check_lab_name(name: str, example: str = "demo") -> None:
    """An InputError for a --name option that is not a valid lab name."""
    if not LAB_NAME.match(name):
        raise InputError(f"--name: {name!r} is not a valid lab name; use 1-10 lowercase letters and digits "
                         f"starting with a letter, e.g. {example}")


def parse_cluster(sec: Section) -> Cluster:
    name = sec.string("name", required=True)
    if not LAB_NAME.match(name):
        raise sec.error(sec.path("name"), f"{name!r} is not a valid lab name",
                        "use 1-10 lowercase letters and digits starting with a letter (it prefixes "
                        "namespaces and links), e.g. 'demo'")
    cluster_cidr = sec.network("cluster_cidr", "10.244.0.0/16")
    service_cidr = sec.network("service_cidr", "10.96.0.0/12")
    if cluster_cidr.overlaps(service_cidr):
        raise sec.error(sec.path("service_cidr"), f"{service_cidr} overlaps cluster_cidr {cluster_cidr}",
                        "pods and services need separate ranges, e.g. 10.244.0.0/16 and 10.96.0.0/12")
    size = sec.integer("node_subnet_size", 24, 1, 32)
    if not cluster_cidr.prefixlen < size <= 28:
        raise sec.error(sec.path("node_subnet_size"),
                        f"/{size} does not fit: node subnets must be smaller than cluster_cidr "
                        f"/{cluster_cidr.prefixlen} and hold at least 16 addresses",
                        f"give a size from {cluster_cidr.prefixlen + 1} to 28, e.g. 24")
    domain = sec.string("dns_domain", "cluster.local")
    if not all(HOSTNAME_LABEL.match(part) for part in domain.split(".")):
        raise sec.error(sec.path("dns_domain"), f"{domain!r} is not a valid DNS domain",
                        "use dot-separated lowercase labels, e.g. cluster.local")
    proxy_mode = sec.string("proxy_mode", "iptables")
    if proxy_mode not in PROXY_MODES:
        raise sec.error(sec.path("proxy_mode"), f"unknown mode {proxy_mode!r}{did_you_mean(proxy_mode, PROXY_MODES)}",
                        f"choose one of: {', '.join(PROXY_MODES)}")
    return Cluster(name=name, cluster_cidr=cluster_cidr, node_subnet_size=size, service_cidr=service_cidr,
                   dns_domain=domain, overlay=parse_overlay(sec.section("overlay", OVERLAY_KEYS)),
                   proxy_mode=proxy_mode)


def parse_overlay(sec: Section) -> Overlay:
    backend = sec.string("backend", "vxlan")
    if backend not in OVERLAY_BACKENDS:
        raise sec.error(sec.path("backend"), f"unknown backend {backend!r}{did_you_mean(backend, OVERLAY_BACKENDS)}",
                        f"choose one of: {', '.join(OVERLAY_BACKENDS)}")
    mtu = sec.raw("mtu")
    if mtu == "auto":
        mtu = None
    elif mtu is not None:
        mtu = sec.integer("mtu", 0, 576, 9000)
    direct_routing = sec.boolean("directRouting", False)
    if direct_routing and backend != "vxlan":
        raise sec.error(sec.path("directRouting"), f"is an option of the vxlan backend, not of {backend} "
                        "(whose routes are all direct already)", "remove directRouting, or use `backend: vxlan`")
    return Overlay(backend=backend, vni=sec.integer("vni", 1, 1, 16777215),
                   port=sec.integer("port", 8472, 1, 65535), mtu=mtu, direct_routing=direct_routing)


def parse_ssh(sec: Section, defaults: Ssh = Ssh()) -> Ssh:
    """SSH settings from `sec`, each falling back to `defaults`."""
    return Ssh(
        user=sec.string("user", defaults.user),
        port=sec.integer("port", defaults.port, 1, 65535),
        key=sec.file("key") if sec.has("key") else defaults.key,
        known_hosts=sec.file("known_hosts") if sec.has("known_hosts") else defaults.known_hosts,
        become=sec.boolean("become", defaults.become),
        jump=sec.string("jump", defaults.jump),
        connect_timeout=sec.number("connect_timeout", defaults.connect_timeout),
        command_timeout=sec.number("command_timeout", defaults.command_timeout),
    )


def parse_emulated(sec: Section) -> Emulated:
    prefix = sec.string("node_prefix", "node")
    if not re.match(r"^[a-z][a-z0-9-]{0,10}$", prefix):
        raise sec.error(sec.path("node_prefix"), f"{prefix!r} is not a usable name prefix",
                        "use up to 11 lowercase letters, digits or '-', starting with a letter")
    sudo_user = sec.string("sudo_user")
    problem = user_name_problem(sudo_user) if sudo_user is not None else None
    if problem:
        raise sec.error(sec.path("sudo_user"), *problem)
    provider = sec.string("provider", "local")
    if provider not in PROVIDERS:
        raise sec.error(sec.path("provider"), f"unknown provider {provider!r}{did_you_mean(provider, PROVIDERS)}",
                        f"use one of: {', '.join(PROVIDERS)}")
    accel = sec.string("accel", "auto")
    if accel not in ACCELERATORS:
        raise sec.error(sec.path("accel"), f"unknown accelerator {accel!r}{did_you_mean(accel, ACCELERATORS)}",
                        f"use one of: {', '.join(ACCELERATORS)}")
    return Emulated(nodes=sec.integer("nodes", 3, 1, 200), node_prefix=prefix,
                    underlay_mtu=sec.integer("underlay_mtu", 1500, 1280, 9000), sudo_user=sudo_user,
                    provider=provider, memory=sec.integer("memory", 1024, 256, 65536), accel=accel,
                    subnets=sec.integer("subnets", 1, 1, MAX_SUBNETS))


def user_name_problem(name: str) -> Optional[tuple[str, str]]:
    """(problem, fix) when `name` can't be the emulated nodes' sudo user; None when it can."""
    if name == "root":
        return ("'root' is not a sudo user", "leave sudo_user out to log in as root, or give another name, e.g. lab")
    if not USER_NAME.match(name):
        return (f"{name!r} is not a usable user name",
                "use up to 32 lowercase letters, digits, '_' or '-', starting with a letter or '_', e.g. lab")
    return None


def parse_subnets(top: Section, cluster: Cluster) -> tuple[Subnet, ...]:
    """The underlay subnets (racks, zones) nodes may name: each its own L2 segment."""
    subnets: list[Subnet] = []
    for index, item in enumerate(top.items("subnets")):
        sec = Section(item, f"subnets[{index}]", top.source, top.base_dir, SUBNET_KEYS)
        name = sec.string("name", required=True)
        if not HOSTNAME_LABEL.match(name):
            raise sec.error(sec.path("name"), f"{name!r} is not a usable subnet name",
                            "use lowercase letters, digits and '-', e.g. rack1")
        cidr = sec.network("cidr", sec.string("cidr", required=True))
        for other_index, other in enumerate(subnets):
            if other.name == name:
                raise sec.error(sec.path("name"), f"duplicate subnet name {name!r} (also subnets[{other_index}])",
                                "give every subnet its own name")
            if other.cidr.overlaps(cidr):
                raise sec.error(sec.path("cidr"), f"{cidr} overlaps subnets[{other_index}] {other.name} {other.cidr}",
                                "give every subnet its own range")
        for label, net in (("cluster_cidr", cluster.cluster_cidr), ("service_cidr", cluster.service_cidr)):
            if cidr.overlaps(net):
                raise sec.error(sec.path("cidr"), f"{cidr} overlaps cluster.{label} {net}",
                                "underlay subnets must be outside the pod and service ranges")
        subnets.append(Subnet(name, cidr))
    return tuple(subnets)


def node_subnet(sec: Section, address: ipaddress.IPv4Address, subnets: tuple[Subnet, ...]) -> Optional[str]:
    """The subnet a node is on: the one it names (which must exist and hold its address), else the one that
    holds its address; None in an inventory without subnets."""
    names = [s.name for s in subnets]
    name = sec.string("subnet")
    if name is None:
        if not subnets:
            return None
        holding = [s.name for s in subnets if address in s.cidr]
        if not holding:
            raise sec.error(sec.path("address"), f"{address} is in none of the subnets "
                            f"({', '.join(f'{s.name} {s.cidr}' for s in subnets)})",
                            "give the node an address in one of them, or add `subnet:` naming its subnet")
        return holding[0]
    if name not in names:
        known = (f"subnets are: {', '.join(names)}" if names else
                 "the inventory declares no subnets (add them under `subnets:` with a name and a cidr)")
        raise sec.error(sec.path("subnet"), f"no subnet named {name!r}{did_you_mean(name, names)}",
                        f"name one that exists; {known}")
    cidr = next(s.cidr for s in subnets if s.name == name)
    if address not in cidr:
        raise sec.error(sec.path("address"), f"{address} is not in its subnet {name} {cidr}",
                        f"give an address in {cidr}, or name the subnet that holds it")
    return name


def check_one_segment_for_host_gw(top: Section, cluster: Cluster, nodes: list[Node],
                                  emulated: Optional[Emulated]) -> None:
    """flannel's host-gw routes each pod subnet via the node's address, so it needs every node on one L2
    segment; refuse it across subnets, as flannel documents, before any node is touched."""
    if cluster.overlay.backend != "host-gw":
        return
    fix = ("use `backend: vxlan` (with `directRouting: true` for plain routes inside a subnet), "
           "or put every node on one subnet")
    spread: dict[str, list[str]] = {}
    for node in nodes:
        spread.setdefault(node.subnet or "-", []).append(node.name)
    if len(spread) > 1:
        where = ", ".join(f"{subnet} ({' '.join(names)})" for subnet, names in spread.items())
        raise top.error("cluster.overlay.backend", "host-gw needs every node on one L2 segment, but the nodes are "
                        f"on {len(spread)} subnets: {where}", fix)
    if not nodes and emulated is not None and emulated.subnets > 1:
        raise top.error("cluster.overlay.backend", f"host-gw needs every node on one L2 segment, but "
                        f"emulated.subnets is {emulated.subnets}", fix)


def parse_nodes(top: Section, ssh: Ssh, subnets: tuple[Subnet, ...] = ()) -> list[Node]:
    raw = top.raw("nodes", [])
    if not isinstance(raw, list):
        raise top.error("nodes", f"expected a list, got {type(raw).__name__}", "write each node as `- name: ...`")
    nodes: list[Node] = []
    seen_names: dict[str, int] = {}
    seen_addresses: dict[str, int] = {}
    for index, item in enumerate(raw):
        sec = Section(item, f"nodes[{index}]", top.source, top.base_dir, NODE_KEYS)
        name = sec.string("name", required=True)
        check_node_name(sec, name)
        if name in seen_names:
            raise sec.error(sec.path("name"), f"duplicate node name {name!r} (also nodes[{seen_names[name]}])",
                            "give every node its own name")
        seen_names[name] = index
        address = sec.address("address")
        if str(address) in seen_addresses:
            raise sec.error(sec.path("address"),
                            f"duplicate address {address} (also nodes[{seen_addresses[str(address)]}])",
                            "give every node its own address")
        seen_addresses[str(address)] = index
        labels = sec.raw("labels", {})
        if not isinstance(labels, dict) or not all(isinstance(v, (str, int, float, bool)) for v in labels.values()):
            raise sec.error(sec.path("labels"), "expected a mapping of label: value",
                            "write e.g. `labels: {zone: a}`")
        subnet = node_subnet(sec, address, subnets)
        nodes.append(Node(name=name, address=address, ssh_host=sec.string("ssh_host", str(address)),
                          ssh=parse_ssh(sec, ssh), subnet=subnet,
                          labels={**well_known_labels(name, subnet), **{str(k): str(v) for k, v in labels.items()}}))
    return nodes


def check_node_name(sec: Section, name: str) -> None:
    field = sec.path("name")
    if not HOSTNAME_LABEL.match(name):
        raise sec.error(field, f"{name!r} is not a valid hostname",
                        "use lowercase letters, digits and '-', starting and ending with a letter or digit")
    if len(name) > IFNAMSIZ:
        raise sec.error(field, f"{name!r} is {len(name)} characters; node names also name network "
                               f"interfaces, which Linux limits to {IFNAMSIZ}",
                        f"shorten it to at most {IFNAMSIZ} characters")
    if name in RESERVED_NODE_NAMES:
        raise sec.error(field, f"{name!r} is reserved for the lab's own namespaces", "choose another name")


def check_node_subnets(top: Section, cluster: Cluster, node_count: int) -> None:
    available = 2 ** (cluster.node_subnet_size - cluster.cluster_cidr.prefixlen)
    if node_count > available:
        raise top.error("cluster.node_subnet_size",
                        f"cluster_cidr {cluster.cluster_cidr} holds {available} /{cluster.node_subnet_size} "
                        f"node subnets, but there are {node_count} nodes",
                        "use a larger cluster_cidr or a larger node_subnet_size")


def dump(inventory: Inventory, relative_to: Path) -> str:
    """YAML text for `inventory`, with file paths relative to `relative_to` where they lie below it."""

    def rel(path: Optional[Path]) -> Optional[str]:
        if path is None:
            return None
        try:
            return str(path.relative_to(relative_to))
        except ValueError:
            return str(path)

    cluster = inventory.cluster
    overlay = {"backend": cluster.overlay.backend, "vni": cluster.overlay.vni, "port": cluster.overlay.port,
               "mtu": cluster.overlay.mtu if cluster.overlay.mtu is not None else "auto",
               **({"directRouting": True} if cluster.overlay.direct_routing else {})}
    data: dict[str, Any] = {
        "cluster": {"name": cluster.name, "cluster_cidr": str(cluster.cluster_cidr),
                    "node_subnet_size": cluster.node_subnet_size, "service_cidr": str(cluster.service_cidr),
                    "dns_domain": cluster.dns_domain, "overlay": overlay, "proxy_mode": cluster.proxy_mode},
    }
    if inventory.subnets:
        data["subnets"] = [{"name": s.name, "cidr": str(s.cidr)} for s in inventory.subnets]
    if inventory.nodes:
        ssh = inventory.nodes[0].ssh
        data["ssh"] = {k: v for k, v in {
            "user": ssh.user, "port": ssh.port, "key": rel(ssh.key), "known_hosts": rel(ssh.known_hosts),
            "become": ssh.become, "jump": ssh.jump}.items() if v is not None}
        data["nodes"] = [{"name": n.name, "address": str(n.address), **({"subnet": n.subnet} if n.subnet else {}),
                          **({"labels": own_labels(n)} if own_labels(n) else {})} for n in inventory.nodes]
    if inventory.emulated:
        e = inventory.emulated
        data["emulated"] = {"nodes": e.nodes, "node_prefix": e.node_prefix, "underlay_mtu": e.underlay_mtu,
                            **({"sudo_user": e.sudo_user} if e.sudo_user else {}),
                            **({"subnets": e.subnets} if e.subnets > 1 else {})}
        if e.provider != "local":
            data["emulated"].update(provider=e.provider, memory=e.memory, accel=e.accel)
    return dump_yaml(data)

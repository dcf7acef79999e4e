"""Compare what a node should have (plan.network) with what it has (plan.facts): a list of changes.

Each Change says in words what it does and carries the shell lines that do it (quoted here, with
shlex). No change means the node is as wanted: `lab deploy` reports "ok" for it. `teardown()` is the
same for `lab destroy`: what to remove so the node is as it was before the lab.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from ipaddress import IPv4Network, ip_network
from typing import Iterable, Optional

from ..model import Cluster
from ..node_agent import removal_block
from .facts import NodeState
from .network import BRIDGE, FORWARD_CHAIN, MASQ_CHAIN, NodeNetwork, conflist_path, node_lib
from .proxy_nft import TABLE as NFT_TABLE


@dataclass(frozen=True)
class Change:
    what: str
    lines: tuple[str, ...]


def cmd(*argv: object) -> str:
    return shlex.join(str(a) for a in argv)


def write_file(path: str, text: str, mode: str = "0644") -> tuple[str, ...]:
    """Shell lines writing `text` to `path` atomically."""
    return (cmd("mkdir", "-p", path.rsplit("/", 1)[0]),
            f"printf '%s' {shlex.quote(text)} > {shlex.quote(path + '.lab-tmp')}",
            cmd("chmod", mode, path + ".lab-tmp"), cmd("mv", "-f", path + ".lab-tmp", path))


def sysctl_changes(net: NodeNetwork, state: NodeState, lab: str) -> list[Change]:
    changes = []
    saved = f"{node_lib(lab)}/sysctl.orig"
    for key, value in net.sysctls.items():
        old = state.sysctls.get(key, "")
        if old != value:
            # Remember the value the node had, once, so `lab destroy` can put it back.
            keep = f"grep -q {shlex.quote('^' + key + '=')} {saved} 2>/dev/null || echo {shlex.quote(f'{key}={old}')} >> {saved}"
            changes.append(Change(f"set {key}={value} (was {old or 'unset'})",
                                  (cmd("mkdir", "-p", node_lib(lab)), keep, cmd("sysctl", "-qw", f"{key}={value}"))))
    return changes


def vxlan_link_matches(link: dict, net: NodeNetwork) -> bool:
    vtep = net.vtep
    data = (link.get("linkinfo") or {}).get("info_data") or {}
    return ((link.get("linkinfo") or {}).get("info_kind") == "vxlan" and data.get("id") == vtep.vni
            and data.get("local") == str(vtep.local) and data.get("port") == vtep.port
            and data.get("link") == vtep.underlay_device and data.get("learning") is False)


def create_vxlan_lines(net: NodeNetwork) -> tuple[str, ...]:
    v = net.vtep
    return (cmd("ip", "link", "add", v.device, "address", v.mac, "mtu", v.mtu, "type", "vxlan", "id", v.vni,
                "local", v.local, "dev", v.underlay_device, "dstport", v.port, "nolearning"),
            cmd("ip", "addr", "add", f"{v.address}/32", "dev", v.device),
            cmd("ip", "link", "set", v.device, "up"))


def vxlan_changes(net: NodeNetwork, state: NodeState) -> list[Change]:
    changes = []
    wanted = net.vtep.device if net.vtep else None
    for link in state.addrs:
        name = link.get("ifname", "")
        if name.startswith("flannel.") and name != wanted:
            changes.append(Change(f"remove VXLAN device {name}", (cmd("ip", "link", "del", name),)))
    if net.vtep is None:
        return changes
    v = net.vtep
    link = state.link(v.device)
    if link is None:
        return changes + [Change(f"create VXLAN device {v.device} (VNI {v.vni}, UDP {v.port}, MTU {v.mtu}, "
                                 f"{v.address}/32, via {v.underlay_device})", create_vxlan_lines(net))]
    if not vxlan_link_matches(link, net):
        return changes + [Change(f"recreate VXLAN device {v.device}: its VNI, port, local address or device differ",
                                 (cmd("ip", "link", "del", v.device), *create_vxlan_lines(net)))]
    if link.get("address") != v.mac:
        changes.append(Change(f"set {v.device} MAC {v.mac}", (cmd("ip", "link", "set", v.device, "address", v.mac),)))
    if link.get("mtu") != v.mtu:
        changes.append(Change(f"set {v.device} MTU {v.mtu} (was {link.get('mtu')})",
                              (cmd("ip", "link", "set", v.device, "mtu", v.mtu),)))
    addrs = {f"{a['local']}/{a['prefixlen']}" for a in link.get("addr_info", []) if a.get("family") == "inet"}
    if f"{v.address}/32" not in addrs:
        changes.append(Change(f"address {v.address}/32 on {v.device}",
                              (cmd("ip", "addr", "add", f"{v.address}/32", "dev", v.device),)))
    for extra in sorted(addrs - {f"{v.address}/32"}):
        changes.append(Change(f"remove address {extra} from {v.device}",
                              (cmd("ip", "addr", "del", extra, "dev", v.device),)))
    if "UP" not in link.get("flags", []):
        changes.append(Change(f"bring {v.device} up", (cmd("ip", "link", "set", v.device, "up"),)))
    return changes


def managed_routes(state: NodeState, cluster_cidr: IPv4Network, own: Optional[IPv4Network]) -> dict:
    """Routes to other nodes' pod subnets: destination inside the cluster CIDR, not the node's own bridge."""
    routes = {}
    for route in state.routes:
        dst = route.get("dst", "")
        if "/" not in dst and dst != "default":
            dst += "/32"
        try:
            net = ip_network(dst)
        except ValueError:
            continue
        if net.subnet_of(cluster_cidr) and net != own and route.get("dev") != BRIDGE:
            routes[net] = route
    return routes


def route_changes(net: NodeNetwork, state: NodeState, cluster_cidr: IPv4Network) -> list[Change]:
    have = managed_routes(state, cluster_cidr, net.subnet)
    want = {r.dst: r for r in net.routes}
    changes = []
    for dst in sorted(set(have) - set(want)):
        changes.append(Change(f"remove route {dst} (no such node any more)", (cmd("ip", "route", "del", dst),)))
    for dst, r in want.items():
        cur = have.get(dst)
        if (cur and cur.get("gateway") == str(r.via) and cur.get("dev") == r.dev
                and ("onlink" in cur.get("flags", [])) == r.onlink):
            continue
        onlink = ("onlink",) if r.onlink else ()
        changes.append(Change(f"route {dst} via {r.via} dev {r.dev}{' onlink' if r.onlink else ''}",
                              (cmd("ip", "route", "replace", dst, "via", r.via, "dev", r.dev, *onlink),)))
    return changes


def neighbour_changes(net: NodeNetwork, state: NodeState) -> list[Change]:
    if net.vtep is None:
        return []
    dev = net.vtep.device
    have = {n["dst"]: n.get("lladdr") for n in state.neighbours if n.get("dev") == dev}
    want = {str(n.address): n.mac for n in net.neighbours}
    changes = [Change(f"remove neighbour {dst} on {dev}", (cmd("ip", "neigh", "del", dst, "dev", dev),))
               for dst in sorted(set(have) - set(want))]
    for dst, mac in sorted(want.items()):
        if have.get(dst) != mac:
            changes.append(Change(f"neighbour {dst} -> {mac} on {dev}",
                                  (cmd("ip", "neigh", "replace", dst, "lladdr", mac, "dev", dev, "nud", "permanent"),)))
    return changes


def fdb_changes(net: NodeNetwork, state: NodeState) -> list[Change]:
    if net.vtep is None:
        return []
    dev = net.vtep.device
    have = {(f["mac"], f["dst"]) for f in state.fdb if f.get("ifname") == dev and f.get("dst")
            and f["mac"] != "00:00:00:00:00:00"}
    want = {(f.mac, str(f.dst)) for f in net.fdb}
    changes = [Change(f"remove FDB {mac} -> {dst} on {dev}", (cmd("bridge", "fdb", "del", mac, "dev", dev, "dst", dst),))
               for mac, dst in sorted(have - want)]
    changes += [Change(f"FDB {mac} -> {dst} on {dev}",
                       (cmd("bridge", "fdb", "append", mac, "dev", dev, "dst", dst, "self", "permanent"),))
                for mac, dst in sorted(want - have)]
    return changes


def rule_changes(net: NodeNetwork, state: NodeState) -> list[Change]:
    """One atomic iptables-restore --noflush for every lab chain that differs (declaring a chain flushes
    only that chain), plus the jumps from the built-in chains that are missing."""
    tables: dict[str, list[str]] = {}
    changed = []
    for (table, chain), lines in net.rules.items():
        if state.chain(table, chain) != list(lines):
            tables.setdefault(table, []).extend([f":{chain} - [0:0]", *lines])
            changed.append(chain)
    for (table, builtin), jump in net.jumps.items():
        if jump not in (state.chain(table, builtin) or []):
            # POSTROUTING: first, so pod-to-pod RETURNs before any MASQUERADE the node has. FORWARD: last,
            # after kube-proxy's REJECT for services without endpoints (which the pod ACCEPTs would skip).
            line = jump if builtin == "FORWARD" else jump.replace(f"-A {builtin} ", f"-I {builtin} 1 ", 1)
            tables.setdefault(table, []).append(line)
            changed.append(f"jump {builtin} -> {jump.rsplit(' ', 1)[-1]}")
    if not tables:
        return []
    body = "".join(f"*{table}\n" + "\n".join(lines) + "\nCOMMIT\n" for table, lines in sorted(tables.items()))
    return [Change(f"load rules: {', '.join(changed)}", (f"iptables-restore --noflush <<'LAB_RULES'\n{body}LAB_RULES",))]


def network_changes(net: NodeNetwork, state: NodeState, cluster: Cluster) -> list[Change]:
    """Everything that differs between `net` and `state`, in the order to apply it."""
    changes = sysctl_changes(net, state, cluster.name)
    if state.conflist != net.conflist.strip():
        changes.append(Change(f"write CNI config {net.conflist_path} (subnet {net.subnet}, MTU {net.pod_mtu})",
                              (remember_missing(CNI_DIRS, f"{node_lib(cluster.name)}/{CREATED_DIRS}"),
                               *write_file(net.conflist_path, net.conflist))))
    bridge = state.link(BRIDGE)
    if bridge is not None and bridge.get("mtu") != net.pod_mtu:
        changes.append(Change(f"set {BRIDGE} MTU {net.pod_mtu} (was {bridge.get('mtu')})",
                              (cmd("ip", "link", "set", BRIDGE, "mtu", net.pod_mtu),)))
    changes += vxlan_changes(net, state)
    changes += neighbour_changes(net, state)
    changes += fdb_changes(net, state)
    changes += route_changes(net, state, cluster.cluster_cidr)
    changes += rule_changes(net, state)
    return changes


# The CNI folders a fresh machine may lack, deepest first: `lab destroy` removes those the lab made.
CNI_DIRS = ("/etc/cni/net.d", "/etc/cni", "/var/lib/cni")
CREATED_DIRS = "dirs.created"  # below the lab's node folder


def remember_missing(folders: Iterable[str], record: str) -> str:
    """A shell line writing to `record` which of `folders` do not exist yet (once: a record stays)."""
    return (f"[ -e {shlex.quote(record)} ] || {{ mkdir -p {shlex.quote(record.rsplit('/', 1)[0])} && "
            f"for d in {' '.join(shlex.quote(f) for f in folders)}; do [ -d \"$d\" ] || echo \"$d\"; done "
            f"> {shlex.quote(record)}; }}")


def file_changes(state: NodeState, lab: str, files: dict[str, tuple[str, str, str]]) -> list[Change]:
    """Files the lab keeps on the node: relative path -> (text, sha256, mode)."""
    return [Change(f"install {node_lib(lab)}/{rel}", write_file(f"{node_lib(lab)}/{rel}", text, mode))
            for rel, (text, digest, mode) in sorted(files.items()) if state.files.get(rel) != digest]


def teardown(state: NodeState, cluster: Cluster, node_subnet: Optional[IPv4Network],
             before_files: Iterable[Change] = ()) -> list[Change]:
    """What to remove from a node so that it is as before the lab (pods are removed before this);
    `before_files` run before the lab's node folder goes."""
    lab = cluster.name
    changes = []
    for link in state.addrs:
        name = link.get("ifname", "")
        if name.startswith("flannel.") or name == BRIDGE:
            changes.append(Change(f"remove {name} (with its routes, neighbours and FDB entries)",
                                  (cmd("ip", "link", "del", name),)))
    for dst, route in sorted(managed_routes(state, cluster.cluster_cidr, None).items()):
        if not str(route.get("dev", "")).startswith("flannel.") and route.get("dev") != BRIDGE:
            changes.append(Change(f"remove route {dst}", (cmd("ip", "route", "del", dst),)))
    others = [f for f in state.conflists if f.endswith((".conf", ".conflist")) and f != f"10-{lab}.conflist"]
    for table, owned in (("nat", MASQ_CHAIN), ("filter", FORWARD_CHAIN)):
        # portmap leaves its top-level CNI-HOSTPORT-* chains behind, and the service rules are KUBE-*
        # (kube-proxy's names): both are the lab's when no other network is configured on the node
        doomed = [c for c in state.chains(table) if c == owned or (not others and c.startswith(("CNI-HOSTPORT-",
                                                                                               "KUBE-")))]
        if doomed:
            changes.append(Change(f"remove chains {', '.join(doomed)} ({table})", chain_removal(state, table, doomed)))
    if f"table ip {NFT_TABLE}" in state.nft_tables and not others:
        changes.append(Change(f"remove nftables table {NFT_TABLE}", (cmd("nft", "delete", "table", "ip", NFT_TABLE),)))
    if state.conflist or any(f == f"10-{lab}.conflist" for f in state.conflists):
        changes.append(Change(f"remove {conflist_path(lab)}", (cmd("rm", "-f", conflist_path(lab)),)))
    changes += before_files
    if state.files:
        saved = f"{node_lib(lab)}/sysctl.orig"
        changes.append(Change(f"restore sysctls and remove {node_lib(lab)}", (
            f"if [ -f {saved} ]; then while IFS== read -r k v; do [ -n \"$v\" ] && sysctl -qw \"$k=$v\"; done < {saved}; fi",
            f"created=$(cat {node_lib(lab)}/{CREATED_DIRS} 2>/dev/null || true)",
            cmd("rm", "-rf", node_lib(lab), f"/var/lib/cni/networks/{lab}"),
            f"rm -f /var/lib/cni/results/{shlex.quote(lab)}-*",
            # CNI's shared folders and ours go only when empty: another network may use them; the CNI
            # folders the machine did not have before the lab, too.
            f"rmdir {node_lib(lab).rsplit('/', 1)[0]} /var/lib/cni/networks /var/lib/cni/results 2>/dev/null || true",
            'for d in $created; do rmdir "$d" 2>/dev/null || true; done')))
    return changes


def chain_removal(state: NodeState, table: str, chains: list[str]) -> tuple[str, ...]:
    """One iptables-restore deleting the jumps to `chains`, then emptying and deleting them: a command
    per chain would cost a ruleset read each (minutes next to 10,000 services with iptables-nft)."""
    doomed = set(chains)
    jumps = [rule for chain in state.chains(table) if chain not in doomed for rule in state.chain(table, chain) or []
             if any(rule.endswith(f"-j {c}") or f"-j {c} " in rule for c in chains)]
    text = removal_block(table, jumps, chains, len(state.chains(table)))
    return ("iptables-restore --noflush <<'LAB_RULES'\n" + text + "\nLAB_RULES",)


def render_script(changes: Iterable[Change]) -> str:
    """A bash script applying `changes` in order; on the first failure it names the change and command."""
    parts = ["set -eu -o pipefail",
             "trap 'echo \"lab: failed at: $LAB_STEP: $BASH_COMMAND\" >&2' ERR"]
    for change in changes:
        parts.append(f"LAB_STEP={shlex.quote(change.what)}")
        parts.extend(change.lines)
    return "\n".join(parts) + "\n"

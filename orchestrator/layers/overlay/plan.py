"""The overlay that joins the nodes' pod subnets, flannel-style: a VXLAN device per node with a route,
neighbour and FDB entry per peer, or (host-gw) a plain route per peer through the underlay. With vxlan's
DirectRouting, peers on the node's own underlay subnet get the plain route and only the others VXLAN.

Pure: `plan_overlay` computes what a node should have; the `*_changes` functions compare it with what the
node has (a NodeState) and return the changes; nothing here touches a node.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from typing import Any, Optional

from orchestrator.core.model import Inventory, Node, stable_mac
from orchestrator.core.script import Change, cmd
from orchestrator.layers.nodes.facts import NodeFacts, NodeState


DEVICE_PREFIX = "flannel."


def vxlan_device(vni: int) -> str:
    """flannel's name for the VXLAN device: flannel.<VNI>."""
    return f"{DEVICE_PREFIX}{vni}"


def vtep_mac(lab: str, node: str) -> str:
    """A stable MAC for a node's VXLAN device, so peers can be planned without asking the node (flannel
    publishes its random MAC through the API server instead)."""
    return stable_mac(f"{lab}/{node}")


@dataclass(frozen=True)
class Vtep:
    device: str
    vni: int
    port: int
    local: IPv4Address
    underlay_device: str
    mac: str
    address: IPv4Address  # the subnet's .0, as flannel assigns it
    mtu: int


@dataclass(frozen=True, order=True)
class Route:
    dst: IPv4Network
    via: IPv4Address
    dev: str
    onlink: bool = False


@dataclass(frozen=True, order=True)
class Neighbour:
    address: IPv4Address
    mac: str
    dev: str


@dataclass(frozen=True, order=True)
class FdbEntry:
    mac: str
    dst: IPv4Address
    dev: str


@dataclass(frozen=True)
class Overlay:
    """The desired overlay of one node."""

    subnet: IPv4Network  # the node's own pod subnet
    vtep: Optional[Vtep]
    routes: tuple[Route, ...]
    neighbours: tuple[Neighbour, ...]
    fdb: tuple[FdbEntry, ...]


def plan_overlay(inv: Inventory, node: Node, subnets: dict[str, IPv4Network], facts: dict[str, NodeFacts],
                 pod_mtu: int) -> Overlay:
    """The overlay of `node`, given every node's subnet and facts."""
    cluster = inv.cluster
    overlay = cluster.overlay
    own = facts[node.name]
    subnet = subnets[node.name]
    peers = [n for n in inv.nodes if n.name != node.name and n.name in subnets]
    vtep = None
    routes: list[Route] = []
    neighbours: list[Neighbour] = []
    fdb: list[FdbEntry] = []
    if overlay.backend == "vxlan":
        vtep = Vtep(device=vxlan_device(overlay.vni), vni=overlay.vni, port=overlay.port, local=node.address,
                    underlay_device=own.underlay_device, mac=vtep_mac(cluster.name, node.name),
                    address=subnet.network_address, mtu=pod_mtu)
        for peer in peers:
            peer_subnet = subnets[peer.name]
            if overlay.direct_routing and inv.same_segment(node, peer):
                routes.append(Route(peer_subnet, peer.address, own.underlay_device))
                continue
            mac = vtep_mac(cluster.name, peer.name)
            # flannel's order per peer: route via the peer's VTEP address (onlink), its neighbour, its FDB entry
            routes.append(Route(peer_subnet, peer_subnet.network_address, vtep.device, onlink=True))
            neighbours.append(Neighbour(peer_subnet.network_address, mac, vtep.device))
            fdb.append(FdbEntry(mac, peer.address, vtep.device))
    else:
        routes = [Route(subnets[p.name], p.address, own.underlay_device) for p in peers]
    return Overlay(subnet=subnet, vtep=vtep, routes=tuple(sorted(routes)), neighbours=tuple(sorted(neighbours)),
                   fdb=tuple(sorted(fdb)))


def vxlan_link_matches(link: dict[str, Any], vtep: Vtep) -> bool:
    data = (link.get("linkinfo") or {}).get("info_data") or {}
    return ((link.get("linkinfo") or {}).get("info_kind") == "vxlan" and data.get("id") == vtep.vni
            and data.get("local") == str(vtep.local) and data.get("port") == vtep.port
            and data.get("link") == vtep.underlay_device and data.get("learning") is False)


def create_vxlan_lines(v: Vtep) -> tuple[str, ...]:
    return (cmd("ip", "link", "add", v.device, "address", v.mac, "mtu", v.mtu, "type", "vxlan", "id", v.vni,
                "local", v.local, "dev", v.underlay_device, "dstport", v.port, "nolearning"),
            cmd("ip", "addr", "add", f"{v.address}/32", "dev", v.device),
            cmd("ip", "link", "set", v.device, "up"))


def vxlan_changes(overlay: Overlay, state: NodeState) -> list[Change]:
    changes = []
    wanted = overlay.vtep.device if overlay.vtep else None
    link: Optional[dict[str, Any]]  # each of the node's links, then the VTEP's (None when it has none)
    for link in state.addrs:
        name = link.get("ifname", "")
        if name.startswith(DEVICE_PREFIX) and name != wanted:
            changes.append(Change(f"remove VXLAN device {name}", (cmd("ip", "link", "del", name),)))
    if overlay.vtep is None:
        return changes
    v = overlay.vtep
    link = state.link(v.device)
    if link is None:
        return changes + [Change(f"create VXLAN device {v.device} (VNI {v.vni}, UDP {v.port}, MTU {v.mtu}, "
                                 f"{v.address}/32, via {v.underlay_device})", create_vxlan_lines(v))]
    if not vxlan_link_matches(link, v):
        return changes + [Change(f"recreate VXLAN device {v.device}: its VNI, port, local address or device differ",
                                 (cmd("ip", "link", "del", v.device), *create_vxlan_lines(v)))]
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


def managed_routes(state: NodeState, cluster_cidr: IPv4Network,
                   own: Optional[IPv4Network]) -> dict[IPv4Network, dict[str, Any]]:
    """Routes to other nodes' pod subnets: inside the cluster CIDR, not the node's own subnet, through a gateway
    (the node's own pods are reached on its bridge, with no gateway)."""
    routes: dict[IPv4Network, dict[str, Any]] = {}
    for route in state.routes:
        dst = route.get("dst", "")
        if "/" not in dst and dst != "default":
            dst += "/32"
        try:
            net = IPv4Network(dst)  # `ip route show` lists IPv4 routes only
        except ValueError:
            continue
        if net.subnet_of(cluster_cidr) and net != own and route.get("gateway"):
            routes[net] = route
    return routes


def route_changes(overlay: Overlay, state: NodeState, cluster_cidr: IPv4Network) -> list[Change]:
    have = managed_routes(state, cluster_cidr, overlay.subnet)
    want = {r.dst: r for r in overlay.routes}
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


def neighbour_changes(overlay: Overlay, state: NodeState) -> list[Change]:
    if overlay.vtep is None:
        return []
    dev = overlay.vtep.device
    have = {n["dst"]: n.get("lladdr") for n in state.neighbours if n.get("dev") == dev}
    want = {str(n.address): n.mac for n in overlay.neighbours}
    changes = [Change(f"remove neighbour {dst} on {dev}", (cmd("ip", "neigh", "del", dst, "dev", dev),))
               for dst in sorted(set(have) - set(want))]
    for dst, mac in sorted(want.items()):
        if have.get(dst) != mac:
            changes.append(Change(f"neighbour {dst} -> {mac} on {dev}",
                                  (cmd("ip", "neigh", "replace", dst, "lladdr", mac, "dev", dev, "nud", "permanent"),)))
    return changes


def fdb_changes(overlay: Overlay, state: NodeState) -> list[Change]:
    if overlay.vtep is None:
        return []
    dev = overlay.vtep.device
    have = {(f["mac"], f["dst"]) for f in state.fdb if f.get("ifname") == dev and f.get("dst")
            and f["mac"] != "00:00:00:00:00:00"}
    want = {(f.mac, str(f.dst)) for f in overlay.fdb}
    changes = [Change(f"remove FDB {mac} -> {dst} on {dev}",
                      (cmd("bridge", "fdb", "del", mac, "dev", dev, "dst", dst),)) for mac, dst in sorted(have - want)]
    changes += [Change(f"FDB {mac} -> {dst} on {dev}",
                       (cmd("bridge", "fdb", "append", mac, "dev", dev, "dst", dst, "self", "permanent"),))
                for mac, dst in sorted(want - have)]
    return changes


def overlay_changes(overlay: Overlay, state: NodeState, cluster_cidr: IPv4Network) -> list[Change]:
    """Everything of the overlay that differs, in the order to apply it."""
    return (vxlan_changes(overlay, state) + neighbour_changes(overlay, state) + fdb_changes(overlay, state)
            + route_changes(overlay, state, cluster_cidr))


def overlay_teardown(state: NodeState, cluster_cidr: IPv4Network) -> list[Change]:
    """Remove the overlay devices (their routes, neighbours and FDB entries go with them) and the other routes."""
    changes = [Change(f"remove {link['ifname']} (with its routes, neighbours and FDB entries)",
                      (cmd("ip", "link", "del", link["ifname"]),))
               for link in state.addrs if link.get("ifname", "").startswith(DEVICE_PREFIX)]
    for dst, route in sorted(managed_routes(state, cluster_cidr, None).items()):
        if not str(route.get("dev", "")).startswith(DEVICE_PREFIX):
            changes.append(Change(f"remove route {dst}", (cmd("ip", "route", "del", dst),)))
    return changes

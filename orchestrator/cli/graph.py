"""`lab graph`: a picture of the lab (graphviz): the underlay subnets, nodes with their pod subnets and cni0,
pods with IPs, the overlay between nodes, services with arrows to their endpoints, the outside host."""

from __future__ import annotations

import html
import shutil
import subprocess
from ipaddress import ip_network
from pathlib import Path

from orchestrator.core.errors import InputError, LabError
from orchestrator.core.model import Inventory
from orchestrator.core.objects import LabObjects, key_of
from orchestrator.core.render import render
from orchestrator.layers.overlay.plan import vxlan_device
from orchestrator.providers.emulated_plan import OUTSIDE_HOST


FORMATS = ("svg", "png", "html", "dot")


def topology_dot(inv: Inventory, objects: LabObjects) -> str:
    """The DOT text of the lab's topology (pure)."""
    overlay = inv.cluster.overlay
    nodes = []
    for node in inv.nodes:
        subnet = objects.subnets.get(node.name)
        pods = sorted((p for p in objects.pods.values() if p.node == node.name), key=lambda p: p.key)
        nodes.append({"name": node.name, "address": node.address, "subnet": subnet or "none (not deployed)",
                      "gateway": ip_network(subnet)[1] if subnet else "-", "pods": pods,
                      "overlay_label": (f"{vxlan_device(overlay.vni)}\nVNI {overlay.vni}, UDP {overlay.port}"
                                        + ("\n+ direct routes in its subnet" if overlay.direct_routing else "")
                                        if overlay.backend == "vxlan" else "eth0\nhost-gw routes")})
    def link(a, b) -> str:
        direct = overlay.backend != "vxlan" or (overlay.direct_routing and inv.same_segment(a, b))
        return "route" if direct else "VXLAN"
    tunnels = [(a.name, b.name, link(a, b)) for i, a in enumerate(inv.nodes) for b in inv.nodes[i + 1:]]
    # one box per underlay subnet, routed by the lab's router; an inventory without subnets has one, unboxed
    subnets = [{"name": s.name, "cidr": s.cidr, "nodes": [n for n, node in zip(nodes, inv.nodes, strict=True)
                                                          if node.subnet == s.name]} for s in inv.subnets]
    services = []
    for key, s in sorted(objects.services.items()):
        eps = {key_of(s.namespace, e.pod) for port in objects.endpoints.get(key, {}).values() for e in port}
        ports = ",".join(f"{p.port}/{p.protocol}" + (f" (node {p.node_port})" if p.node_port else "")
                         for p in s.ports)
        services.append({"key": key, "name": key, "cluster_ip": s.cluster_ip, "ports": ports,
                         "endpoints": sorted(eps)})
    return render("cli/topology.dot.j2", title=f"lab {inv.name}: pods {inv.cluster.cluster_cidr}, services "
                                           f"{inv.cluster.service_cidr}, {overlay.backend}",
                  nodes=nodes, tunnels=tunnels, subnets=subnets,
                  services=services, outside=str(OUTSIDE_HOST) if inv.emulated else None)


def write_graph(inv: Inventory, objects: LabObjects, path: str) -> str:
    """Render the topology to `path`; the format comes from its suffix (svg, png, html, dot)."""
    fmt = Path(path).suffix.lstrip(".").lower()
    if fmt not in FORMATS:
        raise InputError(f"-o {path}: unknown format {fmt!r}; name the file .svg, .png, .html or .dot")
    dot = topology_dot(inv, objects)
    if fmt == "dot":
        Path(path).write_text(dot)
        return path
    if shutil.which("dot") is None:
        raise LabError("graphviz's `dot` is not installed: install graphviz (make setup does)")
    proc = subprocess.run(["dot", f"-T{'svg' if fmt == 'html' else fmt}"], input=dot.encode(), capture_output=True)
    if proc.returncode != 0:
        raise LabError(f"dot failed: {proc.stderr.decode(errors='replace').strip()}")
    if fmt == "html":
        svg = proc.stdout.decode()
        Path(path).write_text(f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(inv.name)}"
                              f"</title></head><body>{svg[svg.index('<svg'):]}</body></html>\n")
    else:
        Path(path).write_bytes(proc.stdout)
    return path

"""`lab break`: faults to inject for study (and to prove the suite catches them); `lab fix` repairs.

Each fault says which check family it must trip and which families it may trip besides (anything
whose traffic crosses the broken part). The break is real: a kernel entry deleted, a config changed
the way people get it wrong, a process stopped, or a NetworkPolicy written wrong (policy_faults.py:
those are recorded with what the lab meant, for `lab verify`, and deleted by `lab fix`).
"""

from __future__ import annotations

import json
import random
import subprocess
from dataclasses import dataclass
from typing import Callable

from orchestrator import kinds
from orchestrator.agent.contract import POLICY_TABLE, pod_record_path
from orchestrator.core.errors import InputError
from orchestrator.core.manifests import Manifest
from orchestrator.core.model import Inventory, Node
from orchestrator.core.objects import LabObjects, Service
from orchestrator.core.script import heredoc
from orchestrator.core.state import LabFiles, atomic_write
from orchestrator.core.transport import Transport
from orchestrator.layers.nodes.facts import conflist_path
from orchestrator.layers.overlay.plan import vtep_mac, vxlan_device
from orchestrator.layers.pods.apply import reattach
from orchestrator.layers.services import apply as services_mod
from orchestrator.layers.services.iptables import sep_chain, svc_chain
from orchestrator.layers.services.nftables import TABLE
from orchestrator.pipeline import apply_manifests, delete_manifests
from orchestrator.verify import gateway_faults, policy_faults


@dataclass(frozen=True)
class Broken:
    """What a fault broke: where (`node NAME`, or an object as `KIND NAMESPACE/NAME`; the node first) and how."""
    where: tuple[str, ...]
    summary: str

    def __str__(self) -> str:
        return f"on {', '.join(self.where)}: {self.summary}"


@dataclass(frozen=True)
class Fault:
    name: str
    summary: str
    trips: str
    may_trip: frozenset
    inject: Callable


def break_fdb(inv: Inventory, t: Transport, files: LabFiles, node: Node, peer: Node) -> Broken:
    if inv.cluster.overlay.backend != "vxlan":
        raise InputError("fault vxlan-fdb needs the vxlan backend; this lab uses host-gw")
    dev = vxlan_device(inv.cluster.overlay.vni)
    mac = vtep_mac(inv.name, peer.name)
    t.run(node, ["bridge", "fdb", "del", mac, "dev", dev, "dst", str(peer.address)])
    return Broken((f"node {node.name}",),
                  f"deleted {node.name}'s FDB entry {mac} -> {peer.address} on {dev} (the way to {peer.name}'s VTEP)")


def break_ipmasq(inv: Inventory, t: Transport, files: LabFiles, node: Node, peer: Node) -> Broken:
    path = conflist_path(inv.name)
    t.run(node, ["sed", "-i", 's/"ipMasq": false/"ipMasq": true/', path])
    report = reattach(inv, t, files, [node])[node.name]
    if isinstance(report, BaseException):
        raise report
    objects = files.read_objects()
    services_mod.sync_rules(inv, t, objects)
    files.write_objects(objects)
    return Broken((f"node {node.name}",), f"set ipMasq true in {node.name}:{path} (as the talk's bridge.conf has it) "
                  f"and re-attached its {len(report)} pod(s): their traffic to other nodes is now masqueraded")


def sep_candidates(objects: LabObjects) -> list[tuple[str, Service]]:
    """Services (not the cluster's own) whose first port has 2 or more endpoints: one can lose one."""
    return [(k, s) for k, s in sorted(objects.services.items()) if not k.startswith("kube-system/")
            and len(objects.endpoints.get(k, {}).get(s.ports[0].name or "", [])) >= 2]


def break_sep(inv: Inventory, t: Transport, files: LabFiles, node: Node, peer: Node) -> Broken:
    objects = files.read_objects()
    candidates = sep_candidates(objects)
    if not candidates:
        raise InputError("fault kube-sep needs a service with 2 or more endpoints; apply examples/nginx.yaml")
    key, service = candidates[0]
    port = service.ports[0]
    first = objects.endpoints[key][port.name or ""][0]
    if inv.cluster.proxy_mode == "nftables":
        element = f"{service.cluster_ip} . {port.protocol.lower()} . {port.port} . 0"
        t.run(node, ["nft", "delete", "element", "ip", TABLE, "backends", "{", element, "}"])
        return Broken((f"node {node.name}", f"service {key}"),
                      f"deleted {node.name}'s backend {element} ({first.address} of {key})")
    svc = svc_chain(service, port)
    sep = sep_chain(service, port, first)
    rules = t.run(node, ["iptables", "-t", "nat", "-S", svc]).stdout.splitlines()
    jump = next(r for r in rules if r.endswith(f"-j {sep}"))
    removal = f"*nat\n{jump.replace('-A ', '-D ', 1)}\n-F {sep}\n-X {sep}\nCOMMIT\n"  # iptables-save's own quoting
    t.run(node, ["bash", "-c", heredoc("iptables-restore --noflush", removal)])
    return Broken((f"node {node.name}", f"service {key}"),
                  f"removed {node.name}'s chain {sep} ({first.address} of {key}) and its jump in {svc}")


# Stops the server a pod record (argv[1], the agent's JSON) names, as `kill` does: python3 is on every node (the
# agent runs with it), and it reads the record as JSON instead of matching its text.
STOP_POD_SERVER = "import json, os, signal, sys; os.kill(int(json.load(open(sys.argv[1]))['pid']), signal.SIGTERM)"


def break_dns(inv: Inventory, t: Transport, files: LabFiles, node: Node, peer: Node) -> Broken:
    objects = files.read_objects()
    dns = sorted((p for p in objects.pods.values() if p.role == "dns"), key=lambda p: p.name)
    if not dns:
        raise InputError("fault dns-pod needs the cluster DNS: run `lab deploy`")
    pod = dns[0]
    if pod.node is None:
        raise InputError(f"fault dns-pod: the DNS pod {pod.key} is not on a node yet; see lab get pods -n kube-system")
    t.run(pod.node, ["python3", "-c", STOP_POD_SERVER, pod_record_path(inv.name, pod.node_key)])
    return Broken((f"node {pod.node}", f"pod {pod.key}"), f"stopped DNS pod {pod.key} on {pod.node} (its dnsmasq)")


def break_stray_policy(inv: Inventory, t: Transport, files: LabFiles, node: Node, peer: Node) -> Broken:
    """A policy rule on one node that no NetworkPolicy explains (as a plugin that crashed mid-update leaves)."""
    pods = sorted((p for p in files.read_objects().pods.values() if p.node == node.name
                   and p.role == "server" and p.ip), key=lambda p: p.node_key)
    if not pods:
        raise InputError(f"fault stray-policy needs a pod on {node.name}; apply examples/nginx.yaml")
    pod = pods[0]
    t.run(node, ["nft", "-f", "-"], stdin=(
        f"table ip {POLICY_TABLE} {{\n"
        "  chain forward { type filter hook forward priority filter; policy accept; }\n}\n"
        f"insert rule ip {POLICY_TABLE} forward ip daddr {pod.ip} drop\n"))
    return Broken((f"node {node.name}",), f"left a stray rule on {node.name}: ip {POLICY_TABLE} forward drops "
                  f"everything to {pod.key} ({pod.ip}), which no NetworkPolicy says")


def broken_objects(files: LabFiles) -> list[dict]:
    """The policies faults applied, each with what the lab meant instead (policy_faults.PolicyBreak.record)."""
    try:
        return json.loads(files.broken_objects.read_text())
    except (OSError, ValueError):
        return []


def fault_manifest(document: dict, fault: str) -> Manifest:
    """The NetworkPolicy a fault applies, read as `lab apply` reads one."""
    return kinds.parse(document, f"lab break {fault}", lambda warning: None)


def policy_fault(name: str) -> Callable:
    def inject_policy(inv: Inventory, t: Transport, files: LabFiles, node: Node, peer: Node) -> Broken:
        wrong = policy_faults.BREAKS[name](files.read_objects(), node.name)
        try:
            apply_manifests(inv, t, files, [fault_manifest(wrong.document, name)])
        finally:  # recorded whenever it was stored, also when a node failed: `lab fix` deletes it then too
            if wrong.key in files.read_objects().policies:
                atomic_write(files.broken_objects, json.dumps(broken_objects(files) + [wrong.record(name)],
                                                              indent=2))
        return Broken((f"networkpolicy {wrong.key}",), wrong.summary)
    return inject_policy


def object_fault(name: str) -> Callable:
    """A fault that changes a Gateway API object (gateway_faults.py); `lab fix` applies the object as it was."""
    def inject_change(inv: Inventory, t: Transport, files: LabFiles, node: Node, peer: Node) -> Broken:
        wrong = gateway_faults.BREAKS[name](files.read_objects(), node.name)
        try:
            apply_manifests(inv, t, files, [fault_manifest(wrong.document, name)])
        finally:  # restoring what was there is right whether the change got stored or not
            atomic_write(files.broken_objects, json.dumps(broken_objects(files) + [wrong.record(name)], indent=2))
        record = wrong.record(name)
        return Broken((f"{record['kind'].lower()} {record['key']}",), wrong.summary)
    return inject_change


def undo_policy_faults(inv: Inventory, files: LabFiles) -> list[str]:
    """Undo the objects faults applied (`lab fix`): delete the policies, apply the changed objects as they were;
    kubectl's lines, each saying which fault it was."""
    records = broken_objects(files)
    if not records:
        return []
    added = [r for r in records if "restore" not in r]
    changed = [r for r in records if "restore" in r]
    with files.lock(), Transport(inv.nodes) as transport:
        lines = delete_manifests(inv, transport, files, [fault_manifest(r["document"], r["fault"]) for r in added])
        lines += apply_manifests(inv, transport, files, [fault_manifest(r["restore"], r["fault"])
                                                        for r in reversed(changed)])
    files.broken_objects.unlink(missing_ok=True)
    return [f"{line} (`lab break {r['fault']}` applied it)" for line, r in zip(lines, added + changed[::-1],
                                                                                strict=True)]


def announced_candidates(objects: LabObjects) -> list[tuple[str, str]]:
    """(address, service key) of the LoadBalancer addresses some node announces."""
    owners = {s.load_balancer_ip: k for k, s in objects.services.items() if s.load_balancer_ip}
    return sorted((address, owners[address]) for address in objects.announced if address in owners)


def break_lb_address(inv: Inventory, t: Transport, files: LabFiles, node: Node, peer: Node) -> Broken:
    """The announcing node loses its LoadBalancer address (as when someone flushes the interface's addresses):
    nothing answers ARP for it any more. The router's cached entry would still send traffic there for a while
    (the service rules DNAT it whether the address is the node's or not), so the fault also lets that entry go,
    as it goes once it is stale."""
    objects = files.read_objects()
    candidates = announced_candidates(objects)
    if not candidates:
        raise InputError("fault lb-address needs a LoadBalancer Service some node announces; lab expose deploy "
                         "nginx --port 80 --type=LoadBalancer --name web-lb")
    address, key = candidates[0]
    holder = inv.node(objects.announced[address])
    dev = t.run(holder, ["ip", "-o", "-4", "addr", "show", "to", f"{address}/32"]).stdout.split()[1]
    t.run(holder, ["ip", "addr", "del", f"{address}/32", "dev", dev])
    subprocess.run(["ip", "-n", f"{inv.name}-router", "neigh", "flush", "to", address], check=False,
                   capture_output=True)  # the lab's own router namespace, on this machine
    return Broken((f"node {holder.name}", f"service {key}"),
                  f"deleted {address} ({key}) from {holder.name}'s {dev}: the node that announces it no longer "
                  "holds it (and the router forgot the MAC it had cached)")


def break_mtu(inv: Inventory, t: Transport, files: LabFiles, node: Node, peer: Node) -> Broken:
    t.run(node, ["ip", "link", "set", "cni0", "mtu", "1000"])
    return Broken((f"node {node.name}",), f"dropped {node.name}'s cni0 MTU to 1000: larger packets to its pods no "
                  "longer fit")


FAULTS = {f.name: f for f in (
    Fault("vxlan-fdb", "delete a VXLAN FDB entry: pods on two nodes can't reach each other", "pod-to-pod",
          frozenset({"pod-to-pod", "pod-to-service", "hairpin", "dns", "node-to-pod", "mtu", "nodeport",
                     "loadbalancer", "gateway", "ingress"}), break_fdb),
    Fault("ipmasq", "turn ipMasq on in a node's CNI config: its pods reach others NATed", "pod-to-pod",
          frozenset({"pod-to-pod"}), break_ipmasq),
    Fault("kube-sep", "remove a service endpoint's rule (KUBE-SEP chain) on a node", "pod-to-service",
          frozenset({"pod-to-service", "hairpin", "loadbalancer"}), break_sep),
    Fault("dns-pod", "stop one of the two DNS pods", "dns", frozenset({"dns"}), break_dns),
    Fault("mtu", "drop a node's cni0 MTU: large packets to its pods are lost", "mtu", frozenset({"mtu"}), break_mtu),
    Fault("lb-address", "take a LoadBalancer's address off the node announcing it: the outside host gets no answer",
          "loadbalancer", frozenset({"loadbalancer", "gateway", "ingress"}), break_lb_address),
    Fault("stray-policy", "leave a policy rule no NetworkPolicy explains: a pod on a node gets nothing", "pod-to-pod",
          frozenset({"pod-to-pod", "pod-to-service", "hairpin", "dns", "node-to-pod", "mtu", "nodeport", "hostport",
                     "egress", "loadbalancer", "gateway", "ingress"}), break_stray_policy),
    Fault("gateway-backend-port", "change an HTTPRoute's backend port to one its Service lacks: its requests get 500",
          "gateway", frozenset({"gateway"}), object_fault("gateway-backend-port")),
    Fault("listener-hostname", "change a Gateway listener's hostname so no route's hostnames match: they get 404",
          "gateway", frozenset({"gateway"}), object_fault("listener-hostname")),
    Fault("deny-all", "apply a default-deny NetworkPolicy nobody meant to leave: a namespace's pods get nothing",
          "pod-to-pod", frozenset({"pod-to-pod", "gateway", "ingress"}), policy_fault("deny-all")),
    Fault("selector-typo", "apply a NetworkPolicy with a typo in a selector: the pods it should admit are refused",
          "pod-to-pod", frozenset({"pod-to-pod", "gateway", "ingress"}), policy_fault("selector-typo")),
)}


def inject(name: str, inv: Inventory, files: LabFiles, node_name: str | None = None) -> Broken:
    """Inject fault `name` on `node_name` (default: the first node; its peer is the next one)."""
    if name not in FAULTS:
        raise InputError(f"no fault {name!r}; `lab break --list` lists them: {', '.join(FAULTS)}")
    if len(inv.nodes) < 2:
        raise InputError("faults need a lab of 2 or more nodes")
    node = inv.node(node_name) if node_name else inv.nodes[0]
    peer = next(n for n in inv.nodes if n.name != node.name)
    with files.lock(), Transport(inv.nodes) as transport:
        return FAULTS[name].inject(inv, transport, files, node, peer)


def pick_random(inv: Inventory, files: LabFiles, rng: random.Random | None = None) -> tuple[str, str]:
    """A fault that applies to this lab and a node to inject it on, chosen at random (for study)."""
    rng = rng or random.Random()
    objects = files.read_objects()
    usable = [name for name in FAULTS if applies(name, inv, objects)]
    return rng.choice(usable), rng.choice(inv.nodes).name


def applies(name: str, inv: Inventory, objects: LabObjects) -> bool:
    """Whether fault `name` can be injected into this lab as it is."""
    if name == "vxlan-fdb":
        return inv.cluster.overlay.backend == "vxlan"
    if name == "kube-sep":
        return bool(sep_candidates(objects))
    if name == "lb-address":
        return bool(announced_candidates(objects))
    for breaks in (policy_faults.BREAKS, gateway_faults.BREAKS):
        if name in breaks:
            try:
                breaks[name](objects, inv.nodes[0].name)
            except InputError:
                return False
    return True

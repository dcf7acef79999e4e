"""`lab trace SRC DST[:PORT]`: one real packet, followed through the real kernels it crosses.

A table of the lab's own (`ip lab-trace`, hooked before everything else in prerouting and output) sets
nftrace on the packets from SRC to DST's port on every node; `nft monitor trace` on every node prints each
chain and rule they pass (iptables-nft rules included: kube-proxy's KUBE-* chains, LAB-MASQ, portmap) and the
verdict; `ip route get` says where the source node sends it, and conntrack shows the NAT it got. A pod end is
shown with the node's end of its eth0 (the veth) and the bridge. The trace table is removed at the end, also
after a failure. Parsing and the summary are pure; `trace` does the rest.
"""

from __future__ import annotations

import re
import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from ipaddress import ip_address
from typing import Optional

from orchestrator.core.errors import InputError
from orchestrator.core.model import Inventory
from orchestrator.core.objects import LabObjects, Pod, key_of
from orchestrator.core.transport import Transport
from orchestrator.layers.pods.namespaces import namespace_labels
from orchestrator.layers.policy.plan import pod_endpoint, policies, verdict
from orchestrator.providers.emulated_plan import OUTSIDE_HOST
from orchestrator.verify.checks import OUTSIDE, node_of
from orchestrator.verify.probes import probe_group


TABLE = "lab-trace"
MONITOR_SECONDS = 6
LINE = re.compile(r"^trace id (?P<id>\S+) (?P<family>\w+) (?P<table>\S+) (?P<chain>\S+) (?P<what>.*)$")


@dataclass(frozen=True)
class End:
    """One end of the trace: what the user named, its address, and (for a source) where it sends from."""

    label: str
    ip: str
    source: str = ""  # for probe_group: "pod:ns/name", "node:NAME", or "outside"
    pod: Optional[Pod] = None
    ports: tuple = ()  # a Service's target ports: what the packet's port becomes after DNAT


@dataclass(frozen=True)
class Hop:
    node: str
    packet: str  # the trace id: one per packet (a DNAT or a decapsulation keeps it; another node has its own)
    table: str
    chain: str
    rule: str
    verdict: str

    def line(self) -> str:
        where = f"{self.table} {self.chain}"
        return f"{where:<40} {self.verdict:<18} {self.rule}".rstrip()


def resolve(spec: str, inv: Inventory, objects: LabObjects, namespace: str, as_source: bool,
            from_outside: bool = False) -> End:
    """A pod (NAME in -n NS, or NS/NAME), svc/NAME, node/NAME, outside, or (as destination) an address. From the
    outside host, svc/NAME is the Service's LoadBalancer address (its ClusterIP is for the cluster only)."""
    pods = objects.pods
    if spec == OUTSIDE:
        if inv.emulated is None:
            raise InputError("lab trace: this lab has no outside host (only emulated and VM labs do)")
        return End(OUTSIDE, str(OUTSIDE_HOST), OUTSIDE)
    if spec.startswith("node/"):
        node = inv.node(spec[len("node/"):])
        return End(spec, str(node.address), f"node:{node.name}")
    if spec.startswith(("svc/", "service/")):
        name = spec.split("/", 1)[1]
        ns, _, name = name.rpartition("/") if "/" in name else (namespace, "", name)
        service = objects.services.get(key_of(ns, name))
        if service is None or as_source:
            raise InputError(f'lab trace: Error from server (NotFound): services "{name}" not found in namespace '
                             f"{ns!r}" if service is None else "lab trace: a Service is no source; name a pod")
        targets = tuple(sorted({int(e.port) for eps in objects.endpoints.get(key_of(ns, name), {}).values()
                                for e in eps}))
        if from_outside:
            if not service.load_balancer_ip:
                raise InputError(f"lab trace: svc/{name} has no address the outside host can reach (type "
                                 f"{service.type}{', <pending>' if service.type == 'LoadBalancer' else ''}); trace "
                                 "outside node/NODE:NODEPORT, or make it type LoadBalancer")
            return End(spec, service.load_balancer_ip, ports=targets)
        return End(spec, service.cluster_ip, ports=targets)
    ns, _, name = spec.rpartition("/") if "/" in spec else (namespace, "", spec)
    pod = pods.get(key_of(ns, name))
    if pod is not None:
        if pod.ip is None:
            raise InputError(f"lab trace: pod {pod.key} has no address yet (not running); see lab get pods -A")
        return End(pod.key, pod.ip, f"pod:{pod.key}", pod)
    if not as_source:
        try:
            return End(spec, str(ip_address(spec)))
        except ValueError:
            pass
    raise InputError(f'lab trace: Error from server (NotFound): pods "{name}" not found in namespace {ns!r}; '
                     "name a pod, svc/NAME, node/NAME or outside")


def trace_table(src: str, dst_ports: tuple, protocol: str) -> str:
    """`nft -f` input: the lab-trace table, marking the new packets from `src` to those ports."""
    ports = ", ".join(str(p) for p in dst_ports)
    first = " tcp flags syn" if protocol == "tcp" else ""
    match = f"ip saddr {src} meta l4proto {protocol} th dport {{ {ports} }}{first} meta nftrace set 1"
    return (f"table ip {TABLE} {{}}\ndelete table ip {TABLE}\ntable ip {TABLE} {{\n"
            f"  chain pre {{ type filter hook prerouting priority -350; {match}; }}\n"
            f"  chain out {{ type filter hook output priority -350; {match}; }}\n}}\n")


def parse_trace(node: str, text: str) -> list[Hop]:
    """The hops of `nft monitor trace` output (the lab-trace table's own lines left out)."""
    hops = []
    for line in text.splitlines():
        m = LINE.match(line.strip())
        if not m or m["table"] == TABLE:
            continue
        what = m["what"]
        if what.startswith("packet: "):
            hops.append(Hop(node, m["id"], m["table"], m["chain"], what[len("packet: "):], "packet"))
        elif what.startswith("rule "):
            rule, _, verdict_text = what[len("rule "):].rpartition(" (verdict ")
            hops.append(Hop(node, m["id"], m["table"], m["chain"], rule, verdict_text.rstrip(")")))
        elif what.startswith(("verdict ", "policy ")):
            hops.append(Hop(node, m["id"], m["table"], m["chain"], "", what))
    return hops


def decision(hops: list[Hop]) -> str:
    """Where the packet's fate was sealed: the first drop or reject, else how far it got."""
    for hop in hops:
        if any(word in hop.verdict for word in ("drop", "reject")) or "reject" in hop.rule:
            comment = re.search(r'comment "([^"]*)"', hop.rule)
            return (f"DROPPED on {hop.node} by {hop.table} {hop.chain}"
                    + (f" ({comment.group(1)})" if comment else f": {hop.rule}"))
    nodes = list(dict.fromkeys(h.node for h in hops))
    return f"passed every chain on {', '.join(nodes)}" if hops else "no packet seen"


def summary(hops: list[Hop]) -> list[str]:
    """Per node, per packet: the chains it went through, the rule that decided in each, and the verdicts."""
    lines = []
    for node in dict.fromkeys(h.node for h in hops):
        lines.append(f"{node}:")
        for packet in dict.fromkeys(h.packet for h in hops if h.node == node):
            mine = [h for h in hops if h.node == node and h.packet == packet]
            head = next((h.rule for h in mine if h.verdict == "packet"), "")
            fields = dict(re.findall(r"(iif|oif|saddr|daddr|sport|dport) \"?([^\" ]+)\"?", head))
            lines.append(f"  packet {packet}: in {fields.get('iif', '?')}, {fields.get('saddr', '?')} -> "
                         f"{fields.get('daddr', '?')}:{fields.get('dport', '?')}")
            lines += [f"    {h.line()}" for h in mine if h.verdict != "packet"]
    return lines


def wiring(pod: Pod, link_line: str, leaving: bool) -> str:
    """How a pod hangs on its node, from `ip -o link` of the host end of its eth0: veth and bridge, in the
    packet's direction."""
    m = re.match(r"\d+: (?P<veth>[^@:]+)[@:].*?(?: master (?P<bridge>\S+))?(?: state |$)", link_line.strip())
    if not m:
        return f"{pod.key}: eth0 ({pod.ip}) on {pod.node}"
    veth, bridge = m["veth"], m["bridge"] or "no bridge"
    if leaving:
        return f"from {pod.key} eth0 ({pod.ip}) -> {veth} on {pod.node} -> {bridge}"
    return f"to {bridge} on {pod.node} -> {veth} -> {pod.key} eth0 ({pod.ip})"


def host_end(transport: Transport, pod: Pod) -> str:
    """`ip -o link` of the node's end of the pod's veth pair (found by eth0's peer index), or ''."""
    peer = transport.run(node_of(pod), ["ip", "netns", "exec", pod.netns, "cat", "/sys/class/net/eth0/iflink"],
                         check=False)
    index = peer.stdout.strip()
    if not peer.ok or not index:
        return ""
    links = transport.run(node_of(pod), ["ip", "-o", "link", "show"], check=False).stdout.splitlines()
    return "".join(line + "\n" for line in links if line.startswith(index + ": "))


def conntrack_lines(inv: Inventory, transport: Transport, src: End, protocol: str) -> list[str]:
    """The connection tracking entries of the source's address on the node it sends from: the NAT it got."""
    node = src.pod.node if src.pod else src.source.partition(":")[2] if src.source.startswith("node:") else None
    if node is None:
        return []
    found = transport.run(node, ["conntrack", "-L", "-s", src.ip, "-p", protocol], check=False).stdout.splitlines()
    return [f"conntrack on {node}:"] + [f"  {line}" for line in found[-4:]] if found else []


def wait_for_monitors(transport: Transport, nodes: list, limit: str) -> None:
    """Until this trace's `timeout LIMIT nft monitor trace` runs on every node (its SSH session can take seconds
    on a busy VM), then the few milliseconds nft takes to start and subscribe."""
    deadline = time.monotonic() + MONITOR_SECONDS / 2
    waiting = list(nodes)
    while waiting and time.monotonic() < deadline:
        found = transport.run_all(lambda node: transport.run(node, ["pgrep", "-f", f"^timeout {limit} nft monitor"],
                                                             check=False), waiting)
        waiting = [n for n in waiting if isinstance(found[n.name], BaseException) or not found[n.name].ok]
        if waiting:
            time.sleep(0.1)
    time.sleep(0.2)


def trace(inv: Inventory, transport: Transport, objects: LabObjects, src_spec: str, dst_spec: str, port: int,
          protocol: str, namespace: str) -> list[str]:
    """Send one packet from SRC to DST:PORT with tracing on every node; the report, line by line."""
    src = resolve(src_spec, inv, objects, namespace, as_source=True)
    dst = resolve(dst_spec, inv, objects, namespace, as_source=False, from_outside=src.label == OUTSIDE)
    ports = tuple(sorted({port, *dst.ports}))
    report = [f"lab trace {src.label} ({src.ip}) -> {dst.label} ({dst.ip}):{port}/{protocol.upper()}"]
    if dst.ip in objects.announced:
        report.append(f"LoadBalancer {dst.ip}: announced by {objects.announced[dst.ip]} (it answers ARP for it; "
                      f"lab exec router -- ip neigh show {dst.ip})")
    if src.pod and dst.pod and objects.policies:
        said = verdict(pod_endpoint(src.pod), pod_endpoint(dst.pod), port, protocol.upper(), policies(objects),
                       namespace_labels(objects))
        report.append(f"NetworkPolicy says: {'allowed' if said.allowed else 'blocked'}: {said.reason}")
    for end, leaving in ((src, True), (dst, False)):
        if end.pod:
            report.append(wiring(end.pod, host_end(transport, end.pod), leaving))
    if src.pod:
        route = transport.run(node_of(src.pod), ["ip", "route", "get", dst.ip, "from", src.ip, "iif", "cni0"],
                              check=False)
        report.append(f"route on {src.pod.node}: {(route.stdout or route.stderr).strip().splitlines()[0]}")
    text = trace_table(src.ip, ports, protocol)
    nodes = list(inv.nodes)
    try:
        transport.run_all(lambda node: transport.run(node, ["nft", "-f", "-"], stdin=text), nodes).raise_on_failure()
        hops, reply = [], None
        with ThreadPoolExecutor(max_workers=len(nodes) + 1) as pool:
            # the time limit, unique to this trace, tells its monitors from another lab's on a shared kernel
            limit = f"{MONITOR_SECONDS}.{secrets.randbelow(10 ** 6):06d}"
            monitors = {n.name: pool.submit(transport.run, n, ["timeout", limit, "nft", "monitor", "trace"],
                                            check=False) for n in nodes}
            wait_for_monitors(transport, nodes, limit)
            target = {"proto": protocol, "host": dst.ip, "port": port, "path": "/hostname"}
            reply = probe_group(inv, objects, transport, [src.source], {src.source: [target]})[src.source][0]
            for name, future in monitors.items():
                hops += parse_trace(name, future.result().stdout)
    finally:
        transport.run_all(lambda node: transport.run(node, ["nft", "delete", "table", "ip", TABLE], check=False),
                          nodes)
    report += summary(hops)
    report += conntrack_lines(inv, transport, src, protocol)
    answer = f"answered: {reply.get('reply', '')[:60]}" if reply and reply.get("ok") else \
        f"no answer ({reply.get('error') if reply else 'not sent'})"
    report.append(f"result: {answer}; {decision(hops)}")
    return report

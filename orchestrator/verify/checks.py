"""What the reachability suite checks, as data (pure): the plan of checks, and the verdict on probes.

Families (from cilium's connectivity test and Kubernetes' sig-network e2e tests): pod to pod (same
node and across nodes, HTTP and UDP, source IP preserved), pod to service (every endpoint reached),
DNS names, hairpin, NodePort from nodes, hostPort from the outside host, node to pod, pod to
outside (SNAT to the node), services without endpoints refused, large packets (MTU), and the
user's own expectations (--expect). Each failing check names the layer to look at and the commands
that show it: on every node its traffic crosses, that node's part (the plan is made from what the lab
should be, not from a diagnosis, so it names both ends of a path and the broken one is among them).
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from ipaddress import IPv4Address, IPv4Network
from typing import Optional

from orchestrator.agent.contract import POLICY_TABLE, dns_hosts_path
from orchestrator.core.errors import InputError
from orchestrator.core.model import Inventory
from orchestrator.core.manifests import ServicePort
from orchestrator.core.objects import LabObjects, Pod, Service, key_of, split_key
from orchestrator.core.script import either, quote, redirect
from orchestrator.layers.nodes.facts import conflist_path
from orchestrator.layers.overlay.plan import vxlan_device
from orchestrator.layers.pods.namespaces import namespace_labels
from orchestrator.layers.policy.plan import Judge
from orchestrator.layers.services.iptables import svc_chain
from orchestrator.layers.services.loadbalancer import adverts_of, not_announced_reason, pools_of
from orchestrator.layers.services.nftables import TABLE as NFT_TABLE
from orchestrator.layers.services.plan import unserved_target_port
from orchestrator.providers.emulated_plan import OUTSIDE_HOST


OUTSIDE = "outside"
COVERAGE_AFTER = 100  # server pods; past this `lab verify` probes the coverage pairs unless --all-pairs


@dataclass(frozen=True)
class Check:
    id: str
    family: str
    source: str  # "pod:<ns>/<name>", "node:<name>" or "outside"
    target: dict  # what the node agent's probe sends (proto, host, port, path; or ping)
    want: tuple  # ("reply", text) | ("covers", names) | ("contains", name) | ("ok",) | ("closed",) | ("refused",)
    label: str
    layer: str = ""
    show: str = ""  # the commands that show it: the looks (plan_checks adds them), then the lab's own
    looks: tuple = ()  # (node, command) pairs: what shows this check's layers on each node
    on_paper: bool = False  # the objects alone say why it fails (a wrong targetPort, a policy): no look at the path
    count: int = 1
    row: str = ""  # for the pod x pod matrix
    col: str = ""
    reaches: tuple = ()  # keys of the pods the check's traffic must get into (for NetworkPolicy)


@dataclass
class Outcome:
    check: Check
    ok: bool
    reason: str = ""
    replies: list = field(default_factory=list)
    retried: bool = False  # probed a second time after a timeout
    unreachable: str = ""  # not probed: the node it needs does not answer over SSH (counted as failed)


def pod_label(pod: Pod) -> str:
    """A short name for tables: a Deployment's pod loses its template hash (nginx-5ppfl)."""
    name = pod.name
    owner = (pod.owner or "").rsplit("/", 1)[-1]
    if owner and name.startswith(owner + "-") and name.count("-") >= 2:
        name = f"{owner}-{name.rsplit('-', 1)[1]}"
    return name if pod.namespace == "default" else f"{pod.namespace}/{name}"


def node_of(pod: Pod) -> str:
    """The node of a pod that has an address: the node's CNI gave it one, so the pod was scheduled there."""
    assert pod.node is not None, f"pod {pod.key} has an address but no node"
    return pod.node


def nodes_needed(check: Check, inv: Inventory, objects: LabObjects) -> set[str]:
    """The nodes a check's traffic starts on or must get into: its source's node, and the nodes of the pods
    (or the node) its target stands for."""
    kind, _, name = check.source.partition(":")
    needed = {name} if kind == "node" else set()
    if kind == "pod" and name in objects.pods:
        needed.add(node_of(objects.pods[name]))
    by_ip = {p.ip: p.node for p in objects.pods.values() if p.ip and p.node}
    by_ip.update((str(n.address), n.name) for n in inv.nodes)
    host = by_ip.get(str(check.target.get("host", "")))
    needed |= {host} if host else set()
    return needed | {p.node for key in check.reaches if (p := objects.pods.get(key)) is not None and p.node}


def server_pods(objects: LabObjects) -> list[Pod]:
    """The pods the matrix probes between, by node."""
    return sorted((p for p in objects.pods.values() if p.ip and p.role == "server"),
                  key=lambda p: (p.node, p.namespace, p.name))


def policy_class(pod: Pod, blocks: list[tuple[IPv4Network, tuple[IPv4Network, ...]]]) -> tuple:
    """What NetworkPolicy sees of a pod: pods alike in it are interchangeable in every policy's verdict."""
    address = IPv4Address(pod.ip or "0.0.0.0")
    return (pod.namespace, tuple(sorted(pod.labels.items())), tuple((p.name, p.container_port, p.protocol)
                                                                   for p in pod.ports),
            tuple(address in cidr and not any(address in e for e in excepts) for cidr, excepts in blocks))


def ip_blocks(objects: LabObjects) -> list[tuple[IPv4Network, tuple[IPv4Network, ...]]]:
    """Every ipBlock of every policy (checked when applied), as (cidr, excepts)."""
    found = []
    for policy in objects.policies.values():
        for direction, side in (("ingress", "from"), ("egress", "to")):
            for rule in policy.spec.get(direction) or []:
                for peer in rule.get(side) or []:
                    block = peer.get("ipBlock")
                    if block:
                        found.append((IPv4Network(block["cidr"], strict=False),
                                      tuple(IPv4Network(e, strict=False) for e in block.get("except") or [])))
    return found


def coverage_pairs(pods: list[Pod], objects: LabObjects) -> set[tuple[str, str]]:
    """The pod pairs of coverage mode: every ordered pair of nodes (each node with itself too), every pod at
    least once as source and once as destination, and one pair for each pair of policy classes (so every cell
    NetworkPolicy can tell apart is probed)."""
    by_node: dict[str, list[Pod]] = {}
    for pod in pods:
        by_node.setdefault(node_of(pod), []).append(pod)
    sent = {node: 0 for node in by_node}
    received = {node: 0 for node in by_node}
    chosen: set[tuple[str, str]] = set()
    for a in sorted(by_node):
        for b in sorted(by_node):
            src = by_node[a][sent[a] % len(by_node[a])]
            dst = by_node[b][received[b] % len(by_node[b])]
            sent[a], received[b] = sent[a] + 1, received[b] + 1
            chosen.add((src.key, dst.key))
    sources = {s for s, _ in chosen}
    targets = {d for _, d in chosen}
    for i, pod in enumerate(pods):
        if pod.key not in sources:
            chosen.add((pod.key, pods[(i + 1) % len(pods)].key))
        if pod.key not in targets:
            chosen.add((pods[(i + 1) % len(pods)].key, pod.key))
    blocks = ip_blocks(objects)
    classes: dict[tuple, Pod] = {}
    for pod in pods:
        classes.setdefault(policy_class(pod, blocks), pod)
    for src in classes.values():
        for dst in classes.values():
            chosen.add((src.key, dst.key))
    return chosen


def path_nodes(check: Check, inv: Inventory, objects: LabObjects) -> list[str]:
    """The nodes a check's traffic crosses, its source's node first, then in the inventory's order: those it
    starts on or must get into, and the node announcing the LoadBalancer or Gateway address it is sent to."""
    crossed = nodes_needed(check, inv, objects)
    holder = objects.announced.get(str(check.target.get("host", "")))
    crossed |= {holder} if holder else set()
    kind, _, name = check.source.partition(":")
    pod = objects.pods.get(name) if kind == "pod" else None
    first = name if kind == "node" else pod.node if pod is not None else None
    order = {n.name: i for i, n in enumerate(inv.nodes)}
    return sorted(crossed, key=lambda node: (node != first, order.get(node, len(order)), node))


def overlay_looks(inv: Inventory) -> tuple[str, ...]:
    """What shows a node's way to the other nodes' pods: its routes and, with VXLAN, flannel's neighbour and FDB
    entries (one per peer)."""
    if inv.cluster.overlay.backend != "vxlan":
        return ("ip route",)
    vx = vxlan_device(inv.cluster.overlay.vni)
    return ("ip route", f"bridge fdb show dev {vx}", f"ip neigh show dev {vx}")


# a node's NetworkPolicy rules, as lesson 13 looks at them: the table exists only while some rule is loaded
POLICY_LOOK = either(redirect(f"nft list table ip {POLICY_TABLE}", stderr="/dev/null"), f"echo no {POLICY_TABLE} table")


def service_look(inv: Inventory, service: Service, port: ServicePort) -> str:
    """What shows a service port's rules on a node: its KUBE-SVC chain (a jump to each endpoint's KUBE-SEP
    chain), or the lab-proxy table (its `backends` map) with the nftables proxy."""
    if inv.cluster.proxy_mode == "nftables":
        return f"nft list table ip {NFT_TABLE}"
    return f"iptables -t nat -S {svc_chain(service, port)}"


def with_path_looks(check: Check, inv: Inventory, objects: LabObjects) -> Check:
    """The check with its hint made whole: its own looks, then on every node its traffic crosses the overlay
    (where it crosses nodes and should get through) and the NetworkPolicy rules; `show` then holds them all."""
    looks = list(check.looks)
    if not check.on_paper and check.family not in ("no-endpoints", "expect"):
        nodes = path_nodes(check, inv, objects)
        if len(nodes) > 1 and check.want[0] not in ("closed", "refused"):
            looks += [(node, command) for node in nodes for command in overlay_looks(inv)]
        looks += [(node, POLICY_LOOK) for node in nodes]
    return replace(check, looks=tuple(looks), show=hint_text(looks, check.show))


SHELL_SYNTAX = set("|&;<>$*?`'\"")  # a command with any of these runs through `sh -c` on the node


def hint_text(looks: Iterable[tuple[str, str]], lab_commands: str = "") -> str:
    """The commands of a hint as a user types them: one `lab exec NODE -- ...` per node, in the order the nodes
    first come (its commands in one `sh -c` when there are several, or shell syntax), then the lab's own."""
    by_node: dict[str, list[str]] = {}
    for node, command in looks:
        commands = by_node.setdefault(node, [])
        if command not in commands:
            commands.append(command)
    shown = []
    for node, commands in by_node.items():
        line = "; ".join(commands)
        plain = len(commands) == 1 and not SHELL_SYNTAX & set(line)
        shown.append(f"lab exec {node} -- {line if plain else 'sh -c ' + quote(line)}")
    return "; ".join(shown + ([lab_commands] if lab_commands else []))


def hint_commands(show: str) -> list[list[str]]:
    """A hint's commands as a shell reads them: split at `;` outside quotes, each into its words (the inverse
    of hint_text)."""
    lexer = shlex.shlex(show, posix=True, punctuation_chars=";")
    lexer.whitespace_split = True
    found: list[list[str]] = [[]]
    for word in lexer:
        if word == ";":
            found.append([])
        else:
            found[-1].append(word)
    return [words for words in found if words]


def in_coverage_mode(server_pod_count: int, all_pairs: bool) -> bool:
    """Whether the pod matrix is probed in coverage mode: past COVERAGE_AFTER server pods, unless --all-pairs."""
    return not all_pairs and server_pod_count > COVERAGE_AFTER


def plan_checks(inv: Inventory, objects: LabObjects, expectations: Optional[list] = None,
                intended: Optional[LabObjects] = None, more: Iterable[Check] = (),
                all_pairs: bool = False) -> list[Check]:
    """Every check for the lab's current pods and services, and `more` (another module's, such as the
    Gateways'). `intended`: the objects with the policies the lab meant to have, where `lab break` applied wrong
    ones (policy_faults.intended_objects); pod pairs are judged by those. `all_pairs`: every pod pair, also in
    coverage mode."""
    lab = inv.name
    pods = server_pods(objects)
    pairs = coverage_pairs(pods, intended if intended is not None else objects) \
        if in_coverage_mode(len(pods), all_pairs) else None
    checks: list[Check] = []
    judge = Judge(objects, namespace_labels(objects))
    meant_judge = Judge(intended, namespace_labels(intended)) if intended is not None else None
    by_name = {n.name: n for n in inv.nodes}

    def tunnelled(a: Optional[str], b: Optional[str]) -> bool:
        """Whether pods of nodes `a` and `b` talk over VXLAN (not with directRouting inside one subnet)."""
        overlay = inv.cluster.overlay
        return overlay.backend == "vxlan" and not (
            overlay.direct_routing and a in by_name and b in by_name and inv.same_segment(by_name[a], by_name[b]))
    for index, src in enumerate(pods):
        # each source starts with a different target, so that not every source probes the same pod at once
        for dst in pods[index:] + pods[:index]:
            if pairs is not None and (src.key, dst.key) not in pairs:
                continue
            same = src.node == dst.node
            layer = "CNI bridge cni0 on the node" if same else \
                f"overlay between {src.node} and {dst.node}: node routes" + \
                (", VXLAN neighbour and FDB entries" if tunnelled(src.node, dst.node) else " (direct, one subnet)"
                 if inv.cluster.overlay.backend == "vxlan" else "") + f"; {src.node}'s CNI ipMasq (no NAT)"
            looks = ((node_of(src), "bridge link show"),) if same else \
                ((node_of(src), f"grep ipMasq {conflist_path(lab)}"),)
            dst_port = dst.tcp[0] if dst.tcp else 80
            for proto in ("tcp", "udp"):
                target = {"proto": proto, "host": dst.ip, "port": dst_port}
                if proto == "tcp":
                    target["path"] = "/clientip"
                check = Check(
                    id=f"pod-to-pod/{pod_label(src)}->{pod_label(dst)}/{proto}", family="pod-to-pod",
                    source=f"pod:{src.key}", target=target, want=("reply", src.ip),
                    label=f"{pod_label(src)} -> {pod_label(dst)} {proto.upper()}", layer=layer,
                    show=f"lab trace {src.key} {dst.key}", looks=looks, row=pod_label(src), col=pod_label(dst))
                verdict = judge.pods(src, dst, dst_port, proto.upper())
                meant = (meant_judge.pods(src, dst, dst_port, proto.upper()) if meant_judge is not None
                         else verdict)
                checks.append(policy_expectation(check, verdict, src, dst) if allows(meant) == allows(verdict)
                              else against_intent(check, verdict, meant, src, dst))
    by_node: dict[str, Pod] = {}
    for pod in pods:
        by_node.setdefault(node_of(pod), pod)
    services = objects.services
    endpoints = objects.endpoints
    dns_pods = tuple(k for k, p in objects.pods.items() if p.role == "dns")
    dns_nodes = sorted({p.node for p in objects.pods.values() if p.role == "dns" and p.node})
    roles = {k: p.role for k, p in objects.pods.items()}
    nftables = inv.cluster.proxy_mode == "nftables"
    for key in sorted(services):
        service = services[key]
        for port in service.ports:
            eps = endpoints.get(key, {}).get(port.name or "", [])
            proto = port.protocol.lower()
            name = f"{key}:{port.port}/{port.protocol}"
            target = {"proto": proto, "host": service.cluster_ip, "port": port.port}
            if proto == "tcp":
                target["path"] = "/hostname"
            if not eps:
                reject = f"nft list table ip {NFT_TABLE}" if nftables else "iptables -S KUBE-SERVICES"
                for node, src in sorted(by_node.items()):
                    checks.append(Check(
                        id=f"no-endpoints/{pod_label(src)}->{name}", family="no-endpoints",
                        source=f"pod:{src.key}", target=dict(target, path="/"),
                        want=("refused",), label=f"{pod_label(src)} -> {name} (no endpoints): refused at once",
                        layer="the REJECT rule for services without endpoints", looks=((node, reject),)))
                continue
            servers = [e for e in eps if roles.get(key_of(service.namespace, e.pod), "server") == "server"]
            if len(servers) != len(eps) or service.session_affinity == "ClientIP":
                continue  # DNS pods answer DNS, not the probe; affinity pins a client on purpose
            names = tuple(sorted(e.pod for e in eps))
            members = tuple(key_of(service.namespace, e.pod) for e in eps)
            rules = service_look(inv, service, port)
            if service.load_balancer_ip and proto == "tcp" and inv.emulated is not None:
                checks.append(load_balancer_check(inv, objects, service, port, eps, name))
            unserved = unserved_target_port(service, port, pods)
            for node, src in sorted(by_node.items()):
                checks.append(unserved_or(Check(
                    id=f"pod-to-service/{pod_label(src)}->{name}", family="pod-to-service",
                    source=f"pod:{src.key}", target=target, want=("covers", names),
                    count=10 * len(eps), label=f"{pod_label(src)} -> {name}: every endpoint answers", reaches=members,
                    layer=f"service rules for {key} on {node}", looks=((node, rules),)), unserved, service))
            member = next((p for p in pods if p.name == eps[0].pod and p.namespace == service.namespace),
                          None)
            if member and proto == "tcp":
                checks.append(unserved_or(Check(
                    id=f"hairpin/{pod_label(member)}->{name}", family="hairpin",
                    source=f"pod:{member.key}", target=target,
                    want=("contains", member.name), count=12 * len(eps), reaches=members,
                    label=f"{pod_label(member)} reaches itself through {name}",
                    layer="hairpin: cni0 hairpinMode and the hairpin masquerade mark",
                    looks=((node_of(member), "bridge -d link show"), (node_of(member), rules))), unserved, service))
                dns_name = service.name if member.namespace == service.namespace else \
                    f"{service.name}.{service.namespace}"
                records = tuple((node, f"cat {dns_hosts_path(lab)}") for node in dns_nodes)
                for host in (dns_name, f"{service.name}.{service.namespace}.svc.{inv.cluster.dns_domain}"):
                    checks.append(unserved_or(Check(
                        id=f"dns/{pod_label(member)}->{host}", family="dns",
                        source=f"pod:{member.key}", target=dict(target, host=host),
                        want=("ok",), count=12, label=f"{pod_label(member)} -> http://{host}:{port.port}",
                        reaches=members + dns_pods,
                        layer="cluster DNS: the DNS pods, kube-dns endpoints and its records",
                        looks=records, show="lab get pods -n kube-system -o wide; lab get ep kube-dns -n kube-system"),
                        unserved, service))
            if port.node_port:
                entry = inv.nodes[0].name
                nodeports = f"nft list table ip {NFT_TABLE}" if nftables else "iptables -t nat -S KUBE-NODEPORTS"
                for from_node in inv.nodes:
                    checks.append(Check(
                        id=f"nodeport/{from_node.name}->{name}", family="nodeport", source=f"node:{from_node.name}",
                        target=dict(target, host=str(inv.nodes[0].address), port=port.node_port),
                        want=("ok",), label=f"{from_node.name} -> {entry}:{port.node_port} ({name})",
                        reaches=members, layer=f"NodePort rules (KUBE-NODEPORTS) on {entry}",
                        looks=((entry, nodeports), (entry, rules))))
    for from_node in inv.nodes:
        other = next((p for p in pods if p.node != from_node.name), None)
        if other:
            checks.append(Check(
                id=f"node-to-pod/{from_node.name}->{pod_label(other)}", family="node-to-pod",
                source=f"node:{from_node.name}",
                target={"proto": "tcp", "host": other.ip, "port": other.tcp[0], "path": "/hostname"},
                want=("reply", other.name), label=f"{from_node.name} -> {pod_label(other)} ({other.node})",
                reaches=(other.key,),
                layer=f"route from {from_node.name} to {other.node}'s pod subnet"))
    for node, src in sorted(by_node.items()):
        far = next((p for p in pods if p.node != node), None)
        if far:
            size = inv.cluster.overlay.pod_mtu(1500) - 28
            checks.append(Check(
                id=f"mtu/{pod_label(src)}->{pod_label(far)}", family="mtu", source=f"pod:{src.key}",
                target={"proto": "ping", "host": far.ip, "size": size},
                want=("ok",), label=f"{pod_label(src)} -> {pod_label(far)}: {size + 28}-byte packets, don't fragment",
                reaches=(far.key,),
                layer=f"MTU on {node} and {far.node}: pod eth0, cni0 and the overlay device must agree",
                looks=((node, "ip link show cni0"), (node_of(far), "ip link show cni0"))))
    if inv.emulated is not None:
        outside = str(OUTSIDE_HOST)
        for node, src in sorted(by_node.items()):
            checks.append(Check(
                id=f"egress/{pod_label(src)}->outside", family="egress", source=f"pod:{src.key}",
                target={"proto": "tcp", "host": outside, "port": 80, "path": "/clientip"},
                want=("reply", str(inv.node(node).address)),
                label=f"{pod_label(src)} -> outside {outside}: seen as {node}'s address",
                layer="masquerade of traffic leaving the cluster (LAB-MASQ)",
                looks=((node, "iptables -t nat -S LAB-MASQ"), (node, f"cat {conflist_path(lab)}"))))
        for pod in pods:
            for mapping in pod.port_mappings:
                if mapping.protocol == "tcp":
                    checks.append(Check(
                        id=f"hostport/outside->{pod_label(pod)}:{mapping.host_port}", family="hostport",
                        source=OUTSIDE, target={"proto": "tcp", "host": str(inv.node(node_of(pod)).address),
                                                "port": mapping.host_port, "path": "/hostname"},
                        reaches=(pod.key,),
                        want=("reply", pod.name), label=f"outside -> {pod.node}:{mapping.host_port} -> "
                                                           f"{pod_label(pod)}",
                        layer="hostPort mapping (portmap's CNI-HOSTPORT-DNAT)",
                        looks=((node_of(pod), "iptables -t nat -S CNI-HOSTPORT-DNAT"),)))
    checks += expectation_checks(inv, objects, expectations or [])
    checks += more
    return [with_path_looks(c, inv, objects) for c in checks if not judged_elsewhere(c, objects, judge)]


def unserved_or(check: Check, unserved: Optional[str], service: Service) -> Check:
    """The check, or, when its Service's targetPort is one its pods do not listen on (`unserved`), the check with
    that as its layer and the Service to look at."""
    if not unserved:
        return check
    return replace(check, layer=unserved, looks=(), on_paper=True,
                   show=f"lab describe svc {service.name} -n {service.namespace}; "
                        f"lab get ep {service.name} -n {service.namespace}")


def load_balancer_check(inv: Inventory, objects: LabObjects, service: Service, port: ServicePort, eps: list,
                        name: str) -> Check:
    """From the outside host to a LoadBalancer address: through the router, to the node answering ARP for it,
    then the service rules. Cluster: every endpoint answers. Local: only the announcing node's endpoints, and
    they see the outside host's own address."""
    address = str(service.load_balancer_ip)
    node = objects.announced.get(address)
    target = {"proto": "tcp", "host": address, "port": port.port}
    show = f"lab describe svc {service.name} -n {service.namespace}; lab exec router -- ip neigh show {address}"
    looks = ((node, "ip -br addr"), (node, service_look(inv, service, port))) if node else ()
    if node is None:
        reason = not_announced_reason(service, pools_of(objects.extra), adverts_of(objects.extra), set())
        return Check(id=f"loadbalancer/outside->{name}", family="loadbalancer", source=OUTSIDE,
                     target=dict(target, path="/hostname"), want=("ok",), label=f"outside -> {address}:{port.port} "
                     f"({name})", layer=f"LoadBalancer {address}: {reason}", show=show, on_paper=True)
    if service.local_traffic:
        mine = [e for e in eps if e.node == node]
        return Check(id=f"loadbalancer/outside->{name}", family="loadbalancer", source=OUTSIDE,
                     target=dict(target, path="/clientip"), want=("reply", str(OUTSIDE_HOST)), count=4,
                     label=f"outside -> {address}:{port.port} ({name}, Local): {node}'s pods see the outside "
                           "host's address",
                     reaches=tuple(key_of(service.namespace, e.pod) for e in mine),
                     layer=f"LoadBalancer {address} announced by {node} (ARP), externalTrafficPolicy Local: "
                           f"{node}'s endpoints, unmasqueraded", show=show, looks=looks)
    return Check(id=f"loadbalancer/outside->{name}", family="loadbalancer", source=OUTSIDE,
                 target=dict(target, path="/hostname"), want=("covers", tuple(sorted(e.pod for e in eps))),
                 count=10 * len(eps), label=f"outside -> {address}:{port.port} ({name}): every endpoint answers",
                 reaches=tuple(key_of(service.namespace, e.pod) for e in eps),
                 layer=f"LoadBalancer {address} announced by {node} (ARP), then the service rules on {node}",
                 show=show, looks=looks)


def allows(verdict) -> bool:
    return verdict is None or verdict.allowed


def policy_looks(verdict, src: Pod, dst: Pod) -> tuple[str, tuple]:
    """The policies that decided (lab commands) and the policy rules of the node of the side that did (a look)."""
    side = dst if verdict.direction != "egress" else src
    described = "; ".join(f"lab describe netpol {name} -n {namespace}"
                          for namespace, name in (split_key(key) for key in verdict.policies))
    return described, ((node_of(side), POLICY_LOOK),)


def policy_expectation(check: Check, verdict, src: Pod, dst: Pod) -> Check:
    """A pod-to-pod check as the NetworkPolicies make it: refused (and why) or allowed (and by which)."""
    if verdict is None:
        return check
    described, looks = policy_looks(verdict, src, dst)
    if verdict.allowed:
        return replace(check, layer=f"{check.layer}; NetworkPolicy: {verdict.reason}",
                       show="; ".join(filter(None, [described, check.show])), looks=check.looks + looks)
    return replace(check, want=("closed",), label=f"{check.label} blocked", layer=f"NetworkPolicy: {verdict.reason}",
                   show=described, looks=looks)


def against_intent(check: Check, verdict, meant, src: Pod, dst: Pod) -> Check:
    """A pod-to-pod check where the policies the lab has and those it meant (before `lab break` applied a wrong
    one) disagree: it wants what was meant, and names the policy that decides now."""
    trace = f"lab trace {src.key} {dst.key}"
    if allows(meant):
        described, looks = policy_looks(verdict, src, dst)
        return replace(check, layer=f"NetworkPolicy: {verdict.reason}; it was meant to be allowed (before "
                                    "`lab break`)", show=f"{described}; {trace}", looks=looks, on_paper=True)
    now = verdict.reason if verdict is not None else "no policy isolates either end"
    described, looks = policy_looks(meant, src, dst)
    return replace(check, want=("closed",), label=f"{check.label} blocked",
                   layer=f"NetworkPolicy: {now}; it was meant to be blocked (before `lab break`): {meant.reason}",
                   show=f"{described}; {trace}", looks=looks, on_paper=True)


def judged_elsewhere(check: Check, objects: LabObjects, judge) -> bool:
    """Checks besides the pod matrix whose source a NetworkPolicy isolates for egress, or whose traffic must get
    into a pod isolated for ingress: the matrix judges those pods (a service, DNS, the outside or a node
    would each need the policy's view as well)."""
    if not judge or check.family in ("pod-to-pod", "expect"):
        return False
    pods = objects.pods
    source = pods.get(check.source[len("pod:"):]) if check.source.startswith("pod:") else None
    return bool(source and judge.isolated(source, "Egress")) or any(
        judge.isolated(pods[key], "Ingress") for key in check.reaches if key in pods)


def evaluate(check: Check, replies: list) -> Outcome:
    """The verdict on a check from its probe replies."""
    kind = check.want[0]
    served = check.target.get("certificate")  # the SHA-256 of the certificate the TLS server must present
    strange = [r["certificate"] for r in replies if served and r.get("certificate") not in (None, served)]
    if strange:
        return Outcome(check, False, f"served another certificate (sha256 {strange[0][:16]}...)", replies)
    if kind == "status":  # ("status", code[, the reply it comes with: a redirect's Location])
        wanted = check.want[1:]
        wrong = [f"{r.get('status')} {r.get('reply', '')}".strip() if "status" in r else r.get("error")
                 for r in replies if (r.get("status"), r.get("reply"))[:len(wanted)] != wanted]
        return Outcome(check, not wrong, f"answered {wrong[0]}" if wrong else "", replies)
    errors = [r.get("error") or f"HTTP {r.get('status')}" for r in replies if not r.get("ok")]
    answers = [r.get("reply", "") for r in replies if r.get("ok")]
    if kind in ("closed", "refused"):
        if answers:
            return Outcome(check, False, "open: it answered", replies)
        if kind == "refused" and any(e != "refused" for e in errors):
            return Outcome(check, False, f"{errors[0]} instead of refused at once", replies)
        return Outcome(check, True, "", replies)
    if errors:
        return Outcome(check, False, f"{errors[0]} ({len(errors)}/{len(replies)})" if len(replies) > 1
                       else errors[0], replies)
    if kind == "reply":
        seen = [a.split()[1].removeprefix("clientip=") if a.startswith("hostname=") else a for a in answers]
        wrong = [s for s in seen if s != check.want[1]]
        if wrong:
            reason = f"NATed as {wrong[0]}" if check.family in ("pod-to-pod",) else f"answered {wrong[0]!r}"
            return Outcome(check, False, reason, replies)
    elif kind == "covers":
        got = {answerer(a) for a in answers}
        missing = [n for n in check.want[1] if n not in got]
        if missing:
            return Outcome(check, False, f"never reached {', '.join(missing)}", replies)
    elif kind == "shares":
        return shares_outcome(check, answers, replies)
    elif kind == "contains":
        if not any(answerer(a) == check.want[1] for a in answers):
            return Outcome(check, False, "never answered by itself", replies)
    return Outcome(check, True, "", replies)


def shares_outcome(check: Check, answers: list[str], replies: list) -> Outcome:
    """Every answer from a pod of the backends, each backend's share within the tolerance of its weight's."""
    pods, shares, tolerance = check.want[1], check.want[2], check.want[3]
    strangers = [a for a in answers if a not in pods]
    if strangers:
        return Outcome(check, False, f"answered by {strangers[0]!r}, not a pod of {', '.join(shares)}", replies)
    counts = {backend: 0 for backend in shares}
    for answer in answers:
        counts[pods[answer]] += 1
    off = [f"{backend} got {100 * counts[backend] / len(answers):.0f}% of {len(answers)}, not {share:g}%"
           for backend, share in shares.items() if abs(100 * counts[backend] / len(answers) - share) > tolerance]
    return Outcome(check, not off, "; ".join(off), replies)


def answerer(reply: str) -> str:
    """Who answered: the pod server's /hostname body, or the hostname= field of its UDP echo."""
    first = reply.split()[0] if reply.split() else ""
    return first[len("hostname="):] if first.startswith("hostname=") else first


EXPECT_KEYS = ("from", "to", "port", "proto", "expect")


def expectation_checks(inv: Inventory, objects: LabObjects, items: list) -> list[Check]:
    """netassert-style expectations: from (pod/selector/node/outside) to (pod/service/address) port: open|closed."""
    checks = []
    pods = objects.pods
    for i, item in enumerate(items):
        where = f"expectations[{i}]"
        if (not isinstance(item, dict) or set(item) - set(EXPECT_KEYS)
                or not {"from", "to", "port", "expect"} <= set(item)):
            raise InputError(f"{where}: give from, to, port and expect (open or closed); proto is optional (tcp)")
        if item["expect"] not in ("open", "closed"):
            raise InputError(f"{where}.expect: {item['expect']!r} is not open or closed; write open or closed")
        proto = str(item.get("proto", "tcp")).lower()
        sources = expectation_sources(inv, pods, item["from"], where)
        host = expectation_target(objects, item["to"], where)
        for source, label in sources:
            checks.append(Check(
                id=f"expect/{i}/{label}->{host}:{item['port']}/{proto}", family="expect", source=source,
                target={"proto": proto, "host": host, "port": int(item["port"]), "path": "/"},
                want=("ok",) if item["expect"] == "open" else ("closed",),
                label=f"{label} -> {host}:{item['port']}/{proto.upper()} should be {item['expect']}",
                layer="your expectation", show=f"lab verify --expect (item {i})"))
    return checks


def expectation_sources(inv: Inventory, pods: dict[str, Pod], spec, where: str) -> list[tuple[str, str]]:
    if spec == "outside" or (isinstance(spec, dict) and spec.get("outside")):
        return [(OUTSIDE, "outside")]
    if not isinstance(spec, dict) or len(spec) != 1:
        raise InputError(f"{where}.from: give one of pod: NAME, selector: KEY=VALUE, node: NAME, outside: true")
    (kind, value), = spec.items()
    if kind == "node":
        inv.node(value)
        return [(f"node:{value}", value)]
    if kind == "pod":
        ns, _, name = value.rpartition("/")
        key = f"{ns or 'default'}/{name}"
        if key not in pods:
            raise InputError(f"{where}.from.pod: no pod {key}; see lab get pods -A")
        return [(f"pod:{key}", name)]
    if kind == "selector":
        k, _, v = str(value).partition("=")
        matched = [p for p in pods.values() if p.labels.get(k) == v]
        if not matched:
            raise InputError(f"{where}.from.selector: {value} matches no pod")
        return [(f"pod:{p.key}", p.name) for p in matched]
    raise InputError(f"{where}.from: unknown {kind!r}; use pod, selector, node or outside")


def expectation_target(objects: LabObjects, spec, where: str) -> str:
    if not isinstance(spec, dict) or len(spec) != 1:
        raise InputError(f"{where}.to: give one of pod: NAME, service: NAME, address: IP")
    (kind, value), = spec.items()
    if kind == "address":
        return str(value)
    ns, _, name = str(value).rpartition("/")
    key = f"{ns or 'default'}/{name}"
    if kind == "pod" and key in objects.pods:
        ip = objects.pods[key].ip
        if ip is None:
            raise InputError(f"{where}.to.pod: {key} has no address yet (not running); see lab get pods -A")
        return ip
    if kind == "service" and key in objects.services:
        return objects.services[key].cluster_ip
    raise InputError(f"{where}.to.{kind}: no {kind} {key}; see lab get {'pods' if kind == 'pod' else 'svc'} -A")

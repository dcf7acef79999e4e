"""Packet-flow tests, as kube-proxy has them: the rules the lab renders, traced packet by packet
(layers/services/trace.py). Every service shape on both backends: ClusterIP, NodePort to a local and a
remote endpoint, no endpoints, ClientIP affinity, hairpin, a ClusterIP from outside the cluster CIDR; and
the lab's own masquerade."""

from dataclasses import replace
from ipaddress import IPv4Network as Net
from pathlib import Path

import pytest

from orchestrator.core import inventory
from orchestrator.kinds import load_text
from orchestrator.core.objects import Pod
from orchestrator.layers.nodes.facts import NodeFacts
from orchestrator.layers.podnet.plan import chain_jumps, plan_node
from orchestrator.layers.services.iptables import JUMPS, render_iptables
from orchestrator.layers.services.nftables import render_nft
from orchestrator.layers.services.plan import AddressBook, endpoints, service_record
from orchestrator.layers.services.trace import Ending, Packet, TraceError, parse_iptables, trace_iptables, trace_nft


DATA = Path(__file__).resolve().parents[2] / "data"
PODS = Net("10.244.0.0/16")
NODE1 = "198.18.0.11"
WEB = {f"10.244.{i}.5": f"node{i + 1}" for i in (0, 1, 2)}  # the web pods; 10.244.0.5 runs on node1
BACKENDS = sorted(f"{ip}:80" for ip in WEB)


def lab_objects():
    book, services = AddressBook({}, Net("10.96.0.0/12")), {}
    for m in load_text((DATA / "shapes.yaml").read_text(), "shapes.yaml"):
        service = service_record(m, None, book, "now")
        services[m.key] = replace(service, load_balancer_ip=service.requested_ip)  # as its pool gives it
    pods = {f"default/web-{i}": Pod(f"web-{i}", "default", labels={"app": "web"}, ip=ip, node=node)
            for i, (ip, node) in enumerate(WEB.items())}
    return services, {key: endpoints(service, pods) for key, service in services.items()}


SERVICES, ENDPOINTS = lab_objects()
ANNOUNCED = {"198.18.0.240": "node1", "198.18.0.241": "node1"}  # node1 answers ARP for both LoadBalancers
NODES = {f"node{i}": f"198.18.0.1{i}" for i in (1, 2, 3, 4)}  # node4 runs no web pod


def node1_iptables() -> dict:
    """What node1 holds with the iptables backend: the service chains, the lab's masquerade and forward
    chains, and the built-in chains' jumps to them (as iptables-save prints a node's rules)."""
    inv = inventory.parse("cluster: {name: demo}\nnodes:\n  - {name: node1, address: 198.18.0.11}\n"
                          "  - {name: node2, address: 198.18.0.12}\n", "demo.yaml", Path("."))
    net = plan_node(inv, inv.node("node1"), {"node1": Net("10.244.0.0/24"), "node2": Net("10.244.1.0/24")},
                    {n: NodeFacts("eth0", 1500) for n in ("node1", "node2")})
    tables = render_iptables(SERVICES, ENDPOINTS, PODS, ANNOUNCED, NODES)
    for (table, chain), rules in net.rules.items():
        tables[table][chain] = list(rules)
    for table, chain, jump in JUMPS:
        tables[table].setdefault(chain, []).append(jump)
    for (table, chain), jump in chain_jumps().items():
        tables[table].setdefault(chain, []).insert(0 if chain == "POSTROUTING" else len(tables[table].get(chain, [])),
                                                   jump)
    text = "".join(f"*{t}\n" + "".join(f":{c} - [0:0]\n" for c in chains) +
                   "".join(r + "\n" for rules in chains.values() for r in rules) + "COMMIT\n"
                   for t, chains in tables.items())
    return parse_iptables(text)


IPTABLES = node1_iptables()
NFT = render_nft(SERVICES, ENDPOINTS, PODS, ANNOUNCED, NODES)


def trace(backend: str, **packet) -> list[Ending]:
    packet.setdefault("local", frozenset({NODE1}))
    return (trace_iptables(IPTABLES, Packet(**packet)) if backend == "iptables" else trace_nft(NFT, Packet(**packet)))


def cluster_ip(name: str) -> str:
    return SERVICES[f"default/{name}"].cluster_ip


def summary(endings: list[Ending]) -> list[tuple]:
    return [(round(e.probability, 3), e.verdict, e.destination, e.masquerade) for e in endings]


BACKENDS_OF = pytest.mark.parametrize("backend", ["iptables", "nftables"])


@BACKENDS_OF
def test_a_pod_reaches_a_cluster_ip_at_each_endpoint_with_equal_chance_and_its_own_source(backend):
    endings = trace(backend, src="10.244.1.9", dst=cluster_ip("web"), dport=80)
    assert summary(endings) == [(0.333, "DNAT", b, False) for b in BACKENDS]
    assert sum(e.probability for e in endings) == pytest.approx(1.0)


@BACKENDS_OF
def test_a_named_target_port_and_udp_go_to_the_endpoint_port(backend):
    assert summary(trace(backend, src="10.244.1.9", dst=cluster_ip("echo"), dport=5353, proto="udp")) == \
        [(0.333, "DNAT", b, False) for b in BACKENDS]
    assert summary(trace(backend, src="10.244.1.9", dst=cluster_ip("echo"), dport=8080)) == \
        [(0.333, "DNAT", b, False) for b in BACKENDS]


@BACKENDS_OF
def test_a_cluster_ip_from_outside_the_cluster_cidr_is_masqueraded(backend):
    # from the node itself (its own address is outside the pod CIDR): kube-proxy marks it for SNAT
    endings = trace(backend, src=NODE1, dst=cluster_ip("web"), dport=80, hook="OUTPUT")
    assert summary(endings) == [(0.333, "DNAT", b, True) for b in BACKENDS]


@BACKENDS_OF
def test_a_node_port_reaches_local_and_remote_endpoints_masqueraded(backend):
    endings = trace(backend, src="203.0.113.10", dst=NODE1, dport=30080)
    assert summary(endings) == [(0.333, "DNAT", b, True) for b in BACKENDS]
    assert {WEB[e.destination.split(":")[0]] for e in endings} == {"node1", "node2", "node3"}  # local and remote
    # the same port on an address that is not this node's is no NodePort
    assert summary(trace(backend, src="203.0.113.10", dst="198.18.0.99", dport=30080)) == \
        [(1.0, "ACCEPT", "198.18.0.99:30080", False)]


@BACKENDS_OF
def test_a_service_without_endpoints_is_rejected_at_once(backend):
    assert summary(trace(backend, src="10.244.1.9", dst=cluster_ip("lonely"), dport=80)) == \
        [(1.0, "REJECT", f"{cluster_ip('lonely')}:80", False)]
    assert summary(trace(backend, src="203.0.113.10", dst=NODE1, dport=30099)) == \
        [(1.0, "REJECT", f"{NODE1}:30099", False)]


@BACKENDS_OF
def test_client_ip_affinity_sends_a_known_client_to_its_endpoint(backend):
    first = trace(backend, src="10.244.1.9", dst=cluster_ip("sticky"), dport=80)
    assert summary(first) == [(0.333, "DNAT", b, False) for b in BACKENDS]
    chosen = "10.244.1.5:80"
    if backend == "iptables":
        remembered = next(c for c, rules in IPTABLES["nat"].items() if c.startswith("KUBE-SEP-") and
                          any(chosen in " ".join(r) for r in rules) and any("--set" in r for r in rules))
    else:
        chain = next(c for c, lines in NFT["chains"].items()
                     if c.startswith("ep-") and f"dnat to {chosen}" in lines[-1])
        remembered = f"{chain}-clients"
    again = trace(backend, src="10.244.1.9", dst=cluster_ip("sticky"), dport=80, recent=frozenset({remembered}))
    assert summary(again) == [(1.0, "DNAT", chosen, False)]


@BACKENDS_OF
def test_a_pod_reaching_itself_through_its_service_is_masqueraded_hairpin(backend):
    endings = trace(backend, src="10.244.0.5", dst=cluster_ip("web"), dport=80)
    assert summary(endings) == [(0.333, "DNAT", b, b == "10.244.0.5:80") for b in BACKENDS]


def test_the_lab_masquerades_only_traffic_leaving_the_cluster():
    assert summary(trace("iptables", src="10.244.0.5", dst="10.244.1.7", dport=80)) == \
        [(1.0, "ACCEPT", "10.244.1.7:80", False)]  # pod to pod: no NAT
    out = trace("iptables", src="10.244.0.5", dst="203.0.113.10", dport=80)
    assert summary(out) == [(1.0, "ACCEPT", "203.0.113.10:80", True)]
    assert any("LAB-MASQ" in step and "MASQUERADE" in step for step in out[0].path)


def test_the_path_names_the_rules_that_decided():
    [ending, *_] = trace("iptables", src="10.244.1.9", dst=cluster_ip("web"), dport=80)
    assert ending.path[0].startswith("nat -A PREROUTING") and any("-j DNAT" in step for step in ending.path)
    [nft_ending, *_] = trace("nftables", src="10.244.1.9", dst=cluster_ip("web"), dport=80)
    assert nft_ending.path[0] == "nat-prerouting: jump services" and "lb-3: dnat ip to" in nft_ending.path[-1]


def test_a_rule_the_tracer_cannot_read_is_an_error_not_a_guess():
    rules = parse_iptables("*nat\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -i eth9 -j ACCEPT\nCOMMIT\n")
    with pytest.raises(TraceError, match="cannot trace option -i"):
        trace_iptables(rules, Packet("10.0.0.1", "10.0.0.2", 80))
    with pytest.raises(TraceError, match="cannot trace the nft rule"):
        trace_nft({"chains": {"nat-prerouting": ["tcp flags syn drop"]}, "sets": {}},
                  Packet("10.0.0.1", "10.0.0.2", 80))


@BACKENDS_OF
def test_a_cluster_load_balancer_address_reaches_every_endpoint_masqueraded_from_outside(backend):
    endings = trace(backend, src="203.0.113.10", dst="198.18.0.240", dport=80,
                    local=frozenset({NODE1, "198.18.0.240"}))
    assert summary(endings) == [(0.333, "DNAT", b, True) for b in BACKENDS]
    # a pod going to the address is balanced by its own node, as to the ClusterIP
    from_pod = trace(backend, src="10.244.1.9", dst="198.18.0.240", dport=80, local=frozenset({"198.18.0.12"}))
    assert {e.destination for e in from_pod} == set(BACKENDS) and all(e.verdict == "DNAT" for e in from_pod)


@BACKENDS_OF
def test_a_local_load_balancer_address_reaches_only_the_announcing_nodes_pod_unmasqueraded(backend):
    endings = trace(backend, src="203.0.113.10", dst="198.18.0.241", dport=8080,
                    local=frozenset({NODE1, "198.18.0.241"}))
    assert summary(endings) == [(1.0, "DNAT", "10.244.0.5:80", False)]


@BACKENDS_OF
def test_a_local_node_port_reaches_the_pod_of_the_node_it_was_sent_to_and_drops_without_one(backend):
    # the same rules on every node; the traced ones are node1's, whose masquerade (LAB-MASQ) spares only its own
    # pods: for the others only the endpoint chosen is a fact of the service rules
    for node, pod in (("198.18.0.11", "10.244.0.5"), ("198.18.0.12", "10.244.1.5"), ("198.18.0.13", "10.244.2.5")):
        endings = trace(backend, src="203.0.113.10", dst=node, dport=30083, local=frozenset({node}))
        assert [(e.probability, e.verdict, e.destination) for e in endings] == [(1.0, "DNAT", f"{pod}:80")], node
        assert endings[0].masquerade is False or node != NODE1
    assert summary(trace(backend, src="203.0.113.10", dst="198.18.0.14", dport=30083,
                         local=frozenset({"198.18.0.14"}))) == [(1.0, "DROP", "198.18.0.14:30083", False)]


@BACKENDS_OF
def test_a_port_the_service_lacks_is_refused_on_its_load_balancer_address(backend):
    endings = trace(backend, src="203.0.113.10", dst="198.18.0.240", dport=22,
                    local=frozenset({NODE1, "198.18.0.240"}))
    assert summary(endings) == [(1.0, "REJECT", "198.18.0.240:22", False)]

"""The hints `lab verify` prints for a failed check, planned on paper: on every node the check's traffic crosses,
a `lab exec NODE -- ...` that shows that node's part (both ends of a path, since the plan cannot know which one
broke), the commands that show each `lab break` fault among them."""

from __future__ import annotations

from dataclasses import replace
from ipaddress import IPv4Address

from orchestrator.core.manifests import ServicePort
from orchestrator.core.model import Cluster, Emulated, Inventory, Node, Overlay, Ssh
from orchestrator.core.objects import Endpoint, LabObjects, NetworkPolicy, Pod, Service
from orchestrator.layers.services.iptables import svc_chain
from orchestrator.verify.checks import Check, hint_commands, hint_text, path_nodes, plan_checks

NODES = tuple(Node(f"node{i}", IPv4Address(f"198.18.0.{10 + i}"), f"198.18.0.{10 + i}", Ssh()) for i in (1, 2, 3))
INV = Inventory("lab.yaml", Cluster("demo"), NODES, Emulated())
FDB = "bridge fdb show dev flannel.1"
POLICY = "nft list table ip lab-policy"
WEB_PORT = ServicePort(None, "TCP", 80, 80, 30080)
WEB = Service("web", "default", "10.96.0.10", type="LoadBalancer", ports=[WEB_PORT], selector={"app": "web"},
              load_balancer_ip="198.18.0.240")


def lab() -> LabObjects:
    """Three web pods (one per node) behind a LoadBalancer that node3 announces, two DNS pods, a client."""
    web = [Pod(f"web-{i}", "default", labels={"app": "web"}, node=f"node{i}", ip=f"10.244.{i - 1}.2", tcp=[80])
           for i in (1, 2, 3)]
    dns = [Pod(f"kube-dns-{i}", "kube-system", labels={"k8s-app": "kube-dns"}, node=f"node{i}",
               ip=f"10.244.{i - 1}.9", role="dns") for i in (1, 2)]
    client = Pod("client", "default", labels={"app": "client"}, node="node1", ip="10.244.0.3", tcp=[80])
    return LabObjects(subnets={n.name: f"10.244.{i}.0/24" for i, n in enumerate(NODES)},
                      pods={p.key: p for p in [*web, *dns, client]}, services={WEB.key: WEB},
                      endpoints={WEB.key: {"": [Endpoint(p.ip or "", 80, p.node, p.name) for p in web]}},
                      announced={"198.18.0.240": "node3"})


def on_node(show: str) -> dict[str, str]:
    """node -> what the hint runs there (`lab exec NODE -- ...`, inside its `sh -c` when there is one); not the
    router's."""
    runs = {}
    for words in hint_commands(show):
        if words[:2] == ["lab", "exec"] and words[2] in {n.name for n in NODES} and words[3] == "--":
            runs[words[2]] = words[-1] if words[4:6] == ["sh", "-c"] else " ".join(words[4:])
    return runs


def planned(inv: Inventory = INV, objects: LabObjects | None = None) -> dict[str, Check]:
    return {c.id: c for c in plan_checks(inv, objects or lab())}


def test_a_hint_runs_each_nodes_commands_once_in_one_sh_c_and_the_labs_own_commands_last():
    looks = [("node2", "ip link show cni0"), ("node1", "ip link show cni0"), ("node2", "ip route"),
             ("node2", "ip link show cni0"), ("node3", f"{POLICY} 2>/dev/null || echo none")]
    assert hint_text(looks, "lab trace a b") == (
        "lab exec node2 -- sh -c 'ip link show cni0; ip route'; lab exec node1 -- ip link show cni0; "
        f"lab exec node3 -- sh -c '{POLICY} 2>/dev/null || echo none'; lab trace a b")
    assert hint_commands(hint_text(looks[:2], "lab trace a b")) == [
        "lab exec node2 -- ip link show cni0".split(), "lab exec node1 -- ip link show cni0".split(),
        "lab trace a b".split()]
    assert on_node(hint_text(looks)) == {"node2": "ip link show cni0; ip route", "node1": "ip link show cni0",
                                         "node3": f"{POLICY} 2>/dev/null || echo none"}


def test_a_pod_pair_across_nodes_shows_both_ends_overlay_and_policy_rules_and_the_sources_ipmasq():
    check = planned()["pod-to-pod/web-1->web-2/tcp"]
    runs = on_node(check.show)
    assert list(runs) == ["node1", "node2"]  # the source's node first
    assert all(FDB in runs[n] and "ip route" in runs[n] and POLICY in runs[n] for n in runs)
    assert "grep ipMasq /etc/cni/net.d/10-demo.conflist" in runs["node1"] and "ipMasq" not in runs["node2"]
    assert check.show.endswith("lab trace default/web-1 default/web-2")


def test_a_pod_pair_on_one_node_shows_its_bridge_and_no_overlay():
    runs = on_node(planned()["pod-to-pod/client->web-1/tcp"].show)
    assert list(runs) == ["node1"] and "bridge link show" in runs["node1"] and FDB not in runs["node1"]


def test_a_service_check_names_its_chain_on_the_source_node_and_the_overlay_of_every_endpoints_node():
    runs = on_node(planned()["pod-to-service/web-2->default/web:80/TCP"].show)
    assert list(runs) == ["node2", "node1", "node3"]
    assert f"iptables -t nat -S {svc_chain(WEB, WEB_PORT)}" in runs["node2"]
    assert all(FDB in runs[n] and POLICY in runs[n] for n in runs)
    nft = replace(INV, cluster=replace(INV.cluster, proxy_mode="nftables"))
    assert "nft list table ip lab-proxy" in on_node(planned(nft)["pod-to-service/web-2->default/web:80/TCP"].show)[
        "node2"]


def test_a_hairpin_shows_the_members_bridge_ports_and_its_service_chain():
    runs = on_node(planned()["hairpin/web-1->default/web:80/TCP"].show)
    assert "bridge -d link show" in runs["node1"] and f"iptables -t nat -S {svc_chain(WEB, WEB_PORT)}" in runs["node1"]


def test_the_mtu_check_shows_cni0_on_both_ends():
    check = next(c for c in planned().values() if c.family == "mtu" and c.source == "pod:default/web-2")
    runs = on_node(check.show)
    assert set(runs) == {"node2", "node1"} and all("ip link show cni0" in r and FDB in r for r in runs.values())


def test_dns_shows_the_dns_pods_their_nodes_records_and_every_node_on_the_way():
    check = next(c for c in planned().values() if c.family == "dns")
    runs = on_node(check.show)
    assert set(runs) == {"node1", "node2", "node3"}
    assert {n for n, r in runs.items() if "cat /var/lib/cluster-lab/demo/dns/hosts" in r} == {"node1", "node2"}
    assert "lab get pods -n kube-system -o wide" in check.show


def test_a_load_balancer_shows_the_announcing_nodes_addresses_and_rules_and_the_router():
    check = planned()["loadbalancer/outside->default/web:80/TCP"]
    runs = on_node(check.show)
    assert list(runs) == ["node3", "node1", "node2"]  # the node the address leads to first
    assert "ip -br addr" in runs["node3"] and f"iptables -t nat -S {svc_chain(WEB, WEB_PORT)}" in runs["node3"]
    assert "lab exec router -- ip neigh show 198.18.0.240" in check.show


def test_a_nodeport_shows_the_rules_of_the_node_it_is_sent_to():
    check = planned()["nodeport/node2->default/web:80/TCP"]
    runs = on_node(check.show)
    assert "iptables -t nat -S KUBE-NODEPORTS" in runs["node1"] and "KUBE-NODEPORTS" not in runs["node2"]


def test_egress_shows_the_sources_masquerade_and_cni_config():
    runs = on_node(planned()["egress/web-3->outside"].show)
    assert list(runs) == ["node3"] and "iptables -t nat -S LAB-MASQ" in runs["node3"] and POLICY in runs["node3"]


def test_with_host_gw_the_way_between_nodes_is_the_route():
    host_gw = replace(INV, cluster=replace(INV.cluster, overlay=Overlay(backend="host-gw")))
    runs = on_node(planned(host_gw)["node-to-pod/node1->web-2"].show)
    assert set(runs) == {"node1", "node2"} and all("ip route" in r and "bridge fdb" not in r for r in runs.values())


def test_every_node_a_check_crosses_is_shown_so_a_fault_on_any_of_them_is_named():
    """Whichever node a kernel fault is on, every check through that node names it (the e2e test runs them)."""
    objects = lab()
    for check in plan_checks(INV, objects):
        if check.on_paper or check.family == "no-endpoints":
            continue
        runs = on_node(check.show)
        crossed = path_nodes(check, INV, objects)
        assert set(runs) == set(crossed), check.id
        assert all(POLICY in runs[n] for n in crossed), check.id
        if len(crossed) > 1:
            assert all(FDB in runs[n] for n in crossed), check.id


def test_a_cause_known_from_the_objects_alone_shows_the_object_not_the_path():
    wrong = replace(WEB, ports=[replace(WEB_PORT, target_port=8080)])
    objects = replace(lab(), services={WEB.key: wrong})
    check = planned(objects=objects)["pod-to-service/web-2->default/web:80/TCP"]
    assert check.on_paper and check.show == "lab describe svc web -n default; lab get ep web -n default"


def test_a_pair_a_policy_blocks_shows_the_policies_and_both_ends_rules_but_no_overlay():
    deny = NetworkPolicy("deny", "default", spec={"podSelector": {"matchLabels": {"app": "web"}},
                                                  "policyTypes": ["Ingress"]})
    objects = replace(lab(), policies={deny.key: deny})
    check = planned(objects=objects)["pod-to-pod/client->web-2/tcp"]
    assert check.want == ("closed",)
    runs = on_node(check.show)
    assert set(runs) == {"node1", "node2"} and all(POLICY in r and FDB not in r for r in runs.values())
    assert "lab describe netpol deny -n default" in check.show

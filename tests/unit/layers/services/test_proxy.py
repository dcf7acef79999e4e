"""kube-proxy-style rules: names as on real clusters, the whole rendered set pinned, partial sync."""

from dataclasses import replace
import json
from ipaddress import IPv4Network as Net
from pathlib import Path
from types import SimpleNamespace

import pytest

from orchestrator.agent.contract import ProxySync, SyncAnswer, table_header
from orchestrator.agent.host import boot_id
from orchestrator.agent.iptables import drifted, restore_input, saved_chains, trusted_chains, wanted_digests
from orchestrator.agent.proxy import proxy_sync
from orchestrator.kinds import load_text
from orchestrator.core.transport import FleetResult, Result
from orchestrator.layers.services.apply import SentRules, chain_digests, change_request, generation_of, push_rules
from orchestrator.layers.services.iptables import JUMPS, render_iptables, svc_chain
from orchestrator.layers.services.nftables import render_nft
from orchestrator.core.manifests import ServicePort
from orchestrator.core.objects import Endpoint, Pod, Service
from orchestrator.layers.services.plan import AddressBook, dns_records, endpoints, service_record


DATA = Path(__file__).resolve().parents[2] / "data"
REPO = Path(__file__).resolve().parents[4]
CIDR = Net("10.96.0.0/12")


def talk_nginx():
    """The talk's service and endpoints: 10.101.186.205 in front of three pods."""
    (m,) = [x for x in load_text((REPO / "examples" / "nginx.yaml").read_text(), "nginx.yaml") if x.kind == "Service"]
    record = service_record(m, None, AddressBook({}, CIDR), "2026-01-01T00:00:00Z")
    record.cluster_ip = "10.101.186.205"
    eps = [Endpoint("10.233.1.4", 80, "node1", "a"), Endpoint("10.233.2.3", 80, "node2", "b"),
           Endpoint("10.233.3.2", 80, "node3", "c")]
    return {"default/nginx": record}, {"default/nginx": {"": eps}}


@pytest.mark.parametrize("key,port,proto,expected", [
    ("default/kubernetes", "https", "TCP", "KUBE-SVC-NPX46M4PTMTKRN6Y"),
    ("kube-system/kube-dns", "dns", "UDP", "KUBE-SVC-TCOU7JCQXEZGVUNU"),
    ("kube-system/kube-dns", "dns-tcp", "TCP", "KUBE-SVC-ERIFXISQEP7F7OF4"),
    ("default/nginx", None, "TCP", "KUBE-SVC-2CMXP7HKUVJN7L6M"),
])
def test_chain_names_are_the_ones_real_clusters_have(key, port, proto, expected):
    namespace, name = key.split("/")
    assert svc_chain(Service(name, namespace, "10.96.0.2"), ServicePort(port, proto, 443, 443)) == expected


def render_text(tables) -> str:
    return "".join(f"*{table}\n" + "".join(f":{chain}\n" + "".join(r + "\n" for r in rules)
                                          for chain, rules in sorted(chains.items()))
                   for table, chains in tables.items())


def test_the_talks_nginx_service_renders_as_pinned():
    services, eps = talk_nginx()
    text = render_text(render_iptables(services, eps, Net("10.233.0.0/16")))
    assert text == (DATA / "nginx.rules").read_text()


def test_every_endpoint_gets_a_third():
    services, eps = talk_nginx()
    rules = render_iptables(services, eps, Net("10.233.0.0/16"))["nat"]["KUBE-SVC-2CMXP7HKUVJN7L6M"]
    remaining, shares = 1.0, []
    for rule in rules[1:]:
        p = float(rule.split("--probability ")[1].split()[0]) if "--probability" in rule else 1.0
        shares.append(remaining * p)
        remaining -= remaining * p
    assert [round(s, 6) for s in shares] == [0.333333] * 3


def test_no_endpoints_is_a_reject_not_a_dnat():
    services, _ = talk_nginx()
    tables = render_iptables(services, {}, Net("10.233.0.0/16"))
    assert tables["filter"]["KUBE-SERVICES"] == [
        '-A KUBE-SERVICES -d 10.101.186.205/32 -p tcp -m comment --comment "default/nginx has no endpoints" '
        "-m tcp --dport 80 -j REJECT --reject-with icmp-port-unreachable"]
    assert not [c for c in tables["nat"] if c.startswith(("KUBE-SVC-", "KUBE-SEP-"))]


def test_partial_sync_writes_only_changed_chains():
    services, eps = talk_nginx()
    jumps = [list(j) for j in JUMPS]
    before = render_iptables(services, eps, Net("10.233.0.0/16"))
    loaded = chain_digests(before)
    present = trusted_chains(loaded, jumps)  # what a partial sync assumes is there
    assert all(jump in present[table][builtin] for table, builtin, jump in JUMPS)
    assert restore_input(loaded, before, loaded, present, jumps) == ("", [], [])
    one_less = {"default/nginx": {"": eps["default/nginx"][""][:2]}}
    after = render_iptables(services, one_less, Net("10.233.0.0/16"))
    text, written, deleted = restore_input(chain_digests(after), after, loaded, present, jumps)
    assert written == ["nat/KUBE-SVC-2CMXP7HKUVJN7L6M"]
    assert len(deleted) == 1 and deleted[0].startswith("nat/KUBE-SEP-")
    assert text.splitlines()[0] == "*nat" and text.splitlines()[-1] == "COMMIT"
    assert f"-X {deleted[0][4:]}" in text


def test_a_change_request_carries_only_what_changed_and_rebuilds_the_whole_set_on_the_node():
    services, eps = talk_nginx()
    before = render_iptables(services, eps, Net("10.233.0.0/16"))
    sent = SentRules(generation_of(chain_digests(before)), chain_digests(before))
    after = render_iptables(services, {"default/nginx": {"": eps["default/nginx"][""][:2]}}, Net("10.233.0.0/16"))
    change = change_request({"backend": "iptables", "tables": after}, chain_digests(after), sent)
    assert change["base"] == sent.generation
    assert change["tables"] == {"nat": {"KUBE-SVC-2CMXP7HKUVJN7L6M": after["nat"]["KUBE-SVC-2CMXP7HKUVJN7L6M"]}}
    assert [c for cs in change["removed"].values() for c in cs] == [
        c for c in before["nat"] if c not in after["nat"]]
    # what the node will hold
    assert wanted_digests(change["tables"], sent.digests, True, change["removed"]) == chain_digests(after)
    unchanged = change_request({"backend": "iptables", "tables": before}, chain_digests(before), sent)
    assert unchanged["tables"] == {} and unchanged["removed"] == {}


@pytest.mark.parametrize("state", [
    None,  # a node without the lab's rules (new, or destroyed)
    {"generation": "fedcba9876543210", "same_boot": True},  # a node that missed a sync
    {"generation": "0123456789abcdef", "same_boot": False},  # a node rebooted since: its rules are gone
])
def test_a_change_request_for_a_node_holding_something_else_asks_for_everything(tmp_path, state):
    if state is not None:
        (tmp_path / "proxy.json").write_text(json.dumps({
            "iptables": {"nat": {"KUBE-SERVICES": "0000000000000000"}}, "generation": state["generation"],
            "boot": boot_id() if state["same_boot"] else "another boot"}))
    before = sorted(tmp_path.iterdir())
    request = ProxySync(backend="iptables", jumps=[], tables={}, base="0123456789abcdef", generation="x")
    assert proxy_sync(str(tmp_path), request) == SyncAnswer(resync=True)
    assert sorted(tmp_path.iterdir()) == before  # nothing loaded, nothing written


@pytest.fixture
def read_only_node(monkeypatch):
    """The node agent with every way to change a node failing the test; reading is allowed."""
    from orchestrator.agent import cni, iptables, nftables, pods, proxy
    import os
    import shutil
    import subprocess

    def refuse(*args, **kwargs):
        raise AssertionError(f"a dry run changed the node: {args}")

    def read(argv, **kwargs):
        if argv[:3] != ["nft", "list", "tables"]:
            refuse(argv)
        return SimpleNamespace(returncode=0, stdout=b"table ip lab-proxy\n")

    for module in (cni, iptables, nftables, pods, proxy):  # each module's own binding of the names it uses
        for name in ("load_rules", "load_nft", "nft_table_exists"):
            if hasattr(module, name):
                monkeypatch.setattr(module, name, refuse)
        if hasattr(module, "run"):
            monkeypatch.setattr(module, "run", lambda *argv: "" if argv == ("iptables-save",) else refuse(argv))
    monkeypatch.setattr(subprocess, "run", read)
    monkeypatch.setattr(shutil, "which", lambda tool: f"/usr/sbin/{tool}")
    monkeypatch.setattr(os, "kill", refuse)


@pytest.mark.parametrize("held, backend, force, expect_written, expect_deleted", [
    ("iptables", "iptables", False, ["nat/KUBE-SVC-2CMXP7HKUVJN7L6M"], 1),  # an endpoint goes
    ("iptables", "iptables", True, None, None),  # lab fix
    ("nft", "iptables", False, None, ["nft/lab-proxy"]),  # back from nftables
    ("iptables", "nftables", False, ["nft/lab-proxy"], None),  # to nftables
])
def test_a_dry_run_says_what_a_sync_would_change_and_changes_nothing(tmp_path, read_only_node, held, backend,
                                                                      force, expect_written, expect_deleted):
    services, eps = talk_nginx()
    before = render_iptables(services, eps, Net("10.233.0.0/16"))
    state = json.dumps({"iptables": chain_digests(before), "boot": boot_id(), "generation": "g1"} if held == "iptables"
                       else {"nft": render_nft(services, eps, Net("10.233.0.0/16"))})
    (tmp_path / "proxy.json").write_text(state)
    one_less = {"default/nginx": {"": eps["default/nginx"][""][:2]}}
    request = {"backend": backend, "jumps": [list(j) for j in JUMPS], "force": force, "generation": "g2",
               "stale_udp": ["10.233.3.2"], "dns_hosts": "10.96.0.20 x\n",
               **({"tables": render_iptables(services, one_less, Net("10.233.0.0/16"))} if backend == "iptables"
                  else {"nft": render_nft(services, one_less, Net("10.233.0.0/16"))})}
    answer = proxy_sync(str(tmp_path), ProxySync.from_dict(dict(request, dry_run=True)))
    assert answer.dry_run
    if expect_written is not None:
        assert answer.written == expect_written
    if isinstance(expect_deleted, int):
        assert len(answer.deleted) == expect_deleted
    elif expect_deleted is not None:
        assert answer.deleted == expect_deleted
    assert [p.name for p in tmp_path.iterdir()] == ["proxy.json"] and (tmp_path / "proxy.json").read_text() == state


class FakeAgents:
    """Nodes whose agents hold a generation, answer as proxy-sync does, and ask for everything when a change
    builds on another one; `failing` nodes fail. Records what each node was sent."""

    def __init__(self, held: dict, failing=()):
        self.held, self.failing, self.sent = dict(held), set(failing), {}

    def run(self, node, argv, stdin, check=True, timeout=None):
        request = ProxySync.from_json(stdin)
        self.sent.setdefault(node.name, []).append("change" if request.base else "full")
        if node.name in self.failing:
            raise RuntimeError(f"{node.name}: iptables-restore failed")
        answer = SyncAnswer(resync=True)
        if not request.base or self.held.get(node.name) == request.base:
            self.held[node.name] = request.generation
            answer = SyncAnswer(generation=request.generation)
        return Result(node.name, " ".join(argv), 0, answer.to_json(), "")

    def run_all(self, action, nodes):
        results = FleetResult()
        for node in nodes:
            try:
                results[node.name] = action(node)
            except Exception as exc:  # noqa: BLE001 - as Transport.run_all collects them
                results[node.name] = exc
        return results


NODES = [SimpleNamespace(name=f"node{i}") for i in (1, 2, 3, 4)]


def test_push_sends_changes_only_to_nodes_holding_what_was_sent_last():
    services, eps = talk_nginx()
    first = {"backend": "iptables", "jumps": [], "tables": render_iptables(services, eps, Net("10.233.0.0/16"))}
    sent = SentRules()
    agents = FakeAgents({})
    push_rules(agents, "demo", NODES[:3], first, sent)
    assert sent.nodes == {n: sent.generation for n in ("node1", "node2", "node3")}  # node4 was not there
    one_less = {"default/nginx": {"": eps["default/nginx"][""][:2]}}
    second = {**first, "tables": render_iptables(services, one_less, Net("10.233.0.0/16"))}
    agents.held["node2"] = "something else"  # e.g. another controller wrote it
    agents.failing = {"node3"}
    agents.sent = {}
    results = push_rules(agents, "demo", NODES, second, sent)
    assert agents.sent == {"node1": ["change"], "node2": ["change", "full"], "node3": ["change"], "node4": ["full"]}
    assert set(results.failures) == {"node3"}
    assert set(sent.nodes) == {"node1", "node2", "node4"}  # node3 failed: it gets everything next time
    agents.sent, agents.failing = {}, set()
    push_rules(agents, "demo", NODES, second, sent)
    assert agents.sent == {"node1": ["change"], "node2": ["change"], "node3": ["full"], "node4": ["change"]}


def test_switching_to_nftables_forgets_what_was_sent():
    services, eps = talk_nginx()
    sent = SentRules()
    agents = FakeAgents({})
    push_rules(agents, "demo", NODES[:1], {"backend": "iptables", "jumps": [],
                                          "tables": render_iptables(services, eps, Net("10.233.0.0/16"))}, sent)
    assert sent.generation and sent.digests
    push_rules(agents, "demo", NODES[:1], {"backend": "nftables", "jumps": [], "nft": {}}, sent)
    assert (sent.generation, sent.digests, sent.nodes) == ("", {}, {})


def test_loads_naming_many_chains_read_the_whole_table_instead_of_listing_the_names():
    """iptables-nft-restore's list of named chains is quadratic: 58 s for 10,000 services, 3.4 s with -S."""
    assert table_header("nat", 40_000, 5) == ["*nat", "-S"]  # a first load
    assert table_header("nat", 40_000, 40_000) == ["*nat", "-S"]  # a full reload
    assert table_header("nat", 2, 40_000) == ["*nat"]  # a partial sync: reading 40,000 chains would cost more
    assert table_header("nat", 3, 5) == ["*nat"]


def test_what_a_reload_repairs_is_what_the_node_lacks_or_holds_otherwise():
    services, eps = talk_nginx()
    jumps = [list(j) for j in JUMPS]
    rules = render_iptables(services, eps, Net("10.233.0.0/16"))
    saved = "\n".join(["*nat", *(f":{c} - [0:0]" for c in rules["nat"]), *(r for c in rules["nat"].values() for r in c),
                       *(j for t, _, j in JUMPS if t == "nat"), "COMMIT",
                       "*filter", *(f":{c} - [0:0]" for c in rules["filter"]),
                       *(r for c in rules["filter"].values() for r in c), *(j for t, _, j in JUMPS if t == "filter"),
                       "COMMIT"])
    assert drifted(chain_digests(rules), rules, saved_chains(saved), jumps) == []
    sep = next(c for c in rules["nat"] if c.startswith("KUBE-SEP-"))  # what `lab break kube-sep` removes
    broken = "\n".join(line for line in saved.splitlines() if sep not in line)
    assert set(drifted(chain_digests(rules), rules, saved_chains(broken), jumps)) == {
        "nat/KUBE-SVC-2CMXP7HKUVJN7L6M", f"nat/{sep}"}
    edited = saved.replace("--to-destination 10.233.1.4:80", "--to-destination 10.233.1.4:8080")  # same count
    assert drifted(chain_digests(rules), rules, saved_chains(edited), jumps) == [
        f"nat/{c}" for c, chain in rules["nat"].items() if any("10.233.1.4:80" in r and "DNAT" in r for r in chain)]
    no_jumps = "\n".join(line for line in saved.splitlines() if not line.startswith(("-A PREROUTING", "-A OUTPUT")))
    assert set(drifted(chain_digests(rules), rules, saved_chains(no_jumps), jumps)) == {
        "nat/PREROUTING jump", "nat/OUTPUT jump", "filter/OUTPUT jump"}


def test_jumps_from_built_in_chains_load_apart_from_a_whole_table_read():
    """After -S, iptables-nft does not create a built-in chain the kernel lacks: the jumps into them go in a
    block of their own, so a first big load into a fresh table works."""
    many = {f"KUBE-SVC-{i:016d}": [f"-A KUBE-SVC-{i:016d} -j RETURN"] for i in range(100)}
    rules = {"nat": {"KUBE-SERVICES": [], **many}}
    text, _, _ = restore_input(chain_digests(rules), rules, {}, saved_chains(""), [list(j) for j in JUMPS])
    blocks = [block.splitlines() for block in text.split("COMMIT\n") if block]
    nat = [b for b in blocks if b[0] == "*nat"]
    assert nat[0][1] == "-S" and not any(line.startswith("-I ") for line in nat[0])
    assert nat[1][1:] and all(line.startswith("-I ") for line in nat[1][1:])


def shapes_rules() -> dict:
    """The rules of data/shapes.yaml (every rule shape: ClusterIP, NodePort, UDP, ClientIP, no endpoints)."""
    book, services = AddressBook({}, CIDR), {}
    for m in load_text((DATA / "shapes.yaml").read_text(), "shapes.yaml"):
        services[m.key] = service_record(m, None, book, "now")
    pods = {f"default/web-{i}": Pod(f"web-{i}", "default", labels={"app": "web"}, ip=f"10.233.{i}.5", node=f"node{i}")
            for i in (1, 2, 3)}
    eps = {key: endpoints(service, pods) for key, service in services.items()}
    return render_iptables(with_addresses(services), eps, Net("10.233.0.0/16"), SHAPES_ANNOUNCED, SHAPES_NODES)


SHAPES_ANNOUNCED = {"198.18.0.240": "node1", "198.18.0.241": "node1"}  # who announces shapes.yaml's LoadBalancers
SHAPES_NODES = {f"node{i}": f"198.18.0.1{i}" for i in (1, 2, 3, 4)}  # node4 runs no pod


def with_addresses(services: dict) -> dict:
    """shapes.yaml's LoadBalancer Services given the addresses they ask for, as a pool would give them."""
    return {k: replace(s, load_balancer_ip=s.requested_ip) for k, s in services.items()}


def test_rules_read_back_by_iptables_save_compare_equal_to_the_rendered_ones():
    """The drift check compares chains as text: every shape must come back as rendered, or a sound node
    would be rewritten at every verify. data/iptables-saved.rules is iptables 1.8.9's own output."""
    rules = shapes_rules()
    saved = saved_chains((DATA / "iptables-saved.rules").read_text())
    assert {c for chains in rules.values() for c in chains} >= {"KUBE-NODEPORTS", "KUBE-EXTERNAL-SERVICES"}
    assert any("--rcheck" in r for chains in rules.values() for rs in chains.values() for r in rs)
    assert any(c.startswith("KUBE-EXT-") for c in rules["nat"])
    assert any("-p udp" in r for r in rules["nat"]["KUBE-SERVICES"])
    assert any(c.startswith("KUBE-SVL-") for c in rules["nat"])
    assert any("--src-type LOCAL" in r for rs in rules["nat"].values() for r in rs)
    assert any(r.endswith("-j DROP") for r in rules["filter"]["KUBE-EXTERNAL-SERVICES"])
    assert drifted(chain_digests(rules), rules, saved, [list(j) for j in JUMPS]) == []


def test_missing_chains_are_rewritten_even_when_unchanged():
    services, eps = talk_nginx()
    rules = render_iptables(services, eps, Net("10.233.0.0/16"))
    digests = chain_digests(rules)
    text, written, _ = restore_input(digests, rules, digests, saved_chains(""), [])
    assert len(written) == sum(len(chains) for chains in rules.values())


def test_endpoints_use_named_target_ports_and_skip_pods_without_them():
    service = Service.from_json({"namespace": "default", "name": "s", "cluster_ip": "10.96.0.2",
                                 "selector": {"app": "x"},
                                 "ports": [{"name": "http", "protocol": "TCP", "port": 80, "target_port": "web"}]})
    pods = {key: Pod.from_json(pod) for key, pod in {
        "default/a": {"name": "a", "namespace": "default", "labels": {"app": "x"}, "ip": "10.244.0.5", "node": "n1",
                      "ports": [{"name": "web", "protocol": "TCP", "container_port": 8080}]},
        "default/b": {"name": "b", "namespace": "default", "labels": {"app": "x"}, "ip": "10.244.0.6", "node": "n1",
                      "ports": []},
        "other/c": {"name": "c", "namespace": "other", "labels": {"app": "x"}, "ip": "10.244.0.7", "node": "n1",
                    "ports": [{"name": "web", "protocol": "TCP", "container_port": 8080}]},
    }.items()}
    assert [e.address for e in endpoints(service, pods)["http"]] == ["10.244.0.5:8080"]


def test_dns_records():
    services = {"default/nginx": Service("nginx", "default", "10.96.0.2")}
    pods = {"default/p": Pod("p", "default", ip="10.244.1.4")}
    assert dns_records(services, pods, "cluster.local") == [
        ("10.244.1.4", "10-244-1-4.default.pod.cluster.local"), ("10.96.0.2", "nginx.default.svc.cluster.local")]


# ---- nftables -------------------------------------------------------------------------------------------

from orchestrator.agent.nftables import nft_element_changes, nft_same_shape, nft_table_text  # noqa: E402


def test_nft_has_no_chain_per_service():
    services, eps = talk_nginx()
    many = {f"default/s{i}": replace(services["default/nginx"], name=f"s{i}", cluster_ip=f"10.96.1.{i}")
            for i in range(1, 50)}
    many_eps = {k: eps["default/nginx"] for k in many}
    desired = render_nft(many, many_eps, Net("10.233.0.0/16"))
    assert sorted(c for c in desired["chains"] if c.startswith("lb-")) == [f"lb-{n}" for n in range(1, 9)]
    assert len(desired["sets"]["service-ips"][1]) == 49 and len(desired["sets"]["backends"][1]) == 147
    assert desired["sets"]["service-ips"][1]["10.96.1.7 . tcp . 80"] == "goto lb-3"
    assert desired["sets"]["backends"][1]["10.96.1.7 . tcp . 80 . 2"] == "10.233.3.2 . 80"


def test_the_talks_nginx_service_renders_as_pinned_nft():
    """The whole nft table the node loads (`nft -f`), against the golden file, as nginx.rules pins iptables."""
    services, eps = talk_nginx()
    assert nft_table_text(render_nft(services, eps, Net("10.233.0.0/16"))) == (DATA / "nginx.nft").read_text()


def test_nft_table_text_declares_before_use():
    services, eps = talk_nginx()
    text = nft_table_text(render_nft(services, eps, Net("10.233.0.0/16")))
    lines = text.splitlines()
    assert lines[:3] == ["table ip lab-proxy {}", "delete table ip lab-proxy", "table ip lab-proxy {"]
    position = {word: text.index(word) for word in ("map backends", "chain lb-3", "map service-ips", "chain services",
                                                    "chain nat-prerouting")}
    assert position["map backends"] < position["chain lb-3"] < position["map service-ips"] < \
        position["chain services"] < position["chain nat-prerouting"]


def test_nft_endpoint_change_is_elements_only():
    services, eps = talk_nginx()
    before = render_nft(services, eps, Net("10.233.0.0/16"))
    moved = {"default/nginx": {"": [eps["default/nginx"][""][0], eps["default/nginx"][""][1],
                                    Endpoint("10.233.3.9", 80, "node3", "d")]}}
    after = render_nft(services, moved, Net("10.233.0.0/16"))
    assert nft_same_shape(after, before)
    assert nft_element_changes(after, after) == ""
    assert nft_element_changes(after, before).splitlines() == [
        "delete element ip lab-proxy backends { 10.101.186.205 . tcp . 80 . 2 }",
        "add element ip lab-proxy backends { 10.101.186.205 . tcp . 80 . 2 : 10.233.3.9 . 80 }",
        "delete element ip lab-proxy hairpin { 10.233.3.2 . 10.233.3.2 }",
        "add element ip lab-proxy hairpin { 10.233.3.9 . 10.233.3.9 }",
    ]
    fewer = {"default/nginx": {"": eps["default/nginx"][""][:2]}}
    assert nft_same_shape(render_nft(services, fewer, Net("10.233.0.0/16")), before)  # lb-2 exists already
    twelve = {"default/nginx": {"": [Endpoint(f"10.233.9.{i}", 80, "n", "p") for i in range(12)]}}
    assert not nft_same_shape(render_nft(services, twelve, Net("10.233.0.0/16")), before)  # lb-12 is new

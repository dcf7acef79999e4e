"""NetworkPolicy: the evaluator on the upstream netpol e2e cases (namespaces x, y, z with pods a, b, c), the
nftables table it renders, and the bad input the lab refuses."""

import pytest
import yaml

from orchestrator.core.errors import InputError
from dataclasses import replace

from orchestrator.core.manifests import ContainerPort
from orchestrator.core.model import Cluster
from orchestrator.kinds import load_text, plan
from orchestrator.core.objects import LabObjects, Namespace, Pod
from orchestrator.layers.pods.namespaces import namespace_labels, require_namespaces
from orchestrator.layers.policy.enforcement import policy_id, policy_sets, render_policy
from orchestrator.layers.policy.plan import pod_endpoint, policies, verdict

NAMESPACES = ("x", "y", "z")
PODS = ("a", "b", "c")
PORTS = [ContainerPort(n, p, name=f"serve-{n}-{p.lower()}") for n in (80, 81) for p in ("TCP", "UDP")]


def cluster() -> LabObjects:
    """The upstream e2e cluster: 3 namespaces labelled ns=<name>, 3 pods each labelled pod=<name>."""
    pods = {}
    for i, ns in enumerate(NAMESPACES):
        for j, name in enumerate(PODS):
            pods[f"{ns}/{name}"] = Pod(name, ns, labels={"pod": name}, ip=f"10.244.{i + 1}.{j + 10}",
                                       node=f"node{j + 1}", ports=list(PORTS))
    return LabObjects(pods=pods, namespaces={ns: Namespace(ns, {"ns": ns}, "t") for ns in NAMESPACES})


def with_policies(objects: LabObjects, text: str) -> LabObjects:
    plan(Cluster(name="lab"), [], objects, load_text(text, "policy.yaml"), "t")
    return objects


def matrix(objects: LabObjects, port: int = 80, protocol: str = "TCP") -> dict:
    """(from, to) -> allowed, for every pair of pods (a pod to itself too, as upstream probes it)."""
    found, spaces = policies(objects), namespace_labels(objects)
    eps = {key: pod_endpoint(p) for key, p in objects.pods.items()}
    return {(s, d): verdict(eps[s], eps[d], port, protocol, found, spaces).allowed for s in eps for d in eps}


def expect(allowed_when) -> dict:
    """The truth table for `allowed_when`; a pod always reaches itself (its own address never leaves it)."""
    keys = [f"{ns}/{p}" for ns in NAMESPACES for p in PODS]
    return {(s, d): s == d or bool(allowed_when(s, d)) for s in keys for d in keys}


def policy(name: str, namespace: str, spec: dict) -> str:
    return yaml.safe_dump({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                           "metadata": {"name": name, "namespace": namespace}, "spec": spec})


CASES = {
    "no policy: everything reaches everything": ("", lambda s, d: True),
    "deny all ingress in x": (policy("deny", "x", {"podSelector": {}, "policyTypes": ["Ingress"]}),
                              lambda s, d: not d.startswith("x/")),
    "deny all egress in x": (policy("deny", "x", {"podSelector": {}, "policyTypes": ["Egress"]}),
                             lambda s, d: not s.startswith("x/")),
    "allow ingress to x from namespace y by label": (
        policy("from-y", "x", {"podSelector": {}, "ingress": [{"from": [
            {"namespaceSelector": {"matchLabels": {"ns": "y"}}}]}]}),
        lambda s, d: not d.startswith("x/") or s.startswith("y/")),
    "allow from pod b in namespace y (one peer: AND)": (
        policy("and", "x", {"podSelector": {"matchLabels": {"pod": "a"}}, "ingress": [{"from": [
            {"namespaceSelector": {"matchLabels": {"ns": "y"}}, "podSelector": {"matchLabels": {"pod": "b"}}}]}]}),
        lambda s, d: d != "x/a" or s == "y/b"),
    "allow from namespace y or pod b of x (two peers: OR)": (
        policy("or", "x", {"podSelector": {"matchLabels": {"pod": "a"}}, "ingress": [{"from": [
            {"namespaceSelector": {"matchLabels": {"ns": "y"}}}, {"podSelector": {"matchLabels": {"pod": "b"}}}]}]}),
        lambda s, d: d != "x/a" or s.startswith("y/") or s == "x/b"),
    "matchExpressions: from pods not b or c": (
        policy("expr", "x", {"podSelector": {"matchLabels": {"pod": "a"}}, "ingress": [{"from": [
            {"namespaceSelector": {},
             "podSelector": {"matchExpressions": [{"key": "pod", "operator": "NotIn", "values": ["b", "c"]}]}}]}]}),
        lambda s, d: d != "x/a" or s.endswith("/a")),
    "ipBlock with except": (
        policy("block", "x", {"podSelector": {"matchLabels": {"pod": "a"}}, "ingress": [{"from": [
            {"ipBlock": {"cidr": "10.244.0.0/16", "except": ["10.244.2.11/32"]}}]}]}),
        lambda s, d: d != "x/a" or s != "y/b"),
    "egress to a CIDR only (z's pods)": (
        policy("to-z", "x", {"podSelector": {"matchLabels": {"pod": "a"}}, "policyTypes": ["Egress"],
                             "egress": [{"to": [{"ipBlock": {"cidr": "10.244.3.0/24"}}]}]}),
        lambda s, d: s != "x/a" or d.startswith("z/")),
    "several policies add up": (
        policy("from-y", "x", {"podSelector": {}, "ingress": [{"from": [
            {"namespaceSelector": {"matchLabels": {"ns": "y"}}}]}]})
        + "---\n" + policy("from-z", "x", {"podSelector": {}, "ingress": [{"from": [
            {"namespaceSelector": {"matchLabels": {"ns": "z"}}}]}]}),
        lambda s, d: not d.startswith("x/") or not s.startswith("x/")),
    "both directions: x/a may only talk to itself": (
        policy("self", "x", {"podSelector": {"matchLabels": {"pod": "a"}}, "policyTypes": ["Ingress", "Egress"],
                             "ingress": [{"from": [{"podSelector": {"matchLabels": {"pod": "a"}}}]}],
                             "egress": [{"to": [{"podSelector": {"matchLabels": {"pod": "a"}}}]}]}),
        lambda s, d: (s == "x/a") == (d == "x/a")),
}


@pytest.mark.parametrize("case", CASES)
def test_the_truth_table_of_each_upstream_case(case):
    text, allowed_when = CASES[case]
    objects = with_policies(cluster(), text) if text else cluster()
    assert matrix(objects) == expect(allowed_when)


def test_ports_by_number_range_and_name_and_protocol():
    spec = {"podSelector": {"matchLabels": {"pod": "a"}}, "ingress": [{"ports": [{"port": "serve-81-tcp"}]}]}
    objects = with_policies(cluster(), policy("named", "x", spec))
    assert matrix(objects, 81)[("y/b", "x/a")] and not matrix(objects, 80)[("y/b", "x/a")]
    assert not matrix(objects, 81, "UDP")[("y/b", "x/a")]  # the name is the TCP port's
    ranged = with_policies(cluster(), policy("range", "x", {"podSelector": {"matchLabels": {"pod": "a"}}, "ingress": [
        {"ports": [{"port": 80, "endPort": 81, "protocol": "UDP"}]}]}))
    assert matrix(ranged, 81, "UDP")[("y/b", "x/a")] and not matrix(ranged, 81, "TCP")[("y/b", "x/a")]
    unknown = with_policies(cluster(), policy("nobody", "x", {"podSelector": {"matchLabels": {"pod": "a"}},
                                                              "ingress": [{"ports": [{"port": "no-such"}]}]}))
    assert not any(allowed for (s, d), allowed in matrix(unknown, 80).items() if d == "x/a" and s != "x/a")


def test_a_verdict_names_the_policy_and_the_direction():
    objects = with_policies(cluster(), CASES["allow from pod b in namespace y (one peer: AND)"][0])
    found, spaces = policies(objects), namespace_labels(objects)
    eps = {k: pod_endpoint(p) for k, p in objects.pods.items()}
    allowed = verdict(eps["y/b"], eps["x/a"], 80, "TCP", found, spaces)
    assert allowed.allowed and allowed.reason == "allowed by x/and (ingress rule 1)"
    denied = verdict(eps["z/b"], eps["x/a"], 80, "TCP", found, spaces)
    assert not denied.allowed and denied.direction == "ingress" and "isolated by x/and" in denied.reason
    assert verdict(eps["z/b"], eps["x/a"], 80, "TCP", found, spaces, same_node=True).allowed


def test_the_table_holds_the_selected_pods_the_peers_and_a_default_deny():
    objects = with_policies(cluster(), CASES["ipBlock with except"][0] + "---\n" + policy("named", "y", {
        "podSelector": {}, "policyTypes": ["Egress"],
        "egress": [{"ports": [{"port": "serve-80-udp", "protocol": "UDP"}]}]}))
    table = render_policy(objects)
    x, y = policy_id(policies(objects)[0]), policy_id(policies(objects)[1])
    sets, chains = table["sets"], table["chains"]
    assert sets[f"{x}-pods"][1] == ["10.244.1.10"]
    assert sets["ingress-isolated"][1] == ["10.244.1.10"]
    assert sets["egress-isolated"][1] == ["10.244.2.10", "10.244.2.11", "10.244.2.12"]
    # 10.244.0.0/16 minus 10.244.2.11/32, as prefixes an interval set takes
    assert "10.244.2.11/32" not in sets[f"{x}-in0"][1] and "10.244.2.10/32" in sets[f"{x}-in0"][1]
    assert "10.244.128.0/17" in sets[f"{x}-in0"][1] and len(sets[f"{x}-in0"][1]) == 16
    assert sets[f"{y}-eg0-named"][1] == sorted(f"10.244.{i}.{j} . udp . 80" for i in (1, 2, 3) for j in (10, 11, 12))
    assert chains["ingress"] == [f'ip daddr @{x}-pods ip saddr @{x}-in0 counter return '
                                 'comment "x/block ingress rule 1"',
                                 'counter drop comment "default deny ingress"']
    assert chains["egress"][0] == (f"ip saddr @{y}-pods ip daddr . meta l4proto . th dport @{y}-eg0-named counter "
                                   f'return comment "y/named egress rule 1"')
    assert chains["forward"][1:] == ["ct state established,related accept",
                                     'iifname "cni0" ip saddr @egress-isolated jump egress',
                                     'oifname "cni0" ip daddr @ingress-isolated jump ingress']


def test_a_new_pod_changes_set_elements_only_and_goes_into_its_sets_first():
    objects = with_policies(cluster(), CASES["deny all ingress in x"][0])
    before = render_policy(objects)
    new = Pod("d", "x", labels={"pod": "d"}, ip="10.244.1.20", node="node1")
    assert policy_sets(objects, new) == sorted([f"{policy_id(policies(objects)[0])}-pods", "ingress-isolated"])
    objects.pods["x/d"] = new
    after = render_policy(objects)
    assert after["chains"] == before["chains"]
    assert {k: v[0] for k, v in after["sets"].items()} == {k: v[0] for k, v in before["sets"].items()}
    assert "10.244.1.20" in after["sets"]["ingress-isolated"][1]
    assert policy_sets(objects, replace(new, namespace="y")) == []


def test_no_policy_no_table():
    assert render_policy(cluster()) is None
    assert policy_sets(cluster(), cluster().pods["x/a"]) == []


BAD = {
    "operator": ({"podSelector": {"matchExpressions": [{"key": "a", "operator": "Inn", "values": ["x"]}]}},
                 "spec.podSelector.matchExpressions[0].operator: 'Inn' is not a selector operator"),
    "values of Exists": ({"podSelector": {"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]}},
                         "Exists takes no values"),
    "unknown field": ({"podSelector": {}, "ingres": []},
                      "spec: unknown field 'ingres'; see `lab explain networkpolicy.spec`"),
    "endPort without port": ({"podSelector": {}, "ingress": [{"ports": [{"endPort": 90}]}]},
                             "spec.ingress[0].ports[0].endPort: endPort needs a numeric port"),
    "endPort below port": ({"podSelector": {}, "ingress": [{"ports": [{"port": 90, "endPort": 80}]}]},
                           "endPort: 80 is below port 90"),
    "bad CIDR": ({"podSelector": {}, "ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.300/8"}}]}]},
                 "spec.ingress[0].from[0].ipBlock.cidr: '10.0.0.300/8' is not an IPv4 CIDR"),
    "except outside": ({"podSelector": {}, "ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/8",
                                                                               "except": ["192.168.0.0/16"]}}]}]},
                       "ipBlock.except[0]: 192.168.0.0/16 is not inside 10.0.0.0/8"),
    "SCTP": ({"podSelector": {}, "ingress": [{"ports": [{"port": 80, "protocol": "SCTP"}]}]},
             "SCTP: the lab's pods serve TCP and UDP only"),
    "ipBlock with a selector": ({"podSelector": {}, "ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/8"},
                                                                          "podSelector": {}}]}]},
                                "ipBlock goes alone in a peer"),
    "policy type": ({"podSelector": {}, "policyTypes": ["Ingres"]}, "'Ingres' is not a policy type"),
    "label value": ({"podSelector": {"matchLabels": {"app": "-bad"}}}, "label value '-bad'"),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_policies_are_one_line_errors_naming_file_and_field(case):
    spec, message = BAD[case]
    with pytest.raises(InputError) as caught:
        load_text(policy("p", "x", spec), "bad.yaml")
    text = str(caught.value)
    assert text.startswith("bad.yaml") and message in text and "\n" not in text


def test_objects_need_their_namespace_and_a_namespace_gets_its_name_label():
    [ns] = load_text("apiVersion: v1\nkind: Namespace\nmetadata: {name: team, labels: {env: dev}}\n", "ns.yaml")
    assert ns.labels == {"env": "dev", "kubernetes.io/metadata.name": "team"}
    policy_in_team = load_text(policy("p", "team", {"podSelector": {}}), "p.yaml")
    with pytest.raises(InputError, match='p.yaml.*: metadata.namespace: Error from server \\(NotFound\\): '
                                         'namespaces "team" not found'):
        require_namespaces(policy_in_team, LabObjects())
    require_namespaces([ns, *policy_in_team], LabObjects())  # applied together: fine


def kernel_allows(table, src: dict, dst: dict, port: int, protocol: str) -> bool:
    """The rendered table, traced on paper on the source's node and then the destination's (one node when they
    share it), as the packet crosses their forward hooks."""
    from orchestrator.layers.policy.trace import PolicyPacket, judge
    if src.node == dst.node:
        hops = [("cni0", "cni0")]
    else:
        hops = [("cni0", "flannel.1"), ("flannel.1", "cni0")]
    return all(judge(table, PolicyPacket(src.ip, dst.ip, protocol.lower(), port, iif, oif))[0]
               for iif, oif in hops)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("port, protocol", [(80, "TCP"), (81, "UDP")])
def test_the_rendered_table_traced_on_paper_agrees_with_the_semantics(case, port, protocol):
    text, _ = CASES[case]
    objects = with_policies(cluster(), text) if text else cluster()
    table = render_policy(objects)
    expected = matrix(objects, port, protocol)
    pods = objects.pods
    traced = {(s, d): s == d or kernel_allows(table, pods[s], pods[d], port, protocol) for s, d in expected}
    assert traced == expected


def test_named_ports_and_ranges_traced_on_paper():
    from orchestrator.layers.policy.trace import PolicyPacket, judge
    objects = with_policies(cluster(), policy("named", "x", {"podSelector": {"matchLabels": {"pod": "a"}},
                                                             "ingress": [{"ports": [{"port": "serve-81-tcp"},
                                                                                    {"port": 90, "endPort": 99}]}]}))
    table = render_policy(objects)
    into_a = lambda port, proto="tcp": judge(table, PolicyPacket("10.244.2.10", "10.244.1.10", proto, port,  # noqa: E731
                                                                 "flannel.1", "cni0"))
    assert into_a(81)[0] and into_a(95)[0] and not into_a(80)[0] and not into_a(81, "udp")[0]
    assert into_a(80)[1] == "default deny ingress" and into_a(81)[1] == "x/named ingress rule 1"


def test_selectors_that_match_no_pod_are_named_a_typo_shows_up():
    from orchestrator.layers.policy.plan import selectors_matching_nothing
    typo = policy("allow", "x", {"podSelector": {"matchLabels": {"pod": "a"}}, "ingress": [{"from": [
        {"podSelector": {"matchLabels": {"pod": "bb"}}}, {"namespaceSelector": {"matchLabels": {"ns": "y"}}}]}]})
    assert selectors_matching_nothing(with_policies(cluster(), typo)) == [
        "x/allow: ingress rule 1, peer 1 (podSelector pod=bb) matches no pod"]
    nobody = policy("deny", "x", {"podSelector": {"matchLabels": {"pod": "zz"}}, "policyTypes": ["Ingress"]})
    assert selectors_matching_nothing(with_policies(cluster(), nobody)) == [
        "x/deny: spec.podSelector pod=zz selects no pod of namespace x"]
    assert selectors_matching_nothing(with_policies(cluster(), CASES["ipBlock with except"][0])) == []

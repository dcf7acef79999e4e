"""The NetworkPolicy faults of `lab break` (a forgotten default deny, a typo in a selector), planned on paper: what
they apply, what the lab meant instead, and which pod pairs `lab verify` then holds to that intent."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest

from orchestrator.core.errors import InputError
from orchestrator.core.model import Cluster, Inventory, Node, Ssh
from orchestrator.core.objects import Endpoint, LabObjects, Pod
from orchestrator.kinds import parse, plan
from orchestrator.layers.policy.plan import selectors_matching_nothing
from orchestrator.verify.checks import plan_checks
from orchestrator.verify.policy_faults import deny_all, intended_objects, selector_typo, typo

INV = Inventory("lab.yaml", Cluster("demo"), tuple(
    Node(f"node{i}", IPv4Address(f"198.18.0.{10 + i}"), f"198.18.0.{10 + i}", Ssh()) for i in (1, 2)))


def pod(name: str, app: str, node: str, ip: str, namespace: str = "default") -> Pod:
    return Pod(name=name, namespace=namespace, labels={"app": app}, node=node, ip=ip, tcp=[80])


def lab() -> LabObjects:
    pods = [pod("web-1", "nginx", "node1", "10.244.0.2"), pod("web-2", "nginx", "node2", "10.244.1.2"),
            pod("client", "client", "node1", "10.244.0.3"), pod("other", "other", "node2", "10.244.1.3")]
    return LabObjects(subnets={"node1": "10.244.0.0/24", "node2": "10.244.1.0/24"},
                      endpoints={"default/web": {"": [Endpoint("10.244.0.2", 80, "node1", "web-1"),
                                                      Endpoint("10.244.1.2", 80, "node2", "web-2")]}},
                      pods={p.key: p for p in pods})


def applied(objects: LabObjects, wrong) -> LabObjects:
    plan(Cluster(name="lab"), [], objects, [parse(wrong.document, "lab break", lambda w: None)], "t")
    return objects


def cells(objects: LabObjects, intended: LabObjects | None) -> dict:
    """(from, to) -> what the TCP check of that pair wants: 'open' or 'closed'."""
    def app(name: str) -> str:
        return name.split("/")[-1].split("-")[0]
    return {(app(c.row), app(c.col)): c for c in plan_checks(INV, objects, [], intended)
            if c.family == "pod-to-pod" and c.target["proto"] == "tcp"}


def wants(checks: dict) -> dict:
    return {pair: "closed" if c.want == ("closed",) else "open" for pair, c in checks.items()}


def test_typos_swap_two_letters_as_fingers_do():
    assert typo("nginx") == "ngnix" and typo("client") == "clinet" and typo("aa") == "aaa"
    assert all(typo(word) != word for word in ("a", "ab", "frontend", "db"))


def test_the_selector_typo_isolates_the_servers_and_admits_nobody_while_the_lab_meant_the_client():
    objects = lab()
    wrong = selector_typo(objects, "node1")
    assert wrong.key == "default/nginx-allow-client"
    assert wrong.document["spec"]["ingress"][0]["from"][0]["podSelector"] == {"matchLabels": {"app": "clinet"}}
    assert wrong.meant["ingress"][0]["from"][0]["podSelector"] == {"matchLabels": {"app": "client"}}
    assert "app=clinet" in wrong.summary
    objects = applied(objects, wrong)
    assert selectors_matching_nothing(objects) == [
        "default/nginx-allow-client: ingress rule 1, peer 1 (podSelector app=clinet) matches no pod"]
    intended = intended_objects(objects, [wrong.record("selector-typo")])
    checks = cells(objects, intended)
    # held to the intent: the client is meant to get into nginx; the other pod is kept out, as the policy says
    assert wants(checks)[("client", "web")] == "open" and wants(checks)[("other", "web")] == "closed"
    assert wants(checks)[("web", "client")] == "open"
    meant_open = checks[("client", "web")]
    assert "default/nginx-allow-client" in meant_open.layer and "meant to be allowed" in meant_open.layer
    assert "lab trace default/client default/web-" in meant_open.show
    # without the intent the same lab is judged by its policies alone: client -> nginx blocked
    assert wants(cells(objects, None))[("client", "web")] == "closed"


def test_once_the_user_corrects_the_selector_the_intent_and_the_policies_agree():
    objects = lab()
    wrong = selector_typo(objects, "node1")
    objects = applied(objects, wrong)
    records = [wrong.record("selector-typo")]
    objects.policies[wrong.key].spec = wrong.meant
    assert wants(cells(objects, intended_objects(objects, records))) == wants(cells(objects, None))
    # deleting the policy instead opens nginx to every pod, which the lab did not mean either
    del objects.policies[wrong.key]
    held = cells(objects, intended_objects(objects, records))
    assert wants(held)[("other", "web")] == "closed" and "meant to be blocked" in held[("other", "web")].layer


def test_a_stray_default_deny_is_meant_away_and_every_pair_into_its_namespace_is_held_open():
    objects = lab()
    wrong = deny_all(objects, "node2")
    assert wrong.key == "default/default-deny-ingress" and wrong.meant is None
    objects = applied(objects, wrong)
    intended = intended_objects(objects, [wrong.record("deny-all")])
    assert wrong.key not in intended.policies and wrong.key in objects.policies
    assert set(wants(cells(objects, intended)).values()) == {"open"}
    assert wants(cells(objects, None))[("client", "web")] == "closed"  # judged by its policies alone
    # a second one does not collide with the first
    assert deny_all(objects, "node2").key == "default/default-deny-ingress-2"


def test_faults_say_what_they_need_when_the_lab_has_too_few_pods():
    objects = lab()
    objects.pods = {k: p for k, p in objects.pods.items() if p.labels["app"] == "nginx"}
    with pytest.raises(InputError, match="two pods with different labels in one namespace"):
        selector_typo(objects, "node1")
    objects.pods = {}
    with pytest.raises(InputError, match="needs a pod; apply examples/nginx.yaml"):
        deny_all(objects, "node1")


def test_no_fault_no_intent():
    assert intended_objects(lab(), []) is None

"""`lab verify` with a node that does not answer over SSH: its checks are not probed but fail as that node's,
named once, and every other check is probed as usual."""

from __future__ import annotations

import io
from ipaddress import IPv4Address

from rich.console import Console

from orchestrator.agent.contract import VERBS, FlushCaches, ProbeFrom
from orchestrator.agent.probes import PROBE_WORKERS
from orchestrator.core.model import Cluster, Inventory, Node, Ssh
from orchestrator.core.objects import LabObjects, Pod
from orchestrator.core.transport import FleetResult, NodeError, Result
from orchestrator.verify.checks import plan_checks
from orchestrator.verify.probes import PROBE_TIMEOUT, batch_timeout, run_checks
from orchestrator.verify.report import _Collector, print_report

INV = Inventory("lab.yaml", Cluster("demo"), tuple(
    Node(f"node{i}", IPv4Address(f"198.18.0.{10 + i}"), f"198.18.0.{10 + i}", Ssh()) for i in (1, 2, 3)))


class Nodes:
    """node3 does not answer; the others' agents answer every probe as the pod it asks for would."""

    def __init__(self, pods: dict[str, Pod]):
        self.names = {p.ip: p.name for p in pods.values()}
        self.probed_on: set[str] = set()
        self.nodes = {n.name: n for n in INV.nodes}

    def run(self, node, argv, stdin=None, **kwargs):
        node = self.nodes[node] if isinstance(node, str) else node
        if node.name == "node3":
            raise NodeError("node3", "lost the SSH connection (the node did not answer for 15 s)")
        if argv == ["true"]:
            return Result(node.name, "true", 0, "", "")
        request = VERBS[argv[-1]].from_json(stdin)
        if isinstance(request, FlushCaches):
            return Result(node.name, " ".join(argv), 0, request.ANSWER().to_json(), "")
        assert isinstance(request, ProbeFrom)
        self.probed_on.add(node.name)
        answer = request.ANSWER(results=[[{"ok": True, "reply": self.names.get(t.get("host"), "x") + " 10.244.1.9"}
                                          for t in source["targets"]] for source in request.sources])
        return Result(node.name, " ".join(argv), 0, answer.to_json(), "")

    def run_all(self, action, nodes=None):
        found = FleetResult()
        for node in nodes if nodes is not None else INV.nodes:
            try:
                found[node.name] = action(node)
            except NodeError as exc:
                found[node.name] = exc
        return found


def lab() -> LabObjects:
    pods = [Pod(f"web-{i}", "default", labels={"app": "web"}, node=f"node{i}", ip=f"10.244.{i}.2", tcp=[80], udp=[80])
            for i in (1, 2, 3)]
    return LabObjects(subnets={n.name: f"10.244.{i + 1}.0/24" for i, n in enumerate(INV.nodes)},
                      pods={p.key: p for p in pods})


def test_checks_that_need_an_unreachable_node_are_not_probed_and_name_it_once():
    objects = lab()
    nodes = Nodes(objects.pods)
    checks = [c for c in plan_checks(INV, objects) if c.family == "pod-to-pod"]
    outcomes = run_checks(INV, objects, nodes, checks)
    needs_node3 = {o.check.id for o in outcomes if "web-3" in (o.check.source + o.check.target.get("host", "")
                                                                + nodes.names.get(o.check.target.get("host"), ""))}
    assert needs_node3 and {o.check.id for o in outcomes if o.unreachable} == needs_node3
    assert all(o.unreachable == "node3" and not o.ok and o.reason.startswith("not probed: node3 is unreachable")
               for o in outcomes if o.unreachable)
    assert "node3" not in nodes.probed_on and nodes.probed_on == {"node1", "node2"}
    printed = io.StringIO()
    print_report(Console(file=printed, width=200), outcomes, _Collector(), 1.0)
    text = printed.getvalue()
    assert text.count("node3: unreachable over SSH since") == 1
    assert f"{len(needs_node3)} check(s) not probed" in text
    # no line (and no hint about the overlay) for a check that failed only for node3
    assert not any(f"✘ {o.check.label}:" in text for o in outcomes if o.unreachable)


def test_a_source_whose_every_probe_times_out_still_gets_each_answer_back():
    many = [{"proto": "tcp", "host": "10.244.1.2", "port": 80}] * (PROBE_WORKERS * 10 + 1)
    worst = 11 * 2 * PROBE_TIMEOUT  # 11 rounds of workers, each a connect and a reply that time out
    assert batch_timeout(many) > worst and batch_timeout(many[:1]) < worst


class KilledOnce(Nodes):
    """Every node answers, but the first prober is ended by a signal: sshd reports no exit status (paramiko's
    -1) and no answer."""

    def __init__(self, pods: dict[str, Pod]):
        super().__init__(pods)
        self.killed = 0

    def run(self, node, argv, stdin=None, **kwargs):
        node = self.nodes[node] if isinstance(node, str) else node
        if node.name == "node3":
            return super().run(self.nodes["node1"], argv, stdin, **kwargs)
        if argv[-1] == "probe-from" and not self.killed:
            self.killed += 1
            return Result(node.name, " ".join(argv), -1, "", "")
        return super().run(node, argv, stdin, **kwargs)


def test_a_prober_ended_by_a_signal_is_run_once_more_and_its_checks_are_judged_on_the_answer():
    objects = lab()
    nodes = KilledOnce(objects.pods)
    outcomes = run_checks(INV, objects, nodes, [c for c in plan_checks(INV, objects) if c.family == "pod-to-pod"])
    assert nodes.killed == 1  # a node's prober was ended once
    assert outcomes and not any("could not probe" in o.reason for o in outcomes)  # and its second run answered

"""The lessons (playbooks/*.yaml): every shipped one loads and renders; bad playbooks get one-line errors."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

import pytest

from orchestrator.core.errors import InputError
from orchestrator.core.model import Cluster, Inventory, Node, Ssh
from orchestrator.core.objects import LabObjects
from orchestrator.lessons import model as lessons


TALK_ORDER = ["01-namespaces", "02-netns-veth", "03-netns-connected", "04-bridge", "05-two-hosts", "06-docker",
              "07-cni", "08-network-model", "09-vxlan", "10-services", "11-dns", "12-isolation",
              "13-troubleshooting", "14-loadbalancer", "15-gateway-api", "16-ingress"]


def inventory(nodes: int = 3, **cluster) -> Inventory:
    return Inventory("lab.yaml", Cluster("demo", **cluster),
                     tuple(Node(f"node{i}", IPv4Address(f"198.18.0.{10 + i}"), f"198.18.0.{10 + i}", Ssh())
                           for i in range(1, nodes + 1)))


DEPLOYED = LabObjects.from_json({
    "subnets": {"node1": "10.244.0.0/24", "node2": "10.244.1.0/24", "node3": "10.244.2.0/24"},
    "pods": {"default/web-1": {"name": "web-1", "namespace": "default", "node": "node1"}}})


def test_the_talks_lessons_ship_in_order():
    assert [lesson.id for lesson in lessons.load_all()] == TALK_ORDER


@pytest.mark.parametrize("lesson", lessons.load_all(), ids=lambda lesson: lesson.id)
def test_every_lesson_renders_for_a_lab_and_checks_what_it_teaches(lesson):
    ctx = lessons.lesson_context(lesson, inventory(), DEPLOYED, {name: "/usr/lib/cni" for name in lesson.facts})
    texts = [lesson.title, lesson.summary]
    for step in lesson.steps:
        texts += [step.title, step.explain, *(c.run for c in step.commands)]
        texts += [t for c in step.checks for t in (c.that, c.run, c.expect or "")]
    rendered = [lessons.render(text, ctx) for text in texts + [c.run for c in lesson.cleanup]]
    assert all("{{" not in text for text in rendered)
    assert sum(len(step.checks) for step in lesson.steps) >= 2, "a lesson proves what it teaches"
    assert lesson.cleanup, "a lesson undoes itself"


def test_lesson_names_carry_the_lab_name():
    ctx = lessons.lesson_context(lessons.find("04"), inventory(), LabObjects(), {})
    assert ctx["net1"] == "demo-l04-net1"
    assert lessons.render("ip netns add {{ net1 }} on {{ node1.name }} {{ node1.address }}", ctx) == \
        "ip netns add demo-l04-net1 on node1 198.18.0.11"


@pytest.mark.parametrize("name", ["04-bridge", "04", "4", "bridge"])
def test_a_lesson_is_found_by_id_number_or_name(name):
    assert lessons.find(name).id == "04-bridge"


def test_an_unknown_lesson_lists_the_known_ones():
    with pytest.raises(InputError, match="no lesson 'routing'.*01-namespaces"):
        lessons.find("routing")


def test_steps_that_need_a_deployed_lab_are_skipped_without_one():
    lesson = lessons.find("08")
    last = lesson.steps[-1]
    assert last.when == "deployed"
    assert not lessons.step_applies(last, lessons.lesson_context(lesson, inventory(), LabObjects(), {}))
    assert lessons.step_applies(last, lessons.lesson_context(lesson, inventory(), DEPLOYED, {}))


def test_a_lesson_needing_pods_says_what_to_run():
    assert lessons.missing_needs(lessons.find("13"), LabObjects()) == ["lab deploy", "lab apply -f examples/"]
    assert lessons.missing_needs(lessons.find("13"), DEPLOYED) == []


def test_a_lesson_needs_enough_nodes():
    with pytest.raises(InputError, match="needs 2 nodes.*lab up --nodes 2"):
        lessons.lesson_context(lessons.find("05"), inventory(nodes=1), LabObjects(), {})


def test_a_lesson_refuses_to_run_on_addresses_the_lab_uses():
    with pytest.raises(InputError, match="10.200.4.0/24.*overlaps the lab's cluster_cidr"):
        lessons.lesson_context(lessons.find("04"), inventory(cluster_cidr=IPv4Network("10.200.0.0/16")),
                               LabObjects(), {})


GOOD = """
id: 99-test
title: t
nodes: 2
steps:
  - title: s
    run:
      - echo one
      - on: node2
        run: echo two
    check:
      - that: it works
        run: "true"
"""


def test_a_bare_on_key_means_the_node_not_yaml_true():
    lesson = lessons.parse_lesson("p.yaml", GOOD)
    assert [c.on for c in lesson.steps[0].commands] == ["node1", "node2"]


@pytest.mark.parametrize("change, message", [
    (("    run:\n", "    runn:\n"), "p.yaml: steps[0].runn: unknown key (did you mean 'run'?); "
                                  "allowed here: check, explain, on, run, title, transient, when"),
    (("on: node2", "on: node3"), "p.yaml: steps[0].run[1].on: 'node3' is not a node of this lesson; use one of: "
                                 "node1, node2 (or raise `nodes:`)"),
    (("nodes: 2", "nodes: 7"), "p.yaml: nodes: 7 is not 1, 2 or 3; say how many nodes the lesson uses"),
    (("echo one", "echo {{ one"), "p.yaml: steps[0]: template error"),
    (("title: t\n", "title: t\n  bad"), "p.yaml: line"),
    (("      - that: it works\n", "      - what: it works\n"), "p.yaml: steps[0].check[0].what: unknown key"),
])
def test_bad_playbooks_get_one_line_errors_naming_file_and_field(change, message):
    with pytest.raises(InputError) as err:
        lessons.parse_lesson("p.yaml", GOOD.replace(*change))
    assert str(err.value).startswith(message)
    assert "\n" not in str(err.value)

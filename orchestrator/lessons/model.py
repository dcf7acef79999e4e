"""Lessons of the talk as data: `playbooks/NN-name.yaml`, loaded, validated and rendered (pure).

A lesson is a list of steps; each step explains itself, runs commands on the lab's nodes (templated
with the lab's real names and addresses) and proves it worked with checks. Playing one on a lab is
`orchestrator.lessons.player`'s part.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any, Optional

import jinja2
import yaml

from orchestrator.core.errors import InputError, field_error, yaml_error
from orchestrator.core.inventory import Section
from orchestrator.core.model import Inventory, dns_ip
from orchestrator.core.objects import LabObjects


PACKAGE = "orchestrator.playbooks"
LOCAL = "lab"  # a command for the `lab` CLI itself, not for a node
NEEDS = ("deployed", "pods")


@dataclass(frozen=True)
class Command:
    """One shell command on a node (or a `lab` subcommand when `on` is LOCAL)."""

    on: str
    run: str
    fails: bool = False  # shown failing on purpose: succeeding would mean the lesson's premise is wrong
    explore: bool = False  # shown to look around: its exit code does not matter (e.g. while the lab is broken)


@dataclass(frozen=True)
class Check:
    """A command that proves a step worked: exit 0 (or non-zero with `fails`) and `expect` in its output."""

    that: str
    on: str
    run: str
    expect: Optional[str] = None
    fails: bool = False


@dataclass(frozen=True)
class Step:
    title: str
    explain: str
    commands: tuple[Command, ...] = ()
    checks: tuple[Check, ...] = ()
    when: Optional[str] = None  # a Jinja expression; the step is skipped when it is false
    transient: bool = False  # its checks hold only until a later step (e.g. ADD before DEL): --check alone skips them


@dataclass(frozen=True)
class Lesson:
    id: str
    title: str
    talk: str  # the talk's chapter this lesson follows
    summary: str
    nodes: int
    needs: tuple[str, ...]
    networks: tuple[IPv4Network, ...]  # address ranges the lesson uses: must not overlap the lab's
    sysctls: dict[str, str]  # set on the lesson's nodes, put back by cleanup
    vars: dict[str, str]
    facts: dict[str, str]  # name -> shell command on node1, its output becomes a template value
    steps: tuple[Step, ...]
    cleanup: tuple[Command, ...]


# ---- loading ------------------------------------------------------------------------------------


def _section(source: str, where: str, data: Any, allowed: set[str]) -> Section:
    """One mapping of a playbook, read like an inventory's (one-line errors naming file and field)."""
    if isinstance(data, dict):  # YAML 1.1 reads a bare `on:` key as true; in a playbook it means the node
        data = {("on" if key is True else key): value for key, value in data.items()}
    return Section(data, where, source, Path("."), tuple(sorted(allowed)))


def _text(sec: Section, key: str, default: Optional[str] = None) -> str:
    value = sec.string(key, required=True) if default is None else sec.string(key, default)
    return value.strip()


def _command(source: str, where: str, item: Any, default_on: str, roles: list[str]) -> Command:
    if isinstance(item, str):
        return Command(default_on, item.strip())
    sec = _section(source, where, item, {"on", "run", "fails", "explore", LOCAL})
    flags = {"fails": sec.boolean("fails", False), "explore": sec.boolean("explore", False)}
    if sec.has(LOCAL):
        return Command(LOCAL, _text(sec, LOCAL), **flags)
    return Command(_role(sec, default_on, roles), _text(sec, "run"), **flags)


def _role(sec: Section, default_on: str, roles: list[str]) -> str:
    on = _text(sec, "on", default_on)
    if on not in roles and on != LOCAL:
        raise sec.error(sec.path("on"), f"{on!r} is not a node of this lesson",
                        f"use one of: {', '.join(roles)} (or raise `nodes:`)")
    return on


def parse_lesson(source: str, text: str) -> Lesson:
    """A validated Lesson from YAML text; an InputError naming the file and field otherwise."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise yaml_error(source, exc) from None
    if not isinstance(data, dict):
        raise field_error(source, "top level", f"expected a mapping, got {type(data).__name__}",
                          "see playbooks/README.md for the format")
    top = _section(source, "", data, {"id", "title", "talk", "summary", "nodes", "needs", "networks", "sysctls",
                                      "vars", "facts", "steps", "cleanup"})
    nodes = top.raw("nodes", 1)
    if isinstance(nodes, bool) or not isinstance(nodes, int) or not 1 <= nodes <= 3:
        raise field_error(source, "nodes", f"{nodes!r} is not 1, 2 or 3", "say how many nodes the lesson uses")
    roles = [f"node{i}" for i in range(1, nodes + 1)]
    needs = tuple(str(n) for n in top.items("needs"))
    for need in needs:
        if need not in NEEDS:
            raise field_error(source, "needs", f"unknown need {need!r}", f"use {' or '.join(NEEDS)}")
    networks = []
    for i, net in enumerate(top.items("networks")):
        try:
            networks.append(IPv4Network(str(net)))
        except ValueError:
            raise field_error(source, f"networks[{i}]", f"{net!r} is not an IPv4 network",
                              "write it as 10.200.4.0/24") from None
    steps = []
    for i, raw in enumerate(top.items("steps")):
        f = _section(source, f"steps[{i}]", raw, {"title", "explain", "on", "run", "check", "when", "transient"})
        on = _role(f, "node1", roles)
        commands = tuple(_command(source, f"{f.path('run')}[{j}]", c, on, roles) for j, c in enumerate(f.items("run")))
        checks = []
        for j, c in enumerate(f.items("check")):
            cf = _section(source, f"{f.path('check')}[{j}]", c, {"that", "on", "run", "expect", "fails"})
            checks.append(Check(_text(cf, "that"), _role(cf, on, roles), _text(cf, "run"), cf.string("expect"),
                                cf.boolean("fails", False)))
        steps.append(Step(_text(f, "title"), _text(f, "explain", ""), commands, tuple(checks), f.string("when"),
                          f.boolean("transient", False)))
    if not steps:
        raise field_error(source, "steps", "no steps", "add at least one step")
    lesson = Lesson(
        id=_text(top, "id"), title=_text(top, "title"), talk=_text(top, "talk", ""), summary=_text(top, "summary", ""),
        nodes=nodes, needs=needs, networks=tuple(networks), sysctls=top.mapping("sysctls"),
        vars=top.mapping("vars"), facts=top.mapping("facts"), steps=tuple(steps),
        cleanup=tuple(_command(source, f"cleanup[{j}]", c, "node1", roles)
                      for j, c in enumerate(top.items("cleanup"))))
    _check_templates(source, lesson)
    return lesson


def _check_templates(source: str, lesson: Lesson) -> None:
    """Every template must compile, so a typo fails when loading, not half-way through a lesson."""
    env = template_environment()
    texts = [("vars." + k, v) for k, v in lesson.vars.items()] + [("title", lesson.title), ("summary", lesson.summary)]
    for i, step in enumerate(lesson.steps):
        texts += [(f"steps[{i}]", t) for t in (step.title, step.explain, *(c.run for c in step.commands),
                                                *(t for c in step.checks for t in (c.that, c.run)))]
    texts += [(f"cleanup[{i}]", c.run) for i, c in enumerate(lesson.cleanup)]
    for where, text in texts:
        try:
            env.parse(text)
        except jinja2.TemplateSyntaxError as exc:
            raise field_error(source, where, f"template error: {exc.message}", "fix the {{ ... }} expression") from None
    for i, step in enumerate(lesson.steps):
        if step.when:
            try:
                env.compile_expression(step.when)
            except jinja2.TemplateSyntaxError as exc:
                raise field_error(source, f"steps[{i}].when", f"expression error: {exc.message}",
                                  "write a Jinja expression, e.g. deployed") from None


def lesson_files() -> dict[str, Any]:
    """The shipped lessons: id (file name without .yaml) -> resource."""
    folder = resources.files(PACKAGE)
    return {entry.name[:-5]: entry for entry in sorted(folder.iterdir(), key=lambda e: e.name)
            if entry.name.endswith(".yaml")}


def load_all() -> list[Lesson]:
    """Every shipped lesson, in order."""
    return [parse_lesson(f"playbooks/{name}.yaml", entry.read_text()) for name, entry in lesson_files().items()]


def find(name: str) -> Lesson:
    """The lesson `name`: its full id (04-bridge), its number (04, 4) or its name (bridge)."""
    files = lesson_files()
    number, _, word = name.partition("-")
    for lesson_id in files:
        lnum, _, lword = lesson_id.partition("-")
        if name in (lesson_id, lnum, lword) or (number.isdigit() and int(number) == int(lnum) and
                                                 (not word or word == lword)):
            return parse_lesson(f"playbooks/{lesson_id}.yaml", files[lesson_id].read_text())
    raise InputError(f"no lesson {name!r}; `lab play --list` shows them: {', '.join(files)}")


# ---- rendering (pure) ---------------------------------------------------------------------------


@lru_cache(maxsize=1)
def template_environment() -> jinja2.Environment:
    return jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=False)


@lru_cache(maxsize=None)
def _template(text: str) -> jinja2.Template:
    return template_environment().from_string(text)  # each lesson text is compiled once, rendered often


def lesson_context(lesson: Lesson, inv: Inventory, objects: LabObjects, facts: dict[str, str]) -> dict[str, Any]:
    """The values a lesson's templates see: lab, node1..N, cluster, deployed, pods, its vars and facts."""
    if len(inv.nodes) < lesson.nodes:
        raise InputError(f"lesson {lesson.id} needs {lesson.nodes} nodes; {inv.source} has {len(inv.nodes)}: "
                         f"bring up more with `lab up --nodes {lesson.nodes}`")
    cluster = inv.cluster
    taken = {"cluster_cidr": cluster.cluster_cidr, "service_cidr": cluster.service_cidr}
    taken.update({f"node {n.name}": IPv4Network(f"{n.address}/32") for n in inv.nodes})
    for net in lesson.networks:
        for what, used in taken.items():
            if net.overlaps(used):
                raise InputError(f"lesson {lesson.id} uses {net}, which overlaps the lab's {what} ({used}): "
                                 "change the lab's addresses to run it")
    ctx: dict[str, Any] = {
        "lab": inv.name,
        "lesson": lesson.id,
        "cluster": {"cidr": str(cluster.cluster_cidr), "service_cidr": str(cluster.service_cidr),
                    "dns_ip": str(dns_ip(cluster.service_cidr)), "domain": cluster.dns_domain,
                    "proxy_mode": cluster.proxy_mode, "overlay": cluster.overlay.backend},
        "deployed": bool(objects.subnets),
        "manifests": str(resources.files(PACKAGE).joinpath("manifests")),  # the YAML lessons apply
        "pods": sorted(objects.pods.values(), key=lambda p: (p.namespace, p.name)),
        # the address of a Gateway or LoadBalancer Service an earlier step made: the player reads it when it
        # runs a command (LessonPlayer.address_of); here it only names it
        "address_of": lambda kind, name, namespace="default": f"<the address of {kind} {namespace}/{name}>",
    }
    for i, node in enumerate(inv.nodes[:max(lesson.nodes, 1)], start=1):
        ctx[f"node{i}"] = {"name": node.name, "address": str(node.address),
                           "subnet": objects.subnets.get(node.name)}
    ctx.update(facts)
    for key, text in lesson.vars.items():  # in order, so a var may use the ones before it
        ctx[key] = render(text, ctx)
    return ctx


def render(text: str, ctx: dict[str, Any]) -> str:
    return _template(text).render(ctx)


def step_applies(step: Step, ctx: dict[str, Any]) -> bool:
    return not step.when or bool(template_environment().compile_expression(step.when)(ctx))


def missing_needs(lesson: Lesson, objects: LabObjects) -> list[str]:
    """What the lab still lacks for this lesson, as the commands that provide it."""
    missing = []
    if "deployed" in lesson.needs and not objects.subnets:
        missing.append("lab deploy")
    if "pods" in lesson.needs and not any(p.namespace != "kube-system" for p in objects.pods.values()):
        missing.append("lab apply -f examples/")
    return missing

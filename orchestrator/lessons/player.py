"""Plays a lesson (`orchestrator.lessons.model`) on a lab, step by step: explanations, commands with their
output, checks as ✓/✗ lines; cleanup undoes it. The only part of the lessons that talks to nodes.
"""

from __future__ import annotations

import contextlib
import io
import json
import shlex
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from orchestrator.core.errors import InputError, LabError
from orchestrator.core.model import Inventory
from orchestrator.core.state import LabFiles, atomic_write
from orchestrator.core.transport import Transport
from orchestrator.layers.gateway.world import ingress_address, world_of
from orchestrator.lessons.model import Command, LOCAL, Lesson, Step, lesson_context, missing_needs, render, step_applies


CHECK_TRIES = 6
CHECK_PAUSE = 0.5


@dataclass
class Outcome:
    checks_passed: int = 0
    checks_failed: list[str] = field(default_factory=list)
    stopped_after: Optional[int] = None  # the step a student stopped at (q at a --step pause)

    @property
    def ok(self) -> bool:
        return not self.checks_failed


class Player:
    """Plays one lesson on a lab: commands printed before their output, checks as ✓/✗ lines."""

    def __init__(self, lesson: Lesson, inv: Inventory, transport: Transport, show: Callable[[str, str], None],
                 stream: Optional[tuple] = None, run_lab: Optional[Callable[[list[str]], int]] = None):
        self.lesson, self.inv, self.transport = lesson, inv, transport
        self.show = show  # show(kind, text): kind is title|explain|command|ok|fail|note
        self.stream = stream
        self.run_lab = run_lab
        self.files = LabFiles.of(inv.name)
        self.objects = self.files.read_objects()
        self.nodes = {f"node{i}": node for i, node in enumerate(inv.nodes[:lesson.nodes], start=1)}
        self._ctx: Optional[dict[str, Any]] = None

    def context(self) -> dict[str, Any]:
        if self._ctx is None:
            facts = {}
            for name, command in self.lesson.facts.items():
                result = self.transport.run(self.nodes["node1"], ["sh", "-c", command], check=False)
                facts[name] = result.stdout.strip()
                if not facts[name]:
                    raise LabError(f"lesson {self.lesson.id}: {self.nodes['node1'].name} has no {name} "
                                   f"(`{command}` printed nothing): run `lab bootstrap`")
            self._ctx = lesson_context(self.lesson, self.inv, self.objects, facts)
            self._ctx["address_of"] = self.address_of
        return self._ctx

    def address_of(self, kind: str, name: str, namespace: str = "default") -> str:
        """The address the lab gives a Gateway, an Ingress or a LoadBalancer Service now, as `lab get` shows it
        (read when a command is run, so a step may use what an earlier step made)."""
        objects = self.files.read_objects()
        if kind == "gateway":
            found = world_of(objects).addresses.get(f"{namespace}/{name}")
        elif kind == "ingress":
            found = ingress_address(objects, f"{namespace}/{name}")
        else:
            service = objects.services.get(f"{namespace}/{name}")
            found = service.load_balancer_ip if service else None
        return found or "<none>"

    def text(self, template: str) -> str:
        """A lesson's text (title, explanation, check) with the lab's names filled in."""
        return render(template, self.context())

    def require(self) -> None:
        missing = missing_needs(self.lesson, self.objects)
        if missing:
            lab = "a deployed lab with pods" if "pods" in self.lesson.needs else "a deployed lab"
            raise InputError(f"lesson {self.lesson.id} needs {lab}: run {' and '.join(missing)} first")
        self.context()

    # -- the three ways to play

    def play(self, pause: Optional[Callable[[], bool]] = None) -> Outcome:
        """Run every step: explanation, commands with their output, checks. Stops at a failed command."""
        self.require()
        self.cleanup(quiet=True)  # a re-run starts from the same clean slate
        self._set_sysctls()
        outcome = Outcome()
        steps = self._applicable_steps()
        for number, step in enumerate(steps, start=1):
            self.show("title", f"Step {number}/{len(steps)}: {self.text(step.title)}")
            if step.explain:
                self.show("explain", self.text(step.explain))
            for command in step.commands:
                self._run_command(command)
            self._run_checks(step, outcome)
            if pause and number < len(steps) and not pause():
                outcome.stopped_after = number
                break
        return outcome

    def check(self, pause: Optional[Callable[[], bool]] = None) -> Outcome:
        """Only the checks: for a student who typed the commands themselves. With `pause`, step by step:
        show what to type, wait, check that step. Without, check the lesson's end state."""
        self.require()
        outcome = Outcome()
        steps = self._applicable_steps()
        for number, step in enumerate(steps, start=1):
            self.show("title", f"Step {number}/{len(steps)}: {self.text(step.title)}")
            if pause:
                if step.explain:
                    self.show("explain", self.text(step.explain))
                for command in step.commands:
                    self.show("command", self._prompt(command.on, self.text(command.run)))
                if not pause():
                    outcome.stopped_after = number - 1
                    break
            elif step.transient:
                self.show("note", "(its checks hold only until a later step: `--check --step` checks them)")
                continue
            self._run_checks(step, outcome)
        return outcome

    def cleanup(self, quiet: bool = False) -> None:
        """Undo the lesson on its nodes; every cleanup command tolerates what is already gone."""
        ctx = self.context()
        for command in self.lesson.cleanup:
            text = render(command.run, ctx)
            if not quiet:
                self.show("command", self._prompt(command.on, text))
            self._execute(command.on, text, capture=True)
        self._restore_sysctls(quiet)

    # -- helpers

    def _applicable_steps(self) -> list[Step]:
        ctx = self.context()
        steps = []
        for step in self.lesson.steps:
            if step_applies(step, ctx):
                steps.append(step)
            else:
                self.show("note", f"(skipped: {self.text(step.title)} - needs {step.when})")
        return steps

    def _prompt(self, on: str, text: str) -> str:
        return f"$ lab {text}" if on == LOCAL else f"{self.nodes[on].name}$ {text}"

    def _execute(self, on: str, text: str, capture: bool) -> tuple[int, str]:
        """Run `text` on node role `on` (or as `lab` arguments); (exit code, output if captured)."""
        if on == LOCAL:
            if self.run_lab is None:
                raise LabError(f"lesson {self.lesson.id}: `lab {text}` needs the lab CLI")
            if not capture:
                return self.run_lab(shlex.split(text)), ""
            buffer = io.StringIO()
            with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(buffer):
                code = self.run_lab(shlex.split(text))
            return code, buffer.getvalue()
        result = self.transport.run(self.nodes[on], ["bash", "-o", "pipefail", "-c", text], check=False,
                                    stream=None if capture else self.stream)
        return result.exit_code, result.stdout + result.stderr

    def _run_command(self, command: Command) -> None:
        text = render(command.run, self.context())
        self.show("command", self._prompt(command.on, text))
        code, _ = self._execute(command.on, text, capture=False)
        if not command.explore and (code != 0) != command.fails:
            expected = "to fail" if command.fails else "to succeed"
            raise LabError(f"lesson {self.lesson.id}: `{text}` was expected {expected} but exited {code}; "
                           f"undo with `lab play {self.lesson.id} --cleanup`")

    def _run_checks(self, step: Step, outcome: Outcome) -> None:
        ctx = self.context()
        for check in step.checks:
            text = render(check.run, ctx)
            expect = None if check.expect is None else self.text(check.expect)
            for attempt in range(CHECK_TRIES):
                if attempt:
                    time.sleep(CHECK_PAUSE)
                code, output = self._execute(check.on, text, capture=True)
                passed = (code != 0) == check.fails and (expect is None or expect in output)
                if passed:
                    break
            that = self.text(check.that)
            if passed:
                outcome.checks_passed += 1
                self.show("ok", that)
            else:
                outcome.checks_failed.append(that)
                want = f"output containing {expect!r}" if expect is not None else \
                    ("a failure" if check.fails else "exit code 0")
                self.show("fail", f"{that}\n    {self._prompt(check.on, text)}\n    wanted {want}, got exit "
                                  f"{code}: {output.strip()[-300:] or '(no output)'}")

    def _sysctl_file(self):
        return self.files.root / "lessons" / f"{self.lesson.id}.sysctl.json"

    def _set_sysctls(self) -> None:
        if not self.lesson.sysctls:
            return
        saved = {}
        for role, node in self.nodes.items():
            keys = list(self.lesson.sysctls)
            before = self.transport.run(node, ["sysctl", "-n", *keys]).stdout.splitlines()
            saved[role] = dict(zip(keys, before, strict=True))
        atomic_write(self._sysctl_file(), json.dumps(saved))
        settings = [f"{k}={v}" for k, v in self.lesson.sysctls.items()]
        for node in self.nodes.values():
            self.show("command", f"{node.name}$ sysctl -w {' '.join(settings)}")
            self.transport.run(node, ["sysctl", "-q", "-w", *settings])

    def _restore_sysctls(self, quiet: bool) -> None:
        path = self._sysctl_file()
        if not path.exists():
            return
        for role, values in json.loads(path.read_text()).items():
            if role in self.nodes and values:
                settings = [f"{k}={v}" for k, v in values.items()]
                if not quiet:
                    self.show("command", f"{self.nodes[role].name}$ sysctl -w {' '.join(settings)}")
                self.transport.run(self.nodes[role], ["sysctl", "-q", "-w", *settings], check=False)
        path.unlink()

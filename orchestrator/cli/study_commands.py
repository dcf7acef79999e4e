"""Commands for studying and checking: verify, break, fix, play."""

from __future__ import annotations

import sys
from pathlib import Path

from orchestrator.cli.common import err, out, resolve_inventory
from orchestrator.cli.lab_commands import run_deploy
from orchestrator.core.errors import InputError
from orchestrator.core.model import Inventory
from orchestrator.core.events import WARNING, add_event
from orchestrator.core.objects import LabObjects, split_key
from orchestrator.core.state import LabFiles
from orchestrator.core.transport import Transport
from orchestrator.layers.pods.apply import now
from orchestrator.layers.policy.plan import selectors_matching_nothing
from orchestrator.layers.services.plan import service_notes
from orchestrator.lessons import model as lessons
from orchestrator.lessons.player import Player
from orchestrator.verify import kernel_trace
from orchestrator.verify.checks import COVERAGE_AFTER, in_coverage_mode, server_pods


def cmd_verify(args) -> int:
    from orchestrator.verify import report
    inv = resolve_inventory(args.inventory)
    outcomes, collector, seconds = report.verify(inv, junit=args.junit, expect=args.expect,
                                                 all_pairs=args.all_pairs)
    coverage_note(LabFiles.of(inv.name).read_objects(), outcomes, args.all_pairs)
    record_failed_checks(LabFiles.of(inv.name), [o for o in outcomes if not o.ok])
    if args.html:
        Path(args.html).write_text(report.outcomes_html(f"lab {inv.name}: verify", outcomes, collector))
    if args.output == "json":
        print(report.outcomes_json(outcomes, collector))
        ok = all(o.ok for o in outcomes) and not collector.failed
    else:
        ok = report.print_report(out, outcomes, collector, seconds)
        objects = LabFiles.of(inv.name).read_objects()
        for note in selectors_matching_nothing(objects) + service_notes(objects.services, objects.pods):
            err.print(f"note: {note} (a typo? `lab get pods -A --show-labels`)", style="yellow", markup=False,
                      soft_wrap=True)
    return 0 if ok else 1


def coverage_note(objects: LabObjects, outcomes: list, all_pairs: bool) -> None:
    """Say so when the pod matrix was probed in coverage mode (on stderr: -o json stays JSON)."""
    pods = len(server_pods(objects))
    if not in_coverage_mode(pods, all_pairs):
        return
    probed = len({(o.check.source, o.check.target.get("host")) for o in outcomes if o.check.family == "pod-to-pod"})
    err.print(f"note: coverage mode ({pods} pods > {COVERAGE_AFTER}): {probed} of {pods * pods} pod pairs probed - "
              "every pair of nodes, every pod as source and as destination, every pair of NetworkPolicy classes; "
              "--all-pairs probes them all", style="yellow", markup=False, soft_wrap=True)


def record_failed_checks(files: LabFiles, failed: list) -> None:
    """A Warning event CheckFailed on the pod (or node) each failed check started from (`lab describe` shows it)."""
    if not failed:
        return
    with files.lock():
        objects = files.read_objects()
        stamp = now()
        for outcome in failed:
            where, _, name = outcome.check.source.partition(":")
            if where not in ("pod", "node"):
                continue
            namespace, pod = split_key(name) if where == "pod" else ("", name)
            involved = ("Pod" if where == "pod" else "Node", namespace, pod)
            add_event(objects.events, stamp, WARNING, "CheckFailed", involved,
                      f"{outcome.check.label}: {outcome.reason or outcome.unreachable or 'failed'}", "lab-verify")
        files.write_objects(objects)


def cmd_break(args) -> int:
    from orchestrator.verify import faults
    if args.list or not (args.fault or args.reveal):
        for fault in faults.FAULTS.values():
            print(f"{fault.name:<10} {fault.summary} (trips: {fault.trips})")
        return 0
    inv = resolve_inventory(args.inventory)
    files = LabFiles.of(inv.name)
    secret = files.root / "hidden-fault.txt"
    if args.reveal:
        out.print(secret.read_text().strip() if secret.exists() else "no hidden fault: `lab break random` "
                  "hides one", markup=False, highlight=False, soft_wrap=True)
        return 0
    if args.fault == "random":
        name, node = faults.pick_random(inv, files)
        node = args.node or node
        secret.write_text(f"{name} {faults.inject(name, inv, files, node)}\n")
        out.print(f"broke lab {inv.name}: one fault, chosen at random, is hidden somewhere", markup=False)
        out.print("find it with `lab verify` and commands on the nodes; `lab break --reveal` tells; "
                  "repair it with `lab fix`", markup=False)
        return 0
    secret.unlink(missing_ok=True)  # this fault is shown, not hidden
    out.print(f"broke lab {inv.name} {faults.inject(args.fault, inv, files, args.node)}",
              markup=False, highlight=False, soft_wrap=True)
    out.print("find it with `lab verify`; repair it with `lab fix`", markup=False)
    return 0


def cmd_fix(args) -> int:
    from orchestrator.verify import faults
    inv = resolve_inventory(args.inventory)
    for line in faults.undo_policy_faults(inv, LabFiles.of(inv.name)):
        out.print(line, markup=False, highlight=False, soft_wrap=True)
    return run_deploy(args, force=True)


def cmd_play(args) -> int:
    if args.list or not args.lesson:
        for lesson in lessons.load_all():
            print(f"{lesson.id:<22} {lesson.title}")
        return 0
    if args.cleanup and (args.check or args.step):
        raise InputError("lab play: --cleanup goes alone; drop --check/--step")
    lesson = lessons.find(args.lesson)
    inv = resolve_inventory(args.inventory)
    styles = {"title": "bold", "explain": "italic", "command": "cyan", "ok": "green", "fail": "red", "note": "dim"}
    marks = {"ok": "✓ ", "fail": "✗ "}

    def show(kind: str, text: str) -> None:
        if kind == "title":
            out.print()
        out.print(marks.get(kind, "") + text, style=styles.get(kind), markup=False, highlight=False,
                  soft_wrap=True)

    def run_lab(argv: list[str]) -> int:
        sys.stdout.flush()
        return args.run_cli([argv[0], "--inventory", inv.source, *argv[1:]])

    def pause() -> bool:
        try:
            return input("Enter: next step, q: stop > ").strip().lower() != "q"
        except EOFError:
            return True

    with Transport(inv.nodes) as transport:
        player = Player(lesson, inv, transport, show, stream=(sys.stdout.buffer, sys.stderr.buffer),
                                  run_lab=run_lab)
        if args.cleanup:
            player.cleanup()
            out.print(f"lesson {lesson.id}: cleaned up", markup=False)
            return 0
        if not args.check:
            player.require()
            out.print(f"{lesson.id}: {player.text(lesson.title)}", style="bold underline", markup=False)
            if lesson.summary:
                out.print(player.text(lesson.summary), style="italic", markup=False, soft_wrap=True)
        outcome = player.check(pause if args.step else None) if args.check else \
            player.play(pause if args.step else None)
    out.print()
    if outcome.ok and outcome.stopped_after is not None:
        out.print(f"lesson {lesson.id}: stopped after step {outcome.stopped_after}; {outcome.checks_passed} checks "
                  "passed so far", markup=False)
        return 0
    if outcome.ok:
        out.print(f"lesson {lesson.id}: all {outcome.checks_passed} checks passed", style="green", markup=False)
        if not args.check:
            out.print(f"look around with `lab exec {inv.nodes[0].name} -- ...`; "
                      f"undo it with `lab play {lesson.id} --cleanup`", markup=False)
        return 0
    out.print(f"lesson {lesson.id}: {len(outcome.checks_failed)} of "
              f"{len(outcome.checks_failed) + outcome.checks_passed} checks failed", style="red", markup=False)
    return 1


def explain_trace(inv: Inventory, objects: LabObjects, source: str, destination: str, port: int, protocol: str,
                  namespace: str) -> list[str]:
    from orchestrator.verify.paper_trace import explain
    src = kernel_trace.resolve(source, inv, objects, namespace, as_source=True)
    dst = kernel_trace.resolve(destination, inv, objects, namespace, as_source=False)
    return explain(inv, objects, src, dst, port, protocol)


def cmd_trace(args) -> int:
    inv = resolve_inventory(args.inventory)
    objects = LabFiles.of(inv.name).read_objects()
    dst, _, port = args.destination.rpartition(":") if ":" in args.destination else (args.destination, "", "80")
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise InputError(f"lab trace: {args.destination!r}: the port after ':' is not a number from 1 to 65535; "
                         "write e.g. web:80")
    with LabFiles.of(inv.name).lock(), Transport(inv.nodes) as transport:
        lines = kernel_trace.trace(inv, transport, objects, args.source, dst, int(port),
                                   "udp" if args.udp else "tcp", args.namespace)
    if args.explain:  # beside the kernel's trace: what the rendered rules predict
        lines += explain_trace(inv, objects, args.source, dst, int(port), "udp" if args.udp else "tcp", args.namespace)
    for line in lines:
        out.print(line, markup=False, highlight=False, soft_wrap=True)
    return 0

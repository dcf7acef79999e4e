"""`lab verify` end to end: plan, probe, run the suite with pytest, print a summary read in seconds."""

from __future__ import annotations

import contextlib
import html
import io
import json
import re
import time
from collections import Counter
from pathlib import Path
from typing import Optional

import pytest
import yaml
from rich.console import Console
from rich.table import Table

from orchestrator.core.errors import InputError, yaml_error
from orchestrator.core.model import Inventory
from orchestrator.core.state import LabFiles
from orchestrator.core.transport import Transport
from orchestrator.verify import suite
from orchestrator.verify.checks import Outcome, plan_checks
from orchestrator.verify.faults import broken_objects
from orchestrator.verify.gateway_checks import gateway_checks
from orchestrator.verify.plugin import LabSession
from orchestrator.verify.policy_faults import intended_objects
from orchestrator.verify.probes import outside_server, run_checks


MATRIX_LIMIT = 12  # pods; beyond, the pod x pod matrix is summarised


class _Collector:
    """In-process pytest plugin: collects the suite's test results."""

    def __init__(self) -> None:
        self.failed: list[tuple[str, str]] = []
        self.passed = 0  # the checks inside pods and nodes (not the reachability checks, judged before pytest)

    def pytest_runtest_logreport(self, report):
        reachability = "::test_reachability[" in report.nodeid
        if report.when == "call" and not reachability:
            if report.passed:
                self.passed += 1
            else:
                self.failed.append((report.nodeid.split("::")[-1], failure_line(report)))
        elif report.when == "setup" and report.failed:
            self.failed.append((report.nodeid.split("::")[-1], failure_line(report)))


def failure_line(report) -> str:
    """The one line a person reads of a failed check: the check's own message, without pytest's
    introspection of the values ("where 255 = ...") or the exception's class."""
    crash = getattr(report.longrepr, "reprcrash", None)
    text = crash.message if crash is not None else str(report.longrepr).strip().splitlines()[-1]
    line = text.strip().splitlines()[0] if text.strip() else "failed"
    return re.sub(r"^(?:[A-Za-z_.]*(?:Error|Exception)|(?:[a-z_]\w*\.)+[A-Z]\w*|E): ", "", line)


def load_expectations(path: Optional[str]) -> list:
    if not path:
        return []
    try:
        data = yaml.safe_load(Path(path).read_text())
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror}; give a YAML file of expectations") from None
    except yaml.YAMLError as exc:
        raise yaml_error(path, exc) from None
    items = data.get("expectations", data) if isinstance(data, dict) else data
    if not isinstance(items, list):
        raise InputError(f"{path}: expected a list of expectations (from, to, port, expect)")
    return items


def verify(inv: Inventory, junit: Optional[str] = None, expect: Optional[str] = None,
           all_pairs: bool = False) -> tuple[list[Outcome], _Collector, float]:
    """Run the built-in suite (and the expectations) against the lab; return outcomes, suite results, time."""
    start = time.perf_counter()
    files = LabFiles.of(inv.name)
    objects = files.read_objects()
    if not objects.subnets:
        raise InputError(f"lab {inv.name} has no pod network yet: run `lab deploy` (and `lab apply`) first")
    intended = intended_objects(objects, broken_objects(files))
    try:
        checks = plan_checks(inv, objects, load_expectations(expect), intended,
                             gateway_checks(objects) if inv.emulated is not None else (),  # from the outside host
                             all_pairs)
    except InputError as exc:
        raise InputError(f"{expect}: {exc}") from None
    collector = _Collector()
    args = [suite.__file__, "-q", "-p", "no:cacheprovider", "-c", "/dev/null", "--rootdir",
            str(Path(suite.__file__).parent), "-W", "ignore"]
    if junit:
        args += ["--junitxml", junit]
    else:  # a pytest test per reachability check is for the JUnit XML only: at 20,000 checks it was most of the time
        args += ["-k", "not test_reachability"]
    with Transport(inv.nodes) as transport:  # one transport: the probes and the suite's testinfra hosts
        with outside_server(inv):
            outcomes = run_checks(inv, objects, transport, checks)
        with contextlib.redirect_stdout(io.StringIO()):
            pytest.main(args, plugins=[LabSession(inv, transport, outcomes if junit else ()), collector])
    return outcomes, collector, time.perf_counter() - start


def matrix_cells(outcomes: list[Outcome]) -> tuple[list[str], dict, bool]:
    """The pod x pod matrix as data: its names, (row, col) -> (mark, failed outcomes), and whether NetworkPolicy
    shapes it. A mark reads as upstream's netpol tests print it: `.` allowed, `X` blocked (`.X` when TCP and UDP
    differ); without policies every cell is allowed and shows a tick."""
    found: dict[tuple[str, str], list[Outcome]] = {}
    for o in outcomes:
        if o.check.family == "pod-to-pod":
            found.setdefault((o.check.row, o.check.col), []).append(o)
    names = sorted({name for key in found for name in key})
    policies = any(o.check.want == ("closed",) or "NetworkPolicy" in o.check.layer for c in found.values() for o in c)
    cells = {}
    for key, group in found.items():
        group = sorted(group, key=lambda o: o.check.target.get("proto", ""))
        marks = "".join(dict.fromkeys("X" if o.check.want == ("closed",) else "." for o in group))
        cells[key] = (marks if policies else "✔", [o for o in group if not o.ok])
    return names, cells, policies


def matrix_title(policies: bool) -> str:
    return "pod to pod (HTTP and UDP, source IP preserved)" + (": . allowed, X blocked by NetworkPolicy"
                                                                if policies else "")


def matrix_table(outcomes: list[Outcome]) -> Optional[Table]:
    """The pod x pod matrix for the terminal; a wrong cell is red and says why."""
    names, cells, policies = matrix_cells(outcomes)
    if not names or len(names) > MATRIX_LIMIT:
        return None
    table = Table(title=matrix_title(policies), title_justify="left")
    # the columns are numbered, the rows named in full with their number: whole names fit 80 columns
    table.add_column("from \\ to", no_wrap=True)
    for number, _ in enumerate(names, 1):
        table.add_column(str(number), overflow="fold")
    for number, row in enumerate(names, 1):
        values = []
        for col in names:
            mark, bad = cells.get((row, col), ("", []))
            values.append(f"[green]{mark}[/]" if not bad else f"[red]✘ {mark}: " + "; ".join(
                sorted({o.reason for o in bad})) + "[/]")
        table.add_row(f"{number} {row}", *values)
    return table


def print_report(console: Console, outcomes: list[Outcome], collector: _Collector, seconds: float) -> bool:
    """The matrix, a line per family, every failure with where to look; True when everything passed."""
    for node, count in Counter(o.unreachable for o in outcomes if o.unreachable).items():
        reason = next(o.reason for o in outcomes if o.unreachable == node).split(" since ")[-1]
        console.print(f"{node}: unreachable over SSH since {reason}; {count} check(s) not probed, counted as failed "
                      f"(`lab up` brings the lab's nodes back)", style="red", markup=False, highlight=False)
    matrix = matrix_table(outcomes)
    if matrix is not None:
        console.print(matrix)
    families = Table(title="checks", title_justify="left")
    for column in ("FAMILY", "PASSED", "FAILED"):
        families.add_column(column)
    passed = Counter(o.check.family for o in outcomes if o.ok)
    failed = Counter(o.check.family for o in outcomes if not o.ok)
    for family in dict.fromkeys(o.check.family for o in outcomes):
        families.add_row(family, str(passed[family]), f"[red]{failed[family]}[/]" if failed[family] else "0")
    families.add_row("inside pods and nodes (testinfra)", str(collector.passed),
                     f"[red]{len(collector.failed)}[/]" if collector.failed else "0")
    console.print(families)
    for o in outcomes:
        if not o.ok and not o.unreachable:  # those are the unreachable node's, named once above
            console.print(f"✘ {o.check.label}: {o.reason}\n    look at {o.check.layer}: {o.check.show}",
                          style="red", markup=False, highlight=False, soft_wrap=True)
    for name, message in collector.failed:
        console.print(f"✘ {name}: {message}", style="red", markup=False, highlight=False, soft_wrap=True)
    probes = sum(o.check.count for o in outcomes)
    retried = sum(1 for o in outcomes if o.retried)
    if retried:
        console.print(f"({retried} check(s) timed out once and were probed again)", style="yellow", markup=False)
    ok = not failed and not collector.failed
    inside_passed = collector.passed
    if ok:
        line = (f"all passed: {len(outcomes)}/{len(outcomes)} checks ({probes} probes) and {inside_passed} checks "
                f"inside pods and nodes")
    else:
        line = (f"FAILED: {sum(failed.values())} of {len(outcomes)} checks ({probes} probes) and "
                f"{len(collector.failed)} of {inside_passed + len(collector.failed)} checks inside pods and nodes")
    console.print(f"{line}, in {seconds:.1f} s", style="green" if ok else "red", markup=False, highlight=False)
    return ok


def outcomes_html(title: str, outcomes: list[Outcome], collector: _Collector) -> str:
    """The pod x pod matrix, the families and every failure as one HTML page."""
    esc = html.escape
    names, cells, policies = matrix_cells(outcomes)
    rows = []
    for row in names:
        tds = []
        for col in names:
            if (row, col) not in cells:  # coverage mode: not probed
                tds.append("<td title='not probed (coverage mode)'></td>")
                continue
            mark, bad = cells[(row, col)]
            shown = "&#10004;" if mark == "✔" else esc(mark)
            tds.append(f"<td class=ok>{shown}</td>" if not bad else
                       f"<td class=bad title='{esc(bad[0].check.layer)}'>&#10008; {shown}: "
                       f"{esc('; '.join(sorted({o.reason for o in bad})))}</td>")
        rows.append(f"<tr><th>{esc(row)}</th>{''.join(tds)}</tr>")
    families = Counter(o.check.family for o in outcomes)
    failed = Counter(o.check.family for o in outcomes if not o.ok)
    family_rows = "".join(f"<tr><td>{esc(f)}</td><td>{n - failed[f]}</td><td class={'bad' if failed[f] else 'ok'}>"
                          f"{failed[f]}</td></tr>" for f, n in families.items())
    failures = "".join(f"<li><b>{esc(o.check.label)}</b>: {esc(o.reason)}<br>look at {esc(o.check.layer)}: "
                       f"<code>{esc(o.check.show)}</code></li>" for o in outcomes if not o.ok)
    failures += "".join(f"<li><b>{esc(n)}</b>: {esc(m)}</li>" for n, m in collector.failed)
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{esc(title)}</title><style>"
            "body{font-family:sans-serif} table{border-collapse:collapse;margin:1em 0} td,th{border:1px solid #ccc;"
            "padding:3px 6px;font-size:13px} .ok{color:#1a7f37} .bad{color:#c62828}</style></head><body>"
            f"<h1>{esc(title)}</h1><h2>{esc(matrix_title(policies))}</h2><table><tr><th>from \\ to</th>"
            f"{''.join(f'<th>{esc(n)}</th>' for n in names)}</tr>{''.join(rows)}</table>"
            f"<h2>checks</h2><table><tr><th>family</th><th>passed</th><th>failed</th></tr>{family_rows}</table>"
            f"<h2>failures</h2><ul>{failures or '<li>none</li>'}</ul></body></html>\n")


def outcomes_json(outcomes: list[Outcome], collector: _Collector) -> str:
    return json.dumps({
        "passed": all(o.ok for o in outcomes) and not collector.failed,
        "checks": [{"id": o.check.id, "family": o.check.family, "label": o.check.label, "ok": o.ok,
                    "reason": o.reason, "layer": o.check.layer, "show": o.check.show, "retried": o.retried}
                   for o in outcomes],
        "suite_failures": [{"test": n, "message": m} for n, m in collector.failed],
        "matrix": matrix_json(outcomes),
    }, indent=2)


def matrix_json(outcomes: list[Outcome]) -> dict:
    """from -> to -> {"expect": "." | "X" | ".X", "ok": bool}: the truth table and how the kernel kept it."""
    names, cells, _ = matrix_cells(outcomes)
    return {row: {col: {"expect": cells[(row, col)][0].replace("✔", "."), "ok": not cells[(row, col)][1]}
                  for col in names if (row, col) in cells} for row in names}

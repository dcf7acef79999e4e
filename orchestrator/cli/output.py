"""How the lab shows things: kubectl's table and describe layouts, and the per-node reports of deploy and destroy.
What each kind prints is its own module's (orchestrator/kinds/)."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text

from orchestrator.cli.common import err, out


def column_widths(columns: list[str], rows: list[list[str]]) -> list[int]:
    return [max(len(str(v)) for v in [c, *(r[i] for r in rows)]) for i, c in enumerate(columns)]


def print_table(columns: list[str], rows: list[list[str]]) -> None:
    """kubectl's plain column layout (no box), so it reads like the talk's output and greps well."""
    widths = column_widths(columns, rows)
    for row in [columns, *rows]:
        print("   ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


def print_described(lines: list[tuple[str, str]]) -> None:
    """`kubectl describe`'s layout: labels in a column as wide as the longest (at least 18), values after them, a
    value's further lines under its first; a value without a label as it is, from the first column (a
    ConfigMap's data)."""
    width = max([18, *(len(label) for label, value in lines if value)])
    for label, value in lines:
        if not label:
            print(value)
            continue
        first, *more = value.split("\n")
        print(f"{label:<{width}} {first}".rstrip())
        for line in more:
            print(f"{'':<{width}} {line.strip()}".rstrip())


def print_reports(title: str, reports, show_changes: bool) -> int:
    """A per-node table (ok / changed / failed), the changes when asked, errors last; exit code."""
    styles = {"ok": "green", "changed": "yellow", "removed": "yellow", "would change": "yellow", "failed": "red"}
    table = Table(title=title, title_justify="left")
    for column in ("NODE", "POD SUBNET", "RESULT", "CHANGES"):
        table.add_column(column)
    for r in reports:
        style = styles.get(r.status, "")
        table.add_row(r.node, r.subnet or "", Text(r.status, style=style), str(len(r.changes)))
    out.print(table)
    if show_changes:
        for r in reports:
            for what in r.changes:
                out.print(f"  {r.node}: {what}", markup=False, highlight=False, soft_wrap=True)
    failed = [r for r in reports if r.status == "failed"]
    for r in failed:
        for line in (r.error or "failed").splitlines():
            err.print(f"lab: {line}", style="red", markup=False, soft_wrap=True)
    if not failed and all(r.status == "ok" for r in reports):
        out.print("no changes")
    return 1 if failed else 0

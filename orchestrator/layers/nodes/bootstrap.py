"""`lab bootstrap`: install what the nodes lack, over SSH, on every node in parallel.

Per node: read its facts (the same SSH command deploy reads), plan (packages.py: facts -> packages),
then, unless dry run, run the plan's install commands (with sudo when the node says become) and read
the facts again to confirm the node now has everything.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

from orchestrator.core.model import Inventory, Node
from orchestrator.core.transport import NodeError, Transport
from orchestrator.layers.nodes import packages as packages_mod
from orchestrator.layers.nodes.read import read_state


INSTALL_TIMEOUT = 900.0  # seconds for one install command: package downloads can be slow


@dataclass
class BootstrapReport:
    node: str
    status: str  # nothing to install | would install | installed | failed
    manager: Optional[str] = None
    packages: tuple[str, ...] = ()
    commands: list[str] = field(default_factory=list)  # the command lines, as sent to the node
    notes: list[str] = field(default_factory=list)  # what no package brings
    error: Optional[str] = None


def bootstrap_node(inv: Inventory, transport: Transport, node: Node, dry_run: bool) -> BootstrapReport:
    plan = packages_mod.plan(read_state(transport, node, inv.name), inv.cluster)
    report = BootstrapReport(node.name, "nothing to install", plan.manager, plan.packages,
                             [transport.command_line(node, list(argv)) for argv in plan.commands],
                             [f"lacks {what}, which no package brings" for what in plan.not_packaged])
    if plan.error:
        raise NodeError(node.name, plan.error)
    if plan.nothing_to_install:
        return report
    if dry_run:
        report.status = "would install"
        return report
    if inv.emulated is not None and inv.emulated.shares_kernel:
        # An emulated node runs this machine's programs: packages installed "on it" would land in this
        # machine's /usr while its package database (in the node's /var/lib) forgets them.
        raise NodeError(node.name, f"lacks {', '.join(plan.lacks)}, but it is an emulated node running this "
                                   f"machine's programs: install {' '.join(plan.packages)} on this machine "
                                   f"(scripts/setup.sh does), not on the node")
    for argv in plan.commands:
        transport.run(node, list(argv), timeout=max(node.ssh.command_timeout, INSTALL_TIMEOUT))
    still = packages_mod.plan(read_state(transport, node, inv.name), inv.cluster)
    if still.lacks:
        raise NodeError(node.name, f"installed {' '.join(plan.packages)}, but it still lacks "
                                   f"{', '.join(still.lacks)}")
    report.status = "installed"
    return report


def bootstrap(inv: Inventory, transport: Transport, dry_run: bool = False,
              progress: Callable[[str], None] = lambda line: None) -> list[BootstrapReport]:
    """Install what each node lacks (or, with dry_run, say what would be installed); one report per node."""
    progress(f"reading {len(inv.nodes)} node(s)" + ("" if dry_run else " and installing what they lack"))
    results = transport.run_all(lambda node: bootstrap_node(inv, transport, node, dry_run))
    reports = []
    for node in inv.nodes:
        outcome = results[node.name]
        if isinstance(outcome, BaseException):
            outcome = BootstrapReport(node.name, "failed", error=str(outcome))
        reports.append(outcome)
    return reports


def report_lines(reports: list[BootstrapReport]) -> list[str]:
    """Per node: what it got (or would get), the commands for a dry run, and notes."""
    lines = []
    for r in reports:
        if r.status == "failed":
            continue
        if r.status == "nothing to install":
            lines.append(f"{r.node}: nothing to install")
        else:
            lines.append(f"{r.node}: {r.status} ({r.manager}): {' '.join(r.packages)}")
            if r.status == "would install":
                lines += [f"  {command}" for command in r.commands]
        lines += [f"  note: {note}" for note in r.notes]
    return lines

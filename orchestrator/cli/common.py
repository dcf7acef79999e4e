"""What every command shares: the consoles, progress lines, warnings, and which lab to work on."""

from __future__ import annotations

import os
import sys
from dataclasses import replace
from typing import Optional

from rich.console import Console

from orchestrator.core import inventory
from orchestrator.core.errors import InputError
from orchestrator.core.model import Inventory
from orchestrator.core.state import LabFiles, current_lab

out = Console(highlight=False)


err = Console(stderr=True, highlight=False)


def progress(line: str) -> None:
    err.print(f"• {line}", style="dim", markup=False)


def resolve_inventory(path: Optional[str]) -> Inventory:
    """-i/--inventory, else $LAB_INVENTORY, else the lab brought up last (.lab/current)."""
    path = path or os.environ.get("LAB_INVENTORY")
    if not path:
        name = current_lab()
        if name is None:
            raise InputError("no lab to work on: bring one up with `lab up`, or give an inventory with "
                             "--inventory or LAB_INVENTORY")
        path = str(LabFiles.of(name).inventory)
    loaded = inventory.load(path)
    return with_node_labels(loaded, LabFiles.of(loaded.name).read_node_labels())


def with_node_labels(inv: Inventory, changes: dict[str, dict[str, Optional[str]]]) -> Inventory:
    """`inv` with the labels `lab label node` gave its nodes (`changes`: node -> key -> value, None removed)."""
    if not changes:
        return inv
    nodes = tuple(replace(n, labels={k: v for k, v in {**n.labels, **changes.get(n.name, {})}.items() if v is not None})
                  for n in inv.nodes)
    return replace(inv, nodes=nodes)


def warn(line: str) -> None:
    err.print(f"Warning: {line}", style="yellow", markup=False, soft_wrap=True)


def run_showing_output(transport, node, argv: list[str], **kwargs):
    """Run `argv` on `node` with its output shown as it comes; where stdout is no file (a lesson capturing a
    step's output), shown when it ends."""
    if hasattr(sys.stdout, "buffer") and hasattr(sys.stderr, "buffer"):
        return transport.run(node, argv, check=False, stream=(sys.stdout.buffer, sys.stderr.buffer), **kwargs)
    result = transport.run(node, argv, check=False, **kwargs)
    sys.stdout.write(result.stdout)
    sys.stderr.write(result.stderr)
    return result

"""kubectl's `top pods|nodes`: CPU and memory measured on the nodes by their agents (agent/usage.py), all nodes
in parallel over one sample, in kubectl's columns and units (millicores, Mi)."""

from __future__ import annotations

import sys
from typing import Any

from orchestrator.agent.contract import Usage, UsageAnswer
from orchestrator.cli.common import resolve_inventory
from orchestrator.cli.output import print_table
from orchestrator.cli.resources import select
from orchestrator.core.agent import call
from orchestrator.core.errors import LabError
from orchestrator.core.model import Inventory, Node
from orchestrator.core.policy_spec import selector_from_text
from orchestrator.core.state import LabFiles
from orchestrator.core.transport import Transport
from orchestrator.kinds.pod import POD

SAMPLE_SECONDS = 1.0
MI = 1024 * 1024


def cores(millicores: int) -> str:
    return f"{millicores}m"


def mebibytes(size: int) -> str:
    return f"{size // MI}Mi"


def measured(inv: Inventory, nodes: list[Node]) -> dict[str, Any]:
    """node name -> its agent's UsageAnswer, or the error that kept it from answering."""
    with Transport(nodes) as transport:
        return transport.run_all(lambda node: call(transport, node, inv.name, Usage(seconds=SAMPLE_SECONDS),
                                                   timeout=30), nodes)


def cmd_top(args) -> int:
    inv = resolve_inventory(args.inventory)
    if args.what in ("node", "nodes", "no"):
        return top_nodes(inv, args)
    objects = LabFiles.of(inv.name).read_objects()
    namespace = None if args.all_namespaces else args.namespace
    labels = selector_from_text(args.selector) if args.selector else None
    found = [item.record for item in select(POD, inv, objects, args.names, namespace, labels)]
    if args.names and not found:
        raise LabError(POD.not_found(args.names[0], namespace or "default"))
    if not found:
        print(f"No resources found in {namespace} namespace." if namespace else "No resources found")
        return 0
    answers = measured(inv, [n for n in inv.nodes if any(p.node == n.name for p in found)])
    rows, missing = [], []
    for pod in found:
        answer = answers.get(pod.node or "")
        got = answer.pods.get(pod.node_key) if isinstance(answer, UsageAnswer) else None
        if got is None:
            missing.append(f"{pod.key} ({answer if isinstance(answer, BaseException) else 'not running'})")
            continue
        rows.append(([pod.namespace] if namespace is None else []) + [pod.name, got["cpu_m"], got["memory"]])
    ordered = sort_rows(rows, args.sort_by, 1 if namespace is None else 0)
    print_table((["NAMESPACE"] if namespace is None else []) + ["NAME", "CPU(cores)", "MEMORY(bytes)"],
                [[*row[:-2], cores(row[-2]), mebibytes(row[-1])] for row in ordered])
    if missing:
        raise LabError(f"no metrics for {', '.join(missing)} (`lab get pods -o wide` shows its state)")
    return 0


def sort_rows(rows: list[list], by: str | None, name_at: int) -> list[list]:
    """By name, or by cpu or memory, highest first (kubectl's --sort-by)."""
    if by == "cpu":
        return sorted(rows, key=lambda r: -r[-2])
    if by == "memory":
        return sorted(rows, key=lambda r: -r[-1])
    return sorted(rows, key=lambda r: tuple(r[:name_at + 1]))


def top_nodes(inv: Inventory, args) -> int:
    nodes = [n for n in inv.nodes if not args.names or n.name in args.names]
    if args.names and not nodes:
        raise LabError(f'Error from server (NotFound): nodes "{args.names[0]}" not found')
    answers = measured(inv, nodes)
    rows, failed, shared = [], [], False
    for node in nodes:
        answer = answers[node.name]
        if not isinstance(answer, UsageAnswer):
            failed.append(f"{node.name}: {answer}")
            continue
        got = answer.node
        shared = shared or got["shared_kernel"]
        rows.append([node.name, got["cpus"], got["memory_total"], got["cpu_m"], got["memory"]])
    ordered = sort_rows(rows, args.sort_by, 0)
    print_table(["NAME", "CPU(cores)", "CPU(%)", "MEMORY(bytes)", "MEMORY(%)"],
                [[name, cores(cpu), f"{round(cpu / (cpus * 10))}%", mebibytes(memory),
                  f"{round(memory * 100 / total)}%"] for name, cpus, total, cpu, memory in ordered])
    if shared:
        print("note: emulated nodes share this machine's kernel: a node's figures are its own processes' and its "
              "pods', its percentages of this machine's CPUs and memory", file=sys.stderr)
    if failed:
        raise LabError("no metrics for " + "; ".join(failed))
    return 0

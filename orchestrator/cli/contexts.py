"""kubectl's contexts over the lab's labs: `lab config get-contexts | current-context | use-context | set-context |
view`. A context is a lab (its folder under the state root); the current one is the lab commands work on when
no --inventory names another, and its namespace (`set-context --current --namespace NS`) is the default of
every `-n`, as kubectl's context namespace is."""

from __future__ import annotations

import json
import os
from typing import Any, Optional

from orchestrator.cli.jsonpath import jsonpath
from orchestrator.core import inventory
from orchestrator.core.errors import InputError, LabError
from orchestrator.core.render import dump_yaml
from orchestrator.core.state import LabFiles, atomic_write, current_lab, set_current_lab, state_root

CONTEXT_FILE = "context.json"  # in a lab's folder: {"namespace": NS}
DEFAULT_NAMESPACE = "default"


def lab_names() -> list[str]:
    """The labs of this state root (each folder with an inventory), by name."""
    root = state_root()
    return sorted(p.name for p in root.iterdir() if (p / "inventory.yaml").is_file()) if root.is_dir() else []


def context_namespace(lab: Optional[str]) -> str:
    """The namespace of lab `lab`'s context: set by set-context, else default."""
    if lab is None:
        return DEFAULT_NAMESPACE
    try:
        with open(LabFiles.of(lab).root / CONTEXT_FILE) as handle:
            return str(json.load(handle).get("namespace") or DEFAULT_NAMESPACE)
    except (OSError, ValueError, AttributeError):
        return DEFAULT_NAMESPACE


def chosen_lab(inventory_path: Optional[str]) -> Optional[str]:
    """The lab a command works on: --inventory's, $LAB_INVENTORY's, else the current context's. None where the
    inventory cannot be read (the command itself then says why)."""
    path = inventory_path or os.environ.get("LAB_INVENTORY")
    if not path:
        return current_lab()
    try:
        return inventory.load(path).name
    except LabError:
        return None


def fill_namespace(args) -> None:
    """`args.namespace` from -n, else the context's; `args.namespace_given` says whether -n was given (apply
    enforces only that one on objects that name another, as kubectl does)."""
    if not hasattr(args, "namespace"):
        return
    args.namespace_given = args.namespace is not None
    if args.namespace is None:
        args.namespace = context_namespace(chosen_lab(getattr(args, "inventory", None)))


def known(name: str) -> str:
    if name not in lab_names():
        raise InputError(f'no context exists with the name: "{name}" (`lab config get-contexts` lists them; '
                         "`lab up --name NAME` makes one)")
    return name


def kubeconfig(minify: bool) -> dict[str, Any]:
    """The labs as kubectl's `config view` shows a kubeconfig: a cluster, a user and a context per lab."""
    current = current_lab()
    names = [current] if minify and current else [] if minify else lab_names()
    return {
        "apiVersion": "v1", "kind": "Config", "preferences": {},
        "clusters": [{"name": n, "cluster": {"server": f"lab://{n}"}} for n in names],
        "contexts": [{"name": n, "context": {"cluster": n, "user": n, "namespace": context_namespace(n)}}
                     for n in names],
        "current-context": current or "",
        "users": [{"name": n, "user": {}} for n in names],
    }


def cmd_config(args) -> int:
    action = args.action
    if action == "get-contexts":
        current = current_lab()
        names = [known(n) for n in args.names] if args.names else lab_names()
        if args.output == "name":
            print("\n".join(names))
            return 0
        rows = [["*" if n == current else "", n, n, n, context_namespace(n)] for n in names]
        from orchestrator.cli.output import print_table
        print_table(["CURRENT", "NAME", "CLUSTER", "AUTHINFO", "NAMESPACE"], rows)
        return 0
    if action == "current-context":
        current = current_lab()
        if current is None:
            raise LabError("current-context is not set (`lab config use-context LAB`, or `lab up`)")
        print(current)
        return 0
    if action in ("use-context", "use"):
        if len(args.names) != 1:
            raise InputError("lab config use-context: give one context (a lab's name): lab config use-context demo")
        set_current_lab(known(args.names[0]))
        print(f'Switched to context "{args.names[0]}".')
        return 0
    if action == "set-context":
        return set_context(args)
    document = kubeconfig(args.minify)  # view
    output = args.output or "yaml"
    if output.startswith("jsonpath="):
        print(jsonpath(output[len("jsonpath="):], document), end="")
    elif output == "json":
        print(json.dumps(document, indent=4))
    else:
        print(dump_yaml(document), end="")
    return 0


def set_context(args) -> int:
    """`set-context --current --namespace NS` or `set-context LAB --namespace NS`: the context's namespace."""
    if args.current == bool(args.names) or len(args.names) > 1:
        raise InputError("lab config set-context: name one context, or --current: lab config set-context --current "
                         "--namespace NS")
    name = current_lab() if args.current else known(args.names[0])
    if name is None:
        raise LabError("current-context is not set (`lab config use-context LAB`, or `lab up`)")
    if args.set_namespace is None:
        raise InputError("lab config set-context: what to set: --namespace NS")
    atomic_write(LabFiles.of(name).root / CONTEXT_FILE, json.dumps({"namespace": args.set_namespace}) + "\n",
                 mode=0o644)
    print(f'Context "{name}" modified.')
    return 0

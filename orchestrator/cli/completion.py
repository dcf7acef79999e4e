"""Shell completion for bash and zsh through argcomplete: commands and options from the parser, resource kinds,
and the names of the current lab's pods, nodes, services and deployments."""

from __future__ import annotations

import argparse

import argcomplete

from orchestrator.cli.common import resolve_inventory
from orchestrator.cli.resources import get_names
from orchestrator.kinds import by_name
from orchestrator.kinds.pod import POD
from orchestrator.core.errors import LabError
from orchestrator.core.objects import LabObjects
from orchestrator.core.state import LabFiles


def lab_objects(parsed_args):
    """The inventory and objects of the lab the command would work on; nothing when there is none."""
    try:
        inv = resolve_inventory(getattr(parsed_args, "inventory", None))
    except LabError:
        return None, LabObjects()
    return inv, LabFiles.of(inv.name).read_objects()


def kinds(prefix: str, **kwargs) -> list[str]:
    words = sorted(set(get_names()) | {"all"})
    if "," in prefix:  # a list of kinds: complete its last word
        head, _, last = prefix.rpartition(",")
        return [f"{head},{w}" for w in words if w.startswith(last)]
    return [w for w in words if w.startswith(prefix)]


def names(prefix: str, parsed_args, **kwargs) -> list[str]:
    """Names of the kind given before (or of pods), in the namespace given (-n), that start with `prefix`."""
    inv, objects = lab_objects(parsed_args)
    if inv is None:
        return []
    kind = by_name(getattr(parsed_args, "resource", None) or getattr(parsed_args, "kind", None) or "pods") or POD
    namespace = getattr(parsed_args, "namespace", "default")
    found = [r.name for r in kind.items(inv, objects) if not kind.namespaced or r.namespace == namespace]
    return [n for n in found if n.startswith(prefix)]


def nodes_and_pods(prefix: str, parsed_args, **kwargs) -> list[str]:
    inv, objects = lab_objects(parsed_args)
    if inv is None:
        return []
    namespace = getattr(parsed_args, "namespace", "default")
    found = [n.name for n in inv.nodes] + [p.name for p in objects.pods.values() if p.namespace == namespace]
    return [n for n in found if n.startswith(prefix)]


def install(parser) -> None:
    """Attach the completers to the parser's arguments and answer the shell when it asks (a no-op otherwise)."""
    for action in walk(parser):
        if action.dest in ("resource", "kind"):
            action.completer = kinds
        elif action.dest in ("names", "name", "pod"):
            action.completer = names
        elif action.dest == "node":
            action.completer = nodes_and_pods
    argcomplete.autocomplete(parser)


def walk(parser: argparse.ArgumentParser):
    """Every argument of `parser` and of its subcommands."""
    for action in parser._actions:
        yield action
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from walk(sub)


def shell_code(shell: str) -> str:
    """What `eval "$(lab completion bash)"` (or zsh) loads."""
    return argcomplete.shellcode(["lab"], shell=shell)

"""`lab get`, kubectl's way, over the kind registry (orchestrator/kinds/): kinds by any of their names, comma
lists and `all`; filters (namespace, names, -l label selector, --field-selector); json, yaml, name, jsonpath."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Callable, Optional

from orchestrator.cli.jsonpath import jsonpath
from orchestrator.core.errors import InputError
from orchestrator.core.model import Inventory
from orchestrator.core.objects import LabObjects
from orchestrator.core.policy_spec import Selector
from orchestrator.core.render import dump_yaml
from orchestrator.kinds import KINDS, Item, Kind, by_name


def get_names() -> dict[str, Kind]:
    """Every name `lab get` takes for a kind (pods, pod, po, deploy, ...), and the kind."""
    return {name: kind for kind in KINDS.values() for name in kind.names}


def kinds_of(text: str) -> list[Kind]:
    """`pods`, `po,svc`, `all`: the kinds, or kubectl's error for one it does not know."""
    found: list[Kind] = []
    for word in text.split(","):
        kind = by_name(word)
        if word != "all" and kind is None:
            raise InputError(f'the server doesn\'t have a resource type "{word}"; use one of: '
                             f"{', '.join(sorted(get_names()))}, all")
        found += [k for k in (sorted((k for k in KINDS.values() if k.in_all), key=lambda k: k.in_all)
                              if word == "all" else [kind])
                  if k is not None and k not in found]
    return found


def type_names(first: Optional[str], names: Sequence[str], command: str) -> list[tuple[str, list[str]]]:
    """kubectl's two ways of naming objects, KIND NAME... and KIND/NAME... (where every word is one: pods/a
    svc/b): (kind as written, its names), kinds in the order given."""
    words = [w for w in (first, *names) if w]
    if not any("/" in w for w in words):
        return [(first, list(names))] if first else []
    if not all("/" in w for w in words):
        raise InputError(f"there is no need to specify a resource type as a separate argument when passing arguments "
                         f"in resource/name form (e.g. 'lab {command} resource/<resource_name>' instead of "
                         f"'lab {command} resource resource/<resource_name>')")
    grouped: dict[str, list[str]] = {}
    for word in words:
        kind, _, name = word.partition("/")
        if not kind or not name or "/" in name:
            raise InputError(f"lab {command}: {word!r} is not KIND/NAME; write e.g. deployment/web")
        grouped.setdefault(kind, []).append(name)
    return list(grouped.items())


def one_object(kind: Optional[str], name: Optional[str], command: str) -> tuple[str, str]:
    """One object named as KIND NAME or KIND/NAME: (kind as written, name)."""
    groups = type_names(kind, [name] if name else [], command)
    if len(groups) != 1 or len(groups[0][1]) != 1:
        raise InputError(f"lab {command}: name one object: KIND NAME or KIND/NAME (e.g. deployment/web)")
    return groups[0][0], groups[0][1][0]


def field_value(doc: dict, path: str) -> Any:
    value: Any = doc
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def every(doc: dict) -> bool:
    """The field filter without --field-selector: `select` then builds no JSON at all."""
    return True


def field_filter(text: Optional[str]) -> Callable[[dict], bool]:
    """--field-selector metadata.name=x,spec.nodeName!=node1 over the -o json form of each object."""
    if not text:
        return every
    terms = []
    for term in text.split(","):
        path, op, value = term.partition("!=") if "!=" in term else term.partition("==") if "==" in term \
            else term.partition("=")
        if not op or not path:
            raise InputError(f"--field-selector {text}: {term!r} is not FIELD=VALUE or FIELD!=VALUE; "
                             "write e.g. spec.nodeName=node1")
        terms.append((path.strip(), op == "!=", value.strip()))
    return lambda doc: all((str(field_value(doc, path) or "") == value) != negate for path, negate, value in terms)


def select(kind: Kind, inv: Inventory, objects: LabObjects, names: list[str], namespace: Optional[str],
           labels: Optional[Selector], fields: Callable[[dict], bool] = every) -> list[Item]:
    """The objects of `kind` that pass every filter (namespace None: all namespaces)."""
    return [r for r in kind.items(inv, objects)
            if (not kind.namespaced or namespace is None or r.namespace == namespace)
            and (not names or r.name in names) and (labels is None or labels.matches(r.labels))
            and (fields is every or fields(kind.to_json(r, inv, objects)))]


def render_docs(docs: list[dict], single: bool, output: str) -> str:
    """json, yaml or jsonpath=...: the object asked for by name, else a kubectl List."""
    doc = docs[0] if single and len(docs) == 1 else {"apiVersion": "v1", "kind": "List", "items": docs}
    if output == "json":
        return json.dumps(doc, indent=2)
    if output == "yaml":
        return dump_yaml(doc).rstrip("\n")
    return jsonpath(output[len("jsonpath="):], doc)

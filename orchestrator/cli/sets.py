"""kubectl's `set`: `set image` and `set env` change a Deployment's pod template (its pods are made again),
`set selector` replaces a Service's selector. Each starts from the object as `lab get -o json` shows it and is
applied as `lab apply` applies it: the same checks, nothing changed on any node when one fails."""

from __future__ import annotations

import copy
import re
from typing import Any, Optional

from orchestrator.cli.edits import apply_changed, current
from orchestrator.core.errors import InputError, LabError
from orchestrator.core.manifests import ENV_SOURCES
from orchestrator.kinds.configmap import CONFIGMAP
from orchestrator.kinds.deployment import DEPLOYMENT
from orchestrator.kinds.secret import SECRET
from orchestrator.kinds.service import SERVICE
from orchestrator.layers.pods.env import source_keys

NOT_IN_NAME = re.compile(r"[^A-Za-z0-9_]")  # kubectl's rule for an env name made of a ConfigMap's or Secret's key
SOURCES = {"configmap": (CONFIGMAP, "configMapKeyRef"), "cm": (CONFIGMAP, "configMapKeyRef"),
           "secret": (SECRET, "secretKeyRef")}


def object_and_expressions(args, command: str) -> list[str]:
    """Set args.kind and args.name from `KIND/NAME ...` or `KIND NAME ...`; the words after them."""
    words = list(args.words)
    if not words:
        raise InputError(f"lab {command}: name an object: lab {command} KIND/NAME ...")
    if "/" in words[0]:
        args.kind, args.name = words[0], None
        return words[1:]
    if len(words) < 2:
        raise InputError(f"lab {command}: name an object: KIND NAME or KIND/NAME")
    args.kind, args.name = words[0], words[1]
    return words[2:]


def cmd_set(args) -> int:
    command = f"set {args.what}"
    expressions = object_and_expressions(args, command)
    inv, files, kind, doc = current(args, command)
    ref = f"{kind.ref}/{doc['metadata']['name']}"
    source = f"lab {command} {kind.resource}/{doc['metadata']['name']}"
    if args.what == "selector":
        if kind is not SERVICE:
            raise InputError(f"lab set selector: {kind.resource}: the lab sets a Service's selector (a Deployment's "
                             "cannot change in apps/v1); write lab set selector service/NAME KEY=VALUE,...")
        changed = with_selector(doc, expressions, source)
        word = "selector updated"
    else:
        if kind is not DEPLOYMENT:
            raise InputError(f"lab {command}: {kind.resource}: a pod's containers cannot change once it runs; set "
                             f"them on its deployment: lab {command} deployment/NAME ...")
        containers = chosen_containers(doc, args.container, source)
        if args.what == "env" and args.list:
            print_env(doc, containers)
            return 0
        if args.what == "image":
            changed = with_images(doc, containers, expressions, source)
            word = "image updated"
        else:
            objects = files.read_objects()
            changed = with_env(doc, containers, expressions, env_from(args.from_, args.prefix, objects, doc, source),
                               source)
            word = "env updated"
    if changed == doc:
        print(f"{ref} {word} (no change)" if args.what != "env" else f"{ref} (no change)")
        return 0
    apply_changed(inv, files, changed, source)
    print(f"{ref} {word}")
    return 0


def containers_of(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return (((doc.get("spec") or {}).get("template") or {}).get("spec") or {}).get("containers") or []


def chosen_containers(doc: dict[str, Any], name: Optional[str], source: str) -> list[str]:
    names = [c.get("name", "") for c in containers_of(doc)]
    if name and name not in names:
        raise InputError(f"{source}: -c {name}: no such container (its containers: {', '.join(names)})")
    return [name] if name else names


def with_images(doc: dict[str, Any], containers: list[str], pairs: list[str], source: str) -> dict[str, Any]:
    """CONTAINER=IMAGE for each pair (`*=IMAGE`: every container)."""
    if not pairs or any("=" not in p for p in pairs):
        raise InputError(f"{source}: write CONTAINER=IMAGE (or '*=IMAGE') after the deployment")
    changed = copy.deepcopy(doc)
    for pair in pairs:
        name, image = pair.split("=", 1)
        chosen = [c for c in containers_of(changed) if name in ("*", c.get("name")) and c.get("name") in containers]
        if not chosen or not image:
            raise InputError(f'{source}: unable to find container named "{name}" (its containers: '
                             f"{', '.join(containers)})")
        for container in chosen:
            container["image"] = image
    return changed


def with_selector(doc: dict[str, Any], expressions: list[str], source: str) -> dict[str, Any]:
    """The Service with its selector replaced by KEY=VALUE[,KEY=VALUE...] (kubectl replaces it, never merges)."""
    selector = {}
    for term in ",".join(expressions).split(","):
        key, eq, value = term.strip().partition("=")
        if not term.strip():
            continue
        if not eq or not key or value.startswith("="):
            raise InputError(f"{source}: {term!r} is not KEY=VALUE; write e.g. app=web,tier=frontend")
        selector[key] = value
    if not selector:
        raise InputError(f"{source}: give the new selector: KEY=VALUE[,KEY=VALUE...]")
    changed = copy.deepcopy(doc)
    changed["spec"]["selector"] = selector
    return changed


def env_from(reference: Optional[str], prefix: str, objects, doc: dict[str, Any], source: str) -> list[dict[str, Any]]:
    """--from=configmap/NAME|secret/NAME: an env var for each of its keys, named as kubectl names them
    (upper case, other characters as '_', after --prefix), each taking its value from that key."""
    if not reference:
        return []
    what, _, name = reference.partition("/")
    if what.lower() not in SOURCES or not name:
        raise InputError(f"{source}: --from={reference}: write --from=configmap/NAME or --from=secret/NAME")
    kind, ref_field = SOURCES[what.lower()]
    namespace = doc["metadata"].get("namespace") or "default"
    keys = source_keys(objects, kind.kind, namespace, name)
    if keys is None:
        raise LabError(kind.not_found(name, namespace))
    return [{"name": prefix + NOT_IN_NAME.sub("_", key).upper(),
             "valueFrom": {ref_field: {"name": name, "key": key}}} for key in sorted(keys)]


def with_env(doc: dict[str, Any], containers: list[str], expressions: list[str],
             imported: list[dict[str, Any]], source: str) -> dict[str, Any]:
    """KEY=VALUE sets, KEY- removes, `imported` entries set, in each chosen container (kubectl's order: an
    existing variable keeps its place)."""
    sets, removals = list(imported), []
    for word in expressions:
        name, eq, value = word.partition("=")
        if eq and name:
            sets.append({"name": name, "value": value})
        elif word.endswith("-") and len(word) > 1:
            removals.append(word[:-1])
        else:
            raise InputError(f"{source}: {word!r}: write KEY=VALUE to set a variable or KEY- to remove it")
    if not sets and not removals:
        raise InputError(f"{source}: give KEY=VALUE, KEY-, --from=configmap/NAME or --list")
    changed = copy.deepcopy(doc)
    for c in containers_of(changed):
        if c.get("name") not in containers:
            continue
        env = [e for e in c.get("env") or [] if e.get("name") not in removals]
        for entry in sets:
            at = next((i for i, e in enumerate(env) if e.get("name") == entry["name"]), None)
            if at is None:
                env.append(entry)
            else:
                env[at] = entry
        if env:
            c["env"] = env
        else:
            c.pop("env", None)
    return changed


def print_env(doc: dict[str, Any], containers: list[str]) -> None:
    """`kubectl set env --list`: each container's variables, a reference as a comment."""
    kind = doc["kind"].lower()
    for c in containers_of(doc):
        if c.get("name") not in containers:
            continue
        print(f"# {kind} {doc['metadata']['name']}, container {c.get('name')}")
        for entry in c.get("env") or []:
            reference = next(iter((entry.get("valueFrom") or {}).items()), None)
            if reference is None:
                print(f"{entry['name']}={entry.get('value', '')}")
            else:
                what = ENV_SOURCES.get(reference[0], reference[0]).lower()
                print(f"# {entry['name']} from {what} {reference[1].get('name')}, key {reference[1].get('key')}")

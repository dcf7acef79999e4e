"""kubectl's in-place edits: `lab patch KIND NAME -p PATCH [--type strategic|merge|json]` and `lab edit KIND NAME`
($EDITOR on the object's YAML). Both start from the object as `lab get -o yaml` shows it and apply the result as
`lab apply` does: the same checks, nothing changed on any node when it fails."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import tempfile
from typing import Any

import yaml

from orchestrator import kinds, pipeline
from orchestrator.cli.common import progress, resolve_inventory, warn
from orchestrator.cli.resources import one_object, select
from orchestrator.core.errors import InputError, LabError
from orchestrator.core.patch import json_patch, merge_patch, strategic_merge_patch
from orchestrator.core.render import dump_yaml
from orchestrator.core.state import LabFiles
from orchestrator.core.transport import Transport


def current(args, command: str) -> tuple[Any, Any, Any, dict[str, Any]]:
    """(inventory, files, kind, the object's document) of the one object KIND NAME names."""
    text, name = one_object(args.kind, args.name, command)
    kind = kinds.by_name(text)
    if kind is None or kind.parse is None:
        changeable = ", ".join(k.resource for k in kinds.KINDS.values() if k.parse is not None)
        raise InputError(f"lab {command}: {text!r}: the lab changes {changeable}")
    inv = resolve_inventory(args.inventory)
    files = LabFiles.of(inv.name)
    objects = files.read_objects()
    found = select(kind, inv, objects, [name], args.namespace if kind.namespaced else None, None)
    if not found:
        raise LabError(kind.not_found(name, args.namespace))
    return inv, files, kind, kind.to_json(found[0], inv, objects)


def apply_changed(inv, files: LabFiles, doc: dict[str, Any], source: str) -> None:
    manifest = kinds.parse(doc, source, warn)
    with files.lock(), Transport(inv.nodes) as transport:
        pipeline.apply_manifests(inv, transport, files, [manifest], progress)


def cmd_patch(args) -> int:
    inv, files, kind, doc = current(args, "patch")
    source = f"lab patch {kind.resource}/{doc['metadata']['name']}"
    try:
        patch = json.loads(args.patch) if args.patch.lstrip().startswith(("{", "[")) else yaml.safe_load(args.patch)
    except (ValueError, yaml.YAMLError) as exc:
        raise InputError(f"{source}: -p is neither JSON nor YAML ({str(exc).splitlines()[0]}); write e.g. "
                         """-p '{"spec":{"replicas":3}}'""") from None
    if args.type == "json":
        patched = json_patch(doc, patch, source)
    elif not isinstance(patch, dict):
        raise InputError(f"{source}: a {args.type} patch is an object, e.g. " + """'{"spec":{"replicas":3}}'""")
    else:
        patched = (merge_patch if args.type == "merge" else strategic_merge_patch)(doc, patch)
    ref = f"{kind.ref}/{doc['metadata']['name']}"
    if patched == doc:
        print(f"{ref} patched (no change)")
        return 0
    apply_changed(inv, files, patched, source)
    print(f"{ref} patched")
    return 0


def cmd_edit(args) -> int:
    """The object's YAML in $KUBE_EDITOR or $EDITOR (else vi), applied when it changed; a copy of an edit that
    fails is kept, as kubectl keeps it."""
    inv, files, kind, doc = current(args, "edit")
    ref = f"{kind.ref}/{doc['metadata']['name']}"
    text = dump_yaml(doc)
    editor = shlex.split(os.environ.get("KUBE_EDITOR") or os.environ.get("EDITOR") or "vi")
    with tempfile.NamedTemporaryFile("w", prefix="lab-edit-", suffix=".yaml", delete=False) as handle:
        handle.write("# Edit the object below; save and close to apply it (lab edit). An empty file cancels.\n"
                     + text)
        path = handle.name
    try:
        if subprocess.run([*editor, path]).returncode != 0:
            raise LabError(f"lab edit: the editor {' '.join(editor)} failed; nothing changed")
        with open(path) as edited:
            body = edited.read()
        changed = yaml.safe_load(body) if body.strip() else None
    except yaml.YAMLError as exc:
        raise LabError(f"lab edit: {path}: not YAML ({str(exc).splitlines()[0]}); nothing changed, your copy "
                       "is kept there") from None
    except FileNotFoundError:
        raise LabError(f"lab edit: no editor {editor[0]!r}: set EDITOR (e.g. EDITOR=nano)") from None
    if changed is None or changed == doc:
        os.unlink(path)
        print("Edit cancelled, no changes made.")
        return 0
    try:
        apply_changed(inv, files, changed, f"lab edit {ref} ({path})")
    except LabError as exc:
        raise LabError(f"{exc}\nA copy of your changes has been stored to {path!r}") from None
    os.unlink(path)
    print(f"{ref} edited")
    return 0

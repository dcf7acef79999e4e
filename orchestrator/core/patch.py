"""kubectl patch's three patch types (pure): JSON merge patch (RFC 7386), JSON patch (RFC 6902), and the
strategic merge patch, which merges lists of objects by their merge key (containers by name, container ports
by containerPort, Service ports by port, ...) where a merge patch would replace the whole list."""

from __future__ import annotations

import copy
from typing import Any

from orchestrator.core.errors import InputError

# list items are merged by the first of these keys every item of both lists has (Kubernetes' patchMergeKey of
# the lists students patch: containers, env, volumes by name; containerPort; port; mountPath; ip)
MERGE_KEYS = ("name", "containerPort", "port", "mountPath", "ip")


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: a patch object merges into the target object key by key, null removes a key, anything else
    replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def strategic_merge_patch(target: Any, patch: Any) -> Any:
    """A merge patch where lists of objects that share a merge key are merged item by item (an item with
    `$patch: delete` is removed)."""
    if isinstance(patch, list) and isinstance(target, list):
        key = merge_key(target, patch)
        if key is None:
            return copy.deepcopy(patch)
        result = copy.deepcopy(target)
        for item in patch:
            at = next((i for i, old in enumerate(result) if old.get(key) == item.get(key)), None)
            if item.get("$patch") == "delete":
                if at is not None:
                    result.pop(at)
            elif at is None:
                result.append(copy.deepcopy(item))
            else:
                result[at] = strategic_merge_patch(result[at], item)
        return result
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    merged: dict[str, Any] = copy.deepcopy(target) if isinstance(target, dict) else {}
    for name, value in patch.items():
        if value is None:
            merged.pop(name, None)
        else:
            merged[name] = strategic_merge_patch(merged.get(name), value)
    return merged


def merge_key(target: list[Any], patch: list[Any]) -> Any:
    items = [*target, *patch]
    if not items or not all(isinstance(i, dict) for i in items):
        return None
    return next((k for k in MERGE_KEYS if all(k in i for i in items)), None)


def json_patch(target: Any, operations: Any, source: str) -> Any:
    """RFC 6902: add, remove, replace, move, copy and test, each at a JSON pointer (RFC 6901)."""
    if not isinstance(operations, list):
        raise InputError(f"{source}: a JSON patch is a list of operations, e.g. "
                         '[{"op": "replace", "path": "/spec/replicas", "value": 3}]')
    document = copy.deepcopy(target)
    for number, operation in enumerate(operations):
        where = f"{source}: operation {number}"
        if not isinstance(operation, dict) or operation.get("op") not in ("add", "remove", "replace", "move",
                                                                          "copy", "test"):
            raise InputError(f"{where}: op must be add, remove, replace, move, copy or test")
        op, path = operation["op"], pointer(operation.get("path"), where)
        if op in ("add", "replace", "test") and "value" not in operation:
            raise InputError(f"{where}: {op} needs a value")
        if op == "test":
            if get(document, path, where) != operation["value"]:
                raise InputError(f"{where}: test failed: {operation.get('path')} is not {operation['value']!r}")
        elif op == "remove":
            document = remove(document, path, where)
        elif op == "replace":
            get(document, path, where)
            document = add(remove(document, path, where), path, operation["value"], where)
        elif op == "add":
            document = add(document, path, operation["value"], where)
        else:
            origin = pointer(operation.get("from"), where)
            value = get(document, origin, where)
            if op == "move":
                document = remove(document, origin, where)
            document = add(document, path, copy.deepcopy(value), where)
    return document


def pointer(text: Any, where: str) -> list[str]:
    if not isinstance(text, str) or (text and not text.startswith("/")):
        raise InputError(f"{where}: path {text!r} is not a JSON pointer; write e.g. /spec/replicas")
    return [part.replace("~1", "/").replace("~0", "~") for part in text.split("/")[1:]]


def index(container: list[Any], part: str, where: str, adding: bool = False) -> int:
    if adding and part == "-":
        return len(container)
    if not part.isdigit() or int(part) > len(container) - (0 if adding else 1):
        raise InputError(f"{where}: {part!r} is not an index of a list of {len(container)}")
    return int(part)


def get(document: Any, path: list[str], where: str) -> Any:
    value = document
    for part in path:
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list):
            value = value[index(value, part, where)]
        else:
            raise InputError(f"{where}: /{'/'.join(path)} does not exist")
    return value


def add(document: Any, path: list[str], value: Any, where: str) -> Any:
    if not path:
        return copy.deepcopy(value)
    parent = get(document, path[:-1], where)
    if isinstance(parent, dict):
        parent[path[-1]] = copy.deepcopy(value)
    elif isinstance(parent, list):
        parent.insert(index(parent, path[-1], where, adding=True), copy.deepcopy(value))
    else:
        raise InputError(f"{where}: /{'/'.join(path[:-1])} holds no object or list")
    return document


def remove(document: Any, path: list[str], where: str) -> Any:
    if not path:
        raise InputError(f"{where}: the whole object cannot be removed")
    parent = get(document, path[:-1], where)
    if isinstance(parent, dict) and path[-1] in parent:
        del parent[path[-1]]
    elif isinstance(parent, list):
        parent.pop(index(parent, path[-1], where))
    else:
        raise InputError(f"{where}: /{'/'.join(path)} does not exist")
    return document

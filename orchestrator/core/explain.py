"""`lab explain KIND.field.path`, as kubectl explain: a field's type, description and fields, read from the same
schemas the validators use (Kubernetes' own for built-in kinds, the vendored CRDs for the Gateway API's and
MetalLB's), so what the lab's errors point at is what it explains."""

from __future__ import annotations

import textwrap
from typing import Any, Optional

from orchestrator.core.crd_schema import crd_validator
from orchestrator.core.errors import InputError
from orchestrator.core.schema import validator


def _resolved(node: dict[str, Any], resolver: Any) -> tuple[dict[str, Any], Any]:
    """The schema behind a $ref (keeping the description written next to the $ref), and its resolver."""
    while "$ref" in node and resolver is not None:
        found = resolver.lookup(node["$ref"])
        node = {**found.contents, **{k: v for k, v in node.items() if k == "description"}}
        resolver = found.resolver
    return node, resolver


def _element(node: dict[str, Any], resolver: Any) -> tuple[dict[str, Any], Any]:
    """What a list holds (a list of lists: the innermost); any other node as it is."""
    while node.get("type") == "array" or "items" in node:
        node, resolver = _resolved(node.get("items") or {}, resolver)
    return node, resolver


def type_name(node: dict[str, Any]) -> str:
    """kubectl explain's type: string, integer, []Container, map[string]string, Object."""
    if "$ref" in node:
        return str(node["$ref"]).rsplit(".", 1)[-1]
    kind = node.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "Object")
    if kind == "array":
        return "[]" + type_name(node.get("items") or {})
    if kind == "object" and isinstance(node.get("additionalProperties"), dict) and not node.get("properties"):
        return "map[string]" + type_name(node["additionalProperties"])
    if kind == "object" or kind is None:
        return "Object"
    return str(kind)


def explain(kind: str, api_version: str, path: list[str]) -> str:
    """The text of `kubectl explain kind.path`; an unknown field is kubectl's error."""
    check = validator(kind, api_version) or crd_validator(kind, api_version)
    if check is None:
        raise InputError(f"no schema for {kind} ({api_version})")
    node: dict[str, Any] = check.schema
    resolver: Optional[Any] = getattr(check, "_resolver", None)
    node, resolver = _resolved(node, resolver)
    walked: list[str] = []
    field_type = ""
    for name in path:
        node, resolver = _element(node, resolver)
        child = (node.get("properties") or {}).get(name)
        if child is None:
            raise InputError(f'field "{name}" does not exist in {".".join([kind.lower(), *walked]) or kind}; see '
                             f"`lab explain {'.'.join([kind.lower(), *walked])}`")
        walked.append(name)
        field_type = type_name(child)
        node, resolver = _resolved(child, resolver)
    lines = [f"KIND:       {kind}", f"VERSION:    {api_version}", ""]
    if walked:
        lines += [f"FIELD: {walked[-1]} <{field_type}>", ""]
    lines += ["DESCRIPTION:", *textwrap.wrap(node.get("description") or "<empty>", 96, initial_indent="    ",
                                             subsequent_indent="    ")]
    inner, inner_resolver = _element(node, resolver)
    fields = inner.get("properties") or {}
    if fields:
        required = set(inner.get("required") or [])
        lines += ["", "FIELDS:"]
        for name, child in fields.items():
            lines.append(f"  {name}\t<{type_name(child)}>{' -required-' if name in required else ''}")
            described = _resolved(child, inner_resolver)[0].get("description") or ""
            lines += textwrap.wrap(described, 92, initial_indent="    ", subsequent_indent="    ", max_lines=2,
                                   placeholder=" ...")
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"

"""kubectl's JSONPath templates (pure): text between `{...}` expressions, `{range EXPR}...{end}` loops, string
literals such as `{"\\n"}` and `{'\\t'}`, and paths relative to the object in hand (the document, or the item of
the loop; `$` for the document). Paths are evaluated by jsonpath-ng (filters such as
`[?(@.type=="InternalIP")]` included); several values of one path are printed space separated, as kubectl does."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Union

from orchestrator.core.errors import InputError

ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "'": "'"}


@dataclass
class Loop:
    path: str
    body: list[Part] = field(default_factory=list)


@dataclass(frozen=True)
class Path:
    path: str


Part = Union[str, Path, Loop]


def expressions(template: str) -> list[tuple[bool, str]]:
    """(is an expression, text): the template cut at its braces; a brace inside a quoted string is text."""
    out: list[tuple[bool, str]] = []
    i = 0
    while i < len(template):
        start = template.find("{", i)
        if start < 0:
            out.append((False, template[i:]))
            break
        if start > i:
            out.append((False, template[i:start]))
        j, quote = start + 1, ""
        while j < len(template) and (quote or template[j] != "}"):
            if quote and template[j] == "\\":
                j += 1
            elif template[j] in "\"'" and (not quote or quote == template[j]):
                quote = "" if quote else template[j]
            j += 1
        if j >= len(template):
            raise InputError(f"-o jsonpath={template}: unclosed {{ at character {start + 1}; close it with }}")
        out.append((True, template[start + 1:j].strip()))
        i = j + 1
    return out


def literal(text: str) -> str:
    return re.sub(r"\\(.)", lambda m: ESCAPES.get(m.group(1), m.group(1)), text[1:-1])


def parse_template(template: str) -> list[Part]:
    """The template as text, paths and loops; an `{end}` without `{range}` (or the other way) is an error."""
    root: list[Part] = []
    stack: list[list[Part]] = [root]
    for is_expression, text in expressions(template):
        if not is_expression:
            stack[-1].append(text)
        elif text.startswith("range ") or text == "range":
            loop = Loop(text[len("range"):].strip())
            stack[-1].append(loop)
            stack.append(loop.body)
        elif text == "end":
            if len(stack) == 1:
                raise InputError(f"-o jsonpath={template}: {{end}} without {{range}}")
            stack.pop()
        elif len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
            stack[-1].append(literal(text))
        else:
            stack[-1].append(Path(text))
    if len(stack) > 1:
        raise InputError(f"-o jsonpath={template}: {{range}} without {{end}}")
    return root


ESCAPED_KEY = re.compile(r"\.((?:[A-Za-z0-9_\-/]|\\\.)*\\\.(?:[A-Za-z0-9_\-/]|\\\.)*)")


def find(path: str, current: Any, document: Any, template: str) -> list[Any]:
    from jsonpath_ng.ext import parse  # the one command that needs it pays its import
    base = document if path.startswith("$") else current
    expression = path[1:] if path.startswith(("$", "@")) else path
    expression = "$" + (expression if expression.startswith((".", "[")) or not expression else "." + expression)
    # kubectl's escaped dot in a key (.metadata.labels.kubernetes\.io/hostname) is a quoted key to jsonpath-ng
    expression = ESCAPED_KEY.sub(lambda m: '."' + m.group(1).replace("\\.", ".") + '"', expression)
    try:
        return [m.value for m in parse(expression).find(base)]
    except Exception as exc:  # noqa: BLE001 - jsonpath-ng raises its own types for bad paths
        raise InputError(f"-o jsonpath={template}: {{{path}}} is not a path ({exc}); write e.g. "
                         "{.items[*].metadata.name}") from None


def text_of(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def render(parts: list[Part], current: Any, document: Any, template: str) -> str:
    out = []
    for part in parts:
        if isinstance(part, str):
            out.append(part)
        elif isinstance(part, Path):
            out.append(" ".join(text_of(v) for v in find(part.path, current, document, template)))
        else:
            items = find(part.path, current, document, template)
            if len(items) == 1 and isinstance(items[0], list):  # {range .items}: its elements
                items = items[0]
            for item in items:
                out.append(render(part.body, item, document, template))
    return "".join(out)


def jsonpath(template: str, document: Any) -> str:
    """kubectl's `-o jsonpath=TEMPLATE` of `document`."""
    return render(parse_template(template), document, document, template)


def custom_columns(spec: str, source: str = "-o custom-columns") -> list[tuple[str, str]]:
    """`NAME:.metadata.name,IP:.status.podIP` (braces optional around a path): (header, path) per column."""
    columns = []
    for part in spec.split(","):
        header, colon, path = part.partition(":")
        if not colon or not header or not path:
            raise InputError(f"{source}={spec}: {part!r} is not HEADER:PATH; write e.g. "
                             "custom-columns=NAME:.metadata.name,IP:.status.podIP")
        columns.append((header, path[1:-1] if path.startswith("{") and path.endswith("}") else path))
    return columns


def columns_file(path: str) -> list[tuple[str, str]]:
    """kubectl's custom-columns-file: the headers on the first line, their paths on the second."""
    try:
        with open(path) as handle:
            lines = [line.split() for line in handle.read().splitlines() if line.strip()]
    except OSError as exc:
        raise InputError(f"-o custom-columns-file={path}: {exc.strerror}; give a readable file") from None
    if len(lines) != 2 or len(lines[0]) != len(lines[1]):
        raise InputError(f"-o custom-columns-file={path}: want two lines, the headers and as many paths")
    return custom_columns(",".join(f"{h}:{p}" for h, p in zip(lines[0], lines[1], strict=True)),
                          f"-o custom-columns-file={path}")


def column_value(path: str, document: Any) -> str:
    """One cell: the path's values, comma separated, or <none>."""
    values = find(path, document, document, path)
    return ",".join(text_of(v) for v in values) if values else "<none>"


def sort_key(path: str, document: Any) -> tuple[Any, ...]:
    """--sort-by: objects without the field first, then numbers by value, then text."""
    clean = path[1:-1] if path.startswith("{") and path.endswith("}") else path
    values = find(clean, document, document, f"--sort-by={path}")
    if not values:
        return (0, 0, "")
    value = values[0]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (1, value, "")
    return (2, 0, text_of(value))

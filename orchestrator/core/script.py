"""Shell scripts for nodes: a change says in words what it does and carries the lines that do it.

Node scripts are quoted here and nowhere else (the SSH command line is quoted in core/transport.py), so
that no name, label or file content from a user can break out of its word.
"""

from __future__ import annotations

import base64
import shlex
from dataclasses import dataclass
from typing import Iterable, Union


@dataclass(frozen=True)
class Change:
    what: str
    lines: tuple[str, ...]


def quote(word: object) -> str:
    """One word for a shell line."""
    return shlex.quote(str(word))


def quote_argv(argv: Iterable[object]) -> str:
    """A command line for a shell, each argument one word."""
    return shlex.join(str(a) for a in argv)


def cmd(*argv: object) -> str:
    """cmd("ip", "link", "del", name): the same, as a call."""
    return quote_argv(argv)


def heredoc(command: str, text: str, marker: str = "LAB_RULES") -> str:
    """`command` reading `text` from a quoted here-document (nothing in it is expanded)."""
    if f"\n{marker}\n" in f"\n{text}\n":
        raise ValueError(f"the text holds the here-document marker {marker}")
    return f"{command} <<'{marker}'\n{text.rstrip(chr(10))}\n{marker}"


def write_file(path: str, content: Union[str, bytes], mode: str = "0644") -> tuple[str, ...]:
    """Shell lines writing `content` to `path` atomically and durably, as core/state.atomic_write does on this
    machine: a temporary file, synced, renamed over `path`, then the folder synced (bytes go through base64)."""
    tmp, folder = path + ".lab-tmp", path.rsplit("/", 1)[0]
    if isinstance(content, bytes):
        write = f"printf '%s' {quote(base64.b64encode(content).decode())} | base64 -d > {quote(tmp)}"
    else:
        write = f"printf '%s' {quote(content)} > {quote(tmp)}"
    return (cmd("mkdir", "-p", folder), write, cmd("chmod", mode, tmp), cmd("sync", tmp), cmd("mv", "-f", tmp, path),
            cmd("sync", folder))


def remember_missing(folders: Iterable[str], record: str) -> str:
    """A shell line writing to `record` which of `folders` do not exist yet (once: a record stays)."""
    return (f"[ -e {quote(record)} ] || {{ mkdir -p {quote(record.rsplit('/', 1)[0])} && "
            f"for d in {' '.join(quote(f) for f in folders)}; do [ -d \"$d\" ] || echo \"$d\"; done "
            f"> {quote(record)}; }}")


def render_script(changes: Iterable[Change]) -> str:
    """A bash script applying `changes` in order; on the first failure it names the change and command."""
    parts = ["set -eu -o pipefail",
             "trap 'echo \"lab: failed at: $LAB_STEP: $BASH_COMMAND\" >&2' ERR"]
    for change in changes:
        parts.append(f"LAB_STEP={quote(change.what)}")
        parts.extend(change.lines)
    return "\n".join(parts) + "\n"

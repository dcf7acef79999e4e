"""Shell scripts for nodes: a change says in words what it does and carries the lines that do it.

Node scripts are quoted here and nowhere else (the SSH command line is quoted in core/transport.py), so
that no name, label or file content from a user can break out of its word.
"""

from __future__ import annotations

import base64
import shlex
from dataclasses import dataclass
from typing import Iterable, Optional, Union


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


def pipe(*commands: str) -> str:
    """pipe(cmd("tac", path), loop): each command's output into the next one's input."""
    return " | ".join(commands)


def redirect(command: str, *, stdout: Optional[str] = None, append: Optional[str] = None,
             stderr: Optional[str] = None) -> str:
    """`command` with its output written to (or appended to) a file, its errors to another, each path quoted."""
    for operator, path in ((">", stdout), (">>", append), ("2>", stderr)):
        if path is not None:
            command = f"{command} {operator} {quote(path)}"
    return command


def quiet(command: str) -> str:
    """`command` with its output thrown away (its errors still show, and its exit status counts)."""
    return redirect(command, stdout="/dev/null")


def either(command: str, otherwise: str) -> str:
    """`otherwise` runs when `command` fails."""
    return f"{command} || {otherwise}"


def through_if_present(path: str, wrapper: Iterable[object]) -> str:
    """A `sh -c` script that runs its arguments ("$@") through `wrapper` when `path` exists, else as they are."""
    return f'if [ -e {quote(path)} ]; then exec {quote_argv(wrapper)} "$@"; fi; exec "$@"'


def allow_failure(command: str) -> str:
    """`command` whose failure (and its complaint) does not stop the script: for what may already be gone."""
    return either(redirect(command, stderr="/dev/null"), "true")


def remove_glob(folder: str, prefix: str) -> str:
    """Remove the files of `folder` whose names start with `prefix` (both quoted; only the * is a pattern)."""
    return f"rm -f {quote(folder)}/{quote(prefix)}*"


def read_words(variable: str, path: str) -> str:
    """Set shell variable `variable` to the words of file `path` (empty when there is no such file)."""
    if not variable.isidentifier():
        raise ValueError(f"{variable!r} is not a shell variable name")
    return f"{variable}=$({allow_failure(cmd('cat', path))})"


def rmdir_each(variable: str) -> str:
    """Remove each folder named in shell variable `variable` (see read_words) that is empty; others stay."""
    if not variable.isidentifier():
        raise ValueError(f"{variable!r} is not a shell variable name")
    remove = allow_failure('rmdir "$d"')
    return f"for d in ${variable}; do {remove}; done"


def restore_sysctls(path: str) -> str:
    """Set again every `key=value` line of file `path` (values the lab saved before it changed them)."""
    return (f"if [ -f {quote(path)} ]; then while IFS== read -r k v; do [ -n \"$v\" ] && sysctl -qw \"$k=$v\"; "
            f"done < {quote(path)}; fi")


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

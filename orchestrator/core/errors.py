"""Errors a user can act on. The CLI prints them as one line, never as a traceback."""


class LabError(Exception):
    """A failure the user can fix or must know about; `str()` is the whole message."""

    exit_code = 1


class InputError(LabError):
    """Bad input (inventory, manifest, command line): nothing was changed on any node."""

    exit_code = 2


def field_error(source: str, field: str, problem: str, fix: str) -> InputError:
    """An InputError in the one-line form `FILE: FIELD: PROBLEM; FIX`."""
    return InputError(f"{source}: {field}: {problem}; {fix}")


def yaml_error(source: str, exc: Exception) -> InputError:
    """The one-line error for YAML that does not parse: `FILE: line N: not valid YAML (PROBLEM); fix ...`."""
    mark = getattr(exc, "problem_mark", None)
    where = f"line {mark.line + 1}" if mark else "YAML"
    problem = getattr(exc, "problem", None) or (str(exc).splitlines() or [type(exc).__name__])[0]
    return field_error(source, where, f"not valid YAML ({problem})", "fix the syntax there")

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

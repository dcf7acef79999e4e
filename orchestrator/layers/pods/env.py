"""A pod's environment as the kubelet makes it when the pod starts (pure): its container's `envFrom` (every
key of a ConfigMap or Secret, after a prefix), then `env` (values, and single keys), later names winning. What
cannot be found is a problem, worded as the kubelet words it; the variable is left out (the kubelet would hold
the container back until it exists: the lab's pod runs its server all the same)."""

from __future__ import annotations

import base64
import re

from orchestrator.core.objects import LabObjects, Pod, key_of

ENV_NAME = re.compile(r"[-._a-zA-Z][-._a-zA-Z0-9]*")  # what the API server accepts as an env var's name


def source_keys(objects: LabObjects, kind: str, namespace: str, name: str) -> dict[str, str] | None:
    """The text of each key of ConfigMap or Secret namespace/name (a Secret's decoded), or None if none."""
    record = objects.kept(kind).get(key_of(namespace, name))
    if record is None:
        return None
    data = record["spec"].get("data") or {}
    if kind == "Secret":
        return {k: base64.b64decode(v).decode(errors="replace") for k, v in data.items()}
    return dict(data)


def resolved_env(pod: Pod, objects: LabObjects) -> tuple[list[str], list[str]]:
    """(NAME=VALUE for each variable, in order; the problems, one line each)."""
    values: dict[str, str] = {}
    problems: list[str] = []
    for var in pod.env:
        if not var.source:
            values[var.name] = var.value
            continue
        keys = source_keys(objects, var.source, pod.namespace, var.source_name)
        if keys is None:
            if not var.optional:
                problems.append(f'Error: {var.source.lower()} "{var.source_name}" not found')
        elif var.key:
            found = keys.get(var.key)
            if found is not None:
                values[var.name] = found
            elif not var.optional:
                problems.append(f"Error: couldn't find key {var.key} in {var.source} {pod.namespace}/"
                                f"{var.source_name}")
        else:
            skipped = [k for k in keys if not ENV_NAME.fullmatch(var.name + k)]
            values.update((var.name + k, v) for k, v in keys.items() if k not in skipped)
            if skipped:
                problems.append(f"Keys [{', '.join(sorted(skipped))}] from the EnvFrom {var.source.lower()} "
                                f"{pod.namespace}/{var.source_name} were skipped since they are invalid "
                                "environment variable names.")
    return [f"{name}={value}" for name, value in values.items()], problems


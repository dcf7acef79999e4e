"""Kubernetes' rules for names: DNS-1123 labels and subdomains, label keys and values."""

from __future__ import annotations

import re
from typing import Optional

from orchestrator.core.errors import InputError

DNS_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$")
# Kubernetes' label syntax: a name (and a value, which may also be empty) of at most 63 characters, with
# an optional DNS subdomain prefix before a '/' in the key
LABEL_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")


def label_problem(key: str, value: str) -> Optional[str]:
    """Why `key: value` is not a Kubernetes label, or None."""
    prefix, _, name = key.rpartition("/")
    if prefix and not DNS_SUBDOMAIN.match(prefix):
        return f"the prefix of label key {key!r} is not a DNS subdomain (lowercase letters, digits, '-' and '.')"
    if not LABEL_NAME.match(name):
        return (f"label key {key!r} is not a valid name (at most 63 letters, digits, '-', '_' or '.', starting "
                "and ending with a letter or digit)")
    if value and not LABEL_NAME.match(value):
        return (f"label value {value!r} of {key!r} is not valid (empty, or at most 63 letters, digits, '-', '_' "
                "or '.', starting and ending with a letter or digit)")
    return None


def relabelled(labels: dict[str, str], changes: dict[str, Optional[str]], overwrite: bool) -> dict[str, str]:
    """`labels` with kubectl label's `changes` (KEY=VALUE sets, None removes): kubectl's errors for a value
    changed without `overwrite` and for a label that is not one."""
    result = dict(labels)
    for label, value in changes.items():
        if value is None:
            result.pop(label, None)
            continue
        if label in result and result[label] != value and not overwrite:
            raise InputError(f"'{label}' already has a value ({result[label]}), and --overwrite is false")
        problem = label_problem(label, value)
        if problem:
            raise InputError(f"{label}={value}: {problem}")
        result[label] = value
    return result

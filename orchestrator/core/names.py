"""Kubernetes' rules for names: DNS-1123 labels and subdomains, label keys and values."""

from __future__ import annotations

import re
from typing import Optional

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

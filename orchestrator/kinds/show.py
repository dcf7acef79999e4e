"""What every kind's `get` and `describe` share: kubectl's AGE and its ways of printing labels."""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any

from orchestrator.core.manifests import fmt_labels


def kept_items(records: Mapping[str, Mapping[str, Any]]) -> list[tuple[str, str, dict[str, str], Any]]:
    """(name, namespace, labels, record) of the records a kind keeps as written (kept_record's shape), sorted."""
    return [(r["name"], r["namespace"], dict(r.get("labels") or {}), r) for _, r in sorted(records.items())]


def kept_json(record: Mapping[str, Any], api_version: str, kind: str) -> dict[str, Any]:
    """The object as `-o json` shows it, from a record kept as written."""
    return {"apiVersion": api_version, "kind": kind,
            "metadata": {"name": record["name"], "namespace": record["namespace"],
                         "labels": record.get("labels") or {}, "creationTimestamp": record["created"],
                         **({"annotations": record["annotations"]} if record.get("annotations") else {})},
            "spec": record["spec"]}


def age(created: str) -> str:
    """kubectl's AGE: 45s, 2m4s, 3h, 2d."""
    then = datetime.datetime.strptime(created, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc)
    seconds = max(0, int((datetime.datetime.now(datetime.timezone.utc) - then).total_seconds()))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 600:
        return f"{seconds // 60}m{seconds % 60}s"
    if seconds < 3 * 3600:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h" if seconds < 2 * 86400 else f"{seconds // 86400}d"


def described_labels(labels: Mapping[str, str]) -> str:
    """Labels as `kubectl describe` prints them: one per line, aligned under the first."""
    return fmt_labels(labels).replace(",", "\n" + " " * 19) or "<none>"


def events(rows: list[tuple[str, str, str, str]]) -> list[tuple[str, str]]:
    """kubectl describe's Events: table (Type, Reason, From, Message), as lines of their own."""
    if not rows:
        return [("Events:", "<none>")]
    table = [("Type", "Reason", "From", "Message"), ("----", "------", "----", "-------"), *rows]
    widths = [max(len(r[i]) for r in table) for i in range(3)]
    return [("Events:", "")] + [("  " + "  ".join(c.ljust(w) for c, w in zip(r[:3], widths, strict=True)) + "  " + r[3],
                                 "") for r in table]


def lead(namespace: str, all_namespaces: bool) -> list[str]:
    """The NAMESPACE cell a row starts with when every namespace is listed."""
    return [namespace] if all_namespaces else []


def lead_columns(all_namespaces: bool) -> list[str]:
    return ["NAMESPACE"] if all_namespaces else []

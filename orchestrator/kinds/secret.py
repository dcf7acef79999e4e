"""Secret (v1): kept as Kubernetes keeps it (type and base64 `data`, with `stringData` folded in); a Secret of
type kubernetes.io/tls is checked as `kubectl create secret tls` checks it, and is what Gateway listeners'
certificateRefs and Ingress `tls` name (layers/gateway/tls.py)."""

from __future__ import annotations

import base64
from dataclasses import replace
from typing import Any

from orchestrator.core.errors import field_error
from orchestrator.core.manifests import Doc, Manifest, Warn
from orchestrator.core.model import Inventory
from orchestrator.core.objects import LabObjects
from orchestrator.kinds.kept import forgetter, lister, recorder
from orchestrator.kinds.registry import Item, Kind, register
from orchestrator.kinds.show import age, described_labels, kept_json, lead, lead_columns
from orchestrator.layers.gateway.tls import SECRET_KIND, TLS_TYPE, certificate_summary, check_tls, decoded, tls_pair


def parse(doc: Doc, head: Manifest, warn: Warn) -> Manifest:
    data = doc.data.get("data") or {}
    text = doc.data.get("stringData") or {}
    for part, values in (("data", data), ("stringData", text)):
        if not isinstance(values, dict):
            raise field_error(head.source, part, "must be a mapping", "write NAME: VALUE lines")
    merged = {**{str(k): str(v) for k, v in data.items()},
              **{str(k): base64.b64encode(str(v).encode()).decode() for k, v in text.items()}}
    kind = str(doc.data.get("type") or "Opaque")
    raw = decoded(merged, head.source)
    if kind == TLS_TYPE:
        check_tls(raw, head.source)
    return replace(head, spec={"type": kind, "data": dict(sorted(merged.items()))})


def kept_part(m: Manifest) -> Any:
    return m.spec


def to_json(item: Item, inv: Inventory, objects: LabObjects) -> dict[str, Any]:
    """As a kept kind shows itself, with `type` and `data` where others have `spec`."""
    shown = kept_json(item.record, "v1", SECRET_KIND)
    spec = shown.pop("spec")
    return {**shown, "type": spec["type"], "data": spec["data"]}


def table(found: list[Item], inv: Inventory, objects: LabObjects, all_namespaces: bool,
          wide: bool) -> tuple[list[str], list[list[str]]]:
    """kubectl's columns: NAME, TYPE, DATA, AGE."""
    rows = [lead(item.namespace, all_namespaces) + [item.name, item.record["spec"]["type"],
                                                     str(len(item.record["spec"]["data"])), age(item.record["created"])]
            for item in found]
    return lead_columns(all_namespaces) + ["NAME", "TYPE", "DATA", "AGE"], rows


def describe(item: Item, inv: Inventory, objects: LabObjects) -> list[tuple[str, str]]:
    spec = item.record["spec"]
    sizes = {name: len(base64.b64decode(value)) for name, value in spec["data"].items()}
    lines = [("Name:", item.name), ("Namespace:", item.namespace), ("Labels:", described_labels(item.labels)),
             ("Type:", spec["type"]),
             ("Data:", "\n".join(f"{name}:  {size} bytes" for name, size in sizes.items()) or "<none>")]
    if spec["type"] == TLS_TYPE:
        lines.append(("Certificate:", certificate_summary(tls_pair(spec["data"]))))
    return lines + [("Events:", "<none>")]


SECRET = register(Kind(SECRET_KIND, "secrets", "secret", parse=parse, order=20,
                       record=recorder(SECRET_KIND, kept_part), forget=forgetter(SECRET_KIND),
                       items=lister(SECRET_KIND), to_json=to_json, table=table, describe=describe))

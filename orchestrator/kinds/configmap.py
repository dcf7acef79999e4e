"""ConfigMap (v1): kept as Kubernetes keeps it (`data` as text, `binaryData` as base64, `immutable`), made by
`lab apply` or `lab create configmap`; a pod's env and envFrom read its keys when the pod is made
(layers/pods/env.py)."""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import replace
from typing import Any

from orchestrator.core.errors import InputError, field_error
from orchestrator.core.manifests import Doc, Manifest, Warn
from orchestrator.core.model import Inventory
from orchestrator.core.objects import LabObjects, applied
from orchestrator.kinds.kept import forgetter, kept_record, lister
from orchestrator.kinds.registry import Item, Kind, Plan, register
from orchestrator.kinds.show import age, described_labels, kept_json, lead, lead_columns

CONFIGMAP_KIND = "ConfigMap"
KEY = re.compile(r"[-._a-zA-Z0-9]+")  # Kubernetes' rule for ConfigMap and Secret keys
MAX_BYTES = 1024 * 1024  # the API server refuses a ConfigMap over 1 MiB


def key_error(source: str, part: str, key: str) -> InputError | None:
    if len(key) > 253 or not KEY.fullmatch(key) or key in (".", ".."):
        return field_error(source, f"{part}.{key}", "is not a valid key",
                           "use letters, digits, '-', '_' and '.' (at most 253; not '.' or '..')")
    return None


def parse(doc: Doc, head: Manifest, warn: Warn) -> Manifest:
    data = doc.data.get("data") or {}
    binary = doc.data.get("binaryData") or {}
    for part, values in (("data", data), ("binaryData", binary)):
        for key in values:
            if (error := key_error(head.source, part, str(key))) is not None:
                raise error
    for key, value in binary.items():
        try:
            base64.b64decode(str(value), validate=True)
        except binascii.Error:
            raise field_error(head.source, f"binaryData.{key}", "is not base64",
                              "write it as `base64 -w0 FILE` prints it, or put text under data") from None
    if both := sorted(set(map(str, data)) & set(map(str, binary))):
        raise field_error(head.source, f"binaryData.{both[0]}", "is also a key of data",
                          "give each key once, under data or binaryData")
    size = sum(len(str(k)) + len(str(v).encode()) for k, v in data.items()) + \
        sum(len(str(k)) + len(base64.b64decode(str(v))) for k, v in binary.items())
    if size > MAX_BYTES:
        raise field_error(head.source, "data", f"holds {size} bytes, more than a ConfigMap's 1 MiB",
                          "split it into several ConfigMaps")
    spec: dict[str, Any] = {"data": {str(k): str(v) for k, v in sorted(data.items())}}
    if binary:
        spec["binaryData"] = {str(k): str(v) for k, v in sorted(binary.items())}
    if doc.data.get("immutable"):
        spec["immutable"] = True
    return replace(head, spec=spec)


def record(m: Manifest, plan: Plan) -> str:
    """Stored with its creation time; an immutable ConfigMap's keys cannot change, as the API server says."""
    store = plan.objects.kept(CONFIGMAP_KIND)
    old = store.get(m.key)
    if old and old["spec"].get("immutable") and old["spec"] != m.spec:
        raise field_error(m.source, "data", f"ConfigMap {m.key} is immutable",
                          f"delete it (lab delete configmap {m.name} -n {m.namespace}) and create it again")
    new = kept_record(m.name, m.namespace, m.labels, m.spec, old["created"] if old else plan.stamp, m.annotations)
    store[m.key] = new
    return applied(old, old == new)


def to_json(item: Item, inv: Inventory, objects: LabObjects) -> dict[str, Any]:
    """As Kubernetes shows one: data, binaryData and immutable at the top, no spec."""
    shown = kept_json(item.record, "v1", CONFIGMAP_KIND)
    del shown["spec"]
    return {**shown, **item.record["spec"]}


def table(found: list[Item], inv: Inventory, objects: LabObjects, all_namespaces: bool,
          wide: bool) -> tuple[list[str], list[list[str]]]:
    """kubectl's columns: NAME, DATA (keys in data and binaryData), AGE."""
    rows = [lead(item.namespace, all_namespaces) + [
        item.name, str(len(item.record["spec"]["data"]) + len(item.record["spec"].get("binaryData", {}))),
        age(item.record["created"])] for item in found]
    return lead_columns(all_namespaces) + ["NAME", "DATA", "AGE"], rows


def describe(item: Item, inv: Inventory, objects: LabObjects) -> list[tuple[str, str]]:
    """kubectl's layout: Data and BinaryData from the first column, each key with its value below a rule."""
    spec = item.record["spec"]
    data = "".join(f"{key}:\n----\n{value}\n" for key, value in spec["data"].items())
    binary = "".join(f"{key}: {len(base64.b64decode(value))} bytes\n"
                     for key, value in spec.get("binaryData", {}).items())
    return [("Name:", item.name), ("Namespace:", item.namespace), ("Labels:", described_labels(item.labels)),
            ("", f"\nData\n====\n{data}\nBinaryData\n====\n{binary}"), ("Events:", "<none>")]


CONFIGMAP = register(Kind(CONFIGMAP_KIND, "configmaps", "configmap", short_names=("cm",), parse=parse, order=20,
                          record=record, forget=forgetter(CONFIGMAP_KIND), items=lister(CONFIGMAP_KIND),
                          to_json=to_json, table=table, describe=describe))

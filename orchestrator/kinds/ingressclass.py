"""IngressClass (networking.k8s.io/v1): which controller serves the Ingresses of a class, and which class is the
default (`ingressclass.kubernetes.io/is-default-class`). `lab deploy` installs the lab's, `lab`, as the default."""

from __future__ import annotations

from orchestrator.core.manifests import Doc, Manifest, Warn
from orchestrator.core.model import Inventory
from orchestrator.core.objects import LabObjects
from orchestrator.kinds.kept import forgetter, json_shower, lister, recorder
from orchestrator.kinds.registry import Item, Kind, register
from orchestrator.kinds.show import age, described_labels
from orchestrator.layers.gateway.ingress import DEFAULT_CLASS, INGRESS_API, INGRESS_CLASS_KIND


def parse(doc: Doc, head: Manifest, warn: Warn) -> Manifest:
    return head


def table(found: list[Item], inv: Inventory, objects: LabObjects, all_namespaces: bool,
          wide: bool) -> tuple[list[str], list[list[str]]]:
    """kubectl's columns: NAME, CONTROLLER, PARAMETERS, AGE."""
    rows = [[item.name, str(item.record["spec"].get("controller", "")),
             str(item.record["spec"].get("parameters") or "<none>"), age(item.record["created"])] for item in found]
    return ["NAME", "CONTROLLER", "PARAMETERS", "AGE"], rows


def describe(item: Item, inv: Inventory, objects: LabObjects) -> list[tuple[str, str]]:
    annotations = item.record.get("annotations") or {}
    return [("Name:", item.name), ("Labels:", described_labels(item.labels)),
            ("Annotations:", "\n".join(f"{k}: {v}" for k, v in sorted(annotations.items())) or "<none>"),
            ("Controller:", str(item.record["spec"].get("controller", ""))),
            ("Default:", "yes" if str(annotations.get(DEFAULT_CLASS, "")).lower() == "true" else "no"),
            ("Events:", "<none>")]


INGRESS_CLASS = register(Kind(INGRESS_CLASS_KIND, "ingressclasses", "ingressclass.networking.k8s.io",
                              api_version=INGRESS_API, namespaced=False, parse=parse, order=20,
                              record=recorder(INGRESS_CLASS_KIND), forget=forgetter(INGRESS_CLASS_KIND),
                              items=lister(INGRESS_CLASS_KIND), to_json=json_shower(INGRESS_CLASS_KIND, INGRESS_API),
                              table=table, describe=describe))

"""Kubernetes' own schemas (the OpenAPI of every built-in kind, as the kubernetes-validate package ships them)
turned into the lab's one-line errors: file and document, the field's path, what is wrong, and where to read
more. One validator per kind, built once: checking a document then costs a fraction of a millisecond."""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Optional

from orchestrator.core.crd_schema import crd_validator
from orchestrator.core.errors import InputError, field_error

if TYPE_CHECKING:
    from jsonschema.protocols import Validator

KUBERNETES_VERSION = "1.35"  # the release the CKA follows


def field_path(path: Iterable[str | int]) -> str:
    """spec.ingress[0].ports[1].endPort from a jsonschema path."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "document"


def explain_path(kind: str, path: Iterable[str | int]) -> str:
    """The `lab explain` (kubectl explain) argument for a field: networkpolicy.spec.ingress.ports.endPort."""
    return ".".join([kind.lower(), *(str(p) for p in path if not isinstance(p, int))])


@lru_cache(maxsize=None)
def validator(kind: str, api_version: str) -> Optional[Validator]:
    """The strict (no unknown fields) validator of one kind, or None when the schemas have no such kind."""
    import jsonschema  # kubernetes-validate's own dependencies; loaded only when a manifest is read
    from kubernetes_validate import utils
    from referencing import Registry, Resource
    version = [v for v in utils.all_versions() if utils.major_minor(v) <= KUBERNETES_VERSION][-1]
    folder = f"kubernetes-json-schema/v{version}-local-strict"
    group = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)  # networking.k8s.io/v1 -> networking-v1
    try:
        schema = utils.schema_contents(f"{folder}/{kind.lower()}-{group}.json", KUBERNETES_VERSION)
    except FileNotFoundError:
        return None
    definitions = utils.schema_contents(f"{folder}/_definitions.json", KUBERNETES_VERSION)
    registry = Resource.from_contents(definitions) @ (Resource.from_contents(schema) @ Registry())
    return jsonschema.validators.Draft202012Validator(schema, registry=registry)


def schema_error(data: Any, source: str) -> Optional[InputError]:
    """The first way `data` breaks its kind's schema (unknown fields included), or None."""
    kind, api_version = str(data.get("kind")), str(data.get("apiVersion"))
    check = validator(kind, api_version) or crd_validator(kind, api_version)
    if check is None:
        return field_error(source, "apiVersion", f"Kubernetes {KUBERNETES_VERSION} has no {data.get('kind')} in "
                                                 f"{data.get('apiVersion')}", "check apiVersion and kind")
    error = next(iter(check.iter_errors(data)), None)
    if error is None:
        return None
    path = list(error.absolute_path)
    problem = error.message
    if "Additional properties are not allowed" in problem:
        unexpected = problem.split("(", 1)[-1].split(" was unexpected")[0].split(" were unexpected")[0]
        problem = f"unknown field {unexpected}"
    return field_error(source, field_path(path), problem, f"see `lab explain {explain_path(data['kind'], path)}`")

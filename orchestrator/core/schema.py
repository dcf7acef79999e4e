"""Kubernetes' own schemas (the kubernetes-validate package, the OpenAPI of every built-in kind) turned into
the lab's one-line errors: file and document, the field's path, what is wrong, and where to read more."""

from __future__ import annotations

from typing import Any, Optional

from orchestrator.core.errors import InputError, field_error

KUBERNETES_VERSION = "1.35"  # the release the CKA follows


def field_path(path) -> str:
    """spec.ingress[0].ports[1].endPort from a jsonschema path."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "document"


def explain_path(kind: str, path) -> str:
    """The `kubectl explain` argument for a field: networkpolicy.spec.ingress.ports.endPort."""
    return ".".join([kind.lower(), *(str(p) for p in path if not isinstance(p, int))])


def schema_error(data: Any, source: str) -> Optional[InputError]:
    """The first way `data` breaks its kind's schema (unknown fields included), or None."""
    import kubernetes_validate  # loads its schemas lazily; only manifests of the kinds that use it pay for it

    try:
        kubernetes_validate.validate(data, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        path = list(exc.path)
        problem = exc.message
        if "Additional properties are not allowed" in problem:
            unexpected = problem.split("(", 1)[-1].split(" was unexpected")[0].split(" were unexpected")[0]
            problem = f"unknown field {unexpected}"
        return field_error(source, field_path(path), problem,
                           f"see `kubectl explain {explain_path(data.get('kind', ''), path)}`")
    except (kubernetes_validate.SchemaNotFoundError, kubernetes_validate.InvalidSchemaError) as exc:
        return field_error(source, "apiVersion", f"no schema for it ({exc})", "check apiVersion and kind")
    return None

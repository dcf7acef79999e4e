"""Custom resources checked as strictly as schema.py checks the built-in kinds: the openAPIV3Schema of a
CustomResourceDefinition (the Gateway API's, in orchestrator/kinds/schemas/gateway-api) as a jsonschema
Draft 2020-12 validator, one per kind and version, built once.

What the API server does and a plain jsonschema would not, and how the schema is adjusted for it:
- unknown fields are rejected: an object that lists `properties` gets `additionalProperties: false`, unless it
  sets `additionalProperties` or `x-kubernetes-preserve-unknown-fields: true` itself. Not inside allOf, anyOf,
  oneOf or not: their branches only narrow fields the enclosing schema declares.
- defaults are filled in before validation: a required field with a default is not required, and a branch of
  allOf/anyOf/oneOf that would reject the default of a field it constrains requires that field (so a Gateway
  address without `type` is an IPAddress, not valid under both branches of its oneOf).
- `x-kubernetes-list-type` set and map: a repeated value, or a repeated key (`x-kubernetes-list-map-keys`), is a
  "Duplicate value" at the repeated item. This covers Gateway's "listener name must be unique" and "perPort port
  must be unique" rules, and repeated header names in HTTPRoute matches and header filters.
- `format` is checked where jsonschema knows the format (ipv4, ipv6; int32 and int64 are not checked).
- apiVersion and kind are strings and metadata is a free object (ObjectMeta is not checked here).
The other `x-kubernetes-*` keys stay in the schema: jsonschema ignores keywords it does not know.

Not checked: the CEL rules (`x-kubernetes-validations`). The ones that matter in the standard channel (v1;
v1beta1 has the same), for the lab to check itself, with defaults applied first (path type PathPrefix, path
value "/", backendRef group "" and kind Service, listener tls.mode Terminate):

HTTPRoute
- spec.rules[].matches[].path, type Exact or PathPrefix: value starts with "/"; contains no "//", "/./", "/../",
  "%2f", "%2F" or "#"; does not end with "/." or "/.."; matches ^(?:[-A-Za-z0-9/._~!$&'()*+,;=:@]|%[0-9a-fA-F]{2})+$.
- spec.rules[].backendRefs[] and filters[].requestMirror.backendRef: a Service (group "") needs `port`.
- spec.rules[].filters and spec.rules[].backendRefs[].filters: the field named by `type` (requestHeaderModifier,
  responseHeaderModifier, requestMirror, requestRedirect, urlRewrite, extensionRef, cors) is set, and no other;
  at most one each of CORS, RequestHeaderModifier, ResponseHeaderModifier, RequestRedirect, URLRewrite; not both
  RequestRedirect and URLRewrite.
- spec.rules[]: no RequestRedirect filter together with backendRefs; a ReplacePrefixMatch path modifier (redirect
  or rewrite, in the rule's filters or a backendRef's) needs exactly one match, of path type PathPrefix.
- requestRedirect.path and urlRewrite.path: type ReplaceFullPath if and only if replaceFullPath is set;
  ReplacePrefixMatch if and only if replacePrefixMatch is set.
- requestMirror: not both percent and fraction; fraction.numerator <= fraction.denominator.
- cors allowOrigins, allowMethods, allowHeaders: "*" only on its own.
- spec.rules: at most 128 matches across all rules; timeouts.backendRequest <= timeouts.request (unless "0s").
- spec.parentRefs: two refs to the same parent (group, kind, namespace, name) both set sectionName, and
  differently.
Gateway
- spec.listeners: no tls for HTTP, TCP, UDP; tls.mode Terminate for HTTPS; tls.mode set for TLS; no hostname for
  TCP, UDP; (port, protocol, hostname) unique; tls.mode Terminate needs certificateRefs or options.
- spec.addresses: IPAddress values unique, Hostname values unique; a Hostname value is a (wildcard) DNS name.
- spec.infrastructure.labels and annotations: keys are qualified names, prefix under 253 characters.
GatewayClass: spec.controllerName is immutable (only on update). ReferenceGrant: none.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

if TYPE_CHECKING:
    from jsonschema.exceptions import ValidationError
    from jsonschema.protocols import Validator

Schema = dict[str, Any]

GATEWAY_API_CRDS = Path(__file__).resolve().parents[1] / "kinds" / "schemas" / "gateway-api"
JUNCTORS = ("allOf", "anyOf", "oneOf")


@lru_cache(maxsize=None)
def load_crd(path: Path) -> Schema:
    """A CRD file, parsed once (with libyaml when PyYAML has it: the HTTPRoute CRD is 430 kB)."""
    import yaml
    with path.open(encoding="utf-8") as f:
        crd = yaml.load(f, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    if not isinstance(crd, dict) or crd.get("kind") != "CustomResourceDefinition":
        raise ValueError(f"{path}: not a CustomResourceDefinition")
    return crd


@lru_cache(maxsize=None)
def crd_index(folder: Path = GATEWAY_API_CRDS) -> dict[tuple[str, str], tuple[Path, str]]:
    """(kind, apiVersion) -> (CRD file, version name), for every served version of every CRD in a folder."""
    index = {}
    for path in sorted(folder.glob("*.yaml")):
        spec = load_crd(path)["spec"]
        for version in spec["versions"]:
            if version.get("served", True):
                index[(spec["names"]["kind"], f"{spec['group']}/{version['name']}")] = (path, version["name"])
    return index


def crd_validator(kind: str, api_version: str, folder: Path = GATEWAY_API_CRDS) -> Optional[Validator]:
    """The strict validator of a custom kind, or None when no CRD in the folder serves that kind and version."""
    found = crd_index(folder).get((kind, api_version))
    return None if found is None else crd_schema_validator(*found)


def crd_schema_validator(path: str | Path, version: str) -> Validator:
    """The strict validator of one version of the CRD in a file; LookupError when the CRD has no such version."""
    return _build(Path(path).resolve(), version)


@lru_cache(maxsize=None)
def _build(path: Path, version: str) -> Validator:
    """crd_schema_validator, once per file and version."""
    import jsonschema
    versions = {v["name"]: v for v in load_crd(path)["spec"]["versions"]}
    if version not in versions:
        raise LookupError(f"{path.name} has no version {version} (it has {', '.join(versions)})")
    cls = _validator_class()
    schema = strict(versions[version]["schema"]["openAPIV3Schema"], cls)
    schema["properties"] = {**schema.get("properties", {}), "apiVersion": {"type": "string"},
                            "kind": {"type": "string"}, "metadata": {"type": "object"}}
    return cls(schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)


def strict(schema: Schema, cls: Any, in_junctor: bool = False) -> Schema:
    """A copy of an OpenAPI schema that rejects undeclared fields and knows about defaults (see the module)."""
    out = dict(schema)
    properties = schema.get("properties")
    if isinstance(properties, dict):
        out["properties"] = {name: strict(sub, cls, in_junctor) for name, sub in properties.items()}
        if not (in_junctor or "additionalProperties" in schema or schema.get("x-kubernetes-preserve-unknown-fields")):
            out["additionalProperties"] = False
        if "required" in schema:
            out["required"] = [name for name in schema["required"] if "default" not in properties.get(name, {})]
    for key in ("items", "additionalProperties", "not"):
        if isinstance(schema.get(key), dict):
            out[key] = strict(schema[key], cls, in_junctor or key == "not")
    for key in JUNCTORS:
        if key in schema:
            out[key] = [_default_required(strict(branch, cls, True), properties or {}, cls) for branch in schema[key]]
    return out


def _default_required(branch: Schema, properties: Schema, cls: Any) -> Schema:
    """A junctor branch that requires each defaulted field it constrains in a way the default fails."""
    failing = [name for name, sub in branch.get("properties", {}).items()
               if "default" in properties.get(name, {}) and not cls(sub).is_valid(properties[name]["default"])]
    return branch | {"required": [*branch.get("required", []), *failing]} if failing else branch


@lru_cache(maxsize=None)
def _validator_class() -> Any:
    """Draft 2020-12, plus the keyword x-kubernetes-list-type."""
    import jsonschema
    return jsonschema.validators.extend(jsonschema.Draft202012Validator, {"x-kubernetes-list-type": _list_type})


def _list_type(validator: Validator, list_type: Any, instance: Any, schema: Schema) -> Iterator[ValidationError]:
    """x-kubernetes-list-type: set and map lists hold each value (or each key) once."""
    from jsonschema.exceptions import ValidationError
    if list_type not in ("set", "map") or not isinstance(instance, list):
        return
    keys = schema.get("x-kubernetes-list-map-keys", [])
    seen: dict[str, int] = {}
    for index, item in enumerate(instance):
        if list_type == "map" and not (isinstance(item, dict) and all(key in item for key in keys)):
            continue  # a missing key is the `required` keyword's to report
        value = {key: item[key] for key in keys} if list_type == "map" else item
        marker = json.dumps(value, sort_keys=True)
        if marker in seen:
            yield ValidationError(f"Duplicate value: {marker} (as item {seen[marker]})", path=[index])
        seen.setdefault(marker, index)

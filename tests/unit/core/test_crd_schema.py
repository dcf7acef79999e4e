"""Gateway API manifests against the shipped CRDs: valid ones pass, unknown fields and bad values are one
error at the right path, and an unserved kind or version has no validator."""

import copy

import jsonschema
import pytest

from orchestrator.core.crd_schema import GATEWAY_API_CRDS, crd_index, crd_schema_validator, crd_validator

GROUP = "gateway.networking.k8s.io"

GATEWAY_CLASS = {
    "apiVersion": f"{GROUP}/v1", "kind": "GatewayClass", "metadata": {"name": "lab"},
    "spec": {"controllerName": "cluster-lab.example/gateway", "description": "the lab's gateway"},
}
GATEWAY = {
    "apiVersion": f"{GROUP}/v1", "kind": "Gateway", "metadata": {"name": "edge", "namespace": "infra"},
    "spec": {
        "gatewayClassName": "lab",
        "addresses": [{"type": "IPAddress", "value": "10.96.0.80"}],
        "listeners": [
            {"name": "http", "protocol": "HTTP", "port": 80,
             "allowedRoutes": {"namespaces": {"from": "Selector", "selector": {"matchLabels": {"team": "web"}}}}},
            {"name": "https", "protocol": "HTTPS", "port": 443, "hostname": "*.example.com",
             "tls": {"mode": "Terminate", "certificateRefs": [{"kind": "Secret", "name": "wildcard"}]}},
        ],
    },
}
HTTP_ROUTE = {
    "apiVersion": f"{GROUP}/v1", "kind": "HTTPRoute",
    "metadata": {"name": "web", "namespace": "web", "labels": {"app": "web"}},
    "spec": {
        "parentRefs": [{"name": "edge", "namespace": "infra", "sectionName": "http"}],
        "hostnames": ["web.example.com"],
        "rules": [
            {"matches": [{"path": {"type": "PathPrefix", "value": "/api"}, "method": "GET",
                          "headers": [{"name": "x-env", "value": "lab"}],
                          "queryParams": [{"type": "Exact", "name": "v", "value": "2"}]}],
             "filters": [{"type": "RequestHeaderModifier",
                          "requestHeaderModifier": {"add": [{"name": "x-lab", "value": "1"}], "remove": ["x-debug"]}},
                         {"type": "URLRewrite",
                          "urlRewrite": {"path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/"}}}],
             "backendRefs": [{"name": "api-v1", "port": 8080, "weight": 90},
                             {"name": "api-v2", "namespace": "canary", "port": 8080, "weight": 10}],
             "timeouts": {"request": "10s"}},
            {"matches": [{"path": {"type": "Exact", "value": "/old"}}],
             "filters": [{"type": "RequestRedirect", "requestRedirect": {"scheme": "https", "statusCode": 301}}]},
        ],
    },
}
REFERENCE_GRANT = {
    "apiVersion": f"{GROUP}/v1beta1", "kind": "ReferenceGrant", "metadata": {"name": "from-web", "namespace": "canary"},
    "spec": {"from": [{"group": GROUP, "kind": "HTTPRoute", "namespace": "web"}],
             "to": [{"group": "", "kind": "Service", "name": "api-v2"}]},
}


def errors(document):
    check = crd_validator(document["kind"], document["apiVersion"])
    assert check is not None
    return list(check.iter_errors(document))


def changed(document, edit):
    out = copy.deepcopy(document)
    edit(out)
    return out


@pytest.mark.parametrize("document", [GATEWAY_CLASS, GATEWAY, HTTP_ROUTE, REFERENCE_GRANT],
                         ids=lambda d: d["kind"])
def test_valid_documents_pass(document):
    assert errors(document) == []


@pytest.mark.parametrize("document", [GATEWAY_CLASS, GATEWAY, HTTP_ROUTE, REFERENCE_GRANT],
                         ids=lambda d: d["kind"])
def test_the_other_served_version_takes_the_same_document(document):
    other = "v1" if document["apiVersion"].endswith("v1beta1") else "v1beta1"
    assert errors(dict(document, apiVersion=f"{GROUP}/{other}")) == []


def test_served_versions_are_indexed_by_kind_and_api_version():
    assert sorted(crd_index()) == sorted((kind, f"{GROUP}/{version}") for version in ("v1", "v1beta1")
                                         for kind in ("GatewayClass", "Gateway", "HTTPRoute", "ReferenceGrant"))


def test_an_unknown_field_is_reported_at_the_object_that_holds_it():
    (error,) = errors(changed(HTTP_ROUTE, lambda d: d["spec"]["rules"][0].update(matchs=[])))
    assert list(error.absolute_path) == ["spec", "rules", 0]
    assert error.validator == "additionalProperties" and "'matchs' was unexpected" in error.message


@pytest.mark.parametrize("edit, path", [
    (lambda d: d.update(status2={}), []),
    (lambda d: d["spec"].update(gatewayClass="lab"), ["spec"]),
    (lambda d: d["spec"]["listeners"][0].update(hostnames=["a.example.com"]), ["spec", "listeners", 0]),
    (lambda d: d["spec"]["listeners"][1]["tls"]["certificateRefs"][0].update(secret="x"),
     ["spec", "listeners", 1, "tls", "certificateRefs", 0]),
])
def test_unknown_fields_fail_at_every_depth(edit, path):
    (error,) = errors(changed(GATEWAY, edit))
    assert (list(error.absolute_path), error.validator) == (path, "additionalProperties")


def test_metadata_is_free_and_apiversion_kind_are_accepted():
    document = changed(GATEWAY_CLASS, lambda d: d["metadata"].update(annotations={"a": "b"}, uid="1", generation=2))
    assert errors(document) == []


def test_a_wrong_enum_fails_at_the_field():
    (error,) = errors(changed(HTTP_ROUTE, lambda d: d["spec"]["rules"][0]["matches"][0]["path"].update(type="Prefix")))
    assert list(error.absolute_path) == ["spec", "rules", 0, "matches", 0, "path", "type"]
    assert error.validator == "enum" and "'Prefix' is not one of" in error.message


BACKEND = ["spec", "rules", 0, "backendRefs", 0]


@pytest.mark.parametrize("edit, path, keyword", [
    (lambda d: d["spec"]["rules"][0]["backendRefs"][0].update(port=70000), [*BACKEND, "port"], "maximum"),
    (lambda d: d["spec"]["rules"][0]["backendRefs"][0].update(port="8080"), [*BACKEND, "port"], "type"),
    (lambda d: d["spec"]["rules"][0]["backendRefs"][0].pop("name"), BACKEND, "required"),
    (lambda d: d["spec"].update(hostnames=["Web_Example"]), ["spec", "hostnames", 0], "pattern"),
    (lambda d: d["spec"]["rules"][1]["filters"][0]["requestRedirect"].update(statusCode=404),
     ["spec", "rules", 1, "filters", 0, "requestRedirect", "statusCode"], "enum"),
])
def test_bad_values_fail_at_the_field(edit, path, keyword):
    (error,) = errors(changed(HTTP_ROUTE, edit))
    assert (list(error.absolute_path), error.validator) == (path, keyword)


def test_repeated_keys_of_a_map_list_and_values_of_a_set_fail_at_the_repeat():
    (error,) = errors(changed(GATEWAY, lambda d: d["spec"]["listeners"][1].update(name="http")))
    assert list(error.absolute_path) == ["spec", "listeners", 1] and error.message.startswith("Duplicate value")
    (error,) = errors(changed(HTTP_ROUTE, lambda d: d["spec"]["rules"][0]["filters"][0]["requestHeaderModifier"]
                              .update(remove=["x-a", "x-b", "x-a"])))
    assert list(error.absolute_path) == ["spec", "rules", 0, "filters", 0, "requestHeaderModifier", "remove", 2]


def test_defaults_count_before_one_of():
    """An address without `type` is an IPAddress (the default), so exactly one branch of its oneOf holds."""
    assert errors(changed(GATEWAY, lambda d: d["spec"]["addresses"][0].pop("type"))) == []
    assert errors(changed(GATEWAY, lambda d: d["spec"].update(addresses=[{"type": "Hostname",
                                                                             "value": "gw.example.com"}]))) == []
    (error,) = errors(changed(GATEWAY, lambda d: d["spec"]["addresses"][0].update(value="10.96.0.300")))
    assert list(error.absolute_path) == ["spec", "addresses", 0] and error.validator == "oneOf"


def test_cel_rules_are_kept_but_not_evaluated():
    """x-kubernetes-validations is a keyword jsonschema does not know: the lab checks those rules itself."""
    check = crd_validator("HTTPRoute", f"{GROUP}/v1")
    path = check.schema["properties"]["spec"]["properties"]["rules"]["items"]["properties"]["matches"]["items"][
        "properties"]["path"]
    assert any("startsWith('/')" in rule["rule"] for rule in path["x-kubernetes-validations"])
    assert errors(changed(HTTP_ROUTE, lambda d: d["spec"]["rules"][0]["matches"][0]["path"].update(value="api"))) == []


@pytest.mark.parametrize("kind, api_version", [
    ("HTTPRoute", f"{GROUP}/v1alpha2"), ("HTTPRoute", f"{GROUP}/v2"), ("HTTPRoute", "v1"),
    ("GRPCRoute", f"{GROUP}/v1"), ("Deployment", "apps/v1"),
])
def test_an_unknown_kind_or_version_has_no_validator(kind, api_version):
    assert crd_validator(kind, api_version) is None


def test_a_file_without_the_version_is_a_lookup_error():
    with pytest.raises(LookupError, match="no version v1alpha2"):
        crd_schema_validator(GATEWAY_API_CRDS / "gateway.networking.k8s.io_httproutes.yaml", "v1alpha2")


def test_each_validator_is_built_once_and_is_a_valid_draft_2020_12_schema():
    for kind, api_version in crd_index():
        check = crd_validator(kind, api_version)
        assert check is crd_validator(kind, api_version)
        jsonschema.Draft202012Validator.check_schema(check.schema)
    path = str(GATEWAY_API_CRDS / "gateway.networking.k8s.io_httproutes.yaml")
    assert crd_schema_validator(path, "v1") is crd_validator("HTTPRoute", f"{GROUP}/v1")

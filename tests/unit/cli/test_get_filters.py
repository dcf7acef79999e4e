"""lab get's kubectl habits, the pure parts: label selectors, field selectors, kinds and short names, jsonpath."""

import pytest

from orchestrator.cli.resources import field_filter, kinds_of, render_docs
from orchestrator.core.errors import InputError
from orchestrator.core.policy_spec import selector_from_text


@pytest.mark.parametrize("text, labels, matches", [
    ("app=web", {"app": "web"}, True),
    ("app==web,tier!=db", {"app": "web", "tier": "db"}, False),
    ("tier!=db", {}, True),  # a missing key is "not db"
    ("env in (a, b)", {"env": "b"}, True),
    ("env notin (a,b)", {"env": "c"}, True),
    ("env", {"env": ""}, True),
    ("!env", {"env": "x"}, False),
])
def test_label_selectors_as_kubectl_reads_them(text, labels, matches):
    assert selector_from_text(text).matches(labels) is matches


def test_bad_selectors_are_one_line_errors():
    for text in ("app=(", "a b", "-bad=x"):
        with pytest.raises(InputError) as caught:
            selector_from_text(text)
        assert str(caught.value).startswith(f"-l {text}:") and "\n" not in str(caught.value)


def test_kinds_short_names_lists_and_all():
    assert [k.resource for k in kinds_of("po,svc")] == ["pods", "services"]
    assert [k.resource for k in kinds_of("all")] == ["pods", "services", "deployments"]
    assert [k.ref for k in kinds_of("deploy,netpol,ns,no,ep")] == [
        "deployment.apps", "networkpolicy.networking.k8s.io", "namespace", "node", "endpoints"]
    with pytest.raises(InputError, match='the server doesn\'t have a resource type "foo"'):
        kinds_of("pods,foo")


def test_field_selectors_read_the_json_form():
    pod = {"metadata": {"name": "a", "namespace": "x"}, "spec": {"nodeName": "node1"}}
    assert field_filter("spec.nodeName=node1")(pod) and not field_filter("spec.nodeName!=node1")(pod)
    assert field_filter("metadata.name==a,metadata.namespace=x")(pod) and field_filter(None)(pod)
    with pytest.raises(InputError, match="is not FIELD=VALUE"):
        field_filter("spec.nodeName")


def test_outputs_one_object_or_a_list_as_json_yaml_or_jsonpath():
    docs = [{"kind": "Pod", "metadata": {"name": "a"}, "status": {"podIP": "10.244.0.2"}},
            {"kind": "Pod", "metadata": {"name": "b"}, "status": {"podIP": "10.244.1.2"}}]
    assert render_docs(docs, single=False, output="jsonpath={.items[*].status.podIP}") == "10.244.0.2 10.244.1.2"
    assert render_docs(docs[:1], single=True, output="yaml").startswith("kind: Pod\nmetadata:\n  name: a")
    assert '"kind": "List"' in render_docs(docs, single=False, output="json")


def test_kinds_complete_also_inside_a_comma_list():
    from orchestrator.cli.completion import kinds
    assert kinds("netp") == ["netpol"]
    assert kinds("deploy,sv") == ["deploy,svc"]
    assert "all" in kinds("a")


def test_default_columns_are_kubectls():
    """The headers kubectl prints for the same kinds (kubectl get ... on a cluster), in its order."""
    from pathlib import Path
    from orchestrator.core import inventory
    from orchestrator.core.objects import LabObjects
    from orchestrator.kinds import by_name
    inv = inventory.parse("cluster: {name: demo}\nnodes: [{name: n1, address: 198.18.0.11}]\n", "i.yaml", Path("."))
    objects = LabObjects()

    def headers(kind: str, all_namespaces=False, wide=False) -> list:
        table = by_name(kind).table
        return table([], inv, objects, all_namespaces, wide)[0]

    assert headers("pods") == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert headers("pods", True, True) == ["NAMESPACE", "NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE",
                                           "NOMINATED NODE", "READINESS GATES"]
    assert headers("svc") == ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"]
    assert headers("ep") == ["NAME", "ENDPOINTS", "AGE"]
    assert headers("deploy") == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    assert headers("ns") == ["NAME", "STATUS", "AGE"]
    assert headers("netpol") == ["NAME", "POD-SELECTOR", "AGE"]
    assert headers("nodes") == ["NAME", "STATUS", "ROLES", "AGE", "VERSION"]

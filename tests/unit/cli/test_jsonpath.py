"""kubectl's JSONPath templates, custom columns and --sort-by, against the examples of kubectl's own JSONPath
reference (kubernetes.io/docs/reference/kubectl/jsonpath/), on its example document."""

from __future__ import annotations

import pytest

from orchestrator.cli.jsonpath import column_value, columns_file, custom_columns, jsonpath, sort_key
from orchestrator.core.errors import InputError

DOC = {
    "kind": "List",
    "items": [
        {"kind": "None", "metadata": {"name": "127.0.0.1", "labels": {"kubernetes.io/hostname": "127.0.0.1"}},
         "status": {"capacity": {"cpu": "4"}, "addresses": [{"type": "LegacyHostIP", "address": "127.0.0.1"}]}},
        {"kind": "None", "metadata": {"name": "127.0.0.2"},
         "status": {"capacity": {"cpu": "8"}, "addresses": [{"type": "LegacyHostIP", "address": "127.0.0.2"},
                                                            {"type": "another", "address": "127.0.0.3"}]}},
    ],
    "users": [{"name": "myself", "user": {}}, {"name": "e2e", "user": {"username": "admin", "password": "secret"}}],
}


@pytest.mark.parametrize(("template", "wanted"), [
    ("{.kind}", "List"),
    ("{['kind']}", "List"),
    ("{.items[*].metadata.name}", "127.0.0.1 127.0.0.2"),
    ("{.items[0].metadata.name}", "127.0.0.1"),
    ("{.items[-1:].metadata.name}", "127.0.0.2"),
    ('{.users[?(@.name=="e2e")].user.password}', "secret"),
    ('{.items[*].status.addresses[?(@.type=="another")].address}', "127.0.0.3"),
    ("{range .items[*]}[{.metadata.name}, {.status.capacity.cpu}] {end}", "[127.0.0.1, 4] [127.0.0.2, 8] "),
    ('{range .items[*]}{.metadata.name}{"\\t"}{.status.addresses[0].address}{"\\n"}{end}',
     "127.0.0.1\t127.0.0.1\n127.0.0.2\t127.0.0.2\n"),
    ("{range .users}{.name}{','}{end}", "myself,e2e,"),
    ("names: {.items[*].metadata.name}", "names: 127.0.0.1 127.0.0.2"),
    ("{range .items[*]}{$.kind}/{.metadata.name} {end}", "List/127.0.0.1 List/127.0.0.2 "),
])
def test_templates_print_what_kubectl_prints(template, wanted):
    assert jsonpath(template, DOC) == wanted


@pytest.mark.parametrize(("template", "message"), [
    ("{range .items[*]}{.metadata.name}", "{range} without {end}"),
    ("{.metadata.name}{end}", "{end} without {range}"),
    ("{.items[*", "unclosed {"),
    ("{.items[?(@.x==]}", "is not a path"),
])
def test_a_broken_template_is_one_line(template, message):
    with pytest.raises(InputError, match=message.replace("{", "\\{").replace("[", "\\[")):
        jsonpath(template, DOC)


def test_custom_columns_print_each_field_or_none():
    columns = custom_columns("NAME:.metadata.name,CPU:{.status.capacity.cpu},HOST:.metadata.labels.kubernetes\\.io/"
                             "hostname,ADDRESSES:.status.addresses[*].address")
    rows = [[column_value(path, item) for _, path in columns] for item in DOC["items"]]
    assert [h for h, _ in columns] == ["NAME", "CPU", "HOST", "ADDRESSES"]
    assert rows[1] == ["127.0.0.2", "8", "<none>", "127.0.0.2,127.0.0.3"]
    with pytest.raises(InputError, match="is not HEADER:PATH"):
        custom_columns("NAME")


def test_a_custom_columns_file_has_headers_then_paths(tmp_path):
    path = tmp_path / "columns.txt"
    path.write_text("NAME          CPU\n.metadata.name .status.capacity.cpu\n")
    assert columns_file(str(path)) == [("NAME", ".metadata.name"), ("CPU", ".status.capacity.cpu")]


def test_sort_by_puts_missing_fields_first_then_numbers_then_text():
    docs = [{"spec": {"replicas": 10}}, {"spec": {}}, {"spec": {"replicas": 9}}]
    assert [d["spec"].get("replicas") for d in sorted(docs, key=lambda d: sort_key(".spec.replicas", d))] == \
        [None, 9, 10]
    assert sort_key("{.metadata.name}", {"metadata": {"name": "b"}}) > sort_key(".metadata.name",
                                                                               {"metadata": {"name": "a"}})

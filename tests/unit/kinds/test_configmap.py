"""ConfigMaps: checked as the API server checks them, kept, and shown as kubectl shows them."""

import pytest

from orchestrator import kinds, pipeline
from orchestrator.cli.resources import select
from orchestrator.core.errors import InputError

from .test_registry import lab  # noqa: F401 - the fixture

SITE = """
apiVersion: v1
kind: ConfigMap
metadata: {name: site, labels: {app: web}}
data: {color: blue, index.html: "<h1>shop</h1>\\n"}
binaryData: {logo.bin: AAEC}
"""


def configmaps(text, tmp_path):
    path = tmp_path / "cm.yaml"
    path.write_text(text)
    return kinds.parse_all(str(path), lambda line: None)


def test_a_configmap_is_kept_listed_described_and_shown_as_kubernetes_shows_it(lab, tmp_path):  # noqa: F811
    assert pipeline.apply_manifests(lab.inv, lab.nodes, lab.files, configmaps(SITE, tmp_path)) == \
        ["configmap/site created"]
    assert pipeline.apply_manifests(lab.inv, lab.nodes, lab.files, configmaps(SITE, tmp_path)) == \
        ["configmap/site unchanged"]
    kind = kinds.by_name("cm")
    objects = lab.files.read_objects()
    (found,) = select(kind, lab.inv, objects, ["site"], "default", None)
    shown = kind.to_json(found, lab.inv, objects)
    assert shown["data"] == {"color": "blue", "index.html": "<h1>shop</h1>\n"} and "spec" not in shown
    assert shown["binaryData"] == {"logo.bin": "AAEC"} and shown["metadata"]["labels"] == {"app": "web"}
    columns, rows = kind.table([found], lab.inv, objects, False, False)
    assert columns == ["NAME", "DATA", "AGE"] and rows[0][:2] == ["site", "3"]  # keys of data and binaryData
    described = dict(kind.describe(found, lab.inv, objects))
    assert described[""] == "\nData\n====\ncolor:\n----\nblue\nindex.html:\n----\n<h1>shop</h1>\n\n\n" \
                            "BinaryData\n====\nlogo.bin: 3 bytes\n"


@pytest.mark.parametrize("body, error", [
    ("data: {a/b: x}", r"cm.yaml: data.a/b: is not a valid key; use letters, digits"),
    ("binaryData: {logo: '***'}", r"cm.yaml: binaryData.logo: is not base64; write it as `base64 -w0 FILE`"),
    ("data: {a: x}\nbinaryData: {a: AAEC}", r"cm.yaml: binaryData.a: is also a key of data; give each key once"),
    ("data: {a: " + "x" * (1024 * 1024) + "}", r"cm.yaml: data: holds 1048577 bytes, more than a ConfigMap's 1 MiB"),
    ("data: {a: 3}", r"cm.yaml: data.a: .* is not of type 'string'"),
])
def test_what_the_api_server_refuses_is_a_one_line_error(body, error, tmp_path):
    with pytest.raises(InputError, match=error):
        configmaps(f"apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: c}}\n{body}\n", tmp_path)


def test_an_immutable_configmap_keeps_its_data(lab, tmp_path):  # noqa: F811
    fixed = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\nimmutable: true\ndata: {a: x}\n"
    pipeline.apply_manifests(lab.inv, lab.nodes, lab.files, configmaps(fixed, tmp_path))
    with pytest.raises(InputError, match=r"cm.yaml: data: ConfigMap default/c is immutable; delete it "
                                         r"\(lab delete configmap c -n default\) and create it again"):
        pipeline.apply_manifests(lab.inv, lab.nodes, lab.files, configmaps(fixed.replace("x}", "y}"), tmp_path))
    (found,) = select(kinds.by_name("cm"), lab.inv, lab.files.read_objects(), ["c"], "default", None)
    assert found.record["spec"]["data"] == {"a": "x"}

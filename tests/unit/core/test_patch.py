"""kubectl patch's patch types against their RFCs' examples and Kubernetes' list merging."""

import pytest

from orchestrator.core.errors import InputError
from orchestrator.core.patch import json_patch, merge_patch, strategic_merge_patch


def test_merge_patch_follows_rfc_7386s_example():
    target = {"title": "Goodbye!", "author": {"givenName": "John", "familyName": "Doe"}, "tags": ["example", "sample"],
              "content": "This will be unchanged"}
    patch = {"title": "Hello!", "phoneNumber": "+01-123-456-7890", "author": {"familyName": None}, "tags": ["example"]}
    assert merge_patch(target, patch) == {"title": "Hello!", "author": {"givenName": "John"}, "tags": ["example"],
                                          "content": "This will be unchanged", "phoneNumber": "+01-123-456-7890"}


def test_strategic_merge_merges_containers_by_name_and_ports_by_port():
    deployment = {"spec": {"replicas": 1, "template": {"spec": {"containers": [
        {"name": "web", "image": "nginx", "ports": [{"containerPort": 80}]},
        {"name": "side", "image": "busybox"}]}}}}
    patch = {"spec": {"replicas": 3, "template": {"spec": {"containers": [
        {"name": "web", "image": "nginx:1.27", "ports": [{"containerPort": 8080}]},
        {"name": "side", "$patch": "delete"}]}}}}
    patched = strategic_merge_patch(deployment, patch)
    assert patched["spec"]["replicas"] == 3
    assert patched["spec"]["template"]["spec"]["containers"] == [
        {"name": "web", "image": "nginx:1.27", "ports": [{"containerPort": 80}, {"containerPort": 8080}]}]
    assert merge_patch(deployment, patch)["spec"]["template"]["spec"]["containers"][1] == \
        {"name": "side", "$patch": "delete"}  # a merge patch replaces the list
    assert strategic_merge_patch({"spec": {"ports": [{"port": 80}]}}, {"spec": {"type": "NodePort"}}) == \
        {"spec": {"ports": [{"port": 80}], "type": "NodePort"}}


def test_json_patch_follows_rfc_6902():
    doc = {"spec": {"replicas": 1, "ports": [{"port": 80}], "a/b": 1}}
    patched = json_patch(doc, [
        {"op": "replace", "path": "/spec/replicas", "value": 3},
        {"op": "add", "path": "/spec/ports/-", "value": {"port": 443}},
        {"op": "copy", "from": "/spec/ports/0", "path": "/spec/first"},
        {"op": "move", "from": "/spec/a~1b", "path": "/spec/moved"},
        {"op": "test", "path": "/spec/replicas", "value": 3},
        {"op": "remove", "path": "/spec/ports/0"}], "p")
    assert patched == {"spec": {"replicas": 3, "ports": [{"port": 443}], "first": {"port": 80}, "moved": 1}}
    assert doc["spec"]["replicas"] == 1  # the object patched is a copy


@pytest.mark.parametrize("operations, message", [
    ({"op": "add"}, "a JSON patch is a list of operations"),
    ([{"op": "bump", "path": "/a"}], "op must be add, remove"),
    ([{"op": "replace", "path": "/nope", "value": 1}], "/nope does not exist"),
    ([{"op": "add", "path": "spec", "value": 1}], "is not a JSON pointer"),
    ([{"op": "test", "path": "/a", "value": 2}], "test failed"),
    ([{"op": "remove", "path": "/l/5"}], "is not an index of a list of 1"),
])
def test_bad_json_patches_are_one_line(operations, message):
    with pytest.raises(InputError, match=message):
        json_patch({"a": 1, "l": [0]}, operations, "lab patch deploy/web")

"""What a pod's image gives its commands: Docker's repository names, and the root each one chooses."""

import pytest

from orchestrator.layers.pods.images import BUSYBOX, NODE, image_root, repository


@pytest.mark.parametrize("image, expected", [
    ("busybox", "busybox"),
    ("busybox:1.28", "busybox"),
    ("docker.io/library/busybox:1.36", "busybox"),
    ("library/busybox", "busybox"),
    ("busybox@sha256:" + "0" * 64, "busybox"),
    ("registry.k8s.io/e2e-test-images/agnhost:2.39", "e2e-test-images/agnhost"),
    ("localhost:5000/team/tool:v1", "team/tool"),
    ("curlimages/curl:8.11.0", "curlimages/curl"),
    ("Nicolaka/Netshoot", "nicolaka/netshoot"),
])
def test_repository_is_dockers_name_without_registry_tag_or_digest(image, expected):
    assert repository(image) == expected


@pytest.mark.parametrize("image, base, tools", [
    ("busybox:1.36", BUSYBOX, ("nc",)),
    ("alpine:3.20", BUSYBOX, ("nc",)),
    ("docker.io/curlimages/curl", BUSYBOX, ("nc", "curl")),
    ("radial/busyboxplus:curl", BUSYBOX, ("nc", "curl")),
    ("nicolaka/netshoot", NODE, ()),
    ("nginx:1.27", NODE, ()),
    ("", NODE, ()),
])
def test_busybox_images_get_busyboxs_applets_and_the_rest_the_nodes_tools(image, base, tools):
    root = image_root(image)
    assert (root.base, root.tools) == (base, tools)
    assert root.to_agent() == {"base": base, "tools": list(tools)}

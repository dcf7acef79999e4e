"""A Deployment's revisions as Kubernetes numbers them: a new template is the next revision; going back to an
earlier template moves it to the next number."""

from orchestrator import kinds
from orchestrator.core.objects import Deployment
from orchestrator.layers.pods.plan import revisions_after


def deployment(image: str, cause: str = ""):
    annotations = {"kubernetes.io/change-cause": cause} if cause else {}
    return kinds.parse({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "annotations": annotations},
        "spec": {"selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "web", "image": image}]}}}}, "web.yaml",
        lambda line: None)


def applied(history: list, m) -> list:
    return revisions_after(Deployment("web", "default", revisions=history), m)


def test_each_new_template_is_the_next_revision_and_the_same_one_adds_none():
    first = applied([], deployment("nginx"))
    assert [r["revision"] for r in first] == [1]
    assert applied(first, deployment("nginx")) == first
    second = applied(first, deployment("nginx:1.27", cause="kubectl set image"))
    assert [(r["revision"], r["change_cause"]) for r in second] == [(1, ""), (2, "kubectl set image")]
    assert second[1]["template"]["spec"]["containers"][0]["image"] == "nginx:1.27"


def test_going_back_moves_the_old_template_to_the_next_number():
    history = applied(applied([], deployment("nginx")), deployment("busybox"))
    back = applied(history, deployment("nginx"))
    assert [(r["revision"], r["template"]["spec"]["containers"][0]["image"]) for r in back] == \
        [(2, "busybox"), (3, "nginx")]

"""A pod's environment, resolved as the kubelet resolves it when the pod starts."""

import base64

from orchestrator.core.manifests import EnvVar
from orchestrator.core.objects import LabObjects, Pod
from orchestrator.layers.pods.env import resolved_env


def lab_objects() -> LabObjects:
    objects = LabObjects()
    objects.kept("ConfigMap")["shop/site"] = {"name": "site", "namespace": "shop", "labels": {}, "created": "",
                                              "spec": {"data": {"color": "blue", "size": "3", "bad.key": "x"}}}
    objects.kept("Secret")["shop/db"] = {"name": "db", "namespace": "shop", "labels": {}, "created": "",
                                         "spec": {"type": "Opaque",
                                                  "data": {"password": base64.b64encode(b"s3cret").decode()}}}
    return objects


def pod(*env: EnvVar) -> Pod:
    return Pod(name="web", namespace="shop", env=list(env))


def test_values_keys_and_envfrom_in_kubernetes_order_later_names_winning():
    env, problems = resolved_env(pod(EnvVar("SITE_", source="ConfigMap", source_name="site"),
                                     EnvVar("MODE", value="test"),
                                     EnvVar("PASSWORD", source="Secret", source_name="db", key="password"),
                                     EnvVar("SITE_size", value="9")), lab_objects())
    assert env == ["SITE_color=blue", "SITE_size=9", "SITE_bad.key=x", "MODE=test", "PASSWORD=s3cret"]
    assert problems == []


def test_what_is_missing_is_left_out_with_the_kubelets_words_unless_optional():
    env, problems = resolved_env(pod(EnvVar("A", source="ConfigMap", source_name="nope", key="a"),
                                     EnvVar("B", source="ConfigMap", source_name="site", key="nope"),
                                     EnvVar("C", source="Secret", source_name="gone", key="c", optional=True),
                                     EnvVar("D", value="kept")), lab_objects())
    assert env == ["D=kept"]
    assert problems == ['Error: configmap "nope" not found',
                        "Error: couldn't find key nope in ConfigMap shop/site"]


def test_envfrom_skips_keys_that_are_not_variable_names():
    objects = lab_objects()
    objects.kept("ConfigMap")["shop/site"]["spec"]["data"]["1st"] = "x"
    env, problems = resolved_env(pod(EnvVar("", source="ConfigMap", source_name="site")), objects)
    assert "1st=x" not in env and "color=blue" in env
    assert problems == ["Keys [1st] from the EnvFrom configmap shop/site were skipped since they are invalid "
                        "environment variable names."]

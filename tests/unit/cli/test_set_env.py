"""`lab set env` as kubectl's: --from takes a ConfigMap's or Secret's `data` keys (binaryData cannot be an env
value), KEY- removes, -c limits the change to one container."""

from orchestrator.cli.sets import env_from, with_env
from orchestrator.core.objects import LabObjects

DEPLOYMENT = {"kind": "Deployment", "metadata": {"name": "web", "namespace": "default"},
              "spec": {"template": {"spec": {"containers": [
                  {"name": "app", "env": [{"name": "OLD", "value": "1"}]}, {"name": "side"}]}}}}


def objects_with_settings() -> LabObjects:
    objects = LabObjects()
    objects.kept("ConfigMap")["default/settings"] = {
        "spec": {"data": {"log.level": "debug", "mode": "fast"}, "binaryData": {"logo.png": "iVBORw0KGgo="}}}
    return objects


def test_from_a_configmap_takes_its_data_keys_named_as_kubectl_names_them():
    found = env_from("configmap/settings", "APP_", objects_with_settings(), DEPLOYMENT, "lab set env")
    assert [(e["name"], e["valueFrom"]["configMapKeyRef"]) for e in found] == [
        ("APP_LOG_LEVEL", {"name": "settings", "key": "log.level"}), ("APP_MODE", {"name": "settings", "key": "mode"})]


def test_set_and_remove_touch_only_the_chosen_container():
    changed = with_env(DEPLOYMENT, ["side"], ["NEW=2", "OLD-"], [], "lab set env")
    app, side = changed["spec"]["template"]["spec"]["containers"]
    assert app["env"] == [{"name": "OLD", "value": "1"}] and side["env"] == [{"name": "NEW", "value": "2"}]
    assert "env" not in with_env(DEPLOYMENT, ["app"], ["OLD-"], [], "x")["spec"]["template"]["spec"]["containers"][0]

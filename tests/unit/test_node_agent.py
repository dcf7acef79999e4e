"""The node agent's CNI runtime logic: config lists, chaining, capabilities, the spec's argument rules."""

import json

import pytest

from orchestrator.node_agent import CniError, check_arguments, load_conf, plugin_config, probe_one

CONFLIST = {
    "cniVersion": "1.0.0", "name": "demo",
    "plugins": [{"type": "bridge", "bridge": "cni0", "ipam": {"type": "host-local"}},
                {"type": "portmap", "capabilities": {"portMappings": True}}],
}


def test_a_single_config_becomes_a_list_of_one():
    conf = load_conf('{"cniVersion": "0.4.0", "name": "n", "type": "bridge", "bridge": "b"}', "x.conf")
    assert conf == {"cniVersion": "0.4.0", "name": "n", "plugins": [{"type": "bridge", "bridge": "b"}]}


def test_each_plugin_gets_name_version_prev_result_and_only_its_capabilities():
    conf = load_conf(json.dumps(CONFLIST), "demo.conflist")
    runtime = {"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}], "bandwidth": {}}
    first = plugin_config(conf, conf["plugins"][0], None, runtime)
    assert first == {"type": "bridge", "bridge": "cni0", "ipam": {"type": "host-local"}, "name": "demo",
                     "cniVersion": "1.0.0"}
    prev = {"cniVersion": "1.0.0", "ips": [{"address": "10.244.0.2/24"}]}
    second = plugin_config(conf, conf["plugins"][1], prev, runtime)
    assert second["prevResult"] == prev
    assert second["runtimeConfig"] == {"portMappings": runtime["portMappings"]}


@pytest.mark.parametrize("text,words", [
    ('{"cniVersion": "1.0.0", "name": "n", "plugins": [{"type": "bridge"},]}',
     "x: line 1: trailing comma before ']' (line 1)"),
    ('{"cniVersion": "1.0.0", "name": "n"', "x: line 1, column 36: not valid JSON (Expecting ',' delimiter)"),
    ('{"cniVersion": "1.0.0", "name": "n"}', "neither \"plugins\" nor \"type\""),
    ('{"name": "n", "plugins": [{"type": "bridge"}]}', 'missing "cniVersion"'),
    ('{"cniVersion": "1.0.0", "name": "n", "plugins": [{"bridge": "x"}]}', 'must be a list of objects with a "type"'),
    ('[1, 2]', "expected a JSON object"),
])
def test_bad_configs(text, words):
    with pytest.raises(CniError) as caught:
        load_conf(text, "x")
    assert words in str(caught.value)


@pytest.mark.parametrize("container_id,ifname,ok", [
    ("833aaaf9fd81", "eth0", True), ("a.b_c-d", "net1", True),
    ("", "eth0", False), ("-abc", "eth0", False), ("a b", "eth0", False),
    ("abc", "", False), ("abc", "a" * 16, False), ("abc", "..", False), ("abc", "eth/0", False),
    ("abc", "eth:0", False),
])
def test_container_id_and_interface_name_follow_the_spec(container_id, ifname, ok):
    if ok:
        check_arguments(container_id, ifname)
    else:
        with pytest.raises(CniError):
            check_arguments(container_id, ifname)


def test_probe_reports_refused_and_timeout_without_raising():
    assert probe_one({"proto": "tcp", "host": "127.0.0.1", "port": 9}, 0.5) == {"ok": False, "error": "refused"}

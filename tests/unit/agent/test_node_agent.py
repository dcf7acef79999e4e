"""The node agent's CNI runtime logic: config lists, chaining, capabilities, the spec's argument rules."""

import json

import pytest

from orchestrator.agent.cni import CniError, check_arguments, load_conf, plugin_config
from orchestrator.agent.contract import ProxySync
from orchestrator.agent.probes import probe_from, probe_one


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


def test_probing_from_many_sources_answers_each_in_order_and_a_gone_namespace_fails_alone():
    closed = {"proto": "tcp", "host": "127.0.0.1", "port": 9}
    udp = {"proto": "udp", "host": "127.0.0.1", "port": 9}
    sources = [{"netns": "", "targets": [closed] * 3}, {"netns": "lab-test-gone-ns", "targets": [closed]}]
    sources += [{"netns": "", "targets": [udp, closed]} for _ in range(40)]  # more than SOURCES_AT_ONCE
    results = probe_from(sources, 0.5)
    assert results[0] == [{"ok": False, "error": "refused"}] * 3
    assert results[1] == [{"ok": False, "error": "network namespace lab-test-gone-ns is gone"}]
    assert results[2:] == [[{"ok": False, "error": "refused"}] * 2] * 40


def test_the_rules_a_node_holds_are_kept_whole_then_as_a_journal_of_changes(tmp_path):
    from orchestrator.agent.proxy import store_rules, stored_request
    lib = str(tmp_path)
    assert stored_request(lib) is None
    jumps = [["nat", "PREROUTING", "-A PREROUTING -j KUBE-SERVICES"]]
    whole = {"backend": "iptables", "jumps": jumps, "generation": "g1", "dns_hosts": "x", "stale_udp": ["y"],
             "tables": {"nat": {"KUBE-SERVICES": ["-A KUBE-SERVICES -j KUBE-SVC-A"], "KUBE-SVC-A": ["-A a"],
                                "KUBE-SVC-B": ["-A b"]}}}
    store_rules(lib, ProxySync.from_dict(whole))
    assert stored_request(lib) == ProxySync(backend="iptables", jumps=jumps, generation="g1", tables=whole["tables"])
    change = {"base": "g1", "generation": "g2", "jumps": jumps, "removed": {"nat": ["KUBE-SVC-B"]},
              "tables": {"nat": {"KUBE-SVC-A": ["-A a2"], "KUBE-SVC-C": ["-A c"]}}}
    store_rules(lib, ProxySync.from_dict(change))
    assert (tmp_path / "rules" / "journal").read_text().count("\n") == 1
    held = stored_request(lib)
    assert held.generation == "g2"
    assert held.tables["nat"] == {"KUBE-SERVICES": ["-A KUBE-SERVICES -j KUBE-SVC-A"], "KUBE-SVC-A": ["-A a2"],
                                     "KUBE-SVC-C": ["-A c"]}
    with open(tmp_path / "rules" / "journal", "a") as handle:
        handle.write('{"tables": {"nat": {"KUBE-SVC-D"')  # cut short by a power loss
    assert stored_request(lib) == held
    store_rules(lib, ProxySync.from_dict(whole))  # a whole request starts the store again
    assert stored_request(lib).tables == whole["tables"] and (tmp_path / "rules" / "journal").read_text() == ""


def test_a_journal_that_outgrows_the_whole_request_is_folded_into_it(tmp_path):
    from orchestrator.agent.proxy import store_rules, stored_request
    lib = str(tmp_path)
    store_rules(lib, ProxySync(backend="iptables", jumps=[], generation="g0", tables={"nat": {"C": ["-A C x"]}}))
    for n in range(1, 40):
        store_rules(lib, ProxySync(base=f"g{n - 1}", generation=f"g{n}", jumps=[],
                                   tables={"nat": {"C": [f"-A C {n}"]}}))
    journal = (tmp_path / "rules" / "journal").stat().st_size
    assert journal <= (tmp_path / "rules" / "request.json").stat().st_size
    assert stored_request(lib) == ProxySync(backend="iptables", jumps=[], generation="g39",
                                            tables={"nat": {"C": ["-A C 39"]}})


def test_a_recorded_pod_server_counts_only_while_it_is_that_server_in_this_boot():
    import subprocess
    import sys
    from orchestrator.agent.host import boot_id
    from orchestrator.agent.pods import server_running
    proc = subprocess.Popen([sys.executable, "-c", "import time; print('up', flush=True); time.sleep(30)", "serve",
                             "--name", "web"], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline() == "up\n"  # it runs its own command line now (not the forked parent's)
        record = {"pid": proc.pid, "name": "web", "role": "server", "boot": boot_id()}
        assert server_running(record)
        assert not server_running(dict(record, name="api"))  # the PID runs something else now
        assert not server_running(dict(record, boot="an-earlier-boot"))  # recorded before a reboot
        assert not server_running(dict(record, role="dns"))
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
    assert not server_running(record)


def test_pod_records_left_empty_or_naming_a_namespace_that_is_gone_are_reported_gone(tmp_path):
    """After a power cut a record can be empty or half-written, and after a reboot every pod namespace is gone:
    pods-ensure reports those pods gone (the controller makes them again) instead of failing on the file or
    starting a server with nowhere to run; the other commands read past them."""
    from orchestrator.agent.pods import pod_records, pods_ensure
    folder = tmp_path / "pods"
    folder.mkdir()
    (folder / "default_empty.json").write_text("")
    (folder / "default_half.json").write_text('{"key": "default_half", "netns": "lab-def')
    lost = {"key": "default_lost", "netns": "lab-default-lost-no-such-namespace", "id": "uid-lost",
            "ip": "10.244.0.7"}
    (folder / "default_lost.json").write_text(json.dumps(lost))
    assert pods_ensure(str(tmp_path)) == {"default_empty": {"state": "gone"}, "default_half": {"state": "gone"},
                                          "default_lost": {"state": "gone"}}
    assert pod_records(str(tmp_path)) == [lost]


def test_leases_are_read_from_the_pod_networks_own_folder(tmp_path):
    """host-local keeps one file per leased address, holding the container ID and the interface; the agent
    releases those no pod of the lab holds (a power cut during a CNI ADD)."""
    from orchestrator.agent.pods import lease_holders
    folder = tmp_path / "lab"
    folder.mkdir()
    (folder / "10.244.0.2").write_text("uid-web\r\neth0")
    (folder / "10.244.0.9").write_text("ghost\r\neth0")
    (folder / "last_reserved_ip.0").write_text("10.244.0.9")
    (folder / "lock").write_text("")
    conf = {"name": "lab", "plugins": [{"type": "bridge", "ipam": {"type": "host-local", "dataDir": str(tmp_path)}}]}
    assert lease_holders(conf) == {"uid-web": str(folder / "10.244.0.2"), "ghost": str(folder / "10.244.0.9")}
    assert lease_holders({**conf, "name": "other"}) == {}

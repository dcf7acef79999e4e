"""The node contract: each verb's request and answer round-trip as JSON, nothing unknown is read, and an
agent asked in another protocol refuses the request unread (exit REFUSED, one JSON answer, one clear line)."""

import json
import os
import subprocess
import sys

import pytest

from orchestrator.agent import main as agent_main
from orchestrator.agent.contract import (PROTOCOL, REFUSED, VERBS, ContractError, PodsApply, PodsApplyAnswer,
                                         ProxySync, SyncAnswer)
from orchestrator.agent.proxy import Resync, Sync, sync_nftables, write_dns_hosts
from orchestrator.core.agent import agent_zipapp, parse_answer
from orchestrator.core.errors import LabError


@pytest.mark.parametrize("verb", sorted(VERBS))
def test_every_request_and_answer_round_trips(verb):
    request = VERBS[verb]()
    assert VERBS[verb].from_json(request.to_json()) == request
    answer = request.ANSWER(changed=True, msg="x")
    assert request.ANSWER.from_json(answer.to_json()) == answer
    assert {"changed", "failed", "msg"} <= set(json.loads(answer.to_json()))  # one shape for every verb


def test_a_request_with_payload_round_trips():
    pod = {"key": "default_web", "name": "web", "netns": "demo-default-web", "tcp": [80], "id": "u1"}
    request = PodsApply(conflist="/etc/cni/net.d/10-demo.conflist", add=[pod])
    assert PodsApply.from_json(request.to_json()) == request
    sync = ProxySync(tables={"nat": {"KUBE-SERVICES": ["-A KUBE-SERVICES -j X"]}}, base="g1", removed={"nat": ["Y"]})
    assert ProxySync.from_json(sync.to_json()) == sync


@pytest.mark.parametrize("text, words", [
    ('{"conflist": "x", "pods": []}', "unknown field(s) pods"),
    ('[1, 2]', "expected a JSON object"),
    ('{"conflist": ', "not JSON"),
])
def test_what_is_not_the_contract_is_never_read(text, words):
    with pytest.raises(ContractError, match=words.replace("(", r"\(").replace(")", r"\)")):
        PodsApply.from_json(text)


def run_agent(monkeypatch, capsys, argv, stdin=""):
    import io
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    code = agent_main.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("argv", [["--protocol", str(PROTOCOL + 1), "proxy-sync"], ["proxy-sync"],
                                  ["--protocol", "1", "cni", "VERSION", "--conf", "-"]])
def test_an_agent_refuses_a_request_in_a_protocol_it_does_not_speak(monkeypatch, capsys, argv):
    code, out, err = run_agent(monkeypatch, capsys, argv, '{"backend": "iptables", "tables": {"nat": {}}}')
    assert code == REFUSED
    answer = json.loads(out)
    assert answer["failed"] and f"speaks protocol {PROTOCOL}" in answer["msg"] and "lab deploy" in answer["msg"]
    assert len(err.strip().splitlines()) == 1
    with pytest.raises(LabError) as caught:
        parse_answer(ProxySync(), code, out, err)
    assert "\n" not in str(caught.value) and "`lab deploy`" in str(caught.value)


def test_a_request_with_an_unknown_field_fails_with_one_line(monkeypatch, capsys):
    code, out, err = run_agent(monkeypatch, capsys, ["--protocol", str(PROTOCOL), "flush-caches"], '{"lab": "x"}')
    assert code == 1 and json.loads(out)["failed"]
    assert err.strip() == "node agent: flush-caches: FlushCaches: unknown field(s) lab"


def test_the_built_zipapp_refuses_another_protocol_and_an_agent_from_before_protocols_is_named(tmp_path):
    path = tmp_path / "agent.pyz"
    path.write_bytes(agent_zipapp())
    proc = subprocess.run([sys.executable, str(path), "--protocol", "999", "flush-caches"], input="{}",
                          capture_output=True, text=True)
    assert proc.returncode == REFUSED and json.loads(proc.stdout)["failed"]
    # an agent without --protocol: argparse exits 2 naming the option
    with pytest.raises(LabError, match="does not speak protocol"):
        parse_answer(ProxySync(), 2, "", "agent.pyz: error: unrecognized arguments: --protocol")


def test_a_failed_answer_is_one_line_and_a_good_one_is_typed():
    with pytest.raises(LabError, match="^pods-apply: cannot read x$"):
        parse_answer(PodsApply(), 1, PodsApplyAnswer(failed=True, msg="pods-apply: cannot read x").to_json(), "")
    with pytest.raises(LabError, match="exited 1: Traceback"):
        parse_answer(PodsApply(), 1, "", "Traceback")
    assert parse_answer(ProxySync(), 0, SyncAnswer(written=["nat/X"]).to_json(), "").written == ["nat/X"]


def test_the_dns_hosts_file_is_written_only_when_the_records_change(tmp_path):
    lib = str(tmp_path)
    assert write_dns_hosts(lib, "10.96.0.1 kubernetes.default.svc.cluster.local\n")
    assert not write_dns_hosts(lib, "10.96.0.1 kubernetes.default.svc.cluster.local\n")
    path = tmp_path / "dns" / "hosts"
    assert oct(path.stat().st_mode & 0o777) == "0o644"
    assert write_dns_hosts(lib, "")
    assert path.read_text() == "" and os.listdir(path.parent) == ["hosts"]  # no temporary file left


def test_a_change_request_never_reaches_the_nftables_backend():
    with pytest.raises(Resync):
        sync_nftables(Sync(dry_run=True), ProxySync(backend="nftables", base="g1"), {})


def test_the_node_scripts_rule_loads_never_start_with_a_whole_table_read():
    """After a read-only -S, iptables-nft does not make the built-in chains a fresh node lacks."""
    from orchestrator.agent.contract import chain_block
    text = chain_block("nat", {f"C{i}": [f"-A C{i} -j RETURN"] for i in range(50)}, then=["-I POSTROUTING 1 -j C0"])
    assert text.splitlines()[:2] == ["*nat", ":C0 - [0:0]"] and text.endswith("COMMIT")


def test_pod_namespaces_of_different_pods_never_collide_and_stay_short():
    from orchestrator.agent.contract import pod_netns_name
    # the old name, <lab>-<namespace>-<name>, was "lab-a-b-c" for both
    assert pod_netns_name("lab", "a", "b-c") != pod_netns_name("lab", "a-b", "c")
    assert pod_netns_name("lab", "default", "web").startswith("lab-default-web-")
    longest = pod_netns_name("abcdefghij", "n" * 63, "p" * 253)
    assert len(longest) <= 63 and longest != pod_netns_name("abcdefghij", "n" * 63, "p" * 252)


def test_the_agent_tells_a_pods_namespace_from_a_lessons_and_another_labs():
    from orchestrator.agent.contract import is_pod_netns, pod_netns_name
    assert is_pod_netns("lab", pod_netns_name("lab", "default", "web-1"))
    assert not is_pod_netns("lab", "lab-l07-c1")  # lesson 07's container, on the same node
    assert not is_pod_netns("other", pod_netns_name("lab", "default", "web-1"))
    assert not is_pod_netns("lab", pod_netns_name("lab", "default", "web-1") + "x")

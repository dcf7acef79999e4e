"""Emulated nodes and the SSH transport, end to end: real namespaces, real sshd, real paramiko."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from orchestrator.core.transport import NodeError
from orchestrator.providers.local import generate_key
from .labtools import (LabProcesses, alive, copy_inventory, lab_cli, leftovers, namespaces_of,
                       root_namespace_snapshot, sh, unique_lab_name, wait_for)


# ---- nodes are separate machines -----------------------------------------------------------------


def test_every_node_answers_over_ssh_with_its_own_hostname(lab3):
    results = lab3.transport.run_everywhere(["hostname"]).raise_on_failure()
    assert {name: r.stdout.strip() for name, r in results.items()} == {"node1": "node1", "node2": "node2",
                                                                       "node3": "node3"}


def test_etc_cni_is_private_to_each_node(lab3):
    lab3.transport.put("node1", "/etc/cni/net.d/only-on-node1.conf", '{"hello": 1}\n')
    assert lab3.transport.run("node1", ["cat", "/etc/cni/net.d/only-on-node1.conf"]).stdout == '{"hello": 1}\n'
    on_node2 = lab3.transport.run("node2", ["ls", "-A", "/etc/cni/net.d"]).stdout.split()
    assert "only-on-node1.conf" not in on_node2
    assert not Path("/etc/cni/net.d/only-on-node1.conf").exists()  # nor on this machine
    lab3.transport.run("node1", ["rm", "/etc/cni/net.d/only-on-node1.conf"])


def test_var_lib_cni_and_home_are_private(lab3):
    lab3.transport.run("node1", ["sh", "-c", "mkdir -p /var/lib/cni/x && touch /var/lib/cni/x/f /root/mark"])
    assert lab3.transport.run("node2", ["ls", "-A", "/var/lib/cni", "/root"]).stdout.split().count("x") == 0
    assert lab3.transport.run("node2", ["test", "-e", "/root/mark"], check=False).exit_code == 1
    lab3.transport.run("node1", ["rm", "-r", "/var/lib/cni/x", "/root/mark"])


def test_network_namespaces_made_on_a_node_are_its_own(lab3):
    t = lab3.transport
    t.run("node1", ["ip", "netns", "add", "x"])
    try:
        assert "x" in t.run("node1", ["ip", "netns", "list"]).stdout.split()
        assert "x" not in t.run("node2", ["ip", "netns", "list"]).stdout.split()
        # the machine's own list shows neither the pod-like namespace nor another lab's
        assert "x" not in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split()
        # and a command in it still works from a later SSH session (the node's mount namespace lives on)
        assert "lo" in t.run("node1", ["ip", "netns", "exec", "x", "ip", "-br", "link"]).stdout
    finally:
        t.run("node1", ["ip", "netns", "del", "x"])


def test_nodes_route_only_inside_the_lab(lab3):
    host_address = str(lab3.inventory.nodes[0].address).rsplit(".", 1)[0] + ".1"
    for ns in namespaces_of(lab3.name):
        routes = subprocess.run(["ip", "-n", ns, "route"], capture_output=True, text=True).stdout
        assert f"via {host_address}" not in routes, f"{ns} routes through the root namespace:\n{routes}"
    # the outside host is reachable from a node, through the lab's router
    ping = lab3.transport.run("node2", ["ping", "-c1", "-W2", "203.0.113.10"], check=False)
    assert ping.exit_code == 0, ping.stdout + ping.stderr
    # an address beyond the lab is not: the router has no route out
    ping = lab3.transport.run("node2", ["ping", "-c1", "-W1", "192.0.2.200"], check=False)
    assert ping.exit_code != 0


# ---- the transport --------------------------------------------------------------------------------


def test_transport_passes_arguments_stdin_and_large_output_exactly(lab3):
    t = lab3.transport
    weird = ["a b", "$(hostname)", "x;y", "it's", "*"]
    assert t.run("node1", ["printf", "%s\n", *weird]).stdout.splitlines() == weird
    assert t.run("node1", ["cat"], stdin="from stdin\n").stdout == "from stdin\n"
    # 2 MB on stdout and on stderr at once must not deadlock
    big = t.run("node1", ["sh", "-c", "head -c 2000000 /dev/zero; head -c 2000000 /dev/zero >&2"])
    assert (len(big.stdout), len(big.stderr)) == (2000000, 2000000)


def test_transport_reports_exit_codes_and_timeouts_per_node(lab3):
    t = lab3.transport
    result = t.run("node2", ["sh", "-c", "echo oops >&2; exit 7"], check=False)
    assert (result.node, result.exit_code, result.stderr) == ("node2", 7, "oops\n")
    sudo = "sudo -n -- " if lab3.inventory.nodes[0].ssh.become else ""  # LAB_E2E_SUDO_USER: all through sudo
    with pytest.raises(NodeError, match=rf"^node2: `{sudo}sh -c 'echo oops >&2; exit 7'`: exited 7: oops$"):
        t.run("node2", ["sh", "-c", "echo oops >&2; exit 7"])
    with pytest.raises(NodeError, match=rf"^node3: `{sudo}sleep 5`: timed out after 0.5 s$"):
        t.run("node3", ["sleep", "5"], timeout=0.5)
    both = t.run_all(lambda node: t.run(node, ["sh", "-c", f"test {node.name} != node2"]))
    assert set(both.failures) == {"node2"} and both["node1"].ok and both["node3"].ok


def test_commands_on_all_nodes_run_in_parallel(lab3):
    # every node notes when its command starts and ends (one clock: this machine's): run one after another,
    # a node would start only after the one before had ended; in parallel, every one starts before any ends
    script = "date +%s.%N; sleep 0.5; date +%s.%N"
    results = lab3.transport.run_everywhere(["sh", "-c", script])
    results.raise_on_failure()
    spans = [tuple(map(float, results[n.name].stdout.split())) for n in lab3.inventory.nodes]
    assert max(start for start, _ in spans) < min(end for _, end in spans)


# ---- the CLI ----------------------------------------------------------------------------------------


def test_lab_exec_prints_output_and_returns_the_remote_exit_code(lab3):
    proc = lab_cli("exec", "--inventory", lab3.inventory_path, "node3", "--", "sh", "-c",
                   "hostname; echo err >&2; exit 42")
    assert (proc.returncode, proc.stdout, proc.stderr) == (42, "node3\n", "err\n")


def test_lab_uses_the_lab_brought_up_last(lab3):
    # `lab up` wrote .lab/current; with neither -i nor LAB_INVENTORY, commands use it
    proc = lab_cli("exec", "node1", "--", "hostname", check=True)
    assert proc.stdout == "node1\n"


def test_lab_status_shows_every_node(lab3):
    proc = lab_cli("status", "-i", lab3.inventory_path, "-o", "json", check=True)
    status = json.loads(proc.stdout)
    assert [n["name"] for n in status["nodes"]] == ["node1", "node2", "node3"]
    for node in status["nodes"]:
        assert node["ssh"] == "ok" and node["hostname"] == node["name"] and node["kernel"]
        assert node["missing_plugins"] == []
    table = lab_cli("status", "-i", lab3.inventory_path, check=True).stdout
    assert "node3" in table and "4/4" in table


def test_lab_up_again_is_a_no_op(lab3):
    def node_sshds() -> dict:  # each node's sshd, as `lab up` recorded it: made again, a node gets a new one
        record = json.loads((lab3.state_dir / lab3.name / "lab.json").read_text())
        return {name: info["pid"] for name, info in record["nodes"].items()}
    before = node_sshds()
    proc = lab_cli("up", "--name", lab3.name, "--nodes", "3", check=True)
    assert "no changes" in proc.stderr
    assert node_sshds() == before and all(alive(pid) for pid in before.values())
    hostname = lab_cli("exec", "--inventory", lab3.inventory_path, "node2", "--", "hostname", check=True).stdout
    assert hostname == "node2\n"


def test_unknown_command_target_is_a_clear_error(lab3):
    proc = lab_cli("exec", "--inventory", lab3.inventory_path, "node9", "--", "true")  # neither a node nor a pod
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("lab: error: Error from server (NotFound): pods \"node9\" not found in namespace "
                                   "'default' (nor is it a node: node1, node2, node3); see `lab get pods -A`")
    proc = lab_cli("exec", "--inventory", lab3.inventory_path, "node/node9", "--", "true")
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"lab: error: {lab3.inventory_path}: no node named 'node9'; " \
                                  "nodes are: node1, node2, node3"


# ---- host keys and client keys ----------------------------------------------------------------------


def test_a_changed_host_key_is_refused(lab3, tmp_path):
    real = (lab3.state_dir / lab3.name / "known_hosts").read_text().splitlines()
    impostor = generate_key(tmp_path / "other_host_key", "impostor").split()[:2]
    address = real[0].split()[0]
    (tmp_path / "known_hosts").write_text("\n".join([f"{address} {' '.join(impostor)}", *real[1:]]) + "\n")
    inv = copy_inventory(lab3, tmp_path, known_hosts=str(tmp_path / "known_hosts"))
    proc = lab_cli("exec", "--inventory", str(inv), "node1", "--", "true")
    assert proc.returncode == 1
    user = lab3.inventory.nodes[0].ssh.user
    assert f"host key of {user}@" in proc.stderr and "has CHANGED" in proc.stderr and "refusing" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    # the other nodes, whose keys are right, still work through the same inventory
    assert lab_cli("exec", "--inventory", str(inv), "node2", "--", "true").returncode == 0
    assert (tmp_path / "known_hosts").read_text().count(address) == 1  # nothing was added


def test_an_unknown_host_key_is_refused(lab3, tmp_path):
    (tmp_path / "known_hosts").write_text("")
    inv = copy_inventory(lab3, tmp_path, known_hosts=str(tmp_path / "known_hosts"))
    proc = lab_cli("status", "-i", str(inv), "-o", "json")
    assert proc.returncode == 1
    errors = [n["error"] for n in json.loads(proc.stdout)["nodes"]]
    assert all("is unknown: not in" in e for e in errors), errors
    assert (tmp_path / "known_hosts").read_text() == ""  # never silently accepted


def test_a_wrong_key_path_is_a_clear_error(lab3, tmp_path):
    inv = copy_inventory(lab3, tmp_path, key=str(tmp_path / "no-such-key"))
    proc = lab_cli("status", "-i", str(inv))
    assert proc.returncode == 2
    assert proc.stderr.strip() == (f"lab: error: {inv}: ssh.key: cannot read {tmp_path / 'no-such-key'}: No such "
                                   "file or directory; give the path of a readable file (relative paths start at "
                                   "the inventory's folder)")


def test_a_key_the_node_does_not_accept_is_a_clear_error(lab3, tmp_path):
    generate_key(tmp_path / "stranger", "stranger")
    inv = copy_inventory(lab3, tmp_path, key=str(tmp_path / "stranger"))
    proc = lab_cli("exec", "--inventory", str(inv), "node1", "--", "true")
    assert proc.returncode == 1 and f"SSH login as {lab3.inventory.nodes[0].ssh.user} refused" in proc.stderr


# ---- up and down leave nothing behind -----------------------------------------------------------------


def test_down_removes_everything_and_restores_the_root_namespace(state_dir):
    name = unique_lab_name("d")
    before = root_namespace_snapshot(name)
    processes = LabProcesses()
    try:
        lab_cli("up", "--name", name, "--nodes", "2", check=True)
        assert len(LabProcesses.of(name).pids) >= 2 and namespaces_of(name)
        assert Path("/sys/class/net", f"{name}-host").exists()  # the one link in the root namespace
        # a pod-like namespace on node2 with a process in it: `ip netns exec` gives that process a mount
        # namespace of its own, so only the node's /run/netns leads to it
        lab_cli("exec", "node2", "--", "sh", "-c", "ip netns add podlike && ip netns exec podlike setsid sleep 600 "
                "< /dev/null > /dev/null 2>&1 & echo $! > /tmp/podlike.pid", check=True)
        podlike = int(lab_cli("exec", "node2", "--", "cat", "/tmp/podlike.pid", check=True).stdout)
        processes = LabProcesses.of(name)
        assert podlike in processes.pids
        # node2 dies (its sshd and sessions end): what it started must still go with `lab down`
        for pid in sh("ip", "netns", "pids", f"{name}-node2").split():
            os.kill(int(pid), signal.SIGKILL)
    finally:
        proc = lab_cli("down", "--name", name, check=True)
    assert f"lab {name}: removed" in proc.stdout
    assert leftovers(name, state_dir, processes) == []
    assert root_namespace_snapshot(name) == before


def test_down_after_an_up_killed_halfway(state_dir):
    name = unique_lab_name("k")
    up = subprocess.Popen([sys.executable, "-m", "orchestrator.cli", "up", "--name", name, "--nodes", "8"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while not any(ns.startswith(f"{name}-node") for ns in namespaces_of(name)) and time.monotonic() < deadline:
        time.sleep(0.005)
    up.send_signal(signal.SIGKILL)
    up.wait()
    processes = LabProcesses.of(name)
    assert namespaces_of(name), "the up was killed before it made anything: the test proves nothing"
    lab_cli("down", "--name", name, check=True)
    assert leftovers(name, state_dir, processes) == []


def test_down_of_a_lab_that_does_not_exist_says_so(state_dir):
    proc = lab_cli("down", "--name", "nosuchlab")
    assert (proc.returncode, proc.stdout.strip()) == (0, "lab nosuchlab does not exist: nothing to do")


def test_up_converges_to_the_number_of_nodes(state_dir):
    name = unique_lab_name("c")
    processes = LabProcesses()
    try:
        lab_cli("up", "--name", name, "--nodes", "2", check=True)
        first = {n["name"]: n for n in yaml.safe_load((state_dir / name / "inventory.yaml").read_text())["nodes"]}
        lab_cli("up", "--name", name, "--nodes", "3", check=True)
        assert lab_cli("exec", "node3", "--", "hostname", check=True).stdout == "node3\n"
        grown = {n["name"]: n for n in yaml.safe_load((state_dir / name / "inventory.yaml").read_text())["nodes"]}
        assert {k: grown[k] for k in first} == first  # the existing nodes kept their addresses
        processes = LabProcesses.of(name)
        lab_cli("up", "--name", name, "--nodes", "1", check=True)
        assert sorted(namespaces_of(name)) == sorted(f"{name}-{x}" for x in ("node1", "outside", "router",
                                                                             "underlay"))
    finally:
        lab_cli("down", "--name", name, check=True)
    assert leftovers(name, state_dir, processes) == []


def test_bad_input_changes_nothing(state_dir, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("cluster: {name: badlab, cluster_cidr: 10.244.0.0/33}\nemulated: {nodes: 2}\n")
    proc = lab_cli("up", "-i", str(bad))
    assert proc.returncode == 2
    assert proc.stderr.strip() == (f"lab: error: {bad}: cluster.cluster_cidr: '10.244.0.0/33' is not a CIDR; "
                                   "write it like 10.244.0.0/16")
    assert namespaces_of("badlab") == [] and not (state_dir / "badlab").exists()
    proc = lab_cli("up", "--name", "Bad-Name")
    assert proc.returncode == 2 and "--name: 'Bad-Name' is not a valid lab name" in proc.stderr


def cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:  # gone meanwhile
        return []


CUT_OFF = """table inet labcut {
  chain in { type filter hook input priority -300; policy drop; }
  chain out { type filter hook output priority -300; policy drop; }
}
"""


def test_a_node_cut_off_mid_command_fails_it_naming_the_node_not_at_its_timeout(lab3):
    """A node that stops answering (powered off, its network gone) while a command runs fails that command with
    one line naming the node, as soon as the connection is taken for dead: not with `timed out after 120 s`.
    The cut is a drop-everything table in the node's own namespace, taken away after."""
    node_ns = f"{lab3.name}-node2"
    command = ["sleep", "300"]
    proc = subprocess.Popen([sys.executable, "-m", "orchestrator.cli", "exec", "node2", "--inventory",
                             lab3.inventory_path, "--", *command], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    sleeper: list[int] = []
    try:
        def started() -> bool:
            sleeper[:] = [int(pid) for pid in sh("ip", "netns", "pids", node_ns).split()
                          if cmdline(int(pid))[:2] == command]
            return bool(sleeper)
        assert wait_for(started), "the command did not start on node2"
        subprocess.run(["ip", "netns", "exec", node_ns, "nft", "-f", "-"], input=CUT_OFF, text=True, check=True)
        try:
            out, err = proc.communicate(timeout=100)
        finally:
            subprocess.run(["ip", "netns", "exec", node_ns, "nft", "delete", "table", "inet", "labcut"], check=True)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pid in sleeper:  # the command the test started on the node
            os.kill(pid, signal.SIGKILL)
    assert proc.returncode != 0
    assert "node2" in err and "did not answer" in err and "timed out after" not in err, (proc.returncode, out, err)
    assert len(err.strip().splitlines()) == 1, err
    assert lab3.transport.run("node2", ["true"]).ok  # and the node is reached again once it answers

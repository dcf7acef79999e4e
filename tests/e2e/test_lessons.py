"""Every lesson of the talk runs on the emulated lab, passes its checks, and its cleanup leaves each node
exactly as it was: namespaces, links, routes, neighbour entries, firewall rules, sysctls, files, processes."""

from __future__ import annotations

import collections

import pytest

from orchestrator.lessons import model as lessons
from .labtools import LabProcesses, lab_cli

NODE_STATE = r"""
echo "== netns"; ip netns list | sort
echo "== links"; ip -o link | awk -F': ' '{print $2}' | sort
echo "== addresses"; ip -o -4 addr show | awk '{print $2, $4}' | sort
echo "== routes"; ip -4 route show table all | sort
echo "== neighbours"; ip neigh show nud permanent | sort
echo "== fdb"; bridge fdb show | grep -v ' self$' | sort
echo "== iptables"; iptables-save | grep -v '^#' | sed 's/\[[0-9]*:[0-9]*\]//' | sort
echo "== sysctls"; sysctl -n net.ipv4.ip_forward net.bridge.bridge-nf-call-iptables
echo "== files"; ls -a /run /etc/netns 2>&1 | sort
"""


def node_state(lab) -> dict[str, str]:
    return {node.name: lab.transport.script(node, NODE_STATE).stdout for node in lab.inventory.nodes}


def changes(before: dict[str, str], after: dict[str, str]) -> list[str]:
    """The lines of each node's state that appeared (+) or went away (-)."""
    found = []
    for node, text in before.items():
        old, new = set(text.splitlines()), set(after[node].splitlines())
        found += [f"{node}: - {line}" for line in sorted(old - new)]
        found += [f"{node}: + {line}" for line in sorted(new - old)]
    return found


def lab_process_names(lab) -> collections.Counter:
    """Commands of the processes running on the lab's nodes (and in the namespaces made there), counted."""
    names = collections.Counter()
    for pid in LabProcesses.of(lab.name).pids:
        try:
            comm = open(f"/proc/{pid}/comm").read().strip()
        except OSError:
            continue
        if comm not in ("sshd", "sh", "bash", "sudo"):  # this test's own SSH sessions come and go
            names[comm] += 1
    return names


@pytest.fixture(scope="module")
def lab(lab3):
    """lab3 with its pod network and the talk's nginx: the deployed steps of the lessons run too."""
    lab_cli("deploy", "-i", lab3.inventory_path, check=True)
    lab_cli("apply", "-i", lab3.inventory_path, "-f", "examples/nginx.yaml", check=True)
    yield lab3
    lab_cli("destroy", "-i", lab3.inventory_path, check=True)


def play(lab, lesson: str, *flags: str):
    return lab_cli("play", lesson, "-i", lab.inventory_path, *flags, timeout=300)


@pytest.mark.parametrize("lesson", [lesson.id for lesson in lessons.load_all() if "pods" not in lesson.needs])
def test_lesson_runs_passes_its_checks_and_cleans_up(lab, lesson):
    before, processes = node_state(lab), lab_process_names(lab)
    try:
        proc = play(lab, lesson)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert f"lesson {lesson}: all" in proc.stdout and "✗" not in proc.stdout
        # it shows what it types: on a node, or to the lab CLI (lesson 12 is all kubectl-style YAML)
        prompt = f"{lab.inventory.nodes[0].name}$ "
        assert "Step 1/" in proc.stdout and (prompt in proc.stdout or "$ lab " in proc.stdout)
        check = play(lab, lesson, "--check")
        assert check.returncode == 0, check.stdout + check.stderr
        again = play(lab, lesson)  # a re-run starts from a clean slate
        assert again.returncode == 0, again.stdout + again.stderr
    finally:
        cleanup = play(lab, lesson, "--cleanup")
    assert cleanup.returncode == 0, cleanup.stderr
    assert changes(before, node_state(lab)) == []
    assert lab_process_names(lab) == processes


def test_check_fails_when_the_student_has_not_done_the_lesson(lab):
    proc = play(lab, "04-bridge", "--check")
    assert proc.returncode == 1
    assert "✗ the bridge is up with 10.200.4.1/24" in proc.stdout
    assert "checks failed" in proc.stdout


def test_check_step_by_step_shows_what_to_type_then_checks_it(lab):
    try:
        proc = lab_cli("play", "03", "-i", lab.inventory_path, "--check", "--step", input="\n\n\n", timeout=120)
        assert proc.returncode == 1  # nothing was typed: the checks of each step fail
        assert "ip netns add" in proc.stdout and "✗ each namespace has one end" in proc.stdout
    finally:
        play(lab, "03", "--cleanup")


def test_troubleshooting_lesson_breaks_the_lab_and_leaves_it_repaired(lab):
    try:
        proc = play(lab, "13-troubleshooting")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "one fault, chosen at random" in proc.stdout and "FAILED" in proc.stdout
        assert "lesson 13-troubleshooting: all 2 checks passed" in proc.stdout
    finally:
        assert play(lab, "13", "--cleanup").returncode == 0
    assert lab_cli("verify", "-i", lab.inventory_path).returncode == 0


def test_load_balancer_lesson_fails_over_and_leaves_no_address_behind(lab):
    before = node_state(lab)
    try:
        proc = play(lab, "14-loadbalancer")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "lesson 14-loadbalancer: all 5 checks passed" in proc.stdout
        assert "link down (the node keeps running" in proc.stdout and "instead of" in proc.stdout
    finally:
        assert play(lab, "14", "--cleanup").returncode == 0
    assert changes(before, node_state(lab)) == []
    assert "l14-web" not in lab_cli("get", "svc", "-i", lab.inventory_path, check=True).stdout
    assert lab_cli("verify", "-i", lab.inventory_path).returncode == 0


def assert_played_and_cleaned(lab, lesson: str, checks: int, *shown: str) -> None:
    """`lesson` played: all its checks pass and its output shows each of `shown`; its cleanup leaves the nodes'
    state and processes as they were (no nginx left running), and `lab verify` passing."""
    before, processes = node_state(lab), lab_process_names(lab)
    try:
        proc = play(lab, lesson)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert f"lesson {lesson}: all {checks} checks passed" in proc.stdout
        assert all(text in proc.stdout for text in shown), proc.stdout
    finally:
        assert play(lab, lesson.split("-")[0], "--cleanup").returncode == 0
    assert changes(before, node_state(lab)) == []
    assert lab_process_names(lab) == processes
    assert lab_cli("verify", "-i", lab.inventory_path).returncode == 0


def test_gateway_lesson_routes_by_path_header_weight_and_redirect_and_leaves_nothing_behind(lab):
    assert_played_and_cleaned(lab, "15-gateway-api", 6, "301 https://shop.l15.example/login")
    listed = lab_cli("get", "gateway,httproute,deploy,svc", "-A", "-i", lab.inventory_path, check=True).stdout
    assert "l15" not in listed


def test_ingress_lesson_serves_host_paths_and_tls_then_the_same_as_a_route_and_leaves_nothing_behind(lab):
    # the certificate served, as openssl shows it
    assert_played_and_cleaned(lab, "16-ingress", 6, "subject=CN = shop.l16.example")
    listed = lab_cli("get", "ingress,gateway,httproute,secret,deploy,svc", "-A", "-i", lab.inventory_path,
                     check=True).stdout
    assert "l16" not in listed and "ingress-lab" not in listed


def test_a_lesson_needing_pods_says_what_to_do_on_an_empty_lab(lab3, tmp_path):
    lab_cli("delete", "-i", lab3.inventory_path, "-f", "examples/nginx.yaml", check=True)
    try:
        proc = play(lab3, "13")
    finally:
        lab_cli("apply", "-i", lab3.inventory_path, "-f", "examples/nginx.yaml", check=True)
    assert proc.returncode == 2
    assert "needs a deployed lab with pods: run lab apply -f examples/ first" in proc.stderr
    assert "Traceback" not in proc.stderr

"""`lab verify` on the 3-node lab: passes when healthy, fails in the right family for each injected
fault, each failure's hint naming the broken node (or object) and a command that shows the fault, and passes
again after `lab fix`; expectations as data; JUnit; the pytest fixtures."""

from __future__ import annotations

import html
import json
import re
import shlex
import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import pytest

from orchestrator.verify.checks import hint_commands
from orchestrator.verify.faults import FAULTS
from orchestrator.verify.policy_faults import BREAKS as POLICY_FAULTS
from .labtools import lab_cli
from .test_pod_network import apply

REPO = Path(__file__).resolve().parents[2]
EXTRA = """
apiVersion: v1
kind: Pod
metadata: {name: mapped, labels: {app: mapped}}
spec:
  containers: [{name: c, image: nginx, ports: [{containerPort: 80, hostPort: 8080}]}]
---
apiVersion: v1
kind: Service
metadata: {name: empty}
spec:
  selector: {app: nobody}
  ports: [{port: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: front}
spec:
  type: LoadBalancer
  selector: {app: nginx}
  ports: [{port: 80}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: front}
spec:
  gatewayClassName: lab
  listeners: [{name: http, port: 80, protocol: HTTP, hostname: "*.example.com"}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: front}
spec:
  parentRefs: [{name: front}]
  hostnames: [www.example.com]
  rules: [{backendRefs: [{name: nginx, port: 80}]}]
"""


@pytest.fixture(scope="module")
def verified(lab3):
    lab_cli("deploy", "-i", lab3.inventory_path, check=True)
    lab_cli("apply", "-i", lab3.inventory_path, "-f", str(REPO / "examples" / "nginx.yaml"), check=True)
    apply(lab3, EXTRA)
    yield lab3
    lab_cli("destroy", "-i", lab3.inventory_path, check=True)


def verify_json(lab, *args: str) -> tuple[int, dict]:
    proc = lab_cli("verify", "-i", lab.inventory_path, "-o", "json", *args)
    return proc.returncode, json.loads(proc.stdout)


def failing_families(report: dict) -> set:
    return {c["family"] for c in report["checks"] if not c["ok"]}


def test_a_healthy_lab_passes_every_family(verified, tmp_path):
    junit = tmp_path / "verify.xml"
    page = tmp_path / "verify.html"
    proc = lab_cli("verify", "-i", verified.inventory_path, "--junit", str(junit), "--html", str(page))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "all passed" in proc.stdout and "from \\ to" in proc.stdout  # the pod x pod matrix
    code, report = verify_json(verified)
    assert code == 0 and report["passed"]
    assert {c["family"] for c in report["checks"]} >= {
        "pod-to-pod", "pod-to-service", "hairpin", "dns", "node-to-pod", "mtu", "egress", "hostport",
        "no-endpoints", "loadbalancer", "gateway"}
    suite = ET.parse(junit).getroot()
    cases = suite.iter("testcase")
    names = [c.get("name") for c in cases]
    assert len([n for n in names if n.startswith("test_reachability[")]) == len(report["checks"])
    text = page.read_text()
    assert text.startswith("<!doctype html>") and "<h2>failures</h2><ul><li>none</li></ul>" in text
    assert text.count("&#10004;") == len({(c["id"].split("/")[1]) for c in report["checks"]
                                          if c["family"] == "pod-to-pod"}) and "&#10008;" not in text
    assert {"test_pods_use_the_cluster_dns", "test_pod_interfaces_have_the_mtu_of_their_node_network"} <= set(names)


@dataclass(frozen=True)
class Evidence:
    """How a fault shows: the command every failing check's hint must carry, on the node `lab break` names (a
    `lab exec NODE -- ...` that runs it) or, for a fault on an object, naming that object; and a text (a regular
    expression) in that command's output only while the lab is broken, or only once it is fixed. `facts` reads
    the values both are written with from `lab break`'s line."""
    on: str  # "node", or the kind of the object `lab break` names: the hint's command is then a lab command
    command: str
    shows: str
    while_broken: bool
    facts: str = ""


SHOWN_BY = {
    "vxlan-fdb": Evidence("node", "bridge fdb show dev {dev}", r"{mac} dst {peer}", False,
                          r"FDB entry (?P<mac>\S+) -> (?P<peer>\S+) on (?P<dev>\S+)"),
    "ipmasq": Evidence("node", "grep ipMasq {conflist}", r'"ipMasq": true', True, r"\bin [^:\s]+:(?P<conflist>\S+)"),
    "kube-sep": Evidence("node", "iptables -t nat -S {svc}", r"-j {sep}\b", False,
                         r"chain (?P<sep>KUBE-SEP-\w+) .* its jump in (?P<svc>KUBE-SVC-\w+)"),
    "dns-pod": Evidence("pod", "lab get pods -n {namespace} -o wide", r"{name}\s+1/1\s+Running", False),
    "mtu": Evidence("node", "ip link show cni0", r"\bmtu 1000\b", True),
    "lb-address": Evidence("node", "ip -br addr", r"\b{address}/32\b", False, r"deleted (?P<address>[\d.]+) "),
    "stray-policy": Evidence("node", "nft list table ip lab-policy", r"ip daddr {ip} drop", True,
                             r"\((?P<ip>[\d.]+)\), which"),
    "gateway-backend-port": Evidence("httproute", "lab describe httproute {name} -n {namespace}",
                                     r"/{backend}:{port}\b", True,
                                     r"backendRef (?P<backend>\S+) port \S+ -> (?P<port>\d+)"),
    "listener-hostname": Evidence("gateway", "lab describe gateway {name} -n {namespace}", r"hostname {hostname}",
                                  True, r"-> (?P<hostname>\S+): no route"),
    "deny-all": Evidence("networkpolicy", "lab describe netpol {name} -n {namespace}", r"Name:\s+{name}\n", True),
    "selector-typo": Evidence("networkpolicy", "lab describe netpol {name} -n {namespace}",
                              r"From:\s+PodSelector:\s+{selector}\n", True, r"selector says (?P<selector>\S+)"),
}


def broken_where(line: str) -> dict[str, str]:
    """kind -> name of what `lab break`'s line says it broke: 'broke lab L on node node1, service default/web: ...'
    gives {"node": "node1", "service": "default/web"}."""
    match = re.match(r"broke lab \S+ on (.+?): ", line)
    assert match, line
    return dict(item.split(" ", 1) for item in match.group(1).split(", "))


def evidence_in_hint(evidence: Evidence, where: dict[str, str], facts: dict[str, str], show: str) -> list[list[str]]:
    """The commands of a hint that run the evidence's command where the fault is."""
    if evidence.on == "node":
        wanted = evidence.command.format(**facts)
        return [w for w in hint_commands(show) if w[:4] == ["lab", "exec", where["node"], "--"]
                and wanted in " ".join(w[4:])]
    namespace, name = where[evidence.on].split("/")
    return [w for w in hint_commands(show) if " ".join(w) == evidence.command.format(namespace=namespace, name=name)]


def run_hint(lab, words: list[str]) -> str:
    """What a hint's command prints (both streams), run as the user would, on this lab."""
    proc = lab_cli(words[1], "--inventory", lab.inventory_path, *words[2:])
    return proc.stdout + proc.stderr


def test_every_fault_says_how_it_shows():
    assert set(SHOWN_BY) == set(FAULTS)


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_each_fault_fails_its_family_its_hints_show_it_and_fix_repairs_it(verified, fault):
    broke = lab_cli("break", fault, "-i", verified.inventory_path, check=True).stdout
    evidence = SHOWN_BY[fault]
    where = broken_where(broke)
    facts = re.search(evidence.facts, broke).groupdict() if evidence.facts else {}
    if evidence.on != "node":
        facts.update(zip(("namespace", "name"), where[evidence.on].split("/"), strict=True))
    try:
        code, report = verify_json(verified)
        assert code == 1 and not report["passed"]
        failed = failing_families(report)
        assert FAULTS[fault].trips in failed, failed
        assert failed <= FAULTS[fault].may_trip, f"{fault} tripped unrelated checks: {failed}"
        reasons = [c for c in report["checks"] if not c["ok"]]
        assert all(c["layer"] and c["show"] for c in reasons)  # every failure says where to look
        warned = json.loads(lab_cli("get", "events", "-A", "--field-selector", "reason=CheckFailed", "-o", "json",
                                    "-i", verified.inventory_path, check=True).stdout)["items"]
        from_pods = {f"{c['label']}: {c['reason']}" for c in reasons
                     if c["reason"] and c["id"].startswith(("pod", "dns", "mtu"))}
        assert from_pods <= {e["message"] for e in warned}  # each failed check from a pod is an event of that pod
        # every failure's hint runs the command that shows the fault where `lab break` put it
        shown = {c["id"]: evidence_in_hint(evidence, where, facts, c["show"]) for c in reasons}
        assert all(shown.values()), {c["id"]: c["show"] for c in reasons if not shown[c["id"]]}
        commands = sorted({tuple(words) for found in shown.values() for words in found})
        while_broken = [run_hint(verified, list(words)) for words in commands]
    finally:
        fixed = lab_cli("fix", "-i", verified.inventory_path, check=True).stdout
    code, report = verify_json(verified)
    assert code == 0, [c["label"] + ": " + c["reason"] for c in report["checks"] if not c["ok"]]
    # ... and what it prints shows the fault: the text is there only while broken (or only once fixed)
    sign = re.compile(evidence.shows.format(**{k: re.escape(v) for k, v in facts.items()}))
    for words, before in zip(commands, while_broken, strict=True):
        after = run_hint(verified, list(words))
        assert (bool(sign.search(before)), bool(sign.search(after))) == (evidence.while_broken,
                                                                         not evidence.while_broken), \
            f"{shlex.join(words)} does not show {fault} ({sign.pattern}):\nbroken:\n{before}\nfixed:\n{after}"
    if fault in POLICY_FAULTS:  # it deletes the policy it applied, and says so
        assert "deleted (`lab break" in fixed and not lab_cli("get", "netpol", "-A", "-i", verified.inventory_path,
                                                               check=True).stdout.strip(), fixed
    elif fault in ("gateway-backend-port", "listener-hostname"):  # it applies the object as it was
        assert "configured (`lab break" in fixed, fixed
    else:
        assert "changed" in fixed and "no changes" not in fixed, fixed  # it says what it repaired
    if fault == "lb-address":
        assert "repaired LoadBalancer address 198.18." in fixed, fixed
    if fault == "kube-sep":
        repaired = fixed.split("repaired ", 1)[1].split()
        assert {name.rstrip(",")[:13] for name in repaired} == {"nat/KUBE-SEP-", "nat/KUBE-SVC-"}, fixed


def test_a_selector_typo_is_diagnosed_by_verify_and_trace_and_the_users_own_repair_passes(verified):
    broke = lab_cli("break", "selector-typo", "-i", verified.inventory_path, check=True).stdout
    try:
        policy = broke.split("applied NetworkPolicy ", 1)[1].split(":")[0]
        namespace, name = policy.split("/")
        proc = lab_cli("verify", "-i", verified.inventory_path)
        assert proc.returncode == 1
        assert "matches no pod" in proc.stderr and "(podSelector app=mapepd)" in proc.stderr, proc.stderr
        _, report = verify_json(verified)
        wrong = [c for c in report["checks"] if not c["ok"]]
        assert wrong and all(c["family"] == "pod-to-pod" and policy in c["layer"] and "meant to be allowed"
                             in c["layer"] for c in wrong)
        assert {c["label"].split(" -> ")[0] for c in wrong} == {"mapped"}  # only the client the policy meant
        assert f"FAILED: {len(wrong)} of {len(report['checks'])} checks" in proc.stdout, proc.stdout
        pair = wrong[0]["show"].split("lab trace ")[1].split(";")[0].split()  # the trace each failure suggests
        traced = lab_cli("trace", *pair, "-i", verified.inventory_path, check=True).stdout
        assert policy in traced and "DROPPED" in traced, traced
        # the user corrects the selector in the policy, as a student would: the lab passes, the policy stays
        manifest = json.loads(lab_cli("get", "netpol", name, "-n", namespace, "-o", "json", "-i",
                                      verified.inventory_path, check=True).stdout)
        manifest["spec"]["ingress"][0]["from"][0]["podSelector"]["matchLabels"]["app"] = "mapped"
        lab_cli("apply", "-f", "-", "-i", verified.inventory_path, input=json.dumps(manifest), check=True)
        code, report = verify_json(verified)
        assert code == 0, [c["label"] + ": " + c["reason"] for c in report["checks"] if not c["ok"]]
        assert name in lab_cli("get", "netpol", "-n", namespace, "-i", verified.inventory_path, check=True).stdout
    finally:
        lab_cli("fix", "-i", verified.inventory_path, check=True)
    assert not lab_cli("get", "netpol", "-A", "-i", verified.inventory_path, check=True).stdout.strip()


WRONG_SERVICES = """
apiVersion: v1
kind: Service
metadata: {name: wrong-port}
spec: {selector: {app: nginx}, ports: [{port: 80, targetPort: 8080}]}
---
apiVersion: v1
kind: Service
metadata: {name: typo}
spec: {selector: {app: ngnix}, ports: [{port: 80}]}
"""


def test_a_wrong_target_port_is_named_as_the_cause_and_a_selector_matching_nothing_is_a_note(verified):
    apply(verified, WRONG_SERVICES)
    try:
        proc = lab_cli("verify", "-i", verified.inventory_path)
        assert proc.returncode == 1
        assert "note: Service default/typo: spec.selector app=ngnix selects no pod of namespace default" in proc.stderr
        _, report = verify_json(verified)
        wrong = [c for c in report["checks"] if not c["ok"]]
        assert wrong and all("default/wrong-port" in c["id"] or "wrong-port" in c["label"] for c in wrong), wrong
        hint = "Service default/wrong-port port 80: targetPort 8080 is a port its pods do not listen on"
        assert all(hint in c["layer"] for c in wrong), [c["layer"] for c in wrong]
        assert all("lab describe svc wrong-port" in c["show"] for c in wrong if c["family"] == "pod-to-service")
    finally:
        apply(verified, WRONG_SERVICES, verb="delete")


def test_fix_on_a_sound_lab_changes_nothing(verified):
    assert lab_cli("fix", "-i", verified.inventory_path, check=True).stdout.rstrip().endswith("no changes")


def test_ipmasq_is_reported_as_nat(verified):
    lab_cli("break", "ipmasq", "-i", verified.inventory_path, check=True)
    try:
        _, report = verify_json(verified)
        assert any(c["reason"].startswith("NATed as ") for c in report["checks"] if not c["ok"])
    finally:
        lab_cli("fix", "-i", verified.inventory_path, check=True)


def test_break_list_names_one_fault_per_line():
    lines = lab_cli("break", "--list", check=True).stdout.splitlines()
    assert [line.split()[0] for line in lines] == list(FAULTS)


def expectations(tmp_path: Path, items: list) -> str:
    path = tmp_path / "expect.yaml"
    path.write_text(json.dumps({"expectations": items}))
    return str(path)


def test_expectations_as_data(verified, tmp_path):
    right = expectations(tmp_path, [
        {"from": {"selector": "app=nginx"}, "to": {"service": "nginx"}, "port": 80, "expect": "open"},
        {"from": {"pod": "mapped"}, "to": {"service": "nginx"}, "port": 22, "expect": "closed"},
        {"from": "outside", "to": {"address": str(verified.inventory.nodes[0].address)}, "port": 22,
         "expect": "closed"},
    ])
    code, report = verify_json(verified, "--expect", right)
    assert code == 0 and len([c for c in report["checks"] if c["family"] == "expect"]) == 5
    wrong_closed = expectations(tmp_path, [
        {"from": {"pod": "mapped"}, "to": {"service": "nginx"}, "port": 80, "expect": "closed"}])
    code, report = verify_json(verified, "--expect", wrong_closed)
    assert code == 1 and failing_families(report) == {"expect"}, [
        f"{c['label']}: {c['reason']}" for c in report["checks"] if not c["ok"]]
    assert [c["reason"] for c in report["checks"] if not c["ok"]] == ["open: it answered"]
    wrong_open = expectations(tmp_path, [
        {"from": {"pod": "mapped"}, "to": {"pod": "mapped"}, "port": 81, "expect": "open"}])
    code, report = verify_json(verified, "--expect", wrong_open)
    assert code == 1 and failing_families(report) == {"expect"}, [
        f"{c['label']}: {c['reason']}" for c in report["checks"] if not c["ok"]]


def test_bad_expectations_are_one_clear_line(verified, tmp_path):
    bad = expectations(tmp_path, [{"from": {"pod": "nope"}, "to": {"service": "nginx"}, "port": 80,
                                   "expect": "open"}])
    proc = lab_cli("verify", "-i", verified.inventory_path, "--expect", bad)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert "expectations[0].from.pod: no pod default/nope" in proc.stderr


def test_a_users_own_pytest_file_runs_testinfra_inside_a_pod(verified, tmp_path):
    test = tmp_path / "test_mine.py"
    test.write_text('''
def test_inside_a_pod(lab_pod, lab_objects):
    pod = lab_pod("mapped")
    ip = lab_objects.pods["default/mapped"].ip
    assert pod.interface("eth0").exists and ip in pod.interface("eth0").addresses
    assert pod.socket("tcp://0.0.0.0:80").is_listening
    assert pod.run("hostname -I").stdout.split() == [ip]

def test_on_nodes(lab_nodes):
    assert lab_nodes["node1"].run("hostname").stdout.strip() == "node1"
    assert lab_nodes["node2"].interface("flannel.1").exists
''')
    proc = subprocess.run([sys.executable, "-m", "pytest", str(test), "-q", "-p", "no:cacheprovider",
                           "--lab-inventory", verified.inventory_path], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2 passed" in proc.stdout


def test_graph_draws_every_node_pod_and_service(verified, tmp_path):
    objects = json.loads((verified.state_dir / verified.name / "objects.json").read_text())
    for suffix in ("svg", "png", "html"):
        path = tmp_path / f"topology.{suffix}"
        lab_cli("graph", "-i", verified.inventory_path, "-o", str(path), check=True)
        assert path.stat().st_size > 1000
    raw = (tmp_path / "topology.svg").read_text()
    ET.fromstring(raw)  # valid XML
    svg = html.unescape(raw)  # dot writes "-" in text as &#45;
    assert (tmp_path / "topology.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for node in verified.inventory.nodes:
        assert node.name in svg and str(node.address) in svg
    for pod in objects["pods"].values():
        assert pod["ip"] in svg and pod["name"] in svg
    for service in objects["services"].values():
        assert service["cluster_ip"] in svg
    proc = lab_cli("graph", "-i", verified.inventory_path, "-o", str(tmp_path / "x.jpg"))
    assert proc.returncode == 2 and "name the file .svg, .png, .html or .dot" in proc.stderr

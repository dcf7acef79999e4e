"""The service network end to end on the 3-node lab with the talk's nginx Deployment + Service:
kube-proxy-style rules, balancing, NodePort, hairpin, endpoints that follow pods, DNS."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from types import SimpleNamespace

from orchestrator.agent.contract import Probe
from orchestrator.core.agent import call
from orchestrator.agent.contract import pod_netns_name
from orchestrator.layers.services.iptables import JUMPS
from .labtools import copy_inventory, lab_cli, unique_lab_name, wait_for
from .test_pod_network import apply, outside_probe, pods, probe_from

REPO = Path(__file__).resolve().parents[2]

ECHO = """
apiVersion: v1
kind: Service
metadata: {name: echo}
spec:
  type: NodePort
  selector: {app: nginx}
  ports:
    - {name: http, port: 8080, targetPort: 80, protocol: TCP, nodePort: 30080}
    - {name: udp, port: 5353, targetPort: 80, protocol: UDP}
"""

STICKY = """
apiVersion: v1
kind: Service
metadata: {name: sticky}
spec:
  selector: {app: nginx}
  sessionAffinity: ClientIP
  ports: [{port: 80}]
"""


def nat_rules(lab, node: str) -> list[str]:
    """The node's service rules, whichever backend holds them."""
    text = lab.transport.run(node, ["sh", "-c", "iptables-save -t nat; nft list table ip lab-proxy 2>/dev/null || "
                                                "true"]).stdout
    return [line for line in text.splitlines() if not line.startswith("#")]


def service(lab, name: str, namespace: str = "default") -> dict:
    return json.loads(lab_cli("get", "svc", name, "-n", namespace, "-i", lab.inventory_path, "-o", "json",
                              check=True).stdout)


def endpoints_of(lab, name: str) -> list[str]:
    ep = json.loads(lab_cli("get", "ep", name, "-i", lab.inventory_path, "-o", "json", check=True).stdout)
    return sorted(a["ip"] for subset in ep["subsets"] for a in subset["addresses"])


CLIENT = "apiVersion: v1\nkind: Pod\nmetadata: {name: client, labels: {app: client}}\n" \
         "spec:\n  containers: [{name: c, image: x}]\n"


@pytest.fixture(scope="module", params=["iptables", "nftables"])
def svc(lab3, request, tmp_path_factory):
    """lab3 with the talk's nginx, an `echo` NodePort service and a client pod, for each proxy mode."""
    inventory = copy_inventory(lab3, tmp_path_factory.mktemp(request.param),
                               cluster={"proxy_mode": request.param})
    lab = SimpleNamespace(name=lab3.name, state_dir=lab3.state_dir, inventory=lab3.inventory,
                          transport=lab3.transport, inventory_path=str(inventory), mode=request.param)
    lab_cli("deploy", "-i", lab.inventory_path, check=True)
    lab_cli("apply", "-i", lab.inventory_path, "-f", str(REPO / "examples" / "nginx.yaml"), check=True)
    apply(lab, ECHO)
    apply(lab, CLIENT)
    yield lab
    lab_cli("destroy", "-i", lab.inventory_path, check=True)


def shares(lab, target: dict, per_source: int = 100) -> Counter:
    """Which pod answered, over `per_source` requests from a pod on every node."""
    sources = {p["spec"]["nodeName"]: p for p in pods(lab, "nginx")}
    seen: Counter = Counter()
    for src in sources.values():
        for result in probe_from(lab, src, [target] * per_source):
            assert result["ok"], result
            seen[result["reply"].split()[0].removeprefix("hostname=")] += 1
    return seen


def test_cluster_ip_and_rules_look_like_the_talk(svc):
    nginx = service(svc, "nginx")
    assert nginx["spec"]["type"] == "ClusterIP" and nginx["spec"]["clusterIP"].startswith("10.96.")
    if svc.mode == "nftables":
        table = svc.transport.run("node1", ["nft", "list", "table", "ip", "lab-proxy"]).stdout
        assert f'{nginx["spec"]["clusterIP"]} . tcp . 80 : goto lb-3' in table
        assert "ip daddr . meta l4proto . th dport vmap @service-ips" in table
        assert "KUBE-" not in svc.transport.run("node1", ["iptables-save"]).stdout
        return
    rules = svc.transport.run("node1", ["iptables-save", "-t", "nat"]).stdout
    # kube-proxy's own name for default/nginx over tcp, as on the talk's slide
    assert (f'-A KUBE-SERVICES -d {nginx["spec"]["clusterIP"]}/32 -p tcp -m comment '
            '--comment "default/nginx cluster IP" -m tcp --dport 80 -j KUBE-SVC-2CMXP7HKUVJN7L6M') in rules
    balancing = [line for line in rules.splitlines() if line.startswith("-A KUBE-SVC-2CMXP7HKUVJN7L6M -m comment")]
    assert [("0.333333" in b, "0.5000" in b, "statistic" in b) for b in balancing] == \
        [(True, False, True), (False, True, True), (False, False, False)]
    described = lab_cli("describe", "svc", "nginx", "-i", svc.inventory_path, check=True).stdout
    assert f"Endpoints:         {','.join(ip + ':80' for ip in endpoints_of(svc, 'nginx'))}" in described


def test_cluster_ip_balances_over_every_endpoint_tcp_and_udp(svc):
    nginx_ip = service(svc, "nginx")["spec"]["clusterIP"]
    echo_ip = service(svc, "echo")["spec"]["clusterIP"]
    names = {p["metadata"]["name"] for p in pods(svc, "nginx")}
    for target in ({"proto": "tcp", "host": nginx_ip, "port": 80, "path": "/hostname"},
                   {"proto": "udp", "host": echo_ip, "port": 5353}):
        seen = shares(svc, target)
        assert set(seen) == names and sum(seen.values()) == 300
        assert min(seen.values()) >= 60, f"{target['proto']}: {dict(seen)}"  # each about a third, at least a fifth


def test_the_client_keeps_its_pod_ip_through_the_service(svc):
    nginx_ip = service(svc, "nginx")["spec"]["clusterIP"]
    client = pods(svc, "client")[0]
    replies = probe_from(svc, client, [{"proto": "tcp", "host": nginx_ip, "port": 80, "path": "/clientip"}] * 30)
    assert {r.get("reply") for r in replies} == {client["status"]["podIP"]}


def test_a_pod_reaches_itself_through_its_service(svc):
    src = pods(svc, "nginx")[0]
    nginx_ip = service(svc, "nginx")["spec"]["clusterIP"]
    replies = probe_from(svc, src, [{"proto": "tcp", "host": nginx_ip, "port": 80, "path": "/hostname"}] * 30)
    assert all(r["ok"] for r in replies)
    assert src["metadata"]["name"] in {r["reply"] for r in replies}  # hairpin: it answered itself too


def test_node_port_on_every_node_from_the_outside_and_from_nodes(svc):
    for node in svc.inventory.nodes:
        reply = outside_probe(svc, [{"proto": "tcp", "host": str(node.address), "port": 30080, "path": "/hostname"}])
        assert reply[0]["ok"] and reply[0]["reply"].startswith("nginx-"), reply
    result = svc.transport.run("node1", ["curl", "-s", "-m", "2", f"http://{svc.inventory.node('node3').address}:30080/hostname"])
    assert result.stdout.startswith("nginx-")


def test_client_ip_affinity_keeps_one_client_on_one_endpoint(svc):
    apply(svc, STICKY)
    sticky_ip = service(svc, "sticky")["spec"]["clusterIP"]
    target = {"proto": "tcp", "host": sticky_ip, "port": 80, "path": "/hostname"}
    for src in pods(svc, "nginx"):
        # the first connection picks the endpoint (concurrent first SYNs could each pick one, as with kube-proxy)
        first = probe_from(svc, src, [target])[0]["reply"]
        replies = probe_from(svc, src, [target] * 20)
        assert {r["reply"] for r in replies} == {first}, replies
    apply(svc, STICKY, verb="delete")


def dns(lab, src: dict, name: str) -> str:
    netns = pod_netns_name(lab.name, src["metadata"]["namespace"], src["metadata"]["name"])
    result = lab.transport.run(src["spec"]["nodeName"], ["ip", "netns", "exec", netns, "getent", "hosts", name],
                               check=False)
    return result.stdout.split()[0] if result.exit_code == 0 else "NXDOMAIN"


def test_dns_answers_service_names_from_pods(svc):
    kube_dns = service(svc, "kube-dns", "kube-system")
    assert kube_dns["spec"]["clusterIP"] == "10.96.0.10"
    assert [(p["name"], p["port"], p["protocol"]) for p in kube_dns["spec"]["ports"]] == \
        [("dns", 53, "UDP"), ("dns-tcp", 53, "TCP")]
    dns_endpoints = json.loads(lab_cli("get", "ep", "kube-dns", "-n", "kube-system", "-i", svc.inventory_path,
                                       "-o", "json", check=True).stdout)
    assert [len(subset["addresses"]) for subset in dns_endpoints["subsets"]] == [2, 2]
    nginx_ip = service(svc, "nginx")["spec"]["clusterIP"]
    src = pods(svc, "nginx")[-1]
    for name in ("nginx.default.svc.cluster.local", "nginx.default", "nginx"):
        assert dns(svc, src, name) == nginx_ip, name
    assert dns(svc, src, "kube-dns.kube-system") == "10.96.0.10"
    netns = pod_netns_name(svc.name, "default", src["metadata"]["name"])
    page = svc.transport.run(src["spec"]["nodeName"], ["ip", "netns", "exec", netns, "curl", "-s", "-m", "2",
                                                       "http://nginx/hostname"]).stdout
    assert page.startswith("nginx-")


def test_dns_follows_new_and_deleted_services(svc):
    src = pods(svc, "nginx")[0]
    new = STICKY.replace("name: sticky", "name: fresh")
    apply(svc, new)
    fresh_ip = service(svc, "fresh")["spec"]["clusterIP"]
    # dnsmasq re-reads its hosts when `lab apply` signals it: wait for that, not for a fixed time
    assert wait_for(lambda: dns(svc, src, "fresh") == fresh_ip), "a new service did not resolve"
    apply(svc, new, verb="delete")
    assert dns(svc, src, "fresh.default.svc.cluster.local") == "NXDOMAIN"


def test_endpoints_follow_scaling_and_none_means_refused_at_once(svc):
    nginx_ip = service(svc, "nginx")["spec"]["clusterIP"]
    deployment = (REPO / "examples" / "nginx.yaml").read_text().split("---")[0]
    apply(svc, deployment.replace("replicas: 3", "replicas: 1"))
    assert len(endpoints_of(svc, "nginx")) == 1
    apply(svc, deployment.replace("replicas: 3", "replicas: 0"))
    assert endpoints_of(svc, "nginx") == []
    assert "Endpoints:         <none>" in lab_cli("describe", "svc", "nginx", "-i", svc.inventory_path).stdout
    client = pods(svc, "client")[0]
    reply = probe_from(svc, client, [{"proto": "tcp", "host": nginx_ip, "port": 80}])[0]
    assert reply == {"ok": False, "error": "refused"}  # REJECTed at once: a DROP would end in "timeout"
    apply(svc, deployment)
    assert len(endpoints_of(svc, "nginx")) == 3
    assert probe_from(svc, client, [{"proto": "tcp", "host": nginx_ip, "port": 80}])[0]["ok"]


def test_service_rules_deleted_by_hand_come_back_with_the_next_sync(svc):
    nginx_ip = service(svc, "nginx")["spec"]["clusterIP"]
    client = pods(svc, "client")[0]
    node = client["spec"]["nodeName"]
    wipe = ["nft", "delete", "table", "ip", "lab-proxy"] if svc.mode == "nftables" else \
        ["iptables", "-t", "nat", "-F", "KUBE-SERVICES"]
    svc.transport.run(node, wipe)
    target = [{"proto": "tcp", "host": nginx_ip, "port": 80}]
    assert not probe_from(svc, client, target)[0]["ok"]
    lab_cli("controller", "run", "--once", "-i", svc.inventory_path, check=True)
    assert probe_from(svc, client, target)[0]["ok"]


TRUST = """
apiVersion: v1
kind: Service
metadata: {name: trust}
spec:
  selector: {app: trust}
  ports: [{port: 80}]
---
apiVersion: v1
kind: Pod
metadata: {name: trust-a, labels: {app: trust}}
spec: {nodeName: node2, containers: [{name: c, image: x}]}
---
apiVersion: v1
kind: Pod
metadata: {name: trust-b, labels: {app: trust}}
spec: {nodeName: node2, containers: [{name: c, image: x}]}
"""


def test_a_change_lands_even_where_rules_were_changed_by_hand(svc):
    """Syncs write only what changed since the last one, trusting the node; when the node's rules are not
    what was loaded (a rule deleted by hand) and the change trips over that, the node reads its rules
    back and writes what differs, instead of failing."""
    apply(svc, TRUST)
    ip = {p["metadata"]["name"]: p["status"]["podIP"] for p in pods(svc, "trust-a", "trust-b")}
    # the broken endpoint: with iptables the one that stays (its chain is only referenced by the rewrite),
    # with nftables the one that goes (deleting its missing element is what trips)
    broken = ip["trust-a"] if svc.mode == "iptables" else ip["trust-b"]
    if svc.mode == "iptables":
        rules = nat_rules(svc, "node1")
        sep = next(r.split()[1] for r in rules if r.endswith(f"--to-destination {broken}:80"))
        jump = next(r for r in rules if r.endswith(f"-j {sep}"))
        svc.transport.run("node1", ["sh", "-c", f"iptables -t nat {jump.replace('-A ', '-D ', 1)} && "
                                                f"iptables -t nat -F {sep} && iptables -t nat -X {sep}"])
    else:
        table = svc.transport.run("node1", ["nft", "list", "map", "ip", "lab-proxy", "backends"]).stdout
        key = re.search(r"([\d.]+ \. \w+ \. \d+ \. \d+) : " + re.escape(broken) + r" \. 80", table).group(1)
        svc.transport.run("node1", ["nft", "delete", "element", "ip", "lab-proxy", "backends", "{", key, "}"])
    apply(svc, TRUST.split("---")[2], verb="delete")  # trust-b goes: a partial sync on every node
    target = {"proto": "tcp", "host": service(svc, "trust")["spec"]["clusterIP"], "port": 80, "path": "/hostname"}
    replies = call(svc.transport, "node1", svc.name, Probe(targets=[target] * 5)).results
    assert all(r["ok"] and "trust-a" in r["reply"] for r in replies), replies
    apply(svc, TRUST, verb="delete")


def test_deleting_a_service_removes_its_rules_from_every_node(svc):
    apply(svc, ECHO, verb="delete")
    echo_ip = [line for line in nat_rules(svc, "node1") if "5353" in line]
    assert echo_ip == []
    for node in ("node1", "node2", "node3"):
        rules = "\n".join(nat_rules(svc, node))
        assert "default/echo" not in rules and "30080" not in rules and " . 8080" not in rules


LONELY = STICKY.replace("name: sticky", "name: lonely").replace("app: nginx", "app: nobody")


def test_fix_repairs_a_removed_endpoint_rule_and_says_what_it_repaired(svc):
    # every rule shape on the nodes: NodePort and UDP (echo), ClientIP (sticky: its clients, which traffic
    # fills in, are not something to repair), no endpoints (lonely)
    apply(svc, ECHO)
    apply(svc, LONELY)
    apply(svc, STICKY)
    sticky = {"proto": "tcp", "host": service(svc, "sticky")["spec"]["clusterIP"], "port": 80, "path": "/hostname"}
    assert probe_from(svc, pods(svc, "client")[0], [sticky])[0]["ok"]
    lab_cli("break", "kube-sep", "-i", svc.inventory_path, check=True)
    fixed = lab_cli("fix", "-i", svc.inventory_path, check=True).stdout
    repaired = fixed.split("repaired ", 1)[1].split()[0].rstrip(",") if "repaired " in fixed else fixed
    assert repaired == "nft/backends" if svc.mode == "nftables" else repaired.startswith("nat/KUBE-"), fixed
    nginx = {"proto": "tcp", "host": service(svc, "nginx")["spec"]["clusterIP"], "port": 80, "path": "/hostname"}
    assert len(shares(svc, nginx, per_source=30)) == 3  # every endpoint answers again
    assert lab_cli("fix", "-i", svc.inventory_path, check=True).stdout.rstrip().endswith("no changes")
    for text in (STICKY, LONELY, ECHO):
        apply(svc, text, verb="delete")


def test_switching_proxy_mode_moves_the_rules_and_says_so(svc, tmp_path):
    other = "nftables" if svc.mode == "iptables" else "iptables"
    switched = copy_inventory(svc, tmp_path, cluster={"proxy_mode": other})
    nginx = {"proto": "tcp", "host": service(svc, "nginx")["spec"]["clusterIP"], "port": 80, "path": "/hostname"}
    try:
        nodes = ("node1", "node2", "node3")
        held = ["sh", "-c", "iptables-save | grep -v '^#'; nft list tables; nft list table ip lab-proxy 2>/dev/null; "
                            "cat /var/lib/cluster-lab/*/proxy.json"]  # not `nft list ruleset`: its counters move
        before = {node: svc.transport.run(node, held).stdout for node in nodes}
        preview = lab_cli("deploy", "--dry-run", "-i", str(switched), check=True).stdout
        lines = {line.split(": ", 1)[0].strip(): line for line in preview.splitlines() if "service rules:" in line}
        assert set(lines) == set(nodes) and all("to write" in line for line in lines.values()), preview
        assert {node: svc.transport.run(node, held).stdout for node in nodes} == before  # a dry run changes nothing
        out = lab_cli("deploy", "-v", "-i", str(switched), check=True).stdout
        assert all(f"{node}: service rules:" in out for node in ("node1", "node2", "node3")), out
        rules = nat_rules(svc, "node1")
        assert any(line.startswith(":KUBE-SVC-") for line in rules) == (other == "iptables")
        assert any("lab-proxy" in line for line in rules) == (other == "nftables")
        assert len(shares(svc, nginx, per_source=30)) == 3
        assert lab_cli("deploy", "-i", str(switched), check=True).stdout.rstrip().endswith("no changes")
    finally:
        lab_cli("deploy", "-i", svc.inventory_path, check=True)
    assert len(shares(svc, nginx, per_source=30)) == 3


FRESH_LOAD = """
import sys
from ipaddress import IPv4Network
sys.path.insert(0, sys.argv[1])
from orchestrator.agent.cni import run
from orchestrator.agent.iptables import load_rules, restore_input, saved_chains
from orchestrator.layers.services.apply import chain_digests
from orchestrator.layers.services.iptables import JUMPS, render_iptables
from orchestrator.core.manifests import ServicePort
from orchestrator.core.objects import Endpoint, Service
port = ServicePort(None, "TCP", 80, 80)
services = {f"bulk/s{i}": Service(f"s{i}", "bulk", f"10.96.{i // 200}.{i % 200 + 2}", ports=[port]) for i in range(200)}
eps = {key: {"": [Endpoint(f"10.244.0.{n}", 80, "node1", f"p{n}") for n in (2, 3, 4)]} for key in services}
rules = render_iptables(services, eps, IPv4Network("10.244.0.0/16"))
text, written, _ = restore_input(chain_digests(rules), rules, {}, saved_chains(run("iptables-save")),
                                 [list(j) for j in JUMPS])
assert "-S" in text.splitlines()  # the whole-table read is used
load_rules(text)
print(run("iptables-save"))
"""


def test_a_big_first_load_into_a_namespace_without_rules_works():
    """With real iptables, in a fresh namespace of this test's own: the built-in chains do not exist yet."""
    netns = unique_lab_name("fresh")
    subprocess.run(["ip", "netns", "add", netns], check=True)
    try:
        out = subprocess.run(["ip", "netns", "exec", netns, sys.executable, "-c", FRESH_LOAD, str(REPO)],
                             capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        saved = out.stdout.splitlines()
        assert all(jump in saved for _, _, jump in JUMPS)  # into built-in chains the kernel did not have
        assert sum(line.startswith(":KUBE-SEP-") for line in saved) == 600
    finally:
        subprocess.run(["ip", "netns", "del", netns], check=True)


def test_hundreds_of_services_applied_at_once_answer_and_go_at_once(svc):
    """A bulk load: 300 services x 3 endpoints is 1,200 chains, which iptables-restore gets with a whole-table
    read instead of its quadratic list of names; every service answers, and deleting them all leaves none."""
    many = "---".join(f"""
apiVersion: v1
kind: Service
metadata: {{name: bulk{i}}}
spec:
  selector: {{app: nginx}}
  ports: [{{port: 80}}]
""" for i in range(300))
    apply(svc, many)
    client = pods(svc, "client")[0]
    targets = [{"proto": "tcp", "host": service(svc, name)["spec"]["clusterIP"], "port": 80, "path": "/hostname"}
               for name in ("bulk0", "bulk150", "bulk299")]
    assert all(reply["ok"] for reply in probe_from(svc, client, targets))
    if svc.mode == "iptables":
        assert sum(line.startswith(":KUBE-SEP-") for line in nat_rules(svc, "node3")) >= 900
    apply(svc, many, verb="delete")
    assert not [line for line in nat_rules(svc, "node3") if "bulk" in line]
    assert all(not reply["ok"] for reply in probe_from(svc, client, targets))


@pytest.mark.parametrize("text,message", [
    (ECHO.replace("port: 8080,", "port: 80800,"), "spec.ports[0].port: 80800 is not a whole number from 1 to 65535"),
    (ECHO.replace("targetPort: 80, protocol: TCP", "targetPort: web, protocol: TCP"),
     "spec.ports[0].targetPort: no container of the pods selected by app=nginx declares a port named 'web'"),
    (STICKY.replace("sessionAffinity: ClientIP", "clusterIP: 10.0.0.5"),
     "spec.clusterIP: 10.0.0.5 is outside the service CIDR 10.96.0.0/12"),
    (STICKY.replace("sessionAffinity: ClientIP", "clusterIP: 10.96.0.10"),
     "spec.clusterIP: 10.96.0.10 is taken by service kube-system/kube-dns"),
    (ECHO.replace("name: echo}", "name: echo2}").replace("nodePort: 30080", "nodePort: 30081") + "---\n" +
     ECHO.replace("name: echo}", "name: echo3}").replace("nodePort: 30080", "nodePort: 30081"),
     "nodePort: 30081 is already used by service default/echo2"),
    (ECHO.replace("protocol: UDP", "protocol: SCTP"), "spec.ports[1].protocol: 'SCTP' is not supported"),
])
def test_bad_services_are_one_clear_line_and_change_nothing(svc, text, message):
    objects = svc.state_dir / svc.name / "objects.json"
    before = objects.read_text()
    rules = nat_rules(svc, "node1")
    proc = lab_cli("apply", "-f", "-", "-i", svc.inventory_path, input=text)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert message in proc.stderr, proc.stderr
    assert objects.read_text() == before
    assert nat_rules(svc, "node1") == rules


def test_a_selector_matching_nothing_is_allowed_and_rejects(svc):
    apply(svc, STICKY.replace("name: sticky", "name: lonely").replace("app: nginx", "app: nobody"))
    assert endpoints_of(svc, "lonely") == []
    lonely_ip = service(svc, "lonely")["spec"]["clusterIP"]
    reply = probe_from(svc, pods(svc, "nginx")[0], [{"proto": "tcp", "host": lonely_ip, "port": 80}])[0]
    assert reply["error"] == "refused"


def test_the_controller_drops_the_pods_of_a_lost_node_and_takes_them_back(svc):
    import os
    import signal
    import subprocess
    import sys
    on_node3 = sorted(p["status"]["podIP"] for p in pods(svc, "nginx") if p["spec"]["nodeName"] == "node3")
    assert on_node3 and set(on_node3) <= set(endpoints_of(svc, "nginx"))
    # Ctrl-C as a user's terminal sends it; a suite started in the background inherits SIGINT ignored, and
    # Python then keeps ignoring it: the controller gets the default back
    controller = subprocess.Popen([sys.executable, "-m", "orchestrator.cli", "controller", "run", "--interval", "0.3",
                                   "-i", svc.inventory_path], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                  text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
                                  preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        frozen: list = []
        try:
            # its first report comes after its first sync: it is connected to every node; now freeze everything
            # node3 runs, its sessions too
            first = controller.stdout.readline()
            assert first.startswith("synced "), first
            frozen = [int(p) for p in subprocess.run(["ip", "netns", "pids", f"{svc.name}-node3"],
                                                     capture_output=True, text=True).stdout.split()]
            for pid in frozen:  # node3 stops answering: its sshd and sessions freeze
                os.kill(pid, signal.SIGSTOP)
            assert wait_for(lambda: not set(on_node3) & set(endpoints_of(svc, "nginx")), interval=0.2), \
                "the lost node's pods stayed in the endpoints"
            nginx_ip = service(svc, "nginx")["spec"]["clusterIP"]
            src = [p for p in pods(svc, "nginx") if p["spec"]["nodeName"] == "node1"][0]
            replies = probe_from(svc, src, [{"proto": "tcp", "host": nginx_ip, "port": 80, "path": "/clientip"}] * 30)
            assert all(r["ok"] for r in replies)
        finally:
            for pid in frozen:
                os.kill(pid, signal.SIGCONT)
        assert wait_for(lambda: set(on_node3) <= set(endpoints_of(svc, "nginx")), interval=0.2), \
            "the node's pods did not rejoin the endpoints"
        controller.send_signal(signal.SIGINT)
        output = first + controller.communicate(timeout=30)[0]
    finally:
        if controller.poll() is None:  # it must not go on syncing the labs of the tests after this one
            controller.kill()
            controller.wait()
    assert "node node3 is not answering" in output and "node node3 answers again" in output


UDP_FROM_PORT = """
import socket, sys
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
sock.bind(("0.0.0.0", int(sys.argv[3])))
sock.settimeout(2)
sock.connect((sys.argv[1], int(sys.argv[2])))
sock.send(b"x")
try:
    print(sock.recv(512).decode().split()[0].split("=")[1])
except OSError as exc:
    print("error:" + type(exc).__name__)
"""


def test_stale_udp_flows_move_off_a_removed_endpoint(svc):
    apply(svc, ECHO)
    echo_ip = service(svc, "echo")["spec"]["clusterIP"]
    client = pods(svc, "client")[0]
    netns = pod_netns_name(svc.name, "default", "client")

    def ask(port: int) -> str:
        return svc.transport.run(client["spec"]["nodeName"], ["ip", "netns", "exec", netns, "python3", "-c",
                                                              UDP_FROM_PORT, echo_ip, "5353", str(port)]).stdout.strip()
    # a UDP "connection" per source port, each pinned by conntrack to the endpoint that answered first
    answered = {port: ask(port) for port in range(40000, 40012)}
    deployment = (REPO / "examples" / "nginx.yaml").read_text().split("---")[0]
    apply(svc, deployment.replace("replicas: 3", "replicas: 1"))
    try:
        (survivor,) = [p["metadata"]["name"] for p in pods(svc, "nginx")]
        moved = [port for port, pod in answered.items() if pod != survivor]
        assert moved, answered
        # the same source ports again: the flows to removed endpoints were deleted, so they reach the survivor
        assert {port: ask(port) for port in moved} == {port: survivor for port in moved}
    finally:
        apply(svc, deployment)

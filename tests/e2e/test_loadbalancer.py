"""Service type LoadBalancer in L2 mode end to end, on both proxy backends: the default pool deploy installs,
an address per Service, one node answering ARP for it (seen in the router's neighbour table), the outside host
served through it (Cluster: every endpoint; Local: the announcing node's pods, which see the outside host's
own address), Local NodePorts, failover when the announcing node is lost, bad input refused, and the address
gone from every node once the Service is."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from types import SimpleNamespace

import pytest

from orchestrator.agent.contract import Probe
from orchestrator.core.agent import call_local
from .labtools import copy_inventory, lab_cli, wait_for
from .test_pod_network import OUTSIDE, apply, pods
from .test_services import service

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

LOCAL = """
apiVersion: v1
kind: Service
metadata: {name: web-local}
spec:
  type: LoadBalancer
  externalTrafficPolicy: Local
  selector: {app: nginx}
  ports: [{port: 8080, targetPort: 80}]
"""


@pytest.fixture(scope="module", params=["iptables", "nftables"])
def lb(lab3, request, tmp_path_factory):
    """lab3 with the talk's nginx behind a LoadBalancer Service of each traffic policy, for each proxy mode."""
    inventory = copy_inventory(lab3, tmp_path_factory.mktemp(f"lb-{request.param}"),
                               cluster={"proxy_mode": request.param})
    lab = SimpleNamespace(name=lab3.name, state_dir=lab3.state_dir, inventory=lab3.inventory,
                          transport=lab3.transport, inventory_path=str(inventory), mode=request.param)
    lab_cli("deploy", "-i", lab.inventory_path, check=True)
    lab_cli("apply", "-i", lab.inventory_path, "-f", os.path.join(REPO, "examples", "nginx.yaml"), check=True)
    expose = lab_cli("expose", "deploy", "nginx", "--port", "80", "--type=LoadBalancer", "--name", "web-lb", "-i",
                     lab.inventory_path, check=True)
    assert expose.stdout.strip() == "service/web-lb exposed"
    apply(lab, LOCAL)
    yield lab
    lab_cli("destroy", "-i", lab.inventory_path, check=True)


def outside(lab, targets: list[dict], timeout: float = 2.0) -> list[dict]:
    return call_local(Probe(targets=targets, timeout=timeout), ("ip", "netns", "exec", f"{lab.name}-outside")).results


def address_of(lab, name: str) -> str:
    return service(lab, name)["status"]["loadBalancer"]["ingress"][0]["ip"]


def holders(lab, address: str) -> list[str]:
    """The nodes that hold `address` (answer ARP for it)."""
    return [n.name for n in lab.inventory.nodes
            if f" {address}/32 " in lab.transport.run(n.name, ["ip", "-o", "-4", "addr", "show"]).stdout]


def announcer(lab, name: str) -> str:
    described = lab_cli("describe", "svc", name, "-i", lab.inventory_path, check=True).stdout
    return described.split('announcing from node "', 1)[1].split('"', 1)[0]


def router_mac_of(lab, address: str) -> str:
    line = subprocess.run(["ip", "-n", f"{lab.name}-router", "neigh", "show", address], capture_output=True,
                          text=True).stdout.split()
    return line[line.index("lladdr") + 1] if "lladdr" in line else ""


def node_mac(lab, node: str) -> str:
    return lab.transport.run(node, ["cat", "/sys/class/net/eth0/address"]).stdout.strip()


def test_deploy_installs_a_pool_and_each_service_gets_an_address_one_node_announces(lb):
    pools = json.loads(lab_cli("get", "ipaddresspools", "-n", "metallb-system", "-i", lb.inventory_path, "-o", "json",
                               check=True).stdout)["items"]
    assert [p["metadata"]["name"] for p in pools] == ["default"]
    first, _, last = pools[0]["spec"]["addresses"][0].partition("-")
    underlay = str(lb.inventory.nodes[0].address).rsplit(".", 1)[0]
    assert (first, last) == (f"{underlay}.240", f"{underlay}.250")
    table = lab_cli("get", "svc", "-i", lb.inventory_path, check=True).stdout
    for name in ("web-lb", "web-local"):
        address = address_of(lb, name)
        assert address.startswith(f"{underlay}.2") and f" {address} " in table
        assert holders(lb, address) == [announcer(lb, name)]
    assert service(lb, "web-local")["spec"]["healthCheckNodePort"] >= 30000


def test_the_outside_host_reaches_every_endpoint_and_the_router_learns_the_announcer(lb):
    address = address_of(lb, "web-lb")
    replies = outside(lb, [{"proto": "tcp", "host": address, "port": 80, "path": "/hostname"}] * 40)
    assert all(r["ok"] for r in replies), replies[:3]
    assert {r["reply"] for r in replies} == {p["metadata"]["name"] for p in pods(lb, "nginx")}
    assert router_mac_of(lb, address) == node_mac(lb, announcer(lb, "web-lb"))


def test_local_sends_outside_traffic_only_to_the_announcing_nodes_pod_which_sees_the_client(lb):
    address, node = address_of(lb, "web-local"), announcer(lb, "web-local")
    local_pod = next(p["metadata"]["name"] for p in pods(lb, "nginx") if p["spec"]["nodeName"] == node)
    target = {"proto": "tcp", "host": address, "port": 8080}
    assert {r.get("reply") for r in outside(lb, [dict(target, path="/hostname")] * 20)} == {local_pod}
    assert {r.get("reply") for r in outside(lb, [dict(target, path="/clientip")] * 10)} == {OUTSIDE}


def test_local_node_ports_answer_with_the_nodes_own_pod(lb):
    port = service(lb, "web-local")["spec"]["ports"][0]["nodePort"]
    by_node = {p["spec"]["nodeName"]: p["metadata"]["name"] for p in pods(lb, "nginx")}
    for node in lb.inventory.nodes:
        target = {"proto": "tcp", "host": str(node.address), "port": port}
        assert {r.get("reply") for r in outside(lb, [dict(target, path="/hostname")] * 6)} == {by_node[node.name]}
        assert {r.get("reply") for r in outside(lb, [dict(target, path="/clientip")] * 3)} == {OUTSIDE}


def test_each_node_answers_the_local_health_check_with_its_own_endpoints(lb):
    """kube-proxy's healthCheckNodePort: 200 and localEndpoints 1 on a node with a pod of the Service, 503 and 0 on
    a node without one (a Service selecting one pod)."""
    solo = pods(lb, "nginx")[0]
    apply(lb, LOCAL.replace("web-local", "solo").replace("app: nginx", f"app: nginx, pod: {solo['metadata']['name']}")
          .replace("8080", "8081"))
    lab_cli("label", "pod", solo["metadata"]["name"], f"pod={solo['metadata']['name']}", "-i", lb.inventory_path,
            check=True)
    port = service(lb, "solo")["spec"]["healthCheckNodePort"]
    try:
        for node in lb.inventory.nodes:
            status = subprocess.run(["ip", "netns", "exec", f"{lb.name}-outside", "curl", "-s", "-m", "2", "-w",
                                     " %{http_code}", f"http://{node.address}:{port}/healthz"],
                                    capture_output=True, text=True).stdout
            body, _, code = status.rpartition(" ")
            mine = int(node.name == solo["spec"]["nodeName"])
            assert (code, json.loads(body)) == ("200" if mine else "503", {
                "service": {"namespace": "default", "name": "solo"}, "localEndpoints": mine,
                "serviceProxyHealthy": True}), node.name
    finally:
        lab_cli("delete", "svc", "solo", "-i", lb.inventory_path, check=True)
        lab_cli("label", "pod", solo["metadata"]["name"], "pod-", "-i", lb.inventory_path, check=True)
    assert service(lb, "web-local")["spec"]["healthCheckNodePort"] != port  # each Service its own port


def test_only_the_services_ports_answer_on_the_address(lb):
    address = address_of(lb, "web-lb")
    [ssh, other] = outside(lb, [{"proto": "tcp", "host": address, "port": 22, "path": "/"},
                               {"proto": "tcp", "host": address, "port": 8080, "path": "/"}])
    assert (ssh["ok"], ssh.get("error"), other["ok"], other.get("error")) == (False, "refused", False, "refused")


def assert_failover(lab, name: str, port: int, seconds: float = 60) -> None:
    """With the controller running, the node announcing Service `name` is cut off (`lab link svc/NAME down`): the
    address moves (gratuitous ARP: the router's entry turns to the new node) and the outside host is served
    again; once the node is back, exactly one node holds the address. Also for the VM tier."""
    address = address_of(lab, name)
    lost = announcer(lab, name)
    controller = subprocess.Popen([sys.executable, "-m", "orchestrator.cli", "controller", "run", "-i",
                                   lab.inventory_path], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    target = {"proto": "tcp", "host": address, "port": port, "path": "/hostname"}
    try:
        assert lab_cli("link", "svc/" + name, "down", "-i", lab.inventory_path, check=True).stdout.startswith(
            f"{lost}: link down")
        try:
            assert wait_for(lambda: outside(lab, [target], timeout=1)[0]["ok"], seconds=seconds, interval=0.2)
            taker = announcer(lab, name)
            assert taker != lost and router_mac_of(lab, address) == node_mac(lab, taker)
            served = {r.get("reply") for r in outside(lab, [target] * 20)}
            assert served and None not in served
        finally:
            lab_cli("link", "all", "up", "-i", lab.inventory_path, check=True)
        assert wait_for(lambda: holders(lab, address) == [announcer(lab, name)], seconds=seconds, interval=0.5)
        assert outside(lab, [target])[0]["ok"]
    finally:
        controller.send_signal(signal.SIGINT)
        log, _ = controller.communicate(timeout=30)
    assert f"node {lost} is not answering" in log and f"{address} (default/{name}): announced from " in log


def test_a_lost_announcing_node_hands_its_address_to_another(lb):
    assert_failover(lb, "web-lb", 80)


def test_bad_input_is_one_line_and_changes_nothing(lb):
    before = lab_cli("get", "svc,ipaddresspools", "-A", "-i", lb.inventory_path, "-o", "json", check=True).stdout
    underlay = str(lb.inventory.nodes[0].address).rsplit(".", 1)[0]
    overlapping = ("apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: more, namespace: "
                   f"metallb-system}}\nspec:\n  addresses: [{underlay}.248/29]\n")
    outside_pool = ("apiVersion: v1\nkind: Service\nmetadata: {name: fixed}\nspec:\n  type: LoadBalancer\n"
                    "  loadBalancerIP: 192.0.2.7\n  selector: {app: nginx}\n  ports: [{port: 80}]\n")
    for text, message in ((overlapping, f"<stdin>: spec.addresses: {underlay}.248/29 overlaps {underlay}.240-"
                                        f"{underlay}.250 of IPAddressPool metallb-system/default; give each pool its "
                                        "own addresses"),
                          (outside_pool, "<stdin>: spec.loadBalancerIP: 192.0.2.7 is in no IPAddressPool")):
        result = lab_cli("apply", "-i", lb.inventory_path, "-f", "-", input=text)
        assert result.returncode != 0 and message in result.stderr and "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert lab_cli("get", "svc,ipaddresspools", "-A", "-i", lb.inventory_path, "-o", "json",
                   check=True).stdout == before


def test_a_service_given_up_leaves_no_address_on_any_node(lb):
    address = address_of(lb, "web-local")
    lab_cli("delete", "svc", "web-local", "-i", lb.inventory_path, check=True)
    try:
        assert holders(lb, address) == []
        assert outside(lb, [{"proto": "tcp", "host": address, "port": 8080, "path": "/"}], timeout=1)[0]["ok"] is False
    finally:
        apply(lb, LOCAL)
    assert address_of(lb, "web-local") == address  # the lowest free address again

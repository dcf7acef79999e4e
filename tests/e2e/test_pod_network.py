"""The pod network end to end on the 3-node emulated lab: real CNI plugins, VXLAN and host-gw, NAT only
to the outside. Tests run in file order: deploy, traffic, changes to the lab, then destroy."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import zipfile

import pytest

from orchestrator.agent.contract import PROTOCOL, FlushCaches, Probe, pod_record_path
from orchestrator.agent.contract import pod_netns_name
from orchestrator.core.agent import agent_zipapp, call, call_local
from orchestrator.core.transport import NodeError
from orchestrator.layers.overlay.plan import vtep_mac
from orchestrator.verify import probes
from .labtools import copy_inventory, lab_cli, node_snapshot, wait_for

AGENT_ON_NODE = "/var/lib/cluster-lab/{lab}/agent.pyz"
OUTSIDE = "203.0.113.10"

WEB = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 6
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: nginx}]
"""

MAPPED = """
apiVersion: v1
kind: Pod
metadata: {name: mapped, labels: {app: mapped}}
spec:
  nodeName: node2
  containers:
    - name: web
      image: nginx
      ports: [{containerPort: 80, hostPort: 8080}]
"""


@pytest.fixture(scope="module")
def net(lab3, tmp_path_factory):
    """lab3 with its pod network deployed and six `web` pods; the nodes' state before, for destroy."""
    before = {n.name: node_snapshot(lab3.transport, n.name) for n in lab3.inventory.nodes}
    lab3.before = before
    lab3.workdir = tmp_path_factory.mktemp("podnet")
    proc = lab_cli("deploy", "-i", lab3.inventory_path, check=True)
    assert "changed" in proc.stdout
    apply(lab3, WEB)
    yield lab3


def apply(lab, text: str, verb: str = "apply") -> subprocess.CompletedProcess:
    return lab_cli(verb, "-i", lab.inventory_path, "-f", "-", input=text, check=True)


def pods(lab, *selector: str) -> list[dict]:
    items = json.loads(lab_cli("get", "pods", "-i", lab.inventory_path, "-A", "-o", "json", check=True).stdout)["items"]
    return [p for p in items if not selector or p["metadata"]["name"] in selector
            or p["metadata"]["labels"].get("app") in selector]


def probe_from(lab, pod: dict, targets: list[dict]) -> list[dict]:
    """Run the agent's probe inside `pod` (one SSH command, all targets at once)."""
    netns = pod_netns_name(lab.name, pod["metadata"]["namespace"], pod["metadata"]["name"])
    return call(lab.transport, pod["spec"]["nodeName"], lab.name, Probe(targets=targets),
                ("ip", "netns", "exec", netns)).results


def running_on(lab, node: str, pid: int) -> bool:
    """Whether process `pid` runs on `node` (a zombie, ended but not yet reaped by its parent, does not)."""
    stat = lab.transport.run(node, ["cat", f"/proc/{pid}/stat"], check=False).stdout
    return bool(stat) and stat.rsplit(")", 1)[1].split()[0] != "Z"


def all_pairs_failures(lab, backend: str) -> list[str]:
    """Every pod reaches every pod over HTTP and UDP, and is seen with its own pod IP (no NAT)."""
    everyone = pods(lab, "web")
    assert len(everyone) == 6
    failures = []
    for src in everyone:
        src_ip = src["status"]["podIP"]
        targets = [t for dst in everyone for t in (
            {"proto": "tcp", "host": dst["status"]["podIP"], "port": 80, "path": "/clientip"},
            {"proto": "udp", "host": dst["status"]["podIP"], "port": 80})]
        results = probe_from(lab, src, targets)
        for dst, tcp, udp in zip(everyone, results[0::2], results[1::2], strict=True):
            pair = f"[{backend}] {src['metadata']['name']} ({src['spec']['nodeName']}) -> " \
                   f"{dst['metadata']['name']} ({dst['spec']['nodeName']})"
            if not tcp["ok"]:
                failures.append(f"{pair} HTTP: {tcp.get('error')}")
            elif tcp["reply"] != src_ip:
                failures.append(f"{pair} HTTP: seen as {tcp['reply']}, not {src_ip} (NAT)")
            if not udp["ok"]:
                failures.append(f"{pair} UDP: {udp.get('error')}")
            elif f"hostname={dst['metadata']['name']} clientip={src_ip} " not in udp["reply"] + " ":
                failures.append(f"{pair} UDP: {udp['reply']}")
    return failures


# ---- deploy ---------------------------------------------------------------------------------------------


def test_pods_get_an_ip_of_their_node_subnet_and_are_spread(net):
    nodes = {n["metadata"]["name"]: n["spec"]["podCIDR"] for n in json.loads(
        lab_cli("get", "nodes", "-i", net.inventory_path, "-o", "json", check=True).stdout)["items"]}
    assert len(set(nodes.values())) == 3 and all(cidr.startswith("10.244.") for cidr in nodes.values())
    web = pods(net, "web")
    assert sorted(p["spec"]["nodeName"] for p in web) == ["node1", "node1", "node2", "node2", "node3", "node3"]
    import ipaddress
    for pod in web:
        assert ipaddress.ip_address(pod["status"]["podIP"]) in ipaddress.ip_network(nodes[pod["spec"]["nodeName"]])
    table = lab_cli("get", "pods", "-i", net.inventory_path, "-o", "wide", check=True).stdout.splitlines()
    assert table[0].split()[:7] == ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE"]
    assert all(" 1/1 " in line and " Running " in line for line in table[1:])


def test_every_pod_reaches_every_pod_without_nat_over_vxlan(net):
    assert all_pairs_failures(net, "vxlan") == []


def test_cni_config_is_the_real_one_with_ipmasq_off(net):
    conf = json.loads(net.transport.run("node1", ["cat", f"/etc/cni/net.d/10-{net.name}.conflist"]).stdout)
    bridge, portmap = conf["plugins"]
    assert (bridge["type"], bridge["bridge"], bridge["isGateway"], bridge["ipMasq"], bridge["hairpinMode"]) == \
        ("bridge", "cni0", True, False, True)
    assert bridge["ipam"]["type"] == "host-local" and bridge["ipam"]["routes"] == [{"dst": "0.0.0.0/0"}]
    assert portmap == {"type": "portmap", "capabilities": {"portMappings": True}, "snat": True}
    check = lab_cli("cni", "check", "-i", net.inventory_path)
    assert check.returncode == 0 and check.stdout.count(" ok") == 6, check.stdout + check.stderr


def test_vxlan_device_is_flannel_style(net):
    link = json.loads(net.transport.run("node1", ["ip", "-j", "-d", "link", "show", "flannel.1"]).stdout)[0]
    vx = link["linkinfo"]["info_data"]
    assert (vx["id"], vx["port"], vx["learning"], link["mtu"]) == (1, 8472, False, 1450)
    assert link["address"] == vtep_mac(net.name, "node1")
    fdb = net.transport.run("node1", ["bridge", "fdb", "show", "dev", "flannel.1"]).stdout
    assert f"{vtep_mac(net.name, 'node2')} dst 198.18." in fdb


def test_large_packets_cross_nodes_without_fragmentation(net):
    a, b = [p for p in pods(net, "web") if p["spec"]["nodeName"] == "node1"][0], \
        [p for p in pods(net, "web") if p["spec"]["nodeName"] == "node3"][0]
    netns = pod_netns_name(net.name, "default", a["metadata"]["name"])
    fits = net.transport.run("node1", ["ip", "netns", "exec", netns, "ping", "-c1", "-W2", "-M", "do",
                                       "-s", str(1450 - 28), b["status"]["podIP"]], check=False)
    assert fits.exit_code == 0, fits.stdout + fits.stderr
    too_big = net.transport.run("node1", ["ip", "netns", "exec", netns, "ping", "-c1", "-W1", "-M", "do",
                                          "-s", str(1450 - 27), b["status"]["podIP"]], check=False)
    assert too_big.exit_code != 0  # the MTU is exactly the pod MTU: 1450 on a 1500 underlay


def test_redeploy_reports_no_changes(net):
    proc = lab_cli("deploy", "-i", net.inventory_path, check=True)
    assert proc.stdout.strip().endswith("no changes")
    assert [line.split()[5] for line in proc.stdout.splitlines() if line.startswith("│ node")] == ["ok"] * 3


def test_dry_run_shows_changes_and_changes_nothing(net):
    net.transport.run("node2", ["ip", "route", "del", "10.244.0.0/24"], check=False)
    proc = lab_cli("deploy", "-i", net.inventory_path, "--dry-run", check=True)
    assert "node2: route 10.244.0.0/24 via 10.244.0.0 dev flannel.1 onlink" in proc.stdout
    assert "10.244.0.0/24" not in net.transport.run("node2", ["ip", "route"]).stdout
    lab_cli("deploy", "-i", net.inventory_path, check=True)
    assert "10.244.0.0/24 via 10.244.0.0 dev flannel.1 onlink" in net.transport.run("node2", ["ip", "route"]).stdout


# ---- NAT only to the outside ----------------------------------------------------------------------------


@pytest.fixture
def outside_server(net):
    """The lab's outside host (its own namespace, 203.0.113.10) serving HTTP on port 80, as `lab verify` runs it."""
    with probes.outside_server(net.inventory):
        yield


def outside_probe(net, targets: list[dict]) -> list[dict]:
    return call_local(Probe(targets=targets), ("ip", "netns", "exec", f"{net.name}-outside")).results


def test_traffic_to_the_outside_is_masqueraded_to_the_node_address(net, outside_server):
    for pod in pods(net, "web")[:3]:
        node = net.inventory.node(pod["spec"]["nodeName"])
        seen = probe_from(net, pod, [{"proto": "tcp", "host": OUTSIDE, "port": 80, "path": "/clientip"}])[0]
        assert seen == {"ok": True, "reply": str(node.address), "status": "200"}


def test_the_outside_reaches_a_pod_through_its_host_port(net):
    apply(net, MAPPED)
    node2 = str(net.inventory.node("node2").address)
    replies = outside_probe(net, [{"proto": "tcp", "host": node2, "port": 8080, "path": "/hostname"},
                                  {"proto": "tcp", "host": node2, "port": 8080, "path": "/clientip"}])
    assert [r.get("reply") for r in replies] == ["mapped", OUTSIDE]
    apply(net, MAPPED, verb="delete")
    assert outside_probe(net, [{"proto": "tcp", "host": node2, "port": 8080}])[0]["error"] == "refused"


# ---- the other backend ----------------------------------------------------------------------------------


def test_host_gw_backend_also_connects_every_pod_without_nat(net):
    hostgw = copy_inventory(net, net.workdir, cluster={"overlay": {"backend": "host-gw"}})
    proc = lab_cli("deploy", "-i", str(hostgw), "-v", check=True)
    assert "remove VXLAN device flannel.1" in proc.stdout
    routes = net.transport.run("node1", ["ip", "route"]).stdout
    assert "flannel" not in routes and "10.244." in routes and " via 198.18." in routes
    try:
        assert all_pairs_failures(net, "host-gw") == []
    finally:
        lab_cli("deploy", "-i", net.inventory_path, check=True)
    assert all_pairs_failures(net, "vxlan again") == []


# ---- pods over time ---------------------------------------------------------------------------------------


def test_a_stopped_pod_server_is_restarted_by_deploy(net):
    victim = pods(net, "web")[0]
    node = victim["spec"]["nodeName"]
    key = f"default_{victim['metadata']['name']}"
    pid = str(json.loads(net.transport.run(node, ["cat", pod_record_path(net.name, key)]).stdout)["pid"])
    net.transport.run(node, ["kill", pid])
    assert wait_for(lambda: net.transport.run(node, ["kill", "-0", pid], check=False).exit_code != 0)
    table = lab_cli("get", "pods", "-i", net.inventory_path, check=True).stdout
    assert [line.split()[1:3] for line in table.splitlines() if line.startswith(victim["metadata"]["name"])] == \
        [["0/1", "Error"]]
    proc = lab_cli("deploy", "-i", net.inventory_path, "-v", check=True)
    assert f"restart the servers of 1 pod(s): default/{victim['metadata']['name']}" in proc.stdout
    assert all_pairs_failures(net, "after restart") == []


def agent_of_protocol(protocol: int) -> bytes:
    """The lab's agent.pyz with another protocol number: what a node holds after the lab's code moved on."""
    old, out = zipfile.ZipFile(io.BytesIO(agent_zipapp())), io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for info in old.infolist():
            text = old.read(info).decode()
            if info.filename.endswith("/contract.py"):
                assert f"\nPROTOCOL = {PROTOCOL}\n" in text
                text = text.replace(f"\nPROTOCOL = {PROTOCOL}\n", f"\nPROTOCOL = {protocol}\n")
            archive.writestr(info, text)
    return out.getvalue()


def test_an_agent_of_another_protocol_is_refused_then_replaced_by_deploy(net):
    path = AGENT_ON_NODE.format(lab=net.name)
    net.transport.put("node1", path, agent_of_protocol(PROTOCOL - 1), "0755")
    with pytest.raises(NodeError) as refused:  # never misread: the agent refuses the request unread
        call(net.transport, "node1", net.name, FlushCaches())
    assert str(refused.value) == (f"node1: its node agent does not speak protocol {PROTOCOL}: "
                                  "`lab deploy` installs the lab's agent")
    proc = lab_cli("deploy", "-i", net.inventory_path, "-v", check=True)
    assert f"install /var/lib/cluster-lab/{net.name}/agent.pyz" in proc.stdout
    assert call(net.transport, "node1", net.name, FlushCaches()).failed is False
    assert all_pairs_failures(net, "after the agent was replaced") == []
    assert "no changes" in lab_cli("deploy", "-i", net.inventory_path, check=True).stdout


def test_pods_whose_namespaces_are_gone_are_restored_by_deploy(net):
    victim = pods(net, "web")[0]
    node, key = victim["spec"]["nodeName"], f"default/{victim['metadata']['name']}"
    net.transport.run(node, ["ip", "netns", "del", pod_netns_name(net.name, "default", victim["metadata"]["name"])])
    proc = lab_cli("deploy", "-i", net.inventory_path, "-v", check=True)
    assert f"{node}: restore 1 pod(s) whose network namespace is gone: {key}" in proc.stdout
    assert pods(net, victim["metadata"]["name"])[0]["status"]["podIP"] == victim["status"]["podIP"]  # its lease
    assert all_pairs_failures(net, "after restore") == []
    assert lab_cli("deploy", "-i", net.inventory_path, check=True).stdout.strip().endswith("no changes")



def test_a_pod_its_node_lost_is_made_again_by_the_next_apply(net):
    """Level-triggered: `lab apply` of the same manifest asks the nodes what they hold. A pod whose namespace went
    (deleted by hand, as a power cut mid-creation leaves it) comes back with its address, and the Deployment
    reads configured, not unchanged; the next apply is unchanged again."""
    victim = pods(net, "web")[0]
    node, name = victim["spec"]["nodeName"], victim["metadata"]["name"]
    net.transport.run(node, ["ip", "netns", "del", pod_netns_name(net.name, "default", name)])
    lost = pods(net, name)[0]["status"]  # what the node reports, not what the lab once recorded
    assert lost["phase"] == "Unknown" and f"{node} does not hold it" in lost["message"]
    assert apply(net, WEB).stdout.splitlines() == ["deployment.apps/web configured"]
    assert pods(net, name)[0]["status"]["phase"] == "Running"
    assert pods(net, name)[0]["status"]["podIP"] == victim["status"]["podIP"]
    assert all_pairs_failures(net, "after apply") == []
    assert apply(net, WEB).stdout.splitlines() == ["deployment.apps/web unchanged"]


def test_a_pod_record_left_empty_by_a_power_cut_is_restored_by_deploy(net):
    """A power cut can leave a file the agent was writing empty (ext4 without fsync) and takes the namespaces
    with it: the node reports such a pod gone, and `lab deploy` makes it again; nothing fails on the file."""
    victim = pods(net, "web")[0]
    node, name = victim["spec"]["nodeName"], victim["metadata"]["name"]
    record = pod_record_path(net.name, f"default_{name}")
    pid = str(json.loads(net.transport.run(node, ["cat", record]).stdout)["pid"])
    net.transport.run(node, ["kill", "-9", pid])  # the power cut ends the pod's server, and its namespace goes
    assert wait_for(lambda: net.transport.run(node, ["kill", "-0", pid], check=False).exit_code != 0)
    net.transport.run(node, ["ip", "netns", "del", pod_netns_name(net.name, "default", name)])
    net.transport.run(node, ["truncate", "-s", "0", record])
    proc = lab_cli("deploy", "-i", net.inventory_path, "-v", check=True)
    assert f"{node}: restore 1 pod(s) whose network namespace is gone: default/{name}" in proc.stdout
    assert pods(net, name)[0]["status"]["podIP"] == victim["status"]["podIP"]
    assert all_pairs_failures(net, "after a lost record") == []
    assert lab_cli("deploy", "-i", net.inventory_path, check=True).stdout.strip().endswith("no changes")


def test_a_pod_record_emptied_while_its_server_runs_leaves_no_second_server(net):
    """A record found empty names no server: the pod made again must end the one still running in its namespace
    (which would keep the old namespace and its veth alive)."""
    victim = pods(net, "web")[1]
    node, name = victim["spec"]["nodeName"], victim["metadata"]["name"]
    record = pod_record_path(net.name, f"default_{name}")
    old_pid = json.loads(net.transport.run(node, ["cat", record]).stdout)["pid"]
    net.transport.run(node, ["truncate", "-s", "0", record])
    proc = lab_cli("deploy", "-i", net.inventory_path, "-v", check=True)
    assert f"{node}: restore 1 pod(s) whose network namespace is gone: default/{name}" in proc.stdout
    assert not running_on(net, node, old_pid)
    assert json.loads(net.transport.run(node, ["cat", record]).stdout)["pid"] != old_pid
    assert pods(net, name)[0]["status"]["podIP"] == victim["status"]["podIP"]
    assert all_pairs_failures(net, "after an emptied record") == []


def test_what_a_cut_left_of_pods_the_lab_does_not_have_goes_with_the_next_apply(net):
    """A power cut while a pod is made can leave parts of it that the lab never recorded: a namespace with a
    process in it, a lease on the pod network, a record. The next `lab apply` removes them and keeps the lab's
    own pods; a lesson's namespace on the node stays."""
    node = "node1"
    ghost, lesson = pod_netns_name(net.name, "default", "web-ghost"), f"{net.name}-l07-c1"
    lease = f"/var/lib/cni/networks/{net.name}/10.244.0.250"
    record = pod_record_path(net.name, "default_web-ghost")
    net.transport.run(node, ["sh", "-c", f"ip netns add {ghost} && ip netns add {lesson} && "
                             f"(ip netns exec {ghost} setsid sleep 600 </dev/null >/dev/null 2>&1 &)"])
    net.transport.run(node, ["tee", lease], stdin="ghost-id\r\neth0")
    net.transport.run(node, ["tee", record], stdin=json.dumps({"key": "default_web-ghost", "netns": ghost,
                                                                  "id": "ghost-id"}))
    sleeper = net.transport.run(node, ["ip", "netns", "pids", ghost]).stdout.split()
    assert sleeper and net.transport.run(node, ["cat", lease]).stdout.startswith("ghost-id")
    proc = apply(net, WEB)
    assert proc.stdout.splitlines() == ["deployment.apps/web unchanged"]
    assert f"{node}: removed what the lab no longer has: " in proc.stderr
    netns = net.transport.run(node, ["ip", "netns", "list"]).stdout
    assert ghost not in netns and lesson in netns
    assert not running_on(net, node, int(sleeper[0]))
    assert net.transport.run(node, ["ls", lease, record], check=False).exit_code != 0
    assert len(pods(net, "web")) == 6 and all_pairs_failures(net, "after the leftovers went") == []
    net.transport.run(node, ["ip", "netns", "del", lesson])
    assert apply(net, WEB).stderr.count("removed what the lab no longer has") == 0


TWINS_NAMESPACES = """
apiVersion: v1
kind: Namespace
metadata: {name: a}
---
apiVersion: v1
kind: Namespace
metadata: {name: a-b}
"""
TWINS = TWINS_NAMESPACES + """---
apiVersion: v1
kind: Pod
metadata: {name: b-c, namespace: a, labels: {app: twins}}
spec: {nodeName: node1, containers: [{name: c, image: nginx}]}
---
apiVersion: v1
kind: Pod
metadata: {name: c, namespace: a-b, labels: {app: twins}}
spec: {nodeName: node1, containers: [{name: c, image: nginx}]}
"""


def test_pods_whose_names_join_alike_each_keep_their_own_network(net):
    apply(net, TWINS)
    twins = pods(net, "twins")
    assert len({p["status"]["podIP"] for p in twins}) == 2
    results = probe_from(net, pods(net, "web")[0], [{"proto": "tcp", "host": p["status"]["podIP"], "port": 80,
                                                     "path": "/hostname"} for p in twins])
    assert [r.get("reply") for r in results] == [p["metadata"]["name"] for p in twins]
    apply(net, TWINS_NAMESPACES, verb="delete")  # a namespace goes with everything in it
    assert pods(net, "twins") == []
    assert pods(net, "twins") == []


def test_a_node_whose_sshd_died_is_made_again_by_up_then_deploy_restores_it(net):
    record = json.loads((net.state_dir / net.name / "lab.json").read_text())
    os.kill(record["nodes"]["node3"]["pid"], signal.SIGKILL)
    down = lab_cli("exec", "--inventory", net.inventory_path, "node3", "--", "true")
    assert down.returncode != 0 and "Traceback" not in down.stderr
    up = lab_cli("up", "--name", net.name, "--nodes", "3", check=True)
    assert "node node3 is not running: making it again" in up.stderr and "Traceback" not in up.stderr
    # made again blank, it gets the lab back from lab up itself: its network and its pods
    assert "node3: made again without the lab: deploying it there" in up.stderr
    assert all_pairs_failures(net, "node3 made again") == []
    assert lab_cli("deploy", "-i", net.inventory_path, check=True).stdout.strip().endswith("no changes")
    verify = lab_cli("verify", "-i", net.inventory_path, timeout=300)
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_a_deployment_converges_when_scaled(net):
    apply(net, WEB.replace("replicas: 6", "replicas: 2"))
    assert len(pods(net, "web")) == 2
    apply(net, WEB.replace("replicas: 6", "replicas: 0"))
    assert pods(net, "web") == []
    leftover = [ns for n in ("node1", "node2", "node3") for ns in
                net.transport.run(n, ["ip", "netns", "list"]).stdout.split() if "web-" in ns]
    assert leftover == []
    out = apply(net, WEB).stdout
    assert "deployment.apps/web configured" in out and len(pods(net, "web")) == 6
    assert "deployment.apps/web unchanged" in apply(net, WEB).stdout


def test_adding_and_removing_a_node_updates_every_peer(net):
    fourth = WEB.replace("name: web}", "name: fourth}").replace("app: web", "app: fourth") \
        .replace("replicas: 6", "replicas: 1").replace("containers:", "nodeName: node4\n      containers:")
    lab_cli("up", "--name", net.name, "--nodes", "4", check=True)
    try:
        lab_cli("deploy", "-i", net.inventory_path, check=True)
        apply(net, fourth)
        pod4 = pods(net, "fourth")[0]
        assert pod4["spec"]["nodeName"] == "node4"
        for src in pods(net, "web")[::2]:
            reply = probe_from(net, src, [{"proto": "tcp", "host": pod4["status"]["podIP"], "port": 80,
                                           "path": "/clientip"}])[0]
            assert reply.get("reply") == src["status"]["podIP"], reply
        subnet4 = json.loads(lab_cli("get", "nodes", "-i", net.inventory_path, "-o", "json").stdout)["items"][3]
        subnet4 = subnet4["spec"]["podCIDR"]
        address4 = str(net.inventory.node("node3").address).rsplit(".", 1)[0] + ".14"
        apply(net, fourth, verb="delete")
    finally:
        lab_cli("up", "--name", net.name, "--nodes", "3", check=True)
    lab_cli("deploy", "-i", net.inventory_path, check=True)
    vtep4 = subnet4.split("/")[0]
    for node in ("node1", "node2", "node3"):
        state = net.transport.run(node, ["sh", "-c", "ip route; ip neigh show nud permanent; "
                                                     "bridge fdb show dev flannel.1"]).stdout
        assert subnet4 not in state and f"{vtep4} " not in state and address4 not in state
        assert vtep_mac(net.name, "node4") not in state


# ---- bad input changes nothing -----------------------------------------------------------------------------


TALK_BRIDGE_CONF = """{
  "cniVersion": "0.2.0",
  "name": "container_bridge",
  "type": "bridge",
  "bridge": "vnet0",
  "isDefaultGateway": true,
  "ipMasq": true,
  "ipam": {
    "type": "host-local",
    "ranges": [
      {
        "subnet": "192.168.10.0/24",
        "gateway": "192.168.10.3"
      }
    ],
    "routes": [
      { "dst": "0.0.0.0/0" },
    ]
  }
}
"""


@pytest.mark.parametrize("args,stdin,message", [
    (["cni", "exec", "ADD", "node1", "-f", "-", "--netns", "x"], TALK_BRIDGE_CONF,
     "lab: error: -: line 17: trailing comma before ']' (line 18): not valid JSON; remove the comma at the end "
     "of line 17"),
    (["cni", "exec", "ADD", "node1", "-f", "-", "--netns", "x", "--id=-bad"], '{"cniVersion": "1.0.0", '
     '"name": "n", "type": "bridge"}', "container ID '-bad' is invalid"),
    (["cni", "exec", "ADD", "node1", "-f", "-", "--netns", "x", "--ifname", "eth/0"],
     '{"cniVersion": "1.0.0", "name": "n", "type": "bridge"}', "interface name 'eth/0' is invalid"),
    (["apply", "-f", "-"], WEB.replace("matchLabels: {app: web}", "matchLabels: {app: other}"),
     "spec.selector.matchLabels: selector app=other does not match the template's labels app=web"),
    (["apply", "-f", "-"], MAPPED + "---\n" + MAPPED, "metadata.name: Pod default/mapped is also defined in"),
    (["apply", "-f", "-"], MAPPED.replace("hostPort: 8080", "hostPort: 8080, protocol: SCTP"),
     "protocol: 'SCTP' is not supported; use TCP or UDP"),
    (["apply", "-f", "-"], WEB.replace("kind: Deployment", "kind: DaemonSet"),
     "kind: 'DaemonSet' is not supported; the lab understands: Pod, Deployment, Service"),
])
def test_bad_input_is_one_clear_line_and_changes_nothing(net, args, stdin, message):
    objects = net.state_dir / net.name / "objects.json"
    before = objects.read_text()
    netns_before = {n: net.transport.run(n, ["ip", "netns", "list"]).stdout for n in ("node1", "node2", "node3")}
    proc = lab_cli(*args, "-i", net.inventory_path, input=stdin)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and message in proc.stderr, proc.stderr
    assert objects.read_text() == before
    assert {n: net.transport.run(n, ["ip", "netns", "list"]).stdout for n in netns_before} == netns_before


# ---- destroy -----------------------------------------------------------------------------------------------


def test_destroy_leaves_every_node_as_it_was(net):
    proc = lab_cli("destroy", "-i", net.inventory_path, check=True)
    assert "removed" in proc.stdout
    after = {n.name: node_snapshot(net.transport, n.name) for n in net.inventory.nodes}
    differences = [(node, aspect, net.before[node][aspect], after[node][aspect])
                   for node in after for aspect in after[node] if after[node][aspect] != net.before[node][aspect]]
    assert differences == []
    again = lab_cli("destroy", "-i", net.inventory_path, check=True)
    assert again.stdout.strip().endswith("no changes")
    assert json.loads(lab_cli("get", "pods", "-i", net.inventory_path, "-A", "-o", "json").stdout)["items"] == []

"""The VM tier: real Debian VMs (their own kernel, systemd, modules) under qemu on this machine, reached over
SSH on a bridge inside the lab's namespaces. What emulated nodes hide is tested here: modules not loaded,
a reboot, `lab destroy` leaving each VM as it was, `lab down` leaving nothing on this machine.
Tests run in file order on one 2-VM lab: up, deploy (vxlan), verify, host-gw, nftables, NetworkPolicy, reboot,
destroy."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from orchestrator.core import inventory
from orchestrator.core.transport import Transport
from e2e.labtools import (LabProcesses, alive, copy_inventory, drill_rng, lab_cli, leftovers, node_snapshot, sh,
                          unique_lab_name, wait_for)
from e2e.test_loadbalancer import LOCAL as LOCAL_LB, assert_failover  # a Local LoadBalancer for nginx
from e2e.test_gateway import NGINX_GATEWAY, openssl_pair  # nginx behind a Gateway: its proxy pod runs nginx on a VM
from e2e.test_pod_network import MAPPED  # a pod with a hostPort, on node2

REPO = Path(__file__).resolve().parents[2]
UP_SECONDS = 1200  # a cold image build (~3 min) and two VMs booting under TCG (~1-2 min)
SLOW = 600  # one command on VMs under TCG: deploy, apply, verify
# the talk's Gateway with HTTPS too: the certificate file reaches the VM, Debian's nginx serves it by SNI
NGINX_GATEWAY_TLS = NGINX_GATEWAY.replace(
    "listeners: [{name: http, port: 80, protocol: HTTP}]",
    "listeners:\n    - {name: http, port: 80, protocol: HTTP}\n"
    "    - {name: https, port: 443, protocol: HTTPS, hostname: talk.example.com,\n"
    "       tls: {certificateRefs: [{name: talk-tls}]}}")

# a busybox pod on node2, which reboots below: its hostname, busybox's applets and its env (a key of a
# ConfigMap), made again by the restore
BUSYBOX_POD = """
apiVersion: v1
kind: ConfigMap
metadata: {name: greeting}
data: {text: hello}
---
apiVersion: v1
kind: Pod
metadata: {name: bb}
spec:
  nodeName: node2
  containers:
    - name: bb
      image: "busybox:1.36"
      command: [sleep, "3600"]
      env: [{name: GREETING, valueFrom: {configMapKeyRef: {name: greeting, key: text}}}]
"""


def assert_busybox_pod(vms) -> None:
    def in_bb(*command: str) -> str:
        return lab_cli("exec", "--inventory", vms.inventory_path, "bb", "--", *command, check=True,
                       timeout=SLOW).stdout
    assert in_bb("hostname") == "bb\n"
    assert in_bb("sh", "-c", "echo $GREETING") == "hello\n"
    assert in_bb("wget", "-qO-", "-T", "10", "http://nginx/hostname").startswith("nginx-")
    assert "Address: " in in_bb("nslookup", "nginx.default.svc.cluster.local")


@pytest.mark.parametrize("args,message", [
    (["--memory", "100000"], "lab: error: --memory: 2 VMs x 100000 MiB = 200000 MiB, but this machine has"),
    (["--sudo-user", "lab"], "lab: error: --sudo-user is for emulated nodes; VMs are reached as root"),
])
def test_bad_vm_requests_are_one_clear_line_and_make_nothing(tmp_path, args, message):
    name = unique_lab_name("x")
    proc = lab_cli("up", "--provider", "qemu", "--name", name, "--nodes", "2", *args,
                   env={**os.environ, "LAB_STATE_DIR": str(tmp_path)})
    assert proc.returncode == 2 and proc.stderr.startswith(message) and len(proc.stderr.splitlines()) == 1
    assert leftovers(name, tmp_path, LabProcesses()) == [] and list(tmp_path.iterdir()) == []


@pytest.fixture(scope="module")
def vms(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.fail("the VM tier makes taps and network namespaces: run it as root (make test does)")
    state = tmp_path_factory.mktemp("vmstate")
    before_env = os.environ.get("LAB_STATE_DIR")
    os.environ["LAB_STATE_DIR"] = str(state)  # put back at the end: the emulated tier's labs live elsewhere
    name = unique_lab_name("v")
    try:
        up = lab_cli("up", "--provider", "qemu", "--name", name, "--nodes", "2", "--memory", "768", timeout=UP_SECONDS)
        assert up.returncode == 0, up.stdout + up.stderr
        inv = inventory.load(state / name / "inventory.yaml")
        with Transport(inv.nodes) as transport:
            lab = type("VmLab", (), {})()
            lab.name, lab.state_dir, lab.inventory, lab.transport, lab.up = name, state, inv, transport, up
            lab.inventory_path = str(state / name / "inventory.yaml")
            lab.workdir = tmp_path_factory.mktemp("vmwork")
            lab.before = {n.name: node_snapshot(transport, n.name) for n in inv.nodes}
            yield lab
    finally:
        down = lab_cli("down", "--name", name, timeout=120)
        assert down.returncode == 0, down.stdout + down.stderr
        assert leftovers(name, state, LabProcesses()) == []
        assert [line for line in sh("pgrep", "-a", "qemu-system").splitlines() if f"{name}-" in line] == []
        if before_env is None:
            os.environ.pop("LAB_STATE_DIR", None)
        else:
            os.environ["LAB_STATE_DIR"] = before_env


def cli(lab, *args: str, inventory_path: str | None = None):
    proc = lab_cli(*args, "--inventory", inventory_path or lab.inventory_path, timeout=SLOW)
    assert proc.returncode == 0, f"lab {' '.join(args)}:\n{proc.stdout}\n{proc.stderr}"
    return proc


def test_up_makes_real_debian_vms_with_pinned_host_keys(vms):
    assert "accelerator: " in vms.up.stderr and "VM(s) reachable over SSH" in vms.up.stderr
    status = json.loads(cli(vms, "status", "-o", "json").stdout)
    for node in status["nodes"]:
        assert node["ssh"] == "ok" and node["hostname"] == node["name"]
        assert node["kernel"] != os.uname().release  # its own kernel, not this machine's
    known = (vms.state_dir / vms.name / "known_hosts").read_text()
    for node in vms.inventory.nodes:
        pub = (vms.state_dir / vms.name / "nodes" / node.name / "ssh_host_ed25519_key.pub").read_text().split()[:2]
        assert f"{node.address} {' '.join(pub)}" in known
    # a fresh Debian machine: bridge netfilter is not there until the module is loaded
    assert vms.transport.run("node1", ["sh", "-c", "test -e /proc/sys/net/bridge || echo absent"]).stdout == "absent\n"
    routes = vms.transport.run("node1", ["ip", "route"]).stdout
    assert f"default via {vms.inventory.nodes[0].address.exploded.rsplit('.', 1)[0]}.254" in routes


def test_up_again_is_a_no_op(vms):
    before = json.loads((vms.state_dir / vms.name / "lab.json").read_text())["nodes"]
    again = lab_cli("up", "--provider", "qemu", "--name", vms.name, "--nodes", "2", timeout=UP_SECONDS)
    assert again.returncode == 0 and "no changes" in again.stderr, again.stderr
    assert json.loads((vms.state_dir / vms.name / "lab.json").read_text())["nodes"] == before


def test_bootstrap_installs_what_a_vm_lacks_from_the_lab_repository(vms):
    vms.transport.run("node1", ["env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "remove", "-y", "-q", "conntrack"])
    sources = vms.transport.run("node1", ["sh", "-c", "cat /etc/apt/sources.list /etc/apt/sources.list.d/*"]).stdout
    router = f"{vms.inventory.nodes[0].address.exploded.rsplit('.', 1)[0]}.254"
    assert sources.split() == ["deb", "[trusted=yes]", f"http://{router}:3142/", "./"]  # nothing outside the lab
    dry = cli(vms, "bootstrap", "--dry-run").stdout
    assert "conntrack" in dry and "would install" in dry
    proc = cli(vms, "bootstrap")
    assert "installed" in proc.stdout
    assert vms.transport.run("node1", ["sh", "-c", "command -v conntrack"]).stdout.strip() == "/usr/sbin/conntrack"
    assert "nothing to install" in cli(vms, "bootstrap").stdout


def test_deploy_loads_and_persists_what_a_real_node_needs(vms):
    proc = cli(vms, "deploy", "-v")
    for node in ("node1", "node2"):
        assert f"{node}: load kernel modules br_netfilter" in proc.stdout
        assert f"{node}: write /etc/modules-load.d/cluster-lab-{vms.name}.conf" in proc.stdout
        assert f"{node}: enable cluster-lab-{vms.name}.service (runs at every boot)" in proc.stdout
    assert vms.transport.run("node1", ["cat", "/proc/sys/net/bridge/bridge-nf-call-iptables"]).stdout == "1\n"
    enabled = vms.transport.run("node1", ["systemctl", "is-enabled", f"cluster-lab-{vms.name}.service"]).stdout
    assert enabled.strip() == "enabled"
    assert cli(vms, "deploy").stdout.strip().endswith("no changes")


def test_the_talks_nginx_and_every_check_pass_on_vms(vms, tmp_path):
    cli(vms, "apply", "-f", str(REPO / "examples" / "nginx.yaml"))
    lab_cli("apply", "-i", vms.inventory_path, "-f", "-", input=MAPPED, check=True, timeout=SLOW)
    # LoadBalancers on real kernels: the address held by one VM (its kernel answers ARP), gratuitous ARP
    # from a raw socket, and kept over the reboots and the power cut below by the boot-time restore
    cli(vms, "expose", "deploy", "nginx", "--port", "80", "--type=LoadBalancer", "--name", "web-lb")
    lab_cli("apply", "-i", vms.inventory_path, "-f", "-", input=LOCAL_LB, check=True, timeout=SLOW)
    # the Gateway API on real kernels: nginx from the VM image in a gateway pod, reloaded on each change, HTTPS
    # with a certificate made by openssl
    cert, key = openssl_pair(tmp_path, "talk", "talk.example.com")
    cli(vms, "create", "secret", "tls", "talk-tls", "--cert", cert, "--key", key)
    lab_cli("apply", "-i", vms.inventory_path, "-f", "-", input=NGINX_GATEWAY_TLS, check=True, timeout=SLOW)
    lab_cli("apply", "-i", vms.inventory_path, "-f", "-", input=BUSYBOX_POD, check=True, timeout=SLOW)
    assert_busybox_pod(vms)  # Debian's busybox-static in the VM image, the pod's own UTS and mount namespaces
    top = lab_cli("top", "nodes", "--inventory", vms.inventory_path, check=True, timeout=SLOW)
    assert "share this machine's kernel" not in top.stderr  # a VM's figures are its own kernel's
    assert [line.split()[0] for line in top.stdout.splitlines()[1:]] == ["node1", "node2"]
    assert all(int(line.split()[3].rstrip("Mi")) > 50 for line in top.stdout.splitlines()[1:])  # Debian uses more
    report = json.loads(lab_cli("verify", "-i", vms.inventory_path, "-o", "json", timeout=SLOW).stdout)
    assert [c for c in report["checks"] if not c["ok"]] == []
    families = {c["family"] for c in report["checks"]}
    assert {"pod-to-pod", "pod-to-service", "dns", "egress", "hostport", "mtu", "loadbalancer", "gateway"} <= families
    assert sum(c["family"] == "loadbalancer" for c in report["checks"]) == 2  # the proxy Service has its own family
    gateway = [c["id"] for c in report["checks"] if c["family"] == "gateway"]
    assert len(gateway) == 4 and sum("/https " in i for i in gateway) == 2, gateway  # each match, HTTP and HTTPS


def test_a_load_balancer_moves_to_the_other_vm_when_its_vm_is_cut_off(vms):
    """Failover on real kernels: the announcing VM's tap taken down, the controller gives the address to the other
    VM, whose gratuitous ARP (from a raw socket) turns the router's entry; then the VM is plugged back."""
    assert_failover(vms, "web-lb", 80, seconds=SLOW)


def test_host_gw_then_nftables_pass_too(vms):
    hostgw = copy_inventory(vms, vms.workdir, cluster={"overlay": {"backend": "host-gw"}})
    cli(vms, "deploy", inventory_path=str(hostgw))
    assert "all passed" in cli(vms, "verify", inventory_path=str(hostgw)).stdout
    assert "flannel.1" not in vms.transport.run("node1", ["ip", "-o", "link"]).stdout
    nft = copy_inventory(vms, vms.workdir, cluster={"overlay": {"backend": "host-gw"}, "proxy_mode": "nftables"})
    cli(vms, "deploy", inventory_path=str(nft))
    assert "table ip lab-proxy" in vms.transport.run("node2", ["nft", "list", "tables"]).stdout
    assert "all passed" in cli(vms, "verify", inventory_path=str(nft)).stdout
    cli(vms, "deploy")  # back to the lab's own inventory: vxlan, iptables
    assert "all passed" in cli(vms, "verify").stdout


def test_networkpolicy_is_enforced_by_the_vms_kernels(vms):
    """A real kernel (deploy loads nf_tables); the policies stay for the reboot and power cut below, whose
    verify then also proves the node brought its policy table back by itself."""
    netpol = REPO / "examples" / "netpol"
    cli(vms, "apply", "-f", str(netpol / "pods.yaml"), "-f", str(netpol / "deny-ingress-x.yaml"),
        "-f", str(netpol / "allow-y-to-xa.yaml"))
    report = json.loads(lab_cli("verify", "-i", vms.inventory_path, "-o", "json", timeout=SLOW).stdout)
    assert [c for c in report["checks"] if not c["ok"]] == []
    blocked = {c["label"] for c in report["checks"] if c["label"].endswith("blocked")}
    assert {"y/a -> x/a TCP blocked", "y/b -> x/a UDP blocked"} <= blocked and "y/b -> x/a TCP blocked" not in blocked
    traced = cli(vms, "trace", "y/a", "x/a").stdout  # nftrace and `nft monitor trace` on Debian's own kernel
    assert "DROPPED on" in traced and "by lab-policy ingress (default deny ingress)" in traced, traced
    assert re.search(r"^from y/a eth0 \(\S+\) -> veth\w+ on \S+ -> cni0$", traced, re.M), traced


def wait_for_new_boot(vms, node: str, old_boot: str) -> None:
    """Until `node` answers over SSH from a new boot and systemd has finished starting it (a condition, not
    a time: under TCG a boot takes 30-90 s)."""
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        with Transport(vms.inventory.nodes) as transport:
            try:
                boot = transport.run(node, ["cat", "/proc/sys/kernel/random/boot_id"], timeout=20).stdout.strip()
                if boot != old_boot:
                    transport.run(node, ["systemctl", "is-system-running", "--wait"], check=False, timeout=300)
                    return
            except Exception:  # noqa: BLE001 - not reachable yet, while it reboots
                pass
        time.sleep(2)
    pytest.fail(f"{node} did not come back from its reboot")


def test_a_vm_rebooted_from_inside_and_one_whose_qemu_died_come_back_by_themselves(vms):
    """node2 reboots from inside while node1 loses its power (its qemu killed) and `lab up` starts it again:
    both boots at once, then each VM's boot unit alone brings its part of the lab back (no deploy)."""
    old_boot = {n: vms.transport.run(n, ["cat", "/proc/sys/kernel/random/boot_id"]).stdout.strip()
                for n in ("node1", "node2")}
    vms.transport.run("node2", ["sh", "-c", "systemctl reboot &"], check=False)
    pid = json.loads((vms.state_dir / vms.name / "lab.json").read_text())["nodes"]["node1"]["pid"]
    os.kill(pid, signal.SIGKILL)  # the machine loses its power
    assert wait_for(lambda: not alive(pid))
    up = lab_cli("up", "--provider", "qemu", "--name", vms.name, "--nodes", "2", timeout=UP_SECONDS)
    assert up.returncode == 0 and "VM node1 is not running: starting it again" in up.stderr, up.stderr
    assert "node2 is not running" not in up.stderr  # a VM that reboots is running: up leaves it alone
    wait_for_new_boot(vms, "node2", old_boot["node2"])
    with Transport(vms.inventory.nodes) as transport:
        assert transport.run("node1", ["cat", "/proc/sys/kernel/random/boot_id"]).stdout.strip() != old_boot["node1"]
        for node in ("node1", "node2"):
            unit = transport.run(node, ["systemctl", "is-active", f"cluster-lab-{vms.name}.service"], check=False)
            assert unit.stdout.strip() == "active", transport.run(
                node, ["journalctl", "-b", "-u", f"cluster-lab-{vms.name}.service", "--no-pager"], check=False).stdout
    proc = lab_cli("verify", "-i", vms.inventory_path, timeout=SLOW)  # no lab command in between
    assert proc.returncode == 0, up.stderr + proc.stdout + proc.stderr
    assert_busybox_pod(vms)  # the restore made its namespaces, root and env again
    again = cli(vms, "deploy", "-v").stdout
    assert "node2: booted again since the last deploy" in again and "node1: booted again since the last deploy" \
        in again and ": restore" not in again, again


def scaled_nginx(replicas: int) -> str:
    text = (REPO / "examples" / "nginx.yaml").read_text()
    return text.replace("replicas: 3", f"replicas: {replicas}", 1)


def cut_power_during(vms, argv: list[str], victim: str, delay: float, stdin: str = "") -> None:
    """Run `lab ARGV` and cut `victim`'s power (kill its qemu) `delay` s into it; the command may fail, in
    one clear line per problem and without a traceback."""
    pid = json.loads((vms.state_dir / vms.name / "lab.json").read_text())["nodes"][victim]["pid"]
    given = vms.workdir / "drill-stdin"
    given.write_text(stdin)
    with given.open() as handle:
        proc = subprocess.Popen([sys.executable, "-m", "orchestrator.cli", *argv], stdin=handle,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(delay)
        os.kill(pid, signal.SIGKILL)
        _, err = proc.communicate(timeout=SLOW)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert wait_for(lambda: not alive(pid))
    assert "Traceback" not in err, err


def up_again(vms, victim: str) -> None:
    up = lab_cli("up", "--provider", "qemu", "--name", vms.name, "--nodes", "2", timeout=UP_SECONDS)
    assert up.returncode == 0 and f"VM {victim} is not running: starting it again" in up.stderr, up.stderr


def test_a_vm_that_loses_its_power_during_a_command_converges_after_up_and_the_command_again(vms):
    """The fault drill on real VMs: a power cut during `lab apply` (scaling nginx), during `lab deploy` (to
    host-gw), or during the boot-time restore after a reboot; then `lab up` and the command again, and
    `lab verify` passes. The moment, the node and the point are drawn from a printed seed (LAB_DRILL_SEED
    replays it): each power cut costs a VM boot, minutes under TCG, so a run takes one of the three."""
    rng = drill_rng("VM")
    moment, victim, delay = rng.choice(["apply", "deploy", "restore"]), rng.choice(["node1", "node2"]), \
        rng.uniform(0.0, 4.0)
    inventory_path = vms.inventory_path
    if moment == "apply":
        argv, stdin = ["apply", "-i", inventory_path, "-f", "-"], scaled_nginx(6)
    elif moment == "deploy":
        inventory_path = str(copy_inventory(vms, vms.workdir, cluster={"overlay": {"backend": "host-gw"}}))
        argv, stdin = ["deploy", "-i", inventory_path], ""
    else:  # the restore: the boot unit runs a few seconds into the boot that `systemctl reboot` starts
        argv, stdin = ["exec", "--inventory", inventory_path, victim, "--", "systemctl", "reboot"], ""
        delay = 3 + 3 * delay
    print(f"{victim} loses its power {delay:.2f} s into {moment}")
    cut_power_during(vms, argv, victim, delay, stdin)
    up_again(vms, victim)
    if moment != "restore":
        assert lab_cli(*argv, input=stdin, timeout=SLOW).returncode == 0  # the command again
    else:
        cli(vms, "deploy")
    report = json.loads(lab_cli("verify", "-i", inventory_path, "-o", "json", timeout=SLOW).stdout)
    assert [c["label"] for c in report["checks"] if not c["ok"]] == []
    if moment == "deploy":
        cli(vms, "deploy")  # back to the lab's own inventory (vxlan) for the tests after this one
    if moment == "apply":
        cli(vms, "apply", "-f", str(REPO / "examples" / "nginx.yaml"))


def test_destroy_leaves_each_vm_as_it_was(vms):
    cli(vms, "destroy")
    with Transport(vms.inventory.nodes) as transport:
        after = {n.name: node_snapshot(transport, n.name) for n in vms.inventory.nodes}
    differences = [(node, aspect, vms.before[node][aspect], after[node][aspect])
                   for node in after for aspect in after[node] if after[node][aspect] != vms.before[node][aspect]]
    assert differences == []

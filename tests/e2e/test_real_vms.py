"""Real VMs: the Vagrantfile validates (real Vagrant), and `lab inventory from-ssh-config|from-vagrant|export`
make working inventories of a running lab's nodes (real sshd, real host keys, real `vagrant ssh-config`)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import paramiko
import pytest
import yaml

from orchestrator.core.transport import fingerprint
from .labtools import lab_cli, unique_lab_name

REPO = Path(__file__).resolve().parents[2]

# A Vagrant provider for this test: "machines" that already run (the lab's emulated nodes, listed in
# nodes.json), so that the real `vagrant ssh-config` describes them, as it does VirtualBox or libvirt VMs.
EXISTING_MACHINES_VAGRANTFILE = """\
require "json"

NODES = JSON.parse(File.read(File.join(__dir__, "nodes.json")))

class ExistingMachines < Vagrant.plugin("2", :provider)
  def initialize(machine)
    @machine = machine
  end

  def state
    Vagrant::MachineState.new(:running, "running", "an emulated node of cluster-lab")
  end

  def ssh_info
    node = NODES.fetch(@machine.name.to_s)
    {host: node["host"], port: 22, username: node["user"], private_key_path: [node["key"]]}
  end
end

class ExistingMachinesPlugin < Vagrant.plugin("2")
  name "existing machines (cluster-lab tests)"
  provider(:existing, box_optional: true) { ExistingMachines }
end

Vagrant.configure("2") do |config|
  config.vm.synced_folder ".", "/vagrant", disabled: true
  NODES.each_key { |name| config.vm.define name }
end
"""


def require_package(command: str, package: str) -> None:
    """Fail when setup should have installed `package` (the distribution has it); skip only when it can't."""
    if command and shutil.which(command) or not command and installed(package):
        return
    policy = subprocess.run(["apt-cache", "policy", package], capture_output=True, text=True).stdout
    if "Candidate:" in policy and "Candidate: (none)" not in policy:
        pytest.fail(f"{package} is available from apt but not installed: run scripts/setup.sh (make test does)")
    pytest.skip(f"this distribution has no {package} package")


def installed(package: str) -> bool:
    status = subprocess.run(["dpkg-query", "-W", "-f=${Status}", package], capture_output=True, text=True).stdout
    return "install ok installed" in status


def vagrant(tmp_path: Path, *args: str, cwd: Path = REPO, **env: str) -> subprocess.CompletedProcess:
    """Real Vagrant, with its home and machine folder in `tmp_path` (nothing written to the repository)."""
    environment = {**os.environ, "VAGRANT_HOME": str(tmp_path / "vagrant.d"), "VAGRANT_CHECKPOINT_DISABLE": "1",
                   "VAGRANT_DOTFILE_PATH": str(tmp_path / "dotvagrant"), "VAGRANT_NO_COLOR": "1", **env}
    return subprocess.run(["vagrant", *args], cwd=cwd, env=environment, capture_output=True, text=True, timeout=120)


# ---- the Vagrantfile ------------------------------------------------------------------------------


@pytest.mark.parametrize("nodes", ["3", "5"])
def test_vagrantfile_validates_for_any_provider(tmp_path, nodes):
    """Everything but the provider blocks (box, hostnames, private network, provisioner) for every machine:
    Vagrant 2.3.4 checks provider blocks only for a usable provider, and --ignore-provider leaves them out."""
    require_package("vagrant", "vagrant")
    proc = vagrant(tmp_path, "validate", "--ignore-provider", LAB_NODES=nodes)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "validated successfully" in proc.stdout
    machines = {line.split()[1].rstrip(":") for line in proc.stdout.splitlines() if line.startswith("==> ")}
    assert machines == {f"node{i}" for i in range(1, int(nodes) + 1)}


@pytest.mark.parametrize("nodes", ["3", "5"])
def test_vagrantfile_validates_with_the_libvirt_provider(tmp_path, nodes):
    """With vagrant-libvirt installed (no libvirtd needed), plain `vagrant validate` checks the libvirt block too."""
    require_package("vagrant", "vagrant")
    require_package("", "vagrant-libvirt")
    proc = vagrant(tmp_path, "validate", LAB_NODES=nodes, VAGRANT_DEFAULT_PROVIDER="libvirt")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "validated successfully" in proc.stdout and "Ignoring provider config" not in proc.stdout


def test_vagrant_validate_catches_mistakes_here(tmp_path):
    """The checks above can fail: a wrong libvirt setting and a bad LAB_NODES are caught."""
    require_package("vagrant", "vagrant")
    require_package("", "vagrant-libvirt")
    broken = tmp_path / "project"
    broken.mkdir()
    text = (REPO / "Vagrantfile").read_text()
    assert "lv.cpus = cpus" in text
    (broken / "Vagrantfile").write_text(text.replace("lv.cpus = cpus", "lv.cpuz = cpus"))
    proc = vagrant(tmp_path, "validate", cwd=broken, VAGRANT_DEFAULT_PROVIDER="libvirt")
    assert proc.returncode != 0 and "cpuz" in proc.stdout + proc.stderr
    proc = vagrant(tmp_path, "validate", "--ignore-provider", LAB_NODES="0")
    assert proc.returncode != 0 and "LAB_NODES=0: give a whole number from 1 to 89" in proc.stderr


# ---- lab inventory, on a running lab --------------------------------------------------------------


def lab_host_keys(lab) -> dict[str, paramiko.PKey]:
    """Each node's host key from the lab's own known_hosts (written by `lab up` from the keys it made)."""
    keys = paramiko.HostKeys(str(lab.state_dir / lab.name / "known_hosts"))
    return {node.name: keys.lookup(str(node.address))["ssh-ed25519"] for node in lab.inventory.nodes}


def status_ok(inventory_path: Path) -> dict:
    proc = lab_cli("status", "-i", str(inventory_path), "-o", "json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return {row["name"]: row for row in json.loads(proc.stdout)["nodes"]}


def login_user(lab) -> str:
    """root, unless the session's lab logs in as a sudo user (LAB_E2E_SUDO_USER)."""
    return lab.inventory.nodes[0].ssh.user


def test_from_ssh_config_pins_host_keys_and_the_inventory_works(lab3, tmp_path):
    key = lab3.state_dir / lab3.name / "id_ed25519"
    user = login_user(lab3)
    config = tmp_path / "ssh_config"
    config.write_text("".join(f"Host {n.name}\n  HostName {n.address}\n  User {user}\n  IdentityFile {key}\n\n"
                              for n in lab3.inventory.nodes))
    name = unique_lab_name("s")
    out = tmp_path / "inv" / "nodes.yaml"
    out.parent.mkdir()
    proc = lab_cli("inventory", "from-ssh-config", str(config), "--name", name, "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    expected = lab_host_keys(lab3)
    for node in lab3.inventory.nodes:
        assert (f"{node.name} ({node.address}:22): host key {fingerprint(expected[node.name])} taken on first use "
                f"into {out.parent / 'nodes_known_hosts'}") in " ".join(proc.stderr.split())
    pinned = paramiko.HostKeys(str(out.parent / "nodes_known_hosts"))
    assert {h: dict(pinned.lookup(h)) for h in pinned.keys()} == \
        {str(n.address): {"ssh-ed25519": expected[n.name]} for n in lab3.inventory.nodes}
    data = yaml.safe_load(out.read_text())
    assert data["cluster"] == {"name": name}
    assert data["ssh"] == {"user": user, "become": user != "root", "key": str(key), "known_hosts": "nodes_known_hosts"}
    assert data["nodes"] == [{"name": n.name, "address": str(n.address)} for n in lab3.inventory.nodes]
    rows = status_ok(out)
    assert [(name, row["ssh"], row["hostname"]) for name, row in rows.items()] == \
        [(n.name, "ok", n.name) for n in lab3.inventory.nodes]
    assert not (lab3.state_dir / name).exists()  # with -o, the lab's state folder is not touched

    # Again: the keys are known now; nothing changes.
    before = (out.parent / "nodes_known_hosts").read_text()
    proc = lab_cli("inventory", "from-ssh-config", str(config), "--name", name, "-o", str(out), check=True)
    assert proc.stderr.count("already in") == 3
    assert (out.parent / "nodes_known_hosts").read_text() == before

    # A node offering another key than the pinned one is refused, in one line, and nothing is written.
    first = lab3.inventory.nodes[0]
    other = expected[lab3.inventory.nodes[1].name]
    (out.parent / "nodes_known_hosts").write_text(f"{first.address} ssh-ed25519 {other.get_base64()}\n")
    proc = lab_cli("inventory", "from-ssh-config", str(config), "--name", name, "-o", str(out))
    assert proc.returncode == 1
    assert f"lab: error: {first.name}: host key of {first.address} has CHANGED" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert (out.parent / "nodes_known_hosts").read_text() == f"{first.address} ssh-ed25519 {other.get_base64()}\n"


def test_from_vagrant_reads_real_vagrant_and_takes_the_private_network_address(lab3, tmp_path):
    """Real `vagrant ssh-config` (a test provider whose machines are the lab's nodes); each node gets a
    second interface, as a Vagrant VM's private network, whose address the inventory must take."""
    require_package("vagrant", "vagrant")
    key = lab3.state_dir / lab3.name / "id_ed25519"
    project = tmp_path / "project"
    project.mkdir()
    (project / "Vagrantfile").write_text(EXISTING_MACHINES_VAGRANTFILE)
    (project / "nodes.json").write_text(json.dumps(
        {n.name: {"host": str(n.address), "user": login_user(lab3), "key": str(key)} for n in lab3.inventory.nodes}))
    private = {n.name: f"192.0.2.{11 + i}" for i, n in enumerate(lab3.inventory.nodes)}  # TEST-NET-1
    name = unique_lab_name("v")
    env = {**os.environ, "VAGRANT_DEFAULT_PROVIDER": "existing", "VAGRANT_HOME": str(tmp_path / "vagrant.d"),
           "VAGRANT_CHECKPOINT_DISABLE": "1"}
    try:
        for node in lab3.inventory.nodes:
            lab3.transport.script(node, f"ip link add eth1 type veth peer name eth1-peer\n"
                                        f"ip addr add {private[node.name]}/24 dev eth1\nip link set eth1 up")
        proc = lab_cli("inventory", "from-vagrant", str(project), "--name", name, env=env)
        assert proc.returncode == 0, proc.stderr
    finally:
        for node in lab3.inventory.nodes:
            lab3.transport.run(node, ["ip", "link", "del", "eth1"], check=False)
    data = yaml.safe_load(proc.stdout)
    known_hosts = lab3.state_dir / name / "imported_known_hosts"
    assert data["cluster"] == {"name": name}
    assert data["ssh"] == {"user": login_user(lab3), "become": login_user(lab3) != "root", "key": str(key),
                           "known_hosts": str(known_hosts)}
    assert data["nodes"] == [{"name": n.name, "address": private[n.name], "ssh_host": str(n.address)}
                             for n in lab3.inventory.nodes]
    assert proc.stdout.startswith(f"# Made by `lab inventory` from `vagrant ssh-config` in {project}.")
    assert "vagrant ssh node1 -c 'ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub'" in " ".join(proc.stderr.split())
    expected = lab_host_keys(lab3)
    pinned = paramiko.HostKeys(str(known_hosts))
    assert all(pinned.lookup(str(n.address))["ssh-ed25519"] == expected[n.name] for n in lab3.inventory.nodes)
    inventory_path = tmp_path / "vagrant.yaml"
    inventory_path.write_text(proc.stdout)
    assert all(row["ssh"] == "ok" for row in status_ok(inventory_path).values())
    shutil.rmtree(lab3.state_dir / name)


def test_from_vagrant_outside_a_vagrant_project_is_one_line(tmp_path):
    require_package("vagrant", "vagrant")
    proc = lab_cli("inventory", "from-vagrant", str(tmp_path),
                   env={**os.environ, "VAGRANT_HOME": str(tmp_path / "vagrant.d"), "VAGRANT_CHECKPOINT_DISABLE": "1"})
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith(f"lab: error: {tmp_path}: `vagrant ssh-config` exited 1: A Vagrant environment")
    assert proc.stderr.count("\n") == 1


def test_export_ansible_lists_the_lab(lab3, tmp_path):
    out = tmp_path / "hosts.yaml"
    lab_cli("inventory", "export", "--format", "ansible", "-i", lab3.inventory_path, "-o", str(out), check=True)
    hosts = yaml.safe_load(out.read_text())["cluster_lab"]["children"]["nodes"]["hosts"]
    subnets = json.loads((lab3.state_dir / lab3.name / "objects.json").read_text())["subnets"] \
        if (lab3.state_dir / lab3.name / "objects.json").exists() else {}
    for node in lab3.inventory.nodes:
        host = hosts[node.name]
        assert (host["ansible_host"], host["ansible_user"], host["ansible_become"]) == \
            (str(node.address), login_user(lab3), login_user(lab3) != "root")
        assert host["ansible_ssh_private_key_file"] == str(lab3.state_dir / lab3.name / "id_ed25519")
        assert f"UserKnownHostsFile={lab3.state_dir / lab3.name / 'known_hosts'}" in host["ansible_ssh_common_args"]
        assert host.get("pod_subnet") == subnets.get(node.name)


def test_from_ssh_config_through_a_jump_host(lab3, tmp_path):
    """ProxyJump: the jump host's key and the nodes' keys (fetched through it) are pinned, and the lab
    works through it. The jump host is a second sshd, allowing forwarding, in node1's namespaces."""
    key = lab3.state_dir / lab3.name / "id_ed25519"
    jump = lab3.inventory.nodes[0]
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "jump_host_key")], check=True)
    folder = "/run/lab-test-jump"  # in node1's own /run
    lab3.transport.put(jump, f"{folder}/host_key", (tmp_path / "jump_host_key").read_text(), mode="0600")
    lab3.transport.put(jump, f"{folder}/authorized_keys", Path(f"{key}.pub").read_text())
    lab3.transport.put(jump, f"{folder}/sshd_config", (
        f"ListenAddress {jump.address}:2022\nHostKey {folder}/host_key\nPidFile none\n"
        f"AuthorizedKeysFile {folder}/authorized_keys\nPermitRootLogin prohibit-password\nStrictModes no\n"
        "UsePAM no\nPasswordAuthentication no\nAllowTcpForwarding yes\n"))
    own_mnt = os.readlink("/proc/self/ns/mnt")
    pid = next(p for p in subprocess.run(["ip", "netns", "pids", f"{lab3.name}-{jump.name}"], capture_output=True,
                                         text=True).stdout.split() if os.readlink(f"/proc/{p}/ns/mnt") != own_mnt)
    sshd = subprocess.Popen(["nsenter", "-t", pid, "-m", "-n", "/usr/sbin/sshd", "-D", "-e", "-f",
                             f"{folder}/sshd_config"], stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(100):
            with contextlib.suppress(OSError), socket.create_connection((str(jump.address), 2022), timeout=1):
                break
            assert sshd.poll() is None, sshd.stderr.read()
            time.sleep(0.1)
        user = login_user(lab3)
        config = tmp_path / "ssh_config"
        config.write_text(f"Host bastion\n  HostName {jump.address}\n  Port 2022\n  User root\n\n" + "".join(
            f"Host {n.name}\n  HostName {n.address}\n  User {user}\n  IdentityFile {key}\n  ProxyJump bastion\n\n"
            for n in lab3.inventory.nodes))
        out = tmp_path / "jumped.yaml"
        proc = lab_cli("inventory", "from-ssh-config", str(config), *[n.name for n in lab3.inventory.nodes],
                       "--name", unique_lab_name("j"), "-o", str(out))
        assert proc.returncode == 0, proc.stderr
        jump_key = paramiko.Ed25519Key.from_private_key_file(str(tmp_path / "jump_host_key"))
        text = " ".join(proc.stderr.split())
        assert f"jump host ({jump.address}:2022): host key {fingerprint(jump_key)} taken on first use" in text
        pinned = paramiko.HostKeys(str(tmp_path / "jumped_known_hosts"))
        assert pinned.lookup(f"[{jump.address}]:2022")["ssh-ed25519"] == jump_key
        expected = lab_host_keys(lab3)
        assert all(pinned.lookup(str(n.address))["ssh-ed25519"] == expected[n.name] for n in lab3.inventory.nodes)
        assert yaml.safe_load(out.read_text())["ssh"]["jump"] == f"root@{jump.address}:2022"
        assert all(row["ssh"] == "ok" for row in status_ok(out).values())
        # OpenSSH itself through the jump host, with both host keys held to the pinned file
        last = lab3.inventory.nodes[-1]
        proc = lab_cli("ssh", "-i", str(out), last.name, "--", "hostname")
        assert (proc.returncode, proc.stdout.strip()) == (0, last.name), proc.stderr
    finally:
        sshd.terminate()
        sshd.wait(timeout=10)
        lab3.transport.run(jump, ["rm", "-rf", folder], check=False)


def test_a_host_that_hangs_up_is_one_line_without_tracebacks(tmp_path):
    # a port on this machine that accepts connections and closes them before any SSH banner: paramiko's
    # transport thread logs that with two tracebacks unless the lab quiets it
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()

        def hang_up():
            with contextlib.suppress(OSError):
                while True:
                    listener.accept()[0].close()

        threading.Thread(target=hang_up, daemon=True).start()
        config = tmp_path / "ssh_config"
        config.write_text(f"Host mute\n  HostName 127.0.0.1\n  Port {listener.getsockname()[1]}\n  User root\n"
                          "  ConnectTimeout 2\n")
        proc = lab_cli("inventory", "from-ssh-config", str(config), "mute", "--name", "mute",
                       "-o", str(tmp_path / "mute.yaml"), timeout=120)
    errors = [line for line in proc.stderr.splitlines() if not line.startswith("Notice:")]
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert len(errors) == 1 and errors[0].startswith("lab: error: mute: 127.0.0.1:"), proc.stderr

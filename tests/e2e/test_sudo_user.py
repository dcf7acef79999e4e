"""A lab whose nodes are reached as a non-root user with sudo (`lab up --sudo-user`), as on cloud VMs, and
`lab bootstrap` on emulated nodes: the whole deploy / apply / verify cycle through `sudo -n`."""

from __future__ import annotations

import pwd
from pathlib import Path

import pytest
import yaml

from .conftest import running_lab
from .labtools import copy_inventory, lab_cli

REPO = Path(__file__).resolve().parents[2]
USER = "labops"


@pytest.fixture(scope="module")
def sudo_lab(state_dir):
    """A 2-node lab logging in as USER with `become: true`; removed at the end, and checked to leave nothing."""
    with running_lab(state_dir, "s", "--nodes", "2", "--sudo-user", USER) as lab:
        yield lab


def exec_on(lab, *argv: str, inv: str | None = None):
    return lab_cli("exec", "--inventory", inv or lab.inventory_path, *argv)


# ---- the user ------------------------------------------------------------------------------------------


def test_the_lab_inventory_logs_in_as_the_user_with_become(sudo_lab):
    data = yaml.safe_load(Path(sudo_lab.inventory_path).read_text())
    assert (data["ssh"]["user"], data["ssh"]["become"]) == (USER, True)
    assert data["emulated"]["sudo_user"] == USER


def test_commands_log_in_as_the_user_and_run_as_root_through_sudo(sudo_lab):
    proc = exec_on(sudo_lab, "node1", "--", "sh", "-c", 'echo "$SUDO_USER"; id -un')
    assert (proc.returncode, proc.stdout) == (0, f"{USER}\nroot\n"), proc.stderr
    # OpenSSH itself (no sudo added; like ssh, it hands the remote shell one command line) lands as the user
    proc = lab_cli("ssh", "-i", sudo_lab.inventory_path, "node2", "--", 'id -un; echo "$HOME"')
    assert (proc.returncode, proc.stdout) == (0, f"{USER}\n/home/{USER}\n"), proc.stderr


def test_root_work_needs_become_and_root_cannot_log_in(sudo_lab, tmp_path):
    without = copy_inventory(sudo_lab, tmp_path, become=False)
    assert exec_on(sudo_lab, "node1", "--", "id", "-un", inv=str(without)).stdout == f"{USER}\n"
    denied = exec_on(sudo_lab, "node1", "--", "/usr/sbin/iptables", "-S", inv=str(without))
    assert denied.returncode != 0 and "ermission denied" in denied.stderr
    assert exec_on(sudo_lab, "node1", "--", "/usr/sbin/iptables", "-S").returncode == 0  # with become
    (tmp_path / "root").mkdir()
    as_root = copy_inventory(sudo_lab, tmp_path / "root", user="root", become=False)
    refused = exec_on(sudo_lab, "node1", "--", "true", inv=str(as_root))
    assert refused.returncode == 1 and "SSH login as root refused" in refused.stderr


def test_the_account_and_its_sudo_rule_exist_only_on_the_nodes(sudo_lab):
    with pytest.raises(KeyError):
        pwd.getpwnam(USER)  # not on this machine ...
    assert not Path("/etc/sudoers.d/cluster-lab").exists() and not Path(f"/home/{USER}").exists()
    for node in ("node1", "node2"):  # ... but on every node, with a passwordless sudo rule
        proc = exec_on(sudo_lab, node, "--", "sh", "-c", f"getent passwd {USER}; cat /etc/sudoers.d/cluster-lab")
        assert proc.returncode == 0
        entry, rule = proc.stdout.splitlines()
        assert entry.startswith(f"{USER}:") and entry.split(":")[5] == f"/home/{USER}"
        assert rule == f"{USER} ALL=(ALL:ALL) NOPASSWD: ALL"


def test_a_grown_lab_keeps_its_user_and_another_is_refused(sudo_lab):
    other = lab_cli("up", "--name", sudo_lab.name, "--nodes", "2", "--sudo-user", "someone")
    assert other.returncode == 2
    assert f"lab {sudo_lab.name} is up with sudo user '{USER}', not 'someone'" in other.stderr
    lab_cli("up", "--name", sudo_lab.name, "--nodes", "3", check=True)
    try:
        proc = lab_cli("ssh", "-i", sudo_lab.inventory_path, "node3", "--", "id", "-un")
        assert (proc.returncode, proc.stdout) == (0, f"{USER}\n"), proc.stderr
    finally:
        lab_cli("up", "--name", sudo_lab.name, "--nodes", "2", check=True)


# ---- the pod network, services and verify, all through sudo --------------------------------------------


def test_deploy_apply_and_verify_work_through_sudo(sudo_lab):
    inv = sudo_lab.inventory_path
    deploy = lab_cli("deploy", "-i", inv)
    assert deploy.returncode == 0, deploy.stdout + deploy.stderr
    assert lab_cli("deploy", "-i", inv, check=True).stdout.rstrip().endswith("no changes")
    lab_cli("apply", "-i", inv, "-f", str(REPO / "examples" / "nginx.yaml"), check=True)
    verify = lab_cli("verify", "-i", inv)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "all passed" in verify.stdout
    assert lab_cli("cni", "check", "-i", inv).returncode == 0
    # what the lab wrote and started on the nodes belongs to root (made through sudo), not to the login user
    owners = exec_on(sudo_lab, "node1", "--", "sh", "-c", f"stat -c %U /etc/cni/net.d/10-{sudo_lab.name}.conflist "
                     f"/var/lib/cluster-lab/{sudo_lab.name}/agent.pyz; ps -o user= -C dnsmasq,python3 | sort -u")
    assert owners.stdout.split() == ["root", "root", "root"], owners.stdout + owners.stderr
    destroy = lab_cli("destroy", "-i", inv)
    assert destroy.returncode == 0, destroy.stdout + destroy.stderr


# ---- lab bootstrap --------------------------------------------------------------------------------------


def test_bootstrap_finds_nothing_to_install(sudo_lab):
    proc = lab_cli("bootstrap", "-i", sudo_lab.inventory_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["node1: nothing to install", "node2: nothing to install"]


@pytest.fixture
def node1_without_dnsmasq_and_cni(sudo_lab):
    """node1 really lacks dnsmasq and the CNI plugins: an empty, non-executable file is bind-mounted over
    dnsmasq and a tmpfs over the plugins' folder, in node1's own mount namespace (not this machine's)."""
    t = sudo_lab.transport
    cni_dir = t.run("node1", ["sh", "-c", "for d in /opt/cni/bin /usr/lib/cni /usr/libexec/cni; do "
                                          "if [ -x $d/bridge ]; then echo $d; break; fi; done"]).stdout.strip()
    dnsmasq = t.run("node1", ["sh", "-c", "command -v dnsmasq"]).stdout.strip()
    t.run("node1", ["sh", "-ec", 'touch /run/lab/not-here; mount --bind /run/lab/not-here "$1"; '
                                 'mount -t tmpfs -o mode=0755 lab-hide "$2"', "hide", dnsmasq, cni_dir])
    try:
        yield
    finally:
        t.run("node1", ["umount", dnsmasq, cni_dir])


def test_bootstrap_dry_run_shows_the_apt_command_for_what_a_node_lacks(sudo_lab, node1_without_dnsmasq_and_cni):
    proc = lab_cli("bootstrap", "-i", sudo_lab.inventory_path, "--dry-run")
    assert proc.returncode == 0, proc.stderr
    apt = "sudo -n -- env DEBIAN_FRONTEND=noninteractive apt-get -q -y -o Dpkg::Use-Pty=0"
    assert proc.stdout.splitlines() == [
        "node1: would install (apt): containernetworking-plugins dnsmasq-base",
        f"  {apt} update",
        f"  {apt} install --no-install-recommends containernetworking-plugins dnsmasq-base",
        "node2: nothing to install",
    ]
    # for real, an emulated node is refused (it runs this machine's programs): nothing is installed
    proc = lab_cli("bootstrap", "-i", sudo_lab.inventory_path)
    assert proc.returncode == 1
    assert proc.stdout.splitlines() == ["node2: nothing to install"]
    assert proc.stderr.strip().splitlines()[-1] == ("lab: node1: lacks dnsmasq (command), CNI plugin bridge, "
                                   "CNI plugin host-local, "
                                   "CNI plugin portmap, CNI plugin loopback, but it is an emulated node running "
                                   "this machine's programs: install containernetworking-plugins dnsmasq-base on "
                                   "this machine (scripts/setup.sh does), not on the node")

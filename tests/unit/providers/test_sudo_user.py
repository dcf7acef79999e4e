"""emulated.sudo_user: the inventory option, the node's start script and sshd config, the lab's inventory."""

from __future__ import annotations

import textwrap
from ipaddress import IPv4Network as Net
from pathlib import Path

import pytest

from orchestrator.core import inventory
from orchestrator.core.errors import InputError
from orchestrator.core.model import Emulated
from orchestrator.core.render import render
from orchestrator.core.state import LabFiles
from orchestrator.providers.emulated_plan import layout, start_command
from orchestrator.providers.local import check_new_account, same_sudo_user


def parse(text: str):
    return inventory.parse(textwrap.dedent(text), "inv.yaml", Path("/nonexistent"))


def test_sudo_user_is_read_and_round_trips(tmp_path):
    inv = parse("cluster: {name: demo}\nemulated: {nodes: 2, sudo_user: lab}\n")
    assert inv.emulated.sudo_user == "lab"
    again = inventory.parse(inventory.dump(inv, tmp_path), "again.yaml", tmp_path)
    assert again.emulated == inv.emulated
    assert parse("cluster: {name: demo}\nemulated: {nodes: 2}\n").emulated.sudo_user is None


@pytest.mark.parametrize("name, problem", [
    ("root", "'root' is not a sudo user"),
    ("Lab", "'Lab' is not a usable user name"),
    ("a b", "'a b' is not a usable user name"),
    ("-x", "'-x' is not a usable user name"),
    ("x" * 33, "is not a usable user name"),
])
def test_bad_sudo_user_is_one_line_naming_the_field(name, problem):
    with pytest.raises(InputError) as exc:
        parse(f"cluster: {{name: demo}}\nemulated: {{sudo_user: '{name}'}}\n")
    message = str(exc.value)
    assert message.startswith("inv.yaml: emulated.sudo_user: ") and problem in message and "\n" not in message


def test_node_start_script_makes_the_user_only_when_asked(tmp_path):
    files = LabFiles("demo", tmp_path)
    plain = layout("demo", Emulated(), 1, Net("198.18.0.0/24"))
    script = start_command(plain, plain.nodes[0], files).argv[-1]
    assert "useradd" not in script and "sudoers" not in script
    assert "/root/.ssh/authorized_keys" in script
    with_user = layout("demo", Emulated(sudo_user="lab"), 1, Net("198.18.0.0/24"))
    script = start_command(with_user, with_user.nodes[0], files).argv[-1]
    # a node-private home and account (-l: nothing written to the machine's /var/log), no password
    assert "mount -t tmpfs -o mode=0755 demo-homes /home" in script
    assert "useradd -l -M -U -d /home/lab -s /bin/bash -p '*' -c 'cluster-lab' lab" in script
    assert "/home/lab/.ssh/authorized_keys" in script and "/root/.ssh/authorized_keys" not in script
    assert "printf '%s ALL=(ALL:ALL) NOPASSWD: ALL\\n' lab" in script
    assert "install -m 0440 /run/lab/sudoers /etc/sudoers.d/cluster-lab" in script
    # the account is made after /etc became the node's copy-on-write overlay
    assert script.index("-etc -o lowerdir=/etc") < script.index("useradd")


def test_root_cannot_log_in_when_there_is_a_sudo_user():
    plain = render("local/sshd_config.j2", lab="demo", node="node1", address="198.18.0.11", sudo_user=None)
    assert "PermitRootLogin prohibit-password" in plain
    with_user = render("local/sshd_config.j2", lab="demo", node="node1", address="198.18.0.11", sudo_user="lab")
    assert "PermitRootLogin no" in with_user and "prohibit-password" not in with_user


def test_a_running_lab_keeps_its_sudo_user():
    up = {"nodes": {"node1": {}}, "sudo_user": "lab"}
    assert same_sudo_user("demo", {}, "lab", explicit=True) == "lab"  # a new lab: what was asked
    assert same_sudo_user("demo", up, None, explicit=False) == "lab"  # `lab up --nodes 4` keeps it
    assert same_sudo_user("demo", up, "lab", explicit=True) == "lab"
    with pytest.raises(InputError, match=r"lab demo is up with sudo user 'lab', not 'ops'; give --sudo-user lab"):
        same_sudo_user("demo", up, "ops", explicit=True)
    with pytest.raises(InputError, match=r"is up with no sudo user \(root logins\), not 'lab'"):
        same_sudo_user("demo", {**up, "sudo_user": None}, "lab", explicit=True)


def test_an_account_of_this_machine_cannot_be_the_sudo_user():
    with pytest.raises(InputError, match=r"'root' is already a user on this machine"):
        check_new_account("root")
    check_new_account("no-such-user-here-x1")


def test_logins_are_recorded_in_the_node_not_in_the_machines_var_log(tmp_path):
    lay = layout("demo", Emulated(sudo_user="lab"), 1, Net("198.18.0.0/24"))
    script = start_command(lay, lay.nodes[0], LabFiles("demo", tmp_path)).argv[-1]
    assert "mount -t tmpfs -o mode=0755 demo-log /var/log" in script  # sshd's wtmp and lastlog
    assert script.index("demo-log /var/log") < script.index("exec /usr/sbin/sshd")

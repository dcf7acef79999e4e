"""`lab inventory`: ssh_config parsing, picking node addresses, the inventory made, pinned host keys,
the Ansible export, and one-line errors for bad input. Pure: no SSH, no VMs."""

from __future__ import annotations

import textwrap
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import paramiko
import pytest
import yaml

from orchestrator.cli import main as cli
from orchestrator.core import inventory
from orchestrator.core.errors import InputError, LabError
from orchestrator.core.model import Cluster
from orchestrator.providers.ansible import ansible_inventory
from orchestrator.providers.host_keys import KnownHosts
from orchestrator.providers.imported import inventory_data, parse_addresses, pick_address, pick_addresses
from orchestrator.providers.ssh_config import SshHost, parse_ssh_config


# What `vagrant ssh-config` prints for VirtualBox VMs (Vagrant 2.3's template; a key path with a space is quoted).
VAGRANT_SSH_CONFIG = """\
Host node1
  HostName 127.0.0.1
  User vagrant
  Port 2222
  UserKnownHostsFile /dev/null
  StrictHostKeyChecking no
  PasswordAuthentication no
  IdentityFile "{root}/my lab/.vagrant/machines/node1/virtualbox/private_key"
  IdentitiesOnly yes
  LogLevel FATAL

Host node2
  HostName 127.0.0.1
  User vagrant
  Port 2200
  UserKnownHostsFile /dev/null
  StrictHostKeyChecking no
  PasswordAuthentication no
  IdentityFile {root}/missing_key
  IdentityFile {root}/node2_key
  IdentitiesOnly yes
  LogLevel FATAL

"""

# `ip -4 -o addr show scope global; echo ---; ip -4 route show default` on a VirtualBox VM of the Vagrantfile,
# after `lab deploy` (cni0 and flannel.1 are the lab's own) and with Docker installed.
VIRTUALBOX_VM = """\
2: eth0    inet 10.0.2.15/24 brd 10.0.2.255 scope global dynamic eth0\\       valid_lft 86000sec preferred_lft 86000sec
3: eth1    inet 192.168.56.11/24 brd 192.168.56.255 scope global eth1\\       valid_lft forever preferred_lft forever
4: docker0    inet 172.17.0.1/16 brd 172.17.255.255 scope global docker0\\       valid_lft forever preferred_lft forever
5: flannel.1    inet 10.244.0.0/32 scope global flannel.1\\       valid_lft forever preferred_lft forever
6: cni0    inet 10.244.0.1/24 brd 10.244.0.255 scope global cni0\\       valid_lft forever preferred_lft forever
---
default via 10.0.2.2 dev eth0 proto dhcp src 10.0.2.15 metric 100
"""
LIBVIRT_VM = """\
2: eth0    inet 192.168.121.54/24 brd 192.168.121.255 scope global dynamic eth0\\       valid_lft 3000sec
3: eth1    inet 192.168.56.12/24 brd 192.168.56.255 scope global eth1\\       valid_lft forever
---
default via 192.168.121.1 dev eth0
"""
CLOUD_VM = """\
2: ens5    inet 10.0.1.11/24 metric 100 brd 10.0.1.255 scope global dynamic ens5\\       valid_lft 3000sec
---
default via 10.0.1.1 dev ens5 proto dhcp src 10.0.1.11 metric 100
"""
CLUSTER = Cluster(name="t")
EXCLUDE = (CLUSTER.cluster_cidr, CLUSTER.service_cidr)


def keys(tmp_path: Path) -> Path:
    (tmp_path / "my lab/.vagrant/machines/node1/virtualbox").mkdir(parents=True)
    (tmp_path / "my lab/.vagrant/machines/node1/virtualbox/private_key").write_text("key")
    (tmp_path / "node2_key").write_text("key")
    return tmp_path


def parse(text: str, only=(), cwd: Path = Path("/")):
    return parse_ssh_config(textwrap.dedent(text), "cfg", only, cwd)


def one_line_error(excinfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    return message


# ---- ssh_config -----------------------------------------------------------------------------------


def test_vagrant_ssh_config_gives_each_vm_its_port_and_first_readable_key(tmp_path):
    root = keys(tmp_path)
    hosts = parse_ssh_config(VAGRANT_SSH_CONFIG.format(root=root), "vagrant ssh-config")
    assert hosts == [
        SshHost("node1", "127.0.0.1", "vagrant", 2222, root / "my lab/.vagrant/machines/node1/virtualbox/private_key"),
        SshHost("node2", "127.0.0.1", "vagrant", 2200, root / "node2_key"),
    ]
    assert [h.known_hosts_name for h in hosts] == ["[127.0.0.1]:2222", "[127.0.0.1]:2200"]
    assert all(h.become for h in hosts)


def test_host_star_defaults_order_patterns_and_chosen_hosts(tmp_path):
    (tmp_path / "id").write_text("key")
    text = """
        Host *.example.com !skip
          Port 2022
        Host web2 web1
          HostName %h.example.com
        Host *
          User root
          IdentityFile ~/nonexistent-but-later-one-exists
          IdentityFile id
        """
    hosts = parse(text, cwd=tmp_path)
    assert [(h.name, h.hostname, h.port, h.user, h.key) for h in hosts] == [
        ("web2", "web2.example.com", 22, "root", tmp_path / "id"),
        ("web1", "web1.example.com", 22, "root", tmp_path / "id")]
    assert not hosts[0].become
    assert [h.name for h in parse(text, only=["web1"], cwd=tmp_path)] == ["web1"]


def test_proxy_jump_is_resolved_through_the_config():
    hosts = parse("""
        Host bastion
          HostName 203.0.113.5
          User admin
          Port 2222
        Host node1 node2
          User ubuntu
          ProxyJump bastion
        Host node3
          User ubuntu
          ProxyJump ops@198.51.100.7:22
        """, only=["node1", "node2"])
    assert {h.jump for h in hosts} == {"admin@203.0.113.5:2222"}
    assert parse("Host n1\n  User ubuntu\n  ProxyJump ops@198.51.100.7\n")[0].jump == "ops@198.51.100.7:22"
    assert parse("Host n1\n  ProxyJump none\n")[0].jump is None


@pytest.mark.parametrize("text, only, message", [
    ("# only comments\n", (), "cfg: no Host blocks"),
    ("Host *\n  User root\n", (), "cfg: no Host blocks"),
    ("Host Node_1\n  HostName 10.0.0.1\n", (), "cfg: Host Node_1: 'Node_1' cannot name a node"),
    ("Host router\n  HostName 10.0.0.1\n", (), "cannot name a node"),
    ("Host n1\n  HostName 10.0.0.1\n", ("n2",), "cfg: no Host 'n2'; hosts there are: n1"),
    ("Host n1\n  IdentityFile /nonexistent/key\n", (), "cfg: Host n1: IdentityFile: cannot read /nonexistent/key"),
    ("Host n1\n  Port ssh\n", (), "cfg: Host n1: Port: 'ssh' is not a port"),
    ("Host n1\n  ProxyCommand nc %h %p\n", (), "ProxyCommand is not supported; use ProxyJump"),
    ("Host n1\n  ProxyJump a@b,c@d\n", (), "more than one jump host is not supported"),
    ("Host n1\n  ProxyJump a@b\nHost n2\n  ProxyJump c@d\n", (), "Host n2: ProxyJump c@d:22 differs from Host n1's"),
    ("Host n1\n  HostName\n", (), "cfg: not a valid ssh_config (Unparsable line HostName)"),
])
def test_bad_ssh_configs_get_one_line_naming_file_host_and_fix(text, only, message):
    with pytest.raises(InputError) as excinfo:
        parse(text, only)
    assert message in one_line_error(excinfo)


# ---- node addresses -------------------------------------------------------------------------------


def address(output: str, *, private_network: bool, ssh_host: str = "127.0.0.1", network=None) -> IPv4Address:
    addresses, default_ifs = parse_addresses(output)
    return pick_address("node1", addresses, default_ifs, private_network=private_network, ssh_host=ssh_host,
                        network=network, exclude=EXCLUDE)


def test_vagrant_nodes_get_the_private_network_address_not_nat_management_docker_or_the_lab_own():
    assert parse_addresses(LIBVIRT_VM)[1] == {"eth0"}
    assert address(VIRTUALBOX_VM, private_network=True) == IPv4Address("192.168.56.11")
    assert address(LIBVIRT_VM, private_network=True, ssh_host="192.168.121.54") == IPv4Address("192.168.56.12")
    # A VM with one interface: its address is the only one there is.
    assert address(CLOUD_VM, private_network=True) == IPv4Address("10.0.1.11")


def test_ssh_config_nodes_get_the_hostname_when_the_node_has_it_else_the_default_route_address():
    assert address(LIBVIRT_VM, private_network=False, ssh_host="192.168.56.12") == IPv4Address("192.168.56.12")
    assert address(CLOUD_VM, private_network=False, ssh_host="203.0.113.11") == IPv4Address("10.0.1.11")
    assert address(VIRTUALBOX_VM, private_network=False, ssh_host="node1.example.com") == IPv4Address("10.0.2.15")


def test_network_option_picks_explicitly_and_says_what_the_node_has():
    assert address(VIRTUALBOX_VM, private_network=True, network=IPv4Network("10.0.2.0/24")) == IPv4Address("10.0.2.15")
    with pytest.raises(LabError) as excinfo:
        address(LIBVIRT_VM, private_network=True, network=IPv4Network("172.16.0.0/12"))
    assert one_line_error(excinfo) == ("node1: no address in 172.16.0.0/12; it has: 192.168.121.54 (eth0), "
                                       "192.168.56.12 (eth1). Give --network the cluster network's CIDR")


def test_vms_without_a_shared_network_are_refused():
    hosts = [SshHost("node1", "127.0.0.1", "vagrant", 2222), SshHost("node2", "127.0.0.1", "vagrant", 2200)]
    nat_only = "2: eth0    inet 10.0.2.15/24 scope global eth0\n---\ndefault via 10.0.2.2 dev eth0\n"
    with pytest.raises(LabError) as excinfo:
        pick_addresses(hosts, {"node1": nat_only, "node2": nat_only}, private_network=True, network=None,
                       exclude=EXCLUDE)
    assert "node1 and node2 both have 10.0.2.15" in one_line_error(excinfo)


# ---- the inventory --------------------------------------------------------------------------------


def test_vagrant_inventory_loads_ssh_via_forwarded_ports_overlay_on_private_addresses(tmp_path):
    root = keys(tmp_path)
    hosts = parse_ssh_config(VAGRANT_SSH_CONFIG.format(root=root), "vagrant ssh-config")
    (tmp_path / "inventories").mkdir()
    (tmp_path / "inventories/lab_known_hosts").write_text("")
    data = inventory_data("vagrant", hosts, {"node1": IPv4Address("192.168.56.11"),
                                             "node2": IPv4Address("192.168.56.12")},
                          tmp_path / "inventories/lab_known_hosts", tmp_path / "inventories")
    assert data["ssh"] == {"user": "vagrant", "become": True, "port": 2222,
                           "key": str(root / "my lab/.vagrant/machines/node1/virtualbox/private_key"),
                           "known_hosts": "lab_known_hosts"}
    assert data["nodes"] == [
        {"name": "node1", "address": "192.168.56.11", "ssh_host": "127.0.0.1"},
        {"name": "node2", "address": "192.168.56.12", "ssh_host": "127.0.0.1", "port": 2200,
         "key": str(root / "node2_key")}]
    inv = inventory.parse(yaml.safe_dump(data), "inv.yaml", tmp_path / "inventories")
    n1, n2 = inv.nodes
    assert (n1.address, n1.ssh_host, n1.ssh.port, n1.ssh.user, n1.ssh.become) == \
        (IPv4Address("192.168.56.11"), "127.0.0.1", 2222, "vagrant", True)
    assert (n2.address, n2.ssh.port, n2.ssh.key) == (IPv4Address("192.168.56.12"), 2200, root / "node2_key")
    assert n1.ssh.known_hosts == tmp_path / "inventories/lab_known_hosts"


def test_root_nodes_do_not_become_and_hostname_equal_to_address_is_not_repeated(tmp_path):
    (tmp_path / "kh").write_text("")
    hosts = [SshHost("n1", "10.0.0.1", "root"), SshHost("n2", "10.0.0.2", "admin", jump="ops@203.0.113.5:22")]
    data = inventory_data("x", hosts, {"n1": IPv4Address("10.0.0.1"), "n2": IPv4Address("10.0.0.2")},
                          tmp_path / "kh", None)
    assert data["ssh"] == {"user": "root", "become": False, "known_hosts": str(tmp_path / "kh")}
    assert data["nodes"] == [{"name": "n1", "address": "10.0.0.1"},
                             {"name": "n2", "address": "10.0.0.2", "user": "admin", "become": True}]


# ---- host keys ------------------------------------------------------------------------------------


def test_known_hosts_pins_new_keys_keeps_known_ones_and_refuses_changed_ones(tmp_path):
    path = tmp_path / "known_hosts"
    path.write_text("# mine\n10.0.0.9 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBvQvhN5Z4aJXMbxGb4aEV72RyjyJDOBxFtgeOpsQmmV")
    key, other = paramiko.ECDSAKey.generate(), paramiko.ECDSAKey.generate()
    known = KnownHosts(path)
    assert known.pin("[127.0.0.1]:2222", key, "node1") is True
    assert known.pin("[127.0.0.1]:2222", key, "node1") is False
    assert known.known_types("[127.0.0.1]:2222") == ["ecdsa-sha2-nistp256"]
    assert known.text.splitlines()[:2] == ["# mine", "10.0.0.9 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBvQvhN5Z4aJXMbx"
                                           "Gb4aEV72RyjyJDOBxFtgeOpsQmmV"]
    assert known.text.splitlines()[2] == f"[127.0.0.1]:2222 ecdsa-sha2-nistp256 {key.get_base64()}"
    with pytest.raises(LabError) as excinfo:
        known.pin("[127.0.0.1]:2222", other, "node1")
    assert one_line_error(excinfo).startswith("node1: host key of [127.0.0.1]:2222 has CHANGED")
    # What it writes, paramiko (and so the lab's transport) reads back.
    path.write_text(known.text)
    assert paramiko.HostKeys(str(path)).lookup("[127.0.0.1]:2222")["ecdsa-sha2-nistp256"] == key


# ---- Ansible --------------------------------------------------------------------------------------


def test_ansible_export_has_connection_vars_pinned_host_keys_and_pod_subnets(tmp_path):
    (tmp_path / "key").write_text("key")
    (tmp_path / "known_hosts").write_text("")
    inv = inventory.parse(textwrap.dedent("""
        cluster: {name: vagrant}
        ssh: {user: vagrant, become: true, key: key, known_hosts: known_hosts, jump: ops@203.0.113.5:22}
        nodes:
          - {name: node1, address: 192.168.56.11, ssh_host: 127.0.0.1}
          - {name: node2, address: 192.168.56.12, user: root, port: 2200, labels: {zone: b}}
        """), str(tmp_path / "inv.yaml"), tmp_path)
    data = yaml.safe_load(ansible_inventory(inv, {"node1": "10.244.0.0/24"}))
    group = data["cluster_lab"]
    assert group["vars"]["cluster_name"] == "vagrant" and group["vars"]["cluster_cidr"] == "10.244.0.0/16"
    hosts = group["children"]["nodes"]["hosts"]
    assert {k: v for k, v in hosts["node1"].items() if k != "ansible_ssh_common_args"} == {
        "ansible_host": "127.0.0.1", "ansible_port": 22, "ansible_user": "vagrant", "ansible_become": True,
        "ansible_ssh_private_key_file": str(tmp_path / "key"),
        "node_address": "192.168.56.11", "pod_subnet": "10.244.0.0/24"}
    pinned = (f"-o StrictHostKeyChecking=yes -o UserKnownHostsFile={tmp_path}/known_hosts -o "
              f"GlobalKnownHostsFile=/dev/null -o IdentityFile={tmp_path}/key -o IdentitiesOnly=yes")
    assert hosts["node1"]["ansible_ssh_common_args"] == \
        f"{pinned} -o 'ProxyCommand=ssh -W %h:%p -p 22 {pinned} ops@203.0.113.5'"  # the jump host pinned too
    assert (hosts["node2"]["ansible_user"], hosts["node2"]["ansible_become"], hosts["node2"]["ansible_port"]) == \
        ("root", False, 2200)
    assert "pod_subnet" not in hosts["node2"] and hosts["node2"]["node_labels"] == {"zone": "b"}


# ---- the command line -----------------------------------------------------------------------------


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("argv, message", [
    (["from-ssh-config", "/nonexistent/cfg"], "lab: error: /nonexistent/cfg: cannot read the ssh_config"),
    (["from-vagrant", "/nonexistent/dir"], "lab: error: /nonexistent/dir: no such folder"),
])
def test_cli_bad_input_is_one_line_exit_2(capsys, argv, message):
    code, out, err = run_cli(capsys, "inventory", *argv)
    assert code == 2 and out == ""
    assert err.startswith(message) and err.count("\n") == 1


def test_cli_without_vagrant_says_so(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    code, _, err = run_cli(capsys, "inventory", "from-vagrant", str(tmp_path))
    assert code == 2 and err.startswith("lab: error: vagrant is not installed") and err.count("\n") == 1


def test_cli_checks_name_and_network_before_connecting(capsys, tmp_path):
    cfg = tmp_path / "cfg"
    cfg.write_text("Host n1\n  HostName 192.0.2.1\n")
    code, _, err = run_cli(capsys, "inventory", "from-ssh-config", str(cfg), "--name", "Bad_Name")
    assert code == 2 and "--name: 'Bad_Name' is not a valid lab name" in err
    code, _, err = run_cli(capsys, "inventory", "from-ssh-config", str(cfg), "--network", "nope")
    assert code == 2 and "--network: 'nope' is not an IPv4 CIDR" in err


def test_cli_export_prints_the_lab_for_ansible(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("LAB_STATE_DIR", str(tmp_path / "state"))
    (tmp_path / "inv.yaml").write_text("cluster: {name: demo}\nnodes: [{name: n1, address: 10.0.0.1}]\n")
    code, out, _ = run_cli(capsys, "inventory", "export", "--format", "ansible", "-i", str(tmp_path / "inv.yaml"))
    assert code == 0
    assert yaml.safe_load(out)["cluster_lab"]["children"]["nodes"]["hosts"]["n1"]["ansible_host"] == "10.0.0.1"

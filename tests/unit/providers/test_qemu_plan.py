"""The pure plan of real VMs on this machine (providers/qemu.py): qemu's command line, the seed, the taps,
the accelerator and the memory check."""

from ipaddress import IPv4Network
from pathlib import Path

import pytest

from orchestrator.core.errors import InputError
from orchestrator.core.model import Emulated
from orchestrator.providers.emulated_plan import layout
from orchestrator.providers.image import CachedImage
from orchestrator.providers.qemu import (VmPaths, choose_accel, memory_problem, qemu_command, repo_command,
        seed_files, tap_commands)


LAY = layout("vms", Emulated(provider="qemu"), 2, IPv4Network("198.18.3.0/24"))
IMAGE = CachedImage("k", Path("/cache/k"), Path("/cache/k/disk.img"), Path("/cache/k/vmlinuz"),
                    Path("/cache/k/initrd.img"), {}, 0)


def command(accel="tcg"):
    return qemu_command(LAY, LAY.nodes[0], IMAGE, VmPaths(Path("/lab/nodes/node1")), accel, 1024)


def test_qemu_runs_inside_the_underlay_namespace_with_a_tap_and_no_user_network():
    argv = command()
    assert argv[:5] == ["ip", "netns", "exec", "vms-underlay", "qemu-system-x86_64"]
    assert "-nodefaults" in argv and "-no-user-config" in argv
    netdevs = [argv[i + 1] for i, arg in enumerate(argv) if arg in ("-netdev", "-nic", "-net")]
    assert netdevs == ["tap,id=net0,ifname=node1,script=no,downscript=no"]
    assert not any("slirp" in arg or arg.startswith("user") for arg in argv)
    assert f"virtio-net-pci,netdev=net0,mac={LAY.nodes[0].mac}" in argv


def test_qemu_boots_the_image_kernel_with_an_overlay_and_the_seed_and_survives_a_reboot():
    argv = command()
    assert argv[argv.index("-kernel") + 1] == "/cache/k/vmlinuz"
    assert argv[argv.index("-initrd") + 1] == "/cache/k/initrd.img"
    assert "root=/dev/vda" in argv[argv.index("-append") + 1]
    drives = [argv[i + 1] for i, arg in enumerate(argv) if arg == "-drive"]
    assert drives == ["file=/lab/nodes/node1/disk.qcow2,if=virtio,format=qcow2",
                      "file=/lab/nodes/node1/seed.img,if=virtio,format=raw,readonly=on"]
    assert "-no-reboot" not in argv  # a reboot from inside restarts the guest in the same qemu
    assert argv[argv.index("-pidfile") + 1] == "/lab/nodes/node1/qemu.pid" and "-daemonize" in argv
    assert argv[argv.index("-accel") + 1] == "tcg,thread=multi"
    assert argv[argv.index("-cpu") + 1] == "max"
    kvm = command("kvm")
    assert kvm[kvm.index("-accel") + 1] == "kvm" and kvm[kvm.index("-cpu") + 1] == "host"


def test_the_seed_makes_the_node_with_its_address_keys_and_name():
    node = LAY.nodes[1]
    files = seed_files(LAY, node, "PRIVATE", "ssh-ed25519 AAAA root@node2\n", "ssh-ed25519 BBBB lab\n")
    assert files["/etc/hostname"] == ("node2\n", 0o644)
    assert files["/etc/ssh/ssh_host_ed25519_key"] == ("PRIVATE", 0o600)
    assert files["/root/.ssh/authorized_keys"] == ("ssh-ed25519 BBBB lab\n", 0o600)
    network = files["/etc/systemd/network/10-cluster-lab.network"][0]
    assert f"MACAddress={node.mac}" in network and "Address=198.18.3.12/24" in network
    assert "Gateway=198.18.3.254" in network  # the lab's router, which has no default route


def test_each_vm_gets_a_tap_on_the_underlay_bridge_named_after_it():
    [cmd] = tap_commands(LAY, LAY.nodes)
    assert cmd.argv == ("ip", "-n", "vms-underlay", "-batch", "-")
    assert cmd.stdin.splitlines() == ["tuntap add dev node1 mode tap", "link set node1 mtu 1500 master br0 up",
                                      "tuntap add dev node2 mode tap", "link set node2 mtu 1500 master br0 up"]
    assert tap_commands(LAY, []) == []


def test_the_macs_are_stable_and_distinct():
    again = layout("vms", Emulated(provider="qemu"), 2, IPv4Network("198.18.3.0/24"))
    assert [n.mac for n in again.nodes] == [n.mac for n in LAY.nodes] and LAY.nodes[0].mac != LAY.nodes[1].mac
    assert int(LAY.nodes[0].mac.split(":")[0], 16) & 0b11 == 0b10  # locally administered, unicast


@pytest.mark.parametrize("requested,device,works,chosen", [
    ("auto", True, True, "kvm"), ("auto", True, False, "tcg"), ("auto", False, None, "tcg"),
    ("tcg", True, True, "tcg"), ("kvm", True, True, "kvm"),
])
def test_the_accelerator_is_kvm_only_where_a_probe_booted_under_it(requested, device, works, chosen):
    assert choose_accel(requested, device, works)[0] == chosen


@pytest.mark.parametrize("device,works,words", [(False, None, "no /dev/kvm"), (True, False, "does not boot here")])
def test_asking_for_kvm_where_it_cannot_work_is_a_clear_error(device, works, words):
    with pytest.raises(InputError, match=words):
        choose_accel("kvm", device, works)


def test_more_memory_than_the_machine_has_is_refused_with_a_way_out():
    assert memory_problem(3, 1024, 8000) is None
    problem = memory_problem(4, 4096, 8000)
    assert problem.startswith("4 VMs x 4096 MiB = 16384 MiB, but this machine has 8000 MiB available")
    assert "--memory 1872" in problem and "at most 1 nodes" in problem


def test_vms_get_packages_only_from_the_lab_router():
    files = seed_files(LAY, LAY.nodes[0], "K", "P", "A")
    assert files["/etc/apt/sources.list.d/cluster-lab.list"] == (
        "deb [trusted=yes] http://198.18.3.254:3142/ ./\n", 0o644)
    argv = repo_command(LAY, IMAGE)
    assert argv[:4] == ["ip", "netns", "exec", "vms-router"]
    assert argv[-6:] == ["http.server", "3142", "--bind", "198.18.3.254", "--directory", "/cache/k/debs"]

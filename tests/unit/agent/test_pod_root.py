"""A pod's process and `lab exec` as command lines: its own UTS namespace and hostname, the busybox root of a
busybox image, and the wget that keeps -T working on Debian's busybox."""

import os
import subprocess

import pytest

from orchestrator.agent.podroot import WGET, enter_argv, hostname_of, hosts_file, launch_argv

LIB = "/var/lib/cluster-lab/demo"


def test_the_hostname_is_the_pods_name_cut_as_kubernetes_cuts_it():
    assert hostname_of("web-7d9f-x2k4q") == "web-7d9f-x2k4q"
    assert hostname_of("a" * 62 + "-b" + "c" * 10) == "a" * 62  # 63 characters, no trailing '-'
    assert "10.244.1.4\tweb" in hosts_file("web", "10.244.1.4").splitlines()


def test_a_pods_process_gets_a_uts_namespace_and_for_busybox_its_root():
    pod = {"name": "bb", "netns": "demo-default-bb-0123456789",
           "image_root": {"base": "busybox", "tools": ["nc", "curl"]}}
    argv = launch_argv(LIB, pod, ["python3", "agent.pyz", "serve"])
    assert argv[:7] == ["ip", "netns", "exec", "demo-default-bb-0123456789", "unshare", "--uts", "--"]
    init = argv[argv.index("pod-init"):]
    assert init == ["pod-init", "--hostname", "bb", "--busybox", "--tool", "nc", "--tool", "curl", "--",
                    "python3", "agent.pyz", "serve"]
    plain = launch_argv(LIB, dict(pod, image_root={"base": "node", "tools": []}), ["dnsmasq"])
    assert "--busybox" not in plain and plain[-2:] == ["--", "dnsmasq"]


def test_exec_enters_the_pods_namespaces_and_chroots_into_a_busybox_root():
    record = {"name": "bb", "pid": 4242, "image_root": {"base": "busybox", "tools": []}}
    argv = enter_argv(LIB, record, ["wget", "-qO-", "http://web"])
    assert argv[:8] == ["nsenter", "-t", "4242", "-n", "-u", "-m", "--", "env"]
    assert argv[-5:] == ["chroot", f"{LIB}/podroot", "wget", "-qO-", "http://web"]
    assert "HOSTNAME=bb" in argv
    node_root = enter_argv(LIB, dict(record, image_root={"base": "node"}), ["dig", "web"])
    assert node_root == ["nsenter", "-t", "4242", "-n", "-u", "-m", "--", "dig", "web"]


def test_exec_sees_the_containers_env():
    record = {"name": "bb", "pid": 4242, "image_root": {"base": "busybox", "tools": []}, "env": ["COLOR=blue"]}
    argv = enter_argv(LIB, record, ["env"])
    assert "COLOR=blue" in argv[argv.index("-i"):argv.index("chroot")]  # after -i: not cleared
    node_root = enter_argv(LIB, dict(record, image_root={"base": "node"}), ["printenv", "COLOR"])
    assert node_root[7:] == ["env", "--", "COLOR=blue", "printenv", "COLOR"]


@pytest.mark.parametrize("args, expected", [
    (["-qO-", "http://web"], "wget -qO- http://web"),
    (["-qO-", "-T", "2", "http://web"], "timeout 2 | wget -qO- http://web"),
    (["-T5", "-qO-", "http://web"], "timeout 5 | wget -qO- http://web"),
    (["--timeout=3", "http://web"], "timeout 3 | wget http://web"),
    (["--timeout", "4", "-O", "out file", "http://web"], "timeout 4 | wget -O out file http://web"),
])
def test_wget_keeps_its_timeout_with_busyboxs_timeout(tmp_path, args, expected):
    """Stand-ins for busybox and timeout print what they were given."""
    (tmp_path / "busybox").write_text('#!/bin/sh\necho "$@"\n')
    (tmp_path / "timeout").write_text('#!/bin/sh\nprintf "timeout %s | " "$1"; shift; exec "$@"\n')
    (tmp_path / "wget").write_text(WGET)
    for name in ("busybox", "timeout", "wget"):
        os.chmod(tmp_path / name, 0o755)
    env = {"PATH": f"{tmp_path}:/usr/bin:/bin"}
    proc = subprocess.run([str(tmp_path / "wget"), *args], env=env, capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == expected

"""A pod's own hostname and file system, and commands run in it.

A pod's process runs in the pod's network namespace and in a mount namespace of its own (both from `ip netns
exec`, which also mounts the pod's /etc files from /etc/netns/<netns>/ over the node's), in a UTS namespace
of its own whose hostname is the pod's name (`unshare --uts`), then `pod-init` names it and, for a busybox
image, mounts the busybox root on the lab's podroot folder, in the pod's mount namespace only. `lab exec`
enters those namespaces through the pod's process (nsenter) and, for a busybox root, chroots into it; the
command is ended when the SSH session that asked for it goes (Ctrl-C on `lab exec`).
"""

from __future__ import annotations

import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
from typing import NoReturn

from .contract import AGENT_FILE, write_durably

ROOT_DIR = "podroot"  # an empty folder in the lab's; each busybox pod mounts its own root on it, in its own namespace
BUSYBOX = "busybox"  # layers/pods/images.py BUSYBOX
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
HOSTNAME_MAX = 63  # Kubernetes cuts a pod's hostname to 63 characters
ETC_FILES = ("resolv.conf", "hosts", "hostname")  # the pod's own, in /etc/netns/<netns>/
LIBRARY_DIRS = ("/lib", "/lib64", "/usr/lib", "/usr/lib64")  # what the node's binaries in a busybox root load
STOP_SECONDS = 2.0
# /usr/bin/wget of a busybox root (before /bin in PATH): Debian's busybox-static 1.35 is built without wget's
# timeout feature, and its wget dies of SIGSEGV on -T, which students use (wget -qO- -T 2 http://web); the
# same limit is kept by busybox's timeout instead. Busybox's sh runs its own applet whatever PATH says, so
# inside `sh` the crash stays (docs/kubectl.md)
WGET = """#!/bin/sh
# busybox wget; its -T SECONDS (--timeout) kept by busybox's timeout (cluster-lab: Debian's wget crashes on -T)
limit=
want=
for arg in "$@"; do
    shift
    if [ -n "$want" ]; then limit=$arg; want=; continue; fi
    case $arg in
        -T|--timeout) want=1 ;;
        -T*) limit=${arg#-T} ;;
        --timeout=*) limit=${arg#--timeout=} ;;
        *) set -- "$@" "$arg" ;;
    esac
done
[ -z "$limit" ] && exec busybox wget "$@"
timeout "$limit" busybox wget "$@"
code=$?
[ "$code" = 143 ] || exit "$code"
echo "wget: download timed out" >&2
exit 1
"""


class PodRootError(Exception):
    """A pod's root cannot be made on this node."""


def hostname_of(pod_name: str) -> str:
    """The pod's hostname: its name, cut to 63 characters without a trailing '-' or '.', as Kubernetes does."""
    return pod_name[:HOSTNAME_MAX].rstrip("-.")


def pod_etc(netns: str) -> str:
    return f"/etc/netns/{netns}"


def hosts_file(name: str, ip: str) -> str:
    """A pod's /etc/hosts, as a kubelet writes it: localhost, and the pod's own name at its address."""
    return (f"# Kubernetes-managed hosts file (cluster-lab).\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost "
            f"ip6-loopback\n{ip}\t{hostname_of(name)}\n")


def write_pod_etc(netns: str, resolv_conf: str, name: str, ip: str) -> None:
    """The pod's /etc/resolv.conf, /etc/hosts and /etc/hostname, which `ip netns exec` mounts over the node's
    (and pod-init copies into a busybox root)."""
    files = {"hosts": hosts_file(name, ip), "hostname": hostname_of(name) + "\n",
             **({"resolv.conf": resolv_conf} if resolv_conf else {})}
    for file_name, text in files.items():
        write_durably(os.path.join(pod_etc(netns), file_name), text)


def refresh_busybox_hosts(lib: str, record: dict) -> None:
    """After the pod got a new address: its busybox root's copy of /etc/hosts, reached through its process's
    root (/proc/PID/root: the pod's own mounts)."""
    copy = f"/proc/{record.get('pid')}/root{lib}/{ROOT_DIR}/etc/hosts"
    if (record.get("image_root") or {}).get("base") == BUSYBOX and os.path.exists(copy):
        with open(copy, "w") as handle:
            handle.write(hosts_file(record["name"], record["ip"]))


def remove_pod_etc(netns: str) -> None:
    for name in ETC_FILES:
        try:
            os.unlink(os.path.join(pod_etc(netns), name))
        except FileNotFoundError:
            pass
    try:
        os.rmdir(pod_etc(netns))
    except OSError:
        pass


def check_image_root(pod: dict) -> None:
    """Raise PodRootError when this node lacks what the pod's image root takes."""
    root = pod.get("image_root") or {}
    if root.get("base") != BUSYBOX:
        return
    for tool in [BUSYBOX, *root.get("tools", [])]:
        if shutil.which(tool) is None:
            raise PodRootError(f"pod {pod['key']}: its image {pod.get('image') or ''} takes {tool}, which this node "
                               f"lacks: `lab bootstrap` installs it")


def launch_argv(lib: str, pod: dict, argv: list[str]) -> list[str]:
    """`argv` as pod `pod`'s process: in its network and mount namespaces, a UTS namespace of its own, and
    the root its image names."""
    init = [sys.executable, os.path.join(lib, AGENT_FILE), "pod-init", "--hostname", hostname_of(pod["name"])]
    root = pod.get("image_root") or {}
    if root.get("base") == BUSYBOX:
        init += ["--busybox", *(arg for tool in root.get("tools", []) for arg in ("--tool", tool))]
    return ["ip", "netns", "exec", pod["netns"], "unshare", "--uts", "--", *init, "--", *argv]


def pod_init(lib: str, hostname: str, busybox: bool, tools: list[str], argv: list[str]) -> NoReturn:
    """In the pod's new UTS namespace: name it, make the busybox root where the image has one, then become
    `argv` (the same PID: the pod's record names it)."""
    socket.sethostname(hostname)
    if busybox:
        make_busybox_root(os.path.join(lib, ROOT_DIR), tools)
    os.execvp(argv[0], argv)


def mount(*args: str) -> None:
    proc = subprocess.run(["mount", *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        raise PodRootError(f"mount {' '.join(args)}: {proc.stderr.strip()}")


def bind_file(source: str, target: str) -> None:
    open(target, "a").close()
    mount("--bind", "-o", "ro", source, target)


def make_busybox_root(root: str, tools: list[str]) -> None:
    """A root of busybox's applets on `root` (a tmpfs, in this mount namespace only): /bin of applet links
    to the node's busybox, the node's libraries for `tools` (node binaries in /usr/bin) and a dynamically
    linked busybox, the pod's /etc files, /proc, /dev and a /tmp."""
    busybox = os.path.realpath(shutil.which(BUSYBOX) or "")
    mount("-t", "tmpfs", "-o", "mode=0755,size=64m", "cluster-lab-pod", root)
    for folder in ("bin", "sbin", "usr/bin", "usr/sbin", "etc", "proc", "dev", "root", "tmp", "var", "home"):
        os.makedirs(os.path.join(root, folder), exist_ok=True)
    os.chmod(os.path.join(root, "tmp"), 0o1777)
    bind_file(busybox, os.path.join(root, "bin", BUSYBOX))
    applets = subprocess.run([busybox, "--list"], capture_output=True, text=True, check=True).stdout.split()
    for applet in applets:
        if applet != BUSYBOX and not os.path.lexists(os.path.join(root, "bin", applet)):
            os.symlink(BUSYBOX, os.path.join(root, "bin", applet))
    for folder in LIBRARY_DIRS:
        target = root + folder
        if os.path.islink(folder):
            os.symlink(os.readlink(folder), target)
        elif os.path.isdir(folder):
            os.makedirs(target, exist_ok=True)
            mount("--rbind", "-o", "ro", folder, target)
    for tool in tools:
        bind_file(os.path.realpath(shutil.which(tool) or tool), os.path.join(root, "usr/bin", tool))
    with open(os.path.join(root, "usr/bin/wget"), "w") as handle:
        handle.write(WGET)
    os.chmod(os.path.join(root, "usr/bin/wget"), 0o755)
    etc = os.path.join(root, "etc")
    for name in ETC_FILES:
        if os.path.exists(os.path.join("/etc", name)):
            shutil.copyfile(os.path.join("/etc", name), os.path.join(etc, name))
    for name, text in (("passwd", "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n"),
                       ("group", "root:x:0:\nnobody:x:65534:\n"), ("nsswitch.conf", "hosts: files dns\n")):
        with open(os.path.join(etc, name), "w") as handle:
            handle.write(text)
    mount("-t", "proc", "proc", os.path.join(root, "proc"))
    mount("--rbind", "/dev", os.path.join(root, "dev"))


def enter_argv(lib: str, record: dict, command: list[str]) -> list[str]:
    """`command` in the namespaces of the pod `record` describes (through its process), in its image's root."""
    argv = ["nsenter", "-t", str(record["pid"]), "-n", "-u", "-m", "--"]
    pod_env = list(record.get("env") or [])  # the container's env, as the kubelet resolved it
    if (record.get("image_root") or {}).get("base") != BUSYBOX:
        return [*argv, "env", "--", *pod_env, *command] if pod_env else [*argv, *command]
    env = [f"PATH={PATH}", "HOME=/root", f"HOSTNAME={hostname_of(record['name'])}",
           *([f"TERM={os.environ['TERM']}"] if os.environ.get("TERM") else []), *pod_env]
    # the node's env and chroot: chroot finds `command` by PATH in the root (/usr/bin/wget before /bin/wget),
    # where busybox's own env would run its applet whatever PATH says
    return [*argv, "env", "-i", *env, "chroot", os.path.join(lib, ROOT_DIR), *command]


def run_in_session(argv: list[str]) -> int:
    """Run `argv` with this process's stdin, stdout and stderr, and end it (its whole process group) when the
    SSH session that asked for it goes: the caller's end of stdout or stderr closed (sshd closes them when
    the client closes the channel: Ctrl-C on `lab exec`, or its own time limit). Its exit code, or 128 + the
    signal that ended it, as a shell reports it."""
    try:
        child = subprocess.Popen(argv, start_new_session=True)
    except OSError as exc:
        print(f"node agent: {argv[0]}: {exc.strerror}", file=sys.stderr)
        return 127
    poller = select.poll()
    for fd in (1, 2):
        poller.register(fd, 0)  # POLLERR and POLLHUP are always reported: the reading end is gone
    while child.poll() is None:
        if poller.poll(100):
            stop(child)
            break
    code = child.wait()
    return 128 - code if code < 0 else code


def stop(child: subprocess.Popen) -> None:
    """End `child`'s process group: SIGHUP (as a hung-up terminal would), then SIGKILL for what stays."""
    for sig in (signal.SIGHUP, signal.SIGTERM):
        try:
            os.killpg(child.pid, sig)
        except ProcessLookupError:
            return
    deadline = time.monotonic() + STOP_SECONDS
    while child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        os.killpg(child.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass

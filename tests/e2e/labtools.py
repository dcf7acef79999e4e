"""Helpers for end-to-end tests: run the `lab` CLI, look for a lab's leftovers, snapshot the root namespace.

The leftover check reads the kernel directly (ip, /sys, /proc), not through the provider's own code.
"""

from __future__ import annotations

import json
import os
import random
import re
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml


def lab_cli(*args: str, check: bool = False, timeout: float = 120, **kwargs) -> subprocess.CompletedProcess:
    """Run `lab ARGS...` as a user would (a new process), with this test session's state folder; its stdin is
    `input`, else nothing (`lab exec -i` reads it)."""
    if "input" not in kwargs:
        kwargs.setdefault("stdin", subprocess.DEVNULL)
    proc = subprocess.run([sys.executable, "-m", "orchestrator.cli", *args], capture_output=True, text=True,
                          timeout=timeout, **kwargs)
    if check and proc.returncode != 0:
        raise AssertionError(f"lab {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


def unique_lab_name(prefix: str = "t") -> str:
    return prefix + secrets.token_hex(3)


def sh(*argv: str) -> str:
    return subprocess.run(argv, capture_output=True, text=True).stdout


def namespaces_of(lab: str) -> list[str]:
    return [line.split()[0] for line in sh("ip", "netns", "list").splitlines() if line.startswith(f"{lab}-")]


def ns_inode(pid: int, kind: str):
    try:
        return os.stat(f"/proc/{pid}/ns/{kind}").st_ino
    except OSError:
        return None


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


@dataclass
class LabProcesses:
    """The processes of a lab, found from its namespaces: to check later that none is left."""

    pids: set = field(default_factory=set)
    mount_namespaces: set = field(default_factory=set)

    @classmethod
    def of(cls, lab: str) -> "LabProcesses":
        """The processes in the lab's namespaces, in its nodes' mount namespaces, and those that see a
        node's private /run (pods and lessons run in mount namespaces of their own, copied from the node's)."""
        found = cls()
        own_mnt = ns_inode(os.getpid(), "mnt")
        for ns in namespaces_of(lab):
            for pid in sh("ip", "netns", "pids", ns).split():
                found.pids.add(int(pid))
                mnt = ns_inode(int(pid), "mnt")
                if mnt and mnt != own_mnt:
                    found.mount_namespaces.add(mnt)
        found.pids |= set(processes_seeing(rf"{re.escape(lab)}-\S+-run"))
        return found

    def still_running(self) -> list[int]:
        in_mnt = {int(p) for p in os.listdir("/proc") if p.isdigit() and ns_inode(int(p), "mnt") in
                  self.mount_namespaces}
        return sorted(pid for pid in self.pids | in_mnt if alive(pid))


def processes_seeing(tmpfs: str) -> list[int]:
    """The processes that see a tmpfs whose source matches regular expression `tmpfs` (an emulated node's /run
    is named `<lab>-<node>-run`)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            mounts = Path(f"/proc/{pid}/mountinfo").read_text()
        except OSError:
            continue
        if re.search(rf" - tmpfs {tmpfs} ", mounts):
            found.append(int(pid))
    return found


def processes_of_node(lab: str, node: str) -> list[int]:
    """The processes of emulated node `node`: all that see its own /run (the pods' servers too)."""
    return processes_seeing(re.escape(f"{lab}-{node}-run"))


def leftovers(lab: str, state_dir: Path, processes: LabProcesses) -> list[str]:
    """Everything of lab `lab` still on this machine; empty when it is gone completely."""
    found = [f"namespace {ns}" for ns in namespaces_of(lab)]
    found += [f"link {link.name}" for link in Path("/sys/class/net").iterdir() if link.name.startswith(f"{lab}-")]
    found += [f"mount {line.split()[4]}" for line in Path("/proc/self/mountinfo").read_text().splitlines()
              if f"/{lab}-" in line.split()[4]]
    found += [f"process {pid}" for pid in processes.still_running()]
    if (state_dir / lab).exists():
        found.append(f"state folder {state_dir / lab}")
    return found


def kernel_link_route(line: str) -> bool:
    """An IPv6 route the kernel makes for each link (link-local, multicast, anycast)."""
    words = line.split()
    return bool(words) and (words[0] in ("fe80::/64", "multicast", "anycast") or
                            (words[0] == "local" and len(words) > 1 and words[1].startswith("fe80:")))


def other_labs_link(name: str, lab: str) -> bool:
    """Whether link `name` is the root namespace's one link of a lab other than `lab` (`<lab>-host`), which
    a test running beside this one makes and removes meanwhile."""
    return bool(re.fullmatch(r"[a-z0-9]+-host", name)) and name != f"{lab}-host"


def root_namespace_snapshot(lab: str) -> dict[str, str]:
    """Routes, rules, links, firewall rules and forwarding sysctls of the root namespace, as far as they are
    not those of labs other than `lab` (the tests run in parallel)."""
    def own(text: str) -> str:
        return "".join(line for line in text.splitlines(True)
                       if not any(other_labs_link(word, lab) for word in line.split()))

    snap = {
        "routes4": own(sh("ip", "-4", "route", "show", "table", "all")),
        # without the IPv6 routes the kernel adds for every link by itself: "links" covers the links, and
        # another lab's link gets them a moment after it appears
        "routes6": own("".join(line for line in sh("ip", "-6", "route", "show", "table", "all").splitlines(True)
                               if not kernel_link_route(line))),
        "rules4": sh("ip", "-4", "rule"),
        "rules6": sh("ip", "-6", "rule"),
        "links": " ".join(sorted(p.name for p in Path("/sys/class/net").iterdir() if not other_labs_link(p.name, lab))),
        "nft": sh("nft", "list", "ruleset"),
    }
    for key in ("net/ipv4/ip_forward", "net/ipv4/conf/all/rp_filter", "net/ipv4/conf/all/forwarding"):
        snap[key] = Path("/proc/sys", key).read_text()
    return snap


def copy_inventory(lab, folder: Path, cluster: dict | None = None, **ssh_changes) -> Path:
    """A copy of a running lab's inventory in `folder` (key paths made absolute), with changes."""
    data = yaml.safe_load(Path(lab.inventory_path).read_text())
    data["ssh"]["key"] = str(lab.state_dir / lab.name / "id_ed25519")
    data["ssh"]["known_hosts"] = str(lab.state_dir / lab.name / "known_hosts")
    data["ssh"].update(ssh_changes)
    for key, value in (cluster or {}).items():
        if isinstance(value, dict):
            data["cluster"].setdefault(key, {}).update(value)
        else:
            data["cluster"][key] = value
    path = folder / "inventory.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def node_snapshot(transport, node: str) -> dict:
    """What `lab destroy` must put back on a node, emulated or a real VM: links, routes, neighbours, rules,
    files (CNI, the lab's folder, modules-load.d, sysctl.d, systemd units), namespaces, the lab's units,
    sysctls, and the modules the lab loads itself (br_netfilter, vxlan; those iptables pulls in stay loaded)."""
    # (links without their peer's index: a node made again by `lab up` has the same links, numbered anew)
    script = ("ip -o link | awk -F': ' '{print $2}' | sed 's/@.*//' | sort; echo ---; ip route; echo ---; "
              "ip neigh show nud permanent | sort; echo ---; iptables-save | grep -E '^(-A|:[A-Z])' | "
              "grep -v -E '^:(INPUT|OUTPUT|FORWARD|PREROUTING|POSTROUTING) ' | sort; echo ---; "
              # nftables tables but the ones iptables-nft makes for iptables itself
              "nft list tables 2>&1 | grep -v -E '^table ip6? (filter|nat|mangle|raw|security)$'; echo ---; "
              "ls -AR /etc/cni /var/lib/cni 2>&1; ls -A /var/lib /etc/modules-load.d /etc/sysctl.d /etc/systemd/system "
              "/etc/systemd/system/multi-user.target.wants 2>&1; echo ---; ip netns list; echo ---; "
              "systemctl list-unit-files 'cluster-lab-*' --no-legend 2>&1; echo ---; "
              "sysctl net.ipv4.ip_forward net.bridge.bridge-nf-call-iptables 2>&1; echo ---; "
              "cut -d' ' -f1 /proc/modules | grep -E '^(br_netfilter|vxlan)$' | sort; true")
    text = transport.run(node, ["sh", "-c", script]).stdout
    return dict(zip(["links", "routes", "neighbours", "rules", "nft", "files", "netns", "units", "sysctls",
                     "modules"], text.split("---\n"), strict=False))



def wait_for(condition, seconds: float = 30.0, interval: float = 0.05) -> bool:
    """Whether `condition()` becomes true within `seconds`: a wait on the condition, not on the clock (the
    deadline only keeps a broken lab from hanging the suite)."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)
    return True


def drill_rng(what: str) -> random.Random:
    """The fault drill's random source: seeded from LAB_DRILL_SEED, else drawn and printed, so that a failing
    drill can be replayed."""
    seed = int(os.environ.get("LAB_DRILL_SEED") or random.SystemRandom().randrange(1_000_000))
    print(f"fault drill ({what}): seed {seed}; LAB_DRILL_SEED={seed} replays it")
    return random.Random(seed)


# HTTP requests from inside a network namespace (a lab's outside host, a test's own): each request as the
# client writes it (method, path with its query, Host and other headers), each answer as
# [status, the pod that answered (its X-Pod-Name), Location] or [0, None, the error].
HTTP_CLIENT = """
import http.client, json, sys
address, port = sys.argv[1], int(sys.argv[2])
for request in json.loads(sys.stdin.read()):
    try:
        connection = http.client.HTTPConnection(address, port, timeout=5)
        connection.putrequest(request.get("method", "GET"), request.get("path", "/"), skip_host=True)
        connection.putheader("Host", request["host"])
        for name, value in request.get("headers", {}).items():
            connection.putheader(name, value)
        connection.endheaders()
        answer = connection.getresponse()
        answer.read()
        print(json.dumps([answer.status, answer.getheader("X-Pod-Name"), answer.getheader("Location")]), flush=True)
        connection.close()
    except OSError as exc:
        print(json.dumps([0, None, str(exc)]), flush=True)
"""


def http_requests(netns: str, address: str, requests: list[dict], port: int = 80) -> list[list]:
    """Send `requests` one after the other from `netns` to address:port; their answers, in order."""
    out = subprocess.run(["ip", "netns", "exec", netns, sys.executable, "-c", HTTP_CLIENT, address, str(port)],
                         input=json.dumps(requests), capture_output=True, text=True, check=True).stdout
    return [json.loads(line) for line in out.splitlines()]

"""The pod network's throughput ceiling on this machine: the same kernel parts built by hand, no lab.

Two "nodes" (network namespaces) on a bridge in a third, each with a cni0 bridge and a "pod" on a
veth, joined by a flannel-style VXLAN device (static neighbour, FDB entry, onlink route) or by
host-gw routes; then the same with the rules a Kubernetes node has (conntrack, a masquerade rule, a
FORWARD rule per packet). Single-stream iperf3 (3 s, median of 3 runs taken in turns), pod to pod
against node to node, as bench/deploy.py measures the lab. If the lab's ratios match these, the
lab adds nothing and the ceiling is the parts on this machine.
Run as root: .venv/bin/python bench/throughput_by_hand.py
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import iperf_gbits, medians_in_turns, record  # noqa: E402

PREFIX = "handbench"  # every namespace this benchmark makes carries it
NODES = (1, 2)
# What a Kubernetes node adds on the path: conntrack (the nat table), a masquerade rule for traffic
# leaving the cluster, and a FORWARD rule every forwarded packet passes.
NODE_RULES = """*nat
:POSTROUTING ACCEPT [0:0]
-A POSTROUTING -s 10.77.0.0/16 ! -d 10.77.0.0/16 -j MASQUERADE
COMMIT
*filter
:FORWARD ACCEPT [0:0]
-A FORWARD -m conntrack --ctstate NEW -j ACCEPT
-A FORWARD -s 10.77.0.0/16 -j ACCEPT
COMMIT
"""


def ns(name: str) -> str:
    return f"{PREFIX}-{name}"


def sh(*argv: str, stdin: str | None = None) -> str:
    return subprocess.run(argv, input=stdin, capture_output=True, text=True, check=True).stdout


def inside(name: str, *argv: str, stdin: str | None = None) -> str:
    return sh("ip", "netns", "exec", ns(name), *argv, stdin=stdin)


def remove() -> None:
    for name in ["wire", *(f"n{n}" for n in NODES), *(f"p{n}" for n in NODES)]:
        subprocess.run(["ip", "netns", "del", ns(name)], capture_output=True)


def build(backend: str) -> None:
    """Two nodes on a bridge (the underlay), each with cni0, a pod, and the overlay between them."""
    sh("ip", "netns", "add", ns("wire"))
    sh("ip", "-n", ns("wire"), "link", "add", "br0", "type", "bridge")
    sh("ip", "-n", ns("wire"), "link", "set", "br0", "up")
    for n in NODES:
        node, pod, other = f"n{n}", f"p{n}", 3 - n
        for name in (node, pod):
            sh("ip", "netns", "add", ns(name))
            sh("ip", "-n", ns(name), "link", "set", "lo", "up")
        sh("ip", "link", "add", "eth0", "netns", ns(node), "type", "veth", "peer", "name", f"u{n}", "netns", ns("wire"))
        sh("ip", "-n", ns("wire"), "link", "set", f"u{n}", "master", "br0", "up")
        sh("ip", "-n", ns(node), "addr", "add", f"192.168.77.{n}/24", "dev", "eth0")
        sh("ip", "-n", ns(node), "link", "set", "eth0", "up")
        inside(node, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        sh("ip", "-n", ns(node), "link", "add", "cni0", "type", "bridge")
        sh("ip", "-n", ns(node), "addr", "add", f"10.77.{n}.1/24", "dev", "cni0")
        sh("ip", "-n", ns(node), "link", "set", "cni0", "up")
        sh("ip", "link", "add", "eth0", "netns", ns(pod), "type", "veth", "peer", "name", "vpod", "netns", ns(node))
        sh("ip", "-n", ns(node), "link", "set", "vpod", "master", "cni0", "up")
        mtu = "1450" if backend == "vxlan" else "1500"
        sh("ip", "-n", ns(pod), "addr", "add", f"10.77.{n}.2/24", "dev", "eth0")
        sh("ip", "-n", ns(pod), "link", "set", "eth0", "mtu", mtu, "up")
        sh("ip", "-n", ns(pod), "route", "add", "default", "via", f"10.77.{n}.1")
        if backend == "host-gw":
            sh("ip", "-n", ns(node), "route", "add", f"10.77.{other}.0/24", "via", f"192.168.77.{other}")
            continue
        sh("ip", "-n", ns(node), "link", "add", "flannel.1", "type", "vxlan", "id", "1", "local", f"192.168.77.{n}",
           "dev", "eth0", "dstport", "8472", "nolearning")
        sh("ip", "-n", ns(node), "link", "set", "flannel.1", "address", f"02:00:00:00:00:0{n}", "mtu", "1450", "up")
        sh("ip", "-n", ns(node), "addr", "add", f"10.77.{n}.0/32", "dev", "flannel.1")
        sh("ip", "-n", ns(node), "route", "add", f"10.77.{other}.0/24", "via", f"10.77.{other}.0", "dev", "flannel.1",
           "onlink")
        sh("ip", "-n", ns(node), "neigh", "add", f"10.77.{other}.0", "lladdr", f"02:00:00:00:00:0{other}", "dev",
           "flannel.1", "nud", "permanent")
        inside(node, "bridge", "fdb", "append", f"02:00:00:00:00:0{other}", "dev", "flannel.1", "dst",
               f"192.168.77.{other}")


def iperf(server: str, client: str, address: str) -> float:
    inside(server, "iperf3", "-s", "-1", "-D")
    time.sleep(0.3)
    return iperf_gbits(inside(client, "iperf3", "-c", address, "-t", "3", "-J"))


def main() -> None:
    lines = ["| backend | node rules | underlay | pod to pod | ratio |", "|---|---|---|---|---|"]
    try:
        for backend in ("vxlan", "host-gw"):
            remove()
            build(backend)
            for rules in (False, True):
                if rules:
                    for n in NODES:
                        inside(f"n{n}", "iptables-restore", "--noflush", stdin=NODE_RULES)
                underlay, pods = medians_in_turns(lambda: iperf("n2", "n1", "192.168.77.2"),
                                                  lambda: iperf("p2", "p1", "10.77.2.2"))
                lines.append(f"| {backend} | {'yes' if rules else 'no'} | {underlay:.2f} Gbit/s | {pods:.2f} Gbit/s | "
                             f"{pods / underlay:.2f} |")
                print(lines[-1], flush=True)
    finally:
        remove()
    lines += ["", "The same parts as the lab, built by hand (bench/throughput_by_hand.py): one iperf3 stream, 3 s, "
              "median of 3 runs taken in turns. Node rules: conntrack, one masquerade rule, two FORWARD rules, as a "
              "Kubernetes node has. Compare with bench/deploy.py's lab figures."]
    record("pod network throughput, the same parts by hand (bench/throughput_by_hand.py)", lines)


if __name__ == "__main__":
    main()

"""The node's part of a LoadBalancer in L2 mode (what MetalLB's speaker does): hold the addresses this node
announces, so that its kernel answers ARP for them, and tell the segment when one moves here.

The kernel mechanism: each address is put on the interface that holds the node's own address, as a /32 with
`scope host`. Linux answers ARP for any local address (arp_ignore 0, the default), so nothing has to keep
running for the address to be answered, and `ip addr` on the node shows who holds it; `scope host` keeps the
address from ever being picked as the source of the node's own traffic. The service rules reject whatever
reaches the address on a port the Service does not have. On every sync (three times on takeover) a gratuitous
ARP, a broadcast request for the address from the address, makes every neighbour cache on the segment point at
this node at once, instead of when its old entry goes stale.
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import struct
import subprocess

from .contract import ANNOUNCED, write_durably

GRATUITOUS_ARPS = 3  # a lost broadcast is not retried by anyone: send a few


class Link:
    def __init__(self, name: str, mac: str, addresses: list[dict]):
        addresses = [a for a in addresses if a.get("family") == "inet"]
        self.name, self.mac = name, mac
        self.own = {a.get("local") for a in addresses}
        self.singles = {a["local"] for a in addresses if a.get("prefixlen") == 32 and a.get("scope") == "host"}


def hold_addresses(lib: str, announce: dict, ranges: list, dry_run: bool = False) -> tuple[list[str], list[str]]:
    """Make this node hold exactly the LoadBalancer addresses `announce` (address -> node address) gives it; the
    addresses (taken, given up)."""
    record = os.path.join(lib, ANNOUNCED)
    ours = read_record(record)
    if not (announce or ranges or ours):  # the lab has no LoadBalancer address, and never put one here
        return [], []
    links = read_links()
    want = {}  # address -> the link holding the node address it goes with
    for address, node_address in announce.items():
        link = next((k for k in links if node_address in k.own), None)
        if link is not None:
            want[address] = link
    held = {a: k for k in links for a in k.singles if a in ours or in_ranges(a, ranges)}
    removed = sorted(a for a, k in held.items() if want.get(a) is not k)
    added = sorted(a for a, k in want.items() if held.get(a) is not k)
    if dry_run:
        return added, removed
    if added:  # known as the lab's before it is there: a command cut off after adding it still removes it later
        write_durably(record, "".join(f"{a}\n" for a in sorted(ours | set(want))))
    for address in removed:
        ip("addr", "del", f"{address}/32", "dev", held[address].name)
    for address in added:
        ip("addr", "add", f"{address}/32", "dev", want[address].name, "scope", "host")
    # every address it holds, not only those it just took: a node cut off for a while still holds its addresses,
    # and when it is elected again the segment's caches point at the node that held them meanwhile
    for round_number in range(GRATUITOUS_ARPS):
        for address, link in sorted(want.items()):
            if round_number == 0 or address in added:
                gratuitous_arp(link.name, link.mac, address)
    if ours != set(want):
        write_durably(record, "".join(f"{a}\n" for a in sorted(want)))
    return added, removed


def ip(*argv: str) -> None:
    proc = subprocess.run(["ip", *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if proc.returncode != 0:
        raise OSError(f"ip {' '.join(argv)}: {proc.stderr.decode(errors='replace').strip()}")


def read_links() -> list[Link]:
    """The node's interfaces, their MACs and IPv4 addresses (`ip -4` would leave the MACs out)."""
    proc = subprocess.run(["ip", "-j", "addr", "show"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if proc.returncode != 0:
        raise OSError(f"ip -j addr show: {proc.stderr.decode(errors='replace').strip()}")
    return [Link(link["ifname"], link.get("address", ""), link.get("addr_info") or [])
            for link in json.loads(proc.stdout or b"[]")]


def read_record(path: str) -> set[str]:
    try:
        with open(path) as handle:
            return {line.strip() for line in handle if line.strip()}
    except OSError:
        return set()


def in_ranges(address: str, ranges: list) -> bool:
    value = ipaddress.IPv4Address(address)
    return any(ipaddress.IPv4Address(first) <= value <= ipaddress.IPv4Address(last) for first, last in ranges)


def gratuitous_arp(interface: str, mac: str, address: str) -> None:
    """One broadcast ARP request for `address` from `address` (sender = target), the form every stack takes as
    an update of its cache entry."""
    hw = bytes.fromhex(mac.replace(":", ""))
    if len(hw) != 6:
        raise OSError(f"{interface} has no Ethernet address ({mac!r}): cannot announce {address} by ARP")
    addr = socket.inet_aton(address)
    arp = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, hw, addr, b"\x00" * 6, addr)
    frame = b"\xff" * 6 + hw + struct.pack("!H", 0x0806) + arp
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as raw:
        raw.bind((interface, 0))
        raw.send(frame)

"""The lab-policy table on paper: a new packet followed through the rules `enforcement.render_policy` wrote, as
the kernel would (pure). It reads only the rule shapes that module writes, and refuses any other, so the
unit tests can hold the rendered table to the semantics of `plan.verdict`, pair by pair."""

from __future__ import annotations

import re
from dataclasses import dataclass
from ipaddress import ip_address, ip_network
from typing import Any, Optional

TOKEN = re.compile(r'"[^"]*"|\{[^}]*\}|\S+')


class PolicyTraceError(ValueError):
    """A rule this tracer does not understand: never skipped."""


@dataclass(frozen=True)
class PolicyPacket:
    saddr: str
    daddr: str
    protocol: str  # "tcp" or "udp"
    dport: int
    iif: str  # "cni0" when it comes from one of the node's pods
    oif: str  # "cni0" when it goes to one of them


def in_set(table: dict[str, Any], name: str, value: str) -> bool:
    declaration, elements = table["sets"][name]
    if "interval" in declaration:
        return any(ip_address(value) in ip_network(e) for e in elements)
    return value in elements


def ports_match(spec: str, port: int) -> bool:
    for part in spec.strip("{} ").split(","):
        low, _, high = part.strip().partition("-")
        if int(low) <= port <= int(high or low):
            return True
    return False


def rule_matches(table: dict[str, Any], words: list[str], packet: PolicyPacket) -> bool:
    i = 0
    while i < len(words):
        w = words[i]
        if w in ("iifname", "oifname"):
            if (packet.iif if w == "iifname" else packet.oif) != words[i + 1].strip('"'):
                return False
            i += 2
        elif w == "ip" and words[i + 1] in ("saddr", "daddr") and words[i + 2] != ".":
            address = packet.saddr if words[i + 1] == "saddr" else packet.daddr
            if not in_set(table, words[i + 2].lstrip("@"), address):
                return False
            i += 3
        elif words[i:i + 7] == ["ip", "daddr", ".", "meta", "l4proto", ".", "th"]:
            if not in_set(table, words[i + 8].lstrip("@"), f"{packet.daddr} . {packet.protocol} . {packet.dport}"):
                return False
            i += 9
        elif w == "meta" and words[i + 1] == "l4proto":
            if packet.protocol != words[i + 2]:
                return False
            i += 3
        elif w == "th" and words[i + 1] == "dport":
            if not ports_match(words[i + 2], packet.dport):
                return False
            i += 3
        elif w == "ct" and words[i + 1] == "state":
            return False  # a new packet: not established, not related
        else:
            raise PolicyTraceError(f"cannot read {' '.join(words[i:])!r}")
    return True


def run_chain(table: dict[str, Any], chain: str, packet: PolicyPacket) -> tuple[str, str]:
    """("accept" | "drop" | "return", the deciding rule's comment) for `packet` through `chain`."""
    decided = ""
    for line in table["chains"][chain]:
        if line.startswith("type "):
            continue
        words, comment = TOKEN.findall(line), line
        if "comment" in words:
            at = words.index("comment")
            comment, words = words[at + 1].strip('"'), words[:at]
        words = [w for w in words if w != "counter"]
        if words[-2:-1] == ["jump"]:
            if rule_matches(table, words[:-2], packet):
                outcome, why = run_chain(table, words[-1], packet)
                if outcome == "drop":
                    return outcome, why
                decided = why  # the rule that let it back out, the last one wins
            continue
        if words[-1] not in ("accept", "drop", "return"):
            raise PolicyTraceError(f"cannot read the verdict of {line!r}")
        if rule_matches(table, words[:-1], packet):
            return words[-1], comment
    return "return", decided or f"end of {chain}"


def judge(table: Optional[dict[str, Any]], packet: PolicyPacket) -> tuple[bool, str]:
    """Whether the forward hook of one node lets `packet` through, and the rule that said so."""
    if table is None:
        return True, "no lab-policy table"
    outcome, why = run_chain(table, "forward", packet)
    return outcome != "drop", why

"""Follow a packet through the rules a node holds, on paper (pure): where does it end, and how likely?

Like kube-proxy's packet-flow tests: given the rendered rules (iptables-save text, or the nft table the
node agent loads) and one new connection (source, destination, port, protocol, where it enters), walk
the hooks a packet takes through netfilter: nat PREROUTING (or OUTPUT for a packet the node makes), the
filter hook its route leads to (FORWARD, or INPUT when it is for the node itself; OUTPUT for its own),
then nat POSTROUTING. The answer lists each way the packet can end, with its probability (the endpoint
rules' `statistic`/`numgen` branches): DNAT to which endpoint, REJECT, or on as it is, whether it is
masqueraded, and the rules that decided, in order.

It understands the rule shapes the lab writes (services/iptables.py, services/nftables.py, podnet/plan.py), which
are also what kube-proxy writes; a rule it cannot read is an error naming it, never silently skipped.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field, replace
from ipaddress import ip_address, ip_network
from typing import Any, Callable, Iterable, Optional, Sequence, TypeVar

from orchestrator.core.script import quote


class TraceError(ValueError):
    """A rule the tracer cannot follow."""


@dataclass(frozen=True)
class Packet:
    """The first packet of a connection, and what the tracer must know of the node it crosses."""

    src: str
    dst: str
    dport: int
    proto: str = "tcp"
    hook: str = "PREROUTING"  # PREROUTING: it arrives (from a pod or another host); OUTPUT: the node sends it
    local: frozenset[str] = frozenset()  # the node's own addresses (`addrtype LOCAL`, `fib daddr type local`)
    recent: frozenset[str] = frozenset()  # ClientIP affinity: the lists/sets that already hold this client
    mark: int = 0


@dataclass(frozen=True)
class Ending:
    """One way the packet ends."""

    probability: float
    verdict: str  # "DNAT" (to `destination`), "REJECT", "DROP", or "ACCEPT" (goes on to `destination` as it was)
    destination: str  # ip:port where it goes
    masquerade: bool = False  # its source is rewritten to the node's on the way out
    path: tuple[str, ...] = field(default=(), compare=False)  # the rules that matched, in order


@dataclass(frozen=True)
class _State:
    probability: float
    dst: str
    dport: int
    mark: int
    path: tuple[str, ...]
    dnat: bool = False
    masquerade: bool = False
    verdict: Optional[str] = None  # set once a table's verdict is final (ACCEPT/REJECT/DNAT)


# ---- iptables ---------------------------------------------------------------------------------------------

IptRules = dict[str, dict[str, list[list[str]]]]  # table -> chain -> its rules, each as its words


def parse_iptables(text: str) -> IptRules:
    """table -> chain -> list of rule token lists, from iptables-save (or iptables-restore) text."""
    tables: IptRules = {}
    table: Optional[dict[str, list[list[str]]]] = None
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("*"):
            table = tables.setdefault(line[1:], {})
        elif line.startswith(":") and table is not None:
            table.setdefault(line[1:].split()[0], [])
        elif line.startswith(("-A ", "-I ")) and table is not None:
            words = shlex.split(line)
            table.setdefault(words[1], []).append(words)
    return tables


def trace_iptables(rules: IptRules, packet: Packet) -> list[Ending]:
    """Every way `packet` ends on a node holding iptables `rules` (as parse_iptables returns them; the
    built-in chains hold the jumps into the lab's chains)."""
    start = _State(1.0, packet.dst, packet.dport, packet.mark, ())
    states = _walk_ipt(rules, "nat", packet.hook, packet, start)
    done = []
    for state in states:
        local = state.dst in packet.local
        hook = "OUTPUT" if packet.hook == "OUTPUT" else "INPUT" if local else "FORWARD"
        for after in _walk_ipt(rules, "filter", hook, packet, replace(state, verdict=None)):
            if after.verdict in ("REJECT", "DROP"):
                done.append(after)
                continue
            done += _walk_ipt(rules, "nat", "POSTROUTING", packet, replace(after, verdict=None))
    return _endings(done, packet)


Rule = TypeVar("Rule")


def _walk(rules: Sequence[Rule], follow: Callable[[Rule, _State], Optional[list[_State]]],
          state: _State) -> list[_State]:
    """The states in which a packet leaves a chain of `rules` (at its end, or with a verdict). `follow(rule,
    state)` is None when the rule does not match, else the states after it: those without a verdict go
    on with the next rule (a jump that returned, a random branch not taken), the others leave the chain."""
    out = []
    pending = [(state, 0)]
    while pending:
        current, index = pending.pop()
        if index >= len(rules):
            out.append(current)
            continue
        results = follow(rules[index], current)
        if results is None:
            pending.append((current, index + 1))
            continue
        for result in results:
            if result.verdict is not None:
                out.append(result)
            else:
                pending.append((result, index + 1))
    return out


def _walk_ipt(rules: IptRules, table: str, chain: str, packet: Packet, state: _State) -> list[_State]:
    """The states in which `packet` leaves `chain` of `table` (returned, or with a final verdict)."""
    def follow(words: list[str], current: _State) -> Optional[list[_State]]:
        chance, matches = _ipt_match(words, packet, current)
        if not matches:
            return None
        missed = [replace(current, probability=current.probability * (1 - chance))] if chance < 1.0 else []
        taken = replace(current, probability=current.probability * chance,
                        path=current.path + (f"{table} " + " ".join(_quoted(words)),))
        return missed + _ipt_target(rules, table, words, packet, taken)

    return _walk(rules.get(table, {}).get(chain, []), follow, state)


def _quoted(words: list[str]) -> list[str]:
    return [quote(w) if " " in w else w for w in words]


def _option(words: list[str], name: str) -> Optional[tuple[bool, str]]:
    """(negated, value) of option `name` in a rule, or None."""
    for i, word in enumerate(words):
        if word == name and i + 1 < len(words):
            return i > 0 and words[i - 1] == "!", words[i + 1]
    return None


def _value(words: list[str], name: str) -> str:
    """The value of option `name`, which the rule's shape requires (a TraceError names the rule without it)."""
    option = _option(words, name)
    if option is None:
        raise TraceError(f"cannot trace a rule without {name}: {' '.join(words)}")
    return option[1]


def _in_net(address: str, net: str) -> bool:
    return ip_address(address) in ip_network(net, strict=False)


def _ipt_match(words: list[str], packet: Packet, state: _State) -> tuple[float, bool]:
    """(probability of a match, whether it can match at all)."""
    known = {"-A", "-I", "-s", "-d", "-p", "-m", "--dport", "--comment", "--mode", "--probability", "--dst-type",
             "--src-type", "--mark", "--ctstate", "--rcheck", "--set", "--seconds", "--reap", "--name", "--mask",
             "--rsource", "-j", "--to-destination", "--set-xmark", "--reject-with", "--random-fully", "!"}
    for word in words:
        if word.startswith("-") and word not in known:
            raise TraceError(f"cannot trace option {word} in: {' '.join(words)}")
    checks = []
    test: Callable[[str], bool]  # whether an option's value lets the packet match
    for name, test in (("-s", lambda v: _in_net(packet.src, v)), ("-d", lambda v: _in_net(state.dst, v)),
                       ("-p", lambda v: v == packet.proto), ("--dport", lambda v: int(v) == state.dport),
                       ("--dst-type", lambda v: v == "LOCAL" and state.dst in packet.local),
                       ("--src-type", lambda v: v == "LOCAL" and packet.src in packet.local),
                       ("--ctstate", lambda v: "NEW" in v.split(",")),
                       ("--mark", lambda v: _mark_matches(state.mark, v))):
        option = _option(words, name)
        if option is not None:
            negated, value = option
            checks.append(test(value) != negated)
    if "--rcheck" in words:
        checks.append(_value(words, "--name") in packet.recent)
    if not all(checks):
        return 0.0, False
    if "statistic" in words:
        return float(_value(words, "--probability")), True
    return 1.0, True


def _mark_matches(mark: int, spec: str) -> bool:
    value, _, mask = spec.partition("/")
    mask_bits = int(mask, 16) if mask else 0xFFFFFFFF
    return mark & mask_bits == int(value, 16)


def _ipt_target(rules: IptRules, table: str, words: list[str], packet: Packet, state: _State) -> list[_State]:
    target = _option(words, "-j")
    if target is None:
        return [state]
    name = target[1]
    if name == "RETURN":
        return [replace(state, verdict="RETURN")]
    if name == "ACCEPT":
        return [replace(state, verdict="ACCEPT")]
    if name in ("REJECT", "DROP"):
        return [replace(state, verdict=name)]
    if name == "DNAT":
        ip, _, port = _value(words, "--to-destination").partition(":")
        return [replace(state, dst=ip, dport=int(port or state.dport), dnat=True, verdict="DNAT")]
    if name == "MASQUERADE":
        return [replace(state, masquerade=True, verdict="ACCEPT")]
    if name == "MARK":
        value, _, mask = _value(words, "--set-xmark").partition("/")
        mask_bits = int(mask, 16) if mask else 0xFFFFFFFF
        return [replace(state, mark=(state.mark & ~mask_bits) ^ int(value, 16))]
    if name not in rules.get(table, {}):
        raise TraceError(f"cannot trace target {name} in: {' '.join(words)}")
    results = []
    for result in _walk_ipt(rules, table, name, packet, state):
        # RETURN, or the end of the called chain: back in the caller
        results.append(replace(result, verdict=None) if result.verdict in (None, "RETURN") else result)
    return results


def _endings(states: Iterable[_State], packet: Packet) -> list[Ending]:
    endings = []
    for s in states:
        verdict = s.verdict if s.verdict in ("REJECT", "DROP") else "DNAT" if s.dnat else "ACCEPT"
        endings.append(Ending(round(s.probability, 9), verdict, f"{s.dst}:{s.dport}",
                              s.masquerade and verdict not in ("REJECT", "DROP"), s.path))
    return sorted(endings, key=lambda e: (e.verdict, e.destination))


# ---- nftables (the lab-proxy table, services/nftables.py) -----------------------------------------------

HOOKS = {"PREROUTING": "nat-prerouting", "OUTPUT": "nat-output", "POSTROUTING": "nat-postrouting",
         "FORWARD": "filter-forward", "INPUT": "filter-input", "FILTER-OUTPUT": "filter-output"}
KEY = "ip daddr . meta l4proto . th dport"
NODEPORT_KEY = "meta l4proto . th dport"


def trace_nft(table: dict[str, Any], packet: Packet) -> list[Ending]:
    """Every way `packet` ends on a node holding the lab-proxy `table` ({"chains", "sets"}, as render_nft
    returns it and the node agent loads it)."""
    start = _State(1.0, packet.dst, packet.dport, packet.mark, ())
    done = []
    for state in _walk_nft(table, HOOKS[packet.hook], packet, start):
        local = state.dst in packet.local
        hook = "FILTER-OUTPUT" if packet.hook == "OUTPUT" else "INPUT" if local else "FORWARD"
        # (on OUTPUT, filter-output runs just before nat-output, at priority -110; its map holds only
        # services without endpoints, which nat-output never DNATs, so the order changes no ending)
        for after in _walk_nft(table, HOOKS[hook], packet, replace(state, verdict=None)):
            if after.verdict in ("REJECT", "DROP"):
                done.append(after)
                continue
            done += _walk_nft(table, HOOKS["POSTROUTING"], packet, replace(after, verdict=None))
    return _endings(done, packet)


def _elements(table: dict[str, Any], name: str) -> Any:
    """The elements of set `name`: a list, or for a map a dict of key -> value."""
    return table["sets"][name][1]


def _nft_key(key: str, packet: Packet, state: _State) -> str:
    if key == KEY:
        return f"{state.dst} . {packet.proto} . {state.dport}"
    if key == NODEPORT_KEY:
        return f"{packet.proto} . {state.dport}"
    raise TraceError(f"cannot trace the key {key!r}")


def _walk_nft(table: dict[str, Any], chain: str, packet: Packet, state: _State) -> list[_State]:
    """The states in which `packet` leaves `chain` of the lab-proxy table."""
    lines = [line for line in table["chains"].get(chain, []) if not line.startswith("type ")]
    return _walk(lines, lambda line, current: _nft_rule(table, chain, line, packet, current), state)


def _step(state: _State, chain: str, line: str) -> _State:
    return replace(state, path=state.path + (f"{chain}: {line}",))


def _nft_rule(table: dict[str, Any], chain: str, line: str, packet: Packet, state: _State) -> Optional[list[_State]]:
    """The states after `line` (verdict set when it ends the chain's walk), or None when it does not match."""
    rest = line
    # matches, in the order the lab writes them
    if rest.startswith("ct state new "):
        rest = rest[len("ct state new "):]
    if rest.startswith("ct status dnat "):
        if not state.dnat:
            return None
        rest = rest[len("ct status dnat "):]
    if rest.startswith("fib daddr type local "):
        if state.dst not in packet.local:
            return None
        rest = rest[len("fib daddr type local "):]
    match = re.match(r"ip saddr != (\S+) (.+)$", rest)
    if match:
        if _in_net(packet.src, match.group(1)):
            return None
        rest = match.group(2)
    match = re.match(r"ip saddr @(\S+) (.+)$", rest)
    if match:
        if match.group(1) not in packet.recent:
            return None
        rest = match.group(2)
    match = re.match(r"ip daddr @(\S+) (.+)$", rest)
    if match:
        if state.dst not in _elements(table, match.group(1)):
            return None
        rest = match.group(2)
    match = re.match(r"ip saddr \. ip daddr @(\S+) (.+)$", rest)
    if match:
        if f"{packet.src} . {state.dst}" not in _elements(table, match.group(1)):
            return None
        rest = match.group(2)
    match = re.match(r"meta mark & (\S+) == (\S+) (.+)$", rest)
    if match:
        if state.mark & int(match.group(1), 16) != int(match.group(2), 16):
            return None
        rest = match.group(3)
    for key in (KEY, NODEPORT_KEY):
        if rest.startswith(key + " @"):
            name, _, rest = rest[len(key) + 2:].partition(" ")
            if _nft_key(key, packet, state) not in _elements(table, name):
                return None
        if rest.startswith(key + " vmap @"):
            name = rest[len(key) + len(" vmap @"):]
            verdict = _elements(table, name).get(_nft_key(key, packet, state))
            if verdict is None:
                return None
            return _nft_verdict(table, chain, line, verdict, packet, _step(state, chain, line))
    match = re.match(r"meta l4proto (\S+) (.+)$", rest)
    if match:
        if match.group(1) != packet.proto:
            return None
        rest = match.group(2)
    state = _step(state, chain, line)
    # statements
    match = re.match(r"meta mark set meta mark ([|^]) (\S+)(.*)$", rest)
    if match:
        value = int(match.group(2), 16)
        state = replace(state, mark=state.mark | value if match.group(1) == "|" else state.mark ^ value)
        rest = match.group(3).strip()
        if not rest:
            return [state]
    if rest.startswith("masquerade"):
        return [replace(state, masquerade=True, verdict="ACCEPT")]
    if rest.startswith("reject"):
        return [replace(state, verdict="REJECT")]
    if rest == "drop":
        return [replace(state, verdict="DROP")]
    if rest.startswith("update @"):
        return [state]
    match = re.match(r"(jump|goto) (\S+)$", rest)
    if match:
        return _nft_verdict(table, chain, line, rest, packet, state)
    match = re.match(r"dnat to (\S+):(\d+)$", rest)
    if match:
        return [replace(state, dst=match.group(1), dport=int(match.group(2)), dnat=True, verdict="DNAT")]
    match = re.match(r"numgen random mod (\d+) vmap \{ (.+) \}$", rest)
    if match:
        n = int(match.group(1))
        picks = dict(item.split(" : ") for item in match.group(2).split(", "))
        return [s for slot in range(n) for s in _nft_verdict(table, chain, line, picks[str(slot)], packet,
                                                             replace(state, probability=state.probability / n))]
    match = re.match(r"dnat ip to (.+) \. numgen random mod (\d+) map @(\S+)$", rest)
    if match:
        n, key = int(match.group(2)), _nft_key(match.group(1), packet, state)
        ends = []
        for slot in range(n):
            backend = _elements(table, match.group(3)).get(f"{key} . {slot}")
            if backend is None:
                raise TraceError(f"{chain}: no backend {key} . {slot} in @{match.group(3)}")
            ip, port = backend.split(" . ")
            ends.append(replace(state, probability=state.probability / n, dst=ip, dport=int(port), dnat=True,
                                verdict="DNAT"))
        return ends
    raise TraceError(f"cannot trace the nft rule {chain}: {line}")


def _nft_verdict(table: dict[str, Any], chain: str, line: str, verdict: str, packet: Packet,
                 state: _State) -> list[_State]:
    kind, _, target = verdict.partition(" ")
    if kind not in ("jump", "goto"):
        raise TraceError(f"cannot trace the verdict {verdict!r} in {chain}: {line}")
    results = []
    for result in _walk_nft(table, target, packet, state):
        if result.verdict not in (None, "RETURN"):
            results.append(result)
        elif kind == "jump":
            results.append(replace(result, verdict=None))  # back in the caller, at its next rule
        else:
            results.append(replace(result, verdict="RETURN"))  # goto: the caller is left too
    return results

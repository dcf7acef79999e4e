"""The iptables half of the node's kube-proxy: read what is loaded, load only the chains that changed
(iptables-restore --noflush), and find drift."""

from __future__ import annotations

import re
import subprocess

from .cni import CniError
from .contract import chain_block, chain_digest, insert_first, removal_block


def saved_chains(iptables_save: str) -> dict:
    """table -> {chain: [rules]} from `iptables-save` output."""
    tables: dict = {}
    table = None
    for line in iptables_save.splitlines():
        if line.startswith("*"):
            table = tables.setdefault(line[1:], {})
        elif table is not None and line.startswith(":"):
            table.setdefault(line[1:].split()[0], [])
        elif table is not None and line.startswith("-A "):
            table.setdefault(line.split()[1], []).append(line)
    return tables


def trusted_chains(loaded: dict, jumps: list) -> dict:
    """What the node has when nothing but the lab changed it since the last sync: the chains loaded then
    (None: their rules are as loaded) and the jumps to them, in the shape saved_chains returns."""
    present: dict = {table: dict.fromkeys(chains) for table, chains in loaded.items()}
    for table, builtin, jump in jumps:
        present.setdefault(table, {}).setdefault(builtin, []).append(jump)
    return present


def wanted_digests(tables: dict, loaded: dict, change: bool = False, removed: dict | None = None) -> dict:
    """table -> chain -> digest of the whole rule set a request asks for: all its chains (`tables`), or, for a
    change request, the loaded chains with the request's chains replaced and its `removed` ones gone."""
    wanted: dict = {}
    if change:
        wanted = {table: dict(chains) for table, chains in loaded.items()}
        for table, chains in (removed or {}).items():
            for chain in chains:
                wanted.get(table, {}).pop(chain, None)
    for table, chains in tables.items():
        wanted.setdefault(table, {}).update((chain, chain_digest(rules)) for chain, rules in chains.items())
    return wanted


def drifted_chains(want: dict, rules: dict, have: dict) -> list:
    """The chains of `want` that `have` (one table, as saved_chains returns it) lacks or holds otherwise than
    `rules` (rendered as iptables-save prints them, so compared as text); trusted chains (None) are as loaded."""
    return [c for c in want if c not in have or (have[c] is not None and have[c] != rules[c])]


def restore_input(wanted: dict, rules: dict, loaded: dict, present: dict, jumps: list) -> tuple:
    """The iptables-restore --noflush input that turns the node's chains into `wanted` (table -> chain ->
    digest; `rules` has the rules of the chains to write), writing only the chains that differ from what
    was `loaded` last (or are missing, or drifted) and deleting the ones no longer wanted; plus the jumps
    from the built-in chains that are missing. Returns (text, written, deleted)."""
    parts, written, deleted = [], [], []
    for table in sorted(set(wanted) | set(loaded)):
        want = wanted.get(table, {})
        have = present.get(table, {})
        drift = set(drifted_chains(want, rules.get(table, {}), have))
        write = [c for c, digest in want.items() if c in drift or loaded.get(table, {}).get(c) != digest]
        drop = [c for c in loaded.get(table, {}) if c not in want and c in have]
        missing = [j for t, builtin, j in jumps if t == table and j not in have.get(builtin, [])]
        if write or drop:
            parts.append(chain_block(table, {c: rules[table][c] for c in write}, drop, len(have)))
        if missing:
            # a block of its own, committed after the chains exist: after a read-only -S, iptables-nft does
            # not create a built-in chain the kernel lacks (it makes them as rules need them) and fails
            parts.append(chain_block(table, {}, then=[insert_first(j) for j in missing]))
        written += [f"{table}/{c}" for c in write]
        deleted += [f"{table}/{c}" for c in drop]
    return ("\n".join(parts) + "\n" if parts else ""), written, deleted


def drifted(wanted: dict, rules: dict, present: dict, jumps: list) -> list:
    """The lab's chains and jumps the node lacks or holds otherwise than `rules` (present as read back by
    iptables-save): what a reload repairs, as "table/chain" (jumps as "table/BUILTIN jump")."""
    found = [f"{table}/{chain}" for table, chains in sorted(wanted.items())
             for chain in drifted_chains(chains, rules[table], present.get(table, {}))]
    return found + [f"{table}/{builtin} jump" for table, builtin, jump in jumps
                    if jump not in present.get(table, {}).get(builtin, [])]


def load_rules(text: str) -> None:
    """iptables-restore --noflush; on failure, the error with the offending lines around it."""
    proc = subprocess.run(["iptables-restore", "--noflush"], input=text.encode(), stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE)
    if proc.returncode != 0:
        err = proc.stderr.decode(errors="replace").strip()
        match = re.search(r"line:? (\d+)", err)
        context = ""
        if match:
            n = int(match.group(1))
            lines = text.splitlines()
            context = " | ".join(f"{i + 1}: {lines[i]}" for i in range(max(0, n - 3), min(len(lines), n + 2)))
        raise CniError(f"iptables-restore failed: {err}" + (f" [{context}]" if context else ""))


def iptables_removal(loaded: dict, present: dict, jumps: list) -> str:
    """iptables-restore input removing the service chains and their jumps (switching to nftables)."""
    parts = []
    for table, chains in loaded.items():
        gone = [c for c in chains if c in present.get(table, {})]
        if gone:
            held = [j for t, builtin, j in jumps if t == table and j in present[table].get(builtin, [])]
            parts.append(removal_block(table, held, gone, len(present[table])))
    return "\n".join(parts) + "\n" if parts else ""

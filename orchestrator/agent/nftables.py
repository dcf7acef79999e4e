"""nftables tables the lab owns (the service rules, lab-proxy; the NetworkPolicy rules, lab-policy): each
loaded whole when its shape changes, else only its set and map elements."""

from __future__ import annotations

import json
import shutil
import subprocess

from .cni import CniError
from .contract import NFT_TABLE

NFT_HOOKED = ("services", "filter-", "nat-")


def nft_elements(elements) -> str:
    if isinstance(elements, dict):
        return ", ".join(f"{k} : {v}" for k, v in sorted(elements.items()))
    return ", ".join(sorted(elements))


def hooked(name: str, lines: list) -> bool:
    """A chain the kernel calls (or that looks verdict maps up): declared after what it refers to."""
    return name.startswith(NFT_HOOKED) or bool(lines and lines[0].startswith("type "))


def nft_table_text(desired: dict, table: str = NFT_TABLE) -> str:
    """A whole table as `nft -f` input, replacing the old one in one transaction. Things are declared
    before they are referenced: data sets, then chains others jump to, then verdict maps (which name
    chains), then the chains that look the verdict maps up or that the kernel calls."""
    sets = desired["sets"]
    chains = desired["chains"]

    def set_line(name):
        decl, elements = sets[name]
        kind = "map" if " : " in decl else "set"
        body = f" elements = {{ {nft_elements(elements)} }}" if elements else ""
        return f"  {kind} {name} {{ {decl};{body} }}"

    def chain_lines(name):
        return [f"  chain {name} {{", *(f"    {line}" for line in chains[name]), "  }"]

    def leaf_order(name):
        return (name not in ("mark-for-masquerade", "reject-packet"), not name.startswith("ep-"), name)

    leaves = sorted((c for c in chains if not hooked(c, chains[c])), key=leaf_order)
    calling = sorted((c for c in chains if hooked(c, chains[c])), key=lambda c: (c != "services", c))
    lines = [f"table ip {table} {{}}", f"delete table ip {table}", f"table ip {table} {{"]
    lines += [set_line(n) for n in sorted(sets) if "verdict" not in sets[n][0]]
    lines += [line for c in leaves for line in chain_lines(c)]
    lines += [set_line(n) for n in sorted(sets) if "verdict" in sets[n][0]]
    lines += [line for c in calling for line in chain_lines(c)]
    return "\n".join(lines + ["}"]) + "\n"


def nft_same_shape(desired: dict, loaded: dict) -> bool:
    """Same chains and declarations as loaded: changing elements is enough."""
    return (loaded.get("chains") == desired["chains"] and
            {k: v[0] for k, v in loaded.get("sets", {}).items()} == {k: v[0] for k, v in desired["sets"].items()})


def nft_element_changes(desired: dict, loaded: dict, table: str = NFT_TABLE) -> str:
    """`nft -f` input changing only the elements that differ (one transaction); "" when none do."""
    out = []
    for name, (_, elements) in sorted(desired["sets"].items()):
        old = loaded["sets"][name][1]
        new: dict | list  # a map's elements (key -> value) or a set's
        if isinstance(elements, dict):
            gone = sorted(k for k in old if k not in elements or old[k] != elements[k])
            new = {k: v for k, v in elements.items() if old.get(k) != v}
        else:
            gone, new = sorted(set(old) - set(elements)), sorted(set(elements) - set(old))
        if gone:
            out.append(f"delete element ip {table} {name} {{ {', '.join(gone)} }}")
        if new:
            out.append(f"add element ip {table} {name} {{ {nft_elements(new)} }}")
    return "\n".join(out) + "\n" if out else ""


def nft_table_exists(table: str = NFT_TABLE, chain: str = "services") -> bool:
    """Whether a lab table is there, without `nft list`, which reads the whole ruleset (0.33 s next to
    10,000 services): adding a chain that exists changes nothing, and fails without the table."""
    if shutil.which("nft") is None:  # proxy_mode iptables does not need nftables on the node
        return False
    return subprocess.run(["nft", "add", "chain", "ip", table, chain], stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL).returncode == 0


def nft_drifted(desired: dict, table: str = NFT_TABLE) -> list:
    """The lab table's sets, maps and chains the node lacks or holds with another element or rule count than
    `desired` (read back with `nft -j list table`), as "nft/NAME": what a reload repairs."""
    proc = subprocess.run(["nft", "-j", "list", "table", "ip", table], stdout=subprocess.PIPE,
                          stderr=subprocess.DEVNULL)
    if proc.returncode != 0:
        return [f"nft/{table}"]
    elements: dict = {}
    rules: dict = {}
    for item in json.loads(proc.stdout).get("nftables", []):
        for kind in ("set", "map"):
            if kind in item:
                elements[item[kind]["name"]] = len(item[kind].get("elem", []))
        if "chain" in item:
            rules.setdefault(item["chain"]["name"], 0)
        if "rule" in item:
            rules[item["rule"]["chain"]] = rules.get(item["rule"]["chain"], 0) + 1
    # sets the rules fill as packets pass (ClientIP affinity's clients) hold what traffic put there
    found = [f"nft/{name}" for name, (decl, wanted) in sorted(desired["sets"].items())
             if "dynamic" not in decl and elements.get(name) != len(wanted)]
    return found + [f"nft/{chain}" for chain, lines in sorted(desired["chains"].items())
                    if rules.get(chain) != sum(1 for line in lines if not line.startswith("type "))]


def load_nft(text: str) -> None:
    proc = subprocess.run(["nft", "-f", "-"], input=text.encode(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if proc.returncode != 0:
        err = proc.stderr.decode(errors="replace").strip().splitlines()
        raise CniError("nft -f failed: " + " | ".join(err[:6]))

"""The node's kube-proxy: `proxy-sync` makes the service rules match the controller's request, and keeps
the last request plus a journal of changes so that a node that booted can load them again."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess

from .cni import CniError, run
from .host import boot_id, write_atomically
from .iptables import drifted, iptables_removal, load_rules, restore_input, saved_chains, trusted_chains, wanted_digests
from .nftables import NFT_TABLE, load_nft, nft_drifted, nft_element_changes, nft_same_shape, nft_table_exists, nft_table_text
from .pods import pod_records, server_running
from .policy import policy_sync


def proxy_sync(lib: str, request: dict, dry_run: bool = False) -> dict:
    """Bring the node's service rules, stale UDP conntrack entries and DNS records up to `request`; with
    `dry_run`, only say which chains (or nftables parts) would be written and deleted."""
    state_file = os.path.join(lib, "proxy.json")
    try:
        with open(state_file) as handle:
            loaded = json.load(handle)
    except (OSError, ValueError):
        loaded = {}
    if request.get("force"):  # `lab fix`: reload everything, whatever was loaded before
        loaded = {}
    backend = request.get("backend", "iptables")
    loaded_iptables = loaded.get("iptables", {})
    # Like kube-proxy, a partial sync trusts the iptables rules it loaded last: iptables-save reads the
    # whole ruleset, ~1 s next to 10,000 services with iptables-nft. Rules changed by hand are found when
    # the controller verifies (`lab controller run --once`, and every 30 s while it runs) and by `lab fix`.
    boot = boot_id()
    trusted = backend == "iptables" and loaded_iptables and not request.get("verify") and loaded.get("boot") == boot
    if "base" in request and not (trusted and loaded.get("generation") == request["base"]):
        # a change request builds on what the controller last sent; this node has something else
        return {"resync": True}
    if trusted:
        present = trusted_chains(loaded_iptables, request["jumps"])
    elif backend == "iptables" or loaded_iptables:
        present = saved_chains(run("iptables-save"))
    else:
        present = {}
    loaded_nft = loaded.get("nft")
    written, deleted = [], []
    repaired: list = []

    def load(loader, text: str) -> None:
        if not dry_run:
            loader(text)

    def table_exists() -> bool:  # nft_table_exists adds a chain when the table has none: not in a dry run
        if not dry_run:
            return nft_table_exists()
        if shutil.which("nft") is None:
            return False
        tables = subprocess.run(["nft", "list", "tables"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        return f"table ip {NFT_TABLE}" in tables.stdout.decode().splitlines()

    if backend == "iptables":
        wanted = wanted_digests(request, loaded_iptables)
        if request.get("force"):
            repaired = drifted(wanted, request["tables"], present, request["jumps"])
        text, written, deleted = restore_input(wanted, request["tables"], loaded_iptables, present, request["jumps"])
        try:
            if text:
                load(load_rules, text)
        except CniError:
            if not trusted:
                raise
            if "base" in request:  # the node's rules are not what was loaded last: the controller sends them all
                return {"resync": True}
            # the rules were not what was loaded last (changed by hand): read them, and write what differs
            present = saved_chains(run("iptables-save"))
            text, written, deleted = restore_input(wanted, request["tables"], loaded_iptables, present,
                                                   request["jumps"])
            if text:
                load(load_rules, text)
        if (loaded_nft or not loaded) and table_exists():
            load(load_nft, f"delete table ip {NFT_TABLE}\n")
            deleted.append(f"nft/{NFT_TABLE}")
        state = {"iptables": wanted, "boot": boot, "generation": request.get("generation")}
    else:
        old_rules = iptables_removal(loaded_iptables, present, request["jumps"])
        if old_rules:
            load(load_rules, old_rules)
            deleted += [f"{t}/{c}" for t, chains in loaded_iptables.items() for c in chains]
        desired = request["nft"]
        reload = not (loaded_nft and nft_same_shape(desired, loaded_nft) and table_exists())
        if not reload:
            changes = nft_element_changes(desired, loaded_nft)
            try:
                if changes:
                    load(load_nft, changes)
                    written.append(f"nft/{NFT_TABLE}: elements")
            except CniError:  # the elements were not what was loaded last (changed by hand)
                reload = True
        if reload:
            if request.get("force"):
                repaired = nft_drifted(desired)
            load(load_nft, nft_table_text(desired))
            written.append(f"nft/{NFT_TABLE}")
        state = {"nft": desired}
    state["policy"] = loaded.get("policy")
    if "policy" in request:  # a controller from before NetworkPolicy sends none: keep what is there
        state["policy"], *changed = policy_sync(request["policy"], loaded.get("policy"), bool(request.get("force")),
                                                dry_run)
        written, deleted, repaired = written + changed[0], deleted + changed[1], repaired + changed[2]
    if dry_run:
        return {"written": written, "deleted": deleted, "repaired": repaired, "dry_run": True}
    if written or deleted or state != loaded or not os.path.exists(os.path.join(lib, RULES_REQUEST)):
        with open(state_file + ".tmp", "w") as handle:
            handle.write(json.dumps(state))  # dumps uses the C encoder; dump would not (3x slower at 10,000 services)
        os.replace(state_file + ".tmp", state_file)
        store_rules(lib, request)
    for address in request.get("stale_udp", []):
        # a UDP "connection" to an endpoint that is gone would otherwise keep being sent there
        subprocess.run(["conntrack", "-D", "-p", "udp", "--dst-nat", address], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
    dns_changed = False
    if "dns_hosts" in request:
        path = os.path.join(lib, "dns", "hosts")
        try:
            with open(path) as handle:
                dns_changed = handle.read() != request["dns_hosts"]
        except OSError:
            dns_changed = True
        if dns_changed:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path + ".tmp", "w") as handle:
                handle.write(request["dns_hosts"])
            os.chmod(path + ".tmp", 0o644)
            os.replace(path + ".tmp", path)
            for record in pod_records(lib):
                if record.get("role") == "dns" and server_running(record):
                    os.kill(int(record["pid"]), signal.SIGHUP)  # dnsmasq re-reads its hosts files
    return {"written": written, "deleted": deleted, "repaired": repaired, "dns": dns_changed,
            "generation": state.get("generation")}


# The rules a node holds, kept on its disk so that it can load them again after a boot by itself (the
# restore verb): the last whole request, and a journal of the change requests since, one JSON line each.
RULES_REQUEST = "rules/request.json"


RULES_JOURNAL = "rules/journal"


VOLATILE_KEYS = ("force", "verify", "stale_udp", "dns_hosts", "base", "removed")


def store_rules(lib: str, request: dict) -> None:
    """Keep what `request` leaves the node holding: a whole request replaces the store, a change request is
    appended to the journal (a few hundred bytes, not the whole rule set again); the journal is folded into
    the request once it outgrows it."""
    base, journal = os.path.join(lib, RULES_REQUEST), os.path.join(lib, RULES_JOURNAL)
    if "base" not in request:
        write_atomically(base, json.dumps({k: v for k, v in request.items() if k not in VOLATILE_KEYS}))
        with open(journal, "w"):
            pass
        return
    with open(journal, "a") as handle:
        handle.write(json.dumps({"tables": request["tables"], "removed": request.get("removed", {}),
                                 "jumps": request["jumps"], "generation": request.get("generation"),
                                 **({"policy": request["policy"]} if "policy" in request else {})}) + "\n")
    if os.path.getsize(journal) > os.path.getsize(base):
        write_atomically(base, json.dumps(stored_request(lib)))
        with open(journal, "w"):
            pass


def stored_request(lib: str):
    """The whole proxy-sync request for the rules this node last held (None: it never held any)."""
    try:
        with open(os.path.join(lib, RULES_REQUEST)) as handle:
            request = json.load(handle)
    except (OSError, ValueError):
        return None
    try:
        with open(os.path.join(lib, RULES_JOURNAL)) as handle:
            lines = handle.read().splitlines()
    except OSError:
        lines = []
    for line in lines:
        try:
            change = json.loads(line)
        except ValueError:
            break  # a line cut short by a power loss: what came before it is what the node held
        tables = request.setdefault("tables", {})
        for table, chains in change.get("removed", {}).items():
            for chain in chains:
                tables.get(table, {}).pop(chain, None)
        for table, chains in change["tables"].items():
            tables.setdefault(table, {}).update(chains)
        request["jumps"], request["generation"] = change["jumps"], change.get("generation")
        if "policy" in change:
            request["policy"] = change["policy"]
    return request

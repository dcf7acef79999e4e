"""The node's kube-proxy: `proxy-sync` makes the service rules match the controller's request, and keeps
the last request plus a journal of changes so that a node that booted can load them again.

proxy_sync orchestrates one concern per function: the iptables chains or the nftables table (the
backend), the NetworkPolicy table, the LoadBalancer addresses this node announces (announce.py), the state
file, stale UDP conntrack entries, the DNS hosts file."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess

from .announce import hold_addresses, read_links
from .gateways import sync_gateways
from .healthz import SERVER as HEALTH_SERVER, sync_health_checks
from .cni import CniError, run
from .contract import (DNS_HOSTS, PROXY_STATE, RULES_JOURNAL, RULES_REQUEST, STORED_FIELDS, ProxySync, SyncAnswer,
                       write_durably, write_if_changed)
from .host import boot_id
from .iptables import drifted, iptables_removal, load_rules, restore_input, saved_chains, trusted_chains, wanted_digests
from .nftables import (NFT_TABLE, load_nft, nft_drifted, nft_element_changes, nft_same_shape, nft_table_exists,
                       nft_table_text)
from .pods import pod_records, server_running
from .policy import policy_sync


STATE_FILE = PROXY_STATE  # what was loaded last: chain digests (iptables) or the table (nftables), the policy


class Resync(Exception):
    """A change request builds on rules this node does not hold: the controller sends them all."""


class Sync:
    """One proxy-sync's loads (none in a dry run) and what they wrote, deleted and repaired."""

    def __init__(self, dry_run: bool):
        self.dry_run = dry_run
        self.written: list = []
        self.deleted: list = []
        self.repaired: list = []

    def load(self, loader, text: str) -> None:
        if not self.dry_run:
            loader(text)

    def table_exists(self) -> bool:
        """Whether the lab-proxy table is there (nft_table_exists adds a chain when it has none: not in a dry run)."""
        if not self.dry_run:
            return nft_table_exists()
        if shutil.which("nft") is None:
            return False
        tables = subprocess.run(["nft", "list", "tables"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        return f"table ip {NFT_TABLE}" in tables.stdout.decode().splitlines()


def proxy_sync(lib: str, request: ProxySync) -> SyncAnswer:
    """Bring the node's service rules, NetworkPolicy table, stale UDP conntrack entries and DNS records up to
    `request`; with `request.dry_run`, only say which chains (or nftables parts) would be written and deleted."""
    loaded = {} if request.force else read_state(lib)  # `lab fix`: reload everything, whatever was loaded before
    sync = Sync(request.dry_run)
    try:
        if request.backend == "iptables":
            state = sync_iptables(sync, request, loaded)
        else:
            state = sync_nftables(sync, request, loaded)
    except Resync:
        return SyncAnswer(resync=True)
    state["policy"] = sync_policy(sync, request, loaded.get("policy"))
    # after the rules: an address starts to draw traffic only once the rules for it are there
    announced, withdrawn = hold_addresses(lib, request.announce, request.lb_ranges, request.dry_run)
    health = False
    if request.health_checks or os.path.exists(os.path.join(lib, HEALTH_SERVER)):
        mine = {address for link in read_links() for address in link.own}
        health = sync_health_checks(lib, request.health_checks, mine, request.dry_run)
    if request.dry_run:
        return SyncAnswer(changed=bool(sync.written or sync.deleted or announced or withdrawn), written=sync.written,
                          deleted=sync.deleted, repaired=sync.repaired, dry_run=True, announced=announced,
                          withdrawn=withdrawn)
    if (sync.written or sync.deleted or announced or withdrawn or health or state != loaded
            or not os.path.exists(os.path.join(lib, RULES_REQUEST))):
        write_durably(os.path.join(lib, STATE_FILE), json.dumps(state))
        store_rules(lib, request)
    forget_udp_flows(request.stale_udp)
    dns = request.dns_hosts is not None and write_dns_hosts(lib, request.dns_hosts)
    if dns:
        reload_dns(lib)
    proxies: list = []
    refused: list = []
    if request.gateways is not None:
        served = [r for r in pod_records(lib) if r.get("role") == "gateway" and server_running(r)]
        proxies, refused = sync_gateways(lib, request.gateways, request.gateway_files, served)
    return SyncAnswer(changed=bool(sync.written or sync.deleted or dns or announced or withdrawn or proxies),
                      written=sync.written, deleted=sync.deleted, repaired=sync.repaired, dns=dns,
                      generation=state.get("generation"), announced=announced, withdrawn=withdrawn,
                      proxies=proxies, proxy_errors=refused, failed=bool(refused),
                      msg="; ".join(f"nginx refused the config of Gateway {r}" for r in refused))


def read_state(lib: str) -> dict:
    try:
        with open(os.path.join(lib, STATE_FILE)) as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return {}


def sync_iptables(sync: Sync, request: ProxySync, loaded: dict) -> dict:
    """The iptables backend: write the chains that differ from what was loaded last (one iptables-restore),
    and remove the lab-proxy table of a previous nftables backend. Returns the state to remember."""
    loaded_iptables = loaded.get("iptables", {})
    boot = boot_id()
    # Like kube-proxy, a partial sync trusts the iptables rules it loaded last: iptables-save reads the
    # whole ruleset, ~1 s next to 10,000 services with iptables-nft. Rules changed by hand are found when
    # the controller verifies (`lab controller run --once`, and every 30 s while it runs) and by `lab fix`.
    trusted = bool(loaded_iptables) and not request.verify and loaded.get("boot") == boot
    if request.base is not None and not (trusted and loaded.get("generation") == request.base):
        raise Resync()  # a change request builds on what the controller last sent; this node has something else
    present = trusted_chains(loaded_iptables, request.jumps) if trusted else saved_chains(run("iptables-save"))
    wanted = wanted_digests(request.tables, loaded_iptables, request.base is not None, request.removed)
    if request.force:
        sync.repaired += drifted(wanted, request.tables, present, request.jumps)
    text, written, deleted = restore_input(wanted, request.tables, loaded_iptables, present, request.jumps)
    try:
        if text:
            sync.load(load_rules, text)
    except CniError:
        if not trusted:
            raise
        if request.base is not None:  # the node's rules are not what was loaded last
            raise Resync() from None
        # the rules were not what was loaded last (changed by hand): read them, and write what differs
        present = saved_chains(run("iptables-save"))
        text, written, deleted = restore_input(wanted, request.tables, loaded_iptables, present, request.jumps)
        if text:
            sync.load(load_rules, text)
    sync.written += written
    sync.deleted += deleted
    if (loaded.get("nft") or not loaded) and sync.table_exists():
        sync.load(load_nft, f"delete table ip {NFT_TABLE}\n")
        sync.deleted.append(f"nft/{NFT_TABLE}")
    return {"iptables": wanted, "boot": boot, "generation": request.generation}


def sync_nftables(sync: Sync, request: ProxySync, loaded: dict) -> dict:
    """The nftables backend: remove the chains of a previous iptables backend, then change the lab-proxy
    table's elements, or load it whole when its shape changed. Returns the state to remember."""
    if request.base is not None:
        raise Resync()  # change requests are iptables'
    loaded_iptables, loaded_nft = loaded.get("iptables", {}), loaded.get("nft")
    if loaded_iptables:
        old_rules = iptables_removal(loaded_iptables, saved_chains(run("iptables-save")), request.jumps)
        if old_rules:
            sync.load(load_rules, old_rules)
            sync.deleted += [f"{t}/{c}" for t, chains in loaded_iptables.items() for c in chains]
    desired = request.nft or {"sets": {}, "chains": {}}
    reload = not (loaded_nft and nft_same_shape(desired, loaded_nft) and sync.table_exists())
    if not reload:
        assert loaded_nft is not None  # no reload: the table was loaded and keeps its shape
        changes = nft_element_changes(desired, loaded_nft)
        try:
            if changes:
                sync.load(load_nft, changes)
                sync.written.append(f"nft/{NFT_TABLE}: elements")
        except CniError:  # the elements were not what was loaded last (changed by hand)
            reload = True
    if reload:
        if request.force:
            sync.repaired += nft_drifted(desired)
        sync.load(load_nft, nft_table_text(desired))
        sync.written.append(f"nft/{NFT_TABLE}")
    return {"nft": desired}


def sync_policy(sync: Sync, request: ProxySync, loaded):
    """The lab-policy table (NetworkPolicy), in the same sync. Returns the state to remember."""
    state, written, deleted, repaired = policy_sync(request.policy, loaded, request.force, request.dry_run)
    sync.written += written
    sync.deleted += deleted
    sync.repaired += repaired
    return state


def forget_udp_flows(addresses: list) -> None:
    """Delete the UDP conntrack entries to endpoints that went away: a UDP "connection" to one would
    otherwise keep being sent there."""
    for address in addresses:
        subprocess.run(["conntrack", "-D", "-p", "udp", "--dst-nat", address], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)


def dns_hosts_path(lib: str) -> str:
    return os.path.join(lib, DNS_HOSTS)


def write_dns_hosts(lib: str, text: str) -> bool:
    """Write the cluster DNS's records where the dnsmasq pods read them; False when they were already so."""
    return write_if_changed(dns_hosts_path(lib), text)


def reload_dns(lib: str) -> None:
    """Tell the node's dnsmasq pods to read their hosts file again (SIGHUP)."""
    for record in pod_records(lib):
        if record.get("role") == "dns" and server_running(record):
            os.kill(int(record["pid"]), signal.SIGHUP)


# The rules a node holds, kept on its disk so that it can load them again after a boot by itself (the
# restore verb): the last whole request, and a journal of the change requests since, one JSON line each
# (RULES_REQUEST and RULES_JOURNAL of the contract).
def store_rules(lib: str, request: ProxySync) -> None:
    """Keep what `request` leaves the node holding: a whole request replaces the store, a change request is
    appended to the journal (a few hundred bytes, not the whole rule set again); the journal is folded into
    the request once it outgrows it."""
    base, journal = os.path.join(lib, RULES_REQUEST), os.path.join(lib, RULES_JOURNAL)
    if request.base is None:
        write_durably(base, json.dumps({k: getattr(request, k) for k in STORED_FIELDS}))
        write_durably(journal, "")
        return
    with open(journal, "a") as handle:  # appended: a line cut short by a power loss ends the journal there
        handle.write(json.dumps({"tables": request.tables, "removed": request.removed, "jumps": request.jumps,
                                 "generation": request.generation, "policy": request.policy,
                                 "announce": request.announce, "lb_ranges": request.lb_ranges,
                                 "health_checks": request.health_checks}) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    if os.path.getsize(journal) > os.path.getsize(base):
        write_durably(base, stored_request(lib).to_json())
        write_durably(journal, "")


def stored_request(lib: str):
    """The whole proxy-sync request for the rules this node last held (None: it never held any, or what it
    kept is not this agent's)."""
    try:
        with open(os.path.join(lib, RULES_REQUEST)) as handle:
            request = ProxySync.from_dict(json.load(handle))
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
            removed, tables = change["removed"], change["tables"]
            jumps, generation, policy = change["jumps"], change["generation"], change["policy"]
        except (ValueError, KeyError, TypeError):
            break  # a line cut short by a power loss: what came before it is what the node held
        for table, chains in removed.items():
            for chain in chains:
                request.tables.get(table, {}).pop(chain, None)
        for table, chains in tables.items():
            request.tables.setdefault(table, {}).update(chains)
        request.jumps, request.generation, request.policy = jumps, generation, policy
        request.announce, request.lb_ranges = change.get("announce", {}), change.get("lb_ranges", [])
        request.health_checks = change.get("health_checks", {})
    return request

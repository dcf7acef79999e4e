"""Compare what a node should have (podnet/plan.py) with what it has (a NodeState): a list of changes.

No change means the node is as wanted: `lab deploy` reports "ok" for it. `teardown()` is the same for
`lab destroy`: what to remove so the node is as it was before the lab.
"""

from __future__ import annotations

import hashlib
from ipaddress import IPv4Network
from typing import Iterable, Optional

from orchestrator.agent.contract import (BOOT_SCRIPT, DIRS_CREATED, NFT_TABLE, POLICY_TABLE, chain_block, insert_first,
                                         lab_file, node_lib, removal_block, sysctl_saved_path)
from orchestrator.core.model import Cluster
from orchestrator.core.script import (Change, allow_failure, cmd, either, heredoc, read_words, redirect,
                                      remember_missing, remove_glob, render_script, restore_sysctls, rmdir_each,
                                      write_file)
from orchestrator.layers.nodes.facts import NodeState, conflist_path
from orchestrator.layers.overlay.plan import overlay_changes, overlay_teardown
from orchestrator.layers.podnet.plan import BRIDGE, FORWARD_CHAIN, MASQ_CHAIN, NodeNetwork


# The CNI folders a fresh machine may lack, deepest first: `lab destroy` removes those the lab made.
CNI_DIRS = ("/etc/cni/net.d", "/etc/cni", "/var/lib/cni")


def sysctl_changes(net: NodeNetwork, state: NodeState, lab: str) -> list[Change]:
    changes = []
    saved = sysctl_saved_path(lab)
    for key, value in net.sysctls.items():
        old = state.sysctls.get(key, "")
        if old != value:
            # Remember the value the node had, once, so `lab destroy` can put it back.
            keep = either(redirect(cmd("grep", "-q", f"^{key}=", saved), stderr="/dev/null"),
                          redirect(cmd("echo", f"{key}={old}"), append=saved))
            changes.append(Change(f"set {key}={value} (was {old or 'unset'})",
                                  (cmd("mkdir", "-p", node_lib(lab)), keep, cmd("sysctl", "-qw", f"{key}={value}"))))
    return changes


def rule_changes(net: NodeNetwork, state: NodeState) -> list[Change]:
    """One atomic iptables-restore --noflush for every lab chain that differs (declaring a chain flushes
    only that chain), plus the jumps from the built-in chains that are missing. The input is built by the
    agent contract's chain_block, as the agent builds its service chains': one way to write lab chains."""
    write: dict[str, dict[str, list[str]]] = {}
    jumps: dict[str, list[str]] = {}
    changed = []
    for (table, chain), lines in net.rules.items():
        if state.chain(table, chain) != list(lines):
            write.setdefault(table, {})[chain] = list(lines)
            changed.append(chain)
    for (table, builtin), jump in net.jumps.items():
        if jump not in (state.chain(table, builtin) or []):
            # POSTROUTING: first, so pod-to-pod RETURNs before any MASQUERADE the node has. FORWARD: last,
            # after kube-proxy's REJECT for services without endpoints (which the pod ACCEPTs would skip).
            jumps.setdefault(table, []).append(jump if builtin == "FORWARD" else insert_first(jump))
            changed.append(f"jump {builtin} -> {jump.rsplit(' ', 1)[-1]}")
    if not changed:
        return []
    body = "\n".join(chain_block(table, write.get(table, {}), then=jumps.get(table, []))
                     for table in sorted(set(write) | set(jumps)))
    return [Change(f"load rules: {', '.join(changed)}", (heredoc("iptables-restore --noflush", body),))]


def network_changes(net: NodeNetwork, state: NodeState, cluster: Cluster) -> list[Change]:
    """Everything that differs between `net` and `state`, in the order to apply it."""
    changes = sysctl_changes(net, state, cluster.name)
    if state.conflist != net.conflist.strip():
        changes.append(Change(f"write CNI config {net.conflist_path} (subnet {net.subnet}, MTU {net.pod_mtu})",
                              (remember_missing(CNI_DIRS, lab_file(cluster.name, DIRS_CREATED)),
                               *write_file(net.conflist_path, net.conflist))))
    bridge = state.link(BRIDGE)
    if bridge is not None and bridge.get("mtu") != net.pod_mtu:
        changes.append(Change(f"set {BRIDGE} MTU {net.pod_mtu} (was {bridge.get('mtu')})",
                              (cmd("ip", "link", "set", BRIDGE, "mtu", net.pod_mtu),)))
    changes += overlay_changes(net.overlay, state, cluster.cluster_cidr)
    changes += rule_changes(net, state)
    return changes


def boot_script(net: NodeNetwork, cluster: Cluster) -> str:
    """The script that rebuilds `net` on a node that has just booted: the overlay device, its routes,
    neighbours and FDB entries, and the lab's chains. What deploy would do to a node with nothing of the
    lab but its files (the CNI config and sysctls survive a boot on disk)."""
    fresh = NodeState(conflist=net.conflist.strip(), sysctls=dict(net.sysctls))
    return render_script(network_changes(net, fresh, cluster))


def network_files(net: NodeNetwork, cluster: Cluster) -> dict[str, tuple[str, str, str]]:
    """The pod network's files in the lab's node folder: relative path -> (text, sha256, mode)."""
    script = boot_script(net, cluster)
    return {BOOT_SCRIPT: (script, hashlib.sha256(script.encode()).hexdigest(), "0755")}


def teardown(state: NodeState, cluster: Cluster, node_subnet: Optional[IPv4Network],
             before_files: Iterable[Change] = ()) -> list[Change]:
    """What to remove from a node so that it is as before the lab (pods are removed before this);
    `before_files` run before the lab's node folder goes."""
    lab = cluster.name
    changes = overlay_teardown(state, cluster.cluster_cidr)
    if state.link(BRIDGE) is not None:
        changes.append(Change(f"remove {BRIDGE} (with its routes)", (cmd("ip", "link", "del", BRIDGE),)))
    others = [f for f in state.conflists if f.endswith((".conf", ".conflist")) and f != f"10-{lab}.conflist"]
    for table, owned in (("nat", MASQ_CHAIN), ("filter", FORWARD_CHAIN)):
        # portmap leaves its top-level CNI-HOSTPORT-* chains behind, and the service rules are KUBE-*
        # (kube-proxy's names): both are the lab's when no other network is configured on the node
        doomed = [c for c in state.chains(table) if c == owned or (not others and c.startswith(("CNI-HOSTPORT-",
                                                                                               "KUBE-")))]
        if doomed:
            changes.append(Change(f"remove chains {', '.join(doomed)} ({table})", chain_removal(state, table, doomed)))
    for table in (NFT_TABLE, POLICY_TABLE):
        if f"table ip {table}" in state.nft_tables and not others:
            changes.append(Change(f"remove nftables table {table}", (cmd("nft", "delete", "table", "ip", table),)))
    held = [(a["local"], link["ifname"]) for link in state.addrs for a in link.get("addr_info") or []
            if a.get("local") in state.announced and a.get("prefixlen") == 32]
    if state.health_server:
        changes.append(Change(f"end the health check server (pid {state.health_server})",
                              (allow_failure(cmd("kill", state.health_server)),)))
    if held:
        changes.append(Change(f"stop announcing {', '.join(a for a, _ in held)} (LoadBalancer)",
                              tuple(cmd("ip", "addr", "del", f"{a}/32", "dev", dev) for a, dev in held)))
    if state.conflist or any(f == f"10-{lab}.conflist" for f in state.conflists):
        changes.append(Change(f"remove {conflist_path(lab)}", (cmd("rm", "-f", conflist_path(lab)),)))
    changes += before_files
    if state.files:
        lib = node_lib(lab)
        changes.append(Change(f"restore sysctls and remove {lib}", (
            restore_sysctls(sysctl_saved_path(lab)),
            read_words("created", lab_file(lab, DIRS_CREATED)),
            cmd("rm", "-rf", lib, f"/var/lib/cni/networks/{lab}"),
            remove_glob("/var/lib/cni/results", f"{lab}-"),
            # CNI's shared folders and ours go only when empty: another network may use them; the CNI
            # folders the machine did not have before the lab, too.
            allow_failure(cmd("rmdir", lib.rsplit("/", 1)[0], "/var/lib/cni/networks", "/var/lib/cni/results")),
            rmdir_each("created"))))
    return changes


def chain_removal(state: NodeState, table: str, chains: list[str]) -> tuple[str, ...]:
    """One iptables-restore deleting the jumps to `chains`, then emptying and deleting them: a command
    per chain would cost a ruleset read each (minutes next to 10,000 services with iptables-nft)."""
    doomed = set(chains)
    jumps = [rule for chain in state.chains(table) if chain not in doomed for rule in state.chain(table, chain) or []
             if any(rule.endswith(f"-j {c}") or f"-j {c} " in rule for c in chains)]
    return (heredoc("iptables-restore --noflush", removal_block(table, jumps, chains, len(state.chains(table)))),)

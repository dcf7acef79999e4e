"""The node's NetworkPolicy table (lab-policy): loaded with the service rules in the same proxy-sync, changed by
set elements when only pods came or went, removed when the last policy goes; and a new pod put into the sets
that isolate it before its server starts, so that no connection reaches it unjudged."""

from __future__ import annotations

import subprocess

from .cni import CniError
from .contract import POLICY_TABLE as TABLE
from .nftables import load_nft, nft_drifted, nft_element_changes, nft_same_shape, nft_table_exists, nft_table_text


def policy_sync(desired, loaded, force: bool, dry_run: bool) -> tuple:
    """Make the node's lab-policy table `desired` (None: no table). Returns (state to remember, written,
    deleted, repaired)."""
    written: list[str] = []
    deleted: list[str] = []
    repaired: list[str] = []

    def load(text: str) -> None:
        if not dry_run:
            load_nft(text)

    exists = nft_table_exists(TABLE, "forward") if not dry_run else loaded is not None
    if desired is None:
        if exists:
            load(f"delete table ip {TABLE}\n")
            deleted.append(f"nft/{TABLE}")
            if force and loaded is None:  # `lab fix`: a table no policy asked for
                repaired.append(f"nft/{TABLE}")
        return None, written, deleted, repaired
    reload = force or not (loaded and exists and nft_same_shape(desired, loaded))
    if not reload:
        changes = nft_element_changes(desired, loaded, TABLE)
        try:
            if changes:
                load(changes)
                written.append(f"nft/{TABLE}: elements")
        except CniError:  # the elements were not what was loaded last (changed by hand)
            reload = True
    if reload:
        if force and exists:
            repaired = nft_drifted(desired, TABLE)
        load(nft_table_text(desired, TABLE))
        written.append(f"nft/{TABLE}")
    return desired, written, deleted, repaired


def isolate_new_pod(ip: str, sets: list) -> None:
    """Put a new pod's address into the policy sets that select it (computed by the controller from its
    labels), in one transaction, before its server starts. Nothing to do without policies."""
    if not sets:
        return
    text = "".join(f"add element ip {TABLE} {name} {{ {ip} }}\n" for name in sets)
    proc = subprocess.run(["nft", "-f", "-"], input=text.encode(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if proc.returncode != 0 and nft_table_exists(TABLE, "forward"):
        problem = proc.stderr.decode(errors="replace").strip()
        raise CniError(f"cannot put the pod into its NetworkPolicy sets: {problem}")

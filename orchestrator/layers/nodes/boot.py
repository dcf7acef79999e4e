"""What a node keeps across a reboot, as data: kernel modules, persisted sysctls, and the boot unit (pure).

A real machine forgets at boot what `lab deploy` did at run time: loaded modules, sysctls, the overlay
device with its peers, the rules and the pods. Kubernetes nodes come back by themselves because kubelet
and flannel are services; a lab node gets the same from files `lab deploy` writes and `lab destroy`
removes:
- /etc/modules-load.d/cluster-lab-<lab>.conf and /etc/sysctl.d/90-cluster-lab-<lab>.conf, which systemd
  applies early at boot (systemd-sysctl runs after systemd-modules-load, so bridge sysctls exist);
- on systemd nodes, cluster-lab-<lab>.service, which runs the node agent's `restore` once per boot: the
  network script below, the service rules the agent stored, then the pods (CNI ADD again, servers).
"""

from __future__ import annotations

import hashlib

from typing import Mapping, Union

from orchestrator.agent.contract import MODULES_LOADED, agent_path, lab_file, modules_loaded_path, node_lib
from orchestrator.core.model import Cluster
from orchestrator.core.render import render
from orchestrator.core.script import Change, cmd, pipe, redirect, write_file
from orchestrator.layers.nodes.facts import NodeState


# Module -> a file that exists when its feature is in the kernel (loaded or built in), "" when /sys/module tells.
KNOWN_MODULES = {
    "br_netfilter": "/proc/sys/net/bridge/bridge-nf-call-iptables",
    "nf_conntrack": "/proc/sys/net/netfilter/nf_conntrack_max",
    "vxlan": "",
    "nf_tables": "",
}
MODULE_PURPOSE = {
    "br_netfilter": "bridged pod traffic through iptables (net.bridge.bridge-nf-call-iptables)",
    "nf_conntrack": "service NAT and masquerade",
    "vxlan": "the vxlan overlay",
    "nf_tables": "NetworkPolicy and proxy_mode nftables",
}


def kernel_modules(cluster: Cluster) -> tuple[str, ...]:
    """The kernel modules a node of `cluster` needs, in load order."""
    wanted = ["br_netfilter", "nf_conntrack"]
    if cluster.overlay.backend == "vxlan":
        wanted.append("vxlan")
    wanted.append("nf_tables")  # NetworkPolicy, and the service rules in proxy_mode nftables
    return tuple(wanted)


def modules_conf(lab: str) -> str:
    return f"/etc/modules-load.d/cluster-lab-{lab}.conf"


def sysctl_conf(lab: str) -> str:
    return f"/etc/sysctl.d/90-cluster-lab-{lab}.conf"


def unit_name(lab: str) -> str:
    return f"cluster-lab-{lab}.service"


def unit_path(lab: str) -> str:
    return f"/etc/systemd/system/{unit_name(lab)}"


def unit_link(lab: str) -> str:
    """The symlink `systemctl enable` makes: the unit runs at every boot."""
    return f"/etc/systemd/system/multi-user.target.wants/{unit_name(lab)}"


def etc_files(lab: str) -> tuple[str, ...]:
    """Every file the lab writes outside its node folder (read by the facts script, removed by destroy)."""
    return modules_conf(lab), sysctl_conf(lab), unit_path(lab)


def persisted_files(cluster: Cluster, sysctls: dict[str, str], conflist: str, systemd: bool) -> dict[str, str]:
    """Path -> text of the files that bring the node back at boot (the unit only where systemd runs):
    `sysctls` to set, and the CNI config the pods are restored with."""
    lab = cluster.name
    files = {
        modules_conf(lab): f"# cluster-lab {lab}: kernel modules the pod network needs, loaded at boot\n"
                           + "".join(f"{m}\n" for m in kernel_modules(cluster)),
        sysctl_conf(lab): f"# cluster-lab {lab}: sysctls of the pod network, set at boot\n"
                          + "".join(f"{k} = {v}\n" for k, v in sysctls.items()),
    }
    if systemd:
        files[unit_path(lab)] = render("nodes/cluster-lab.service.j2", lab=lab,
                                       agent=agent_path(lab), conflist=conflist)
    return files


def sha256(content: Union[str, bytes]) -> str:
    return hashlib.sha256(content.encode() if isinstance(content, str) else content).hexdigest()


def file_changes(state: NodeState, lab: str, files: Mapping[str, tuple[str | bytes, str, str]]) -> list[Change]:
    """Install the files the lab keeps in its node folder that differ: relative path -> (content, sha256, mode)."""
    return [Change(f"install {lab_file(lab, rel)}", write_file(lab_file(lab, rel), content, mode))
            for rel, (content, digest, mode) in sorted(files.items()) if state.files.get(rel) != digest]


def missing_modules(cluster: Cluster, state: NodeState) -> list[str]:
    """The modules `cluster` needs that the node neither has nor can load, as words a person can act on."""
    return [f"kernel module {m} (for {MODULE_PURPOSE[m]}: not built in, and modprobe finds no {m}.ko)"
            for m in kernel_modules(cluster) if state.modules.get(m) == "missing"]


def module_changes(cluster: Cluster, state: NodeState) -> list[Change]:
    """Load the modules the node can load but has not; remember them, so `lab destroy` unloads them again."""
    loadable = [m for m in kernel_modules(cluster) if state.modules.get(m) == "loadable"]
    if not loadable:
        return []
    return [Change(f"load kernel module{'s' if len(loadable) > 1 else ''} {', '.join(loadable)}",
                        (cmd("modprobe", "-a", *loadable), cmd("mkdir", "-p", node_lib(cluster.name)),
                         redirect(cmd("printf", "%s\\n", *loadable), append=modules_loaded_path(cluster.name))))]


def persistence_changes(cluster: Cluster, state: NodeState, sysctls: dict[str, str], conflist: str) -> list[Change]:
    """Write the files that bring the node back at boot where they differ; enable the boot unit."""
    lab = cluster.name
    changes = [Change(f"write {path}", write_file(path, text))
               for path, text in persisted_files(cluster, sysctls, conflist, state.systemd).items()
               if state.etc_files.get(path) != sha256(text)]
    unit_written = any(c.what == f"write {unit_path(lab)}" for c in changes)
    if state.systemd and (unit_written or not state.unit_enabled):
        changes.append(Change(f"enable {unit_name(lab)} (runs at every boot)", (
            "systemctl daemon-reload", cmd("systemctl", "enable", "--quiet", unit_name(lab)))))
    return changes


def persistence_teardown(state: NodeState, lab: str) -> list[Change]:
    """Remove what persistence_changes wrote and unload the modules the lab loaded (those still in use by
    something else stay)."""
    changes = []
    if MODULES_LOADED in state.files:
        changes.append(Change("unload the kernel modules the lab loaded", (
            pipe(cmd("tac", modules_loaded_path(lab)),
                 'while read -r m; do modprobe -r "$m" 2>/dev/null || true; done'),)))
    if state.etc_files or state.unit_enabled:
        lines = [cmd("rm", "-f", *etc_files(lab))]
        if state.systemd:
            lines = [cmd("systemctl", "disable", "--quiet", unit_name(lab)), *lines, "systemctl daemon-reload"]
        changes.append(Change(f"remove {', '.join(sorted(state.etc_files)) or unit_name(lab)}", tuple(lines)))
    return changes

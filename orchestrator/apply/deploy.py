"""`lab deploy` and `lab destroy`: read every node, plan, diff, then one script per node that differs.

Per node and run: one SSH command to read (templates/node-facts.sh.j2) and, only where something
differs, one to change; then the service rules sync (the node agent's proxy-sync, which writes only
what changed) and the cluster DNS. A node that fails is reported by name with the failing change and
command; the others go on and are reported too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from ipaddress import ip_network
from typing import Callable, Optional

from ..errors import InputError
from ..manifests import load_text
from ..model import Inventory, Node
from ..node_agent import conf_digest
from ..plan import boot, diff
from ..plan.facts import CNI_PATH, NodeState
from ..plan.ipam import lease_subnets
from ..plan.network import NodeFacts, conflist_path, plan_node
from ..plan.pods import PodChanges
from ..plan.services import dns_ip
from ..render import render
from ..state import LabFiles
from ..transport import NodeError, Transport
from . import pods as pods_mod
from . import services as services_mod
from .agent import agent_argv, agent_command, agent_files
from .node import read_state

@dataclass
class NodeReport:
    node: str
    status: str  # ok | changed | would change | failed
    changes: list = field(default_factory=list)
    error: Optional[str] = None
    subnet: Optional[str] = None


def preflight(inv: Inventory, node: Node, state: NodeState) -> NodeFacts:
    """The facts planning needs, or a NodeError saying what the node lacks."""
    lacks = state.missing()
    if lacks:
        raise NodeError(node.name, f"lacks {', '.join(lacks)}; `lab bootstrap` installs them (on Debian/Ubuntu: "
                                   "iproute2 iptables python3 containernetworking-plugins)")
    modules = boot.missing_modules(inv.cluster, state)
    if modules:
        raise NodeError(node.name, f"lacks {', '.join(modules)}; install its kernel's modules (on Ubuntu: "
                                   f"linux-modules-extra-{state.kernel or '$(uname -r)'}), or change {inv.source} "
                                   "so that the lab does not need it")
    foreign = [f for f in state.conflists if f.startswith("10-") and f.endswith(".conflist")
               and f != f"10-{inv.name}.conflist"]
    if foreign:
        other = foreign[0][3:-len(".conflist")]
        raise NodeError(node.name, f"already carries lab {other!r} (/etc/cni/net.d/{foreign[0]}); run "
                                   f"`lab destroy` with that lab's inventory first")
    device = state.device_with_address(node.address)
    if device is None:
        raise NodeError(node.name, f"no interface has the address {node.address}; fix the node's `address` in "
                                   f"{inv.source}")
    return NodeFacts(underlay_device=device["ifname"], underlay_mtu=int(device.get("mtu", 1500)))


def read_all(inv: Inventory, transport: Transport, nodes=None) -> dict:
    return transport.run_all(lambda node: read_state(transport, node, inv.name), nodes)


def run_changes(transport: Transport, node: Node, changes: list) -> None:
    if changes:
        # The script travels on stdin (no argument size limit) and is read whole before it runs, so
        # nothing in it can read the rest of it as its own input.
        transport.run(node, ["bash", "-c", 'script=$(cat) && exec </dev/null && eval "$script"'],
                      stdin=diff.render_script(changes))


def apply_changes(transport: Transport, inv: Inventory, planned: dict[str, list], reports: dict,
                  done_status: str) -> None:
    """Run each node's changes in parallel; record per node changed/failed."""
    busy = [n for n in inv.nodes if planned.get(n.name)]
    results = transport.run_all(lambda node: run_changes(transport, node, planned[node.name]), busy)
    for name, outcome in results.items():
        if isinstance(outcome, BaseException):
            reports[name].status, reports[name].error = "failed", failure_text(outcome)
        else:
            reports[name].status = done_status


def failure_text(exc: BaseException) -> str:
    """The most telling line of a failure: the script's own `lab: failed at:` line when there is one."""
    result = getattr(exc, "result", None)
    if result is not None:
        marked = [line for line in result.stderr.splitlines() if line.startswith("lab: failed at:")]
        if marked:
            return f"{result.node}: {marked[-1][len('lab: '):]}"
    return str(exc)


def deploy(inv: Inventory, transport: Transport, files: LabFiles, dry_run: bool = False,
           progress: Callable[[str], None] = lambda line: None, force: bool = False) -> list[NodeReport]:
    """Converge every node's pod network to the plan; return one report per node. With `force` (lab fix),
    also reload every node's service rules in full."""
    progress(f"reading {len(inv.nodes)} node(s)")
    states = read_all(inv, transport)
    reports = {n.name: NodeReport(n.name, "ok") for n in inv.nodes}
    facts: dict[str, NodeFacts] = {}
    for node in inv.nodes:
        try:
            state = states[node.name]
            if isinstance(state, BaseException):
                raise state
            facts[node.name] = preflight(inv, node, state)
        except NodeError as exc:
            reports[node.name].status, reports[node.name].error = "failed", str(exc)
    objects = files.read_objects()
    try:
        subnets = lease_subnets(inv.cluster.cluster_cidr, inv.cluster.node_subnet_size, [n.name for n in inv.nodes],
                                {k: ip_network(v) for k, v in objects["subnets"].items()})
    except ValueError as exc:
        raise InputError(f"{inv.source}: cluster.cluster_cidr: {exc}; use a larger cluster_cidr") from None
    if not dry_run and {k: str(v) for k, v in subnets.items()} != objects["subnets"]:
        objects["subnets"] = {k: str(v) for k, v in subnets.items()}
        files.write_objects(objects)
    planned: dict[str, list] = {}
    reattach: dict[str, list] = {}
    lost: dict[str, list] = {}
    for node in inv.nodes:
        reports[node.name].subnet = str(subnets[node.name])
        if node.name not in facts:
            continue
        state = states[node.name]
        net = plan_node(inv, node, subnets, facts)
        changes = (diff.file_changes(state, inv.name, {**agent_files(), **boot.node_files(net, inv.cluster)})
                   + boot.module_changes(inv.cluster, state) + diff.network_changes(net, state, inv.cluster)
                   + boot.persistence_changes(net, inv.cluster, state))
        stopped = sorted(key for key, value in state.pods.items() if value == "stopped")
        if stopped:
            changes.append(diff.Change(f"restart the servers of {len(stopped)} pod(s): {', '.join(stopped)}",
                                       (agent_command(inv.name, "pods-ensure") + " >/dev/null",)))
        planned[node.name] = changes
        reports[node.name].changes = [c.what for c in changes]
        lost[node.name] = lost_pods(objects, node.name, state)
        if lost[node.name]:
            reports[node.name].changes.append(f"restore {len(lost[node.name])} pod(s) whose network namespace is "
                                              f"gone: {', '.join(p['key'] for p in lost[node.name])}")
        if objects["boots"].get(node.name, state.boot_id) != state.boot_id:
            reports[node.name].changes.insert(0, "booted again since the last deploy")
        digest = conf_digest(json.loads(net.conflist))
        stale = sorted(k for k, d in state.pod_confs.items() if d and d != digest)
        if stale:
            reattach[node.name] = stale
            reports[node.name].changes.append(f"re-attach {len(stale)} pod(s) set up with another CNI config: "
                                              f"{', '.join(stale)}")
        if reports[node.name].changes:
            reports[node.name].status = "would change" if dry_run else "changing"
    if not dry_run:
        progress(f"applying changes to {sum(1 for c in planned.values() if c)} node(s)")
        apply_changes(transport, inv, planned, reports, "changed")
        reattach_pods(inv, transport, files, reattach, reports)
        restore_pods(inv, transport, files, lost, reports)
        remember_boots(files, {name: states[name].boot_id for name in facts})
        if all(r.status != "failed" for r in reports.values()):
            # before the cluster DNS's own sync, which would otherwise do (and not report) this one's work
            sync_service_rules(inv, transport, files, reports, force)
            if all(r.status != "failed" for r in reports.values()):
                start_cluster_dns(inv, transport, files, progress)
    elif all(r.status != "failed" for r in reports.values()):  # as a real deploy, which syncs only then
        preview_service_rules(inv, transport, files, reports, list(inv.nodes))
    for report in reports.values():
        if report.status == "changing":  # what it reports was done without a script (a new boot seen)
            report.status = "changed"
    return [reports[n.name] for n in inv.nodes]


def lost_pods(objects: dict, node: str, state: NodeState) -> list[dict]:
    """The lab's pods on `node` that the node lacks or holds without their network namespace (after a reboot,
    or when the node lost its state), in name order."""
    return sorted((p for p in objects["pods"].values()
                   if p["node"] == node and state.pods.get(p["key"]) in (None, "gone")), key=lambda p: p["key"])


def restore_pods(inv: Inventory, transport: Transport, files: LabFiles, lost: dict[str, list], reports: dict) -> None:
    """Create the `lost` pods again on the nodes that did not fail, each asking for the IP it had; record their
    IPs (another one where that was taken), which the service sync then uses."""
    pods = [pod for name, pods in lost.items() if reports[name].status != "failed" for pod in pods]
    if not pods:
        return
    objects = files.read_objects()
    failures = pods_mod.sync(inv, transport, objects, PodChanges(create=pods))
    files.write_objects(objects)
    for line in failures:
        name = line.split(":", 1)[0]
        if name in reports:
            reports[name].status, reports[name].error = "failed", line
    for name in lost:
        if lost[name] and reports[name].status != "failed":
            reports[name].status = "changed"


def remember_boots(files: LabFiles, boots: dict[str, str]) -> None:
    """Record each node's boot ID: the next deploy says which nodes booted again in between."""
    objects = files.read_objects()
    if any(objects["boots"].get(name) != boot for name, boot in boots.items() if boot):
        objects["boots"].update((name, boot) for name, boot in boots.items() if boot)
        files.write_objects(objects)


def rule_changes(answer: dict, dry_run: bool = False) -> Optional[str]:
    """A node's proxy-sync answer as one line of its report, or None when nothing changes."""
    names = answer["written"] + answer["deleted"]
    if not names:
        return None
    written, removed = ("to write", "to remove") if dry_run else ("written", "removed")
    return (f"service rules: {len(answer['written'])} {written}, {len(answer['deleted'])} {removed}"
            + (f" ({', '.join(names)})" if len(names) <= 4 else ""))


def preview_service_rules(inv: Inventory, transport: Transport, files: LabFiles, reports: dict, nodes: list) -> None:
    """For --dry-run: note in `reports` what a sync would write and delete on `nodes`. A node without the
    lab's agent, or with one too old for --dry-run (deploy replaces it), cannot say: nothing is noted."""
    for name, answer in services_mod.preview(inv, transport, files.read_objects(), nodes).items():
        line = None if isinstance(answer, BaseException) else rule_changes(answer, dry_run=True)
        if line:
            reports[name].changes.append(line)
            reports[name].status = "would change"


def sync_service_rules(inv: Inventory, transport: Transport, files: LabFiles, reports: dict, force: bool) -> None:
    """Bring every node's service rules up to the lab's objects and note it in `reports`: what changed (a
    switch of proxy_mode, say) or, with `force` (`lab fix`: caches flushed, everything reloaded), what the
    reload repaired."""
    if force:
        transport.run_all(lambda node: transport.run(node, agent_argv(inv.name, "flush-caches")))
    objects = files.read_objects()
    answers = services_mod.sync(inv, transport, objects, force=force)
    files.write_objects(objects)
    for name, answer in answers.items():
        report = reports[name]
        if isinstance(answer, BaseException):
            report.status, report.error = "failed", str(answer)
            continue
        if force:
            line = f"service rules reloaded; repaired {', '.join(answer['repaired'])}" if answer.get("repaired") else None
        else:
            line = rule_changes(answer)
        if line:
            report.changes.append(line)
            report.status = "changed"


def reattach(inv: Inventory, transport: Transport, files: LabFiles, nodes: list) -> dict:
    """Re-attach the pods of `nodes` set up with an older CNI config (as after `ipMasq: true`): DEL with
    the old config, ADD with the node's current one; record their new IPs. Returns, per node, its pods'
    results ({key: {"ip"} or {"error"}}) or the node's exception."""
    results = transport.run_all(lambda node: json.loads(transport.run(
        node, agent_argv(inv.name, "pods-reattach", "--conf", conflist_path(inv.name))).stdout), nodes)
    objects = files.read_objects()
    for outcome in results.values():
        for key, got in ({} if isinstance(outcome, BaseException) else outcome).items():
            pod = objects["pods"].get(key.replace("_", "/", 1))
            if pod and "ip" in got:
                pod["ip"] = got["ip"]
    files.write_objects(objects)
    return results


def reattach_pods(inv: Inventory, transport: Transport, files: LabFiles, stale: dict[str, list],
                  reports: dict) -> None:
    """Re-attach the stale pods of the nodes that did not fail (see reattach); report per node."""
    busy = [n for n in inv.nodes if n.name in stale and reports[n.name].status != "failed"]
    if not busy:
        return
    for node_name, outcome in reattach(inv, transport, files, busy).items():
        if isinstance(outcome, BaseException):
            reports[node_name].status, reports[node_name].error = "failed", str(outcome)
            continue
        reports[node_name].status = "changed"
        for key, got in outcome.items():
            if "error" in got:
                reports[node_name].status, reports[node_name].error = "failed", f"{node_name}: {key}: {got['error']}"


def start_cluster_dns(inv: Inventory, transport: Transport, files: LabFiles,
                      progress: Callable[[str], None]) -> None:
    """Apply the built-in kube-dns Service and Deployment (a no-op when they are there). deploy has just
    synced the service rules: they are synced again only when this changes something."""
    text = render("kube-dns.yaml.j2", dns_ip=dns_ip(inv.cluster.service_cidr))
    results = pods_mod.apply(inv, transport, files, load_text(text, "templates/kube-dns.yaml.j2"), resync=False)
    if any(not line.endswith("unchanged") for line in results):
        progress(f"cluster DNS: kube-system/kube-dns at {dns_ip(inv.cluster.service_cidr)}, 2 dnsmasq pods")


def destroy(inv: Inventory, transport: Transport, files: LabFiles,
            progress: Callable[[str], None] = lambda line: None) -> list[NodeReport]:
    """Remove everything deploy and the pods made on every node; forget the lab's pods and leases.
    Pods go first (CNI DEL undoes what the plugins did); the rest is planned from what is left."""
    lab = inv.name
    progress(f"reading {len(inv.nodes)} node(s)")
    states = read_all(inv, transport)
    reports = {n.name: NodeReport(n.name, "ok") for n in inv.nodes}
    with_pods = {}
    for node in inv.nodes:
        state = states[node.name]
        if isinstance(state, BaseException):
            reports[node.name].status, reports[node.name].error = "failed", str(state)
            continue
        pod_netns = [ns for ns in state.netns if ns.startswith(f"{lab}-")]
        if state.pods or pod_netns:
            with_pods[node.name] = [diff.Change(
                f"remove {max(len(state.pods), len(pod_netns))} pod(s)",
                (agent_command(lab, "pods-purge", "--lab", lab, "--conf", conflist_path(lab), "--cni-path",
                               state.cni_dir or CNI_PATH) + " >/dev/null",))]
    if with_pods:
        progress(f"removing the pods on {len(with_pods)} node(s)")
        apply_changes(transport, inv, with_pods, reports, "removed")
        states.update(read_all(inv, transport, [n for n in inv.nodes if n.name in with_pods]))
    planned: dict[str, list] = {}
    for node in inv.nodes:
        state = states[node.name]
        if isinstance(state, BaseException) or reports[node.name].status == "failed":
            continue
        planned[node.name] = diff.teardown(state, inv.cluster, None, boot.persistence_teardown(state, lab))
        reports[node.name].changes = [c.what for c in with_pods.get(node.name, []) + planned[node.name]]
    progress(f"removing the lab from {sum(1 for c in planned.values() if c)} node(s)")
    apply_changes(transport, inv, planned, reports, "removed")
    if all(r.status != "failed" for r in reports.values()):
        objects = files.read_objects()
        objects["pods"], objects["subnets"], objects["deployments"] = {}, {}, {}
        objects["services"], objects["endpoints"], objects["boots"] = {}, {}, {}
        files.write_objects(objects)
        files.sent_rules.unlink(missing_ok=True)  # the nodes hold no service rules any more
    return [reports[n.name] for n in inv.nodes]

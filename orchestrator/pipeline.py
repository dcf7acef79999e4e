"""The order of the layers: `lab deploy`, `lab destroy`, and `lab apply` / `lab delete` of manifests.

deploy: read every node (one SSH command, templates/nodes/node-facts.sh.j2), check what each lacks (nodes),
lease the pod subnets and plan each node's network (overlay, podnet), then one script per node that
differs; then the pods the nodes lost or hold with an old CNI config (pods), the service rules (services:
the node agent's proxy-sync writes only what changed) and the cluster DNS (dns). A node that fails is
reported by name with the failing change and command; the others go on and are reported too. destroy
runs the other way round. apply validates every manifest before anything changes, then pods, then the
service rules.
"""

from __future__ import annotations

import json
from dataclasses import replace
from ipaddress import IPv4Address, IPv4Network
from typing import Callable, Iterable, Optional, Union

from orchestrator.agent.contract import CNI_PATH, PodsPurge, conf_digest
from orchestrator.core.agent import agent_command, agent_files
from orchestrator.core.errors import InputError, LabError
from orchestrator.core.events import NORMAL, WARNING, add_event
from orchestrator.core.ipam import lease_subnets
from orchestrator import kinds
from orchestrator.core.manifests import Manifest
from orchestrator.core.model import Inventory, Node, dns_ip
from orchestrator.core.report import NodeReport, Reports
from orchestrator.core.objects import LabObjects, Namespace, Pod, split_key
from orchestrator.core.names import relabelled
from orchestrator.core.script import Change, quiet, render_script
from orchestrator.core.state import LabFiles
from orchestrator.core.transport import NodeError, NodeUnreachable, Transport
from orchestrator.layers.dns.plan import cluster_dns_yaml
from orchestrator.layers.nodes import read as node_read
from orchestrator.layers.nodes import boot
from orchestrator.layers.nodes.facts import NodeFacts, conflist_path
from orchestrator.layers.nodes.shared_kernel import neighbour_room_error
from orchestrator.layers.podnet import changes as podnet
from orchestrator.layers.podnet.plan import plan_node
from orchestrator.layers.pods import apply as pods_mod
from orchestrator.layers.pods.namespaces import BUILT_IN_NAMESPACES, require_namespaces
from orchestrator.layers.pods.plan import PodChanges
from orchestrator.layers.policy.enforcement import policy_sets
from orchestrator.layers.services import apply as services_mod
from orchestrator.layers.gateway.ingress import (INGRESS_CLASS_KIND, INGRESS_CONTROLLER, LAB_INGRESS_CLASS,
                                                 lab_ingress_class_yaml)
from orchestrator.layers.gateway.routes import CLASS_KIND, CONTROLLER_NAME, LAB_CLASS, lab_class_yaml
from orchestrator.layers.services.loadbalancer import POOL_KIND, default_pool_yaml
from orchestrator.kinds.deployment import DEPLOYMENT
from orchestrator.kinds.namespace import NAMESPACE
from orchestrator.kinds.pod import POD


def read_all(inv: Inventory, transport: Transport, nodes=None) -> dict:
    return transport.run_all(lambda node: node_read.read_state(transport, node, inv.name), nodes)


def run_changes(transport: Transport, node: Node, changes: list) -> None:
    if changes:
        # The script travels on stdin (no argument size limit) and is read whole before it runs, so
        # nothing in it can read the rest of it as its own input.
        transport.run(node, ["bash", "-c", 'script=$(cat) && exec </dev/null && eval "$script"'],
                      stdin=render_script(changes))


def apply_changes(transport: Transport, inv: Inventory, planned: dict[str, list[Change]], reports: Reports,
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
            facts[node.name] = node_read.preflight(inv, node, state)
        except NodeError as exc:
            reports[node.name].status, reports[node.name].error = "failed", str(exc)
    objects = files.read_objects()
    try:
        subnets = lease_subnets(inv.cluster.cluster_cidr, inv.cluster.node_subnet_size, [n.name for n in inv.nodes],
                                {k: IPv4Network(v) for k, v in objects.subnets.items()})
    except ValueError as exc:
        raise InputError(f"{inv.source}: cluster.cluster_cidr: {exc}; use a larger cluster_cidr") from None
    if not dry_run and {k: str(v) for k, v in subnets.items()} != objects.subnets:
        objects.subnets = {k: str(v) for k, v in subnets.items()}
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
        changes = (boot.file_changes(state, inv.name, {**agent_files(), **podnet.network_files(net, inv.cluster)})
                   + boot.module_changes(inv.cluster, state) + podnet.network_changes(net, state, inv.cluster)
                   + boot.persistence_changes(inv.cluster, state, net.sysctls, net.conflist_path))
        stopped = [key for key, value in state.pods.items() if value == "stopped"]
        unwanted = pods_mod.unwanted(inv.name, objects, node.name, state.pods, state.netns)
        if stopped or unwanted:
            what = ([f"remove what the lab no longer has: {', '.join(unwanted)}"] if unwanted else []) + (
                [f"restart the servers of {len(stopped)} pod(s): {pod_names(stopped, objects)}"] if stopped else [])
            changes.append(Change("; ".join(what), (quiet(agent_command(
                inv.name, pods_mod.ensure_request(inv.name, objects, node.name))),)))
        planned[node.name] = changes
        reports[node.name].changes = [c.what for c in changes]
        lost[node.name] = pods_mod.lost_pods(objects, node.name, state.pods)
        if lost[node.name]:
            reports[node.name].changes.append(f"restore {len(lost[node.name])} pod(s) whose network namespace is "
                                              f"gone: {', '.join(p.key for p in lost[node.name])}")
        if objects.boots.get(node.name, state.boot_id) != state.boot_id:
            reports[node.name].changes.insert(0, "booted again since the last deploy")
        digest = conf_digest(json.loads(net.conflist))
        stale = sorted(k for k, d in state.pod_confs.items() if d and d != digest)
        if stale:
            reattach[node.name] = stale
            reports[node.name].changes.append(f"re-attach {len(stale)} pod(s) set up with another CNI config: "
                                              f"{pod_names(stale, objects)}")
        if reports[node.name].changes:
            reports[node.name].status = "would change" if dry_run else "changing"
    if not dry_run:
        progress(f"applying changes to {sum(1 for c in planned.values() if c)} node(s)")
        apply_changes(transport, inv, planned, reports, "changed")
        pods_mod.reattach_pods(inv, transport, files, reattach, reports)
        pods_mod.restore_pods(inv, transport, files, lost, reports)
        node_read.remember_boots(files, {name: states[name].boot_id for name in facts})
        if all(r.status != "failed" for r in reports.values()):
            # before the cluster DNS's own sync, which would otherwise do (and not report) this one's work
            services_mod.sync_service_rules(inv, transport, files, reports, force)
            if all(r.status != "failed" for r in reports.values()):
                start_cluster_dns(inv, transport, files, progress)
                if inv.emulated is not None:
                    install_load_balancer(inv, transport, files, progress)
                install_gateway_class(inv, transport, files, progress)
    elif all(r.status != "failed" for r in reports.values()):  # as a real deploy, which syncs only then
        services_mod.preview_service_rules(inv, transport, files, reports, list(inv.nodes))
    for report in reports.values():
        if report.status == "changing":  # what it reports was done without a script (a new boot seen)
            report.status = "changed"
    return [reports[n.name] for n in inv.nodes]


def pod_names(node_keys: list[str], objects: LabObjects) -> str:
    """The pods a node names by its keys, as the user names them (namespace/name), sorted; a pod the lab does not
    know keeps the node's name for it."""
    known = {p.node_key: p.key for p in objects.pods.values()}
    return ", ".join(sorted(known.get(key, key) for key in node_keys))


def start_cluster_dns(inv: Inventory, transport: Transport, files: LabFiles,
                      progress: Callable[[str], None]) -> None:
    """Apply the built-in kube-dns Service and Deployment (a no-op when they are there). deploy has just
    synced the service rules: they are synced again only when this changes something."""
    results = apply_manifests(inv, transport, files, kinds.load_text(*cluster_dns_yaml(inv.cluster)), resync=False)
    if any(not line.endswith("unchanged") for line in results):
        progress(f"cluster DNS: kube-system/kube-dns at {dns_ip(inv.cluster.service_cidr)}, 2 dnsmasq pods")


def install_load_balancer(inv: Inventory, transport: Transport, files: LabFiles,
                          progress: Callable[[str], None]) -> None:
    """Apply the lab's load balancer (its namespace, default pool and L2Advertisement) when the lab has no address
    pool, as an install of MetalLB would: the objects are then the user's to change."""
    if files.read_objects().extra.get(POOL_KIND):
        return
    manifests = kinds.load_text(*default_pool_yaml([n.address for n in inv.nodes]))
    results = apply_manifests(inv, transport, files, manifests, resync=False)
    if any(not line.endswith("unchanged") for line in results):
        progress("load balancer: IPAddressPool metallb-system/default on the underlay, announced by ARP (L2)")


def install_gateway_class(inv: Inventory, transport: Transport, files: LabFiles,
                          progress: Callable[[str], None]) -> None:
    """Apply the lab's GatewayClass and IngressClass (the default) where the lab has none by their names, as a
    Gateway API implementation's and an ingress controller's installs do: the objects are then the user's."""
    extra = files.read_objects().extra
    if LAB_CLASS not in extra.get(CLASS_KIND, {}):
        apply_manifests(inv, transport, files, kinds.load_text(*lab_class_yaml()), resync=False)
        progress(f"gateway: GatewayClass {LAB_CLASS} (controller {CONTROLLER_NAME})")
    if LAB_INGRESS_CLASS not in extra.get(INGRESS_CLASS_KIND, {}):
        apply_manifests(inv, transport, files, kinds.load_text(*lab_ingress_class_yaml()), resync=False)
        progress(f"ingress: IngressClass {LAB_INGRESS_CLASS}, the default (controller {INGRESS_CONTROLLER})")


def destroy(inv: Inventory, transport: Transport, files: LabFiles,
            progress: Callable[[str], None] = lambda line: None) -> list[NodeReport]:
    """Remove everything deploy and the pods made on every node; forget the lab's leases and what `lab apply` made
    (pods, services, namespaces, policies).
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
            with_pods[node.name] = boot.file_changes(state, lab, agent_files()) + [Change(  # this protocol's agent
                f"remove {max(len(state.pods), len(pod_netns))} pod(s)",
                (quiet(agent_command(lab, PodsPurge(lab, conflist_path(lab), state.cni_dir or CNI_PATH))),))]
    if with_pods:
        progress(f"removing the pods on {len(with_pods)} node(s)")
        apply_changes(transport, inv, with_pods, reports, "removed")
        states.update(read_all(inv, transport, [n for n in inv.nodes if n.name in with_pods]))
    planned: dict[str, list] = {}
    for node in inv.nodes:
        state = states[node.name]
        if isinstance(state, BaseException) or reports[node.name].status == "failed":
            continue
        planned[node.name] = podnet.teardown(state, inv.cluster, None, boot.persistence_teardown(state, lab))
        reports[node.name].changes = [c.what for c in with_pods.get(node.name, []) + planned[node.name]]
    progress(f"removing the lab from {sum(1 for c in planned.values() if c)} node(s)")
    apply_changes(transport, inv, planned, reports, "removed")
    if all(r.status != "failed" for r in reports.values()):
        files.write_objects(LabObjects())
        files.sent_rules.unlink(missing_ok=True)  # the nodes hold no service rules any more
        files.broken_objects.unlink(missing_ok=True)  # nor the policies `lab break` applied
    return [reports[n.name] for n in inv.nodes]


def require_network(inv: Inventory, objects: LabObjects) -> None:
    missing = [n.name for n in inv.nodes if n.name not in objects.subnets]
    if missing:
        raise InputError(f"no pod network on {', '.join(missing)} yet: run `lab deploy` first")


def apply_manifests(inv: Inventory, transport: Transport, files: LabFiles, manifests: list[Manifest],
                    progress: Callable[[str], None] = lambda line: None, resync: bool = True) -> list[str]:
    """Make the lab's objects match `manifests`; return kubectl-style result lines. Everything is validated and
    planned before anything changes on a node. When policies change, their rules are loaded before any new pod
    starts (which then goes into the sets that isolate it before its server starts); the service rules are
    synced after; with `resync` False (the caller has just synced them) only when something changed."""
    objects = files.read_objects()
    require_network(inv, objects)
    require_namespaces(manifests, objects)
    policies_before, services_before = dict(objects.policies), dict(objects.services)
    endpoints_before = {k: dict(v) for k, v in objects.endpoints.items()}
    plan, results = kinds.plan(inv.cluster, list(inv.nodes), objects, manifests, pods_mod.now())
    require_room_in_shared_kernel(inv, plan.pods_after())
    # level-triggered: what the nodes hold, not what was sent them, decides what is missing
    held = pods_mod.held_pods(inv, transport, objects)
    for line in pods_mod.removed_lines(held):
        progress(line)
    # a node that does not answer is asked nothing more by this command (each ask would wait for it again);
    # its share of the plan is left for the next apply, and its pods are out of the endpoints meanwhile
    unreachable = {name: str(e) for name, e in held.items() if isinstance(e, NodeUnreachable)}
    failures = [f"{line}; its pods and rules are left for the next `lab apply`" for line in unreachable.values()]
    plan.pods = pods_mod.without_nodes(plan.pods, unreachable)
    reachable = replace(inv, nodes=tuple(n for n in inv.nodes if n.name not in unreachable))
    again = pods_mod.pods_to_make_again(objects, held, plan.pods)
    plan.pods.create += again
    results = made_again(manifests, results, again)
    if objects.policies != policies_before:
        progress("loading the NetworkPolicy rules before the pods")
        failures += sync_failures(inv, transport, objects, unreachable)
    failures += carry_out(reachable, transport, objects, plan.pods, progress)
    failures += converge_kinds(reachable, transport, objects, manifests)
    if resync or plan.pods.create or plan.pods.delete or objects.services != services_before:
        failures += sync_failures(inv, transport, objects, unreachable)
    note_changes(objects, endpoints_before, policies_before)
    files.write_objects(objects)
    if failures:
        raise LabError("\n".join(failures))
    return results


def require_room_in_shared_kernel(inv: Inventory, pods: list[Pod]) -> None:
    """Refuse, before any node is asked, pods that emulated nodes could not hold in the kernel they share."""
    limit = node_read.shared_kernel_limit(inv)
    if limit is None:
        return
    error = neighbour_room_error("lab apply", [n.name for n in inv.nodes], pods, limit)
    if error is not None:
        raise error


def note_changes(objects: LabObjects, endpoints_before: dict, policies_before: dict) -> None:
    """Events for what an apply or delete changed beyond pods: a Service's endpoints, a NetworkPolicy's rules."""
    stamp = pods_mod.now()
    for key, service in sorted(objects.services.items()):
        now_eps = objects.endpoints.get(key, {})
        if now_eps != endpoints_before.get(key, {}):
            addresses = [f"{ip}:{port}" for ip, port in sorted({(IPv4Address(e.ip), e.port)
                                                                  for eps in now_eps.values() for e in eps})]
            add_event(objects.events, stamp, NORMAL if addresses else WARNING, "EndpointsChanged",
                      ("Service", service.namespace, service.name),
                      f"Endpoints now {', '.join(addresses)}" if addresses else
                      "No endpoints: no ready pod matches the selector", "endpoint-controller")
    for key, policy in sorted(objects.policies.items()):
        if policies_before.get(key) != policy:
            add_event(objects.events, stamp, NORMAL, "Enforced", ("NetworkPolicy", policy.namespace, policy.name),
                      "Rules loaded into every node's lab-policy table (nftables), before any new pod started",
                      "lab-policy")


def made_again(manifests: list[Manifest], results: list[str], again: list[Pod]) -> list[str]:
    """kubectl's result lines, where an object said unchanged whose pods a node lacked (and gets again) says
    configured: the lab changed something for it."""
    owners = {p.owner or f"Pod/{p.key}" for p in again}
    return [line.removesuffix(" unchanged") + " configured" if line.endswith(" unchanged")
            and f"{m.kind}/{m.key}" in owners else line for m, line in zip(manifests, results, strict=True)]


def carry_out(inv: Inventory, transport: Transport, objects: LabObjects, changes: PodChanges,
              progress: Callable[[str], None]) -> list[str]:
    """Delete and create the pods of a plan on their nodes; the failures, one line each."""
    if changes.create or changes.delete:
        progress(f"{len(changes.create)} pod(s) to create, {len(changes.delete)} to delete")
    return pods_mod.apply_pod_changes(inv, transport, objects, changes, lambda pod: policy_sets(objects, pod))


def converge_kinds(inv: Inventory, transport: Transport, objects: LabObjects, manifests: list[Manifest]) -> list[str]:
    """Bring onto the nodes what the kinds that `manifests` name keep beyond pods and rules (their own
    `converge`); the failures, one line each."""
    named = {m.kind for m in manifests}
    return [line for kind in kinds.KINDS.values() if kind.kind in named and kind.converge is not None
            for line in kind.converge(inv, transport, objects)]


def sync_failures(inv: Inventory, transport: Transport, objects: LabObjects, lost: Iterable[str] = ()) -> list[str]:
    """Sync the rules to every node but the `lost` ones; the failures, one line each."""
    return [str(e) for e in services_mod.sync_rules(inv, transport, objects, lost).failures.values()]


def delete_manifests(inv: Inventory, transport: Transport, files: LabFiles, manifests: list[Manifest],
                     progress: Callable[[str], None] = lambda line: None) -> list[str]:
    """Delete what `manifests` name (with what each takes along: a Deployment its pods, a Namespace everything in
    it); return kubectl-style result lines."""
    objects = files.read_objects()
    endpoints_before = {k: dict(v) for k, v in objects.endpoints.items()}
    plan, results = kinds.plan(inv.cluster, list(inv.nodes), objects, manifests, pods_mod.now(), deleting=True)
    failures = carry_out(inv, transport, objects, plan.pods, progress)
    failures += converge_kinds(inv, transport, objects, manifests)
    failures += sync_failures(inv, transport, objects)
    note_changes(objects, endpoints_before, objects.policies)
    files.write_objects(objects)
    if failures:
        raise LabError("\n".join(failures))
    return results


def relabel(inv: Inventory, transport: Transport, files: LabFiles, kind: str, key: str,
            changes: dict[str, Optional[str]], overwrite: bool) -> str:
    """`lab label pod|ns NAME k=v k2-`: change the labels of a pod or a namespace (None removes a key), then
    bring Service endpoints and NetworkPolicy sets up to them. kubectl's result line."""
    objects = files.read_objects()
    record: Union[Namespace, Pod]
    if kind == "namespace":
        if key not in objects.namespaces and key not in BUILT_IN_NAMESPACES:
            raise LabError(NAMESPACE.not_found(key))
        record = objects.namespaces.setdefault(key, Namespace(key, {}, pods_mod.now()))
    else:
        pod = objects.pods.get(key)
        if pod is None:
            namespace, name = split_key(key)
            raise LabError(POD.not_found(name, namespace))
        record = pod
    labels = relabelled(record.labels, changes, overwrite)
    if labels == record.labels:
        return f"{kind}/{key.rsplit('/', 1)[-1]} not labeled"
    record.labels = labels
    failures = sync_failures(inv, transport, objects)
    files.write_objects(objects)
    if failures:
        raise LabError("\n".join(failures))
    return f"{kind}/{key.rsplit('/', 1)[-1]} labeled"


def restart_deployment(inv: Inventory, transport: Transport, files: LabFiles, key: str,
                       progress: Callable[[str], None] = lambda line: None) -> str:
    """`lab rollout restart deploy NAME`: new pods (new names, new IPs) for the old ones; endpoints follow."""
    objects = files.read_objects()
    deployment = objects.deployments.get(key)
    if deployment is None:
        raise LabError(DEPLOYMENT.not_found(split_key(key)[1]))
    if not deployment.manifest:
        raise InputError(f"deployment {key} was applied before the lab kept manifests; `lab apply` it once again")
    old = objects.pods_of(deployment.owner)
    progress(f"{len(old)} pod(s) to replace")
    failures = pods_mod.apply_pod_changes(inv, transport, objects, PodChanges(delete=old))
    files.write_objects(objects)
    if failures:
        raise LabError("\n".join(failures))
    apply_manifests(inv, transport, files, kinds.load_text(json.dumps(deployment.manifest), f"deployment {key}"),
                    progress)
    return f"deployment.apps/{key.split('/', 1)[1]} restarted"

"""Commands on the lab and its nodes: up, down, image, status, deploy, destroy, bootstrap, exec, ssh,
inventory, graph, controller."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from typing import Any, Optional

from rich.table import Table

from orchestrator import pipeline
from orchestrator.cli.common import err, out, progress, resolve_inventory, run_showing_output
from orchestrator.cli.output import print_reports, print_table
from orchestrator.core.agent import agent_argv, supervised_argv
from orchestrator.core.errors import InputError, LabError
from orchestrator.core.objects import key_of
from orchestrator.core.state import LabFiles, current_lab
from orchestrator.core.transport import UNLIMITED, CommandTimedOut, Transport
from orchestrator.layers.nodes.facts import CNI_PLUGINS
from orchestrator.layers.nodes import read as node_read
from orchestrator.layers.nodes.read import host_neighbour_entries, read_state, shared_kernel_limit
from orchestrator.layers.nodes.shared_kernel import learned_needed
from orchestrator.layers.services import apply as services_mod
from orchestrator.providers.local import LocalProvider, base_inventory


def cmd_up(args) -> int:
    base = base_inventory(args.inventory)
    name = args.name or base.cluster.name
    provider = args.provider or (base.emulated.provider if base.emulated else "local")
    if provider == "qemu":
        from orchestrator.providers.qemu import QemuProvider
        inv = QemuProvider(progress).up(name, args.nodes, base, sudo_user=args.sudo_user, memory=args.memory,
                                        accel=args.accel, subnets=args.subnets)
        kind, place = "VMs (qemu)", lambda node: f"tap {node.name} in {name}-underlay"
    else:
        if args.memory or args.accel:
            raise InputError("--memory and --accel are for VMs: add --provider qemu")
        inv = LocalProvider(progress).up(name, args.nodes, base, sudo_user=args.sudo_user, subnets=args.subnets)
        kind, place = "emulated nodes", lambda node: f"namespace {name}-{node.name}"
    table = Table(title=f"lab {name}: {len(inv.nodes)} {kind}", title_justify="left")
    subnets = {s.name: s.cidr for s in inv.subnets}
    for column in ("NODE", "ADDRESS", *(("SUBNET",) if subnets else ()), "WHERE"):
        table.add_column(column)
    for node in inv.nodes:
        subnet = (f"{node.subnet} {subnets[node.subnet]}",) if subnets and node.subnet else ()
        table.add_row(node.name, str(node.address), *subnet, place(node))
    out.print(table)
    out.print(f"inventory: {inv.source}")
    files = LabFiles.of(inv.name)
    with files.lock(), Transport(inv.nodes) as transport:
        # a node that booted again is ready once its boot unit is done
        objects = files.read_objects()
        waiting, states = node_read.wait_until_ready(transport, list(inv.nodes), inv.name, READY_SECONDS, progress,
                                                     objects.boots)
        deployed = objects.subnets
        blank = node_read.lost_the_lab({name: s for name, s in states.items() if name in deployed})
        if blank and not waiting:  # made again without the lab: it goes back on them, pods and all
            progress(f"{', '.join(blank)}: made again without the lab: deploying it there")
            reports = pipeline.deploy(inv, transport, files, progress=progress)
            if print_reports(f"lab {inv.name}: pod network ({inv.cluster.overlay.backend})", reports, False):
                return 1
    for name, why in sorted(waiting.items()):
        err.print(f"lab: {name}: not ready after {READY_SECONDS:g} s ({why})", style="red", markup=False)
    return 1 if waiting else 0


READY_SECONDS = 600.0  # a VM's boot unit under TCG restores a lab of a few pods in well under a minute


def cmd_image(args) -> int:
    from orchestrator.providers import image as image_mod
    if args.action == "list":
        images = image_mod.cached_images()
        if not images:
            out.print(f"no cached VM images in {image_mod.image_cache()} (`lab up --provider qemu` builds one)")
            return 0
        print_table(["KEY", "DEBIAN", "KERNEL", "SIZE", "BUILT"], [
            [image.key, image.recipe.get("suite", "?"), image.recipe.get("kernel_version", "?"),
             f"{image.size_bytes / 2**20:.0f}Mi", str(image.recipe.get("built", "?"))] for image in images])
        return 0
    keys = [image.key for image in image_mod.cached_images()] if args.all else args.keys
    if not keys:
        raise InputError("lab image rm: which image? give its KEY (see `lab image list`) or --all")
    for key in keys:
        if not image_mod.remove_image(key):
            raise InputError(f"lab image rm: no cached image {key!r}; see `lab image list`")
        out.print(f"image {key}: removed")
    return 0


def cmd_down(args) -> int:
    name = args.name or current_lab()
    if name is None:
        raise InputError("lab down: which lab? give --name NAME (no lab was brought up from here)")
    if LocalProvider(progress).down(name):
        out.print(f"lab {name}: removed (namespaces, links, processes and files)")
    else:
        out.print(f"lab {name} does not exist: nothing to do")
    return 0


def cmd_status(args) -> int:
    inv = resolve_inventory(args.inventory)
    with Transport(inv.nodes) as transport:
        results = transport.run_all(lambda node: read_state(transport, node, inv.name))
    rows = []
    for node in inv.nodes:
        facts = results[node.name]
        row: dict[str, Any] = {"name": node.name, "address": str(node.address), "ssh": "ok", "hostname": None,
                               "kernel": None, "cni_plugins": {}, "missing_plugins": list(CNI_PLUGINS), "error": None}
        if isinstance(facts, BaseException):
            row.update(ssh="failed", error=str(facts))
        else:
            row.update(hostname=facts.hostname, kernel=facts.kernel, cni_plugins=facts.cni_plugins,
                       missing_plugins=facts.missing_plugins)
        rows.append(row)
    shared = shared_kernel_use(inv)
    if args.output == "json":
        print(json.dumps({"lab": inv.name, "inventory": inv.source, "nodes": rows,
                          **({"shared_kernel": shared} if shared else {})}, indent=2))
    else:
        table = Table(title=f"lab {inv.name} ({inv.source})", title_justify="left")
        for column in ("NODE", "ADDRESS", "SSH", "HOSTNAME", "KERNEL", "CNI PLUGINS"):
            table.add_column(column)
        for row in rows:
            if row["error"]:
                table.add_row(row["name"], row["address"], "[red]failed[/]", "", "", "")
                continue
            missing = row["missing_plugins"]
            cni = (f"[green]{len(CNI_PLUGINS)}/{len(CNI_PLUGINS)}[/] "
                   f"({os.path.dirname(next(iter(row['cni_plugins'].values())))})"
                   if not missing else f"[red]missing: {', '.join(missing)}[/]")
            table.add_row(row["name"], row["address"], "[green]ok[/]", row["hostname"], row["kernel"], cni)
        out.print(table)
        if shared:
            out.print(f"shared kernel: this lab's pods need about {shared['learned_needed']} learned neighbour entries "
                      f"of the {shared['learned_limit']} this machine allows for every namespace together "
                      f"(net.ipv4.neigh.default.gc_thresh3); its ARP table holds {shared['entries_now']} now, "
                      "permanent ones included (docs/nodes.md)", markup=False, soft_wrap=True)
        for row in rows:
            if row["error"]:
                err.print(row["error"], style="red", markup=False, soft_wrap=True)
    return 0 if all(row["ssh"] == "ok" for row in rows) else 1


def shared_kernel_use(inv) -> dict[str, Any]:
    """For emulated nodes, what they take of the one ARP table they share with this machine; else nothing."""
    limit = shared_kernel_limit(inv)
    if limit is None:
        return {}
    pods = LabFiles.of(inv.name).read_objects().pods.values()
    return {"learned_needed": learned_needed([n.name for n in inv.nodes], pods), "learned_limit": limit,
            "entries_now": host_neighbour_entries()}


def cmd_deploy(args) -> int:
    return run_deploy(args)


def run_deploy(args, force: bool = False) -> int:
    inv = resolve_inventory(args.inventory)
    files = LabFiles.of(inv.name)
    dry_run = getattr(args, "dry_run", False)
    with files.lock(), Transport(inv.nodes) as transport:
        reports = pipeline.deploy(inv, transport, files, dry_run=dry_run, progress=progress, force=force)
    title = f"lab {inv.name}: pod network ({inv.cluster.overlay.backend})" + (" - dry run" if dry_run else "")
    # `lab fix` always says what it repaired
    return print_reports(title, reports, dry_run or args.verbose or force)


def cmd_destroy(args) -> int:
    inv = resolve_inventory(args.inventory)
    files = LabFiles.of(inv.name)
    with files.lock(), Transport(inv.nodes) as transport:
        reports = pipeline.destroy(inv, transport, files, progress=progress)
    return print_reports(f"lab {inv.name}: destroy", reports, args.verbose)


def cmd_bootstrap(args) -> int:
    from orchestrator.layers.nodes import bootstrap as bootstrap_mod
    inv = resolve_inventory(args.inventory)
    with Transport(inv.nodes) as transport:
        reports = bootstrap_mod.bootstrap(inv, transport, dry_run=args.dry_run, progress=progress)
    for line in bootstrap_mod.report_lines(reports):
        out.print(line, markup=False, highlight=False, soft_wrap=True)
    for r in reports:
        if r.error:
            err.print(f"lab: {r.error}", style="red", markup=False, soft_wrap=True)
    return 1 if any(r.error for r in reports) else 0


def cmd_graph(args) -> int:
    from orchestrator.cli.graph import write_graph
    inv = resolve_inventory(args.inventory)
    path = write_graph(inv, LabFiles.of(inv.name).read_objects(), args.output)
    out.print(f"wrote {path}", markup=False, highlight=False)
    return 0


def cmd_controller(args) -> int:
    inv = resolve_inventory(args.inventory)
    files = LabFiles.of(inv.name)
    if not args.once:
        err.print(f"controller for lab {inv.name}: watching {files.objects} and the nodes (Ctrl-C stops)")
    services_mod.run_controller(inv, files, interval=args.interval, once=args.once,
                                report=lambda line: out.print(line, markup=False, highlight=False))
    return 0


def cmd_exec(args) -> int:
    """`lab exec NODE -- CMD`, `lab exec node/NODE -- CMD`, or kubectl's `lab exec POD [-n NS] -- CMD` (the lab
    finds the pod's node); `--pod POD` still works with a node."""
    command = args.command
    if not command and not args.interactive:
        raise InputError("lab exec: no command given; write it after --, e.g. lab exec node1 -- ip route")
    inv = resolve_inventory(args.inventory)
    target, pod_name = args.node, args.pod
    nodes = {n.name for n in inv.nodes}
    if target in LAB_HOSTS and target not in nodes and not pod_name:
        return exec_on_lab_host(inv, target, command)
    if target.startswith("node/"):
        target = target[len("node/"):]
    elif not pod_name and target not in nodes:
        pod_name, target = target, None
    pod = None
    if pod_name:
        pod = LabFiles.of(inv.name).read_objects().pods.get(key_of(args.namespace, pod_name))
        if pod is None:
            raise InputError(f'Error from server (NotFound): pods "{pod_name}" not found in namespace '
                             f"{args.namespace!r} (nor is it a node: {', '.join(sorted(nodes))}); "
                             "see `lab get pods -A`")
        if target is not None and pod.node != target:
            raise InputError(f"pod {pod_name} runs on {pod.node}, not {target}; "
                             f"use `lab exec {pod_name} -n {args.namespace} -- ...`")
        return run_in_pod(inv, pod, command or ["sh"], terminal(args), args.timeout or UNLIMITED, stdin=stdin_of(args))
    interactive = terminal(args)
    return run_on_node(inv.node(target), command if interactive else supervised_argv(inv.name, command), interactive,
                       args.timeout or UNLIMITED, stdin=stdin_of(args), shown=command)


def terminal(args) -> bool:
    """Whether the command gets a terminal: -t, where this is one (kubectl's -it)."""
    return bool(args.interactive) and sys.stdin.isatty()


def stdin_of(args) -> Optional[bytes]:
    """With -i and no terminal, this stdin, for the command's (kubectl's `-i`: `lab exec -i POD -- sh < script`)."""
    return sys.stdin.buffer.read() if getattr(args, "stdin", False) and not terminal(args) else None


def run_on_node(node, command: list[str], interactive: bool, timeout: Optional[float], replace: bool = True,
                stdin: Optional[bytes] = None, shown: Optional[list[str]] = None) -> int:
    """`command` (as the user wrote it: `shown`) on `node`, its output shown as it comes; with a terminal
    (`interactive`), the OpenSSH client, as `lab ssh`. The command's exit code."""
    if interactive:
        return exec_ssh(node, ["sudo", "-n", *command] if command and node.ssh.sudo else command, tty=True,
                        replace=replace)
    with Transport([node]) as transport:
        try:
            return run_showing_output(transport, node, command, timeout=timeout, stdin=stdin).exit_code
        except CommandTimedOut:
            raise ExecTimedOut(f"lab exec: `{' '.join(shown or command)}` on {node.name} ended after {timeout:g} s "
                               "(--timeout)") from None


class ExecTimedOut(LabError):
    exit_code = 124  # as timeout(1)


def run_in_pod(inv, pod, command: list[str], interactive: bool, timeout: Optional[float], replace: bool = True,
               stdin: Optional[bytes] = None) -> int:
    """`command` in `pod` (its namespaces, the root its image names), on its node, through the node's agent."""
    argv = agent_argv(inv.name, "enter", *(["--tty"] if interactive else []), pod.node_key, "--", *command)
    return run_on_node(inv.node(pod.node), argv, interactive, timeout, replace, stdin, shown=command)


def cmd_link(args) -> int:
    """`lab link NODE|svc/NAME|all down|up`: the node's port on the underlay bridge (its cable), in the lab's
    underlay namespace on this machine; the node itself is not touched."""
    inv = resolve_inventory(args.inventory)
    if inv.emulated is None:
        raise InputError("lab link: only emulated and VM labs have an underlay this machine holds; on your own "
                         "machines, take the interface down there")
    if args.target == "all":
        nodes = [n.name for n in inv.nodes]
    elif args.target.startswith(("svc/", "service/", "services/")):
        objects = LabFiles.of(inv.name).read_objects()
        name = args.target.split("/", 1)[1]
        service = objects.services.get(key_of(args.namespace, name))
        if service is None:
            raise InputError(f'Error from server (NotFound): services "{name}" not found in namespace '
                             f"{args.namespace!r}")
        node = objects.announced.get(service.load_balancer_ip or "")
        if node is None:
            raise InputError(f"lab link: no node announces {args.target}'s address (lab describe svc {name}): "
                             "name a node instead")
        nodes = [node]
    else:
        nodes = [inv.node(args.target.removeprefix("node/")).name]
    underlay = f"{inv.name}-underlay"
    for node in nodes:
        proc = subprocess.run(["ip", "-n", underlay, "link", "set", node, args.state], capture_output=True, text=True)
        if proc.returncode != 0:
            raise LabError(f"lab link: {node}'s port in {underlay}: {proc.stderr.strip()}; `lab up` makes it again")
        out.print(f"{node}: link {args.state}" + (f" (the node keeps running; `lab link {node} up` plugs it back)"
                                                  if args.state == "down" else ""), markup=False, highlight=False)
    return 0


LAB_HOSTS = ("outside", "router")  # the emulated and VM labs' own hosts: the outside host and its router


def exec_on_lab_host(inv, host: str, command: Optional[list[str]]) -> int:
    """`lab exec outside|router -- CMD`: the command in that lab namespace on this machine (it has no SSH); a shell
    there without a command."""
    if inv.emulated is None:
        raise InputError(f"lab exec {host}: only emulated and VM labs have an outside host and router; this lab's "
                         f"nodes are {', '.join(n.name for n in inv.nodes)}")
    namespace = f"{inv.name}-{host}"
    if not os.path.exists(f"/run/netns/{namespace}"):
        raise LabError(f"lab exec {host}: network namespace {namespace} is missing; `lab up` makes it again")
    if not command:
        return subprocess.run(["ip", "netns", "exec", namespace, "sh"]).returncode
    proc = subprocess.run(["ip", "netns", "exec", namespace, *command], capture_output=True, text=True)
    sys.stdout.write(proc.stdout)  # through sys.stdout, so that a lesson's check reads it
    sys.stderr.write(proc.stderr)
    return proc.returncode


def cmd_ssh(args) -> int:
    inv = resolve_inventory(args.inventory)
    return exec_ssh(inv.node(args.node), args.command)


def exec_ssh(node, command: list[str], tty: bool = False, replace: bool = True) -> int:
    """Become the OpenSSH client to `node` (host key pinned), with a terminal when `tty`; or, not `replace`,
    run it and return its exit code (the caller has something to do after it)."""
    if shutil.which("ssh") is None:
        raise LabError("ssh (the OpenSSH client) is not installed: install openssh-client")
    ssh = node.ssh
    argv = ["ssh", *(["-t"] if tty else []), "-p", str(ssh.port), *ssh.openssh_options(), f"{ssh.user}@{node.ssh_host}",
            *command]
    sys.stdout.flush()
    if not replace:
        return subprocess.call(argv)
    os.execvp("ssh", argv)
    return 0  # not reached


def cmd_inventory(args) -> int:
    from orchestrator.providers import imported as inventory_convert
    return inventory_convert.run(args, resolve_inventory, lambda line: err.print(
        f"Notice: {line}", style="yellow", markup=False, soft_wrap=True))

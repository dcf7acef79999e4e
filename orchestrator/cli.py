"""`lab`: the command line. Parses arguments, picks the inventory, calls the library, prints results.

Every LabError becomes one line on stderr and a non-zero exit code; there is no traceback for a
user's mistake.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Optional

from rich.console import Console
from rich.table import Table
from rich.text import Text

from . import __version__, inventory
from . import manifests as manifests_mod
from . import node_agent
from .apply import deploy as deploy_mod
from .apply import pods as pods_mod
from .apply import services as services_mod
from .apply.agent import agent_path
from .apply.node import read_state
from .plan.facts import CNI_PLUGINS
from .errors import InputError, LabError
from .model import Inventory
from .providers.local import LocalProvider, base_inventory
from .state import LabFiles, current_lab
from .transport import NodeError, Transport
from .views import age, endpoint_addresses, endpoints_json, pod_json, print_table, service_json, service_ports_text

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)


def progress(line: str) -> None:
    err.print(f"• {line}", style="dim", markup=False)


def resolve_inventory(path: Optional[str]) -> Inventory:
    """-i/--inventory, else $LAB_INVENTORY, else the lab brought up last (.lab/current)."""
    path = path or os.environ.get("LAB_INVENTORY")
    if path:
        return inventory.load(path)
    name = current_lab()
    if name is None:
        raise InputError("no lab to work on: bring one up with `lab up`, or give an inventory with "
                         "-i/--inventory or LAB_INVENTORY")
    return inventory.load(LabFiles.of(name).inventory)


# ---- commands -----------------------------------------------------------------------------------


def cmd_up(args) -> int:
    base = base_inventory(args.inventory)
    name = args.name or base.cluster.name
    provider = args.provider or (base.emulated.provider if base.emulated else "local")
    if provider == "qemu":
        from .providers.qemu import QemuProvider
        inv = QemuProvider(progress).up(name, args.nodes, base, sudo_user=args.sudo_user, memory=args.memory,
                                        accel=args.accel)
        kind, place = "VMs (qemu)", lambda node: f"tap {node.name} in {name}-underlay"
    else:
        if args.memory or args.accel:
            raise InputError("--memory and --accel are for VMs: add --provider qemu")
        inv = LocalProvider(progress).up(name, args.nodes, base, sudo_user=args.sudo_user)
        kind, place = "emulated nodes", lambda node: f"namespace {name}-{node.name}"
    table = Table(title=f"lab {name}: {len(inv.nodes)} {kind}", title_justify="left")
    for column in ("NODE", "ADDRESS", "WHERE"):
        table.add_column(column)
    for node in inv.nodes:
        table.add_row(node.name, str(node.address), place(node))
    out.print(table)
    out.print(f"inventory: {inv.source}")
    return 0


def cmd_image(args) -> int:
    from .providers import image as image_mod
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
        row = {"name": node.name, "address": str(node.address), "ssh": "ok", "hostname": None, "kernel": None,
               "cni_plugins": {}, "missing_plugins": list(CNI_PLUGINS), "error": None}
        if isinstance(facts, BaseException):
            row.update(ssh="failed", error=str(facts))
        else:
            row.update(hostname=facts.hostname, kernel=facts.kernel, cni_plugins=facts.cni_plugins,
                       missing_plugins=facts.missing_plugins)
        rows.append(row)
    if args.output == "json":
        print(json.dumps({"lab": inv.name, "inventory": inv.source, "nodes": rows}, indent=2))
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
        for row in rows:
            if row["error"]:
                err.print(row["error"], style="red", markup=False, soft_wrap=True)
    return 0 if all(row["ssh"] == "ok" for row in rows) else 1


def print_reports(title: str, reports, show_changes: bool) -> int:
    """A per-node table (ok / changed / failed), the changes when asked, errors last; exit code."""
    styles = {"ok": "green", "changed": "yellow", "removed": "yellow", "would change": "yellow", "failed": "red"}
    table = Table(title=title, title_justify="left")
    for column in ("NODE", "POD SUBNET", "RESULT", "CHANGES"):
        table.add_column(column)
    for r in reports:
        style = styles.get(r.status, "")
        table.add_row(r.node, r.subnet or "", Text(r.status, style=style), str(len(r.changes)))
    out.print(table)
    if show_changes:
        for r in reports:
            for what in r.changes:
                out.print(f"  {r.node}: {what}", markup=False, highlight=False, soft_wrap=True)
    failed = [r for r in reports if r.status == "failed"]
    for r in failed:
        for line in (r.error or "failed").splitlines():
            err.print(f"lab: {line}", style="red", markup=False, soft_wrap=True)
    if not failed and all(r.status == "ok" for r in reports):
        out.print("no changes")
    return 1 if failed else 0


def cmd_deploy(args) -> int:
    return run_deploy(args)


def run_deploy(args, force: bool = False) -> int:
    inv = resolve_inventory(args.inventory)
    files = LabFiles.of(inv.name)
    dry_run = getattr(args, "dry_run", False)
    with files.lock(), Transport(inv.nodes) as transport:
        reports = deploy_mod.deploy(inv, transport, files, dry_run=dry_run, progress=progress, force=force)
    title = f"lab {inv.name}: pod network ({inv.cluster.overlay.backend})" + (" - dry run" if dry_run else "")
    # `lab fix` always says what it repaired
    return print_reports(title, reports, dry_run or args.verbose or force)


def cmd_destroy(args) -> int:
    inv = resolve_inventory(args.inventory)
    files = LabFiles.of(inv.name)
    with files.lock(), Transport(inv.nodes) as transport:
        reports = deploy_mod.destroy(inv, transport, files, progress=progress)
    return print_reports(f"lab {inv.name}: destroy", reports, args.verbose)


def cmd_bootstrap(args) -> int:
    from .apply import bootstrap as bootstrap_mod
    inv = resolve_inventory(args.inventory)
    with Transport(inv.nodes) as transport:
        reports = bootstrap_mod.bootstrap(inv, transport, dry_run=args.dry_run, progress=progress)
    for line in bootstrap_mod.report_lines(reports):
        out.print(line, markup=False, highlight=False, soft_wrap=True)
    for r in reports:
        if r.error:
            err.print(f"lab: {r.error}", style="red", markup=False, soft_wrap=True)
    return 1 if any(r.error for r in reports) else 0


def warn(line: str) -> None:
    err.print(f"Warning: {line}", style="yellow", markup=False, soft_wrap=True)


def apply_manifests(args, action) -> int:
    """Parse every -f target first (bad input changes nothing), then `action` under the lab's lock."""
    inv = resolve_inventory(args.inventory)
    manifests = [m for target in args.filename for m in manifests_mod.parse_all(target, warn)]
    files = LabFiles.of(inv.name)
    with files.lock(), Transport(inv.nodes) as transport:
        lines = action(inv, transport, files, manifests, progress)
    for line in lines:
        out.print(line, markup=False, highlight=False)
    return 0


def cmd_apply(args) -> int:
    return apply_manifests(args, pods_mod.apply)


def cmd_delete(args) -> int:
    return apply_manifests(args, pods_mod.delete)


def cmd_verify(args) -> int:
    from .verify import report
    inv = resolve_inventory(args.inventory)
    outcomes, collector, seconds = report.verify(inv, junit=args.junit, expect=args.expect)
    if args.html:
        Path(args.html).write_text(report.outcomes_html(f"lab {inv.name}: verify", outcomes, collector))
    if args.output == "json":
        print(report.outcomes_json(outcomes, collector))
        ok = all(o.ok for o in outcomes) and not collector.failed
    else:
        ok = report.print_report(out, outcomes, collector, seconds)
    return 0 if ok else 1


def cmd_break(args) -> int:
    from .verify import faults
    if args.list or not (args.fault or args.reveal):
        for fault in faults.FAULTS.values():
            print(f"{fault.name:<10} {fault.summary} (trips: {fault.trips})")
        return 0
    inv = resolve_inventory(args.inventory)
    files = LabFiles.of(inv.name)
    secret = files.root / "hidden-fault.txt"
    if args.reveal:
        out.print(secret.read_text().strip() if secret.exists() else "no hidden fault: `lab break random` "
                  "hides one", markup=False, highlight=False, soft_wrap=True)
        return 0
    if args.fault == "random":
        name, node = faults.pick_random(inv, files)
        node = args.node or node
        secret.write_text(f"{name}: {faults.inject(name, inv, files, node)}\n")
        out.print(f"broke lab {inv.name}: one fault, chosen at random, is hidden somewhere", markup=False)
        out.print("find it with `lab verify` and commands on the nodes; `lab break --reveal` tells; "
                  "repair it with `lab fix`", markup=False)
        return 0
    secret.unlink(missing_ok=True)  # this fault is shown, not hidden
    out.print(f"broke lab {inv.name}: {faults.inject(args.fault, inv, files, args.node)}",
              markup=False, highlight=False, soft_wrap=True)
    out.print("find it with `lab verify`; repair it with `lab fix`", markup=False)
    return 0


def cmd_fix(args) -> int:
    return run_deploy(args, force=True)


def cmd_play(args) -> int:
    from . import lessons as playbooks
    if args.list or not args.lesson:
        for lesson in playbooks.load_all():
            print(f"{lesson.id:<22} {lesson.title}")
        return 0
    if args.cleanup and (args.check or args.step):
        raise InputError("lab play: --cleanup goes alone; drop --check/--step")
    lesson = playbooks.find(args.lesson)
    inv = resolve_inventory(args.inventory)
    styles = {"title": "bold", "explain": "italic", "command": "cyan", "ok": "green", "fail": "red", "note": "dim"}
    marks = {"ok": "✓ ", "fail": "✗ "}

    def show(kind: str, text: str) -> None:
        if kind == "title":
            out.print()
        out.print(marks.get(kind, "") + text, style=styles.get(kind), markup=False, highlight=False,
                  soft_wrap=True)

    def run_lab(argv: list[str]) -> int:
        sys.stdout.flush()
        return main([argv[0], "-i", inv.source, *argv[1:]])

    def pause() -> bool:
        try:
            return input("Enter: next step, q: stop > ").strip().lower() != "q"
        except EOFError:
            return True

    with Transport(inv.nodes) as transport:
        player = playbooks.Player(lesson, inv, transport, show, stream=(sys.stdout.buffer, sys.stderr.buffer),
                                  run_lab=run_lab)
        if args.cleanup:
            player.cleanup()
            out.print(f"lesson {lesson.id}: cleaned up", markup=False)
            return 0
        if not args.check:
            player.require()
            out.print(f"{lesson.id}: {player.text(lesson.title)}", style="bold underline", markup=False)
            if lesson.summary:
                out.print(player.text(lesson.summary), style="italic", markup=False, soft_wrap=True)
        outcome = player.check(pause if args.step else None) if args.check else \
            player.play(pause if args.step else None)
    out.print()
    if outcome.ok and outcome.stopped_after is not None:
        out.print(f"lesson {lesson.id}: stopped after step {outcome.stopped_after}; {outcome.checks_passed} checks "
                  "passed so far", markup=False)
        return 0
    if outcome.ok:
        out.print(f"lesson {lesson.id}: all {outcome.checks_passed} checks passed", style="green", markup=False)
        if not args.check:
            out.print(f"look around with `lab exec {inv.nodes[0].name} -- ...`; "
                      f"undo it with `lab play {lesson.id} --cleanup`", markup=False)
        return 0
    out.print(f"lesson {lesson.id}: {len(outcome.checks_failed)} of "
              f"{len(outcome.checks_failed) + outcome.checks_passed} checks failed", style="red", markup=False)
    return 1


def cmd_graph(args) -> int:
    from .graph import write_graph
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


def cmd_describe(args) -> int:
    inv = resolve_inventory(args.inventory)
    objects = LabFiles.of(inv.name).read_objects()
    key = f"{args.namespace}/{args.name}"
    s = objects["services"].get(key)
    if s is None:
        raise InputError(f"no service {args.name!r} in namespace {args.namespace!r}; see `lab get svc -A`")
    labels = manifests_mod.fmt_labels(s["labels"]).replace(",", "\n" + " " * 19) or "<none>"
    lines = [("Name:", s["name"]), ("Namespace:", s["namespace"]), ("Labels:", labels), ("Annotations:", "<none>")]
    if RESOURCE_ALIASES.get(args.resource, "ep") == "svc":
        lines += [("Selector:", manifests_mod.fmt_labels(s["selector"]) or "<none>"), ("Type:", s["type"]),
                  ("IP:", s["cluster_ip"])]
        for port in s["ports"]:
            eps = objects["endpoints"].get(key, {}).get(port["name"] or "", [])
            target = port["target_port"]
            lines += [("Port:", f"{port['name'] or '<unset>'} {port['port']}/{port['protocol']}"),
                      ("TargetPort:", f"{target}/{port['protocol']}")]
            if port.get("node_port"):
                lines.append(("NodePort:", f"{port['name'] or '<unset>'} {port['node_port']}/{port['protocol']}"))
            lines.append(("Endpoints:", ",".join(f"{e['ip']}:{e['port']}" for e in eps) or "<none>"))
        lines += [("Session Affinity:", s["session_affinity"]), ("Events:", "<none>")]
    else:
        lines.append(("Subsets:", ""))
        for port in s["ports"]:
            eps = objects["endpoints"].get(key, {}).get(port["name"] or "", [])
            lines += [("  Addresses:", ",".join(e["ip"] for e in eps) or "<none>"), ("  NotReadyAddresses:", "<none>"),
                      ("  Ports:", ""), ("    Name", "Port  Protocol"), ("    ----", "----  --------"),
                      (f"    {port['name'] or '<unset>'}", f"{eps[0]['port'] if eps else port['target_port']}     "
                                                           f"{port['protocol']}")]
        lines.append(("Events:", "<none>"))
    for label, value in lines:
        print(f"{label:<18} {value}".rstrip())
    return 0


def cmd_cni(args) -> int:
    inv = resolve_inventory(args.inventory)
    objects = LabFiles.of(inv.name).read_objects()
    if args.cni_command == "check":
        return cni_check(inv, objects, args)
    try:
        text = open(args.filename).read() if args.filename != "-" else sys.stdin.read()
    except OSError as exc:
        raise InputError(f"{args.filename}: cannot read: {exc.strerror}; give a CNI config file") from None
    try:
        node_agent.load_conf(text, args.filename)
        node_agent.check_arguments(args.id, args.ifname)
    except node_agent.CniError as exc:
        raise InputError(str(exc)) from None
    node = inv.node(args.node)
    if node.name not in objects["subnets"]:
        raise InputError(f"{node.name} has no pod network yet: run `lab deploy` first")
    netns = args.netns if args.netns.startswith("/") else f"/run/netns/{args.netns}"
    argv = ["python3", agent_path(inv.name), "cni", args.command_verb, "--conf", "-", "--netns", netns,
            "--id", args.id, "--ifname", args.ifname]
    with Transport([node]) as transport:
        result = transport.run(node, argv, stdin=text, check=False,
                               stream=(sys.stdout.buffer, sys.stderr.buffer))
    return result.exit_code


def cni_check(inv: Inventory, objects: dict, args) -> int:
    """CNI CHECK for every (or the named) pod, through the plugins that attached it."""
    pods = [p for p in objects["pods"].values() if (args.all_namespaces or p["namespace"] == args.namespace)
            and (not args.names or p["name"] in args.names)]

    def check_node(node):
        return {p["name"]: transport.run(node, [
            "python3", agent_path(inv.name), "cni", "CHECK", "--conf",
            f"/etc/cni/net.d/10-{inv.name}.conflist", "--netns", f"/run/netns/{p['netns']}", "--id", p["uid"],
            "--ifname", "eth0"], check=False) for p in pods if p["node"] == node.name}

    with Transport(inv.nodes) as transport:
        results = transport.run_all(check_node, [n for n in inv.nodes if any(p["node"] == n.name for p in pods)])
    rows, failed = [], 0
    for node, outcome in results.items():
        if isinstance(outcome, BaseException):
            rows.append(["*", node, f"failed: {outcome}"])
            failed += 1
            continue
        for pod, result in sorted(outcome.items()):
            ok = result.exit_code == 0
            failed += not ok
            rows.append([pod, node, "ok" if ok else (result.stderr.strip().splitlines() or ["failed"])[-1]])
    print_table(["POD", "NODE", "CNI CHECK"], rows)
    return 1 if failed else 0


RESOURCE_ALIASES = {"pods": "pods", "pod": "pods", "po": "pods", "nodes": "nodes", "node": "nodes", "no": "nodes",
                    "services": "svc", "service": "svc", "svc": "svc", "endpoints": "ep", "ep": "ep"}


def selected_services(objects: dict, args) -> list[tuple[str, dict]]:
    return sorted((k, s) for k, s in objects["services"].items()
                  if (args.all_namespaces or s["namespace"] == args.namespace) and (not args.names or s["name"] in args.names))


def cmd_get(args) -> int:
    inv = resolve_inventory(args.inventory)
    objects = LabFiles.of(inv.name).read_objects()
    resource = RESOURCE_ALIASES[args.resource]
    if resource in ("svc", "ep"):
        items = selected_services(objects, args)
        if args.output == "json":
            docs = [service_json(s) if resource == "svc" else endpoints_json(s, objects, k) for k, s in items]
            print(json.dumps({"apiVersion": "v1", "kind": "List", "items": docs} if not args.names or len(docs) != 1
                             else docs[0], indent=2))
            return 0
        if not items:
            err.print(f"No resources found in {'any' if args.all_namespaces else args.namespace} namespace.")
            return 0
        lead = ["NAMESPACE"] if args.all_namespaces else []
        if resource == "svc":
            columns = lead + ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"]
            rows = [([s["namespace"]] if lead else []) + [s["name"], s["type"], s["cluster_ip"], "<none>",
                                                          service_ports_text(s), age(s["created"])] for _, s in items]
            if args.output == "wide":
                columns.append("SELECTOR")
                rows = [r + [manifests_mod.fmt_labels(s["selector"]) or "<none>"] for r, (_, s) in zip(rows, items)]
        else:
            columns = lead + ["NAME", "ENDPOINTS", "AGE"]
            rows = [([s["namespace"]] if lead else []) + [s["name"], ",".join(endpoint_addresses(objects, k)) or
                                                          "<none>", age(s["created"])] for k, s in items]
        print_table(columns, rows)
        return 0
    if resource == "nodes":
        items = [{"apiVersion": "v1", "kind": "Node", "metadata": {"name": n.name, "labels": n.labels},
                  "spec": {"podCIDR": objects["subnets"].get(n.name)},
                  "status": {"addresses": [{"type": "InternalIP", "address": str(n.address)}]}} for n in inv.nodes]
        if args.output == "json":
            print(json.dumps({"apiVersion": "v1", "kind": "List", "items": items}, indent=2))
        else:
            print_table(["NAME", "STATUS", "INTERNAL-IP", "POD-CIDR"],
                        [[n.name, "Ready" if objects["subnets"].get(n.name) else "NotReady", str(n.address),
                          objects["subnets"].get(n.name) or "<none>"] for n in inv.nodes])
        return 0
    pods = sorted(objects["pods"].values(), key=lambda p: (p["namespace"], p["name"]))
    if not args.all_namespaces:
        pods = [p for p in pods if p["namespace"] == args.namespace]
    if args.names:
        pods = [p for p in pods if p["name"] in args.names]
    if args.output == "json":
        print(json.dumps({"apiVersion": "v1", "kind": "List", "items": [pod_json(p, inv) for p in pods]}, indent=2))
        return 0
    if not pods:
        err.print(f"No resources found in {'any' if args.all_namespaces else args.namespace} namespace.")
        return 0
    columns = ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    if args.all_namespaces:
        columns.insert(0, "NAMESPACE")
    if args.output == "wide":
        columns += ["IP", "NODE", "NOMINATED NODE", "READINESS GATES"]
    rows = []
    for p in pods:
        row = [p["name"], "1/1", "Running", str(p.get("restarts", 0)), age(p["created"])]
        if args.all_namespaces:
            row.insert(0, p["namespace"])
        if args.output == "wide":
            row += [p["ip"], p["node"], "<none>", "<none>"]
        rows.append(row)
    print_table(columns, rows)
    return 0


def cmd_exec(args) -> int:
    command = args.command
    if not command:
        raise InputError("lab exec: no command given; write it after --, e.g. lab exec node1 -- ip route")
    inv = resolve_inventory(args.inventory)
    node = inv.node(args.node)
    if args.pod:
        pod = LabFiles.of(inv.name).read_objects()["pods"].get(f"{args.namespace}/{args.pod}")
        if pod is None:
            raise InputError(f"no pod {args.pod!r} in namespace {args.namespace!r}; see `lab get pods -A`")
        if pod["node"] != node.name:
            raise InputError(f"pod {args.pod} runs on {pod['node']}, not {node.name}; "
                             f"use `lab exec {pod['node']} --pod {args.pod} -- ...`")
        command = ["ip", "netns", "exec", pod["netns"], *command]
    with Transport([node]) as transport:
        result = transport.run(node, command, check=False, timeout=args.timeout,
                               stream=(sys.stdout.buffer, sys.stderr.buffer))
    return result.exit_code


def cmd_ssh(args) -> int:
    inv = resolve_inventory(args.inventory)
    node = inv.node(args.node)
    if shutil.which("ssh") is None:
        raise LabError("ssh (the OpenSSH client) is not installed: install openssh-client")
    ssh = node.ssh
    argv = ["ssh", "-p", str(ssh.port), *ssh.openssh_options(), f"{ssh.user}@{node.ssh_host}", *args.command]
    sys.stdout.flush()
    os.execvp("ssh", argv)
    return 0  # not reached


def cmd_inventory(args) -> int:
    from . import inventory_convert
    return inventory_convert.run(args, resolve_inventory, lambda line: err.print(
        f"Notice: {line}", style="yellow", markup=False, soft_wrap=True))


# ---- argument parsing ---------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lab", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="cluster-lab: a Kubernetes-style network from real kernel parts, over SSH.",
        epilog="examples:\n  lab up --name demo --nodes 3\n  lab status\n  lab exec node1 -- ip -br addr\n"
               "  lab down --name demo\n\nRun `lab COMMAND --help` for the options of each command.")
    parser.add_argument("--version", action="version", version=f"cluster-lab {__version__}")
    sub = parser.add_subparsers(dest="command_name", metavar="COMMAND")
    sub.required = True

    inv_opt = argparse.ArgumentParser(add_help=False)
    inv_opt.add_argument("-i", "--inventory", metavar="FILE",
                         help="the lab's inventory (default: $LAB_INVENTORY, else the lab brought up last)")

    def command(name: str, func, help_text: str, examples: str, parents=(inv_opt,)) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text, parents=list(parents),
                           formatter_class=argparse.RawDescriptionHelpFormatter,
                           epilog="examples:\n" + "\n".join(f"  {line}" for line in examples.splitlines()))
        p.set_defaults(func=func)
        return p

    p = command("up", cmd_up, "bring up emulated nodes or real VMs on this machine (needs root); a no-op when "
                "already up",
                "lab up                          # 3 nodes, lab 'demo'\n"
                "lab up --name study --nodes 5\n"
                "lab up --name vm --sudo-user lab   # log in as 'lab', commands through sudo\n"
                "lab up --name demo --nodes 4    # add a node to a running lab\n"
                "lab up --name vms --nodes 3 --provider qemu   # real Debian VMs (KVM or TCG)", parents=())
    p.add_argument("--name", help="the lab's name (default: cluster.name of the inventory, 'demo')")
    p.add_argument("--nodes", type=int, choices=range(1, 201), metavar="N",
                   help="how many nodes, 1 to 200 (default: emulated.nodes of the inventory, 3)")
    p.add_argument("-i", "--inventory", metavar="FILE",
                   help="the inventory to start from (default: the packaged inventories/local.yaml)")
    p.add_argument("--sudo-user", metavar="USER", help="make USER on every node, with passwordless sudo, and log "
                   "in as it instead of root (default: emulated.sudo_user of the inventory)")
    p.add_argument("--provider", choices=("local", "qemu"), help="local: emulated nodes (namespaces, this "
                   "machine's kernel; the default); qemu: real Debian VMs with their own kernel")
    p.add_argument("--memory", type=int, metavar="MiB", help="memory per VM (qemu; default 1024)")
    p.add_argument("--accel", choices=("auto", "kvm", "tcg"),
                   help="qemu's accelerator (default auto: KVM when a probe boots under it, else TCG)")

    p = command("image", cmd_image, "list or remove the cached VM images `lab up --provider qemu` boots",
                "lab image list\nlab image rm 0123456789abcdef\nlab image rm --all", parents=())
    p.add_argument("action", choices=("list", "rm"))
    p.add_argument("keys", nargs="*", metavar="KEY", help="with rm: the images to remove")
    p.add_argument("--all", action="store_true", help="with rm: every cached image")

    p = command("down", cmd_down, "remove a lab made by `lab up`: every namespace, link, process, VM and file it "
                "made (cached VM images stay)",
                "lab down --name demo\nlab down                  # the lab brought up last", parents=())
    p.add_argument("--name", help="the lab to remove (default: the lab brought up last)")

    p = command("status", cmd_status, "show each node: address, SSH reachability, hostname, kernel, CNI plugins",
                "lab status\nlab status -o json\nlab status -i inventories/vagrant.yaml")
    p.add_argument("-o", "--output", choices=("table", "json"), default="table")

    p = command("deploy", cmd_deploy, "build the pod network on every node: subnets, CNI config, overlay, "
                "masquerade; changes only what differs",
                "lab deploy\nlab deploy --dry-run          # what would change, per node\n"
                "lab deploy -i inventories/vagrant.yaml")
    p.add_argument("--dry-run", action="store_true", help="show what would change; change nothing")
    p.add_argument("-v", "--verbose", action="store_true", help="list every change made")

    p = command("destroy", cmd_destroy, "undo everything deploy and the pods made on the nodes",
                "lab destroy\nlab destroy -i inventories/vagrant.yaml")
    p.add_argument("-v", "--verbose", action="store_true", help="list every change made")

    p = command("bootstrap", cmd_bootstrap, "install what the nodes lack for the lab (apt or dnf, as root or "
                "with sudo), on every node in parallel; says per node what it installed",
                "lab bootstrap -i inventories/vagrant.yaml\nlab bootstrap --dry-run     # the install commands, "
                "per node; installs nothing")
    p.add_argument("--dry-run", action="store_true", help="show what would be installed and how; install nothing")

    for name, func, text, example in (
            ("apply", cmd_apply, "create or update pods from Kubernetes YAML (Pod, Deployment, Service)",
             "lab apply -f examples/nginx.yaml\nlab apply -f examples/\ncat pod.yaml | lab apply -f -"),
            ("delete", cmd_delete, "delete what Kubernetes YAML names (and a Deployment's pods)",
             "lab delete -f examples/nginx.yaml")):
        p = command(name, func, text, example)
        p.add_argument("-f", "--filename", action="append", required=True, metavar="FILE",
                       help="a manifest file, a folder of them, or - for stdin (repeatable)")

    p = command("cni", cmd_cni, "CNI by hand: CHECK the pods' attachments, or run ADD/DEL/CHECK/VERSION "
                "with a config of your own on a node",
                "lab cni check                       # CNI CHECK for every pod\n"
                "lab exec node1 -- ip netns add x\n"
                "lab cni exec ADD node1 -f bridge.conf --netns x --id 833aaaf9fd81\n"
                "lab cni exec DEL node1 -f bridge.conf --netns x --id 833aaaf9fd81")
    cni_sub = p.add_subparsers(dest="cni_command", metavar="check|exec")
    cni_sub.required = True
    c = cni_sub.add_parser("check", help="CNI CHECK for every (or the named) pod", parents=[inv_opt])
    c.add_argument("names", nargs="*", help="only these pods")
    c.add_argument("-n", "--namespace", default="default")
    c.add_argument("-A", "--all-namespaces", action="store_true")
    c = cni_sub.add_parser("exec", help="run one CNI command with a config file on a node", parents=[inv_opt])
    c.add_argument("command_verb", choices=("ADD", "DEL", "CHECK", "VERSION"), metavar="ADD|DEL|CHECK|VERSION")
    c.add_argument("node", help="node name")
    c.add_argument("-f", "--filename", required=True, help="CNI config (.conf) or list (.conflist), - for stdin")
    c.add_argument("--netns", default="", help="network namespace name on the node (or a path)")
    c.add_argument("--id", default="cni-lab", help="CNI_CONTAINERID")
    c.add_argument("--ifname", default="eth0", help="CNI_IFNAME")

    p = command("get", cmd_get, "list pods, nodes, services or endpoints, like kubectl get",
                "lab get pods\nlab get pods -o wide\nlab get pods -A -o json\nlab get nodes\n"
                "lab get svc\nlab get ep\nlab get svc nginx -o json")
    p.add_argument("resource", choices=sorted(RESOURCE_ALIASES), metavar="pods|nodes|svc|ep")
    p.add_argument("names", nargs="*", help="only these")
    p.add_argument("-n", "--namespace", default="default")
    p.add_argument("-A", "--all-namespaces", action="store_true")
    p.add_argument("-o", "--output", choices=("wide", "json"))

    p = command("verify", cmd_verify, "check the whole lab: pod to pod without NAT, services, DNS, NodePort, "
                "hostPort, egress, MTU; exit code 0 only when everything passes",
                "lab verify\nlab verify --junit verify.xml\nlab verify -o json\nlab verify --expect policy.yaml")
    p.add_argument("--junit", metavar="FILE", help="also write JUnit XML (for CI systems)")
    p.add_argument("--html", metavar="FILE", help="also write the matrix and the failures as an HTML page")
    p.add_argument("-o", "--output", choices=("table", "json"), default="table")
    p.add_argument("--expect", metavar="FILE", help="expectations as data: from/to/port/expect: open|closed")

    p = command("break", cmd_break, "inject a fault into the lab, to find with `lab verify` (study mode)",
                "lab break --list\nlab break vxlan-fdb\nlab break ipmasq --node node2\n"
                "lab break random         # a fault and a node at random, not shown\nlab break --reveal")
    p.add_argument("fault", nargs="?", help="the fault's name (see --list), or random")
    p.add_argument("--reveal", action="store_true", help="say which fault `lab break random` hid")
    p.add_argument("--list", action="store_true", help="list the faults, one per line, name first")
    p.add_argument("--node", help="the node to break (default: the first)")

    p = command("fix", cmd_fix, "repair the lab: lab deploy, plus a full reload of every node's service rules",
                "lab fix\nlab fix -v")
    p.add_argument("-v", "--verbose", action="store_true", help="list every change made")

    p = command("play", cmd_play, "play a lesson of the talk on the lab: each step explained, its commands "
                "shown with their output, then checked",
                "lab play --list\nlab play 04-bridge\nlab play 04 --step          # Enter between steps\n"
                "lab play 04 --check         # only the checks, after typing the commands yourself\n"
                "lab play 04 --check --step  # each step's commands to type, then its checks\n"
                "lab play 04 --cleanup       # undo the lesson")
    p.add_argument("lesson", nargs="?", help="the lesson: its id (04-bridge), number (04) or name (bridge)")
    p.add_argument("--list", action="store_true", help="list the lessons, one per line, id first")
    p.add_argument("--step", action="store_true", help="wait for Enter between steps; with --check: show each "
                   "step's commands, wait while you type them, then check that step")
    p.add_argument("--check", action="store_true", help="only run the checks (of the end state; per step with --step)")
    p.add_argument("--cleanup", action="store_true", help="undo what the lesson made")

    p = command("graph", cmd_graph, "draw the lab: nodes, pod subnets, cni0, pods, tunnels, services, outside",
                "lab graph -o topology.svg\nlab graph -o topology.png\nlab graph -o topology.html")
    p.add_argument("-o", "--output", default="topology.svg", metavar="FILE",
                   help="the file to write; .svg, .png, .html or .dot (default: topology.svg)")

    p = command("controller", cmd_controller, "run the service controller: keep every node's service rules "
                "and DNS records current as pods and nodes come and go",
                "lab controller run                 # until Ctrl-C\nlab controller run --once          # one sync")
    p.add_argument("action", choices=("run",))
    p.add_argument("--interval", type=float, default=0.5, help="seconds between checks (default 0.5)")
    p.add_argument("--once", action="store_true", help="sync once and exit")

    p = command("describe", cmd_describe, "show one service or its endpoints, like kubectl describe",
                "lab describe svc nginx\nlab describe ep nginx\nlab describe svc kube-dns -n kube-system")
    p.add_argument("resource", choices=("svc", "service", "services", "ep", "endpoints"))
    p.add_argument("name")
    p.add_argument("-n", "--namespace", default="default")

    p = command("exec", cmd_exec, "run a command on a node over SSH; exits with the command's exit code",
                "lab exec node1 -- ip route\nlab exec node2 -- sh -c 'ip -br link | grep eth0'")
    p.add_argument("node", help="node name")
    p.add_argument("--pod", help="run the command inside this pod's network namespace")
    p.add_argument("-n", "--namespace", default="default", help="the pod's namespace (default: default)")
    p.add_argument("--timeout", type=float, default=None, help="seconds before giving up (default: inventory's)")
    p.add_argument("command", nargs="*", help="the command and its arguments, after --")

    p = command("ssh", cmd_ssh, "open an interactive shell on a node (OpenSSH client, host key pinned)",
                "lab ssh node1\nlab ssh node1 -- uptime")
    p.add_argument("node", help="node name")
    p.add_argument("command", nargs="*", help="optional command, after --")

    p = command("inventory", cmd_inventory, "make an inventory from Vagrant or an ssh_config (host keys pinned on "
                "first use), or export one for Ansible",
                "vagrant up && lab inventory from-vagrant -o inventories/my-vagrant.yaml\n"
                "lab inventory from-ssh-config ~/.ssh/config node1 node2 node3 --name study -o study.yaml\n"
                "lab inventory export --format ansible -o hosts.yaml", parents=())
    inv_sub = p.add_subparsers(dest="inventory_command", metavar="from-vagrant|from-ssh-config|export")
    inv_sub.required = True
    for name, target, text in (
            ("from-vagrant", "directory", "the VMs `vagrant ssh-config` lists in DIR (a Vagrant project)"),
            ("from-ssh-config", "file", "the Host blocks of an ssh_config FILE")):
        c = inv_sub.add_parser(name, help=f"an inventory of {text}", description=f"an inventory of {text}; "
                               "prints it, or writes it with -o (and the pinned host keys beside it)")
        if target == "directory":
            c.add_argument("directory", nargs="?", default=".", metavar="DIR", help="default: this folder")
        else:
            c.add_argument("file", metavar="FILE")
            c.add_argument("hosts", nargs="*", metavar="HOST", help="only these hosts (default: all)")
        c.add_argument("-o", "--output", metavar="FILE",
                       help="write the inventory here, and the host keys to FILE's folder as <stem>_known_hosts "
                            "(default: print it; the host keys go to the lab's state folder)")
        c.add_argument("--name", help=f"the lab's name (default: {'vagrant' if target == 'directory' else 'lab'})")
        c.add_argument("--network", metavar="CIDR", help="take each node's address from this network "
                       "(default: Vagrant's private network; for an ssh_config the HostName or the default route's)")
    c = inv_sub.add_parser("export", help="the lab's inventory for another tool", parents=[inv_opt])
    c.add_argument("--format", choices=("ansible",), default="ansible", help="ansible: an Ansible YAML inventory")
    c.add_argument("-o", "--output", metavar="FILE", help="write it here (default: print it)")
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # Everything after the first `--` is a remote command, passed on word for word.
    remote = argv[argv.index("--") + 1:] if "--" in argv else None
    args = build_parser().parse_args(argv[:argv.index("--")] if remote is not None else argv)
    if remote is not None:
        args.command = remote
    try:
        return args.func(args)
    except LabError as exc:
        prefix = "" if isinstance(exc, NodeError) else "error: "
        for line in str(exc).splitlines():
            err.print(f"lab: {prefix}{line}", style="red", markup=False, soft_wrap=True)
        return exc.exit_code
    except KeyboardInterrupt:
        err.print("[red]lab: interrupted[/]")
        return 130


if __name__ == "__main__":
    sys.exit(main())

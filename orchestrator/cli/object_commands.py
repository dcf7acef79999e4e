"""Commands on the lab's objects, kubectl's: apply, delete, get, describe; and cni (run or check the
CNI plugins by hand)."""

from __future__ import annotations

import json
import sys

from orchestrator import pipeline
from orchestrator.agent import cni as cni_runtime
from orchestrator.cli.common import err, out, progress, resolve_inventory, run_showing_output, warn
from orchestrator.cli.output import (describe_netpol, describe_service, endpoints_json, endpoints_table,
        namespace_table, netpol_json, netpol_table, node_json, node_table, pod_json, pod_table, print_described,
        print_table, service_json, service_table)
from orchestrator.core import manifests as manifests_mod
from orchestrator.core.agent import agent_argv
from orchestrator.core.errors import InputError
from orchestrator.core.model import Inventory
from orchestrator.core.state import LabFiles
from orchestrator.core.transport import Transport
from orchestrator.layers.nodes.facts import conflist_path
from orchestrator.layers.pods.namespaces import namespace_labels


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
    return apply_manifests(args, pipeline.apply_manifests)


def cmd_delete(args) -> int:
    return apply_manifests(args, pipeline.delete_manifests)


def cmd_describe(args) -> int:
    inv = resolve_inventory(args.inventory)
    objects = LabFiles.of(inv.name).read_objects()
    key = f"{args.namespace}/{args.name}"
    if RESOURCE_ALIASES[args.resource] == "netpol":
        record = objects.get("policies", {}).get(key)
        if record is None:
            raise InputError(f'Error from server (NotFound): networkpolicies.networking.k8s.io "{args.name}" not '
                             f"found in namespace {args.namespace!r}; see `lab get netpol -A`")
        print_described(describe_netpol(record))
        return 0
    service = objects["services"].get(key)
    if service is None:
        raise InputError(f"no service {args.name!r} in namespace {args.namespace!r}; see `lab get svc -A`")
    print_described(describe_service(service, objects, as_endpoints=RESOURCE_ALIASES[args.resource] == "ep"))
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
        cni_runtime.load_conf(text, args.filename)
        cni_runtime.check_arguments(args.id, args.ifname)
    except cni_runtime.CniError as exc:
        raise InputError(str(exc)) from None
    node = inv.node(args.node)
    if node.name not in objects["subnets"]:
        raise InputError(f"{node.name} has no pod network yet: run `lab deploy` first")
    netns = args.netns if args.netns.startswith("/") else f"/run/netns/{args.netns}"
    argv = agent_argv(inv.name, "cni", args.command_verb, "--conf", "-", "--netns", netns, "--id", args.id,
                      "--ifname", args.ifname)
    with Transport([node]) as transport:
        result = run_showing_output(transport, node, argv, stdin=text)
    return result.exit_code


def cni_check(inv: Inventory, objects: dict, args) -> int:
    """CNI CHECK for every (or the named) pod, through the plugins that attached it."""
    pods = [p for p in objects["pods"].values() if (args.all_namespaces or p["namespace"] == args.namespace)
            and (not args.names or p["name"] in args.names)]

    def check_node(node):
        return {p["name"]: transport.run(node, agent_argv(
            inv.name, "cni", "CHECK", "--conf", conflist_path(inv.name), "--netns", f"/run/netns/{p['netns']}",
            "--id", p["uid"], "--ifname", "eth0"), check=False) for p in pods if p["node"] == node.name}

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
                    "services": "svc", "service": "svc", "svc": "svc", "endpoints": "ep", "ep": "ep",
                    "namespaces": "ns", "namespace": "ns", "ns": "ns",
                    "networkpolicies": "netpol", "networkpolicy": "netpol", "netpol": "netpol"}


def print_list(docs: list[dict], single: bool) -> None:
    """-o json: the one object asked for by name, else a kubectl List."""
    print(json.dumps(docs[0] if single and len(docs) == 1 else {"apiVersion": "v1", "kind": "List", "items": docs},
                     indent=2))


def cmd_get(args) -> int:
    inv = resolve_inventory(args.inventory)
    objects = LabFiles.of(inv.name).read_objects()
    resource = RESOURCE_ALIASES[args.resource]
    wide = args.output == "wide"
    if resource == "nodes":
        if args.output == "json":
            print_list([node_json(n, objects) for n in inv.nodes], single=False)
        else:
            print_table(*node_table(inv, objects))
        return 0
    if resource == "ns":
        spaces = namespace_labels(objects)
        if args.output == "json":
            print_list([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": n, "labels": labels}}
                        for n, labels in sorted(spaces.items()) if not args.names or n in args.names],
                       single=bool(args.names))
        else:
            print_table(*namespace_table({n: l for n, l in spaces.items() if not args.names or n in args.names},
                                         objects))
        return 0
    if resource == "pods":
        items = sorted(((p["namespace"], p["name"]), p) for p in objects["pods"].values())
    elif resource == "netpol":
        items = sorted(objects.get("policies", {}).items())
    else:
        items = sorted(objects["services"].items())
    items = [(k, o) for k, o in items if (args.all_namespaces or o["namespace"] == args.namespace)
             and (not args.names or o["name"] in args.names)]
    if args.output == "json":
        as_json = {"pods": lambda k, o: pod_json(o, inv), "svc": lambda k, o: service_json(o),
                   "ep": lambda k, o: endpoints_json(o, objects, k), "netpol": lambda k, o: netpol_json(o)}[resource]
        print_list([as_json(k, o) for k, o in items], single=bool(args.names))
        return 0
    if not items:
        err.print(f"No resources found in {'any' if args.all_namespaces else args.namespace} namespace.")
        return 0
    if resource == "pods":
        print_table(*pod_table([o for _, o in items], args.all_namespaces, wide))
    elif resource == "svc":
        print_table(*service_table(items, args.all_namespaces, wide))
    elif resource == "netpol":
        print_table(*netpol_table([o for _, o in items], args.all_namespaces))
    else:
        print_table(*endpoints_table(items, objects, args.all_namespaces))
    return 0

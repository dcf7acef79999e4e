"""Commands on the lab's objects, kubectl's: apply, delete, get, describe; and cni (run or check the
CNI plugins by hand)."""

from __future__ import annotations

import sys
import time
from typing import Any, Callable, Optional

from orchestrator import kinds, pipeline
from orchestrator.agent import cni as cni_runtime
from orchestrator.agent.contract import pod_log_path
from orchestrator.cli.common import err, out, progress, resolve_inventory, run_showing_output, warn
from orchestrator.cli.imperative import cmd_delete_named
from orchestrator.kinds.event import described as described_events
from orchestrator.cli.output import column_widths, print_described, print_table
from orchestrator.cli.jsonpath import column_value, columns_file, custom_columns, sort_key
from orchestrator.cli.resources import field_filter, kinds_of, one_object, render_docs, select, type_names
from orchestrator.core.agent import agent_argv
from orchestrator.core.errors import InputError, LabError
from orchestrator.core.manifests import fmt_labels
from orchestrator.core.model import Inventory
from orchestrator.core.objects import LabObjects, key_of
from orchestrator.core.policy_spec import selector_from_text
from orchestrator.core.state import LabFiles
from orchestrator.core.transport import Transport
from orchestrator.kinds.deployment import DEPLOYMENT
from orchestrator.kinds.node import NODE
from orchestrator.kinds.pod import POD
from orchestrator.layers.nodes.facts import conflist_path
from orchestrator.layers.nodes.read import not_ready
from orchestrator.layers.pods.apply import observe_pods


def apply_manifests(args, action) -> int:
    """Parse every -f target first (bad input changes nothing), then `action` under the lab's lock."""
    inv = resolve_inventory(args.inventory)
    manifests = [m for target in args.filename
                 for m in kinds.parse_all(target, warn, args.namespace, getattr(args, "namespace_given", True))]
    files = LabFiles.of(inv.name)
    with files.lock(), Transport(inv.nodes) as transport:
        lines = action(inv, transport, files, manifests, progress)
    for line in lines:
        out.print(line, markup=False, highlight=False)
    return 0


def cmd_apply(args) -> int:
    return apply_manifests(args, pipeline.apply_manifests)


def cmd_delete(args) -> int:
    if args.filename and args.kind:
        raise InputError("lab delete: give -f FILE or KIND NAME..., not both")
    if args.filename:
        return apply_manifests(args, pipeline.delete_manifests)
    groups = type_names(args.kind, args.names, "delete")
    if not groups or not all(names for _, names in groups):
        raise InputError("lab delete: give -f FILE, or KIND NAME... (e.g. lab delete pod web, lab delete deploy/web)")
    return cmd_delete_named(args, groups)


def cmd_describe(args) -> int:
    args.resource, args.name = one_object(args.resource, args.name, "describe")
    kind = kinds.by_name(args.resource)
    if kind is None or kind.describe is None:
        described = sorted(k.resource for k in kinds.KINDS.values() if k.describe)
        raise InputError(f'the server doesn\'t have a resource type "{args.resource}" to describe; use one of: '
                         f"{', '.join(described)}")
    inv = resolve_inventory(args.inventory)
    with Observer(inv, LabFiles.of(inv.name), kind is POD, kind is NODE) as observer:
        objects = observer.read()
    namespace = args.namespace if kind.namespaced else None
    found = select(kind, inv, objects, [args.name], namespace, None)
    if not found:
        raise LabError(f"{kind.not_found(args.name, args.namespace)}; "
                       f"see `lab get {kind.resource}{' -A' if kind.namespaced else ''}`")
    lines = kind.describe(found[0], inv, objects)
    if lines and lines[-1] == ("Events:", "<none>"):  # what the lab recorded for the object, where it has none else
        lines = lines[:-1] + described_events(objects, kind.kind, found[0].namespace, found[0].name)
    print_described(lines)
    return 0


def cmd_events(args) -> int:
    """kubectl events: `lab events [--for KIND/NAME] [--types Warning] [-A]`, as `lab get events` lists them."""
    selectors = []
    if args.for_:
        kind_text, _, name = args.for_.partition("/")
        kind = kinds.by_name(kind_text)
        if kind is None or not name:
            raise InputError(f"lab events --for {args.for_}: write KIND/NAME, e.g. --for pod/web")
        selectors += [f"involvedObject.kind={kind.kind}", f"involvedObject.name={name}"]
    if args.types:
        selectors.append(f"type={args.types}")
    args.resource, args.names, args.selector, args.watch = "events", [], None, False
    args.field_selector = ",".join(selectors) or None
    args.output = args.output or ""
    args.sort_by, args.show_labels = None, False
    return cmd_get(args)


def cmd_logs(args) -> int:
    """The pod server's access log: who connected, from which address, asking what. POD, pod/POD, or
    deployment/NAME (one of its pods, as kubectl picks one)."""
    inv = resolve_inventory(args.inventory)
    objects = LabFiles.of(inv.name).read_objects()
    kind_text, name = one_object(args.pod, None, "logs") if "/" in args.pod else ("pod", args.pod)
    kind = kinds.by_name(kind_text)
    if kind is DEPLOYMENT:
        owned = sorted(objects.pods_of(f"Deployment/{key_of(args.namespace, name)}"), key=lambda p: p.name)
        if not owned:
            raise LabError(f"{DEPLOYMENT.not_found(name, args.namespace)}, or it has no pods")
        args.pod = owned[0].name
    elif kind is POD:
        args.pod = name
    else:
        raise InputError(f"lab logs: {args.pod!r}: give a pod (NAME or pod/NAME) or deployment/NAME")
    pod = objects.pods.get(key_of(args.namespace, args.pod))
    if pod is None:
        raise LabError(POD.not_found(args.pod, args.namespace))
    if pod.node is None:
        raise LabError(f'pod "{args.pod}" is not on a node yet: it has no log; see `lab get pods`')
    log = pod_log_path(inv.name, pod.node_key)
    node = inv.node(pod.node)
    with Transport([node]) as transport:
        result = run_showing_output(transport, node, ["tail", "-n", str(args.tail), *(["-F"] if args.follow else []),
                                                      log])
    return result.exit_code


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
    if node.name not in objects.subnets:
        raise InputError(f"{node.name} has no pod network yet: run `lab deploy` first")
    netns = args.netns if args.netns.startswith("/") else f"/run/netns/{args.netns}"
    argv = agent_argv(inv.name, "cni", args.command_verb, "--conf", "-", "--netns", netns, "--id", args.id,
                      "--ifname", args.ifname)
    with Transport([node]) as transport:
        result = run_showing_output(transport, node, argv, stdin=text)
    return result.exit_code


def cni_check(inv: Inventory, objects: LabObjects, args) -> int:
    """CNI CHECK for every (or the named) pod, through the plugins that attached it."""
    pods = [p for p in objects.pods.values() if (args.all_namespaces or p.namespace == args.namespace)
            and (not args.names or p.name in args.names)]

    def check_node(node):
        return {p.name: transport.run(node, agent_argv(
            inv.name, "cni", "CHECK", "--conf", conflist_path(inv.name), "--netns", f"/run/netns/{p.netns}",
            "--id", p.uid, "--ifname", "eth0"), check=False) for p in pods if p.node == node.name}

    with Transport(inv.nodes) as transport:
        results = transport.run_all(check_node, [n for n in inv.nodes if any(p.node == n.name for p in pods)])
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




class Observer:
    """Reads the lab's objects with what the nodes report of its pods (their observed status), over one
    transport opened on first need: `lab get -w` asks every second."""

    def __init__(self, inv: Inventory, files: LabFiles, pods: bool, nodes: bool = False):
        self.inv, self.files, self.pods, self.nodes = inv, files, pods, nodes
        self.transport: Optional[Transport] = None

    def read(self) -> LabObjects:
        objects = self.files.read_objects()
        if (self.pods and objects.pods) or self.nodes:
            if self.transport is None:
                self.transport = Transport(self.inv.nodes)
            if self.pods and objects.pods:
                observe_pods(self.inv, self.transport, objects)
            if self.nodes:
                for name, why in not_ready(self.transport, list(self.inv.nodes), self.inv.name, objects.boots).items():
                    objects.observed[f"node/{name}"] = why
        return objects

    def __enter__(self) -> "Observer":
        return self

    def __exit__(self, *exc: object) -> None:
        if self.transport is not None:
            self.transport.close()


def cmd_explain(args) -> int:
    """kubectl explain KIND.field.path, from the schemas the lab validates with."""
    from orchestrator.core.explain import explain
    first, *path = args.field.split(".")
    kind = kinds.by_name(first.lower())
    if kind is None:
        raise InputError(f'the server doesn\'t have a resource type "{first}"; see `lab api-resources`')
    print(explain(kind.kind, kind.api_version, path), end="")
    return 0


def cmd_api_resources(args) -> int:
    """kubectl api-resources: every kind the lab knows, from its kind registry."""
    rows = [[k.resource, ",".join(k.short_names), k.api_version, str(k.namespaced).lower(), k.kind]
            for k in sorted(kinds.KINDS.values(), key=lambda k: k.resource)]
    print_table(["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"], rows)
    return 0


def cmd_get(args) -> int:
    inv = resolve_inventory(args.inventory)
    wanted = [(kind, names) for text, names in type_names(args.resource, args.names, "get")
              for kind in kinds_of(text)]
    output = args.output or ""
    if output not in ("", "wide", "json", "yaml", "name") and not output.startswith(
            ("jsonpath=", "custom-columns=", "custom-columns-file=")):
        raise InputError(f"-o {output}: unknown output format; use wide, json, yaml, name, jsonpath=TEMPLATE, "
                         "custom-columns=HEADER:PATH,... or custom-columns-file=FILE")
    if args.watch and output not in ("", "wide"):
        raise InputError("-w: watching prints tables; drop -o or use -o wide")
    labels = selector_from_text(args.selector) if args.selector else None
    namespace = None if args.all_namespaces else args.namespace
    # the pods' status is what their nodes report, not what was recorded (not asked for -o name)
    wanted_kinds = [kind for kind, _ in wanted]
    with Observer(inv, LabFiles.of(inv.name), POD in wanted_kinds and output != "name",
                  NODE in wanted_kinds and output != "name") as observer:
        return show(args, inv, wanted, observer, namespace, labels, output)


def show(args, inv: Inventory, wanted: list, observer: "Observer", namespace: Optional[str], labels,
         output: str) -> int:
    """`lab get`'s output: tables (and -w's lines), or the objects as json, yaml, jsonpath or names."""
    def listed(objects):
        return [(kind, select(kind, inv, objects, names, namespace, labels, field_filter(args.field_selector)))
                for kind, names in wanted]

    objects = observer.read()
    found = listed(objects)
    named = any(names for _, names in wanted)
    if named and not args.watch:
        missing = [(kind, name) for (kind, records), (_, names) in zip(found, wanted, strict=True) for name in names
                   if name not in {r.name for r in records}]
        if missing:
            kind, name = missing[0]
            raise LabError(kind.not_found(name))
    documents: dict[int, dict[str, Any]] = {}

    def document(kind, record) -> dict[str, Any]:
        """A record's JSON, built once for --sort-by and the output alike."""
        if id(record) not in documents:
            documents[id(record)] = kind.to_json(record, inv, objects)
        return documents[id(record)]

    def by_field(kind) -> Callable[[Any], tuple[Any, ...]]:
        return lambda record: sort_key(args.sort_by, document(kind, record))

    if args.sort_by:  # --sort-by PATH: the objects in the order of that field of their JSON
        found = [(kind, sorted(records, key=by_field(kind))) for kind, records in found]
    if output.startswith("custom-columns"):
        spec = output.split("=", 1)[1]
        custom = columns_file(spec) if output.startswith("custom-columns-file=") else custom_columns(spec)
        docs = [document(kind, r) for kind, records in found for r in records]
        print_table([header for header, _ in custom], [[column_value(path, doc) for _, path in custom]
                                                       for doc in docs])
        return 0
    if output in ("json", "yaml") or output.startswith("jsonpath="):
        # a template's output as it is, as kubectl prints it: no newline it does not write itself
        print(render_docs([document(kind, r) for kind, records in found for r in records],
                          single=named and len(wanted) == 1 and len(wanted[0][1]) == 1, output=output),
              end="" if output.startswith("jsonpath=") else "\n")
        return 0
    if output == "name":
        for kind, records in found:
            for r in records:
                print(f"{kind.ref}/{r.name}")
        return 0
    tables = [table_of(args, inv, objects, kind, records, len(wanted) > 1, namespace)
              for kind, records in found if records]
    if not tables:
        cluster_scoped = not any(kind.namespaced for kind, _ in wanted)
        err.print("No resources found" if cluster_scoped else
                  f"No resources found in {'any' if namespace is None else namespace} namespace.")
    for i, (columns, rows) in enumerate(tables):
        print_table(columns, rows)
        if i < len(tables) - 1:
            print()
    if args.watch:
        watch(args, inv, observer, listed, namespace, tables, len(wanted) > 1)
    return 0


def table_of(args, inv, objects, kind, records, several: bool, namespace) -> tuple[list, list]:
    """One kind's table, with --show-labels, and each name prefixed with its kind when several are listed."""
    assert kind.table is not None
    columns, rows = kind.table(records, inv, objects, namespace is None and kind.namespaced, args.output == "wide")
    if args.show_labels:
        columns, rows = columns + ["LABELS"], [row + [fmt_labels(r.labels) or "<none>"]
                                               for row, r in zip(rows, records, strict=True)]
    if several:
        at = columns.index("NAME")
        rows = [row[:at] + [f"{kind.ref}/{row[at]}"] + row[at + 1:] for row in rows]
    return columns, rows


def watch(args, inv, observer: "Observer", listed, namespace, tables, several: bool) -> None:
    """-w: after the table, a line for every object that comes or changes (the lab's objects, read each second),
    until Ctrl-C. AGE is left out of the comparison: it changes by itself."""
    def key(columns, row):
        return tuple(v for c, v in zip(columns, row, strict=True) if c != "AGE")

    seen = {key(columns, row) for columns, rows in tables for row in rows}
    # a new line lines up under the table printed first (a longer value pushes only its own line on)
    widths = {tuple(columns): column_widths(columns, rows) for columns, rows in tables}
    while True:
        time.sleep(1.0)
        objects = observer.read()
        for kind, records in listed(objects):
            columns, rows = table_of(args, inv, objects, kind, records, several, namespace)
            for row in rows:
                if key(columns, row) not in seen:
                    seen.add(key(columns, row))
                    wide = widths.setdefault(tuple(columns), column_widths(columns, [row]))
                    print("   ".join(str(v).ljust(w) for v, w in zip(row, wide, strict=True)).rstrip(), flush=True)

"""kubectl's imperative commands: run, create deployment, expose, scale, label, delete KIND NAME and rollout
restart. Each writes the YAML a student would write and applies it as `lab apply` does, or with
`--dry-run=client -o yaml` prints it to edit, as on the exam."""

from __future__ import annotations

import base64
import json
import os
import re
from typing import Optional

from orchestrator import pipeline
from orchestrator.cli.common import out, progress, resolve_inventory, warn
from orchestrator.cli.lab_commands import run_in_pod, stdin_of, terminal
from orchestrator.cli.resources import one_object
from orchestrator import kinds
from orchestrator.core.errors import InputError, LabError
from orchestrator.core.names import relabelled
from orchestrator.core.objects import key_of
from orchestrator.core.render import dump_yaml
from orchestrator.core.state import LabFiles
from orchestrator.core.transport import UNLIMITED, Transport
from orchestrator.kinds.deployment import DEPLOYMENT
from orchestrator.kinds.namespace import NAMESPACE
from orchestrator.kinds.node import NODE
from orchestrator.kinds.pod import POD


def container(name: str, image: str, port) -> dict:
    return {"name": name, "image": image, **({"ports": [{"containerPort": port}]} if port else {})}


def container_name(image: str) -> str:
    """The container name `kubectl create deployment` gives an image: its last path part without tag or digest,
    as a DNS label (nginx:1.27 -> nginx, curlimages/curl -> curl)."""
    base = image.split("@", 1)[0].rsplit("/", 1)[-1].split(":", 1)[0].lower()
    return re.sub(r"[^a-z0-9-]", "-", base).strip("-")[:63] or "container"


def pod_doc(name: str, namespace: str, image: str, labels: dict, port) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": namespace, "labels": labels},
            "spec": {"containers": [container(name, image, port)]}}


def deployment_doc(name: str, namespace: str, image: str, replicas: int, port) -> dict:
    labels = {"app": name}
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": namespace, "labels": labels},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"containers": [container(container_name(image), image, port)]}}}}


def service_doc(name: str, namespace: str, selector: dict, port: int, target, kind: str,
                load_balancer_ip: Optional[str] = None, labels: Optional[dict] = None) -> dict:
    spec = {"type": kind, "selector": selector, "ports": [{"port": port, "targetPort": target or port,
                                                            "protocol": "TCP"}]}
    if load_balancer_ip:
        spec["loadBalancerIP"] = load_balancer_ip
    metadata = {"name": name, "namespace": namespace, **({"labels": dict(labels)} if labels else {})}
    return {"apiVersion": "v1", "kind": "Service", "metadata": metadata, "spec": spec}


def labels_of(text) -> dict:
    labels = {}
    for pair in filter(None, (text or "").split(",")):
        key, eq, value = pair.partition("=")
        if not eq:
            raise InputError(f"--labels {text}: {pair!r} is not KEY=VALUE; write e.g. app=web,tier=front")
        labels[key.strip()] = value.strip()
    return labels


def apply_doc(args, doc: dict, source: str = "") -> int:
    """Print the object (--dry-run=client) or apply it; the checks are `lab apply`'s either way."""
    source = source or f"lab {args.command_name}"
    manifest = kinds.parse(doc, source, warn)
    if args.dry_run == "client":
        shown = doc if getattr(args, "namespace_given", True) else without_namespace(doc)
        print(json.dumps(shown, indent=2) if args.output == "json" else dump_yaml(shown), end="")
        return 0
    inv = resolve_inventory(args.inventory)
    files = LabFiles.of(inv.name)
    with files.lock(), Transport(inv.nodes) as transport:
        lines = pipeline.apply_manifests(inv, transport, files, [manifest], progress)
    verb = {"expose": " exposed", "scale": " scaled"}.get(args.command_name)
    for line in lines:
        out.print(line.replace(" created", verb).replace(" configured", verb) if verb else line, markup=False,
                  highlight=False)
    return 0


def cmd_run(args) -> int:
    """kubectl run: a pod; with `--rm -it ... -- CMD` (the exam's throw-away client), CMD run in a new pod, its
    output shown, the pod deleted after, and CMD's exit code returned."""
    doc = pod_doc(args.name, args.namespace, args.image, labels_of(args.labels) or {"run": args.name}, args.port)
    if args.restart:
        doc["spec"]["restartPolicy"] = args.restart
    if args.env:
        doc["spec"]["containers"][0]["env"] = env_of(args.env, f"lab run {args.name}")
    command: list[str] = getattr(args, "command", None) or []
    if command and not args.rm:
        raise InputError(f"lab run {args.name} -- {' '.join(command)}: a lab pod runs the lab's server, not a "
                         f"command; run it once in a new pod with lab run {args.name} --rm -it -- CMD, or in a "
                         f"running pod with lab exec POD -- CMD")
    if args.rm and not command:
        raise InputError(f"lab run {args.name} --rm: give the command to run after --, e.g. "
                         f"lab run {args.name} --rm -it --image=busybox --restart=Never -- wget -qO- http://web")
    if not args.rm or args.dry_run == "client":
        return apply_doc(args, doc)
    return run_and_remove(args, doc, command)


def env_of(pairs: list[str], command: str) -> list[dict]:
    """--env KEY=VALUE, as kubectl run makes a container's env of them."""
    env = []
    for pair in pairs:
        key, eq, value = pair.partition("=")
        if not eq or not key:
            raise InputError(f"{command}: --env {pair}: write --env KEY=VALUE")
        env.append({"name": key, "value": value})
    return env


def without_namespace(doc: dict) -> dict:
    """`doc` as kubectl prints it without -n: no metadata.namespace (it goes where the context says)."""
    metadata = {k: v for k, v in doc.get("metadata", {}).items() if k != "namespace"}
    return {**doc, "metadata": metadata}


def run_and_remove(args, doc: dict, command: list[str]) -> int:
    """The pod made, `command` run in it (a terminal where -t is given and this is one), the pod deleted
    whatever happens (Ctrl-C too), as kubectl's `run --rm` does."""
    manifest = kinds.parse(doc, f"lab run {args.name}", warn)
    inv = resolve_inventory(args.inventory)
    files = LabFiles.of(inv.name)
    if key_of(args.namespace, args.name) in files.read_objects().pods:  # never delete a pod it did not make
        raise LabError(f'Error from server (AlreadyExists): pods "{args.name}" already exists')
    try:
        with files.lock(), Transport(inv.nodes) as transport:
            pipeline.apply_manifests(inv, transport, files, [manifest])
        pod = files.read_objects().pods[key_of(args.namespace, args.name)]
        code = run_in_pod(inv, pod, command, terminal(args), UNLIMITED, replace=False, stdin=stdin_of(args))
    finally:
        with files.lock(), Transport(inv.nodes) as transport:
            pipeline.delete_manifests(inv, transport, files, [kinds.manifest("Pod", args.name, args.namespace,
                                                                             f"lab run {args.name} --rm")])
        out.print(f'pod "{args.name}" deleted', markup=False, highlight=False)
    return code


SERVICE_TYPES = {"clusterip": "ClusterIP", "nodeport": "NodePort", "loadbalancer": "LoadBalancer"}


def created_service_doc(kind: str, name: str, namespace: str, args) -> dict:
    """`kubectl create service clusterip|nodeport|loadbalancer NAME --tcp=PORT[:TARGET]`: a Service selecting
    app=NAME, each port named PORT-TARGET, as kubectl writes it."""
    if not args.tcp:
        raise InputError(f"lab create service {kind} {name}: give the ports: --tcp=PORT[:TARGETPORT], e.g. "
                         "--tcp=80:8080")
    ports = []
    for spec in args.tcp:
        port, _, target = spec.partition(":")
        if not port.isdigit() or (target and not target.isdigit()):
            raise InputError(f"lab create service {kind} {name}: --tcp={spec}: write PORT[:TARGETPORT], e.g. 80:8080")
        target = target or port
        ports.append({"name": f"{port}-{target}", "port": int(port), "protocol": "TCP", "targetPort": int(target),
                      **({"nodePort": args.node_port} if kind == "nodeport" and args.node_port else {})})
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": namespace, "labels": {"app": name}},
            "spec": {"type": SERVICE_TYPES[kind], "selector": {"app": name}, "ports": ports}}


def cmd_create(args) -> int:
    if args.what in ("service", "svc"):
        if len(args.names) != 2 or args.names[0] not in SERVICE_TYPES:
            raise InputError(f"lab create service {' '.join(args.names)}: write lab create service "
                             "clusterip|nodeport|loadbalancer NAME --tcp=PORT:TARGETPORT")
        kind, name = args.names
        return apply_doc(args, created_service_doc(kind, name, args.namespace, args),
                         f"lab create service {kind} {name}")
    if args.what in ("configmap", "cm"):
        if len(args.names) != 1:
            raise InputError(f"lab create configmap {' '.join(args.names)}: write lab create configmap NAME "
                             "--from-literal KEY=VALUE | --from-file [KEY=]PATH | --from-env-file FILE")
        return apply_doc(args, configmap_doc(args.names[0], args.namespace, args),
                         f"lab create configmap {args.names[0]}")
    if args.what != "secret":
        if len(args.names) != 1:
            raise InputError(f"lab create {args.what}: give one NAME, not {' '.join(args.names)}")
        if args.what in ("namespace", "ns"):
            return apply_doc(args, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": args.names[0]}})
        return apply_doc(args, deployment_doc(args.names[0], args.namespace, args.image, args.replicas, args.port))
    if len(args.names) != 2 or args.names[0] not in ("tls", "generic"):
        raise InputError(f"lab create secret {' '.join(args.names)}: write lab create secret tls NAME --cert FILE "
                         "--key FILE, or lab create secret generic NAME --from-literal KEY=VALUE")
    kind, name = args.names
    return apply_doc(args, secret_doc(kind, name, args.namespace, args), f"lab create secret {kind} {name}")


def read_bytes(path: str, flag: str, command: str) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError as exc:
        raise InputError(f"{command}: {flag} {path}: {exc.strerror}; give a readable file") from None


def add_key(data: dict[str, bytes], key: str, value: bytes, command: str) -> None:
    if key in data:
        raise InputError(f"{command}: the key {key!r} is given twice; give each key once")
    data[key] = value


def env_file_pairs(path: str, command: str) -> list[tuple[str, str]]:
    """KEY=VALUE lines of an env file as kubectl reads them: blank lines and # comments skipped, a bare KEY
    takes its value from this shell's environment."""
    pairs = []
    for number, line in enumerate(read_bytes(path, "--from-env-file", command).decode(errors="replace")
                                  .splitlines(), 1):
        line = line.lstrip()
        if not line or line.startswith("#"):
            continue
        key, eq, value = line.partition("=")
        if not key.strip() or " " in key.strip():
            raise InputError(f"{command}: --from-env-file {path}: line {number}: {key.strip()!r} is not a "
                             "variable name; write KEY=VALUE")
        pairs.append((key.strip(), value if eq else os.environ.get(key.strip(), "")))
    return pairs


def keyed_data(args, command: str) -> dict[str, bytes]:
    """The keys `kubectl create configmap|secret generic` collects: --from-literal KEY=VALUE, --from-file
    [KEY=]FILE or a folder (each regular file in it, under its name), --from-env-file FILE."""
    if args.from_env_file and (args.from_file or args.from_literal):
        raise InputError(f"{command}: --from-env-file cannot be combined with --from-file or --from-literal "
                         "(as kubectl); create it from one or the other")
    data: dict[str, bytes] = {}
    for pair in args.from_literal:
        key, eq, value = pair.partition("=")
        if not eq or not key:
            raise InputError(f"{command}: --from-literal {pair!r} is not KEY=VALUE")
        add_key(data, key, value.encode(), command)
    for spec in args.from_file:
        key, eq, path = spec.partition("=")
        if not eq:
            key, path = os.path.basename(spec.rstrip("/")), spec
        if eq or not os.path.isdir(path):
            add_key(data, key, read_bytes(path, "--from-file", command), command)
            continue
        for entry in sorted(os.scandir(path), key=lambda e: e.name):
            if entry.is_file():
                add_key(data, entry.name, read_bytes(entry.path, "--from-file", command), command)
    for path in args.from_env_file:
        for key, value in env_file_pairs(path, command):
            add_key(data, key, value.encode(), command)
    return data


def configmap_doc(name: str, namespace: str, args) -> dict:
    """The ConfigMap `kubectl create configmap` makes: UTF-8 values under data, others under binaryData."""
    text, binary = {}, {}
    for key, value in keyed_data(args, f"lab create configmap {name}").items():
        try:
            text[key] = value.decode()
        except UnicodeDecodeError:
            binary[key] = base64.b64encode(value).decode()
    doc = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": namespace},
           "data": dict(sorted(text.items()))}
    return {**doc, "binaryData": binary} if binary else doc


def secret_doc(kind: str, name: str, namespace: str, args) -> dict:
    """The Secret `kubectl create secret tls|generic` makes: tls.crt and tls.key from files, or the literals and
    files given."""
    command = f"lab create secret {kind} {name}"
    data: dict[str, bytes]
    if kind == "tls":
        if not args.cert or not args.key:
            raise InputError(f"{command}: give both --cert FILE and --key FILE (PEM, as openssl writes them)")
        data = {"tls.crt": read_bytes(args.cert, "--cert", command), "tls.key": read_bytes(args.key, "--key", command)}
    else:
        data = keyed_data(args, command)
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": namespace},
            "type": "kubernetes.io/tls" if kind == "tls" else "Opaque",
            "data": {k: base64.b64encode(v).decode() for k, v in data.items()}}


def cmd_expose(args) -> int:
    args.kind, args.name = one_object(args.kind, args.name, "expose")
    inv = resolve_inventory(args.inventory)
    objects = LabFiles.of(inv.name).read_objects()
    kind = kinds.by_name(args.kind)
    key = key_of(args.namespace, args.name)
    if kind is DEPLOYMENT and key in objects.deployments:
        selector = objects.deployments[key].selector
        owned = objects.pods_of(objects.deployments[key].owner)
        labels = (objects.deployments[key].manifest.get("metadata") or {}).get("labels") or selector
    elif kind is POD and key in objects.pods:
        selector, owned = objects.pods[key].labels, [objects.pods[key]]
        labels = selector
    elif kind in (DEPLOYMENT, POD):
        raise LabError(kind.not_found(args.name, args.namespace))
    else:
        raise InputError(f"lab expose: {args.kind!r}: the lab exposes deployments and pods; write "
                         "lab expose deploy NAME --port 80")
    port = args.port or next((p.container_port for pod in owned for p in pod.ports), None)
    if port is None:
        raise InputError(f"lab expose: {args.kind}/{args.name} has no container port; give --port N")
    if args.load_balancer_ip and args.type != "LoadBalancer":
        raise InputError("lab expose: --load-balancer-ip needs --type=LoadBalancer")
    return apply_doc(args, service_doc(args.service_name or args.name, args.namespace, selector, port,
                                       args.target_port, args.type, args.load_balancer_ip, labels))


def cmd_scale(args) -> int:
    kind, args.name = one_object(args.kind, args.name, "scale")
    if kinds.by_name(kind) is not DEPLOYMENT:
        raise InputError(f"lab scale: {kind!r}: the lab scales deployments; write lab scale deployment/NAME "
                         "--replicas N")
    inv = resolve_inventory(args.inventory)
    record = LabFiles.of(inv.name).read_objects().deployments.get(key_of(args.namespace, args.name))
    if record is None:
        raise LabError(DEPLOYMENT.not_found(args.name))
    if not record.manifest:
        raise InputError(f"deployment {args.name} was applied before the lab kept manifests; `lab apply` it once "
                         "again")
    doc = json.loads(json.dumps(record.manifest))
    doc["spec"]["replicas"] = args.replicas
    return apply_doc(args, doc)


def cmd_label(args) -> int:
    if "/" in args.kind:  # label pod/web k=v: the first word after it is a label
        args.labels = [args.name, *args.labels] if args.name else args.labels
        args.name = None
    args.kind, args.name = one_object(args.kind, args.name, "label")
    if not args.labels:
        raise InputError("lab label: give the labels: KEY=VALUE to set, KEY- to remove")
    found = kinds.by_name(args.kind)
    kind = "pod" if found is POD else "namespace" if found is NAMESPACE else "node" if found is NODE else None
    if kind is None:
        raise InputError(f"lab label: {args.kind!r}: the lab labels pods, namespaces and nodes; write lab label pod "
                         "NAME k=v")
    changes: dict[str, Optional[str]] = {}  # None: remove the label
    for word in args.labels:
        if word.endswith("-"):
            changes[word[:-1]] = None
        else:
            key, eq, value = word.partition("=")
            if not eq:
                raise InputError(f"lab label: {word!r} is neither KEY=VALUE nor KEY- (to remove it)")
            changes[key] = value
    inv = resolve_inventory(args.inventory)
    files = LabFiles.of(inv.name)
    if kind == "node":
        out.print(label_node(inv, files, args.name, changes, args.overwrite), markup=False)
        return 0
    key = args.name if kind == "namespace" else key_of(args.namespace, args.name)
    with files.lock(), Transport(inv.nodes) as transport:
        out.print(pipeline.relabel(inv, transport, files, kind, key, changes, args.overwrite), markup=False)
    return 0


def label_node(inv, files: LabFiles, name: str, changes: dict[str, Optional[str]], overwrite: bool) -> str:
    """`lab label node NAME k=v k2-`: the node's labels as nodeSelector, `get nodes -l` and L2Advertisements see
    them from the next command on (running pods stay where they are, as in Kubernetes)."""
    node = next((n for n in inv.nodes if n.name == name), None)
    if node is None:
        raise LabError(NODE.not_found(name))
    labels = relabelled(node.labels, changes, overwrite)
    if labels == node.labels:
        return f"node/{name} not labeled"
    with files.lock():
        stored = files.read_node_labels()
        mine = stored.setdefault(name, {})
        mine.update({k: labels.get(k) for k in changes})
        files.write_node_labels(stored)
    return f"node/{name} labeled"


def cmd_delete_named(args, groups: list[tuple[str, list[str]]]) -> int:
    """`lab delete KIND NAME...` or `lab delete KIND/NAME...` (kubectl's forms): what `lab delete -f` does for
    those objects."""
    manifests = []
    for text, names in groups:
        kind = kinds.by_name(text)
        if kind is None or kind.forget is None:
            deletable = ", ".join(k.resource for k in kinds.KINDS.values() if k.forget is not None)
            raise InputError(f"lab delete: {text!r}: the lab deletes {deletable}")
        manifests += [kinds.manifest(kind.kind, name, args.namespace or "default", f"lab delete {text} {name}")
                      for name in names]
    inv = resolve_inventory(args.inventory)
    files = LabFiles.of(inv.name)
    with files.lock(), Transport(inv.nodes) as transport:
        lines = pipeline.delete_manifests(inv, transport, files, manifests, progress)
    if getattr(args, "force", False):
        warn("Immediate deletion does not wait for confirmation that the running resource has been terminated. "
             "The resource may continue to run on the cluster indefinitely.")
        lines = [line.replace(" deleted", " force deleted") if line.endswith(" deleted") else line for line in lines]
    for line in lines:
        out.print(line, markup=False, highlight=False)
    return 0 if not any(line.endswith("not found") for line in lines) else 1

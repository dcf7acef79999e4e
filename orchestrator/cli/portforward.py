"""`lab port-forward pod/NAME|svc/NAME|deploy/NAME [LOCAL:]REMOTE...`: a listener on this machine's 127.0.0.1
(never another address) per port; each connection is carried over SSH to the pod's node, where the agent's
relay connects to the port inside the pod's network namespace (as kubectl's goes through the pod's loopback:
NetworkPolicy does not apply)."""

from __future__ import annotations

import select
import socket
import threading
from typing import Optional

from orchestrator import kinds
from orchestrator.cli.common import err, resolve_inventory
from orchestrator.core.agent import agent_argv
from orchestrator.core.errors import InputError, LabError
from orchestrator.core.model import Inventory
from orchestrator.core.objects import LabObjects, Pod, key_of
from orchestrator.core.state import LabFiles
from orchestrator.core.transport import Transport
from orchestrator.kinds.deployment import DEPLOYMENT
from orchestrator.kinds.pod import POD
from orchestrator.kinds.service import SERVICE

LOOPBACK = "127.0.0.1"
CHUNK = 65536


def port_pairs(words: list[str]) -> list[tuple[int, str]]:
    """kubectl's port forms: 8080:80, 80 (the same port here), :80 (a free one here): (local, remote)."""
    pairs = []
    for word in words:
        local, colon, remote = word.rpartition(":")
        if not colon:
            local = remote
        if not remote or not (local == "" or local.isdigit()):
            raise InputError(f"lab port-forward: {word!r}: write [LOCAL:]REMOTE, e.g. 8080:80 or :80")
        pairs.append((int(local) if local else 0, remote))
    return pairs


def target(objects: LabObjects, kind, name: str, namespace: str, remote: str) -> tuple[Pod, int]:
    """The pod and its port that REMOTE on `kind`/`name` reaches: a Service's port goes to one of its endpoints'
    target port, a Deployment's to one of its pods, as kubectl picks one."""
    if kind is SERVICE:
        service = objects.services.get(key_of(namespace, name))
        if service is None:
            raise LabError(SERVICE.not_found(name, namespace))
        port = next((p for p in service.ports if str(p.port) == remote or p.name == remote), None)
        if port is None:
            raise LabError(f"error: Service {name} does not have a service port {remote}")
        endpoints = objects.endpoints.get(service.key, {}).get(port.name or "", [])
        if not endpoints:
            raise LabError(f"error: Service {name} has no ready endpoint for port {remote} (`lab get ep {name}`)")
        return objects.pods[key_of(namespace, endpoints[0].pod)], endpoints[0].port
    if kind is DEPLOYMENT:
        pods = sorted(objects.pods_of(f"Deployment/{key_of(namespace, name)}"), key=lambda p: p.name)
        if not pods:
            raise LabError(f"{DEPLOYMENT.not_found(name, namespace)}, or it has no pods")
        pod = pods[0]
    else:
        found = objects.pods.get(key_of(namespace, name))
        if found is None:
            raise LabError(POD.not_found(name, namespace))
        pod = found
    number = remote if remote.isdigit() else next((str(p.container_port) for p in pod.ports if p.name == remote), None)
    if number is None:
        raise LabError(f"error: Pod '{pod.name}' does not have a named port '{remote}'")
    return pod, int(number)


def cmd_port_forward(args) -> int:
    if args.address not in (LOOPBACK, "localhost"):
        raise InputError(f"lab port-forward --address {args.address}: the lab listens on 127.0.0.1 only (nothing of "
                         "a lab is offered beyond this machine)")
    text, slash, name = args.target.partition("/")
    kind = kinds.by_name(text) if slash else POD
    name = name if slash else text
    if kind not in (POD, SERVICE, DEPLOYMENT) or not name:
        raise InputError(f"lab port-forward: {args.target!r}: forward to pod/NAME, svc/NAME or deploy/NAME (or a "
                         "pod's NAME)")
    ports = args.ports
    inv = resolve_inventory(args.inventory)
    objects = LabFiles.of(inv.name).read_objects()
    forwards = [(local, *target(objects, kind, name, args.namespace, remote)) for local, remote in port_pairs(ports)]
    listeners: dict[socket.socket, tuple[Pod, int]] = {}
    try:
        for local, pod, remote in forwards:
            listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                listener.bind((LOOPBACK, local))
            except OSError as exc:
                listener.close()
                raise LabError(f"unable to listen on port {local}: {exc.strerror}") from None
            listener.listen()
            listeners[listener] = (pod, remote)
            print(f"Forwarding from {LOOPBACK}:{listener.getsockname()[1]} -> {remote}", flush=True)
        with Transport(inv.nodes) as transport:
            serve(inv, transport, listeners)
    finally:
        for listener in listeners:
            listener.close()
    return 0


def serve(inv: Inventory, transport: Transport, listeners: dict[socket.socket, tuple[Pod, int]]) -> None:
    """Accept connections until interrupted; each one carried in a thread of its own."""
    while True:
        ready, _, _ = select.select(list(listeners), [], [])
        for listener in ready:
            conn, _ = listener.accept()
            pod, remote = listeners[listener]
            print(f"Handling connection for {listener.getsockname()[1]}", flush=True)
            threading.Thread(target=carry, args=(inv, transport, conn, pod, remote), daemon=True).start()


def carry(inv: Inventory, transport: Transport, conn: socket.socket, pod: Pod, remote: int) -> None:
    """One connection: the agent's relay in the pod's network namespace, bytes both ways until either ends."""
    assert pod.node is not None
    argv = ["ip", "netns", "exec", pod.netns, *agent_argv(inv.name, "relay", LOOPBACK, str(remote))]
    chan: Optional[object] = None
    try:
        chan = channel = transport.open_stream(pod.node, argv)

        def upstream() -> None:
            try:
                while data := conn.recv(CHUNK):
                    channel.sendall(data)
            except OSError:
                pass
            finally:
                channel.shutdown_write()

        threading.Thread(target=upstream, daemon=True).start()
        while data := channel.recv(CHUNK):
            conn.sendall(data)
        problem = channel.recv_stderr(CHUNK).decode(errors="replace").strip()
        if problem:
            err.print(f"lab: {problem.splitlines()[-1]}", style="red", markup=False, soft_wrap=True)
    except (OSError, LabError) as exc:
        err.print(f"lab: port-forward to {pod.name}: {exc}", style="red", markup=False, soft_wrap=True)
    finally:
        conn.close()
        if chan is not None:
            channel.close()

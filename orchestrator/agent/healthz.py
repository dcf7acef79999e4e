"""kube-proxy's health check NodePorts: for every LoadBalancer Service with externalTrafficPolicy Local, an HTTP
server on every node answers on the Service's healthCheckNodePort whether this node has a ready endpoint of it
(200) or not (503), with kube-proxy's JSON body, so that a load balancer outside the cluster sends traffic only
to nodes that keep it.

One server per node serves every such port; it reads what to answer from a file that each proxy-sync writes,
so a new endpoint changes the answer without a restart. proxy-sync starts it, restarts it when the ports change,
and ends it (by the PID it recorded) when no Service needs it.
"""

from __future__ import annotations

import http.server
import json
import os
import signal
import subprocess
import sys
import threading

from .contract import AGENT_FILE, HEALTH_SERVER, write_durably
from .host import alive

ANSWERS = "healthz.json"  # port -> {"service": {"namespace", "name"}, "localEndpoints": N}
SERVER = HEALTH_SERVER  # the server's PID, then the ports it listens on


def sync_health_checks(lib: str, checks: dict, my_addresses: set, dry_run: bool = False) -> bool:
    """Answer `checks` (port -> {"namespace", "name", "local": {node address: ready endpoints there}}) on this
    node; whether anything changed."""
    wanted = {port: {"service": {"namespace": c["namespace"], "name": c["name"]},
                     "localEndpoints": sum(n for address, n in c["local"].items() if address in my_addresses)}
              for port, c in sorted(checks.items())}
    answers = os.path.join(lib, ANSWERS)
    pid, ports = running_server(lib)
    same = read_json(answers) == wanted and (pid is not None) == bool(wanted) and ports == sorted(wanted, key=int)
    if same or dry_run:
        return not same
    if not wanted:
        stop(lib, pid)
        for name in (ANSWERS, SERVER):
            if os.path.exists(os.path.join(lib, name)):
                os.unlink(os.path.join(lib, name))
        return True
    write_durably(answers, json.dumps(wanted))
    if pid is None or ports != sorted(wanted, key=int):
        stop(lib, pid)
        start(lib, sorted(wanted, key=int))
    return True


def running_server(lib: str) -> tuple:
    """(PID, ports) of this lab's health server when it runs, else (None, [])."""
    try:
        with open(os.path.join(lib, SERVER)) as handle:
            pid, *ports = handle.read().split()
        with open(f"/proc/{int(pid)}/cmdline", "rb") as handle:
            ours = b"healthz" in handle.read().split(b"\0")
    except (OSError, ValueError):
        return None, []
    return (int(pid), ports) if ours and alive(pid) else (None, [])


def stop(lib: str, pid) -> None:
    if pid is not None:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass


def start(lib: str, ports: list) -> None:
    args = [sys.executable, os.path.join(lib, AGENT_FILE), "healthz", *[f"--port={p}" for p in ports]]
    with open(os.path.join(lib, "healthz.log"), "ab") as log:
        proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
    write_durably(os.path.join(lib, SERVER), " ".join([str(proc.pid), *ports]) + "\n")


def read_json(path: str):
    try:
        with open(path) as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return None


def serve_health_checks(lib: str, ports: list) -> None:
    """The server: on each port, kube-proxy's answer for the Service of that port, read at each request."""
    answers = os.path.join(lib, ANSWERS)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            port = str(self.server.port)  # type: ignore[attr-defined]
            answer = (read_json(answers) or {}).get(port)
            if answer is None:
                self.send_error(404)
                return
            body = json.dumps({**answer, "serviceProxyHealthy": True}).encode()
            self.send_response(200 if answer["localEndpoints"] > 0 else 503)
            self.send_header("Content-Type", "application/json")
            self.send_header("X-Content-Type-Options", "nosniff")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    servers = [http.server.ThreadingHTTPServer(("", int(port)), Handler) for port in ports]
    for server in servers:
        server.port = int(server.server_address[1])  # type: ignore[attr-defined]
    for server in servers[1:]:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    servers[0].serve_forever()

"""The built-in pod server: HTTP /hostname /clientip /echo, any other path answered with the request it got (JSON:
pod, method, path, host, headers), and a UDP echo naming the pod and the client."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time


def access_log(client, what: str) -> None:
    """One line per request on stdout (the pod's log, `lab logs POD`): when, who, what."""
    sys.stdout.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {client[0]}:{client[1]} {what}\n")
    sys.stdout.flush()


def serve(name: str, tcp_ports, udp_ports) -> None:
    # imported here, not at the top: every other verb is one short process per SSH call (http.server
    # alone costs ~15 ms of its start)
    import socketserver
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from urllib.parse import parse_qs, urlparse

    class Handler(BaseHTTPRequestHandler):
        server_version = "cluster-lab-pod"

        def do_GET(self):
            url = urlparse(self.path)
            if url.path == "/hostname":
                body = name
            elif url.path == "/clientip":
                body = self.client_address[0]
            elif url.path == "/echo":
                body = parse_qs(url.query).get("msg", [""])[0]
            else:  # what reached the pod, as the Gateway API's echo server shows it: routing made visible
                body = json.dumps({"pod": name, "method": self.command, "path": self.path,
                                   "host": self.headers.get("Host", ""),
                                   "headers": {k.lower(): v for k, v in self.headers.items()}}, sort_keys=True)
            self.answer((body + "\n").encode(), "application/json" if body.startswith("{") else "text/plain")

        do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_GET

        def do_HEAD(self):
            self.answer(b"", "text/plain")

        def do_POST(self):
            self.answer(self.rfile.read(int(self.headers.get("Content-Length") or 0)), "application/octet-stream")

        def answer(self, data: bytes, content_type: str) -> None:
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("X-Pod-Name", name)  # which pod answered, whatever the method
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        def log_request(self, code="-", size="-"):
            access_log(self.client_address, f"{self.command} {self.path} {code}")

        def log_message(self, *args):
            pass

    class Udp(socketserver.BaseRequestHandler):
        def handle(self):
            data, sock = self.request
            reply = f"hostname={name} clientip={self.client_address[0]} echo=".encode() + data
            sock.sendto(reply, self.client_address)
            access_log(self.client_address, f"UDP {len(data)} bytes")

    ThreadingHTTPServer.allow_reuse_address = True
    ThreadingHTTPServer.request_queue_size = 1024  # socketserver's default backlog of 5 drops SYNs under load
    servers: list[socketserver.BaseServer] = [ThreadingHTTPServer(("0.0.0.0", port), Handler) for port in tcp_ports]
    servers += [socketserver.ThreadingUDPServer(("0.0.0.0", port), Udp) for port in udp_ports]
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    while True:
        time.sleep(3600)

"""`lab port-forward`'s node end: one TCP connection to HOST:PORT (in the pod's network namespace, where `ip
netns exec` started it), its bytes piped to and from this process's stdin and stdout (the SSH channel)."""

from __future__ import annotations

import os
import select
import socket
import sys

CHUNK = 65536


def relay(host: str, port: int) -> int:
    try:
        conn = socket.create_connection((host, port), timeout=10)
    except OSError as exc:
        print(f"node agent: relay: connect to {host}:{port}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    conn.setblocking(True)
    stdin, stdout = sys.stdin.fileno(), sys.stdout.fileno()
    open_ends = {stdin, conn.fileno()}
    while open_ends:
        ready, _, _ = select.select(list(open_ends), [], [])
        for fd in ready:
            data = os.read(fd, CHUNK) if fd == stdin else conn.recv(CHUNK)
            if not data:
                open_ends.discard(fd)
                if fd == stdin:
                    conn.shutdown(socket.SHUT_WR)
                else:
                    return 0  # the pod's side closed: so does the channel
                continue
            if fd == stdin:
                conn.sendall(data)
            else:
                write_all(stdout, data)
    return 0


def write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data):]

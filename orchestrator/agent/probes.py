"""Reachability probes run on a node (or inside a pod's namespace): TCP, HTTP /clientip, UDP echo, DNS."""

from __future__ import annotations

import hashlib
import socket
import ssl
import subprocess


def probe_one(target: dict, timeout: float) -> dict:
    """One probe: {"proto": "tcp"|"udp", "host", "port", "path"} -> {"ok", "reply" | "error"}.
    TCP speaks HTTP (GET, or "method", with "http_host" as Host and "headers"; "reply_header" names the header
    that is the reply instead of the body), inside TLS where "tls" gives the server name to ask for (SNI; the
    reply then has the "certificate" served: its SHA-256, hex); UDP sends a datagram to the pod server's echo."""
    host = target["host"]
    if target.get("proto") == "ping":
        proc = subprocess.run(["ping", "-c1", "-W", str(max(1, int(timeout))), "-M", "do", "-s",
                               str(target["size"]), host], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        out = proc.stdout.decode(errors="replace").strip().splitlines()
        return {"ok": True, "reply": "pong"} if proc.returncode == 0 else \
            {"ok": False, "error": "too big for the path (MTU)" if "too long" in " ".join(out) else "no reply"}
    port = int(target["port"])
    try:
        if target.get("proto", "tcp") == "udp":
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                sock.settimeout(timeout)
                sock.connect((host, port))  # connected: an ICMP port unreachable comes back as "refused"
                sock.send(b"probe")
                reply = sock.recv(4096).decode(errors="replace")
            return {"ok": True, "reply": reply.strip()}
        certificate = None
        with socket.create_connection((host, port), timeout=timeout) as plain:
            plain.settimeout(timeout)
            sock = plain
            if target.get("tls"):
                # the check is which certificate is served for the name, not whether this node trusts it
                context = ssl.create_default_context()
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
                sock = context.wrap_socket(plain, server_hostname=target["tls"])
                certificate = hashlib.sha256(sock.getpeercert(binary_form=True) or b"").hexdigest()
            headers = "".join(f"{k}: {v}\r\n" for k, v in target.get("headers", {}).items())
            sock.sendall(f"{target.get('method', 'GET')} {target.get('path', '/hostname')} HTTP/1.0\r\n"
                         f"Host: {target.get('http_host', host)}\r\n{headers}\r\n".encode())
            data = b""
            while True:
                try:
                    chunk = sock.recv(4096)
                except (ssl.SSLZeroReturnError, ssl.SSLEOFError):  # a TLS peer that closed without close_notify
                    break
                if not chunk:
                    break
                data += chunk
        head, _, body = data.decode(errors="replace").partition("\r\n\r\n")
        status = head.split(" ", 2)[1] if " " in head else "?"
        if target.get("reply_header"):  # who answered, as a header says (whatever the path and method)
            wanted = target["reply_header"].lower() + ":"
            body = next((line.split(":", 1)[1] for line in head.split("\r\n") if line.lower().startswith(wanted)), "")
        answer = {"ok": status == "200", "reply": body.strip(), "status": status}
        return dict(answer, certificate=certificate) if certificate else answer
    except ssl.SSLError as exc:
        return {"ok": False, "error": f"TLS: {exc.reason or exc}"}
    except socket.timeout:
        return {"ok": False, "error": "timeout"}
    except socket.gaierror:
        return {"ok": False, "error": f"cannot resolve {host}"}
    except ConnectionRefusedError:
        return {"ok": False, "error": "refused"}
    except OSError as exc:
        return {"ok": False, "error": exc.strerror or str(exc)}


PROBE_WORKERS = 24


def probe(targets: list, timeout: float) -> list:
    """Probe all `targets`, at most PROBE_WORKERS at a time (thousands at once would only measure this
    machine's scheduler); results in the same order."""
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(max_workers=max(1, min(PROBE_WORKERS, len(targets)))) as pool:
        return list(pool.map(lambda target: probe_one(target, timeout), targets))

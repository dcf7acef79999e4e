"""Reachability probes run on a node (or inside a pod's namespace): TCP, HTTP /clientip, UDP echo, DNS."""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import selectors
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


SOURCES_AT_ONCE = 16  # probe-from: pods probing at once, a process each
CLONE_NEWNS, CLONE_NEWNET = 0x00020000, 0x40000000
MS_BIND, MS_REC, MS_SLAVE = 0x1000, 0x4000, 1 << 19


def enter_netns(netns: str) -> None:
    """Move this process into network namespace `netns` as `ip netns exec` does: in a mount namespace of its
    own, the namespace's /etc files (a pod's resolv.conf and hosts, /etc/netns/NETNS/) over the node's."""
    libc = ctypes.CDLL(None, use_errno=True)

    def checked(result: int, what: str) -> None:
        if result != 0:
            raise OSError(ctypes.get_errno(), f"{what}: {os.strerror(ctypes.get_errno())}")

    fd = os.open(f"/run/netns/{netns}", os.O_RDONLY)
    try:
        checked(libc.unshare(CLONE_NEWNS), "unshare")
        checked(libc.mount(b"none", b"/", None, MS_REC | MS_SLAVE, None), "mount --make-rslave /")
        checked(libc.setns(fd, CLONE_NEWNET), f"setns {netns}")
    finally:
        os.close(fd)
    etc = f"/etc/netns/{netns}"
    for name in sorted(os.listdir(etc)) if os.path.isdir(etc) else []:
        if os.path.exists(f"/etc/{name}"):
            checked(libc.mount(f"{etc}/{name}".encode(), f"/etc/{name}".encode(), b"none", MS_BIND, None),
                    f"mount --bind {etc}/{name}")


def probe_in_child(source: dict, timeout: float, write_fd: int) -> None:
    """In a forked process: probe `source`'s targets from its namespace, write the results as JSON, end."""
    try:
        try:
            if source["netns"]:
                enter_netns(source["netns"])
            results = probe(source["targets"], timeout)
        except FileNotFoundError:
            results = [{"ok": False, "error": f"network namespace {source['netns']} is gone"}] * len(source["targets"])
        except OSError as exc:
            results = [{"ok": False, "error": f"cannot enter {source['netns']}: {exc}"}] * len(source["targets"])
        with os.fdopen(write_fd, "wb") as out:
            out.write(json.dumps(results).encode())
    finally:
        os._exit(0)  # never back into the parent's code (its buffers, its answer)


def probe_from(sources: list, timeout: float) -> list:
    """Each source's targets probed from its network namespace ("": this one), by a forked process each (one
    agent for all of a node's pods; a Python start per pod was most of verify's time), SOURCES_AT_ONCE at a
    time. A prober that ends without its results (a signal) is run once more; results per source, in order."""
    results: list = [None] * len(sources)
    runs = [0] * len(sources)
    waiting = list(range(len(sources)))
    running: dict[int, tuple[int, int, list]] = {}  # pipe -> (source, pid, what it wrote)
    selector = selectors.DefaultSelector()
    while waiting or running:
        while waiting and len(running) < SOURCES_AT_ONCE:
            index = waiting.pop(0)
            runs[index] += 1
            read_fd, write_fd = os.pipe()
            pid = os.fork()
            if pid == 0:
                os.close(read_fd)
                probe_in_child(sources[index], timeout, write_fd)
            os.close(write_fd)
            running[read_fd] = (index, pid, [])
            selector.register(read_fd, selectors.EVENT_READ)
        for key, _ in selector.select():
            chunk = os.read(key.fd, 1 << 16)
            if chunk:
                running[key.fd][2].append(chunk)
                continue
            selector.unregister(key.fd)
            os.close(key.fd)
            index, pid, chunks = running.pop(key.fd)
            _, status = os.waitpid(pid, 0)
            try:
                results[index] = json.loads(b"".join(chunks))
            except ValueError:
                if runs[index] < 2:
                    waiting.append(index)
                    continue
                ended = f"signal {os.WTERMSIG(status)}" if os.WIFSIGNALED(status) else f"exit {os.WEXITSTATUS(status)}"
                lost = {"ok": False, "error": f"the prober ended ({ended})"}
                results[index] = [lost] * len(sources[index]["targets"])
    selector.close()
    return results

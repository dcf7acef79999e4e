"""The Gateways' proxies on a node: each Gateway's nginx.conf written where its gateway pods read it, checked with
`nginx -t` before it replaces the one served, and served by a graceful reload (SIGHUP to the pod's nginx master:
the old workers finish their requests). A gateway pod that starts before its configuration exists serves a 503."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time

from .contract import GATEWAYS_DIR, TLS_FOLDER, gateway_dir, text_of, write_durably, write_if_changed


def config_path(lib: str, key: str) -> str:
    return os.path.join(lib, gateway_dir(key), "nginx.conf")


def placeholder(lib: str, key: str, ports: list) -> str:
    """What a gateway pod serves until the controller's first sync: 503 on its ports."""
    run = os.path.join(lib, gateway_dir(key))
    servers = "".join(f"    server {{ listen {port}; return 503; }}\n" for port in ports)
    return (f"daemon off;\nuser root;\nworker_processes 1;\npid {run}/nginx.pid;\nerror_log stderr warn;\n"
            f"events {{ worker_connections 64; }}\nhttp {{\n    access_log off;\n"
            + "".join(f"    {kind}_temp_path {run}/{kind};\n" for kind in ("client_body", "proxy", "fastcgi",
                                                                               "uwsgi", "scgi"))
            + servers + "}\n")


def listened(text: str) -> set:
    return {int(port) for port in re.findall(r"^\s*listen (\d+)", text, re.MULTILINE)}


def ensure_config(lib: str, key: str, ports: list) -> str:
    """The config file a gateway pod starts nginx with: the placeholder when there is none yet, or when the one
    there does not listen on all the pod's ports (a listener added: the sync after the pod brings the config
    for it)."""
    path = config_path(lib, key)
    if not set(ports) <= listened(text_of(path) or ""):
        write_durably(path, placeholder(lib, key, ports))
    return path


def proxy_argv(lib: str, pod: dict) -> list:
    return ["nginx", "-c", ensure_config(lib, pod["gateway"], pod.get("tcp", []))]


def sync_files(lib: str, key: str, files: dict) -> None:
    """The files a Gateway's config names, as given (private: they hold TLS keys); the others of its tls/ go."""
    folder = os.path.join(lib, gateway_dir(key))
    for rel, text in sorted(files.items()):
        write_if_changed(os.path.join(folder, rel), text, 0o600)
    tls = os.path.join(folder, TLS_FOLDER)
    wanted = {os.path.basename(rel) for rel in files}
    for name in sorted(os.listdir(tls)) if os.path.isdir(tls) else []:
        if name not in wanted:
            os.unlink(os.path.join(tls, name))


def accepting_workers(master: int) -> set:
    """The worker processes of an nginx master that take new connections (not those finishing their requests
    after a reload: nginx retitles them `... is shutting down`)."""
    try:
        with open(f"/proc/{master}/task/{master}/children") as handle:
            children = handle.read().split()
    except OSError:
        return set()
    out = set()
    for pid in children:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                title = handle.read()
        except OSError:
            continue
        if title.startswith(b"nginx: worker process") and b"shutting down" not in title:
            out.add(int(pid))
    return out


RELOAD_SECONDS = 10.0


def reload(masters: list, seconds: float = RELOAD_SECONDS) -> None:
    """Reload these nginx masters gracefully (SIGHUP) and wait until each has new workers taking the connections,
    so that the request after a sync meets the new config (a master that takes longer is left to finish)."""
    before = {}
    for master in masters:
        before[master] = accepting_workers(master)
        try:
            os.kill(master, signal.SIGHUP)
        except ProcessLookupError:
            before.pop(master)
    deadline = time.monotonic() + seconds
    while before and time.monotonic() < deadline:
        for master, old in list(before.items()):
            now = accepting_workers(master)
            if (now and not now & old) or not os.path.exists(f"/proc/{master}"):
                del before[master]
        time.sleep(0.01)


def sync_gateways(lib: str, configs: dict, files: dict, served: list) -> tuple[list, list]:
    """Make each Gateway's config (and the files it names) the one given and reload the proxies serving a changed
    one; remove the folders of Gateways no longer given. `served`: the records of the gateway pods running on
    this node. Returns the Gateways changed and the configs nginx refused (each 'namespace/name: why')."""
    changed, refused, reloading = [], [], []
    for key, text in sorted(configs.items()):
        sync_files(lib, key, files.get(key, {}))
        path = config_path(lib, key)
        if text_of(path) == text:
            continue
        candidate = path + ".new"
        write_durably(candidate, text)
        checked = subprocess.run(["nginx", "-t", "-q", "-c", candidate], stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT)
        if checked.returncode != 0:
            os.unlink(candidate)
            lines = checked.stdout.decode(errors="replace").strip().splitlines()
            refused.append(f"{key}: {lines[0] if lines else 'nginx -t failed'}")
            continue
        os.replace(candidate, path)
        changed.append(key)
        reloading += [int(r["pid"]) for r in served if r.get("gateway") == key]
    reload(reloading)
    folder = os.path.join(lib, GATEWAYS_DIR)
    wanted = {gateway_dir(key).split("/", 1)[1] for key in configs}
    in_use = {gateway_dir(r["gateway"]).split("/", 1)[1] for r in served}
    for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
        if name not in wanted and name not in in_use:
            shutil.rmtree(os.path.join(folder, name), ignore_errors=True)
    return changed, refused

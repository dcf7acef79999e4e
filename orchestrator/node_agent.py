#!/usr/bin/env python3
"""cluster-lab's node agent: the small part of a kubelet/container runtime the lab needs on a node.

Installed by `lab deploy` as /var/lib/cluster-lab/<lab>/node_agent.py and run over SSH. Standard
library only (Python 3.7+), so any node with python3 can run it.

  cni ADD|DEL|CHECK|VERSION --conf FILE ...   run a CNI network config (list) the way a runtime does:
                                              CNI_* environment, config on stdin, results chained as
                                              prevResult, the result cached for DEL/CHECK, DEL after a
                                              failed ADD
  pods-add / pods-del / pods-ensure           pods as network namespaces (JSON on stdin, JSON out)
  restore --conf FILE                         after a boot: the network, service rules and pods, once
  serve --name POD --tcp 80 --udp 80          the built-in pod server: HTTP /hostname /clientip /echo,
                                              and a UDP echo that names the pod and the client
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

CACHE_DIR = "/var/lib/cni/results"
# Where the reference plugins are: upstream's tarball, Debian/Ubuntu's package, Fedora/RHEL's package
# (plan.facts reads it from here: the agent runs on nodes alone and imports nothing of the lab).
CNI_PATH = "/opt/cni/bin:/usr/lib/cni:/usr/libexec/cni"
CONTAINER_ID = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$")
LOOPBACK_CONF = {"cniVersion": "1.0.0", "name": "loopback", "type": "loopback"}


class CniError(Exception):
    """A CNI failure, with the spec's error code."""

    def __init__(self, msg: str, code: int = 999):
        super().__init__(msg)
        self.code = code


# ---- CNI: the runtime side of the spec ----------------------------------------------------------------


def load_conf(text: str, source: str) -> dict:
    """A network configuration (list); a single plugin's config becomes a list of one."""
    try:
        conf = json.loads(text)
    except json.JSONDecodeError as exc:
        before = text[:exc.pos].rstrip()
        if before.endswith(",") and text[exc.pos:exc.pos + 1] in "]}":
            line = before.count("\n") + 1
            raise CniError(f"{source}: line {line}: trailing comma before '{text[exc.pos]}' (line {exc.lineno}): "
                           f"not valid JSON; remove the comma at the end of line {line}", 6) from None
        raise CniError(f"{source}: line {exc.lineno}, column {exc.colno}: not valid JSON ({exc.msg}); "
                       "fix the JSON there", 6) from None
    if not isinstance(conf, dict):
        raise CniError(f"{source}: expected a JSON object", 6)
    if "plugins" not in conf:
        if "type" not in conf:
            raise CniError(f"{source}: neither \"plugins\" nor \"type\": not a CNI config; add \"type\"", 1)
        plugin = {k: v for k, v in conf.items() if k not in ("cniVersion", "name")}
        conf = {"cniVersion": conf.get("cniVersion", "1.0.0"), "name": conf.get("name", ""), "plugins": [plugin]}
    for key in ("cniVersion", "name"):
        if not conf.get(key):
            raise CniError(f"{source}: missing \"{key}\"; add it", 1)
    if not isinstance(conf["plugins"], list) or not all(isinstance(p, dict) and p.get("type")
                                                        for p in conf["plugins"]):
        raise CniError(f"{source}: \"plugins\" must be a list of objects with a \"type\"", 1)
    return conf


def check_arguments(container_id: str, ifname: str) -> None:
    """The spec's rules for the container ID and the interface name."""
    if not CONTAINER_ID.match(container_id or ""):
        raise CniError(f"container ID {container_id!r} is invalid: it must start with a letter or digit, "
                       "followed by letters, digits, '_', '.' or '-'", 2)
    if not ifname or len(ifname) > 15 or ifname in (".", "..") or re.search(r"[/:\s]", ifname):
        raise CniError(f"interface name {ifname!r} is invalid: 1-15 characters, not '.' or '..', "
                       "no '/', ':' or white space", 2)


def plugin_config(conf: dict, plugin: dict, prev_result, runtime_config: dict) -> dict:
    """What one plugin of a list gets on stdin: its own config plus name, cniVersion, prevResult and the
    runtimeConfig for the capabilities it declares."""
    config = dict(plugin)
    config["name"] = conf["name"]
    config["cniVersion"] = conf["cniVersion"]
    if prev_result is not None:
        config["prevResult"] = prev_result
    capabilities = plugin.get("capabilities") or {}
    runtime = {key: value for key, value in runtime_config.items() if capabilities.get(key)}
    if runtime:
        config["runtimeConfig"] = runtime
    return config


def find_plugin(name: str, cni_path: str) -> str:
    for folder in cni_path.split(":"):
        path = os.path.join(folder, name)
        if os.access(path, os.X_OK):
            return path
    raise CniError(f"plugin {name!r} not found in CNI_PATH {cni_path}", 7)


def exec_plugin(command: str, config: dict, container_id: str, netns: str, ifname: str, cni_path: str,
                args: str = ""):
    env = dict(os.environ, CNI_COMMAND=command, CNI_CONTAINERID=container_id, CNI_NETNS=netns,
               CNI_IFNAME=ifname, CNI_PATH=cni_path)
    if args:
        env["CNI_ARGS"] = args
    proc = subprocess.run([find_plugin(config["type"], cni_path)], input=json.dumps(config).encode(), env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out = proc.stdout.decode(errors="replace").strip()
    if proc.returncode != 0:
        try:
            err = json.loads(out)
            msg = err.get("msg", out) + (f": {err['details']}" if err.get("details") else "")
            code = int(err.get("code", 999))
        except (ValueError, AttributeError):
            msg, code = out or proc.stderr.decode(errors="replace").strip(), 999
        raise CniError(f"{config['type']} {command}: {msg}", code)
    return json.loads(out) if out else None


def cache_path(conf: dict, container_id: str, ifname: str, cache_dir: str) -> str:
    return os.path.join(cache_dir, f"{conf['name']}-{container_id}-{ifname}")


def cni(command: str, conf: dict, container_id: str, netns: str, ifname: str, cni_path: str,
        runtime_config=None, cache_dir: str = CACHE_DIR, args: str = ""):
    """Run CNI `command` for the whole network config list; return the final result (ADD, CHECK) or None.
    `args` is CNI_ARGS for ADD (e.g. "IgnoreUnknown=1;IP=10.244.0.8", which host-local honours)."""
    check_arguments(container_id, ifname)
    runtime_config = runtime_config or {}
    cache = cache_path(conf, container_id, ifname, cache_dir)
    if command == "VERSION":
        return {p["type"]: exec_plugin("VERSION", {"cniVersion": conf["cniVersion"]}, container_id, netns,
                                       ifname, cni_path) for p in conf["plugins"]}
    if command == "ADD":
        result = None
        try:
            for plugin in conf["plugins"]:
                result = exec_plugin("ADD", plugin_config(conf, plugin, result, runtime_config),
                                     container_id, netns, ifname, cni_path, args)
        except CniError:
            # Undo what the plugins that succeeded did, as a runtime does after a failed ADD.
            try:
                cni("DEL", conf, container_id, netns, ifname, cni_path, runtime_config, cache_dir)
            except CniError:
                pass
            raise
        os.makedirs(cache_dir, exist_ok=True)
        with open(cache + ".tmp", "w") as handle:
            json.dump({"kind": "cniCacheV1", "containerId": container_id, "ifName": ifname,
                       "networkName": conf["name"], "config": conf, "capabilityArgs": runtime_config,
                       "result": result}, handle)
        os.replace(cache + ".tmp", cache)
        return result
    cached = None
    try:
        with open(cache) as handle:
            cached = json.load(handle)
    except (OSError, ValueError):
        if command == "CHECK":
            raise CniError(f"no cached result for {container_id}/{ifname}: was it added?", 4) from None
    prev = cached.get("result") if cached else None
    runtime = (cached or {}).get("capabilityArgs") or runtime_config
    if cached and cached.get("config") and command == "DEL":
        conf = cached["config"]  # undo what was set up, with the config it was set up with
    if command == "CHECK":
        for plugin in conf["plugins"]:
            exec_plugin("CHECK", plugin_config(conf, plugin, prev, runtime), container_id, netns, ifname, cni_path)
        return prev
    if command == "DEL":
        errors = []
        for plugin in reversed(conf["plugins"]):
            try:
                exec_plugin("DEL", plugin_config(conf, plugin, prev, runtime), container_id, netns, ifname, cni_path)
            except CniError as exc:
                errors.append(exc)
        if errors:
            raise errors[0]
        try:
            os.unlink(cache)
        except FileNotFoundError:
            pass
        return None
    raise CniError(f"unknown CNI command {command!r}; use ADD, DEL, CHECK or VERSION", 4)


# ---- pods ------------------------------------------------------------------------------------------------


def run(*argv: str) -> str:
    proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if proc.returncode != 0:
        raise CniError(f"{' '.join(argv)}: {proc.stderr.decode(errors='replace').strip()}", 999)
    return proc.stdout.decode()


def pod_file(lib: str, key: str) -> str:
    return os.path.join(lib, "pods", key + ".json")


def alive(pid) -> bool:
    try:
        with open(f"/proc/{int(pid)}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, ValueError, IndexError, TypeError):
        return False


def server_running(record: dict) -> bool:
    """Whether the pod's server (recorded in `record`) runs: its PID is alive, was started in this boot (after
    a reboot the PID may name any other process) and is still the lab's pod server or dnsmasq."""
    pid = record.get("pid")
    if not alive(pid) or record.get("boot", boot_id()) != boot_id():
        return False
    try:
        with open(f"/proc/{int(pid)}/cmdline", "rb") as handle:
            argv = handle.read().split(b"\0")
    except OSError:
        return False
    if record.get("role") == "dns":
        return any(arg.endswith(b"dnsmasq") for arg in argv[:1])
    return b"serve" in argv and record.get("name", "").encode() in argv


def start_server(lib: str, pod: dict) -> int:
    """Start the pod's server inside its network namespace, detached from this SSH session: the real
    dnsmasq for DNS pods (records in <lib>/dns/hosts), the built-in server for every other pod."""
    if pod.get("role") == "dns":
        hosts = os.path.join(lib, "dns", "hosts")
        os.makedirs(os.path.dirname(hosts), exist_ok=True)
        if not os.path.exists(hosts):
            open(hosts, "a").close()
        args = ["dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
                "--user=root", "--pid-file=", f"--addn-hosts={hosts}", f"--local=/{pod['dns_domain']}/",
                "--log-facility=-"]
    else:
        args = [sys.executable, os.path.join(lib, "node_agent.py"), "serve", "--name", pod["name"]]
        for port in pod.get("tcp", []):
            args += ["--tcp", str(port)]
        for port in pod.get("udp", []):
            args += ["--udp", str(port)]
    log = open(os.path.join(lib, "pods", pod["key"] + ".log"), "ab")
    proc = subprocess.Popen(["ip", "netns", "exec", pod["netns"], *args], stdin=subprocess.DEVNULL, stdout=log,
                            stderr=log, start_new_session=True)
    log.close()
    return proc.pid


def listening_ports(pid: int) -> set:
    """TCP ports in LISTEN state in the network namespace of process `pid` (/proc/PID/net/tcp)."""
    try:
        with open(f"/proc/{pid}/net/tcp") as handle:
            rows = [line.split() for line in handle.readlines()[1:]]
    except OSError:
        return set()
    return {int(row[1].rsplit(":", 1)[1], 16) for row in rows if len(row) > 3 and row[3] == "0A"}


def wait_listening(pod: dict, seconds: float = 5.0) -> bool:
    """True once the pod's server listens on all its TCP ports."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not alive(pod["pid"]):
            return False
        if set(pod.get("tcp", [])) <= listening_ports(pod["pid"]):
            return True
        time.sleep(0.01)
    return False


def conf_digest(conf: dict) -> str:
    """A short digest of a network config list: which config a pod was attached with."""
    return hashlib.sha256(json.dumps(conf, sort_keys=True).encode()).hexdigest()[:16]


def pod_add(lib: str, conf: dict, cni_path: str, pod: dict) -> dict:
    """Create the pod: namespace, loopback, the network list (eth0), its server. Undo all on failure."""
    netns_path = f"/run/netns/{pod['netns']}"
    if os.path.exists(netns_path) or os.path.exists(pod_file(lib, pod["key"])):
        # what is left of it goes first; its server too, which would keep a deleted namespace (and its veth
        # on cni0) alive
        pod_del(lib, conf, cni_path, pod)
    run("ip", "netns", "add", pod["netns"])
    try:
        loopback = load_conf(json.dumps(LOOPBACK_CONF), "loopback")
        cni("ADD", loopback, pod["id"], netns_path, "lo", cni_path)
        result = attach(conf, cni_path, pod, netns_path)
        ip = next(i["address"].split("/")[0] for i in result.get("ips", []) if "." in i["address"])
        if pod.get("resolv_conf"):
            folder = f"/etc/netns/{pod['netns']}"  # `ip netns exec` mounts it over /etc/resolv.conf
            os.makedirs(folder, exist_ok=True)
            with open(os.path.join(folder, "resolv.conf"), "w") as handle:
                handle.write(pod["resolv_conf"])
        os.makedirs(os.path.join(lib, "pods"), exist_ok=True)
        record = dict(pod, ip=ip, conf=conf_digest(conf), boot=boot_id())
        record["pid"] = start_server(lib, record)
        if not wait_listening(record):
            raise CniError(f"the pod server of {pod['key']} did not start (see {lib}/pods/{pod['key']}.log)")
        with open(pod_file(lib, pod["key"]), "w") as handle:
            json.dump(record, handle)
        return {"ip": ip, "pid": record["pid"]}
    except Exception:
        pod_del(lib, conf, cni_path, pod)
        raise


def attach(conf: dict, cni_path: str, pod: dict, netns_path: str) -> dict:
    """CNI ADD of the pod's eth0. A pod made again (after a reboot, or its namespace lost) asks for the IP it
    had, so that its endpoints stay right: host-local refuses a second lease for one container ID, so the
    old lease goes first (DEL without a namespace). An IP taken meanwhile gets the pod a new one."""
    mappings = {"portMappings": pod.get("port_mappings", [])}
    if pod.get("ip"):
        try:
            cni("DEL", conf, pod["id"], "", "eth0", cni_path)
            return cni("ADD", conf, pod["id"], netns_path, "eth0", cni_path, mappings,
                       args=f"IgnoreUnknown=1;IP={pod['ip']}")
        except CniError:
            pass
    return cni("ADD", conf, pod["id"], netns_path, "eth0", cni_path, mappings)


def pod_del(lib: str, conf: dict, cni_path: str, pod: dict) -> dict:
    """Remove the pod; succeeds when parts (or all) of it are already gone."""
    try:
        with open(pod_file(lib, pod["key"])) as handle:
            record = json.load(handle)
    except (OSError, ValueError):
        record = pod
    pid = record.get("pid")
    if server_running(record):
        os.kill(int(pid), signal.SIGTERM)
        for _ in range(100):
            if not alive(pid):
                break
            time.sleep(0.01)
    netns_path = f"/run/netns/{pod['netns']}"
    errors = []
    for ifname, network in (("eth0", conf), ("lo", load_conf(json.dumps(LOOPBACK_CONF), "loopback"))):
        try:
            cni("DEL", network, pod["id"], netns_path if os.path.exists(netns_path) else "", ifname, cni_path)
        except CniError as exc:
            errors.append(str(exc))
    if os.path.exists(netns_path):
        subprocess.run(["ip", "netns", "del", pod["netns"]], stderr=subprocess.DEVNULL)
    for path in (pod_file(lib, pod["key"]), os.path.join(lib, "pods", pod["key"] + ".log"),
                 f"/etc/netns/{pod['netns']}/resolv.conf"):
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
    try:
        os.rmdir(f"/etc/netns/{pod['netns']}")
    except OSError:
        pass
    return {"deleted": True, "errors": errors}


def pod_records(lib: str) -> list:
    folder = os.path.join(lib, "pods")
    records = []
    for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
        if name.endswith(".json"):
            with open(os.path.join(folder, name)) as handle:
                records.append(json.load(handle))
    return records


def pods_ensure(lib: str) -> dict:
    """Restart the servers of pods whose server is not running; report each pod's state."""
    report = {}
    for record in pod_records(lib):
        state = "running"
        if not server_running(record):
            record["pid"], record["boot"] = start_server(lib, record), boot_id()
            record["restarts"] = record.get("restarts", 0) + 1
            state = "restarted" if wait_listening(record) else "failed"
            with open(pod_file(lib, record["key"]), "w") as handle:
                json.dump(record, handle)
        report[record["key"]] = {"state": state, "ip": record.get("ip"), "restarts": record.get("restarts", 0)}
    return report


def pods_reattach(lib: str, conf: dict, cni_path: str) -> dict:
    """Re-attach the pods that were attached with another config than `conf` (DEL with the old one, ADD with
    this one), keeping their namespace and server; report each one's new IP."""
    report = {}
    digest = conf_digest(conf)
    for record in pod_records(lib):
        if record.get("conf") == digest:
            continue
        netns = f"/run/netns/{record['netns']}"
        try:
            cni("DEL", conf, record["id"], netns, "eth0", cni_path)
            result = cni("ADD", conf, record["id"], netns, "eth0", cni_path,
                         {"portMappings": record.get("port_mappings", [])})
        except CniError as exc:
            report[record["key"]] = {"error": str(exc)}
            continue
        record["ip"] = next(i["address"].split("/")[0] for i in result.get("ips", []) if "." in i["address"])
        record["conf"] = digest
        with open(pod_file(lib, record["key"]), "w") as handle:
            json.dump(record, handle)
        report[record["key"]] = {"ip": record["ip"]}
    if report:
        flush_caches(lib)
        for record in pod_records(lib):
            if record["key"] in report and record.get("tcp"):
                answers(record["ip"], record["tcp"][0])
    return report


def answers(ip: str, port: int, seconds: float = 3.0) -> bool:
    """Wait until ip:port accepts a connection from this node (a readiness check)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            socket.create_connection((ip, port), 0.3).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


def flush_caches(lib: str) -> int:
    """Forget learned neighbours and path MTUs in every pod and on cni0: after pods were re-attached
    (host-local reuses IPs, with new MACs) or a broken MTU was repaired, stale entries would blackhole
    traffic until they expire."""
    records = pod_records(lib)
    for record in records:
        subprocess.run(["ip", "netns", "exec", record["netns"], "sh", "-c", "ip neigh flush all; ip route flush cache"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    subprocess.run(["sh", "-c", "ip neigh flush dev cni0; ip route flush cache"], stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    return len(records)


def pods_purge(lib: str, lab: str, conf, cni_path: str) -> dict:
    """Remove every pod of the lab on this node: the recorded ones, then any namespace left named <lab>-*."""
    report = {}
    for pod in pod_records(lib):
        report[pod["key"]] = pod_del(lib, conf, cni_path, pod) if conf else {"deleted": False}
    for line in run("ip", "netns", "list").splitlines():
        netns = line.split()[0] if line.split() else ""
        if netns.startswith(lab + "-"):
            for pid in run("ip", "netns", "pids", netns).split():
                os.kill(int(pid), signal.SIGKILL)
            subprocess.run(["ip", "netns", "del", netns], stderr=subprocess.DEVNULL)
            report.setdefault(netns, {"deleted": True})
    return report


# ---- services: kube-proxy's side --------------------------------------------------------------------------


def saved_chains(iptables_save: str) -> dict:
    """table -> {chain: [rules]} from `iptables-save` output."""
    tables: dict = {}
    table = None
    for line in iptables_save.splitlines():
        if line.startswith("*"):
            table = tables.setdefault(line[1:], {})
        elif table is not None and line.startswith(":"):
            table.setdefault(line[1:].split()[0], [])
        elif table is not None and line.startswith("-A "):
            table.setdefault(line.split()[1], []).append(line)
    return tables


def boot_id() -> str:
    """This boot of the node: rules loaded before a reboot are gone, whatever the state file says."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as handle:
            return handle.read().strip()
    except OSError:
        return ""


def chain_digest(rules: list) -> str:
    """A short digest of a chain's rules: what the node's state and the controller's ledger remember of it."""
    return hashlib.blake2b("\n".join(rules).encode(), digest_size=8).hexdigest()


def trusted_chains(loaded: dict, jumps: list) -> dict:
    """What the node has when nothing but the lab changed it since the last sync: the chains loaded then
    (None: their rules are as loaded) and the jumps to them, in the shape saved_chains returns."""
    present: dict = {table: dict.fromkeys(chains) for table, chains in loaded.items()}
    for table, builtin, jump in jumps:
        present.setdefault(table, {}).setdefault(builtin, []).append(jump)
    return present


def wanted_digests(request: dict, loaded: dict) -> dict:
    """table -> chain -> digest of the whole rule set a request asks for: all its chains, or, for a change
    request (one with a "base"), the loaded chains with the request's chains replaced and its removals gone."""
    wanted: dict = {}
    if "base" in request:
        wanted = {table: dict(chains) for table, chains in loaded.items()}
        for table, chains in request.get("removed", {}).items():
            for chain in chains:
                wanted.get(table, {}).pop(chain, None)
    for table, chains in request["tables"].items():
        wanted.setdefault(table, {}).update((chain, chain_digest(rules)) for chain, rules in chains.items())
    return wanted


# iptables-nft-restore keeps the name of every chain a load mentions in a sorted linked list, unless some
# command names no chain: then it reads the whole table once instead. The list is quadratic (a first load
# of 10,000 services took 58 s through the lab, 95 s by hand; 3.4 s with the read); measured here, the read
# costs about what the list does for sqrt(300 x chains in the table) names, so a load naming more starts
# with a read-only `-S`.
WHOLE_TABLE_READ_FACTOR = 300


def table_header(table: str, named: int, chains_in_table: int) -> list:
    """The first lines of an iptables-restore block for `table` that names `named` chains."""
    return [f"*{table}"] + (["-S"] if named ** 2 > WHOLE_TABLE_READ_FACTOR * chains_in_table else [])


def drifted_chains(want: dict, rules: dict, have: dict) -> list:
    """The chains of `want` that `have` (one table, as saved_chains returns it) lacks or holds otherwise than
    `rules` (rendered as iptables-save prints them, so compared as text); trusted chains (None) are as loaded."""
    return [c for c in want if c not in have or (have[c] is not None and have[c] != rules[c])]


def restore_input(wanted: dict, rules: dict, loaded: dict, present: dict, jumps: list) -> tuple:
    """The iptables-restore --noflush input that turns the node's chains into `wanted` (table -> chain ->
    digest; `rules` has the rules of the chains to write), writing only the chains that differ from what
    was `loaded` last (or are missing, or drifted) and deleting the ones no longer wanted; plus the jumps
    from the built-in chains that are missing. Returns (text, written, deleted)."""
    parts, written, deleted = [], [], []
    for table in sorted(set(wanted) | set(loaded)):
        want = wanted.get(table, {})
        have = present.get(table, {})
        drift = set(drifted_chains(want, rules.get(table, {}), have))
        write = [c for c, digest in want.items() if c in drift or loaded.get(table, {}).get(c) != digest]
        drop = [c for c in loaded.get(table, {}) if c not in want and c in have]
        missing = [j for t, builtin, j in jumps if t == table and j not in have.get(builtin, [])]
        if write or drop:
            lines = table_header(table, len(write) + len(drop), len(have))
            lines += [f":{c} - [0:0]" for c in write + drop]
            lines += [rule for c in write for rule in rules[table][c]]
            lines += [f"-X {c}" for c in drop]
            parts.append("\n".join(lines + ["COMMIT"]))
        if missing:
            # a block of its own, committed after the chains exist: after a read-only -S, iptables-nft does
            # not create a built-in chain the kernel lacks (it makes them as rules need them) and fails
            lines = [f"*{table}"]
            lines += [j.replace("-A ", "-I ", 1).replace(f" {j.split()[1]} ", f" {j.split()[1]} 1 ", 1) for j in missing]
            parts.append("\n".join(lines + ["COMMIT"]))
        written += [f"{table}/{c}" for c in write]
        deleted += [f"{table}/{c}" for c in drop]
    return ("\n".join(parts) + "\n" if parts else ""), written, deleted


def drifted(wanted: dict, rules: dict, present: dict, jumps: list) -> list:
    """The lab's chains and jumps the node lacks or holds otherwise than `rules` (present as read back by
    iptables-save): what a reload repairs, as "table/chain" (jumps as "table/BUILTIN jump")."""
    found = [f"{table}/{chain}" for table, chains in sorted(wanted.items())
             for chain in drifted_chains(chains, rules[table], present.get(table, {}))]
    return found + [f"{table}/{builtin} jump" for table, builtin, jump in jumps
                    if jump not in present.get(table, {}).get(builtin, [])]


def load_rules(text: str) -> None:
    """iptables-restore --noflush; on failure, the error with the offending lines around it."""
    proc = subprocess.run(["iptables-restore", "--noflush"], input=text.encode(), stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE)
    if proc.returncode != 0:
        err = proc.stderr.decode(errors="replace").strip()
        match = re.search(r"line:? (\d+)", err)
        context = ""
        if match:
            n = int(match.group(1))
            lines = text.splitlines()
            context = " | ".join(f"{i + 1}: {lines[i]}" for i in range(max(0, n - 3), min(len(lines), n + 2)))
        raise CniError(f"iptables-restore failed: {err}" + (f" [{context}]" if context else ""))


NFT_TABLE = "lab-proxy"
NFT_HOOKED = ("services", "filter-", "nat-")


def nft_elements(elements) -> str:
    if isinstance(elements, dict):
        return ", ".join(f"{k} : {v}" for k, v in sorted(elements.items()))
    return ", ".join(sorted(elements))


def nft_table_text(desired: dict) -> str:
    """The whole lab-proxy table as `nft -f` input, replacing the old one in one transaction. Things are
    declared before they are referenced: data sets, then chains others jump to, then verdict maps
    (which name chains), then the chains that look the verdict maps up."""
    sets = desired["sets"]
    chains = desired["chains"]

    def set_line(name):
        decl, elements = sets[name]
        kind = "map" if " : " in decl else "set"
        body = f" elements = {{ {nft_elements(elements)} }}" if elements else ""
        return f"  {kind} {name} {{ {decl};{body} }}"

    def chain_lines(name):
        return [f"  chain {name} {{", *(f"    {line}" for line in chains[name]), "  }"]

    def leaf_order(name):
        return (name not in ("mark-for-masquerade", "reject-packet"), not name.startswith("ep-"), name)

    leaves = sorted((c for c in chains if not c.startswith(NFT_HOOKED)), key=leaf_order)
    hooked = sorted((c for c in chains if c.startswith(NFT_HOOKED)), key=lambda c: (c != "services", c))
    lines = [f"table ip {NFT_TABLE} {{}}", f"delete table ip {NFT_TABLE}", f"table ip {NFT_TABLE} {{"]
    lines += [set_line(n) for n in sorted(sets) if "verdict" not in sets[n][0]]
    lines += [line for c in leaves for line in chain_lines(c)]
    lines += [set_line(n) for n in sorted(sets) if "verdict" in sets[n][0]]
    lines += [line for c in hooked for line in chain_lines(c)]
    return "\n".join(lines + ["}"]) + "\n"


def nft_same_shape(desired: dict, loaded: dict) -> bool:
    """Same chains and declarations as loaded: changing elements is enough."""
    return (loaded.get("chains") == desired["chains"] and
            {k: v[0] for k, v in loaded.get("sets", {}).items()} == {k: v[0] for k, v in desired["sets"].items()})


def nft_element_changes(desired: dict, loaded: dict) -> str:
    """`nft -f` input changing only the elements that differ (one transaction); "" when none do."""
    out = []
    for name, (_, elements) in sorted(desired["sets"].items()):
        old = loaded["sets"][name][1]
        if isinstance(elements, dict):
            gone = sorted(k for k in old if k not in elements or old[k] != elements[k])
            new = {k: v for k, v in elements.items() if old.get(k) != v}
        else:
            gone, new = sorted(set(old) - set(elements)), sorted(set(elements) - set(old))
        if gone:
            out.append(f"delete element ip {NFT_TABLE} {name} {{ {', '.join(gone)} }}")
        if new:
            out.append(f"add element ip {NFT_TABLE} {name} {{ {nft_elements(new)} }}")
    return "\n".join(out) + "\n" if out else ""


def nft_table_exists() -> bool:
    """Whether the lab's nftables table is there, without `nft list`, which reads the whole ruleset
    (0.33 s next to 10,000 services): adding a chain that exists changes nothing, and fails without the table."""
    if shutil.which("nft") is None:  # proxy_mode iptables does not need nftables on the node
        return False
    return subprocess.run(["nft", "add", "chain", "ip", NFT_TABLE, "services"], stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL).returncode == 0


def nft_drifted(desired: dict) -> list:
    """The lab table's sets, maps and chains the node lacks or holds with another element or rule count than
    `desired` (read back with `nft -j list table`), as "nft/NAME": what a reload repairs."""
    proc = subprocess.run(["nft", "-j", "list", "table", "ip", NFT_TABLE], stdout=subprocess.PIPE,
                          stderr=subprocess.DEVNULL)
    if proc.returncode != 0:
        return [f"nft/{NFT_TABLE}"]
    elements: dict = {}
    rules: dict = {}
    for item in json.loads(proc.stdout).get("nftables", []):
        for kind in ("set", "map"):
            if kind in item:
                elements[item[kind]["name"]] = len(item[kind].get("elem", []))
        if "chain" in item:
            rules.setdefault(item["chain"]["name"], 0)
        if "rule" in item:
            rules[item["rule"]["chain"]] = rules.get(item["rule"]["chain"], 0) + 1
    # sets the rules fill as packets pass (ClientIP affinity's clients) hold what traffic put there
    found = [f"nft/{name}" for name, (decl, wanted) in sorted(desired["sets"].items())
             if "dynamic" not in decl and elements.get(name) != len(wanted)]
    return found + [f"nft/{chain}" for chain, lines in sorted(desired["chains"].items())
                    if rules.get(chain) != sum(1 for line in lines if not line.startswith("type "))]


def load_nft(text: str) -> None:
    proc = subprocess.run(["nft", "-f", "-"], input=text.encode(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if proc.returncode != 0:
        err = proc.stderr.decode(errors="replace").strip().splitlines()
        raise CniError("nft -f failed: " + " | ".join(err[:6]))


def removal_block(table: str, jumps: list, chains: list, chains_in_table: int) -> str:
    """iptables-restore input for `table` that deletes the rules `jumps` (iptables-save form), then empties and
    deletes `chains`: one load, where a command per chain would read the whole ruleset each time."""
    lines = table_header(table, len(chains), chains_in_table)
    lines += [j.replace("-A ", "-D ", 1) for j in jumps]
    lines += [f":{c} - [0:0]" for c in chains] + [f"-X {c}" for c in chains]
    return "\n".join(lines + ["COMMIT"])


def iptables_removal(loaded: dict, present: dict, jumps: list) -> str:
    """iptables-restore input removing the service chains and their jumps (switching to nftables)."""
    parts = []
    for table, chains in loaded.items():
        gone = [c for c in chains if c in present.get(table, {})]
        if gone:
            held = [j for t, builtin, j in jumps if t == table and j in present[table].get(builtin, [])]
            parts.append(removal_block(table, held, gone, len(present[table])))
    return "\n".join(parts) + "\n" if parts else ""


def proxy_sync(lib: str, request: dict, dry_run: bool = False) -> dict:
    """Bring the node's service rules, stale UDP conntrack entries and DNS records up to `request`; with
    `dry_run`, only say which chains (or nftables parts) would be written and deleted."""
    state_file = os.path.join(lib, "proxy.json")
    try:
        with open(state_file) as handle:
            loaded = json.load(handle)
    except (OSError, ValueError):
        loaded = {}
    if request.get("force"):  # `lab fix`: reload everything, whatever was loaded before
        loaded = {}
    backend = request.get("backend", "iptables")
    loaded_iptables = loaded.get("iptables", {})
    # Like kube-proxy, a partial sync trusts the iptables rules it loaded last: iptables-save reads the
    # whole ruleset, ~1 s next to 10,000 services with iptables-nft. Rules changed by hand are found when
    # the controller verifies (`lab controller run --once`, and every 30 s while it runs) and by `lab fix`.
    boot = boot_id()
    trusted = backend == "iptables" and loaded_iptables and not request.get("verify") and loaded.get("boot") == boot
    if "base" in request and not (trusted and loaded.get("generation") == request["base"]):
        # a change request builds on what the controller last sent; this node has something else
        return {"resync": True}
    if trusted:
        present = trusted_chains(loaded_iptables, request["jumps"])
    elif backend == "iptables" or loaded_iptables:
        present = saved_chains(run("iptables-save"))
    else:
        present = {}
    loaded_nft = loaded.get("nft")
    written, deleted = [], []
    repaired: list = []

    def load(loader, text: str) -> None:
        if not dry_run:
            loader(text)

    def table_exists() -> bool:  # nft_table_exists adds a chain when the table has none: not in a dry run
        if not dry_run:
            return nft_table_exists()
        if shutil.which("nft") is None:
            return False
        tables = subprocess.run(["nft", "list", "tables"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        return f"table ip {NFT_TABLE}" in tables.stdout.decode().splitlines()

    if backend == "iptables":
        wanted = wanted_digests(request, loaded_iptables)
        if request.get("force"):
            repaired = drifted(wanted, request["tables"], present, request["jumps"])
        text, written, deleted = restore_input(wanted, request["tables"], loaded_iptables, present, request["jumps"])
        try:
            if text:
                load(load_rules, text)
        except CniError:
            if not trusted:
                raise
            if "base" in request:  # the node's rules are not what was loaded last: the controller sends them all
                return {"resync": True}
            # the rules were not what was loaded last (changed by hand): read them, and write what differs
            present = saved_chains(run("iptables-save"))
            text, written, deleted = restore_input(wanted, request["tables"], loaded_iptables, present,
                                                   request["jumps"])
            if text:
                load(load_rules, text)
        if (loaded_nft or not loaded) and table_exists():
            load(load_nft, f"delete table ip {NFT_TABLE}\n")
            deleted.append(f"nft/{NFT_TABLE}")
        state = {"iptables": wanted, "boot": boot, "generation": request.get("generation")}
    else:
        old_rules = iptables_removal(loaded_iptables, present, request["jumps"])
        if old_rules:
            load(load_rules, old_rules)
            deleted += [f"{t}/{c}" for t, chains in loaded_iptables.items() for c in chains]
        desired = request["nft"]
        reload = not (loaded_nft and nft_same_shape(desired, loaded_nft) and table_exists())
        if not reload:
            changes = nft_element_changes(desired, loaded_nft)
            try:
                if changes:
                    load(load_nft, changes)
                    written.append(f"nft/{NFT_TABLE}: elements")
            except CniError:  # the elements were not what was loaded last (changed by hand)
                reload = True
        if reload:
            if request.get("force"):
                repaired = nft_drifted(desired)
            load(load_nft, nft_table_text(desired))
            written.append(f"nft/{NFT_TABLE}")
        state = {"nft": desired}
    if dry_run:
        return {"written": written, "deleted": deleted, "repaired": repaired, "dry_run": True}
    if written or deleted or state != loaded or not os.path.exists(os.path.join(lib, RULES_REQUEST)):
        with open(state_file + ".tmp", "w") as handle:
            handle.write(json.dumps(state))  # dumps uses the C encoder; dump would not (3x slower at 10,000 services)
        os.replace(state_file + ".tmp", state_file)
        store_rules(lib, request)
    for address in request.get("stale_udp", []):
        # a UDP "connection" to an endpoint that is gone would otherwise keep being sent there
        subprocess.run(["conntrack", "-D", "-p", "udp", "--dst-nat", address], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
    dns_changed = False
    if "dns_hosts" in request:
        path = os.path.join(lib, "dns", "hosts")
        try:
            with open(path) as handle:
                dns_changed = handle.read() != request["dns_hosts"]
        except OSError:
            dns_changed = True
        if dns_changed:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path + ".tmp", "w") as handle:
                handle.write(request["dns_hosts"])
            os.chmod(path + ".tmp", 0o644)
            os.replace(path + ".tmp", path)
            for record in pod_records(lib):
                if record.get("role") == "dns" and server_running(record):
                    os.kill(int(record["pid"]), signal.SIGHUP)  # dnsmasq re-reads its hosts files
    return {"written": written, "deleted": deleted, "repaired": repaired, "dns": dns_changed,
            "generation": state.get("generation")}


# The rules a node holds, kept on its disk so that it can load them again after a boot by itself (the
# restore verb): the last whole request, and a journal of the change requests since, one JSON line each.
RULES_REQUEST = "rules/request.json"
RULES_JOURNAL = "rules/journal"
VOLATILE_KEYS = ("force", "verify", "stale_udp", "dns_hosts", "base", "removed")


def write_atomically(path: str, text: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".tmp", "w") as handle:
        handle.write(text)
    os.replace(path + ".tmp", path)


def store_rules(lib: str, request: dict) -> None:
    """Keep what `request` leaves the node holding: a whole request replaces the store, a change request is
    appended to the journal (a few hundred bytes, not the whole rule set again); the journal is folded into
    the request once it outgrows it."""
    base, journal = os.path.join(lib, RULES_REQUEST), os.path.join(lib, RULES_JOURNAL)
    if "base" not in request:
        write_atomically(base, json.dumps({k: v for k, v in request.items() if k not in VOLATILE_KEYS}))
        with open(journal, "w"):
            pass
        return
    with open(journal, "a") as handle:
        handle.write(json.dumps({"tables": request["tables"], "removed": request.get("removed", {}),
                                 "jumps": request["jumps"], "generation": request.get("generation")}) + "\n")
    if os.path.getsize(journal) > os.path.getsize(base):
        write_atomically(base, json.dumps(stored_request(lib)))
        with open(journal, "w"):
            pass


def stored_request(lib: str):
    """The whole proxy-sync request for the rules this node last held (None: it never held any)."""
    try:
        with open(os.path.join(lib, RULES_REQUEST)) as handle:
            request = json.load(handle)
    except (OSError, ValueError):
        return None
    try:
        with open(os.path.join(lib, RULES_JOURNAL)) as handle:
            lines = handle.read().splitlines()
    except OSError:
        lines = []
    for line in lines:
        try:
            change = json.loads(line)
        except ValueError:
            break  # a line cut short by a power loss: what came before it is what the node held
        tables = request.setdefault("tables", {})
        for table, chains in change.get("removed", {}).items():
            for chain in chains:
                tables.get(table, {}).pop(chain, None)
        for table, chains in change["tables"].items():
            tables.setdefault(table, {}).update(chains)
        request["jumps"], request["generation"] = change["jumps"], change.get("generation")
    return request


def restore(lib: str, conf_path: str, cni_path: str = CNI_PATH) -> dict:
    """After a boot, bring back what the kernel forgot, once per boot: the network (the script deploy left
    in <lib>/boot), the service rules this node held, then the pods (namespace, CNI ADD with the same
    container ID, server). Each part is tried even when one before it failed."""
    boot = boot_id()
    stamp = os.path.join(lib, "restored-boot")
    try:
        with open(stamp) as handle:
            if handle.read().strip() == boot:
                return {"boot": boot, "restored": [], "errors": []}
    except OSError:
        pass
    restored, errors = [], []
    script = os.path.join(lib, "boot", "network.sh")
    if os.path.exists(script):
        try:
            run("bash", script)
            restored.append("network")
        except CniError as exc:
            errors.append(f"network: {exc}")
    request = stored_request(lib)
    if request:
        try:
            proxy_sync(lib, dict(request, verify=True))
            restored.append("service rules")
        except CniError as exc:
            errors.append(f"service rules: {exc}")
    try:
        conf = load_conf(open(conf_path).read(), conf_path)
    except (OSError, CniError) as exc:
        conf, errors = None, errors + [f"pods: {exc}"]
    for record in pod_records(lib) if conf else []:
        if os.path.exists(f"/run/netns/{record['netns']}"):
            continue
        try:
            pod_add(lib, conf, cni_path, record)
            restored.append(f"pod {record['key']}")
        except (CniError, OSError) as exc:
            errors.append(f"pod {record['key']}: {exc}")
    write_atomically(stamp, boot + "\n")
    return {"boot": boot, "restored": restored, "errors": errors}


# ---- probes ----------------------------------------------------------------------------------------------


def probe_one(target: dict, timeout: float) -> dict:
    """One probe: {"proto": "tcp"|"udp", "host", "port", "path"} -> {"ok", "reply" | "error"}.
    TCP speaks HTTP GET; UDP sends a datagram to the pod server's echo."""
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
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            sock.sendall(f"GET {target.get('path', '/hostname')} HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
            data = b""
            while True:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                data += chunk
        head, _, body = data.decode(errors="replace").partition("\r\n\r\n")
        status = head.split(" ", 2)[1] if " " in head else "?"
        return {"ok": status == "200", "reply": body.strip(), "status": status}
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


# ---- the pod server --------------------------------------------------------------------------------------


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
            else:
                body = f"pod {name}: GET /hostname, /clientip or /echo?msg=..."
            data = (body + "\n").encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self):
            data = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    class Udp(socketserver.BaseRequestHandler):
        def handle(self):
            data, sock = self.request
            reply = f"hostname={name} clientip={self.client_address[0]} echo=".encode() + data
            sock.sendto(reply, self.client_address)

    ThreadingHTTPServer.allow_reuse_address = True
    ThreadingHTTPServer.request_queue_size = 1024  # socketserver's default backlog of 5 drops SYNs under load
    servers = [ThreadingHTTPServer(("0.0.0.0", port), Handler) for port in tcp_ports]
    servers += [socketserver.ThreadingUDPServer(("0.0.0.0", port), Udp) for port in udp_ports]
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    while True:
        time.sleep(3600)


# ---- command line -----------------------------------------------------------------------------------------


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="node_agent.py")
    sub = parser.add_subparsers(dest="verb", required=True)
    c = sub.add_parser("cni")
    c.add_argument("command", choices=["ADD", "DEL", "CHECK", "VERSION"])
    c.add_argument("--conf", required=True, help="network config (list) file, or - for stdin")
    c.add_argument("--netns", default="")
    c.add_argument("--id", default="cni-lab")
    c.add_argument("--ifname", default="eth0")
    c.add_argument("--cni-path", default=CNI_PATH)
    c.add_argument("--runtime-config", default="{}")
    for verb in ("pods-apply", "pods-ensure", "flush-caches"):
        sub.add_parser(verb)
    sync = sub.add_parser("proxy-sync")
    sync.add_argument("--dry-run", action="store_true", help="only say what would be written and deleted")
    reattach = sub.add_parser("pods-reattach")
    reattach.add_argument("--conf", required=True)
    reattach.add_argument("--cni-path", default=CNI_PATH)
    rest = sub.add_parser("restore")
    rest.add_argument("--conf", required=True)
    rest.add_argument("--cni-path", default=CNI_PATH)
    purge = sub.add_parser("pods-purge")
    purge.add_argument("--lab", required=True)
    purge.add_argument("--conf", required=True)
    purge.add_argument("--cni-path", default=CNI_PATH)
    pr = sub.add_parser("probe")
    pr.add_argument("--timeout", type=float, default=2.0)
    s = sub.add_parser("serve")
    s.add_argument("--name", required=True)
    s.add_argument("--tcp", type=int, action="append", default=[])
    s.add_argument("--udp", type=int, action="append", default=[])
    args = parser.parse_args(argv)
    lib = os.path.dirname(os.path.abspath(__file__))
    try:
        if args.verb == "serve":
            serve(args.name, args.tcp, args.udp)
        if args.verb == "cni":
            text = sys.stdin.read() if args.conf == "-" else open(args.conf).read()
            result = cni(args.command, load_conf(text, args.conf), args.id, args.netns, args.ifname,
                         args.cni_path, json.loads(args.runtime_config))
            if result is not None:
                print(json.dumps(result, indent=2))
            return 0
        if args.verb == "probe":
            print(json.dumps(probe(json.load(sys.stdin), args.timeout)))
            return 0
        if args.verb == "flush-caches":
            print(json.dumps({"pods": flush_caches(lib)}))
            return 0
        if args.verb == "pods-ensure":
            print(json.dumps(pods_ensure(lib)))
            return 0
        if args.verb == "proxy-sync":
            print(json.dumps(proxy_sync(lib, json.load(sys.stdin), dry_run=args.dry_run)))
            return 0
        if args.verb == "pods-reattach":
            print(json.dumps(pods_reattach(lib, load_conf(open(args.conf).read(), args.conf), args.cni_path)))
            return 0
        if args.verb == "restore":
            report = restore(lib, args.conf, args.cni_path)
            print(json.dumps(report))
            for line in report["errors"]:
                print(f"node agent: restore: {line}", file=sys.stderr)
            return 1 if report["errors"] else 0
        if args.verb == "pods-purge":
            conf = load_conf(open(args.conf).read(), args.conf) if os.path.exists(args.conf) else None
            print(json.dumps(pods_purge(lib, args.lab, conf, args.cni_path)))
            return 0
        # pods-apply: {"conflist": PATH, "cni_path": DIRS, "delete": [pod...], "add": [pod...]}
        request = json.load(sys.stdin)
        conf = load_conf(open(request["conflist"]).read(), request["conflist"])
        report = {"deleted": {}, "added": {}}
        for verb, done, action in (("delete", "deleted", pod_del), ("add", "added", pod_add)):
            for pod in request.get(verb, []):
                try:
                    report[done][pod["key"]] = action(lib, conf, request["cni_path"], pod)
                except CniError as exc:
                    report[done][pod["key"]] = {"error": str(exc), "code": exc.code}
        print(json.dumps(report))
        return 0
    except CniError as exc:
        code = f" (CNI error code {exc.code})" if exc.code != 999 else ""
        print(f"node agent: {exc}{code}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"node agent: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

"""Pods as network namespaces: add (namespace, CNI ADD, the pod's server), delete, ensure after a crash,
re-attach after a CNI config change, purge at destroy."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from typing import Optional

from .cni import CniError, LOOPBACK_CONF, cni, load_conf, run
from .contract import AGENT_FILE, DNS_HOSTS, PODS_DIR, conf_digest, is_pod_netns, write_durably
from .gateways import proxy_argv
from .policy import isolate_new_pod
from .host import alive, boot_id
from .podroot import (ROOT_DIR, PodRootError, check_image_root, enter_argv, launch_argv, refresh_busybox_hosts,
                      remove_pod_etc, run_in_session, write_pod_etc)


def pod_file(lib: str, key: str) -> str:
    return os.path.join(lib, PODS_DIR, key + ".json")


def pod_log(lib: str, key: str) -> str:
    return os.path.join(lib, PODS_DIR, key + ".log")


def server_running(record: dict) -> bool:
    """Whether the pod's server (recorded in `record`) runs: its PID is alive, was started in this boot (after
    a reboot the PID may name any other process) and is still the lab's pod server or dnsmasq."""
    pid = record.get("pid")
    if pid is None or not alive(pid) or record.get("boot", boot_id()) != boot_id():
        return False
    try:
        with open(f"/proc/{int(pid)}/cmdline", "rb") as handle:
            argv = handle.read().split(b"\0")
    except OSError:
        return False
    if record.get("role") == "dns":
        return any(arg.endswith(b"dnsmasq") for arg in argv[:1])
    if record.get("role") == "gateway":
        return any(arg.startswith(b"nginx: master") or arg.endswith(b"nginx") for arg in argv[:1])
    return b"serve" in argv and record.get("name", "").encode() in argv


def start_server(lib: str, pod: dict) -> int:
    """Start the pod's server inside its network namespace, detached from this SSH session: the real
    dnsmasq for DNS pods (records in <lib>/dns/hosts), nginx for gateway pods (agent/gateways.py), the built-in
    server for every other pod."""
    if pod.get("role") == "dns":
        hosts = os.path.join(lib, DNS_HOSTS)
        os.makedirs(os.path.dirname(hosts), exist_ok=True)
        if not os.path.exists(hosts):
            open(hosts, "a").close()
        args = ["dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
                "--user=root", "--pid-file=", f"--addn-hosts={hosts}", f"--local=/{pod['dns_domain']}/",
                "--log-facility=-"]
    elif pod.get("role") == "gateway":
        args = proxy_argv(lib, pod)
    else:
        args = [sys.executable, os.path.join(lib, AGENT_FILE), "serve", "--name", pod["name"]]
        for port in pod.get("tcp", []):
            args += ["--tcp", str(port)]
        for port in pod.get("udp", []):
            args += ["--udp", str(port)]
    log = open(pod_log(lib, pod["key"]), "ab")
    proc = subprocess.Popen(launch_argv(lib, pod, args), stdin=subprocess.DEVNULL, stdout=log,
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


# Only a server that neither listens nor dies meets this bound: under TCG, three pod servers starting at once
# on a busy VM have taken more than 5 s to bind.
SERVER_START_SECONDS = 60.0


def wait_listening(pod: dict, seconds: float = SERVER_START_SECONDS) -> bool:
    """True once the pod's server listens on all its TCP ports; False as soon as it dies."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not alive(pod["pid"]):
            return False
        if set(pod.get("tcp", [])) <= listening_ports(pod["pid"]):
            return True
        time.sleep(0.01)
    return False


def pod_add(lib: str, conf: dict, cni_path: str, pod: dict) -> dict:
    """Create the pod: namespace, loopback, the network list (eth0), its server. Undo all on failure."""
    netns_path = f"/run/netns/{pod['netns']}"
    try:
        check_image_root(pod)
    except PodRootError as exc:
        raise CniError(str(exc)) from None
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
        write_pod_etc(pod["netns"], pod.get("resolv_conf", ""), pod["name"], ip)
        os.makedirs(os.path.join(lib, PODS_DIR), exist_ok=True)
        os.makedirs(os.path.join(lib, ROOT_DIR), exist_ok=True)
        record = dict(pod, ip=ip, conf=conf_digest(conf), boot=boot_id())
        isolate_new_pod(ip, pod.get("policy_sets") or [])
        record["pid"] = start_server(lib, record)
        if not wait_listening(record):
            raise CniError(f"the pod server of {pod['key']} did not start (see {lib}/pods/{pod['key']}.log)")
        write_durably(pod_file(lib, pod["key"]), json.dumps(record))
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
    if os.path.exists(netns_path):
        # whatever else runs in it (a server its lost record no longer names) would keep it and its veth alive
        end_processes_in(pod["netns"])
    errors = []
    for ifname, network in (("eth0", conf), ("lo", load_conf(json.dumps(LOOPBACK_CONF), "loopback"))):
        try:
            cni("DEL", network, pod["id"], netns_path if os.path.exists(netns_path) else "", ifname, cni_path)
        except CniError as exc:
            errors.append(str(exc))
    if os.path.exists(netns_path):
        subprocess.run(["ip", "netns", "del", pod["netns"]], stderr=subprocess.DEVNULL)
    forget_record(lib, pod["key"])
    remove_pod_etc(pod["netns"])
    return {"deleted": True, "errors": errors}


def read_pod_records(lib: str) -> list[tuple[str, Optional[dict]]]:
    """(key, record) of every pod record on the node, in key order; the record is None where its file is empty
    or unreadable (cut short by a power loss before the lab wrote records durably, or changed by hand)."""
    folder = os.path.join(lib, PODS_DIR)
    found: list[tuple[str, Optional[dict]]] = []
    for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
        if name.endswith(".json"):
            try:
                with open(os.path.join(folder, name)) as handle:
                    record = json.load(handle)
            except (OSError, ValueError):
                record = None
            whole = isinstance(record, dict) and {"key", "netns", "id"} <= record.keys()
            found.append((name[:-len(".json")], record if whole else None))
    return found


def enter_pod(lib: str, key: str, command: list[str], tty: bool) -> int:
    """`command` in pod `key` (`lab exec`): with a terminal (`tty`) it becomes this process, which the terminal's
    hang-up ends; without one it runs until it ends or the session that asked for it goes."""
    try:
        with open(pod_file(lib, key)) as handle:
            record = json.load(handle)
    except (OSError, ValueError):
        print(f"node agent: pod {key} is not on this node", file=sys.stderr)
        return 1
    if not server_running(record):
        print(f"node agent: pod {key} has no running process (it is made again by `lab deploy`; `lab get pods` "
              "shows its state)", file=sys.stderr)
        return 1
    argv = enter_argv(lib, record, command)
    if tty:
        os.execvp(argv[0], argv)
    return run_in_session(argv)


def pod_records(lib: str) -> list[dict]:
    """The pods the node's records describe (an unreadable record describes none)."""
    return [record for _, record in read_pod_records(lib) if record is not None]


def gone(record: dict) -> bool:
    """Whether a recorded pod's network namespace is gone from the node (a reboot, deleted by hand)."""
    return not os.path.exists(f"/run/netns/{record['netns']}")


def end_processes_in(netns: str) -> None:
    """End every process in network namespace `netns`."""
    for pid in run("ip", "netns", "pids", netns).split():
        try:
            os.kill(int(pid), signal.SIGKILL)
        except ProcessLookupError:
            pass


def netns_names() -> list[str]:
    """The node's named network namespaces."""
    return [line.split()[0] for line in run("ip", "netns", "list").splitlines() if line.split()]


def remove_netns(netns: str) -> None:
    """Remove network namespace `netns` with every process in it (they would keep it alive)."""
    end_processes_in(netns)
    subprocess.run(["ip", "netns", "del", netns], stderr=subprocess.DEVNULL)
    remove_pod_etc(netns)


def forget_record(lib: str, key: str) -> None:
    """Remove pod `key`'s record and log, where they are."""
    for path in (pod_file(lib, key), pod_log(lib, key)):
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


def lease_holders(conf: dict) -> dict[str, str]:
    """Container ID -> lease file, of every address host-local leased on the pod network `conf`."""
    ipam = next((p.get("ipam") or {} for p in conf.get("plugins", []) if p.get("ipam")), {})
    folder = os.path.join(ipam.get("dataDir") or "/var/lib/cni/networks", conf.get("name", ""))
    holders = {}
    for name in os.listdir(folder) if conf.get("name") and os.path.isdir(folder) else []:
        if name == "lock" or name.startswith("last_reserved_ip"):
            continue
        try:
            with open(os.path.join(folder, name)) as handle:
                holder = handle.read().split()
        except OSError:
            continue
        if holder:
            holders[holder[0]] = os.path.join(folder, name)
    return holders


def remove_unwanted(lib: str, lab: str, keep: list, conf: Optional[dict], cni_path: str) -> dict:
    """Remove what the node holds of pods of lab `lab` other than `keep` (each: key, netns, id): a record the
    lab no longer has (its pod deleted while the node was away), a pod namespace no kept pod uses (a power cut
    between `ip netns add` and the record), a lease on the pod network no kept pod holds (a power cut during a
    CNI ADD). Each removed thing is reported "removed"."""
    keys, netnses, ids = ({p[field] for p in keep} for field in ("key", "netns", "id"))
    removed: dict[str, dict] = {}
    for key, record in read_pod_records(lib):
        if key in keys:
            continue
        if record is not None and conf is not None:
            pod_del(lib, conf, cni_path, record)
        else:  # an unreadable record names no namespace: the sweep below takes it
            forget_record(lib, key)
        removed[key] = {"state": "removed"}
    for netns in netns_names():
        if is_pod_netns(lab, netns) and netns not in netnses:
            remove_netns(netns)
            removed[netns] = {"state": "removed"}
    if conf is not None:
        leases = lease_holders(conf)
        for container_id in sorted(leases.keys() - ids):
            try:
                cni("DEL", conf, container_id, "", "eth0", cni_path)
            except CniError:
                pass
            removed[f"lease {os.path.basename(leases[container_id])}"] = {"state": "removed"}
    return removed


def pods_status(lib: str) -> dict:
    """Each pod's state, changing nothing: running, stopped (its server is not), or gone (its network namespace
    is, or its record cannot be read)."""
    return {key: {"state": "gone"} if record is None or gone(record) else
            {"state": "running" if server_running(record) else "stopped", "ip": record.get("ip")}
            for key, record in read_pod_records(lib)}


def pods_ensure(lib: str, lab: str = "", keep: Optional[list] = None, conf: Optional[dict] = None,
                cni_path: str = "") -> dict:
    """Restart the servers of pods whose server is not running; report each pod's state. A pod whose network
    namespace is gone (a reboot, deleted by hand) or whose record cannot be read is reported gone, and left for
    the controller to make again: its server has nowhere to run. With `keep`, what belongs to no kept pod goes
    first (remove_unwanted)."""
    report: dict[str, dict] = remove_unwanted(lib, lab, keep, conf, cni_path) if keep is not None else {}
    for key, record in read_pod_records(lib):
        if record is None or gone(record):
            report[key] = {"state": "gone"}
            continue
        state = "running"
        if not server_running(record):
            record["pid"], record["boot"] = start_server(lib, record), boot_id()
            record["restarts"] = record.get("restarts", 0) + 1
            state = "restarted" if wait_listening(record) else "failed"
            write_durably(pod_file(lib, record["key"]), json.dumps(record))
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
        write_pod_etc(record["netns"], record.get("resolv_conf", ""), record["name"], record["ip"])
        refresh_busybox_hosts(lib, record)
        write_durably(pod_file(lib, record["key"]), json.dumps(record))
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


def forget_neighbours(lib: str, addresses: list[str]) -> None:
    """Forget what the node and its pods learned of `addresses` (their MACs): a pod made again with the address
    it had has a new MAC, and the old one, still cached, would blackhole traffic to it until it expires."""
    script = "".join(f"neigh flush to {address}\n" for address in addresses)
    for netns in [None, *(record["netns"] for record in pod_records(lib))]:
        subprocess.run(["ip", *(["-n", netns] if netns else []), "-batch", "-"], input=script.encode(),
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


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
    for netns in netns_names():
        if netns.startswith(lab + "-"):
            remove_netns(netns)
            report.setdefault(netns, {"deleted": True})
    return report

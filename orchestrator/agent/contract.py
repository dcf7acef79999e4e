"""What the controller and the node agent must agree on: where the CNI plugins are, the agent's file name,
the lab's nftables table, the digests and rule text both sides compute, and each verb's request and answer
with the protocol number they belong to. Standard library only; the one
agent module the controller imports."""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, ClassVar, Generic, Optional, TypeVar

# Where the reference plugins are: upstream's tarball, Debian/Ubuntu's package, Fedora/RHEL's package
CNI_PATH = "/opt/cni/bin:/usr/lib/cni:/usr/libexec/cni"
NODE_LIB = "/var/lib/cluster-lab"  # the labs' files on a node (overlaid, hence private, on emulated nodes)
AGENT_FILE = "agent.pyz"  # the zipapp, in the lab's folder on the node
NFT_TABLE = "lab-proxy"  # the lab's nftables table of service rules (ip family)
POLICY_TABLE = "lab-policy"  # and of NetworkPolicy rules


def node_lib(lab: str) -> str:
    """The folder of lab `lab` on a node."""
    return f"{NODE_LIB}/{lab}"


def agent_path(lab: str) -> str:
    """Where the agent of lab `lab` is on a node."""
    return f"{node_lib(lab)}/{AGENT_FILE}"


def chain_digest(rules: list) -> str:
    """A short digest of a chain's rules: what the node's state and the controller's ledger remember of it."""
    return hashlib.blake2b("\n".join(rules).encode(), digest_size=8).hexdigest()


def conf_digest(conf: dict) -> str:
    """A short digest of a network config list: which config a pod was attached with."""
    return hashlib.sha256(json.dumps(conf, sort_keys=True).encode()).hexdigest()[:16]


# The lab's iptables-restore --noflush input is built here only, by both sides: the agent's service chains
# (agent/iptables.py) and the node scripts' pod network chains (layers/podnet/changes.py).

def chain_block(table: str, write: dict, drop=(), chains_in_table=None, then=()) -> str:
    """iptables-restore --noflush input for `table`, one commit: declare (hence empty) and fill the chains of
    `write` (chain -> rules, iptables-save form), delete the chains of `drop`, then the lines `then` (jumps).
    With `chains_in_table` (how many the table holds), a load naming many chains starts with a whole-table
    read (table_header); without, never (after that read iptables-nft does not make missing built-in chains)."""
    lines = [f"*{table}"] if chains_in_table is None else table_header(table, len(write) + len(drop), chains_in_table)
    lines += [f":{c} - [0:0]" for c in [*write, *drop]]
    lines += [rule for rules in write.values() for rule in rules]
    lines += [f"-X {c}" for c in drop]
    return "\n".join(lines + list(then) + ["COMMIT"])


def insert_first(rule: str) -> str:
    """A rule in iptables-save form (`-A CHAIN ...`) inserted as its chain's first rule instead."""
    chain = rule.split()[1]
    return rule.replace("-A ", "-I ", 1).replace(f" {chain} ", f" {chain} 1 ", 1)


def removal_block(table: str, jumps: list, chains: list, chains_in_table: int) -> str:
    """iptables-restore input for `table` that deletes the rules `jumps` (iptables-save form), then empties and
    deletes `chains`: one load, where a command per chain would read the whole ruleset each time."""
    lines = table_header(table, len(chains), chains_in_table)
    lines += [j.replace("-A ", "-D ", 1) for j in jumps]
    lines += [f":{c} - [0:0]" for c in chains] + [f"-X {c}" for c in chains]
    return "\n".join(lines + ["COMMIT"])

# iptables-nft-restore keeps the name of every chain a load mentions in a sorted linked list, unless some
# command names no chain: then it reads the whole table once instead. The list is quadratic (a first load
# of 10,000 services took 58 s through the lab, 95 s by hand; 3.4 s with the read); measured here, the read
# costs about what the list does for sqrt(300 x chains in the table) names, so a load naming more starts
# with a read-only `-S`.
WHOLE_TABLE_READ_FACTOR = 300


def table_header(table: str, named: int, chains_in_table: int) -> list:
    """The first lines of an iptables-restore block for `table` that names `named` chains."""
    return [f"*{table}"] + (["-S"] if named ** 2 > WHOLE_TABLE_READ_FACTOR * chains_in_table else [])


# The lab's folder on a node, file by file: named here only, for the controller and the agent alike (each
# relative name is the agent's view from its folder; each function the controller's, by lab name).
PODS_DIR = "pods"  # one <key>.json record and one <key>.log per pod (key: <namespace>_<name>)
BOOT_SCRIPT = "boot/network.sh"  # the node's pod network, run by the boot unit before the agent restores the rest
RESTORE_STAMP = "restored-boot"  # the boot the restore ran for (first line), then what it could not restore
PROXY_STATE = "proxy.json"  # what the agent loaded last (chain digests or the table, the policy table)
DNS_HOSTS = "dns/hosts"  # the cluster DNS records the DNS pods' dnsmasq reads
RULES_REQUEST = "rules/request.json"  # the last whole proxy-sync request (restored after a boot)
RULES_JOURNAL = "rules/journal"  # the change requests since, one JSON line each
MODULES_LOADED = "modules.loaded"  # the kernel modules the lab loaded (lab destroy unloads them)
SYSCTL_SAVED = "sysctl.orig"  # the sysctl values before the lab set them (lab destroy puts them back)
DIRS_CREATED = "dirs.created"  # the CNI folders the lab created (lab destroy removes only those)
ANNOUNCED = "announced"  # the LoadBalancer addresses the lab put on the node, one a line (also while adding them)
HEALTH_SERVER = "healthz.pid"  # the PID of the node's health check server, then its ports (agent/healthz.py)
GATEWAYS_DIR = "gateways"  # per Gateway (<namespace>_<name>/): nginx.conf, and the PID file and temporary files
TLS_FOLDER = "tls"  # in a Gateway's folder: the PEM files (certificate and key) its nginx.conf names

# A gateway pod (role "gateway") runs the lab's proxy, nginx, for the Gateway its pod dict names (`gateway`:
# namespace/name); the Deployment the lab makes for a Gateway uses this image, and labels its pods with the name.
GATEWAY_IMAGE = "cluster-lab/gateway-proxy"
GATEWAY_NAME_LABEL = "gateway.networking.k8s.io/gateway-name"


def gateway_dir(key: str) -> str:
    """The folder (relative to the lab's) of Gateway `key` (namespace/name) on a node."""
    return f"{GATEWAYS_DIR}/{key.replace('/', '_')}"


def lab_file(lab: str, rel: str) -> str:
    """The file `rel` (relative to the lab's folder) of lab `lab` on a node."""
    return f"{node_lib(lab)}/{rel}"


def pod_record_path(lab: str, key: str) -> str:
    """The agent's record of pod `key` (netns, IP, server PID, ...) on its node."""
    return lab_file(lab, f"{PODS_DIR}/{key}.json")


def pod_log_path(lab: str, key: str) -> str:
    """The log of pod `key`'s server on its node."""
    return lab_file(lab, f"{PODS_DIR}/{key}.log")


def dns_hosts_path(lab: str) -> str:
    return lab_file(lab, DNS_HOSTS)


def rules_request_path(lab: str) -> str:
    return lab_file(lab, RULES_REQUEST)


def rules_journal(lab: str) -> str:
    return lab_file(lab, RULES_JOURNAL)


def modules_loaded_path(lab: str) -> str:
    return lab_file(lab, MODULES_LOADED)


def sysctl_saved_path(lab: str) -> str:
    return lab_file(lab, SYSCTL_SAVED)


def pod_node_key(namespace: str, name: str) -> str:
    """A pod's name in its node's files and in the agent's answers (no '/': it names files). Namespaces and
    pod names hold no '_', so it stands for one pod only."""
    return f"{namespace}_{name}"


POD_NETNS_READABLE = 40  # characters of "<namespace>-<name>" kept in a pod's network namespace name
POD_NETNS_DIGEST = 10  # hex digits of the digest of "<namespace>/<name>" that end it


def pod_netns_name(lab: str, namespace: str, name: str) -> str:
    """The name of a pod's network namespace on its node: readable, and unique through a digest of
    namespace/name (pod b-c in namespace a is not pod c in namespace a-b); at most 63 characters, whatever
    the lengths Kubernetes allows (253 for a pod name)."""
    digest = hashlib.sha256(f"{namespace}/{name}".encode()).hexdigest()[:POD_NETNS_DIGEST]
    return f"{lab}-{f'{namespace}-{name}'[:POD_NETNS_READABLE]}-{digest}"


def is_pod_netns(lab: str, netns: str) -> bool:
    """Whether `netns` is named as lab `lab` names a pod's network namespace (a lesson's are not: `<lab>-l07-c1`)."""
    return re.fullmatch(rf"{re.escape(lab)}-.+-[0-9a-f]{{{POD_NETNS_DIGEST}}}", netns) is not None


# --- The verbs: a request and an answer type each, and the protocol both sides speak ---------------------
#
# The controller runs `python3 agent.pyz --protocol N VERB` with the request as JSON on stdin; the agent
# answers with one JSON object on stdout (changed/failed/msg, as Ansible's modules do, plus the verb's
# payload) and exits 0, or 1 when it failed. An agent that does not speak protocol N refuses the request
# before reading it (exit REFUSED, one JSON answer saying so): it never misreads a request. `lab deploy`
# replaces an agent.pyz whose digest differs from the controller's, so a node never keeps an older agent.
# Raise PROTOCOL whenever a request or an answer changes shape.
PROTOCOL = 10
REFUSED = 3  # the agent's exit code for a request in a protocol it does not speak


class ContractError(ValueError):
    """A request or an answer that is not what the contract says."""


M = TypeVar("M", bound="Message")


@dataclass
class Message:
    """A request or an answer: plain JSON fields, no others (an unknown field is an error, never ignored)."""

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}  # not asdict: no deep copy of rule sets

    def to_json(self) -> str:
        return json.dumps(self.to_dict())  # dumps uses the C encoder (3x faster than dump at 10,000 services)

    @classmethod
    def from_dict(cls: "type[M]", data: Any) -> "M":
        if not isinstance(data, dict):
            raise ContractError(f"{cls.__name__}: expected a JSON object, got {type(data).__name__}")
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ContractError(f"{cls.__name__}: unknown field(s) {', '.join(unknown)}")
        missing = sorted(f.name for f in fields(cls) if f.name not in data
                         and f.default is MISSING and f.default_factory is MISSING)
        if missing:
            raise ContractError(f"{cls.__name__}: missing field(s) {', '.join(missing)}")
        return cls(**data)

    @classmethod
    def from_json(cls: "type[M]", text: str) -> "M":
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ContractError(f"{cls.__name__}: not JSON ({exc})") from None
        return cls.from_dict(data)


@dataclass
class Answer(Message):
    """What every verb answers: whether it changed the node, whether it failed and why, then its payload."""

    changed: bool = False
    failed: bool = False
    msg: str = ""


@dataclass
class PodsApplyAnswer(Answer):
    deleted: dict = field(default_factory=dict)  # pod key -> {"deleted", "errors"} or {"error", "code"}
    added: dict = field(default_factory=dict)  # pod key -> {"ip", "pid"} or {"error", "code"}


@dataclass
class PodsAnswer(Answer):
    pods: dict = field(default_factory=dict)  # pod key -> what happened to it


@dataclass
class FlushAnswer(Answer):
    pods: int = 0  # how many pods' caches were flushed


@dataclass
class UsageAnswer(Answer):
    pods: dict = field(default_factory=dict)  # pod key -> {cpu_m, memory (bytes)}
    node: dict = field(default_factory=dict)  # cpu_m, memory, cpus, memory_total, shared_kernel


@dataclass
class ProbeAnswer(Answer):
    results: list = field(default_factory=list)  # one {"ok", "reply" | "error"} per target, in order


@dataclass
class ProbeFromAnswer(Answer):
    results: list = field(default_factory=list)  # per source, in order: its targets' results, as ProbeAnswer's


@dataclass
class SyncAnswer(Answer):
    written: list = field(default_factory=list)  # "table/chain", "nft/NAME"
    deleted: list = field(default_factory=list)
    repaired: list = field(default_factory=list)  # what a forced reload found changed by hand
    dns: bool = False  # the DNS hosts file changed (dnsmasq told to re-read it)
    generation: Optional[str] = None  # the iptables rule set the node holds now
    resync: bool = False  # a change request built on what this node does not hold: send everything
    dry_run: bool = False
    announced: list = field(default_factory=list)  # LoadBalancer addresses this node took (gratuitous ARP sent)
    withdrawn: list = field(default_factory=list)  # and those it gave up
    proxies: list = field(default_factory=list)  # Gateways whose proxy config changed here (reloaded where served)
    proxy_errors: list = field(default_factory=list)  # configs nginx -t refused (the old one keeps serving)


@dataclass
class RestoreAnswer(Answer):
    boot: str = ""
    restored: list = field(default_factory=list)
    errors: list = field(default_factory=list)


A = TypeVar("A", bound=Answer, covariant=True)  # a request for a SyncAnswer is a request for an Answer


@dataclass
class Request(Message, Generic[A]):
    VERB: ClassVar[str] = ""
    ANSWER: ClassVar[type[Answer]] = Answer

    def answer(self, text: str) -> A:
        """The agent's answer to this request, read as its type (a ContractError when it is not)."""
        return self.ANSWER.from_json(text)  # type: ignore[return-value]  # ANSWER is A in every subclass


@dataclass
class PodsApply(Request[PodsApplyAnswer]):
    """Delete, then add pods (each a dict: key, name, netns, id, tcp, udp, port_mappings, role, image,
    image_root, env (NAME=VALUE strings for what `enter` runs in the pod), ...)."""

    VERB: ClassVar[str] = "pods-apply"
    ANSWER: ClassVar[type[Answer]] = PodsApplyAnswer
    conflist: str = ""
    cni_path: str = CNI_PATH
    delete: list = field(default_factory=list)
    add: list = field(default_factory=list)


@dataclass
class PodsEnsure(Request[PodsAnswer]):
    """Restart the servers of pods whose server is not running. With `keep` (the lab's pods on the node, each a
    dict: key, netns, id), first remove what the node holds of any other pod of lab `lab`: its record, its
    network namespace, its lease on the pod network `conflist`."""

    VERB: ClassVar[str] = "pods-ensure"
    ANSWER: ClassVar[type[Answer]] = PodsAnswer
    lab: str = ""
    keep: Optional[list] = None
    conflist: str = ""
    cni_path: str = CNI_PATH


@dataclass
class PodsStatus(Request[PodsAnswer]):
    """Say how each pod is (running, stopped, gone), changing nothing: what `lab get pods` shows."""

    VERB: ClassVar[str] = "pods-status"
    ANSWER: ClassVar[type[Answer]] = PodsAnswer


@dataclass
class Usage(Request[UsageAnswer]):
    """How much CPU (millicores, over `seconds`) and memory the node's pods and the node use (`lab top`)."""

    VERB: ClassVar[str] = "usage"
    ANSWER: ClassVar[type[Answer]] = UsageAnswer
    seconds: float = 1.0


@dataclass
class PodsReattach(Request[PodsAnswer]):
    """Re-attach the pods attached with another config than `conflist`."""

    VERB: ClassVar[str] = "pods-reattach"
    ANSWER: ClassVar[type[Answer]] = PodsAnswer
    conflist: str = ""
    cni_path: str = CNI_PATH


@dataclass
class PodsPurge(Request[PodsAnswer]):
    """Remove every pod of lab `lab` on the node (`lab destroy`)."""

    VERB: ClassVar[str] = "pods-purge"
    ANSWER: ClassVar[type[Answer]] = PodsAnswer
    lab: str = ""
    conflist: str = ""
    cni_path: str = CNI_PATH


@dataclass
class FlushCaches(Request[FlushAnswer]):
    """Forget learned neighbours and path MTUs in every pod and on the bridge."""

    VERB: ClassVar[str] = "flush-caches"
    ANSWER: ClassVar[type[Answer]] = FlushAnswer


@dataclass
class Probe(Request[ProbeAnswer]):
    """Probe `targets` ({"proto", "host", "port", "path" | "size"}) from where the agent runs."""

    VERB: ClassVar[str] = "probe"
    ANSWER: ClassVar[type[Answer]] = ProbeAnswer
    targets: list = field(default_factory=list)
    timeout: float = 2.0


@dataclass
class ProbeFrom(Request[ProbeFromAnswer]):
    """Probe from several places of the node in one call: `sources` [{"netns": a pod's network namespace, or
    "" for the node's own, "targets": [...]}], each as Probe probes."""

    VERB: ClassVar[str] = "probe-from"
    ANSWER: ClassVar[type[Answer]] = ProbeFromAnswer
    sources: list = field(default_factory=list)
    timeout: float = 2.0


@dataclass
class ProxySync(Request[SyncAnswer]):
    """The node's service rules, NetworkPolicy table, stale UDP conntrack entries and DNS records. A whole
    request has no `base`; a change request (iptables) names the generation it builds on, the chains that
    changed (`tables`) and those that went (`removed`)."""

    VERB: ClassVar[str] = "proxy-sync"
    ANSWER: ClassVar[type[Answer]] = SyncAnswer
    backend: str = "iptables"
    jumps: list = field(default_factory=list)  # [table, built-in chain, "-A BUILTIN ... -j CHAIN"]
    tables: dict = field(default_factory=dict)  # iptables: table -> chain -> rules
    nft: Optional[dict] = None  # nftables: {"sets", "chains"}
    policy: Optional[dict] = None  # the lab-policy table (None: no NetworkPolicy, no table)
    generation: Optional[str] = None
    base: Optional[str] = None
    removed: dict = field(default_factory=dict)
    force: bool = False  # `lab fix`: reload everything, say what was repaired
    verify: bool = False  # read the rules back instead of trusting what was loaded last
    stale_udp: list = field(default_factory=list)  # endpoint IPs whose UDP conntrack entries go
    dns_hosts: Optional[str] = None  # the DNS hosts file (None: leave it)
    dry_run: bool = False  # only say what would be written and deleted
    # LoadBalancer address -> the address of the node announcing it: the node that has that address holds the
    # LoadBalancer address (its kernel answers ARP for it); any other the lab put on the node, or that lies in
    # one of `lb_ranges` ([first, last] of the lab's pools), goes. Kept for the boot-time restore, as a speaker
    # that starts again announces what it last owned; if another node took it meanwhile, the next sync says.
    announce: dict = field(default_factory=dict)
    lb_ranges: list = field(default_factory=list)
    # healthCheckNodePort -> {"namespace", "name", "local": {node address: its ready endpoints}} of the Local
    # LoadBalancers: each node answers on the port whether it has an endpoint (agent/healthz.py)
    health_checks: dict = field(default_factory=dict)
    # Gateway key -> the nginx.conf of its proxy (None: leave them); a Gateway not named has no proxy any more
    gateways: Optional[dict] = None
    # Gateway key -> {path in its folder: content}: the files its nginx.conf names (tls/<digest>.pem), written
    # before the config is checked; others in its tls/ go
    gateway_files: dict = field(default_factory=dict)


# what a node keeps of a proxy-sync request to load the rules again after a boot
STORED_FIELDS = ("backend", "jumps", "tables", "nft", "policy", "generation", "announce", "lb_ranges",
                 "health_checks")

VERBS = {cls.VERB: cls for cls in (PodsApply, PodsEnsure, PodsStatus, PodsReattach, PodsPurge, FlushCaches, Probe,
                                   ProbeFrom, ProxySync, Usage)}


def refusal(protocol) -> Answer:
    """The answer of an agent asked in a protocol it does not speak."""
    return Answer(failed=True, msg=f"this node's agent speaks protocol {PROTOCOL}, the request protocol {protocol}: "
                                   "`lab deploy` installs the lab's agent")


def write_durably(path: str, data: "str | bytes", mode: int = 0o644) -> None:
    """The lab's one durable write, the controller's and the agent's: `data` to a temporary file, fsynced,
    renamed over `path`, then the folder fsynced, so that readers (and a machine after a power cut) find the old
    file or the new one, never half of one or an empty one (seen on ext4 without the fsyncs)."""
    folder = os.path.dirname(path) or "."
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data.encode() if isinstance(data, str) else data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    handle_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(handle_fd)
    finally:
        os.close(handle_fd)


def text_of(path: str) -> Optional[str]:
    """The file's text, or None where there is no such file."""
    try:
        with open(path) as handle:
            return handle.read()
    except OSError:
        return None


def write_if_changed(path: str, text: str, mode: int = 0o644) -> bool:
    """`text` to `path` durably, unless the file has it already; whether it wrote."""
    if text_of(path) == text:
        return False
    write_durably(path, text, mode)
    return True

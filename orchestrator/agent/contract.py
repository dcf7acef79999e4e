"""What the controller and the node agent must agree on: where the CNI plugins are, the agent's file name,
the lab's nftables table, and the digests and rule text both sides compute. Standard library only; the one
agent module the controller imports."""

from __future__ import annotations

import hashlib
import json

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
DNS_HOSTS = "dns/hosts"  # the cluster DNS records the DNS pods' dnsmasq reads
RULES_REQUEST = "rules/request.json"  # the last whole proxy-sync request (restored after a boot)
RULES_JOURNAL = "rules/journal"  # the change requests since, one JSON line each
MODULES_LOADED = "modules.loaded"  # the kernel modules the lab loaded (lab destroy unloads them)
SYSCTL_SAVED = "sysctl.orig"  # the sysctl values before the lab set them (lab destroy puts them back)
DIRS_CREATED = "dirs.created"  # the CNI folders the lab created (lab destroy removes only those)


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

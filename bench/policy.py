"""NetworkPolicy at scale: 1,000 pods x 200 policies.

- render: the lab-policy table for those objects (pure Python, layers/policy/enforcement.py);
- full load: that table into a kernel with one `nft -f` (in a network namespace this benchmark makes);
- one pod added that 10 policies select: the element changes the node agent would load;
- connect latency from one pod to another across nodes, without policies and with the 200 policies and
  1,000 pods' addresses loaded (an emulated 2-node lab), TCP connect+HTTP, median of 300.
Aims: full load under 1 s, pod added under 0.2 s, latency flat.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import lab, record, use_private_state  # noqa: E402

from orchestrator.agent.nftables import nft_element_changes, nft_table_text  # noqa: E402
from orchestrator.core.manifests import load_text  # noqa: E402
from orchestrator.layers.policy.enforcement import TABLE, render_policy  # noqa: E402
from orchestrator.layers.policy.plan import apply_policies  # noqa: E402

PODS, POLICIES, NAMESPACES = 1000, 200, 20


def objects(pods: int = PODS) -> dict:
    """Pods spread over 20 namespaces, labelled app=a<i % 50>, tier=t<i % 7>, group=g<namespace>; 200 policies
    of 4 rule shapes, 10 per namespace, each selecting its namespace's group: a pod is selected by 10."""
    found = {"pods": {}, "namespaces": {f"n{k}": {"name": f"n{k}", "labels": {"team": f"t{k % 4}"}, "created": "t"}
                                        for k in range(NAMESPACES)}}
    for i in range(pods):
        ns = f"n{i % NAMESPACES}"
        found["pods"][f"{ns}/p{i}"] = {"namespace": ns, "name": f"p{i}",
                                       "labels": {"app": f"a{i % 50}", "tier": f"t{i % 7}", "group": ns},
                                       "ip": f"10.244.{i // 250}.{i % 250 + 2}", "node": f"node{i % 2 + 1}",
                                       "ports": [{"name": "http", "container_port": 80, "protocol": "TCP"}]}
    docs = []
    for j in range(POLICIES):
        ns = f"n{j % NAMESPACES}"
        rule = [
            {"from": [{"podSelector": {"matchLabels": {"app": f"a{(j + 1) % 50}"}}}], "ports": [{"port": 80}]},
            {"from": [{"namespaceSelector": {"matchLabels": {"team": f"t{j % 4}"}},
                       "podSelector": {"matchLabels": {"tier": f"t{j % 7}"}}}], "ports": [{"port": "http"}]},
            {"from": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": [f"10.244.{j % 4}.0/24"]}}]},
            {"from": [{"namespaceSelector": {"matchExpressions": [{"key": "team", "operator": "In",
                                                                   "values": ["t1", "t2"]}]}}]},
        ][j % 4]
        docs.append({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                     "metadata": {"name": f"np{j}", "namespace": ns},
                     "spec": {"podSelector": {"matchLabels": {"group": ns}}, "ingress": [rule]}})
    apply_policies(load_text("\n---\n".join(json.dumps(d) for d in docs), "bench"), found, "t")
    return found


def timed(action) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def nft_in(namespace: str, text: str) -> float:
    def load():
        proc = subprocess.run(["ip", "netns", "exec", namespace, "nft", "-f", "-"], input=text.encode(),
                              capture_output=True)
        if proc.returncode:
            raise SystemExit(f"nft -f failed: {proc.stderr.decode()[:500]}")
    return timed(load)


def kernel_figures() -> list[str]:
    data = objects()
    renders = [timed(lambda: render_policy(data)) for _ in range(3)]
    table = render_policy(data)
    elements = sum(len(e) for _, e in table["sets"].values())
    namespace = f"benchpol-{uuid.uuid4().hex[:6]}"  # the benchmark's own namespace: no rule reaches the host's
    subprocess.run(["ip", "netns", "add", namespace], check=True)
    try:
        text = nft_table_text(table, TABLE)
        loads = [nft_in(namespace, text) for _ in range(3)]
        # one new pod that 10 policies select (those of its namespace), and a peer of others
        data["pods"]["n7/new"] = {"namespace": "n7", "name": "new",
                                  "labels": {"app": "a7", "tier": "t0", "group": "n7"},
                                  "ip": "10.244.9.9", "node": "node1", "ports": []}
        grown = render_policy(data)
        changed = sum(1 for name in grown["sets"] if grown["sets"][name][1] != table["sets"][name][1])
        delta = nft_element_changes(grown, table, TABLE)
        added = nft_in(namespace, delta)
    finally:
        subprocess.run(["ip", "netns", "del", namespace], check=True)
    return [f"- {PODS} pods, {POLICIES} policies: {len(table['sets'])} sets, {elements} elements, "
            f"{sum(len(c) for c in table['chains'].values())} rules",
            f"- render: {statistics.median(renders):.2f} s (median of 3)",
            f"- full load with one `nft -f`: {statistics.median(loads):.2f} s (median of 3; aim under 1 s)",
            f"- one pod added: {changed} sets change, {len(delta.splitlines())} element commands, loaded in "
            f"{added * 1000:.0f} ms (aim under 200 ms)"]


PROBE = """
import socket, statistics, sys, time
host, n = sys.argv[1], int(sys.argv[2])
times = []
for _ in range(n):
    start = time.perf_counter()
    with socket.create_connection((host, 80), timeout=2) as s:
        s.sendall(b"GET /hostname HTTP/1.0\\r\\n\\r\\n")
        while s.recv(4096):
            pass
    times.append(time.perf_counter() - start)
print(statistics.median(times) * 1e6)
"""


def latency_figures() -> list[str]:
    state = use_private_state()
    name = f"bp{uuid.uuid4().hex[:5]}"
    lab("up", "--name", name, "--nodes", "2")
    inventory = str(state / name / "inventory.yaml")
    try:
        lab("deploy", "-i", inventory)
        pods = ("apiVersion: v1\nkind: Namespace\nmetadata: {name: n0, labels: {team: t0}}\n---\n" +
                "---\n".join(f"apiVersion: v1\nkind: Pod\nmetadata: {{name: {p}, namespace: n0, "
                             f"labels: {{app: {p}}}}}\nspec: {{nodeName: {node}, "
                             "containers: [{name: c, image: x, ports: [{containerPort: 80}]}]}\n"
                             for p, node in (("client", "node1"), ("server", "node2"))))
        subprocess.run([sys.executable, "-m", "orchestrator.cli", "apply", "-i", inventory, "-f", "-"], input=pods,
                       text=True, check=True, capture_output=True)
        listed = json.loads(subprocess.run([sys.executable, "-m", "orchestrator.cli", "get", "pods", "-n", "n0", "-o",
                                            "json", "-i", inventory],
                                           capture_output=True, text=True, check=True).stdout)
        server = next(p["status"]["podIP"] for p in listed["items"] if p["metadata"]["name"] == "server")

        def median_us() -> float:
            out = subprocess.run([sys.executable, "-m", "orchestrator.cli", "exec", "client", "-n", "n0",
                                  "-i", inventory, "--", "python3", "-c", PROBE, server, "300"],
                                 capture_output=True, text=True, check=True).stdout
            return float(out.strip())

        without = median_us()
        # the 200 policies, plus one that lets the client in, with 1,000 more pods' addresses in their sets
        policy = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                  "metadata": {"name": "allow-client", "namespace": "n0"},
                  "spec": {"podSelector": {"matchLabels": {"app": "server"}},
                           "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "client"}}}]}]}}
        subprocess.run([sys.executable, "-m", "orchestrator.cli", "apply", "-i", inventory, "-f", "-"],
                       input=json.dumps(policy), text=True, check=True, capture_output=True)
        big = objects()
        table = render_policy({**big, "pods": {**big["pods"], **{k: v for k, v in listed_objects(state, name).items()}},
                               "policies": {**big["policies"], **json.loads((state / name / "objects.json")
                                                                           .read_text())["policies"]}})
        for node in ("node1", "node2"):
            subprocess.run([sys.executable, "-m", "orchestrator.cli", "exec", node, "-i", inventory, "--",
                            "nft", "-f", "-"], input=nft_table_text(table, TABLE), text=True, check=True,
                           capture_output=True)
        with_policies = median_us()
    finally:
        lab("down", "--name", name)
    return [f"- connect + HTTP from a pod to a pod on the other node, median of 300: {without:.0f} us without "
            f"policies, {with_policies:.0f} us with {POLICIES + 1} policies and {PODS} more pods in their sets "
            f"(ratio {with_policies / without:.2f}; aim: flat)"]


def listed_objects(state: Path, name: str) -> dict:
    return json.loads((state / name / "objects.json").read_text())["pods"]


if __name__ == "__main__":
    record("NetworkPolicy: 1,000 pods x 200 policies (bench/policy.py)", kernel_figures() + latency_figures())

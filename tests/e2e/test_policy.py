"""NetworkPolicy end to end on an emulated lab: the upstream netpol cluster (namespaces x, y, z with pods a, b, c
on 2 nodes), policies applied, changed and deleted, and `lab verify` probing the whole truth table against the
lab's own evaluator, with both service backends. The kernel decides here, not the evaluator: a wrong cell fails."""

import json
import re
from pathlib import Path

import pytest

from orchestrator.layers.pods.namespaces import BUILT_IN_NAMESPACES
from .conftest import running_lab
from .labtools import copy_inventory, lab_cli

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples" / "netpol"

AND_VERSUS_OR = """
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: or, namespace: y}
spec:
  podSelector: {matchLabels: {pod: a}}
  ingress:
    - from: [{namespaceSelector: {matchLabels: {ns: z}}}, {podSelector: {matchLabels: {pod: b}}}]
"""
EGRESS_TO_Z_AND_DNS = """
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: egress, namespace: z}
spec:
  podSelector: {matchLabels: {pod: c}}
  policyTypes: [Egress]
  egress:
    - to: [{ipBlock: {cidr: 10.244.0.0/16, except: [10.244.0.0/24]}}]
      ports: [{port: 80, endPort: 81, protocol: TCP}]
    - to: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: kube-system}}}]
      ports: [{port: 53, protocol: UDP}]
"""


@pytest.fixture(scope="module")
def netpol(state_dir, tmp_path_factory):
    """A 2-node lab with the pod network, the cluster DNS and the netpol pods."""
    with running_lab(state_dir, "np", "--nodes", "2") as lab:
        lab_cli("deploy", "-i", lab.inventory_path, check=True)
        lab_cli("apply", "-i", lab.inventory_path, "-f", str(EXAMPLES / "pods.yaml"), check=True)
        lab.workdir = tmp_path_factory.mktemp("netpol")
        yield lab


def apply(lab, text: str, verb: str = "apply"):
    return lab_cli(verb, "-i", lab.inventory_path, "-f", "-", input=text, check=True)


def verify(lab, inventory: str = "") -> dict:
    """`lab verify -o json` with its exit code; every check must pass."""
    proc = lab_cli("verify", "-i", inventory or lab.inventory_path, "-o", "json", timeout=300)
    report = json.loads(proc.stdout)
    failed = [f"{c['label']}: {c['reason']} ({c['layer']})" for c in report["checks"] if not c["ok"]]
    assert (proc.returncode, failed) == (0, [])
    return report


def blocked(report: dict) -> set:
    return {c["label"][:-len(" blocked")] for c in report["checks"] if c["label"].endswith(" blocked")}


def policy_tables(lab) -> list:
    return [lab.transport.run(n.name, ["nft", "list", "tables"]).stdout.count("lab-policy")
            for n in lab.inventory.nodes]


def test_without_policies_everything_reaches_everything(netpol):
    assert blocked(verify(netpol)) == set()
    assert policy_tables(netpol) == [0, 0]


def test_default_deny_then_an_allow_from_one_pod_of_another_namespace(netpol):
    for name in ("deny-ingress-x.yaml", "allow-y-to-xa.yaml"):
        lab_cli("apply", "-i", netpol.inventory_path, "-f", str(EXAMPLES / name), check=True)
    report = verify(netpol)
    cut = blocked(report)
    assert "y/b -> x/a TCP" not in cut and "y/b -> x/a UDP" in cut  # the named port is TCP 80
    assert {"y/a -> x/a TCP", "z/b -> x/b TCP", "x/c -> x/a UDP"} <= cut
    assert not any(label.split(" -> ")[1].startswith(("y/", "z/")) for label in cut)


def test_lab_trace_follows_a_real_packet_to_the_rule_that_decided(netpol):
    denied = lab_cli("trace", "-i", netpol.inventory_path, "y/a", "x/a", check=True).stdout
    assert ("NetworkPolicy says: blocked: ingress of x/a is isolated by x/allow-yb-to-a, x/default-deny-ingress"
            in denied)
    assert "by lab-policy ingress (default deny ingress)" in denied and "result: no answer" in denied
    pods = {f"{p['metadata']['namespace']}/{p['metadata']['name']}": p for p in json.loads(lab_cli(
        "get", "pods", "-A", "-o", "json", "-i", netpol.inventory_path, check=True).stdout)["items"]}
    links = {node.name: netpol.transport.run(node.name, ["ip", "-o", "link", "show", "master", "cni0"]).stdout
             for node in netpol.inventory.nodes}
    for key, direction in (("y/a", "from"), ("x/a", "to")):
        line = next(line for line in denied.splitlines() if line.startswith(direction) and key in line)
        veth = re.search(r"(veth\w+)", line).group(1)  # the node's end of the pod's eth0, on its bridge
        assert f"{veth}@" in links[pods[key]["spec"]["nodeName"]] and "cni0" in line, line
    allowed = lab_cli("trace", "-i", netpol.inventory_path, "y/b", "x/a:80", check=True).stdout
    assert "lab-policy ingress" in allowed and 'return comment "x/allow-yb-to-a ingress rule 1"' in allowed
    assert "result: answered: a; passed every chain" in allowed
    apply(netpol, "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: y}\n"
                  "spec: {selector: {pod: c}, ports: [{port: 8080, targetPort: 80}]}\n")
    through = lab_cli("trace", "-i", netpol.inventory_path, "z/a", "svc/y/web:8080", check=True).stdout
    ip = next(p["status"]["podIP"] for p in json.loads(lab_cli("get", "pods", "-n", "y", "-o", "json", "-i",
                                                                netpol.inventory_path, check=True).stdout)["items"]
              if p["metadata"]["name"] == "c")
    assert f"dnat to {ip}:80" in through and "result: answered: c" in through
    assert all("lab-trace" not in t.stdout for t in [netpol.transport.run(n.name, ["nft", "list", "tables"])
                                                      for n in netpol.inventory.nodes])
    apply(netpol, "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: y}\nspec: {ports: [{port: 80}]}\n",
          verb="delete")


def test_lab_trace_explain_puts_the_rendered_rules_path_beside_the_kernels(netpol):
    """The paper trace agrees with the kernel's: the pod a Service DNATs to, and the drop of a denied pair."""
    apply(netpol, "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: y}\n"
                  "spec: {selector: {pod: c}, ports: [{port: 8080, targetPort: 80}]}\n")
    try:
        ip = next(p["status"]["podIP"] for p in json.loads(lab_cli("get", "pods", "-n", "y", "-o", "json", "-i",
                                                                    netpol.inventory_path, check=True).stdout)["items"]
                  if p["metadata"]["name"] == "c")
        through = lab_cli("trace", "-i", netpol.inventory_path, "z/a", "svc/y/web:8080", "--explain",
                          check=True).stdout
        kernel, _, paper = through.partition("on paper (the rules the lab renders, ")
        assert f"dnat to {ip}:80" in kernel and "result: answered: c" in kernel, through
        assert f"  100%: DNAT to {ip}:80" in paper.splitlines() and "dropped" not in paper, through
    finally:
        apply(netpol, "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: y}\n"
                      "spec: {ports: [{port: 80}]}\n", verb="delete")
    denied = lab_cli("trace", "-i", netpol.inventory_path, "y/a", "x/a", "--explain", check=True).stdout
    kernel, _, paper = denied.partition("on paper (the rules the lab renders, ")
    x_node = next(line for line in kernel.splitlines() if line.startswith("to cni0 on ")).split()[3]
    assert f"DROPPED on {x_node} by lab-policy ingress (default deny ingress)" in kernel, denied
    assert f"NetworkPolicy: dropped on {x_node} by lab-policy forward (default deny ingress)" in paper, denied
    assert "on paper" not in lab_cli("trace", "-i", netpol.inventory_path, "y/a", "x/a", check=True).stdout


def test_a_new_pod_is_in_the_sets_that_isolate_it_when_apply_returns(netpol):
    apply(netpol, """
apiVersion: v1
kind: Pod
metadata: {name: d, namespace: x, labels: {pod: d}}
spec: {nodeName: node2, containers: [{name: c, image: nginx, ports: [{containerPort: 80}]}]}
""")
    ip = next(p["status"]["podIP"] for p in json.loads(lab_cli("get", "pods", "-n", "x", "-o", "json", "-i",
                                                                netpol.inventory_path, check=True).stdout)["items"]
              if p["metadata"]["name"] == "d")
    held = netpol.transport.run("node2", ["nft", "list", "set", "ip", "lab-policy", "ingress-isolated"]).stdout
    assert ip in held
    apply(netpol, "apiVersion: v1\nkind: Pod\nmetadata: {name: d, namespace: x}\nspec: {containers: [{name: c}]}\n",
          verb="delete")


def test_and_versus_or_egress_with_dns_and_ip_blocks_add_up(netpol):
    apply(netpol, AND_VERSUS_OR)
    apply(netpol, EGRESS_TO_Z_AND_DNS)
    cut = blocked(verify(netpol))
    # a podSelector alone is the policy's own namespace: y/b may, x/b may not; all of z may
    assert "y/b -> y/a TCP" not in cut and "z/a -> y/a TCP" not in cut and {"x/b -> y/a TCP", "y/c -> y/a TCP"} <= cut
    # z/c: TCP only, not to node1's subnet (10.244.0.0/24: the except); every UDP but DNS is cut
    assert "z/c -> y/b UDP" in cut


def test_a_policy_changed_while_the_lab_runs_takes_effect_in_place(netpol):
    apply(netpol, AND_VERSUS_OR.replace("pod: b", "pod: c"))
    cut = blocked(verify(netpol))
    assert "y/b -> y/a TCP" in cut and "y/c -> y/a TCP" not in cut


def test_the_nftables_service_backend_enforces_the_same(netpol):
    nft = copy_inventory(netpol, netpol.workdir, cluster={"proxy_mode": "nftables"})
    lab_cli("deploy", "-i", str(nft), check=True)
    try:
        cut = blocked(verify(netpol, str(nft)))
        assert "y/a -> x/a TCP" in cut and "y/b -> x/a TCP" not in cut
    finally:
        lab_cli("deploy", "-i", netpol.inventory_path, check=True)


def test_a_policy_in_a_missing_namespace_is_refused_and_changes_nothing(netpol):
    before = (netpol.state_dir / netpol.name / "objects.json").read_text()
    proc = lab_cli("apply", "-i", netpol.inventory_path, "-f", "-",
                   input=AND_VERSUS_OR.replace("namespace: y", "namespace: nowhere"))
    assert proc.returncode != 0 and proc.stderr.count("\n") == 1
    assert 'metadata.namespace: Error from server (NotFound): namespaces "nowhere" not found' in proc.stderr
    assert (netpol.state_dir / netpol.name / "objects.json").read_text() == before


def test_removing_every_policy_returns_to_allow_all_and_leaves_no_table(netpol):
    for text in (AND_VERSUS_OR, EGRESS_TO_Z_AND_DNS):
        apply(netpol, text, verb="delete")
    for name in ("deny-ingress-x.yaml", "allow-y-to-xa.yaml"):
        lab_cli("delete", "-i", netpol.inventory_path, "-f", str(EXAMPLES / name), check=True)
    assert policy_tables(netpol) == [0, 0]
    assert blocked(verify(netpol)) == set()


def test_destroy_removes_the_table_and_forgets_policies_and_namespaces(netpol):
    lab_cli("apply", "-i", netpol.inventory_path, "-f", str(EXAMPLES / "deny-ingress-x.yaml"), check=True)
    assert policy_tables(netpol) == [1, 1]
    lab_cli("destroy", "-i", netpol.inventory_path, check=True)
    assert policy_tables(netpol) == [0, 0]
    for kind in ("netpol", "pods"):
        assert not lab_cli("get", kind, "-A", "-i", netpol.inventory_path, check=True).stdout.strip()
    names = [line.split()[0] for line in lab_cli("get", "ns", "-i", netpol.inventory_path,
                                                  check=True).stdout.splitlines()[1:]]
    assert sorted(names) == sorted(BUILT_IN_NAMESPACES)  # x, y and z are forgotten

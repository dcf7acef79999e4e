"""kubectl habits on the lab: get with short names, lists of kinds, all, label and field selectors and every
output; describe of each kind; exec into a pod by its name; a pod's log. On an emulated 2-node lab."""

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from .conftest import running_lab
from .labtools import lab_cli, wait_for

REPO = Path(__file__).resolve().parents[2]
PODS = """
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {team: shop}}
---
apiVersion: v1
kind: Pod
metadata: {name: front, namespace: shop, labels: {app: front, tier: web}}
spec: {nodeName: node1, containers: [{name: c, image: nginx, ports: [{name: http, containerPort: 80}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: back, namespace: shop, labels: {app: back, tier: api}}
spec: {nodeName: node2, containers: [{name: c, image: nginx, ports: [{containerPort: 80}]}]}
"""


@pytest.fixture(scope="module")
def kube(state_dir):
    with running_lab(state_dir, "k", "--nodes", "2") as lab:
        lab_cli("deploy", "-i", lab.inventory_path, check=True)
        lab_cli("apply", "-i", lab.inventory_path, "-f", str(REPO / "examples" / "nginx.yaml"), check=True)
        lab_cli("apply", "-i", lab.inventory_path, "-f", "-", input=PODS, check=True)
        yield lab


def lab(kube, command: str, *args: str, check: bool = True):
    return lab_cli(command, "--inventory", kube.inventory_path, *args, check=check)  # before any `--`


def column(text: str, name: str) -> list[str]:
    lines = text.splitlines()
    at = lines[0].split().index(name)
    return [line.split()[at] for line in lines[1:] if line.strip()]


def test_get_with_short_names_selectors_and_field_selectors(kube):
    assert column(lab(kube, "get", "po", "-n", "shop", "-l", "tier in (web,api),app!=back").stdout, "NAME") == ["front"]
    assert column(lab(kube, "get", "pods", "-A", "--field-selector", "spec.nodeName=node2", "-l", "tier").stdout,
                  "NAME") == ["back"]
    assert column(lab(kube, "get", "ns", "--show-labels").stdout, "NAME")[-1] == "shop"
    assert "team=shop" in lab(kube, "get", "ns", "shop", "--show-labels").stdout


def test_get_several_kinds_and_all(kube):
    out = lab(kube, "get", "deploy,svc").stdout
    assert "deployment.apps/nginx   3/3" in out and "service/nginx" in out
    everything = lab(kube, "get", "all", "-A").stdout
    assert "pod/front" in everything and "service/kube-dns" in everything and "deployment.apps/kube-dns" in everything


def test_every_output_format(kube):
    assert lab(kube, "get", "pods", "-n", "shop", "-o", "name").stdout.split() == ["pod/back", "pod/front"]
    doc = yaml.safe_load(lab(kube, "get", "pod", "front", "-n", "shop", "-o", "yaml").stdout)
    assert (doc["kind"], doc["metadata"]["labels"]["app"]) == ("Pod", "front")
    ips = lab(kube, "get", "pods", "-n", "shop", "-o", "jsonpath={.items[*].status.podIP}").stdout.split()
    listed = json.loads(lab(kube, "get", "pods", "-n", "shop", "-o", "json").stdout)["items"]
    assert ips == [p["status"]["podIP"] for p in listed] and len(ips) == 2


def test_exec_it_without_a_terminal_runs_inside_the_pod_all_the_same(kube):
    front = json.loads(lab(kube, "get", "pod", "front", "-n", "shop", "-o", "json").stdout)["status"]["podIP"]
    proc = lab(kube, "exec", "front", "-n", "shop", "-it", "--", "ip", "-4", "-o", "addr", "show", "eth0")
    assert f"inet {front}/" in proc.stdout


def test_get_watch_prints_a_line_for_a_pod_that_comes(kube):
    import threading
    watcher = subprocess.Popen([sys.executable, "-m", "orchestrator.cli", "get", "pods", "-n", "shop", "-w", "-i",
                                kube.inventory_path], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(watcher.stdout.readline, "")), daemon=True)
    reader.start()
    try:
        assert wait_for(lambda: any(line.startswith("front") for line in lines))  # the table first
        lab(kube, "run", "late", "-n", "shop", "--port", "80")
        assert wait_for(lambda: any(line.startswith("late ") for line in lines))
        late = next(line for line in lines if line.startswith("late "))
        assert late.index(late.split()[2]) == lines[0].index("STATUS")  # under the table's columns
    finally:
        watcher.terminate()
        watcher.wait()
        lab(kube, "delete", "pod", "late", "-n", "shop")


def test_yaml_goes_back_through_apply_unchanged(kube):
    for kind, name in (("pod", "front"), ("svc", "nginx"), ("deploy", "nginx")):
        namespace = "shop" if kind == "pod" else "default"
        text = lab(kube, "get", kind, name, "-n", namespace, "-o", "yaml").stdout
        applied = lab_cli("apply", "-i", kube.inventory_path, "-f", "-", input=text, check=True).stdout
        assert applied.strip().endswith("unchanged"), applied


def test_describe_each_kind(kube):
    pod = lab(kube, "describe", "pod", "front", "-n", "shop").stdout
    assert "Node:              node1/" in pod and "Port:          80/TCP (http)" in pod
    assert "PodCIDR:" in lab(kube, "describe", "node", "node2").stdout
    assert "3 desired | 3 updated | 3 total | 3 available | 0 unavailable" in lab(kube, "describe", "deploy",
                                                                                    "nginx").stdout
    assert "team=shop" in lab(kube, "describe", "ns", "shop").stdout


def test_exec_finds_the_pods_node_and_logs_show_who_connected(kube):
    back = json.loads(lab(kube, "get", "pod", "back", "-n", "shop", "-o", "json").stdout)["status"]["podIP"]
    front = json.loads(lab(kube, "get", "pod", "front", "-n", "shop", "-o", "json").stdout)["status"]["podIP"]
    assert lab(kube, "exec", "front", "-n", "shop", "--", "curl", "-s", f"http://{back}/hostname").stdout == "back\n"
    log = lab(kube, "logs", "back", "-n", "shop").stdout
    assert f" {front}:" in log and "GET /hostname 200" in log


def test_imperative_commands_write_the_yaml_a_student_would(kube):
    printed = yaml.safe_load(lab(kube, "create", "deployment", "api", "--replicas", "2", "--port", "80",
                                 "--dry-run=client", "-o", "yaml").stdout)
    assert printed["kind"] == "Deployment" and printed["spec"]["replicas"] == 2
    assert lab(kube, "get", "deploy", "api", check=False).returncode != 0  # a dry run changes nothing
    assert lab(kube, "create", "deployment", "api", "--replicas", "2", "--port", "80").stdout.strip() == \
        "deployment.apps/api created"
    assert lab(kube, "expose", "deploy", "api", "--port", "8080", "--target-port", "80").stdout.strip() == \
        "service/api exposed"
    assert "app=api" in lab(kube, "get", "svc", "api", "--show-labels").stdout  # the deployment's labels, as kubectl
    assert lab(kube, "scale", "deploy", "api", "--replicas", "3").stdout.strip() == "deployment.apps/api scaled"
    before = set(lab(kube, "get", "pods", "-l", "app=api", "-o", "name").stdout.split())
    assert len(before) == 3
    assert "pod-template-hash=" in lab(kube, "get", "pods", "-l", "app=api", "--show-labels").stdout
    lab(kube, "rollout", "restart", "deploy", "api")
    after = set(lab(kube, "get", "pods", "-l", "app=api", "-o", "name").stdout.split())
    assert len(after) == 3 and not before & after  # new pods, new names
    ips = lab(kube, "get", "pods", "-l", "app=api", "-o", "jsonpath={.items[*].status.podIP}").stdout.split()
    endpoints = lab(kube, "get", "ep", "api").stdout
    assert all(f"{ip}:80" in endpoints for ip in ips)  # the endpoints followed
    client = lab(kube, "run", "client", "--labels", "app=client", "--port", "80").stdout.strip()
    assert client == "pod/client created"
    assert lab(kube, "label", "pod", "client", "tier=x").stdout.strip() == "pod/client labeled"
    refused = lab(kube, "label", "pod", "client", "tier=y", check=False)
    assert refused.returncode == 2 and "--overwrite is false" in refused.stderr
    assert "app=client,tier=x" in lab(kube, "get", "pod", "client", "--show-labels").stdout
    for kind, name in (("pod", "client"), ("deploy", "api"), ("svc", "api")):
        assert lab(kube, "delete", kind, name).stdout.strip().endswith("deleted")
    assert lab(kube, "get", "pods", "-l", "app in (api,client)", "-o", "name").stdout == ""


OTHER = """
apiVersion: v1
kind: Namespace
metadata: {name: other}
---
apiVersion: v1
kind: Pod
metadata: {name: lone, labels: {app: lone}}
spec: {containers: [{name: c, image: nginx, ports: [{containerPort: 80}]}]}
"""


def test_kubectls_argument_grammar_type_slash_name_and_names_after_options(kube):
    assert column(lab(kube, "get", "ep", "-n", "kube-system", "kube-dns").stdout, "NAME") == ["kube-dns"]
    assert column(lab(kube, "get", "svc", "-o", "wide", "nginx").stdout, "NAME") == ["nginx"]
    both = lab(kube, "get", "deploy/nginx", "svc/nginx", "-o", "name").stdout.split()
    assert both == ["deployment.apps/nginx", "service/nginx"]
    assert lab(kube, "describe", "deployment/nginx").stdout.startswith("Name:")
    assert lab(kube, "scale", "deployment/nginx", "--replicas=4").stdout.strip() == "deployment.apps/nginx scaled"
    assert len(lab(kube, "get", "pods", "-l", "app=nginx", "-o", "name").stdout.split()) == 4
    lab(kube, "scale", "deploy", "nginx", "--replicas", "3")  # as examples/nginx.yaml has it
    assert lab(kube, "logs", "deploy/nginx", "--tail", "1").returncode == 0
    mixed = lab(kube, "get", "deploy", "svc/nginx", check=False)
    assert mixed.returncode != 0 and "there is no need to specify a resource type as a separate argument" in \
        mixed.stderr
    # -n on apply puts the objects that name no namespace there; one naming another is refused, changing nothing
    lab_cli("apply", "-n", "other", "-i", kube.inventory_path, "-f", "-", input=OTHER, check=True)
    assert column(lab(kube, "get", "pods", "-n", "other").stdout, "NAME") == ["lone"]
    assert lab(kube, "label", "pod/lone", "-n", "other", "tier=x").stdout.strip() == "pod/lone labeled"
    elsewhere = OTHER.split("---")[1].replace("metadata: {name: lone,", "metadata: {name: lone2, namespace: other,")
    clash = lab_cli("apply", "-n", "shop", "-i", kube.inventory_path, "-f", "-", input=elsewhere)
    assert clash.returncode != 0 and clash.stderr.count("\n") == 1
    assert "metadata.namespace: the namespace from the provided object 'other' does not match the namespace " \
        "'shop'" in clash.stderr
    assert lab(kube, "get", "pod", "lone2", "-A", check=False).returncode != 0
    assert lab(kube, "delete", "pod/lone", "ns/other", "-n", "other").stdout.split("\n")[:2] == ["pod/lone deleted",
                                                                                  "namespace/other deleted"]


def test_jsonpath_ranges_custom_columns_and_sort_by(kube):
    listed = lab(kube, "get", "pods", "-n", "shop", "-o",
                 'jsonpath={range .items[*]}{.metadata.name}{"\t"}{.spec.nodeName}{"\n"}{end}').stdout
    assert listed.splitlines() == ["back\tnode2", "front\tnode1"]
    table = lab(kube, "get", "pods", "-n", "shop", "--sort-by", ".spec.nodeName", "-o",
                "custom-columns=NAME:.metadata.name,NODE:.spec.nodeName,IP:.status.podIP").stdout.splitlines()
    assert table[0].split() == ["NAME", "NODE", "IP"] and [row.split()[0] for row in table[1:]] == ["front", "back"]
    assert all(row.split()[2].startswith("10.244.") for row in table[1:])


PINNED = """
apiVersion: v1
kind: Pod
metadata: {name: pinned}
spec:
  nodeSelector: {kubernetes.io/hostname: node2}
  containers: [{name: c, image: nginx}]
"""


def test_nodes_carry_the_well_known_labels_and_a_node_selector_uses_them(kube):
    assert column(lab(kube, "get", "nodes", "-l", "kubernetes.io/hostname=node2").stdout, "NAME") == ["node2"]
    assert "kubernetes.io/os=linux" in lab(kube, "get", "node", "node1", "--show-labels").stdout
    lab_cli("apply", "-i", kube.inventory_path, "-f", "-", input=PINNED, check=True)
    try:
        assert json.loads(lab(kube, "get", "pod", "pinned", "-o", "json").stdout)["spec"]["nodeName"] == "node2"
    finally:
        lab(kube, "delete", "pod/pinned")


def test_label_node_gives_a_node_selector_something_to_choose_by(kube):
    assert lab(kube, "label", "node", "node1", "disktype=ssd").stdout == "node/node1 labeled\n"
    try:
        assert column(lab(kube, "get", "nodes", "-l", "disktype=ssd").stdout, "NAME") == ["node1"]
        again = lab(kube, "label", "node/node1", "disktype=hdd", check=False)
        assert again.returncode != 0
        assert "'disktype' already has a value (ssd), and --overwrite is false" in again.stderr
        lab_cli("apply", "--inventory", kube.inventory_path, "-f", "-", check=True,
                input=PINNED.replace("kubernetes.io/hostname: node2", "disktype: ssd"))
        assert json.loads(lab(kube, "get", "pod", "pinned", "-o", "json").stdout)["spec"]["nodeName"] == "node1"
        lab(kube, "delete", "pod/pinned")
        missing = lab(kube, "label", "node", "node9", "a=b", check=False)
        assert missing.returncode != 0 and 'nodes "node9" not found' in missing.stderr
    finally:
        lab(kube, "label", "node", "node1", "disktype-")
    assert "disktype" not in lab(kube, "get", "node", "node1", "--show-labels").stdout


def test_the_exams_throw_away_client_runs_its_command_and_leaves_no_pod(kube):
    proc = lab_cli("run", "tmp", "--rm", "-it", "--image=busybox", "--restart=Never", "--inventory",
                   kube.inventory_path, "--", "wget", "-qO-", "http://nginx/hostname")
    assert proc.returncode == 0, proc.stderr
    first, *_, last = proc.stdout.splitlines()
    assert first.startswith("nginx-") and last == 'pod "tmp" deleted'
    failed = lab_cli("run", "tmp", "--rm", "-it", "--inventory", kube.inventory_path, "--", "sh", "-c", "exit 3")
    assert failed.returncode == 3 and failed.stdout.strip().endswith('pod "tmp" deleted')
    assert lab(kube, "get", "pod", "tmp", check=False).returncode != 0
    taken = lab_cli("run", "front", "--rm", "-it", "-n", "shop", "--inventory", kube.inventory_path, "--", "true")
    assert taken.returncode != 0 and 'pods "front" already exists' in taken.stderr
    assert lab(kube, "get", "pod", "front", "-n", "shop").returncode == 0  # a pod it did not make stays
    refused = lab_cli("run", "tmp", "--inventory", kube.inventory_path, "--", "sleep", "3600")
    assert refused.returncode != 0 and "a lab pod runs the lab's server, not a command" in refused.stderr
    assert lab(kube, "get", "pod", "tmp", check=False).returncode != 0


def test_contexts_choose_the_lab_and_give_every_command_its_namespace(kube):
    """kubectl's contexts: use-context makes the lab the one commands work on without --inventory, and
    set-context --current --namespace the default of -n; an object's own namespace still wins over it."""
    assert lab_cli("config", "use-context", kube.name, check=True).stdout == f'Switched to context "{kube.name}".\n'
    try:
        assert lab_cli("config", "current-context", check=True).stdout == f"{kube.name}\n"
        lab_cli("config", "set-context", "--current", "--namespace", "shop", check=True)
        rows = lab_cli("config", "get-contexts", check=True).stdout.splitlines()
        assert rows[0].split() == ["CURRENT", "NAME", "CLUSTER", "AUTHINFO", "NAMESPACE"]
        assert ["*", kube.name, kube.name, kube.name, "shop"] in [r.split() for r in rows[1:]]
        assert lab_cli("config", "view", "--minify", "-o", "jsonpath={..namespace}", check=True).stdout == "shop"
        assert column(lab_cli("get", "pods", check=True).stdout, "NAME") == ["back", "front"]
        assert lab_cli("exec", "front", "--", "hostname", check=True).stdout == "front\n"
        lab_cli("apply", "-f", "-", input=OTHER_NAMESPACE_POD, check=True)  # names default: not refused
        assert lab_cli("get", "pod", "elsewhere", "-n", "default", check=True).returncode == 0
        lab_cli("delete", "pod", "elsewhere", "-n", "default", check=True)
        unknown = lab_cli("config", "use-context", "nope")
        assert unknown.returncode != 0 and 'no context exists with the name: "nope"' in unknown.stderr
    finally:
        lab_cli("config", "set-context", kube.name, "--namespace", "default", check=True)
    assert "back" not in lab_cli("get", "pods", check=True).stdout


def images_of(kube, selector: str) -> set[str]:
    out = lab(kube, "get", "pods", "-l", selector, "-o", "jsonpath={.items[*].spec.containers[0].image}").stdout
    return set(out.split())


def test_set_image_rollout_status_history_and_undo(kube):
    lab(kube, "create", "deployment", "roll", "--image=nginx", "--replicas", "2", "--port", "80")
    try:
        assert lab(kube, "set", "image", "deployment/roll", "nginx=busybox:1.36").stdout == \
            "deployment.apps/roll image updated\n"
        assert lab(kube, "rollout", "status", "deploy/roll").stdout == 'deployment "roll" successfully rolled out\n'
        assert images_of(kube, "app=roll") == {"busybox:1.36"}
        pod = column(lab(kube, "get", "pods", "-l", "app=roll").stdout, "NAME")[0]
        assert "BusyBox" in lab(kube, "exec", pod, "--", "sh", "-c", "ls --help 2>&1", check=False).stdout
        history = lab(kube, "rollout", "history", "deploy", "roll").stdout.splitlines()
        assert history[1:] == ["REVISION  CHANGE-CAUSE", "1         <none>", "2         <none>"]
        assert "image: nginx" in lab(kube, "rollout", "history", "deploy/roll", "--revision", "1").stdout
        assert lab(kube, "rollout", "undo", "deploy/roll").stdout == "deployment.apps/roll rolled back\n"
        assert images_of(kube, "app=roll") == {"nginx"}
        revisions = [line.split()[0] for line in lab(kube, "rollout", "history", "deploy/roll").stdout.splitlines()[2:]]
        assert revisions == ["2", "3"]  # the undone-to template takes the next number, as in Kubernetes
        waited = lab(kube, "wait", "--for=condition=Ready", "pod", "-l", "app=roll", "--timeout=60s").stdout
        assert waited.count("condition met") == 2
        bad = lab(kube, "set", "image", "deploy/roll", "nope=nginx", check=False)
        assert bad.returncode != 0 and 'unable to find container named "nope"' in bad.stderr
    finally:
        lab(kube, "delete", "deploy", "roll")


def test_configmaps_and_set_env_reach_what_runs_in_the_pod_and_set_selector_moves_a_service(kube, tmp_path):
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "index.html").write_text("<h1>shop</h1>\n")
    assert lab(kube, "create", "configmap", "site", "--from-literal=color=blue",
               f"--from-file={tmp_path / 'site'}").stdout == "configmap/site created\n"
    lab(kube, "create", "deployment", "envy", "--image=busybox", "--replicas", "1", "--port", "80")
    try:
        assert lab(kube, "get", "cm", "site").stdout.splitlines()[1].split()[:2] == ["site", "2"]
        assert "index.html:\n----\n<h1>shop</h1>" in lab(kube, "describe", "configmap", "site").stdout
        first = column(lab(kube, "get", "pods", "-l", "app=envy").stdout, "NAME")
        assert lab(kube, "set", "env", "deploy/envy", "MODE=test", "--from=configmap/site",
                   "--prefix=SITE_").stdout == "deployment.apps/envy env updated\n"
        assert lab(kube, "set", "env", "deploy/envy", "--list").stdout == (
            "# deployment envy, container busybox\n# SITE_COLOR from configmap site, key color\n"
            "# SITE_INDEX_HTML from configmap site, key index.html\nMODE=test\n")
        lab(kube, "rollout", "status", "deploy/envy", "--timeout=60s")
        (pod,) = column(lab(kube, "get", "pods", "-l", "app=envy").stdout, "NAME")
        assert pod not in first  # a new env is a new template: its pods are made again
        shown = lab(kube, "exec", pod, "--", "sh", "-c", 'echo "$MODE $SITE_COLOR"; hostname').stdout
        assert shown == f"test blue\n{pod}\n"  # the variables the kubelet would give the container
        lab(kube, "set", "env", "deploy/envy", "MODE-")
        lab(kube, "rollout", "status", "deploy/envy", "--timeout=60s")
        (pod,) = column(lab(kube, "get", "pods", "-l", "app=envy").stdout, "NAME")
        assert lab(kube, "exec", pod, "--", "sh", "-c", 'echo "[$MODE]"').stdout == "[]\n"
        assert lab(kube, "run", "hello", "--rm", "--image=busybox", "--restart=Never", "--env", "GREETING=hi", "--",
                   "sh", "-c", "echo $GREETING").stdout.splitlines()[0] == "hi"
        # set selector replaces a Service's selector: its endpoints follow
        lab(kube, "expose", "deploy", "envy", "--port", "80")
        assert lab(kube, "set", "selector", "svc/envy", "app=nginx").stdout == "service/envy selector updated\n"
        nginx = sorted(lab(kube, "get", "pods", "-l", "app=nginx", "-o",
                           "jsonpath={.items[*].status.podIP}").stdout.split())
        addresses = lab(kube, "get", "ep", "envy", "-o", "jsonpath={.subsets[*].addresses[*].ip}").stdout.split()
        assert sorted(addresses) == nginx
        refused = lab(kube, "set", "selector", "deploy/envy", "app=x", check=False)
        assert refused.returncode != 0 and "a Deployment's cannot change" in refused.stderr
    finally:
        lab(kube, "delete", "deploy", "envy")
        lab(kube, "delete", "svc", "envy", check=False)
        lab(kube, "delete", "cm", "site")
    assert "site" not in lab(kube, "get", "cm").stdout


def test_top_measures_what_runs_in_a_pod(kube):
    """A pod where `lab exec` holds 200 MiB and spins shows it in `lab top pods`; the node it is on shows it too."""
    hog = subprocess.Popen([sys.executable, "-m", "orchestrator.cli", "exec", "--inventory", kube.inventory_path,
                            "front", "-n", "shop", "--", "python3", "-c",
                            "x = b'h' * (200 << 20)\nwhile True: pass"],
                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def usage() -> dict:
        rows = [line.split() for line in lab(kube, "top", "pods", "-n", "shop", "--sort-by=memory").stdout
                .splitlines()[1:]]
        return {name: (int(cpu.rstrip("m")), int(memory.rstrip("Mi"))) for name, cpu, memory in rows}
    try:
        assert wait_for(lambda: usage()["front"][1] >= 200, 60), usage()
        cpu, _ = usage()["front"]
        assert cpu >= 100 and usage()["back"][1] < 100  # spinning: at least a tenth of a core; the other idles
        nodes = lab(kube, "top", "nodes")
        rows = {line.split()[0]: line.split() for line in nodes.stdout.splitlines()[1:]}
        assert int(rows["node1"][3].rstrip("Mi")) >= 200 and rows["node1"][1].endswith("m")  # front is on node1
        assert "share this machine's kernel" in nodes.stderr
    finally:
        hog.send_signal(signal.SIGINT)
        hog.wait(60)
    assert wait_for(lambda: usage()["front"][1] < 100, 30)  # what exec ran is gone, and top says so
    missing = lab(kube, "top", "pod", "nope", "-n", "shop", check=False)
    assert missing.returncode != 0 and 'pods "nope" not found' in missing.stderr


def test_the_shared_kernels_arp_table_is_counted_before_an_apply_and_the_underlay_is_pinned(kube):
    """64 pods on 2 emulated nodes would need more learned neighbour entries than this machine's one ARP table
    holds (gc_thresh3, 1024 here): refused in one line, nothing made. The underlay's are permanent."""
    refused = lab(kube, "create", "deployment", "crowd", "--image=nginx", "--replicas", "64", check=False)
    assert refused.returncode != 0 and "learned neighbour entries in this machine's one ARP table" in refused.stderr
    assert "sysctl -w net.ipv4.neigh.default.gc_thresh3=" in refused.stderr and refused.stderr.count("\n") == 1
    assert "crowd" not in lab(kube, "get", "deploy").stdout and "crowd" not in lab(kube, "get", "pods").stdout
    node2 = next(n for n in kube.inventory.nodes if n.name == "node2")
    pinned = lab(kube, "exec", "node1", "--", "ip", "neigh", "show", "dev", "eth0").stdout
    assert re.search(rf"^{re.escape(str(node2.address))} lladdr \S+ PERMANENT\s*$", pinned, re.M), pinned


def test_endpointslices_list_the_same_pods_as_the_endpoints(kube):
    endpoints = json.loads(lab(kube, "get", "ep", "nginx", "-o", "json").stdout)
    ips = sorted(a["ip"] for subset in endpoints["subsets"] for a in subset["addresses"])
    found = json.loads(lab(kube, "get", "endpointslices", "-l", "kubernetes.io/service-name=nginx", "-o",
                           "json").stdout)["items"]
    assert len(found) == 1 and found[0]["metadata"]["name"].startswith("nginx-")
    assert sorted(e["addresses"][0] for e in found[0]["endpoints"]) == ips
    assert found[0]["ports"] == [{"name": "", "port": 80, "protocol": "TCP"}]
    row = lab(kube, "get", "endpointslice", found[0]["metadata"]["name"]).stdout.splitlines()
    assert row[0].split() == ["NAME", "ADDRESSTYPE", "PORTS", "ENDPOINTS", "AGE"]
    assert row[1].split()[1:3] == ["IPv4", "80"]


def test_events_tell_what_the_lab_did_to_pods_deployments_and_services(kube):
    lab(kube, "create", "deployment", "evt", "--image=nginx", "--replicas", "1", "--port", "80")
    try:
        lab(kube, "expose", "deploy", "evt", "--port", "80")
        lab(kube, "scale", "deploy/evt", "--replicas", "2")
        pod = column(lab(kube, "get", "pods", "-l", "app=evt").stdout, "NAME")[0]
        described = lab(kube, "describe", "pod", pod).stdout
        assert "Type    Reason          Age" in described
        for reason in ("Scheduled", "AddedInterface", "Started"):
            assert f"Normal  {reason}" in described, described
        scaled = lab(kube, "events", "--for", "deploy/evt").stdout
        assert "Scaled up replica set evt-" in scaled and " to 2" in scaled
        changed = json.loads(lab(kube, "get", "events", "--field-selector", "involvedObject.name=evt,"
                                 "involvedObject.kind=Service", "-o", "json").stdout)["items"]
        assert [e["reason"] for e in changed][-1] == "EndpointsChanged" and changed[-1]["message"].count(":80") == 2
    finally:
        lab(kube, "delete", "deploy", "evt")
        lab(kube, "delete", "svc", "evt")
    assert "Killing" in lab(kube, "events", "--for", f"pod/{pod}").stdout


def test_patch_and_edit_change_an_object_in_place(kube, tmp_path):
    lab(kube, "create", "deployment", "pat", "--image=nginx", "--replicas", "1", "--port", "80")
    try:
        assert lab(kube, "create", "service", "clusterip", "pat", "--tcp=80:80").stdout == "service/pat created\n"
        assert len(json.loads(lab(kube, "get", "ep", "pat", "-o", "json").stdout)["subsets"][0]["addresses"]) == 1
        assert lab(kube, "patch", "svc", "pat", "-p", '{"spec":{"type":"NodePort"}}').stdout == \
            "service/pat patched\n"
        assert json.loads(lab(kube, "get", "svc", "pat", "-o", "json").stdout)["spec"]["ports"][0]["nodePort"] > 0
        again = lab(kube, "patch", "svc/pat", "-p", '{"spec":{"type":"NodePort"}}').stdout
        assert again == "service/pat patched (no change)\n"
        lab(kube, "patch", "deploy", "pat", "--type", "json", "-p",
            '[{"op":"replace","path":"/spec/replicas","value":2}]')
        assert len(column(lab(kube, "get", "pods", "-l", "app=pat").stdout, "NAME")) == 2
        editor = tmp_path / "editor.sh"  # what a student does in vi, done by sed
        editor.write_text("#!/bin/sh\nsed -i 's/replicas: 2/replicas: 3/' \"$1\"\n")
        editor.chmod(0o755)
        edited = lab_cli("edit", "--inventory", kube.inventory_path, "deploy/pat", env=dict(os.environ,
                         EDITOR=str(editor)), check=True)
        assert edited.stdout == "deployment.apps/pat edited\n"
        assert len(column(lab(kube, "get", "pods", "-l", "app=pat").stdout, "NAME")) == 3
        cancelled = lab_cli("edit", "--inventory", kube.inventory_path, "deploy/pat", env=dict(os.environ,
                            EDITOR="true"), check=True)
        assert cancelled.stdout == "Edit cancelled, no changes made.\n"
        bad = lab(kube, "patch", "deploy", "pat", "-p", '{"spec":{"replicas":"many"}}', check=False)
        assert bad.returncode != 0 and bad.stderr.count("\n") == 1 and "replicas" in bad.stderr
    finally:
        lab(kube, "delete", "svc", "pat")
        lab(kube, "delete", "deploy", "pat")


def forwarded_port(proc) -> int:
    """The local port `lab port-forward` says it listens on (its first line)."""
    line = proc.stdout.readline()
    assert line.startswith("Forwarding from 127.0.0.1:"), line + proc.stderr.read()
    return int(line.split(":")[1].split()[0])


def get_over_loopback(port: int, path: str) -> str:
    import urllib.request
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=30) as reply:
        return reply.read().decode()


def test_port_forward_reaches_a_pod_and_a_services_pod_from_this_machines_loopback(kube):
    for target, want in (("pod/front", "front"), ("svc/nginx", "nginx-")):
        proc = subprocess.Popen([sys.executable, "-m", "orchestrator.cli", "port-forward", "--inventory",
                                 kube.inventory_path, "-n", "shop" if target == "pod/front" else "default", target,
                                 ":80"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        try:
            port = forwarded_port(proc)
            assert get_over_loopback(port, "/hostname").startswith(want)
            assert get_over_loopback(port, "/hostname").startswith(want)  # a second connection too
            assert proc.stdout.readline() == f"Handling connection for {port}\n"
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(30)
    refused = lab(kube, "port-forward", "--address", "0.0.0.0", "pod/front", "8080:80", "-n", "shop", check=False)
    assert refused.returncode != 0 and "127.0.0.1 only" in refused.stderr


def test_delete_force_and_wait_for_delete(kube):
    lab(kube, "run", "doomed", "--image=busybox")
    forced = lab(kube, "delete", "pod", "doomed", "--force", "--grace-period=0")
    assert "pod/doomed force deleted" in forced.stdout and "Immediate deletion" in forced.stderr
    assert lab(kube, "wait", "--for=delete", "pod/doomed").stdout == "pod/doomed condition met\n"
    missing = lab(kube, "wait", "--for=condition=Ready", "pod/doomed", check=False)
    assert missing.returncode != 0 and 'pods "doomed" not found' in missing.stderr


OTHER_NAMESPACE_POD = """
apiVersion: v1
kind: Pod
metadata: {name: elsewhere, namespace: default}
spec: {containers: [{name: c, image: nginx}]}
"""
TOOL_PODS = """
apiVersion: v1
kind: Pod
metadata: {name: bb, labels: {run: bb}}
spec: {nodeName: node2, containers: [{name: bb, image: "busybox:1.36", command: [sleep, "3600"]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: shoot}
spec: {nodeName: node1, containers: [{name: shoot, image: nicolaka/netshoot}]}
---
apiVersion: v1
kind: Pod
metadata: {name: curler}
spec: {containers: [{name: curl, image: "docker.io/curlimages/curl:8.11.0"}]}
"""


@pytest.fixture(scope="module")
def tool_pods(kube):
    lab_cli("apply", "--inventory", kube.inventory_path, "-f", "-", input=TOOL_PODS, check=True)
    yield {"nginx": json.loads(lab(kube, "get", "svc", "nginx", "-o", "json").stdout)["spec"]["clusterIP"]}
    lab_cli("delete", "--inventory", kube.inventory_path, "-f", "-", input=TOOL_PODS, check=True)


def in_pod(kube, pod: str, *command: str, check: bool = True):
    return lab(kube, "exec", pod, "--", *command, check=check)


def test_each_pod_has_its_own_hostname_and_hosts_file(kube, tool_pods):
    ip = json.loads(lab(kube, "get", "pod", "bb", "-o", "json").stdout)["status"]["podIP"]
    assert in_pod(kube, "bb", "hostname").stdout == "bb\n"
    assert in_pod(kube, "shoot", "hostname").stdout == "shoot\n"
    assert f"{ip}\tbb" in in_pod(kube, "bb", "cat", "/etc/hosts").stdout.splitlines()
    assert "search default.svc.cluster.local" in in_pod(kube, "bb", "cat", "/etc/resolv.conf").stdout
    assert lab(kube, "exec", "node2", "--", "hostname").stdout == "node2\n"  # the node keeps its own


def test_a_busybox_pod_has_busyboxs_applets_and_not_the_nodes_files(kube, tool_pods):
    looked_up = in_pod(kube, "bb", "nslookup", "nginx.default.svc.cluster.local").stdout
    assert f"Address: {tool_pods['nginx']}" in looked_up
    assert in_pod(kube, "bb", "wget", "-qO-", "-T", "5", "http://nginx/hostname").stdout.startswith("nginx-")
    assert in_pod(kube, "bb", "nc", "-zv", "-w", "2", "nginx", "80", check=False).returncode == 0
    assert in_pod(kube, "bb", "nc", "-z", "-w", "2", "nginx", "81", check=False).returncode != 0
    assert "BusyBox" in in_pod(kube, "bb", "sh", "-c", "ls --help 2>&1", check=False).stdout
    missing = in_pod(kube, "bb", "dig", "nginx", check=False)
    assert missing.returncode == 127  # busybox has no dig, as in the busybox image
    assert in_pod(kube, "bb", "ls", "/var/lib/cluster-lab", check=False).returncode != 0  # not the node's files


def test_tool_images_have_their_tools(kube, tool_pods):
    answer = in_pod(kube, "shoot", "dig", "+short", "nginx.default.svc.cluster.local").stdout
    assert answer.split() == [tool_pods["nginx"]]
    assert in_pod(kube, "curler", "curl", "-s", "-m", "5", "http://nginx/hostname").stdout.startswith("nginx-")
    assert "BusyBox" in in_pod(kube, "curler", "sh", "-c", "cat --help 2>&1", check=False).stdout


def test_exec_passes_stdin_with_i(kube, tool_pods):
    proc = lab_cli("exec", "--inventory", kube.inventory_path, "-i", "bb", "--", "sh", "-c", "cat; hostname",
                   input="from stdin\n", check=True)
    assert proc.stdout == "from stdin\nbb\n"


def running(marker: str) -> bool:
    """Whether a `sleep MARKER` runs on this machine (emulated nodes share its process table)."""
    return subprocess.run(["pgrep", "-f", f"^sleep {marker}$"], capture_output=True).returncode == 0


def test_ctrl_c_on_exec_and_its_timeout_leave_nothing_running(kube, tool_pods):
    exec_ = subprocess.Popen([sys.executable, "-m", "orchestrator.cli", "exec", "--inventory", kube.inventory_path,
                              "bb", "--", "sleep", "3611"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
    assert wait_for(lambda: running("3611"), 60)
    exec_.send_signal(signal.SIGINT)
    assert exec_.wait(60) == 130
    assert wait_for(lambda: not running("3611"), 30)
    on_node = subprocess.Popen([sys.executable, "-m", "orchestrator.cli", "exec", "--inventory", kube.inventory_path,
                                "node1", "--", "sleep", "3614"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
    assert wait_for(lambda: running("3614"), 60)
    on_node.send_signal(signal.SIGINT)  # on a node too, the command ends with the SSH session
    assert on_node.wait(60) == 130
    assert wait_for(lambda: not running("3614"), 30)
    timed = lab(kube, "exec", "--timeout", "2", "shoot", "--", "sleep", "3612", check=False)
    assert timed.returncode == 124 and "`sleep 3612` on node1 ended after 2 s (--timeout)" in timed.stderr
    assert timed.stderr.count("\n") == 1
    assert wait_for(lambda: not running("3612"), 30)


@pytest.mark.parametrize("args, message", [
    (("get", "pods", "nope"), 'lab: error: Error from server (NotFound): pods "nope" not found'),
    (("get", "widgets"), 'the server doesn\'t have a resource type "widgets"'),
    (("get", "pods", "-l", "app=("), "lab: error: -l app=(: cannot read the selector"),
    (("describe", "pod", "nope"), 'lab: error: Error from server (NotFound): pods "nope" not found in namespace'),
    (("logs", "nope"), 'lab: error: Error from server (NotFound): pods "nope" not found'),
])
def test_mistakes_get_kubectl_like_one_line_errors(kube, args, message):
    proc = lab(kube, *args, check=False)
    assert proc.returncode != 0 and message in proc.stderr and proc.stderr.count("\n") == 1


def complete(line: str, tmp_path) -> list[str]:
    """What the shell would get for `line` with the cursor at its end (argcomplete's protocol)."""
    out = tmp_path / "completion"
    env = dict(os.environ, COMP_LINE=line, COMP_POINT=str(len(line)), _ARGCOMPLETE="1",
               _ARGCOMPLETE_STDOUT_FILENAME=str(out))
    subprocess.run([sys.executable, "-m", "orchestrator.cli"], env=env, check=True, capture_output=True)
    return sorted(out.read_text().split("\v"))


def test_completion_offers_commands_kinds_and_the_labs_names(kube, tmp_path):
    assert [c.strip() for c in complete("lab rollo", tmp_path)] == ["rollout"]
    assert "deploy" in [c.strip() for c in complete("lab get de", tmp_path)]
    assert complete(f"lab exec --inventory {kube.inventory_path} -n shop fr", tmp_path)[0].startswith("front")
    assert complete(f"lab logs -i {kube.inventory_path} -n shop ba", tmp_path)[0].startswith("back")
    assert "complete" in lab_cli("completion", "bash", check=True).stdout

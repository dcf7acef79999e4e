"""`lab`: the command line. Parses arguments, picks the inventory, calls the library, prints results.

Every LabError becomes one line on stderr and a non-zero exit code; there is no traceback for a
user's mistake.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
from typing import Optional

from orchestrator import __version__
from orchestrator.core.inventory import MAX_SUBNETS
from orchestrator.verify.checks import COVERAGE_AFTER
from orchestrator.cli.common import err
from orchestrator.cli.contexts import cmd_config, fill_namespace
from orchestrator.cli.edits import cmd_edit, cmd_patch
from orchestrator.cli.portforward import LOOPBACK, cmd_port_forward
from orchestrator.cli.completion import install as install_completion
from orchestrator.cli.completion import shell_code
from orchestrator.cli.imperative import cmd_create, cmd_expose, cmd_label, cmd_run, cmd_scale
from orchestrator.cli.rollouts import cmd_rollout, cmd_wait, duration
from orchestrator.cli.sets import cmd_set
from orchestrator.cli.top import cmd_top
from orchestrator.cli.lab_commands import (cmd_bootstrap, cmd_controller, cmd_deploy, cmd_destroy, cmd_down, cmd_exec,
        cmd_graph, cmd_link, cmd_image, cmd_inventory, cmd_ssh, cmd_status, cmd_up)
from orchestrator.cli.object_commands import (cmd_api_resources, cmd_apply, cmd_cni, cmd_delete, cmd_describe,
                                              cmd_events, cmd_explain, cmd_get, cmd_logs)
from orchestrator.cli.study_commands import cmd_break, cmd_fix, cmd_play, cmd_trace, cmd_verify
from orchestrator.core.errors import LabError
from orchestrator.core.transport import NodeError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lab", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="cluster-lab: a Kubernetes-style network from real kernel parts, over SSH.",
        epilog="examples:\n  lab up --name demo --nodes 3\n  lab status\n  lab exec node1 -- ip -br addr\n"
               "  lab down --name demo\n\nRun `lab COMMAND --help` for the options of each command.")
    parser.add_argument("--version", action="version", version=f"cluster-lab {__version__}")
    sub = parser.add_subparsers(dest="command_name", metavar="COMMAND")
    sub.required = True

    inv_opt = argparse.ArgumentParser(add_help=False)
    inv_opt.add_argument("-i", "--inventory", metavar="FILE",
                         help="the lab's inventory (default: $LAB_INVENTORY, else the current context: `lab config`)")
    # exec and run: -i is kubectl's (stdin), the inventory only --inventory
    inv_long = argparse.ArgumentParser(add_help=False)
    inv_long.add_argument("--inventory", metavar="FILE",
                          help="the lab's inventory (default: $LAB_INVENTORY, else the current context: `lab config`)")

    def stdin_and_tty(p) -> None:
        p.add_argument("-i", "--stdin", action="store_true", help="pass this stdin to the command (kubectl's -i)")
        p.add_argument("-t", "--tty", dest="interactive", action="store_true",
                       help="a terminal for the command, when this is one (kubectl's -it; a shell when no command)")

    def command(name: str, func, help_text: str, examples: str, parents=(inv_opt,)) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text, parents=list(parents),
                           formatter_class=argparse.RawDescriptionHelpFormatter,
                           epilog="examples:\n" + "\n".join(f"  {line}" for line in examples.splitlines()))
        p.set_defaults(func=func)
        return p

    p = command("up", cmd_up, "bring up emulated nodes or real VMs on this machine (needs root); a no-op when "
                "already up",
                "lab up                          # 3 nodes, lab 'demo'\n"
                "lab up --name study --nodes 5\n"
                "lab up --name vm --sudo-user lab   # log in as 'lab', commands through sudo\n"
                "lab up --name demo --nodes 4    # add a node to a running lab\n"
                "lab up --name vms --nodes 3 --provider qemu   # real Debian VMs (KVM or TCG)\n"
                "lab up --name racks --nodes 4 --subnets 2     # two underlay subnets behind the lab's router",
                parents=())
    p.add_argument("--name", help="the lab's name (default: cluster.name of the inventory, 'demo')")
    p.add_argument("--nodes", type=int, choices=range(1, 201), metavar="N",
                   help="how many nodes, 1 to 200 (default: emulated.nodes of the inventory, 3)")
    p.add_argument("-i", "--inventory", metavar="FILE",
                   help="the inventory to start from (default: the packaged inventories/local.yaml)")
    p.add_argument("--sudo-user", metavar="USER", help="make USER on every node, with passwordless sudo, and log "
                   "in as it instead of root (default: emulated.sudo_user of the inventory)")
    p.add_argument("--provider", choices=("local", "qemu"), help="local: emulated nodes (namespaces, this "
                   "machine's kernel; the default); qemu: real Debian VMs with their own kernel")
    p.add_argument("--subnets", type=int, choices=range(1, MAX_SUBNETS + 1), metavar="N",
                   help=f"underlay subnets, 1 to {MAX_SUBNETS}, each its own L2 segment routed by the lab's router; "
                   "nodes take turns over them (default: emulated.subnets of the inventory, 1)")
    p.add_argument("--memory", type=int, metavar="MiB", help="memory per VM (qemu; default 1024)")
    p.add_argument("--accel", choices=("auto", "kvm", "tcg"),
                   help="qemu's accelerator (default auto: KVM when a probe boots under it, else TCG)")

    command("api-resources", cmd_api_resources, "the kinds the lab knows (kubectl api-resources)",
            "lab api-resources", parents=())
    p = command("explain", cmd_explain, "a field's type, description and fields (kubectl explain), from the schemas "
                "the lab validates with", "lab explain pod.spec.containers\nlab explain networkpolicy.spec.ingress\n"
                "lab explain httproute.spec.rules.matches", parents=())
    p.add_argument("field", metavar="KIND[.FIELD...]")
    p = command("config", cmd_config, "contexts, as kubectl's: which lab commands work on, and its namespace",
                "lab config get-contexts\nlab config use-context demo\n"
                "lab config set-context --current --namespace shop\n"
                "lab config view --minify -o jsonpath='{..namespace}'", parents=())
    p.add_argument("action", choices=("get-contexts", "current-context", "use-context", "use", "set-context", "view"))
    p.add_argument("names", nargs="*", metavar="CONTEXT", help="a lab's name")
    p.add_argument("--current", action="store_true", help="set-context: the current context")
    p.add_argument("--namespace", dest="set_namespace", metavar="NS", help="set-context: the context's namespace")
    p.add_argument("--minify", action="store_true", help="view: the current context only")
    p.add_argument("-o", "--output", help="view: yaml (default), json or jsonpath=TEMPLATE; get-contexts: name")
    p = command("image", cmd_image, "list or remove the cached VM images `lab up --provider qemu` boots",
                "lab image list\nlab image rm 0123456789abcdef\nlab image rm --all", parents=())
    p.add_argument("action", choices=("list", "rm"))
    p.add_argument("keys", nargs="*", metavar="KEY", help="with rm: the images to remove")
    p.add_argument("--all", action="store_true", help="with rm: every cached image")

    p = command("down", cmd_down, "remove a lab made by `lab up`: every namespace, link, process, VM and file it "
                "made (cached VM images stay)",
                "lab down --name demo\nlab down                  # the lab brought up last", parents=())
    p.add_argument("--name", help="the lab to remove (default: the lab brought up last)")

    p = command("status", cmd_status, "show each node: address, SSH reachability, hostname, kernel, CNI plugins",
                "lab status\nlab status -o json\nlab status -i inventories/vagrant.yaml")
    p.add_argument("-o", "--output", choices=("table", "json"), default="table")

    p = command("deploy", cmd_deploy, "build the pod network on every node: subnets, CNI config, overlay, "
                "masquerade; changes only what differs",
                "lab deploy\nlab deploy --dry-run          # what would change, per node\n"
                "lab deploy -i inventories/vagrant.yaml")
    p.add_argument("--dry-run", action="store_true", help="show what would change; change nothing")
    p.add_argument("-v", "--verbose", action="store_true", help="list every change made")

    p = command("destroy", cmd_destroy, "undo everything deploy and the pods made on the nodes",
                "lab destroy\nlab destroy -i inventories/vagrant.yaml")
    p.add_argument("-v", "--verbose", action="store_true", help="list every change made")

    p = command("bootstrap", cmd_bootstrap, "install what the nodes lack for the lab (apt or dnf, as root or "
                "with sudo), on every node in parallel; says per node what it installed",
                "lab bootstrap -i inventories/vagrant.yaml\nlab bootstrap --dry-run     # the install commands, "
                "per node; installs nothing")
    p.add_argument("--dry-run", action="store_true", help="show what would be installed and how; install nothing")

    p = command("apply", cmd_apply, "create or update objects from Kubernetes YAML (Pod, Deployment, Service, "
                "Namespace, NetworkPolicy)", "lab apply -f examples/nginx.yaml\nlab apply -f examples/\n"
                "cat pod.yaml | lab apply -f -")
    p.add_argument("-f", "--filename", action="append", required=True, metavar="FILE",
                   help="a manifest file, a folder of them, or - for stdin (repeatable)")
    p.add_argument("-n", "--namespace", help="the namespace of the objects that name none")
    p = command("delete", cmd_delete, "delete what Kubernetes YAML names, or KIND NAME... (a Deployment with its "
                "pods, a Namespace with everything in it)",
                "lab delete -f examples/nginx.yaml\nlab delete pod web\nlab delete deploy nginx\nlab delete ns shop")
    p.add_argument("-f", "--filename", action="append", metavar="FILE",
                   help="a manifest file, a folder of them, or - for stdin (repeatable)")
    p.add_argument("kind", nargs="?", metavar="KIND", help="pod, deploy, svc, ns or netpol (without -f)")
    p.add_argument("names", nargs="*", metavar="NAME")
    p.add_argument("-n", "--namespace",
                   help="the namespace (default: the context's; with -f, of the objects that name none)")
    p.add_argument("--force", action="store_true", help="kubectl's immediate deletion (the lab's is always whole)")
    p.add_argument("--grace-period", type=int, metavar="SECONDS", help="accepted; the lab ends pods at once")
    p.add_argument("--now", action="store_true", help="accepted, as --grace-period=1")

    def dry_run(p):
        p.add_argument("--dry-run", choices=("client", "none"), default="none",
                       help="client: print the object (to edit and apply), change nothing")
        p.add_argument("-o", "--output", choices=("yaml", "json"), default="yaml")
        p.add_argument("-n", "--namespace")

    p = command("run", cmd_run, "run one pod (kubectl run), or a command in a throw-away pod (--rm)",
                "lab run web --port 80\n"
                "lab run web --labels app=web,tier=front --port 80 --dry-run=client -o yaml > web.yaml\n"
                "lab run tmp --rm -it --image=busybox --restart=Never -- wget -qO- http://nginx",
                parents=(inv_long,))
    p.add_argument("name")
    p.add_argument("--image", default="nginx", help="what `lab exec` finds in the pod (busybox: its applets); "
                   "the pod's process is the lab's own server")
    p.add_argument("--labels", help="KEY=VALUE,... (default run=NAME)")
    p.add_argument("--port", type=int, help="the container port")
    p.add_argument("--rm", action="store_true", help="with -- CMD: run CMD in the new pod, then delete the pod")
    p.add_argument("--env", action="append", default=[], metavar="KEY=VALUE", help="a variable of the container")
    p.add_argument("--restart", choices=("Always", "OnFailure", "Never"), help="the pod's restartPolicy (recorded)")
    stdin_and_tty(p)
    dry_run(p)
    p = command("create", cmd_create, "create a deployment, a namespace, a service, a secret or a configmap "
                "(kubectl create ...)",
                "lab create deployment web --replicas 3 --port 80\nlab create namespace shop\n"
                "lab create service nodeport web --tcp=80:8080 --node-port=30080\n"
                "lab create deployment web --replicas 2 --dry-run=client -o yaml\n"
                "lab create secret tls shop-tls --cert shop.crt --key shop.key\n"
                "lab create secret generic db --from-literal password=s3cret\n"
                "lab create configmap site --from-literal color=blue --from-file index.html")
    p.add_argument("what", choices=("deployment", "deploy", "secret", "namespace", "ns", "service", "svc",
                                    "configmap", "cm"))
    p.add_argument("names", nargs="+", metavar="[TYPE] NAME",
                   help="deployment NAME, namespace NAME, service clusterip|nodeport|loadbalancer NAME, or secret "
                   "tls|generic NAME, or configmap NAME")
    p.add_argument("--tcp", action="append", default=[], metavar="PORT[:TARGETPORT]", help="service: a port")
    p.add_argument("--node-port", type=int, help="service nodeport: the NodePort")
    p.add_argument("--cert", help="secret tls: the PEM certificate (chain) file")
    p.add_argument("--key", help="secret tls: the PEM private key file")
    p.add_argument("--from-literal", action="append", default=[], metavar="KEY=VALUE",
                   help="secret generic, configmap")
    p.add_argument("--from-file", action="append", default=[], metavar="[KEY=]PATH",
                   help="secret generic, configmap: a file, or a folder's files")
    p.add_argument("--from-env-file", action="append", default=[], metavar="FILE",
                   help="secret generic, configmap: KEY=VALUE lines")
    p.add_argument("--image", default="nginx", help="recorded; the lab's own server runs in the pods")
    p.add_argument("--replicas", type=int, default=1)
    p.add_argument("--port", type=int, help="the container port")
    dry_run(p)
    p = command("expose", cmd_expose, "a Service for a deployment's or a pod's pods (kubectl expose)",
                "lab expose deploy web --port 80\nlab expose deploy web --port 8080 --target-port 80 --type NodePort\n"
                "lab expose deploy web --port 80 --type=LoadBalancer --name web-lb\n"
                "lab expose pod web --port 80 --dry-run=client -o yaml")
    p.add_argument("kind", metavar="deploy|pod|KIND/NAME")
    p.add_argument("name", nargs="?")
    p.add_argument("--port", type=int, help="the Service's port (default: the pods' container port)")
    p.add_argument("--target-port", type=int)
    p.add_argument("--type", choices=("ClusterIP", "NodePort", "LoadBalancer"), default="ClusterIP")
    p.add_argument("--name", dest="service_name", help="the Service's name (default: the deployment's or pod's)")
    p.add_argument("--load-balancer-ip", help="the address a LoadBalancer asks for (from an IPAddressPool)")
    dry_run(p)
    p = command("scale", cmd_scale, "change a deployment's replicas (kubectl scale)",
                "lab scale deploy web --replicas 5")
    p.add_argument("kind", metavar="deployment|deployment/NAME")
    p.add_argument("name", nargs="?")
    p.add_argument("--replicas", type=int, required=True)
    dry_run(p)
    p = command("label", cmd_label, "add, change (--overwrite) or remove (KEY-) labels of a pod, a namespace or a "
                "node", "lab label pod web tier=front\nlab label ns shop team=shop\nlab label pod web tier-\n"
                "lab label node node1 disktype=ssd     # for nodeSelector")
    p.add_argument("kind", metavar="pod|ns|node|KIND/NAME")
    p.add_argument("name", nargs="?")
    p.add_argument("labels", nargs="*", metavar="KEY=VALUE|KEY-")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("-n", "--namespace")
    p = command("completion", cmd_completion, "shell completion: commands, options, kinds and the lab's names",
                "eval \"$(lab completion bash)\"     # in ~/.bashrc\nlab completion zsh > \"${fpath[1]}/_lab\"")
    p.add_argument("shell", choices=("bash", "zsh"))
    p = command("rollout", cmd_rollout, "a deployment's rollout (kubectl rollout): restart it (new pods, new IPs; "
                "endpoints follow), wait for it, list its revisions, go back to one",
                "lab rollout restart deploy web\nlab rollout status deployment/web\nlab rollout history deploy/web\n"
                "lab rollout undo deploy/web --to-revision=1")
    p.add_argument("action", choices=("restart", "status", "history", "undo"))
    p.add_argument("kind", metavar="deploy|deploy/NAME")
    p.add_argument("name", nargs="?")
    p.add_argument("-n", "--namespace")
    p.add_argument("--timeout", type=duration, help="status: give up after this long (default: wait)")
    p.add_argument("--revision", type=int, help="history: that revision's pod template")
    p.add_argument("--to-revision", type=int, help="undo: to that revision (default: the one before)")
    p = command("events", cmd_events, "what the lab did to the objects (kubectl events): pods scheduled, started, "
                "stopped; deployments scaled; endpoints changed; policies loaded; failed checks",
                "lab events\nlab events --for pod/web\nlab events -A --types Warning")
    p.add_argument("--for", dest="for_", metavar="KIND/NAME", help="only this object's")
    p.add_argument("--types", choices=("Normal", "Warning"), help="only events of this type")
    p.add_argument("-n", "--namespace")
    p.add_argument("-A", "--all-namespaces", action="store_true")
    p.add_argument("-o", "--output", metavar="json|yaml|name|jsonpath=...")
    p = command("patch", cmd_patch, "change one object in place (kubectl patch): strategic merge (lists merged by "
                "name, port, ...), JSON merge or JSON patch",
                "lab patch svc web -p '{\"spec\":{\"type\":\"NodePort\"}}'\n"
                "lab patch deploy/web --type merge -p '{\"spec\":{\"replicas\":3}}'\n"
                "lab patch deploy web --type json -p '[{\"op\":\"replace\",\"path\":\"/spec/replicas\",\"value\":2}]'")
    p.add_argument("kind", metavar="KIND|KIND/NAME")
    p.add_argument("name", nargs="?")
    p.add_argument("-p", "--patch", required=True, help="the patch, JSON or YAML")
    p.add_argument("--type", choices=("strategic", "merge", "json"), default="strategic")
    p.add_argument("-n", "--namespace")
    p = command("edit", cmd_edit, "edit one object's YAML in $KUBE_EDITOR or $EDITOR (kubectl edit), applied when "
                "saved", "lab edit deploy web\nEDITOR=nano lab edit svc/web")
    p.add_argument("kind", metavar="KIND|KIND/NAME")
    p.add_argument("name", nargs="?")
    p.add_argument("-n", "--namespace")
    p = command("port-forward", cmd_port_forward, "forward ports of this machine's 127.0.0.1 to a pod (kubectl "
                "port-forward); Ctrl-C ends it", "lab port-forward pod/web 8080:80\nlab port-forward svc/web :80   "
                "# a free local port\nlab port-forward deploy/web 8080:80 8443:443")
    p.add_argument("target", metavar="pod/NAME|svc/NAME|deploy/NAME|POD")
    p.add_argument("ports", nargs="+", metavar="[LOCAL:]REMOTE")
    p.add_argument("--address", default=LOOPBACK, help="127.0.0.1 (localhost) only")
    p.add_argument("-n", "--namespace")
    p = command("set", cmd_set, "change a deployment's image or env (new pods roll out), or a service's selector "
                "(kubectl set image|env|selector)",
                "lab set image deployment/web nginx=nginx:1.27\nlab set image deploy web '*=busybox'\n"
                "lab set env deploy/web COLOR=blue SIZE-        # SIZE- removes SIZE\n"
                "lab set env deploy/web --from=configmap/site --prefix=SITE_\nlab set env deploy/web --list\n"
                "lab set selector svc/web app=web2,tier=frontend")
    p.add_argument("what", choices=("image", "env", "selector"))
    p.add_argument("words", nargs="+", metavar="KIND/NAME EXPRESSION",
                   help="image: CONTAINER=IMAGE; env: KEY=VALUE or KEY-; selector: KEY=VALUE,...")
    p.add_argument("-c", "--containers", dest="container", metavar="NAME", help="only this container")
    p.add_argument("--list", action="store_true", help="env: print the variables")
    p.add_argument("--from", dest="from_", metavar="configmap/NAME|secret/NAME", help="env: one variable per key")
    p.add_argument("--prefix", default="", help="env: before each name --from makes")
    p.add_argument("-n", "--namespace")
    p = command("top", cmd_top, "CPU and memory of pods or nodes, measured now on the nodes (kubectl top)",
                "lab top pods\nlab top pods -A --sort-by=cpu\nlab top pod web-5ppfl\nlab top nodes")
    p.add_argument("what", choices=("pods", "pod", "po", "nodes", "node", "no"))
    p.add_argument("names", nargs="*", metavar="NAME")
    p.add_argument("-n", "--namespace")
    p.add_argument("-A", "--all-namespaces", action="store_true")
    p.add_argument("-l", "--selector", help="pods with these labels")
    p.add_argument("--sort-by", choices=("cpu", "memory"))
    p = command("wait", cmd_wait, "wait until pods are Ready (running) or deleted, or deployments Available",
                "lab wait --for=condition=Ready pod/web\nlab wait --for=condition=Ready pod -l app=web --timeout=60s\n"
                "lab wait --for=delete pod/tmp")
    p.add_argument("kind", metavar="KIND[/NAME]")
    p.add_argument("names", nargs="*", metavar="NAME")
    p.add_argument("--for", dest="for_", required=True, metavar="condition=Ready|delete")
    p.add_argument("-l", "--selector", help="pods with these labels (KEY=VALUE,...)")
    p.add_argument("--timeout", type=duration, default=30.0, help="give up after this long (default 30s)")
    p.add_argument("-n", "--namespace")

    p = command("cni", cmd_cni, "CNI by hand: CHECK the pods' attachments, or run ADD/DEL/CHECK/VERSION "
                "with a config of your own on a node",
                "lab cni check                       # CNI CHECK for every pod\n"
                "lab exec node1 -- ip netns add x\n"
                "lab cni exec ADD node1 -f bridge.conf --netns x --id 833aaaf9fd81\n"
                "lab cni exec DEL node1 -f bridge.conf --netns x --id 833aaaf9fd81")
    cni_sub = p.add_subparsers(dest="cni_command", metavar="check|exec")
    cni_sub.required = True
    c = cni_sub.add_parser("check", help="CNI CHECK for every (or the named) pod", parents=[inv_opt])
    c.add_argument("names", nargs="*", help="only these pods")
    c.add_argument("-n", "--namespace")
    c.add_argument("-A", "--all-namespaces", action="store_true")
    c = cni_sub.add_parser("exec", help="run one CNI command with a config file on a node", parents=[inv_opt])
    c.add_argument("command_verb", choices=("ADD", "DEL", "CHECK", "VERSION"), metavar="ADD|DEL|CHECK|VERSION")
    c.add_argument("node", help="node name")
    c.add_argument("-f", "--filename", required=True, help="CNI config (.conf) or list (.conflist), - for stdin")
    c.add_argument("--netns", default="", help="network namespace name on the node (or a path)")
    c.add_argument("--id", default="cni-lab", help="CNI_CONTAINERID")
    c.add_argument("--ifname", default="eth0", help="CNI_IFNAME")

    p = command("get", cmd_get, "list objects like kubectl get: pods (po), nodes (no), services (svc), endpoints "
                "(ep), deployments (deploy), namespaces (ns), networkpolicies (netpol), all; several with commas",
                "lab get pods\nlab get pods -o wide\nlab get po -A -l app=nginx\nlab get deploy,svc\nlab get all -A\n"
                "lab get pods --field-selector spec.nodeName=node1\nlab get svc nginx -o yaml\nlab get pods -o name\n"
                "lab get pods -o jsonpath='{.items[*].status.podIP}'\nlab get ns --show-labels\nlab get netpol -A")
    p.add_argument("resource", metavar="KIND[,KIND...]")
    p.add_argument("names", nargs="*", help="only these")
    p.add_argument("-n", "--namespace")
    p.add_argument("-A", "--all-namespaces", action="store_true")
    p.add_argument("-l", "--selector", help="label selector: app=web,tier!=db, 'env in (a,b)', key, !key")
    p.add_argument("--field-selector", help="e.g. spec.nodeName=node1, metadata.name!=x")
    p.add_argument("--show-labels", action="store_true", help="a LABELS column")
    p.add_argument("-w", "--watch", action="store_true", help="then a line for every object that comes or changes")
    p.add_argument("-o", "--output", metavar="wide|json|yaml|name|jsonpath=...|custom-columns=...")
    p.add_argument("--sort-by", metavar="PATH", help="sort by a field, e.g. .metadata.name or .status.podIP")

    p = command("verify", cmd_verify, "check the whole lab: pod to pod without NAT, services, DNS, NodePort, "
                "hostPort, egress, MTU; exit code 0 only when everything passes",
                "lab verify\nlab verify --junit verify.xml\nlab verify -o json\nlab verify --expect policy.yaml")
    p.add_argument("--junit", metavar="FILE", help="also write JUnit XML (for CI systems)")
    p.add_argument("--html", metavar="FILE", help="also write the matrix and the failures as an HTML page")
    p.add_argument("-o", "--output", choices=("table", "json"), default="table")
    p.add_argument("--expect", metavar="FILE", help="expectations as data: from/to/port/expect: open|closed")
    p.add_argument("--all-pairs", action="store_true",
                   help=f"probe every pod pair, also past {COVERAGE_AFTER} pods (where the coverage pairs are the "
                   "default)")

    p = command("break", cmd_break, "inject a fault into the lab, to find with `lab verify` (study mode)",
                "lab break --list\nlab break vxlan-fdb\nlab break ipmasq --node node2\n"
                "lab break random         # a fault and a node at random, not shown\nlab break --reveal")
    p.add_argument("fault", nargs="?", help="the fault's name (see --list), or random")
    p.add_argument("--reveal", action="store_true", help="say which fault `lab break random` hid")
    p.add_argument("--list", action="store_true", help="list the faults, one per line, name first")
    p.add_argument("--node", help="the node to break (default: the first)")

    p = command("fix", cmd_fix, "repair the lab: lab deploy, plus a full reload of every node's service rules",
                "lab fix\nlab fix -v")
    p.add_argument("-v", "--verbose", action="store_true", help="list every change made")

    p = command("play", cmd_play, "play a lesson of the talk on the lab: each step explained, its commands "
                "shown with their output, then checked",
                "lab play --list\nlab play 04-bridge\nlab play 04 --step          # Enter between steps\n"
                "lab play 04 --check         # only the checks, after typing the commands yourself\n"
                "lab play 04 --check --step  # each step's commands to type, then its checks\n"
                "lab play 04 --cleanup       # undo the lesson")
    p.add_argument("lesson", nargs="?", help="the lesson: its id (04-bridge), number (04) or name (bridge)")
    p.add_argument("--list", action="store_true", help="list the lessons, one per line, id first")
    p.add_argument("--step", action="store_true", help="wait for Enter between steps; with --check: show each "
                   "step's commands, wait while you type them, then check that step")
    p.add_argument("--check", action="store_true", help="only run the checks (of the end state; per step with --step)")
    p.add_argument("--cleanup", action="store_true", help="undo what the lesson made")

    p = command("graph", cmd_graph, "draw the lab: nodes, pod subnets, cni0, pods, tunnels, services, outside",
                "lab graph -o topology.svg\nlab graph -o topology.png\nlab graph -o topology.html")
    p.add_argument("-o", "--output", default="topology.svg", metavar="FILE",
                   help="the file to write; .svg, .png, .html or .dot (default: topology.svg)")

    p = command("controller", cmd_controller, "run the service controller: keep every node's service rules "
                "and DNS records current as pods and nodes come and go",
                "lab controller run                 # until Ctrl-C\nlab controller run --once          # one sync")
    p.add_argument("action", choices=("run",))
    p.add_argument("--interval", type=float, default=0.5, help="seconds between checks (default 0.5)")
    p.add_argument("--once", action="store_true", help="sync once and exit")

    p = command("link", cmd_link, "take a node's cable to the underlay down or up (emulated and VM labs), as "
                "Mininet's `link`: the node keeps running but nobody reaches it; to see what the lab does about a "
                "lost node (endpoints, LoadBalancer failover)",
                "lab link node2 down\nlab link svc/web-lb down     # the node announcing web-lb's address\n"
                "lab link all up")
    p.add_argument("target", metavar="NODE|svc/NAME|all",
                   help="a node, the node announcing a LoadBalancer Service's address (in -n NS), or every node")
    p.add_argument("state", choices=("down", "up"))
    p.add_argument("-n", "--namespace", help="the Service's namespace (default: the context's)")

    p = command("trace", cmd_trace, "follow one real packet through the kernels it crosses: every chain and rule "
                "(service DNAT, NetworkPolicy, masquerade), the route, and what decided",
                "lab trace frontend backend -n shop\nlab trace x/a svc/nginx:80\nlab trace y/b x/a:81 --udp\n"
                "lab trace node/node1 web-abc12\nlab trace outside node/node2:30080\nlab trace x/a svc/nginx --explain")
    p.add_argument("source", metavar="SRC", help="a pod (NAME in -n NS, or NS/NAME), node/NAME or outside")
    p.add_argument("destination", metavar="DST[:PORT]", help="a pod, svc/NAME, node/NAME, outside or an address; "
                                                              "port 80 unless given")
    p.add_argument("--udp", action="store_true", help="a UDP datagram instead of a TCP connection")
    p.add_argument("-n", "--namespace")
    p.add_argument("--explain", action="store_true", help="also the path the lab's rendered rules predict, on paper "
                   "(each endpoint and its chance, the rules that decided, NetworkPolicy's verdict)")

    p = command("describe", cmd_describe, "show one object in kubectl describe's layout: a pod, node, deployment, "
                "namespace, service, its endpoints, or a network policy",
                "lab describe pod web-7d9f-x2k4q\nlab describe node node1\nlab describe deploy nginx\n"
                "lab describe svc nginx\nlab describe ep nginx\nlab describe svc kube-dns -n kube-system\n"
                "lab describe netpol default-deny-ingress -n x\nlab describe ns x")
    p.add_argument("resource", metavar="KIND|KIND/NAME")
    p.add_argument("name", nargs="?")
    p.add_argument("-n", "--namespace")

    p = command("logs", cmd_logs, "a pod's log: its server's access log (when, from which address, what)",
                "lab logs web-7d9f-x2k4q\nlab logs a -n x --tail 5\nlab logs a -n x -f")
    p.add_argument("pod", metavar="POD|pod/POD|deployment/NAME")
    p.add_argument("-n", "--namespace")
    p.add_argument("--tail", type=int, default=100, help="the last N lines (default 100)")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing new lines (Ctrl-C ends)")

    p = command("exec", cmd_exec, "run a command on a node, or inside a pod's network namespace on its node, over "
                "SSH; exits with the command's exit code",
                "lab exec node1 -- ip route\nlab exec node2 -- sh -c 'ip -br link | grep eth0'\n"
                "lab exec web-7d9f-x2k4q -- ip addr\nlab exec backend -n shop -- curl -s http://10.244.1.3/\n"
                "lab exec node/node1 -- hostname\nlab exec outside -- ip neigh\n"
                "lab exec -it tmp -- sh                 # a shell in pod tmp\n"
                "echo hello | lab exec -i tmp -- cat", parents=(inv_long,))
    p.add_argument("node", metavar="NODE|node/NODE|POD|outside|router",
                   help="a node, a pod (in -n NAMESPACE), or the lab's outside host or router")
    p.add_argument("--pod", help="run the command inside this pod's network namespace (on NODE)")
    stdin_and_tty(p)
    p.add_argument("-n", "--namespace", help="the pod's namespace (default: the context's)")
    p.add_argument("--timeout", type=float, default=None,
                   help="seconds after which the command is ended (default: none, as kubectl exec)")
    p.add_argument("command", nargs="*", help="the command and its arguments, after --")

    p = command("ssh", cmd_ssh, "open an interactive shell on a node (OpenSSH client, host key pinned)",
                "lab ssh node1\nlab ssh node1 -- uptime")
    p.add_argument("node", help="node name")
    p.add_argument("command", nargs="*", help="optional command, after --")

    p = command("inventory", cmd_inventory, "make an inventory from Vagrant or an ssh_config (host keys pinned on "
                "first use), or export one for Ansible",
                "vagrant up && lab inventory from-vagrant -o inventories/my-vagrant.yaml\n"
                "lab inventory from-ssh-config ~/.ssh/config node1 node2 node3 --name study -o study.yaml\n"
                "lab inventory export --format ansible -o hosts.yaml", parents=())
    inv_sub = p.add_subparsers(dest="inventory_command", metavar="from-vagrant|from-ssh-config|export")
    inv_sub.required = True
    for name, target, text in (
            ("from-vagrant", "directory", "the VMs `vagrant ssh-config` lists in DIR (a Vagrant project)"),
            ("from-ssh-config", "file", "the Host blocks of an ssh_config FILE")):
        c = inv_sub.add_parser(name, help=f"an inventory of {text}", description=f"an inventory of {text}; "
                               "prints it, or writes it with -o (and the pinned host keys beside it)")
        if target == "directory":
            c.add_argument("directory", nargs="?", default=".", metavar="DIR", help="default: this folder")
        else:
            c.add_argument("file", metavar="FILE")
            c.add_argument("hosts", nargs="*", metavar="HOST", help="only these hosts (default: all)")
        c.add_argument("-o", "--output", metavar="FILE",
                       help="write the inventory here, and the host keys to FILE's folder as <stem>_known_hosts "
                            "(default: print it; the host keys go to the lab's state folder)")
        c.add_argument("--name", help=f"the lab's name (default: {'vagrant' if target == 'directory' else 'lab'})")
        c.add_argument("--network", metavar="CIDR", help="take each node's address from this network "
                       "(default: Vagrant's private network; for an ssh_config the HostName or the default route's)")
    c = inv_sub.add_parser("export", help="the lab's inventory for another tool", parents=[inv_opt])
    c.add_argument("--format", choices=("ansible",), default="ansible", help="ansible: an Ansible YAML inventory")
    c.add_argument("-o", "--output", metavar="FILE", help="write it here (default: print it)")
    return parser


def cmd_completion(args) -> int:
    print(shell_code(args.shell))
    return 0


def parse_command_line(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """kubectl's grammar: a command's names and options in any order (`lab get ep -n kube-system kube-dns`), and
    an argument error that shows the command's own usage."""
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    if not argv or argv[0] not in commands:
        return parser.parse_args(argv)
    command = commands[argv[0]]
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            args = command.parse_intermixed_args(argv[1:])
    except (SystemExit, TypeError) as exc:  # TypeError: a command with commands of its own (lab inventory)
        if isinstance(exc, SystemExit) and exc.code == 0:
            raise
        args = command.parse_args(argv[1:])  # argparse's own message for what is wrong, if anything is
    args.command_name = argv[0]
    return args


def main(argv: Optional[list[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # Everything after the first `--` is a remote command, passed on word for word.
    remote = argv[argv.index("--") + 1:] if "--" in argv else None
    parser = build_parser()
    install_completion(parser)  # answers the shell and exits when it asks; a no-op otherwise
    args = parse_command_line(parser, argv[:argv.index("--")] if remote is not None else argv)
    if remote is not None:
        args.command = remote
    fill_namespace(args)
    args.run_cli = main  # lessons run `lab` commands as steps
    try:
        return args.func(args)
    except LabError as exc:
        prefix = "" if isinstance(exc, NodeError) else "error: "
        for line in str(exc).splitlines():
            err.print(f"lab: {prefix}{line}", style="red", markup=False, soft_wrap=True)
        return exc.exit_code
    except KeyboardInterrupt:
        err.print("[red]lab: interrupted[/]")
        return 130
    except BrokenPipeError:  # the reader went (`lab get pods -o name | head -1`): the rest is not wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())

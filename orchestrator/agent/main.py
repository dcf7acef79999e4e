"""cluster-lab's node agent: the small part of a kubelet/container runtime the lab needs on a node.

Installed by `lab deploy` as /var/lib/cluster-lab/<lab>/agent.pyz (a zipapp of this package) and run over
SSH. Standard library only (Python 3.7+), so any node with python3 can run it.

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
import json
import os
import sys

from .cni import CniError, cni, load_conf
from .contract import CNI_PATH
from .pods import flush_caches, pod_add, pod_del, pods_ensure, pods_purge, pods_reattach
from .probes import probe
from .proxy import proxy_sync
from .restore import restore
from .server import serve


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="agent.pyz")
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
    lib = os.path.dirname(os.path.abspath(sys.argv[0]))  # the lab's folder on the node, which holds agent.pyz
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

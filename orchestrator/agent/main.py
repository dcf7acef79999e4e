"""cluster-lab's node agent: the small part of a kubelet/container runtime the lab needs on a node.

Installed by `lab deploy` as /var/lib/cluster-lab/<lab>/agent.pyz (a zipapp of this package) and run over
SSH. Standard library only (Python 3.7+), so any node with python3 can run it.

  --protocol N VERB                          a verb of contract.VERBS: its request (JSON) on stdin, one
                                              answer (JSON: changed, failed, msg and the verb's payload) on
                                              stdout; a protocol other than contract.PROTOCOL is refused
                                              before the request is read (exit contract.REFUSED)
  cni ADD|DEL|CHECK|VERSION --conf FILE ...   run a CNI network config (list) the way a runtime does:
                                              CNI_* environment, config on stdin, results chained as
                                              prevResult, the result cached for DEL/CHECK, DEL after a
                                              failed ADD (answers as the CNI spec says)
  restore --conf FILE                         after a boot (the boot unit): the network, service rules and
                                              pods, once
  serve --name POD --tcp 80 --udp 80          the built-in pod server: HTTP /hostname /clientip /echo,
                                              and a UDP echo that names the pod and the client
  enter KEY [--tty] -- CMD...                 CMD in pod KEY's namespaces and image root (`lab exec`),
                                              ended when the SSH session goes
  session -- CMD...                           CMD on the node, ended when the SSH session goes (`lab exec NODE`)
  pod-init --hostname H [--busybox] -- ARGV   (the start of a pod's process, in its new UTS namespace)
  relay HOST PORT                             a TCP connection piped to stdin/stdout (`lab port-forward`)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, Callable

from .cni import CniError, cni, load_conf
from .contract import (CNI_PATH, PROTOCOL, REFUSED, VERBS, Answer, ContractError, FlushAnswer, PodsAnswer,
                       PodsApplyAnswer, ProbeAnswer, ProbeFromAnswer, UsageAnswer, refusal)
from .podroot import PodRootError, pod_init, run_in_session
from .usage import usage
from .pods import (enter_pod, flush_caches, forget_neighbours, pod_add, pod_del, pods_ensure, pods_purge, pods_reattach,
                   pods_status)
from .healthz import serve_health_checks
from .probes import probe, probe_from
from .relay import relay
from .proxy import proxy_sync
from .restore import restore
from .server import serve


def pods_apply(lib: str, request) -> PodsApplyAnswer:
    conf = load_conf(open(request.conflist).read(), request.conflist)
    answer = PodsApplyAnswer()
    for pods, done, action in ((request.delete, answer.deleted, pod_del), (request.add, answer.added, pod_add)):
        for pod in pods:
            try:
                done[pod["key"]] = action(lib, conf, request.cni_path, pod)
            except CniError as exc:
                done[pod["key"]] = {"error": str(exc), "code": exc.code}
    answer.changed = bool(answer.deleted or answer.added)
    again = [pod["ip"] for pod in request.add if pod.get("ip") and answer.added[pod["key"]].get("ip") == pod["ip"]]
    if again:
        forget_neighbours(lib, again)
    return answer


def pods_ensure_verb(lib: str, request) -> PodsAnswer:
    conf = load_conf(open(request.conflist).read(), request.conflist) if os.path.exists(request.conflist) else None
    pods = pods_ensure(lib, request.lab, request.keep, conf, request.cni_path)
    return PodsAnswer(changed=any(p["state"] != "running" for p in pods.values()), pods=pods)


def pods_reattach_verb(lib: str, request) -> PodsAnswer:
    pods = pods_reattach(lib, load_conf(open(request.conflist).read(), request.conflist), request.cni_path)
    return PodsAnswer(changed=bool(pods), pods=pods)


def pods_purge_verb(lib: str, request) -> PodsAnswer:
    conf = load_conf(open(request.conflist).read(), request.conflist) if os.path.exists(request.conflist) else None
    pods = pods_purge(lib, request.lab, conf, request.cni_path)
    return PodsAnswer(changed=bool(pods), pods=pods)


def usage_verb(lib: str, request) -> UsageAnswer:
    pods, node = usage(lib, request.seconds)
    return UsageAnswer(pods=pods, node=node)


# verb -> handler of its request (the request class is VERBS[verb], one per verb)
HANDLERS: dict[str, Callable[[str, Any], Answer]] = {
    "pods-apply": pods_apply,
    "pods-ensure": pods_ensure_verb,
    "pods-status": lambda lib, request: PodsAnswer(pods=pods_status(lib)),
    "pods-reattach": pods_reattach_verb,
    "pods-purge": pods_purge_verb,
    "flush-caches": lambda lib, request: FlushAnswer(pods=flush_caches(lib)),
    "probe": lambda lib, request: ProbeAnswer(results=probe(request.targets, request.timeout)),
    "probe-from": lambda lib, request: ProbeFromAnswer(results=probe_from(request.sources, request.timeout)),
    "proxy-sync": proxy_sync,
    "usage": usage_verb,
}


def answer(reply: Answer, code: int = 0) -> int:
    """Print `reply`; a failure's message goes to stderr too, as one line."""
    print(reply.to_json())
    if reply.failed:
        print(f"node agent: {reply.msg}", file=sys.stderr)
        return code or 1
    return code


def run_verb(lib: str, verb: str, protocol, stdin) -> int:
    """Answer one request of the contract, read from `stdin`, or refuse it when it is in another protocol."""
    if protocol != PROTOCOL:
        return answer(refusal(protocol), REFUSED)
    try:
        request = VERBS[verb].from_json(stdin.read() or "{}")
        return answer(HANDLERS[verb](lib, request))
    except CniError as exc:
        code = f" (CNI error code {exc.code})" if exc.code != 999 else ""
        return answer(Answer(failed=True, msg=f"{verb}: {exc}{code}"))
    except (ContractError, OSError) as exc:
        return answer(Answer(failed=True, msg=f"{verb}: {exc}"))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="agent.pyz")
    parser.add_argument("--protocol", type=int, help="the contract's protocol the caller speaks")
    sub = parser.add_subparsers(dest="verb", required=True)
    c = sub.add_parser("cni")
    c.add_argument("command", choices=["ADD", "DEL", "CHECK", "VERSION"])
    c.add_argument("--conf", required=True, help="network config (list) file, or - for stdin")
    c.add_argument("--netns", default="")
    c.add_argument("--id", default="cni-lab")
    c.add_argument("--ifname", default="eth0")
    c.add_argument("--cni-path", default=CNI_PATH)
    c.add_argument("--runtime-config", default="{}")
    for verb in VERBS:
        sub.add_parser(verb)
    rest = sub.add_parser("restore")
    rest.add_argument("--conf", required=True)
    rest.add_argument("--cni-path", default=CNI_PATH)
    h = sub.add_parser("healthz")
    h.add_argument("--port", action="append", default=[])
    s = sub.add_parser("serve")
    s.add_argument("--name", required=True)
    s.add_argument("--tcp", type=int, action="append", default=[])
    s.add_argument("--udp", type=int, action="append", default=[])
    e = sub.add_parser("enter")
    e.add_argument("key")
    e.add_argument("--tty", action="store_true")
    e.add_argument("command", nargs=argparse.REMAINDER)
    w = sub.add_parser("session")
    w.add_argument("command", nargs=argparse.REMAINDER)
    r = sub.add_parser("relay")
    r.add_argument("host")
    r.add_argument("port", type=int)
    i = sub.add_parser("pod-init")
    i.add_argument("--hostname", required=True)
    i.add_argument("--busybox", action="store_true")
    i.add_argument("--tool", action="append", default=[])
    i.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    lib = os.path.dirname(os.path.abspath(sys.argv[0]))  # the lab's folder on the node, which holds agent.pyz
    if args.verb in VERBS:
        return run_verb(lib, args.verb, args.protocol, sys.stdin)
    if args.protocol is not None and args.protocol != PROTOCOL:
        return answer(refusal(args.protocol), REFUSED)
    try:
        if args.verb in ("enter", "pod-init", "session"):
            command = args.command[1:] if args.command[:1] == ["--"] else args.command
            if args.verb == "enter":
                return enter_pod(lib, args.key, command, args.tty)
            if args.verb == "session":
                return run_in_session(command)
            pod_init(lib, args.hostname, args.busybox, args.tool, command)
        if args.verb == "relay":
            return relay(args.host, args.port)
        if args.verb == "serve":
            serve(args.name, args.tcp, args.udp)
        if args.verb == "healthz":
            serve_health_checks(lib, args.port)
            return 0
        if args.verb == "cni":
            text = sys.stdin.read() if args.conf == "-" else open(args.conf).read()
            result = cni(args.command, load_conf(text, args.conf), args.id, args.netns, args.ifname,
                         args.cni_path, json.loads(args.runtime_config))
            if result is not None:
                print(json.dumps(result, indent=2))
            return 0
        report = restore(lib, args.conf, args.cni_path)
        print(report.to_json())
        for line in report.errors:
            print(f"node agent: restore: {line}", file=sys.stderr)
        return 1 if report.errors else 0
    except CniError as exc:
        code = f" (CNI error code {exc.code})" if exc.code != 999 else ""
        print(f"node agent: {exc}{code}", file=sys.stderr)
        return 1
    except (OSError, PodRootError) as exc:
        print(f"node agent: {exc}", file=sys.stderr)
        return 1

"""The Gateway API's proxy: requests per second and p99 latency through a Gateway (nginx in its gateway pod) and
through the Ingress controller (the same proxy, ingress-lab), each as a ratio to the same client straight to a pod
(aim: >= 0.5 of direct); and with 500 HTTPRoutes on the Gateway,
the seconds from `lab apply` of one more route to the route served (aim: < 1 s).

3 emulated nodes. The client runs in node1's namespace, which reaches the pods and the Gateway's address alike:
THREADS threads send HTTP/1.0 GETs for DURATION seconds (a new connection each, as the pod server closes it).
Run as root: .venv/bin/python bench/gateway.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import deployment_yaml, lab, record, use_private_state  # noqa: E402

from orchestrator.core.state import LabFiles  # noqa: E402

NAME = "benchgw"
THREADS, DURATION = 8, 5.0
ROUTES = 500
THROUGHPUT_AIM, RELOAD_AIM = 0.5, 1.0

LOAD = """
import json, socket, sys, threading, time
host, port, hostname = sys.argv[1], int(sys.argv[2]), sys.argv[3]
seconds, threads = float(sys.argv[4]), int(sys.argv[5])
latencies, errors = [], [0]
stop = time.monotonic() + seconds
def worker():
    while time.monotonic() < stop:
        start = time.monotonic()
        try:
            with socket.create_connection((host, port), timeout=2) as sock:
                sock.sendall(f"GET /hostname HTTP/1.0\\r\\nHost: {hostname}\\r\\n\\r\\n".encode())
                data = b""
                while chunk := sock.recv(4096):
                    data += chunk
            if b" 200 " not in data.split(b"\\r\\n", 1)[0]:
                errors[0] += 1
                continue
            latencies.append(time.monotonic() - start)
        except OSError:
            errors[0] += 1
pool = [threading.Thread(target=worker) for _ in range(threads)]
for t in pool: t.start()
for t in pool: t.join()
latencies.sort()
print(json.dumps({"rps": len(latencies) / seconds, "errors": errors[0],
                  "p99": latencies[int(0.99 * (len(latencies) - 1))] * 1000 if latencies else None}))
"""

# Waits until GET PATH is served (200) and prints when (time.monotonic(), the same clock as this process's).
POLL = """
import socket, sys, time
host, hostname, path = sys.argv[1], sys.argv[2], sys.argv[3]
while True:
    try:
        with socket.create_connection((host, 80), timeout=1) as sock:
            sock.sendall(f"GET {path} HTTP/1.0\\r\\nHost: {hostname}\\r\\n\\r\\n".encode())
            if b" 200 " in sock.recv(64):
                print(time.monotonic())
                break
    except OSError:
        pass
    time.sleep(0.01)
"""

GATEWAY = """---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: bench}
spec:
  gatewayClassName: lab
  listeners: [{name: http, port: 80, protocol: HTTP}]
"""


INGRESS = """---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: bench}
spec:
  rules:
    - host: ingress.example.com
      http: {paths: [{path: /hostname, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}]}
"""


def route_yaml(name: str, path: str) -> str:
    return (f"---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: {name}}}\n"
            f"spec:\n  parentRefs: [{{name: bench}}]\n  hostnames: [bench.example.com]\n  rules:\n"
            f"    - matches: [{{path: {{type: PathPrefix, value: {path}}}}}]\n"
            f"      backendRefs: [{{name: web, port: 80}}]\n")


def apply(inv_path: str, text: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "orchestrator.cli", "apply", "-i", inv_path, "-f", "-"], input=text,
                   capture_output=True, text=True, check=True)
    return time.perf_counter() - start


def load(host: str, hostname: str) -> dict:
    out = subprocess.run(["ip", "netns", "exec", f"{NAME}-node1", sys.executable, "-c", LOAD, host, "80", hostname,
                          str(DURATION), str(THREADS)], capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def reload_seconds(inv_path: str, address: str, i: int) -> float:
    """From `lab apply` of one more route to its path served through the Gateway."""
    poller = subprocess.Popen(["ip", "netns", "exec", f"{NAME}-node1", sys.executable, "-c", POLL, address,
                               "bench.example.com", f"/new{i}"], stdout=subprocess.PIPE, text=True)
    time.sleep(0.2)  # the poller runs (and gets its 404s) before the apply starts
    start = time.monotonic()
    apply(inv_path, route_yaml(f"new{i}", f"/new{i}"))
    out, _ = poller.communicate(timeout=60)
    return float(out) - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    state = use_private_state()
    lab("up", "--name", NAME, "--nodes", "3")
    try:
        inv_path = str(state / NAME / "inventory.yaml")
        lab("deploy", "-i", inv_path)
        apply(inv_path, deployment_yaml("web", 3) + "---\napiVersion: v1\nkind: Service\nmetadata: {name: web}\n"
              "spec: {selector: {app: web}, ports: [{port: 80}]}\n"
              + GATEWAY + route_yaml("load", "/hostname") + INGRESS)
        objects = LabFiles.of(NAME).read_objects()
        address = objects.services["default/bench-lab"].load_balancer_ip
        ingress = objects.services["kube-system/ingress-lab"].load_balancer_ip
        pod = next(p for p in objects.pods.values() if p.owner == "Deployment/default/web")
        assert address and ingress and pod.ip
        runs = []
        for _ in range(args.repeat):  # in turns, so a slow moment of the machine hits all three
            runs.append((load(pod.ip, pod.ip), load(address, "bench.example.com"),
                         load(ingress, "ingress.example.com")))
        many = apply(inv_path, "".join(route_yaml(f"r{i}", f"/r{i}") for i in range(ROUTES)))
        reloads = [reload_seconds(inv_path, address, i) for i in range(args.repeat)]
        unchanged = statistics.median(apply(inv_path, route_yaml("load", "/hostname")) for _ in range(args.repeat))
    finally:
        lab("down", "--name", NAME)
    direct_rps, gateway_rps, ingress_rps = (statistics.median(run[i]["rps"] for run in runs) for i in range(3))
    direct_p99, gateway_p99, ingress_p99 = (statistics.median(run[i]["p99"] for run in runs) for i in range(3))
    errors = sum(part["errors"] for run in runs for part in run)
    lines = [f"3 emulated nodes; a client on node1, {THREADS} threads for {DURATION:g} s, HTTP/1.0 (a connection "
             f"a request), median of {args.repeat} runs in turns; {errors} errors.", "",
             "| nginx in a gateway pod | direct to a pod | through the Gateway | through the Ingress | gateway / "
             "direct (aim >= 0.5) | ingress / direct (aim >= 0.5) |",
             "|---|---|---|---|---|---|",
             f"| requests per second | {direct_rps:.0f} | {gateway_rps:.0f} | {ingress_rps:.0f} | "
             f"{gateway_rps / direct_rps:.2f} | {ingress_rps / direct_rps:.2f} |",
             f"| p99 latency | {direct_p99:.1f} ms | {gateway_p99:.1f} ms | {ingress_p99:.1f} ms | "
             f"{direct_p99 / gateway_p99:.2f} (direct / gateway) | {direct_p99 / ingress_p99:.2f} (direct / ingress) |",
             "",
             f"`lab apply` of {ROUTES} HTTPRoutes at once: {many:.1f} s. Then one more route, from `lab apply` to "
             f"served: median {statistics.median(reloads):.2f} s, worst {max(reloads):.2f} s "
             f"(median / aim of {RELOAD_AIM:g} s: {statistics.median(reloads) / RELOAD_AIM:.2f}). Of that, `lab apply` "
             f"of an unchanged route (the CLI's start, the plan, a sync that changes nothing) takes {unchanged:.2f} s."]
    record("Gateway and Ingress throughput, and reload (bench/gateway.py)", lines)


if __name__ == "__main__":
    main()

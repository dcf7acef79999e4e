#!/usr/bin/env bash
# Part of `make demo`: the Kubernetes network model, shown. A pod asks a pod on every node which
# address it saw; with no NAT between pods, each answers with the asking pod's own IP. Then it asks
# the nginx service by name, through the cluster DNS, a few times: the answers come from all pods.
set -euo pipefail
lab=${1:-lab}
pods=$("$lab" get pods -o json | python3 -c '
import json, sys
for p in json.load(sys.stdin)["items"]:
    print(p["metadata"]["name"], p["spec"]["nodeName"], p["status"]["podIP"])')
read -r src_name src_node src_ip <<<"$(echo "$pods" | head -1)"
echo
echo "From $src_name ($src_ip, on $src_node):"
while read -r name node ip; do
    seen=$("$lab" exec "$src_node" --pod "$src_name" -- curl -s --max-time 3 "http://$ip/clientip" || echo "unreachable")
    printf '  -> %-28s %-12s on %-6s saw the client as %s\n' "$name" "$ip" "$node" "$seen"
done <<<"$pods"
echo
echo "From $src_name, by name through the cluster DNS: curl http://nginx/hostname, 6 times:"
"$lab" exec "$src_node" --pod "$src_name" -- sh -c \
    'getent hosts nginx; for i in 1 2 3 4 5 6; do curl -s --max-time 3 http://nginx/hostname; done' | sed 's/^/  /'

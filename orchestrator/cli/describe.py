"""kubectl describe's layouts, as (label, value) lines: pods, nodes, deployments, namespaces, services, endpoints
and network policies."""

from __future__ import annotations

from orchestrator.core.manifests import fmt_labels
from orchestrator.core.objects import LabObjects, NetworkPolicy, Pod, Service
from orchestrator.core.policy_spec import parse_policy_spec


def describe_service(s: Service, objects: LabObjects, as_endpoints: bool) -> list[tuple[str, str]]:
    """`kubectl describe svc` (or `describe ep`) as (label, value) lines."""
    key = s.key
    labels = fmt_labels(s.labels).replace(",", "\n" + " " * 19) or "<none>"
    lines = [("Name:", s.name), ("Namespace:", s.namespace), ("Labels:", labels), ("Annotations:", "<none>")]
    if not as_endpoints:
        lines += [("Selector:", fmt_labels(s.selector) or "<none>"), ("Type:", s.type), ("IP:", s.cluster_ip)]
        for port in s.ports:
            eps = objects.endpoints.get(key, {}).get(port.name or "", [])
            lines += [("Port:", f"{port.name or '<unset>'} {port.port}/{port.protocol}"),
                      ("TargetPort:", f"{port.target_port}/{port.protocol}")]
            if port.node_port:
                lines.append(("NodePort:", f"{port.name or '<unset>'} {port.node_port}/{port.protocol}"))
            lines.append(("Endpoints:", ",".join(e.address for e in eps) or "<none>"))
        return lines + [("Session Affinity:", s.session_affinity), ("Events:", "<none>")]
    lines.append(("Subsets:", ""))
    for port in s.ports:
        eps = objects.endpoints.get(key, {}).get(port.name or "", [])
        lines += [("  Addresses:", ",".join(e.ip for e in eps) or "<none>"), ("  NotReadyAddresses:", "<none>"),
                  ("  Ports:", ""), ("    Name", "Port  Protocol"), ("    ----", "----  --------"),
                  (f"    {port.name or '<unset>'}", f"{eps[0].port if eps else port.target_port}     "
                                                    f"{port.protocol}")]
    return lines + [("Events:", "<none>")]


def print_described(lines: list[tuple[str, str]]) -> None:
    for label, value in lines:
        print(f"{label:<18} {value}".rstrip())


def describe_peers(peers, word: str) -> list[tuple[str, str]]:
    if peers is None:
        return [(f"    {word}:", f"<any> (traffic not restricted by {'source' if word == 'From' else 'destination'})")]
    lines = []
    for peer in peers:
        lines.append((f"    {word}:", ""))
        if peer.ip_block is not None:
            lines += [("      IPBlock:", ""), ("        CIDR:", str(peer.ip_block.cidr)),
                      ("        Except:", ", ".join(str(e) for e in peer.ip_block.excepts))]
        if peer.namespace_selector is not None:
            lines.append(("      NamespaceSelector:", peer.namespace_selector.text()))
        if peer.pod_selector is not None:
            lines.append(("      PodSelector:", peer.pod_selector.text()))
    return lines


def describe_netpol(record: NetworkPolicy) -> list[tuple[str, str]]:
    """`kubectl describe netpol` as (label, value) lines."""
    spec = parse_policy_spec(record.spec, f"networkpolicy {record.namespace}/{record.name}")
    lines = [("Name:", record.name), ("Namespace:", record.namespace), ("Created on:", record.created),
             ("Labels:", fmt_labels(record.labels) or "<none>"), ("Annotations:", "<none>"), ("Spec:", ""),
             ("  PodSelector:", spec.pod_selector.text().replace("<none>", "<none> (Allowing the specific traffic "
                                                                           "to all pods in this namespace)"))]
    for direction, rules, word in (("Ingress", spec.ingress, "From"), ("Egress", spec.egress, "To")):
        if direction not in spec.policy_types:
            lines.append((f"  Not affecting {direction.lower()} traffic", ""))
            continue
        lines.append((f"  Allowing {direction.lower()} traffic:", ""))
        if not rules:
            lines.append(("    <none> (Selected pods are isolated for " + direction.lower() + " connectivity)", ""))
        for i, rule in enumerate(rules):
            if i:
                lines.append(("    ----------", ""))
            if rule.ports is None:
                lines.append(("    To Port:", "<any> (traffic allowed to all ports)"))
            for port in rule.ports or ():
                number = port.port if port.port is not None else "<any>"
                ranged = f"-{port.end_port}" if port.end_port else ""
                lines.append(("    To Port:", f"{number}{ranged}/{port.protocol}"))
            lines += describe_peers(rule.peers, word)
    lines.append(("  Policy Types:", ", ".join(spec.policy_types)))
    return lines


def describe_pod(pod: Pod, inv) -> list[tuple[str, str]]:
    """`kubectl describe pod` as (label, value) lines."""
    node = next((n for n in inv.nodes if n.name == pod.node), None)
    lines = [("Name:", pod.name), ("Namespace:", pod.namespace),
             ("Node:", f"{pod.node}/{node.address}" if node else pod.node), ("Start Time:", pod.created),
             ("Labels:", fmt_labels(pod.labels).replace(",", "\n" + " " * 19) or "<none>"),
             ("Annotations:", "<none>"), ("Status:", "Running"), ("IP:", pod.ip or "<none>"),
             ("IPs:", ""), ("  IP:", pod.ip or "<none>")]
    if pod.owner:
        lines.append(("Controlled By:", f"{pod.owner.split('/', 1)[0]}/{pod.owner.rsplit('/', 1)[1]}"))
    lines += [("Containers:", ""), ("  server:", ""), ("    Image:", "cluster-lab's pod server (the image is not run)")]
    for port in pod.ports:
        lines.append(("    Port:", f"{port.container_port}/{port.protocol}" + (f" ({port.name})" if port.name else "")))
        if port.host_port:
            lines.append(("    Host Port:", f"{port.host_port}/{port.protocol}"))
    lines += [("    State:", "Running"), ("    Ready:", "True"),
              ("Network:", f"netns {pod.netns} on {pod.node}"), ("Events:", "<none>")]
    return lines


def describe_node(node, objects: LabObjects) -> list[tuple[str, str]]:
    """`kubectl describe node` as (label, value) lines: addresses, pod CIDR and the pods on it."""
    subnet = objects.subnets.get(node.name)
    pods = sorted((p for p in objects.pods.values() if p.node == node.name), key=lambda p: (p.namespace, p.name))
    lines = [("Name:", node.name), ("Roles:", "<none>"), ("Labels:", fmt_labels(node.labels) or "<none>"),
             ("Addresses:", ""), ("  InternalIP:", str(node.address)), ("  Hostname:", node.name),
             ("PodCIDR:", subnet or "<none>"), ("PodCIDRs:", subnet or "<none>"),
             ("Ready:", "True" if subnet else "False (no pod network: run `lab deploy`)"),
             ("Non-terminated Pods:", f"({len(pods)} in total)"), ("  Namespace", "Name  IP")]
    lines += [(f"  {p.namespace}", f"{p.name}  {p.ip or '<none>'}") for p in pods]
    return lines + [("Events:", "<none>")]


def describe_deployment(record) -> list[tuple[str, str]]:
    """`kubectl describe deploy` as (label, value) lines (`record`: a cli.resources.DeploymentRecord)."""
    n, ready = record.replicas, record.ready
    return [("Name:", record.name), ("Namespace:", record.namespace),
            ("CreationTimestamp:", record.created or "<unknown>"), ("Selector:", fmt_labels(record.selector)),
            ("Replicas:", f"{n} desired | {n} updated | {n} total | {ready} available | {n - ready} unavailable"),
            ("StrategyType:", "Recreate (the lab's pods are made again when the template changes)"),
            ("Pod Template:", ""), ("  Labels:", fmt_labels(record.selector)), ("Events:", "<none>")]


def describe_namespace(name: str, labels: dict) -> list[tuple[str, str]]:
    return [("Name:", name), ("Labels:", fmt_labels(labels).replace(",", "\n" + " " * 19) or "<none>"),
            ("Annotations:", "<none>"), ("Status:", "Active"), ("", ""),
            ("No resource quota.", ""), ("", ""), ("No LimitRange resource.", "")]

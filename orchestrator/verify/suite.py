"""The built-in reachability suite, run by `lab verify` through pytest (so --junit comes from pytest).

The probes have run before pytest starts (batched: one command per source); each check is one test
here. The testinfra checks look inside pods and nodes through the lab's pytest fixtures, over the
transport `lab verify` probed with (its `LabSession`).
"""

from orchestrator.verify.plugin import lab_session


def pytest_generate_tests(metafunc):
    if "outcome" in metafunc.fixturenames:
        session = lab_session(metafunc.config)
        outcomes = list(session.outcomes) if session is not None else []
        metafunc.parametrize("outcome", outcomes, ids=[o.check.id for o in outcomes])


def test_reachability(outcome):
    check = outcome.check
    assert outcome.ok, f"{check.label}: {outcome.reason}; look at {check.layer}: {check.show}"


def each_server_pod(lab_pods, lab_objects, check) -> list[str]:
    """`check(key, pod host, pod record)` for every server pod; the problems it returned (None: none), in pod
    order, so that one failure names every pod that has it."""
    found = [check(key, pod, lab_objects.pods[key]) for key, pod in lab_pods.items()
             if lab_objects.pods[key].role == "server"]
    return [problem for problem in found if problem]


def test_pods_use_the_cluster_dns(lab_pods, lab_objects, lab_inventory):
    from orchestrator.core.model import dns_ip
    nameserver = f"nameserver {dns_ip(lab_inventory.cluster.service_cidr)}"

    def check(key, pod, record):
        if pod.file("/etc/resolv.conf").contains(nameserver):
            return None
        return f"{key}: /etc/resolv.conf lacks {nameserver}"
    problems = each_server_pod(lab_pods, lab_objects, check)
    assert not problems, "; ".join(problems)


def test_pod_interfaces_have_the_mtu_of_their_node_network(lab_pods, lab_nodes, lab_objects, lab_inventory):
    import json

    from orchestrator.layers.nodes.facts import conflist_path
    wanted = {name: json.loads(node.file(conflist_path(lab_inventory.name)).content_string)["plugins"][0]["mtu"]
              for name, node in lab_nodes.items()}

    def check(key, pod, record):
        mtu = int(pod.file("/sys/class/net/eth0/mtu").content_string)
        if mtu != wanted[record.node]:
            return f"{key}: eth0 MTU {mtu}, the CNI config says {wanted[record.node]}"
        return None if record.ip in pod.interface("eth0").addresses else f"{key}: eth0 lacks {record.ip}"
    problems = each_server_pod(lab_pods, lab_objects, check)
    assert not problems, "; ".join(problems)


def test_nodes_forward_packets(lab_nodes):
    for name, node in lab_nodes.items():
        assert node.sysctl("net.ipv4.ip_forward") == 1, f"{name}: net.ipv4.ip_forward is off"

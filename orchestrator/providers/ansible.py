"""`lab inventory export --format ansible`: a lab's inventory as an Ansible inventory (YAML), host keys
pinned too."""

from __future__ import annotations

from pathlib import Path

from orchestrator.core.inventory import own_labels
from orchestrator.core.model import Inventory
from orchestrator.core.render import dump_yaml
from orchestrator.core.script import quote_argv


def ansible_inventory(inv: Inventory, subnets: dict[str, str]) -> str:
    """`inv` as an Ansible YAML inventory: group cluster_lab, child group nodes; host keys stay pinned."""
    hosts = {}
    for node in inv.nodes:
        ssh = node.ssh
        host = {"ansible_host": node.ssh_host, "ansible_port": ssh.port, "ansible_user": ssh.user,
                "ansible_become": ssh.sudo}
        if ssh.key is not None:
            host["ansible_ssh_private_key_file"] = str(Path(ssh.key).absolute())
        host["ansible_ssh_common_args"] = quote_argv(ssh.openssh_options())
        host["node_address"] = str(node.address)
        if subnets.get(node.name):
            host["pod_subnet"] = subnets[node.name]
        if own_labels(node):  # the inventory's; the kubelet adds the well-known ones itself
            host["node_labels"] = own_labels(node)
        hosts[node.name] = host
    cluster = inv.cluster
    data = {"cluster_lab": {
        "children": {"nodes": {"hosts": hosts}},
        "vars": {"cluster_name": cluster.name, "cluster_cidr": str(cluster.cluster_cidr),
                 "service_cidr": str(cluster.service_cidr), "dns_domain": cluster.dns_domain,
                 "overlay_backend": cluster.overlay.backend,
                 "ansible_python_interpreter": "/usr/bin/python3"},
    }}
    return (f"# Ansible inventory of lab {cluster.name}, made by `lab inventory export --format ansible` "
            f"from {inv.source}.\n# Try: ansible -i THIS_FILE nodes -m ping\n"
            + dump_yaml(data))

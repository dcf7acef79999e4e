"""Cluster DNS, as kube-dns is on a cluster: a Service at the cluster DNS address (kubelet's --cluster-dns)
in front of a Deployment of two dnsmasq pods. Pure: the manifests, rendered from templates/dns/. The
records themselves are a projection of the Service objects (layers/services/plan.py `dns_records`), which
the node agent writes in the same sync as the service rules, so a name and its rules change together."""

from __future__ import annotations

from orchestrator.core.model import Cluster, dns_ip
from orchestrator.core.render import render


TEMPLATE = "dns/kube-dns.yaml.j2"


def cluster_dns_yaml(cluster: Cluster) -> tuple[str, str]:
    """The kube-system/kube-dns Service and Deployment of `cluster`, as YAML, and where it comes from."""
    return render(TEMPLATE, dns_ip=dns_ip(cluster.service_cidr)), f"templates/{TEMPLATE}"

"""Each of the lab's Gateways gets its proxy as an implementation provisions one: a Deployment of nginx (a gateway
pod) and a Service of type LoadBalancer, in the Gateway's namespace, named <gateway>-<class>. Their manifests
(pure), and the nginx.conf of every proxy for the service sync to carry to the nodes."""

from __future__ import annotations

from typing import Any

from orchestrator.agent.contract import GATEWAY_IMAGE, GATEWAY_NAME_LABEL, gateway_dir, lab_file
from orchestrator.core.model import Inventory
from orchestrator.core.objects import Endpoints, LabObjects
from orchestrator.core.render import render
from orchestrator.layers.gateway.nginx import render_config
from orchestrator.layers.gateway.routes import Gateway, attach
from orchestrator.layers.gateway.world import proxy_name, world_of

TEMPLATE = "gateway/proxy.yaml.j2"
MANAGED_BY = "app.kubernetes.io/managed-by"


def proxy_yaml(gateway: Gateway) -> tuple[str, str]:
    """The proxy's Deployment and Service; as YAML, and where it comes from. A port two listeners share is one
    Service port, named after the first of them; a TLS port the Gateway always serves is named https."""
    named: dict[int, str] = {}
    for listener in gateway.listeners:
        named.setdefault(listener.port, "https" if listener.port in gateway.tls_ports else listener.name)
    for port in gateway.tls_ports:
        named.setdefault(port, "https")
    service_ports = [(name, port) for port, name in named.items()]
    return (render(TEMPLATE, name=proxy_name(gateway), namespace=gateway.namespace, gateway=gateway.name,
                   label=GATEWAY_NAME_LABEL, image=GATEWAY_IMAGE, service_ports=service_ports,
                   address=gateway.address, ports=sorted(named)),
            f"templates/{TEMPLATE} (Gateway {gateway.key})")


def is_proxy_service(labels: dict[str, str]) -> bool:
    return GATEWAY_NAME_LABEL in labels and labels.get(MANAGED_BY) == "cluster-lab"


def proxy_configs(inv: Inventory, objects: LabObjects, eps: Endpoints) -> dict[str, Any]:
    """The `gateways` part of every node's service sync: each served Gateway's nginx.conf, and the files it names
    (its certificates)."""
    world = world_of(objects)
    attachment = attach(world)
    configs = {key: render_config(world.gateways[key], attachment, world, objects.services, eps,
                                  lab_file(inv.name, gateway_dir(key)))
               for key in sorted(attachment.gateways)}
    return {"gateways": {key: c.text for key, c in configs.items()},
            "gateway_files": {key: dict(c.files) for key, c in configs.items()}}

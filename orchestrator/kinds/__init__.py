"""The kinds of objects the lab knows: the registry (registry.py) and one module per kind, each registering
itself when imported here. Import `orchestrator.kinds` to have them all."""

# isort: skip_file
# The order of registration is the order kinds are listed in (`lab get all`, "the lab understands: ...").
from orchestrator.kinds import pod, deployment, service, endpointslice, namespace, networkpolicy, node  # noqa: F401
from orchestrator.kinds import event  # noqa: F401
from orchestrator.kinds import ipaddresspool, l2advertisement  # noqa: F401
from orchestrator.kinds import gatewayclass, gateway, httproute, referencegrant  # noqa: F401
from orchestrator.kinds import ingressclass, ingress, secret, configmap  # noqa: F401
from orchestrator.kinds.registry import (KINDS, Item, Kind, Plan, by_name, load_text, manifest, parse, parse_all, plan,
                                         register)

__all__ = ["KINDS", "Item", "Kind", "Plan", "by_name", "load_text", "manifest", "parse", "parse_all", "plan",
           "register"]

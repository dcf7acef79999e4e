"""IPAddressPool (metallb.io/v1beta1): the addresses LoadBalancer Services get, as MetalLB's users write them.
Its `settle` gives every LoadBalancer Service its address after each apply or delete
(layers/services/loadbalancer.py)."""

from __future__ import annotations

from dataclasses import replace

from orchestrator.core.errors import InputError
from orchestrator.core.manifests import Doc, Manifest, Warn
from orchestrator.core.model import Inventory
from orchestrator.core.objects import LabObjects
from orchestrator.kinds.kept import forgetter, json_shower, lister, recorder
from orchestrator.kinds.registry import Item, Kind, Plan, register
from orchestrator.kinds.show import age, described_labels, lead, lead_columns
from orchestrator.layers.services.loadbalancer import (METALLB_API, POOL_KIND, assign_addresses, overlapping,
                                                       parse_pool, pools_of)
from orchestrator.layers.pods.namespaces import namespace_labels


def parse(doc: Doc, head: Manifest, warn: Warn) -> Manifest:
    return replace(head, spec=parse_pool(head.key, head.name, head.labels, doc.data.get("spec"), head.source))


def record(m: Manifest, plan: Plan) -> str:
    clash = overlapping(m.spec, [p for p in pools_of(plan.objects.extra)])
    if clash:
        raise InputError(f"{m.source}: spec.addresses: {clash}; give each pool its own addresses")
    return recorder(POOL_KIND)(m, plan)


def settle(plan: Plan) -> None:
    """Every LoadBalancer Service's address, from the pools as they are now."""
    services = plan.objects.services
    for key, address in assign_addresses(services, pools_of(plan.objects.extra),
                                         namespace_labels(plan.objects)).items():
        if services[key].load_balancer_ip != address:
            services[key] = replace(services[key], load_balancer_ip=address)


def table(found: list[Item], inv: Inventory, objects: LabObjects, all_namespaces: bool,
          wide: bool) -> tuple[list[str], list[list[str]]]:
    """The columns MetalLB's CRD prints: NAME, AUTO ASSIGN, AVOID BUGGY IPS, ADDRESSES."""
    rows = []
    for item in found:
        spec = item.record["spec"]
        rows.append(lead(item.namespace, all_namespaces) + [
            item.name, str(spec.get("autoAssign", True)).lower(), str(spec.get("avoidBuggyIPs", False)).lower(),
            "[" + ",".join(f'"{a}"' for a in spec.get("addresses", [])) + "]", age(item.record["created"])])
    return lead_columns(all_namespaces) + ["NAME", "AUTO ASSIGN", "AVOID BUGGY IPS", "ADDRESSES", "AGE"], rows


def describe(item: Item, inv: Inventory, objects: LabObjects) -> list[tuple[str, str]]:
    """The pool and the Services holding its addresses."""
    pool = next(p for p in pools_of(objects.extra) if p.key == f"{item.namespace}/{item.name}")
    holders = sorted(f"{s.load_balancer_ip} {s.key}" for s in objects.services.values()
                     if s.load_balancer_ip and s.load_balancer_ip in {str(a) for a in pool.addresses()})
    spec = item.record["spec"]
    return [("Name:", item.name), ("Namespace:", item.namespace), ("Labels:", described_labels(item.labels)),
            ("API Version:", METALLB_API), ("Kind:", POOL_KIND), ("Addresses:", pool.text),
            ("Auto Assign:", str(pool.auto_assign).lower()), ("Avoid Buggy IPs:", str(pool.avoid_buggy_ips).lower()),
            ("Service Allocation:", str(spec.get("serviceAllocation")) if spec.get("serviceAllocation") else "<none>"),
            ("In use:", "\n".join(holders) or "<none>"), ("Events:", "<none>")]


IP_ADDRESS_POOL = register(Kind(POOL_KIND, "ipaddresspools", "ipaddresspool.metallb.io", api_version=METALLB_API,
                                parse=parse, schema=None, order=20, record=record, forget=forgetter(POOL_KIND),
                                settle=settle, items=lister(POOL_KIND), to_json=json_shower(POOL_KIND, METALLB_API),
                                table=table, describe=describe))

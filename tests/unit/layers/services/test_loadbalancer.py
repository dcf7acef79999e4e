"""LoadBalancer in L2 mode as data (layers/services/loadbalancer.py), and through `lab apply`'s plan: MetalLB's
pool and advertisement fields, the address each Service gets, who announces it, and the one-line errors."""

from __future__ import annotations

from dataclasses import replace
from ipaddress import IPv4Network as Net

import pytest

from orchestrator import kinds
from orchestrator.core.errors import InputError
from orchestrator.core.model import Cluster, Node, Ssh
from orchestrator.core.objects import Endpoint, LabObjects, Service
from orchestrator.layers.services.loadbalancer import (Advertisement, announcers, assign_addresses, election_order,
                                                       parse_advertisement, parse_pool, pending_reason, pools_of)

NODES = [Node(f"node{i}", f"198.18.0.1{i}", f"198.18.0.1{i}", Ssh(), labels={"zone": "a" if i < 3 else "b"})
         for i in (1, 2, 3)]


def pool(name: str, *addresses: str, **spec) -> object:
    return parse_pool(f"metallb-system/{name}", name, spec.pop("labels", {}), {"addresses": list(addresses), **spec},
                      "pool.yaml")


def lb(name: str, namespace: str = "default", created: str = "1", **fields) -> Service:
    return Service(name=name, namespace=namespace, cluster_ip="10.96.0.9", type="LoadBalancer", created=created,
                   **fields)


def test_pools_take_cidrs_and_ranges_and_skip_buggy_addresses_when_asked():
    p = pool("p", "192.168.10.0/30", "192.168.9.254-192.168.9.255", avoidBuggyIPs=True)
    assert [str(a) for a in p.addresses()] == ["192.168.10.1", "192.168.10.2", "192.168.10.3", "192.168.9.254"]
    assert p.text == "192.168.10.0/30,192.168.9.254-192.168.9.255"


@pytest.mark.parametrize("spec, message", [
    ({"addresses": ["fd00::/120"]}, "spec.addresses[0]: 'fd00::/120' is not an IPv4 CIDR or range (the lab has no "
                                    "IPv6); write e.g. 192.168.10.0/24 or 192.168.9.1-192.168.9.5"),
    ({"addresses": ["10.0.0.9-10.0.0.1"]}, "spec.addresses[0]: '10.0.0.9-10.0.0.1' ends before it starts"),
    ({"addresses": ["10.0.0.0/30", "10.0.0.2-10.0.0.9"]}, "spec.addresses: 10.0.0.0/30 overlaps 10.0.0.2-10.0.0.9"),
    ({"addresses": []}, "spec.addresses: missing or empty"),
    ({"addresses": ["10.0.0.0/30"], "autoassign": False}, "spec.autoassign: unknown field; use addresses, "
                                                          "autoAssign, avoidBuggyIPs, serviceAllocation"),
    ({"addresses": ["10.0.0.0/30"], "serviceAllocation": {"priority": -1}}, "spec.serviceAllocation.priority: -1 is "
                                                                             "not a whole number >= 0"),
])
def test_a_wrong_pool_is_one_line_naming_the_field(spec, message):
    with pytest.raises(InputError) as caught:
        parse_pool("metallb-system/p", "p", {}, spec, "pool.yaml")
    assert str(caught.value).startswith(f"pool.yaml: {message}")


def test_an_address_stays_then_asked_ones_then_the_lowest_free_in_creation_order():
    pools = [pool("p", "10.0.0.1-10.0.0.4")]
    services = {"default/old": lb("old", created="1", load_balancer_ip="10.0.0.3"),
                "default/asks": lb("asks", created="3", requested_ip="10.0.0.1"),
                "default/new": lb("new", created="2"),
                "default/newer": lb("newer", created="4"),
                "default/plain": replace(lb("plain"), type="ClusterIP")}
    assert assign_addresses(services, pools, {}) == {"default/old": "10.0.0.3", "default/asks": "10.0.0.1",
                                                     "default/new": "10.0.0.2", "default/newer": "10.0.0.4"}
    services["default/last"] = lb("last", created="5")
    assert assign_addresses(services, pools, {})["default/last"] is None
    assert pending_reason(services["default/last"], pools, {}) == "no free address left in metallb-system/p"


def test_service_allocation_autoassign_priority_and_the_pool_annotation_choose_the_pool():
    pools = [pool("general", "10.0.0.1-10.0.0.9"),
             pool("manual", "10.0.1.1-10.0.1.9", autoAssign=False),
             pool("shop", "10.0.2.1-10.0.2.9", serviceAllocation={"priority": 10, "namespaces": ["shop"]}),
             pool("labelled", "10.0.3.1-10.0.3.9",
                  serviceAllocation={"priority": 5, "serviceSelectors": [{"matchLabels": {"tier": "gold"}}]})]
    services = {"default/a": lb("a"), "shop/b": lb("b", namespace="shop"),
                "shop/c": lb("c", namespace="shop", labels={"tier": "gold"}),
                "default/d": lb("d", address_pool="manual"),
                "default/e": lb("e", requested_ip="10.0.1.5"),
                "default/f": lb("f", address_pool="nowhere")}
    assert assign_addresses(services, pools, {}) == {
        "default/a": "10.0.0.1", "shop/b": "10.0.2.1", "shop/c": "10.0.3.1", "default/d": "10.0.1.1",
        "default/e": "10.0.1.5", "default/f": None}
    assert pending_reason(services["default/f"], pools, {}) == \
        "no IPAddressPool named 'nowhere' (annotation metallb.io/address-pool)"


def test_an_address_no_pool_serves_any_more_is_given_up():
    services = {"default/a": lb("a", load_balancer_ip="10.0.0.3")}
    assert assign_addresses(services, [pool("p", "10.0.5.0/29")], {}) == {"default/a": "10.0.5.0"}
    assert assign_addresses(services, [], {}) == {"default/a": None}
    assert pending_reason(services["default/a"], [], {}) == "no IPAddressPool: apply one (lab get ipaddresspools -A)"
    other_class = {"default/x": lb("x", load_balancer_class="example.com/other")}
    assert assign_addresses(other_class, [pool("p", "10.0.5.0/29")], {}) == {}


def eps(*nodes: str) -> dict:
    return {"": [Endpoint(f"10.244.{i}.5", 80, node, f"web-{i}") for i, node in enumerate(nodes)]}


def test_one_node_announces_each_address_elected_as_metallb_does_from_those_allowed():
    pools = [pool("p", "10.0.0.0/24")]
    adverts = [Advertisement("metallb-system/l2", "l2")]
    labels = {n.name: n.labels for n in NODES}
    services = {f"default/s{i}": lb(f"s{i}", load_balancer_ip=f"10.0.0.{i}") for i in range(1, 9)}
    endpoints = {key: eps("node1", "node2", "node3") for key in services}
    chosen = announcers(services, pools, adverts, labels, endpoints, set())
    assert chosen == {f"10.0.0.{i}": min(labels, key=lambda n: election_order(n, f"10.0.0.{i}")) for i in range(1, 9)}
    assert len(set(chosen.values())) > 1  # spread over the nodes, not all on the first
    lost = chosen["10.0.0.1"]
    assert announcers(services, pools, adverts, labels, endpoints, {lost})["10.0.0.1"] != lost
    zoned = [parse_advertisement("metallb-system/z", "z", {"nodeSelectors": [{"matchLabels": {"zone": "b"}}]}, "a")]
    assert set(announcers(services, pools, zoned, labels, endpoints, set()).values()) == {"node3"}
    elsewhere = [parse_advertisement("metallb-system/o", "o", {"ipAddressPools": ["other"]}, "a")]
    assert announcers(services, pools, elsewhere, labels, endpoints, set()) == {}


def test_local_is_announced_only_by_a_node_with_an_endpoint_and_nothing_without_endpoints():
    pools, adverts = [pool("p", "10.0.0.0/24")], [Advertisement("metallb-system/l2", "l2")]
    labels = {n.name: n.labels for n in NODES}
    services = {"default/local": lb("local", load_balancer_ip="10.0.0.1", external_traffic_policy="Local"),
                "default/empty": lb("empty", load_balancer_ip="10.0.0.2")}
    chosen = announcers(services, pools, adverts, labels, {"default/local": eps("node3"), "default/empty": eps()},
                        set())
    assert chosen == {"10.0.0.1": "node3"}


def plan(objects: LabObjects, text: str, deleting: bool = False) -> list[str]:
    manifests = kinds.load_text(text, "m.yaml")
    _, lines = kinds.plan(Cluster("t", service_cidr=Net("10.96.0.0/12")), NODES, objects, manifests, "now",
                          deleting=deleting)
    return lines


POOL = ("apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: p, namespace: metallb-system}\n"
        "spec: {addresses: [10.0.0.10-10.0.0.11]}\n")
SERVICE = ("apiVersion: v1\nkind: Service\nmetadata: {name: NAME}\nspec:\n  type: LoadBalancer\n"
           "  selector: {app: web}\n  ports: [{port: 80}]\n")


def test_apply_gives_addresses_from_pools_and_a_pool_applied_later_serves_the_pending():
    objects = LabObjects()
    assert plan(objects, SERVICE.replace("NAME", "a")) == ["service/a created"]
    assert objects.services["default/a"].load_balancer_ip is None
    assert plan(objects, POOL) == ["ipaddresspool.metallb.io/p created"]
    assert objects.services["default/a"].load_balancer_ip == "10.0.0.10"
    assert objects.services["default/a"].ports[0].node_port == 30000  # allocateLoadBalancerNodePorts: true
    plan(objects, POOL, deleting=True)
    assert objects.services["default/a"].load_balancer_ip is None


def test_apply_refuses_overlapping_pools_and_addresses_outside_or_taken_in_one_line():
    objects = LabObjects()
    plan(objects, POOL + "---\n" + SERVICE.replace("NAME", "a"))
    with pytest.raises(InputError, match=r"^m.yaml: spec.addresses: 10.0.0.11/32 overlaps 10.0.0.10-10.0.0.11 of "
                                         r"IPAddressPool metallb-system/p; give each pool its own addresses$"):
        plan(objects, POOL.replace("name: p", "name: q").replace("10.0.0.10-10.0.0.11", "10.0.0.11/32"))
    with pytest.raises(InputError, match=r"^m.yaml: spec.loadBalancerIP: 10.9.9.9 is in no IPAddressPool \(pools: "
                                         r"metallb-system/p 10.0.0.10-10.0.0.11\); give an address of a pool"):
        plan(objects, SERVICE.replace("NAME", "b").replace("  selector", "  loadBalancerIP: 10.9.9.9\n  selector"))
    with pytest.raises(InputError, match=r"spec.loadBalancerIP: 10.0.0.10 is taken by Service default/a"):
        plan(objects, SERVICE.replace("NAME", "b").replace("  selector", "  loadBalancerIP: 10.0.0.10\n  selector"))


@pytest.mark.parametrize("extra, message", [
    ("  externalTrafficPolicy: Local\n", None),
    ("  allocateLoadBalancerNodePorts: maybe\n", "spec.allocateLoadBalancerNodePorts: 'maybe' is not true or false"),
    ("  healthCheckNodePort: 30100\n", "spec.healthCheckNodePort: may only be set when type is LoadBalancer and "
                                       "externalTrafficPolicy is Local"),
    ("  loadBalancerIP: 10.0.0.300\n", "spec.loadBalancerIP: '10.0.0.300' is not an IPv4 address"),
])
def test_load_balancer_fields_are_checked_as_kubernetes_does(extra, message):
    text = SERVICE.replace("NAME", "a").replace("  selector", extra + "  selector")
    if message is None:
        objects = LabObjects()
        plan(objects, POOL + "---\n" + text)
        assert objects.services["default/a"].health_check_node_port == 30001
        return
    with pytest.raises(InputError, match=message):
        plan(LabObjects(), text)
    clusterip = SERVICE.replace("NAME", "c").replace("type: LoadBalancer", "type: ClusterIP")
    with pytest.raises(InputError, match="spec.externalTrafficPolicy: may only be set when type is NodePort or "
                                         "LoadBalancer"):
        plan(LabObjects(), clusterip.replace("  selector", "  externalTrafficPolicy: Local\n  selector"))


def test_pools_read_back_from_the_lab_file_are_the_ones_applied():
    objects = LabObjects()
    plan(objects, POOL)
    again = LabObjects.from_json(objects.to_json())
    assert [(p.key, p.text) for p in pools_of(again.extra)] == [("metallb-system/p", "10.0.0.10-10.0.0.11")]

"""ClusterIP and NodePort allocation (pure): kept, asked for, or the lowest free one; clear errors."""

from dataclasses import replace
from ipaddress import IPv4Network as Net

import pytest

from orchestrator.core.errors import InputError
from orchestrator.kinds import load_text
from orchestrator.layers.services.plan import AddressBook, service_record


CIDR = Net("10.96.0.0/24")


def services_yaml(count: int, kind: str = "ClusterIP", extra: str = "") -> str:
    return "---".join(f"""
apiVersion: v1
kind: Service
metadata: {{name: s{i}}}
spec:
  type: {kind}
  selector: {{app: x}}
  ports: [{{port: 80{extra}}}]
""" for i in range(count))


def record_all(text: str, services: dict, cidr: Net = CIDR) -> dict:
    book = AddressBook(services, cidr)
    for m in load_text(text, "svc.yaml"):
        services[m.key] = service_record(m, services.get(m.key), book, "now")
    return services


def test_addresses_are_the_lowest_free_ones_skipping_reserved_and_kept_on_reapply():
    services = record_all(services_yaml(3, "NodePort"), {})
    assert [s.cluster_ip for s in services.values()] == ["10.96.0.2", "10.96.0.3", "10.96.0.4"]
    assert [s.ports[0].node_port for s in services.values()] == [30000, 30001, 30002]
    again = record_all(services_yaml(3, "NodePort"), {k: replace(v) for k, v in services.items()})
    assert again == services
    many = record_all(services_yaml(10), {})
    assert "10.96.0.10" not in [s.cluster_ip for s in many.values()]  # the cluster DNS address


def test_a_freed_address_is_the_next_one_given():
    services = record_all(services_yaml(3), {})
    del services["default/s1"]
    book = AddressBook(services, CIDR)
    assert book.free_ip() == "10.96.0.3"


def test_taken_and_exhausted_addresses_are_clear_errors():
    services = record_all(services_yaml(1), {})
    taken = services_yaml(1).replace("name: s0", "name: other").replace("type: ClusterIP", "clusterIP: 10.96.0.2")
    with pytest.raises(InputError, match="spec.clusterIP: 10.96.0.2 is taken by service default/s0"):
        record_all(taken, services)
    with pytest.raises(InputError, match="no free address left in the service CIDR 10.96.0.0/28"):
        record_all(services_yaml(20), {}, Net("10.96.0.0/28"))
    with pytest.raises(InputError, match=r"spec.ports\[0\].nodePort: 30005 is already used by service default/s0"):
        record_all(services_yaml(2, "NodePort", ", nodePort: 30005"), {})


def test_nodeports_running_out_is_a_clear_error_not_a_traceback():
    with pytest.raises(InputError, match=r"svc.yaml.*spec.ports\[0\]: no free NodePort left in 30000-32767"):
        record_all(services_yaml(2769, "NodePort"), {}, Net("10.96.0.0/16"))



def test_nodeports_asked_for_are_kept_free_of_allocation_and_not_given_twice():
    two = """
apiVersion: v1
kind: Service
metadata: {name: two}
spec:
  type: NodePort
  selector: {app: x}
  ports: [{name: a, port: 80}, {name: b, port: 81, nodePort: 30000}]
"""
    record = record_all(two, {})["default/two"]
    assert [p.node_port for p in record.ports] == [30001, 30000]  # a does not take b's port
    with pytest.raises(InputError, match=r"spec.ports\[1\].nodePort: 30000 is given to another port of this service"):
        record_all(two.replace("{name: a, port: 80}", "{name: a, port: 80, nodePort: 30000}"), {})


def test_reapplying_services_keeps_their_addresses_and_new_ones_get_the_lowest_free():
    services = record_all(services_yaml(4, "NodePort"), {})
    del services["default/s1"]  # frees 10.96.0.3 and 30001
    mixed = services_yaml(6, "NodePort")  # s0, s2, s3 exist; s1, s4, s5 are new
    again = record_all(mixed, services)
    assert {k: (s.cluster_ip, s.ports[0].node_port) for k, s in again.items()} == {
        "default/s0": ("10.96.0.2", 30000), "default/s1": ("10.96.0.3", 30001), "default/s2": ("10.96.0.4", 30002),
        "default/s3": ("10.96.0.5", 30003), "default/s4": ("10.96.0.6", 30004), "default/s5": ("10.96.0.7", 30005)}

"""Address planning: pure functions over ipaddress objects."""

from __future__ import annotations

from ipaddress import IPv4Network
from typing import Iterable, Optional


def first_free_subnet(pool: IPv4Network, prefix: int, taken: Iterable[IPv4Network]) -> Optional[IPv4Network]:
    """The first /`prefix` subnet of `pool` that overlaps none of `taken`, or None when all do."""
    taken = [net for net in taken if net.overlaps(pool)]
    for subnet in pool.subnets(new_prefix=prefix):
        if not any(subnet.overlaps(net) for net in taken):
            return subnet
    return None


def lease_subnets(pool: IPv4Network, prefix: int, nodes: list[str],
                  leases: dict[str, IPv4Network]) -> dict[str, IPv4Network]:
    """A /`prefix` subnet of `pool` for every node, keeping every existing lease (so adding or removing a
    node never renumbers the others); leases of nodes no longer listed are released. Raises ValueError
    when the pool is full."""
    kept = {name: net for name, net in leases.items() if name in nodes and net.subnet_of(pool)
            and net.prefixlen == prefix}
    result = dict(kept)
    for name in nodes:
        if name not in result:
            subnet = first_free_subnet(pool, prefix, result.values())
            if subnet is None:
                raise ValueError(f"{pool} has no free /{prefix} left for node {name}")
            result[name] = subnet
    return {name: result[name] for name in nodes}

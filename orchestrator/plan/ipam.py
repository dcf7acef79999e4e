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

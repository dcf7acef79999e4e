from ipaddress import IPv4Network as Net

from orchestrator.core.ipam import first_free_subnet


def test_first_free_subnet_skips_every_overlap():
    pool = Net("198.18.0.0/15")
    assert first_free_subnet(pool, 24, []) == Net("198.18.0.0/24")
    assert first_free_subnet(pool, 24, [Net("198.18.0.0/24"), Net("198.18.1.128/25")]) == Net("198.18.2.0/24")
    # a route covering the whole first half of the pool
    assert first_free_subnet(pool, 24, [Net("198.18.0.0/16")]) == Net("198.19.0.0/24")
    # routes outside the pool don't matter
    assert first_free_subnet(pool, 24, [Net("10.0.0.0/8"), Net("0.0.0.0/1")]) == Net("198.18.0.0/24")


def test_first_free_subnet_none_when_full():
    assert first_free_subnet(Net("198.18.0.0/23"), 24, [Net("198.18.0.0/23")]) is None

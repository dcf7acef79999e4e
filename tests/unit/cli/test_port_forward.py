"""kubectl port-forward's port forms."""

import pytest

from orchestrator.cli.portforward import port_pairs
from orchestrator.core.errors import InputError


def test_port_forms_are_kubectls():
    assert port_pairs(["8080:80", "443", ":53", "9000:http"]) == [(8080, "80"), (443, "443"), (0, "53"), (9000, "http")]


@pytest.mark.parametrize("word", ["x:80", "8080:", ""])
def test_bad_port_forms_are_one_line(word):
    with pytest.raises(InputError, match=r"write \[LOCAL:\]REMOTE"):
        port_pairs([word])

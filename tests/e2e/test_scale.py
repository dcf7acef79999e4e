"""A lab past the coverage threshold: 10 emulated nodes, 110 pods. `lab verify` probes the coverage pairs (every
pair of nodes, every pod both ways) and says so; the underlay's neighbours are pinned on every node."""

import json
from pathlib import Path

import pytest

from .conftest import running_lab
from .labtools import lab_cli

REPO = Path(__file__).resolve().parents[2]
NODES, PODS = 10, 110


@pytest.fixture(scope="module")
def big(state_dir):
    with running_lab(state_dir, "s", "--nodes", str(NODES)) as lab:
        lab_cli("deploy", "-i", lab.inventory_path, check=True, timeout=300)
        nginx = (REPO / "examples" / "nginx.yaml").read_text().replace("replicas: 3", f"replicas: {PODS}", 1)
        lab_cli("apply", "-i", lab.inventory_path, "-f", "-", input=nginx, check=True, timeout=300)
        yield lab


def test_verify_probes_the_coverage_pairs_past_100_pods_and_says_so(big):
    proc = lab_cli("verify", "-i", big.inventory_path, "-o", "json", timeout=600)
    report = json.loads(proc.stdout)
    assert proc.returncode == 0, [c["label"] + ": " + c["reason"] for c in report["checks"] if not c["ok"]]
    pairs = {c["id"].split("/")[1] for c in report["checks"] if c["family"] == "pod-to-pod"}
    assert NODES * NODES <= len(pairs) < PODS * PODS  # every node pair, far fewer than all pod pairs
    sources = {p.split("->")[0] for p in pairs}
    targets = {p.split("->")[1] for p in pairs}
    assert len(sources) == len(targets) == PODS  # every pod as source and as destination
    assert f"note: coverage mode ({PODS} pods > 100): {len(pairs)} of {PODS * PODS} pod pairs probed" \
        in " ".join(proc.stderr.split())


def test_every_node_holds_its_underlay_neighbours_as_permanent_entries(big):
    others = {str(n.address) for n in big.inventory.nodes}
    for node in big.inventory.nodes:
        shown = big.transport.run(node.name, ["ip", "neigh", "show", "dev", "eth0", "nud", "permanent"]).stdout
        pinned = {line.split()[0] for line in shown.splitlines()}
        assert others - {str(node.address)} <= pinned, (node.name, others - pinned)

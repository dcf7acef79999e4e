"""`lab verify` hands its run to pytest through the plugin's public `LabSession`: the suite makes one test of
each outcome the probes found, and the plugin's fixtures use the session's open transport and inventory
(no second SSH connection, no lab lookup)."""

import contextlib
import io
from pathlib import Path
from xml.etree import ElementTree

import pytest

from orchestrator.verify import suite
from orchestrator.verify.checks import Check, Outcome
from orchestrator.verify.plugin import LabSession
from orchestrator.verify.report import _Collector


def outcome(name: str, ok: bool, reason: str = "") -> Outcome:
    check = Check(id=f"pod-to-pod/{name}", family="pod-to-pod", source="pod:default/a", target={"proto": "tcp"},
                  want=("reply", "x"), label=f"a -> {name}", layer="cni0", show="ip route")
    return Outcome(check, ok, reason)


def run(path, session: LabSession, *args: str) -> _Collector:
    collector = _Collector()
    with contextlib.redirect_stdout(io.StringIO()):
        pytest.main([str(path), "-q", "-p", "no:cacheprovider", "-c", "/dev/null", "--rootdir", str(path.parent),
                     *args], plugins=[session, collector])
    return collector


def test_the_suite_makes_one_test_of_each_outcome_from_the_session(tmp_path):
    session = LabSession(inventory=object(), transport=object(),
                         outcomes=[outcome("b", True), outcome("c", False, "timed out")])
    junit = tmp_path / "junit.xml"
    collector = run(Path(suite.__file__), session, "-k", "test_reachability", "--junitxml", str(junit))
    cases = {c.get("name"): [f.get("message", "") for f in c.iter("failure")]
             for c in ElementTree.parse(junit).getroot().iter("testcase")}
    assert sorted(cases) == ["test_reachability[pod-to-pod/b]", "test_reachability[pod-to-pod/c]"]
    assert cases["test_reachability[pod-to-pod/b]"] == []
    assert "a -> c: timed out" in cases["test_reachability[pod-to-pod/c]"][0]
    # the reachability checks are counted from their outcomes, not again as checks inside pods and nodes
    assert (collector.passed, collector.failed) == (0, [])


def test_the_fixtures_use_the_sessions_transport_and_inventory(tmp_path):
    transport, inventory = object(), object()
    (tmp_path / "test_mine.py").write_text(
        "def test_shared(lab_transport, lab_inventory, lab_session):\n"
        f"    assert id(lab_transport) == {id(transport)} and id(lab_inventory) == {id(inventory)}\n"
        "    assert lab_session.transport is lab_transport\n")
    collector = run(tmp_path / "test_mine.py", LabSession(inventory, transport))
    assert (collector.passed, collector.failed) == (1, [])

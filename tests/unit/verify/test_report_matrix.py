"""The pod x pod matrix as lab verify prints it (terminal, HTML, JSON): `.` allowed, `X` blocked, `.X` when TCP
and UDP differ, a wrong cell marked; a tick per cell without NetworkPolicy."""

from orchestrator.verify.checks import Check, Outcome
from orchestrator.verify.report import matrix_cells, matrix_json


def cell(row, col, proto, blocked=False, ok=True, reason=""):
    check = Check(id=f"pod-to-pod/{row}->{col}/{proto}", family="pod-to-pod", source=f"pod:{row}",
                  target={"proto": proto}, want=("closed",) if blocked else ("reply", "x"), label="",
                  layer="NetworkPolicy: ..." if blocked else "cni0", row=row, col=col)
    return Outcome(check, ok, reason)


def test_marks_follow_the_expected_verdicts_and_wrong_cells_keep_their_outcomes():
    outcomes = [cell("x/a", "x/b", "tcp"), cell("x/a", "x/b", "udp", blocked=True),
                cell("x/b", "x/a", "tcp", blocked=True), cell("x/b", "x/a", "udp", blocked=True, ok=False,
                                                             reason="open: it answered")]
    names, cells, policies = matrix_cells(outcomes)
    assert policies and names == ["x/a", "x/b"]
    assert cells[("x/a", "x/b")] == (".X", [])
    mark, bad = cells[("x/b", "x/a")]
    assert mark == "X" and [o.reason for o in bad] == ["open: it answered"]
    assert matrix_json(outcomes) == {"x/a": {"x/b": {"expect": ".X", "ok": True}},
                                     "x/b": {"x/a": {"expect": "X", "ok": False}}}


def test_without_policies_every_cell_is_a_tick():
    names, cells, policies = matrix_cells([cell("a", "b", "tcp"), cell("a", "b", "udp")])
    assert not policies and cells[("a", "b")] == ("✔", [])
    assert matrix_json([cell("a", "b", "tcp")]) == {"a": {"b": {"expect": ".", "ok": True}}, "b": {}}

"""Events as the API server keeps them: the same event again counts up, the newest are kept."""

from orchestrator.core.events import EVENTS_KEPT, NORMAL, WARNING, Event, add_event, events_of

POD = ("Pod", "default", "web")


def test_the_same_event_again_counts_up_and_moves_last():
    events: list[Event] = []
    add_event(events, "2026-12-05T10:00:00Z", NORMAL, "Scheduled", POD, "Successfully assigned", "default-scheduler")
    add_event(events, "2026-12-05T10:00:01Z", WARNING, "CheckFailed", POD, "web -> db TCP: timeout", "lab-verify")
    add_event(events, "2026-12-05T10:00:09Z", NORMAL, "Scheduled", POD, "Successfully assigned", "default-scheduler")
    assert [(e.reason, e.count, e.first, e.last) for e in events] == [
        ("CheckFailed", 1, "2026-12-05T10:00:01Z", "2026-12-05T10:00:01Z"),
        ("Scheduled", 2, "2026-12-05T10:00:00Z", "2026-12-05T10:00:09Z")]
    assert events_of(events, "Pod", "default", "web") == events and events_of(events, "Pod", "other", "web") == []
    assert Event.from_json(events[0].to_json()) == events[0]


def test_only_the_newest_events_are_kept():
    events: list[Event] = []
    for i in range(EVENTS_KEPT + 5):
        add_event(events, "2026-12-05T10:00:00Z", NORMAL, "Started", ("Pod", "default", f"p{i}"), "Started", "kubelet")
    assert len(events) == EVENTS_KEPT and events[0].name == "p5"

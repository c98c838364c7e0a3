"""The event log stays bounded under a flood (issue 9, item 7): per-datagram events are
rate-limited per event name and stop at a size cap, state changes are always written, and
what was not written is counted (EventLog.not_logged), in the log itself too."""
import pytest

from nodes.eventlog import PER_DATAGRAM, EventLog, read_events


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def flood(log, clock, n, per_second, event="control_received"):
    """`n` per-datagram events at `per_second`, moving the clock accordingly."""
    for i in range(n):
        clock.t += 1.0 / per_second
        log.write(event, frm="192.0.2.66", type="Map-Request", bytes=60 + i % 200)


def test_a_flood_of_100k_datagram_events_stays_small_and_is_accounted(tmp_path):
    path = tmp_path / "xtr1.events.jsonl"
    clock = FakeClock()
    log = EventLog(path, "xtr1", monotonic=clock)
    flood(log, clock, 100_000, per_second=20_000)           # 5 s of a 20k/s flood
    log.close()
    size = path.stat().st_size
    events = read_events(path)
    written = sum(e["event"] == "control_received" for e in events)
    # about 275 bytes per datagram today: 27 MB; bounded now by the burst plus the rate
    assert size < 200_000, size
    assert written <= log.burst + log.rate * 5 + 1, written
    # every event is either written or counted as not written
    assert written + log.not_logged["control_received"] == 100_000
    assert log.not_logged_total == 100_000 - written
    assert log.count == 100_000 and log.counts["control_received"] == 100_000
    # and the log itself says so: the last summary carries the running totals
    summaries = [e for e in events if e["event"] == "events_not_logged"]
    assert summaries and summaries[-1]["total"] == log.not_logged_total
    assert summaries[-1]["by_event"] == {"control_received": 100_000 - written}


def test_state_changes_are_never_dropped_even_in_a_flood(tmp_path):
    path = tmp_path / "ms.events.jsonl"
    clock = FakeClock()
    log = EventLog(path, "ms", monotonic=clock, max_bytes=50_000)
    important = ["registered", "map_cache_installed", "map_cache_expired", "smr_sent",
                 "smr_received", "eid_away", "dynamic_eid_detected", "route_add",
                 "route_error", "registration_expired", "started", "stopping"]
    for round_ in range(300):
        flood(log, clock, 300, per_second=50_000)
        for name in important:
            log.write(name, eid=f"10.1.{round_ % 256}.5/32")
    log.write("stopped", counters={"a": 1})
    log.close()
    events = read_events(path)
    for name in important:
        assert sum(e["event"] == name for e in events) == 300, name
    # the summary of what was dropped comes last, at close
    assert [e["event"] for e in events[-2:]] == ["stopped", "events_not_logged"]
    assert not any(set(log.not_logged) & set(important + ["stopped"]))
    # past the size cap no per-datagram event is written at all
    assert path.stat().st_size < 50_000 + 300 * len(important) * 120 + 10_000
    written = sum(e["event"] == "control_received" for e in events)
    assert written + log.not_logged["control_received"] == 300 * 300


def test_rate_limit_is_per_event_name_and_refills(tmp_path):
    clock = FakeClock()
    log = EventLog(tmp_path / "x.jsonl", "x", monotonic=clock, rate=10, burst=5)
    for _ in range(20):                         # all at the same instant
        log.write("control_received")
        log.write("control_sent")
    assert log.not_logged == {"control_received": 15, "control_sent": 15}
    clock.t += 1.0                              # 10 tokens back, burst caps at 5
    for _ in range(20):
        log.write("control_received")
    assert log.not_logged["control_received"] == 15 + 15
    log.close()
    written = [e["event"] for e in read_events(tmp_path / "x.jsonl")]
    assert written.count("control_received") == 10 and written.count("control_sent") == 5


def test_a_quiet_daemon_loses_nothing(tmp_path):
    """Normal operation (a few control messages a second) writes every event."""
    clock = FakeClock()
    log = EventLog(tmp_path / "x.jsonl", "x", monotonic=clock)
    flood(log, clock, 3_000, per_second=10)                 # five minutes at 10/s
    log.close()
    assert log.not_logged_total == 0
    assert len(read_events(tmp_path / "x.jsonl")) == 3_000


def test_which_events_are_per_datagram():
    assert {"control_received", "control_sent", "malformed", "register_rejected",
            "dynamic_eid_rejected"} <= PER_DATAGRAM
    assert not {"registered", "map_cache_installed", "smr_sent", "smr_received",
                "route_add", "route_del", "route_error", "eid_away", "started",
                "stopped"} & PER_DATAGRAM


def test_without_a_file_it_still_counts_what_would_be_dropped():
    clock = FakeClock()
    log = EventLog(None, "x", monotonic=clock, rate=1, burst=2)
    for _ in range(10):
        log.write("malformed")
    assert log.count == 10 and log.not_logged_total == 8


@pytest.mark.parametrize("kw", [{"rate": -1}, {"burst": 0}, {"max_bytes": 0}])
def test_bad_bounds_are_refused(tmp_path, kw):
    with pytest.raises(ValueError):
        EventLog(tmp_path / "x.jsonl", "x", **kw)

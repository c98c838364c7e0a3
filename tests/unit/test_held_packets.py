"""Packets of a map-cache miss wait for their mapping (nodes/held.py, nodes/dataplane.py;
issue 12: after a move the new xTR had no mapping for the client, and the VM's first
replies, about 40 ms of them at 1,000 probes/s, were dropped while it asked).

- HeldPackets keeps them within its bounds (per destination, in all, by age), oldest first,
  and a packet held again keeps its age;
- the data plane holds a miss and encapsulates it, unchanged, once the map-cache changes;
  one that still misses waits on; one too old is dropped and counted; with hold_misses off
  a miss is dropped as before.
"""
from nodes.held import HeldPackets
from nodes.lisp.actions import Decision
from test_dataplane_hardening import RLOC, inner, plane, wait  # noqa: F401 (fixture)


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def test_held_packets_are_bounded_per_destination_in_all_and_by_age():
    clock = Clock()
    h = HeldPackets(per_destination=2, total=3, hold_s=1.0, clock=clock)
    assert h.hold("a", b"1") and h.hold("a", b"2")
    assert not h.hold("a", b"3")                       # a's two places are taken
    assert h.hold("b", b"4")
    assert not h.hold("c", b"5")                       # three in all
    clock.t += 0.5
    assert [p for _, _, p in h.take()] == [b"1", b"2", b"4"]      # oldest first
    assert len(h) == 0 and h.hold("c", b"5")
    clock.t += 1.0
    assert h.take() == [] and h.expired == 1           # c's packet waited a second


def test_a_packet_held_again_keeps_its_age():
    clock = Clock()
    h = HeldPackets(hold_s=1.0, clock=clock)
    h.hold("a", b"1")
    [(since, _, pkt)] = h.take()
    clock.t += 0.9
    assert h.hold("a", pkt, since)                     # still within its second
    clock.t += 0.2
    assert not h.hold("a", pkt, since)                 # now too old: refused
    assert h.take() == []


class MissingCore:
    """Misses every destination until `mapped`; then encapsulates to RLOC."""

    def __init__(self):
        self.mapped = set()
        self.asked = 0

    def decapsulated(self, iid, dst, outer_src, key):
        return Decision("deliver")

    def route(self, iid, dst, key):
        if str(dst) in self.mapped:
            return Decision("encap", rloc=RLOC)
        self.asked += 1
        return Decision("drop", reason="map-cache miss")


def test_a_miss_is_held_and_leaves_when_the_mapping_comes(plane):
    core = MissingCore()
    p = plane(core=core)
    p.dp.start()
    first, second = inner(n=20), inner(n=30)
    p.to_tun(first)
    p.to_tun(second)
    assert wait(lambda: p.dp.counters["miss_held"] == 2)
    assert p.raw.sent == []                            # nothing left: no mapping yet
    p.dp.invalidate()                                  # an unrelated change: still a miss
    assert wait(lambda: core.asked >= 4)
    assert p.raw.sent == [] and p.dp.counters["miss_held"] == 2
    core.mapped.add("10.2.0.10")
    p.dp.invalidate()                                  # the Map-Reply installed it
    assert wait(lambda: len(p.raw.sent) == 2), p.dp.counters
    assert [s[36:] for s in p.raw.sent] == [first, second]         # in order, unchanged
    assert p.dp.counters["miss_released"] == 2 and len(p.dp.held) == 0


def test_a_held_packet_that_waits_too_long_is_dropped_and_counted(plane):
    core = MissingCore()
    p = plane(core=core)
    p.dp.held.hold_s = 0.05
    p.dp.start()
    p.to_tun(inner())
    assert wait(lambda: p.dp.counters["miss_held"] == 1)
    wait(lambda: False, timeout=0.1)
    core.mapped.add("10.2.0.10")
    p.dp.invalidate()
    assert wait(lambda: p.dp.counters["miss_held_expired"] == 1), p.dp.counters
    assert p.raw.sent == [] and p.dp.counters["miss_released"] == 0


def test_without_hold_a_miss_is_dropped(plane):
    core = MissingCore()
    p = plane(core=core, hold_misses=False)
    p.dp.start()
    p.to_tun(inner())
    assert wait(lambda: core.asked == 1)
    core.mapped.add("10.2.0.10")
    p.dp.invalidate()
    wait(lambda: p.raw.sent, timeout=0.3)
    assert p.raw.sent == [] and p.dp.held is None

"""Hardening of the protocol core (issue 9, items 2, 3, 4 and the Map-Server half of 7).

Each test replays an attack seen against the daemons, in memory: a replayed Map-Register or
Map-Notify, a Map-Reply carrying prefixes nobody asked for, a flood of Map-Requests, a host
registered outside the site's dynamic-EID ranges. No sockets, no clock: time is `now`.
"""
import ipaddress
import random

from scapy.layers.inet import ICMP, UDP
from scapy.utils import rdpcap

from nodes.lisp.actions import Event, RouteAdd, RouteDel, SendControl
from nodes.lisp.address import DistinguishedName, make_eid
from nodes.lisp.auth import sign
from nodes.lisp.etr import Etr, MapServerConfig
from nodes.lisp.ipudp import IpUdp
from nodes.lisp.itr import Itr
from nodes.lisp.mapserver import MapServer, MapServerResolver, Site
from nodes.lisp.messages import (ACT_NATIVELY_FORWARD, EidRecord, EncapsulatedControl,
                                 Locator, MapNotify, MapReply, MapRequest, RequestRecord,
                                 decode, encode)

ip = ipaddress.ip_address
net = ipaddress.ip_network
MS = ip("192.0.2.100")
DC1, DC2, ATTACKER, ITR_RLOC = (ip("192.0.2.1"), ip("192.0.2.2"), ip("198.51.100.66"),
                                ip("192.0.2.9"))
KEY = "dc-secret"
VM = ip("10.1.0.5")


def sends(actions):
    return [a for a in actions if isinstance(a, SendControl)]


def events(actions, name):
    return [a for a in actions if isinstance(a, Event) and a.name == name]


def dc_site(**kw):
    return Site("dc", {0: KEY}, [(0, net("10.1.0.0/24"))], accept_more_specifics=True, **kw)


def make_etr(rloc, seed, prefixes=(), **kw):
    return Etr([Locator(rloc)], list(prefixes), [MapServerConfig(MS, KEY, 0)],
               register_interval=10.0, dynamic_ranges=[(0, net("10.1.0.0/24"))],
               rng=random.Random(seed), **kw)


def registers(actions):
    """The wire bytes of the Map-Registers among `actions`."""
    return [a.wire() for a in sends(actions) if a.message.__class__.__name__ == "MapRegister"]


# --- A. replayed Map-Registers ------------------------------------------------------

def test_a_replayed_map_register_is_rejected_from_any_address_and_counted():
    ms = MapServer([Site("dc", {0: KEY}, [(0, net("10.1.0.0/24"))])], rng=random.Random(1))
    etr = make_etr(DC1, 2, prefixes=[(0, net("10.1.0.0/24"))])
    [raw] = registers(etr.tick(0.0))
    assert events(ms.receive(raw, DC1, 0.0), "registered")
    for later, src in ((2.0, DC1), (16.0, ATTACKER)):
        out = ms.receive(raw, src, later)
        assert sends(out) == [] and not events(out, "registered")
        assert events(out, "register_rejected")[0].fields["reason"].startswith("replay")
    assert ms.counters["register_replayed"] == 2
    assert ms.counters["map_register_rejected"] == 2
    assert list(ms.registrations[(0, net("10.1.0.0/24"))].registrants) == [DC1]
    # The ETR's next periodic registration is accepted: its nonce is larger.
    [fresh] = registers(etr.tick(10.0))
    assert events(ms.receive(fresh, DC1, 10.0), "registered")


def test_a_dead_sites_registration_does_not_come_back():
    ms = MapServer([Site("dc", {0: KEY}, [(0, net("10.1.0.0/24"))])],
                   registration_timeout=30.0, rng=random.Random(1))
    etr = make_etr(DC1, 2, prefixes=[(0, net("10.1.0.0/24"))])
    [raw] = registers(etr.tick(0.0))
    ms.receive(raw, DC1, 0.0)
    ms.tick(31.0)                                  # the site died: its registration expired
    assert ms.lookup(0, ip("10.1.0.1"), 31.0) is None
    ms.receive(raw, ATTACKER, 40.0)
    assert ms.lookup(0, ip("10.1.0.1"), 40.0) is None
    assert ms.counters["register_replayed"] == 1


def test_a_replay_of_the_old_xtrs_register_after_a_vm_move_does_not_black_hole_the_vm():
    ms = MapServer([dc_site()], move_holddown=2.0, rng=random.Random(1))
    dc1, dc2 = make_etr(DC1, 2), make_etr(DC2, 3)
    [captured] = registers(dc1.host_seen(0, VM, 0.0))     # the attacker records this
    ms.receive(captured, DC1, 0.0)
    ms.receive(registers(dc2.host_seen(0, VM, 5.0))[0], DC2, 5.0)     # the VM moved
    assert [x.address for x in ms.lookup(0, VM, 5.0).locators()] == [DC2]
    ms.receive(captured, ATTACKER, 21.0)           # after the hold-down, from anywhere
    ms.receive(captured, DC1, 22.0)
    assert [x.address for x in ms.lookup(0, VM, 22.0).locators()] == [DC2]
    assert ms.counters["register_replayed"] == 2 and ms.counters["host_moves"] == 1


def test_a_etr_map_register_nonces_increase_also_across_a_restart():
    etr = make_etr(DC1, 2, prefixes=[(0, net("10.1.0.0/24"))])
    nonces = [decode(r).nonce for t in (0.0, 10.0, 20.0) for r in registers(etr.tick(t))]
    nonces += [decode(r).nonce for r in registers(etr.host_seen(0, VM, 20.0))]
    restarted = make_etr(DC1, 2, prefixes=[(0, net("10.1.0.0/24"))])    # same seed
    nonces += [decode(r).nonce for r in registers(restarted.tick(25.0))]
    assert nonces == sorted(set(nonces)) and 0 not in nonces


def _oor_registers(data_dir):
    return [bytes(p[UDP].payload) for p in rdpcap(str(data_dir / "oor-xtr-registers.pcap"))
            if ICMP not in p and bytes(p[UDP].payload)[0] >> 4 == 3]


def oor_site(mode):
    return Site("oor", {0: "lisptest"}, [(0, net("192.168.10.0/24")),
                                         (0, net("2001:db8:10::/64"))],
                replay_protection=mode)


def test_a_oor_registrant_with_random_nonces_needs_the_seen_mode(data_dir):
    """Open Overlay Router 1.3 (tests/data) sends random nonces: the RFC 9301 rule refuses
    some of its registrations, so such a site is configured with "seen", which accepts them
    all and still refuses a replay."""
    raws = _oor_registers(data_dir)
    assert len(raws) == 6
    strict = MapServer([oor_site("increasing")], rng=random.Random(1))
    for i, raw in enumerate(raws):
        strict.receive(raw, ip("10.0.0.2"), 3.0 * i)
    assert strict.counters["register_replayed"] >= 1          # random nonces go down too
    seen = MapServer([oor_site("seen")], rng=random.Random(1))
    for i, raw in enumerate(raws):
        assert events(seen.receive(raw, ip("10.0.0.2"), 3.0 * i), "registered")
    seen.receive(raws[0], ATTACKER, 20.0)
    assert seen.counters["register_replayed"] == 1
    off = MapServer([oor_site("off")], rng=random.Random(1))
    for raw in raws + raws:
        assert events(off.receive(raw, ip("10.0.0.2"), 0.0), "registered")


# --- A. replayed Map-Notifies ------------------------------------------------------

def moved_notify(nonce, to=DC2):
    eid, mask = make_eid(f"{VM}/32")
    return encode(sign(MapNotify(nonce, [EidRecord(eid, mask, [Locator(to)])], 0, 2), KEY))


def test_a_replayed_map_notify_does_not_move_a_host_that_came_back():
    etr = make_etr(DC1, 2)
    etr.host_seen(0, VM, 0.0)
    first = moved_notify(1_000_123)
    out = etr.handle_notify(decode(first), first, MS, 1.0)        # the VM moved to DC2
    assert (0, VM) not in etr.dynamic and len(sends(out)) == 1     # acknowledged
    second = moved_notify(2_500_123)                               # a later move notify
    etr.host_seen(0, VM, 2.0)
    etr.handle_notify(decode(second), second, MS, 2.5)
    etr.host_seen(0, VM, 3.0)                                      # ... and back again
    out = etr.handle_notify(decode(first), first, MS, 4.0)         # replay: older nonce
    assert sends(out) == [] and events(out, "notify_rejected")
    assert etr.counters["map_notify_replayed"] == 1
    out = etr.handle_notify(decode(second), second, MS, 4.5)       # replay of the last one
    assert (0, VM) in etr.dynamic                                  # not applied again ...
    assert len(sends(out)) == 1                                    # ... but acknowledged,
    assert etr.counters["map_notify_repeated"] == 1                # as a retransmission is


def test_a_replayed_solicited_map_notify_is_rejected():
    ms = MapServer([dc_site()], rng=random.Random(1))
    etr = make_etr(DC1, 2)
    [raw] = registers(etr.host_seen(0, VM, 0.0))
    [ack] = sends(ms.receive(raw, DC1, 0.0))
    out = etr.handle_notify(decode(ack.wire()), ack.wire(), MS, 0.1)
    assert events(out, "registration_confirmed")
    out = etr.handle_notify(decode(ack.wire()), ack.wire(), MS, 5.0)
    assert sends(out) == [] and etr.counters["map_notify_replayed"] == 1


def test_a_map_server_move_notifies_carry_increasing_nonces():
    ms = MapServer([dc_site()], move_holddown=0.0, rng=random.Random(1))
    dc1, dc2 = make_etr(DC1, 2), make_etr(DC2, 3)
    nonces = []
    for t, (etr, rloc) in enumerate([(dc1, DC1), (dc2, DC2), (dc1, DC1), (dc2, DC2)]):
        out = ms.receive(registers(etr.host_seen(0, VM, float(t)))[0], rloc, float(t))
        etr.dynamic.clear()                 # let the host be seen again later
        nonces += [s.message.nonce for s in sends(out) if s.dst != rloc]
    assert len(nonces) == 3 and nonces == sorted(set(nonces))


# --- B. Map-Reply records checked against the request -------------------------------

def make_itr(**kw):
    return Itr([ITR_RLOC], [MS], rng=random.Random(7), **kw)


def ask(itr, eid, now=0.0):
    _, actions = itr.route(0, ip(eid), now)
    [send] = sends(actions)
    return send.message.message.nonce


def reply(nonce, *records):
    out = []
    for prefix, rlocs, ttl in records:
        eid, mask = make_eid(prefix)
        action = 0 if rlocs else ACT_NATIVELY_FORWARD
        out.append(EidRecord(eid, mask, [Locator(ip(r)) for r in rlocs], ttl=ttl,
                             action=action))
    return decode(encode(MapReply(nonce, out)))


def test_b_a_reply_installs_only_records_that_cover_the_requested_eid():
    itr = make_itr()
    itr.cache.insert(0, net("10.2.0.0/24"), [Locator(ip("192.0.2.7"))], 600.0, 0.0)
    nonce = ask(itr, "10.99.0.5")
    out = itr.receive_reply(reply(nonce, ("0.0.0.0/0", ["203.0.113.1"], 10),
                                  ("10.1.0.0/24", ["203.0.113.1"], 10),
                                  ("10.2.0.0/24", ["203.0.113.1"], 0),      # a deletion
                                  ("10.99.0.0/24", ["192.0.2.5"], 10)), MS, 0.1)
    assert [a for a in out if isinstance(a, (RouteAdd, RouteDel))] == [
        RouteAdd(0, net("10.99.0.0/24"), "lisp")]
    assert sorted(str(e.prefix) for e in itr.cache) == ["10.2.0.0/24", "10.99.0.0/24"]
    assert itr.counters["map_reply_record_not_covering"] == 2
    assert itr.counters["map_reply_record_too_broad"] == 1
    assert itr.counters["map_reply_record_dropped"] == 3
    assert events(out, "map_reply_record_dropped")


def test_b_more_specifics_inside_the_covering_record_are_kept():
    """RFC 9301 section 5.5: an ETR with 10.1.0.0/16, 10.1.1.0/24 and 10.1.2.0/24 answers a
    request for 10.1.5.5 with all three, so that the /16 is not used for the /24s."""
    itr = make_itr()
    nonce = ask(itr, "10.1.5.5")
    itr.receive_reply(reply(nonce, ("10.1.0.0/16", ["192.0.2.1"], 10),
                            ("10.1.1.0/24", ["192.0.2.2"], 10),
                            ("10.1.2.0/24", ["192.0.2.3"], 10)), MS, 0.1)
    assert sorted(str(e.prefix) for e in itr.cache) == ["10.1.0.0/16", "10.1.1.0/24",
                                                        "10.1.2.0/24"]
    assert itr.counters["map_reply_record_dropped"] == 0


def test_b_negative_replies_may_be_as_broad_as_the_hole_and_the_floor_is_configurable():
    itr = make_itr()
    nonce = ask(itr, "10.0.0.1")
    itr.receive_reply(reply(nonce, ("0.0.0.0/1", [], 15)), MS, 0.1)   # OOR's answer
    assert [str(e.prefix) for e in itr.cache] == ["0.0.0.0/1"]
    loose = make_itr(min_mapping_prefix={4: 0, 6: 0})
    nonce = ask(loose, "10.99.0.5")
    loose.receive_reply(reply(nonce, ("0.0.0.0/0", ["203.0.113.1"], 10)), MS, 0.1)
    assert [str(e.prefix) for e in loose.cache] == ["0.0.0.0/0"]


# --- C. ITR limits ------------------------------------------------------------------

def test_c_154_new_destinations_do_not_send_154_map_requests_at_once():
    itr = make_itr(max_attempts=1, request_timeout=30.0)    # default: 50 a second
    dests = [ip("10.50.0.0") + i for i in range(154)]
    first = [a for d in dests for a in sends(itr.route(0, d, 0.0)[1])]
    assert len(first) == 50
    assert itr.counters["map_request_deferred"] == 104
    asked = {a.message.message.records[0].eid for a in first}
    t = 0.0
    while t < 10.0:
        t = round(t + 0.1, 1)
        later = sends(itr.tick(t))
        assert len(later) <= 6                    # 50 a second, in ticks of 0.1 s
        asked |= {a.message.message.records[0].eid for a in later}
    assert asked == set(dests)                    # nobody forgotten, only delayed


def test_c_the_pending_table_is_bounded():
    itr = make_itr()                              # default: 1000 pending requests
    for i in range(1100):
        itr.route(0, ip("10.50.0.0") + i, 0.0)
    assert len(itr.pending) == 1000
    assert itr.counters["map_request_pending_full"] == 100
    small = make_itr(max_pending=100)
    for i in range(154):
        small.route(0, ip("10.50.0.0") + i, 0.0)
    assert len(small.pending) == 100


def test_c_one_map_request_per_destination_per_second():
    itr = make_itr(request_timeout=0.25, max_attempts=1)
    assert len(sends(itr.route(0, ip("10.1.0.5"), 0.0)[1])) == 1
    itr.tick(0.3)                                 # timed out, given up
    assert not itr.pending
    assert sends(itr.route(0, ip("10.1.0.5"), 0.4)[1]) == []      # too soon: deferred
    assert sends(itr.tick(0.9)) == []
    [again] = sends(itr.tick(1.0))
    assert again.message.message.records[0].eid == ip("10.1.0.5")


def ecm_request(eid, nonce=3, itr=ITR_RLOC):
    e, mask = make_eid(f"{eid}/32")
    return encode(EncapsulatedControl(MapRequest(nonce, [RequestRecord(e, mask)], [itr]),
                                      IpUdp(itr, ip(eid))))


def test_c_map_request_flood_from_one_source_is_limited_registrations_still_pass():
    msmr = MapServerResolver([dc_site()], rng=random.Random(1))   # 100/source, 1000 in all
    etr = make_etr(DC1, 2)
    answered = 0
    for i in range(2000):                          # 20,000 a second for 0.1 s
        now = i / 20000
        answered += len(sends(msmr.receive(ecm_request("10.1.0.9", i), ATTACKER, now)))
        if i == 1000:
            [raw] = registers(etr.host_seen(0, VM, now))
            assert events(msmr.receive(raw, DC1, now), "registered")
    assert answered <= 100 + 10
    c = msmr.counters
    assert c["map_request_rate_limited_source"] == 2000 - answered
    # Another ITR is still answered, until the global limit holds everyone back.
    assert len(sends(msmr.receive(ecm_request("10.1.0.5"), ITR_RLOC, 0.1)))
    others = sum(len(sends(msmr.receive(ecm_request("10.1.0.5", i), ip("192.0.2.50") + i,
                                        0.1))) for i in range(2000))
    assert others <= 1000
    assert msmr.counters["map_request_rate_limited_global"] == 2000 - others
    quiet = MapServerResolver([dc_site()], rng=random.Random(1),
                              map_request_rate=0, map_request_rate_per_source=0)
    assert all(sends(quiet.receive(ecm_request("10.1.0.9", i), ATTACKER, 0.0))
               for i in range(500))                # 0: no limit


# --- D. dynamic-EID ranges at the Map-Server ----------------------------------------

def test_d_ms_refuses_a_host_outside_the_sites_dynamic_eid_ranges():
    ms = MapServer([dc_site(dynamic_ranges=[(0, net("10.1.0.128/25"))])],
                   rng=random.Random(1))
    etr = make_etr(DC1, 2, prefixes=[(0, net("10.1.0.0/24"))])
    etr.dynamic_ranges = [(0, net("10.1.0.0/24"))]      # a misconfigured (or hostile) xTR
    out = ms.receive(registers(etr.host_seen(0, VM, 0.0))[0], DC1, 0.0)
    assert events(out, "register_rejected") and ms.lookup(0, VM, 0.0) is None
    assert ms.counters["register_outside_dynamic_eid"] == 1
    inside = ip("10.1.0.200")
    assert events(ms.receive(registers(etr.host_seen(0, inside, 1.0))[0], DC1, 1.0),
                  "registered")
    etr.host_gone(0, VM, 1.5)
    assert events(ms.receive(registers(etr.tick(2.0))[0], DC1, 2.0), "registered")
    assert ms.lookup(0, inside, 2.0).prefix == net("10.1.0.200/32")


# --- the pieces: nonce memory and token buckets -------------------------------------

def test_nonce_memory_modes_window_and_bounds():
    from nodes.lisp.replay import NonceMemory, next_nonce
    mem = NonceMemory(window=10.0, max_keys=2, max_seen=3)
    assert [mem.check("off", "k", n, 0.0) for n in (5, 5)] == ["new", "new"]
    mem.commit("increasing", "a", 5, 0.0)
    assert [mem.check("increasing", "a", n, 0.0) for n in (4, 5, 6)] == ["old", "repeat",
                                                                         "new"]
    mem.commit("seen", "s", 99, 0.0)
    assert mem.check("seen", "s", 99, 5.0) == "repeat"
    assert mem.check("seen", "s", 99, 10.5) == "new"            # out of the window
    for n in (1, 2, 3, 4):
        mem.commit("seen", "s", n, 11.0)
    assert mem.check("seen", "s", 1, 11.0) == "new"             # at most 3 kept
    mem.commit("increasing", "b", 1, 0.0)
    mem.commit("increasing", "c", 1, 0.0)                        # at most 2 keys: "a" goes
    assert mem.check("increasing", "a", 1, 0.0) == "new"
    assert next_nonce(0, 0.0) == 1 and next_nonce(7, 0.0) == 8
    assert next_nonce(7, 2.5) == 2_500_000


def test_plain_map_requests_to_a_map_server_are_limited_too():
    ms = MapServer([dc_site()], map_request_rate=0, map_request_rate_per_source=10.0,
                   rng=random.Random(1))
    e, mask = make_eid("10.1.0.9/32")
    plain = encode(MapRequest(5, [RequestRecord(e, mask)], [ITR_RLOC]))
    answered = sum(len(sends(ms.receive(plain, ATTACKER, 0.0))) for _ in range(50))
    assert answered == 10 and ms.counters["map_request_rate_limited"] == 40
    assert len(sends(ms.receive(plain, ATTACKER, 1.0))) == 1     # 10 a second come back


# --- a Map-Request with no ITR-RLOC to answer at ------------------------------------------

def _request_without_ip_itr_rloc(eid):
    """A Map-Request whose only ITR-RLOC is a distinguished name: nothing to reply to (a
    fuzzed datagram of the emulation test made the Map-Server send to None and crash its
    receive callback)."""
    return MapRequest(nonce=7, records=[RequestRecord(*make_eid(eid))],
                      itr_rlocs=[DistinguishedName("nowhere")])


def test_a_map_request_with_no_ip_itr_rloc_is_counted_never_sent_to_none():
    msmr = MapServerResolver([dc_site()], rng=random.Random(1))
    # answered by the Map-Server (proxy or negative), or forwarded by the Map-Resolver
    for eid in ("10.1.0.5/32", "10.9.0.1/32"):
        request = _request_without_ip_itr_rloc(net(eid))
        for raw in (encode(request),
                    encode(EncapsulatedControl(request, IpUdp(ITR_RLOC, MS, sport=4342)))):
            out = msmr.receive(raw, ITR_RLOC, 0.0)
            assert all(a.dst is not None for a in sends(out)), out
    assert msmr.counters["map_request_no_itr_rloc"] == 4

"""Unit tests of the ITR, ETR, Map-Server and Map-Resolver state machines (no I/O)."""
import ipaddress
import itertools
import random

from nodes.lisp.actions import Decision, Event, RouteAdd, RouteDel, SendControl
from nodes.lisp.address import make_eid
from nodes.lisp.auth import sign
from nodes.lisp.etr import Etr, MapServerConfig
from nodes.lisp.itr import Itr
from nodes.lisp.mapserver import MapResolver, MapServer, MapServerResolver, Site
from nodes.lisp.messages import (ACT_DROP, ACT_NATIVELY_FORWARD, EidRecord,
                                 EncapsulatedControl, Locator, MapNotify, MapRegister,
                                 MapReply, MapRequest, RequestRecord, decode, encode)

ip = ipaddress.ip_address
net = ipaddress.ip_network
ITR_RLOC, MR, PETR = ip("192.0.2.9"), ip("192.0.2.100"), ip("192.0.2.200")


def sends(actions):
    return [a for a in actions if isinstance(a, SendControl)]


def make_itr(**kw):
    return Itr([ITR_RLOC], [MR], rng=random.Random(7), **kw)


def reply_for(request_action, prefix="10.1.0.0/24", rlocs=("192.0.2.1",), ttl=1,
              action=0, nonce=None):
    req = request_action.message.message
    eid, mask = make_eid(prefix)
    rec = EidRecord(eid, mask, [Locator(ip(r)) for r in rlocs], ttl=ttl, action=action)
    return encode(MapReply(req.nonce if nonce is None else nonce, [rec]))


# --- ITR ----------------------------------------------------------------------------

def test_itr_miss_sends_one_encapsulated_request_until_answered():
    itr = make_itr()
    decision, actions = itr.route(0, ip("10.1.0.5"), 0.0)
    assert decision == Decision("drop", reason="map-cache miss")
    [send] = sends(actions)
    assert send.dst == MR
    assert isinstance(send.message, EncapsulatedControl)
    req = send.message.message
    assert req.itr_rlocs == [ITR_RLOC] and not req.smr_invoked
    assert req.records[0].eid == ip("10.1.0.5") and req.records[0].mask_len == 32
    assert send.message.inner.dst == ip("10.1.0.5")
    # A second packet while the request is outstanding sends nothing more.
    assert sends(itr.route(0, ip("10.1.0.5"), 0.1)[1]) == []
    assert itr.counters["map_request_sent"] == 1


def test_itr_ignores_reply_with_unknown_nonce_and_installs_matching_one():
    itr = make_itr()
    _, actions = itr.route(0, ip("10.1.0.5"), 0.0)
    [send] = sends(actions)
    req_nonce = send.message.message.nonce
    bogus = reply_for(send, nonce=req_nonce ^ 1)
    out = itr.receive_reply(decode(bogus), MR, 0.1)
    assert itr.counters["map_reply_nonce_mismatch"] == 1
    assert isinstance(out[0], Event) and out[0].name == "map_reply_ignored"
    assert itr.route(0, ip("10.1.0.5"), 0.2)[0].verb == "drop"
    out = itr.receive_reply(decode(reply_for(send)), MR, 0.3)
    assert RouteAdd(0, net("10.1.0.0/24"), "lisp") in out
    assert itr.route(0, ip("10.1.0.77"), 0.4)[0] == Decision("encap", ip("192.0.2.1"))
    # A replayed reply (same nonce) is no longer outstanding.
    itr.receive_reply(decode(reply_for(send)), MR, 0.5)
    assert itr.counters["map_reply_nonce_mismatch"] == 2


def test_itr_retransmits_with_exponential_backoff_then_gives_up():
    itr = make_itr(request_timeout=1.0, max_attempts=4)
    itr.route(0, ip("10.1.0.5"), 0.0)
    sent_at = []
    t = 0.0
    while t <= 20.0:
        if sends(itr.tick(t)):
            sent_at.append(t)
        t = round(t + 0.25, 2)
    assert sent_at == [1.0, 3.0, 7.0]          # +1 s, +2 s, +4 s
    assert itr.counters["map_request_retransmitted"] == 3
    assert itr.counters["map_request_timeout"] == 1      # at 15 s
    assert not itr.pending


def test_itr_ttl_expiry_and_refresh():
    itr = make_itr(refresh_before=0.1)
    _, actions = itr.route(0, ip("10.1.0.5"), 0.0)
    itr.receive_reply(decode(reply_for(sends(actions)[0], ttl=1)), MR, 0.0)
    assert sends(itr.tick(50.0)) == []                      # not yet near expiry
    refresh = sends(itr.tick(54.0))                         # 10 % of 60 s left
    assert len(refresh) == 1 and refresh[0].message.message.records[0].eid == ip("10.1.0.0")
    out = itr.tick(60.0)
    assert RouteDel(0, net("10.1.0.0/24"), "lisp") in out
    assert itr.cache.lookup(0, ip("10.1.0.5"), 60.0) is None


def test_itr_negative_entries():
    itr = make_itr()
    _, a1 = itr.route(0, ip("8.8.8.8"), 0.0)
    itr.receive_reply(decode(reply_for(sends(a1)[0], "8.0.0.0/7", rlocs=(), ttl=15,
                                       action=ACT_NATIVELY_FORWARD)), MR, 0.0)
    assert itr.route(0, ip("8.8.4.4"), 1.0)[0] == Decision("native")
    _, a2 = itr.route(0, ip("100.64.0.1"), 0.0)
    itr.receive_reply(decode(reply_for(sends(a2)[0], "100.64.0.0/10", rlocs=(),
                                       action=ACT_DROP)), MR, 0.0)
    assert itr.route(0, ip("100.64.1.1"), 1.0)[0].verb == "drop"
    with_petr = make_itr(petr=PETR)
    _, a3 = with_petr.route(0, ip("8.8.8.8"), 0.0)
    with_petr.receive_reply(decode(reply_for(sends(a3)[0], "8.0.0.0/7", rlocs=(),
                                             action=ACT_NATIVELY_FORWARD)), MR, 0.0)
    assert with_petr.route(0, ip("8.8.4.4"), 1.0)[0] == Decision("encap", PETR)


def test_itr_miss_policy_petr_sends_first_packets_to_the_petr():
    itr = make_itr(petr=PETR, miss_policy="petr")
    decision, actions = itr.route(0, ip("10.1.0.5"), 0.0)
    assert decision == Decision("encap", PETR)
    assert len(sends(actions)) == 1


def test_itr_smr_for_unknown_eid_is_ignored():
    itr = make_itr()
    eid, mask = make_eid("10.1.0.5/32")
    smr = MapRequest(5, [RequestRecord(eid, mask)], [ip("192.0.2.1")], smr=True)
    assert sends(itr.receive_smr(smr, ip("192.0.2.1"), 0.0)) == []
    assert itr.counters["smr_ignored_no_entry"] == 1


# --- Map-Server ---------------------------------------------------------------------

SITE = Site("dc", {1: "k1"}, [(0, net("10.1.0.0/24")), (7, net("2001:db8:1::/48"))],
            accept_more_specifics=False)


_NONCES = itertools.count(1)     # a registrant's nonces increase (RFC 9301 section 5.6)


def register(prefix, key="k1", key_id=1, rloc="192.0.2.1", iid=None, notify=True,
             proxy=False, nonce=None):
    nonce = next(_NONCES) if nonce is None else nonce
    eid, mask = make_eid(prefix, iid)
    rec = EidRecord(eid, mask, [Locator(ip(rloc), local=True)])
    return encode(sign(MapRegister(nonce, [rec], key_id, 2, proxy_reply=proxy,
                                   want_map_notify=notify), key))


def test_ms_accepts_and_notifies_and_rejects_what_it_must():
    ms = MapServer([SITE], rng=random.Random(1))
    out = ms.receive(register("10.1.0.0/24", nonce=1), ip("192.0.2.1"), 0.0)
    [notify] = sends(out)
    assert isinstance(notify.message, MapNotify) and notify.message.nonce == 1
    assert ms.lookup(0, ip("10.1.0.9"), 0.0) is not None
    assert ms.lookup(7, ip("2001:db8:1::1"), 0.0) is None
    ms.receive(register("2001:db8:1::/48", iid=7), ip("192.0.2.1"), 0.0)
    assert ms.lookup(7, ip("2001:db8:1::1"), 0.0) is not None
    assert ms.lookup(0, ip("2001:db8:1::1"), 0.0) is None        # other instance ID
    cases = [(register("10.2.0.0/24"), "register_unknown_site"),        # outside the site
             (register("10.1.0.5/32"), "register_unknown_site"),        # more-specific
             (register("10.1.0.0/24", key="bad"), "register_auth_failed"),
             (register("10.1.0.0/24", key_id=9), "register_auth_failed")]
    for raw, counter in cases:
        assert sends(ms.receive(raw, ip("192.0.2.66"), 1.0)) == []
        assert ms.counters[counter] >= 1
    assert ms.counters["map_register_rejected"] == 4
    assert ms.counters["auth_failures"] == 2
    assert ms.lookup(0, ip("10.2.0.1"), 1.0) is None
    reg = ms.registrations[(0, net("10.1.0.0/24"))]
    assert list(reg.registrants) == [ip("192.0.2.1")]      # the bad ones left no trace


def test_ms_merges_registrations_of_a_site_prefix_and_expires_them():
    ms = MapServer([SITE], registration_timeout=30.0, rng=random.Random(1))
    ms.receive(register("10.1.0.0/24", rloc="192.0.2.1"), ip("192.0.2.1"), 0.0)
    ms.receive(register("10.1.0.0/24", rloc="192.0.2.2"), ip("192.0.2.2"), 10.0)
    reg = ms.lookup(0, ip("10.1.0.1"), 10.0)
    assert [x.address for x in reg.locators()] == [ip("192.0.2.1"), ip("192.0.2.2")]
    ms.tick(30.0)
    assert [x.address for x in ms.lookup(0, ip("10.1.0.1"), 30.0).locators()] == \
        [ip("192.0.2.2")]
    ms.tick(40.0)
    assert ms.lookup(0, ip("10.1.0.1"), 40.0) is None
    assert ms.counters["registrations_expired"] == 2


def test_ms_retransmits_unacknowledged_move_notify_then_gives_up():
    site = Site("dc", {1: "k1"}, [(0, net("10.1.0.0/24"))], accept_more_specifics=True)
    ms = MapServer([site], notify_interval=1.0, notify_retries=2, rng=random.Random(1))
    ms.receive(register("10.1.0.5/32", rloc="192.0.2.1", notify=False), ip("192.0.2.1"), 0.0)
    out = ms.receive(register("10.1.0.5/32", rloc="192.0.2.2", notify=False),
                     ip("192.0.2.2"), 1.0)
    [moved] = sends(out)
    assert moved.dst == ip("192.0.2.1")
    assert [x.address for x in moved.message.records[0].locators] == [ip("192.0.2.2")]
    assert [s.dst for s in sends(ms.tick(2.0))] == [ip("192.0.2.1")]
    assert [s.dst for s in sends(ms.tick(3.0))] == [ip("192.0.2.1")]
    assert sends(ms.tick(4.0)) == []
    assert ms.counters["map_notify_unacked"] == 1


def test_ms_proxy_reply_and_forwarding():
    ms = MapServer([SITE], rng=random.Random(1))
    eid, mask = make_eid("10.1.0.5/32")
    request = MapRequest(42, [RequestRecord(eid, mask)], [ITR_RLOC])
    ms.receive(register("10.1.0.0/24", proxy=True), ip("192.0.2.1"), 0.0)
    [reply] = sends(ms.receive(encode(request), ITR_RLOC, 0.0))
    assert reply.dst == ITR_RLOC and isinstance(reply.message, MapReply)
    assert reply.message.nonce == 42 and not reply.message.records[0].authoritative
    ms2 = MapServer([SITE], rng=random.Random(1))
    ms2.receive(register("10.1.0.0/24"), ip("192.0.2.1"), 0.0)
    [fwd] = sends(ms2.receive(encode(request), ITR_RLOC, 0.0))
    assert fwd.dst == ip("192.0.2.1") and isinstance(fwd.message, EncapsulatedControl)
    assert fwd.message.message == request


def test_mr_negative_reply_covers_largest_hole():
    sites = [Site("a", {1: "k"}, [(0, net("10.1.0.0/16")), (0, net("10.2.0.0/16"))])]
    msmr = MapServerResolver(sites, rng=random.Random(1))
    eid, mask = make_eid("8.8.8.8/32")
    from nodes.lisp.ipudp import IpUdp
    ecm = EncapsulatedControl(MapRequest(3, [RequestRecord(eid, mask)], [ITR_RLOC]),
                              IpUdp(ITR_RLOC, ip("8.8.8.8")))
    [reply] = sends(msmr.receive(encode(ecm), ITR_RLOC, 0.0))
    rec = reply.message.records[0]
    assert (rec.eid, rec.mask_len) == (ip("8.0.0.0"), 7)   # 8.0.0.0/5 would cover 10/8
    assert rec.action == ACT_NATIVELY_FORWARD and rec.ttl == 15 and rec.locators == []


def test_mr_forwards_to_remote_map_server():
    mr = MapResolver([(0, net("10.1.0.0/16"), ip("192.0.2.50"))], rng=random.Random(1))
    eid, mask = make_eid("10.1.2.3/32")
    from nodes.lisp.ipudp import IpUdp
    ecm = EncapsulatedControl(MapRequest(3, [RequestRecord(eid, mask)], [ITR_RLOC]),
                              IpUdp(ITR_RLOC, ip("10.1.2.3")))
    [fwd] = sends(mr.receive(encode(ecm), ITR_RLOC, 0.0))
    assert fwd.dst == ip("192.0.2.50") and fwd.message == ecm


# --- ETR ----------------------------------------------------------------------------

def make_etr(**kw):
    return Etr([Locator(ip("192.0.2.1"))], [(0, net("10.1.0.0/24"))],
               [MapServerConfig(MR, "k1", 1, 2)], register_interval=5.0,
               rng=random.Random(3), **kw)


def test_etr_registers_periodically_and_answers_requests():
    etr = make_etr()
    times = [t for t in (0.0, 1.0, 4.9, 5.0, 9.0, 10.0) if sends(etr.tick(t))]
    assert times == [0.0, 5.0, 10.0]
    eid, mask = make_eid("10.1.0.9/32")
    req = MapRequest(77, [RequestRecord(eid, mask)], [ip("2001:db8::9"), ITR_RLOC])
    # sent from one of its ITR-RLOCs: answered there (RFC 9301 5.3, the ETR selects one)
    [reply] = sends(etr.handle_request(req, ITR_RLOC, 1.0))
    assert reply.dst == ITR_RLOC and reply.message.nonce == 77
    # forwarded by a Map-Server (its source is none of them): answered at the first
    [forwarded] = sends(etr.handle_request(req, MR, 1.0))
    assert forwarded.dst == ip("2001:db8::9")
    rec = reply.message.records[0]
    assert (rec.eid, rec.mask_len) == (ip("10.1.0.0"), 24)
    other = MapRequest(78, [RequestRecord(*make_eid("10.7.0.1/32"))], [ITR_RLOC])
    assert sends(etr.handle_request(other, ITR_RLOC, 1.0)) == []


def test_etr_rejects_map_notify_with_wrong_key():
    etr = make_etr(dynamic_ranges=[(0, net("10.1.0.0/24"))])
    etr.host_seen(0, ip("10.1.0.5"), 0.0)
    eid, mask = make_eid("10.1.0.5/32")
    rec = EidRecord(eid, mask, [Locator(ip("192.0.2.2"))])
    forged = encode(sign(MapNotify(5, [rec], 1, 2), "not-the-key"))
    assert sends(etr.handle_notify(decode(forged), forged, MR, 1.0)) == []
    assert etr.counters["auth_failures"] == 1
    assert (0, ip("10.1.0.5")) in etr.dynamic


def test_etr_probes_the_lan_for_a_silent_host_of_a_dynamic_range():
    """Traffic for an undetected host of a dynamic range (a host that only receives, after
    the xTR restarted) makes the ETR ask the LAN for it, once a second; the answer detects
    and registers it. Outside every range it is simply not ours."""
    from nodes.lisp.actions import ProbeHost
    etr = make_etr(dynamic_ranges=[(0, net("10.9.0.0/24"))])
    vm = ip("10.9.0.5")
    d, out = etr.decapsulated(0, vm, ITR_RLOC, 1.0)
    assert d.verb == "drop" and [a for a in out if isinstance(a, ProbeHost)] == [ProbeHost(0, vm)]
    d, out = etr.decapsulated(0, vm, ITR_RLOC, 1.5)             # rate-limited
    assert d.verb == "drop" and out == []
    d, out = etr.decapsulated(0, vm, ITR_RLOC, 2.1)
    assert [type(a).__name__ for a in out] == ["ProbeHost", "Event"]
    assert etr.counters["dynamic_eid_probes"] == 2
    assert etr.counters["drop_dynamic_eid_not_detected"] == 3
    assert any(isinstance(a, SendControl) for a in etr.host_seen(0, vm, 2.2))   # registers
    assert etr.decapsulated(0, vm, ITR_RLOC, 2.3)[0].verb == "deliver"
    d, out = etr.decapsulated(0, ip("10.7.0.1"), ITR_RLOC, 3.0)
    assert d.verb == "drop" and out == [] and etr.counters["drop_not_our_eid"] == 1


def test_malformed_datagrams_are_counted_never_raised():
    msmr = MapServerResolver([SITE], rng=random.Random(1))
    for raw in (b"", b"\x10", b"\xf0" * 40, register("10.1.0.0/24")[:-3]):
        out = msmr.receive(raw, ITR_RLOC, 0.0)
        assert [a.name for a in out] == ["malformed"]
    assert msmr.counters["malformed"] == 4


def test_ms_notify_built_from_register_bytes_equals_the_encoded_message():
    """The Map-Server builds its Map-Notify from the Map-Register's bytes (a shortcut);
    those bytes must be exactly what encoding the message gives, and must verify."""
    from nodes.lisp.auth import verify
    ms = MapServer([SITE], rng=random.Random(1))
    for alg in (1, 2):
        eid, mask = make_eid("10.1.0.0/24")
        rec = EidRecord(eid, mask, [Locator(ip("192.0.2.1"), local=True),
                                    Locator(ip("2001:db8::1"), priority=2)])
        raw = encode(sign(MapRegister(9 + alg, [rec], 1, alg, want_map_notify=True,
                                      xtr_id=0xABC, site_id=7), "k1"))
        [notify] = sends(ms.receive(raw, ip("192.0.2.1"), 0.0))
        assert notify.data == encode(notify.message)
        assert notify.data[0] >> 4 == 4 and verify(notify.data, "k1")
        assert not verify(notify.data, "k2")


def test_itr_never_asks_about_multicast_or_link_local():
    itr = make_itr()
    for dst in ("ff02::16", "fe80::1", "224.0.0.22", "169.254.1.1", "::", "127.0.0.1"):
        decision, actions = itr.route(0, ip(dst), 0.0)
        assert decision == Decision("drop", reason="not a unicast EID") and actions == []
    assert itr.counters["map_request_sent"] == 0


def test_map_request_without_records_is_counted_and_unanswered():
    empty = MapRequest(11, [], [ITR_RLOC])
    ms = MapServer([SITE], rng=random.Random(1))
    assert sends(ms.receive(encode(empty), ITR_RLOC, 0.0)) == []
    assert ms.counters["map_request_empty"] == 1
    etr = make_etr()
    assert sends(etr.handle_request(empty, ITR_RLOC, 0.0)) == []
    assert etr.counters["map_request_empty"] == 1


def test_ms_ignores_the_old_etrs_in_flight_register_right_after_a_move():
    """A periodic Map-Register the old ETR sent just before the move is not a move back;
    after the hold-down, a new registration from it is (the host really came back)."""
    site = Site("dc", {1: "k1"}, [(0, net("10.1.0.0/24"))], accept_more_specifics=True)
    ms = MapServer([site], move_holddown=2.0, rng=random.Random(1))
    ms.receive(register("10.1.0.5/32", rloc="192.0.2.1", notify=False), ip("192.0.2.1"), 0.0)
    [moved] = sends(ms.receive(register("10.1.0.5/32", rloc="192.0.2.2", notify=False),
                               ip("192.0.2.2"), 1.0))
    assert moved.dst == ip("192.0.2.1")
    stale = ms.receive(register("10.1.0.5/32", rloc="192.0.2.1"), ip("192.0.2.1"), 1.02)
    assert sends(stale) == []                      # no Map-Notify to anyone
    assert ms.counters["register_ignored_after_move"] == 1
    locs = ms.lookup(0, ip("10.1.0.5"), 1.02).locators()
    assert [x.address for x in locs] == [ip("192.0.2.2")]
    back = sends(ms.receive(register("10.1.0.5/32", rloc="192.0.2.1", notify=False),
                            ip("192.0.2.1"), 3.5))
    assert [s.dst for s in back] == [ip("192.0.2.2")]   # a real move back, after hold-down
    assert [x.address for x in ms.lookup(0, ip("10.1.0.5"), 3.5).locators()] == \
        [ip("192.0.2.1")]

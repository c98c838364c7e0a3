"""The Map-Server's side of issues 11 and 12: merged registrations, de-registration, moves
back, negative replies next to registered prefixes, reply ports and PubSub (RFC 9437).

Every test drives the Map-Server core (nodes/lisp/mapserver.py) with encoded messages, as the
daemon does, and reads what it sends back. No sockets, no clock: time is `now`."""
import ipaddress
import random

from nodes.lisp.actions import Event, SendControl
from nodes.lisp.address import make_eid
from nodes.lisp.auth import sign, verify
from nodes.lisp.mapserver import MapServer, Site
from nodes.lisp.messages import (ALG_HMAC_SHA256_128, EidRecord, Locator, MapNotify,
                                 MapNotifyAck, MapRegister, MapReply, MapRequest,
                                 RequestRecord, decode, encode)

ip = ipaddress.ip_address
net = ipaddress.ip_network
KEY = "dc-secret"
XTR_A, XTR_B, XTR_A2, ITR = (ip("192.0.2.1"), ip("192.0.2.2"), ip("198.51.100.1"),
                             ip("192.0.2.9"))
ID_A, ID_B = 0xA0A0_0000_0000_0000_0000_0000_0000_0001, 0xB0B0 << 112


def sends(actions):
    return [a for a in actions if isinstance(a, SendControl)]


def events(actions, name):
    return [a for a in actions if isinstance(a, Event) and a.name == name]


def site(**kw):
    return Site("dc", {0: KEY}, [(0, net("10.1.0.0/24"))], **kw)


_nonce = iter(range(1, 1 << 30))


def register(prefix, rlocs, xtr_id=None, ttl=1440, notify=True, proxy=False, key=KEY):
    """A signed Map-Register: rlocs are (address, priority, weight)."""
    eid, mask = make_eid(prefix)
    locs = [Locator(ip(a), p, w, local=True) for a, p, w in rlocs]
    msg = MapRegister(next(_nonce), [EidRecord(eid, mask, locs, ttl=ttl)], 0,
                      ALG_HMAC_SHA256_128, proxy_reply=proxy, want_map_notify=notify,
                      xtr_id=xtr_id, site_id=7 if xtr_id is not None else 0)
    return encode(sign(msg, key))


def request(eid="10.1.0.5", nonce=42):
    e, mask = make_eid(f"{eid}/32")
    return encode(MapRequest(nonce, [RequestRecord(e, mask)], [ITR]))


def rloc_set(record):
    return [(str(x.address), x.priority, x.weight) for x in record.locators]


def ack(notify_action, key=KEY):
    """The Map-Notify-Ack an ETR sends back for a Map-Notify."""
    n = notify_action.message
    return encode(sign(MapNotifyAck(n.nonce, n.records, n.key_id, n.alg_id,
                                    xtr_id=n.xtr_id, site_id=n.site_id), key))


# --- item 1: merged registrations (issue 11) -------------------------------------------

A_SET = [("192.0.2.1", 1, 50)]
B_SET = [("192.0.2.2", 1, 50)]
MERGED = [("192.0.2.1", 1, 50), ("192.0.2.2", 1, 50)]


def test_every_registrant_of_a_two_xtr_site_is_notified_of_the_merged_locator_set():
    """Two xTRs (each with its xTR-ID) register the site prefix. When the second arrives,
    the Map-Server sends each of them a signed Map-Notify with the merged set, priorities
    and weights included, so that each ETR can answer Map-Requests with the whole set."""
    ms = MapServer([site()], rng=random.Random(1))
    first = ms.receive(register("10.1.0.0/24", A_SET, ID_A), XTR_A, 0.0)
    # Alone, A gets the acknowledgement of its Map-Register only (its own set).
    [ack_a] = sends(first)
    assert ack_a.dst == XTR_A and rloc_set(ack_a.message.records[0]) == A_SET
    out = ms.receive(register("10.1.0.0/24", B_SET, ID_B), XTR_B, 1.0)
    ack_b, *merged = sends(out)
    assert ack_b.dst == XTR_B and rloc_set(ack_b.message.records[0]) == B_SET
    assert sorted(s.dst for s in merged) == [XTR_A, XTR_B]
    for s in merged:
        wire = s.wire()
        msg = decode(wire)
        assert isinstance(msg, MapNotify) and verify(wire, KEY)
        [rec] = msg.records
        assert (str(rec.eid), rec.mask_len) == ("10.1.0.0", 24)
        assert rloc_set(rec) == MERGED
        assert not any(x.local for x in rec.locators)
        assert msg.xtr_id == (ID_A if s.dst == XTR_A else ID_B) and msg.site_id == 7
    assert events(out, "merged_notify")[0].fields["rlocs"] == ["192.0.2.1", "192.0.2.2"]
    # Retransmitted until acknowledged, then quiet.
    assert sorted(s.dst for s in sends(ms.tick(2.0))) == [XTR_A, XTR_B]
    for s in merged:
        ms.receive(ack(s), s.dst, 2.1)
    assert sends(ms.tick(3.5)) == [] and not ms.pending_notifies
    # A periodic refresh that changes nothing notifies nobody but the registrant.
    again = sends(ms.receive(register("10.1.0.0/24", A_SET, ID_A), XTR_A, 10.0))
    assert [s.dst for s in again] == [XTR_A]


def test_the_proxy_reply_lists_every_rloc_of_the_site_with_priority_and_weight():
    ms = MapServer([site()], rng=random.Random(1))
    ms.receive(register("10.1.0.0/24", A_SET, ID_A, proxy=True), XTR_A, 0.0)
    ms.receive(register("10.1.0.0/24", [("192.0.2.2", 2, 100)], ID_B, proxy=True),
               XTR_B, 0.0)
    [reply] = sends(ms.receive(request(), ITR, 0.5))
    assert isinstance(reply.message, MapReply) and reply.dst == ITR
    assert rloc_set(reply.message.records[0]) == [("192.0.2.1", 1, 50), ("192.0.2.2", 2, 100)]


def test_registrations_are_keyed_by_xtr_id_not_by_the_source_address():
    """An xTR that registers from another of its addresses (RFC 9301 section 5.6: the
    xTR-ID identifies the xTR) replaces its own registration: no stale locator remains."""
    ms = MapServer([site()], rng=random.Random(1))
    ms.receive(register("10.1.0.0/24", A_SET, ID_A), XTR_A, 0.0)
    ms.receive(register("10.1.0.0/24", B_SET, ID_B), XTR_B, 0.0)
    out = ms.receive(register("10.1.0.0/24", [("198.51.100.1", 1, 50)], ID_A), XTR_A2, 5.0)
    reg = ms.lookup(0, ip("10.1.0.5"), 5.0)
    # A keeps its place (it registered first), with its new locator only.
    assert [str(x.address) for x in reg.locators()] == ["198.51.100.1", "192.0.2.2"]
    assert len(reg.registrants) == 2
    # Both xTRs hear of the new set; A at the address it registered from now.
    new_set = [("198.51.100.1", 1, 50), ("192.0.2.2", 1, 50)]
    assert sorted(str(s.dst) for s in sends(out)
                  if rloc_set(s.message.records[0]) == new_set) == ["192.0.2.2",
                                                                    "198.51.100.1"]


def test_each_registrant_expires_on_its_own_and_the_rest_hear_of_it():
    ms = MapServer([site()], registration_timeout=30.0, rng=random.Random(1))
    ms.receive(register("10.1.0.0/24", A_SET, ID_A), XTR_A, 0.0)
    ms.receive(register("10.1.0.0/24", B_SET, ID_B), XTR_B, 10.0)
    ms.pending_notifies.clear()
    out = ms.tick(30.0)
    assert [str(x.address) for x in ms.lookup(0, ip("10.1.0.5"), 30.0).locators()] == \
        ["192.0.2.2"]
    [to_b] = sends(out)
    assert to_b.dst == XTR_B and rloc_set(to_b.message.records[0]) == B_SET
    ms.pending_notifies.clear()
    assert sends(ms.tick(40.0)) == []          # the last one leaves: nobody to tell
    assert ms.lookup(0, ip("10.1.0.5"), 40.0) is None


# --- item 6: a Map-Register with TTL 0 de-registers (issue 12) ---------------------------

def test_a_register_with_ttl_0_withdraws_the_registrants_locators_and_tells_the_others():
    """RFC 9301 section 5.4: a record TTL of 0 means the mapping is to be removed at once;
    a Map-Register carries those records (5.6). The registrant's locators leave the merged
    set, the remaining registrants hear of it, and the withdrawing xTR gets its ack."""
    ms = MapServer([site()], rng=random.Random(1))
    ms.receive(register("10.1.0.0/24", A_SET, ID_A), XTR_A, 0.0)
    ms.receive(register("10.1.0.0/24", B_SET, ID_B), XTR_B, 0.0)
    ms.pending_notifies.clear()
    out = ms.receive(register("10.1.0.0/24", A_SET, ID_A, ttl=0), XTR_A, 1.0)
    assert [str(x.address) for x in ms.lookup(0, ip("10.1.0.5"), 1.0).locators()] == \
        ["192.0.2.2"]
    ack_a, to_b = sends(out)
    assert ack_a.dst == XTR_A and isinstance(ack_a.message, MapNotify)
    assert to_b.dst == XTR_B and rloc_set(to_b.message.records[0]) == B_SET
    assert events(out, "deregistered") and not events(out, "registered")
    assert ms.counters["deregistrations"] == 1
    # The last one withdraws: nothing is left, and no request is forwarded to anyone.
    ms.receive(register("10.1.0.0/24", B_SET, ID_B, ttl=0), XTR_B, 2.0)
    assert ms.lookup(0, ip("10.1.0.5"), 2.0) is None
    assert (0, net("10.1.0.0/24")) not in ms.registrations
    [neg] = sends(ms.receive(request(), ITR, 2.5))
    assert neg.message.records[0].locators == []


def test_a_host_deregistered_with_ttl_0_is_gone_and_a_ttl_0_from_a_stranger_stores_nothing():
    ms = MapServer([site(accept_more_specifics=True)], rng=random.Random(1))
    ms.receive(register("10.1.0.5/32", A_SET, notify=False), XTR_A, 0.0)
    assert ms.lookup(0, ip("10.1.0.5"), 0.0).prefix == net("10.1.0.5/32")
    ms.receive(register("10.1.0.5/32", A_SET, ttl=0, notify=False), XTR_A, 1.0)
    assert ms.lookup(0, ip("10.1.0.5"), 1.0) is None
    out = ms.receive(register("10.1.0.6/32", B_SET, ttl=0), XTR_B, 2.0)
    assert ms.lookup(0, ip("10.1.0.6"), 2.0) is None and not ms.registrations
    assert not events(out, "registered")


# --- item 5: a move back within the hold-down is honoured (issue 12) ----------------------

def test_a_move_back_right_after_the_old_xtr_acknowledged_the_move_is_honoured_at_once():
    """The hold-down after a move ignores the old xTR's Map-Registers sent before it learnt
    of the move. Its Map-Notify-Ack proves it has learnt: a registration after the ack is
    the host really back, even 0.5 s later, and the other xTR is told at once."""
    ms = MapServer([site(accept_more_specifics=True)], move_holddown=2.0,
                   rng=random.Random(1))
    ms.receive(register("10.1.0.5/32", A_SET, notify=False), XTR_A, 0.0)
    [moved] = sends(ms.receive(register("10.1.0.5/32", B_SET, notify=False), XTR_B, 1.0))
    assert moved.dst == XTR_A
    stale = ms.receive(register("10.1.0.5/32", A_SET, notify=False), XTR_A, 1.005)
    assert sends(stale) == [] and events(stale, "register_ignored")   # sent before the ack
    ms.receive(ack(moved), XTR_A, 1.01)
    back = ms.receive(register("10.1.0.5/32", A_SET, notify=False), XTR_A, 1.5)
    assert [s.dst for s in sends(back)] == [XTR_B]
    assert rloc_set(sends(back)[0].message.records[0]) == A_SET
    assert [str(x.address) for x in ms.lookup(0, ip("10.1.0.5"), 1.5).locators()] == \
        ["192.0.2.1"]
    assert ms.counters["host_moves"] == 2


def test_the_holddown_lasts_while_the_move_notify_is_retransmitted_unacknowledged():
    """A hundred VMs moved at once (move-100): the old xTR took seconds to work through
    the Map-Notifies, acknowledging the last ones after the 2 s hold-down had ended, and
    its periodic Map-Register of a VM it had not yet heard had moved was taken for a move
    back (12 of 99 VMs went back to DC1). While the Map-Server still retransmits the
    move's Map-Notify, the old xTR has not shown it heard it: the hold-down runs for
    `move_holddown` after the last copy sent, and still ends at once with the ack."""
    ms = MapServer([site(accept_more_specifics=True)], move_holddown=2.0,
                   notify_interval=1.0, notify_retries=3, rng=random.Random(1))
    ms.receive(register("10.1.0.5/32", A_SET, notify=False), XTR_A, 0.0)
    [moved] = sends(ms.receive(register("10.1.0.5/32", B_SET, notify=False), XTR_B, 1.0))
    assert moved.dst == XTR_A
    for t in (2.0, 3.0):                       # unacknowledged: sent again
        assert [s.dst for s in sends(ms.tick(t))] == [XTR_A]
    stale = ms.receive(register("10.1.0.5/32", A_SET, notify=False), XTR_A, 3.5)
    assert sends(stale) == [] and events(stale, "register_ignored"), stale
    assert [str(x.address) for x in ms.lookup(0, ip("10.1.0.5"), 3.5).locators()] == \
        ["192.0.2.2"]
    ms.receive(ack(moved), XTR_A, 3.6)         # heard at last: the hold-down ends
    back = ms.receive(register("10.1.0.5/32", A_SET, notify=False), XTR_A, 3.7)
    assert [s.dst for s in sends(back)] == [XTR_B] and ms.counters["host_moves"] == 2


def test_vm_moves_back_within_the_holddown_and_only_the_xtr_it_is_behind_claims_it():
    """In memory, with real xTRs: DC1 -> DC2 -> DC1 in one second. Afterwards the Map-Server
    maps the VM to xTR1, xTR2 has it away (toward xTR1), and xTR1 has it local."""
    from nodes.lisp.etr import Etr, MapServerConfig
    from nodes.lisp.itr import Itr
    from nodes.lisp.mapserver import MapServerResolver
    from nodes.lisp.sim import SimNetwork
    from nodes.lisp.xtr import Xtr
    ms_rloc, vm = ip("192.0.2.100"), ip("10.1.0.5")

    def xtr(name, rloc, seed):
        rng = random.Random(seed)
        etr = Etr([Locator(rloc)], [], [MapServerConfig(ms_rloc, KEY, 0)], name=name,
                  register_interval=10.0, dynamic_ranges=[(0, net("10.1.0.0/24"))], rng=rng)
        return Xtr(Itr([rloc], [ms_rloc], name=name, rng=rng), etr, name=name)

    msmr = MapServerResolver([site(accept_more_specifics=True)], rng=random.Random(1))
    x1, x2 = xtr("xtr1", XTR_A, 2), xtr("xtr2", XTR_B, 3)
    sim = SimNetwork()
    for addr, node in ((ms_rloc, msmr), (XTR_A, x1), (XTR_B, x2)):
        sim.attach(addr, node)
    for t, x, rloc in ((0.0, x1, XTR_A), (1.0, x2, XTR_B), (1.5, x1, XTR_A)):
        sim.now = t
        sim.deliver(rloc, x.host_seen(0, vm, t))
    assert [str(a.address) for a in msmr.ms.lookup(0, vm, 1.5).locators()] == ["192.0.2.1"]
    assert (0, vm) in x1.etr.dynamic and (0, vm) not in x2.etr.dynamic
    away = x2.etr.away.lookup(0, vm, 1.5)
    assert away is not None and [a.address for a in away.locators] == [XTR_A]


# --- item 4: negative replies never cover a registered prefix (issue 12) ------------------

def negative_for(ms, eid, now=1.0):
    [reply] = sends(ms.receive(request(eid), ITR, now))
    [rec] = reply.message.records
    assert rec.locators == [] and rec.action == 1 and rec.ttl == 1    # Natively-Forward
    return net(f"{rec.eid}/{rec.mask_len}")


def test_a_negative_reply_next_to_a_registered_host_covers_the_least_specific_free_prefix():
    """RFC 9301 section 8.3 (a configured prefix with nothing registered: a negative
    Map-Reply, Natively-Forward, TTL 1 minute) and 8.4 (its prefix is the least-specific
    one that contains the requested EID and no EID-prefix known to exist)."""
    ms = MapServer([site(accept_more_specifics=True)], rng=random.Random(1))
    assert negative_for(ms, "10.1.0.6", 0.0) == net("10.1.0.0/24")     # nothing registered
    ms.receive(register("10.1.0.5/32", A_SET), XTR_A, 0.5)
    assert negative_for(ms, "10.1.0.6") == net("10.1.0.6/31")          # the VM's neighbour
    assert negative_for(ms, "10.1.0.4") == net("10.1.0.4/32")
    assert negative_for(ms, "10.1.0.200") == net("10.1.0.128/25")
    assert negative_for(ms, "10.1.0.20") == net("10.1.0.16/28")
    ms.receive(register("10.1.0.130/32", B_SET), XTR_B, 0.5)
    assert negative_for(ms, "10.1.0.200") == net("10.1.0.192/26")
    for eid in ("10.1.0.6", "10.1.0.200", "10.1.0.129", "10.1.0.1"):
        hole = negative_for(ms, eid)
        assert ip("10.1.0.5") not in hole and ip("10.1.0.130") not in hole, (eid, hole)
    # Once the hosts are gone, the whole site prefix is free again.
    ms.receive(register("10.1.0.5/32", A_SET, ttl=0), XTR_A, 2.0)
    ms.receive(register("10.1.0.130/32", B_SET, ttl=0), XTR_B, 2.0)
    assert negative_for(ms, "10.1.0.6", 2.5) == net("10.1.0.0/24")


def test_an_itr_given_the_negative_reply_still_asks_for_the_registered_vm():
    """The ITR side of issue 12: after the negative reply for the VM's neighbour, the
    ITR's map-cache does not send the VM's own traffic natively."""
    from nodes.lisp.itr import Itr
    ms = MapServer([site(accept_more_specifics=True)], rng=random.Random(1))
    ms.receive(register("10.1.0.5/32", A_SET), XTR_A, 0.0)
    itr = Itr([ITR], [ip("192.0.2.100")], rng=random.Random(3))
    _, actions = itr.route(0, ip("10.1.0.6"), 1.0)
    [req] = sends(actions)
    [reply] = sends(ms.receive(req.wire(), ITR, 1.0))
    itr.receive_reply(reply.message, ip("192.0.2.100"), 1.0)
    assert itr.route(0, ip("10.1.0.6"), 1.1)[0].verb == "native"
    decision, _ = itr.route(0, ip("10.1.0.5"), 1.1)
    assert decision.verb != "native"


# --- item 3: replies go to the port the request came from (issue 11) ---------------------

def ecm_request(eid, sport, nonce=7):
    from nodes.lisp.ipudp import IpUdp
    from nodes.lisp.messages import EncapsulatedControl
    e, mask = make_eid(f"{eid}/32")
    return encode(EncapsulatedControl(MapRequest(nonce, [RequestRecord(e, mask)], [ITR]),
                                      IpUdp(ITR, ip(eid), sport=sport)))


def test_map_notify_answers_the_source_port_of_the_map_register():
    """RFC 9301 section 5: a Map-Notify acknowledging a Map-Register goes to the register's
    source port; a Map-Notify sent as a notification goes to 4342."""
    ms = MapServer([site(accept_more_specifics=True)], rng=random.Random(1))
    [notify] = sends(ms.receive(register("10.1.0.5/32", A_SET), XTR_A, 0.0, port=40001))
    assert (notify.dst, notify.dport, notify.sport) == (XTR_A, 40001, 4342)
    out = sends(ms.receive(register("10.1.0.5/32", B_SET), XTR_B, 1.0, port=40002))
    assert {(s.dst, s.dport) for s in out} == {(XTR_B, 40002), (XTR_A, 4342)}


def test_map_replies_go_to_the_source_port_of_the_requests_inner_udp_header():
    """The Map-Server's proxy reply, its negative reply and the Map-Resolver's negative
    reply all go to the port the ITR sent its Map-Request from (the ECM's inner UDP source
    port), not to 4342: an ITR sending from an ephemeral port hears back."""
    from nodes.lisp.mapserver import MapServerResolver
    msmr = MapServerResolver([site(accept_more_specifics=True)], rng=random.Random(1))
    msmr.receive(register("10.1.0.5/32", A_SET, proxy=True), XTR_A, 0.0)
    for eid, what in (("10.1.0.5", "proxy"), ("10.1.0.6", "ms negative"),
                      ("8.8.8.8", "mr negative")):
        [reply] = sends(msmr.receive(ecm_request(eid, 50001), ITR, 1.0, port=50001))
        assert isinstance(reply.message, MapReply), what
        assert (reply.dst, reply.dport) == (ITR, 50001), what
    # A plain (not encapsulated) request is answered at its UDP source port.
    [reply] = sends(msmr.ms.receive(request("10.1.0.5"), ITR, 1.0, port=50002))
    assert reply.dport == 50002


def test_a_forwarded_request_carries_the_itrs_port_and_the_etr_answers_there():
    """Without proxy-reply the Map-Server forwards the ECM as it came (a plain request is
    wrapped with its source port); the ETR's Map-Reply goes to that port."""
    from nodes.lisp.etr import Etr, MapServerConfig
    from nodes.lisp.itr import Itr
    from nodes.lisp.xtr import Xtr
    ms = MapServer([site()], rng=random.Random(1))
    ms.receive(register("10.1.0.0/24", A_SET), XTR_A, 0.0)
    etr = Etr([Locator(XTR_A)], [(0, net("10.1.0.0/24"))],
              [MapServerConfig(ip("192.0.2.100"), KEY, 0)], rng=random.Random(2))
    xtr = Xtr(Itr([XTR_A], [ip("192.0.2.100")], rng=random.Random(2)), etr)
    for raw, port in ((ecm_request("10.1.0.7", 50003), 50003),
                      (request("10.1.0.7"), 50004)):
        [fwd] = sends(ms.receive(raw, ITR, 1.0, port=port))
        assert fwd.dst == XTR_A and fwd.message.inner.sport == port
        [reply] = sends(xtr.receive(fwd.wire(), ip("192.0.2.100"), 1.0))
        assert isinstance(reply.message, MapReply)
        assert (reply.dst, reply.dport) == (ITR, port)
    # An RLOC-probe (a plain Map-Request to the ETR) is answered at its source port too.
    e, mask = make_eid("10.1.0.7/32")
    probe = encode(MapRequest(9, [RequestRecord(e, mask)], [ITR], probe=True))
    [reply] = sends(xtr.receive(probe, ITR, 2.0, port=50005))
    assert reply.message.probe and reply.dport == 50005


def test_the_daemon_hands_the_source_port_to_the_core_and_sends_to_it():
    """nodes/daemon.py glue: the port of a received datagram reaches the core, and the
    core's SendControl(dport=...) is what the socket sends to."""
    import threading
    from collections import Counter
    from nodes import daemon as dmod
    from nodes.eventlog import EventLog
    from nodes.lisp.mapserver import MapServerResolver

    class Transport:
        def __init__(self):
            self.sent = []

        def sendto(self, data, addr):
            self.sent.append((data, addr))

    d = object.__new__(dmod.Daemon)
    d.core = MapServerResolver([site(accept_more_specifics=True)], rng=random.Random(1))
    d.cfg = type("Cfg", (), {"role": "msmr"})()
    d.lock, d.io_counters, d.dataplane = threading.Lock(), Counter(), None
    d.log = EventLog(None, "ms")
    d.transports = {4: Transport()}
    d.now = lambda: 0.0
    dmod.ControlProtocol(d).datagram_received(register("10.1.0.5/32", A_SET),
                                              ("192.0.2.1", 40009))
    [(data, addr)] = d.transports[4].sent
    assert addr == ("192.0.2.1", 40009) and isinstance(decode(data), MapNotify)


# --- item 7: PubSub on the Map-Server (RFC 9437) -------------------------------------------

CLIENT_KEY, SUB_ID = "client-secret", 0x5B5B_0000_0000_0000_0000_0000_0000_0042


def pubsub_ms():
    sites = [site(accept_more_specifics=True),
             Site("client", {3: CLIENT_KEY}, [(0, net("10.9.0.0/24"))])]
    return MapServer(sites, rng=random.Random(1))


def subscribe_request(eid="10.1.0.5", nonce=0x1000, xtr_id=SUB_ID, n_bit=True,
                      source="10.9.0.1"):
    from nodes.lisp.ipudp import IpUdp
    from nodes.lisp.messages import EncapsulatedControl
    e, mask = make_eid(f"{eid}/32")
    req = MapRequest(nonce, [RequestRecord(e, mask, 0x80 if n_bit else 0)], [ITR],
                     source_eid=ip(source), xtr_id=xtr_id, site_id=0 if xtr_id is None else 9)
    return encode(EncapsulatedControl(req, IpUdp(ip(source), ip(eid))))


def notifies_to(actions, dst):
    return [s for s in sends(actions) if s.dst == dst and isinstance(s.message, MapNotify)]


def test_a_map_request_with_the_i_and_n_bits_subscribes_and_the_ack_carries_the_mapping():
    """RFC 9437 section 5: the subscription is acknowledged with a Map-Notify to the
    subscriber (nonce of its Map-Request, its xTR-ID), signed with its site's key; the
    request itself is answered as any other."""
    ms = pubsub_ms()
    ms.receive(register("10.1.0.5/32", A_SET, proxy=True), XTR_A, 0.0)
    out = ms.receive(subscribe_request(), ITR, 1.0)
    [reply] = [s for s in sends(out) if isinstance(s.message, MapReply)]
    [note] = notifies_to(out, ITR)
    wire = note.wire()
    msg = decode(wire)
    assert verify(wire, CLIENT_KEY) and not verify(wire, KEY)
    assert (msg.nonce, msg.key_id, msg.xtr_id, msg.site_id) == (0x1000, 3, SUB_ID, 9)
    assert rloc_set(msg.records[0]) == A_SET and note.dport == 4342
    assert list(ms.subscriptions) == [(0, net("10.1.0.5/32"))]
    assert ms.counters["subscriptions"] == 1


def test_subscribers_hear_of_a_move_in_a_map_notify_tshark_decodes(tshark, tmp_path):
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether
    from scapy.packet import Raw
    from tests.tshark_util import assert_clean, dissect
    ms = pubsub_ms()
    ms.receive(register("10.1.0.5/32", A_SET, notify=False), XTR_A, 0.0)
    [first] = notifies_to(ms.receive(subscribe_request(), ITR, 1.0), ITR)
    ms.receive(ack(first, CLIENT_KEY), ITR, 1.1)
    out = ms.receive(register("10.1.0.5/32", B_SET, notify=False), XTR_B, 2.0)
    [note] = notifies_to(out, ITR)
    wire = note.wire()
    msg = decode(wire)
    assert verify(wire, CLIENT_KEY) and msg.nonce == 0x1001       # the next one counts up
    assert rloc_set(msg.records[0]) == B_SET and msg.xtr_id == SUB_ID
    [frame] = dissect(tshark, [Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / IP(src="192.0.2.100", dst=str(ITR))
                               / UDP(sport=4342, dport=4342) / Raw(wire)], tmp_path / "n.pcap")
    assert_clean(frame)
    assert frame.shows("lisp.type") == ["4"]
    assert frame.one("lisp.mnot.flags.xtrid") == "1"
    assert bytes.fromhex(frame.values("lisp.xtrid")[0]) == SUB_ID.to_bytes(16, "big")
    assert frame.one("lisp.loc.locator") == "192.0.2.2"
    assert frame.one("lisp.mapping.eid.ipv4") == "10.1.0.5"
    assert int(frame.one("lisp.nonce"), 16) == 0x1001
    # Acknowledged: quiet. A refresh that changes nothing notifies no subscriber.
    ms.receive(ack(note, CLIENT_KEY), ITR, 2.1)
    assert notifies_to(ms.tick(5.0), ITR) == []       # (xTR1's move notify is not ours)
    assert notifies_to(ms.receive(register("10.1.0.5/32", B_SET, notify=False), XTR_B, 6.0),
                       ITR) == []
    # A de-registration is a change too: the record comes with no locators and TTL 0.
    [gone] = notifies_to(ms.receive(register("10.1.0.5/32", B_SET, ttl=0, notify=False),
                                    XTR_B, 7.0), ITR)
    assert gone.message.records[0].locators == [] and gone.message.records[0].ttl == 0


def test_the_subscribed_tshark_view_of_the_map_request_matches_rfc9437(tshark, tmp_path):
    """tshark 4.0 predates RFC 9437: the I bit shows among its 'Reserved bits' (the bit
    after R), the N bit as the record's Reserved 0x80, and xTR-ID + Site-ID as trailing
    data: where RFC 9437 puts them."""
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether
    from scapy.packet import Raw
    from tests.tshark_util import dissect
    ecm = decode(subscribe_request())
    raw = encode(ecm.message)
    [frame] = dissect(tshark, [Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / IP(src=str(ITR), dst="192.0.2.100")
                               / UDP(sport=4342, dport=4342) / Raw(raw)], tmp_path / "r.pcap")
    assert int(frame.one("lisp.mreq.res"), 16) == 0x80        # I: 10 bits from the end
    assert int(frame.one("lisp.mreq.record.res"), 16) == 0x80
    assert frame.values("data.data") == [(SUB_ID.to_bytes(16, "big") + (9).to_bytes(8, "big"))
                                         .hex()]


def test_no_subscription_without_the_n_bit_the_xtr_id_or_a_key():
    ms = pubsub_ms()
    ms.receive(register("10.1.0.5/32", A_SET, proxy=True), XTR_A, 0.0)
    for raw in (subscribe_request(n_bit=False), subscribe_request(xtr_id=None)):
        assert notifies_to(ms.receive(raw, ITR, 1.0), ITR) == []
    out = ms.receive(subscribe_request(source="172.16.0.1"), ITR, 1.0)   # no site: no key
    assert notifies_to(out, ITR) == [] and events(out, "subscription_refused")
    assert not ms.subscriptions and ms.counters["subscription_refused"] == 1
    # ... and the Map-Request was still answered every time.
    assert ms.counters["map_reply_sent"] == 3


def test_an_unanswering_subscriber_is_dropped_after_the_retransmissions():
    ms = pubsub_ms()
    ms.receive(register("10.1.0.5/32", A_SET, notify=False), XTR_A, 0.0)
    ms.receive(subscribe_request(), ITR, 1.0)                  # its ack is never answered
    for t in (2.0, 3.0, 4.0, 5.0):
        ms.tick(t)
    assert not ms.subscriptions
    assert ms.counters["subscriptions_dropped"] == 1
    out = ms.receive(register("10.1.0.5/32", B_SET, notify=False), XTR_B, 6.0)
    assert notifies_to(out, ITR) == []


def test_a_subscriber_to_an_unregistered_eid_hears_when_it_gets_registered():
    ms = pubsub_ms()
    [first] = notifies_to(ms.receive(subscribe_request("10.1.0.7"), ITR, 1.0), ITR)
    assert first.message.records[0].locators == [] and first.message.records[0].ttl == 0
    ms.receive(ack(first, CLIENT_KEY), ITR, 1.1)
    [note] = notifies_to(ms.receive(register("10.1.0.7/32", A_SET, notify=False), XTR_A, 2.0),
                         ITR)
    assert rloc_set(note.message.records[0]) == A_SET and note.message.nonce == 0x1001

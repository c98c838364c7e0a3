"""(issue 11) Received Locator-Status-Bits are honoured (RFC 9300 section 5.3): a packet
from a multihomed site whose L bit is set says which of the site's locators are up, bit k
for the k-th locator of its mapping; the receiving xTR's map-cache stops using a locator
the site says is down (its flows move to the next usable one) and uses it again when the
site says it is up. Bits from an address that is not one of the mapping's locators, or
that say the sender itself is down, are ignored and counted."""
import ipaddress
import random

from nodes.lisp.actions import Event, SendControl
from nodes.lisp.itr import Itr
from nodes.lisp.messages import EidRecord, Locator, MapReply, decode, encode

ip = ipaddress.ip_address
ITR_RLOC, MR = ip("192.0.2.9"), ip("192.0.2.100")
L1, L2, L3 = ip("192.0.2.1"), ip("192.0.2.2"), ip("192.0.2.3")
EID = ip("10.2.0.5")


def flow(sport):
    return b"\x11" + ip("10.9.0.7").packed + EID.packed + sport.to_bytes(2, "big") + b"\x00\x50"


def itr_with_mapping(locators):
    itr = Itr([ITR_RLOC], [MR], rng=random.Random(7))
    actions = itr.request(0, EID, 0.0)
    nonce = [a for a in actions if isinstance(a, SendControl)][0].message.message.nonce
    reply = MapReply(nonce, [EidRecord(ip("10.2.0.0"), 24, locators, ttl=60)])
    itr.receive_reply(decode(encode(reply)), L1, 0.01)
    return itr


def used(itr, flows=200):
    return {itr.route(0, EID, 1.0, flow(20000 + i))[0].rloc for i in range(flows)}


def test_a_locator_the_site_says_is_down_gets_no_flows_until_it_is_up_again():
    itr = itr_with_mapping([Locator(L1, 1, 50), Locator(L2, 1, 50)])
    assert used(itr) == {L1, L2}
    # from L1: bit 0 (L1) up, bit 1 (L2) down
    out = itr.locator_status(0, ip("10.2.0.9"), L1, 0b01, 1.0)
    assert [a.name for a in out if isinstance(a, Event)] == ["locator_status_changed"]
    assert out[0].fields["down"] == [str(L2)] and out[0].fields["eid"] == "[0]10.2.0.0/24"
    assert used(itr) == {L1}
    assert itr.locator_status(0, ip("10.2.0.9"), L1, 0b01, 1.1) == []      # no change
    itr.locator_status(0, ip("10.2.0.9"), L1, 0b11, 1.2)
    assert used(itr) == {L1, L2}
    assert itr.counters["lsb_status_changed"] == 2


def test_a_backup_takes_the_flows_when_the_site_says_its_primary_is_down():
    itr = itr_with_mapping([Locator(L1, 1, 100), Locator(L2, 2, 100)])
    assert used(itr) == {L1}
    itr.locator_status(0, ip("10.2.0.9"), L2, 0b10, 1.0)     # from the backup: L1 down
    assert used(itr) == {L2}


def test_bits_are_believed_only_from_a_locator_of_the_mapping_that_they_say_is_up():
    itr = itr_with_mapping([Locator(L1, 1, 50), Locator(L2, 1, 50), Locator(L3, 1, 50)])
    # a spoofed outer source: not one of the site's locators
    assert itr.locator_status(0, EID, ip("198.51.100.7"), 0b001, 1.0) == []
    assert itr.counters["lsb_ignored_not_a_locator"] == 1
    # L2 (bit 1) says it is down itself: inconsistent, ignored
    assert itr.locator_status(0, EID, L2, 0b101, 1.0) == []
    assert itr.counters["lsb_ignored_sender_down"] == 1
    # the L bit clear: no status at all
    assert itr.locator_status(0, EID, L1, None, 1.0) == []
    # a source EID we hold no mapping for
    assert itr.locator_status(0, ip("10.7.0.1"), L1, 0b1, 1.0) == []
    assert itr.counters["lsb_no_mapping"] == 1
    assert used(itr) == {L1, L2, L3}


def test_more_locators_than_the_field_holds_are_not_judged_by_it():
    locs = [Locator(ip(f"192.0.2.{i}"), 1, 10) for i in range(1, 10)]     # 9 locators
    itr = itr_with_mapping(locs)
    assert itr.locator_status(0, EID, L1, 0b1, 1.0, width=8) == []
    assert itr.counters["lsb_ignored_too_many_locators"] == 1
    assert len(used(itr, 400)) == 9


def test_a_new_mapping_starts_without_the_old_status():
    itr = itr_with_mapping([Locator(L1, 1, 50), Locator(L2, 1, 50)])
    itr.locator_status(0, EID, L1, 0b01, 1.0)
    assert used(itr) == {L1}
    actions = itr.request(0, EID, 2.0)
    nonce = [a for a in actions if isinstance(a, SendControl)][0].message.message.nonce
    reply = MapReply(nonce, [EidRecord(ip("10.2.0.0"), 24, [Locator(L1, 1, 50),
                                                             Locator(L2, 1, 50)], ttl=60)])
    itr.receive_reply(decode(encode(reply)), L1, 2.01)
    assert used(itr) == {L1, L2}

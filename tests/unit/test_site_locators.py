"""(issue 11) An ETR's Map-Reply carries the site's full locator set.

A site with two xTRs registers one prefix from both; the Map-Server merges them and tells
each registrant the merged set in a Map-Notify. An ETR that answered with its own RLOCs only
made an ITR that asked it (an SMR-invoked or a direct Map-Request) forget the other xTR:
no load sharing by weight, no fail-over. Now the ETR learns the site's set from the
Map-Notify records for its EIDs (and from [[site_rloc]] in its config) and answers with it:
its own RLOCs first with the L bit (RFC 9301 section 5.4), the others with their own
priority and weight."""
import ipaddress
import random

from nodes.config import build_core, parse_config
from nodes.lisp.address import AfiList, make_eid
from nodes.lisp.auth import sign
from nodes.lisp.etr import Etr, MapServerConfig
from nodes.lisp.messages import (ALG_HMAC_SHA256_128, EidRecord, Locator, MapNotify,
                                 MapRequest, RequestRecord, decode, encode)
from tests.unit.test_config import MINIMAL_XTR

ip = ipaddress.ip_address
net = ipaddress.ip_network
MS, A, B, C = ip("192.0.2.100"), ip("192.0.2.1"), ip("192.0.2.2"), ip("192.0.2.3")
ITR = ip("198.51.100.9")
KEY = "site-key"
PREFIX = net("10.1.0.0/24")


def make_etr(**kw):
    return Etr([Locator(A, 1, 60)], [(0, PREFIX)],
               [MapServerConfig(MS, KEY, 0, ALG_HMAC_SHA256_128)], register_interval=10.0,
               rng=random.Random(4), **kw)


def notify(etr, nonce, locators, prefix="10.1.0.0/24", now=1.0):
    eid, mask = make_eid(prefix)
    raw = encode(sign(MapNotify(nonce, [EidRecord(eid, mask, locators)], 0,
                                ALG_HMAC_SHA256_128), KEY))
    return etr.handle_notify(decode(raw), raw, MS, now)


def answer(etr, eid="10.1.0.9/32", probe=False, now=2.0):
    req = MapRequest(77, [RequestRecord(*make_eid(eid))], [ITR], probe=probe)
    [send] = [a for a in etr.handle_request(decode(encode(req)), ITR, now)
              if type(a).__name__ == "SendControl"]
    [rec] = decode(send.wire()).records
    return [(loc.address, loc.priority, loc.weight, loc.local) for loc in rec.locators]


def test_the_reply_carries_the_merged_set_of_a_map_notify():
    etr = make_etr()
    assert answer(etr) == [(A, 1, 60, True)]
    acks = notify(etr, 1000, [Locator(A, 1, 60), Locator(B, 1, 40)])
    assert [type(a).__name__ for a in acks].count("SendControl") == 1        # acknowledged
    assert answer(etr) == [(A, 1, 60, True), (B, 1, 40, False)]
    assert etr.counters["site_locator_set_learned"] == 1
    # The other xTR left the site: the Map-Server's next merged set has us alone.
    notify(etr, 1001, [Locator(A, 1, 60)])
    assert answer(etr) == [(A, 1, 60, True)]


def test_a_confirmation_that_echoes_our_own_register_keeps_the_learned_set():
    etr = make_etr()
    notify(etr, 1000, [Locator(A, 1, 60), Locator(B, 1, 40)])
    [register] = [a for a in etr.tick(5.0) if type(a).__name__ == "SendControl"]
    echo = register.message                  # what our Map-Server sends back: the same records
    raw = encode(sign(MapNotify(echo.nonce, echo.records, 0, ALG_HMAC_SHA256_128), KEY))
    etr.handle_notify(decode(raw), raw, MS, 5.1)
    assert etr.counters["map_notify_received"] == 2
    assert answer(etr, now=6.0) == [(A, 1, 60, True), (B, 1, 40, False)]


def test_records_for_eids_we_do_not_own_teach_nothing():
    etr = make_etr()
    notify(etr, 1000, [Locator(A), Locator(B)], prefix="10.7.0.0/24")
    notify(etr, 1001, [Locator(A), Locator(B)], prefix="10.1.0.0/25")      # not exactly ours
    assert answer(etr) == [(A, 1, 60, True)]


def test_locators_that_are_not_addresses_are_skipped_and_counted():
    etr = make_etr()
    notify(etr, 1000, [Locator(A, 1, 60), Locator(AfiList((B,)), 1, 40),
                       Locator(C, 2, 100)])
    assert answer(etr) == [(A, 1, 60, True), (C, 2, 100, False)]
    assert etr.counters["map_notify_locator_skipped"] == 1


def test_configured_site_locators_are_in_every_reply():
    etr = make_etr(site_rlocs=[Locator(C, 2, 100)])
    assert answer(etr) == [(A, 1, 60, True), (C, 2, 100, False)]
    notify(etr, 1000, [Locator(A, 1, 60), Locator(B, 1, 40), Locator(C, 2, 100)])
    assert answer(etr) == [(A, 1, 60, True), (C, 2, 100, False), (B, 1, 40, False)]


def test_a_detected_host_is_answered_with_the_site_set_too():
    etr = make_etr(dynamic_ranges=[(0, net("10.10.0.0/24"))])
    etr.host_seen(0, ip("10.10.0.5"), 1.0)
    notify(etr, 1000, [Locator(A, 1, 60), Locator(B, 1, 40)], prefix="10.10.0.5/32")
    assert answer(etr, "10.10.0.5/32") == [(A, 1, 60, True), (B, 1, 40, False)]
    etr.host_gone(0, ip("10.10.0.5"), 3.0)
    etr.host_seen(0, ip("10.10.0.5"), 4.0)                       # detected again: no stale set
    assert answer(etr, "10.10.0.5/32", now=4.5) == [(A, 1, 60, True)]


def test_a_probe_reply_marks_only_our_own_locators_probed():
    etr = make_etr(site_rlocs=[Locator(C, 2, 100)])
    req = MapRequest(78, [RequestRecord(*make_eid("10.1.0.9/32"))], [ITR], probe=True)
    [send] = [a for a in etr.handle_request(req, ITR, 2.0)
              if type(a).__name__ == "SendControl"]
    msg = decode(send.wire())
    assert msg.probe
    assert [(loc.address, loc.probed) for loc in msg.records[0].locators] == [(A, True),
                                                                              (C, False)]


CONFIG = MINIMAL_XTR


def test_site_rlocs_come_from_the_config():
    cfg = parse_config(CONFIG + '[[site_rloc]]\naddress = "192.0.2.3"\npriority = 2\n')
    core = build_core(cfg, rng=random.Random(1))
    assert [(x.address, x.priority, x.weight) for x in core.etr.site_rlocs] == [(C, 2, 100)]
    assert parse_config(CONFIG).site_rlocs == []


def test_a_site_rloc_that_is_our_own_is_refused_in_one_line():
    import pytest
    from nodes.config import ConfigError
    with pytest.raises(ConfigError) as e:
        parse_config(CONFIG + '[[site_rloc]]\naddress = "192.0.2.1"\n')
    assert "site_rloc[0].address" in str(e.value) and "\n" not in str(e.value)

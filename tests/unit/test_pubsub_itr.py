"""PubSub (RFC 9437) from the ITR's side, in memory with the real codec: an ITR that
subscribes (Map-Request with the I bit, its xTR-ID and the N bit on the record) hears of a
move from the Map-Server's Map-Notify, updates its map-cache at once and acknowledges, with
no Solicit-Map-Request round; a Map-Notify it did not subscribe to, or signed with another
key, changes nothing (issue 12)."""
import ipaddress
import random

from nodes.lisp.actions import Decision
from nodes.lisp.auth import sign
from nodes.lisp.etr import Etr, MapServerConfig
from nodes.lisp.itr import Itr
from nodes.lisp.mapserver import MapServerResolver, Site
from nodes.lisp.messages import (ALG_HMAC_SHA256_128, EidRecord, Locator, MapNotify,
                                 decode, encode)
from nodes.lisp.sim import SimNetwork
from nodes.lisp.xtr import Xtr

ip = ipaddress.ip_address
net = ipaddress.ip_network

MS = ip("192.0.2.100")
XTR1, XTR2, CLIENT = ip("192.0.2.1"), ip("192.0.2.2"), ip("192.0.2.9")
VM = ip("10.1.0.5")
KEY, CLIENT_KEY = "dc-secret", "client-secret"
CLIENT_XTR_ID = 0x0123456789ABCDEF0123456789ABCDEF


def make_xtr(name, rloc, seed, prefixes=(), dynamic=(), key=KEY, xtr_id=None):
    rng = random.Random(seed)
    itr = Itr([rloc], [MS], name=name, rng=rng,
              subscribe=(xtr_id, 0) if xtr_id is not None else None)
    etr = Etr([Locator(rloc)], prefixes, [MapServerConfig(MS, key, 0, ALG_HMAC_SHA256_128)],
              name=name, register_interval=10.0, dynamic_ranges=dynamic, rng=rng,
              xtr_id=xtr_id)
    return Xtr(itr, etr, name=name)


def build(subscribe=True):
    sites = [Site("dc", {0: KEY}, [(0, net("10.1.0.0/24"))], accept_more_specifics=True),
             Site("client", {0: CLIENT_KEY}, [(0, net("10.9.0.0/24"))])]
    msmr = MapServerResolver(sites, rng=random.Random(1))
    dyn = [(0, net("10.1.0.0/24"))]
    x1 = make_xtr("xtr1", XTR1, 2, dynamic=dyn)
    x2 = make_xtr("xtr2", XTR2, 3, dynamic=dyn)
    client = make_xtr("client", CLIENT, 4, prefixes=[(0, net("10.9.0.0/24"))], key=CLIENT_KEY,
                      xtr_id=CLIENT_XTR_ID if subscribe else None)
    sim = SimNetwork()
    for addr, node in ((MS, msmr), (XTR1, x1), (XTR2, x2), (CLIENT, client)):
        sim.attach(addr, node)
    sim.tick(0.0)
    sim.now = 1.0
    sim.deliver(XTR1, x1.host_seen(0, VM, 1.0))
    sim.trace.clear()
    return sim, msmr, x1, x2, client


def test_a_subscribed_itr_follows_a_move_without_an_smr_round():
    sim, msmr, x1, x2, client = build()
    sim.now = 2.0
    decision, actions = client.route(0, VM, 2.0)
    sim.deliver(CLIENT, actions)
    # The request subscribes: the Map-Server acknowledges with a Map-Notify (the ITR acks
    # it) and forwards the request to xTR1, which answers.
    assert (CLIENT, MS, "ECM(Map-Request)") in sim.trace
    assert (MS, CLIENT, "Map-Notify") in sim.trace and (CLIENT, MS, "Map-Notify-Ack") in sim.trace
    assert msmr.ms.counters["subscriptions"] == 1
    assert client.route(0, VM, 2.1)[0] == Decision("encap", XTR1)

    sim.trace.clear()
    sim.now = 3.0
    sim.deliver(XTR2, x2.host_seen(0, VM, 3.0))
    # The move: xTR1 is told, and so is the subscribed client, which switches at once.
    assert (MS, CLIENT, "Map-Notify") in sim.trace, sim.trace
    assert (CLIENT, MS, "Map-Notify-Ack") in sim.trace, sim.trace
    assert not [t for t in sim.trace if "SMR" in t[2] or "Map-Request" in t[2]], sim.trace
    assert client.route(0, VM, 3.01)[0] == Decision("encap", XTR2)
    assert client.counters["map_notify_published"] >= 1
    assert not [n for n in msmr.ms.pending_notifies.values() if n.dst == CLIENT]


def test_without_subscribing_the_itr_keeps_the_stale_mapping_until_an_smr():
    sim, msmr, x1, x2, client = build(subscribe=False)
    sim.now = 2.0
    sim.deliver(CLIENT, client.route(0, VM, 2.0)[1])
    assert msmr.ms.counters["subscriptions"] == 0
    sim.now = 3.0
    sim.deliver(XTR2, x2.host_seen(0, VM, 3.0))
    assert (MS, CLIENT, "Map-Notify") not in sim.trace
    assert client.route(0, VM, 3.01)[0] == Decision("encap", XTR1)


def _forged(nonce, rloc, key):
    rec = EidRecord(VM, 32, [Locator(rloc)], ttl=10)
    return encode(sign(MapNotify(nonce, [rec], 0, ALG_HMAC_SHA256_128, xtr_id=CLIENT_XTR_ID),
                       key))


def test_a_map_notify_with_a_wrong_key_or_for_no_subscription_changes_nothing():
    sim, msmr, x1, x2, client = build()
    sim.now = 2.0
    sim.deliver(CLIENT, client.route(0, VM, 2.0)[1])
    evil = ip("203.0.113.66")
    out = client.receive(_forged(2**40, evil, "wrong-key"), MS, 2.5)
    assert client.route(0, VM, 2.6)[0] == Decision("encap", XTR1)
    assert client.counters["auth_failures"] >= 1
    # Signed right but about an EID the ITR never asked for: not installed.
    other = EidRecord(ip("10.1.0.77"), 32, [Locator(evil)], ttl=10)
    raw = encode(sign(MapNotify(2**41, [other], 0, ALG_HMAC_SHA256_128, xtr_id=CLIENT_XTR_ID),
                      CLIENT_KEY))
    client.receive(raw, MS, 2.7)
    assert client.route(0, ip("10.1.0.77"), 2.8)[0] != Decision("encap", evil)
    assert decode(raw).records[0].eid == ip("10.1.0.77") and out is not None


def test_each_subscription_counts_its_own_nonces_and_a_repeat_is_acked_not_applied():
    sim, msmr, x1, x2, client = build()
    itr = client.itr
    itr.subscribed |= {(0, VM), (0, ip("10.1.0.6"))}
    first = MapNotify(1000, [EidRecord(VM, 32, [Locator(XTR1)], ttl=10)], 0,
                      ALG_HMAC_SHA256_128, xtr_id=CLIENT_XTR_ID)
    other = MapNotify(5, [EidRecord(ip("10.1.0.6"), 32, [Locator(XTR2)], ttl=10)], 0,
                      ALG_HMAC_SHA256_128, xtr_id=CLIENT_XTR_ID)     # lower: its own count
    for m in (first, other):
        out = client.receive(encode(sign(m, CLIENT_KEY)), MS, 2.0)
        assert any(type(a).__name__ == "SendControl" for a in out)   # acknowledged
    assert client.route(0, ip("10.1.0.6"), 2.1)[0] == Decision("encap", XTR2)
    stale = MapNotify(1000, [EidRecord(VM, 32, [Locator(XTR2)], ttl=10)], 0,
                      ALG_HMAC_SHA256_128, xtr_id=CLIENT_XTR_ID)     # the same nonce again
    out = client.receive(encode(sign(stale, CLIENT_KEY)), MS, 2.2)
    assert any(type(a).__name__ == "SendControl" for a in out)
    assert client.route(0, VM, 2.3)[0] == Decision("encap", XTR1)
    assert itr.counters["map_notify_publication_repeated"] == 1


def test_a_publication_flushes_the_data_planes_cached_decisions():
    """The daemon flushes the data plane's per-flow decisions (and syncs the kernel path's
    trie) on the core's mapping events: a publication that changed the map-cache must be
    one, or packets keep going to the old RLOC until the next periodic sync (seen in a
    pubsub-move run: the ITR had the new mapping 130 ms before its packets followed)."""
    from nodes.daemon import MAPPING_EVENTS
    sim, msmr, x1, x2, client = build()
    sim.now = 2.0
    sim.deliver(CLIENT, client.route(0, VM, 2.0)[1])
    last = max(client.itr.last_published.values())          # the subscription's count
    notify = MapNotify(last + 1, [EidRecord(VM, 32, [Locator(XTR2)], ttl=10)], 0,
                       ALG_HMAC_SHA256_128, xtr_id=CLIENT_XTR_ID)
    out = client.receive(encode(sign(notify, CLIENT_KEY)), MS, 3.0)
    names = {a.name for a in out if type(a).__name__ == "Event"}
    assert "map_cache_published" in names and names & MAPPING_EVENTS, names

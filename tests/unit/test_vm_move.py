"""A VM move played through the state machines in memory: ITR, MS/MR, two ETRs.

The messages go through the real codec. The test asserts the exact message sequence of the
move and that the ITR ends up encapsulating to the new RLOC."""
import ipaddress
import random

from nodes.lisp.actions import Decision, RouteAdd, RouteDel
from nodes.lisp.etr import Etr, MapServerConfig
from nodes.lisp.itr import Itr
from nodes.lisp.mapserver import MapServerResolver, Site
from nodes.lisp.messages import ALG_HMAC_SHA1_96, ALG_HMAC_SHA256_128, Locator
from nodes.lisp.sim import SimNetwork
from nodes.lisp.xtr import Xtr

ip = ipaddress.ip_address
net = ipaddress.ip_network

MS = ip("192.0.2.100")
XTR1, XTR2, CLIENT = ip("192.0.2.1"), ip("192.0.2.2"), ip("192.0.2.9")
VM = ip("10.1.0.5")
KEY = "dc-secret"


def make_xtr(name, rloc, seed, prefixes=(), dynamic=(), alg=ALG_HMAC_SHA256_128, key=KEY):
    rng = random.Random(seed)
    itr = Itr([rloc], [MS], name=name, rng=rng)
    etr = Etr([Locator(rloc)], prefixes, [MapServerConfig(MS, key, 0, alg)], name=name,
              register_interval=10.0, dynamic_ranges=dynamic, rng=rng)
    return Xtr(itr, etr, name=name)


def build():
    sites = [Site("dc", {0: KEY}, [(0, net("10.1.0.0/24"))], accept_more_specifics=True),
             Site("client", {0: "client-secret"}, [(0, net("10.9.0.0/24"))])]
    msmr = MapServerResolver(sites, rng=random.Random(1))
    dyn = [(0, net("10.1.0.0/24"))]
    x1 = make_xtr("xtr1", XTR1, 2, dynamic=dyn)
    x2 = make_xtr("xtr2", XTR2, 3, dynamic=dyn, alg=ALG_HMAC_SHA1_96)
    client = make_xtr("client", CLIENT, 4, prefixes=[(0, net("10.9.0.0/24"))],
                      key="client-secret")
    sim = SimNetwork()
    for addr, node in ((MS, msmr), (XTR1, x1), (XTR2, x2), (CLIENT, client)):
        sim.attach(addr, node)
    return sim, msmr, x1, x2, client


def moved(client_src=None):
    """build(), then the VM seen by xTR1 at t=1 and by xTR2 at t=3 (it moved to DC2); with
    `client_src`, the client's ITR sent that host's packet to the VM at t=2, before the
    move, so its map-cache holds the old mapping."""
    sim, msmr, x1, x2, client = build()
    sim.tick(0.0)
    sim.now = 1.0
    sim.deliver(XTR1, x1.host_seen(0, VM, 1.0))
    if client_src is not None:
        sim.now = 2.0
        sim.deliver(CLIENT, client.route(0, VM, 2.0, src=client_src)[1])
    sim.now = 3.0
    sim.deliver(XTR2, x2.host_seen(0, VM, 3.0))
    return sim, msmr, x1, x2, client


def test_vm_move_message_sequence_and_new_rloc():
    sim, msmr, x1, x2, client = build()
    sim.tick(0.0)
    assert sim.trace == [(CLIENT, MS, "Map-Register"), (MS, CLIENT, "Map-Notify")]

    # The VM appears in DC1: xTR1 detects it and registers the host EID.
    sim.trace.clear()
    sim.now = 1.0
    sim.deliver(XTR1, x1.host_seen(0, VM, 1.0))
    assert sim.trace == [(XTR1, MS, "Map-Register"), (MS, XTR1, "Map-Notify")]
    assert (XTR1, RouteAdd(0, net("10.1.0.5/32"), "local")) in sim.other_actions

    # The client's first packet misses, asks, and then goes to xTR1.
    sim.trace.clear()
    sim.now = 2.0
    decision, actions = client.route(0, VM, 2.0)
    assert decision == Decision("drop", reason="map-cache miss")
    sim.deliver(CLIENT, actions)
    assert sim.trace == [(CLIENT, MS, "ECM(Map-Request)"), (MS, XTR1, "ECM(Map-Request)"),
                         (XTR1, CLIENT, "Map-Reply")]
    assert client.route(0, VM, 2.1)[0] == Decision("encap", XTR1)

    # The move: xTR2 sees the VM. MS tells xTR1, which acknowledges.
    sim.trace.clear()
    sim.now = 3.0
    sim.deliver(XTR2, x2.host_seen(0, VM, 3.0))
    assert sim.trace == [(XTR2, MS, "Map-Register"), (MS, XTR1, "Map-Notify"),
                         (MS, XTR2, "Map-Notify"), (XTR1, MS, "Map-Notify-Ack")]
    assert (XTR1, RouteAdd(0, net("10.1.0.5/32"), "away")) in sim.other_actions
    assert (XTR1, RouteDel(0, net("10.1.0.5/32"), "local")) in sim.other_actions
    assert msmr.counters["host_moves"] == 1
    assert not msmr.ms.pending_notifies          # the ack cleared it

    # The client still uses the stale mapping; xTR1 re-encapsulates and solicits.
    sim.trace.clear()
    sim.now = 3.5
    assert client.route(0, VM, 3.5)[0] == Decision("encap", XTR1)
    decision, actions = x1.decapsulated(0, VM, CLIENT, 3.5)
    assert decision == Decision("encap", XTR2)
    sim.deliver(XTR1, actions)
    assert sim.trace == [(XTR1, CLIENT, "SMR"),
                         (CLIENT, MS, "ECM(Map-Request(smr-invoked))"),
                         (MS, XTR2, "ECM(Map-Request(smr-invoked))"),
                         (XTR2, CLIENT, "Map-Reply")]
    assert client.route(0, VM, 3.6)[0] == Decision("encap", XTR2)
    assert client.counters["smr_received"] == 1
    assert client.counters["smr_invoked_request_sent"] == 1

    # A second stale packet within the SMR interval is re-encapsulated but not solicited.
    decision, actions = x1.decapsulated(0, VM, CLIENT, 3.7)
    assert decision == Decision("encap", XTR2)
    assert actions == []
    assert x1.counters["smr_rate_limited"] == 1


def test_wrong_key_is_rejected_and_counted_and_not_stored():
    sim, msmr, x1, x2, client = build()
    bad = make_xtr("bad", XTR1, 9, dynamic=[(0, net("10.1.0.0/24"))], key="wrong")
    sim.attach(XTR1, bad)
    sim.deliver(XTR1, bad.host_seen(0, VM, 0.0))
    assert sim.trace == [(XTR1, MS, "Map-Register")]      # no Map-Notify
    assert msmr.counters["auth_failures"] == 1
    assert msmr.ms.lookup(0, VM, 0.0) is None


def test_dynamic_eid_outside_range_is_ignored():
    sim, msmr, x1, x2, client = build()
    actions = x1.host_seen(0, ip("172.16.0.1"), 0.0)
    sim.deliver(XTR1, actions)
    assert sim.trace == []
    assert x1.counters["dynamic_eid_rejected"] == 1

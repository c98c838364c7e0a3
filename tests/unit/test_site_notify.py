"""The site-local Map-Notify of an extended subnet (issue 12): the xTR that detects a moved
host tells the site's other xTRs over the LAN extension at once (a multicast group the DCI
carries), so the old xTR stops answering for the host without waiting for the Map-Server's
notification. In memory: no sockets, no clock."""
import ipaddress
import random

from nodes.lisp.actions import Event, RouteAdd, RouteDel, SendControl
from nodes.lisp.auth import sign
from nodes.lisp.etr import Etr, MapServerConfig
from nodes.lisp.messages import EidRecord, Locator, MapNotify, decode, encode
from nodes.lisp.itr import Itr
from nodes.lisp.xtr import Xtr

ip = ipaddress.ip_address
net = ipaddress.ip_network
MS, KEY = ip("192.0.2.100"), "dc-key"
DC1, DC2 = ip("192.0.2.1"), ip("192.0.2.2")
LAN1, LAN2 = ip("10.10.0.2"), ip("10.10.0.3")          # the xTRs' LAN addresses
GROUP = ip("239.255.43.42")
VM = ip("10.10.0.5")


def xtr(rloc, seed, key=KEY, group=GROUP):
    rng = random.Random(seed)
    etr = Etr([Locator(rloc)], [], [MapServerConfig(MS, key, 0)], register_interval=10.0,
              dynamic_ranges=[(0, net("10.10.0.0/24"))], rng=rng, site_notify=group)
    return Xtr(Itr([rloc], [MS], rng=rng), etr)


def site_notifies(actions):
    return [a for a in actions if isinstance(a, SendControl) and a.dst == GROUP]


def events(actions, name):
    return [a for a in actions if isinstance(a, Event) and a.name == name]


def test_a_detected_host_is_announced_to_the_group_and_the_old_xtr_lets_it_go():
    x1, x2 = xtr(DC1, 1), xtr(DC2, 2)
    assert site_notifies(x1.host_seen(0, VM, 0.0))          # the VM boots in DC1
    [announce] = site_notifies(x2.host_seen(0, VM, 5.0))    # ... and moves to DC2
    msg = decode(announce.wire())
    assert isinstance(msg, MapNotify) and not msg.xtr_id
    assert [(r.eid, r.mask_len, [x.address for x in r.locators]) for r in msg.records] == \
        [(VM, 32, [DC2])]
    out = x1.receive(announce.wire(), LAN2, 5.001)
    assert events(out, "eid_away")[0].fields["via"] == "site-local Map-Notify", out
    assert RouteDel(0, net("10.10.0.5/32"), "local") in out
    assert RouteAdd(0, net("10.10.0.5/32"), "away") in out
    assert (0, VM) not in x1.etr.dynamic
    assert [a.address for a in x1.etr.away.lookup(0, VM, 5.0).locators] == [DC2]
    assert not [a for a in out if isinstance(a, SendControl)]    # no ack: not a Map-Server
    assert x1.etr.counters["site_notify_received"] == 1
    # the Map-Server's own notification, later, finds nothing left to do, and is acked
    late = sign(MapNotify(10**12, [EidRecord(VM, 32, [Locator(DC2)], 1440)], 0, 2), KEY)
    out = x1.receive(encode(late), MS, 5.05)
    assert not events(out, "eid_away") and [a.dst for a in out
                                            if isinstance(a, SendControl)] == [MS]


def test_the_announcing_xtr_ignores_its_own_and_a_host_it_never_held_is_not_touched():
    x1, x2 = xtr(DC1, 1), xtr(DC2, 2)
    [own] = site_notifies(x2.host_seen(0, VM, 1.0))
    assert not events(x2.receive(own.wire(), LAN2, 1.0), "eid_away")   # our RLOCs: kept
    assert (0, VM) in x2.etr.dynamic
    assert not events(x1.receive(own.wire(), LAN2, 1.0), "eid_away")   # x1 never had it


def test_a_wrong_key_or_a_replayed_site_notify_changes_nothing():
    x1, x2 = xtr(DC1, 1), xtr(DC2, 2)
    intruder = xtr(DC2, 3, key="not-the-site-key")
    x1.host_seen(0, VM, 0.0)
    [forged] = site_notifies(intruder.host_seen(0, VM, 1.0))
    out = x1.receive(forged.wire(), LAN2, 1.0)
    assert not events(out, "eid_away") and (0, VM) in x1.etr.dynamic
    assert x1.etr.counters["site_notify_rejected"] == 1
    other = ip("10.10.0.6")
    [earlier] = site_notifies(x2.host_seen(0, other, 1.5))
    [real] = site_notifies(x2.host_seen(0, VM, 2.0))
    assert events(x1.receive(real.wire(), LAN2, 2.0), "eid_away")
    x1.host_seen(0, VM, 3.0)                                # the VM came back to DC1
    out = x1.receive(real.wire(), LAN2, 4.0)               # the last announce again
    assert not events(out, "eid_away") and (0, VM) in x1.etr.dynamic
    assert x1.etr.counters["site_notify_repeated"] == 1
    x1.host_seen(0, other, 3.0)
    out = x1.receive(earlier.wire(), LAN2, 4.0)            # an older one: a replay
    assert not events(out, "eid_away") and (0, other) in x1.etr.dynamic
    assert x1.etr.counters["site_notify_replayed"] == 1


def test_without_a_group_nothing_is_sent_and_a_notify_from_a_stranger_is_rejected():
    x1 = xtr(DC1, 1, group=None)
    assert not site_notifies(x1.host_seen(0, VM, 0.0))
    x2 = xtr(DC2, 2)
    [announce] = site_notifies(x2.host_seen(0, VM, 1.0))
    out = x1.receive(announce.wire(), LAN2, 1.0)
    assert not events(out, "eid_away") and x1.etr.counters["map_notify_rejected"] == 1


def test_the_lab_model_gives_the_dci_sites_xtrs_the_group_and_can_turn_it_off(tmp_path):
    from lab.demo import mode_file
    from topologies.model import SITE_NOTIFY_GROUP, load

    from tests.unit.labtexts import write
    lab = load(mode_file("lisp-extended-subnet"))
    cfgs = lab.daemon_configs("/w", "/s")
    for node in ("xtr1", "xtr2"):
        etr = cfgs[node][1]["etr"]
        assert etr["site_notify_group"] == SITE_NOTIFY_GROUP
        assert etr["site_notify_interface"] == f"{node}-lan"
    assert "site_notify_group" not in cfgs["xtrc"][1]["etr"]        # not on the DCI
    off = write(tmp_path, f"extends: {mode_file('lisp-extended-subnet')}\nlab: off\n"
                          "dci: {site_notify: false}\n")
    assert all("site_notify_group" not in c["etr"]
               for _, c in load(off).daemon_configs("/w", "/s").values() if "etr" in c)


def test_a_detection_sends_its_messages_before_it_programs_its_routes():
    """The Map-Register and the site-local Map-Notify come before the detection's route
    changes in what the core asks the daemon to do: the daemon carries them out in order,
    and a route takes it a millisecond or two (the old xTR heard of the VM 3.5 ms after
    its detection, 2 ms of them behind DC2's local route)."""
    x1, x2 = xtr(DC1, 1), xtr(DC2, 2)
    x2.etr.away.insert(0, net("10.10.0.5/32"), [Locator(DC1)], 60, 0.0)   # it was away
    out = x2.host_seen(0, VM, 5.0)
    kinds = [type(a).__name__ for a in out if isinstance(a, (SendControl, RouteAdd,
                                                             RouteDel))]
    assert kinds == ["SendControl", "SendControl", "RouteDel", "RouteAdd"], kinds
    assert site_notifies(out) and [a.dst for a in out if isinstance(a, SendControl)] == \
        [MS, GROUP]

"""(issue 11) RLOC-probing in the core: Map-Requests with the probe bit straight to each
locator of the map-cache, answered by the ETR with the probe bit; the RTT kept per locator;
a locator that stops answering is marked down and its flows move to the next priority, and
back when it answers again. Interval configurable ([itr] rloc_probe_interval, off by
default)."""
import ipaddress
import random

import pytest

from nodes.config import ConfigError, build_core, parse_config
from nodes.lisp.actions import Decision, SendControl
from nodes.lisp.etr import Etr, MapServerConfig
from nodes.lisp.itr import Itr
from nodes.lisp.messages import (EidRecord, EncapsulatedControl, Locator, MapReply,
                                 MapRequest, RequestRecord, decode, encode)
from nodes.lisp.probing import RlocProber
from nodes.lisp.xtr import Xtr
from tests.tshark_util import assert_clean, dissect

ip = ipaddress.ip_address
net = ipaddress.ip_network
ITR_RLOC, MR = ip("192.0.2.9"), ip("192.0.2.100")
L1, L2 = ip("192.0.2.1"), ip("192.0.2.2")          # the remote site's two xTRs
EID = ip("10.2.0.5")
FLOW = b"\x06" + ip("10.9.0.7").packed + EID.packed + b"\x04\xd2\x00\x50"


def make_itr(interval=10.0, timeout=1.0, retries=2):
    return Itr([ITR_RLOC], [MR], rng=random.Random(7),
               rloc_probing=RlocProber(interval, timeout, retries, rng=random.Random(8)))


def install(itr, now=0.0):
    """A mapping for 10.2.0.0/24: L1 at priority 1, L2 at priority 2 (a backup), asked for
    (again, when it is cached: a refresh) and answered."""
    actions = itr.request(0, EID, now)
    nonce = [a for a in actions if isinstance(a, SendControl)][0].message.message.nonce
    reply = MapReply(nonce, [EidRecord(ip("10.2.0.0"), 24, [Locator(L1, 1, 100),
                                                             Locator(L2, 2, 100)], ttl=60)])
    itr.receive_reply(decode(encode(reply)), L1, now + 0.01)


def probes(actions):
    out = {}
    for a in actions:
        if isinstance(a, SendControl):
            msg = decode(a.wire())
            assert isinstance(msg, MapRequest), msg       # never encapsulated
            out[a.dst] = msg
    return out


def answer(etr_rloc, probe, now):
    """What the ETR at `etr_rloc` (owning 10.2.0.0/24) sends back for `probe`."""
    etr = Etr([Locator(etr_rloc)], [(0, net("10.2.0.0/24"))], [MapServerConfig(MR, "k")],
              rng=random.Random(1))
    [send] = [a for a in etr.handle_request(probe, ITR_RLOC, now)
              if isinstance(a, SendControl)]
    assert send.dst == ITR_RLOC
    return decode(send.wire())


def test_probes_go_to_each_locator_with_the_probe_bit_and_the_entrys_prefix():
    itr = make_itr()
    install(itr)
    sent = probes(itr.tick(1.0))
    assert set(sent) == {L1, L2}
    for req in sent.values():
        assert req.probe and not req.smr and req.source_eid is None     # AFI 0 (RFC 9301 5.3)
        assert [(r.eid, r.mask_len) for r in req.records] == [(ip("10.2.0.0"), 24)]
        assert req.itr_rlocs == [ITR_RLOC]
    assert sends_nothing(itr.tick(1.5))               # one outstanding probe per locator


def sends_nothing(actions):
    return not any(isinstance(a, SendControl) for a in actions)


def test_the_etr_answers_with_the_probe_bit_and_the_itr_keeps_the_rtt():
    itr = make_itr()
    install(itr)
    sent = probes(itr.tick(1.0))
    reply = answer(L1, sent[L1], 1.0)
    assert reply.probe and reply.nonce == sent[L1].nonce
    assert reply.records[0].locators[0].probed
    itr.receive_reply(reply, L1, 1.04)
    assert abs(itr.prober.state(L1).rtt - 0.04) < 1e-9
    assert itr.prober.state(L2).rtt is None
    assert itr.counters["rloc_probe_reply_received"] == 1
    assert itr.counters["map_reply_nonce_mismatch"] == 0


def test_a_silent_locator_goes_down_and_its_flows_move_to_the_next_priority_and_back():
    itr = make_itr(interval=10.0, timeout=1.0, retries=2)
    install(itr)
    assert itr.route(0, EID, 0.5, FLOW)[0] == Decision("encap", L1)
    t = 1.0
    sent = probes(itr.tick(t))
    itr.receive_reply(answer(L2, sent[L2], t), L2, t + 0.02)    # L2 answers, L1 is silent
    sent = probes(itr.tick(2.0))                                  # L1's first miss: retried
    assert set(sent) == {L1}
    out = itr.tick(3.0)                                           # second miss: down
    assert [e.name for e in out if type(e).__name__ == "Event"] == ["rloc_down"]
    assert itr.counters["rloc_down"] == 1 and not itr.prober.state(L1).up
    assert itr.route(0, EID, 3.1, FLOW)[0] == Decision("encap", L2)
    # A refresh of the mapping does not bring the silent locator back.
    install(itr, now=3.2)
    assert itr.route(0, EID, 3.3, FLOW)[0] == Decision("encap", L2)
    # Still probed, once an interval; its answer brings the flows back.
    sent = {}
    t = 3.3
    while L1 not in sent:
        t += 1.0
        sent = probes(itr.tick(t))
        assert t < 20.0
    out = itr.receive_reply(answer(L1, sent[L1], t), L1, t + 0.03)
    assert [e.name for e in out] == ["rloc_up"]
    assert itr.route(0, EID, t + 0.1, FLOW)[0] == Decision("encap", L1)


def test_a_multihomed_itrs_probe_is_answered_over_the_rloc_it_came_from():
    """(issue 11) A multihomed ITR whose first provider's link is down sends its probes out
    of the other link, from that link's RLOC: the answer goes to that RLOC, the request's
    source, when it is one of the ITR-RLOCs. It went to the first ITR-RLOC, unreachable
    while its link was down, so the ITR marked the far site's locators down and dropped
    its return traffic for the whole outage. Otherwise the first ITR-RLOC, as before."""
    first, second = ip("192.0.2.9"), ip("198.51.100.9")
    probe = MapRequest(77, [RequestRecord(ip("10.2.0.0"), 24)], [first, second], probe=True)
    etr = Etr([Locator(L1)], [(0, net("10.2.0.0/24"))], [MapServerConfig(MR, "k")],
              rng=random.Random(1))

    def answered_to(src):
        return [a.dst for a in etr.handle_request(decode(encode(probe)), src, 1.0)
                if isinstance(a, SendControl)]
    assert answered_to(second) == [second]
    assert answered_to(first) == [first]
    assert answered_to(MR) == [first]          # relayed (not from an ITR-RLOC): the first


def test_without_probing_nothing_is_sent():
    itr = Itr([ITR_RLOC], [MR], rng=random.Random(7))
    install(itr)
    assert sends_nothing(itr.tick(1.0)) and itr.prober is None


def test_a_probe_reply_reaches_the_prober_through_the_xtr():
    itr = make_itr()
    xtr = Xtr(itr, Etr([Locator(ITR_RLOC)], [], [], rng=random.Random(2)))
    install(itr)
    sent = probes(xtr.tick(1.0))
    xtr.receive(encode(answer(L1, sent[L1], 1.0)), L1, 1.01)
    assert itr.prober.state(L1).rtt is not None


CONFIG = """
[node]
name = "c"
role = "xtr"
[[rloc]]
address = "192.0.2.9"
[[map_resolver]]
address = "192.0.2.100"
"""


def test_the_interval_comes_from_the_config():
    assert build_core(parse_config(CONFIG)).itr.prober is None         # off by default
    core = build_core(parse_config(CONFIG + "[itr]\nrloc_probe_interval = 30\n"))
    assert core.itr.prober.interval == 30.0
    assert (core.itr.prober.timeout, core.itr.prober.retries) == (1.0, 3)     # defaults


def test_the_timeout_and_retries_come_from_the_config():
    """A failover within a few intervals needs probes retried faster than the interval."""
    core = build_core(parse_config(CONFIG + "[itr]\nrloc_probe_interval = 0.5\n"
                                            "rloc_probe_timeout = 0.15\n"
                                            "rloc_probe_retries = 2\n"))
    assert (core.itr.prober.timeout, core.itr.prober.retries) == (0.15, 2)
    with pytest.raises(ConfigError, match="rloc_probe_retries"):
        parse_config(CONFIG + "[itr]\nrloc_probe_interval = 1\nrloc_probe_retries = 0\n")


def test_tshark_reads_a_probe_and_its_reply(tshark, tmp_path):
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether
    from scapy.packet import Raw
    itr = make_itr()
    install(itr)
    probe = probes(itr.tick(1.0))[L1]
    reply = answer(L1, probe, 1.0)
    req_f, rep_f = dissect(tshark, [
        Ether() / IP(src=str(ITR_RLOC), dst=str(L1)) / UDP(sport=4342, dport=4342)
        / Raw(encode(probe)),
        Ether() / IP(src=str(L1), dst=str(ITR_RLOC)) / UDP(sport=4342, dport=4342)
        / Raw(encode(reply))], tmp_path / "probe.pcap")
    for f in (req_f, rep_f):
        assert_clean(f)
    assert req_f.one("lisp.type") == "1" and req_f.one("lisp.mreq.flags.probe") == "1"
    assert req_f.one("lisp.mreq.record.prefix.ipv4") == "10.2.0.0"
    assert rep_f.one("lisp.type") == "2" and rep_f.one("lisp.mrep.flags.probe") == "1"
    assert rep_f.one("lisp.nonce") == req_f.one("lisp.nonce")
    assert rep_f.one("lisp.loc.flags.probe") == "1"

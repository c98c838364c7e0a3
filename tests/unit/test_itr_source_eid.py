"""(issue 11) A Map-Request sent on a map-cache miss carries the inner packet's source as
its Source-EID (RFC 9301 section 5.3); AFI 0 is for refreshes (and RLOC-probes). Peers use
it (the Map-Server's PubSub falls back on it to find the requester's site)."""
import ipaddress
import random

from nodes.dataplane import flow_of, flow_source
from nodes.lisp.itr import Itr
from nodes.lisp.messages import EncapsulatedControl, decode
from scapy.layers.inet import IP, UDP
from scapy.layers.inet6 import IPv6

ip = ipaddress.ip_address
MR = ip("192.0.2.100")


def sent_request(actions):
    ecm = decode(next(a for a in actions if type(a).__name__ == "SendControl").wire())
    assert isinstance(ecm, EncapsulatedControl)
    return ecm.message


def test_a_miss_asks_with_the_packets_source_and_a_refresh_with_afi_0():
    itr = Itr([ip("192.0.2.1")], [MR], rng=random.Random(1))
    _, actions = itr.route(0, ip("10.2.0.5"), 1.0, src=ip("10.1.0.7"))
    assert sent_request(actions).source_eid == ip("10.1.0.7")
    req = sent_request(itr.request(0, ip("10.3.0.5"), 1.0))        # a refresh: no packet
    assert req.source_eid is None
    itr7 = Itr([ip("192.0.2.1")], [MR], rng=random.Random(2))
    _, actions = itr7.route(7, ip("10.2.0.5"), 1.0, src=ip("10.1.0.7"))
    src = sent_request(actions).source_eid
    assert (src.iid, src.address) == (7, ip("10.1.0.7"))          # in its instance ID


def test_the_daemon_finds_the_source_in_the_flow_key():
    for pkt, want in ((IP(src="10.1.0.7", dst="10.2.0.5") / UDP(sport=1, dport=2), "10.1.0.7"),
                      (IPv6(src="2001:db8:1::7", dst="2001:db8:2::5") / UDP(), "2001:db8:1::7")):
        v, _, _, key, _ = flow_of(bytes(pkt))
        assert flow_source(key, v) == ip(want)
    assert flow_source(b"", 4) is None

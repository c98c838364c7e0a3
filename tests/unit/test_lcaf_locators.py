"""(issue 11) Locators that are LCAFs, as other implementations send them: an AFI-List
(lispers.net lists an RLOC's IPv4 and IPv6 addresses in one) is used through the address
of a family we can reach; other LCAF types are skipped and counted. They used to reach the
map-cache as they were, and choosing a locator (sorted by `.version`) raised in the data
plane's thread. The reply is built as bytes and checked with tshark's lisp dissector."""
import ipaddress
import random

from nodes.lisp.actions import Decision
from nodes.lisp.address import AfiList, Lcaf
from nodes.lisp.itr import Itr
from nodes.lisp.mapcache import MapCache
from nodes.lisp.messages import EidRecord, Locator, MapReply, decode, encode

ip = ipaddress.ip_address
net = ipaddress.ip_network
EID = ip("10.2.0.5")


def reply_with(itr, locators):
    _, actions = itr.route(0, EID, 1.0, src=ip("10.1.0.7"))
    nonce = decode(next(a for a in actions if type(a).__name__ == "SendControl").wire()
                   ).message.nonce
    raw = encode(MapReply(nonce, [EidRecord(EID, 32, locators, ttl=10)]))
    return raw, decode(raw)


def test_an_afi_list_locator_is_used_through_its_ipv4_address():
    itr = Itr([ip("192.0.2.1")], [ip("192.0.2.100")], rng=random.Random(1))
    both = AfiList((ip("198.51.100.7"), ip("2001:db8::7")))
    raw, msg = reply_with(itr, [Locator(both, 1, 100),
                                Locator(Lcaf(7, b"\x01\x02\x03\x04"), 1, 100)])
    itr.receive_reply(msg, ip("198.51.100.7"), 1.1)
    assert itr.route(0, EID, 1.2, flow=b"\x11" * 13)[0] == Decision("encap", ip("198.51.100.7"))
    assert itr.counters["map_reply_locator_skipped"] == 1            # the opaque LCAF
    entry = itr.cache.lookup(0, EID, 1.2)
    assert [loc.address for loc in entry.locators] == [ip("198.51.100.7")]


def test_an_ipv6_only_xtr_takes_the_ipv6_address_of_the_list():
    itr = Itr([ip("2001:db8:1::1")], [ip("2001:db8:1::100")], rng=random.Random(2))
    raw, msg = reply_with(itr, [Locator(AfiList((ip("198.51.100.7"), ip("2001:db8::7"))))])
    itr.receive_reply(msg, ip("2001:db8::7"), 1.1)
    assert itr.route(0, EID, 1.2)[0] == Decision("encap", ip("2001:db8::7"))


def test_the_map_cache_never_chooses_a_locator_that_is_not_an_address():
    cache = MapCache()
    cache.insert(0, net("10.2.0.0/24"), [Locator(Lcaf(7, b"x")), Locator(ip("192.0.2.9"))],
                 60.0, 0.0)
    entry = cache.lookup(0, EID, 1.0)
    assert entry.select_locator(b"abc").address == ip("192.0.2.9")


def test_tshark_reads_the_afi_list_locator(tshark, tmp_path):
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether
    from scapy.packet import Raw
    from tests.tshark_util import assert_clean, dissect
    itr = Itr([ip("192.0.2.1")], [ip("192.0.2.100")], rng=random.Random(3))
    raw, _ = reply_with(itr, [Locator(AfiList((ip("198.51.100.7"), ip("2001:db8::7"))))])
    [frame] = dissect(tshark, [Ether() / IP(src="198.51.100.7", dst="192.0.2.1")
                               / UDP(sport=4342, dport=4342) / Raw(raw)], tmp_path / "r.pcap")
    assert_clean(frame)
    text = " ".join(s for name in frame.fields for s in frame.shows(name))
    assert "198.51.100.7" in text and "2001:db8::7" in text, frame.fields.keys()

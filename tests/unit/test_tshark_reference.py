"""Outside reference: Wireshark's LISP dissector (tshark 4.0) reads what our codec writes.

Every message is built with our encoder (nodes.lisp.messages.encode, nodes.lisp.auth.sign,
nodes.lisp.data.encode_data_header), wrapped by scapy in real Ethernet/IPv4/UDP and
Ethernet/IPv6/UDP headers, written to one pcap and dissected by one tshark run. The expected
value of every field is computed from the message object and the RFC layout, never from our
decoder; and every LISP field tshark reports must be one we expected (see
tests/tshark_util.py), with no malformed packet and no expert warning or error.

What tshark 4.0 does not know, and how the tests account for it:
- Map-Request L and D bits (RFC 9301): tshark counts them in its 9 "Reserved bits"
  (lisp.mreq.res = Rsvd << 2 | L << 1 | D).
- ECM E and M bits: in its 26 "Reserved bits" (lisp.ecm.res = E << 25 | M << 24 | Reserved).
- Key ID + Algorithm ID: one 16-bit "Key ID" (RFC 6833), so lisp.keyid = key_id << 8 | alg_id.
- Map-Notify-Ack (type 5): unknown to tshark 4.0; checked byte by byte against RFC 9301 5.7.
"""
import hashlib
import hmac
import ipaddress

import pytest
from scapy.layers.inet import ICMP, IP, UDP
from scapy.layers.inet6 import ICMPv6EchoRequest, IPv6
from scapy.layers.l2 import Ether
from scapy.packet import Raw

from nodes.lisp import auth
from nodes.lisp import messages as m
from nodes.lisp.address import InstanceId
from nodes.lisp.data import DataHeader, encode_data_header
from nodes.lisp.ipudp import IpUdp
from tests.tshark_util import assert_clean, assert_fields, dissect

A = ipaddress.ip_address
KEY = "lab-secret"

# --- outer headers ---------------------------------------------------------------------

MAC_SRC, MAC_DST = "02:00:00:00:00:01", "02:00:00:00:00:02"
OUTER = {4: (A("192.0.2.1"), A("198.51.100.2")),
         6: (A("2001:db8:ffff::1"), A("2001:db8:ffff::2"))}
OUTER_TTL = 64
FAMILIES = (4, 6)


def wrap(family, payload, sport, dport):
    src, dst = OUTER[family]
    if family == 4:
        ip = IP(src=str(src), dst=str(dst), ttl=OUTER_TTL, tos=0, id=1, flags=0)
    else:
        ip = IPv6(src=str(src), dst=str(dst), hlim=OUTER_TTL, tc=0, fl=0)
    return Ether(src=MAC_SRC, dst=MAC_DST) / ip / UDP(sport=sport, dport=dport) / Raw(payload)


# --- expected values ----------------------------------------------------------------------

class Expect(dict):
    """{tshark field name: [expected values, in wire order]}."""

    def add(self, name, value):
        self.setdefault(name, []).append(value)

    def touch(self, *names):
        """These fields must appear exactly as often as add() says (maybe never)."""
        for n in names:
            self.setdefault(n, [])


IP_FIELDS = ("ip.src", "ip.dst", "ip.ttl", "ip.dsfield", "ip.id", "ip.flags.df", "ip.proto",
             "ip.len", "ip.checksum.status", "ipv6.src", "ipv6.dst", "ipv6.hlim",
             "ipv6.tclass", "ipv6.flow", "ipv6.nxt", "ipv6.plen")


def expect_ip(e, src, dst, ttl, proto, length, tos=0, ident=0, df=False, flow=0):
    """One IPv4 or IPv6 header; `length` counts the bytes after it."""
    e.touch(*IP_FIELDS)
    if src.version == 4:
        for name, value in (("src", src), ("dst", dst), ("ttl", ttl), ("dsfield", tos),
                            ("id", ident), ("flags.df", df), ("proto", proto),
                            ("len", 20 + length), ("checksum.status", 1)):  # 1: Good
            e.add("ip." + name, value)
    else:
        for name, value in (("src", src), ("dst", dst), ("hlim", ttl), ("tclass", tos),
                            ("flow", flow), ("nxt", proto), ("plen", length)):
            e.add("ipv6." + name, value)


def expect_udp(e, sport, dport, length):
    """One UDP header; `length` counts its payload. Checksum status 1 is Good."""
    for name, value in (("srcport", sport), ("dstport", dport), ("length", 8 + length),
                        ("checksum.status", 1)):
        e.add("udp." + name, value)


def expect_outer(e, family, sport, dport, payload_len):
    src, dst = OUTER[family]
    expect_ip(e, src, dst, OUTER_TTL, 17, 8 + payload_len, ident=1)
    expect_udp(e, sport, dport, payload_len)


def _afi_len(addr):
    return 4 if addr.version == 4 else 16


def expect_address(e, addr, afi_f, v4_f, v6_f):
    """An AFI-encoded address; v4_f/v6_f are where tshark puts an IPv4/IPv6 address here."""
    e.touch(v4_f, v6_f)
    if addr is None:
        e.add(afi_f, 0)
    elif isinstance(addr, InstanceId):
        # RFC 8060 4.1: AFI 16387, Rsvd1, Flags, Type 2, IID mask-len, Length, IID, AFI, addr.
        e.add(afi_f, 16387)
        e.add("lisp.lcaf.res1", addr.rsvd1)
        e.add("lisp.lcaf.flags", addr.flags)
        e.add("lisp.lcaf.type", 2)
        e.add("lisp.lcaf.res2", addr.iid_mask_len)
        e.add("lisp.lcaf.length", 4 + 2 + _afi_len(addr.address))
        e.add("lisp.lcaf.iid", addr.iid)
        expect_address(e, addr.address, "lisp.lcaf.iid.afi", "lisp.lcaf.iid.ipv4",
                       "lisp.lcaf.iid.ipv6")
    else:
        e.add(afi_f, 1 if addr.version == 4 else 2)
        e.add(v4_f if addr.version == 4 else v6_f, addr)


def expect_record(e, rec):
    """A mapping record (RFC 9301 5.4) and its locators."""
    e.add("lisp.mapping.ttl", rec.ttl)
    e.add("lisp.mapping.loccnt", len(rec.locators))
    e.add("lisp.mapping.eid.masklen", rec.mask_len)
    e.add("lisp.mapping.act", rec.action)
    e.add("lisp.mapping.auth", rec.authoritative)
    e.add("lisp.mapping.res1", rec.reserved)
    e.add("lisp.mapping.res2", rec.rsvd)
    e.add("lisp.mapping.ver", rec.map_version)
    expect_address(e, rec.eid, "lisp.mapping.eid.afi", "lisp.mapping.eid.ipv4",
                   "lisp.mapping.eid.ipv6")
    for loc in rec.locators:
        e.add("lisp.loc.priority", loc.priority)
        e.add("lisp.loc.weight", loc.weight)
        e.add("lisp.loc.multicast_priority", loc.m_priority)
        e.add("lisp.loc.multicast_weight", loc.m_weight)
        e.add("lisp.loc.flags", loc.unused_flags << 3 | loc.local << 2 | loc.probed << 1
              | loc.reachable)
        e.add("lisp.loc.flags.local", loc.local)
        e.add("lisp.loc.flags.probe", loc.probed)
        e.add("lisp.loc.flags.reach", loc.reachable)
        e.add("lisp.loc.flags.res", loc.unused_flags)
        expect_address(e, loc.address, "lisp.loc.afi", "lisp.loc.locator", "lisp.loc.locator")


def expect_map_request(e, msg):
    mbit = msg.map_reply_record is not None
    e.add("lisp.type", m.MAP_REQUEST)
    e.add("lisp.mreq.flags", msg.authoritative << 5 | mbit << 4 | msg.probe << 3
          | msg.smr << 2 | msg.pitr << 1 | msg.smr_invoked)
    e.add("lisp.mreq.flags.auth", msg.authoritative)
    e.add("lisp.mreq.flags.mrp", mbit)
    e.add("lisp.mreq.flags.probe", msg.probe)
    e.add("lisp.mreq.flags.smr", msg.smr)
    e.add("lisp.mreq.flags.pitr", msg.pitr)
    e.add("lisp.mreq.flags.smri", msg.smr_invoked)
    e.add("lisp.mreq.res", msg.reserved << 2 | msg.local_xtr << 1 | msg.dont_map_reply)
    e.add("lisp.irc", len(msg.itr_rlocs) - 1)        # IRC is the count minus one
    e.add("lisp.records", len(msg.records))
    e.add("lisp.nonce", msg.nonce)
    expect_address(e, msg.source_eid, "lisp.mreq.srceid.afi", "lisp.mreq.srceid.ipv4",
                   "lisp.mreq.srceid_ipv6")
    e.touch("lisp.mreq.srceid.string")
    if msg.source_eid is None:
        e.add("lisp.mreq.srceid.string", "not set")     # how tshark shows Source-EID-AFI 0
    for rloc in msg.itr_rlocs:
        expect_address(e, rloc, "lisp.mreq.itr_rloc.afi", "lisp.mreq.itr_rloc_ipv4",
                       "lisp.mreq.itr_rloc_ipv6")
    for rec in msg.records:
        e.add("lisp.mreq.record.res", rec.reserved)
        e.add("lisp.mreq.record.prefix.length", rec.mask_len)
        expect_address(e, rec.eid, "lisp.mreq.record.prefix.afi",
                       "lisp.mreq.record.prefix.ipv4", "lisp.mreq.record.prefix.ipv6")
    if mbit:
        expect_record(e, msg.map_reply_record)


def expect_map_reply(e, msg):
    e.add("lisp.type", m.MAP_REPLY)
    e.add("lisp.mrep.flags.probe", msg.probe)
    e.add("lisp.mrep.flags.enlr", msg.echo_nonce)
    e.add("lisp.mrep.flags.sec", msg.security)
    e.add("lisp.mrep.res", msg.reserved)
    e.add("lisp.records", len(msg.records))
    e.add("lisp.nonce", msg.nonce)
    for rec in msg.records:
        expect_record(e, rec)


def expect_auth_body(e, msg):
    e.add("lisp.records", len(msg.records))
    e.add("lisp.nonce", msg.nonce)
    e.add("lisp.keyid", msg.key_id << 8 | msg.alg_id)   # tshark 4.0: RFC 6833 16-bit Key ID
    e.add("lisp.authlen", len(msg.auth_data))
    e.add("lisp.auth", bytes(msg.auth_data))
    for rec in msg.records:
        expect_record(e, rec)
    e.touch("lisp.xtrid", "lisp.siteid")
    if msg.xtr_id is not None:
        e.add("lisp.xtrid", msg.xtr_id.to_bytes(16, "big"))
        e.add("lisp.siteid", msg.site_id.to_bytes(8, "big"))


def expect_map_register(e, msg):
    e.add("lisp.type", m.MAP_REGISTER)
    e.add("lisp.mreg.flags.pmr", msg.proxy_reply)
    e.add("lisp.mreg.flags.sec", msg.security)
    e.add("lisp.mreg.flags.xtrid", msg.xtr_id is not None)
    # Our 16 reserved bits are tshark's R bit (NAT traversal) and 15 reserved bits.
    e.add("lisp.mreg.flags.rtr", msg.reserved >> 15)
    e.add("lisp.mreg.res", msg.reserved & 0x7FFF)
    e.add("lisp.mreg.flags.wmn", msg.want_map_notify)
    expect_auth_body(e, msg)


def expect_map_notify(e, msg):
    e.add("lisp.type", m.MAP_NOTIFY)
    e.add("lisp.mnot.flags.xtrid", msg.xtr_id is not None)
    # Our 19 reserved bits are tshark's R bit (NAT traversal) and 18 reserved bits.
    e.add("lisp.mnot.flags.rtr", msg.reserved >> 18)
    e.add("lisp.mnot.res", msg.reserved & 0x3FFFF)
    expect_auth_body(e, msg)


def expect_inner_ip_udp(e, h, payload_len):
    """The IP + UDP header an ECM carries (RFC 9301 5.8), after the outer one."""
    expect_ip(e, h.src, h.dst, h.ttl, 17, 8 + payload_len, tos=h.tos, ident=h.ident,
              df=bool(h.frag & 0x4000), flow=h.flow_label)
    expect_udp(e, h.sport, h.dport, payload_len)     # checksum Good: our pseudo-header sum


EXPECT = {m.MapRequest: expect_map_request, m.MapReply: expect_map_reply,
          m.MapRegister: expect_map_register, m.MapNotify: expect_map_notify}


def expect_ecm(e, msg):
    e.add("lisp.type", m.ECM)
    e.add("lisp.ecm.flags.sec", msg.security)
    e.add("lisp.ecm.flags.ddt", msg.ddt)
    e.add("lisp.ecm.res", msg.to_etr << 25 | msg.to_ms << 24 | msg.reserved)
    # Length of the inner message: the UDP payload is the inner message's encoding.
    expect_inner_ip_udp(e, msg.inner, len(m.encode(msg.message)))
    EXPECT[type(msg.message)](e, msg.message)


EXPECT[m.EncapsulatedControl] = expect_ecm


def expect_data_header(e, h):
    n, l, v, i = (h.nonce is not None, h.lsb is not None, h.map_versions is not None,
                  h.instance_id is not None)
    e.add("lisp-data.flags", n << 7 | l << 6 | h.echo_nonce << 5 | v << 4 | i << 3 | h.reserved)
    e.add("lisp-data.flags.nonce", n)
    e.add("lisp-data.flags.lsb", l)
    e.add("lisp-data.flags.enr", h.echo_nonce)
    e.add("lisp-data.flags.mv", v)
    e.add("lisp-data.flags.iid", i)
    e.add("lisp-data.flags.res", h.reserved)
    e.touch("lisp-data.nonce", "lisp-data.mapver", "lisp-data.srcmapver",
            "lisp-data.dstmapver", "lisp-data.iid", "lisp-data.lsb", "lisp-data.lsb8")
    if n:
        e.add("lisp-data.nonce", h.nonce)
    if v:
        src, dst = h.map_versions
        e.add("lisp-data.mapver", src << 12 | dst)
        e.add("lisp-data.srcmapver", src)
        e.add("lisp-data.dstmapver", dst)
    if i:
        e.add("lisp-data.iid", h.instance_id)
        if l:
            e.add("lisp-data.lsb8", h.lsb)          # 8 LSBs after a 24-bit Instance ID
    elif l:
        e.add("lisp-data.lsb", h.lsb)               # 32 LSBs


# --- the messages under test --------------------------------------------------------------

RLOC1, RLOC2 = A("192.0.2.10"), A("192.0.2.20")
RLOC6 = A("2001:db8:100::20")


def loc(addr, **kw):
    return m.Locator(addr, **kw)


def rec(prefix, locators=(), iid=None, **kw):
    net = ipaddress.ip_network(prefix)
    eid = net.network_address if iid is None else InstanceId(iid, net.network_address)
    return m.EidRecord(eid, net.prefixlen, list(locators), **kw)


def req_rec(prefix, iid=None):
    r = rec(prefix, iid=iid)
    return m.RequestRecord(r.eid, r.mask_len)


def map_request(nonce, **kw):
    base = dict(nonce=nonce, records=[req_rec("10.2.0.0/16")], itr_rlocs=[RLOC1],
                source_eid=A("10.1.0.5"))
    base.update(kw)
    return m.MapRequest(**base)


def sha(msg, truncate=False):
    return auth.sign(msg, KEY, truncate=truncate)


POSITIVE = rec("10.20.0.0/16", [
    loc(RLOC1, priority=1, weight=70, m_priority=255, m_weight=0,
        local=True, probed=False, reachable=True),
    loc(RLOC6, priority=2, weight=30, m_priority=10, m_weight=50,
        local=False, probed=True, reachable=False)], ttl=60, map_version=0x9AB)

CONTROL = {
    # Map-Request: each flag on its own, so a bit in the wrong place cannot hide.
    "mreq-plain": map_request(0x0102030405060708),
    "mreq-smr": map_request(0x1111111111111111, smr=True, source_eid=A("10.20.0.0")),
    "mreq-smr-invoked": map_request(0x2222222222222222, smr_invoked=True),
    "mreq-rloc-probe": map_request(0x3333333333333333, probe=True, source_eid=None,
                                   records=[req_rec("10.20.0.0/16")]),
    "mreq-map-reply-record": map_request(0x4444444444444444, probe=True,
                                         map_reply_record=POSITIVE),
    "mreq-authoritative": map_request(0x5555555555555555, authoritative=True),
    "mreq-pitr": map_request(0x6666666666666666, pitr=True),
    "mreq-L": map_request(0x7777777777777777, local_xtr=True),
    "mreq-D": map_request(0x8888888888888888, dont_map_reply=True),
    "mreq-ipv6-itr": map_request(0x9999999999999999, itr_rlocs=[RLOC6],
                                 source_eid=A("2001:db8:1::5"),
                                 records=[req_rec("2001:db8:2::/48")]),
    "mreq-dual-itr": map_request(0xAAAAAAAAAAAAAAAA, itr_rlocs=[RLOC1, RLOC6, RLOC2]),
    "mreq-instance-id": map_request(0xBBBBBBBBBBBBBBBB,
                                    source_eid=InstanceId(0xABCDEF, A("10.1.0.5")),
                                    records=[req_rec("10.2.0.0/16", iid=0xABCDEF),
                                             req_rec("2001:db8:2::/48", iid=7)]),
    # Map-Reply.
    "mrep-positive": m.MapReply(0xC0C0C0C0C0C0C0C0, [POSITIVE]),
    "mrep-negative": m.MapReply(0xC1C1C1C1C1C1C1C1, [
        rec("0.0.0.0/1", ttl=15, action=m.ACT_NATIVELY_FORWARD),
        rec("10.3.0.0/16", ttl=1, action=m.ACT_SEND_MAP_REQUEST, authoritative=False),
        rec("10.4.0.0/16", ttl=3, action=m.ACT_DROP),
        rec("10.5.0.0/16", ttl=5, action=m.ACT_DROP_POLICY_DENIED),
        rec("2001:db8:6::/48", ttl=7, action=m.ACT_DROP_AUTH_FAILURE)]),
    "mrep-instance-id": m.MapReply(0xC2C2C2C2C2C2C2C2, [
        rec("2001:db8:7::/48", [loc(RLOC1), loc(RLOC6, priority=2)], iid=0xFFFFFF),
        rec("10.7.0.0/24", [loc(RLOC2)], iid=1)]),
    "mrep-P": m.MapReply(0xC3C3C3C3C3C3C3C3, [POSITIVE], probe=True),
    "mrep-E": m.MapReply(0xC4C4C4C4C4C4C4C4, [POSITIVE], echo_nonce=True),
    "mrep-S": m.MapReply(0xC5C5C5C5C5C5C5C5, [POSITIVE], security=True),
    # Map-Register.
    "mreg-sha1": sha(m.MapRegister(0xD0D0D0D0D0D0D0D0, [
        rec("10.20.0.0/16", [loc(RLOC1, local=True)], ttl=10),
        rec("10.21.0.0/24", [loc(RLOC1, local=True), loc(RLOC2, priority=5)], ttl=10)],
        key_id=1, alg_id=m.ALG_HMAC_SHA1_96, want_map_notify=True, proxy_reply=True)),
    "mreg-sha256-ipv6": sha(m.MapRegister(0xD1D1D1D1D1D1D1D1, [
        rec("2001:db8:10::/64", [loc(RLOC1), loc(RLOC6)])],
        key_id=3, alg_id=m.ALG_HMAC_SHA256_128, want_map_notify=True)),
    "mreg-sha1-rfc-length": sha(m.MapRegister(0xD2D2D2D2D2D2D2D2, [
        rec("10.20.0.0/16", [loc(RLOC1)])], key_id=0, alg_id=m.ALG_HMAC_SHA1_96,
        proxy_reply=True), truncate=True),
    "mreg-sha256-rfc-length": sha(m.MapRegister(0xD3D3D3D3D3D3D3D3, [
        rec("10.20.0.0/16", [loc(RLOC1)])], key_id=255, alg_id=m.ALG_HMAC_SHA256_128,
        security=True), truncate=True),
    "mreg-instance-id": sha(m.MapRegister(0xD4D4D4D4D4D4D4D4, [
        rec("10.30.0.0/16", [loc(RLOC1)], iid=4096)], key_id=1,
        alg_id=m.ALG_HMAC_SHA1_96, want_map_notify=True)),
    "mreg-xtr-id": sha(m.MapRegister(0xD5D5D5D5D5D5D5D5, [
        rec("10.20.0.0/16", [loc(RLOC1)])], key_id=1, alg_id=m.ALG_HMAC_SHA256_128,
        xtr_id=0x000102030405060708090A0B0C0D0E0F, site_id=0x1122334455667788)),
    # Map-Notify.
    "mnot-sha1": sha(m.MapNotify(0xE0E0E0E0E0E0E0E0, [
        rec("10.20.0.0/16", [loc(RLOC1)], ttl=10)], key_id=1, alg_id=m.ALG_HMAC_SHA1_96)),
    "mnot-sha256-two-records": sha(m.MapNotify(0xE1E1E1E1E1E1E1E1, [
        rec("10.20.0.0/16", [loc(RLOC1), loc(RLOC2)]),
        rec("2001:db8:10::/64", [loc(RLOC6)], iid=22)],
        key_id=2, alg_id=m.ALG_HMAC_SHA256_128), truncate=True),
    "mnot-xtr-id": sha(m.MapNotify(0xE2E2E2E2E2E2E2E2, [
        rec("10.20.0.0/16", [loc(RLOC1)])], key_id=1, alg_id=m.ALG_HMAC_SHA1_96,
        xtr_id=(1 << 127) | 5, site_id=0xFEDCBA9876543210)),
    # Encapsulated Control Message around a Map-Request.
    "ecm-inner-ipv4": m.EncapsulatedControl(
        map_request(0xF0F0F0F0F0F0F0F0, smr_invoked=True),
        IpUdp(A("10.1.0.5"), A("10.20.0.1"), sport=61001, ttl=32, tos=0x20, ident=0x1234),
        to_ms=True),
    "ecm-inner-ipv6": m.EncapsulatedControl(
        map_request(0xF1F1F1F1F1F1F1F1, itr_rlocs=[RLOC6, RLOC1],
                    source_eid=A("2001:db8:1::5"), records=[req_rec("2001:db8:2::1/128")]),
        IpUdp(A("2001:db8:1::5"), A("2001:db8:2::1"), sport=61002, ttl=20, tos=0x88,
              flow_label=0xABCDE)),
    "ecm-S": m.EncapsulatedControl(map_request(0xF2F2F2F2F2F2F2F2),
                                   IpUdp(A("10.1.0.5"), A("10.2.0.1")), security=True),
    "ecm-D": m.EncapsulatedControl(map_request(0xF3F3F3F3F3F3F3F3),
                                   IpUdp(A("10.1.0.5"), A("10.2.0.1")), ddt=True),
    "ecm-E": m.EncapsulatedControl(map_request(0xF4F4F4F4F4F4F4F4),
                                   IpUdp(A("10.1.0.5"), A("10.2.0.1")), to_etr=True),
}

INNER4 = IP(src="10.1.0.5", dst="10.20.0.1", ttl=63, id=7) / ICMP(id=0x4242, seq=9)
INNER6 = IPv6(src="2001:db8:1::5", dst="2001:db8:2::1", hlim=62) / ICMPv6EchoRequest(id=3)

DATA = {
    "data-nonce-lsb": (DataHeader(nonce=0xABCDEF, lsb=0x80000001), INNER4),
    "data-nonce-echo": (DataHeader(nonce=0x000001, echo_nonce=True, lsb=0x3), INNER6),
    "data-instance-id": (DataHeader(nonce=0x123456, instance_id=0xFEDCBA, lsb=0x5), INNER6),
    "data-instance-id-only": (DataHeader(instance_id=0x000001), INNER4),
    "data-map-versions": (DataHeader(map_versions=(0xFFF, 0x001), lsb=0xFFFFFFFF), INNER4),
    "data-map-versions-iid": (DataHeader(map_versions=(0x123, 0xABC), instance_id=77),
                              INNER6),
}


def expect_inner_packet(e, inner):
    """The EID packet behind the data header (built by scapy here, not by our codec)."""
    if inner.haslayer(ICMP):
        ip = inner[IP]
        expect_ip(e, A(ip.src), A(ip.dst), ip.ttl, 1, len(ip.payload), ident=ip.id)
        e.add("icmp.type", 8)
        e.add("icmp.ident", inner[ICMP].id)
        e.add("icmp.seq", inner[ICMP].seq)
    else:
        ip = inner[IPv6]
        expect_ip(e, A(ip.src), A(ip.dst), ip.hlim, 58, len(ip.payload))
        e.add("icmpv6.type", 128)
        e.add("icmpv6.echo.identifier", inner[ICMPv6EchoRequest].id)


def build_cases():
    """[(case id, family, scapy packet, Expect, protocol chain)]."""
    cases = []
    for i, (name, msg) in enumerate(CONTROL.items()):
        payload = m.encode(msg)
        for family in FAMILIES:
            sport = 50000 + i
            e = Expect()
            expect_outer(e, family, sport, m.CONTROL_PORT, len(payload))
            EXPECT[type(msg)](e, msg)
            ip = "ip" if family == 4 else "ipv6"
            chain = f"eth:ethertype:{ip}:udp:lisp"
            if isinstance(msg, m.EncapsulatedControl):
                chain += f":{'ip' if msg.inner.src.version == 4 else 'ipv6'}:udp:lisp"
            cases.append((name, family, wrap(family, payload, sport, m.CONTROL_PORT), e,
                          chain))
    for i, (name, (header, inner)) in enumerate(DATA.items()):
        payload = encode_data_header(header) + bytes(inner)
        for family in FAMILIES:
            sport = 40000 + i
            e = Expect()
            expect_outer(e, family, sport, m.DATA_PORT, len(payload))
            expect_data_header(e, header)
            expect_inner_packet(e, inner)
            inner_chain = "ip:icmp" if inner.haslayer(ICMP) else "ipv6:icmpv6"
            chain = f"eth:ethertype:{'ip' if family == 4 else 'ipv6'}:udp:lisp-data:{inner_chain}"
            cases.append((name, family, wrap(family, payload, sport, m.DATA_PORT), e, chain))
    return cases


CASES = build_cases()
CASE_IDS = [f"{name}-outer-ipv{family}" for name, family, *_ in CASES]


@pytest.fixture(scope="module")
def dissected(tshark, tmp_path_factory):
    """All cases in one pcap, one tshark run: {case id: Frame}."""
    frames = dissect(tshark, [c[2] for c in CASES],
                     tmp_path_factory.mktemp("tshark") / "codec.pcap")
    return dict(zip(CASE_IDS, frames))


# lisp.lcaf.header repeats Rsvd1/Flags/Type/Rsvd2/Length, which are checked one by one.
IGNORE = ("lisp.lcaf.header",)


@pytest.mark.parametrize("index", range(len(CASES)), ids=CASE_IDS)
def test_tshark_reads_our_encoding(dissected, index):
    name, family, _, expected, chain = CASES[index]
    frame = dissected[CASE_IDS[index]]
    assert_clean(frame)
    assert frame.one("frame.protocols") == chain    # dissected as LISP on 4342/4341 by default
    assert_fields(frame, expected, families=("lisp", "lisp-data"), ignore=IGNORE)


# --- authentication data: what tshark shows is the HMAC of the message ----------------------

AUTH_CASES = [n for n, msg in CONTROL.items() if isinstance(msg, (m.MapRegister, m.MapNotify))]


@pytest.mark.parametrize("name", AUTH_CASES)
def test_auth_data_is_hmac_of_the_wire_message(dissected, name):
    """tshark's Authentication Data equals an HMAC computed here, independently of
    nodes.lisp.auth, over the whole message as tshark received it with that field zeroed."""
    msg = CONTROL[name]
    frame = dissected[f"{name}-outer-ipv4"]
    payload = bytes.fromhex(frame.values("udp.payload")[0])
    length = int(frame.one("lisp.authlen"))
    digest = {m.ALG_HMAC_SHA1_96: hashlib.sha1,
              m.ALG_HMAC_SHA256_128: hashlib.sha256}[msg.alg_id]
    zeroed = payload[:16] + bytes(length) + payload[16 + length:]
    mac = hmac.new(KEY.encode(), zeroed, digest).digest()
    assert bytes.fromhex(frame.values("lisp.auth")[0]) == mac[:length]
    # Truncated (RFC 9301 algorithm names: 96 and 128 bits) or whole digest (deployed base).
    assert length in {m.ALG_HMAC_SHA1_96: (12, 20), m.ALG_HMAC_SHA256_128: (16, 32)}[msg.alg_id]


# --- Map-Notify-Ack: tshark 4.0 does not know type 5, so check the RFC layout by hand ------

def notify_ack(auth_data=b"", key_id=1, alg_id=m.ALG_HMAC_SHA256_128):
    return m.MapNotifyAck(
        0x0123456789ABCDEF,
        [m.EidRecord(A("10.20.0.0"), 16, [m.Locator(A("192.0.2.7"), priority=1, weight=100,
                                                    m_priority=255, m_weight=0,
                                                    local=True, reachable=True)],
                     ttl=1440, action=m.ACT_NO_ACTION, authoritative=True,
                     map_version=0x123)],
        key_id=key_id, alg_id=alg_id, auth_data=auth_data)


def rfc_notify_ack(key_id, alg_id, auth_data):
    """The message above, written from the RFC 9301 5.7 / 5.4 diagrams."""
    return bytes.fromhex(
        "50000001"                  # Type=5 | Reserved | Record Count = 1
        "0123456789abcdef"          # Nonce
        f"{key_id:02x}{alg_id:02x}{len(auth_data):04x}"   # Key ID | Alg ID | Auth Data Length
    ) + auth_data + bytes.fromhex(
        "000005a0"                  # Record TTL = 1440 minutes
        "01" "10" "1000"            # Locator Count 1 | EID mask-len 16 | ACT 0, A=1, Reserved
        "0123" "0001"               # Rsvd 0, Map-Version 0x123 | EID-Prefix-AFI = 1
        "0a140000"                  # EID-Prefix 10.20.0.0
        "01" "64" "ff" "00"         # Priority 1 | Weight 100 | M Priority 255 | M Weight 0
        "0005" "0001"               # Unused flags, L=1, p=0, R=1 | Loc-AFI = 1
        "c0000207"                  # Locator 192.0.2.7
    )


def test_map_notify_ack_layout_matches_rfc():
    auth_data = bytes(range(16))
    assert m.encode(notify_ack(auth_data)) == rfc_notify_ack(1, 2, auth_data)
    assert m.encode(notify_ack(key_id=7, alg_id=0)) == rfc_notify_ack(7, 0, b"")


@pytest.mark.parametrize("alg_id,truncate,length", [
    (m.ALG_HMAC_SHA1_96, True, 12), (m.ALG_HMAC_SHA1_96, False, 20),
    (m.ALG_HMAC_SHA256_128, True, 16), (m.ALG_HMAC_SHA256_128, False, 32)])
def test_map_notify_ack_signed_layout_matches_rfc(alg_id, truncate, length):
    signed = auth.sign(notify_ack(key_id=1, alg_id=alg_id), KEY, truncate=truncate)
    unsigned = rfc_notify_ack(1, alg_id, bytes(length))
    digest = hashlib.sha1 if alg_id == m.ALG_HMAC_SHA1_96 else hashlib.sha256
    mac = hmac.new(KEY.encode(), unsigned, digest).digest()[:length]
    assert m.encode(signed) == rfc_notify_ack(1, alg_id, mac)


def test_map_notify_ack_not_misread_by_tshark(tshark, tmp_path):
    """tshark 4.0 must show type 5 as an unknown type and leave the rest as plain data,
    not dissect it as some other message."""
    payload = m.encode(auth.sign(notify_ack(), KEY))
    frames = dissect(tshark, [wrap(f, payload, 4342, m.CONTROL_PORT) for f in FAMILIES],
                     tmp_path / "notify-ack.pcap")
    for frame in frames:
        assert_clean(frame)
        assert frame.one("frame.protocols").endswith(":udp:lisp:data")
        assert_fields(frame, {"lisp.type": [5], "data.data": [payload]}, families=("lisp",))


# --- the checks themselves can fail ---------------------------------------------------------

def test_detects_malformed_and_expert_problems(tshark, tmp_path):
    """A truncated Map-Reply is reported malformed, an ECM with a wrong inner UDP checksum
    raises an expert error, a data header with E but no N an expert warning; an intact packet
    next to them stays clean."""
    good = m.encode(CONTROL["mrep-positive"])
    ecm = bytearray(m.encode(CONTROL["ecm-inner-ipv4"]))
    ecm[4 + 20 + 6] ^= 0xFF                         # ECM header, inner IPv4, UDP checksum
    bad_flags = bytes([0x20]) + bytes(7) + bytes(INNER4)
    packets = [wrap(4, good[:30], 4342, m.CONTROL_PORT),
               wrap(4, bytes(ecm), 4342, m.CONTROL_PORT),
               wrap(6, bad_flags, 4341, m.DATA_PORT),
               wrap(4, good, 4342, m.CONTROL_PORT)]
    truncated, bad_checksum, e_without_n, intact = dissect(tshark, packets,
                                                           tmp_path / "broken.pcap")
    assert truncated.malformed
    assert any(s == 0x800000 for s, *_ in bad_checksum.experts)   # error: bad checksum
    assert bad_checksum.shows("udp.checksum.status") == ["1", "0"]  # outer good, inner bad
    assert any(s == 0x600000 for s, *_ in e_without_n.experts)   # warning: E without N
    for frame in (truncated, bad_checksum, e_without_n):
        with pytest.raises(AssertionError):
            assert_clean(frame)
    assert_clean(intact)
    # And a wrong expected value is reported, as is a field we did not expect.
    with pytest.raises(AssertionError, match="lisp.nonce"):
        assert_fields(intact, {"lisp.nonce": [CONTROL["mrep-positive"].nonce + 1]})
    with pytest.raises(AssertionError, match="unexpected field"):
        assert_fields(intact, {"lisp.nonce": [CONTROL["mrep-positive"].nonce]},
                      families=("lisp",))

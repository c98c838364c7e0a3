"""Byte-layout tests of the LISP codec, against bytes written by hand from the RFC diagrams.

Every expected value here is spelled out from the packet diagrams of RFC 9301 (control plane),
RFC 9300 (data plane) and RFC 8060 (LCAF), or taken from real traffic between Open Overlay
Router and lispers.net (tests/data/), never computed with the encoder under test. Bit positions
are written as the diagrams number them: `col(n)` is bit n of a 32-bit row, 0 the leftmost.
"""
import re
import struct
from ipaddress import IPv4Address as V4, IPv6Address as V6

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.inet6 import IPv6
from scapy.packet import Raw

from nodes.lisp.address import (AfiList, DistinguishedName, InstanceId, Lcaf, MacAddress,
                                decode_address, encode_address, make_eid)
from nodes.lisp.data import DataHeader, decode_data_header, encode_data_header, fast_header
from nodes.lisp.errors import LispDecodeError, LispEncodeError
from nodes.lisp.ipudp import IpUdp
from nodes.lisp.messages import (ACT_NATIVELY_FORWARD, ALG_HMAC_SHA1_96, ALG_HMAC_SHA256_128,
                                 EidRecord, EncapsulatedControl, Locator, MapNotify,
                                 MapNotifyAck, MapRegister, MapReply, MapRequest,
                                 RequestRecord, decode, encode)
from nodes.lisp.reader import Reader


def h(text):
    """Hex grouped by diagram row; on each line, two or more spaces start a comment."""
    rows = (re.split(r"\s{2,}", line.strip())[0] for line in text.splitlines())
    return bytes.fromhex("".join("".join(rows).split()))


def col(n):
    """Bit `n` (0 = leftmost) of a 32-bit row of an RFC packet diagram."""
    return 1 << (31 - n)


def word(data, offset=0):
    return int.from_bytes(data[offset:offset + 4], "big")


# --- reference bytes -----------------------------------------------------------------------

# One EID record (RFC 9301 5.4): 192.168.10.0/24, TTL 10 minutes, A set, one locator 10.0.0.2
# with priority 1, weight 100, M priority 255, M weight 0, L and R set. This is what Open
# Overlay Router sent in oor-xtr-oor-ms.pcap.
RECORD_V4 = h("""
    0000000a                    Record TTL = 10
    01 18 1000                  Locator Count 1 | mask-len 24 | ACT 0, A 1, Reserved 0
    0000 0001                   Rsvd 0, Map-Version 0 | EID-Prefix-AFI 1
    c0a80a00                    192.168.10.0
    01 64 ff 00                 Priority 1 | Weight 100 | M Priority 255 | M Weight 0
    0005 0001                   Unused 0, L 1, p 0, R 1 | Loc-AFI 1
    0a000002                    10.0.0.2
""")

REGISTER_CAPTURE = h("""
    30000101 ffe5e36bd7f3c13b 0001 0014
    a89dd631ef67645070d29dab8c3c921d7791952a""") + RECORD_V4


def record_v4(**kw):
    fields = dict(eid=V4("192.168.10.0"), mask_len=24, ttl=10,
                  locators=[Locator(V4("10.0.0.2"), 1, 100, 255, 0, local=True)])
    fields.update(kw)
    return EidRecord(**fields)


def test_record_constant_is_the_capture_bytes():
    assert RECORD_V4.hex() == ("0000000a0118100000000001c0a80a00"
                               "0164ff00000500010a000002")


# --- Map-Request (RFC 9301 5.2) ------------------------------------------------------------

def test_map_request_layout():
    m = MapRequest(nonce=0x0102030405060708,
                   records=[RequestRecord(V4("10.1.0.0"), 16)],
                   itr_rlocs=[V4("192.0.2.1"), V6("2001:db8::1")],
                   source_eid=V4("10.1.2.3"))
    expected = h("""
        10000101                    Type 1, flags 0, IRC 1 (two ITR-RLOCs), Record Count 1
        0102030405060708            Nonce
        0001 0a010203               Source-EID-AFI 1, 10.1.2.3
        0001 c0000201               ITR-RLOC-AFI 1, 192.0.2.1
        0002 20010db8000000000000000000000001
        00 10 0001 0a010000         Reserved | mask-len 16 | EID-Prefix-AFI 1 | 10.1.0.0
    """)
    assert encode(m) == expected
    assert decode(expected) == m


def test_map_request_with_map_reply_record_sets_m():
    rec = EidRecord(V4("10.0.0.0"), 8, [Locator(V4("192.0.2.1"))])  # TTL 1440, A set
    m = MapRequest(1, [RequestRecord(V4("10.0.0.0"), 8)], [V4("192.0.2.1")],
                   map_reply_record=rec)
    expected = h("""
        14000001 0000000000000001
        0000                        Source-EID-AFI 0: no source EID
        0001 c0000201
        00 08 0001 0a000000
        000005a0 01 08 1000 0000 0001 0a000000
        01 64 ff 00 0001 0001 c0000201
    """)
    assert encode(m) == expected
    assert decode(expected) == m


def test_map_request_irc_counts_32_rlocs():
    rlocs = [V4(f"192.0.2.{i}") for i in range(32)]
    raw = encode(MapRequest(0, [], rlocs))
    assert word(raw) == (1 << 28) | (31 << 8)          # IRC = 31 in cols 19..23
    assert decode(raw).itr_rlocs == rlocs


REQ_BASE = dict(nonce=0, records=[RequestRecord(V4("10.0.0.0"), 8)], itr_rlocs=[V4("1.2.3.4")])


@pytest.mark.parametrize("field, value, bit", [
    ("authoritative", True, col(4)),     # A
    ("probe", True, col(6)),             # P
    ("smr", True, col(7)),               # S
    ("pitr", True, col(8)),              # p
    ("smr_invoked", True, col(9)),       # s
    ("reserved", 1 << 6, col(10)),       # the first R
    ("reserved", 1 << 4, col(12)),       # Rsvd, first bit
    ("reserved", 1, col(16)),            # Rsvd, last bit
    ("local_xtr", True, col(17)),        # L
    ("dont_map_reply", True, col(18)),   # D
])
def test_map_request_flag_bits(field, value, bit):
    base = word(encode(MapRequest(**REQ_BASE)))
    assert base == 0x10000001
    raw = encode(MapRequest(**dict(REQ_BASE, **{field: value})))
    assert word(raw) == base | bit
    assert getattr(decode(raw), field) == value


def test_map_request_i_bit_and_xtr_id_rfc9437():
    """RFC 9437 section 5: the second R bit is I; with it the 128-bit xTR-ID and the 64-bit
    Site-ID end the message. A record's N bit is the first bit of its Reserved byte."""
    rec = RequestRecord(V4("10.0.0.0"), 8, reserved=0x80)
    raw = encode(MapRequest(0, [rec], [V4("1.2.3.4")], xtr_id=0x0102030405060708090A0B0C0D0E0F10,
                            site_id=0x1122334455667788))
    assert word(raw) == 0x10000001 | col(11)
    assert raw[-24:] == bytes(range(1, 17)) + bytes.fromhex("1122334455667788")
    assert raw[12 + 2 + 6] == 0x80                 # the record's Reserved byte: N
    back = decode(raw)
    assert (back.xtr_id, back.site_id, back.reserved) == (
        0x0102030405060708090A0B0C0D0E0F10, 0x1122334455667788, 0)
    assert back.records[0].notify and not RequestRecord(V4("10.0.0.0"), 8).notify
    with pytest.raises(LispEncodeError):
        encode(MapRequest(0, [rec], [V4("1.2.3.4")], reserved=1 << 5))
    with pytest.raises(LispDecodeError):
        decode(raw[:-1])                          # the I bit promises 24 more bytes


def test_map_request_m_bit():
    raw = encode(MapRequest(**REQ_BASE, map_reply_record=EidRecord(V4("10.0.0.0"), 8)))
    assert word(raw) == 0x10000001 | col(5)


# --- Map-Reply (RFC 9301 5.4) --------------------------------------------------------------

def test_map_reply_layout_two_locators_and_map_version():
    m = MapReply(0xAABBCCDDEEFF0011, [EidRecord(
        V6("2001:db8::"), 32,
        [Locator(V4("198.51.100.1"), 1, 50),
         Locator(V6("2001:db8:ffff::1"), 2, 50, 255, 0, local=True, probed=True)],
        ttl=60, map_version=0xABC)])
    expected = h("""
        20000001 aabbccddeeff0011
        0000003c                    TTL 60
        02 20 1000                  2 locators | mask-len 32 | ACT 0, A 1
        0abc 0002                   Rsvd 0, Map-Version 0xabc | AFI 2
        20010db8000000000000000000000000
        01 32 ff 00 0001 0001 c6336401
        02 32 ff 00 0007 0002 20010db8ffff00000000000000000001
    """)
    assert encode(m) == expected
    assert decode(expected) == m


def test_negative_map_reply_layout():
    # lispers.net's answer in oor-xtr-lispersnet-ms.pcap: 10.0.0.1/32, Natively-Forward,
    # TTL 15, A clear, no locators.
    raw = h("20000001 fef7077fe617566a 0000000f 00 20 2000 0000 0001 0a000001")
    m = MapReply(0xfef7077fe617566a, [EidRecord(V4("10.0.0.1"), 32, [], ttl=15,
                                                action=ACT_NATIVELY_FORWARD,
                                                authoritative=False)])
    assert decode(raw) == m
    assert encode(m) == raw


@pytest.mark.parametrize("field, value, bit", [
    ("probe", True, col(4)), ("echo_nonce", True, col(5)), ("security", True, col(6)),
    ("reserved", 1 << 16, col(7)), ("reserved", 1, col(23)),
])
def test_map_reply_flag_bits(field, value, bit):
    raw = encode(MapReply(0, [], **{field: value}))
    assert word(raw) == (2 << 28) | bit
    assert getattr(decode(raw), field) == value


# --- records and locators (RFC 9301 5.4) ---------------------------------------------------

@pytest.mark.parametrize("field, value, row, bit", [
    ("action", 4, 1, col(16)),           # ACT is cols 16..18: 4 = 0b100
    ("action", 1, 1, col(18)),
    ("reserved", 1 << 11, 1, col(20)),   # Reserved after A: cols 20..31
    ("reserved", 1, 1, col(31)),
    ("rsvd", 8, 2, col(0)),              # Rsvd: cols 0..3 of the third row
    ("map_version", 1 << 11, 2, col(4)),  # Map-Version: cols 4..15
    ("map_version", 1, 2, col(15)),
])
def test_record_field_bits(field, value, row, bit):
    rec = EidRecord(V4("10.0.0.0"), 8, authoritative=False, ttl=0)
    base = encode(MapReply(0, [rec]))
    raw = encode(MapReply(0, [EidRecord(V4("10.0.0.0"), 8, authoritative=False, ttl=0,
                                        **{field: value})]))
    offset = 12 + 4 * row
    assert word(raw, offset) == word(base, offset) | bit
    assert word(raw, offset) & bit


def test_record_a_bit():
    on = encode(MapReply(0, [EidRecord(V4("10.0.0.0"), 8, ttl=0)]))
    off = encode(MapReply(0, [EidRecord(V4("10.0.0.0"), 8, ttl=0, authoritative=False)]))
    assert word(on, 16) ^ word(off, 16) == col(19)


@pytest.mark.parametrize("field, value, bit", [
    ("local", True, col(13)), ("probed", True, col(14)),
    ("unused_flags", 1, col(12)), ("unused_flags", 1 << 12, col(0)),
])
def test_locator_flag_bits(field, value, bit):
    loc = Locator(V4("10.0.0.2"), reachable=False, **{field: value})
    raw = encode(MapReply(0, [EidRecord(V4("10.0.0.0"), 8, [loc])]))
    # Locator: header 12 + record 16 (IPv4 EID), then Priority/Weight row, then flags row.
    assert word(raw, 12 + 16 + 4) == bit | 1          # Loc-AFI = 1 in cols 16..31
    assert getattr(decode(raw).records[0].locators[0], field) == value


def test_locator_r_bit():
    raw = encode(MapReply(0, [EidRecord(V4("10.0.0.0"), 8, [Locator(V4("10.0.0.2"))])]))
    assert word(raw, 12 + 16 + 4) == col(15) | 1


def test_records_and_locators_in_any_order():
    """Several records per message, locators not sorted by priority or address: all kept in
    the order they came."""
    recs = [EidRecord(V6("2001:db8:20::"), 48, [Locator(V4("10.0.0.9"), 5),
                                                 Locator(V4("10.0.0.1"), 1)]),
            EidRecord(V4("192.168.0.0"), 16, [Locator(V6("2001:db8::2"), 255, 0),
                                               Locator(V4("10.0.0.3"), 0, 0)]),
            EidRecord(V4("10.0.0.0"), 8, [])]
    m = MapReply(7, recs)
    got = decode(encode(m))
    assert got == m
    assert [r.mask_len for r in got.records] == [48, 16, 8]
    assert [loc.priority for loc in got.records[0].locators] == [5, 1]


# --- Map-Register, Map-Notify, Map-Notify-Ack (RFC 9301 5.6, 5.7) -------------------------

def test_map_register_capture_layout():
    m = MapRegister(0xffe5e36bd7f3c13b, [record_v4()], key_id=0, alg_id=ALG_HMAC_SHA1_96,
                    auth_data=h("a89dd631ef67645070d29dab8c3c921d7791952a"),
                    want_map_notify=True)
    assert encode(m) == REGISTER_CAPTURE
    assert decode(REGISTER_CAPTURE) == m


def test_map_register_layout_with_xtr_id_and_sha256():
    rec2 = EidRecord(V6("2001:db8:10::"), 64, [Locator(V4("10.0.0.2"), local=True)], ttl=10)
    m = MapRegister(0x0102030405060708, [record_v4(), rec2], key_id=7,
                    alg_id=ALG_HMAC_SHA256_128, auth_data=bytes(range(16)), proxy_reply=True,
                    want_map_notify=True, xtr_id=0x000102030405060708090a0b0c0d0e0f,
                    site_id=0x1122334455667788)
    expected = h("""
        3a000102                    Type 3, P, I, M, Record Count 2
        0102030405060708
        07 02 0010                  Key ID 7 | Algorithm ID 2 | Authentication Data Length 16
        000102030405060708090a0b0c0d0e0f
    """) + RECORD_V4 + h("""
        0000000a 01 40 1000 0000 0002 20010db8001000000000000000000000
        01 64 ff 00 0005 0001 0a000002
        000102030405060708090a0b0c0d0e0f    xTR-ID
        1122334455667788                    Site-ID
    """)
    assert encode(m) == expected
    assert decode(expected) == m


@pytest.mark.parametrize("field, value, bit", [
    ("proxy_reply", True, col(4)), ("security", True, col(5)),
    ("reserved", 1 << 15, col(7)), ("reserved", 1, col(22)),
    ("want_map_notify", True, col(23)),
])
def test_map_register_flag_bits(field, value, bit):
    raw = encode(MapRegister(0, [], **{field: value}))
    assert word(raw) == (3 << 28) | bit
    assert getattr(decode(raw), field) == value


def test_map_register_i_bit():
    raw = encode(MapRegister(0, [], xtr_id=5))
    assert word(raw) == (3 << 28) | col(6)
    assert raw[-24:] == (5).to_bytes(16, "big") + bytes(8)


@pytest.mark.parametrize("cls, mtype", [(MapNotify, 4), (MapNotifyAck, 5)])
def test_map_notify_layout(cls, mtype):
    m = cls(0xffe5e36bd7f3c13b, [record_v4(locators=[Locator(V4("10.0.0.2"), 1, 100)])],
            key_id=0, alg_id=ALG_HMAC_SHA1_96, auth_data=bytes(20))
    expected = h(f"""
        {mtype}0000001 ffe5e36bd7f3c13b 0001 0014 {"00" * 20}
        0000000a 01 18 1000 0000 0001 c0a80a00 01 64 ff 00 0001 0001 0a000002
    """)
    assert encode(m) == expected
    got = decode(expected)
    assert type(got) is cls and got == m


@pytest.mark.parametrize("cls", [MapNotify, MapNotifyAck])
def test_map_notify_i_and_r_bits(cls):
    raw = encode(cls(0, [], xtr_id=1, site_id=2))
    assert word(raw) & 0x0FFFFFFF == col(4)                    # I
    raw = encode(cls(0, [], reserved=1 << 18))
    assert word(raw) & 0x0FFFFFFF == col(5)                    # R (kept in `reserved`)
    assert decode(raw).reserved == 1 << 18


def test_key_id_and_algorithm_id_are_one_octet_each():
    """RFC 9301 5.6: Key ID (8 bits), Algorithm ID (8 bits), Authentication Data Length (16).
    (RFC 6833 had a 16-bit Key ID; the captures' 00 01 is key 0 + HMAC-SHA-1-96.)"""
    raw = encode(MapRegister(0, [], key_id=0xAB, alg_id=0xCD, auth_data=b"\x01" * 3))
    assert raw[12:19] == h("ab cd 0003 010101")
    m = decode(raw)
    assert (m.key_id, m.alg_id, m.auth_data) == (0xAB, 0xCD, b"\x01\x01\x01")


# --- ECM (RFC 9301 5.8) with inner IPv4 and IPv6 -------------------------------------------

INNER_REQUEST = MapRequest(0xfef7077fe617566a, [RequestRecord(V4("10.0.0.1"), 32)],
                           [V4("10.0.0.2")], source_eid=V4("192.168.10.2"))
# The Encapsulated Map-Request OOR sent in oor-xtr-lispersnet-ms.pcap (inner IPv4 + UDP).
ECM_CAPTURE = h("""
    80000000                                    Type 8, S D E M clear
    4500003c 00044000 ff11a701 c0a80a02 0a000001
    10f610f6 0028d73b
    10000001 fef7077fe617566a 0001c0a80a02 00010a000002 00 20 0001 0a000001
""")


def _ones_complement_ok(data):
    """Independent RFC 1071 check: the one's-complement sum over data (checksum included)
    is 0xFFFF."""
    if len(data) % 2:
        data += b"\0"
    total = 0
    for i in range(0, len(data), 2):
        total += (data[i] << 8) | data[i + 1]
        total = (total & 0xFFFF) + (total >> 16)
    return total == 0xFFFF


def test_ecm_ipv4_capture_layout():
    ecm = EncapsulatedControl(INNER_REQUEST, IpUdp(V4("192.168.10.2"), V4("10.0.0.1"),
                                                   ttl=255, ident=4))
    assert encode(ecm) == ECM_CAPTURE
    assert decode(ECM_CAPTURE) == ecm


def test_ecm_ipv4_checksums_match_scapy():
    inner = IpUdp(V4("192.0.2.7"), V4("203.0.113.9"), sport=61001, ttl=17, tos=0x20,
                  ident=0x1234)
    raw = encode(EncapsulatedControl(INNER_REQUEST, inner, to_ms=True))
    payload = encode(INNER_REQUEST)
    ref = bytes(IP(src="192.0.2.7", dst="203.0.113.9", ttl=17, tos=0x20, id=0x1234,
                   flags="DF") / UDP(sport=61001, dport=4342) / Raw(payload))
    assert raw[:4] == h("81000000")                   # M set: col 7
    assert raw[4:] == ref
    assert _ones_complement_ok(raw[4:24])             # IPv4 header checksum
    pseudo = raw[16:24] + struct.pack("!BBH", 0, 17, len(raw) - 24)
    assert _ones_complement_ok(pseudo + raw[24:])     # UDP checksum


def test_ecm_ipv6_checksums_match_scapy():
    src, dst = "2001:db8:10::2", "2001:db8:20::1"
    inner = IpUdp(V6(src), V6(dst), sport=61000, ttl=64, tos=0xB8, flow_label=0x12345)
    msg = MapRequest(9, [RequestRecord(V6("2001:db8:20::"), 48)], [V6(src)],
                     source_eid=V6(src))
    raw = encode(EncapsulatedControl(msg, inner, security=True, ddt=True))
    payload = encode(msg)
    ref = bytes(IPv6(src=src, dst=dst, hlim=64, tc=0xB8, fl=0x12345)
                / UDP(sport=61000, dport=4342) / Raw(payload))
    assert raw[:4] == h("8c000000")                   # S col 4, D col 5
    assert raw[4:8] == h("6b812345")                  # version 6, class 0xb8, flow 0x12345
    assert raw[4:] == ref
    pseudo = raw[12:44] + struct.pack("!I3xB", len(raw) - 44, 17)
    assert _ones_complement_ok(pseudo + raw[44:])
    assert decode(raw) == EncapsulatedControl(msg, inner, security=True, ddt=True)


@pytest.mark.parametrize("field, bit", [("security", col(4)), ("ddt", col(5)),
                                        ("to_etr", col(6)), ("to_ms", col(7))])
def test_ecm_flag_bits(field, bit):
    raw = encode(EncapsulatedControl(INNER_REQUEST, IpUdp(V4("1.1.1.1"), V4("2.2.2.2")),
                                     **{field: True}))
    assert word(raw) == (8 << 28) | bit
    assert getattr(decode(raw), field) is True


def test_ecm_zero_udp_checksum_is_accepted_and_kept():
    """lispers.net sends its inner UDP checksum as 0 (none)."""
    zeroed = ECM_CAPTURE[:30] + b"\0\0" + ECM_CAPTURE[32:]
    m = decode(zeroed)
    assert m.inner.zero_checksum is True
    assert encode(m) == zeroed
    v6 = encode(EncapsulatedControl(INNER_REQUEST, IpUdp(V6("::1"), V6("::2"),
                                                         zero_checksum=True)))
    assert v6[4 + 40 + 6:4 + 40 + 8] == b"\0\0"
    assert decode(v6).inner.zero_checksum is True


def test_ecm_bad_checksums_are_refused():
    bad_udp = ECM_CAPTURE[:31] + bytes([ECM_CAPTURE[31] ^ 1]) + ECM_CAPTURE[32:]
    with pytest.raises(LispDecodeError) as e:
        decode(bad_udp)
    assert (e.value.field, e.value.offset) == ("ECM.inner.udp.checksum", 30)
    bad_ip = ECM_CAPTURE[:14] + bytes([ECM_CAPTURE[14] ^ 1]) + ECM_CAPTURE[15:]
    with pytest.raises(LispDecodeError) as e:
        decode(bad_ip)
    assert (e.value.field, e.value.offset) == ("ECM.inner.ip.checksum", 14)


# --- LCAF (RFC 8060) and other AFIs --------------------------------------------------------

def test_instance_id_lcaf_layout():
    addr, mask = make_eid("10.1.0.0/16", iid=7)
    assert (addr, mask) == (InstanceId(7, V4("10.1.0.0")), 16)
    assert encode_address(addr) == h("""
        4003 00 00                  AFI 16387 | Rsvd1 | Flags
        02 00 000a                  Type 2 | IID mask-len 0 | Length 10
        00000007                    Instance ID
        0001 0a010000               AFI 1, 10.1.0.0
    """)
    v6 = InstanceId(0xFFFFFFFF, V6("2001:db8::"), iid_mask_len=8)
    assert encode_address(v6) == h("4003 0000 02 08 0016 ffffffff 0002 20010db8" + "00" * 12)
    assert _decode_addr(encode_address(v6)) == v6


def test_afi_list_lcaf_layout():
    lst = AfiList((V4("192.0.2.1"), V6("2001:db8::1")))
    raw = h("""
        4003 00 00 01 00 0018       AFI 16387 | Rsvd1 | Flags | Type 1 | Rsvd2 | Length 24
        0001 c0000201
        0002 20010db8000000000000000000000001
    """)
    assert encode_address(lst) == raw
    assert _decode_addr(raw) == lst


def test_afi_list_rloc_in_a_locator():
    loc = Locator(AfiList((V4("192.0.2.1"), V6("2001:db8::1"))))
    m = MapReply(1, [EidRecord(V4("10.0.0.0"), 8, [loc])])
    assert decode(encode(m)) == m


def test_instance_id_may_hold_another_lcaf():
    # RFC 8060 4.1: "AFI = x" may be any AFI, LCAF included (here an opaque type-12 LCAF).
    raw = h("4003 0000 02 00 0018 00000003 4003 0000 0c 00 000c 0001c0000201 0001c0000202")
    got = _decode_addr(raw)
    assert got == InstanceId(3, Lcaf(12, h("0001c0000201 0001c0000202")))
    assert encode_address(got) == raw


def test_lcaf_nesting_is_bounded():
    inner = h("0001 0a000001")
    for _ in range(9):
        inner = struct.pack("!HBBBBH", 16387, 0, 0, 1, 0, len(inner)) + inner
    with pytest.raises(LispDecodeError) as e:
        _decode_addr(inner)
    assert e.value.field.endswith(".afi") and e.value.offset == 8 * 8
    with pytest.raises(LispEncodeError):
        nested = V4("10.0.0.1")
        for _ in range(9):
            nested = AfiList((nested,))
        encode_address(nested)


def test_opaque_lcaf_distinguished_name_and_mac():
    geo = h("4003 01 02 05 03 0004 deadbeef")
    assert _decode_addr(geo) == Lcaf(5, h("deadbeef"), 1, 2, 3)
    assert encode_address(Lcaf(5, h("deadbeef"), 1, 2, 3)) == geo
    assert encode_address(DistinguishedName("xtr-1")) == h("0011 7874722d31 00")
    assert _decode_addr(h("0011 7874722d31 00")) == DistinguishedName("xtr-1")
    assert encode_address(MacAddress(h("0200 5e00 0001"))) == h("4005 02005e000001")
    assert encode_address(None) == h("0000")


def _decode_addr(raw):
    r = Reader(raw)
    got = decode_address(r, "a")
    r.done("a")
    return got


# --- the data header (RFC 9300 5.3) --------------------------------------------------------

@pytest.mark.parametrize("header, expected", [
    (DataHeader(), "00000000 00000000"),                       # the captures' header
    (DataHeader(nonce=0x123456), "80123456 00000000"),
    (DataHeader(lsb=0x80000001), "40000000 80000001"),
    (DataHeader(nonce=0xABCDEF, echo_nonce=True), "a0abcdef 00000000"),
    (DataHeader(map_versions=(0x123, 0x456)), "10123456 00000000"),
    (DataHeader(instance_id=0xABCDEF), "08000000 abcdef00"),
    (DataHeader(instance_id=7, lsb=3), "48000000 00000703"),
    (DataHeader(nonce=1, lsb=1, instance_id=0xFFFFFF), "c8000001 ffffff01"),
    (DataHeader(reserved=4), "04000000 00000000"),              # R
    (DataHeader(reserved=3), "03000000 00000000"),              # K K
])
def test_data_header_layout(header, expected):
    assert encode_data_header(header) == h(expected)
    assert decode_data_header(h(expected)) == header


def test_fast_header_layout():
    assert fast_header(0x123456) == h("c0123456 00000001")
    assert fast_header(0x123456, instance_id=0x0ABCDE, lsb=3) == h("c8123456 0abcde03")
    assert fast_header(0x123456, lsb=0) == encode_data_header(DataHeader(nonce=0x123456, lsb=0))


def test_data_header_receive_rules():
    """RFC 9300 5.3: N with V means a nonce; E without N, and the LSBs without L, are
    ignored. The ignored bits are kept so the header re-encodes unchanged."""
    for raw, fields in [
        ("90abcdef 00000000", dict(nonce=0xABCDEF)),
        ("b0abcdef 00000000", dict(nonce=0xABCDEF, echo_nonce=True)),
        ("20000000 00000000", dict()),
        ("00abcdef 12345678", dict()),
        ("08000001 00000712", dict(instance_id=7)),
    ]:
        got = decode_data_header(h(raw))
        for name in ("nonce", "lsb", "echo_nonce", "map_versions", "instance_id"):
            assert getattr(got, name) == fields.get(name, DataHeader().__dict__[name]), raw
        assert encode_data_header(got) == h(raw)
    assert decode_data_header(h("08000001 00000712")).ignored == 0x00000001_00000012


def test_data_header_offset_and_truncation():
    buf = b"\xff" * 3 + h("80000001 00000000") + b"inner"
    assert decode_data_header(buf, 3).nonce == 1
    with pytest.raises(LispDecodeError) as e:
        decode_data_header(h("80000001 000000"))
    assert (e.value.field, e.value.offset) == ("LISP-data.header", 0)


@pytest.mark.parametrize("header", [
    DataHeader(nonce=1 << 24), DataHeader(lsb=1 << 32), DataHeader(instance_id=1 << 24),
    DataHeader(instance_id=1, lsb=256), DataHeader(map_versions=(4096, 0)),
    DataHeader(map_versions=(0, -1)), DataHeader(reserved=8),
    DataHeader(nonce=1, map_versions=(1, 1)), DataHeader(echo_nonce=True),
    DataHeader(nonce=1, echo_nonce=2), DataHeader(nonce=1, ignored=1 << 32),
    DataHeader(ignored=1 << 64),
])
def test_data_header_encode_errors(header):
    with pytest.raises(LispEncodeError):
        encode_data_header(header)


# --- bad bytes -----------------------------------------------------------------------------

NOTIFY_V6_XTR = encode(MapNotify(3, [EidRecord(InstanceId(9, V6("2001:db8:10::")), 64,
                                               [Locator(AfiList((V4("10.0.0.2"),
                                                                 V6("2001:db8::2"))))])],
                                 key_id=1, alg_id=2, auth_data=bytes(32), xtr_id=1, site_id=2))
VALID = {
    "register": REGISTER_CAPTURE,
    "ecm4": ECM_CAPTURE,
    "ecm6": encode(EncapsulatedControl(
        MapRequest(1, [RequestRecord(V6("2001:db8::"), 32)], [V6("2001:db8::1")]),
        IpUdp(V6("2001:db8::1"), V6("2001:db8::2")))),
    "reply": encode(MapReply(1, [EidRecord(V6("2001:db8::"), 32, [
        Locator(V4("198.51.100.1")), Locator(DistinguishedName("rloc"))])])),
    "request": encode(MapRequest(1, [RequestRecord(InstanceId(1, V4("10.0.0.0")), 8)],
                                 [V4("1.2.3.4"), V6("::1")], source_eid=V4("10.0.0.1"),
                                 map_reply_record=EidRecord(V4("10.0.0.0"), 8))),
    "notify": NOTIFY_V6_XTR,
    "ack": encode(MapNotifyAck(3, [])),
}


@pytest.mark.parametrize("name", sorted(VALID))
def test_every_truncation_raises_decode_error(name):
    raw = VALID[name]
    assert encode(decode(raw)) == raw
    for cut in range(len(raw)):
        with pytest.raises(LispDecodeError) as e:
            decode(raw[:cut])
        assert 0 <= e.value.offset <= cut, (cut, e.value)
        assert e.value.field


@pytest.mark.parametrize("name", sorted(VALID))
def test_trailing_byte_raises_decode_error(name):
    with pytest.raises(LispDecodeError) as e:
        decode(VALID[name] + b"\0")
    if name.startswith("ecm"):      # the inner IP length no longer matches the datagram
        assert e.value.field in ("ECM.inner.ip.total_length", "ECM.inner.ip.payload_length")
        assert e.value.reason.endswith(" present")
    else:
        assert e.value.reason == "1 unexpected trailing byte(s)"
        assert e.value.offset == len(VALID[name])


@pytest.mark.parametrize("cut, field, offset", [
    (0, "type", 0),
    (3, "Map-Register.header", 0),
    (12, "Map-Register.key_id", 12),
    (14, "Map-Register.auth_data_length", 14),
    (20, "Map-Register.auth_data", 16),
    (36, "Map-Register.record[0].ttl", 36),
    (41, "Map-Register.record[0].mask_len", 41),
    (48, "Map-Register.record[0].eid.ipv4", 48),
    (55, "Map-Register.record[0].locator[0].m_weight", 55),
    (60, "Map-Register.record[0].locator[0].address.ipv4", 60),
])
def test_truncation_error_names_field_and_offset(cut, field, offset):
    assert len(REGISTER_CAPTURE) == 64
    with pytest.raises(LispDecodeError) as e:
        decode(REGISTER_CAPTURE[:cut])
    assert (e.value.field, e.value.offset) == (field, offset)
    assert str(e.value).startswith(f"{field} at offset {offset}: ")


def test_bad_bytes_error_fields():
    bad_afi = REGISTER_CAPTURE[:58] + h("0063") + REGISTER_CAPTURE[60:]
    with pytest.raises(LispDecodeError) as e:
        decode(bad_afi)
    assert str(e.value) == ("Map-Register.record[0].locator[0].address.afi at offset 58: "
                            "unknown AFI 99")
    long_mask = REGISTER_CAPTURE[:41] + b"\x21" + REGISTER_CAPTURE[42:]
    with pytest.raises(LispDecodeError) as e:
        decode(long_mask)
    assert (e.value.field, e.value.offset) == ("Map-Register.record[0].mask_len", 41)
    for first in (b"\x00", b"\x60", b"\x70", b"\xf0"):
        with pytest.raises(LispDecodeError) as e:
            decode(first + bytes(40))
        assert e.value.field == "type"
    with pytest.raises(LispDecodeError) as e:
        decode(ECM_CAPTURE[:6] + h("003b") + ECM_CAPTURE[8:])
    assert (e.value.field, e.value.offset) == ("ECM.inner.ip.checksum", 14)
    with pytest.raises(LispDecodeError) as e:
        decode(ECM_CAPTURE[:4] + ECM_CAPTURE)                   # ECM inside an ECM
    assert e.value.field in ("ECM.inner.ip.version", "ECM.message")
    not_ascii = encode(MapReply(1, [EidRecord(DistinguishedName("ab"), 0)]))
    with pytest.raises(LispDecodeError) as e:
        decode(not_ascii.replace(b"ab\x00", b"a\xff\x00"))
    assert e.value.field == "Map-Reply.record[0].eid.name"


def test_error_is_a_value_error_with_parts():
    with pytest.raises(ValueError):
        decode(b"\x10")
    err = LispDecodeError("x.y", 3, "why")
    assert (err.field, err.offset, err.reason, str(err)) == ("x.y", 3, "why",
                                                           "x.y at offset 3: why")


# --- encoding out-of-range values ----------------------------------------------------------

def _reg(**kw):
    return MapRegister(0, [record_v4()], **kw)


def _rec(**kw):
    return MapReply(0, [EidRecord(**dict(dict(eid=V4("10.0.0.0"), mask_len=8), **kw))])


def _loc(**kw):
    return MapReply(0, [EidRecord(V4("10.0.0.0"), 8, [Locator(V4("10.0.0.2"), **kw)])])


def _ecm(**kw):
    return EncapsulatedControl(INNER_REQUEST, IpUdp(**dict(
        dict(src=V4("10.0.0.1"), dst=V4("10.0.0.2")), **kw)))


@pytest.mark.parametrize("make", [
    lambda: MapReply(1 << 64, []),
    lambda: MapReply(-1, []),
    lambda: MapReply(0, [], reserved=1 << 17),
    lambda: MapReply(0, [], probe=2),
    lambda: MapReply(0, [], echo_nonce=None),
    lambda: MapReply(0, [EidRecord(V4("10.0.0.0"), 8)] * 256),
    lambda: _rec(ttl=1 << 32),
    lambda: _rec(mask_len=33),
    lambda: _rec(eid=V6("::"), mask_len=129),
    lambda: _rec(eid=InstanceId(1, V4("10.0.0.0")), mask_len=33),
    lambda: _rec(action=8),
    lambda: _rec(map_version=4096),
    lambda: _rec(reserved=4096),
    lambda: _rec(rsvd=16),
    lambda: _rec(authoritative=3),
    lambda: _rec(locators=[Locator(V4("1.1.1.1"))] * 256),
    lambda: _rec(eid=InstanceId(1 << 32, V4("10.0.0.0"))),
    lambda: _rec(eid=InstanceId(1, V4("10.0.0.0"), iid_mask_len=256)),
    lambda: _rec(eid=DistinguishedName("caf\u00e9")),
    lambda: _rec(eid=DistinguishedName("a\0b")),
    lambda: _rec(eid=MacAddress(b"12345")),
    lambda: _rec(eid=Lcaf(5, "not bytes")),
    lambda: _rec(eid=Lcaf(256, b"")),
    lambda: _rec(eid="10.0.0.0"),
    lambda: _loc(priority=256),
    lambda: _loc(weight=-1),
    lambda: _loc(m_priority=256),
    lambda: _loc(m_weight=256),
    lambda: _loc(unused_flags=1 << 13),
    lambda: _loc(local=2),
    lambda: _reg(key_id=256),
    lambda: _reg(alg_id=256),
    lambda: _reg(auth_data=20),
    lambda: _reg(auth_data=bytes(0x10000)),
    lambda: _reg(reserved=1 << 16),
    lambda: _reg(xtr_id=1 << 128),
    lambda: _reg(xtr_id=1, site_id=1 << 64),
    lambda: _reg(site_id=5),
    lambda: _reg(want_map_notify="yes"),
    lambda: MapNotify(0, [], reserved=1 << 19),
    lambda: MapRequest(0, [], []),
    lambda: MapRequest(0, [], [V4("1.1.1.1")] * 33),
    lambda: MapRequest(0, [RequestRecord(V4("10.0.0.0"), 40)], [V4("1.1.1.1")]),
    lambda: MapRequest(0, [RequestRecord(V4("10.0.0.0"), 8, 256)], [V4("1.1.1.1")]),
    lambda: MapRequest(0, [], [V4("1.1.1.1")], reserved=128),
    lambda: MapRequest(0, [], [V4("1.1.1.1")], smr=-1),
    lambda: _ecm(dst=V6("::1")),
    lambda: _ecm(src="10.0.0.1"),
    lambda: _ecm(sport=1 << 16),
    lambda: _ecm(ttl=256),
    lambda: _ecm(tos=256),
    lambda: _ecm(ident=1 << 16),
    lambda: _ecm(frag=0x2000),                       # MF: a fragment
    lambda: _ecm(frag=0x4001),                       # an offset
    lambda: _ecm(flow_label=1),                      # an IPv6 field on IPv4
    lambda: _ecm(src=V6("::1"), dst=V6("::2"), flow_label=1 << 20),
    lambda: _ecm(src=V6("::1"), dst=V6("::2"), ident=1),
    lambda: _ecm(zero_checksum=2),
    lambda: EncapsulatedControl(INNER_REQUEST, IpUdp(V4("1.1.1.1"), V4("2.2.2.2")),
                                reserved=1 << 24),
    lambda: EncapsulatedControl(INNER_REQUEST, IpUdp(V4("1.1.1.1"), V4("2.2.2.2")), ddt=2),
    lambda: EncapsulatedControl(_ecm(), IpUdp(V4("1.1.1.1"), V4("2.2.2.2"))),
    lambda: EncapsulatedControl(MapRequest(0, [], [V4("1.1.1.1")],
                                           source_eid=DistinguishedName("x" * 65490)),
                                IpUdp(V4("1.1.1.1"), V4("2.2.2.2"))),
    lambda: object(),
    lambda: RequestRecord(V4("10.0.0.0"), 8),
])
def test_encode_out_of_range_raises(make):
    with pytest.raises(LispEncodeError):
        encode(make())

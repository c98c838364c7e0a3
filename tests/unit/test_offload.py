"""TUN offload helpers (nodes/offload.py) against scapy, the outside reference: every
segment a super-packet is cut into must be the packet a TCP stack would have sent without
offloads (scapy recomputes lengths and checksums and must agree), and coalescing must give
back the super-packet with the partial checksum the kernel expects."""
import os

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6

from nodes.offload import (F_NEEDS_CSUM, GSO_TCPV4, GSO_TCPV6, GSO_UDP_L4, NO_VNET, VNET,
                           Coalescer, complete_checksum, fold, pseudo_sum, tso_segments)


def rebuilt(pkt_bytes, v6=False):
    """scapy's version of the packet with lengths and checksums recomputed."""
    p = (IPv6 if v6 else IP)(pkt_bytes)
    if v6:
        del p.plen
    else:
        del p.len, p.chksum
    del p[TCP].chksum
    return bytes(p.__class__(bytes(p)))


def super_packet(payload_len, v6=False, flags="PA", seq=1000, options=(), ident=0xFFF0):
    ip = IPv6(src="2001:db8::1", dst="2001:db8:2::2") if v6 else \
        IP(src="10.1.0.10", dst="10.2.0.10", id=ident, flags="DF", ttl=63)
    p = ip / TCP(sport=40000, dport=5201, seq=seq, ack=77, flags=flags, window=500,
                 options=list(options)) / os.urandom(payload_len)
    return bytes(p.__class__(bytes(p)))


@pytest.mark.parametrize("v6", [False, True])
@pytest.mark.parametrize("payload_len", [1, 1447, 1448, 1449, 20000, 64000])
def test_segments_are_what_scapy_builds(v6, payload_len):
    sp = super_packet(payload_len, v6, options=[("NOP", None), ("NOP", None),
                                                 ("Timestamp", (5, 6))])
    segs = tso_segments(sp, 1448)
    assert len(segs) == -(-payload_len // 1448)
    data = b""
    for i, (hdr, payload) in enumerate(segs):
        pkt = hdr + bytes(payload)
        assert pkt == rebuilt(pkt, v6)                 # lengths and checksums right
        p = (IPv6 if v6 else IP)(pkt)
        assert p[TCP].seq == 1000 + i * 1448
        last = i == len(segs) - 1
        assert ("P" in str(p[TCP].flags)) == last       # PSH only on the last
        assert "A" in str(p[TCP].flags)
        assert p[TCP].options == [("NOP", None), ("NOP", None), ("Timestamp", (5, 6))]
        if not v6:
            assert p.id == (0xFFF0 + i) & 0xFFFF        # IP ID advances, wraps
            assert p.ttl == 63 and p.flags == "DF"
        data += bytes(payload)
    assert data == bytes((IPv6 if v6 else IP)(sp)[TCP].payload)


def test_fin_and_cwr_go_on_the_right_segment():
    segs = tso_segments(super_packet(3000, flags="FAC"), 1000)
    flags = [str(IP(h + bytes(p))[TCP].flags) for h, p in segs]
    assert flags == ["AC", "A", "FA"]


def test_not_tcp_is_not_segmented():
    udp = bytes(IP(src="1.1.1.1", dst="2.2.2.2") / UDP() / (b"x" * 3000))
    assert tso_segments(udp, 1000) is None
    assert tso_segments(super_packet(100)[:30], 10) is None


def test_checksum_matches_scapy_for_odd_and_even_lengths():
    for n in (0, 1, 2, 3, 999, 1000):
        p = IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=1, dport=2) / os.urandom(n)
        ref = IP(bytes(p))[UDP].chksum
        raw = bytearray(bytes(p))
        raw[26:28] = fold(pseudo_sum(raw, 17, len(raw) - 20)).to_bytes(2, "big")
        assert complete_checksum(raw, 20, 6)
        assert int.from_bytes(raw[26:28], "big") == ref
    assert fold(0) == 0 and fold(0xFFFF) == 0xFFFF and fold(0x1FFFE) == 0xFFFF


@pytest.mark.parametrize("proto", ["tcp", "udp"])
def test_complete_checksum_finishes_a_partial_one(proto):
    l4 = TCP(sport=1, dport=2, flags="A") if proto == "tcp" else UDP(sport=1, dport=2)
    good = bytes(IP(src="10.0.0.1", dst="10.0.0.2") / l4 / os.urandom(333))
    raw = bytearray(good)
    off = 16 if proto == "tcp" else 6
    length = len(raw) - 20
    raw[20 + off:22 + off] = fold(pseudo_sum(raw, 6 if proto == "tcp" else 17,
                                             length)).to_bytes(2, "big")
    assert raw != bytearray(good)
    assert complete_checksum(raw, 20, off)
    assert bytes(raw) == good


def run_coalescer(packets):
    writes = []
    c = Coalescer(lambda bufs: writes.append([bytes(b) for b in bufs]) or True)
    for p in packets:
        c.add(memoryview(p))
    c.flush()
    return writes


def segments_of(sp, mss):
    return [h + bytes(p) for h, p in tso_segments(sp, mss)]


@pytest.mark.parametrize("v6", [False, True])
def test_coalescing_gives_back_the_super_packet(v6):
    sp = super_packet(10 * 1400 + 123, v6)
    writes = run_coalescer(segments_of(sp, 1400))
    assert len(writes) == 1
    vnet, *rest = writes[0]
    flags, gso, hdr_len, gso_size, csum_start, csum_offset = VNET.unpack(vnet)
    ihl = 40 if v6 else 20
    assert (flags, gso, hdr_len, gso_size, csum_start, csum_offset) == \
        (F_NEEDS_CSUM, GSO_TCPV6 if v6 else GSO_TCPV4, ihl + 20, 1400, ihl, 16)
    out = bytearray(b"".join(rest))
    # The checksum field holds the pseudo-header sum; finishing it must give the original.
    assert complete_checksum(out, ihl, 16)
    assert bytes(out) == rebuilt(sp, v6)
    if not v6:
        assert IP(bytes(out)).chksum == IP(sp).chksum   # (the first segment's IP ID)


def test_coalescer_writes_alone_what_it_must_not_merge():
    segs = segments_of(super_packet(4 * 1000), 1000)
    syn = super_packet(0, flags="S")
    udp = bytes(IP(src="10.1.0.10", dst="10.2.0.10") / UDP() / b"u")
    other_flow = segments_of(super_packet(1000, seq=5), 1000)[0].replace(
        b"\x9c\x40", b"\x9c\x41", 1)                         # another source port
    out_of_order = [segs[0], segs[2], segs[1], segs[3]]
    writes = run_coalescer([syn, udp] + out_of_order + [other_flow])
    # Neither the SYN nor UDP is ever merged; 2 does not follow 0, 1 does not follow 2,
    # 3 does not follow 1, and the other flow follows nothing: every packet alone.
    assert [w[0] for w in writes] == [NO_VNET] * 7
    assert [w[1] for w in writes] == [syn, udp] + out_of_order + [other_flow]


def test_coalescer_stops_at_a_short_segment_and_at_psh():
    a = segments_of(super_packet(3000, flags="A"), 1000)        # no PSH anywhere
    b = segments_of(super_packet(2500, flags="PA", seq=1000 + 3000, ident=0xFFF3), 1000)
    writes = run_coalescer(a + b)
    # a's three segments and b's first two coalesce (same flow, in order), b's last
    # (short, PSH) ends the run: one super-packet of 5 full segments + 500.
    assert len(writes) == 1
    vnet, ip, tcp, *payloads = writes[0]
    assert VNET.unpack(vnet)[3] == 1000
    assert [len(p) for p in payloads] == [1000] * 5 + [500]
    assert TCP(tcp).flags == "PA"


def test_tcp_segments_whose_ip_ids_do_not_follow_are_not_merged():
    segs = segments_of(super_packet(3000, flags="A"), 1000)
    p = bytearray(segs[1])
    p[4:6] = b"\x12\x34"                        # another IP ID (checksum irrelevant here)
    writes = run_coalescer([segs[0], bytes(p), segs[2]])
    assert [w[0] for w in writes] == [NO_VNET] * 3


def datagrams(sizes, v6=False, first_id=0xFFFE, sport=4000):
    return [datagram(os.urandom(n), v6, first_id + i, sport) for i, n in enumerate(sizes)]


@pytest.mark.parametrize("v6", [False, True])
def test_same_sized_udp_datagrams_become_one_gso_udp_packet(v6):
    dgs = datagrams([64] * 5 + [20], v6)
    writes = run_coalescer(dgs)
    assert len(writes) == 1
    vnet, ip, udp, *payloads = writes[0]
    ihl = 40 if v6 else 20
    assert VNET.unpack(vnet) == (F_NEEDS_CSUM, GSO_UDP_L4, ihl + 8, 64, ihl, 6)
    assert [len(p) for p in payloads] == [64] * 5 + [20]
    # It is the one datagram the kernel's segmentation cuts back into these six: with
    # the checksum finished, the same bytes as scapy's datagram with the whole payload
    # (and the first datagram's IP ID, from which the kernel counts up).
    out = bytearray(b"".join([ip, udp, *payloads]))
    assert complete_checksum(out, ihl, 6)
    whole = datagram(b"".join(payloads), v6, 0xFFFE)
    assert bytes(out) == whole


def datagram(payload, v6, ident, sport=4000):
    ip = IPv6(src="2001:db8::1", dst="2001:db8:2::2", hlim=62) if v6 else \
        IP(src="10.1.0.10", dst="10.2.0.10", id=ident & 0xFFFF, flags="DF", ttl=62)
    p = ip / UDP(sport=sport, dport=5201) / payload
    return bytes(p.__class__(bytes(p)))


def test_udp_runs_break_on_ids_size_and_flow():
    a = datagrams([64, 64], first_id=10)
    gap = datagrams([64], first_id=20)                 # IP ID does not follow
    longer = datagrams([64, 80], first_id=21)          # a longer datagram cannot follow
    other = datagrams([64], first_id=23, sport=4001)   # another flow
    writes = run_coalescer(a + gap + longer + other)
    shapes = [(VNET.unpack(w[0])[1], len(w) - 3) for w in writes]
    # a (2 datagrams), then gap+longer[0] (IDs 20, 21), then longer[1] and other alone
    assert shapes == [(GSO_UDP_L4, 2), (GSO_UDP_L4, 2), (0, -1), (0, -1)]


def test_a_refused_udp_super_packet_is_written_datagram_by_datagram():
    dgs = datagrams([64] * 3)
    writes = []

    def write(bufs):
        writes.append([bytes(b) for b in bufs])
        return len(bufs) == 2                          # the kernel takes no super-packets

    later = datagrams([64] * 2, first_id=100)
    c = Coalescer(write)
    for p in dgs + later:
        c.add(memoryview(p))
    c.flush()
    assert c.refused == 1 and not c.udp                # ... so UDP runs stop
    assert len(writes[0]) == 3 + 3                     # the refused one, then one by one
    assert [w[1] for w in writes[1:]] == dgs + later
    assert all(len(w) == 2 for w in writes[1:])

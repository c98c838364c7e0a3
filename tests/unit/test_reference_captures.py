"""Real traffic between Open Overlay Router and lispers.net (tests/data/*.pcap, described in
tests/data/REFERENCE-CAPTURES.md) against our codec.

Every LISP packet (UDP 4342 control, ECM included, and UDP 4341 data) must decode, re-encode
to the same bytes, and every Map-Register and Map-Notify must verify with the key `lisptest`
and fail with any other. The only packets skipped are the ICMP port-unreachable errors, and
the per-file counts below make sure nothing else is skipped silently.
"""
from collections import Counter
from dataclasses import replace
from ipaddress import IPv4Address as V4, IPv6Address as V6, ip_network

import pytest
from scapy.layers.inet import ICMP, IP, UDP
from scapy.utils import rdpcap

from nodes.lisp.address import eid_prefix
from nodes.lisp.auth import sign, verify
from nodes.lisp.data import DataHeader, decode_data_header, encode_data_header
from nodes.lisp.ipudp import IpUdp
from nodes.lisp.messages import (ACT_NATIVELY_FORWARD, ACT_NO_ACTION, ALG_HMAC_SHA1_96,
                                 EidRecord, EncapsulatedControl, Locator, MapNotify,
                                 MapRegister, MapRequest, RequestRecord, decode,
                                 encode)

KEY = "lisptest"
WRONG_KEYS = ["lisptest2", "Lisptest", "lisptes", "", b"lisptest\x01"]

# Packets of each kind in each file (ICMP = the port-unreachable errors, the only skip).
EXPECTED_COUNTS = {
    "oor-xtr-oor-ms.pcap": {"MapRegister": 2, "MapRequest": 1, "MapNotify": 2,
                            "EncapsulatedControl": 1, "MapReply": 1, "data": 2, "ICMP": 2},
    "oor-xtr-registers.pcap": {"MapRegister": 6, "MapRequest": 1, "ICMP": 7},
    "oor-xtr-lispersnet-ms.pcap": {"MapRegister": 2, "MapRequest": 1, "MapNotify": 2,
                                   "EncapsulatedControl": 1, "MapReply": 1, "data": 2},
}
XTR, MS = V4("10.0.0.2"), V4("10.0.0.1")
EID4 = (V4("192.168.10.0"), 24)
EID6 = (V6("2001:db8:10::"), 64)


def load(data_dir, name):
    """[(kind, udp payload bytes, decoded object, scapy packet)] for every packet, in order."""
    out = []
    for pkt in rdpcap(str(data_dir / name)):
        if ICMP in pkt:
            out.append(("ICMP", None, None, pkt))
            continue
        assert UDP in pkt, pkt.summary()        # nothing else may hide in the file
        udp = pkt[UDP]
        payload = bytes(udp.payload)
        ports = {udp.sport, udp.dport}
        if 4342 in ports:
            msg = decode(payload)
            out.append((type(msg).__name__, payload, msg, pkt))
        elif ports == {4341}:
            out.append(("data", payload, decode_data_header(payload), pkt))
        else:
            raise AssertionError(f"unexpected UDP ports {ports} in {name}")
    return out


@pytest.fixture(scope="module", params=sorted(EXPECTED_COUNTS))
def capture(request, data_dir):
    return request.param, load(data_dir, request.param)


def test_packet_counts(capture):
    name, packets = capture
    assert Counter(kind for kind, *_ in packets) == Counter(EXPECTED_COUNTS[name])


def test_every_control_message_re_encodes_to_the_same_bytes(capture):
    name, packets = capture
    checked = 0
    for kind, raw, msg, _ in packets:
        if kind in ("ICMP", "data"):
            continue
        assert encode(msg) == raw, (name, kind)
        assert decode(encode(msg)) == msg
        checked += 1
    assert checked == sum(n for k, n in EXPECTED_COUNTS[name].items()
                          if k not in ("ICMP", "data"))


def test_every_data_packet(capture):
    name, packets = capture
    for kind, raw, header, pkt in packets:
        if kind != "data":
            continue
        # The proxy-ETR traffic carries a data header with every flag clear (RFC 9300 5.3).
        assert raw[:8] == bytes(8)
        assert header == DataHeader()
        assert encode_data_header(header) == raw[:8]
        inner = IP(raw[8:])
        assert (inner.src, inner.dst, inner[ICMP].type) == ("192.168.10.2", "10.0.0.1", 8)
        assert (pkt[IP].src, pkt[IP].dst) == (str(XTR), str(MS))


def test_every_register_and_notify_verifies_with_lisptest(capture):
    name, packets = capture
    signed = [(raw, msg) for kind, raw, msg, _ in packets
              if kind in ("MapRegister", "MapNotify")]
    assert len(signed) == EXPECTED_COUNTS[name].get("MapRegister", 0) \
        + EXPECTED_COUNTS[name].get("MapNotify", 0)
    for raw, msg in signed:
        # 00 01: key ID 0 + HMAC-SHA-1-96 in RFC 9301 (key ID 1 in RFC 6833's 16-bit
        # reading), with the whole 20-octet SHA-1 digest, as these implementations send it.
        assert (msg.key_id, msg.alg_id, len(msg.auth_data)) == (0, ALG_HMAC_SHA1_96, 20)
        assert verify(raw, KEY)
        assert verify(raw, KEY.encode())
        for wrong in WRONG_KEYS:
            assert not verify(raw, wrong)
        # Our signer computes the same digest the other implementations did.
        assert sign(replace(msg, auth_data=b""), KEY) == msg
        assert encode(sign(replace(msg, auth_data=b""), KEY)) == raw
        # The RFC's truncated HMAC-SHA-1-96 (12 octets) is a different message, also valid.
        short = encode(sign(replace(msg, auth_data=b""), KEY, truncate=True))
        assert short[14:16] == b"\x00\x0c" and len(short) == len(raw) - 8
        assert verify(short, KEY) and not verify(short, "lisptest2")


def _by_kind(packets, kind):
    return [(msg, pkt) for k, _, msg, pkt in packets if k == kind]


def _xtr_record(eid, mask, local=True):
    return EidRecord(eid, mask, [Locator(XTR, 1, 100, 255, 0, local=local)], ttl=10,
                     action=ACT_NO_ACTION, authoritative=True)


def test_map_registers(capture):
    name, packets = capture
    regs = _by_kind(packets, "MapRegister")
    eids = []
    for msg, pkt in regs:
        assert (pkt[IP].src, pkt[UDP].dport) == (str(XTR), 4342)
        assert msg.want_map_notify is True
        assert (msg.proxy_reply, msg.security, msg.xtr_id, msg.reserved) == (False, False,
                                                                             None, 0)
        assert len(msg.records) == 1        # one prefix per Map-Register
        rec = msg.records[0]
        assert rec == _xtr_record(rec.eid, rec.mask_len)
        eids.append((rec.eid, rec.mask_len))
    # IPv4 and IPv6 prefixes alternate.
    assert eids == [EID4, EID6] * (len(regs) // 2)
    assert [eid_prefix(*e) for e in eids[:2]] == [(0, ip_network("192.168.10.0/24")),
                                                  (0, ip_network("2001:db8:10::/64"))]


def test_map_notifies_answer_the_registers(capture):
    name, packets = capture
    notifies = _by_kind(packets, "MapNotify")
    if not notifies:
        return
    reg_nonces = [m.nonce for m, _ in _by_kind(packets, "MapRegister")]
    # Open Overlay Router's Map-Server clears the L bit it echoes; lispers.net keeps it.
    local = name == "oor-xtr-lispersnet-ms.pcap"
    assert [m.nonce for m, _ in notifies] == reg_nonces
    assert [m.records for m, _ in notifies] == [[_xtr_record(*EID4, local=local)],
                                               [_xtr_record(*EID6, local=local)]]
    for m, pkt in notifies:
        assert type(m) is MapNotify
        assert (m.xtr_id, m.reserved) == (None, 0)
        assert (pkt[IP].src, pkt[IP].dst) == (str(MS), str(XTR))


def test_smr_for_the_default_route(capture):
    name, packets = capture
    [(smr, pkt)] = _by_kind(packets, "MapRequest")
    assert smr == MapRequest(nonce=0, records=[RequestRecord(V4("0.0.0.0"), 0)],
                             itr_rlocs=[XTR], source_eid=V4("192.168.10.0"), smr=True)
    assert pkt[IP].src == str(XTR)


def test_encapsulated_map_request(capture):
    name, packets = capture
    ecms = _by_kind(packets, "EncapsulatedControl")
    if name == "oor-xtr-registers.pcap":
        assert ecms == []
        return
    [(ecm, pkt)] = ecms
    nonce = {"oor-xtr-oor-ms.pcap": 0xd0ede36bebf20910,
             "oor-xtr-lispersnet-ms.pcap": 0xfef7077fe617566a}[name]
    assert ecm == EncapsulatedControl(
        MapRequest(nonce, [RequestRecord(MS, 32)], [XTR], source_eid=V4("192.168.10.2")),
        IpUdp(V4("192.168.10.2"), MS, 4342, 4342, ttl=255, ident=4))
    assert not (ecm.security or ecm.ddt or ecm.to_etr or ecm.to_ms)
    assert ecm.inner.zero_checksum is False     # OOR computes the inner UDP checksum
    assert (pkt[IP].src, pkt[IP].dst) == (str(XTR), str(MS))


def test_map_replies(capture):
    name, packets = capture
    replies = _by_kind(packets, "MapReply")
    if name == "oor-xtr-registers.pcap":
        assert replies == []
        return
    [(reply, pkt)] = replies
    [(ecm, _)] = _by_kind(packets, "EncapsulatedControl")
    assert reply.nonce == ecm.message.nonce
    assert (reply.probe, reply.echo_nonce, reply.security) == (False, False, False)
    [rec] = reply.records
    assert rec.locators == [] and rec.ttl == 15 and rec.action == ACT_NATIVELY_FORWARD
    if name == "oor-xtr-oor-ms.pcap":
        # OOR's negative reply: the largest prefix around 10.0.0.1 that holds no EID.
        assert (rec.eid, rec.mask_len, rec.authoritative) == (V4("0.0.0.0"), 1, True)
    else:
        assert (rec.eid, rec.mask_len, rec.authoritative) == (MS, 32, False)
    assert pkt[IP].dst == str(XTR)


def test_modified_captures_fail_verification(data_dir):
    """The captured signatures cover the whole message: change the EID, the nonce or the
    want-map-notify bit and verification fails."""
    [(raw, msg)] = [(r, m) for k, r, m, _ in load(data_dir, "oor-xtr-oor-ms.pcap")
                    if k == "MapRegister"][:1]
    for changed in (replace(msg, nonce=msg.nonce ^ 1),
                    replace(msg, want_map_notify=False),
                    replace(msg, records=[replace(msg.records[0], mask_len=16)])):
        assert not verify(encode(changed), KEY)
    notify = MapNotify(msg.nonce, msg.records, msg.key_id, msg.alg_id, msg.auth_data)
    assert not verify(encode(notify), KEY)      # same body, other type: other digest
    assert verify(raw, KEY) and type(decode(raw)) is MapRegister

"""Property tests of the LISP codec (hypothesis).

- every valid message of every type survives decode(encode(x)) == x, and its bytes survive
  encode(decode(b)) == b;
- bytes that are not a valid message (random, truncated, bit-flipped, extended) only ever
  raise LispDecodeError, and when decode does return, re-encoding gives back exactly the input
  (no partial object, no dropped bits);
- the same for the data header (which, per RFC 9300, never rejects 8 bytes);
- sign/verify: a signed message verifies, any single flipped bit or another key does not.

The settings are deterministic (derandomize) so CI sees the same examples on every run.
"""
import ipaddress
from dataclasses import replace

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nodes.lisp.address import (AfiList, DistinguishedName, InstanceId, Lcaf, MacAddress,
                                max_mask_len)
from nodes.lisp.auth import sign, verify
from nodes.lisp.data import DataHeader, decode_data_header, encode_data_header, fast_header
from nodes.lisp.errors import LispDecodeError
from nodes.lisp.ipudp import IpUdp
from nodes.lisp.messages import (EidRecord, EncapsulatedControl, Locator, MapNotify,
                                 MapNotifyAck, MapRegister, MapReply, MapRequest,
                                 RequestRecord, decode, encode)

SETTINGS = settings(max_examples=300, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
FEW = settings(SETTINGS, max_examples=120)


def uint(bits):
    return st.integers(0, (1 << bits) - 1)


# --- addresses -----------------------------------------------------------------------------

v4 = st.builds(ipaddress.IPv4Address, uint(32))
v6 = st.builds(ipaddress.IPv6Address, uint(128))
ip = v4 | v6
dn = st.builds(DistinguishedName, st.text(st.characters(min_codepoint=1, max_codepoint=127),
                                          max_size=12))
mac = st.builds(MacAddress, st.binary(min_size=6, max_size=6))
opaque_lcaf = st.builds(Lcaf, st.integers(3, 255), st.binary(max_size=12), uint(8), uint(8),
                        uint(8))
iid = st.builds(InstanceId, uint(32), ip | st.none(), uint(8), uint(8), uint(8))
afi_list = st.builds(AfiList, st.lists(ip | st.none() | dn | mac | iid, max_size=3)
                     .map(tuple), uint(8), uint(8), uint(8))
# Nested LCAFs (an Instance ID around an LCAF, an AFI List holding an AFI List).
nested = st.builds(InstanceId, uint(32), opaque_lcaf | afi_list) \
    | st.builds(AfiList, st.lists(afi_list | ip, max_size=2).map(tuple))
any_address = ip | st.none() | dn | mac | iid | afi_list | opaque_lcaf | nested
rloc = ip | st.builds(AfiList, st.tuples(v4, v6)) | afi_list | iid


@st.composite
def eid_and_mask(draw):
    addr = draw(ip | iid | st.none() | dn | afi_list | opaque_lcaf | nested)
    limit = max_mask_len(addr)
    return addr, draw(st.integers(0, 255 if limit is None else limit))


# --- messages ------------------------------------------------------------------------------

locator = st.builds(Locator, rloc, uint(8), uint(8), uint(8), uint(8), st.booleans(),
                    st.booleans(), st.booleans(), uint(13))


@st.composite
def eid_record(draw, max_locators=4):
    addr, mask = draw(eid_and_mask())
    return EidRecord(addr, mask, draw(st.lists(locator, max_size=max_locators)), draw(uint(32)),
                     draw(uint(3)), draw(st.booleans()), draw(uint(12)), draw(uint(12)),
                     draw(uint(4)))


@st.composite
def request_record(draw):
    addr, mask = draw(eid_and_mask())
    return RequestRecord(addr, mask, draw(uint(8)))


@st.composite
def map_request(draw):
    # RFC 9437 took the second R bit (0x20 of `reserved`) as I: it follows xtr_id.
    xtr_id, site_id = draw(xtr())
    return MapRequest(
        draw(uint(64)), draw(st.lists(request_record(), max_size=3)),
        draw(st.lists(ip | afi_list | st.none(), min_size=1, max_size=4)), draw(any_address),
        *[draw(st.booleans()) for _ in range(7)], draw(uint(7)) & ~0x20,
        draw(st.none() | eid_record()), xtr_id, site_id)
map_reply = st.builds(MapReply, uint(64), st.lists(eid_record(), max_size=3), st.booleans(),
                      st.booleans(), st.booleans(), uint(17))


@st.composite
def xtr(draw):
    xtr_id = draw(st.none() | uint(128))
    return xtr_id, (0 if xtr_id is None else draw(uint(64)))


@st.composite
def map_register(draw):
    xtr_id, site_id = draw(xtr())
    return MapRegister(draw(uint(64)), draw(st.lists(eid_record(), max_size=3)), draw(uint(8)),
                       draw(uint(8)), draw(st.binary(max_size=40)), draw(st.booleans()),
                       draw(st.booleans()), draw(st.booleans()), draw(uint(16)), xtr_id,
                       site_id)


@st.composite
def map_notify(draw, cls=None):
    cls = cls or draw(st.sampled_from([MapNotify, MapNotifyAck]))
    xtr_id, site_id = draw(xtr())
    return cls(draw(uint(64)), draw(st.lists(eid_record(), max_size=3)), draw(uint(8)),
               draw(uint(8)), draw(st.binary(max_size=40)), draw(uint(19)), xtr_id, site_id)


@st.composite
def inner_header(draw):
    if draw(st.booleans()):
        return IpUdp(draw(v4), draw(v4), draw(uint(16)), draw(uint(16)), draw(uint(8)),
                     draw(uint(8)), draw(uint(16)), draw(st.sampled_from([0, 0x4000, 0x8000,
                                                                          0xC000])),
                     0, draw(st.booleans()))
    return IpUdp(draw(v6), draw(v6), draw(uint(16)), draw(uint(16)), draw(uint(8)),
                 draw(uint(8)), flow_label=draw(uint(20)), zero_checksum=draw(st.booleans()))


ecm = st.builds(EncapsulatedControl,
                map_request() | map_reply | map_register() | map_notify(),
                inner_header(), st.booleans(), st.booleans(), st.booleans(), st.booleans(),
                uint(24))
any_message = map_request() | map_reply | map_register() | map_notify() | ecm


# --- round trips ---------------------------------------------------------------------------

def _round_trip(msg):
    raw = encode(msg)
    back = decode(raw)
    assert back == msg
    assert type(back) is type(msg)
    assert encode(back) == raw


@SETTINGS
@given(map_request())
def test_map_request_round_trip(msg):
    _round_trip(msg)


@SETTINGS
@given(map_reply)
def test_map_reply_round_trip(msg):
    _round_trip(msg)


@SETTINGS
@given(map_register())
def test_map_register_round_trip(msg):
    _round_trip(msg)


@SETTINGS
@given(map_notify())
def test_map_notify_and_ack_round_trip(msg):
    _round_trip(msg)


@SETTINGS
@given(ecm)
def test_ecm_round_trip(msg):
    _round_trip(msg)


# --- bad bytes -----------------------------------------------------------------------------

def _decodes_faithfully_or_raises(raw):
    """decode either raises LispDecodeError (any other exception fails the test) or returns a
    message whose encoding is exactly `raw`."""
    try:
        msg = decode(raw)
    except LispDecodeError as e:
        assert 0 <= e.offset <= len(raw)
        return None
    assert encode(msg) == raw, (raw.hex(), msg)
    return msg


@SETTINGS
@given(st.binary(max_size=120))
def test_random_bytes(raw):
    _decodes_faithfully_or_raises(raw)


@SETTINGS
@given(st.integers(1, 8), st.binary(max_size=120))
def test_random_bytes_after_a_valid_type(mtype, rest):
    _decodes_faithfully_or_raises(bytes([mtype << 4]) + rest)


@FEW
@given(any_message)
def test_every_truncation_raises(msg):
    raw = encode(msg)
    for cut in range(len(raw)):
        try:
            decode(raw[:cut])
        except LispDecodeError as e:
            assert 0 <= e.offset <= cut
        else:
            raise AssertionError(f"a {cut}-byte prefix of {raw.hex()} decoded")


@SETTINGS
@given(any_message, st.binary(min_size=1, max_size=8))
def test_extra_bytes_raise(msg, extra):
    raw = encode(msg)
    try:
        decode(raw + extra)
    except LispDecodeError:
        pass
    else:
        raise AssertionError("trailing bytes were accepted")


@SETTINGS
@given(any_message, st.data())
def test_bit_flips(msg, data):
    raw = bytearray(encode(msg))
    for _ in range(data.draw(st.integers(1, 3))):
        bit = data.draw(st.integers(0, len(raw) * 8 - 1))
        raw[bit // 8] ^= 0x80 >> (bit % 8)
    _decodes_faithfully_or_raises(bytes(raw))


@SETTINGS
@given(any_message, st.data())
def test_byte_overwrites(msg, data):
    raw = bytearray(encode(msg))
    i = data.draw(st.integers(0, len(raw) - 1))
    raw[i] = data.draw(uint(8))
    _decodes_faithfully_or_raises(bytes(raw))


# --- the data header -----------------------------------------------------------------------

def _ignorable_mask(n, v, i, lsb):
    """RFC 9300 5.3, written out independently of data.py: E means nothing without N, V is
    overridden by N, the 24-bit field means nothing without N or V, the LSBs nothing without
    L (all 32 bits without I, the low 8 with I)."""
    mask = (0x10 << 56) if n else (0x20 << 56)
    if not n and not v:
        mask |= 0xFFFFFF << 32
    if not lsb:
        mask |= 0xFF if i else 0xFFFFFFFF
    return mask


@st.composite
def data_header(draw):
    kind = draw(st.sampled_from(["n", "v", "none"]))
    iid = draw(st.none() | uint(24))
    lsb = draw(st.none() | uint(8 if iid is not None else 32))
    h = DataHeader(nonce=draw(uint(24)) if kind == "n" else None, lsb=lsb,
                   echo_nonce=kind == "n" and draw(st.booleans()),
                   map_versions=(draw(uint(12)), draw(uint(12))) if kind == "v" else None,
                   instance_id=iid, reserved=draw(uint(3)))
    mask = _ignorable_mask(kind == "n", kind == "v", iid is not None, lsb is not None)
    return replace(h, ignored=draw(uint(64)) & mask)


@SETTINGS
@given(data_header())
def test_data_header_round_trip(h):
    raw = encode_data_header(h)
    assert len(raw) == 8
    assert decode_data_header(raw) == h
    assert encode_data_header(decode_data_header(raw)) == raw


@SETTINGS
@given(st.binary(min_size=8, max_size=24), st.integers(0, 16))
def test_any_eight_bytes_are_a_data_header(raw, offset):
    """RFC 9300 gives a meaning (or "ignored") to every bit, so nothing is rejected."""
    if offset + 8 > len(raw):
        try:
            decode_data_header(raw, offset)
        except LispDecodeError as e:
            assert e.field == "LISP-data.header"
            return
        raise AssertionError("short header decoded")
    h = decode_data_header(raw, offset)
    assert encode_data_header(h) == raw[offset:offset + 8]
    first = int.from_bytes(raw[offset:offset + 4], "big")
    if first & 0x80000000:                       # N, whatever V says
        assert h.nonce == first & 0xFFFFFF and h.map_versions is None
    assert h.echo_nonce == bool(first & 0x80000000 and first & 0x20000000)


@SETTINGS
@given(uint(24), st.none() | uint(24), uint(8))
def test_fast_header_matches_encoder(nonce, iid, lsb):
    assert fast_header(nonce, iid, lsb) == encode_data_header(
        DataHeader(nonce=nonce, lsb=lsb, instance_id=iid))


# --- authentication ------------------------------------------------------------------------

keys = st.binary(min_size=1, max_size=80) | st.text(min_size=1, max_size=20)


@st.composite
def signed_case(draw):
    kind = draw(st.sampled_from([MapRegister, MapNotify, MapNotifyAck]))
    msg = draw(map_register() if kind is MapRegister else map_notify(kind))
    msg = replace(msg, alg_id=draw(st.sampled_from([1, 2])))
    return msg, draw(keys), draw(st.booleans())


def _other_key(key):
    """A different key, and one that HMAC does not treat as the same: HMAC pads a short key
    with zero octets, so b"k" and b"k\\x00" are the same key; appending a nonzero octet is
    always a different one."""
    return (key.encode() if isinstance(key, str) else key) + b"x"


@SETTINGS
@given(signed_case())
def test_signed_message_verifies(case):
    msg, key, truncate = case
    signed = sign(msg, key, truncate=truncate)
    assert len(signed.auth_data) == {(1, False): 20, (1, True): 12,
                                     (2, False): 32, (2, True): 16}[msg.alg_id, truncate]
    raw = encode(signed)
    assert verify(raw, key)
    assert not verify(raw, _other_key(key))
    assert decode(raw) == signed


@SETTINGS
@given(signed_case(), st.data())
def test_any_flipped_bit_fails_verification(case, data):
    msg, key, truncate = case
    raw = bytearray(encode(sign(msg, key, truncate=truncate)))
    bit = data.draw(st.integers(0, len(raw) * 8 - 1))
    raw[bit // 8] ^= 0x80 >> (bit % 8)
    assert not verify(bytes(raw), key)


@SETTINGS
@given(st.binary(max_size=80), keys)
def test_verify_never_raises(raw, key):
    assert verify(raw, key) in (True, False)


@SETTINGS
@given(map_register(), keys)
def test_no_algorithm_never_verifies(msg, key):
    signed = sign(replace(msg, alg_id=0), key)
    assert signed.auth_data == b""
    assert not verify(encode(signed), key)

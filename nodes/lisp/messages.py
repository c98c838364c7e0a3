"""LISP control-plane messages (RFC 9301 section 5): encode and decode.

Every message is a dataclass; `encode(msg) -> bytes` and `decode(data) -> msg` are the two
entry points. Decoding is strict and complete: any malformed input raises LispDecodeError
(naming the field and offset) and never returns a partial object. Reserved bits are kept, so
a decoded message re-encodes to the same bytes.

Records and locators, shared by Map-Reply, Map-Register, Map-Notify and Map-Notify-Ack
(RFC 9301 5.4):

       0                   1                   2                   3
       0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
      +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
  +-> |                          Record TTL                           |
  |   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
  R   | Locator Count | EID mask-len  | ACT |A|       Reserved        |
  e   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
  c   | Rsvd  |  Map-Version Number   |       EID-Prefix-AFI          |
  o   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
  r   |                          EID-Prefix                           |
  d   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
  |  /|    Priority   |    Weight     |  M Priority   |   M Weight    |
  | L +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
  | o |        Unused Flags     |L|p|R|           Loc-AFI             |
  | c +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
  |  \\|                             Locator                           |
  +-> +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

Record TTL is in minutes. ACT: 0 No-Action, 1 Natively-Forward, 2 Send-Map-Request,
3 Drop/No-Reason, 4 Drop/Policy-Denied, 5 Drop/Auth-Failure.
"""
import struct
from dataclasses import dataclass, field
from typing import Optional

from .address import IPv4Address, IPv6Address, decode_address, encode_address, max_mask_len
from .errors import LispEncodeError
from .ipudp import IpUdp, decode_ip_udp, encode_ip_udp
from .reader import Reader, check_flag as _f, check_range

MAP_REQUEST = 1
MAP_REPLY = 2
MAP_REGISTER = 3
MAP_NOTIFY = 4
MAP_NOTIFY_ACK = 5
ECM = 8

CONTROL_PORT = 4342
DATA_PORT = 4341

# Algorithm ID (RFC 9301 5.6)
ALG_NONE = 0
ALG_HMAC_SHA1_96 = 1
ALG_HMAC_SHA256_128 = 2

# ACT values
ACT_NO_ACTION = 0
ACT_NATIVELY_FORWARD = 1
ACT_SEND_MAP_REQUEST = 2
ACT_DROP = 3
ACT_DROP_POLICY_DENIED = 4
ACT_DROP_AUTH_FAILURE = 5

_U32 = struct.Struct("!I")


@dataclass(slots=True)
class Locator:
    """An RLOC in a record: where the EID prefix can be reached, and how much to use it."""
    address: object
    priority: int = 1
    weight: int = 100
    m_priority: int = 255
    m_weight: int = 0
    local: bool = False        # L: this locator belongs to the sender
    probed: bool = False       # p: the reply is to an RLOC-probe sent to this locator
    reachable: bool = True     # R: the sender considers it up
    unused_flags: int = 0      # the 13 unused flag bits


@dataclass(slots=True)
class EidRecord:
    """One EID-prefix-to-RLOC-set mapping."""
    eid: object                # address (InstanceId for a virtual network)
    mask_len: int
    locators: list = field(default_factory=list)
    ttl: int = 1440            # minutes
    action: int = ACT_NO_ACTION
    authoritative: bool = True
    map_version: int = 0
    reserved: int = 0          # 12 bits after the A bit
    rsvd: int = 0              # 4 bits before the map-version


@dataclass(slots=True)
class RequestRecord:
    """The EID prefix a Map-Request asks about. RFC 9437 (PubSub) names the first bit of
    `reserved` N: the requester wants a Map-Notify whenever this mapping changes."""
    eid: object
    mask_len: int
    reserved: int = 0

    @property
    def notify(self):
        return bool(self.reserved & REQUEST_RECORD_N_BIT)


REQUEST_RECORD_N_BIT = 0x80     # in RequestRecord.reserved (RFC 9437 section 5)
MAP_REQUEST_I_BIT = 0x20        # in MapRequest.reserved: the xTR-ID follows (RFC 9437)


@dataclass(slots=True)
class MapRequest:
    r"""Map-Request (RFC 9301 5.2).

     0                   1                   2                   3
     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |Type=1 |A|M|P|S|p|s|R|R|  Rsvd   |L|D|   IRC   | Record Count  |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                         Nonce . . .                           |
    |                         . . . Nonce                           |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |         Source-EID-AFI        |   Source EID Address  ...     |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |         ITR-RLOC-AFI 1        |    ITR-RLOC Address 1  ...    |
    |                              ...                              |
    |         ITR-RLOC-AFI n        |    ITR-RLOC Address n  ...    |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
  / |   Reserved    | EID mask-len  |        EID-Prefix-AFI         |
Rec +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
  \ |                       EID-Prefix  ...                         |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                   Map-Reply Record  ...                       |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |      xTR-ID (128 bits) and Site-ID (64 bits), when I is set   |

    IRC is the ITR-RLOC count minus one; M is set when a Map-Reply record follows.
    RFC 9437 (PubSub) names the second R bit I: set when `xtr_id` is given, and then the
    xTR-ID and Site-ID end the message; a record's first Reserved bit is its N bit.
    """
    nonce: int
    records: list
    itr_rlocs: list
    source_eid: object = None
    authoritative: bool = False     # A
    probe: bool = False             # P: RLOC-probe
    smr: bool = False               # S: Solicit-Map-Request
    pitr: bool = False              # p: sent by a proxy ITR
    smr_invoked: bool = False       # s: sent because of an SMR
    local_xtr: bool = False         # L
    dont_map_reply: bool = False    # D
    reserved: int = 0               # the R, R and Rsvd bits (7 bits; the second R is I)
    map_reply_record: Optional[EidRecord] = None
    xtr_id: Optional[int] = None    # 128 bits, present iff the I bit is set (RFC 9437)
    site_id: int = 0                # 64 bits, with xtr_id


@dataclass(slots=True)
class MapReply:
    """Map-Reply (RFC 9301 5.4).

     0                   1                   2                   3
     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |Type=2 |P|E|S|          Reserved               | Record Count  |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                         Nonce . . .                           |
    |                         . . . Nonce                           |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                    Records (see module doc)                   |
    """
    nonce: int
    records: list
    probe: bool = False             # P: answers an RLOC-probe
    echo_nonce: bool = False        # E: echo-nonce capable
    security: bool = False          # S: LISP-SEC
    reserved: int = 0               # 17 bits


@dataclass(slots=True)
class MapRegister:
    """Map-Register (RFC 9301 5.6).

     0                   1                   2                   3
     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |Type=3 |P|S|I|        Reserved                 |M| Record Count  |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                         Nonce . . .                           |
    |                         . . . Nonce                           |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |    Key ID     |  Algorithm ID |  Authentication Data Length   |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    ~                     Authentication Data                       ~
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                    Records (see module doc)                   |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |      xTR-ID (128 bits) and Site-ID (64 bits), when I is set   |

    RFC 6833 had a 16-bit Key ID where RFC 9301 has Key ID + Algorithm ID: the bytes
    00 01 mean "key 0, HMAC-SHA-1-96" in both readings.
    """
    nonce: int
    records: list
    key_id: int = 0
    alg_id: int = ALG_NONE
    auth_data: bytes = b""
    proxy_reply: bool = False       # P: Map-Server answers Map-Requests for us
    security: bool = False          # S: LISP-SEC capable
    want_map_notify: bool = False   # M
    reserved: int = 0               # 16 bits between I and M
    xtr_id: Optional[int] = None    # 128 bits, present iff the I bit is set
    site_id: int = 0                # 64 bits, with xtr_id


@dataclass(slots=True)
class MapNotify:
    """Map-Notify (RFC 9301 5.7): the Map-Register body with a different header.

     0                   1                   2                   3
     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |Type=4 |I|R|          Reserved                 | Record Count  |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |  Nonce, Key ID, Algorithm ID, Authentication, Records: as in   |
    |  Map-Register; then xTR-ID and Site-ID when I is set          |
    """
    nonce: int
    records: list
    key_id: int = 0
    alg_id: int = ALG_NONE
    auth_data: bytes = b""
    reserved: int = 0               # 19 bits after I (the R bit of NAT traversal among them)
    xtr_id: Optional[int] = None
    site_id: int = 0


@dataclass(slots=True)
class MapNotifyAck(MapNotify):
    """Map-Notify-Ack (RFC 9301 5.7): a Map-Notify with Type=5, sent back by the ETR."""


@dataclass(slots=True)
class EncapsulatedControl:
    """Encapsulated Control Message (RFC 9301 5.8).

     0                   1                   2                   3
     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |Type=8 |S|D|E|M|            Reserved                           |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                       IPv4 or IPv6 Header                     |
    |                  (uses RLOC or EID addresses)                 |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |    Source Port = xxxx         |       Dest Port = 4342        |
    |           UDP Length          |        UDP Checksum           |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                        LISP Control Message                   |
    """
    message: object
    inner: IpUdp
    security: bool = False          # S
    ddt: bool = False               # D
    to_etr: bool = False            # E
    to_ms: bool = False             # M
    reserved: int = 0               # 24 bits


# --- records -------------------------------------------------------------------------

def _encode_locator(loc):
    flags = (check_range(loc.unused_flags, 13, "unused_flags") << 3) \
        | (_f(loc.local, "local") << 2) | (_f(loc.probed, "probed") << 1) \
        | _f(loc.reachable, "reachable")
    return struct.pack("!BBBBH", check_range(loc.priority, 8, "priority"),
                       check_range(loc.weight, 8, "weight"),
                       check_range(loc.m_priority, 8, "m_priority"),
                       check_range(loc.m_weight, 8, "m_weight"), flags) \
        + encode_address(loc.address)


def _encode_record(rec):
    if len(rec.locators) > 255:
        raise LispEncodeError("more than 255 locators in a record")
    _check_mask(rec.eid, rec.mask_len)
    word = (check_range(rec.action, 3, "action") << 13) \
        | (_f(rec.authoritative, "authoritative") << 12) \
        | check_range(rec.reserved, 12, "record reserved")
    head = struct.pack("!IBBHH", check_range(rec.ttl, 32, "ttl"), len(rec.locators),
                       rec.mask_len, word,
                       (check_range(rec.rsvd, 4, "rsvd") << 12)
                       | check_range(rec.map_version, 12, "map_version"))
    # The EID-Prefix-AFI is the first 2 bytes of the encoded address.
    return head + encode_address(rec.eid) + b"".join(_encode_locator(x) for x in rec.locators)


def _check_mask(eid, mask_len):
    limit = max_mask_len(eid)
    check_range(mask_len, 8, "mask_len")
    if limit is not None and mask_len > limit:
        raise LispEncodeError(f"mask_len {mask_len} is longer than the address ({limit})")


_RECORD_HEAD = struct.Struct("!IBBHH")
_LOCATOR_HEAD = struct.Struct("!BBBBHH")


def _decode_record(r, name):
    # Fast path: whole fixed-size headers are unpacked at once; the per-field reads (and
    # their error names) are only used when the bytes run short.
    mask_pos = r.pos + 5
    if r.end - r.pos >= 10:
        ttl, count, mask_len, word, mv = _RECORD_HEAD.unpack_from(r.data, r.pos)
        r.pos += 10
    else:
        ttl = r.u32(name + ".ttl")
        count = r.u8(name + ".locator_count")
        mask_len = r.u8(name + ".mask_len")
        word = r.u16(name + ".action")
        mv = r.u16(name + ".map_version")
    eid = decode_address(r, name + ".eid")
    limit = max_mask_len(eid)
    if limit is not None and mask_len > limit:
        r.fail(name + ".mask_len", f"{mask_len} is longer than the EID ({limit})", mask_pos)
    # Unassigned ACT values are kept as they are (the receiver decides).
    locs = []
    data = r.data
    for i in range(count):
        pos = r.pos
        if r.end - pos >= 12:
            pri, wei, mpri, mwei, flags, afi = _LOCATOR_HEAD.unpack_from(data, pos)
            if afi == 1:
                r.pos = pos + 12
                addr = IPv4Address(data[pos + 8:pos + 12])
            elif afi == 2 and r.end - pos >= 24:
                r.pos = pos + 24
                addr = IPv6Address(data[pos + 8:pos + 24])
            else:
                r.pos = pos + 6
                addr = decode_address(r, f"{name}.locator[{i}].address")
        else:
            ln = f"{name}.locator[{i}]"
            pri = r.u8(ln + ".priority")
            wei = r.u8(ln + ".weight")
            mpri = r.u8(ln + ".m_priority")
            mwei = r.u8(ln + ".m_weight")
            flags = r.u16(ln + ".flags")
            addr = decode_address(r, ln + ".address")
        locs.append(Locator(addr, pri, wei, mpri, mwei, bool(flags & 4), bool(flags & 2),
                            bool(flags & 1), flags >> 3))
    return EidRecord(eid, mask_len, locs, ttl, word >> 13, bool(word & 0x1000),
                     mv & 0xFFF, word & 0xFFF, mv >> 12)


def _decode_records(r, count, name):
    return [_decode_record(r, f"{name}.record[{i}]") for i in range(count)]


def _count(items, what):
    if len(items) > 255:
        raise LispEncodeError(f"more than 255 {what}")
    return len(items)


# --- Map-Request ---------------------------------------------------------------------

def _encode_map_request(m):
    if not 1 <= len(m.itr_rlocs) <= 32:
        raise LispEncodeError("a Map-Request carries 1 to 32 ITR-RLOCs")
    if check_range(m.reserved, 7, "reserved") & MAP_REQUEST_I_BIT:
        raise LispEncodeError("the I bit of a Map-Request is set by giving xtr_id (RFC 9437)")
    if m.xtr_id is None and m.site_id:
        raise LispEncodeError("site_id is only sent with an xtr_id (the I bit)")
    word = (MAP_REQUEST << 28) | (_f(m.authoritative, "authoritative") << 27) \
        | ((m.map_reply_record is not None) << 26) | (_f(m.probe, "probe") << 25) \
        | (_f(m.smr, "smr") << 24) | (_f(m.pitr, "pitr") << 23) \
        | (_f(m.smr_invoked, "smr_invoked") << 22) \
        | ((m.reserved | (MAP_REQUEST_I_BIT if m.xtr_id is not None else 0)) << 15) \
        | (_f(m.local_xtr, "local_xtr") << 14) \
        | (_f(m.dont_map_reply, "dont_map_reply") << 13) | ((len(m.itr_rlocs) - 1) << 8) \
        | _count(m.records, "records")
    out = [struct.pack("!IQ", word, check_range(m.nonce, 64, "nonce")),
           encode_address(m.source_eid)]
    out += [encode_address(a) for a in m.itr_rlocs]
    for rec in m.records:
        _check_mask(rec.eid, rec.mask_len)
        out.append(struct.pack("!BB", check_range(rec.reserved, 8, "reserved"), rec.mask_len))
        out.append(encode_address(rec.eid))
    if m.map_reply_record is not None:
        out.append(_encode_record(m.map_reply_record))
    if m.xtr_id is not None:
        out.append(check_range(m.xtr_id, 128, "xtr_id").to_bytes(16, "big"))
        out.append(struct.pack("!Q", check_range(m.site_id, 64, "site_id")))
    return b"".join(out)


def _decode_map_request(r):
    n = "Map-Request"
    word = r.u32(n + ".header")
    nonce = r.u64(n + ".nonce")
    src = decode_address(r, n + ".source_eid")
    itr = [decode_address(r, f"{n}.itr_rloc[{i}]") for i in range(((word >> 8) & 0x1F) + 1)]
    recs = []
    for i in range(word & 0xFF):
        rn = f"{n}.record[{i}]"
        reserved = r.u8(rn + ".reserved")
        mask_pos = r.pos
        mask_len = r.u8(rn + ".mask_len")
        eid = decode_address(r, rn + ".eid")
        limit = max_mask_len(eid)
        if limit is not None and mask_len > limit:
            r.fail(rn + ".mask_len", f"{mask_len} is longer than the EID ({limit})", mask_pos)
        recs.append(RequestRecord(eid, mask_len, reserved))
    mrr = _decode_record(r, n + ".map_reply_record") if word & (1 << 26) else None
    reserved = (word >> 15) & 0x7F
    xtr_id, site_id = None, 0
    if reserved & MAP_REQUEST_I_BIT:
        reserved &= ~MAP_REQUEST_I_BIT
        xtr_id = int.from_bytes(r.take(16, n + ".xtr_id"), "big")
        site_id = r.u64(n + ".site_id")
    r.done(n)
    return MapRequest(nonce, recs, itr, src, bool(word & (1 << 27)), bool(word & (1 << 25)),
                      bool(word & (1 << 24)), bool(word & (1 << 23)), bool(word & (1 << 22)),
                      bool(word & (1 << 14)), bool(word & (1 << 13)), reserved, mrr,
                      xtr_id, site_id)


# --- Map-Reply -----------------------------------------------------------------------

def _encode_map_reply(m):
    word = (MAP_REPLY << 28) | (_f(m.probe, "probe") << 27) \
        | (_f(m.echo_nonce, "echo_nonce") << 26) | (_f(m.security, "security") << 25) \
        | (check_range(m.reserved, 17, "reserved") << 8) | _count(m.records, "records")
    return struct.pack("!IQ", word, check_range(m.nonce, 64, "nonce")) \
        + b"".join(_encode_record(x) for x in m.records)


def _decode_map_reply(r):
    word = r.u32("Map-Reply.header")
    nonce = r.u64("Map-Reply.nonce")
    recs = _decode_records(r, word & 0xFF, "Map-Reply")
    r.done("Map-Reply")
    return MapReply(nonce, recs, bool(word & (1 << 27)), bool(word & (1 << 26)),
                    bool(word & (1 << 25)), (word >> 8) & 0x1FFFF)


# --- Map-Register / Map-Notify / Map-Notify-Ack ----------------------------------------

AUTH_DATA_OFFSET = 16   # Key ID/Algorithm ID/length at 12..16, authentication data from 16


def _encode_auth_body(m, word):
    if not isinstance(m.auth_data, (bytes, bytearray)):
        raise LispEncodeError("auth_data must be bytes")  # bytes(20) would be 20 zeros
    if len(m.auth_data) > 0xFFFF:
        raise LispEncodeError("authentication data too long")
    out = [struct.pack("!IQBBH", word, check_range(m.nonce, 64, "nonce"),
                       check_range(m.key_id, 8, "key_id"), check_range(m.alg_id, 8, "alg_id"),
                       len(m.auth_data)), bytes(m.auth_data)]
    out += [_encode_record(x) for x in m.records]
    if m.xtr_id is not None:
        out.append(check_range(m.xtr_id, 128, "xtr_id").to_bytes(16, "big"))
        out.append(struct.pack("!Q", check_range(m.site_id, 64, "site_id")))
    elif m.site_id:
        raise LispEncodeError("site_id is only sent with an xtr_id (the I bit)")
    return b"".join(out)


def _encode_map_register(m):
    word = (MAP_REGISTER << 28) | (_f(m.proxy_reply, "proxy_reply") << 27) \
        | (_f(m.security, "security") << 26) \
        | ((m.xtr_id is not None) << 25) | (check_range(m.reserved, 16, "reserved") << 9) \
        | (_f(m.want_map_notify, "want_map_notify") << 8) | _count(m.records, "records")
    return _encode_auth_body(m, word)


def _encode_map_notify(m):
    mtype = MAP_NOTIFY_ACK if isinstance(m, MapNotifyAck) else MAP_NOTIFY
    word = (mtype << 28) | ((m.xtr_id is not None) << 27) \
        | (check_range(m.reserved, 19, "reserved") << 8) | _count(m.records, "records")
    return _encode_auth_body(m, word)


def _decode_auth_body(r, n, word, has_xtr_id):
    nonce = r.u64(n + ".nonce")
    key_id = r.u8(n + ".key_id")
    alg_id = r.u8(n + ".alg_id")
    alen = r.u16(n + ".auth_data_length")
    auth = r.take(alen, n + ".auth_data")
    recs = _decode_records(r, word & 0xFF, n)
    xtr_id, site_id = None, 0
    if has_xtr_id:
        xtr_id = int.from_bytes(r.take(16, n + ".xtr_id"), "big")
        site_id = r.u64(n + ".site_id")
    r.done(n)
    return nonce, recs, key_id, alg_id, auth, xtr_id, site_id


def _decode_map_register(r):
    word = r.u32("Map-Register.header")
    nonce, recs, key_id, alg_id, auth, xtr_id, site_id = _decode_auth_body(
        r, "Map-Register", word, word & (1 << 25))
    return MapRegister(nonce, recs, key_id, alg_id, auth, bool(word & (1 << 27)),
                       bool(word & (1 << 26)), bool(word & (1 << 8)), (word >> 9) & 0xFFFF,
                       xtr_id, site_id)


def _decode_map_notify(r, cls, name):
    word = r.u32(name + ".header")
    nonce, recs, key_id, alg_id, auth, xtr_id, site_id = _decode_auth_body(
        r, name, word, word & (1 << 27))
    return cls(nonce, recs, key_id, alg_id, auth, (word >> 8) & 0x7FFFF, xtr_id, site_id)


# --- ECM -------------------------------------------------------------------------------

def _encode_ecm(m):
    if isinstance(m.message, EncapsulatedControl):
        raise LispEncodeError("an ECM inside an ECM")
    word = (ECM << 28) | (_f(m.security, "security") << 27) | (_f(m.ddt, "ddt") << 26) \
        | (_f(m.to_etr, "to_etr") << 25) | (_f(m.to_ms, "to_ms") << 24) \
        | check_range(m.reserved, 24, "reserved")
    return _U32.pack(word) + encode_ip_udp(m.inner, encode(m.message))


def _decode_ecm(r):
    word = r.u32("ECM.header")
    inner, payload = decode_ip_udp(r, "ECM.inner")
    msg = _decode_inner(payload)
    if isinstance(msg, EncapsulatedControl):
        payload.fail("ECM.message", "an ECM inside an ECM", payload.pos)
    return EncapsulatedControl(msg, inner, bool(word & (1 << 27)), bool(word & (1 << 26)),
                               bool(word & (1 << 25)), bool(word & (1 << 24)), word & 0xFFFFFF)


# --- entry points --------------------------------------------------------------------

_ENCODERS = {
    MapRequest: _encode_map_request,
    MapReply: _encode_map_reply,
    MapRegister: _encode_map_register,
    MapNotify: _encode_map_notify,
    MapNotifyAck: _encode_map_notify,
    EncapsulatedControl: _encode_ecm,
}

MESSAGE_NAMES = {MAP_REQUEST: "Map-Request", MAP_REPLY: "Map-Reply",
                 MAP_REGISTER: "Map-Register", MAP_NOTIFY: "Map-Notify",
                 MAP_NOTIFY_ACK: "Map-Notify-Ack", ECM: "Encapsulated-Control-Message"}


def encode(msg):
    """The wire bytes of a control message (the UDP payload)."""
    try:
        enc = _ENCODERS[type(msg)]
    except KeyError:
        raise LispEncodeError(f"not a LISP control message: {type(msg).__name__}") from None
    return enc(msg)


def _decode_inner(r):
    r.need(1, "type")
    mtype = r.data[r.pos] >> 4
    if mtype == MAP_REQUEST:
        return _decode_map_request(r)
    if mtype == MAP_REPLY:
        return _decode_map_reply(r)
    if mtype == MAP_REGISTER:
        return _decode_map_register(r)
    if mtype == MAP_NOTIFY:
        return _decode_map_notify(r, MapNotify, "Map-Notify")
    if mtype == MAP_NOTIFY_ACK:
        return _decode_map_notify(r, MapNotifyAck, "Map-Notify-Ack")
    if mtype == ECM:
        return _decode_ecm(r)
    r.fail("type", f"unsupported LISP message type {mtype}")


def decode(data):
    """Decode a control message (a UDP payload on port 4342).

    Returns one of MapRequest, MapReply, MapRegister, MapNotify, MapNotifyAck,
    EncapsulatedControl; raises LispDecodeError for anything else."""
    return _decode_inner(Reader(data))


def message_type(data):
    """The type number of a control message (first 4 bits), or None for empty input."""
    return data[0] >> 4 if data else None

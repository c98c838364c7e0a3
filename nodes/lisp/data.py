r"""The LISP data-plane header (RFC 9300 5.3), between the outer UDP header (port 4341) and
the inner IP packet.

     0                   1                   2                   3
     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |N|L|E|V|I|R|K|K|            Nonce/Map-Version                  |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                 Instance ID/Locator-Status-Bits               |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

N: a 24-bit nonce follows. L: the Locator-Status-Bits are in use. E: echo-nonce request
(only with N). V: the 24 bits hold a source and a destination map-version, 12 bits each
(never together with N). I: the second word is a 24-bit Instance ID and 8 LSBs; without I it
is 32 LSBs. R, K, K: reserved (K for LISP-crypto), kept as they are.

Receiving (RFC 9300 5.3): "Both N- and V-bits MUST NOT be set in the same packet. If they
are, a decapsulating ETR MUST treat the 'Nonce/Map-Version' field as having a Nonce value
present"; the E-bit "MUST be ignored and has no meaning when the N-bit is set to 0"; with I
set and L clear the low 8 bits are "ignored on receipt". So the decoder rejects none of these
(it used to raise for N+V and for E without N): it reads them as the RFC says and keeps the
ignored bits in `DataHeader.ignored`, so that a decoded header re-encodes to the same bytes.
The encoder still refuses to *send* N with V, or E without N.
"""
import struct
from dataclasses import dataclass
from typing import Optional

from .errors import LispDecodeError, LispEncodeError
from .reader import check_flag, check_range

HEADER_LEN = 8
_HDR = struct.Struct("!II")

FLAG_N, FLAG_L, FLAG_E, FLAG_V, FLAG_I = 0x80, 0x40, 0x20, 0x10, 0x08


@dataclass
class DataHeader:
    nonce: Optional[int] = None            # N
    lsb: Optional[int] = None              # L: 32 bits, or 8 bits when an IID is present
    echo_nonce: bool = False               # E
    map_versions: Optional[tuple] = None   # V: (source, destination)
    instance_id: Optional[int] = None      # I: 24 bits
    reserved: int = 0                      # the R, K, K bits
    # Bits the flags make meaningless (E without N; V with N; the 24-bit field without N or
    # V; the LSBs without L), as a 64-bit value laid over the 8 header bytes. 0 when sending.
    ignored: int = 0


_E_BIT = FLAG_E << 56
_V_BIT = FLAG_V << 56


def _ignorable(n, v, i, lsb):
    """Mask (over the 64-bit header) of the bits a receiver ignores, given which of the
    N, V (meaningful only without N), I and L fields are in use."""
    mask = _V_BIT if n else _E_BIT
    if not n and not v:
        mask |= 0xFFFFFF << 32
    if not lsb:
        mask |= 0xFF if i else 0xFFFFFFFF
    return mask


def encode_data_header(h):
    flags = check_range(h.reserved, 3, "reserved")
    first = 0
    if h.nonce is not None and h.map_versions is not None:
        raise LispEncodeError("N and V bits are mutually exclusive")
    if check_flag(h.echo_nonce, "echo_nonce") and h.nonce is None:
        raise LispEncodeError("the E bit needs a nonce")
    if h.nonce is not None:
        flags |= FLAG_N
        first = check_range(h.nonce, 24, "nonce")
    if h.echo_nonce:
        flags |= FLAG_E
    if h.map_versions is not None:
        flags |= FLAG_V
        src, dst = h.map_versions
        first = (check_range(src, 12, "source map-version") << 12) | check_range(
            dst, 12, "dest map-version")
    second = 0
    if h.instance_id is not None:
        flags |= FLAG_I
        second = check_range(h.instance_id, 24, "instance_id") << 8
        if h.lsb is not None:
            flags |= FLAG_L
            second |= check_range(h.lsb, 8, "lsb")
    elif h.lsb is not None:
        flags |= FLAG_L
        second = check_range(h.lsb, 32, "lsb")
    if h.ignored:
        ignored = check_range(h.ignored, 64, "ignored")
        if ignored & ~_ignorable(h.nonce is not None, h.map_versions is not None,
                                 h.instance_id is not None, h.lsb is not None):
            raise LispEncodeError("ignored bits overlap the fields in use")
        return _HDR.pack((flags << 24) | first | (ignored >> 32), second | (ignored & 0xFFFFFFFF))
    return _HDR.pack((flags << 24) | first, second)


def decode_data_header(data, offset=0):
    """The DataHeader at `offset` of `data` (the UDP payload); the inner packet follows at
    offset + 8."""
    if len(data) - offset < HEADER_LEN:
        raise LispDecodeError("LISP-data.header", offset,
                              f"needs 8 bytes, {max(len(data) - offset, 0)} left")
    first, second = _HDR.unpack_from(data, offset)
    flags = first >> 24
    low24 = first & 0xFFFFFF
    n = flags & FLAG_N
    v = flags & FLAG_V and not n      # RFC 9300 5.3: with N and V both set, it is a nonce
    i = flags & FLAG_I
    lsb = flags & FLAG_L
    h = DataHeader(reserved=flags & 0x07, echo_nonce=bool(n and flags & FLAG_E))
    if n:
        h.nonce = low24
    elif v:
        h.map_versions = (low24 >> 12, low24 & 0xFFF)
    if i:
        h.instance_id = second >> 8
        if lsb:
            h.lsb = second & 0xFF
    elif lsb:
        h.lsb = second
    h.ignored = ((first << 32) | second) & _ignorable(n, v, i, lsb)
    return h


def fast_header(nonce, instance_id=None, lsb=1):
    """The 8 header bytes the ITR writes on every packet (N and L set; I when an IID is
    given), without building a DataHeader: this is on the per-packet path."""
    if instance_id is None:
        return _HDR.pack(0xC0000000 | (nonce & 0xFFFFFF), lsb & 0xFFFFFFFF)
    return _HDR.pack(0xC8000000 | (nonce & 0xFFFFFF), ((instance_id & 0xFFFFFF) << 8)
                     | (lsb & 0xFF))


def header_words(instance_id=None, lsb=None):
    """The two header words an ITR sends on every packet, with the nonce left 0 (to be
    OR-ed in): N always; I with the instance ID; L only when `lsb` is given (None: the
    Locator-Status-Bits are not in use). Both data paths (nodes/dataplane.py and the
    kernel path's config map) write exactly these words."""
    first = FLAG_N << 24
    second = 0
    if lsb is not None:
        first |= FLAG_L << 24
    if instance_id is not None:
        first |= FLAG_I << 24
        second = (check_range(instance_id, 24, "instance_id") << 8) | (
            check_range(lsb, 8, "lsb") if lsb is not None else 0)
    elif lsb is not None:
        second = check_range(lsb, 32, "lsb")
    return first, second


def site_lsb(own_locators, site_locators=None, down=(), instance_id=None):
    """The Locator-Status-Bits this ITR sends for its site (RFC 9300 5.3): bit k (from the
    least significant) says whether the k-th locator of the site's mapping is up, in the
    order the site registers them. Only an xTR that knows every locator of its site can set
    them: with `site_locators` naming a locator that is not its own (a site of several
    xTRs, whose status it does not know), or more locators than the field holds (8 bits
    with an instance ID, 32 without), the answer is None: L = 0, "no status" - never a bit
    that tells a receiver that a working locator is down. Its own locators are up unless
    listed in `down`."""
    own = list(own_locators)
    site = list(site_locators) if site_locators is not None else own
    if not site or any(loc not in own for loc in site):
        return None
    if len(site) > (8 if instance_id is not None else 32):
        return None
    bits = 0
    for k, loc in enumerate(site):
        if loc not in down:
            bits |= 1 << k
    return bits

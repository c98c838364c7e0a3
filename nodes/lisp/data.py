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
"""
import struct
from dataclasses import dataclass
from typing import Optional

from .errors import LispDecodeError, LispEncodeError
from .reader import check_range

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


def encode_data_header(h):
    flags = check_range(h.reserved, 3, "reserved")
    first = 0
    if h.nonce is not None and h.map_versions is not None:
        raise LispEncodeError("N and V bits are mutually exclusive")
    if h.echo_nonce and h.nonce is None:
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
    if flags & FLAG_N and flags & FLAG_V:
        raise LispDecodeError("LISP-data.flags", offset, "N and V bits both set")
    if flags & FLAG_E and not flags & FLAG_N:
        raise LispDecodeError("LISP-data.flags", offset, "E bit without N bit")
    h = DataHeader(reserved=flags & 0x07, echo_nonce=bool(flags & FLAG_E))
    if flags & FLAG_N:
        h.nonce = low24
    if flags & FLAG_V:
        h.map_versions = (low24 >> 12, low24 & 0xFFF)
    if flags & FLAG_I:
        h.instance_id = second >> 8
        if flags & FLAG_L:
            h.lsb = second & 0xFF
    elif flags & FLAG_L:
        h.lsb = second
    return h


def fast_header(nonce, instance_id=None, lsb=1):
    """The 8 header bytes the ITR writes on every packet (N and L set; I when an IID is
    given), without building a DataHeader: this is on the per-packet path."""
    if instance_id is None:
        return _HDR.pack(0xC0000000 | (nonce & 0xFFFFFF), lsb & 0xFFFFFFFF)
    return _HDR.pack(0xC8000000 | (nonce & 0xFFFFFF), ((instance_id & 0xFFFFFF) << 8)
                     | (lsb & 0xFF))

"""LISP addresses: AFI-encoded addresses and the LISP Canonical Address Format (RFC 8060).

An address on the wire is a 16-bit AFI followed by the address bytes:

    AFI 0      no address (empty)                       -> None
    AFI 1      IPv4, 4 bytes                            -> ipaddress.IPv4Address
    AFI 2      IPv6, 16 bytes                           -> ipaddress.IPv6Address
    AFI 17     Distinguished Name, NUL-terminated ASCII -> DistinguishedName
    AFI 16389  48-bit MAC                               -> MacAddress
    AFI 16387  LCAF, one of:

     0                   1                   2                   3
     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |           AFI = 16387         |     Rsvd1     |     Flags     |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |   Type = 2    | IID mask-len  |             Length            |  Instance ID
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+  (RFC 8060 4.1)
    |                         Instance ID                           |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |              AFI = x          |         Address  ...          |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |   Type = 1    |     Rsvd2     |            Length             |  AFI List
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+  (RFC 8060 3.1)
    |            AFI = 1            |       IPv4 Address ...        |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |     ...  IPv4 Address         |            AFI = 2            |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                          IPv6 Address ...                     |

Length counts the bytes after the Length field. Other LCAF types are kept as opaque bytes
(`Lcaf`), so a message carrying them still decodes and re-encodes unchanged.

The address inside an Instance ID or an AFI List may itself be an LCAF (RFC 8060 4.1 and 3.1
allow any AFI there, LCAF included: e.g. an Instance ID around a Source/Dest or multicast
LCAF). Nesting is decoded up to MAX_LCAF_DEPTH levels; deeper input is a LispDecodeError
(without a limit, a crafted AFI List of AFI Lists would exhaust Python's recursion limit).
"""
import ipaddress
import struct
from dataclasses import dataclass

from .errors import LispEncodeError
from .reader import check_range

AFI_NONE = 0
AFI_IPV4 = 1
AFI_IPV6 = 2
AFI_DN = 17
AFI_LCAF = 16387
AFI_MAC = 16389

LCAF_AFI_LIST = 1
LCAF_INSTANCE_ID = 2

MAX_LCAF_DEPTH = 8  # LCAFs nested deeper than this are refused by the decoder

IPv4Address = ipaddress.IPv4Address
IPv6Address = ipaddress.IPv6Address


@dataclass(frozen=True)
class InstanceId:
    """An address inside a virtual network (LCAF type 2). `iid` is 32 bits on the wire."""
    iid: int
    address: object  # IPv4Address, IPv6Address or None (a decoded message may nest an LCAF)
    iid_mask_len: int = 0
    rsvd1: int = 0
    flags: int = 0


@dataclass(frozen=True)
class AfiList:
    """Several addresses of one node (LCAF type 1), e.g. its IPv4 and IPv6 RLOCs."""
    addresses: tuple
    rsvd1: int = 0
    flags: int = 0
    rsvd2: int = 0


@dataclass(frozen=True)
class Lcaf:
    """An LCAF type the core does not interpret, carried as opaque bytes."""
    lcaf_type: int
    payload: bytes
    rsvd1: int = 0
    flags: int = 0
    rsvd2: int = 0


@dataclass(frozen=True)
class DistinguishedName:
    name: str


@dataclass(frozen=True)
class MacAddress:
    mac: bytes


def encode_address(addr, depth=0):
    """AFI + address bytes. (`depth`: LCAFs around this one; leave it at 0.)"""
    if isinstance(addr, (InstanceId, AfiList, Lcaf)) and depth >= MAX_LCAF_DEPTH:
        raise LispEncodeError(f"LCAF nested more than {MAX_LCAF_DEPTH} deep")
    if addr is None:
        return b"\x00\x00"
    if isinstance(addr, IPv4Address):
        return b"\x00\x01" + addr.packed
    if isinstance(addr, IPv6Address):
        return b"\x00\x02" + addr.packed
    if isinstance(addr, InstanceId):
        inner = encode_address(addr.address, depth + 1)
        body = struct.pack("!I", check_range(addr.iid, 32, "instance_id")) + inner
        return _lcaf(addr.rsvd1, addr.flags, LCAF_INSTANCE_ID,
                     check_range(addr.iid_mask_len, 8, "iid_mask_len"), body)
    if isinstance(addr, AfiList):
        body = b"".join(encode_address(a, depth + 1) for a in addr.addresses)
        return _lcaf(addr.rsvd1, addr.flags, LCAF_AFI_LIST, addr.rsvd2, body)
    if isinstance(addr, Lcaf):
        if not isinstance(addr.payload, (bytes, bytearray)):
            raise LispEncodeError("an opaque LCAF's payload must be bytes")
        return _lcaf(addr.rsvd1, addr.flags, check_range(addr.lcaf_type, 8, "lcaf_type"),
                     addr.rsvd2, bytes(addr.payload))
    if isinstance(addr, DistinguishedName):
        try:
            raw = addr.name.encode("ascii")
        except (UnicodeEncodeError, AttributeError):
            raise LispEncodeError(f"distinguished name {addr.name!r} is not an ASCII string") \
                from None
        if b"\x00" in raw:
            raise LispEncodeError("distinguished name contains NUL")
        return struct.pack("!H", AFI_DN) + raw + b"\x00"
    if isinstance(addr, MacAddress):
        if not isinstance(addr.mac, (bytes, bytearray)) or len(addr.mac) != 6:
            raise LispEncodeError("MAC address must be 6 bytes")
        return struct.pack("!H", AFI_MAC) + bytes(addr.mac)
    raise LispEncodeError(f"cannot encode address {addr!r}")


def _lcaf(rsvd1, flags, lcaf_type, rsvd2, body):
    if len(body) > 0xFFFF:
        raise LispEncodeError("LCAF body longer than 65535 bytes")
    return struct.pack("!HBBBBH", AFI_LCAF, check_range(rsvd1, 8, "lcaf rsvd1"),
                       check_range(flags, 8, "lcaf flags"), lcaf_type,
                       check_range(rsvd2, 8, "lcaf rsvd2"), len(body)) + body


def decode_address(r, field, depth=0):
    """Read AFI + address from Reader `r`; `field` names it in errors. `depth` counts the
    LCAFs this address is nested in (callers outside this module leave it at 0)."""
    afi_pos = r.pos
    afi = r.u16(field + ".afi")
    if afi == AFI_NONE:
        return None
    if afi == AFI_IPV4:
        return IPv4Address(r.take(4, field + ".ipv4"))
    if afi == AFI_IPV6:
        return IPv6Address(r.take(16, field + ".ipv6"))
    if afi == AFI_LCAF:
        if depth >= MAX_LCAF_DEPTH:
            r.fail(field + ".afi", f"LCAF nested more than {MAX_LCAF_DEPTH} deep", afi_pos)
        return _decode_lcaf(r, field, depth + 1)
    if afi == AFI_DN:
        start = r.pos
        end = r.data.find(b"\x00", start, r.end)
        if end < 0:
            r.fail(field + ".name", "distinguished name has no terminating NUL")
        raw = r.take(end - start, field + ".name")
        r.pos += 1
        try:
            return DistinguishedName(raw.decode("ascii"))
        except UnicodeDecodeError:
            r.fail(field + ".name", "distinguished name is not ASCII", start)
    if afi == AFI_MAC:
        return MacAddress(r.take(6, field + ".mac"))
    r.fail(field + ".afi", f"unknown AFI {afi}", afi_pos)


def _decode_lcaf(r, field, depth):
    rsvd1 = r.u8(field + ".lcaf.rsvd1")
    flags = r.u8(field + ".lcaf.flags")
    lcaf_type = r.u8(field + ".lcaf.type")
    rsvd2 = r.u8(field + ".lcaf.rsvd2")
    length = r.u16(field + ".lcaf.length")
    body = r.sub(length, field + ".lcaf.body")
    if lcaf_type == LCAF_INSTANCE_ID:
        iid = body.u32(field + ".lcaf.instance_id")
        # RFC 8060 4.1: "AFI = x can be any AFI value", LCAF included (this decoder used to
        # refuse a nested LCAF here, so e.g. an IID around a multicast/SD LCAF did not decode).
        inner = decode_address(body, field + ".lcaf.address", depth)
        body.done(field + ".lcaf")
        return InstanceId(iid, inner, rsvd2, rsvd1, flags)
    if lcaf_type == LCAF_AFI_LIST:
        items = []
        while body.remaining():
            items.append(decode_address(body, f"{field}.lcaf.list[{len(items)}]", depth))
        return AfiList(tuple(items), rsvd1, flags, rsvd2)
    return Lcaf(lcaf_type, body.take(body.remaining(), field + ".lcaf.body"),
                rsvd1, flags, rsvd2)


# --- EID helpers ------------------------------------------------------------------------

def max_mask_len(addr):
    """Largest valid mask length for an EID address (None if it has no IP inside)."""
    ip = addr.address if isinstance(addr, InstanceId) else addr
    if isinstance(ip, IPv4Address):
        return 32
    if isinstance(ip, IPv6Address):
        return 128
    if ip is None and isinstance(addr, InstanceId):
        return 32  # IID-only: the record mask-len then applies to the IID (RFC 8060)
    return None


def make_eid(prefix, iid=None):
    """`make_eid("10.1.0.0/16", iid=7)` -> (wire address, mask_len) for a record."""
    net = ipaddress.ip_network(prefix, strict=False)
    addr = net.network_address
    if iid is not None:
        addr = InstanceId(iid, addr)
    return addr, net.prefixlen


def eid_address(iid, ip):
    """The wire address of EID `ip` in instance `iid` (an Instance-ID LCAF unless iid is 0):
    the inverse of eid_prefix's address part."""
    return InstanceId(iid, ip) if iid else ip


_NETWORK = {IPv4Address: ipaddress.IPv4Network, IPv6Address: ipaddress.IPv6Network}


def eid_prefix(addr, mask_len):
    """(instance ID, ipaddress network) of a record's EID; iid 0 when there is no LCAF.

    Raises ValueError when the EID is not an IP prefix."""
    iid = 0
    if isinstance(addr, InstanceId):
        iid, addr = addr.iid, addr.address
    cls = _NETWORK.get(type(addr))
    if cls is None:
        raise ValueError(f"EID {addr!r} is not an IP prefix")
    width = addr.max_prefixlen
    if not 0 <= mask_len <= width:
        raise ValueError(f"mask length {mask_len} does not fit the EID {addr}")
    # From an int with the host bits cleared: several times faster than from the address.
    host_bits = width - mask_len
    return iid, cls((int(addr) >> host_bits << host_bits, mask_len))


def address_family(addr):
    """4, 6 or None for an RLOC/EID address (looks inside an Instance ID)."""
    if isinstance(addr, InstanceId):
        addr = addr.address
    if isinstance(addr, IPv4Address):
        return 4
    if isinstance(addr, IPv6Address):
        return 6
    return None

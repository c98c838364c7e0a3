"""Plain IPv4/IPv6 + UDP headers, as the ECM carries them around its inner message.

RFC 9301 5.8: after the 4-byte ECM header comes the inner IP header (source: the requester's
EID or RLOC; destination: the EID being asked for) and a UDP header to port 4342, then the
LISP message. The UDP checksum is computed over the pseudo-header as RFC 768 / RFC 8200 say.

A UDP checksum of 0 ("none", RFC 768) is accepted and kept (`zero_checksum`), so the ECM
re-encodes unchanged: lispers.net's ECM encoder leaves the inner UDP checksum at 0. It is
accepted around an inner IPv6 header too (where RFC 8200 would have a UDP stack drop it):
this inner header is never handed to a UDP stack, and RFC 6935/6936 allow zero checksums for
tunnel protocols. A nonzero checksum must be right.
"""
import ipaddress
import struct
from dataclasses import dataclass

from .errors import LispEncodeError
from .reader import check_flag, check_range

PROTO_UDP = 17


def internet_checksum(data):
    """RFC 1071 one's-complement sum over `data`."""
    if len(data) % 2:
        data += b"\x00"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return (~total) & 0xFFFF


def udp_checksum(src, dst, udp_header_and_payload):
    """UDP checksum with the IPv4 or IPv6 pseudo-header (0 is sent as 0xFFFF)."""
    length = len(udp_header_and_payload)
    if src.version == 4:
        pseudo = src.packed + dst.packed + struct.pack("!BBH", 0, PROTO_UDP, length)
    else:
        pseudo = src.packed + dst.packed + struct.pack("!I3xB", length, PROTO_UDP)
    c = internet_checksum(pseudo + udp_header_and_payload)
    return c or 0xFFFF


@dataclass
class IpUdp:
    """The inner IP + UDP header of an ECM (fields kept so a message re-encodes unchanged)."""
    src: object
    dst: object
    sport: int = 4342
    dport: int = 4342
    ttl: int = 64
    tos: int = 0           # IPv4 TOS / IPv6 traffic class
    ident: int = 0         # IPv4 identification
    frag: int = 0x4000     # IPv4 flags + fragment offset word (default: DF)
    flow_label: int = 0    # IPv6
    zero_checksum: bool = False  # send UDP checksum 0 (none) instead of computing it


_IP_TYPES = (ipaddress.IPv4Address, ipaddress.IPv6Address)


def encode_ip_udp(h, payload):
    if not isinstance(h.src, _IP_TYPES) or not isinstance(h.dst, _IP_TYPES):
        raise LispEncodeError(f"inner addresses must be IP addresses: {h.src!r}, {h.dst!r}")
    if h.src.version != h.dst.version:
        raise LispEncodeError("inner source and destination differ in IP version")
    udp_len = 8 + len(payload)
    # IPv4's Total Length counts the 20-byte header too (struct.error before this check).
    if udp_len > 0xFFFF - (20 if h.src.version == 4 else 0):
        raise LispEncodeError("inner UDP datagram too long")
    if h.src.version == 4:
        if check_range(h.frag, 16, "frag") & 0x3FFF:
            raise LispEncodeError("an ECM's inner IPv4 header cannot be a fragment")
        if h.flow_label:
            raise LispEncodeError("flow_label is an IPv6 field")
    elif h.ident or h.frag != 0x4000:
        raise LispEncodeError("ident and frag are IPv4 fields (leave them at 0 and 0x4000)")
    udp = struct.pack("!HHHH", check_range(h.sport, 16, "sport"),
                      check_range(h.dport, 16, "dport"), udp_len, 0) + payload
    if not check_flag(h.zero_checksum, "zero_checksum"):
        csum = udp_checksum(h.src, h.dst, udp)
        udp = udp[:6] + struct.pack("!H", csum) + udp[8:]
    if h.src.version == 4:
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, check_range(h.tos, 8, "tos"), 20 + udp_len,
                         check_range(h.ident, 16, "ident"), check_range(h.frag, 16, "frag"),
                         check_range(h.ttl, 8, "ttl"), PROTO_UDP, 0, h.src.packed, h.dst.packed)
        ip = ip[:10] + struct.pack("!H", internet_checksum(ip)) + ip[12:]
    else:
        word = (6 << 28) | (check_range(h.tos, 8, "tos") << 20) | check_range(
            h.flow_label, 20, "flow_label")
        ip = struct.pack("!IHBB16s16s", word, udp_len, PROTO_UDP,
                         check_range(h.ttl, 8, "ttl"), h.src.packed, h.dst.packed)
    return ip + udp


def decode_ip_udp(r, field):
    """Read an IPv4/IPv6 header and a UDP header; returns (IpUdp, Reader over the payload)."""
    start = r.pos
    r.need(1, field + ".ip.version")
    version = r.data[r.pos] >> 4
    if version == 4:
        vihl = r.u8(field + ".ip.ihl")
        ihl = (vihl & 0x0F) * 4
        if ihl != 20:
            r.fail(field + ".ip.ihl", f"IPv4 options are not supported (IHL {ihl})", start)
        tos = r.u8(field + ".ip.tos")
        total = r.u16(field + ".ip.total_length")
        ident = r.u16(field + ".ip.ident")
        frag = r.u16(field + ".ip.frag")
        if frag & 0x3FFF:
            r.fail(field + ".ip.frag", "fragmented inner packet", r.pos - 2)
        ttl = r.u8(field + ".ip.ttl")
        proto = r.u8(field + ".ip.protocol")
        r.u16(field + ".ip.checksum")
        src = ipaddress.IPv4Address(r.take(4, field + ".ip.src"))
        dst = ipaddress.IPv4Address(r.take(4, field + ".ip.dst"))
        if internet_checksum(r.data[start:start + 20]) != 0:
            r.fail(field + ".ip.checksum", "bad IPv4 header checksum", start + 10)
        if total != r.end - start:
            r.fail(field + ".ip.total_length",
                   f"says {total} bytes, {r.end - start} present", start + 2)
        flow = 0
    elif version == 6:
        word = r.u32(field + ".ip.version")
        tos = (word >> 20) & 0xFF
        flow = word & 0xFFFFF
        plen = r.u16(field + ".ip.payload_length")
        proto = r.u8(field + ".ip.next_header")
        ttl = r.u8(field + ".ip.hop_limit")
        src = ipaddress.IPv6Address(r.take(16, field + ".ip.src"))
        dst = ipaddress.IPv6Address(r.take(16, field + ".ip.dst"))
        if plen != r.end - r.pos:
            r.fail(field + ".ip.payload_length", f"says {plen} bytes, {r.end - r.pos} present",
                   start + 4)
        ident, frag = 0, 0x4000
    else:
        r.fail(field + ".ip.version", f"inner IP version {version}")
    if proto != PROTO_UDP:
        r.fail(field + ".ip.protocol", f"inner protocol {proto} is not UDP")
    udp_start = r.pos
    sport = r.u16(field + ".udp.sport")
    dport = r.u16(field + ".udp.dport")
    ulen = r.u16(field + ".udp.length")
    csum = r.u16(field + ".udp.checksum")
    if ulen != r.end - udp_start:
        r.fail(field + ".udp.length", f"says {ulen} bytes, {r.end - udp_start} present",
               udp_start + 4)
    # 0 means "no checksum" (RFC 768); accepted for IPv6 too, see the module docstring.
    if csum != 0:
        if udp_checksum(src, dst, r.data[udp_start:udp_start + 6] + b"\0\0"
                        + r.data[udp_start + 8:r.end]) != csum:
            r.fail(field + ".udp.checksum", "bad UDP checksum", udp_start + 6)
    h = IpUdp(src, dst, sport, dport, ttl, tos, ident, frag, flow, csum == 0)
    return h, r.sub(r.end - r.pos, field + ".payload")

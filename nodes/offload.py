"""Segmentation and coalescing for a TUN device with offloads (the virtio-net header).

A TUN opened with IFF_VNET_HDR and TSO offloads hands the data plane whole TCP
"super-packets" of up to 64 KiB (one read instead of ~45) and accepts them back (one write).
That is what lets a Python data plane move bulk TCP at a useful rate: the cost is per
packet, not per byte. This module is the per-byte part, without I/O:

  tso_segments()   split a super-packet read from the TUN into MSS-sized packets, each with
                   its own IP header (length, ID, checksum) and TCP header (sequence number,
                   flags, checksum), exactly what the sender's TCP would have sent without
                   offloads. The encapsulating xTR puts each in its own LISP packet.
  Coalescer        the reverse at the decapsulating xTR: consecutive segments of one TCP
                   flow (or same-sized datagrams of one UDP flow) are written back to the
                   TUN as one super-packet with a partial checksum, so the kernel and the
                   receiving host handle one packet, not 45; the kernel's segmentation
                   gives back exactly the packets that arrived.
  complete_checksum()  a packet with only a partial checksum (offloaded by its sender).
  udp_segmentation_off()  the one piece of I/O here (an ethtool ioctl): the ITR's uplink must
                   not carry a UDP GSO batch as one super-packet, so its
                   `tx-udp-segmentation` is turned off and the kernel cuts the batch into
                   datagrams before the device (see the end of this file).

Every segment on the wire between xTRs is an ordinary, fully checksummed IP packet inside an
ordinary LISP packet; the offloads only change how many system calls carry them.

The virtio-net header (include/uapi/linux/virtio_net.h), 10 bytes, host byte order:
  flags (NEEDS_CSUM), gso_type, hdr_len, gso_size, csum_start, csum_offset
Checksums use the Internet checksum's property that the one's complement sum of 16-bit
words equals the number's value modulo 0xFFFF, which Python's integers compute quickly.
"""
import ctypes
import fcntl
import ipaddress
import socket
import struct

from .lisp.ipudp import internet_checksum

try:
    import numpy as _np
except ImportError:                # pragma: no cover (matplotlib depends on numpy)
    _np = None

VNET = struct.Struct("=BBHHHH")
VNET_LEN = VNET.size
NO_VNET = bytes(VNET_LEN)
F_NEEDS_CSUM = 1
GSO_NONE, GSO_TCPV4, GSO_TCPV6, GSO_UDP_L4 = 0, 1, 4, 5
GSO_ECN = 0x80
TCP_FIN, TCP_PSH, TCP_ACK, TCP_CWR = 0x01, 0x08, 0x10, 0x80
MAX_COALESCED = 65000          # IP total length of a coalesced packet stays below 65535


def _words(data):
    """The value of `data` as 16-bit words (an odd length is padded with a zero byte)."""
    v = int.from_bytes(data, "big")
    return v << 8 if len(data) & 1 else v


def fold(total):
    """The one's complement sum of 16-bit words whose plain sum is `total`, in 0..0xFFFF
    (0xFFFF stands for a non-zero sum congruent to 0)."""
    s = total % 0xFFFF
    return s if s or not total else 0xFFFF


def pseudo_sum(pkt, proto, length):
    """The plain sum of the pseudo-header words of IPv4/IPv6 packet `pkt` (RFC 793, 8200)."""
    if pkt[0] >> 4 == 4:
        return int.from_bytes(pkt[12:16], "big") % 0xFFFF + \
            int.from_bytes(pkt[16:20], "big") % 0xFFFF + proto + length
    return int.from_bytes(pkt[8:40], "big") % 0xFFFF + proto + length


def complete_checksum(pkt, csum_start, csum_offset):
    """Finish the checksum of a packet the kernel handed over with NEEDS_CSUM: the field
    at csum_start + csum_offset holds the pseudo-header sum; the transport checksum is the
    complement of the sum from csum_start to the end. `pkt` is a writable buffer."""
    at = csum_start + csum_offset
    if at + 2 > len(pkt):
        return False
    v = int.from_bytes(pkt[csum_start:], "big")          # (one packet: inlined _words)
    if (len(pkt) - csum_start) & 1:
        v <<= 8
    c = v % 0xFFFF
    c = 0xFFFF - c if c else (0 if v else 0xFFFF)
    if c == 0 and csum_offset == 6:                      # UDP sends a computed zero as 0xFFFF
        c = 0xFFFF
    pkt[at] = c >> 8
    pkt[at + 1] = c & 0xFF
    return True


def _ip_tcp_offsets(pkt):
    """(IP header length, TCP header length) of an IPv4/IPv6 TCP packet, or None."""
    v = pkt[0] >> 4
    if v == 4:
        ihl = (pkt[0] & 0x0F) * 4
        if pkt[9] != 6 or ihl < 20:
            return None
    elif v == 6:
        ihl = 40
        if pkt[6] != 6:                          # extension headers: not segmented here
            return None
    else:
        return None
    if len(pkt) < ihl + 20:
        return None
    thl = (pkt[ihl + 12] >> 4) * 4
    if thl < 20 or len(pkt) < ihl + thl:
        return None
    return ihl, thl


def _chunk_sums(payload, mss):
    """The plain sums of the 16-bit words of each `mss`-sized chunk of `payload` (the last
    chunk may be shorter). numpy (which matplotlib brings) sums all the full chunks in one
    call, several times faster than Python integers; without it, Python integers."""
    n = len(payload)
    full = n // mss
    if _np is not None and full and not mss & 1:
        words = _np.frombuffer(payload, dtype=">u2", count=full * mss // 2)
        sums = words.reshape(full, mss // 2).sum(axis=1, dtype=_np.uint64).tolist()
    else:
        sums = [_words(payload[i * mss:(i + 1) * mss]) for i in range(full)]
    if n % mss:
        sums.append(_words(payload[full * mss:]))
    return sums


_IP4 = struct.Struct("!BBHHHBBH4s4s")
_TCP = struct.Struct("!HHIIBBHHH")
_IP4_TCP = struct.Struct("!BBHHHBBH4s4sHHIIBBHHH")


def tso_segments(pkt, mss):
    """Split TCP super-packet `pkt` (bytes-like, IPv4 or IPv6) into segments of at most
    `mss` payload bytes. Returns a list of (headers bytes, payload memoryview) pairs, each
    pair one complete packet with correct lengths and checksums, or None when `pkt` is
    not a TCP packet this function can split."""
    offs = _ip_tcp_offsets(pkt)
    if offs is None or mss <= 0:
        return None
    ihl, thl = offs
    view = memoryview(pkt)
    payload = view[ihl + thl:]
    v4 = pkt[0] >> 4 == 4
    sport, dport, seq0, ack, doff, flags, win, _c, urg = _TCP.unpack_from(pkt, ihl)
    options = bytes(view[ihl + 20:ihl + thl])
    # Checksums from sums computed once: the constant words of the headers, then per
    # segment only the words that change (RFC 1071's sums are plain additions).
    tcp_const = sport + dport + (ack >> 16) + (ack & 0xFFFF) + (doff << 8) + win + urg \
        + _words(options) + pseudo_sum(pkt, 6, 0)
    if v4:
        ver_ihl, tos, _len, ident, frag, ttl, proto, _c, src, dst = _IP4.unpack_from(pkt)
        ip_opts = bytes(view[20:ihl])
        ip_const = (ver_ihl << 8) + tos + frag + (ttl << 8) + proto \
            + _words(src) + _words(dst) + _words(ip_opts)
    else:
        ip6 = bytearray(view[:40])
    out = []
    n = len(payload)
    for i, chunk_sum in enumerate(_chunk_sums(payload, mss)):
        off = i * mss
        chunk = payload[off:off + mss]
        f = flags if off + mss >= n else flags & ~(TCP_FIN | TCP_PSH)
        if i:
            f &= ~TCP_CWR
        seq = (seq0 + off) & 0xFFFFFFFF
        tcp_len = thl + len(chunk)
        # The checksum is the complement of the folded sum (fold() inlined: hot loop).
        c = (tcp_const + tcp_len + (seq >> 16) + (seq & 0xFFFF) + f + chunk_sum) % 0xFFFF
        c = 0xFFFF - c if c else 0
        if v4:
            total, ident_i = ihl + tcp_len, (ident + i) & 0xFFFF
            ipc = (ip_const + total + ident_i) % 0xFFFF
            ipc = 0xFFFF - ipc if ipc else 0
            if ihl == 20:
                hdr = _IP4_TCP.pack(ver_ihl, tos, total, ident_i, frag, ttl, proto, ipc, src,
                                    dst, sport, dport, seq, ack, doff, f, win, c, urg) + options
            else:
                hdr = _IP4.pack(ver_ihl, tos, total, ident_i, frag, ttl, proto, ipc, src,
                                dst) + ip_opts \
                    + _TCP.pack(sport, dport, seq, ack, doff, f, win, c, urg) + options
        else:
            struct.pack_into("!H", ip6, 4, tcp_len)
            hdr = bytes(ip6) + _TCP.pack(sport, dport, seq, ack, doff, f, win, c, urg) \
                + options
        out.append((hdr, chunk))
    return out


_SEQ = struct.Struct("!I")
_ID = struct.Struct("!H")
_SHAPES = {}
MAX_RUN = 64                   # segments in one coalesced packet (the kernel's UDP limit)


def _shape(version, proto, thl=0):
    """A struct that reads the header bytes that must be equal in every packet of a run:
    all but the IP length, ID and checksum, and for TCP the sequence number, the flags and
    the checksum, for UDP the length and the checksum."""
    shape = _SHAPES.get((version, proto, thl))
    if shape is None:
        ip = "2s4x4s2x8s" if version == 4 else "4s2x34s"
        l4 = f"4s4x5sx2s2x{thl - 18}s" if proto == 6 else "4s4x"
        shape = _SHAPES[(version, proto, thl)] = struct.Struct(f"!{ip}{l4}")
    return shape


class Coalescer:
    """Collects decapsulated packets for the TUN. Consecutive packets of one flow that a
    sender's segmentation could have made from one packet are written as that one packet
    (a GSO super-packet with a partial checksum, the reverse of tso_segments): TCP segments
    in sequence, and same-sized UDP datagrams; in IPv4 their IP IDs must follow each other,
    so the kernel's segmentation gives back exactly the packets that arrived. Everything
    else is written as it is. `write(buffers)` does one gathered write (the virtio-net
    header first) and returns False if the kernel refused it; a refused super-packet is
    written packet by packet, and UDP runs stop if the kernel cannot take them. Packets
    given to `add` must stay valid until `flush`."""

    def __init__(self, write, udp=True):
        self.write = write
        self.udp = udp             # coalesce UDP too (GSO UDP_L4: Linux 6.2 and later)
        self.pending = []          # the packets of the run (memoryviews)
        self.refused = 0           # super-packets the kernel refused
        self.proto = self.hl = self.ihl = self.mss = self.size = self.seq0 = self.id0 = 0
        self.v4 = True
        self.shape = self.key = None

    def add(self, pkt):
        """Queue inner packet `pkt` (a memoryview); may write what was queued before."""
        pending = self.pending
        if pending:
            # Does it follow the run? Same invariant headers, not longer than the first,
            # the next IPv4 ID, and for TCP the next sequence number and flags ACK[/PSH].
            n = len(pkt) - self.hl
            if 0 < n <= self.mss and self.shape.unpack_from(pkt) == self.key and (
                    not self.v4 or _ID.unpack_from(pkt, 4)[0]
                    == (self.id0 + len(pending)) & 0xFFFF) and (
                    self.proto != 6 or (_SEQ.unpack_from(pkt, self.ihl + 4)[0]
                                        == (self.seq0 + self.size) & 0xFFFFFFFF
                                        and pkt[self.ihl + 13] & ~TCP_PSH == TCP_ACK)):
                pending.append(pkt)
                self.size += n
                if n < self.mss or len(pending) >= MAX_RUN \
                        or self.size + self.mss > MAX_COALESCED \
                        or (self.proto == 6 and pkt[self.ihl + 13] & TCP_PSH):
                    self.flush()                 # nothing can follow this one
                return
            self.flush()
        if not self._start(pkt):
            self.write([NO_VNET, pkt])

    def _start(self, pkt):
        """Begin a new run with `pkt` when it is a TCP data segment (ACK only) or a UDP
        datagram, not fragmented and without IPv4 options."""
        v = pkt[0] >> 4
        if v == 4:
            if pkt[0] != 0x45 or pkt[6] & 0x3F or pkt[7] or len(pkt) < 28:
                return False                     # IPv4 options or a fragment
            ihl, proto = 20, pkt[9]
        elif v == 6 and len(pkt) >= 48:
            ihl, proto = 40, pkt[6]
        else:
            return False
        if proto == 6:
            offs = _ip_tcp_offsets(pkt)
            if offs is None or pkt[ihl + 13] != TCP_ACK:
                return False                     # SYN, FIN, RST, URG, ECE, CWR, PSH: alone
            hl = ihl + offs[1]
            self.seq0 = _SEQ.unpack_from(pkt, ihl + 4)[0]
            self.shape = _shape(v, 6, offs[1])
        elif proto == 17 and self.udp:
            hl = ihl + 8
            self.shape = _shape(v, 17)
        else:
            return False
        if len(pkt) <= hl:
            return False
        self.v4, self.proto, self.ihl, self.hl = v == 4, proto, ihl, hl
        self.mss = self.size = len(pkt) - hl
        self.key = self.shape.unpack_from(pkt)
        self.id0 = _ID.unpack_from(pkt, 4)[0] if v == 4 else 0
        self.pending = [pkt]
        return True

    def flush(self):
        """Write what is pending: one packet as it is, several as one super-packet."""
        if not self.pending:
            return
        pending, self.pending = self.pending, []
        f, ihl, hl = pending[0], self.ihl, self.hl
        if len(pending) == 1:
            self.write([NO_VNET, f])
            return
        l4_len = hl - ihl + self.size
        ip = bytearray(f[:ihl])
        l4 = bytearray(f[ihl:hl])
        if self.v4:
            struct.pack_into("!H", ip, 2, ihl + l4_len)
            ip[10:12] = b"\0\0"
            struct.pack_into("!H", ip, 10, internet_checksum(ip))
        else:
            struct.pack_into("!H", ip, 4, l4_len)
        # NEEDS_CSUM: the checksum field holds the pseudo-header sum (with the whole
        # length); the kernel (or whoever segments the packet) completes it.
        if self.proto == 6:
            l4[13] |= pending[-1][ihl + 13] & TCP_PSH
            struct.pack_into("!H", l4, 16, fold(pseudo_sum(f, 6, l4_len)))
            gso, at = (GSO_TCPV4 if self.v4 else GSO_TCPV6), 16
        else:
            struct.pack_into("!HH", l4, 4, l4_len, fold(pseudo_sum(f, 17, l4_len)))
            gso, at = GSO_UDP_L4, 6
        vnet = VNET.pack(F_NEEDS_CSUM, gso, hl, self.mss, ihl, at)
        if not self.write([vnet, ip, l4, *(p[hl:] for p in pending)]):
            self.refused += 1
            if self.proto == 17:
                self.udp = False                 # this kernel takes no UDP super-packets
            for p in pending:
                self.write([NO_VNET, p])


# --- the uplink's UDP segmentation (ethtool) -------------------------------------------
#
# A UDP_SEGMENT send is one packet in the kernel until a device without the
# NETIF_F_GSO_UDP_L4 feature has to transmit it. A veth, a bridge and a forwarding router
# keep it whole, so with the default offloads a batch of LISP packets crosses the core as
# one frame of several kilobytes, which a receiver reading raw frames decapsulates as one
# packet (issue 10). Without `tx-udp-segmentation` on the uplink, the kernel segments the
# batch in software before the uplink, and every frame on the wire is one LISP packet.

SIOCETHTOOL = 0x8946
SIOCGIFCONF = 0x8912
ETHTOOL_GSTRINGS, ETHTOOL_GSSET_INFO = 0x1B, 0x37
ETHTOOL_GFEATURES, ETHTOOL_SFEATURES = 0x3A, 0x3B
ETH_SS_FEATURES = 4
ETH_GSTRING_LEN = 32
UDP_SEGMENTATION = "tx-udp-segmentation"


def _ethtool(ifname, data):
    """One SIOCETHTOOL ioctl on interface `ifname`; `data` (a ctypes buffer holding the
    ethtool command) is read and written by the kernel."""
    ifreq = struct.pack("16sP16x", ifname.encode(), ctypes.addressof(data))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        fcntl.ioctl(s, SIOCETHTOOL, ifreq)


def _feature_names(ifname):
    info = ctypes.create_string_buffer(struct.pack("=IIQI", ETHTOOL_GSSET_INFO, 0,
                                                   1 << ETH_SS_FEATURES, 0))
    _ethtool(ifname, info)
    _cmd, _reserved, mask, count = struct.unpack_from("=IIQI", info)
    if not mask & (1 << ETH_SS_FEATURES):
        return []
    names = ctypes.create_string_buffer(struct.pack("=III", ETHTOOL_GSTRINGS,
                                                    ETH_SS_FEATURES, count)
                                        + bytes(count * ETH_GSTRING_LEN))
    _ethtool(ifname, names)
    raw = names.raw[12:12 + count * ETH_GSTRING_LEN]
    return [raw[i:i + ETH_GSTRING_LEN].split(b"\0", 1)[0].decode()
            for i in range(0, len(raw), ETH_GSTRING_LEN)]


def _features(ifname, blocks):
    """[(available, requested, active, never_changed)] bit masks, 32 features a block."""
    buf = ctypes.create_string_buffer(struct.pack("=II", ETHTOOL_GFEATURES, blocks)
                                      + bytes(16 * blocks))
    _ethtool(ifname, buf)
    return [struct.unpack_from("=IIII", buf, 8 + 16 * i) for i in range(blocks)]


def udp_segmentation(ifname, on=None):
    """Whether `ifname` segments UDP GSO sends in its driver (`tx-udp-segmentation`, i.e.
    passes them on whole), after setting it to `on` when that is not None. Returns
    (active before, active after, changeable). Raises OSError when the interface has no
    ethtool features (then it passes GSO packets on as they come, as a veth does)."""
    names = _feature_names(ifname)
    if UDP_SEGMENTATION not in names:
        raise OSError(f"{ifname} has no {UDP_SEGMENTATION} feature")
    bit = names.index(UDP_SEGMENTATION)
    block, mask = bit // 32, 1 << (bit % 32)
    blocks = (len(names) + 31) // 32
    available, _req, active, fixed = _features(ifname, blocks)[block]
    before = bool(active & mask)
    changeable = bool(available & mask) and not fixed & mask
    if on is not None and before != on and changeable:
        sets = bytearray(struct.pack("=II", ETHTOOL_SFEATURES, blocks) + bytes(8 * blocks))
        struct.pack_into("=II", sets, 8 + 8 * block, mask, mask if on else 0)
        _ethtool(ifname, ctypes.create_string_buffer(bytes(sets)))
        return before, bool(_features(ifname, blocks)[block][2] & mask), changeable
    return before, before, changeable


def udp_segmentation_off(ifname):
    """Turn `tx-udp-segmentation` off on `ifname` and check that it took: returns
    (it was on, it is off now)."""
    before, after, _ = udp_segmentation(ifname, False)
    return before, not after


def udp_segmentation_on(ifname):
    """Put `tx-udp-segmentation` back on (what udp_segmentation_off turned off)."""
    return udp_segmentation(ifname, True)[1]


def ipv4_interfaces():
    """[(interface name, IPv4 address)] of this network namespace (SIOCGIFCONF: every
    address, secondary ones under their label "dev:label", reported here as "dev")."""
    size = 40                                            # struct ifreq
    count = 64
    while True:
        buf = ctypes.create_string_buffer(size * count)
        ifconf = bytearray(struct.pack("iP", size * count, ctypes.addressof(buf)))
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            fcntl.ioctl(s, SIOCGIFCONF, ifconf)
        used = struct.unpack_from("i", ifconf)[0]
        if used < size * count:
            break
        count *= 4
    out = []
    for at in range(0, used, size):
        name = buf.raw[at:at + 16].split(b"\0", 1)[0].decode().split(":", 1)[0]
        out.append((name, socket.inet_ntoa(buf.raw[at + 20:at + 24])))
    return out


def default_route_interfaces():
    """Names of the interfaces of the IPv4 default routes of the main table."""
    try:
        with open("/proc/net/route") as f:
            rows = [line.split() for line in f.readlines()[1:]]
    except OSError:
        return []
    return sorted({r[0] for r in rows if len(r) > 7 and r[1] == "00000000"
                   and r[7] == "00000000"})


def ipv6_interfaces():
    """[(interface name, IPv6 address)] of this network namespace (/proc/net/if_inet6)."""
    try:
        with open("/proc/net/if_inet6") as f:
            rows = [line.split() for line in f]
    except OSError:
        return []
    return [(r[5], str(ipaddress.IPv6Address(bytes.fromhex(r[0])))) for r in rows
            if len(r) >= 6 and len(r[0]) == 32]


def default_route_interfaces6():
    """Names of the interfaces of the IPv6 default routes (::/0) of this namespace."""
    try:
        with open("/proc/net/ipv6_route") as f:
            rows = [line.split() for line in f]
    except OSError:
        return []
    return sorted({r[9] for r in rows if len(r) >= 10 and r[0] == "0" * 32 and r[1] == "00"
                   and r[9] != "lo"})

"""The xTR data plane: a TUN device, encapsulation and decapsulation (RFC 9300 section 5).

Packets never touch the asyncio event loop of the control plane. Two plain threads with
blocking reads and preallocated buffers do the per-packet work:

  encap thread   TUN -> ITR decision -> outer IPv4 + UDP + LISP header -> raw socket
                 (the kernel routes into the TUN the site's traffic for remote EIDs)
  decap thread   UDP 4341 on our own RLOCs -> LISP header -> ETR decision -> TUN
                 (the kernel then forwards the inner packet to the LAN), or re-encapsulation
                 toward the new RLOC of a host that moved away

Outer header (RFC 9300 5.3): the outer UDP source port is a hash of the inner flow (so the
core can spread flows, and one flow keeps one port); the UDP checksum is zero; the outer TTL
is copied from the inner TTL; the DSCP/ECN byte is copied. On decapsulation the inner TTL
becomes min(inner TTL, outer TTL).

Path MTU (RFC 9300 section 7): we use the stateful approach. The TUN's MTU is the configured
outer path MTU less the 36 bytes of encapsulation (IPv4 20 + UDP 8 + LISP 8), so the kernel
itself answers an oversized packet with ICMP Fragmentation Needed / Packet Too Big (or
fragments it before encapsulation when DF is clear). TCP's path-MTU discovery then sizes its
segments to fit, and full-size transfers keep working.

The decision for a flow is computed by the sans-I/O core under `core_lock` and cached per
flow; the cache is flushed whenever the control plane changes a mapping (generation count).
"""
import fcntl
import ipaddress
import os
import socket
import struct
import threading
import zlib

from .lisp.data import fast_header

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
ENCAP_OVERHEAD_V4 = 36
ENCAP_OVERHEAD_V6 = 56
DATA_PORT = 4341
IP_RECVTTL = 12
BUF = 65535
_IPV4_HDR = struct.Struct("!BBHHHBBH4s4s")
_UDP_HDR = struct.Struct("!HHHH")


def open_tun(name):
    """Open (create) TUN device `name` without packet information; returns the fd."""
    fd = os.open("/dev/net/tun", os.O_RDWR)
    try:
        fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    except OSError:
        os.close(fd)
        raise
    return fd


def flow_of(pkt):
    """(version, src bytes, dst bytes, flow key bytes, flow hash) of an inner IP packet, or
    None when it is not a whole IPv4/IPv6 packet."""
    if len(pkt) < 20:
        return None
    v = pkt[0] >> 4
    if v == 4:
        ihl = (pkt[0] & 0x0F) * 4
        proto = pkt[9]
        src, dst = pkt[12:16], pkt[16:20]
        ports = pkt[ihl:ihl + 4] if proto in (6, 17, 132) and not (
            struct.unpack_from("!H", pkt, 6)[0] & 0x1FFF) else b""
        key = bytes(pkt[9:10]) + bytes(src) + bytes(dst) + bytes(ports)
    elif v == 6 and len(pkt) >= 40:
        proto = pkt[6]
        src, dst = pkt[8:24], pkt[24:40]
        ports = pkt[40:44] if proto in (6, 17, 132) else b""
        key = bytes(pkt[6:7]) + bytes(src) + bytes(dst) + bytes(ports)
    else:
        return None
    return v, bytes(src), bytes(dst), key, zlib.crc32(key)


def set_ipv4_ttl(pkt, ttl):
    """Lower the TTL of the IPv4 packet in bytearray `pkt` and fix its header checksum
    incrementally (RFC 1624)."""
    old = pkt[8]
    if ttl >= old:
        return
    pkt[8] = ttl
    csum = struct.unpack_from("!H", pkt, 10)[0]
    # HC' = ~(~HC + ~m + m') over the 16-bit word holding TTL (high byte) and protocol.
    m_old = (old << 8) | pkt[9]
    m_new = (ttl << 8) | pkt[9]
    s = (~csum & 0xFFFF) + (~m_old & 0xFFFF) + m_new
    s = (s & 0xFFFF) + (s >> 16)
    s = (s & 0xFFFF) + (s >> 16)
    struct.pack_into("!H", pkt, 10, ~s & 0xFFFF)


class DataPlane:
    """Encap/decap threads around a `decide` object with two methods, called under
    `core_lock`:

      route(iid, dst_ip, flow_key) -> Decision        packets from the site (ITR)
      decapsulated(iid, dst_ip, outer_src, flow_key) -> Decision   packets from the core

    and `counters` (a Counter) for per-packet statistics.
    """

    def __init__(self, tun_name, rlocs, iid, decide, core_lock, counters, mtu=1500,
                 known_rlocs=None):
        self.tun_name = tun_name
        self.rlocs = [ipaddress.ip_address(r) for r in rlocs]
        self.rloc4 = next((r for r in self.rlocs if r.version == 4), None)
        self.rloc6 = next((r for r in self.rlocs if r.version == 6), None)
        self.iid = iid
        self.decide = decide
        self.lock = core_lock
        self.counters = counters
        self.mtu = mtu
        self.known_rlocs = known_rlocs     # callable -> set of addresses, or None
        self.generation = 0                # bumped by the control plane on mapping changes
        self._flows = {}
        self._flows_gen = -1
        self._stop = threading.Event()
        self.tun_fd = open_tun(tun_name)
        self.raw4 = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
        self.raw4.setsockopt(socket.IPPROTO_IP, socket.IP_HDRINCL, 1)
        self.udp6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) if self.rloc6 else None
        if self.udp6:
            self.udp6.bind((str(self.rloc6), 0))
        self.rx = []
        for r in self.rlocs:
            fam = socket.AF_INET if r.version == 4 else socket.AF_INET6
            s = socket.socket(fam, socket.SOCK_DGRAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
            if r.version == 4:
                s.setsockopt(socket.IPPROTO_IP, IP_RECVTTL, 1)
            else:
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVHOPLIMIT, 1)
            s.bind((str(r), DATA_PORT))
            s.settimeout(0.2)
            self.rx.append(s)
        self.nonce = int.from_bytes(os.urandom(3), "big") | 1
        self.threads = []

    # --- lifecycle -----------------------------------------------------------------------

    def start(self):
        self.threads = [threading.Thread(target=self._encap_loop, name="encap", daemon=True)]
        self.threads += [threading.Thread(target=self._decap_loop, args=(s,), name="decap",
                                          daemon=True) for s in self.rx]
        for t in self.threads:
            t.start()

    def stop(self):
        self._stop.set()
        for t in self.threads:
            t.join(timeout=0.5)
        for s in self.rx + [self.raw4] + ([self.udp6] if self.udp6 else []):
            s.close()
        try:
            os.close(self.tun_fd)          # a non-persistent TUN disappears with its fd
        except OSError:
            pass

    def invalidate(self):
        self.generation += 1

    # --- encapsulation -----------------------------------------------------------------

    def _encap_loop(self):
        import select
        buf = bytearray(BUF)
        view = memoryview(buf)
        poller = select.poll()
        poller.register(self.tun_fd, select.POLLIN)
        while not self._stop.is_set():
            if not poller.poll(200):
                continue
            try:
                n = os.readv(self.tun_fd, [buf])
            except OSError:
                continue
            self.encapsulate(view[:n])

    def _flow_decision(self, key, dst, version, is_decap=False, outer_src=None):
        if self._flows_gen != self.generation:
            self._flows.clear()
            self._flows_gen = self.generation
        cache_key = (is_decap, key)
        d = self._flows.get(cache_key)
        if d is None:
            ip = ipaddress.IPv4Address(dst) if version == 4 else ipaddress.IPv6Address(dst)
            with self.lock:
                if is_decap:
                    d = self.decide.decapsulated(self.iid, ip, outer_src, key)
                else:
                    d = self.decide.route(self.iid, ip, key)
            # Cache what is stable for a flow. Not the re-encapsulation of a moved host's
            # traffic: each such packet must reach the core so that it can send SMRs.
            cacheable = ("deliver", "native") if is_decap else ("encap", "native")
            if d.verb in cacheable and len(self._flows) < 65536:
                self._flows[cache_key] = d
        return d

    def encapsulate(self, pkt, is_reencap=False, outer_src=None):
        info = flow_of(pkt)
        if info is None:
            self.counters["drop_not_ip"] += 1
            return
        version, src, dst, key, h = info
        d = self._flow_decision(key, dst, version)
        if d.verb == "encap":
            self.send_encapsulated(pkt, d.rloc, h, version)
        elif d.verb == "native":
            self.send_native(pkt, version, dst)
        else:
            self.counters["drop_" + (d.reason or "unknown").replace(" ", "_").replace(
                ":", "").replace("-", "_")] += 1

    def send_encapsulated(self, pkt, rloc, h, version):
        ttl = pkt[8] if version == 4 else pkt[7]
        tos = pkt[1] if version == 4 else ((pkt[0] & 0x0F) << 4) | (pkt[1] >> 4)
        self.nonce = (self.nonce * 1103515245 + 12345) & 0xFFFFFF or 1
        lisp = fast_header(self.nonce, self.iid, 1)
        sport = 0xC000 | (((h * 0x9E3779B1) >> 18) & 0x3FFF)
        try:
            if rloc.version == 4:
                total = 36 + len(pkt)
                hdr = _IPV4_HDR.pack(0x45, tos, total, 0, 0x4000 if total <= self.mtu else 0,
                                     ttl, 17, 0, self.rloc4.packed if self.rloc4 else b"\0" * 4,
                                     rloc.packed)
                self.raw4.sendto(hdr + _UDP_HDR.pack(sport, DATA_PORT, 16 + len(pkt), 0)
                                 + lisp + pkt, (str(rloc), 0))
            elif self.udp6 is not None:
                self.udp6.sendto(lisp + pkt, (str(rloc), DATA_PORT))
            else:
                self.counters["drop_no_ipv6_rloc"] += 1
                return
        except OSError:
            self.counters["drop_send_error"] += 1
            return
        self.counters["packets_encapsulated"] += 1

    def send_native(self, pkt, version, dst):
        try:
            if version == 4:
                self.raw4.sendto(pkt, (socket.inet_ntop(socket.AF_INET, dst), 0))
                self.counters["packets_forwarded_natively"] += 1
                return
        except OSError:
            pass
        self.counters["drop_native_forward"] += 1

    # --- decapsulation -----------------------------------------------------------------

    def _decap_loop(self, sock):
        buf = bytearray(BUF)
        view = memoryview(buf)
        anc = socket.CMSG_SPACE(4)
        while not self._stop.is_set():
            try:
                n, ancdata, _flags, addr = sock.recvmsg_into([buf], anc)
            except socket.timeout:
                continue
            except OSError:
                if self._stop.is_set():
                    return
                continue
            outer_ttl = 255
            for level, typ, data in ancdata:
                if len(data) >= 4:
                    outer_ttl = struct.unpack("=i", data[:4])[0]
            self.decapsulate(view, n, addr[0], outer_ttl)

    def decapsulate(self, view, n, outer_src, outer_ttl):
        if n < 8 + 20:
            self.counters["malformed_data"] += 1
            return
        flags = view[0]
        if flags & 0x08:                       # I bit: instance ID in bytes 4..7
            iid = (view[4] << 16) | (view[5] << 8) | view[6]
            if iid != self.iid:
                self.counters["drop_wrong_instance_id"] += 1
                return
        src_ip = ipaddress.ip_address(outer_src)
        if self.known_rlocs is not None and src_ip not in self.known_rlocs():
            self.counters["drop_unknown_rloc"] += 1
            return
        inner = bytearray(view[8:n])
        info = flow_of(inner)
        if info is None:
            self.counters["malformed_data"] += 1
            return
        version, src, dst, key, h = info
        if version == 4:
            set_ipv4_ttl(inner, outer_ttl)
        elif outer_ttl < inner[7]:
            inner[7] = outer_ttl
        d = self._flow_decision(key, dst, version, True, src_ip)
        if d.verb == "deliver":
            try:
                os.write(self.tun_fd, inner)
                self.counters["packets_decapsulated"] += 1
            except OSError:
                self.counters["drop_tun_write"] += 1
        elif d.verb == "encap":
            self.counters["packets_decapsulated"] += 1
            self.send_encapsulated(inner, d.rloc, h, version)
        elif d.verb == "native":
            self.counters["packets_decapsulated"] += 1
            try:
                os.write(self.tun_fd, inner)
            except OSError:
                self.counters["drop_tun_write"] += 1
        else:
            self.counters["drop_" + (d.reason or "unknown").replace(" ", "_")] += 1

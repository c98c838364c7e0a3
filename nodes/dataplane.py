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

Robustness (issue 9): whatever one packet does to the code handling it is counted and logged
once per kind, and the thread goes on; a loop that fails is restarted, one that keeps
failing ends, and health() / check() say so (the daemon then exits). Wire sizes (issue 10):
a UDP GSO batch leaves as separate datagrams because the uplink's `tx-udp-segmentation` is
turned off at start (segment_before_uplinks).
"""
import collections
import errno
import fcntl
import ipaddress
import json
import os
import select
import socket
import struct
import sys
import threading
import time
import traceback
import zlib

from .offload import (F_NEEDS_CSUM, GSO_ECN, GSO_NONE, VNET, VNET_LEN, Coalescer,
                      UDP_SEGMENTATION, complete_checksum, default_route_interfaces,
                      default_route_interfaces6, ipv6_interfaces,
                      ipv4_interfaces, tso_segments, udp_segmentation_off,
                      udp_segmentation_on)
from .lisp.data import header_words, site_lsb
from .held import HeldPackets


TUNSETIFF = 0x400454CA
TUNSETOFFLOAD = 0x400454D0
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
IFF_VNET_HDR = 0x4000
TUN_F_CSUM, TUN_F_TSO4, TUN_F_TSO6 = 0x01, 0x02, 0x04
SOL_UDP = 17
_OWN = object()                    # DataPlane(lsb=...): "from our own locators"
UDP_SEGMENT = 103                  # send: one buffer, the kernel cuts it into datagrams
UDP_GRO = 104                      # receive: same-sized datagrams of a flow, coalesced
IP_TTL = 2
GSO_MAX_PAYLOAD = 65000            # a UDP GSO send carries at most this much
GSO_MAX_SEGMENTS = 64
ENCAP_OVERHEAD_V4 = 36
ENCAP_OVERHEAD_V6 = 56
DATA_PORT = 4341
IP_RECVTTL = 12
BUF = 65535 + VNET_LEN
_OUTER4 = struct.Struct("!BBHHHBBH4s4sHHHHII")   # outer IPv4 + UDP + LISP header, 36 bytes
_LISP = struct.Struct("!II")
_FAST = struct.Struct("!BBHHHBB2x12s")  # IPv4 header to the addresses, then the ports
_KEY = struct.Struct("!B2x12s")          # from the protocol byte: protocol, addresses, ports
DECAP_RING = 16                    # datagrams read before the TUN write must happen
MAX_RESTARTS = 5                   # a data-plane loop that fails more often in a minute stops


class DataPlaneError(Exception):
    """A data-plane thread has stopped: the node forwards nothing in that direction."""


def log_to_stderr(event, /, **fields):
    """The default `log` of a DataPlane: one JSON line on stderr (the node's log file)."""
    print(json.dumps({"event": event, **fields}, default=str), file=sys.stderr, flush=True)


def _fast_key(pkt):
    """The flow-cache key of the fast paths: (protocol, addresses and ports) of an IPv4
    TCP/UDP packet without options that is not a fragment; None for anything else."""
    if len(pkt) >= 24 and pkt[0] == 0x45 and pkt[9] in (6, 17) \
            and not (pkt[6] & 0x3F or pkt[7]):
        return _KEY.unpack_from(pkt, 9)
    return None


def tun_mtu(path_mtu, rlocs):
    """The TUN's MTU: the outer path MTU less the encapsulation, 56 bytes (IPv6 + UDP +
    LISP) when this xTR has an IPv6 RLOC to send from, else 36, so that the kernel answers
    a packet too big for either outer header with ICMP (RFC 9300 7.2, stateful)."""
    v6 = any(ipaddress.ip_address(r).version == 6 for r in rlocs)
    return path_mtu - (ENCAP_OVERHEAD_V6 if v6 else ENCAP_OVERHEAD_V4)


def ttl_and_tos(pkt):
    """(TTL or hop limit, DSCP/ECN byte) of an inner IPv4/IPv6 packet: what the outer
    header copies (RFC 9300 5.3)."""
    if pkt[0] >> 4 == 4:
        return pkt[8], pkt[1]
    return pkt[7], ((pkt[0] & 0x0F) << 4) | (pkt[1] >> 4)


def open_tun(name):
    """Open (create) TUN device `name` without packet information and with offloads;
    returns the fd. Every packet read or written starts with a virtio-net header, and the
    TUN takes checksum and TCP segmentation offloads: the kernel hands over TCP
    super-packets (see nodes/offload.py)."""
    fd = os.open("/dev/net/tun", os.O_RDWR)
    try:
        fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(),
                                                IFF_TUN | IFF_NO_PI | IFF_VNET_HDR))
        fcntl.ioctl(fd, TUNSETOFFLOAD, TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6)
    except OSError:
        os.close(fd)
        raise
    return fd


def _where(exc):
    """"file:line" where exception `exc` was raised."""
    tb = traceback.extract_tb(exc.__traceback__)
    return f"{os.path.basename(tb[-1].filename)}:{tb[-1].lineno}" if tb else "?"


def open_devices(tun_name, rlocs, receive=True):
    """(TUN fd, raw IPv4 socket for sending, UDP IPv6 socket for sending or None, one UDP
    socket on port 4341 per RLOC for receiving) of a data plane; without `receive` no
    receiving socket (a tenant's data plane: the first one receives for it)."""
    tun_fd = open_tun(tun_name)
    raw4 = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    raw4.setsockopt(socket.IPPROTO_IP, socket.IP_HDRINCL, 1)
    rloc6 = next((r for r in rlocs if r.version == 6), None)
    udp6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) if rloc6 else None
    if udp6:
        udp6.bind((str(rloc6), 0))
    rx = []
    for r in rlocs if receive else ():
        fam = socket.AF_INET if r.version == 4 else socket.AF_INET6
        s = socket.socket(fam, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        if r.version == 4:
            s.setsockopt(socket.IPPROTO_IP, IP_RECVTTL, 1)
        else:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVHOPLIMIT, 1)
        try:
            s.setsockopt(SOL_UDP, UDP_GRO, 1)
        except OSError:
            pass                       # an old kernel: one datagram per receive
        s.bind((str(r), DATA_PORT))
        s.setblocking(False)
        rx.append(s)
    return tun_fd, raw4, udp6, rx


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


def flow_source(key, version):
    """The inner source address in a flow key of flow_of() (protocol, source, destination,
    ports), or None for an empty key."""
    n = 4 if version == 4 else 16
    if len(key) < 1 + n:
        return None
    return ipaddress.ip_address(bytes(key[1:1 + n]))


def outer_sport(flow_hash):
    """The outer UDP source port for a flow (RFC 9300 5.3): from the hash of the inner
    flow, in the ephemeral range 49152-65535."""
    return 0xC000 | (((flow_hash * 0x9E3779B1) >> 18) & 0x3FFF)


def set_ipv4_ttl(pkt, ttl, at=0):
    """Lower the TTL of the IPv4 packet at offset `at` of bytearray `pkt` and fix its
    header checksum incrementally (RFC 1624)."""
    old = pkt[at + 8]
    if ttl >= old:
        return
    pkt[at + 8] = ttl
    csum = struct.unpack_from("!H", pkt, at + 10)[0]
    # HC' = ~(~HC + ~m + m') over the 16-bit word holding TTL (high byte) and protocol.
    proto = pkt[at + 9]
    s = (~csum & 0xFFFF) + (~((old << 8) | proto) & 0xFFFF) + ((ttl << 8) | proto)
    s = (s & 0xFFFF) + (s >> 16)
    s = (s & 0xFFFF) + (s >> 16)
    struct.pack_into("!H", pkt, at + 10, ~s & 0xFFFF)


class DataPlane:
    """Encap/decap threads around a `decide` object with two methods, called under
    `core_lock`:

      route(iid, dst_ip, flow_key) -> Decision        packets from the site (ITR)
      decapsulated(iid, dst_ip, outer_src, flow_key) -> Decision   packets from the core

    and, optionally, locator_status(iid, src_ip, outer_src, lsb, width) (called without the
    lock, once per change of a sending RLOC's Locator-Status-Bits), and `counters` (a Counter) for per-packet statistics.

    A packet whose destination misses the map-cache is held (nodes/held.py) while the
    Map-Request is out, and encapsulated when the mapping arrives (`hold_misses`).
    """
    tenants = {}                           # instance ID -> the DataPlane of another tenant
    _decap_local = None                    # per decap thread: Coalescers onto tenants' TUNs
    held = None                            # HeldPackets, or None: misses are dropped
    _release = False                       # the map-cache changed: try the held ones
    _wake = None                           # (read fd, write fd) that wakes the encap loop

    def __init__(self, tun_name, rlocs, iid, decide, core_lock, counters, mtu=1500,
                 known_rlocs=None, log=None, devices=None, lsb=_OWN, hold_misses=True):
        """`log(event, **fields)` reports what goes wrong in the threads (default: a JSON
        line on stderr). `devices` = (TUN fd, raw IPv4 socket, UDP IPv6 socket or None,
        [UDP sockets on port 4341]) replaces the ones opened here (tests, without root);
        then the uplink's offloads are left alone too. `lsb`: the Locator-Status-Bits
        to send (None: L = 0); by default, every one of `rlocs` up (site_lsb).
        `hold_misses`: hold the packets of a map-cache miss until the mapping comes
        (HeldPackets' bounds), rather than drop them."""
        self.tun_name = tun_name
        self.rlocs = [ipaddress.ip_address(r) for r in rlocs]
        self.rloc4 = next((r for r in self.rlocs if r.version == 4), None)
        self.rloc6 = next((r for r in self.rlocs if r.version == 6), None)
        self._src4 = self.rloc4.packed if self.rloc4 else bytes(4)
        self.iid = iid
        self.decide = decide
        self.lock = core_lock
        self.counters = counters
        self.mtu = mtu
        self.known_rlocs = known_rlocs     # callable -> set of addresses, or None
        self.log = log or log_to_stderr
        self.generation = 0                # bumped by the control plane on mapping changes
        self._flows = {}                   # encapsulation: flow key -> entry tuple
        self._dflows = {}                  # decapsulation: flow key -> Decision
        self._lookups = {}                 # inner source EID -> when we asked to resolve it
        self._lsb_seen = {}                # outer source -> the last Locator-Status-Bits
        self.on_lsb = None                 # (outer source, bits) after they reached the core
        self._flows_gen = -1
        self._known = None
        # The LISP header's constant parts (N; I with the instance ID; L with the
        # site's Locator-Status-Bits, all our locators up): the same words as the kernel
        # path's (nodes.lisp.data.header_words).
        self.lsb = site_lsb(self.rlocs, instance_id=iid) if lsb is _OWN else lsb
        self._lisp_flags, self._lisp_word2 = header_words(iid, self.lsb)
        self._stop = threading.Event()
        self.nonce = int.from_bytes(os.urandom(3), "big") | 1
        self.threads = []
        self._reported = set()             # kinds of per-packet errors already logged
        self._died = {}                    # thread -> why it stopped for good
        self._gso_socks = {}               # outer source port -> UDP socket (GSO sends)
        self._udp6_socks = {}              # outer source port -> UDP socket on the IPv6 RLOC
        self._rloc_addrs = {}
        self._batch = []                   # encapsulation: packets for one GSO send
        self._batch_entry = self._batch_ttl = self._batch_tos = None
        self._batch_size = self._batch_max = 0
        self._gso_ok = True
        self._segmenting = []              # uplinks whose tx-udp-segmentation we turned off
        self._decap_local = threading.local()
        if hold_misses:
            self.held = HeldPackets()
            self._wake = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        if devices is None:
            self.tun_fd, self.raw4, self.udp6, self.rx = open_devices(tun_name, self.rlocs)
            self.segment_before_uplinks()
        else:
            self.tun_fd, self.raw4, self.udp6, self.rx = devices

    # --- lifecycle -----------------------------------------------------------------------

    def start(self):
        self.threads = [threading.Thread(target=self._supervise, args=(self._encap_loop,),
                                         name="encap", daemon=True)]
        self.threads += [threading.Thread(target=self._supervise, args=(self._decap_loop, s),
                                          name="decap", daemon=True) for s in self.rx]
        for t in self.threads:
            t.start()

    def stop(self):
        self._stop.set()
        for t in self.threads:
            t.join(timeout=0.5)
        for s in self.rx + [self.raw4] + ([self.udp6] if self.udp6 else []) \
                + [e[0] for e in self._gso_socks.values()] \
                + [x for x in self._udp6_socks.values() if x is not None]:
            s.close()
        for fd in (self.tun_fd, *(self._wake or ())):
            try:
                os.close(fd)               # a non-persistent TUN disappears with its fd
            except OSError:
                pass
        for name in self._segmenting:      # the uplink's offloads as we found them
            try:
                udp_segmentation_on(name)
            except OSError:
                pass
        self._segmenting = []

    # --- health ----------------------------------------------------------------------------

    def _supervise(self, loop, *args):
        """Run a data-plane loop (the body of a thread). The loops catch what goes wrong
        with one packet; should a loop itself fail, it is logged and started again, up to
        MAX_RESTARTS times a minute; beyond that the thread ends, health() says so and
        check() raises, so the daemon does not go on looking healthy."""
        name = threading.current_thread().name
        failures = collections.deque()
        while not self._stop.is_set():
            try:
                loop(*args)
                return                                 # stopped
            except Exception as e:
                if self._stop.is_set():
                    return
                now = time.monotonic()
                failures.append(now)
                while now - failures[0] > 60:
                    failures.popleft()
                self.counters[f"{name}_thread_failures"] += 1
                gave_up = len(failures) > MAX_RESTARTS
                self.log("dataplane_thread_failed", thread=name,
                         error=f"{type(e).__name__}: {e}", at=_where(e),
                         action="stopped" if gave_up else "restarted")
                if gave_up:
                    self._died[threading.current_thread()] = \
                        f"{len(failures)} failures in a minute, the last {type(e).__name__}: {e}"
                    return
                if name == "encap":
                    self._batch = []                   # (what the failed loop held)
                self._stop.wait(0.05)

    def health(self):
        """{"encap": alive, "decap": alive}: whether the encapsulation thread and every
        decapsulation thread (one per RLOC) are running."""
        def alive(name):
            mine = [t for t in self.threads if t.name == name]
            return bool(mine) and all(t.is_alive() for t in mine) and not self._stop.is_set()
        return {"encap": alive("encap"), "decap": alive("decap")}

    def check(self):
        """Raise DataPlaneError when a data-plane thread has stopped while the data plane
        runs (the daemon calls this on every tick, and exits with the message)."""
        if self._stop.is_set() or not self.threads:
            return
        for t in self.threads:
            if not t.is_alive():
                why = self._died.get(t, "it ended")
                self.log("dataplane_thread_dead", thread=t.name, reason=why)
                raise DataPlaneError(f"data plane: the {t.name} thread stopped ({why}); "
                                     f"the node cannot forward, exiting")

    def _error(self, where, exc):
        """An unexpected exception while handling one packet: counted under
        WHERE_errors, logged once per kind (thread, exception type and place), and the
        loop goes on with the next packet."""
        self.counters[f"{where}_errors"] += 1
        kind = (where, type(exc).__name__, _where(exc))
        if kind not in self._reported and len(self._reported) < 64:
            self._reported.add(kind)
            self.log("dataplane_error", thread=where, error=f"{type(exc).__name__}: {exc}",
                     at=kind[2], note=f"logged once; every one is counted in {where}_errors")

    def segment_before_uplinks(self):
        """What leaves the xTR must be wire-sized on every link (issue 10). A UDP GSO
        batch stays one super-packet across veths and routers unless a device segments it,
        so `tx-udp-segmentation` is turned off on the interfaces that hold an RLOC (IPv4
        or IPv6) or carry a default route of its family: the kernel then cuts each batch
        into datagrams before the uplink. If it cannot be turned off (or checked), batches
        are not used: one LISP packet per system call (counted in gso_off_uplink_offload)."""
        if self.rloc4 is None and self.rloc6 is None:
            return
        names, missing = set(), []
        try:
            for rloc, held, defaults in (
                    (self.rloc4, ipv4_interfaces, default_route_interfaces),
                    (self.rloc6, ipv6_interfaces, default_route_interfaces6)):
                if rloc is None:
                    continue
                holders = {n for n, a in held() if a == str(rloc)}
                missing += [] if holders else [str(rloc)]
                names |= holders | set(defaults())
        except OSError as e:
            names, problem = [], f"interfaces unknown: {e}"
        else:
            names = sorted(names)
            problem = f"no interface holds {', '.join(missing)}" if missing else None
        for name in names:
            try:
                was_on, now_off = udp_segmentation_off(name)
            except OSError as e:
                if e.errno is None:
                    continue                   # no such feature: GSO is segmented anyway
                was_on, now_off = True, False
                problem = f"{name}: {e.strerror or e}"
            if was_on and now_off:
                self._segmenting.append(name)
                self.counters["uplink_udp_segmentation_off"] += 1
            elif not now_off:
                problem = problem or f"{name}: {UDP_SEGMENTATION} stays on"
        if problem:
            self._gso_ok = False
            self.counters["gso_off_uplink_offload"] += 1
            self.log("udp_gso_disabled", reason=problem,
                     note="LISP packets leave one per system call")

    def invalidate(self):
        self.generation += 1
        hook = getattr(self, "on_invalidate", None)     # the kernel path's map sync
        if hook is not None:
            hook()
        if self.held is not None and len(self.held):
            self._release = True           # the encap thread sends them (it owns the sockets)
            try:
                os.write(self._wake[1], b"!")
            except OSError:                # full: it is awake anyway
                pass

    # --- encapsulation -----------------------------------------------------------------

    def _encap_loop(self):
        # Non-blocking reads until the queue is empty, then poll: one system call per
        # packet under load, and the stop flag seen within 200 ms when idle.
        buf = bytearray(BUF)
        view = memoryview(buf)
        poller = select.poll()
        poller.register(self.tun_fd, select.POLLIN)
        if self._wake is not None:
            poller.register(self._wake[0], select.POLLIN)
        os.set_blocking(self.tun_fd, False)
        while not self._stop.is_set():
            if self._release:
                try:
                    self.release_held()
                except Exception as e:
                    self._batch = []
                    self._error("encap", e)
            try:
                n = os.readv(self.tun_fd, [buf])
            except BlockingIOError:
                if self._batch:
                    try:
                        self._flush_batch()      # the queue is empty: send what waits
                    except Exception as e:
                        self._batch = []
                        self._error("encap", e)
                poller.poll(200)
                if self._wake is not None:
                    try:
                        os.read(self._wake[0], 4096)
                    except OSError:
                        pass
                continue
            except OSError:
                continue
            if n <= VNET_LEN:
                continue
            try:
                flags, gso_type, _hdr_len, gso_size, csum_start, csum_offset = \
                    VNET.unpack_from(buf)
                pkt = view[VNET_LEN:n]
                if gso_type == GSO_NONE:
                    if flags & F_NEEDS_CSUM:
                        complete_checksum(pkt, csum_start, csum_offset)
                    self.encapsulate(pkt)
                else:
                    self.counters["tun_super_packets_read"] += 1
                    self.encapsulate_super(pkt, gso_type & ~GSO_ECN, gso_size)
            except Exception as e:               # one packet's problem, not the thread's
                self._batch = []
                self._error("encap", e)

    def encapsulate_super(self, pkt, gso_type, mss):
        """A TCP super-packet from the TUN: cut into segments, each in its own LISP packet;
        the segments of one flow to one RLOC leave in one UDP GSO send."""
        if self._batch:
            self._flush_batch()
        segs = tso_segments(pkt, mss)
        if segs is None:
            self.counters["drop_unsegmentable"] += 1
            return
        hdr, payload = segs[0]
        first = bytearray(hdr) + payload
        entry = self._encap_entry(first)
        if entry is None:
            self.counters["drop_not_ip"] += 1
            return
        verb, rloc, sport, nonce, version, _reason, _batchable = entry
        sent = 0
        if verb == "encap" and _batchable and self._gso_ok and len(segs) > 1:
            sent = self.send_gso(segs, rloc, sport, nonce, first)
        for hdr, payload in segs[sent:]:
            self.encapsulate(memoryview(bytearray(hdr) + payload))
        if self._batch:
            self._flush_batch()

    def _gso_socket(self, sport):
        """[socket bound to (our RLOC, sport), its TTL, its TOS], one per outer port."""
        entry = self._gso_socks.get(sport)
        if entry is None:
            if len(self._gso_socks) >= 256:
                self._gso_socks.pop(next(iter(self._gso_socks)))[0].close()
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                s.bind((str(self.rloc4), sport))
            except OSError:
                s.close()
                raise
            entry = self._gso_socks[sport] = [s, None, None]
        return entry

    def _udp6_socket(self, sport):
        """A UDP socket bound to (our IPv6 RLOC, sport), one per outer port (at most 256
        kept), or None when the port is taken."""
        s = self._udp6_socks.get(sport)
        if s is None and sport not in self._udp6_socks:
            if len(self._udp6_socks) >= 256:
                old = self._udp6_socks.pop(next(iter(self._udp6_socks)))
                if old is not None:
                    old.close()
            s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
            try:
                s.bind((self.udp6.getsockname()[0], sport))
            except OSError:
                s.close()
                s = None
            self._udp6_socks[sport] = s
        return s

    def send_gso(self, segs, rloc, sport, nonce, first):
        """Send the LISP packets of `segs` (equal-sized but for the last) with UDP_SEGMENT,
        from outer source port `sport`. Such packets carry a UDP checksum (the kernel's
        segmentation needs one); RFC 9300 5.3 lets an ITR send one and an ETR must accept
        it. Returns how many were sent: the caller sends the rest one by one (the kernel
        refused, e.g. segments larger than the path MTU, or the port is taken). Over an IPv6
        RLOC the same, from the IPv6 socket of the outer port, with the inner hop limit and
        traffic class as ancillary data."""
        lisp = _LISP.pack(self._lisp_flags | nonce, self._lisp_word2)
        size = 8 + len(segs[0][0]) + len(segs[0][1])
        sent = 0
        try:
            ttl, tos = ttl_and_tos(first)
            cmsg = [(SOL_UDP, UDP_SEGMENT, struct.pack("=H", size))]
            if rloc.version == 6:
                s = self._udp6_socket(sport)
                if s is None:
                    return 0                     # the port is taken: one by one
                cmsg += [(socket.IPPROTO_IPV6, socket.IPV6_HOPLIMIT, struct.pack("=i", ttl)),
                         (socket.IPPROTO_IPV6, socket.IPV6_TCLASS, struct.pack("=i", tos))]
            else:
                entry = self._gso_socket(sport)
                s = entry[0]
                if entry[1] != ttl:              # outer TTL and DSCP/ECN from the inner
                    s.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, ttl)
                    entry[1] = ttl
                if entry[2] != tos:
                    s.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, tos)
                    entry[2] = tos
            per_send = max(1, min(GSO_MAX_SEGMENTS, GSO_MAX_PAYLOAD // size))
            addr = (str(rloc), DATA_PORT)
            while sent < len(segs):
                iov = []
                for hdr, payload in segs[sent:sent + per_send]:
                    iov += (lisp, hdr, payload)
                s.sendmsg(iov, cmsg, 0, addr)
                sent = min(len(segs), sent + per_send)
                self.counters["udp_gso_sends"] += 1
        except OSError as e:
            self.counters["gso_send_refused"] += 1
            if e.errno in (errno.EINVAL, errno.EMSGSIZE, errno.ENOPROTOOPT, errno.EOPNOTSUPP):
                self._gso_ok = False             # this kernel or path: one by one from now
        self.counters["packets_encapsulated"] += sent
        return sent

    def _check_generation(self):
        if self._flows_gen != self.generation:
            self._flows.clear()
            self._dflows.clear()
            self._lsb_seen.clear()       # a new mapping starts without the old status
            self._known = None
            self._flows_gen = self.generation

    def _decide(self, key, dst, version, is_decap=False, outer_src=None):
        """The core's decision for a new flow (under the core lock), cached when stable."""
        ip = ipaddress.IPv4Address(dst) if version == 4 else ipaddress.IPv6Address(dst)
        with self.lock:
            if is_decap:
                d = self.decide.decapsulated(self.iid, ip, ipaddress.ip_address(outer_src), key)
            else:
                d = self.decide.route(self.iid, ip, key)
        return d

    def _encap_entry(self, pkt):
        """The flow entry (verb, rloc, sport, nonce, version, reason, batchable) for the
        flow of `pkt`, from the flow cache or the core; None when pkt is not an IP packet.
        `batchable`: encapsulated toward an IPv4 RLOC, or an IPv6 one when this xTR has an
        IPv6 RLOC to send from, so it may leave in a GSO batch."""
        info = flow_of(pkt)
        if info is None:
            return None
        version, src, dst, key, h = info
        self._check_generation()
        entry = self._flows.get(key)
        if entry is None:
            d = self._decide(key, dst, version)
            sport = outer_sport(h)
            self.nonce = (self.nonce * 1103515245 + 12345) & 0xFFFFFF or 1
            entry = (d.verb, d.rloc, sport, self.nonce, version, d.reason or "unknown",
                     d.verb == "encap" and (d.rloc.version == 4 or self.udp6 is not None))
            # Cache what is stable for a flow (not drops: a miss must ask again), under the
            # core's flow key and, for IPv4 TCP/UDP, under the fast path's key too.
            if d.verb in ("encap", "native") and len(self._flows) < 65536:
                self._flows[key] = entry
                fast = _fast_key(pkt)
                if fast is not None:
                    self._flows[fast] = entry
        return entry

    def release_held(self):
        """The map-cache changed: encapsulate the held packets again, oldest first (those
        that still miss are held again, keeping their age)."""
        self._release = False
        before = self.held.expired
        packets = self.held.take()
        for since, _dst, pkt in packets:
            self.encapsulate(memoryview(bytearray(pkt)), held_since=since)
        if self._batch:
            self._flush_batch()
        # (this thread alone holds packets: what the queue has now was held again)
        self.counters["miss_released"] += len(packets) - len(self.held)
        self.counters["miss_held_expired"] += self.held.expired - before

    def _hold(self, pkt, version, since):
        """Keep a packet whose destination missed the map-cache (counted)."""
        dst = bytes(pkt[16:20]) if version == 4 else bytes(pkt[24:40])
        before = self.held.expired
        if self.held.hold(dst, bytes(pkt), since):
            if since is None:                    # held again is not held anew
                self.counters["miss_held"] += 1
        else:
            self.counters["miss_held_refused"] += 1
        self.counters["miss_held_expired"] += self.held.expired - before

    def encapsulate(self, pkt, held_since=None):
        """One packet from the TUN (a memoryview over the read buffer); `held_since`: a
        held packet sent again, held since then."""
        n = len(pkt)
        if n >= 24 and self._flows_gen == self.generation:
            # Fast path: IPv4 TCP/UDP without options, not a fragment, of a known flow.
            vi, tos, _len, _id, frag, ttl, proto, addrs_ports = _FAST.unpack_from(pkt)
            if vi == 0x45 and not frag & 0x3FFF and proto in (6, 17):
                entry = self._flows.get((proto, addrs_ports))
                if entry is not None and entry[6]:
                    # Batch: same flow entry, TTL and DSCP, not longer than the first.
                    batch = self._batch
                    if batch and (entry is not self._batch_entry or ttl != self._batch_ttl
                                  or tos != self._batch_tos or n > self._batch_size):
                        self._flush_batch()
                        batch = self._batch              # (a new, empty list)
                    if not batch:
                        self._batch_entry, self._batch_ttl, self._batch_tos = entry, ttl, tos
                        self._batch_size = n
                        self._batch_max = min(GSO_MAX_SEGMENTS, GSO_MAX_PAYLOAD // (n + 8))
                    batch.append(bytes(pkt))
                    if n < self._batch_size or len(batch) >= self._batch_max:
                        self._flush_batch()      # a shorter packet can only end a batch
                    return
        entry = self._encap_entry(pkt)
        if entry is None:
            self.counters["drop_not_ip"] += 1
            return
        if self._batch:
            self._flush_batch()                  # keep the order of what we send
        verb, rloc, sport, nonce, version, _reason, _batchable = entry
        if verb == "encap":
            self.send_encapsulated(pkt, rloc, sport, nonce)
        elif verb == "native":
            self.send_native(pkt, version)
        elif self.held is not None and _reason == "map-cache miss":
            self._hold(pkt, version, held_since)
        # else: a drop the core decided, and counted under its own name

    def _flush_batch(self):
        """Send the packets queued by the fast path: packets read back to back from the
        TUN for one flow (same RLOC and outer port), size, TTL and DSCP leave in one UDP
        GSO send. The batch is sent as soon as the TUN has nothing more to read, so a
        lone packet waits for nothing."""
        batch, self._batch = self._batch, []
        _verb, rloc, sport, nonce, _version, _reason, _b = self._batch_entry
        sent = self.send_gso([(p, b"") for p in batch], rloc, sport, nonce, batch[0]) \
            if len(batch) > 1 and self._gso_ok else 0
        for p in batch[sent:]:
            self.send_encapsulated(memoryview(p), rloc, sport, nonce)

    def send_encapsulated(self, pkt, rloc, sport, nonce):
        n = len(pkt)
        ttl, tos = ttl_and_tos(pkt)
        try:
            if rloc.version == 4:
                total = 36 + n
                packed, addr = self._rloc_addrs.get(rloc) or self._rloc_addr(rloc)
                hdr = _OUTER4.pack(0x45, tos, total, 0, 0x4000 if total <= self.mtu else 0,
                                   ttl, 17, 0, self._src4, packed,
                                   sport, DATA_PORT, 16 + n, 0,
                                   self._lisp_flags | nonce, self._lisp_word2)
                self.raw4.sendmsg([hdr, pkt], (), 0, addr)
            elif self.udp6 is not None:
                hdr = _LISP.pack(self._lisp_flags | nonce, self._lisp_word2)
                # RFC 9300 5.3/7: the flow's source port, the inner hop limit and traffic
                # class (one socket per outer port, as for GSO; the shared one if the port
                # is taken).
                s = self._udp6_socket(sport) or self.udp6
                cmsg = [(socket.IPPROTO_IPV6, socket.IPV6_HOPLIMIT, struct.pack("=i", ttl)),
                        (socket.IPPROTO_IPV6, socket.IPV6_TCLASS, struct.pack("=i", tos))]
                s.sendmsg([hdr, pkt], cmsg, 0, (str(rloc), DATA_PORT))
            else:
                self.counters["drop_no_ipv6_rloc"] += 1
                return
        except OSError:
            self.counters["drop_send_error"] += 1
            return
        self.counters["packets_encapsulated"] += 1

    def _rloc_addr(self, rloc):
        """(packed address, socket address) of an IPv4 RLOC, cached: a per-packet cost."""
        if len(self._rloc_addrs) > 4096:
            self._rloc_addrs.clear()
        r = self._rloc_addrs[rloc] = (rloc.packed, (str(rloc), 0))
        return r

    def send_native(self, pkt, version):
        try:
            if version == 4:
                dst = socket.inet_ntop(socket.AF_INET, bytes(pkt[16:20]))
                self.raw4.sendto(pkt, (dst, 0))
                self.counters["packets_forwarded_natively"] += 1
                return
        except OSError:
            pass
        self.counters["drop_native_forward"] += 1

    # --- decapsulation -----------------------------------------------------------------

    def _decap_loop(self, sock):
        # The datagrams queued on the socket are read into a ring of DECAP_RING buffers
        # before the Coalescer writes to the TUN: wire-sized LISP packets of one TCP flow
        # (a veth does no GRO) still reach the TUN as one super-packet. Nothing waits: the
        # Coalescer is flushed as soon as the socket has nothing more to read, and before
        # a buffer it may still point into is reused.
        bufs = [bytearray(BUF) for _ in range(DECAP_RING)]
        views = [memoryview(b) for b in bufs]
        slot = 0
        anc = socket.CMSG_SPACE(4) * 2
        out = Coalescer(self._tun_write)
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        while not self._stop.is_set():
            if slot == DECAP_RING:
                self._flush_decap(out)
                slot = 0
            buf, view = bufs[slot], views[slot]
            try:
                n, ancdata, _flags, addr = sock.recvmsg_into([buf], anc)
            except BlockingIOError:
                self._flush_decap(out)             # the queue is empty: write what waits
                slot = 0
                poller.poll(200)
                continue
            except OSError:
                if self._stop.is_set():
                    return
                continue
            if n == 0:                               # an empty datagram: not even a
                self.counters["malformed_data"] += 1   # LISP header (issue 9)
                continue
            outer_ttl, seg = 255, n
            for level, kind, data in ancdata:
                if level == SOL_UDP and kind == UDP_GRO:
                    seg = int.from_bytes(data[:4], sys.byteorder) or n
                elif kind in (IP_TTL, socket.IPV6_HOPLIMIT):
                    outer_ttl = int.from_bytes(data[:4], sys.byteorder)
            try:
                if self.known_rlocs is not None and not self._known_rloc(addr[0]):
                    self.counters["drop_unknown_rloc"] += n // seg + (n % seg > 0)
                    self._look_up_source(buf, min(seg, n), addr[0])
                    continue
            except Exception as e:
                self._error("decap", e)
                continue
            slot += 1                                # `out` may point into buf from here
            # Several LISP packets when the kernel coalesced them (UDP_GRO), each `seg`
            # bytes but the last; their inner packets go to the TUN through `out`.
            if seg < n:
                self.counters["udp_gro_batches"] += 1
            for at in range(0, n, seg):
                try:
                    self.decapsulate(buf, view, at, min(at + seg, n), addr[0], outer_ttl,
                                     out)
                except Exception as e:           # one packet's problem, not the thread's
                    self._error("decap", e)

    def _flush_decap(self, out):
        for o in [out] + list(getattr(self._decap_local, "outs", {}).values()):
            try:
                o.flush()
            except Exception as e:
                o.pending = []                   # (views of buffers about to be reused)
                self._error("decap", e)

    def _tenant_out(self, other):
        """This decap thread's Coalescer onto another tenant's TUN (flushed with ours)."""
        outs = getattr(self._decap_local, "outs", None)
        if outs is None:
            outs = self._decap_local.outs = {}
        out = outs.get(other.iid)
        if out is None:
            out = outs[other.iid] = Coalescer(other._tun_write)
        return out

    def _tun_write(self, buffers):
        try:
            os.writev(self.tun_fd, buffers)
        except OSError:
            if len(buffers) > 2:                 # the Coalescer writes them one by one
                self.counters["tun_super_packets_refused"] += 1
            else:
                self.counters["drop_tun_write"] += 1
            return False
        if len(buffers) > 2:
            self.counters["tun_super_packets_written"] += 1
        return True

    def _look_up_source(self, buf, end, outer_src):
        """A packet from an RLOC not in our map-cache was dropped (decap_known_rlocs_only):
        ask the control plane to resolve its inner source EID, at most once a second per
        EID, so that the sender's locators become known and its next packets pass."""
        ask = getattr(self.decide, "unknown_rloc", None)
        if ask is None or end < 8 + 20:
            return
        v = buf[8] >> 4
        if v == 4:
            src = ipaddress.IPv4Address(bytes(buf[20:24]))
        elif v == 6 and end >= 8 + 40:
            src = ipaddress.IPv6Address(bytes(buf[16:32]))
        else:
            return
        iid = (buf[4] << 16 | buf[5] << 8 | buf[6]) if buf[0] & 0x08 else self.iid
        now = time.monotonic()
        last = self._lookups.get(src)
        if last is not None and now - last < 1.0:
            return
        if len(self._lookups) >= 4096:
            self._lookups.clear()
        self._lookups[src] = now
        self.counters["unknown_rloc_lookups"] += 1
        ask(iid, src, outer_src)

    def _known_rloc(self, outer_src):
        self._check_generation()
        if self._known is None:
            self._known = {str(a) for a in self.known_rlocs()}
        return outer_src in self._known

    def _locator_status(self, buf, i, version, outer_src, lsb, width):
        """Tell the core the Locator-Status-Bits that `outer_src` now sends, with the inner
        source of the packet that carried them (their site's EID)."""
        tell = getattr(self.decide, "locator_status", None)
        if tell is None:
            return
        if len(self._lsb_seen) >= 4096:
            self._lsb_seen.clear()
        self._lsb_seen[outer_src] = lsb
        src = bytes(buf[i + 12:i + 16]) if version == 4 else bytes(buf[i + 8:i + 24])
        self.counters["lsb_changes_seen"] += 1
        tell(self.iid, ipaddress.ip_address(src), ipaddress.ip_address(outer_src), lsb, width)

    def decapsulate(self, buf, view, at, end, outer_src, outer_ttl, out):
        """One LISP packet in `buf[at:end]`: LISP header, then the inner packet, which is
        handed to `out` (a Coalescer), re-encapsulated, or dropped."""
        i = at + 8                                   # the inner packet
        if end - i < 20:
            self.counters["malformed_data"] += 1
            return
        if buf[at] & 0x08:
            iid = (buf[at + 4] << 16) | (buf[at + 5] << 8) | buf[at + 6]
            if iid != self.iid:
                other = self.tenants.get(iid)
                if other is None:
                    self.counters["drop_wrong_instance_id"] += 1
                    return
                # another tenant's packet: its data plane decides and writes it to its TUN
                other.decapsulate(buf, view, at, end, outer_src, outer_ttl,
                                  self._tenant_out(other))
                return
        inner = view[i:end]
        v = buf[i] >> 4
        if v == 4:
            if outer_ttl < buf[i + 8]:
                set_ipv4_ttl(buf, outer_ttl, i)
        elif v == 6 and end - i >= 40:
            if outer_ttl < buf[i + 7]:
                buf[i + 7] = outer_ttl
        else:
            self.counters["malformed_data"] += 1
            return
        key = _fast_key(inner)
        if self._flows_gen != self.generation:
            self._check_generation()
        if buf[at] & 0x40:          # L: the source site's Locator-Status-Bits (RFC 9300 5.3)
            wide = not buf[at] & 0x08
            lsb = int.from_bytes(buf[at + 4:at + 8], "big") if wide else buf[at + 7]
            if self._lsb_seen.get(outer_src) != lsb:
                self._locator_status(buf, i, v, outer_src, lsb, 32 if wide else 8)
            if self.on_lsb is not None:  # the kernel path: these bits may stay there now
                self.on_lsb(outer_src, lsb)
        d = self._dflows.get(key) if key is not None else None
        h = None
        if d is None:
            info = flow_of(inner)
            if info is None:
                self.counters["malformed_data"] += 1
                return
            version, src, dst, fkey, h = info
            d = self._decide(fkey, dst, version, True, outer_src)
            # Only "deliver" is cached: every packet for a moved host must reach the core,
            # which answers it with rate-limited SMRs and re-encapsulates it.
            if d.verb in ("deliver", "native") and key is not None and len(self._dflows) < 65536:
                self._dflows[key] = d
        if d.verb in ("deliver", "native"):
            out.add(inner)
            self.counters["packets_decapsulated"] += 1
        elif d.verb == "encap":
            self.counters["packets_decapsulated"] += 1
            if h is None:       # (re-encapsulation is never cached, so h is known here)
                h = flow_of(inner)[4]
            self.send_encapsulated(inner, d.rloc, outer_sport(h), self.nonce)
        # else: a drop the core decided, and counted under its own name

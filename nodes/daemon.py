"""The node daemon: one per lab node, in its network namespace.

    python -m nodes.daemon CONFIG.toml

It runs the sans-I/O core (nodes.lisp) behind real I/O:
  - control plane: UDP 4342 (IPv4 and IPv6) on the asyncio event loop, a 100 ms timer
    that drives retransmissions, registrations and expiry, and a local control socket
    for `lisp-lab show`. Registrations go ahead of requests: per family two sockets of
    one SO_REUSEPORT group, between which the kernel steers each datagram by its LISP
    type (a BPF program), so a Map-Request flood fills only the request socket's buffer
    and never delays or drops a Map-Register or Map-Notify(-Ack) (issue 9); what the
    kernel dropped is counted (control_requests_socket_drops, ..._priority_...);
  - data plane (xTR and proxy xTR): the TUN device and the encap/decap threads of
    nodes.dataplane, kept off the event loop;
  - the kernel: forwarding on, rp_filter off, and the routes the core asks for
    (pyroute2), all removed again at exit;
  - the LAN (xTR with [[dynamic_eid]]): the anycast gateway (address and MAC) on each
    dynamic-EID interface, arp_accept, proxy ARP when asked, all put back at exit; and host
    detection: an AF_PACKET socket per interface and family on the event loop hears ARP
    (IPv4) and neighbour solicitations/advertisements (IPv6), and every source address is
    handed to the core (Etr.host_seen), which registers it when it lies inside a
    dynamic-EID range and counts it (dynamic_eid_rejected) otherwise;
  - a structured event log, one JSON object per line.

One daemon per node: a second one started in the same network namespace stops with one
line naming the first (pid and command line) before it touches anything. At exit a daemon
removes only what it created (a route or rule that was there before it stays).

IPv4 or IPv6: the LISP table and rules are set up for the address families of the node's
EIDs only; IPv6 EIDs where IPv6 is disabled are skipped with one line saying so.

SIGTERM or SIGINT: the daemon removes its routes, rules and TUN device, puts the LAN
interfaces back as it found them (addresses, MAC, sysctls) and exits within a second, also
under a flood. A bad config file stops it with one line naming the key and the reason.
"""
import asyncio
import ctypes
import errno
import ipaddress
import os
import signal
import socket
import struct
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from .config import ConfigError, build_core, dataplane_iid, load_config
from .control import health_counters, map_cache_rows, registration_rows, start_control_server
from .eventlog import EventLog
from .lisp.actions import Decision, Event, ProbeHost, RouteAdd, RouteDel, SendControl
from .lisp.errors import LispEncodeError
from .lisp.messages import EncapsulatedControl, decode
from .lisp.sim import describe

CONTROL_PORT = 4342
LISP_TABLE = 100          # the table LAN traffic falls back to: default route into the TUN
TENANT_TABLE = 1000       # + instance ID: a tenant's table (its LANs, default into its TUN)
RULE_PRIORITY = 100
# Events of the core after which the data plane's cached per-flow decisions may be wrong
# (route actions flush them too).
# The kernel path's tries are synced with the core at most once per this many seconds
# in a burst of changes (the first change of a burst at once).
KERNEL_SYNC_GAP_S = 0.02

MAPPING_EVENTS = frozenset({"map_cache_installed", "map_cache_published", "map_cache_expired",
                            "eid_away", "dynamic_eid_detected", "dynamic_eid_removed",
                            "dynamic_eid_aged_out",
                            "rloc_down", "rloc_up",       # RLOC-probing (lisp/probing.py)
                            "locator_status_changed"})    # received LSBs (lisp/itr.py)


def sysctl(path, value):
    try:
        with open("/proc/sys/" + path, "w") as f:
            f.write(str(value))
    except OSError:
        pass


def ipv6_enabled():
    """False when this network namespace has IPv6 off (or no IPv6 at all)."""
    return read_sysctl("net/ipv6/conf/all/disable_ipv6") not in ("1", None)


def read_sysctl(path):
    """The value of /proc/sys/`path` (a string), or None when it does not exist."""
    try:
        with open("/proc/sys/" + path) as f:
            return f.read().strip()
    except OSError:
        return None


# --- the LAN: host detection --------------------------------------------------------------

ETH_P_ARP = 0x0806
ETH_P_IPV6 = 0x86DD
PACKET_OUTGOING = 4           # sll_pkttype of a frame this host sent
SO_ATTACH_FILTER = 26
IFA_F_NODAD = 0x02
HOST_SEEN_INTERVAL = 0.1      # at most one host_seen per (interface, source) in this time
LAN_BURST = 64                # frames read per wake-up, so the control plane keeps its turn
ICMPV6_NS, ICMPV6_NA = 135, 136

# Classic BPF for the IPv6 socket (SOCK_DGRAM: offsets count from the IPv6 header): pass
# ICMPv6 (next header 58, no extension header) of type 135 or 136, drop everything else,
# so that the daemon wakes up for neighbour discovery only, not for every IPv6 packet.
_BPF_ND = [
    (0x30, 0, 0, 6),                  # ldb [6]          next header
    (0x15, 0, 4, 58),                 # jeq #58 ? next : drop
    (0x30, 0, 0, 40),                 # ldb [40]         ICMPv6 type
    (0x15, 1, 0, ICMPV6_NS),          # jeq #135 ? accept : next
    (0x15, 0, 1, ICMPV6_NA),          # jeq #136 ? accept : drop
    (0x06, 0, 0, 0xFFFF),             # accept
    (0x06, 0, 0, 0),                  # drop
]


def attach_filter(sock, program, option=SO_ATTACH_FILTER):
    """Attach a classic BPF `program` (a list of (code, jt, jf, k)) to `sock` (or, with
    `option` SO_ATTACH_REUSEPORT_CBPF, to its SO_REUSEPORT group)."""
    insns = ctypes.create_string_buffer(b"".join(struct.pack("HBBI", *i) for i in program))
    fprog = struct.pack("HL", len(program), ctypes.addressof(insns))
    sock.setsockopt(socket.SOL_SOCKET, option, fprog)    # the kernel copies it


def arp_sender(payload):
    """The sender IPv4 address of an ARP request or reply (Ethernet, IPv4), or None.
    A gratuitous ARP is a request or reply whose sender and target addresses are equal."""
    if len(payload) < 28:
        return None
    _htype, ptype, hlen, plen, op = struct.unpack_from("!HHBBH", payload)
    if ptype != 0x0800 or hlen != 6 or plen != 4 or op not in (1, 2):
        return None
    return ipaddress.IPv4Address(bytes(payload[14:18]))


def arp_request_target(payload):
    """The target IPv4 address of an ARP request, or None."""
    if len(payload) < 28 or struct.unpack_from("!H", payload, 6)[0] != 1:
        return None
    return ipaddress.IPv4Address(bytes(payload[24:28]))


def bpf_ipv4_to_mac(mac):
    """Classic BPF (raw Ethernet frames): accept IPv4 frames whose destination is `mac`
    (6 bytes), keeping their first 64 bytes; drop the rest."""
    hi, lo = struct.unpack("!IH", mac)
    return [(0x20, 0, 0, 0), (0x15, 0, 5, hi),          # ld [0]; jeq hi ? : drop
            (0x28, 0, 0, 4), (0x15, 0, 3, lo),          # ldh [4]; jeq lo ? : drop
            (0x28, 0, 0, 12), (0x15, 0, 1, 0x0800),     # ldh [12]; jeq IPv4 ? : drop
            (0x06, 0, 0, 64), (0x06, 0, 0, 0)]          # ret 64; ret 0


def nd_sender(packet):
    """The address an IPv6 neighbour solicitation (its source) or advertisement (its target:
    the address the sender announces, whatever its source) speaks for, or None. Only
    packets with hop limit 255 count (RFC 4861 7.1: they come from the link itself)."""
    if len(packet) < 64 or packet[0] >> 4 != 6 or packet[6] != 58 or packet[7] != 255:
        return None
    kind = packet[40]
    if kind == ICMPV6_NS:
        return ipaddress.IPv6Address(bytes(packet[8:24]))
    if kind == ICMPV6_NA:
        return ipaddress.IPv6Address(bytes(packet[48:64]))
    return None


def host_address(ip):
    """True when `ip` can be a host's own address (not ::, 0.0.0.0 (an ARP probe, DAD),
    multicast, loopback, link-local or the IPv4 broadcast address)."""
    return not (ip.is_unspecified or ip.is_multicast or ip.is_loopback or ip.is_link_local
                or (ip.version == 4 and ip.packed == b"\xff" * 4))


def garp(mac, ip):
    """A gratuitous ARP (request form) announcing that `ip` is at `mac` (bytes)."""
    return struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, mac, ip.packed, bytes(6),
                       ip.packed)


def unsolicited_na(mac, ip):
    """An unsolicited neighbour advertisement (ICMPv6 message; the kernel fills in the
    checksum) announcing router `ip` at `mac`: flags R and O, target link-layer option."""
    return struct.pack("!BBHI16sBB6s", ICMPV6_NA, 0, 0, 0xA0000000, ip.packed, 2, 1, mac)


class Routes:
    """Kernel routes and rules the daemon created, and the addresses, MACs and sysctls it
    set on the LAN, so it can remove or put back exactly those.

    pyroute2's IPRoute runs an event loop of its own, so it lives on one worker thread of
    its own: route changes are queued there in order and never block the control plane."""

    def __init__(self):
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="netlink")
        self.ipr = self.call(self._open)
        self.routes = {}       # (table, dst) -> kwargs, of the routes we created
        self.foreign = set()   # (table, dst) of routes that were there before us
        self.rules = []
        self.addresses = []    # kwargs of the addresses we added
        self.macs = {}         # ifindex -> the MAC it had before
        self.sysctls = {}      # path -> the value it had before

    @staticmethod
    def _open():
        from pyroute2 import IPRoute
        return IPRoute()

    def call(self, fn, *args, **kw):
        """Run fn on the netlink thread and wait for its result."""
        return self.pool.submit(fn, *args, **kw).result()

    def submit(self, fn, *args, **kw):
        """Queue fn on the netlink thread without waiting (fn handles its own errors)."""
        return self.pool.submit(fn, *args, **kw)

    def ifindex(self, name):
        found = self.ipr.link_lookup(ifname=name)
        if not found:
            raise OSError(f"no interface {name}")
        return found[0]

    def route(self, dst, dev, table=254):
        """Route `dst` to `dev` in `table`. A route of ours is replaced; a route to the same
        destination that was there before us is replaced too (the core decided), but it is
        not ours: close() and unroute() leave it."""
        from pyroute2.netlink.exceptions import NetlinkError
        dst = ipaddress.ip_network(dst)
        kw = dict(dst=str(dst), oif=self.ifindex(dev), table=table,
                  family=socket.AF_INET if dst.version == 4 else socket.AF_INET6)
        key = (table, dst)
        if key in self.routes or key in self.foreign:
            self.ipr.route("replace", **kw)
            if key in self.routes:
                self.routes[key] = kw
            return
        try:
            self.ipr.route("add", **kw)
        except NetlinkError as e:
            if e.code != errno.EEXIST:
                raise
            self.ipr.route("replace", **kw)
            self.foreign.add(key)
            return
        self.routes[key] = kw

    def unroute(self, dst, table=254):
        key = (table, ipaddress.ip_network(dst))
        self.foreign.discard(key)
        kw = self.routes.pop(key, None)
        if kw is not None:
            try:
                self.ipr.route("del", **kw)
            except Exception:
                pass

    def rule(self, **kw):
        """Add a rule; one that is there already (identical) is not ours and stays at
        close. Returns True when we added it."""
        from pyroute2.netlink.exceptions import NetlinkError
        try:
            self.ipr.rule("add", **kw)
        except NetlinkError as e:
            if e.code != errno.EEXIST:
                raise
            return False
        self.rules.append(kw)
        return True

    def set_sysctl(self, path, value):
        """Set /proc/sys/`path`, remembering the value it had (put back by close)."""
        old = read_sysctl(path)
        if old is None:
            return
        self.sysctls.setdefault(path, old)
        sysctl(path, value)

    def mac(self, index):
        """The MAC address of interface `index` ("aa:bb:..."), or None."""
        return self.ipr.get_links(index)[0].get_attr("IFLA_ADDRESS")

    def set_mac(self, index, mac):
        """Give interface `index` the MAC `mac`, remembering the one it had."""
        old = self.mac(index)
        if old is None or old.lower() == mac.lower():
            return
        from pyroute2.netlink.exceptions import NetlinkError
        try:
            self.ipr.link("set", index=index, address=mac)
        except NetlinkError as e:          # a device that cannot change it while up
            if e.code != errno.EBUSY:
                raise
            self.ipr.link("set", index=index, state="down")
            self.ipr.link("set", index=index, address=mac)
            self.ipr.link("set", index=index, state="up")
        self.macs.setdefault(index, old)

    def add_address(self, index, iface):
        """Add address `iface` (an ip_interface) to interface `index` (IPv6 without duplicate
        address detection). An address that is already there is left as it is, and is not
        removed at close: it is not ours."""
        from pyroute2.netlink.exceptions import NetlinkError
        kw = dict(index=index, address=str(iface.ip), prefixlen=iface.network.prefixlen,
                  family=socket.AF_INET if iface.version == 4 else socket.AF_INET6)
        if iface.version == 6:
            kw["flags"] = IFA_F_NODAD
        try:
            self.ipr.addr("add", **kw)
        except NetlinkError as e:
            if e.code != errno.EEXIST:
                raise
            return
        self.addresses.append(kw)

    def local_addresses(self):
        """Every address of every interface of this namespace."""
        out = set()
        for msg in self.ipr.get_addr():
            for attr in ("IFA_ADDRESS", "IFA_LOCAL"):
                value = msg.get_attr(attr)
                if value:
                    out.add(ipaddress.ip_address(value.split("%")[0]))
        return out

    def _close(self):
        try:
            devices = {link["index"] for link in self.ipr.get_links()}
        except Exception:
            devices = None
        for kw in reversed(self.rules):
            try:
                self.ipr.rule("del", **kw)
            except Exception:
                pass
        for kw in list(self.routes.values()):
            if devices is not None and kw["oif"] not in devices:
                continue    # the kernel removed it with its device (the TUN): no call each
            try:
                self.ipr.route("del", **kw)
            except Exception:
                pass
        for kw in reversed(self.addresses):
            try:
                self.ipr.addr("del", **{k: v for k, v in kw.items() if k != "flags"})
            except Exception:
                pass
        for index, mac in self.macs.items():
            try:
                self.ipr.link("set", index=index, address=mac)
            except Exception:
                pass
        for path, value in self.sysctls.items():
            sysctl(path, value)
        self.routes.clear()
        self.rules.clear()
        self.addresses.clear()
        self.macs.clear()
        self.sysctls.clear()
        self.ipr.close()

    def close(self):
        try:
            self.call(self._close)
        finally:
            self.pool.shutdown(wait=True)


# --- the control port: registrations ahead of requests -----------------------------------

SO_ATTACH_REUSEPORT_CBPF = 51
# Classic BPF run by the kernel on each datagram to 4342 (from the UDP payload on) to choose
# the socket of our SO_REUSEPORT group: Map-Reply, Map-Register, Map-Notify and
# Map-Notify-Ack (types 2 to 5) to socket 1, the priority socket; Map-Requests, ECMs and
# everything else (an empty datagram too: a load past the end returns 0) to socket 0.
_BPF_STEER = [
    (0x30, 0, 0, 0),                  # ldb [0]          type << 4 | flags
    (0x74, 0, 0, 4),                  # rsh #4
    (0x35, 0, 2, 2),                  # jge #2 ? next : requests
    (0x25, 1, 0, 5),                  # jgt #5 ? requests : priority
    (0x06, 0, 0, 1),                  # ret #1           priority
    (0x06, 0, 0, 0),                  # ret #0           requests
]


def control_sockets(family):
    """The bound UDP sockets of the control port for `family`: {"requests": s, "priority":
    s}, two sockets of one SO_REUSEPORT group between which the kernel steers each datagram
    by its LISP type (_BPF_STEER), so that a flood of Map-Requests fills the request
    socket's receive buffer only and never delays or drops a Map-Register or a
    Map-Notify(-Ack) (issue 9: "registrations processed ahead of requests"); the event loop
    reads both sockets in turn. Where the kernel cannot steer, one socket: {"priority": s}.

    Only this daemon joins the group: claim_namespace refused any second daemon before."""
    addr = ("0.0.0.0" if family == socket.AF_INET else "::", CONTROL_PORT)

    def one(reuse):
        s = socket.socket(family, socket.SOCK_DGRAM)
        try:
            if family == socket.AF_INET6:
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            if reuse:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            s.bind(addr)
            s.setblocking(False)
        except OSError:
            s.close()
            raise
        return s

    try:
        requests = one(True)                   # index 0 of the group
    except OSError:
        return {"priority": one(False)}
    priority = None
    try:
        priority = one(True)                   # index 1
        attach_filter(requests, _BPF_STEER, SO_ATTACH_REUSEPORT_CBPF)
    except OSError:
        for s in (requests, priority):
            if s is not None:
                s.close()
        return {"priority": one(False)}
    return {"requests": requests, "priority": priority}


def control_socket_drops(socks):
    """{kind: datagrams the kernel dropped on that control socket} (the drops column of
    /proc/net/udp and /proc/net/udp6, by socket inode)."""
    inodes = {}
    for kind, sock in socks:
        try:
            inodes[str(os.fstat(sock.fileno()).st_ino)] = kind
        except OSError:
            continue
    out = Counter({kind: 0 for kind, _ in socks})
    for path in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            with open(path) as f:
                next(f, None)
                for line in f:
                    parts = line.split()
                    if len(parts) >= 13 and parts[9] in inodes:
                        out[inodes[parts[9]]] += int(parts[12])
        except OSError:
            continue
    return out


class ControlProtocol(asyncio.DatagramProtocol):
    def __init__(self, daemon):
        self.daemon = daemon

    def datagram_received(self, data, addr):
        # The port too: answers go to the port a request came from (RFC 9301 section 5).
        self.daemon.on_control(data, addr[0], addr[1])


class Daemon:
    def __init__(self, cfg):
        self.cfg = cfg
        self.core = build_core(cfg)
        self.lock = threading.Lock()
        self.log = EventLog(cfg.event_log, cfg.name)
        self.io_counters = Counter()
        self.loop = None
        self.transports = {}             # IP version -> the transport we send from
        self.extra_transports = []       # the request sockets' transports (receive only)
        self.control_socks = []          # ("priority" | "requests", socket) on 4342
        self.routes = None
        self.dataplane = None
        self.tenant_planes = {}  # instance ID -> DataPlane of a [[tenant]]
        self.kernelpath = None           # the tc-BPF fast path (nodes/kernelpath.py), if on
        self.stopping = None
        self.signalled = None            # the signal that asked us to stop
        self.started = time.monotonic()
        self.lan_sockets = []            # (socket, interface, family or "frames")
        self.detect_gateway = set()      # interfaces in detect = "gateway" mode
        self.lan_last = {}               # (interface, ip) -> when we last told the core
        self.seen_on = {}                # (iid, ip) -> the interface a host was seen on
        self.own_addresses = set()       # never taken for a host on the LAN

    # --- the core's actions --------------------------------------------------------

    def now(self):
        return time.monotonic()

    def execute(self, actions):
        for a in actions:
            if isinstance(a, SendControl):
                self.send(a)
            elif isinstance(a, (RouteAdd, RouteDel)):
                self.program(a)
            elif isinstance(a, ProbeHost):
                self.probe_host(a.iid, a.ip)
            elif isinstance(a, Event):
                if a.name in MAPPING_EVENTS:
                    # e.g. a Map-Reply that replaced the RLOCs of an entry we had (after an
                    # SMR): no route changes, but the data plane's per-flow decisions must go
                    for plane in self.planes():
                        plane.invalidate()
                self.log.write(a.name, **a.fields)

    def send(self, a):
        try:
            data = a.wire()
        except LispEncodeError as e:
            self.io_counters["encode_errors"] += 1
            self.log.write("encode_error", error=str(e))
            return
        try:
            dst = ipaddress.ip_address(a.dst)
        except ValueError as e:       # a core bug: counted and logged like one, never a traceback
            self.io_counters["control_errors"] += 1
            self.log.write("control_error", error=f"send to {a.dst!r}: {e}",
                           type=describe(a.message))
            return
        transport = self.transports.get(dst.version)
        if transport is None:
            self.io_counters["send_no_socket"] += 1
            return
        transport.sendto(data, (str(dst), a.dport))
        self.io_counters["control_sent"] += 1
        self.log.write("control_sent", to=str(dst), type=describe(a.message),
                       nonce=self._nonce(a.message), bytes=len(data))

    @staticmethod
    def _nonce(msg):
        inner = msg.message if isinstance(msg, EncapsulatedControl) else msg
        return f"{inner.nonce:016x}"

    def program(self, a):
        """Carry out a route action of the core (queued on the netlink thread)."""
        if self.routes is None or self.cfg.role == "msmr":
            return
        for plane in self.planes():
            plane.invalidate()
        if a.iid in self.tenant_planes:
            return           # a tenant's table sends all but its own EIDs into its TUN
        self.routes.submit(self._program, a)

    def _program(self, a):
        if self.is_stopping():
            return           # route changes still queued at stop: the clean-up follows
        try:
            if isinstance(a, RouteAdd):
                if a.kind == "lisp":
                    self.routes.route(a.prefix, self.cfg.tun, LISP_TABLE)
                elif a.kind == "away":
                    self.routes.route(a.prefix, self.cfg.tun)
                elif a.kind == "local":
                    dev = self.lan_for(a.iid, a.prefix)
                    if dev:
                        self.routes.route(a.prefix, dev)
            else:
                table = LISP_TABLE if a.kind == "lisp" else 254
                self.routes.unroute(a.prefix, table)
            self.log.write("route_" + ("add" if isinstance(a, RouteAdd) else "del"),
                           prefix=str(a.prefix), kind=a.kind, iid=a.iid)
        except Exception as e:   # a route the kernel refuses must not stop the node
            self.io_counters["route_errors"] += 1
            self.log.write("route_error", prefix=str(a.prefix), kind=a.kind, error=str(e))

    def lan_for(self, iid, prefix):
        if prefix.prefixlen == prefix.max_prefixlen:
            seen = self.seen_on.get((iid, prefix.network_address))
            if seen is not None:
                return seen
        for d in self.cfg.dynamic_eids:
            if d.iid == iid and prefix.version == d.prefix.version and prefix.subnet_of(d.prefix):
                return d.interface
        return self.cfg.lan_interfaces[0] if self.cfg.lan_interfaces else None

    # --- control plane ---------------------------------------------------------------

    def on_control(self, data, src, port=CONTROL_PORT):
        self.io_counters["control_received"] += 1
        src_ip = ipaddress.ip_address(src.split("%")[0])
        if src_ip.version == 6 and src_ip.ipv4_mapped:
            src_ip = src_ip.ipv4_mapped
        try:
            kind = describe(decode(data))
        except Exception:
            kind = "malformed"
        self.log.write("control_received", frm=str(src_ip), type=kind, bytes=len(data))
        try:
            with self.lock:
                actions = self.core.receive(data, src_ip, self.now(), port)
        except Exception as e:        # a bug for one datagram must not go unnoticed: count
            self.io_counters["control_errors"] += 1
            if self.io_counters["control_errors"] <= 20:        # the first ones only
                self.log.write("control_error", frm=str(src_ip), bytes=len(data),
                               error=f"{type(e).__name__}: {e}",
                               data=bytes(data[:64]).hex())
            return
        self.execute(actions)

    def tick(self):
        with self.lock:
            actions = self.core.tick(self.now())
        self.execute(actions)

    def call_from_thread(self, actions):
        if actions:
            self.loop.call_soon_threadsafe(self.execute, actions)

    # --- data-plane decisions (called from the data threads) ----------------------

    def route(self, iid, dst, flow):
        decision, actions = self.core.route(iid, dst, self.now(), flow,
                                            src=flow_source(flow, dst.version))
        self.call_from_thread(actions)
        return decision

    def decapsulated(self, iid, dst, outer_src, flow):
        if self.cfg.role == "pxtr":
            return Decision("deliver")     # proxy ETR: forward natively via the kernel
        decision, actions = self.core.decapsulated(iid, dst, outer_src, self.now(), flow,
                                                   src=flow_source(flow, dst.version))
        self.call_from_thread(actions)
        return decision

    def locator_status(self, iid, src, outer_src, lsb, width):
        """Locator-Status-Bits that changed on packets from `outer_src` (the data plane
        calls this once per change): the core marks the sending site's locators."""
        if self.cfg.role != "xtr":
            return
        with self.lock:
            actions = self.core.locator_status(iid, src, outer_src, lsb, self.now(), width)
        self.call_from_thread(actions)

    def unknown_rloc(self, iid, src, outer_src):
        """decap_known_rlocs_only dropped a packet from an RLOC we do not know: look up its
        inner source, so that the sender's locator set is learnt and its next packets are
        decapsulated (the data plane asks at most once a second per source)."""
        if self.cfg.role != "xtr":
            return
        with self.lock:
            actions = self.core.itr.request(iid, src, self.now())
        self.call_from_thread(actions)

    def known_rlocs(self):
        with self.lock:
            return {loc.address for e in self.core.itr.cache for loc in e.locators}

    # --- the LAN: anycast gateway, proxy ARP, host detection ---------------------------

    def lan_families(self):
        """{interface: {4, 6}}: the address families of the dynamic-EID ranges per LAN."""
        out = {}
        for d in self.cfg.dynamic_eids:
            out.setdefault(d.interface, set()).add(d.prefix.version)
        return out

    def _setup_lan(self):
        """(netlink thread) The anycast gateways, the MACs and the sysctls of the LAN
        interfaces; returns {interface: MAC bytes} and our own addresses."""
        cfg, r = self.cfg, self.routes
        for ifname, families in self.lan_families().items():
            idx = r.ifindex(ifname)
            # A gratuitous ARP then creates a neighbour entry (and a netlink event) too.
            r.set_sysctl(f"net/ipv4/conf/{ifname}/arp_accept", 1)
            blocks = [d for d in cfg.dynamic_eids if d.interface == ifname]
            mac = next((d.gateway_mac for d in blocks if d.gateway_mac), None)
            if mac:
                r.set_mac(idx, mac)
            if any(d.gateway is not None and d.gateway.version == 6 for d in blocks):
                r.set_sysctl(f"net/ipv6/conf/{ifname}/accept_dad", 0)
            for d in blocks:
                if d.gateway is not None:
                    r.add_address(idx, d.gateway)
        if cfg.proxy_arp:
            for ifname in cfg.lan_interfaces:
                r.set_sysctl(f"net/ipv4/conf/{ifname}/proxy_arp", 1)
                # answer at once, not after a random wait of up to 0.8 s
                r.set_sysctl(f"net/ipv4/neigh/{ifname}/proxy_delay", 0)
        macs = {ifname: bytes.fromhex(r.mac(r.ifindex(ifname)).replace(":", ""))
                for ifname in self.lan_families()}
        own = r.local_addresses() | {d.gateway.ip for d in cfg.dynamic_eids if d.gateway}
        return macs, own

    def start_lan(self):
        """Gateways and sysctls (netlink thread), then one AF_PACKET socket per dynamic-EID
        interface and family on the event loop, then one announcement per gateway."""
        families = self.lan_families()
        if not families or self.cfg.role != "xtr":
            if self.cfg.proxy_arp:
                self.routes.call(self._setup_lan)
            return
        macs, self.own_addresses = self.routes.call(self._setup_lan)
        self.detect_gateway = {d.interface for d in self.cfg.dynamic_eids
                               if d.detect == "gateway"}
        for ifname, fams in families.items():
            for family in sorted(fams):
                sock = self.open_lan_socket(ifname, family)
                self.lan_sockets.append((sock, ifname, family))
                self.loop.add_reader(sock.fileno(), self.on_lan, sock, ifname, family)
        for d in self.cfg.dynamic_eids:
            if d.detect == "gateway" and d.prefix.version == 4:
                mac = bytes.fromhex((d.detect_mac or d.gateway_mac).replace(":", ""))
                sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
                attach_filter(sock, bpf_ipv4_to_mac(mac))
                sock.bind((d.interface, 0x0800))
                sock.setblocking(False)
                self.lan_sockets.append((sock, d.interface, "frames"))
                self.loop.add_reader(sock.fileno(), self.on_gateway_frames, sock, d.interface)
        for d in self.cfg.dynamic_eids:
            if d.gateway is not None:
                self.announce_gateway(d.interface, macs[d.interface], d.gateway.ip)

    @staticmethod
    def open_lan_socket(ifname, family):
        """A non-blocking AF_PACKET socket (cooked: payload from the network header on) that
        receives the ARP packets (IPv4) or the neighbour solicitations and advertisements
        (IPv6, through a BPF filter) of `ifname`."""
        proto = ETH_P_ARP if family == 4 else ETH_P_IPV6
        # Protocol 0 until bind: nothing is queued before the filter is in place.
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, 0)
        try:
            if family == 6:
                attach_filter(sock, _BPF_ND)
            sock.bind((ifname, proto))
            sock.setblocking(False)
        except OSError as e:
            sock.close()
            raise OSError(e.errno, f"cannot listen on LAN interface {ifname}: "
                                   f"{e.strerror or e}") from None
        return sock

    def announce_gateway(self, ifname, mac, ip):
        """Tell the LAN where the gateway is now (as an FHRP router does when it becomes
        active): a gratuitous ARP, or an unsolicited neighbour advertisement."""
        try:
            if ip.version == 4:
                sock = next(s for s, i, f in self.lan_sockets if i == ifname and f == 4)
                sock.sendto(garp(mac, ip), (ifname, ETH_P_ARP, 0, 0, b"\xff" * 6))
            else:
                with socket.socket(socket.AF_INET6, socket.SOCK_RAW,
                                   socket.IPPROTO_ICMPV6) as s6:
                    s6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
                    s6.bind((str(ip), 0))
                    s6.sendto(unsolicited_na(mac, ip),
                              ("ff02::1", 0, 0, socket.if_nametoindex(ifname)))
        except (OSError, StopIteration) as e:
            self.io_counters["gateway_announce_errors"] += 1
            self.log.write("gateway_announce_error", interface=ifname, gateway=str(ip),
                           error=str(e))
            return
        self.log.write("gateway_announced", interface=ifname, gateway=str(ip),
                       mac=mac.hex(":"))

    def probe_host(self, iid, ip):
        """ProbeHost: ask the LAN of `ip`'s dynamic-EID range whether the host is there, with
        an ARP probe (sender 0.0.0.0, RFC 5227: it updates no one's ARP cache) or a
        neighbour solicitation. The host's answer is seen by the LAN socket and detects it.
        Not on ranges with detect = "gateway": there the answer may come across a DCI."""
        ranges = [d for d in self.cfg.dynamic_eids if d.iid == iid and d.detect == "any"
                  and d.prefix.version == ip.version and ip in d.prefix]
        for d in ranges:
            sock = next((s for s, i, f in self.lan_sockets
                         if i == d.interface and f == ip.version), None)
            if sock is None:
                continue
            try:
                mac = sock.getsockname()[4]
                if ip.version == 4:
                    frame = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, mac, bytes(4),
                                        bytes(6), ip.packed)
                    sock.sendto(frame, (d.interface, ETH_P_ARP, 0, 0, b"\xff" * 6))
                else:
                    group = ipaddress.IPv6Address("ff02::1:ff00:0").packed[:13] + ip.packed[13:]
                    ns = struct.pack("!BBHI16sBB6s", ICMPV6_NS, 0, 0, 0, ip.packed, 1, 1, mac)
                    index = socket.if_nametoindex(d.interface)
                    with socket.socket(socket.AF_INET6, socket.SOCK_RAW,
                                       socket.IPPROTO_ICMPV6) as s6:
                        s6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
                        s6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, index)
                        s6.sendto(ns, (str(ipaddress.IPv6Address(group)), 0, 0, index))
            except OSError as e:
                self.io_counters["host_probe_errors"] += 1
                self.log.write("host_probe_error", interface=d.interface, eid=str(ip),
                               error=str(e))
                continue
            self.io_counters["host_probes_sent"] += 1
            return

    def _incoming(self, sock, ifname, size):
        """The frames waiting on LAN socket `sock` (at most LAN_BURST), except our own."""
        for _ in range(LAN_BURST):
            try:
                data, addr = sock.recvfrom(size)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                self.io_counters["lan_receive_errors"] += 1
                self.log.write("lan_receive_error", interface=ifname, error=str(e))
                return
            if addr[2] != PACKET_OUTGOING:          # not our own ARP requests and replies
                yield data

    def on_lan(self, sock, ifname, family):
        """(event loop) ARP or neighbour discovery frames are waiting on `sock`."""
        kind = "lan_arp_received" if family == 4 else "lan_nd_received"
        for data in self._incoming(sock, ifname, 2048):
            self.io_counters[kind] += 1
            if family == 6 and ifname in self.detect_gateway:
                # Extended subnet: neighbour discovery is multicast and crosses the DCI, so
                # it cannot tell where a host is (both data centers would claim it).
                self.io_counters["lan_nd_ignored_gateway_mode"] += 1
                continue
            if family == 4 and ifname in self.detect_gateway:
                # Extended subnet: gratuitous ARPs cross the DCI; a request for our own
                # (gateway) address does not (FHRP isolation), so only it shows a local host.
                target = arp_request_target(data)
                if target is None or target not in self.own_addresses:
                    self.io_counters["lan_arp_not_for_gateway"] += 1
                    continue
            ip = arp_sender(data) if family == 4 else nd_sender(data)
            if ip is None or not host_address(ip):
                self.io_counters["lan_no_host_source"] += 1
                continue
            if ip in self.own_addresses:            # e.g. the other DC's anycast gateway
                self.io_counters["lan_own_address"] += 1
                continue
            self.lan_host_seen(ifname, ip, self.now())

    def on_gateway_frames(self, sock, ifname):
        """(event loop) IPv4 frames sent to the gateway MAC: their source is a local host."""
        for data in self._incoming(sock, ifname, 128):
            if len(data) < 34:
                continue
            self.io_counters["lan_gateway_frames"] += 1
            ip = ipaddress.IPv4Address(data[26:30])
            if host_address(ip) and ip not in self.own_addresses:
                self.lan_host_seen(ifname, ip, self.now())

    def lan_host_seen(self, ifname, ip, now):
        """Hand a source address seen on `ifname` to the core (at most once per
        HOST_SEEN_INTERVAL per source) and carry out what it decides."""
        key = (ifname, ip)
        last = self.lan_last.get(key)
        if last is not None and now - last < HOST_SEEN_INTERVAL:
            self.io_counters["lan_rate_limited"] += 1
            return
        if len(self.lan_last) >= 4096:              # forget sources not heard for a while
            self.lan_last = {k: t for k, t in self.lan_last.items()
                             if now - t < HOST_SEEN_INTERVAL}
        self.lan_last[key] = now
        iid = self.iid_for(ifname, ip)
        with self.lock:
            actions = self.core.host_seen(iid, ip, now)
        if any(isinstance(a, RouteAdd) and a.kind == "local" for a in actions):
            self.seen_on[(iid, ip)] = ifname        # before the route is programmed
        self.execute(actions)

    def iid_for(self, ifname, ip):
        """The instance ID of the range on `ifname` holding `ip` (else of the interface's
        first range of that family: the core then rejects and counts the address)."""
        ranges = [d for d in self.cfg.dynamic_eids
                  if d.interface == ifname and d.prefix.version == ip.version]
        for d in ranges:
            if ip in d.prefix:
                return d.iid
        return ranges[0].iid if ranges else 0

    def stop_lan(self):
        for sock, _, _ in self.lan_sockets:
            try:
                self.loop.remove_reader(sock.fileno())
            except Exception:
                pass
            sock.close()
        self.lan_sockets = []

    # --- inspection -----------------------------------------------------------------

    def counters(self):
        c = Counter(self.core.counters)
        c.update(self.io_counters)
        for plane in self.planes():
            c.update(plane.counters)
        # per-datagram events the bounded event log did not write (nodes/eventlog.py)
        c["event_log_not_logged"] = self.log.not_logged_total
        # datagrams to 4342 the kernel dropped before we read them (full receive buffer)
        for kind, drops in control_socket_drops(self.control_socks).items():
            c[f"control_{kind}_socket_drops"] = drops
        out = dict(sorted(c.items()))
        if self.dataplane is not None:       # is each direction alive (issue 9)
            out.update(health_counters(self.dataplane.health()))
        self.add_kernel_counters(out)
        return out

    def handle_request(self, request):
        what = request.get("show")
        now = self.now()
        with self.lock:
            if what == "counters":
                return {"ok": True, "data": self.counters()}
            if what == "map-cache":
                if self.cfg.role == "msmr":
                    return {"ok": False, "error": "a Map-Server has no map-cache "
                                                  "(try: registrations)"}
                return {"ok": True, "data": map_cache_rows(self.core.itr.cache, now,
                                                             self.core.itr.prober)}
            if what == "registrations":
                if self.cfg.role != "msmr":
                    return {"ok": False, "error": f"{self.cfg.name} is not a Map-Server"}
                return {"ok": True, "data": registration_rows(self.core.ms, now)}
            if what == "config":
                return {"ok": True, "data": {"name": self.cfg.name, "role": self.cfg.role,
                                             "uptime_s": round(now - self.started, 1)}}
        return {"ok": False, "error": f"unknown request {request!r}"}

    # --- lifecycle ------------------------------------------------------------------

    def prepare_kernel(self):
        sysctl("net/ipv4/ip_forward", 1)
        sysctl("net/ipv6/conf/all/forwarding", 1)
        for dev in ("all", "default"):
            sysctl(f"net/ipv4/conf/{dev}/rp_filter", 0)

    def start_dataplane(self):
        cfg = self.cfg
        rlocs = [r.address for r in cfg.rlocs]
        known = self.known_rlocs if cfg.decap_known_rlocs_only else None
        self.dataplane = DataPlane(cfg.tun, rlocs, dataplane_iid(cfg), self,
                                   self.lock, Counter(), cfg.mtu, known,
                                   log=self.log.write, hold_misses=cfg.miss_policy == "hold")
        # Tenants (RFC 9300 instance IDs): a data plane each, on its own TUN, sending from
        # its own sockets; the first one receives for all and hands each its packets.
        self.tenant_planes = {}
        for t in cfg.tenants:
            plane = DataPlane(t.tun, rlocs, t.iid, self, self.lock, Counter(), cfg.mtu,
                              known, log=self.log.write,
                              hold_misses=cfg.miss_policy == "hold",
                              devices=open_devices(t.tun, [ipaddress.ip_address(a)
                                                           for a in rlocs], receive=False))
            plane._gso_ok = False         # its outer ports are the first data plane's
            self.tenant_planes[t.iid] = plane
        self.dataplane.tenants = self.tenant_planes
        self.routes = Routes()
        self.routes.call(self._setup_routes)
        for t in cfg.tenants:
            self.routes.call(self._setup_tenant, t)
        self.dataplane.start()
        for plane in self.tenant_planes.values():
            plane.start()
        self.start_kernelpath()

    def planes(self):
        """Every data plane: the first, then the tenants'."""
        return ([self.dataplane] if self.dataplane is not None else []) + \
            list(self.tenant_planes.values())

    def _setup_tenant(self, t):
        """A tenant's kernel side: its TUN up, and a table of its own (TENANT_TABLE + its
        instance ID) that its LAN interfaces and its TUN look up: its EID prefixes to its
        LAN, everything else into its TUN."""
        cfg, r = self.cfg, self.routes
        table = TENANT_TABLE + t.iid
        self._tun_up(t.tun)
        prefixes = [p for iid, p in cfg.eid_prefixes if iid == t.iid]
        for version in sorted({p.version for p in prefixes} or {4}):
            fam, default = ((socket.AF_INET, "0.0.0.0/0") if version == 4 else
                            (socket.AF_INET6, "::/0"))
            if version == 6 and not ipv6_enabled():
                continue
            r.route(default, t.tun, table)
            for dev in t.lan_interfaces + [t.tun]:
                r.rule(family=fam, iifname=dev, table=table, priority=RULE_PRIORITY - 1)
        for p in prefixes:
            r.route(p, t.lan_interfaces[0], table)

    def _tun_up(self, name):
        """A data plane's TUN up, its MTU leaving room for the encapsulation, no rp_filter."""
        r = self.routes
        r.ipr.link("set", index=r.ifindex(name), state="up",
                   mtu=tun_mtu(self.cfg.mtu, [x.address for x in self.cfg.rlocs]))
        sysctl(f"net/ipv4/conf/{name}/rp_filter", 0)

    def _setup_routes(self):
        cfg, r = self.cfg, self.routes
        self._tun_up(cfg.tun)
        # Traffic from the LAN: main table without its default route, then the LISP
        # table whose default route leads into the TUN (map-cache misses included); only
        # for the address families of our EIDs (an IPv4-only xTR runs where IPv6 is off).
        for version in sorted(self.families()):
            fam, default = ((socket.AF_INET, "0.0.0.0/0") if version == 4 else
                            (socket.AF_INET6, "::/0"))
            if version == 6 and not ipv6_enabled():
                self._no_ipv6("net.ipv6.conf.all.disable_ipv6 is 1")
                continue
            try:
                r.route(default, cfg.tun, LISP_TABLE)
            except Exception as e:
                if version != 6 or getattr(e, "code", None) not in (errno.EACCES,
                                                                    errno.EAFNOSUPPORT):
                    raise
                self._no_ipv6(f"the kernel refuses IPv6 routes ({e})")
                continue
            for lan in cfg.lan_interfaces:
                # (pyroute2 drops suppress_prefixlength=0; the attribute name keeps it)
                r.rule(family=fam, iifname=lan, table=254, FRA_SUPPRESS_PREFIXLEN=0,
                       priority=RULE_PRIORITY)
                r.rule(family=fam, iifname=lan, table=LISP_TABLE, priority=RULE_PRIORITY + 1)
        for iid, prefix in cfg.eid_space:      # proxy ITR: EID space into the TUN
            r.route(prefix, cfg.tun)

    def families(self):
        """The IP versions of the EIDs this node serves (EID prefixes, dynamic-EID ranges,
        proxy EID space); both when it names none."""
        cfg = self.cfg
        found = ({p.version for _, p in cfg.eid_prefixes}
                 | {d.prefix.version for d in cfg.dynamic_eids}
                 | {p.version for _, p in cfg.eid_space})
        return found or {4, 6}

    def _no_ipv6(self, why):
        """IPv6 EIDs are configured but this namespace has no IPv6: serve IPv4, say so."""
        self.io_counters["ipv6_unavailable"] = 1
        self.log.write("ipv6_unavailable", reason=why)
        print(f"lisp-node {self.cfg.name}: IPv6 is not available here ({why}): "
              f"serving IPv4 EIDs only", file=sys.stderr, flush=True)

    async def run(self):
        self.loop = asyncio.get_running_loop()
        self.stopping = asyncio.Event()
        # Not loop.add_signal_handler: asyncio learns of a signal through a byte in its
        # self-pipe, which the data plane's call_soon_threadsafe calls fill under load,
        # and then the signal is lost ("BlockingIOError" in _sighandler_noop) and the
        # daemon never stops. A plain handler sets a flag the main loop reads every
        # 100 ms, and wakes the loop if it can.
        old_handlers = {sig: signal.signal(sig, self._on_signal)
                        for sig in (signal.SIGTERM, signal.SIGINT)}
        self.prepare_kernel()
        for family in (socket.AF_INET, socket.AF_INET6):
            try:
                socks = control_sockets(family)
            except OSError:
                if family == socket.AF_INET:
                    raise
                continue                          # no IPv6 in this namespace
            for kind, sock in socks.items():
                transport, _ = await self.loop.create_datagram_endpoint(
                    lambda: ControlProtocol(self), sock=sock)
                self.control_socks.append((kind, sock))
                if kind == "priority":            # we send from this one (either would do)
                    self.transports[4 if family == socket.AF_INET else 6] = transport
                else:
                    self.extra_transports.append(transport)
        server = await start_control_server(self.cfg.control_socket, self.handle_request)
        try:
            if self.cfg.role in ("xtr", "pxtr"):
                self.start_dataplane()
                self.start_lan()
                self.start_site_notify()
            self.log.write("started", role=self.cfg.role, pid=os.getpid())
            while not (self.stopping.is_set() or self.signalled):
                self.tick()
                for plane in self.planes():
                    plane.check()             # a dead data-plane thread: exit, saying so
                try:
                    await asyncio.wait_for(self.stopping.wait(), 0.1)
                except asyncio.TimeoutError:
                    pass
        finally:
            self.log.write("stopping")
            self.stop_lan()
            self.stop_kernelpath()
            for plane in self.planes():
                plane.stop()
            if self.routes is not None:
                self.routes.close()
            for t in [*self.transports.values(), *self.extra_transports]:
                t.close()
            server.close()
            await server.wait_closed()
            self.log.write("stopped", counters=self.counters())
            self.log.close()
            for sig, handler in old_handlers.items():
                signal.signal(sig, handler)

    def start_site_notify(self):
        """The site-local Map-Notify's group ([etr] site_notify_group): joined on the LAN
        interface by the IPv4 control socket we send from, which also sends to the group
        there (TTL 1: the LAN and its extension only; no copy back to us). Where it cannot
        be joined, one line says why and the Map-Server's notifications carry the moves."""
        group = getattr(self.cfg, "site_notify_group", None)
        if group is None:
            return
        iface = self.cfg.site_notify_interface or (self.cfg.lan_interfaces or [None])[0]
        sock = next((s for kind, s in self.control_socks if kind == "priority"
                     and s.family == socket.AF_INET), None)
        try:
            if iface is None or sock is None:
                raise OSError("no LAN interface or no IPv4 control socket")
            mreqn = struct.pack("=4s4si", group.packed, bytes(4), socket.if_nametoindex(iface))
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreqn)
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, mreqn)
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 0)
        except OSError as e:
            self.io_counters["site_notify_unavailable"] = 1
            self.core.etr.site_notify = None
            self.log.write("site_notify_unavailable", group=str(group), reason=str(e))
            print(f"lisp-node {self.cfg.name}: site-local Map-Notify off ({e})",
                  file=sys.stderr, flush=True)
            return
        self.log.write("site_notify_joined", group=str(group), interface=iface)

    def _on_signal(self, signum, frame):
        """(main thread, between two bytecodes) SIGTERM or SIGINT: stop."""
        self.signalled = signum
        try:
            self.loop.call_soon_threadsafe(self.stopping.set)
        except RuntimeError:
            pass                                  # the loop is closing already

    def is_stopping(self):
        return bool(self.signalled) or (self.stopping is not None and self.stopping.is_set())


from .dataplane import DataPlane, flow_source, open_devices, tun_mtu  # noqa: E402  (after Daemon for reading order)


# --- the kernel fast path (issue 10): tc-BPF programs fed from the core's map-cache ---------

def _start_kernelpath(self):
    """With `[dataplane] path = "kernel"`: load and attach the tc-BPF programs, fill their
    maps from the core and keep them in step (every data-plane invalidate(), i.e. every
    route action and mapping event, and once a second). Where it cannot run, one line
    says why and the Python path carries everything (kernel_path_unavailable = 1)."""
    cfg = self.cfg
    if getattr(cfg, "dataplane_path", "python") != "kernel" or self.dataplane is None:
        return
    from .kernelpath import KernelPath
    from .offload import ipv4_interfaces
    rloc4 = self.dataplane.rloc4
    try:
        uplinks = sorted({n for n, a in ipv4_interfaces() if a == str(rloc4)})
        self.kernelpath = KernelPath(cfg.name, cfg.lan_interfaces, cfg.tun, rloc4,
                                     self.dataplane.iid, cfg.mtu, uplinks,
                                     cfg.decap_known_rlocs_only, log=self.log.write,
                                     header=(self.dataplane._lisp_flags,
                                             self.dataplane._lisp_word2))
    except Exception as e:          # (KernelPathError, OSError, ...): never stops the node
        self.io_counters["kernel_path_unavailable"] = 1
        self.log.write("kernel_path_unavailable", reason=str(e))
        print(f"lisp-node {cfg.name}: the kernel data path is unavailable ({e}): "
              f"using the Python path", file=sys.stderr, flush=True)
        return
    self.log.write("kernel_path_started", lans=cfg.lan_interfaces, uplinks=uplinks)
    self.kernel_sync()
    self.dataplane.on_invalidate = self.kernel_sync_soon
    self.dataplane.on_lsb = self._kernel_lsb
    self.loop.call_later(1.0, self._kernel_periodic)


def _kernel_sync(self):
    """The kernel's tries from the core's state (under the core lock; a caller holding
    it leaves the work to the next periodic sync)."""
    kp = self.kernelpath
    if kp is None:
        return
    if not self.lock.acquire(timeout=0.2):
        return
    try:
        kp.sync(self.core, self.now(), self.dataplane.generation)
    except OSError as e:
        self.io_counters["kernel_sync_errors"] += 1
        self.log.write("kernel_sync_error", error=str(e))
    finally:
        self.lock.release()


def _kernel_sync_soon(self):
    """A mapping or route changed (any thread): sync the kernel's tries at once when none
    was synced for KERNEL_SYNC_GAP_S, else once at the end of that gap for every change
    meanwhile. A sync rebuilds the tries' wanted state from the whole core: one per change
    made the old xTR of a hundred moved VMs take 3 s to work through their Map-Notifies."""
    if getattr(self, "_kernel_sync_due", False):
        return                                  # a sync is due: it will include this change
    now = time.monotonic()
    wait = getattr(self, "_kernel_synced_at", -1e9) + KERNEL_SYNC_GAP_S - now
    if wait <= 0:
        self._kernel_synced_at = now
        self.kernel_sync()
        return
    self._kernel_sync_due = True

    def due():
        self._kernel_sync_due = False
        self._kernel_synced_at = time.monotonic()
        self.kernel_sync()

    def schedule():
        self.loop.call_later(wait, due)

    try:
        self.loop.call_soon_threadsafe(schedule)
    except RuntimeError:                       # the loop is closing: the stop cleans up
        self._kernel_sync_due = False


def _kernel_lsb(self, outer_src, lsb):
    """The Python path passed a sender's Locator-Status-Bits on: the kernel keeps its
    packets with those bits from now (a decapsulation thread calls this)."""
    kp = self.kernelpath
    if kp is None:
        return
    try:
        kp.lsb_passed(outer_src, lsb)
    except (OSError, KeyError) as e:
        self.io_counters["kernel_sync_errors"] += 1
        self.log.write("kernel_sync_error", error=f"Locator-Status-Bits: {e}")


def _kernel_periodic(self):
    if self.kernelpath is None or self.is_stopping():
        return
    self.kernel_sync()
    self.loop.call_later(1.0, self._kernel_periodic)


def _stop_kernelpath(self):
    kp, self.kernelpath = self.kernelpath, None
    if kp is not None:
        if self.dataplane is not None:
            self.dataplane.on_invalidate = None
        self.kernel_final = kp.counters()
        kp.stop()


def _add_kernel_counters(self, out):
    """The kernel path's counters into `out` (a node's counters); packets_encapsulated and
    packets_decapsulated count both paths (kernel_encapsulated, kernel_decapsulated: the
    kernel's share), so a node's totals mean the same whichever path carried them."""
    kp = self.kernelpath
    kc = kp.counters() if kp is not None else getattr(self, "kernel_final", {})
    out.update(kc)
    for total, mine in (("packets_encapsulated", "kernel_encapsulated"),
                        ("packets_decapsulated", "kernel_decapsulated")):
        if kc.get(mine):
            out[total] = out.get(total, 0) + kc[mine]


Daemon.start_kernelpath = _start_kernelpath
Daemon.kernel_sync = _kernel_sync
Daemon.kernel_sync_soon = _kernel_sync_soon
Daemon._kernel_periodic = _kernel_periodic
Daemon._kernel_lsb = _kernel_lsb
Daemon.stop_kernelpath = _stop_kernelpath
Daemon.add_kernel_counters = _add_kernel_counters


# --- one daemon per node ------------------------------------------------------------------

# An abstract Unix socket name belongs to the network namespace it is bound in, and the
# kernel frees it when its process dies however it dies: a second daemon in the namespace
# cannot bind it, and no stale lock is ever left (nothing on disk).
INSTANCE_NAME = b"\0lisp-lab-node-daemon"


class AlreadyRunning(Exception):
    """Another daemon holds this network namespace."""


def claim_namespace(name=INSTANCE_NAME):
    """Be the only LISP daemon of this network namespace (of this node): returns the socket
    that holds the claim (keep it open), or raises AlreadyRunning naming the holder. Called
    before anything else is touched: kernel state, ports, control socket, event log."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        sock.bind(name)
    except OSError as e:
        sock.close()
        if e.errno != errno.EADDRINUSE:
            raise
        raise AlreadyRunning("a LISP daemon is already running for this node (in this "
                             f"network namespace): {_holder(name)}; stop it first") from None
    return sock


def _holder(name):
    """'pid N (its command line)' of the process bound to abstract socket `name`, found
    through /proc/net/unix (this namespace's sockets) and /proc/*/fd; or a fallback."""
    want = "@" + name[1:].decode()
    inode = None
    try:
        with open("/proc/net/unix") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 8 and parts[7] == want:
                    inode = parts[6]
    except OSError:
        pass
    if inode is not None:
        target = f"socket:[{inode}]"
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                fds = os.listdir(f"/proc/{pid}/fd")
                if any(os.readlink(f"/proc/{pid}/fd/{fd}") == target for fd in fds):
                    with open(f"/proc/{pid}/cmdline", "rb") as f:
                        cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
                    return f"pid {pid} ({cmd})"
            except OSError:
                continue
    return "its process could not be identified"


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1 or argv[0] in ("-h", "--help"):
        print("usage: python -m nodes.daemon CONFIG.toml", file=sys.stderr)
        return 2
    try:
        cfg = load_config(argv[0])
    except ConfigError as e:
        print(f"lisp-node: {e}", file=sys.stderr)
        return 2
    try:
        claim = claim_namespace()
    except AlreadyRunning as e:
        print(f"lisp-node {cfg.name}: cannot start: {e}", file=sys.stderr)
        return 1
    try:
        daemon = Daemon(cfg)
        asyncio.run(daemon.run())
    except KeyboardInterrupt:
        pass
    except OSError as e:
        print(f"lisp-node {cfg.name}: cannot start: {e}", file=sys.stderr)
        return 1
    except Exception as e:     # never a traceback for the user; the event log has details
        print(f"lisp-node {cfg.name}: stopped by an internal error: "
              f"{type(e).__name__}: {e}", file=sys.stderr)
        return 1
    finally:
        claim.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

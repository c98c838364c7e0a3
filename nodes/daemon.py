"""The node daemon: one per lab node, in its network namespace.

    python -m nodes.daemon CONFIG.toml

It runs the sans-I/O core (nodes.lisp) behind real I/O:
  - control plane: UDP 4342 (IPv4 and IPv6) on the asyncio event loop, a 100 ms timer
    that drives retransmissions, registrations and expiry, and a local control socket
    for `lisp-lab show`;
  - data plane (xTR and proxy xTR): the TUN device and the encap/decap threads of
    nodes.dataplane, kept off the event loop;
  - the kernel: forwarding on, rp_filter off, and the routes the core asks for
    (pyroute2), all removed again at exit;
  - a structured event log, one JSON object per line.

SIGTERM or SIGINT: the daemon removes its routes, rules and TUN device and exits within a
second. A bad config file stops it with one line naming the key and the reason.
"""
import asyncio
import ipaddress
import os
import signal
import socket
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from .config import ConfigError, build_core, load_config
from .control import map_cache_rows, registration_rows, start_control_server
from .eventlog import EventLog
from .lisp.actions import Decision, Event, RouteAdd, RouteDel, SendControl
from .lisp.errors import LispEncodeError
from .lisp.messages import EncapsulatedControl, decode, encode
from .lisp.sim import describe

CONTROL_PORT = 4342
LISP_TABLE = 100          # the table LAN traffic falls back to: default route into the TUN
RULE_PRIORITY = 100


def sysctl(path, value):
    try:
        with open("/proc/sys/" + path, "w") as f:
            f.write(str(value))
    except OSError:
        pass


class Routes:
    """Kernel routes and rules the daemon created, so it can remove exactly those.

    pyroute2's IPRoute runs an event loop of its own, so it lives on one worker thread of
    its own: route changes are queued there in order and never block the control plane."""

    def __init__(self):
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="netlink")
        self.ipr = self.call(self._open)
        self.routes = {}       # (table, dst) -> kwargs
        self.rules = []

    @staticmethod
    def _open():
        from pyroute2 import IPRoute
        return IPRoute()

    def call(self, fn, *args, **kw):
        """Run fn on the netlink thread and wait for its result."""
        return self.pool.submit(fn, *args, **kw).result()

    def submit(self, fn, *args, **kw):
        """Queue fn on the netlink thread; errors are reported through `on_error`."""
        return self.pool.submit(fn, *args, **kw)

    def ifindex(self, name):
        found = self.ipr.link_lookup(ifname=name)
        if not found:
            raise OSError(f"no interface {name}")
        return found[0]

    def route(self, dst, dev, table=254):
        dst = ipaddress.ip_network(dst)
        kw = dict(dst=str(dst), oif=self.ifindex(dev), table=table,
                  family=socket.AF_INET if dst.version == 4 else socket.AF_INET6)
        self.ipr.route("replace", **kw)
        self.routes[(table, dst)] = kw

    def unroute(self, dst, table=254):
        kw = self.routes.pop((table, ipaddress.ip_network(dst)), None)
        if kw is not None:
            try:
                self.ipr.route("del", **kw)
            except Exception:
                pass

    def rule(self, **kw):
        self.ipr.rule("add", **kw)
        self.rules.append(kw)

    def _close(self):
        for kw in reversed(self.rules):
            try:
                self.ipr.rule("del", **kw)
            except Exception:
                pass
        for kw in list(self.routes.values()):
            try:
                self.ipr.route("del", **kw)
            except Exception:
                pass
        self.routes.clear()
        self.rules.clear()
        self.ipr.close()

    def close(self):
        try:
            self.call(self._close)
        finally:
            self.pool.shutdown(wait=True)


class ControlProtocol(asyncio.DatagramProtocol):
    def __init__(self, daemon):
        self.daemon = daemon

    def datagram_received(self, data, addr):
        self.daemon.on_control(data, addr[0])


class Daemon:
    def __init__(self, cfg):
        self.cfg = cfg
        self.core = build_core(cfg)
        self.lock = threading.Lock()
        self.log = EventLog(cfg.event_log, cfg.name)
        self.io_counters = Counter()
        self.loop = None
        self.transports = {}
        self.routes = None
        self.dataplane = None
        self.stopping = None
        self.started = time.monotonic()

    # --- the core's actions --------------------------------------------------------

    def now(self):
        return time.monotonic()

    def execute(self, actions):
        for a in actions:
            if isinstance(a, SendControl):
                self.send(a)
            elif isinstance(a, (RouteAdd, RouteDel)):
                self.program(a)
            elif isinstance(a, Event):
                self.log.write(a.name, **a.fields)

    def send(self, a):
        try:
            data = a.wire()
        except LispEncodeError as e:
            self.io_counters["encode_errors"] += 1
            self.log.write("encode_error", error=str(e))
            return
        dst = ipaddress.ip_address(a.dst)
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
        if self.dataplane is not None:
            self.dataplane.invalidate()
        self.routes.submit(self._program, a)

    def _program(self, a):
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
        for d in self.cfg.dynamic_eids:
            if d.iid == iid and prefix.version == d.prefix.version and prefix.subnet_of(d.prefix):
                return d.interface
        return self.cfg.lan_interfaces[0] if self.cfg.lan_interfaces else None

    # --- control plane ---------------------------------------------------------------

    def on_control(self, data, src):
        self.io_counters["control_received"] += 1
        src_ip = ipaddress.ip_address(src.split("%")[0])
        if src_ip.version == 6 and src_ip.ipv4_mapped:
            src_ip = src_ip.ipv4_mapped
        try:
            kind = describe(decode(data))
        except Exception:
            kind = "malformed"
        self.log.write("control_received", frm=str(src_ip), type=kind, bytes=len(data))
        with self.lock:
            actions = self.core.receive(data, src_ip, self.now())
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
        decision, actions = self.core.route(iid, dst, self.now(), flow)
        self.call_from_thread(actions)
        return decision

    def decapsulated(self, iid, dst, outer_src, flow):
        if self.cfg.role == "pxtr":
            return Decision("deliver")     # proxy ETR: forward natively via the kernel
        decision, actions = self.core.decapsulated(iid, dst, outer_src, self.now(), flow)
        self.call_from_thread(actions)
        return decision

    def known_rlocs(self):
        with self.lock:
            return {loc.address for e in self.core.itr.cache for loc in e.locators}

    # --- inspection -----------------------------------------------------------------

    def counters(self):
        c = Counter(self.core.counters)
        c.update(self.io_counters)
        if self.dataplane is not None:
            c.update(self.dataplane.counters)
        return dict(sorted(c.items()))

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
                return {"ok": True, "data": map_cache_rows(self.core.itr.cache, now)}
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
        iid = (cfg.eid_prefixes[0][0] if cfg.eid_prefixes else
               cfg.dynamic_eids[0].iid if cfg.dynamic_eids else
               cfg.eid_space[0][0] if cfg.eid_space else 0)
        self.dataplane = DataPlane(cfg.tun, [r.address for r in cfg.rlocs], iid, self,
                                   self.lock, Counter(), cfg.mtu,
                                   self.known_rlocs if cfg.decap_known_rlocs_only else None)
        self.routes = Routes()
        self.routes.call(self._setup_routes)
        self.dataplane.start()

    def _setup_routes(self):
        cfg, r = self.cfg, self.routes
        idx = r.ifindex(cfg.tun)
        r.ipr.link("set", index=idx, state="up", mtu=cfg.mtu - ENCAP_OVERHEAD_V4)
        sysctl(f"net/ipv4/conf/{cfg.tun}/rp_filter", 0)
        # Traffic from the LAN: main table without its default route, then the LISP
        # table whose default route leads into the TUN (map-cache misses included).
        for fam, default in ((socket.AF_INET, "0.0.0.0/0"), (socket.AF_INET6, "::/0")):
            r.route(default, cfg.tun, LISP_TABLE)
            for lan in cfg.lan_interfaces:
                # (pyroute2 drops suppress_prefixlength=0; the attribute name keeps it)
                r.rule(family=fam, iifname=lan, table=254, FRA_SUPPRESS_PREFIXLEN=0,
                       priority=RULE_PRIORITY)
                r.rule(family=fam, iifname=lan, table=LISP_TABLE, priority=RULE_PRIORITY + 1)
        for iid, prefix in cfg.eid_space:      # proxy ITR: EID space into the TUN
            r.route(prefix, cfg.tun)

    async def run(self):
        self.loop = asyncio.get_running_loop()
        self.stopping = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            self.loop.add_signal_handler(sig, self.stopping.set)
        self.prepare_kernel()
        t4, _ = await self.loop.create_datagram_endpoint(
            lambda: ControlProtocol(self), local_addr=("0.0.0.0", CONTROL_PORT),
            reuse_port=True)
        self.transports[4] = t4
        try:
            s6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
            s6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            s6.bind(("::", CONTROL_PORT))
            t6, _ = await self.loop.create_datagram_endpoint(lambda: ControlProtocol(self),
                                                             sock=s6)
            self.transports[6] = t6
        except OSError:
            pass                                  # no IPv6 in this namespace
        server = await start_control_server(self.cfg.control_socket, self.handle_request)
        try:
            if self.cfg.role in ("xtr", "pxtr"):
                self.start_dataplane()
            self.log.write("started", role=self.cfg.role, pid=os.getpid())
            while not self.stopping.is_set():
                self.tick()
                try:
                    await asyncio.wait_for(self.stopping.wait(), 0.1)
                except asyncio.TimeoutError:
                    pass
        finally:
            self.log.write("stopping")
            if self.dataplane is not None:
                self.dataplane.stop()
            if self.routes is not None:
                self.routes.close()
            for t in self.transports.values():
                t.close()
            server.close()
            await server.wait_closed()
            self.log.write("stopped", counters=self.counters())
            self.log.close()


from .dataplane import ENCAP_OVERHEAD_V4, DataPlane  # noqa: E402  (after Daemon for reading order)


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
    return 0


if __name__ == "__main__":
    sys.exit(main())

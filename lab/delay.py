"""Link delays that are real with or without netem.

With netem a delayed link is a TCLink with `delay=`. Without it (this machine, CI) the link
becomes A <-> relay node <-> B: a small Mininet host (a RelayHost, no addresses, IPv6 off)
with one interface toward each end, in which lab/relay.py copies every frame from one side
to the other after the delay (AF_PACKET, one process per direction, FIFO per direction,
bounded queue, monotonic clock). The relay is invisible at layer 2: A and B see each other's
MAC addresses; ARP, IPv6 neighbour discovery, LISP UDP and TCP pass unchanged.

Use in a topology:

    from lab.delay import delayed_link, start_relays, delay_emulation

    class MyTopo(Topo):
        def build(self):
            ...
            delayed_link(self, "xtr1", "r0", 10, intfName1="xtr1-core", intfName2="r0-xtr1",
                         params1={"ip": "172.16.1.2/30"})

    with Lab(MyTopo()) as lab:
        start_relays(lab)                  # no-op with netem; returns {relay: LabProcess}
        record["delay_emulation"] = delay_emulation(lab)

`delayed_link(topo, a, b, delay_ms, **params)` takes the same keyword arguments as
Topo.addLink (port1/port2, intfName1/intfName2, params1/params2, addr1/addr2, cls...):
what belongs to A's end goes to the A-relay link, what belongs to B's end to the relay-B
link, so A's and B's interfaces keep their names and addresses, and captures (tcpdump) are
taken on them as on a plain link. The relay's own interfaces are `<relay>-a` (toward A)
and `<relay>-b` (toward B); the relay is named `name=` or after the link ("d" + A + B, or a
hash when that is too long). It returns the relay's name, or None when the link is a plain
TCLink (netem) or has no delay. `emulation="netem"|"relay"` forces one way (default: netem
when netem_available()). Parameters that need tc (bw, loss, jitter...) are dropped on a
relayed link, as the Lab drops them on every link without netem. A relay is a host: code
that walks topo.hosts() or net.hosts to configure nodes should skip relays (relay_names(topo),
isinstance(node, RelayHost)); and, added in build(), it takes one of Mininet's automatic IP
numbers, so give hosts explicit addresses (the lab's topologies do).

Without a topology change the Lab can also relay every link that has a `delay=` parameter
(the Mininet way: `addLink(a, b, cls=TCLink, delay="10ms")`) when netem is missing, so
topologies need not import lab/ (DESIGN.md: imports go lab -> topologies): relayed_link()
is the hook for RecordingMininet.addLink (see its docstring), and start_relays() is then
called by the Lab after net.start(). Relays added that way come after every host, so they
take no automatic IP number from them.

What a relayed link sets up (RelayHost.config, when Mininet configures hosts): IPv6 off in
the relay's namespace (so it sends nothing of its own), the relay's interfaces at the
largest MTU (the ends decide the real MTU), and checksum and segmentation offloads off
(`ethtool -K IF tx off rx off gso off gro off tso off`) on the relay's two interfaces and on
their peers, A's and B's interfaces: a packet socket hands over a frame as the sender left
it, so with offloads on, TCP and UDP would cross with unfinished checksums (dropped by the
receiver) and 64 KB segments (too big to send). The ends then compute real checksums and
send real frames, which is also what the captures on them show.

Relays are started with Lab.start_process (own process group, parent-death signal), so the
Lab stops them with everything else; each writes JSON lines to `<relay>.relay.log` (in
`log_dir`, default the run directory): a "ready" line, and per direction at exit a "stats"
line (forwarded, dropped because the queue or the kernel buffer was full, lateness);
relay_stats() reads them.
"""
import hashlib
import json
import re
import sys
import time
from pathlib import Path

from mininet.link import TCIntf, TCLink
from mininet.node import Host

from .netem import netem_available

__all__ = ["RelayHost", "delayed_link", "relayed_link", "wants_relay", "start_relays",
           "delay_emulation", "relay_stats", "relay_names", "relays", "parse_delay_ms",
           "RELAY_SCRIPT", "NETEM", "RELAY"]

RELAY_SCRIPT = Path(__file__).resolve().with_name("relay.py")
NETEM = "netem"
RELAY = "userspace relay (AF_PACKET)"
OFFLOADS_OFF = ("tx", "off", "rx", "off", "gso", "off", "gro", "off", "tso", "off")
RELAY_MTU = 65535             # the largest veth MTU: the relay never limits what the ends send
DEFAULT_LIMIT = 10000         # frames waiting per direction (netem's default limit is 1000)
READY_TIMEOUT = 5.0

# Link parameters that need tc: not carried over to the links of a relay.
TC_PARAMS = ("bw", "delay", "jitter", "loss", "max_queue_size", "speedup", "use_hfsc",
             "use_tbf", "latency_ms", "enable_ecn", "enable_red")


def parse_delay_ms(delay):
    """A delay in milliseconds from a number (taken as ms) or a tc time string as Mininet
    passes it to netem ("10ms", "500us", "0.01s"; a bare number in a string is microseconds,
    as tc reads it)."""
    if isinstance(delay, (int, float)):
        value = float(delay)
    else:
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*(us|usec|ms|msec|s|sec)?\s*", str(delay))
        if not m:
            raise ValueError(f"cannot read the delay {delay!r} (give e.g. 10, '10ms', '500us')")
        unit = m.group(2) or "us"
        value = float(m.group(1)) * {"us": 1e-3, "usec": 1e-3, "ms": 1.0, "msec": 1.0,
                                     "s": 1e3, "sec": 1e3}[unit]
    if value < 0:
        raise ValueError(f"negative delay: {delay!r}")
    return value


def _format_ms(ms):
    return f"{ms:g}ms"


def peer_intf(intf):
    """The interface at the other end of `intf`'s link."""
    link = intf.link
    return link.intf2 if link.intf1 is intf else link.intf1


def offloads_off(intf):
    """Turn checksum and segmentation offloads off at both ends of `intf`'s link (ethtool
    -K); returns the problems, one line per end that refused (empty when all went well)."""
    problems = []
    for end in (intf, peer_intf(intf)):
        out, err, code = end.node.pexec("ethtool", "-K", end.name, *OFFLOADS_OFF)
        if code != 0:
            problems.append(f"{end.node.name}:{end.name}: {(err or out).strip()}")
    return problems


class RelayHost(Host):
    """A Mininet host that only carries a relay between its two interfaces: no IPv4
    address, IPv6 off, nothing sent of its own. Parameters (from delayed_link or
    relayed_link): delay_ms, peers=(A, B) (node names), limit (frames per direction)."""

    def __init__(self, name, delay_ms=0.0, peers=(), limit=DEFAULT_LIMIT, loss_pct=0.0,
                 **params):
        params.update(ip=None, mac=None)
        super().__init__(name, **params)
        self.delay_ms = float(delay_ms)
        self.loss_pct = float(loss_pct)
        self.peers = tuple(peers)
        self.limit = int(limit)
        self.relay_process = None
        self.relay_log = None
        # before any interface exists, so that none of them ever sends a router
        # solicitation, DAD or MLD frame of its own
        self.cmd("sysctl -qw net.ipv6.conf.all.disable_ipv6=1 "
                 "net.ipv6.conf.default.disable_ipv6=1")

    def relay_intfs(self):
        """(interface toward A, interface toward B)."""
        intfs = [i for i in self.intfList() if i.name != "lo" and i.link is not None]
        if len(intfs) != 2:
            raise RuntimeError(f"relay {self.name} needs exactly two links, has {len(intfs)}")
        if self.peers:
            by_peer = {peer_intf(i).node.name: i for i in intfs}
            if set(by_peer) == set(self.peers):
                return by_peer[self.peers[0]], by_peer[self.peers[1]]
        return tuple(intfs)

    def config(self, **params):
        r = super().config(**params)
        problems = []
        for intf in self.relay_intfs():
            self.cmd(f"ip link set dev {intf.name} mtu {RELAY_MTU}")
            problems += offloads_off(intf)
        if problems:
            raise RuntimeError("could not turn offloads off for the relay "
                               f"{self.name}: {'; '.join(problems)}")
        return r


def _relay_name(taken, a, b):
    """A node name for the relay of a-b that is not in `taken`, at most 13 characters (its
    interfaces are <name>-a and <name>-b)."""
    base = f"d{a}{b}"
    if len(base) > 11:
        base = "d" + hashlib.sha1(f"{a}|{b}".encode()).hexdigest()[:8]
    name, n = base, 1
    while name in taken:
        n += 1
        name = f"{base}{n}"
    return name


def _split(a, b, relay, params):
    """Keyword arguments of the links a-relay and relay-b from those of the link a-b."""
    params = {k: v for k, v in params.items() if k not in TC_PARAMS}
    cls = params.pop("cls", None)
    if isinstance(cls, type) and issubclass(cls, TCLink):
        cls = None
    intf = params.pop("intf", None)
    if isinstance(intf, type) and issubclass(intf, TCIntf):
        intf = None
    common = {k: v for k, v in params.items()
              if k not in ("port1", "port2", "intfName1", "intfName2", "params1", "params2",
                           "addr1", "addr2", "node1", "node2", "key")}
    if cls is not None:
        common["cls"] = cls
    if intf is not None:
        common["intf"] = intf

    def end(side):
        keep = {k[:-1]: params[k] for k in (f"port{side}", f"intfName{side}", f"addr{side}")
                if params.get(k) is not None}
        side_params = params.get(f"params{side}")
        if side_params:
            keep["params"] = {k: v for k, v in side_params.items() if k not in TC_PARAMS}
        return keep

    ea, eb = end(1), end(2)
    link_a = dict(common, node1=a, node2=relay, intfName2=f"{relay}-a")
    link_b = dict(common, node1=relay, node2=b, intfName1=f"{relay}-b")
    for key, value in ea.items():
        link_a[f"{key}1"] = value
    for key, value in eb.items():
        link_b[f"{key}2"] = value
    return link_a, link_b


def delayed_link(topo, a, b, delay_ms, *, emulation=None, name=None, limit=DEFAULT_LIMIT,
                 **params):
    """Add to `topo` (a Mininet Topo, in its build()) a link a-b with `delay_ms` of one-way
    delay in each direction: a TCLink with netem, or a relayed link (see the module
    docstring). Returns the relay's name, or None for a plain link."""
    delay_ms = parse_delay_ms(delay_ms)
    if emulation is None:
        emulation = "netem" if netem_available() else "relay"
    if emulation not in ("netem", "relay"):
        raise ValueError(f"emulation must be 'netem' or 'relay', not {emulation!r}")
    if delay_ms == 0:
        topo.addLink(a, b, **params)
        return None
    if emulation == "netem":
        cls = params.pop("cls", TCLink)
        topo.addLink(a, b, cls=cls, delay=_format_ms(delay_ms), **params)
        return None
    if a == b:
        raise ValueError("a delayed link needs two different nodes")
    relay = name or _relay_name(set(topo.nodes()), a, b)
    if relay in set(topo.nodes()):
        raise ValueError(f"a node named {relay} exists already")
    link_a, link_b = _split(a, b, relay, params)
    topo.addHost(relay, cls=RelayHost, delay_ms=delay_ms, peers=(a, b), limit=limit)
    topo.addLink(**link_a)
    topo.addLink(**link_b)
    return relay


def wants_relay(params):
    """True when link parameters ask for a delay or a loss (a relay is needed without
    netem)."""
    delay = params.get("delay")
    loss = float(params.get("loss") or 0)
    return (delay is not None and parse_delay_ms(delay) > 0) or loss > 0


def relayed_link(net, node1, node2, port1=None, port2=None, cls=None, **params):
    """The Lab's hook for links with `delay=` when netem is missing: called from
    RecordingMininet.addLink in place of adding the link, it adds a RelayHost named after
    the link and the two links a-relay and relay-b (through net.addLink, so the Lab records
    them), and returns the first. Lab must call start_relays(lab) after net.start()."""
    a = node1 if isinstance(node1, str) else node1.name
    b = node2 if isinstance(node2, str) else node2.name
    delay_ms = parse_delay_ms(params.get("delay") or 0)
    loss_pct = float(params.get("loss") or 0)
    limit = params.pop("relay_limit", DEFAULT_LIMIT)
    relay = _relay_name(set(net.nameToNode), a, b)
    params.update(port1=port1, port2=port2)
    if cls is not None:
        params["cls"] = cls
    link_a, link_b = _split(a, b, relay, params)
    net.addHost(relay, cls=RelayHost, delay_ms=delay_ms, peers=(a, b), limit=limit,
                loss_pct=loss_pct)
    first = net.addLink(**link_a)
    net.addLink(**link_b)
    return first


def relay_names(topo):
    """Names of the relay nodes of a Topo."""
    return [n for n in topo.nodes() if topo.nodeInfo(n).get("cls") is RelayHost]


def relays(lab):
    """The RelayHosts of a Lab's network."""
    if lab.net is None:
        return []
    return [h for h in lab.net.hosts if isinstance(h, RelayHost)]


def start_relays(lab, log_dir=None, timeout=READY_TIMEOUT, python=None):
    """Start the relay program in every RelayHost of `lab` that has none running, and wait
    until each says it is ready (its sockets are bound: no frame is lost from then on).
    Returns {relay name: LabProcess} of those started. Call it after the Lab has started
    (the network is up). Raises RuntimeError, with the relay's log, if one fails."""
    log_dir = Path(log_dir) if log_dir is not None else lab.run_dir
    log_dir.mkdir(parents=True, exist_ok=True)
    started = {}
    for host in relays(lab):
        if host.relay_process is not None and host.relay_process.alive:
            continue
        side_a, side_b = host.relay_intfs()
        log = log_dir / f"{host.name}.relay.log"
        offset = log.stat().st_size if log.exists() else 0
        argv = [python or sys.executable, "-I", RELAY_SCRIPT, "--delay-ms", host.delay_ms,
                "--loss-pct", host.loss_pct, "--limit", host.limit, "--name", host.name,
                side_a.name, side_b.name]
        proc = lab.start_process(host, argv, log, name=f"relay-{host.name}")
        host.relay_process, host.relay_log = proc, log
        proc.relay_log_offset = offset
        started[host.name] = proc
    deadline = time.monotonic() + timeout
    for relay, proc in started.items():
        while True:
            events = _events(proc.log_path, proc.relay_log_offset)
            if any(e.get("event") == "ready" for e in events):
                break
            if not proc.alive or time.monotonic() > deadline:
                why = "exited" if not proc.alive else f"not ready after {timeout} s"
                raise RuntimeError(f"relay {relay} {why}: "
                                   f"{_tail(proc.log_path, proc.relay_log_offset)}")
            time.sleep(0.01)
    return started


def _read(path, offset=0):
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            return f.read().decode(errors="replace")
    except OSError as e:
        return f"(no log: {e})"


def _tail(path, offset):
    return _read(path, offset).strip()[-2000:]


def _events(path, offset=0):
    """The JSON lines of a relay's log from `offset` on."""
    events = []
    for line in _read(path, offset).splitlines():
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if isinstance(obj, dict):
            events.append(obj)
    return events


def relay_stats(relay):
    """The "stats" lines a stopped relay wrote, per direction: {direction: {...}}.
    `relay` is a RelayHost, a LabProcess of a relay, or the path of its log."""
    if isinstance(relay, RelayHost):
        path, offset = relay.relay_log, getattr(relay.relay_process, "relay_log_offset", 0)
    elif hasattr(relay, "log_path"):
        path, offset = relay.log_path, getattr(relay, "relay_log_offset", 0)
    else:
        path, offset = Path(relay), 0
    if path is None:
        return {}
    return {e["direction"]: e for e in _events(path, offset) if e.get("event") == "stats"}


def delay_emulation(lab):
    """How this run makes its link delays real, for the run record and the report (None
    before the Lab has started and probed for netem)."""
    if lab.netem is None:
        return None
    return NETEM if lab.netem else RELAY

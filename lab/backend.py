"""The Mininet backend: a lab model (topologies/model.py) applied to a running network.

    with Network(model, out_dir) as net:        # built, addressed, routed, FHRP rules set
        net.start_captures()
        net.start_daemons()
        net.move("vm", "dc2")
        ...
    # every namespace, link, process, capture and ebtables rule is gone here

Nothing here knows about a particular lab: what differs between labs is in their files.
The Lab (lab/emu.py) underneath guarantees the clean-up, also on Ctrl-C and after a crash
(`lisp-lab clean`).
"""
import contextlib
import fcntl
import ipaddress
import signal
import sys
import threading
import time
from pathlib import Path

from topologies.render import toml
from topologies.topo import LabTopo

from .emu import Lab, wait_for

PY = sys.executable


@contextlib.contextmanager
def _bridges_lock():
    """Held while a lab checks that its root-namespace names are free and builds them."""
    from .cleanup import RUN_DIR
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    with open(RUN_DIR / "bridges.lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


class Network:
    """A model running in Mininet. `out_dir` receives configs, logs and captures."""

    def __init__(self, model, out_dir, run_id=None, progress=None, delays=True):
        self.model = model
        self.out_dir = Path(out_dir)
        self.run_id = run_id or f"lab-{model.name}-{int(time.time())}"
        self.progress = progress or (lambda text: None)
        self.delays = delays
        self.lab = None
        self.captures = {}                     # link name -> LabProcess (tcpdump)
        self.daemons = {}                      # node -> LabProcess
        self.daemon_paths = {}                 # node -> config path
        self.where = {h.name: h.site for h in model.hosts.values()}   # host -> site now
        self._rules = []

    # --- lifecycle ----------------------------------------------------------------------

    def root_names(self):
        """The interfaces this lab creates in the root namespace: its bridges and their
        ports (Mininet's switches live there, so two labs cannot share a switch name)."""
        m = self.model
        names = list(m.switches()) + list(m.dci_ports())
        for site in m.sites.values():
            if site.switch:
                names.append(f"{site.switch}-{site.gateway}")
                names += [f"{site.switch}-{h.name}" for h in m.hosts.values()
                          if h.site == site.name]
        return names

    def __enter__(self):
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.lab = Lab(LabTopo(lab=self.model, delays=self.delays), run_id=self.run_id)
        # The check and the building under one lock: Mininet's LinuxBridge deletes a bridge
        # of its name before it makes its own, so two labs naming the same switch, started
        # together, would take each other's bridges.
        with _bridges_lock():
            taken = [n for n in self.root_names() if Path("/sys/class/net", n).exists()]
            if taken:
                raise RuntimeError(f"the interfaces {', '.join(taken)} exist already: another "
                                   f"lab with the same switch names is running (or a crashed "
                                   f"run left them: sudo .venv/bin/lisp-lab clean)")
            self.lab.start()
        try:
            self.configure()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def close(self):
        for table, rule in self._rules:          # the bridges live in the root namespace
            self.lab.run(None, ["ebtables", "-t", table, "-D", *rule.split()])
        self._rules = []
        if self.lab is not None:
            self.lab.stop()

    @property
    def net(self):
        return self.lab.net

    @property
    def run_dir(self):
        return self.lab.run_dir

    def sh(self, node, command):
        """Run a shell command in `node` (Mininet's shell); raise naming it if it fails."""
        out = self.net[node].cmd(command + " 2>&1; echo rc=$?")
        if not out.strip().endswith("rc=0"):
            raise RuntimeError(f"{node}: `{command}` failed: {out.strip()}")
        return out

    def configure(self):
        m = self.model
        for node, commands in m.node_commands().items():
            for c in commands:
                self.sh(node, c)
        for table, rule in m.fhrp_isolation_rules():
            r = self.lab.run(None, ["ebtables", "-t", table, "-A", *rule.split()])
            if r.returncode != 0:
                raise RuntimeError(f"ebtables -t {table} -A {rule}: {r.stderr.strip()}")
            self._rules.append((table, rule))
        for x in m.links.values():
            self.warm_neighbours(x)
        if m.routing == "ospf":
            from . import frr
            frr.start(self.lab, m.frr_configs(), self.out_dir)
            frr.wait_for_routes(self.lab, m.ospf_nodes(), m.ospf_prefixes())
            self.progress("OSPF adjacencies up, routes in place")

    # --- captures -----------------------------------------------------------------------

    def start_captures(self, snaplen=200):
        """tcpdump on every capture point of the model, with offloads off at both ends of
        each captured link so that a capture sees what a wire carries (a veth hands over
        super-packets of up to 64 KiB and unfinished checksums otherwise)."""
        from .delay import offloads_off
        points = self.model.captures()
        problems = [p for node, intf in points.values()
                    for p in offloads_off(self.net[node].intf(intf))]
        if problems:
            raise RuntimeError("cannot turn offloads off for wire-true captures: "
                               + "; ".join(problems))
        for name, (node, intf) in points.items():
            # --immediate-mode: each packet reaches the file as it comes; otherwise libpcap
            # hands over a block a second (or when full), and the block in progress when
            # tcpdump stops is lost: the last second of a quiet link's capture
            self.captures[name] = self.lab.start_process(
                node, ["tcpdump", "-n", "-U", "--immediate-mode", "-s", str(snaplen), "-i",
                       intf, "-w",
                       self.out_dir / f"{name}.pcap"], self.out_dir / f"tcpdump-{name}.log",
                name=f"tcpdump-{name}")
        if not wait_for(lambda: all("listening on" in c.read_log()
                                    for c in self.captures.values()), 5):
            raise RuntimeError("tcpdump did not start on every link: see "
                               f"{self.out_dir}/tcpdump-*.log")

    def stop_captures(self, drain_s=0.3):
        """Stop every capture, `drain_s` after the call: packets still in flight (a few
        delayed links, relays, a busy tcpdump) reach the files first."""
        if any(c.alive for c in self.captures.values()):
            time.sleep(drain_s)
        for c in self.captures.values():
            if c.alive:
                c.stop(signal.SIGINT)          # tcpdump flushes its buffer on SIGINT

    def capture_drops(self, name):
        """Packets a link's tcpdump reported as dropped by the kernel (None: it did not say)."""
        import re
        c = self.captures.get(name)
        found = re.search(r"(\d+) packets? dropped by kernel", c.read_log()) if c else None
        return int(found.group(1)) if found else None

    # --- LISP daemons -------------------------------------------------------------------

    def start_daemons(self, timeout=15.0, overrides=None):
        """Every LISP daemon of the model, ready to answer. `overrides`: {node: {section:
        {key: value}}} merged into the derived configs (a table into each table of an
        array), e.g. a test's wrong key for one xTR: {"xtr2": {"map_server": {"secret":
        "wrong"}}}."""
        configs = self.model.daemon_configs(self.out_dir, self.run_dir)
        unknown = set(overrides or ()) - set(configs)
        if unknown:
            raise ValueError(f"overrides for nodes without a LISP daemon: {sorted(unknown)}")
        for node, (_role, cfg) in configs.items():
            cfg = _merged(cfg, (overrides or {}).get(node, {}))
            path = self.out_dir / f"{node}.toml"
            path.write_text(toml(cfg))
            self.daemon_paths[node] = path
            self.start_daemon(node)
        if configs:
            ok = wait_for(lambda: all(self.answers(n) for n in configs), timeout, 0.1)
            self.progress(f"LISP daemons {'ready' if ok else 'NOT ready'}")
            if not ok:
                late = [n for n in configs if not self.answers(n)]
                raise RuntimeError(f"LISP daemons did not answer within {timeout:g} s: "
                                   f"{', '.join(late)} (logs in {self.out_dir})")

    def start_daemon(self, node):
        if node in self.daemons and self.daemons[node].alive:
            raise RuntimeError(f"{node}: its daemon runs already")
        self.daemons[node] = self.lab.start_process(
            node, [PY, "-m", "nodes.daemon", self.daemon_paths[node]],
            self.out_dir / f"{node}.log", name=f"lisp-{node}")

    def stop_daemon(self, node, kill=False):
        proc = self.daemons.get(node)
        if proc is None or not proc.alive:
            raise RuntimeError(f"{node}: no daemon runs there")
        proc.stop(signal.SIGKILL if kill else signal.SIGTERM)

    def socket(self, node):
        return str(Path(self.run_dir) / f"{node}.sock")

    def query(self, node, what, timeout=2.0):
        from nodes.control import query
        return query(self.socket(node), {"show": what}, timeout=timeout, node=node)["data"]

    def answers(self, node):
        from nodes.control import ControlError
        try:
            self.query(node, "config")
            return True
        except ControlError:
            return False

    # --- hosts and traffic --------------------------------------------------------------

    def host_ip(self, host, version=None):
        """The host's address of `version` (4, 6; None: IPv4 if it has one, else IPv6)."""
        return self.model.hosts[host].addr(version)

    def announce(self, host):
        """As a hypervisor does after a migration: the VM's gratuitous ARP and unsolicited
        neighbour advertisement."""
        h = self.model.hosts[host]
        argv = [PY, "-m", "lab.traffic", "announce", "--iface", h.intf(), "--ip", h.ip(4)]
        if h.ip(6):
            argv += ["--ip6", h.ip(6)]
        self.lab.run(host, argv, timeout=10)

    def announce_all(self, hosts, rounds=3, interval=0.1):
        """`announce` for many hosts at once (a group of VMs that moved together): the same
        frames, sent from each host's interface through sockets made in its namespace, so
        that every host's first announcement leaves within a few milliseconds."""
        if not hosts:
            return
        plan = self._announcements(hosts)
        self._send_announcements(plan, rounds, interval)

    def _announcements(self, hosts):
        """[(socket, frames)]: a packet socket on each host's interface, made in its
        namespace, and the frames a migrated VM sends (gratuitous ARP request and reply, an
        unsolicited neighbour advertisement with IPv6)."""
        from .traffic import arp_announcement, neighbour_advert
        plan = []
        socks = self.lab.packet_sockets([(n, self.model.hosts[n].intf()) for n in hosts])
        for name, sock in zip(hosts, socks):
            h = self.model.hosts[name]
            mac = sock.getsockname()[4][:6]
            frames = [arp_announcement(mac, ip, op) for ip in [h.ip(4)] if ip
                      for op in (1, 2)]
            if h.ip(6):
                frames.append(neighbour_advert(mac, h.ip(6)))
            plan.append((sock, frames))
        return plan

    @staticmethod
    def _send_announcements(plan, rounds=3, interval=0.1, first_sent=None):
        try:
            for i in range(rounds):
                if i:
                    time.sleep(interval)
                for sock, frames in plan:
                    for frame in frames:
                        try:
                            sock.send(frame)
                        except OSError:          # a port still down: the next round
                            pass
                if i == 0 and first_sent is not None:
                    first_sent.append(time.time())
        finally:
            # closing a packet socket waits for an RCU grace period (about 12 ms here):
            # a hundred of them would hold the timeline for a second, so in the background
            def close():
                for sock, _ in plan:
                    sock.close()
            threading.Thread(target=close, name="close-announce-sockets", daemon=True).start()

    def gateway_ping(self, host):
        """As a booting VM does: resolve and use its gateway."""
        gw = self.model.host_gateway(host, 4, self.where[host])
        if gw:
            self.lab.run(host, ["ping", "-c", "1", "-W", "1", gw], timeout=5)

    def ping(self, src, dst, timeout=1, family=None):
        """A ping from `src` to `dst` is answered (`dst` a group: every member answers)."""
        if dst in self.model.groups:
            return not self.not_answering(src, dst, timeout, family)
        ip = self.host_ip(dst, family)
        return self.lab.run(src, ["ping", "-c", "1", "-W", str(timeout), ip],
                            timeout=timeout + 5).returncode == 0

    def not_answering(self, src, group, timeout=1, family=None):
        """The members of `group` whose ping from `src` is not answered (one ping each, all
        at once, from one shell in `src`)."""
        ips = {self.host_ip(m, family): m for m in self.model.members(group)}
        script = ("for ip in " + " ".join(ips) + "; do (ping -c 1 -W " + str(timeout)
                  + " -q $ip >/dev/null 2>&1 || echo $ip) & done; wait")
        r = self.lab.run(src, ["sh", "-c", script], timeout=timeout + 10)
        return [ips[ip] for ip in r.stdout.split() if ip in ips]

    # --- changes a timeline makes -------------------------------------------------------

    def move(self, host, to_site, cold_s=0.0):
        """Re-attach the VM's switch-side interface to `to_site`'s switch (a live move:
        namespace, addresses and TCP state stay); a cold move takes the link down first.
        `host` may be a group (count: N): its members' ports move together. As a hypervisor
        does at the end of a migration, the VMs announce themselves right after the switch-
        over: the sockets and frames are made before it, the re-attach is one netlink
        request per port from this process, the first announcement follows at once.
        Returns `time` (the move's time zero: the switch-over of a live move, the link going
        down for a cold one), `reattach_ms` (switch-over to the last port re-attached),
        `first_announce_ms` (switch-over to the first round of announcements sent) and
        `announce_ms` (to the last round)."""
        from pyroute2 import IPRoute
        members = self.model.members(host)
        ports = [f"{self.model.sites[self.model.hosts[m].site].switch}-{m}" for m in members]
        switch = self.model.sites[to_site].switch
        plan = self._announcements(members)
        first_sent = []
        try:
            with IPRoute() as ipr:
                def index(name):
                    found = ipr.link_lookup(ifname=name)
                    if not found:
                        raise RuntimeError(f"move {host} to {to_site}: no interface {name}")
                    return found[0]
                master = index(switch)
                idx = [index(p) for p in ports]

                def links(**attrs):
                    for i in idx:
                        ipr.link("set", index=i, **attrs)

                started = time.time()             # a cold move starts with the link down
                if cold_s:
                    links(state="down")
                    time.sleep(cold_s)
                t0 = time.time()
                try:
                    links(master=master)
                    if cold_s:
                        links(state="up")
                except Exception as e:            # pyroute2's NetlinkError and kin
                    raise RuntimeError(f"move {host} to {to_site}: {e}") from None
                t1 = time.time()
        except BaseException:
            self._send_announcements(plan, rounds=0)      # closes the sockets
            raise
        for m in members:
            self.where[m] = to_site
        self._send_announcements(plan, first_sent=first_sent)
        done = time.time()
        return {"time": started, "reattach_ms": round((t1 - t0) * 1000.0, 1),
                "first_announce_ms": (round((first_sent[0] - t0) * 1000.0, 1)
                                      if first_sent else None),
                "announce_ms": round((done - t0) * 1000.0, 1)}

    def warm_neighbours(self, link):
        """Permanent neighbour entries (ARP, and NDP with subnet6) for both ends of a
        point-to-point link, as a routing protocol's hellos keep them fresh on a real
        network: the first packet after an idle spell (a Map-Register after a move, say)
        waits for no address resolution, and a move's measured convergence has no cold ARP
        in it (issue 12). Taking a link down flushes them; set_link puts them back."""
        for end in link.ends():
            peer = link.other(end)
            mac = self.sh(peer, f"cat /sys/class/net/{link.intf(peer)}/address").split()[0]
            self.sh(end, f"ip neigh replace {link.ip(peer)} lladdr {mac} nud permanent "
                         f"dev {link.intf(end)}")
            if link.subnet6:
                self.sh(end, f"ip -6 neigh replace {link.ip6(peer)} lladdr {mac} "
                             f"nud permanent dev {link.intf(end)}")

    def set_link(self, name, up):
        """Both ends of a routed link (or the DCI's ports) up or down."""
        state = "up" if up else "down"
        if name == "dci":
            for port in self.model.dci_ports():
                self.lab.run(None, ["ip", "link", "set", "dev", port, state], timeout=5)
            return
        x = self.model.links[name]
        for end in x.ends():
            self.sh(end, f"ip link set dev {x.intf(end)} {state}")
        if up:
            for end in x.ends():              # the kernel dropped the routes across it
                for cmd in self.model.routes_over(end, name):
                    self.sh(end, cmd)
            self.warm_neighbours(x)

    def inject_host_route(self, host, timeout=5.0):
        """Route health injection: the gateway of the site where `host` is now adds a static
        host route toward its LAN (vtysh), OSPF carries it to every core router. Returns
        what changed (see frr.inject)."""
        from . import frr
        site = self.model.sites[self.where[host]]
        prefix = f"{ipaddress.ip_address(self.host_ip(host))}/32"
        return frr.inject(self.lab, site.gateway, prefix, site.lan_intf(self.model),
                          self.model.routers, timeout)


def _merged(config, override):
    """`config` with `override` merged in: tables key by key, a table into each table of an
    array, anything else replaced."""
    out = dict(config)
    for key, value in override.items():
        old = out.get(key)
        if isinstance(value, dict) and isinstance(old, dict):
            out[key] = _merged(old, value)
        elif isinstance(value, dict) and isinstance(old, list):
            out[key] = [_merged(t, value) for t in old]
        else:
            out[key] = value
    return out

"""The daemon as a process in its namespace (issue 9, items 5 and 6): one daemon per node,
an IPv4-only xTR where IPv6 is disabled, kernel state that was there before is left alone,
and a prompt exit on SIGTERM while several daemons run.

    dph1 --- dpx1 ---+
    dph2 --- dpx2 ---+--- dpr --- dpms      (dpr: a plain router; dpms: Map-Server/Resolver)
    dph3 --- dpx3 ---+

Every xTR serves an IPv4 and an IPv6 EID prefix, except dpx3: IPv4 only, and its namespace
has IPv6 disabled. Each test starts the daemons it needs and stops them; node names start
with "dp" so that they collide with no other test's.
"""
import ipaddress
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mininet.topo import Topo

from lab.emu import Lab, wait_for
from nodes.control import ControlError, query

PY = sys.executable
RUN_PREFIX = "pytest-emu-"
SECRET = "dp-secret"
XTRS = {   # name: (core /30, LAN gateway addresses, host addresses, EID prefixes)
    "dpx1": ("172.30.1.2/30", ["10.81.1.1/24", "2001:db8:81:1::1/64"],
             ["10.81.1.10/24", "2001:db8:81:1::10/64"], ["10.81.1.0/24", "2001:db8:81:1::/64"]),
    "dpx2": ("172.30.2.2/30", ["10.81.2.1/24", "2001:db8:81:2::1/64"],
             ["10.81.2.10/24", "2001:db8:81:2::10/64"], ["10.81.2.0/24", "2001:db8:81:2::/64"]),
    "dpx3": ("172.30.3.2/30", ["10.81.3.1/24"], ["10.81.3.10/24"], ["10.81.3.0/24"]),
}
NO_IPV6 = {"dpx3"}
MS_CORE = "172.30.9.2/30"

# A bounded UDP flood (at most `seconds`): random bytes to HOSTS (comma-separated):PORT, or,
# with PORT 0, to a new destination every packet (10.99.x.y, port 9: each one a map-cache
# miss at the ITR).
FLOOD = r"""
import os, random, socket, sys, time
hosts, port, seconds = sys.argv[1].split(","), int(sys.argv[2]), float(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
end = time.monotonic() + seconds
while time.monotonic() < end:
    for i in range(100):
        try:
            if port:
                s.sendto(os.urandom(random.randrange(0, 120)), (hosts[i % len(hosts)], port))
            else:
                s.sendto(b"x" * 100, ("10.99.%d.%d" % (random.randrange(256),
                                                     random.randrange(1, 255)), 9))
        except OSError:
            pass
"""


def ip_of(cidr):
    return str(ipaddress.ip_interface(cidr).ip)


def other_side(cidr):
    iface = ipaddress.ip_interface(cidr)
    return next(h for h in iface.network.hosts() if h != iface.ip)


class DaemonsTopo(Topo):
    def build(self):
        self.addHost("dpr", ip=None)
        self.addHost("dpms", ip=None)
        self.addLink("dpms", "dpr", intfName1="dpms-core", intfName2="dpr-dpms")
        for n, name in enumerate(XTRS, 1):
            self.addHost(name, ip=None)
            self.addHost(f"dph{n}", ip=None)
            self.addLink(name, "dpr", intfName1=f"{name}-core", intfName2=f"dpr-{name}")
            self.addLink(f"dph{n}", name, intfName1=f"dph{n}-eth0", intfName2=f"{name}-lan")


def xtr_config(name, sockets, workdir, control_socket=None, tun="lisp0", event_log=None):
    core, _gws, _hosts, eids = XTRS[name]
    ms = ip_of(MS_CORE)
    text = (f'[node]\nname = "{name}"\nrole = "xtr"\n'
            f'control_socket = "{control_socket or sockets / (name + ".sock")}"\n'
            f'event_log = "{event_log or workdir / (name + ".events.jsonl")}"\n'
            f'[[rloc]]\naddress = "{ip_of(core)}"\n')
    for p in eids:
        text += f'[[eid_prefix]]\nprefix = "{p}"\ninstance_id = 0\n'
    text += (f'[[map_server]]\naddress = "{ms}"\nsecret = "{SECRET}"\nkey_id = 0\n'
             f'algorithm = "hmac-sha-256-128"\n[[map_resolver]]\naddress = "{ms}"\n'
             f'[etr]\nregister_interval = 1.0\n[itr]\nmiss_policy = "drop"\n'
             f'[dataplane]\ntun = "{tun}"\nlan_interfaces = ["{name}-lan"]\nmtu = 1500\n')
    return text


def ms_config(sockets, workdir):
    text = (f'[node]\nname = "dpms"\nrole = "msmr"\ncontrol_socket = "{sockets}/dpms.sock"\n'
            f'event_log = "{workdir}/dpms.events.jsonl"\n[msmr]\nregistration_timeout = 3.0\n')
    for name, (_c, _g, _h, eids) in XTRS.items():
        text += (f'[[site]]\nname = "{name}"\n[[site.key]]\nkey_id = 0\nsecret = "{SECRET}"\n'
                 f'algorithm = "hmac-sha-256-128"\n')
        for p in eids:
            text += f'[[site.prefix]]\nprefix = "{p}"\ninstance_id = 0\n'
    return text


class Run:
    def __init__(self, lab, workdir):
        self.lab = lab
        self.workdir = Path(workdir)
        self.sockets = lab.run_dir
        self._configure()
        self.configs = {}
        for name in XTRS:
            self.configs[name] = self.write(name, xtr_config(name, self.sockets, self.workdir))
        self.configs["dpms"] = self.write("dpms", ms_config(self.sockets, self.workdir))

    def sh(self, node, cmd, timeout=10):
        return self.lab.run(node, ["sh", "-c", cmd], timeout=timeout)

    def must(self, node, cmd):
        r = self.sh(node, cmd)
        if r.returncode != 0:
            raise RuntimeError(f"{node}: `{cmd}` failed: {r.stdout}{r.stderr}")
        return r.stdout

    def _configure(self):
        self.must("dpr", "sysctl -qw net.ipv4.ip_forward=1")
        for name, core in [("dpms", MS_CORE)] + [(n, v[0]) for n, v in XTRS.items()]:
            prefixlen = ipaddress.ip_interface(core).network.prefixlen
            self.must(name, f"ip addr add {core} dev {name}-core && "
                            f"ip route add default via {other_side(core)}")
            self.must("dpr", f"ip addr add {other_side(core)}/{prefixlen} dev dpr-{name}")
        for n, (name, (_c, gws, hosts, _e)) in enumerate(XTRS.items(), 1):
            if name in NO_IPV6:
                for node in (name, f"dph{n}"):
                    self.must(node, "sysctl -qw net.ipv6.conf.all.disable_ipv6=1 "
                                    "net.ipv6.conf.default.disable_ipv6=1")
            for gw, host in zip(gws, hosts):
                v6 = "-6 " if ":" in gw else ""
                nodad = " nodad" if v6 else ""
                self.must(name, f"ip {v6}addr add {gw} dev {name}-lan{nodad}")
                self.must(f"dph{n}", f"ip {v6}addr add {host} dev dph{n}-eth0{nodad} && "
                                     f"ip {v6}route add default via {ip_of(gw)}")

    def write(self, name, text):
        path = self.workdir / f"{name}.toml"
        path.write_text(text)
        return path

    def start(self, name, config=None, log=None):
        return self.lab.start_process(name, [PY, "-m", "nodes.daemon", config or self.configs[name]],
                                      log or self.workdir / f"{name}.log", name=f"lisp-{name}")

    def query(self, name, what, sock=None):
        return query(str(sock or self.sockets / f"{name}.sock"), {"show": what})["data"]

    def answers(self, name, sock=None):
        try:
            self.query(name, "config", sock)
            return True
        except ControlError:
            return False

    def wait_up(self, name, proc, timeout=10):
        """Until the daemon answers and its data plane routes are in place."""
        def up():
            assert proc.alive, (name, proc.read_log())
            return self.answers(name) and "lisp0" in self.sh(
                name, "ip route show table 100").stdout
        assert wait_for(up, timeout, 0.1), (name, proc.read_log())

    def kernel_state(self, name):
        """What a running xTR put in its namespace: table 100, rules, TUN devices."""
        return {"table100": self.sh(name, "ip -4 route show table 100; "
                                          "ip -6 route show table 100").stdout,
                "rules": self.sh(name, "ip -4 rule; ip -6 rule").stdout,
                "tun": self.sh(name, "ip -o link show type tun | cut -d: -f2").stdout}

    def sockets_of(self, name, port):
        """The pids bound to UDP `port` in `name`'s namespace."""
        out = self.sh(name, f"ss -H -ulpn 'sport = :{port}'").stdout
        return sorted({int(p.split("=")[1]) for p in out.replace(",", " ").split()
                       if p.startswith("pid=")})

    def stop(self, proc):
        return self.lab.stop_process(proc)


@pytest.fixture(scope="module")
def dp(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("daemon-process")
    with Lab(DaemonsTopo(), run_id=f"{RUN_PREFIX}daemon-process-{time.monotonic_ns() % 10**6}") as lab:
        yield Run(lab, workdir)


# --- one daemon per node -----------------------------------------------------------------

@pytest.mark.parametrize("variant", ["same-config", "other-socket-tun-and-log"])
def test_a_second_daemon_for_the_same_node_refuses_and_leaves_the_first_alone(dp, variant):
    first = dp.start("dpx1")
    try:
        dp.wait_up("dpx1", first)
        before = dp.kernel_state("dpx1")
        assert "default dev lisp0" in before["table100"]
        assert before["table100"].count("default dev lisp0") == 2, before   # IPv4 and IPv6
        assert dp.sockets_of("dpx1", 4342) == [first.pid]
        config = dp.configs["dpx1"]
        if variant != "same-config":
            # what the attacker did: the node's own config with another control socket,
            # TUN and event log, so that nothing of the first stops it early
            config = dp.write("dpx1-second", xtr_config(
                "dpx1", dp.sockets, dp.workdir, control_socket=dp.sockets / "dpx1-b.sock",
                tun="lisp9", event_log=dp.workdir / "dpx1-b.events.jsonl"))
        log = dp.workdir / f"dpx1-second-{variant}.log"
        second = dp.start("dpx1", config, log)
        rc = second.wait(10)
        out = log.read_text()
        assert rc != 0, out
        lines = out.strip().splitlines()
        assert len(lines) == 1, out
        assert "already" in lines[0] and "dpx1" in lines[0] and str(first.pid) in lines[0], out
        # the first is intact: routes, rules, TUN, sockets; it answers and still forwards
        assert dp.kernel_state("dpx1") == before
        assert dp.sockets_of("dpx1", 4342) == [first.pid]
        assert first.alive and dp.answers("dpx1")
        assert not (dp.sockets / "dpx1-b.sock").exists()
        assert "lisp0" in dp.sh("dpx1", "ip route get 10.99.7.5 from 10.81.1.10 "
                                        "iif dpx1-lan").stdout
        misses = dp.query("dpx1", "counters").get("map_cache_miss", 0)
        dp.sh("dph1", "ping -n -c 2 -i 0.2 -W 1 10.99.7.5")          # a new destination
        assert wait_for(lambda: dp.query("dpx1", "counters").get("map_cache_miss", 0)
                        > misses, 3), dp.query("dpx1", "counters")
    finally:
        assert dp.stop(first) == 0, first.read_log()
    assert dp.kernel_state("dpx1")["table100"].strip() == ""


def test_kernel_state_that_was_there_before_the_daemon_is_left_at_exit(dp):
    """A rule the daemon would add, already there (someone else's, or left by a daemon
    killed with SIGKILL): the daemon starts, and its exit removes only its own."""
    rule = "iif dpx2-lan lookup 100 priority 101"
    dp.must("dpx2", f"ip rule add {rule}")
    try:
        proc = dp.start("dpx2")
        dp.wait_up("dpx2", proc)
        assert dp.stop(proc) == 0, proc.read_log()
        rules = dp.sh("dpx2", "ip -4 rule").stdout
        assert "iif dpx2-lan lookup 100" in rules, rules            # theirs: still there
        assert "suppress_prefixlength" not in rules, rules          # ours: gone
        assert "lisp0" not in dp.sh("dpx2", "ip -6 rule; ip -6 route show table 100").stdout
    finally:
        dp.sh("dpx2", f"ip rule del {rule}")


# --- IPv4 only, IPv6 disabled ----------------------------------------------------------

@pytest.mark.parametrize("eids", ["ipv4-only", "ipv4-and-ipv6"])
def test_an_xtr_starts_where_ipv6_is_disabled_and_serves_ipv4(dp, eids):
    """IPv4-only: no IPv6 set-up at all, nothing to say. With IPv6 EIDs too: IPv4 is
    served and one line says why IPv6 is not (before: 'internal error: NetlinkError:
    (13, 'Permission denied')' and no daemon)."""
    assert dp.sh("dpx3", "cat /proc/sys/net/ipv6/conf/all/disable_ipv6").stdout.strip() == "1"
    config = dp.configs["dpx3"]
    if eids == "ipv4-and-ipv6":
        config = dp.write("dpx3-dual", xtr_config("dpx3", dp.sockets, dp.workdir).replace(
            "[[map_server]]", '[[eid_prefix]]\nprefix = "2001:db8:81:3::/64"\n'
                              'instance_id = 0\n[[map_server]]'))
    log = dp.workdir / f"dpx3-{eids}.log"
    proc = dp.start("dpx3", config, log)
    try:
        dp.wait_up("dpx3", proc)
        table = dp.kernel_state("dpx3")["table100"]
        assert "default dev lisp0" in table and "::" not in table, table
        assert "lisp0" in dp.sh("dpx3", "ip route get 10.99.7.5 from 10.81.3.10 "
                                        "iif dpx3-lan").stdout
        lines = log.read_text().strip().splitlines()
        if eids == "ipv4-only":
            assert lines == [], lines
        else:
            assert len(lines) == 1 and "IPv6 is not available" in lines[0], lines
            assert dp.query("dpx3", "counters").get("ipv6_unavailable") == 1
    finally:
        assert dp.stop(proc) == 0, proc.read_log()
    assert dp.kernel_state("dpx3")["table100"].strip() == ""


# --- SIGTERM -----------------------------------------------------------------------------

def test_several_daemons_each_exit_within_2s_of_sigterm_even_in_a_flood(dp):
    """Five daemons, each flooded (control port, data port, and from its LAN new
    destinations: the data plane then wakes the event loop for every packet, which filled
    asyncio's self-pipe and lost the signal: the old daemon never stopped)."""
    names = ["dpms", *XTRS]
    procs = {n: dp.start(n) for n in names}
    floods = []
    try:
        for n in XTRS:
            dp.wait_up(n, procs[n])
        assert wait_for(lambda: len(dp.query("dpms", "registrations")) == 5, 10), \
            dp.query("dpms", "registrations")
        rlocs = [ip_of(v[0]) for v in XTRS.values()]
        for port, hosts in ((4342, rlocs + [ip_of(MS_CORE)]), (4341, rlocs)):
            floods.append(dp.lab.start_process(
                "dpr", [PY, "-c", FLOOD, ",".join(hosts), port, 8], name="flood"))
        for n in (1, 2, 3):
            floods.append(dp.lab.start_process(f"dph{n}", [PY, "-c", FLOOD, "-", 0, 8],
                                               name="flood"))
        time.sleep(2.0)
        assert all(f.alive for f in floods)
        sent = time.monotonic()
        for p in procs.values():
            p.send_signal(signal.SIGTERM)
        took = {}
        for n, p in procs.items():
            try:
                p.wait(max(0.1, sent + 5 - time.monotonic()))
                took[n] = round(time.monotonic() - sent, 2)
            except subprocess.TimeoutExpired:
                took[n] = "still running after 5 s"
        print("seconds from SIGTERM to exit:", took)
        assert all(isinstance(t, float) and t < 2.0 for t in took.values()), took
        for n, p in procs.items():
            assert p.returncode == 0, (n, p.read_log()[-2000:])
    finally:
        for p in procs.values():
            if p.alive:
                dp.stop(p)
        for f in floods:
            dp.stop(f)
    for n in XTRS:
        assert dp.kernel_state(n)["table100"].strip() == "", n

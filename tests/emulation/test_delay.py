"""Link delays without netem: the AF_PACKET relay of lab.delay and lab/relay.py.

One Lab (module scope) holds four pairs of hosts, each pair on its own link:
    dlya -- relay 10 ms (dlyr10) -- dlyb      accuracy, TCP, UDP, ARP/ND, captures
    dlyc --------------------------- dlyd     a plain link, for contrast
    dlye -- relay  5 ms (dlyr5)  -- dlyf      accuracy at 5 ms
    dlyg -- relay 10 ms, limit 20 -- dlyh     the bounded queue (its relay is stopped there)
The relays are forced (emulation="relay"), so these tests exercise them even where netem
exists. Numbers worth reporting are printed (run with -s to see them).
"""
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest

from lab.cleanup import pid_alive
from lab.emu import wait_for

from lab import delay as dl
from lab.delay import RelayHost, delay_emulation, delayed_link, relay_stats, start_relays
from lab.emu import Lab, netem_available

RUN_PREFIX = "pytest-emu-"          # as tests/emulation/conftest.py: cleaned up after a crash

PAIRS = {   # name: (host A, host B, subnet number, delay ms or None, relay name, limit)
    "d10": ("dlya", "dlyb", 1, 10, "dlyr10", dl.DEFAULT_LIMIT),
    "plain": ("dlyc", "dlyd", 2, None, None, None),
    "d5": ("dlye", "dlyf", 3, 5, "dlyr5", dl.DEFAULT_LIMIT),
    "queue": ("dlyg", "dlyh", 4, 10, "dlyrq", 20),
}


def v4(net, host):
    return f"10.77.{net}.{host}"


def v6(net, host):
    return f"2001:db8:77:{net}::{host}"


def run_id(name):
    return f"{RUN_PREFIX}{name}-{os.getpid()}-{time.monotonic_ns() % 10**6}"


def pairs_topo():
    from mininet.topo import Topo

    class Pairs(Topo):
        def build(self):
            for a, b, net, delay_ms, relay, limit in PAIRS.values():
                self.addHost(a, ip=v4(net, 1) + "/24")
                self.addHost(b, ip=v4(net, 2) + "/24")
                names = dict(intfName1=f"{a}-eth0", intfName2=f"{b}-eth0")
                if delay_ms is None:
                    self.addLink(a, b, **names)
                else:
                    got = delayed_link(self, a, b, delay_ms, emulation="relay", name=relay,
                                       limit=limit, **names)
                    assert got == relay

    return Pairs()




def add_ipv6(lab, host, addr):
    intf = f"{host}-eth0"
    lab.run(host, ["ip", "-6", "addr", "add", f"{addr}/64", "dev", intf, "nodad"], check=True)


def ipv6_ready(lab, host):
    """No tentative address left on the host's interface (DAD of the link-local done)."""
    out = lab.run(host, ["ip", "-6", "addr", "show", "dev", f"{host}-eth0"]).stdout
    return "inet6 fe80" in out and "tentative" not in out


def fresh_relays(lab, log_dir):
    """Start every relay of the Lab with its log in `log_dir`, so the tests can read the
    logs after the Lab has stopped; a relay the Lab already started (should it start them
    itself one day) is stopped and started again. Returns {relay name: LabProcess}."""
    for host in dl.relays(lab):
        if host.relay_process is not None and host.relay_process.alive:
            host.relay_process.stop()
    started = start_relays(lab, log_dir=log_dir)
    assert set(started) == {h.name for h in dl.relays(lab)}
    return started


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    logs = tmp_path_factory.mktemp("relay-logs")
    with Lab(pairs_topo(), run_id=run_id("delay")) as lab:
        lab.relays = fresh_relays(lab, logs)
        for a, b, net, *_ in PAIRS.values():
            add_ipv6(lab, a, v6(net, 1))
            add_ipv6(lab, b, v6(net, 2))
        hosts = [h for pair in PAIRS.values() for h in pair[:2]]
        assert wait_for(lambda: all(ipv6_ready(lab, h) for h in hosts), 10)
        yield lab


def ping_rtts(lab, src, dst, count=50, interval=0.02, v6=False):
    """Per-packet RTTs in ms of `count` pings after one warm-up ping (neighbour resolution)."""
    cmd = ["ping", "-6"] if v6 else ["ping", "-4"]
    lab.run(src, cmd + ["-c", "1", "-W", "2", dst], timeout=10)
    out = lab.run(src, cmd + ["-n", "-c", str(count), "-i", str(interval), "-W", "2", dst],
                  timeout=count * interval + 15).stdout
    rtts = [float(x) for x in re.findall(r"time=([0-9.]+) ms", out)]
    assert len(rtts) >= count * 0.98, out
    return rtts


def summary(rtts):
    s = sorted(rtts)
    return {"min": s[0], "median": statistics.median(s),
            "p95": s[min(len(s) - 1, int(round(0.95 * (len(s) - 1))))], "max": s[-1]}


def fmt(stats):
    return ", ".join(f"{k} {v:.3f}" for k, v in stats.items())


# --- accuracy -----------------------------------------------------------------------------------

def test_rtt_10ms_per_direction_and_a_plain_link_for_contrast(lab):
    relayed = summary(ping_rtts(lab, "dlya", v4(1, 2)))
    plain = summary(ping_rtts(lab, "dlyc", v4(2, 2)))
    print(f"\n10 ms each way, RTT ms: {fmt(relayed)}\nplain link, RTT ms: {fmt(plain)}")
    assert 18.0 <= relayed["median"] <= 22.0, relayed
    assert relayed["min"] >= 19.0, relayed
    assert plain["median"] < 1.0, plain


def test_rtt_5ms_per_direction(lab):
    stats = summary(ping_rtts(lab, "dlye", v4(3, 2)))
    print(f"\n5 ms each way, RTT ms: {fmt(stats)}")
    assert 8.5 <= stats["median"] <= 11.5, stats
    assert stats["min"] >= 9.5, stats


def test_the_delay_is_in_the_captures_of_both_ends(lab, tmp_path):
    """tcpdump on A's and on B's interface: each echo request reaches B's side 10 ms after
    A's, each reply A's side 10 ms after B's, and only A's and B's MACs appear (the relay
    sends nothing of its own)."""
    ends = {"dlya": tmp_path / "a.pcap", "dlyb": tmp_path / "b.pcap"}
    dumps = [lab.start_process(h, ["tcpdump", "-i", f"{h}-eth0", "-n", "-U",
                                   "--immediate-mode", "-w", pcap],
                               tmp_path / f"{h}.tcpdump.log") for h, pcap in ends.items()]
    assert wait_for(lambda: all("listening on" in d.read_log() for d in dumps), 10)
    lab.run("dlya", ["ping", "-4", "-n", "-c", "10", "-i", "0.05", v4(1, 2)], timeout=15)
    time.sleep(0.2)
    for d in dumps:
        d.stop(signal.SIGINT)
    seen = {}
    macs = set()
    for host, pcap in ends.items():
        out = subprocess.run(["tcpdump", "-r", pcap, "-tt", "-n", "-e"], text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL).stdout
        for line in out.splitlines():
            macs.add(line.split()[1])
            m = re.match(r"([0-9.]+) .*ICMP echo (request|reply), id \d+, seq (\d+)", line)
            if m:
                seen[(host, m.group(2), int(m.group(3)))] = float(m.group(1))
    one_way = []
    for seq in range(1, 11):
        one_way.append(seen[("dlyb", "request", seq)] - seen[("dlya", "request", seq)])
        one_way.append(seen[("dlya", "reply", seq)] - seen[("dlyb", "reply", seq)])
    ms = [x * 1000 for x in one_way]
    print(f"\none-way delay between the captures, ms: median {statistics.median(ms):.3f}, "
          f"min {min(ms):.3f}, max {max(ms):.3f}")
    assert 9.8 <= statistics.median(ms) <= 11.0, ms
    assert min(ms) >= 9.8, ms
    end_macs = {lab[h].intf(f"{h}-eth0").MAC() for h in ends}
    assert macs <= end_macs, f"frames from other MACs on the link: {macs - end_macs}"


# --- what crosses -------------------------------------------------------------------------------

def test_tcp_through_the_relay(lab):
    server = lab.start_process("dlyb", ["iperf3", "-s", "-1", "-p", "5299"], None)
    try:
        def client():
            return lab.run("dlya", ["iperf3", "-c", v4(1, 2), "-p", "5299", "-t", "3", "-J"],
                           timeout=30)
        result = client()
        if "Connection refused" in result.stdout + result.stderr:   # server not yet up
            time.sleep(0.5)
            result = client()
        report = json.loads(result.stdout)
        assert "error" not in report, report.get("error")
        received = report["end"]["sum_received"]["bits_per_second"]
        retrans = report["end"]["sum_sent"].get("retransmits")
        rtt_ms = report["end"]["streams"][0]["sender"].get("mean_rtt", 0) / 1000
    finally:
        server.stop()
    print(f"\nTCP through 10 ms each way: {received / 1e6:.0f} Mbit/s received, "
          f"{retrans} retransmits, mean RTT {rtt_ms:.1f} ms")
    assert received > 100e6


UDP_RECEIVER = r"""
import json, socket, sys, time
family = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
s = socket.socket(family, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
s.bind((sys.argv[1], int(sys.argv[2])))
print("ready", flush=True)
s.settimeout(float(sys.argv[3]))
got = []
try:
    while True:
        data = s.recv(65535)
        intact = data[4:] == bytes((data[3] + i) % 256 for i in range(len(data) - 4))
        got.append([len(data), int.from_bytes(data[:4], "big"), intact])
except socket.timeout:
    pass
print(json.dumps(got), flush=True)
"""

UDP_SENDER = r"""
import socket, sys, time
dst, port, size, count, gap = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), \
    int(sys.argv[4]), float(sys.argv[5])
family = socket.AF_INET6 if ":" in dst else socket.AF_INET
s = socket.socket(family, socket.SOCK_DGRAM)
if family == socket.AF_INET:    # don't fragment: the datagram must fit the link whole
    s.setsockopt(socket.IPPROTO_IP, 10, 2)       # IP_MTU_DISCOVER = IP_PMTUDISC_DO
else:
    s.setsockopt(socket.IPPROTO_IPV6, 23, 2)     # IPV6_MTU_DISCOVER = IPV6_PMTUDISC_DO
for seq in range(count):
    head = seq.to_bytes(4, "big")
    s.sendto(head + bytes((head[3] + i) % 256 for i in range(size - 4)), (dst, port))
    if gap:
        time.sleep(gap)
"""


def udp_exchange(lab, tmp_path, src, dst_host, dst_addr, size, count, gap, port):
    """Send `count` datagrams of `size` bytes from `src` to dst_addr; returns what the
    receiver got: [[length, seq, payload intact], ...]."""
    log = tmp_path / f"udp-{dst_host}-{port}.log"
    rx = lab.start_process(dst_host, [sys.executable, "-c", UDP_RECEIVER, dst_addr, port, 1.0], log)
    assert wait_for(lambda: "ready" in rx.read_log(), 10), rx.read_log()
    lab.run(src, [sys.executable, "-c", UDP_SENDER, dst_addr, port, size, count, gap],
            timeout=30, check=True)
    rx.wait(timeout=15 + count * gap)
    return json.loads(rx.read_log().splitlines()[-1])


@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
def test_full_size_udp_crosses_whole_and_in_order(lab, tmp_path, family):
    # full frames: 1500-byte IP packets (UDP payload 1472 over IPv4, 1452 over IPv6)
    addr, size = (v4(1, 2), 1472) if family == "ipv4" else (v6(1, 2), 1452)
    lab.run("dlya", ["ping", "-c", "1", "-W", "2", addr], timeout=10)     # neighbour known
    got = udp_exchange(lab, tmp_path, "dlya", "dlyb", addr, size, 300, 0.001, 9001)
    assert [g[1] for g in got] == list(range(300))
    assert all(g[0] == size and g[2] for g in got)


def test_arp_and_ipv6_neighbour_discovery_cross_the_relay(lab):
    a_intf, b_intf = lab["dlya"].intf("dlya-eth0"), lab["dlyb"].intf("dlyb-eth0")
    lab.run("dlya", ["ip", "neigh", "flush", "dev", "dlya-eth0"], check=True)
    assert lab.run("dlya", ["ping", "-4", "-c", "2", "-W", "2", v4(1, 2)]).returncode == 0
    assert lab.run("dlya", ["ping", "-6", "-c", "2", "-W", "2", v6(1, 2)]).returncode == 0
    b_ll = re.search(r"inet6 (fe80::[0-9a-f:]+)/64", lab.run(
        "dlyb", ["ip", "-6", "addr", "show", "dev", "dlyb-eth0"]).stdout).group(1)
    out = lab.run("dlya", ["ping", "-6", "-c", "2", "-W", "2", f"{b_ll}%dlya-eth0"])
    assert out.returncode == 0, out.stdout + out.stderr
    neigh = lab.run("dlya", ["ip", "neigh", "show", "dev", "dlya-eth0"]).stdout
    for addr in (v4(1, 2), v6(1, 2), b_ll):
        entry = re.search(rf"^{re.escape(addr)} lladdr (\S+)", neigh, re.M)
        assert entry, neigh
        assert entry.group(1) == b_intf.MAC(), "A must see B's own MAC: the relay is invisible"
    neigh_b = lab.run("dlyb", ["ip", "neigh", "show", "dev", "dlyb-eth0"]).stdout
    assert re.search(rf"^{re.escape(v4(1, 1))} lladdr {a_intf.MAC()}", neigh_b, re.M), neigh_b


RAW_RECEIVER = r"""
import json, socket, struct, sys
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
s.bind((sys.argv[1], 3))
s.setsockopt(263, 8, 1)                                  # SOL_PACKET, PACKET_AUXDATA
s.settimeout(float(sys.argv[2]))
print("ready", flush=True)
got = []
try:
    while True:
        data, anc, flags, addr = s.recvmsg(65535, 256)
        if data[12:14] != b"\x88\xb5" or addr[2] == 4:  # our test ethertype, not outgoing
            continue
        status, tci, tpid = 0, None, None
        for level, kind, value in anc:
            if level == 263 and kind == 8:
                status, _l, _s, _m, _n, tci, tpid = struct.unpack("=IIIHHHH", value)
        got.append([bool(status & 16), tci if status & 16 else None, data[14:].decode()])
except socket.timeout:
    pass
print(json.dumps(got), flush=True)
"""

RAW_SENDER = r"""
import socket, sys, time
ifname, dst, src = sys.argv[1], bytes.fromhex(sys.argv[2]), bytes.fromhex(sys.argv[3])
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
s.bind((ifname, 0))
for i in range(3):                 # priority 3, VLAN 7: TCI 0x6007; then an untagged frame
    s.send(dst + src + b"\x81\x00\x60\x07\x88\xb5" + f"tagged {i}".encode().ljust(46))
    time.sleep(0.01)
s.send(dst + src + b"\x88\xb5" + b"untagged".ljust(46))
"""


def test_vlan_tags_cross_unchanged(lab, tmp_path):
    """The kernel takes a VLAN tag out of a frame before a packet socket sees it (it is in
    PACKET_AUXDATA): the relay must put it back. Raw tagged frames from dlye must reach
    dlyf tagged, with the same TCI, and an untagged one untagged."""
    mac = {h: lab[h].intf(f"{h}-eth0").MAC().replace(":", "") for h in ("dlye", "dlyf")}
    rx = lab.start_process("dlyf", [sys.executable, "-c", RAW_RECEIVER, "dlyf-eth0", 1.0],
                           tmp_path / "raw.log")
    assert wait_for(lambda: "ready" in rx.read_log(), 10), rx.read_log()
    lab.run("dlye", [sys.executable, "-c", RAW_SENDER, "dlye-eth0", mac["dlyf"], mac["dlye"]],
            check=True)
    rx.wait(timeout=15)
    got = json.loads(rx.read_log().splitlines()[-1])
    assert [(t, tci, p.strip()) for t, tci, p in got] == [
        (True, 0x6007, "tagged 0"), (True, 0x6007, "tagged 1"), (True, 0x6007, "tagged 2"),
        (False, None, "untagged")]


def test_jumbo_frames_cross_when_the_ends_allow_them(lab):
    """The relay's interfaces take any MTU, so the ends decide it."""
    try:
        for host in ("dlye", "dlyf"):
            lab.run(host, ["ip", "link", "set", f"{host}-eth0", "mtu", "9000"], check=True)
        out = lab.run("dlye", ["ping", "-4", "-c", "2", "-W", "2", "-M", "do", "-s", "8972",
                               v4(3, 2)])
        assert out.returncode == 0, out.stdout + out.stderr
    finally:
        for host in ("dlye", "dlyf"):
            lab.run(host, ["ip", "link", "set", f"{host}-eth0", "mtu", "1500"])


def test_the_relay_is_set_up_as_described(lab):
    relay = lab["dlyr10"]
    assert isinstance(relay, RelayHost)
    side_a, side_b = relay.relay_intfs()
    assert (side_a.name, side_b.name) == ("dlyr10-a", "dlyr10-b")
    assert dl.peer_intf(side_a).name == "dlya-eth0" and dl.peer_intf(side_b).name == "dlyb-eth0"
    assert relay.IP() is None
    addrs = lab.run(relay, ["ip", "-o", "addr", "show"]).stdout
    assert "inet " not in addrs.replace("inet 127.0.0.1", "") and "inet6" not in addrs
    for node, intf in (("dlyr10", "dlyr10-a"), ("dlyr10", "dlyr10-b"),
                       ("dlya", "dlya-eth0"), ("dlyb", "dlyb-eth0")):
        feats = lab.run(node, ["ethtool", "-k", intf]).stdout
        for feature in ("tx-checksumming", "rx-checksumming", "generic-segmentation-offload",
                        "generic-receive-offload", "tcp-segmentation-offload"):
            assert re.search(rf"^{feature}: off", feats, re.M), (intf, feature, feats)
    assert delay_emulation(lab) == (dl.NETEM if lab.netem else dl.RELAY)
    assert set(lab.relays) == {"dlyr10", "dlyr5", "dlyrq"}


def test_a_full_queue_drops_and_counts_and_keeps_the_order(lab, tmp_path):
    """The relay of dlyg-dlyh holds at most 20 frames: a burst of 300 datagrams, sent
    faster than the 10 ms it holds them, loses most, the rest arrive in order; the drops
    are counted in the stats the relay writes when it stops (it is stopped here)."""
    addr = v4(4, 2)
    assert lab.run("dlyg", ["ping", "-c", "1", "-W", "2", addr], timeout=10).returncode == 0
    got = udp_exchange(lab, tmp_path, "dlyg", "dlyh", addr, 200, 300, 0, 9002)
    seqs = [g[1] for g in got]
    assert 20 <= len(seqs) < 300 and seqs == sorted(seqs), seqs
    proc = lab.relays["dlyrq"]
    t0 = time.monotonic()
    assert proc.stop() == 0
    took = time.monotonic() - t0
    stats = relay_stats(proc)
    out = stats["dlyrq-a->dlyrq-b"]
    print(f"\nqueue limit 20: {len(seqs)} of 300 delivered, stats {out}; stopped in "
          f"{took * 1000:.0f} ms")
    assert took < 1.0
    assert out["dropped_queue_full"] >= 300 - len(seqs) - out["dropped_rcvbuf_full"]
    assert out["dropped_queue_full"] > 0 and out["max_queue"] == 20


# --- life cycle ---------------------------------------------------------------------------------

def relay_pids(proc):
    """The relay's main process and its two direction processes (from its ready line)."""
    ready = [e for e in dl._events(proc.log_path) if e.get("event") == "ready"]
    return [proc.pid] + ready[-1]["pids"]


alive = pid_alive


def two_relays_topo():
    from mininet.topo import Topo

    class TwoRelays(Topo):
        def build(self):
            for a, b, net in (("dlyi", "dlyj", 5), ("dlyk", "dlyl", 6)):
                self.addHost(a, ip=v4(net, 1) + "/24")
                self.addHost(b, ip=v4(net, 2) + "/24")
                delayed_link(self, a, b, 2, emulation="relay")

    return TwoRelays()


def test_relays_stop_on_sigterm_and_with_the_lab(tmp_path):
    with Lab(two_relays_topo(), run_id=run_id("delay-stop")) as lab:
        started = fresh_relays(lab, tmp_path)
        assert set(started) == {"ddlyidlyj", "ddlykdlyl"}       # named after their links
        assert start_relays(lab, log_dir=tmp_path) == {}          # already running
        first, second = started["ddlyidlyj"], started["ddlykdlyl"]
        pids = relay_pids(first) + relay_pids(second)
        assert len(pids) == 6 and all(alive(p) for p in pids)
        for proc in (first, second):
            assert os.getpgid(proc.pid) == proc.pid
            assert all(os.getpgid(p) == proc.pid for p in relay_pids(proc))
        assert lab.run("dlyi", ["ping", "-c", "3", "-i", "0.05", "-W", "2",
                                v4(5, 2)]).returncode == 0
        t0 = time.monotonic()
        assert first.stop() == 0                               # SIGTERM: a clean exit
        assert time.monotonic() - t0 < 1.0
        assert not any(alive(p) for p in relay_pids(first))
        stats = relay_stats(first)
        assert set(stats) == {"ddlyidlyj-a->ddlyidlyj-b", "ddlyidlyj-b->ddlyidlyj-a"}
        assert all(s["forwarded"] >= 3 for s in stats.values()), stats
    assert not any(alive(p) for p in pids), [p for p in pids if alive(p)]
    assert second.returncode == 0                              # stopped by the Lab, cleanly
    assert set(relay_stats(second)) == {"ddlykdlyl-a->ddlykdlyl-b",
                                        "ddlykdlyl-b->ddlykdlyl-a"}


# --- the Lab hook (relays for links with delay=, when netem is missing) ------------------------

@pytest.mark.skipif(netem_available(), reason="netem exists here: the Lab would use it")
def test_relayed_link_as_the_lab_hook(monkeypatch):
    """What lab/emu.py would do with the proposed hook: a topology that only says
    `addLink(a, b, cls=TCLink, delay="10ms")` gets a relayed link without netem."""
    from mininet.link import TCLink
    from mininet.topo import Topo

    import lab.emu as emu
    original = emu._recording_mininet

    def hooked():
        base = original()

        class Hooked(base):
            def addLink(self, node1, node2, port1=None, port2=None, cls=None, **params):
                if not self._lab.netem and dl.wants_relay(params):
                    return dl.relayed_link(self, node1, node2, port1, port2, cls, **params)
                return super().addLink(node1, node2, port1, port2, cls, **params)

        return Hooked

    monkeypatch.setattr(emu, "_recording_mininet", hooked)

    class Plain(Topo):
        def build(self):
            self.addHost("dlym", ip=v4(7, 1) + "/24")
            self.addHost("dlyn", ip=v4(7, 2) + "/24")
            self.addLink("dlym", "dlyn", cls=TCLink, delay="10ms", intfName1="dlym-core",
                         intfName2="dlyn-core")

    with Lab(Plain(), run_id=run_id("delay-hook")) as lab:
        start_relays(lab)                  # (a no-op if the Lab already started them)
        assert [h.name for h in dl.relays(lab)] == ["ddlymdlyn"]
        assert lab["ddlymdlyn"].relay_process.alive
        assert lab["dlym"].intf("dlym-core").IP() == v4(7, 1)
        assert [i.name for i in lab["ddlymdlyn"].relay_intfs()] == ["ddlymdlyn-a",
                                                                   "ddlymdlyn-b"]
        rtts = summary(ping_rtts(lab, "dlym", v4(7, 2), count=20))
        assert 18 <= rtts["median"] <= 22 and rtts["min"] >= 19, rtts
        assert delay_emulation(lab) == dl.RELAY


# --- no root needed, but kept here with the rest -------------------------------------------------

def test_delayed_link_with_netem_is_a_tclink():
    from mininet.link import TCLink
    from mininet.topo import Topo
    topo = Topo()
    topo.addHost("dlyo")
    topo.addHost("dlyp")
    assert delayed_link(topo, "dlyo", "dlyp", 5, emulation="netem", intfName1="x") is None
    (info,) = [i for _, _, i in topo.links(withInfo=True)]
    assert info["cls"] is TCLink and info["delay"] == "5ms" and info["intfName1"] == "x"


def test_the_ends_keep_their_parameters_on_a_relayed_link():
    from mininet.topo import Topo
    topo = Topo()
    topo.addHost("dlyo")
    topo.addHost("dlyp")
    relay = delayed_link(topo, "dlyo", "dlyp", "2ms", emulation="relay", bw=10, loss=1,
                         intfName1="dlyo-x", intfName2="dlyp-y", params1={"ip": "1.1.1.1/8"},
                         params2={"ip": "2.2.2.2/8", "delay": "3ms"}, addr2="02:00:00:00:00:02")
    assert relay == "ddlyodlyp"
    assert topo.nodeInfo(relay)["cls"] is RelayHost
    assert topo.nodeInfo(relay)["delay_ms"] == 2.0
    links = {(i["node1"], i["node2"]): i for _, _, i in topo.links(withInfo=True)}
    a, b = links[("dlyo", relay)], links[(relay, "dlyp")]
    assert (a["intfName1"], a["intfName2"], a["params1"]) == ("dlyo-x", "ddlyodlyp-a",
                                                              {"ip": "1.1.1.1/8"})
    assert (b["intfName1"], b["intfName2"], b["params2"]) == ("ddlyodlyp-b", "dlyp-y",
                                                              {"ip": "2.2.2.2/8"})
    assert b["addr2"] == "02:00:00:00:00:02" and "addr2" not in a
    assert not any(k in i for i in (a, b) for k in ("bw", "loss", "delay"))
    assert delayed_link(topo, "dlyo", "dlyp", 3, emulation="relay") == "ddlyodlyp2"


def test_delay_emulation_names_the_way():
    assert delay_emulation(SimpleNamespace(netem=True)) == "netem"
    assert delay_emulation(SimpleNamespace(netem=False)) == "userspace relay (AF_PACKET)"
    assert delay_emulation(SimpleNamespace(netem=None)) is None
    assert dl.parse_delay_ms(10) == 10.0 and dl.parse_delay_ms("500us") == 0.5
    assert dl.parse_delay_ms("0.01s") == 10.0 and dl.parse_delay_ms("2.5ms") == 2.5
    with pytest.raises(ValueError):
        dl.parse_delay_ms("ten")

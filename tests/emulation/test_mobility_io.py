"""VM mobility through the real daemons: host detection on the LAN (AF_PACKET sockets), the
anycast gateway, proxy ARP across subnets, Map-Notify and the away entry on the old xTR,
SMR, and the client's ITR following the VM to its new xTR.

    mobh --- mobc ---+               +--- mobx1 --- mobs1 --- mobvm (before the move)
                     |               |                  +--- mobrg (outside the range)
                     |               |                  +--- mobd1 (DC1's own subnet)
                     +---- mobr -----+
                           |         |
                         mobms       +--- mobx2 --- mobs2 --- (mobvm after the move)

mobx1 serves the VM subnet as an extended subnet (gateway 10.10.0.1/24) next to its own
subnet 10.1.0.0/24 (a static EID prefix, host mobd1); mobx2 receives the VM subnet across
subnets (its own LAN is 10.20.0.0/24; gateway 10.10.0.1/32 and proxy ARP). Both use the
same gateway MAC. The move re-attaches the VM's switch-side veth from mobs1 to mobs2
(`ip link set dev mobs1-vm master mobs2`) and the VM announces itself (gratuitous ARP,
unsolicited neighbour advertisement), as a hypervisor does after a live migration.

Node names start with "mob" so that they collide with no other test's.
"""
import ipaddress
import json
import os
import signal
import struct
import sys
import time
from pathlib import Path

import pytest
from mininet.topo import Topo

from lab.emu import Lab, wait_for
from nodes.control import ControlError, query
from nodes.daemon import (_BPF_ND, arp_sender, garp, host_address, nd_sender,
                          unsolicited_na)
from nodes.eventlog import read_events

PY = sys.executable
RUN_PREFIX = "pytest-emu-"
IID = 5
GW_MAC = "00:00:5e:00:01:01"
VM4, VM6 = "10.10.0.5", "2001:db8:10::5"
ROGUE = "10.66.0.7"
CLIENT_HOST = "10.99.0.10"
MS_KEY, CLIENT_KEY = "dc-key", "client-key"

# name: (core /30 address, r0 side)
CORE = {"mobx1": ("172.31.1.2/30", "172.31.1.1/30"), "mobx2": ("172.31.2.2/30", "172.31.2.1/30"),
        "mobc": ("172.31.3.2/30", "172.31.3.1/30"), "mobms": ("172.31.4.2/30", "172.31.4.1/30")}


def rloc(name):
    return str(ipaddress.ip_interface(CORE[name][0]).ip)


class MobilityTopo(Topo):
    def build(self):
        self.addHost("mobr", ip=None)
        for name in CORE:
            self.addHost(name, ip=None)
            self.addLink(name, "mobr", intfName1=f"{name}-core",
                         intfName2=f"mobr-{name[3:]}")
        for x, br in (("mobx1", "mobs1"), ("mobx2", "mobs2")):
            self.addSwitch(br)
            self.addLink(x, br, intfName1=f"{x}-lan", intfName2=f"{br}-{x[3:]}")
        for h in ("mobvm", "mobrg", "mobd1"):
            self.addHost(h, ip=None)
            self.addLink(h, "mobs1", intfName1=f"{h}-eth0", intfName2=f"mobs1-{h[3:]}")
        self.addHost("mobh", ip=None)
        self.addLink("mobh", "mobc", intfName1="mobh-eth0", intfName2="mobc-lan")


SETUP = {
    "mobr": ["sysctl -qw net.ipv4.ip_forward=1"]
            + [f"ip addr add {r0} dev mobr-{n[3:]}" for n, (_, r0) in CORE.items()],
    "mobx1": ["ip addr add 10.1.0.1/24 dev mobx1-lan"],       # DC1's own subnet
    "mobx2": ["ip addr add 10.20.0.1/24 dev mobx2-lan"],      # DC2's own subnet
    "mobc": ["ip addr add 10.99.0.1/24 dev mobc-lan"],
    "mobh": [f"ip addr add {CLIENT_HOST}/24 dev mobh-eth0", "ip route add default via 10.99.0.1"],
    "mobvm": [f"ip addr add {VM4}/24 dev mobvm-eth0",
              f"ip -6 addr add {VM6}/64 dev mobvm-eth0 nodad",
              "ip route add default via 10.10.0.1",
              "ip -6 route add default via 2001:db8:10::1"],
    "mobrg": [f"ip addr add {ROGUE}/24 dev mobrg-eth0"],
    "mobd1": ["ip addr add 10.1.0.10/24 dev mobd1-eth0", "ip route add default via 10.1.0.1"],
}


def configure(lab):
    def sh(node, cmd):
        out = lab[node].cmd(cmd + " 2>&1; echo rc=$?")
        if not out.strip().endswith("rc=0"):
            raise RuntimeError(f"{node}: `{cmd}` failed: {out.strip()}")
    for name, (addr, r0) in CORE.items():
        sh(name, f"ip addr add {addr} dev {name}-core")
        sh(name, f"ip route add default via {ipaddress.ip_interface(r0).ip}")
    for node, cmds in SETUP.items():
        for c in cmds:
            sh(node, c)


HEAD = ('[node]\nname = "{n}"\nrole = "{r}"\ncontrol_socket = "{s}/{n}.sock"\n'
        'event_log = "{w}/{n}.events.jsonl"\n')
XTR_COMMON = f"""
[[map_server]]
address = "{rloc('mobms')}"
secret = "{{key}}"

[[map_resolver]]
address = "{rloc('mobms')}"

[etr]
register_interval = 1.0
"""


def dynamic(iface, gw4, gw6):
    return (f'[[dynamic_eid]]\nprefix = "10.10.0.0/24"\ninstance_id = {IID}\n'
            f'interface = "{iface}"\ngateway = "{gw4}"\ngateway_mac = "{GW_MAC}"\n'
            f'[[dynamic_eid]]\nprefix = "2001:db8:10::/64"\ninstance_id = {IID}\n'
            f'interface = "{iface}"\ngateway = "{gw6}"\ngateway_mac = "{GW_MAC}"\n')


def configs(workdir, sockets):
    def head(n, role):
        return HEAD.format(n=n, r=role, s=sockets, w=workdir)
    texts = {
        # DC1: the VM subnet is its own (extended subnet style): a /24 gateway
        "mobx1": head("mobx1", "xtr") + f'[[rloc]]\naddress = "{rloc("mobx1")}"\n'
                 + f'[[eid_prefix]]\nprefix = "10.1.0.0/24"\ninstance_id = {IID}\n'
                 + dynamic("mobx1-lan", "10.10.0.1/24", "2001:db8:10::1/64")
                 + XTR_COMMON.format(key=MS_KEY),
        # DC2: its own subnet 10.20.0.0/24; the VM subnet arrives across subnets
        "mobx2": head("mobx2", "xtr") + f'[[rloc]]\naddress = "{rloc("mobx2")}"\n'
                 + f'[[eid_prefix]]\nprefix = "10.20.0.0/24"\ninstance_id = {IID}\n'
                 + dynamic("mobx2-lan", "10.10.0.1/32", "2001:db8:10::1/128")
                 + XTR_COMMON.format(key=MS_KEY)
                 + '[dataplane]\nlan_interfaces = ["mobx2-lan"]\nproxy_arp = true\n',
        "mobc": head("mobc", "xtr") + f'[[rloc]]\naddress = "{rloc("mobc")}"\n'
                + f'[[eid_prefix]]\nprefix = "10.99.0.0/24"\ninstance_id = {IID}\n'
                + XTR_COMMON.format(key=CLIENT_KEY)
                + '[dataplane]\nlan_interfaces = ["mobc-lan"]\n',
        "mobms": head("mobms", "msmr") + "[msmr]\nregistration_timeout = 3.0\n"
                 + '[[site]]\nname = "dc"\naccept_more_specifics = true\n'
                 + f'[[site.key]]\nsecret = "{MS_KEY}"\n'
                 + "".join(f'[[site.prefix]]\nprefix = "{p}"\ninstance_id = {IID}\n'
                           for p in ("10.10.0.0/24", "2001:db8:10::/64", "10.20.0.0/24",
                                     "10.1.0.0/24"))
                 + '[[site]]\nname = "client"\n'
                 + f'[[site.key]]\nsecret = "{CLIENT_KEY}"\n'
                 + f'[[site.prefix]]\nprefix = "10.99.0.0/24"\ninstance_id = {IID}\n',
    }
    paths = {}
    for name, text in texts.items():
        paths[name] = Path(workdir) / f"{name}.toml"
        paths[name].write_text(text)
    return paths


# Frames the tests send by hand, from inside a host (python -c SCRIPT args...).
GARP_BURST = r"""
import socket, struct, sys, ipaddress
ifname, ip, mac, count = sys.argv[1], ipaddress.IPv4Address(sys.argv[2]), \
    bytes.fromhex(sys.argv[3].replace(":", "")), int(sys.argv[4])
frame = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, mac, ip.packed, bytes(6), ip.packed)
s = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, 0)
for _ in range(count):
    s.sendto(frame, (ifname, 0x0806, 0, 0, b"\xff" * 6))
"""
UNSOLICITED_NA = r"""
import socket, struct, sys, ipaddress
ifname, ip, mac = sys.argv[1], ipaddress.IPv6Address(sys.argv[2]), \
    bytes.fromhex(sys.argv[3].replace(":", ""))
na = struct.pack("!BBHI16sBB6s", 136, 0, 0, 0x20000000, ip.packed, 2, 1, mac)   # O flag
s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
s.bind((str(ip), 0))
s.sendto(na, ("ff02::1", 0, 0, socket.if_nametoindex(ifname)))
"""




class MobilityRun:
    def __init__(self, lab, workdir):
        self.lab = lab
        self.workdir = Path(workdir)
        self.sockets = lab.run_dir
        configure(lab)
        self.lan_macs = {x: self.link_mac(x, f"{x}-lan") for x in ("mobx1", "mobx2")}
        self.sysctls_before = {x: self.lan_sysctls(x) for x in ("mobx1", "mobx2")}
        self.configs = configs(self.workdir, self.sockets)
        self.daemons = {n: lab.start_process(n, [PY, "-m", "nodes.daemon", p],
                                             self.workdir / f"{n}.log", name=f"lisp-{n}")
                        for n, p in self.configs.items()}

    def sh(self, node, argv, timeout=10):
        return self.lab.run(node, [str(a) for a in argv], timeout=timeout)

    def link_mac(self, node, ifname):
        out = self.sh(node, ["ip", "-o", "link", "show", "dev", ifname]).stdout
        return out.split("link/ether ")[1].split()[0]

    def addresses(self, node, ifname):
        out = self.sh(node, ["ip", "-o", "addr", "show", "dev", ifname]).stdout
        return {line.split()[3] for line in out.splitlines() if " inet" in line
                and "scope link" not in line}

    def lan_sysctls(self, node):
        dev = f"{node}-lan"
        paths = [f"net/ipv4/conf/{dev}/arp_accept", f"net/ipv4/conf/{dev}/proxy_arp",
                 f"net/ipv4/neigh/{dev}/proxy_delay", f"net/ipv6/conf/{dev}/accept_dad"]
        out = self.sh(node, ["cat"] + [f"/proc/sys/{p}" for p in paths]).stdout.split()
        return dict(zip([p.rsplit("/", 1)[1] for p in paths], out))

    def query(self, node, what):
        return query(str(self.sockets / f"{node}.sock"), {"show": what})["data"]

    def counters(self, node):
        return self.query(node, "counters")

    def registrations(self):
        """{eid: [registrant RLOC addresses]} at the Map-Server."""
        try:
            rows = self.query("mobms", "registrations")
        except ControlError:
            return {}
        return {r["eid"]: [loc["address"] for g in r["registrants"] for loc in g["rlocs"]]
                for r in rows}

    def map_cache(self, node):
        return {r["eid"]: [x["address"] for x in r["rlocs"]]
                for r in self.query(node, "map-cache")}

    def route_dev(self, node, dst):
        out = self.sh(node, ["ip", "route", "get", dst]).stdout
        return out.split(" dev ")[1].split()[0] if " dev " in out else out

    def events(self, node, name=None):
        evs = read_events(self.workdir / f"{node}.events.jsonl")
        return [e for e in evs if name is None or e["event"] == name]

    def logs(self):
        return {n: p.read_log()[-1500:] for n, p in self.daemons.items()}

    def vm_speaks(self):
        """The VM talks to its gateway (v4 and v6): its ARP request and neighbour
        solicitation are what the xTR detects it by."""
        a = self.sh("mobvm", ["ping", "-n", "-c", "1", "-W", "1", "10.10.0.1"])
        b = self.sh("mobvm", ["ping", "-6", "-n", "-c", "1", "-W", "1", "2001:db8:10::1"])
        return a.returncode == 0 and b.returncode == 0


@pytest.fixture(scope="module")
def mob(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("mobility")
    with Lab(MobilityTopo(), run_id=f"{RUN_PREFIX}mobility-{os.getpid()}") as lab:
        run = MobilityRun(lab, workdir)
        sites = {"10.99.0.0/24", "10.20.0.0/24", "10.1.0.0/24"}
        if not wait_for(lambda: sites <= set(run.registrations()),
                        10, 0.1):
            pytest.fail(f"the sites did not register: {run.registrations()} {run.logs()}")
        yield run


# --- the frame parsers of the daemon ----------------------------------------------------

def test_arp_and_nd_parsers():
    mac = bytes.fromhex("020000000001")
    ip4 = ipaddress.ip_address("10.10.0.5")
    assert arp_sender(garp(mac, ip4)) == ip4
    reply = bytearray(garp(mac, ip4))
    reply[7] = 2                                              # op: reply
    assert arp_sender(bytes(reply)) == ip4
    assert arp_sender(garp(mac, ip4)[:27]) is None            # truncated
    rarp = bytearray(garp(mac, ip4))
    rarp[7] = 3                                               # RARP request: no IPv4 sender
    assert arp_sender(bytes(rarp)) is None
    ip6 = ipaddress.ip_address("2001:db8:10::5")
    src = ipaddress.ip_address("fe80::1")

    def ipv6(src, icmp, hops=255):
        return struct.pack("!IHBB16s16s", 6 << 28, len(icmp), 58, hops, src.packed,
                           ipaddress.ip_address("ff02::1").packed) + icmp
    na = unsolicited_na(mac, ip6)
    assert nd_sender(ipv6(src, na)) == ip6                    # NA: its target
    ns = struct.pack("!BBHI16s", 135, 0, 0, 0, ipaddress.ip_address("2001:db8:10::1").packed)
    assert nd_sender(ipv6(ip6, ns)) == ip6                    # NS: its source
    assert nd_sender(ipv6(ip6, ns, hops=64)) is None          # not from the link
    assert nd_sender(ipv6(ip6, struct.pack("!BBH", 128, 0, 0) + bytes(28))) is None
    for bad in ("0.0.0.0", "255.255.255.255", "224.0.0.1", "169.254.1.1", "127.0.0.1", "::",
                "fe80::1", "ff02::1"):
        assert not host_address(ipaddress.ip_address(bad))
    assert host_address(ip4) and host_address(ip6)
    # the BPF program: 7 instructions, every jump inside it, two returns
    assert len(_BPF_ND) == 7
    for i, (code, jt, jf, _) in enumerate(_BPF_ND):
        if code == 0x15:
            assert i + 1 + max(jt, jf) < len(_BPF_ND)
    assert [c for c, *_ in _BPF_ND].count(0x06) == 2


# --- the LAN of each xTR -------------------------------------------------------------------

def test_anycast_gateway_and_lan_settings(mob):
    for x, gw4, gw6 in (("mobx1", "10.10.0.1/24", "2001:db8:10::1/64"),
                        ("mobx2", "10.10.0.1/32", "2001:db8:10::1/128")):
        assert mob.link_mac(x, f"{x}-lan") == GW_MAC, x
        assert {gw4, gw6} <= mob.addresses(x, f"{x}-lan"), x
        s = mob.lan_sysctls(x)
        assert s["arp_accept"] == "1" and s["accept_dad"] == "0", (x, s)
    assert mob.lan_sysctls("mobx1")["proxy_arp"] == "0"
    assert mob.lan_sysctls("mobx2")["proxy_arp"] == "1"
    assert mob.lan_sysctls("mobx2")["proxy_delay"] == "0"
    assert mob.addresses("mobx2", "mobx2-lan") >= {"10.20.0.1/24"}   # its own stays
    for x in ("mobx1", "mobx2"):
        announced = {e["gateway"] for e in mob.events(x, "gateway_announced")}
        assert announced == {"10.10.0.1", "2001:db8:10::1"}, mob.events(x)


# --- (a) detection and registration -----------------------------------------------------

def vm_registered_at(mob, x):
    regs = mob.registrations()
    return (regs.get(f"{VM4}/32") == [rloc(x)] and regs.get(f"{VM6}/128") == [rloc(x)])


def test_a_vm_is_detected_and_registered_by_its_xtr(mob):
    before = mob.counters("mobx1")
    assert mob.vm_speaks(), "the VM cannot reach its gateway"
    assert wait_for(lambda: vm_registered_at(mob, "mobx1"), 3), mob.registrations()
    c = mob.counters("mobx1")
    assert c["dynamic_eid_detected"] - before.get("dynamic_eid_detected", 0) == 2
    assert c["lan_arp_received"] > before.get("lan_arp_received", 0)
    assert c["lan_nd_received"] > before.get("lan_nd_received", 0)
    detected = {e["eid"] for e in mob.events("mobx1", "dynamic_eid_detected")}
    assert detected == {f"[{IID}]{VM4}", f"[{IID}]{VM6}"}
    # host routes toward the LAN it was seen on, and its ARP of the gateway saw our MAC
    assert mob.route_dev("mobx1", VM4) == "mobx1-lan"
    neigh = mob.sh("mobvm", ["ip", "neigh", "show", "10.10.0.1"]).stdout
    assert GW_MAC in neigh, neigh
    # the other xTR has not seen it
    assert mob.counters("mobx2").get("dynamic_eid_detected", 0) == 0


# --- (c) a host outside the dynamic-EID ranges ------------------------------------------

def test_c_host_outside_the_ranges_is_ignored_counted_and_rate_limited(mob):
    mac = mob.link_mac("mobrg", "mobrg-eth0")
    before = mob.counters("mobx1")

    def burst(count):
        r = mob.sh("mobrg", [PY, "-c", GARP_BURST, "mobrg-eth0", ROGUE, mac, count])
        assert r.returncode == 0, r.stderr

    def rejected():
        return mob.counters("mobx1").get("dynamic_eid_rejected", 0) - before.get(
            "dynamic_eid_rejected", 0)

    burst(20)                                   # 20 gratuitous ARPs within a millisecond
    assert wait_for(lambda: rejected() >= 1, 2), mob.counters("mobx1")
    time.sleep(0.2)
    c = mob.counters("mobx1")
    assert rejected() == 1, c                   # the first; the 19 others rate-limited
    assert c["lan_rate_limited"] - before.get("lan_rate_limited", 0) == 19, c
    burst(1)                                    # 0.2 s later: counted again
    assert wait_for(lambda: rejected() == 2, 2), mob.counters("mobx1")
    assert f"{ROGUE}/32" not in mob.registrations()
    assert mob.route_dev("mobx1", ROGUE) != "mobx1-lan"
    ev = mob.events("mobx1", "dynamic_eid_rejected")
    assert ev and ev[-1]["eid"] == f"[{IID}]{ROGUE}"
    assert c.get("dynamic_eid_detected", 0) == before.get("dynamic_eid_detected", 0)


# --- (b) the move -------------------------------------------------------------------------

def test_b_live_move_client_follows_the_vm_to_the_new_xtr(mob):
    if not vm_registered_at(mob, "mobx1"):
        assert mob.vm_speaks() and wait_for(lambda: vm_registered_at(mob, "mobx1"), 3)
    vm4 = f"{VM4}/32"
    # The client pings the VM continuously (100 per second), through mobx1.
    ping_log = mob.workdir / "ping.log"
    ping = mob.lab.start_process("mobh", ["ping", "-n", "-D", "-i", "0.01", "-W", "1", VM4],
                                 ping_log, name="ping")
    assert wait_for(lambda: mob.map_cache("mobc").get(vm4) == [rloc("mobx1")], 5), \
        mob.map_cache("mobc")
    assert wait_for(lambda: mob.counters("mobx1").get("packets_decapsulated", 0) > 20, 5)
    before = {x: mob.counters(x) for x in ("mobx1", "mobx2", "mobc")}
    replies_before = ping_log.read_text().count("bytes from")
    assert replies_before > 0

    # The move: re-attach the VM's switch port to DC2's bridge, then its gratuitous ARP.
    t_move = time.time()
    r = mob.sh(None, ["ip", "link", "set", "dev", "mobs1-vm", "master", "mobs2"])
    assert r.returncode == 0, r.stderr
    t0 = time.time()                                        # the gratuitous ARP goes out
    mob.lab.start_process("mobvm", ["arping", "-U", "-c", "2", "-I", "mobvm-eth0", VM4],
                          mob.workdir / "arping.log", name="arping")
    converged = wait_for(lambda: mob.map_cache("mobc").get(vm4) == [rloc("mobx2")], 2.0,
                         0.005)
    t_seen = time.time()
    assert converged, (mob.map_cache("mobc"), mob.registrations(), mob.logs())

    # mobx2 registered it; mobx1 got the Map-Notify, keeps an away entry, and SMRed.
    assert wait_for(lambda: mob.registrations().get(vm4) == [rloc("mobx2")], 1)
    x1 = mob.counters("mobx1")
    assert x1["eid_moved_away"] - before["mobx1"].get("eid_moved_away", 0) == 1, x1
    assert x1["map_notify_received"] > before["mobx1"]["map_notify_received"]
    assert x1.get("smr_sent", 0) > before["mobx1"].get("smr_sent", 0), x1
    assert mob.counters("mobc").get("smr_received", 0) > before["mobc"].get("smr_received", 0)
    # the away route into the TUN (programmed on the netlink thread, so wait a little)
    assert wait_for(lambda: mob.route_dev("mobx1", VM4) == "lisp0", 1), \
        mob.route_dev("mobx1", VM4)
    assert [e["eid"] for e in mob.events("mobx1", "eid_away")] == [f"[{IID}]{VM4}"]
    # mobx2 detected it across subnets: /32 route toward its LAN, not its connected one
    assert mob.route_dev("mobx2", VM4) == "mobx2-lan"
    assert f"[{IID}]{VM4}" in {e["eid"] for e in mob.events("mobx2", "dynamic_eid_detected")}

    # The client's traffic now reaches the VM through mobx2, not through mobx1: over one
    # second (ping -i 0.01 sends about 60 a second here) all of it, none through mobx1.
    time.sleep(0.3)
    d2 = mob.counters("mobx2").get("packets_decapsulated", 0)
    r1 = mob.counters("mobx1").get("reencapsulated_to_new_rloc", 0)
    replies = ping_log.read_text().count("bytes from")
    time.sleep(1.0)
    x1, x2 = mob.counters("mobx1"), mob.counters("mobx2")
    new_replies = ping_log.read_text().count("bytes from") - replies
    assert x2["packets_decapsulated"] - d2 >= 20, (x2, d2)
    assert x1.get("reencapsulated_to_new_rloc", 0) == r1, (x1, r1)
    assert new_replies >= 20, ping_log.read_text()[-2000:]          # and the VM answers
    assert x2["packets_decapsulated"] - d2 >= new_replies
    ping.stop(signal.SIGINT)

    # Timings, from the event logs (all nodes share the clock).
    detected = next(e["time"] for e in mob.events("mobx2", "dynamic_eid_detected")
                    if e["eid"] == f"[{IID}]{VM4}")
    installed = next(e["time"] for e in mob.events("mobc", "map_cache_installed")
                     if e["eid"] == f"[{IID}]{vm4}" and e["rlocs"] == [rloc("mobx2")])
    timing = {"garp_to_map_cache_ms": round((installed - t0) * 1000, 1),
              "detection_to_map_cache_ms": round((installed - detected) * 1000, 1),
              "garp_to_detection_ms": round((detected - t0) * 1000, 1),
              "move_to_map_cache_ms": round((installed - t_move) * 1000, 1),
              "polled_convergence_ms": round((t_seen - t0) * 1000, 1)}
    (mob.workdir / "timing.json").write_text(json.dumps(timing))
    print("move timing:", timing)
    assert t_move <= detected < installed and installed - t0 < 2.0, timing

    # The IPv6 EID follows on the VM's unsolicited neighbour advertisement.
    mac = mob.link_mac("mobvm", "mobvm-eth0")
    r = mob.sh("mobvm", [PY, "-c", UNSOLICITED_NA, "mobvm-eth0", VM6, mac])
    assert r.returncode == 0, r.stderr
    assert wait_for(lambda: vm_registered_at(mob, "mobx2"), 2), mob.registrations()
    assert wait_for(lambda: mob.counters("mobx1")["eid_moved_away"]
                    - before["mobx1"].get("eid_moved_away", 0) == 2, 2)


def test_b2_dc1_hosts_reach_the_moved_vm_through_the_away_entry(mob):
    """mobd1, in DC1's own subnet, pings the VM after it left: mobx1 routes the VM's /32
    into its TUN (the away route), its ITR half finds the away entry and encapsulates to
    mobx2. (The first packets may go while mobx2 resolves 10.1.0.10.)"""
    if not vm_registered_at(mob, "mobx2"):
        pytest.skip("needs the move of test_b")
    before = mob.counters("mobx1").get("packets_encapsulated", 0)
    assert wait_for(lambda: mob.sh("mobd1", ["ping", "-n", "-c", "1", "-W", "1", VM4]
                                   ).returncode == 0, 5)
    r = mob.sh("mobd1", ["ping", "-n", "-c", "5", "-i", "0.05", "-W", "1", VM4])
    assert r.returncode == 0 and " 0% packet loss" in r.stdout, r.stdout
    assert mob.counters("mobx1")["packets_encapsulated"] - before >= 5
    assert mob.route_dev("mobx1", VM4) == "lisp0"


def test_d_across_subnets_the_new_xtr_answers_arp(mob):
    """After the move the VM sits on mobx2's LAN (10.20.0.0/24): mobx2 answers ARP for the
    VM's gateway (anycast address and MAC) and, by proxy ARP, for another address of the
    VM's old subnet, which it reaches through LISP. mobx1 (extended subnet: the /24 is on
    its LAN, no proxy ARP) does not answer for an absent address of the subnet."""
    if not vm_registered_at(mob, "mobx2"):
        pytest.skip("needs the move of test_b")
    for target in ("10.10.0.1", "10.10.0.77"):
        r = mob.sh("mobvm", ["arping", "-c", "1", "-w", "2", "-I", "mobvm-eth0", target])
        assert r.returncode == 0 and GW_MAC.upper() in r.stdout.upper(), (target, r.stdout)
    r = mob.sh("mobrg", ["arping", "-c", "1", "-w", "1", "-I", "mobrg-eth0", "10.10.0.77"])
    assert r.returncode != 0, r.stdout


def test_z_stop_puts_the_lan_back(mob):
    for name, proc in mob.daemons.items():
        proc.send_signal(signal.SIGTERM)
    for name, proc in mob.daemons.items():
        proc.wait(3)
        assert proc.returncode == 0, (name, proc.read_log()[-2000:])
    for x in ("mobx1", "mobx2"):
        assert mob.link_mac(x, f"{x}-lan") == mob.lan_macs[x]
        left = mob.addresses(x, f"{x}-lan")
        assert not any(a.startswith(("10.10.0.1/", "2001:db8:10::1/")) for a in left), left
        assert mob.lan_sysctls(x) == mob.sysctls_before[x], x
    assert mob.addresses("mobx2", "mobx2-lan") == {"10.20.0.1/24"}
    assert mob.route_dev("mobx1", VM4) != "lisp0"

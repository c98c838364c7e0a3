"""The kernel data path (issue 10, item 2): tc-BPF encapsulation on the LAN side and
decapsulation on the RLOC side, `[dataplane] path = "kernel"` on both xTRs of
tests/data/kernel-lab.yaml (two IPv4+IPv6 LISP sites, instance ID 7, one core router).

What these tests prove:
- pings and TCP transfers (content checked) work both ways, IPv4 and IPv6 EIDs, with the
  links' offloads ON
  (so the hosts' TCP hands the xTR 64 KiB GSO packets), and the kernel counters show that
  the packets went through the kernel path, not the Python one;
- a capture on the core router (tcpdump on its side of each xTR link: what the wire
  carries) decodes in tshark as lisp-data with the I bit, instance ID 7 and nonces, no
  malformed item, no frame larger than the MTU, correct inner IP checksums;
- a map-cache change reaches the BPF trie: a negative Map-Reply (a destination outside
  every site) appears there as a punt entry, and its packets are punted;
- the same inner packet through the kernel path and through the Python path (the kernel
  path switched off in its config map for a moment) gives the same packet field by field.
"""
import json
import os
import sys
import time
from pathlib import Path

import pytest

from lab.emu import wait_for
from nodes.dataplane import flow_of, outer_sport
from tests.emulation.harness import (DATA, TCP_SENDER, TCP_SERVER, in_node, lab_fixture,
                                     set_kernel_path, transfer_received)

kernelpath = pytest.importorskip("nodes.kernelpath")

PY = sys.executable
XTRS = ("kpx1", "kpx2")
LINKS = {"kpx1": "kpr0-kpx1", "kpx2": "kpr0-kpx2"}     # the router's side of each uplink
IID = 7
MTU = 1500
TRANSFER = 8 << 20

if os.geteuid() != 0:
    pytestmark = pytest.mark.skip(reason="needs root (Mininet)")
elif not kernelpath.available()[0]:
    pytestmark = pytest.mark.skip(
        reason=f"kernel data path unavailable: {kernelpath.available()[1]}")

# No lab captures: they turn the captured links' offloads off, and the kernel path must be
# right with them on (GSO packets from the hosts). The tests run their own tcpdump.
_lab = lab_fixture(DATA / "kernel-lab.yaml", "kernelpath",
                   overrides={n: {"dataplane": {"path": "kernel"}} for n in XTRS})


@pytest.fixture(scope="module")
def sites(_lab):
    """The running lab, once both xTRs say their kernel path runs (skip, with the
    daemon's reason, where this kernel refuses the programs)."""
    for node in XTRS:
        if _lab.counters(node).get("kernel_path") != 1:
            why = [e.get("reason") for e in _lab.events(node, "kernel_path_unavailable")]
            pytest.skip(f"{node}: the kernel data path did not start: {why}")
    return _lab

# One UDP datagram with a fixed 5-tuple and payload (the comparison test).
ONE_UDP = r'''
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, 0x28)
s.bind(("0.0.0.0", 40000))
s.sendto(bytes.fromhex(sys.argv[2]), (sys.argv[1], 40001))
'''


def started(proc, timeout=5):
    return wait_for(lambda: "ready" in proc.read_log(), timeout, 0.05)


def kernel(run, node):
    return {k: v for k, v in run.counters(node).items() if k.startswith("kernel_")}


def tcpdump(run, node, iface, name, bpf="udp port 4341"):
    pcap = run.workdir / f"{name}.pcap"
    proc = run.lab.start_process(node, ["tcpdump", "-i", iface, "-s", "256", "-U", "-n",
                                        "--immediate-mode", "-w", pcap, bpf],
                                 run.workdir / f"{name}.log",
                                 name=f"tcpdump-{name}")
    assert wait_for(lambda: "listening on" in proc.read_log(), 5, 0.05), proc.read_log()
    return proc, pcap


def stop(proc):
    time.sleep(0.3)
    proc.stop()
    proc.wait(5)


def tshark(pcap, *args):
    import subprocess
    r = subprocess.run(["tshark", "-n", "-r", str(pcap), *args], capture_output=True,
                       text=True, timeout=120)
    return r.stdout.splitlines()


def transfer(run, src, dst, port, version=4):
    lab, workdir = run.lab, run.workdir
    server = lab.start_process(dst, [PY, "-c", TCP_SERVER, str(port), str(version)], workdir /
                               f"server-{dst}.log", name=f"tcp-server-{dst}")
    assert started(server), server.read_log()
    pattern = os.urandom(32)
    r = lab.run(src, [PY, "-c", TCP_SENDER, run.ip(dst, version), str(port), pattern.hex(),
                      str(TRANSFER)], timeout=60)
    assert r.returncode == 0, r.stderr
    assert transfer_received(server, pattern, TRANSFER), server.read_log()


def test_the_kernel_path_is_attached(sites):
    for node in XTRS:
        c = sites.counters(node)
        assert c.get("kernel_path") == 1 and "kernel_path_unavailable" not in c, c
        if c.get("kernel_attach_tcx") != 1:            # (tcx links: no tc filter to show)
            lan = attached(sites, node, f"{node}-lan")
            up = attached(sites, node, f"{node}-kpr0")
            assert "lisp_encap" in lan and "lisp_decap" in up, (lan, up)
        feats = sites.sh(node, ["ethtool", "-k", f"{node}-kpr0"]).stdout
        assert "tx-udp_tnl-segmentation: off" in feats


def attached(run, node, dev):
    """The programs on dev's ingress (tcx links or tc filters)."""
    return (run.sh(node, ["bpftool", "net", "show", "dev", dev]).stdout
            + run.sh(node, ["tc", "filter", "show", "dev", dev, "ingress"]).stdout)


def test_ping_and_tcp_both_ways_through_the_kernel(sites):
    assert sites.warm("kph1", "kph2") and sites.warm("kph2", "kph1")
    before = {n: sites.counters(n) for n in XTRS}
    caps = {n: tcpdump(sites, "kpr0", LINKS[n], f"core-{n}") for n in XTRS}
    for a, b in (("kph1", "kph2"), ("kph2", "kph1")):
        r = sites.ping(a, b, 10)
        assert r.returncode == 0 and " 0% packet loss" in r.stdout, r.stdout
    transfer(sites, "kph1", "kph2", 5101)
    transfer(sites, "kph2", "kph1", 5102)
    for proc, _ in caps.values():
        stop(proc)
    after = {n: sites.counters(n) for n in XTRS}
    d = {n: {k: after[n].get(k, 0) - before[n].get(k, 0) for k in after[n]
             if isinstance(after[n][k], int)} for n in XTRS}
    print({n: {k: v for k, v in d[n].items() if v and (k.startswith("kernel_") or
                                                       k.startswith("packets_"))}
           for n in XTRS})
    for n in XTRS:
        # A TCP transfer of 8 MiB is at least 5,700 full-size segments each way.
        assert d[n]["kernel_encapsulated"] >= TRANSFER // MTU, d[n]
        assert d[n]["kernel_decapsulated"] >= TRANSFER // MTU, d[n]
        # The Python path saw next to nothing (the entries were there already); the
        # node's totals count both paths.
        assert d[n]["packets_encapsulated"] - d[n]["kernel_encapsulated"] <= 20, d[n]
        assert d[n]["packets_decapsulated"] - d[n]["kernel_decapsulated"] <= 20, d[n]
        assert d[n].get("kernel_punt_miss", 0) == 0, d[n]
    for n, (_proc, pcap) in caps.items():
        rloc = sites.rloc(n)
        rows = tshark(pcap, "-Y", f"lisp-data && ip.src == {rloc}", "-T", "fields",
                      "-e", "lisp-data.flags.iid", "-e", "lisp-data.iid",
                      "-e", "lisp-data.nonce", "-e", "frame.len", "-e", "udp.checksum")
        assert len(rows) >= TRANSFER // MTU, (n, len(rows))
        flags = {tuple(r.split("\t")[:2]) for r in rows}
        assert flags == {("1", str(IID))}, flags
        nonces = {r.split("\t")[2] for r in rows}
        # A random nonce per packet the program handles; the segments of one GSO packet
        # (up to 64 KiB of one TCP flow) share it, as the kernel copies the headers.
        assert "0" not in nonces and len(nonces) >= d[n]["kernel_encap_skbs"] // 2
        assert max(int(r.split("\t")[3]) for r in rows) <= MTU + 14      # wire-sized
        assert {r.split("\t")[4] for r in rows} == {"0x0000"}           # UDP checksum 0
        assert tshark(pcap, "-Y", "_ws.malformed") == []
        bad = tshark(pcap, "-o", "ip.check_checksum:TRUE", "-Y",
                     "ip.checksum.status == 0")
        assert bad == [], bad[:3]


def test_ipv6_eids_through_the_kernel(sites):
    """IPv6 EIDs over the IPv4 RLOCs: ping both ways and a checked TCP transfer, all
    encapsulated and decapsulated by the programs (hop limit, traffic class)."""
    h1, h2 = sites.ip("kph1", 6), sites.ip("kph2", 6)
    assert sites.warm("kph1", h2) and sites.warm("kph2", h1)
    before = {n: sites.counters(n) for n in XTRS}
    proc, pcap = tcpdump(sites, "kpr0", LINKS["kpx1"], "core6-kpx1")
    for a, b in (("kph1", h2), ("kph2", h1)):
        r = sites.ping(a, b, 10)
        assert r.returncode == 0 and " 0% packet loss" in r.stdout, r.stdout
    transfer(sites, "kph1", "kph2", 5103, version=6)
    stop(proc)
    after = {n: sites.counters(n) for n in XTRS}
    for n in XTRS:
        d = {k: after[n].get(k, 0) - before[n].get(k, 0) for k in after[n]
             if isinstance(after[n][k], int)}
        assert d["kernel_decapsulated"] >= 20 and d["kernel_encapsulated"] >= 20, d
        assert d["packets_encapsulated"] - d["kernel_encapsulated"] <= 5, d
        assert d["packets_decapsulated"] - d["kernel_decapsulated"] <= 5, d
    rows = tshark(pcap, "-Y", f"lisp-data && ipv6.dst == {h2}", "-T", "fields",
                  "-e", "lisp-data.iid", "-e", "frame.len")
    assert len(rows) >= TRANSFER // MTU
    assert {r.split("\t")[0] for r in rows} == {str(IID)}
    assert max(int(r.split("\t")[1]) for r in rows) <= MTU + 14
    assert tshark(pcap, "-Y", "_ws.malformed") == []


def entries(run, node):
    """{(iid, prefix): action} of a node's map-cache trie."""
    import json
    return {(iid, ipaddressnet(p)): act for iid, p, act in
            json.loads(in_node(run, node, "entries"))}


def test_map_cache_changes_reach_the_trie(sites):
    assert sites.warm("kph1", "kph2")
    have = entries(sites, "kpx1")
    assert any(iid == IID and key.overlaps(ipaddressnet("10.62.0.0/24")) and act == 1
               for (iid, key), act in have.items()), have
    # A destination in no site: the Map-Server answers with a negative Map-Reply; the
    # trie gets it as a punt entry (the Python path drops and counts such packets).
    before = kernel(sites, "kpx1")
    sites.ping("kph1", "10.99.0.1", 3)
    ok = wait_for(lambda: any(iid == IID and ipaddressip("10.99.0.1") in key and act == 0
                              for (iid, key), act in entries(sites, "kpx1").items()), 5, 0.1)
    assert ok, (entries(sites, "kpx1"), sites.map_cache("kpx1"))
    cache = sites.map_cache("kpx1")
    assert any(ipaddressip("10.99.0.1") in ipaddressnet(e.split("]")[-1]) for e in cache), cache
    sites.ping("kph1", "10.99.0.1", 2)
    after = kernel(sites, "kpx1")
    assert after["kernel_punt_entry"] > before["kernel_punt_entry"], (before, after)
    assert sites.ping("kph1", "kph2", 3).returncode == 0     # the rest is unaffected


def ipaddressnet(text):
    import ipaddress
    return ipaddress.ip_network(text, strict=False)


def ipaddressip(text):
    import ipaddress
    return ipaddress.ip_address(text)


def _set_enabled(run, node, on):
    set_kernel_path(run, node, on)


# One LISP data packet from kpx2's RLOC to kpx1's, as kpx2 would send it: N, L and I set,
# instance ID 7, the given Locator-Status-Bits; inside, a UDP datagram from kph2 to kph1.
LSB_SENDER = r'''
import socket, struct, sys, time
src, dst, src_eid, dst_eid = sys.argv[1:5]
def csum(b):
    s = sum(struct.unpack(f"!{len(b) // 2}H", b))
    s = (s >> 16) + (s & 0xFFFF)
    return ~(s + (s >> 16)) & 0xFFFF
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((src, 0))
for bits in sys.argv[5:]:
    udp = struct.pack("!HHHH", 40000, 9, 8 + 4, 0) + b"lsb!"
    ip = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0,
                               socket.inet_aton(src_eid), socket.inet_aton(dst_eid)))
    ip[10:12] = struct.pack("!H", csum(bytes(ip)))
    lisp = struct.pack("!I", 0xC8000000 | 0x1234) + struct.pack("!I", (7 << 8) | int(bits, 0))
    s.sendto(lisp + bytes(ip) + udp, (dst, 4341))
    time.sleep(0.2)         # the Python path has passed the bits on before the next
'''


def test_locator_status_bits_reach_the_core_through_the_kernel_path(sites):
    """(issue 11) On the kernel path too, what a sender's Locator-Status-Bits say reaches
    the core: the program punts a packet whose bits differ from those the Python path last
    passed on for its sender (kept in the lisp_lsb4 map), and keeps the others. The kernel
    decapsulated every packet without looking at the bits before."""
    assert sites.warm("kph2", "kph1")
    rloc2 = sites.rloc("kpx2")
    assert json.loads(in_node(sites, "kpx1", "lsb")) == {rloc2: 0x01}   # kpx2's one RLOC
    before = sites.counters("kpx1")
    sender = [PY, "-c", LSB_SENDER, rloc2, sites.rloc("kpx1"), sites.ip("kph2", 4),
              sites.ip("kph1", 4)]
    r = sites.lab.run("kpx2", sender + ["0x03", "0x03", "0x03", "0x01"], timeout=10)
    assert r.returncode == 0, r.stderr
    wait_for(lambda: sites.counters("kpx1").get("lsb_changes_seen", 0)
             - before.get("lsb_changes_seen", 0) >= 2, 5, 0.1)
    time.sleep(0.3)
    after = sites.counters("kpx1")
    d = {k: after.get(k, 0) - before.get(k, 0) for k in
         ("kernel_punt_decap_lsb", "lsb_changes_seen", "kernel_decapsulated")}
    assert d == {"kernel_punt_decap_lsb": 2, "lsb_changes_seen": 2,   # 0x03, then 0x01 again
                 "kernel_decapsulated": 2}, d                          # the two other 0x03
    assert json.loads(in_node(sites, "kpx1", "lsb")) == {rloc2: 0x01}
    # A mapping change (a negative reply for a destination in no site) forgets the bits,
    # the sync deleting from the map without an error (the delete call was refused with
    # EINVAL, which also left away EIDs in the decapsulation trie: test_mobility_io's move)
    sites.ping("kph1", "198.51.100.77", 1)
    assert wait_for(lambda: json.loads(in_node(sites, "kpx1", "lsb")) in ({}, {rloc2: 0x01})
                    and sites.counters("kpx1").get("kernel_map_syncs", 0)
                    > after.get("kernel_map_syncs", 0), 5, 0.1)
    errors = sites.counters("kpx1").get("kernel_sync_errors", 0)
    assert errors == before.get("kernel_sync_errors", 0), sites.logs()


def test_both_paths_send_the_same_packet(sites):
    """The same inner UDP datagram (fixed ports, DSCP, payload) from kph1, once through the
    kernel path and once through the Python path (the kernel path off in its config map):
    every field of the outer IPv4, UDP and LISP headers but the IP ID, the checksum (both
    checked correct) and the nonce (both non-zero) is equal, and so are the inner bytes."""
    from scapy.all import IP, UDP, rdpcap, raw
    assert sites.warm("kph1", "kph2")
    payload = os.urandom(8).hex() + "00" * 24
    pkts = {}
    for path in ("kernel", "python"):
        _set_enabled(sites, "kpx1", path == "kernel")
        try:
            before = kernel(sites, "kpx1")["kernel_encapsulated"]
            proc, pcap = tcpdump(sites, "kpr0", LINKS["kpx1"], f"same-{path}",
                                 "udp dst port 4341 and src host " + sites.rloc("kpx1"))
            # Two datagrams: the Python path's first packet of a flow takes its slow path
            # (the core's decision), the second its flow cache; both are compared.
            for _ in range(2):
                r = sites.lab.run("kph1", [PY, "-c", ONE_UDP, sites.ip("kph2", 4), payload],
                                  timeout=10)
                assert r.returncode == 0, r.stderr
                time.sleep(0.2)
            stop(proc)
            got = kernel(sites, "kpx1")["kernel_encapsulated"] - before
            assert got == (2 if path == "kernel" else 0), (path, got)
        finally:
            _set_enabled(sites, "kpx1", True)
        mine = [p for p in rdpcap(str(pcap)) if IP in p and bytes.fromhex(payload) in raw(p)]
        assert len(mine) == 2, (path, len(mine))
        pkts[path] = mine
    for k, p in zip(pkts["kernel"], pkts["python"]):
        ko, po = k[IP], p[IP]
        for f in ("version", "ihl", "tos", "len", "flags", "frag", "ttl", "proto", "src",
                  "dst"):
            assert getattr(ko, f) == getattr(po, f), (f, getattr(ko, f), getattr(po, f))
        for o in (ko, po):                                  # checksums right in both
            assert checksum_ok(o)
        ku, pu = ko[UDP], po[UDP]
        assert (ku.sport, ku.dport, ku.len, ku.chksum) == (pu.sport, pu.dport, pu.len,
                                                           pu.chksum)
        inner = bytes(raw(ku.payload))[8:]
        sport = outer_sport(flow_of(inner)[4])
        assert ku.dport == 4341 and ku.chksum == 0 and ku.sport == sport
        kl, pl = raw(ku.payload), raw(pu.payload)
        assert kl[0] == pl[0] == 0xC8                       # N, L, I
        assert kl[4:8] == pl[4:8] == bytes([0, 0, IID, 1])  # instance ID 7, LSB 1
        assert kl[1:4] != b"\0\0\0" and pl[1:4] != b"\0\0\0"  # nonces
        # The inner packet: byte for byte, but the IPv4 ID and header checksum (the host
        # gives each datagram its own ID).
        ki, pi = kl[8:], pl[8:]
        assert len(ki) == len(pi)
        assert ki[:4] == pi[:4] and ki[6:10] == pi[6:10] and ki[12:] == pi[12:]
        assert checksum_ok(IP(ki)) and checksum_ok(IP(pi))
        assert IP(ki).tos == 0x28 and IP(ki).ttl == ko.ttl


def checksum_ok(ip):
    from scapy.all import IP, raw
    copy = IP(raw(ip))
    want = copy.chksum
    del copy.chksum
    return IP(raw(copy)).chksum == want


def test_a_killed_daemon_takes_its_programs_along(sites):
    """kill -9 of an xTR daemon: its tcx links close with it, so its node stops forwarding
    LISP as it would with the Python path (no program left with stale maps); a new daemon
    attaches again and traffic flows."""
    if sites.counters("kpx2").get("kernel_attach_tcx") != 1:
        pytest.skip("tc attachment (kernel before 6.6): the programs outlive the daemon")
    assert sites.warm("kph1", "kph2")
    sites.net.stop_daemon("kpx2", kill=True)
    sites.daemons["kpx2"].wait(5)
    # A program left behind would still decapsulate for kph2 and encapsulate its replies.
    time.sleep(0.5)
    assert sites.ping("kph1", "kph2", 3).returncode != 0
    sites.net.start_daemon("kpx2")
    assert wait_for(lambda: sites.net.answers("kpx2"), 10, 0.1)
    assert sites.warm("kph1", "kph2", timeout=15)
    # (the first packets of each sender go through the Python path, which tells the
    # program the sender's Locator-Status-Bits; a new mapping forgets them once)
    assert sites.ping("kph1", "kph2", 5).returncode == 0
    c = kernel(sites, "kpx2")
    assert c["kernel_path"] == 1 and c["kernel_decapsulated"] > 0, c

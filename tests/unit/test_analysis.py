"""The capture analysis (captures/analysis.py) and the report (captures/report.py, plots.py).

Synthetic runs are written with scapy: one pcap per link, a links.json, and traffic whose
every timestamp is chosen here, so the expected paths, counts and times are known exactly:

- `triangular` (like l2-extension): before the move the probes go client -> core -> DC1;
  after it they enter DC1 and cross the DCI to DC2's access link.
- `lisp-extended`: LISP-encapsulated over the core to DC1's xTR; after the move two stale
  probes still go to DC1 and over the DCI, three are dropped, then they are encapsulated
  straight to DC2's xTR; Map-Register, Map-Notify, SMR, ECM Map-Request, Map-Reply and
  Map-Notify-Ack are on the links.
- `lisp-across`: the same without a DCI (the stale probes are lost).
"""
import json
import math
import shutil
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import ICMPv6ND_NS, IPv6
from scapy.layers.l2 import ARP, Dot1Q, Ether
from scapy.packet import Raw
from scapy.utils import wrpcap, wrpcapng

from captures import analysis
from captures.analysis import (CONTROL, ECHO, PROBE, TCP_IN, TCP_OUT, FrameParser,
                               analyze_mode, control_type, read_link)
from captures.probe import make_probe
from captures.report import (demo_start_to_first_lisp_probe, first_lisp_probe_time,
                             summary_table, write_report)
from captures.report import main as report_main

T0 = 1_700_000_000.0
SPACING = 0.02                  # one probe every 20 ms
N_PROBES = 100                  # seq 0..99, sent at T0 + 0.02 * seq
MOVE = T0 + 1.01                # between seq 50 (T0 + 1.00) and seq 51 (T0 + 1.02)
MOVE_DONE = T0 + 1.03
HOP = 0.001                     # each link captures a packet 1 ms after the previous one
SPORT = 40000                   # the prober's source port
TCP_CPORT = 50123               # the client side of the long-lived TCP session

CLIENT, VM, OTHER = "10.99.0.10", "10.10.0.5", "10.99.0.99"
RLOC = {"xtrc": "172.16.10.1", "xtr1": "172.16.2.1", "xtr2": "172.16.3.1",
        "msmr": "172.16.100.1"}
MAC_A, MAC_B = "02:00:00:00:00:01", "02:00:00:00:00:02"

LINKS = [("client-access", "client"), ("client-uplink", "core"), ("core-r1-r2", "core"),
         ("core-r1-r3", "core"), ("dc1-uplink", "core"), ("dc2-uplink", "core"),
         ("msmr-link", "edge"), ("dci", "dci"), ("dc1-access", "vm-origin"),
         ("dc2-access", "vm-target")]
TO_DC1 = ["client-access", "client-uplink", "core-r1-r2", "dc1-uplink", "dc1-access"]
TO_DC2 = ["client-access", "client-uplink", "core-r1-r3", "dc2-uplink", "dc2-access"]
TRIANGLE = TO_DC1 + ["dci", "dc2-access"]
CORE = {"client-uplink", "core-r1-r2", "core-r1-r3", "dc1-uplink", "dc2-uplink"}

PROBE_FRAME_LEN = 14 + 20 + 8 + 64      # Ethernet + IPv4 + UDP + 64-byte probe payload
TCP_FRAME_LEN = 14 + 20 + 20 + 20       # Ethernet + IPv4 + TCP + 20-byte chunk


# --------------------------------------------------------------------------------------
# Building synthetic captures


def probe_payload(seq, t):
    return make_probe(seq, int(t * 1e9))


def lisp_header(iid=0):
    return struct.pack("!BBBBI", 0x88, 0, 0, 1, iid << 8 | 1)     # N and I bits, nonce 1


def frame(ip_pkt):
    return Ether(src=MAC_A, dst=MAC_B) / ip_pkt


def encap(ip_pkt, src_rloc, dst_rloc, sport=61000):
    return frame(IP(src=src_rloc, dst=dst_rloc) / UDP(sport=sport, dport=4341)
                 / Raw(lisp_header() + bytes(ip_pkt)))


class Run:
    """Frames per link; `write` turns them into <link>.pcap files and links.json."""

    def __init__(self, links=LINKS):
        self.links = list(links)
        self.frames = {n: [] for n, _ in self.links}

    def emit(self, link, t, pkt):
        if link in self.frames:
            self.frames[link].append((t, pkt if isinstance(pkt, bytes) else bytes(pkt)))

    def along(self, path, t, ip_pkt, rlocs=None, start=0):
        """`ip_pkt` crosses `path`, link i at t + (start + i) * HOP; on core links it is
        LISP-encapsulated from rlocs[0] to rlocs[1] when rlocs is given."""
        native = bytes(frame(ip_pkt))
        lisp = bytes(encap(ip_pkt, *rlocs)) if rlocs else None
        for i, link in enumerate(path):
            self.emit(link, t + (start + i) * HOP, lisp if lisp and link in CORE else native)

    def back(self, path, t_at_client, ip_pkt, rlocs=None):
        """The reverse of `path`, reaching the client link at `t_at_client`."""
        rev = list(reversed(path))
        self.along(rev, t_at_client - (len(rev) - 1) * HOP, ip_pkt, rlocs)

    def write(self, mode_dir, **meta):
        mode_dir.mkdir(parents=True, exist_ok=True)
        for name, frames in self.frames.items():
            write_raw_pcap(mode_dir / f"{name}.pcap", sorted(frames, key=lambda f: f[0]))
        doc = {"links": [{"name": n, "role": r} for n, r in self.links], "client": CLIENT,
               "vm": VM, "move_time": MOVE, "move_done": MOVE_DONE,
               "delay_emulation": "userspace relay"}
        doc.update(meta)
        (mode_dir / "links.json").write_text(json.dumps(doc))
        return mode_dir


def write_raw_pcap(path, records):
    """A classic little-endian microsecond pcap of (time, frame bytes) records."""
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for t, data in records:
            sec = int(t)
            usec = int(round((t - sec) * 1e6))
            if usec == 1_000_000:
                sec, usec = sec + 1, 0
            f.write(struct.pack("<IIII", sec, usec, len(data), len(data)) + data)


def probe_pkt(seq, t):
    return IP(src=CLIENT, dst=VM) / UDP(sport=SPORT, dport=7000) / Raw(probe_payload(seq, t))


def echo_pkt(seq, t):
    return IP(src=VM, dst=CLIENT) / UDP(sport=7000, dport=SPORT) / Raw(probe_payload(seq, t))


def tcp_out(k, flags="PA"):
    return IP(src=CLIENT, dst=VM) / TCP(sport=TCP_CPORT, dport=7001, flags=flags,
                                         seq=1000 + 20 * k, ack=5000) / Raw(b"c" * 20)


def tcp_in(k, flags="PA"):
    pkt = IP(src=VM, dst=CLIENT) / TCP(sport=7001, dport=TCP_CPORT, flags=flags,
                                        seq=5000 + 20 * k, ack=1020 + 20 * k)
    return pkt / Raw(b"v" * 20) if "R" not in flags else pkt


def control_pkt(payload, src, dst, sport=4342, dport=4342):
    return IP(src=src, dst=dst) / UDP(sport=sport, dport=dport) / Raw(payload)


MAP_REGISTER = b"\x30\x00\x01\x01" + bytes(20)
MAP_NOTIFY = b"\x40\x00\x00\x01" + bytes(20)
MAP_NOTIFY_ACK = b"\x50\x00\x00\x01" + bytes(20)
SMR = b"\x11\x00\x00\x01" + bytes(20)                # Map-Request, S bit
SMR_INVOKED = b"\x10\x40\x00\x01" + bytes(20)        # Map-Request, s bit
MAP_REPLY = b"\x20\x00\x00\x01" + bytes(20)
ECM_SMR_INVOKED = b"\x80\x00\x00\x00" + bytes(
    IP(src=RLOC["xtrc"], dst=VM) / UDP(sport=4342, dport=4342) / Raw(SMR_INVOKED))


def add_noise(run):
    """Frames the analysis must ignore, on every link."""
    for i, (link, _) in enumerate(run.links):
        t = T0 + 0.0031 + 0.1 * i
        run.emit(link, t, Ether(src=MAC_A, dst="ff:ff:ff:ff:ff:ff")
                 / ARP(op=1, psrc=CLIENT, pdst=VM))
        run.emit(link, t + 0.5, Ether(src=MAC_A, dst="33:33:ff:00:00:05")
                 / IPv6(src="fe80::1", dst="ff02::1:ff00:5") / ICMPv6ND_NS(tgt="fe80::5"))
        # Magic payload from another host, and from the client to another port / host.
        run.emit(link, t + 1.01, frame(IP(src=OTHER, dst=VM) / UDP(sport=SPORT, dport=7000)
                                        / Raw(probe_payload(7, t))))
        run.emit(link, t + 1.02, frame(IP(src=CLIENT, dst=VM) / UDP(sport=SPORT, dport=7999)
                                        / Raw(probe_payload(8, t))))
        run.emit(link, t + 1.03, frame(IP(src=CLIENT, dst=OTHER) / UDP(sport=SPORT, dport=7000)
                                        / Raw(probe_payload(9, t))))
        # An ICMP error quoting a probe, a ping, OSPF, a cut-off frame.
        run.emit(link, t + 1.04, frame(IP(src="172.16.2.2", dst=CLIENT) / ICMP(type=3, code=3)
                                        / bytes(probe_pkt(10, t))))
        run.emit(link, t + 1.05, frame(IP(src=CLIENT, dst=VM) / ICMP()))
        run.emit(link, t + 1.06, frame(IP(src="172.16.2.1", dst="224.0.0.5", proto=89)
                                        / Raw(bytes(40))))
        run.emit(link, t + 1.07, Ether(bytes(Ether(src=MAC_A, dst=MAC_B, type=0x0800))[:14]
                                       + b"\x45\x00\x00"))


def build(tmp_path, kind, tcp="alive", name=None):
    """Write one synthetic mode directory; `kind` is triangular, lisp-extended or
    lisp-across; `tcp` is alive, rst, dead or stops."""
    lisp = kind.startswith("lisp")
    links = [x for x in LINKS if not (kind == "lisp-across" and x[0] == "dci")]
    run = Run(links)
    to_dc1 = (RLOC["xtrc"], RLOC["xtr1"]) if lisp else None
    to_dc2 = (RLOC["xtrc"], RLOC["xtr2"]) if lisp else None
    from_dc1 = (RLOC["xtr1"], RLOC["xtrc"]) if lisp else None
    from_dc2 = (RLOC["xtr2"], RLOC["xtrc"]) if lisp else None

    for seq in range(N_PROBES):
        t = T0 + SPACING * seq
        p, e = probe_pkt(seq, t), echo_pkt(seq, t)
        if seq <= 50:                                            # before the move
            run.along(TO_DC1, t, p, to_dc1)
            if seq == 5:                                         # flooded over the DCI once
                run.emit("dci", t + 5 * HOP, frame(p))
            if seq != 20:                                        # seq 20 is lost
                run.back(TO_DC1, t + 0.010, e, from_dc1)
        elif kind == "triangular":
            if seq in (51, 52):                                  # lost during the move
                run.along(TO_DC1, t, p)
            else:
                run.along(TRIANGLE, t, p)
                run.back(TO_DC2, t + 0.012, e)
        else:
            if seq in (51, 52):                                  # stale: still to DC1
                if kind == "lisp-extended":
                    run.along(TO_DC1 + ["dci"], t, p, to_dc1)
                    if seq == 51:                                # flooded to DC2's link
                        run.emit("dc2-access", t + 6 * HOP, frame(p))
                    run.back(TO_DC2, t + 0.012, e, from_dc2)
                else:
                    run.along(TO_DC1, t, p, to_dc1)              # no DCI: dropped
            elif seq in (53, 54, 55):                            # dropped by DC1's xTR
                run.along(TO_DC1[:4], t, p, to_dc1)
            else:                                                # converged
                run.along(TO_DC2, t, p, to_dc2)
                run.back(TO_DC2, t + 0.008, e, from_dc2)

    # The long-lived TCP session: a chunk every 100 ms, echoed 10 ms later.
    for k in range(20):
        t = T0 + 0.015 + 0.1 * k
        if tcp == "rst" and k > 12:
            break
        seg = tcp_out(k)
        if k <= 9:
            run.along(TO_DC1, t, seg, to_dc1)
        elif k == 10 and kind != "lisp-across":
            run.along(TO_DC1 + ["dci"], t, seg, to_dc1)
        elif kind == "triangular":
            run.along(TRIANGLE, t, seg)
        else:
            run.along(TO_DC2, t, seg, to_dc2)
        reply_path, reply_rlocs = (TO_DC1, from_dc1) if k <= 9 else (TO_DC2, from_dc2)
        if tcp == "rst" and k == 12:
            run.back(reply_path, t + 0.010, tcp_in(k, "R"), reply_rlocs)
        elif tcp == "dead" and k >= 10:
            pass
        elif tcp == "stops" and k >= 13:
            pass
        else:
            run.back(reply_path, t + 0.010, tcp_in(k), reply_rlocs)

    if lisp:
        # Periodic registration: one too early for the list, one inside it.
        for t in (T0 + 0.005, T0 + 0.5):
            run.emit("msmr-link", t, frame(control_pkt(MAP_REGISTER, RLOC["xtr1"],
                                                       RLOC["msmr"])))
        # The move.
        reg = control_pkt(MAP_REGISTER, RLOC["xtr2"], RLOC["msmr"])
        run.emit("dc2-uplink", T0 + 1.040, frame(reg))
        run.emit("msmr-link", T0 + 1.042, frame(reg))
        notify = control_pkt(MAP_NOTIFY, RLOC["msmr"], RLOC["xtr1"])
        run.emit("msmr-link", T0 + 1.044, frame(notify))
        run.emit("dc1-uplink", T0 + 1.046, frame(notify))
        smr = control_pkt(SMR, RLOC["xtr1"], RLOC["xtrc"])
        run.emit("dc1-uplink", T0 + 1.050, frame(smr))
        run.emit("client-uplink", T0 + 1.052, frame(smr))
        run.emit("client-uplink", T0 + 1.060, frame(control_pkt(
            ECM_SMR_INVOKED, RLOC["xtrc"], RLOC["msmr"], sport=61001)))
        run.emit("client-uplink", T0 + 1.070, frame(control_pkt(
            MAP_REPLY, RLOC["xtr2"], RLOC["xtrc"], dport=61001)))
        run.emit("dc1-uplink", T0 + 1.075, frame(control_pkt(
            MAP_NOTIFY_ACK, RLOC["xtr1"], RLOC["msmr"])))
        run.emit("msmr-link", T0 + 1.080, frame(control_pkt(b"", RLOC["xtr1"], RLOC["msmr"])))

    add_noise(run)
    return run.write(tmp_path / (name or kind))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("run")
    dirs = {k: build(base, k) for k in ("triangular", "lisp-extended", "lisp-across")}
    return {k: analyze_mode(d) for k, d in dirs.items()}


# --------------------------------------------------------------------------------------
# Triangular routing


def test_triangular_paths(runs):
    r = runs["triangular"]
    assert r["path_before"] == TO_DC1
    assert r["path_after"] == TRIANGLE
    assert r["path_before_share"] == round(50 / 51, 4)       # seq 5 also crossed the DCI
    assert r["path_after_share"] == round(47 / 48, 4)         # seq 52 was lost


def test_triangular_dci_counts(runs):
    r = runs["triangular"]
    # probes 53..99 and TCP chunks 10..19 cross the DCI after the move; echoes do not count.
    assert r["dci_packets_after_move"] == 47 + 10
    assert r["dci_bytes_after_move"] == 47 * PROBE_FRAME_LEN + 10 * TCP_FRAME_LEN == 5722
    assert r["dci_packets_before_move"] == 1                   # the flooded seq 5
    assert r["dci_bytes_before_move"] == PROBE_FRAME_LEN
    assert r["dci_packets_after_convergence"] is None          # never converged


def test_triangular_never_converges(runs):
    # Every probe that reached DC2's access link crossed the DCI first.
    assert runs["triangular"]["convergence_ms"] is None


def test_triangular_loss_and_rtt(runs):
    r = runs["triangular"]
    assert r["probes_sent"] == 100
    assert r["probes_lost"] == 3                                # 20, 51, 52
    assert (r["lost_before_move"], r["lost_after_move"]) == (1, 2)
    assert r["lost_times_s"] == pytest.approx([-0.61, 0.01, 0.03], abs=1e-6)
    assert r["probes_answered"] == 97
    assert len(r["rtt_ms"]) == 97
    assert r["rtt_ms"][0] == pytest.approx([-1.01, 10.0], abs=1e-3)
    assert r["rtt_ms"][-1] == pytest.approx([0.97, 12.0], abs=1e-3)
    assert r["rtt_median_before_ms"] == pytest.approx(10.0, abs=1e-3)
    assert r["rtt_median_after_ms"] == pytest.approx(12.0, abs=1e-3)
    assert r["outage_ms"] == pytest.approx(60.0, abs=1e-3)      # seq 50 -> seq 53


def test_triangular_tcp_and_no_control(runs):
    r = runs["triangular"]
    assert r["tcp_survived"] is True
    assert r["tcp_rst_seen"] is False
    assert r["tcp_session_port"] == TCP_CPORT
    assert r["tcp_packets_after_move"] == {"to_vm": 10, "from_vm": 10}
    assert r["control_messages"] == []
    assert r["control_counts"] == {}


def test_paths_after_move_lists_the_partial_paths(runs):
    r = runs["triangular"]
    assert r["paths_after_move"] == [{"path": TRIANGLE, "probes": 47},
                                     {"path": TO_DC1, "probes": 2}]


# --------------------------------------------------------------------------------------
# LISP


def test_lisp_paths(runs):
    for kind in ("lisp-extended", "lisp-across"):
        r = runs[kind]
        assert r["path_before"] == TO_DC1, kind
        assert r["path_after"] == TO_DC2, kind
    assert runs["lisp-extended"]["paths_after_move"] == [
        {"path": TO_DC2, "probes": 44}, {"path": TO_DC1[:4], "probes": 3},
        {"path": TO_DC1 + ["dci", "dc2-access"], "probes": 1},
        {"path": TO_DC1 + ["dci"], "probes": 1}]


def test_lisp_probes_are_found_inside_lisp(runs):
    links = runs["lisp-extended"]["links"]
    # Core links carry every probe and TCP chunk encapsulated; access links natively.
    assert links["client-uplink"]["lisp_encapsulated"] == 100 + 20
    assert links["client-uplink"]["client_to_vm_frames"] == 120
    assert links["client-access"]["lisp_encapsulated"] == 0
    assert links["client-access"]["client_to_vm_frames"] == 120
    assert links["dc2-access"]["client_to_vm_frames"] == 44 + 1 + 9


def test_lisp_convergence(runs):
    # seq 56 (sent T0 + 1.12) reaches dc2-access 4 hops later: 1.124 - 1.01 = 114 ms.
    # seq 51 reached dc2-access earlier (T0 + 1.026) but over the DCI: not convergence.
    assert runs["lisp-extended"]["convergence_ms"] == pytest.approx(114.0, abs=2e-3)
    assert runs["lisp-across"]["convergence_ms"] == pytest.approx(114.0, abs=2e-3)


def test_lisp_dci_counts(runs):
    ext = runs["lisp-extended"]
    assert ext["dci_packets_after_move"] == 3                 # probes 51, 52, TCP chunk 10
    assert ext["dci_bytes_after_move"] == 2 * PROBE_FRAME_LEN + TCP_FRAME_LEN == 286
    assert ext["dci_packets_after_convergence"] == 0
    assert ext["dci_bytes_after_convergence"] == 0
    across = runs["lisp-across"]
    assert (across["dci_packets_after_move"], across["dci_bytes_after_move"]) == (0, 0)
    assert across["link_roles"]["dci"] is None


def test_lisp_loss(runs):
    ext, across = runs["lisp-extended"], runs["lisp-across"]
    assert (ext["probes_sent"], ext["probes_lost"]) == (100, 4)          # 20, 53, 54, 55
    assert (across["probes_sent"], across["probes_lost"]) == (100, 6)    # 20, 51..55
    assert ext["lost_after_move"] == 3 and across["lost_after_move"] == 5
    assert ext["outage_ms"] == pytest.approx(80.0, abs=1e-3)             # 52 -> 56
    assert across["outage_ms"] == pytest.approx(120.0, abs=1e-3)         # 50 -> 56
    assert ext["rtt_median_after_ms"] == pytest.approx(8.0, abs=1e-3)


def test_lisp_control_messages(runs):
    got = [(round(m["time_s"] * 1000, 3), m["link"], m["type"], m["inner"])
           for m in runs["lisp-extended"]["control_messages"]]
    assert got == [
        (-510.0, "msmr-link", "Map-Register", None),
        (30.0, "dc2-uplink", "Map-Register", None),
        (32.0, "msmr-link", "Map-Register", None),
        (34.0, "msmr-link", "Map-Notify", None),
        (36.0, "dc1-uplink", "Map-Notify", None),
        (40.0, "dc1-uplink", "SMR", None),
        (42.0, "client-uplink", "SMR", None),
        (50.0, "client-uplink", "ECM", "SMR-invoked Map-Request"),
        (60.0, "client-uplink", "Map-Reply", None),
        (65.0, "dc1-uplink", "Map-Notify-Ack", None),
    ]
    first = runs["lisp-extended"]["control_messages"][1]
    assert (first["src"], first["dst"]) == (RLOC["xtr2"], RLOC["msmr"])
    assert runs["lisp-extended"]["control_counts"] == {
        "client-uplink": {"SMR": 1, "ECM": 1, "Map-Reply": 1},
        "dc1-uplink": {"Map-Notify": 1, "SMR": 1, "Map-Notify-Ack": 1},
        "dc2-uplink": {"Map-Register": 1},
        "msmr-link": {"Map-Register": 3, "Map-Notify": 1},
    }


def test_lisp_tcp_survives(runs):
    for kind in ("lisp-extended", "lisp-across"):
        assert runs[kind]["tcp_survived"] is True, kind


# --------------------------------------------------------------------------------------
# The TCP verdict


@pytest.mark.parametrize("variant", ["rst", "dead"])
def test_tcp_not_survived(tmp_path, variant):
    r = analyze_mode(build(tmp_path, "lisp-extended", tcp=variant))
    assert r["tcp_survived"] is False
    if variant == "rst":
        assert r["tcp_rst_seen"] is True
        assert r["tcp_rst_time_s"] == pytest.approx(1.215 + 0.010 - 4 * HOP - 1.01, abs=1e-6)
    else:
        assert r["tcp_rst_seen"] is False
        assert r["tcp_packets_after_move"] == {"to_vm": 10, "from_vm": 0}
    # Everything else is unaffected by the TCP session.
    assert r["convergence_ms"] == pytest.approx(114.0, abs=2e-3)


def test_tcp_that_stops_before_the_end(tmp_path, monkeypatch):
    d = build(tmp_path, "lisp-extended", tcp="stops")
    # The VM's last reply is at T0 + 1.225 (chunk 12); the traffic ends at T0 + 1.988.
    assert analyze_mode(d)["tcp_survived"] is True            # within the 1 s slack
    monkeypatch.setattr(analysis, "TCP_END_SLACK_S", 0.5)
    r = analyze_mode(d)
    assert r["tcp_survived"] is False
    assert r["tcp_last_from_vm_s"] == pytest.approx(0.215, abs=1e-6)
    assert r["tcp_last_to_vm_s"] == pytest.approx(0.905, abs=1e-6)


# --------------------------------------------------------------------------------------
# Frame parsing


@pytest.fixture
def parser():
    return FrameParser(CLIENT, VM)


def test_parse_native_and_encapsulated(parser):
    p = probe_pkt(77, T0)
    assert parser.parse(bytes(frame(p))) == (PROBE, SPORT, 77, False)
    assert parser.parse(bytes(encap(p, RLOC["xtrc"], RLOC["xtr1"]))) == (PROBE, SPORT, 77, True)
    assert parser.parse(bytes(frame(echo_pkt(78, T0)))) == (ECHO, SPORT, 78, False)
    assert parser.parse(bytes(frame(tcp_out(0)))) == (TCP_OUT, TCP_CPORT, 0x18, 20, False)
    assert parser.parse(bytes(encap(tcp_in(0, "R"), "1.1.1.1", "2.2.2.2"))) \
        == (TCP_IN, TCP_CPORT, 0x04, 0, True)
    # VLAN-tagged, and a short TCP ACK padded to 60 bytes (payload length from IP length).
    tagged = bytes(Ether(src=MAC_A, dst=MAC_B) / Dot1Q(vlan=10) / p)
    assert parser.parse(tagged) == (PROBE, SPORT, 77, False)
    ack = bytes(frame(IP(src=CLIENT, dst=VM) / TCP(sport=1, dport=7001, flags="A")))
    assert len(ack) == 54
    assert parser.parse(ack + bytes(6)) == (TCP_OUT, 1, 0x10, 0, False)


def test_parse_ipv6_inside_ipv4_lisp():
    parser = FrameParser("2001:db8:99::10", "2001:db8:10::5")
    inner = (IPv6(src="2001:db8:99::10", dst="2001:db8:10::5") / UDP(sport=1234, dport=7000)
             / Raw(probe_payload(9, T0)))
    assert parser.parse(bytes(encap(inner, "172.16.10.1", "172.16.3.1"))) \
        == (PROBE, 1234, 9, True)
    assert parser.parse(bytes(Ether(src=MAC_A, dst=MAC_B) / inner)) == (PROBE, 1234, 9, False)


def test_parse_other_link_layers(parser):
    p = bytes(probe_pkt(3, T0))
    sll = struct.pack("!HHH8sH", 0, 1, 6, bytes(8), 0x0800) + p
    assert parser.parse(sll, 113) == (PROBE, SPORT, 3, False)
    assert parser.parse(p, 101) == (PROBE, SPORT, 3, False)
    vxlan = bytes(frame(IP(src="1.1.1.1", dst="2.2.2.2") / UDP(sport=5, dport=4789)
                        / Raw(b"\x08\0\0\0\0\0\x0a\0" + bytes(frame(probe_pkt(4, T0))))))
    assert parser.parse(vxlan) == (PROBE, SPORT, 4, False)


@pytest.mark.parametrize("payload,name", [
    (MAP_REGISTER, "Map-Register"), (MAP_NOTIFY, "Map-Notify"),
    (MAP_NOTIFY_ACK, "Map-Notify-Ack"), (MAP_REPLY, "Map-Reply"), (SMR, "SMR"),
    (SMR_INVOKED, "SMR-invoked Map-Request"), (b"\x10\x00" + bytes(10), "Map-Request"),
    (ECM_SMR_INVOKED, "ECM"), (b"\xf0", "type-15"), (b"", None)])
def test_control_types(payload, name):
    assert control_type(payload) == name


def test_parse_control_both_ports(parser):
    reply = bytes(frame(control_pkt(MAP_REPLY, "1.1.1.1", "2.2.2.2", dport=61001)))
    assert parser.parse(reply) == (CONTROL, "Map-Reply", None, "1.1.1.1", "2.2.2.2")
    ecm = bytes(frame(control_pkt(ECM_SMR_INVOKED, "1.1.1.1", "2.2.2.2", sport=61001)))
    assert parser.parse(ecm)[1:3] == ("ECM", "SMR-invoked Map-Request")


def ospf_pkt(kind, src="172.16.3.1"):
    """An OSPFv2 packet of type `kind` (1 Hello, 4 LS Update, 5 LS Ack) to AllSPFRouters."""
    return IP(src=src, dst="224.0.0.5", proto=89, ttl=1) / Raw(bytes([2, kind]) + bytes(42))


def test_parse_ospf(parser):
    assert parser.parse(bytes(frame(ospf_pkt(4)))) == (analysis.ROUTING, 4)
    assert parser.parse(bytes(frame(ospf_pkt(1)))) == (analysis.ROUTING, 1)
    # inside a LISP tunnel it is someone's payload, not the core's routing
    assert parser.parse(bytes(encap(ospf_pkt(4), "1.1.1.1", "2.2.2.2"))) is None


def test_core_routing_updates_after_move(tmp_path):
    """LS Updates from the move on, on any link, when links.json says the core runs OSPF;
    Hellos, LS Acks and updates before the move are not churn; null without OSPF."""
    run = Run()
    run.emit("dc2-uplink", MOVE - 0.5, frame(ospf_pkt(4)))       # start-up, before the move
    run.emit("dc2-uplink", MOVE + 0.10, frame(ospf_pkt(4)))
    run.emit("core-r1-r3", MOVE + 0.12, frame(ospf_pkt(4, "172.16.13.2")))
    run.emit("core-r1-r2", MOVE + 0.13, frame(ospf_pkt(4, "172.16.12.2")))
    run.emit("core-r1-r3", MOVE + 0.20, frame(ospf_pkt(1)))
    run.emit("core-r1-r3", MOVE + 1.10, frame(ospf_pkt(5)))
    r = analyze_mode(run.write(tmp_path / "ospf", core_routing="ospf"))
    assert r["core_routing_updates_after_move"] == 3
    assert analyze_mode(run.write(tmp_path / "static", core_routing="static"))[
        "core_routing_updates_after_move"] is None
    assert analyze_mode(run.write(tmp_path / "old"))["core_routing_updates_after_move"] is None
    assert "core_routing_updates_after_move" in analysis.RESULT_KEYS


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=200), st.sampled_from([1, 101, 113, 276, 999]))
def test_parse_random_bytes_never_raises(data, linktype):
    FrameParser(CLIENT, VM).parse(data, linktype)


_VALID = bytes(encap(probe_pkt(5, T0), RLOC["xtrc"], RLOC["xtr1"]))


@settings(max_examples=300, deadline=None)
@given(st.integers(0, len(_VALID) - 1), st.integers(0, 255), st.integers(1, len(_VALID)))
def test_parse_mutated_frame_never_raises(pos, value, cut):
    data = bytearray(_VALID)
    data[pos] = value
    FrameParser(CLIENT, VM).parse(bytes(data[:cut]))


# --------------------------------------------------------------------------------------
# Reading pcaps


def _three_frames():
    pkts = [frame(probe_pkt(1, T0)), encap(probe_pkt(2, T0), "1.1.1.1", "2.2.2.2"),
            frame(echo_pkt(1, T0))]
    for i, p in enumerate(pkts):
        p.time = T0 + 0.1234567 + i
    return pkts


@pytest.mark.parametrize("fmt", ["pcap", "pcap-ns", "pcapng"])
def test_read_link_formats(tmp_path, parser, fmt):
    path = tmp_path / f"x.{fmt}"
    if fmt == "pcapng":
        wrpcapng(str(path), _three_frames())
    else:
        wrpcap(str(path), _three_frames(), nano=(fmt == "pcap-ns"))
    cap = read_link(path, "x", "client", parser)
    assert cap.error is None and cap.frames == 3
    assert cap.probe_first[(SPORT, 1)] == pytest.approx(T0 + 0.123457, abs=2e-6)
    assert cap.probe_first[(SPORT, 2)] == pytest.approx(T0 + 1.123457, abs=2e-6)
    assert cap.echo_first[(SPORT, 1)] == pytest.approx(T0 + 2.123457, abs=2e-6)
    assert cap.encapsulated == 1


def test_missing_empty_and_cut_pcaps(tmp_path, parser):
    assert read_link(tmp_path / "none.pcap", "n", "core", parser).error == "no pcap"
    (tmp_path / "empty.pcap").write_bytes(b"")
    assert read_link(tmp_path / "empty.pcap", "e", "core", parser).error.startswith("empty")
    wrpcap(str(tmp_path / "cut.pcap"), _three_frames())
    data = (tmp_path / "cut.pcap").read_bytes()
    (tmp_path / "cut.pcap").write_bytes(data[:-30])      # tcpdump killed mid-record
    cap = read_link(tmp_path / "cut.pcap", "c", "core", parser)
    assert cap.frames >= 2 and (SPORT, 2) in cap.probe_first


def test_mode_with_a_missing_pcap(tmp_path):
    d = build(tmp_path, "triangular")
    (d / "core-r1-r3.pcap").unlink()
    r = analyze_mode(d)
    assert r["links"]["core-r1-r3"]["error"] == "no pcap"
    assert r["warnings"] == ["core-r1-r3: no pcap"]
    assert r["path_after"] == TRIANGLE


def test_missing_dci_capture_gives_nulls_not_zeros(tmp_path):
    """The DCI is in links.json but its pcap is gone: whether probes crossed it is unknown,
    so the DCI counts and the convergence are null (a DCI absent from links.json is 0)."""
    d = build(tmp_path, "lisp-extended")
    (d / "dci.pcap").unlink()
    r = analyze_mode(d)
    assert r["dci_packets_after_move"] is None and r["dci_bytes_after_move"] is None
    assert r["convergence_ms"] is None
    assert any("DCI" in w for w in r["warnings"])
    assert r["probes_lost"] == 4 and r["path_after"] == TO_DC2


def test_links_json_must_have_a_move_time(tmp_path):
    d = build(tmp_path, "triangular")
    meta = json.loads((d / "links.json").read_text())
    del meta["move_time"]
    (d / "links.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="move_time"):
        analyze_mode(d)


def test_reference_captures_control_types(data_dir, tshark):
    """Our control-message classification agrees with Wireshark's on real LISP traffic
    (Open Overlay Router and lispers.net), ICMP errors quoting LISP packets ignored."""
    import subprocess
    for pcap in sorted(data_dir.glob("*.pcap")):
        cap = read_link(pcap, pcap.stem, "core", FrameParser(CLIENT, VM))
        out = subprocess.run(
            [tshark, "-r", str(pcap), "-Y", "udp.port == 4342 && !icmp", "-T", "fields",
             "-e", "lisp.type", "-e", "lisp.mreq.flags.smr", "-e", "lisp.mreq.flags.smri"],
            capture_output=True, text=True, check=True).stdout
        names = {"1": "Map-Request", "2": "Map-Reply", "3": "Map-Register", "4": "Map-Notify",
                 "5": "Map-Notify-Ack", "8": "ECM"}
        expected = []
        for line in out.splitlines():
            types, smr, smri = (line.split("\t") + ["", ""])[:3]
            outer = types.split(",")[0]
            name = names[outer]
            if outer == "1" and smr.split(",")[0] in ("1", "True"):
                name = "SMR"
            elif outer == "1" and smri.split(",")[0] in ("1", "True"):
                name = "SMR-invoked Map-Request"
            expected.append(name)
        assert [m[1] for m in cap.control] == expected, pcap.name
        assert expected                                  # the files do hold control traffic


# --------------------------------------------------------------------------------------
# The report


def _strict_loads(text):
    def no_constants(name):
        raise ValueError(f"non-strict JSON constant {name}")
    return json.loads(text, parse_constant=no_constants)


CONTRACT = ("path_before", "path_after", "dci_packets_after_move", "dci_bytes_after_move",
            "convergence_ms", "probes_sent", "probes_lost", "rtt_ms", "tcp_survived",
            "control_messages")


def test_write_report(tmp_path, runs):
    results = {"lisp-extended-subnet": runs["lisp-extended"],
               "l2-extension": runs["triangular"],
               "lisp-across-subnet": runs["lisp-across"]}
    results["l2-extension"] = dict(results["l2-extension"], rtt_median_after_ms=math.nan,
                                   outage_ms=math.inf)
    run_dir = tmp_path / "20240101-120000"
    paths = write_report(run_dir, results, "userspace relay")
    names = [p.name for p in paths]
    assert names == ["report.md", "report.json", "comparison.png",
                     "l2-extension-timeline.png", "lisp-extended-subnet-timeline.png",
                     "lisp-across-subnet-timeline.png", "report.html"]
    for p in paths[2:-1]:
        data = p.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000, p.name

    doc = _strict_loads((run_dir / "report.json").read_text())
    assert doc["run_id"] == "20240101-120000"
    assert doc["delay_emulation"] == "userspace relay"
    assert list(doc["modes"]) == ["l2-extension", "lisp-extended-subnet", "lisp-across-subnet"]
    for mode, r in doc["modes"].items():
        assert all(k in r for k in CONTRACT), mode
    l2 = doc["modes"]["l2-extension"]
    assert l2["rtt_median_after_ms"] is None and l2["outage_ms"] is None   # NaN, inf -> null
    assert l2["convergence_ms"] is None
    assert l2["path_after"] == TRIANGLE
    assert l2["dci_bytes_after_move"] == 5722
    assert doc["modes"]["lisp-extended-subnet"]["convergence_ms"] == pytest.approx(114.0, abs=2e-3)

    md = (run_dir / "report.md").read_text()
    assert "userspace relay" in md
    header = next(line for line in md.splitlines() if line.startswith("| |"))
    assert header.index("l2-extension") < header.index("lisp-extended-subnet")
    row = next(line for line in md.splitlines() if line.startswith("| DCI bytes after move"))
    assert row.split("|")[2:5] == [" 5,722 ", " 286 ", " 0 "]
    row = next(line for line in md.splitlines() if line.startswith("| Convergence"))
    assert "never" in row.split("|")[2] and "114.0 ms" in row.split("|")[3]
    for label in ("Path before the move", "Path after convergence", "DCI packets after move",
                  "Probes sent", "Probes lost", "TCP survived"):
        assert f"| {label} |" in md
    assert "triangular routing" in md.lower()
    assert "| 40.0 | dc1-uplink | SMR |" in md
    assert "Warm paths" not in md                 # these links.json do not say so
    assert "ECM (SMR-invoked Map-Request)" in md
    assert "![comparison.png](comparison.png)" in md


def test_report_json_layout():
    from captures.report import dumps, strict_json
    doc = strict_json({"a": [[0.5, 1.0], [1.5, float("nan")]], "b": [{"x": (1, 2)}], "c": {}})
    text = dumps(doc)
    assert '"a": [[0.5, 1.0], [1.5, null]]' in text          # number series on one line
    assert '"x": [1, 2]' in text
    assert json.loads(text) == {"a": [[0.5, 1.0], [1.5, None]], "b": [{"x": [1, 2]}], "c": {}}
    with pytest.raises(ValueError):
        dumps({"a": float("inf")})                              # never NaN/Infinity out


def test_summary_table(runs):
    text = summary_table({"lisp-across-subnet": runs["lisp-across"],
                          "l2-extension": runs["triangular"]})
    lines = text.splitlines()
    assert lines[0].split() == ["l2-extension", "lisp-across-subnet"]
    conv = next(line for line in lines if line.startswith("Convergence"))
    assert "never" in conv and "114.0 ms" in conv
    assert "after:  " + " > ".join(TRIANGLE) in text
    text.encode("ascii")                                        # any terminal prints it


def test_a_lab_without_a_move_says_so_in_the_move_rows(runs):
    """A scenario without a move step (te-priority: a link fails) has no convergence: its
    move rows say "no move", not "never (null)" as if a move had failed to converge."""
    still = dict(runs["lisp-across"], move_done=None)
    lines = summary_table({"te-priority": still,
                           "lisp-across-subnet": runs["lisp-across"]}).splitlines()
    for label in ("Convergence", "DCI packets after move", "First delivery"):
        row = next(line for line in lines if line.startswith(label))
        assert row.count("no move") == 1 and "never" not in row, row   # the move's: a number
    assert "114.0 ms" in next(line for line in lines if line.startswith("Convergence"))


def test_report_of_an_empty_mode(tmp_path):
    """A mode whose captures hold nothing still gives a report (nulls, empty plots)."""
    run = Run()
    d = run.write(tmp_path / "run" / "host-route")
    r = analyze_mode(d)
    assert r["path_before"] is None and r["probes_sent"] == 0 and r["tcp_survived"] is False
    paths = write_report(tmp_path / "run", {"host-route": r}, "none")
    _strict_loads(paths[1].read_text())
    assert all(p.stat().st_size > 0 for p in paths)


def _drops_row(md):
    return [c.strip() for c in next(line for line in md.splitlines()
                                    if line.startswith("| Capture drops |")).split("|")[2:-1]]


def test_report_shows_capture_drops(tmp_path):
    """tcpdump's drops, recorded per link in links.json, reach report.md: the total and the
    links that dropped, "none" when all are 0, "unknown" where tcpdump did not say."""
    drops = {"l2-extension": {"dci": 7, "dc1-access": 2},          # the rest 0
             "host-route": {},                                      # all 0
             "lisp-extended-subnet": None,                          # no capture_drops key
             "lisp-across-subnet": {"client-access": None}}         # one unknown, rest 0
    results = {}
    for mode, dropped in drops.items():
        d = build(tmp_path / "run", "lisp-extended", name=mode)
        meta = json.loads((d / "links.json").read_text())
        if dropped is not None:
            for link in meta["links"]:
                link["capture_drops"] = dropped.get(link["name"], 0)
        (d / "links.json").write_text(json.dumps(meta))
        results[mode] = analyze_mode(d)
    assert results["l2-extension"]["links"]["dci"]["capture_drops"] == 7
    write_report(tmp_path / "run", results, "none")
    md = (tmp_path / "run" / "report.md").read_text()
    assert _drops_row(md) == ["9 (dci 7, dc1-access 2)", "none", "unknown",
                              "none; unknown on client-access"]
    assert "Capture drops" in md.split("## How the numbers are measured")[1]
    table = summary_table(results)
    assert "9 (dci 7, dc1-access 2)" in next(line for line in table.splitlines()
                                            if line.startswith("Capture drops"))
    doc = _strict_loads((tmp_path / "run" / "report.json").read_text())
    assert doc["modes"]["l2-extension"]["links"]["dc1-access"]["capture_drops"] == 2


def test_first_probe_delivered_through_lisp(tmp_path):
    """The first probe on the VM's access link that was also seen inside LISP on the core."""
    lisp = build(tmp_path, "lisp-extended")
    assert first_lisp_probe_time(lisp) == pytest.approx(T0 + 4 * HOP, abs=1e-6)
    assert first_lisp_probe_time(build(tmp_path, "triangular")) is None      # no LISP at all
    # The first three probes reach the VM natively (not through LISP): they do not count.
    run = Run()
    for seq in range(6):
        t = T0 + SPACING * seq
        run.along(TO_DC1, t, probe_pkt(seq, t), (RLOC["xtrc"], RLOC["xtr1"]) if seq >= 3 else None)
    mixed = run.write(tmp_path / "mixed")
    assert first_lisp_probe_time(mixed) == pytest.approx(T0 + 3 * SPACING + 4 * HOP, abs=1e-6)


def test_demo_start_to_first_lisp_probe(tmp_path):
    run_dir = tmp_path / "run"
    build(run_dir, "lisp-extended", name="lisp-extended-subnet")
    build(run_dir, "triangular", name="lisp-across-subnet")   # would give None if chosen
    # Only the LISP mode played first counts (by move time); other modes are ignored (the
    # l2-extension directory does not even exist).
    results = {"l2-extension": {"move_time": MOVE - 60},
               "lisp-across-subnet": {"move_time": MOVE + 30},
               "lisp-extended-subnet": {"move_time": MOVE}}
    start = T0 - 12.5
    assert demo_start_to_first_lisp_probe(run_dir, results, start) == pytest.approx(12.504)
    assert demo_start_to_first_lisp_probe(run_dir, results, None) is None
    assert demo_start_to_first_lisp_probe(
        run_dir, {"l2-extension": results["l2-extension"]}, start) is None
    # `python -m captures.report RUN_DIR` recomputes it from demo.json.
    shutil.rmtree(run_dir / "lisp-across-subnet")
    (run_dir / "demo.json").write_text(json.dumps({"demo_start": start}))
    assert report_main([str(run_dir)]) == 0
    doc = _strict_loads((run_dir / "report.json").read_text())
    assert doc["demo_start_to_first_lisp_probe_s"] == pytest.approx(12.504)
    assert "first probe delivered through LISP: **12.5 s**" in (run_dir / "report.md").read_text()


def test_report_json_says_null_without_a_lisp_start(tmp_path, runs):
    paths = write_report(tmp_path / "run", {"l2-extension": runs["triangular"]}, "none")
    doc = _strict_loads(paths[1].read_text())
    assert "demo_start_to_first_lisp_probe_s" in doc
    assert doc["demo_start_to_first_lisp_probe_s"] is None


# --------------------------------------------------------------------------------------
# Speed


def test_analysis_speed_30k_packets(tmp_path):
    """30 000 probes + 30 000 echoes on the client link, 30 000 encapsulated probes on a
    core link: the analysis must stay far below the demo's time budget."""
    n = 30_000
    d = tmp_path / "speed"
    d.mkdir()
    probe_tpl = bytes(frame(probe_pkt(0, T0)))
    echo_tpl = bytes(frame(echo_pkt(0, T0)))
    enc_tpl = bytes(encap(probe_pkt(0, T0), RLOC["xtrc"], RLOC["xtr1"]))
    off = 14 + 20 + 8 + 8

    def with_seq(tpl, o, seq):
        return tpl[:o] + struct.pack("!I", seq) + tpl[o + 4:]

    client, core = [], []
    for seq in range(n):
        t = T0 + seq / 1000.0
        client.append((t, with_seq(probe_tpl, off, seq)))
        if seq % 100:                                   # 1 % lost
            client.append((t + 0.02, with_seq(echo_tpl, off, seq)))
        core.append((t + 0.0001, with_seq(enc_tpl, off + 36, seq)))
    write_raw_pcap(d / "client-access.pcap", sorted(client))
    write_raw_pcap(d / "client-uplink.pcap", core)
    (d / "links.json").write_text(json.dumps({
        "links": [{"name": "client-access", "role": "client"},
                  {"name": "client-uplink", "role": "core"}],
        "client": CLIENT, "vm": VM, "move_time": T0 + 15.0}))
    r = analyze_mode(d)          # speed belongs to benchmarks, not to this test
    assert r["probes_sent"] == n and r["probes_lost"] == n // 100
    assert r["path_before"] == ["client-access", "client-uplink"]
    assert r["links"]["client-access"]["frames"] == n + n - n // 100


def test_convergence_is_the_first_probe_on_the_direct_path(tmp_path):
    """(issue 12) After an across-subnet move the old xTR re-encapsulates stale probes to the
    new one (client -> DC1's xTR -> DC2's xTR: a triangle through the core), which reach the
    new access link without crossing any DCI. That is the first delivery at the new site,
    not convergence: convergence is the first probe on the model's expected path after the
    move (links.json's expected_path_after), here seq 56."""
    links = [x for x in LINKS if x[0] != "dci"]
    run = Run(links)
    to_dc1, to_dc2 = (RLOC["xtrc"], RLOC["xtr1"]), (RLOC["xtrc"], RLOC["xtr2"])
    triangle = TO_DC1[:4] + ["dc2-uplink", "dc2-access"]
    for seq in range(N_PROBES):
        t = T0 + SPACING * seq
        path, rlocs = (TO_DC1, to_dc1) if seq <= 50 else (triangle, to_dc1) if seq <= 55 \
            else (TO_DC2, to_dc2)
        run.along(path, t, probe_pkt(seq, t), rlocs)
        run.back(path if seq <= 50 else TO_DC2, t + 0.010, echo_pkt(seq, t),
                 (RLOC["xtr1"], RLOC["xtrc"]) if seq <= 50 else (RLOC["xtr2"], RLOC["xtrc"]))
    r = analyze_mode(run.write(tmp_path / "across", expected_path_before=TO_DC1,
                               expected_path_after=TO_DC2))
    # seq 51 (sent T0 + 1.02) reaches dc2-access 5 hops later: 1.025 - 1.01 = 15 ms.
    assert r["first_delivery_ms"] == pytest.approx(15.0, abs=2e-3)
    # seq 56 (sent T0 + 1.12) on the direct path, 4 hops: 1.124 - 1.01 = 114 ms.
    assert r["convergence_ms"] == pytest.approx(114.0, abs=2e-3)
    assert r["path_after"] == TO_DC2
    # Without the expected path (an older links.json) it is the first delivery, as before.
    old = analyze_mode(run.write(tmp_path / "old"))
    assert old["convergence_ms"] == pytest.approx(15.0, abs=2e-3)


def test_a_direct_path_through_the_dci_never_converges(runs, tmp_path):
    """Where the expected path after the move crosses the DCI (no LISP, no host route: the
    hair-pin is what the network does), there is no convergence to measure: null."""
    d = build(tmp_path, "triangular", name="tri")
    meta = json.loads((d / "links.json").read_text())
    meta["expected_path_after"] = TRIANGLE
    (d / "links.json").write_text(json.dumps(meta))
    r = analyze_mode(d)
    assert r["convergence_ms"] is None and r["first_delivery_ms"] is None
    assert r["path_after"] == TRIANGLE


BUDGET_NODES = {"new_xtr": ("xtr2", "dc2-uplink"), "old_xtr": ("xtr1", "dc1-uplink"),
                "itr": ("xtrc", "client-uplink"), "map_server": ("msmr", "msmr-link")}


def test_the_convergence_budget_follows_the_moves_messages(tmp_path):
    """(issue 12) Per step of the move, the first capture of its message after the previous
    step and its capture on the destination's uplink; detection from the new xTR's event
    log; the direct-path convergence last; the floors passed through."""
    d = build(tmp_path, "lisp-extended")
    meta = json.loads((d / "links.json").read_text())
    floor = {"notify": 60.0, "smr": 160.0, "smr_round": 90.0, "legs": {}}
    meta["budget"] = {"nodes": {role: {"node": n, "rloc": RLOC[n], "link": link}
                                for role, (n, link) in BUDGET_NODES.items()},
                      "floor_ms": floor}
    meta["expected_path_after"] = TO_DC2
    (d / "links.json").write_text(json.dumps(meta))
    events = [{"time": MOVE - 0.5, "node": "xtr2", "event": "dynamic_eid_detected",
               "eid": f"[0]{VM}"},                          # before the move: not this one
              {"time": MOVE + 0.021, "node": "xtr2", "event": "dynamic_eid_detected",
               "eid": f"[0]{OTHER}"},                        # another host
              {"time": MOVE + 0.025, "node": "xtr2", "event": "dynamic_eid_detected",
               "eid": f"[0]{VM}"}]
    (d / "xtr2.events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    b = analyze_mode(d)["convergence_budget"]
    got = [(s["step"], s["first_seen_ms"], s["at_destination_ms"], s["from"], s["to"])
           for s in b["steps"]]
    want = [("detected", 25.0, 25.0, "xtr2", "xtr2"),
            ("map_register", 30.0, 32.0, "xtr2", "msmr"),
            ("map_notify", 34.0, 36.0, "msmr", "xtr1"),
            ("publish", None, None, None, "xtrc"),          # no PubSub in this run
            ("smr", 40.0, 42.0, "xtr1", "xtrc"),
            ("map_request", 50.0, None, "xtrc", "msmr"),     # not captured at the MS
            ("map_reply", 60.0, 60.0, "xtr2", "xtrc"),
            ("first_direct_probe", None, pytest.approx(114.0, abs=2e-3), "xtrc", "xtr2")]
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g[0] == w[0] and g[3:] == w[3:], (g, w)
        for x, y in zip(g[1:3], w[1:3]):
            assert (x is None and y is None) or x == pytest.approx(y, abs=2e-3), (g, w)
    assert b["floor_ms"] == floor and b["convergence_ms"] == pytest.approx(114.0, abs=2e-3)
    assert analyze_mode(build(tmp_path, "triangular", name="t2"))["convergence_budget"] is None


def test_the_report_says_how_neighbours_were_kept(tmp_path):
    d = build(tmp_path / "run", "lisp-across", name="lisp-across-subnet")
    meta = json.loads((d / "links.json").read_text())
    meta["neighbours"] = "permanent on point-to-point links (warm paths)"
    (d / "links.json").write_text(json.dumps(meta))
    r = analyze_mode(d)
    assert r["neighbours"] == meta["neighbours"]
    write_report(tmp_path / "run", {"lisp-across-subnet": r}, "userspace relay")
    assert "Warm paths: the lab keeps permanent neighbour" in (
        tmp_path / "run" / "report.md").read_text()

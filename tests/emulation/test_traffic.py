"""The demo's traffic tools (lab.traffic) in a tiny Lab: a client and a "VM" on one bridge.

The probe flow (pacing, loss, RTT), the long-lived TCP session (surviving a link that goes
down, failing when the server dies or stalls), the VM's announcement after a move
(gratuitous ARP and unsolicited NA, seen on the wire and taken into the peer's neighbour
table), and a clean stop on SIGTERM / SIGINT. Node names start with "trf".
"""
import json
import re
import signal
import struct
import subprocess
import sys
import time
from contextlib import contextmanager

from captures.probe import PROBE_FILL
from lab import traffic
from lab.emu import Lab

CLIENT_IP, VM_IP = "10.0.0.1", "10.0.0.2"
CLIENT_IP6, VM_IP6 = "fd00:7::1", "fd00:7::2"


@contextmanager
def tiny_lab(emu, tag, n, ipv6=False):
    """(lab, client, vm): two hosts on one LinuxBridge, with IPv6 addresses if asked."""
    c, v = f"trfc{n}", f"trfv{n}"
    topo = emu.two_host_topo(c, v, f"trfs{n}", ip1=f"{CLIENT_IP}/24", ip2=f"{VM_IP}/24")
    with Lab(topo, run_id=emu.run_id(f"traffic-{tag}")) as lab:
        client, vm = lab[c], lab[v]
        if ipv6:
            for host, ip in ((client, CLIENT_IP6), (vm, VM_IP6)):
                run(lab, host, ["ip", "-6", "addr", "add", f"{ip}/64", "dev",
                                host.defaultIntf().name, "nodad"])
        yield lab, client, vm


def run(lab, host, argv, timeout=20):
    result = lab.run(host, argv, timeout=timeout)
    assert result.returncode == 0, f"{argv}: {result.stdout}{result.stderr}"
    return result.stdout


def traffic_argv(*args):
    return [sys.executable, "-m", "lab.traffic", *map(str, args)]


def start(lab, host, log, child_env, emu, *args, name=None):
    return lab.start_process(host, traffic_argv(*args), log, env=child_env, cwd=emu.root,
                             name=name or f"traffic-{args[0]}")


def start_echo(lab, vm, log, child_env, emu):
    """Start the echo server on `vm` and return it once it listens."""
    # (counted before the start: a server that is ready at once must not be missed)
    mark = log.read_text().count("ready") if log.exists() else 0
    proc = start(lab, vm, log, child_env, emu, "echo", "--port", 7000, "--tcp-port", 7001)
    assert emu.wait_for(lambda: log.exists() and log.read_text().count("ready") > mark, 10,
                        step=0.005), log.read_text() if log.exists() else "no log"
    return proc


def run_tool(lab, host, child_env, emu, *args, timeout=60):
    """Run a traffic tool to completion in `host`; its CompletedProcess."""
    return lab.run(host, traffic_argv(*args), timeout=timeout, env=child_env, cwd=emu.root)


def no_traceback(*logs):
    for log in logs:
        text = log.read_text() if log.exists() else ""
        assert "Traceback" not in text, text


# --- pure parts (no network) ---------------------------------------------------------------

def test_probe_payload_is_the_contract():
    payload = traffic.make_probe(0x01020304, 0x1122334455667788)
    assert len(payload) == 64
    assert payload[:8] == b"LLPROBE1"
    assert payload[8:12] == b"\x01\x02\x03\x04"
    assert payload[12:20] == bytes.fromhex("1122334455667788")
    # Printable text after the header, never zeros: see captures/probe.py (Wireshark's Mojito
    # heuristic took zero-padded probes for malformed Mojito messages).
    assert payload[20:] == PROBE_FILL[:44] and all(32 <= b < 127 for b in payload[20:])
    assert traffic.parse_probe(payload) == (0x01020304, 0x1122334455667788)
    assert traffic.parse_probe(b"LLPROBE2" + payload[8:]) is None
    assert traffic.parse_probe(payload[:19]) is None


def test_lost_ranges_and_chunks():
    got = bytearray([1, 0, 0, 1, 1, 0, 1])
    assert traffic.seq_ranges(got, 7) == [[1, 2], [5, 5]]
    assert traffic.seq_ranges(got, 9) == [[1, 2], [5, 5], [7, 8]]
    assert traffic.seq_ranges(bytearray([1, 1]), 2) == []
    assert traffic.seq_ranges(bytearray(5), 5) == [[0, 4]]
    assert traffic.seq_ranges(bytearray([0, 1, 0, 1, 0]), 5, limit=2) == [[0, 0], [2, 2]]
    chunks = [traffic.make_chunk(i) for i in range(600)]
    assert all(len(c) == 100 for c in chunks)
    assert len(set(chunks)) == 600
    assert struct.unpack("!Q", chunks[513][8:16]) == (513,)


def test_announcement_frames_parse_as_intended():
    from scapy.layers.inet6 import ICMPv6ND_NA, ICMPv6NDOptDstLLAddr, IPv6
    from scapy.layers.l2 import ARP, Ether

    mac = bytes.fromhex("020000aa0001")
    for op in (1, 2):
        frame = traffic.arp_announcement(mac, "10.9.8.7", op)
        assert len(frame) == 60
        pkt = Ether(frame)
        assert pkt.dst == "ff:ff:ff:ff:ff:ff" and pkt.src == "02:00:00:aa:00:01"
        arp = pkt[ARP]
        assert (arp.op, arp.psrc, arp.pdst, arp.hwsrc) == (op, "10.9.8.7", "10.9.8.7",
                                                           "02:00:00:aa:00:01")
        assert arp.hwdst == ("00:00:00:00:00:00" if op == 1 else "02:00:00:aa:00:01")

    frame = traffic.neighbour_advert(mac, "fd00::7")
    pkt = Ether(frame)
    assert pkt.dst == "33:33:00:00:00:01"
    assert (pkt[IPv6].src, pkt[IPv6].dst, pkt[IPv6].hlim) == ("fd00::7", "ff02::1", 255)
    na = pkt[ICMPv6ND_NA]
    assert (na.R, na.S, na.O, na.tgt) == (0, 0, 1, "fd00::7")
    assert pkt[ICMPv6NDOptDstLLAddr].lladdr == "02:00:00:aa:00:01"
    sent_sum = na.cksum
    del na.cksum
    assert Ether(bytes(pkt))[ICMPv6ND_NA].cksum == sent_sum    # scapy's own checksum


def test_expected_errors_are_one_line(emu, child_env):
    """No traceback for what a user can get wrong: one line on stderr, exit status 1."""
    for args in (["probe", "--dst", "no-such-host.invalid", "--duration", "1"],
                 ["announce", "--iface", "trfnosuch0", "--ip", "10.0.0.9"],
                 ["announce", "--iface", "lo", "--ip", "10.0.9"],
                 ["announce", "--iface", "lo", "--ip6", "ff02::1"]):
        proc = subprocess.run(traffic_argv(*args), env=child_env, cwd=emu.root, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=20)
        assert proc.returncode == 1, (args, proc.stdout, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"traffic {args[0]}: "), proc.stderr


# --- the probe flow ------------------------------------------------------------------------

def test_probe_paced_lossless_with_sane_rtts(emu, tmp_path, child_env):
    with tiny_lab(emu, "probe", 1, ipv6=True) as (lab, client, vm):
        echo_log = tmp_path / "echo.log"
        echo = start_echo(lab, vm, echo_log, child_env, emu)
        out = tmp_path / "probe.json"
        t_before = time.time()
        result = run_tool(lab, client, child_env, emu, "probe", "--dst", VM_IP, "--rate", 1000,
                          "--duration", 3, "--out", out)
        t_after = time.time()
        assert result.returncode == 0, result.stdout + result.stderr
        data = json.loads(out.read_text())

        # a short run over IPv6 too, and the TCP session over IPv6
        out6 = tmp_path / "probe6.json"
        result = run_tool(lab, client, child_env, emu, "probe", "--dst", VM_IP6, "--rate", 200,
                          "--duration", 1, "--out", out6)
        assert result.returncode == 0, result.stdout + result.stderr
        data6 = json.loads(out6.read_text())
        tcp6 = tmp_path / "tcp6.json"
        result = run_tool(lab, client, child_env, emu, "tcp", "--dst", VM_IP6, "--duration", 1,
                          "--out", tcp6)
        assert result.returncode == 0, result.stdout + result.stderr
        session6 = json.loads(tcp6.read_text())
        assert echo.stop() == 0
    no_traceback(echo_log)

    summary = {k: data[k] for k in ("sent", "lost", "skipped_slots", "pacing", "cpu_s")}
    assert 2940 <= data["sent"] <= 3060, summary
    assert data["lost"] == 0 and data["received"] == data["sent"], data["lost_seqs"]
    assert data["lost_seqs"] == [] and data["duplicates"] == 0 and data["send_errors"] == 0
    assert data["family"] == 4 and data["stopped_by"] is None
    assert t_before <= data["start"] < data["end"] <= t_after
    assert abs((data["end"] - data["start"]) - 3.0) < 0.05, summary
    assert abs(data["pacing"]["achieved_rate"] - 1000) < 20, summary
    assert data["skipped_slots"] < 60, summary
    rtts = data["rtt_ms"]
    assert len(rtts) == data["received"] and data["rtt_every"] == 1
    assert all(0 < rtt < 50 for _, rtt in rtts), max(r for _, r in rtts)
    times = [t for t, _ in rtts]
    assert 0 <= min(times) and max(times) < 3.05
    # the send times follow the schedule: probe k leaves k ms after the first
    assert abs(max(times) - (data["sent"] - 1) / 1000) < 0.01
    stats = data["rtt_stats"]
    assert stats["count"] == data["received"] and 0 < stats["min"] <= stats["p50"] \
        <= stats["p99"] <= stats["max"] < 50
    assert data["cpu_s"] < 1.5, data["cpu_s"]            # < 50 % of a core at 1000 pps

    assert data6["family"] == 6 and data6["sent"] == 200 and data6["lost"] == 0, data6
    assert session6["family"] == 6 and session6["survived"], session6
    assert session6["bytes_sent"] == session6["bytes_echoed"] == 10000


def ready_time(log, nth):
    """The time the `nth` echo server writing to `log` said it was listening."""
    times = re.findall(r"echo: ready .* at (\d+\.\d+)", log.read_text())
    return float(times[nth]) if len(times) > nth else None


def test_probe_loss_matches_an_echo_server_gap(emu, tmp_path, child_env):
    """The echo server stops for 1 s: about 1000 probes are lost, in one range whose send
    times are those of the gap."""
    with tiny_lab(emu, "gap", 2) as (lab, client, vm):
        echo_log = tmp_path / "echo.log"
        echo = start_echo(lab, vm, echo_log, child_env, emu)
        out = tmp_path / "probe.json"
        prober = start(lab, client, tmp_path / "probe.log", child_env, emu, "probe", "--dst",
                       VM_IP, "--rate", 1000, "--duration", 4, "--out", out)
        # the next server is started now and sleeps until 1 s after the stop, so that how
        # long Python takes to start on a busy machine does not stretch the gap
        t_stop = time.time() + 1.5
        lab.start_process(vm, [sys.executable, "-c", (
            "import sys, time\n"
            "from lab import traffic\n"
            "time.sleep(max(0, float(sys.argv[1]) - time.time()))\n"
            "sys.exit(traffic.main(['echo']))\n"), t_stop + 1.0], echo_log, env=child_env,
            cwd=emu.root, name="echo-again")
        time.sleep(max(0.0, t_stop - time.time()))
        t_stop = time.time()
        echo.stop(signal.SIGKILL)
        assert emu.wait_for(lambda: ready_time(echo_log, 1), 5), echo_log.read_text()
        t_back = ready_time(echo_log, 1)
        assert prober.wait(timeout=15) == 0, prober.read_log()
    no_traceback(echo_log, tmp_path / "probe.log")

    data = json.loads(out.read_text())
    gap = t_back - t_stop
    summary = {k: data[k] for k in ("sent", "lost", "lost_seqs", "skipped_slots", "pacing")}
    assert 1.0 <= gap < 1.1, gap
    assert 900 <= data["lost"] <= 1100, (gap, summary)
    assert abs(data["lost"] - gap * 1000) <= 40, (gap, summary)
    assert len(data["lost_seqs"]) == 1, summary
    first, last = data["lost_seqs"][0]
    assert last - first + 1 == data["lost"]
    assert data["received"] + data["lost"] == data["sent"]
    # the missing probes are those sent while no server listened
    rtts = data["rtt_ms"]
    before = max(t for t, _ in rtts if t < 2.0)
    after = min(t for t, _ in rtts if t > before + 0.5)
    gap_start, gap_end = data["start"] + before, data["start"] + after
    assert abs(gap_start - t_stop) < 0.04, (gap_start - t_stop, summary)
    assert abs(gap_end - t_back) < 0.04, (gap_end - t_back, summary)


def test_stop_signals_write_the_results(emu, tmp_path, child_env):
    """SIGTERM or SIGINT at any time: the prober and the TCP client write their JSON and
    exit 0; the echo server exits 0."""
    with tiny_lab(emu, "stop", 3) as (lab, client, vm):
        echo_log = tmp_path / "echo.log"
        echo = start_echo(lab, vm, echo_log, child_env, emu)
        runs = {}
        for sig in (signal.SIGTERM, signal.SIGINT):
            out = tmp_path / f"probe-{sig.name}.json"
            tcp_out = tmp_path / f"tcp-{sig.name}.json"
            prober = start(lab, client, tmp_path / f"probe-{sig.name}.log", child_env, emu,
                           "probe", "--dst", VM_IP, "--out", out)          # no duration
            session = start(lab, client, tmp_path / f"tcp-{sig.name}.log", child_env, emu,
                            "tcp", "--dst", VM_IP, "--out", tcp_out)
            time.sleep(1.5)
            t0 = time.monotonic()
            rc_probe = prober.stop(sig)
            rc_tcp = session.stop(sig)
            took = time.monotonic() - t0
            runs[sig.name] = (rc_probe, rc_tcp, took, json.loads(out.read_text()),
                              json.loads(tcp_out.read_text()))
        assert echo.stop(signal.SIGTERM) == 0
    no_traceback(echo_log, *tmp_path.glob("*.log"))
    assert "stopped by SIGTERM" in echo_log.read_text()

    for name, (rc_probe, rc_tcp, took, probe, session) in runs.items():
        assert (rc_probe, rc_tcp) == (0, 0), name
        assert took < 1.5, took                      # well before the Lab's SIGKILL
        assert probe["stopped_by"] == name and session["stopped_by"] == name
        assert 1300 <= probe["sent"] <= 2000, probe["sent"]
        assert probe["lost"] == 0, probe["lost_seqs"]
        assert session["connected"] and session["survived"], session
        assert session["error"] is None
        assert session["bytes_sent"] == session["bytes_echoed"] >= 100 * 130


# --- the TCP session -------------------------------------------------------------------------

def test_tcp_session_survives_a_link_down(emu, tmp_path, child_env):
    with tiny_lab(emu, "tcpup", 4) as (lab, client, vm):
        echo_log = tmp_path / "echo.log"
        echo = start_echo(lab, vm, echo_log, child_env, emu)
        out = tmp_path / "tcp.json"
        probe_out = tmp_path / "probe.json"
        session = start(lab, client, tmp_path / "tcp.log", child_env, emu, "tcp", "--dst",
                        VM_IP, "--interval", 0.01, "--duration", 4, "--out", out)
        prober = start(lab, client, tmp_path / "probe.log", child_env, emu, "probe", "--dst",
                       VM_IP, "--duration", 4, "--out", probe_out)
        time.sleep(1.2)
        intf = vm.defaultIntf().name
        run(lab, vm, ["ip", "link", "set", "dev", intf, "down"])
        time.sleep(1.0)
        run(lab, vm, ["ip", "link", "set", "dev", intf, "up"])
        assert session.wait(timeout=20) == 0, session.read_log()
        assert prober.wait(timeout=20) == 0, prober.read_log()
        assert echo.stop() == 0
    no_traceback(*tmp_path.glob("*.log"))
    data = json.loads(out.read_text())
    assert data["connected"] and data["survived"] and data["error"] is None, data
    assert data["bytes_sent"] == data["bytes_echoed"] == 400 * 100
    assert data["chunks_verified"] == 400
    assert 900 <= data["max_stall_ms"] < 6000, data["max_stall_ms"]
    probe = json.loads(probe_out.read_text())
    assert 900 <= probe["lost"] <= 1500, probe["lost"]         # the link was down 1 s


def test_tcp_session_fails_when_the_server_dies(emu, tmp_path, child_env):
    with tiny_lab(emu, "tcpdie", 5) as (lab, client, vm):
        echo_log = tmp_path / "echo.log"
        echo = start_echo(lab, vm, echo_log, child_env, emu)
        out = tmp_path / "tcp.json"
        session = start(lab, client, tmp_path / "tcp.log", child_env, emu, "tcp", "--dst",
                        VM_IP, "--duration", 10, "--out", out)
        time.sleep(1.0)
        echo.stop(signal.SIGKILL)
        t_kill = time.monotonic()
        assert session.wait(timeout=10) == 0, session.read_log()
        reacted = time.monotonic() - t_kill
        killed = json.loads(out.read_text())

        # a server that stops answering (SIGSTOP): a stall longer than --stall-timeout fails
        echo = start_echo(lab, vm, echo_log, child_env, emu)
        stall_out = tmp_path / "tcp-stall.json"
        session = start(lab, client, tmp_path / "tcp-stall.log", child_env, emu, "tcp",
                        "--dst", VM_IP, "--duration", 10, "--stall-timeout", 1, "--out",
                        stall_out)
        time.sleep(0.5)
        echo.send_signal(signal.SIGSTOP)
        assert session.wait(timeout=10) == 0, session.read_log()
        echo.send_signal(signal.SIGCONT)
        stalled = json.loads(stall_out.read_text())

        # nobody listening at all
        refused = run_tool(lab, client, child_env, emu, "tcp", "--dst", VM_IP, "--port", 7999,
                           "--duration", 1)
        assert echo.stop() == 0
    no_traceback(*tmp_path.glob("*.log"))

    assert killed["connected"] and not killed["survived"], killed
    assert killed["error"] in ("connection closed by peer", "connection reset by peer"), killed
    assert reacted < 1.0, reacted
    assert 0 < killed["bytes_echoed"] <= killed["bytes_sent"]

    assert stalled["connected"] and not stalled["survived"], stalled
    assert stalled["error"] == "no echo for 1 s", stalled
    assert 1000 <= stalled["max_stall_ms"] < 2000, stalled

    assert refused.returncode == 0, refused.stderr
    refused = json.loads(refused.stdout)
    assert not refused["connected"] and not refused["survived"]
    assert refused["error"] == "connection refused"


# --- the announcement -------------------------------------------------------------------------

def neighbour_mac(lab, host, ip, v6=False):
    out = run(lab, host, ["ip"] + (["-6"] if v6 else ["-4"]) + ["neigh", "show", ip])
    m = re.search(r"lladdr ([0-9a-f:]{17})", out)
    return m.group(1) if m else None


def test_announce_is_seen_and_updates_the_neighbours(emu, tmp_path, child_env, tshark):
    new_mac = "02:00:00:7f:00:02"
    with tiny_lab(emu, "announce", 6, ipv6=True) as (lab, client, vm):
        c_if, v_if = client.defaultIntf().name, vm.defaultIntf().name
        run(lab, client, ["sysctl", "-qw", f"net.ipv4.conf.{c_if}.arp_accept=1"])
        for ping in (["ping", "-c1", "-W1", VM_IP], ["ping", "-6", "-c1", "-W1", VM_IP6]):
            assert emu.wait_for(lambda: lab.run(client, ping).returncode == 0, 10), ping
        old_mac = vm.MAC()
        assert neighbour_mac(lab, client, VM_IP) == old_mac
        assert neighbour_mac(lab, client, VM_IP6, v6=True) == old_mac

        pcap = tmp_path / "client.pcap"
        dump_log = tmp_path / "tcpdump.log"
        dump = lab.start_process(client, ["tcpdump", "-i", c_if, "-n", "-U", "--immediate-mode",
                                          "-w", pcap, "arp or icmp6"], dump_log, name="tcpdump")
        assert emu.wait_for(lambda: "listening on" in dump.read_log(), 10), dump.read_log()

        run(lab, vm, ["ip", "link", "set", "dev", v_if, "address", new_mac])
        result = run_tool(lab, vm, child_env, emu, "announce", "--iface", v_if, "--ip", VM_IP,
                          "--ip6", VM_IP6, "--count", 2, "--interval", 0.05)
        assert result.returncode == 0, result.stderr
        assert new_mac in result.stdout
        assert emu.wait_for(lambda: neighbour_mac(lab, client, VM_IP) == new_mac, 2), \
            run(lab, client, ["ip", "neigh"])
        assert emu.wait_for(lambda: neighbour_mac(lab, client, VM_IP6, v6=True) == new_mac, 2), \
            run(lab, client, ["ip", "-6", "neigh"])

        # with arp_accept=1 a gratuitous ARP also creates an entry the peer did not have
        run(lab, client, ["ip", "neigh", "flush", "dev", c_if])
        assert neighbour_mac(lab, client, VM_IP) is None
        result = run_tool(lab, vm, child_env, emu, "announce", "--iface", v_if, "--ip", VM_IP,
                          "--count", 1)
        assert result.returncode == 0, result.stderr
        assert emu.wait_for(lambda: neighbour_mac(lab, client, VM_IP) == new_mac, 2), \
            run(lab, client, ["ip", "neigh"])
        time.sleep(0.2)
        assert dump.stop(signal.SIGINT) == 0, dump.read_log()

    arps = subprocess.run(
        [tshark, "-n", "-r", str(pcap), "-Y", f"arp and eth.src == {new_mac}", "-T", "fields",
         "-E", "separator=,", "-e", "eth.dst", "-e", "arp.opcode", "-e", "arp.src.hw_mac",
         "-e", "arp.src.proto_ipv4", "-e", "arp.dst.hw_mac", "-e", "arp.dst.proto_ipv4"],
        check=True, text=True, stdout=subprocess.PIPE).stdout.split()
    bcast = "ff:ff:ff:ff:ff:ff"
    request = f"{bcast},1,{new_mac},{VM_IP},00:00:00:00:00:00,{VM_IP}"
    reply = f"{bcast},2,{new_mac},{VM_IP},{new_mac},{VM_IP}"
    assert arps.count(request) == 3 and arps.count(reply) == 3, arps   # 2 rounds, then 1

    nas = subprocess.run(
        [tshark, "-n", "-r", str(pcap), "-Y", "icmpv6.type == 136", "-T", "fields",
         "-E", "separator=,", "-e", "eth.src", "-e", "eth.dst", "-e", "ipv6.src",
         "-e", "ipv6.dst", "-e", "ipv6.hlim", "-e", "icmpv6.nd.na.target_address",
         "-e", "icmpv6.nd.na.flag.r", "-e", "icmpv6.nd.na.flag.s", "-e", "icmpv6.nd.na.flag.o",
         "-e", "icmpv6.opt.linkaddr"],
        check=True, text=True, stdout=subprocess.PIPE).stdout.split()
    flags = {"True", "1"}
    ours = [line.split(",") for line in nas if line.split(",")[0] == new_mac
            and line.split(",")[3] == "ff02::1"]
    assert len(ours) == 2, nas
    for eth_src, eth_dst, src, dst, hlim, target, r, s, o, lladdr in ours:
        assert (eth_dst, src, hlim, target, lladdr) == ("33:33:00:00:00:01", VM_IP6, "255",
                                                        VM_IP6, new_mac)
        assert r not in flags and s not in flags and o in flags, (r, s, o)

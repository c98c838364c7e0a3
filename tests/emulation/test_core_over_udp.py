"""The protocol core over real sockets: an ETR registers with a Map-Server across an emulated
LAN, and Wireshark (tshark), reading the capture taken on the Map-Server's interface, agrees
with both ends' counters.

Two Mininet hosts on one LinuxBridge: `ums1` runs a Map-Server/Map-Resolver (the core's
MapServerResolver behind a UDP socket on 4342), `uetr1` an ETR (the core's Etr, ticked every
0.2 s, registering every second for about 3 s). The little programs that wrap the core in
sockets are written out by the tests; the core is imported from the project.
"""
import json
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter

import pytest

from lab.emu import Lab

MS_IP, ETR_IP = "192.0.2.1", "192.0.2.2"
MS_HOST, ETR_HOST, SWITCH = "ums1", "uetr1", "us1"
EID_PREFIX = "10.1.0.0/24"
ETR_SECONDS = 3.0

MAP_SERVER = """
import json, signal, socket, sys, time
from ipaddress import ip_address, ip_network
from nodes.lisp.actions import SendControl
from nodes.lisp.mapserver import MapServerResolver, Site
from nodes.lisp.messages import encode

msmr = MapServerResolver([Site("dc", {0: sys.argv[1]}, [(0, ip_network(sys.argv[2]))],
                               accept_more_specifics=True)])
extra = {"wire_mismatch": 0, "sent": 0}

def stop(signum, frame):
    raise SystemExit(0)

signal.signal(signal.SIGTERM, stop)
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind(("0.0.0.0", 4342))
sock.settimeout(0.2)
print("ready", flush=True)
try:
    while True:
        try:
            data, (host, _port) = sock.recvfrom(65535)
        except socket.timeout:
            data = None
        now = time.monotonic()
        actions = msmr.receive(data, ip_address(host), now) if data else []
        actions += msmr.tick(now)
        for action in actions:
            if isinstance(action, SendControl):
                wire = encode(action.message)
                if action.data is not None and action.data != wire:
                    extra["wire_mismatch"] += 1
                sock.sendto(wire, (str(action.dst), action.dport))
                extra["sent"] += 1
finally:
    print("COUNTERS " + json.dumps({**dict(msmr.counters), **extra}), flush=True)
"""

ETR = """
import json, socket, sys, time
from ipaddress import ip_address, ip_network
from nodes.lisp.actions import Event, SendControl
from nodes.lisp.errors import LispDecodeError
from nodes.lisp.etr import Etr, MapServerConfig
from nodes.lisp.messages import Locator, MapNotify, decode, encode

my_ip, ms_ip, key, prefix, seconds = sys.argv[1:6]
etr = Etr([Locator(ip_address(my_ip))], [(0, ip_network(prefix))],
          [MapServerConfig(ip_address(ms_ip), key, 0, 2)], register_interval=1.0)
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind(("0.0.0.0", 4342))
events, other = [], {}

def carry_out(actions):
    for action in actions:
        if isinstance(action, SendControl):
            sock.sendto(encode(action.message), (str(action.dst), action.dport))
        elif isinstance(action, Event):
            events.append(action.name)

start = time.monotonic()
end, next_tick = start + float(seconds), start
while True:
    now = time.monotonic()
    if now >= end:
        break
    if now >= next_tick:
        carry_out(etr.tick(now))
        next_tick += 0.2
        continue
    sock.settimeout(max(0.001, min(next_tick, end) - now))
    try:
        data, (host, _port) = sock.recvfrom(65535)
    except socket.timeout:
        continue
    try:
        message = decode(data)
    except LispDecodeError:
        other["malformed"] = other.get("malformed", 0) + 1
        continue
    if isinstance(message, MapNotify):
        carry_out(etr.handle_notify(message, data, ip_address(host), time.monotonic()))
    else:
        other[type(message).__name__] = other.get(type(message).__name__, 0) + 1
print("RESULT " + json.dumps({"counters": dict(etr.counters), "events": events,
                              "other": other}), flush=True)
"""


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    from mininet.topo import Topo

    class MsAndEtr(Topo):
        def build(self):
            s = self.addSwitch(SWITCH)
            self.addLink(self.addHost(MS_HOST, ip=f"{MS_IP}/24"), s)
            self.addLink(self.addHost(ETR_HOST, ip=f"{ETR_IP}/24"), s)

    with Lab(MsAndEtr(), run_id=f"pytest-emu-udp-{tmp_path_factory.getbasetemp().name}") as lab:
        yield lab


def wait_for_text(proc, text, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in proc.read_log():
            return True
        if proc.poll() is not None:
            break
        time.sleep(0.02)
    raise AssertionError(f"{proc.name} did not print {text!r}: {proc.read_log()}")


def last_json(proc, tag):
    lines = [l for l in proc.read_log().splitlines() if l.startswith(tag + " ")]
    assert lines, f"{proc.name} printed no {tag} line: {proc.read_log()}"
    return json.loads(lines[-1][len(tag) + 1:])


def registration_run(lab, tmp_path, env, etr_key):
    """Capture on the Map-Server's interface while the ETR runs; return (etr result,
    Map-Server counters, [(src, dst, type, nonce)] as tshark reads them, malformed frames)."""
    pcap = tmp_path / "ms.pcap"
    tcpdump = lab.start_process(MS_HOST, ["tcpdump", "-n", "-U", "-Z", "root", "-i",
                                          f"{MS_HOST}-eth0", "-w", pcap, "udp", "port", "4342"],
                                tmp_path / "tcpdump.log")
    ms = lab.start_process(MS_HOST, [sys.executable, tmp_path / "ms.py", "secret", EID_PREFIX],
                           tmp_path / "ms.log", env=env)
    wait_for_text(tcpdump, "listening on", 10)
    wait_for_text(ms, "ready", 10)
    assert pcap.exists()
    etr = lab.start_process(ETR_HOST, [sys.executable, tmp_path / "etr.py", ETR_IP, MS_IP,
                                       etr_key, EID_PREFIX, ETR_SECONDS],
                            tmp_path / "etr.log", env=env)
    assert etr.wait(timeout=ETR_SECONDS + 10) == 0, etr.read_log()
    result = last_json(etr, "RESULT")
    assert ms.stop() == 0, ms.read_log()              # prints its counters on SIGTERM
    ms_counters = last_json(ms, "COUNTERS")
    assert tcpdump.stop(sig=signal.SIGINT) == 0, tcpdump.read_log()

    fields = subprocess.run(
        ["tshark", "-n", "-r", pcap, "-T", "fields", "-E", "separator=;", "-e", "ip.src",
         "-e", "ip.dst", "-e", "lisp.type", "-e", "lisp.nonce", "-e", "lisp.keyid",
         "-e", "lisp.authlen",
         "-e", "lisp.mapping.eid.ipv4", "-e", "lisp.mapping.eid.masklen",
         "-e", "lisp.loc.locator"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=60)
    assert fields.returncode == 0, fields.stderr       # stderr: tshark's warning as root
    frames, records = [], []
    for line in fields.stdout.splitlines():
        src, dst, mtype, nonce, key_id, auth_len, eid, mask, rloc = line.split(";")
        frames.append((src, dst, int(mtype), int(nonce, 16)))
        records.append((int(mtype), int(key_id, 0), int(auth_len), eid, int(mask), rloc))
    # Every Map-Register and Map-Notify carries the ETR's one record, signed with Key ID 0
    # and HMAC-SHA-256 (Algorithm ID 2, the whole 32-octet digest). tshark 4.0 reads Key ID
    # and Algorithm ID as one 16-bit Key ID (RFC 6833): 0 << 8 | 2.
    assert set(records) <= {(t, 2, 32, "10.1.0.0", 24, ETR_IP) for t in (3, 4)}, records
    malformed = subprocess.run(["tshark", "-n", "-r", pcap, "-Y", "_ws.malformed"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               timeout=60)
    assert malformed.returncode == 0, malformed.stderr
    print("ETR:", result, "\nMS:", ms_counters, "\ncapture:", *frames, sep="\n")
    return result, ms_counters, frames, malformed.stdout


@pytest.fixture
def programs(tmp_path, child_env):
    (tmp_path / "ms.py").write_text(textwrap.dedent(MAP_SERVER))
    (tmp_path / "etr.py").write_text(textwrap.dedent(ETR))
    return child_env


def test_etr_registers_and_the_map_server_confirms(lab, tmp_path, programs):
    result, ms, frames, malformed = registration_run(lab, tmp_path, programs, "secret")
    etr = Counter(result["counters"])
    sent = etr["map_register_sent"]
    assert sent >= 2 and etr["map_notify_received"] == sent, result
    assert etr["auth_failures"] == 0 and etr["map_notify_rejected"] == 0
    assert result["events"].count("registration_confirmed") == sent
    assert result["other"] == {}

    ms = Counter(ms)
    assert ms["map_register_received"] == sent
    assert ms["registrations_accepted"] == sent
    assert ms["map_notify_sent"] == sent and ms["sent"] == sent
    assert ms["auth_failures"] == 0 and ms["map_register_rejected"] == 0
    assert ms["wire_mismatch"] == 0 and ms["malformed"] == 0

    registers = [f for f in frames if f[2] == 3]
    notifies = [f for f in frames if f[2] == 4]
    assert len(frames) == len(registers) + len(notifies), frames
    assert {(s, d) for s, d, _, _ in registers} == {(ETR_IP, MS_IP)}
    assert {(s, d) for s, d, _, _ in notifies} == {(MS_IP, ETR_IP)}
    assert len(registers) == sent and len(notifies) == sent
    register_nonces = [n for *_, n in registers]
    assert len(set(register_nonces)) == sent                 # a fresh nonce every time
    assert sorted(register_nonces) == sorted(n for *_, n in notifies)
    assert malformed == ""


def test_a_wrong_key_gets_no_map_notify(lab, tmp_path, programs):
    result, ms, frames, malformed = registration_run(lab, tmp_path, programs, "not-the-secret")
    etr = Counter(result["counters"])
    sent = etr["map_register_sent"]
    assert sent >= 2 and etr["map_notify_received"] == 0, result
    assert "registration_confirmed" not in result["events"]

    ms = Counter(ms)
    assert ms["map_register_received"] == sent
    assert ms["auth_failures"] == sent and ms["register_auth_failed"] == sent
    assert ms["registrations_accepted"] == 0
    assert ms["map_notify_sent"] == 0 and ms["sent"] == 0

    assert [f[2] for f in frames] == [3] * sent
    assert {(s, d) for s, d, _, _ in frames} == {(ETR_IP, MS_IP)}
    assert malformed == ""

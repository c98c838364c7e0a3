"""Outside reference: Wireshark opens the probe flow as plain UDP data, never as some other
protocol, with no malformed packet and no expert item (issue 13).

The probe flow (captures/probe.py) crosses every link of every run, so each capture holds
thousands of probes and echoes. Wireshark tries its heuristic dissectors on UDP payloads no
port-registered dissector takes; a payload that one of them takes by chance shows up as that
protocol, usually "Malformed Packet". The old layout (magic, sequence number, send time,
zero padding) was taken by the Mojito DHT heuristic for about one probe in 65,536: it reads
byte 16 and a little-endian length at offset 19 (Wireshark's packet-mojito.c), which there
were the send time's fifth byte, its last byte and the zero padding.

One capture holds every payload variant a run can produce and more: sequence numbers across
their range, a second of send times at the prober's rate, every value of every varying byte,
every value pair of the two bytes Mojito reads, other sizes, echoes, IPv6, and probes inside
LISP as the core links carry them. tshark (default preferences: its default heuristics) must
see each frame as exactly the expected protocol stack, and the capture analysis must still
recognise each probe.
"""
import ipaddress
import random
import struct

from captures.analysis import ECHO, PROBE, FrameParser
from captures.probe import PROBE_HEADER, PROBE_PORT, PROBE_SIZE, make_probe
from nodes.lisp.data import fast_header
from nodes.lisp.ipudp import IpUdp, encode_ip_udp
from tests.tshark_util import frame_summaries

CLIENT, VM = ipaddress.ip_address("10.99.0.10"), ipaddress.ip_address("10.10.0.5")
CLIENT6, VM6 = ipaddress.ip_address("2001:db8:99::10"), ipaddress.ip_address("2001:db8:10::5")
RLOC_C, RLOC_V = ipaddress.ip_address("172.16.1.1"), ipaddress.ip_address("172.16.3.1")
SPORT = 40000
T0 = 1_780_000_000_123_456_789          # a send time in 2026, ns since the epoch
ETH4 = b"\x02\x00\x00\x00\x00\x02" + b"\x02\x00\x00\x00\x00\x01" + b"\x08\x00"
ETH6 = ETH4[:12] + b"\x86\xdd"

PLAIN = "eth:ethertype:ip:udp:data"
PLAIN6 = "eth:ethertype:ipv6:udp:data"
IN_LISP = "eth:ethertype:ip:udp:lisp-data:ip:udp:data"

SEQ_BYTES = range(8, 12)                 # where the varying fields sit in PROBE_HEADER
TIME_BYTES = range(12, 20)


def _with_byte(value, index, width, byte):
    """`value` (an unsigned integer `width` bytes wide) with its byte `index` set to `byte`."""
    shift = 8 * (width - 1 - index)
    return (value & ~(0xFF << shift)) | (byte << shift)


def payload_variants():
    """(seq, t_ns, size) of every probe the test dissects."""
    rnd = random.Random(13)
    out = []
    seqs = list(range(0, 600)) + [2 ** 32 - 1] + [rnd.randrange(2 ** 32) for _ in range(1000)]
    seqs += [(1 << k) + d for k in range(8, 32) for d in (-1, 0, 1)]
    out += [(s, T0 + i * 1_000_003, PROBE_SIZE) for i, s in enumerate(seqs)]
    # A second at 1000/s as the prober sends them (its clock drifts, not its step).
    out += [(i, T0 + i * 1_000_000 + rnd.randrange(-50_000, 50_000), PROBE_SIZE)
            for i in range(1000)]
    # Every value of every varying byte.
    for index in SEQ_BYTES:
        out += [(_with_byte(123_456, index - 8, 4, b), T0, PROBE_SIZE) for b in range(256)]
    for index in TIME_BYTES:
        out += [(7, _with_byte(T0, index - 12, 8, b), PROBE_SIZE) for b in range(256)]
    # Every value pair of byte 16 and byte 19 (the send time's bytes 4 and 7): what the
    # Mojito heuristic reads.
    out += [(9, _with_byte(_with_byte(T0, 4, 8, hi), 7, 8, lo), PROBE_SIZE)
            for hi in range(256) for lo in range(256)]
    # Other sizes the prober can send (--size; never below the header).
    out += [(s, T0 + s * 977, size) for s, size in enumerate(
        [PROBE_HEADER.size, 21, 23, 32, 41, 59, 60, 61, 63, 65, 80, 100, 128, 256, 512, 1200,
         1400] * 20)]
    return out


def frame(src, dst, sport, dport, payload):
    eth = ETH4 if src.version == 4 else ETH6
    return eth + encode_ip_udp(IpUdp(src=src, dst=dst, sport=sport, dport=dport), payload)


def lisp_frame(inner):
    """An IPv4 probe as a core link carries it: outer IPv4/UDP 4341, the LISP header."""
    packet = inner[len(ETH4):]
    return ETH4 + encode_ip_udp(IpUdp(src=RLOC_C, dst=RLOC_V, sport=51000, dport=4341,
                                      zero_checksum=True), fast_header(0x1234, lsb=1) + packet)


def write_pcap(path, frames):
    """A classic pcap (Ethernet), one frame a millisecond."""
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for i, data in enumerate(frames):
            f.write(struct.pack("<IIII", 1_780_000_000 + i // 1000, (i % 1000) * 1000,
                                len(data), len(data)) + data)


def test_probe_flow_is_plain_udp_data_in_tshark(tshark, tmp_path):
    cases = []                     # (frame bytes, expected frame.protocols, record kind, seq)
    for n, (seq, t_ns, size) in enumerate(payload_variants()):
        p = make_probe(seq, t_ns, size)
        probe = frame(CLIENT, VM, SPORT, PROBE_PORT, p)
        cases.append((probe, PLAIN, PROBE, seq))
        if n % 7 == 0:
            cases.append((frame(VM, CLIENT, PROBE_PORT, SPORT, p), PLAIN, ECHO, seq))
        if n % 11 == 0:
            cases.append((frame(CLIENT6, VM6, SPORT, PROBE_PORT, p), PLAIN6, None, seq))
        if n % 13 == 0:
            cases.append((lisp_frame(probe), IN_LISP, PROBE, seq))
    pcap = tmp_path / "probes.pcap"
    write_pcap(pcap, [c[0] for c in cases])

    summaries = frame_summaries(tshark, pcap)
    assert len(summaries) == len(cases)
    wrong = [(i + 1, got, cases[i][1]) for i, (got, severities) in enumerate(summaries)
             if got != cases[i][1] or severities]
    assert not wrong, (f"{len(wrong)} of {len(cases)} frames are not plain UDP data in tshark, "
                       f"e.g. (frame, protocols, expected): {wrong[:5]}")
    malformed = sum("_ws.malformed" in got for got, _ in summaries)
    assert malformed == 0

    # The analysis still reads every one of them as the probe (or echo) it is.
    parser = FrameParser(None, str(VM))
    parser6 = FrameParser(None, str(VM6))
    for data, _, kind, seq in cases:
        rec = (parser if kind is not None else parser6).parse(data)
        assert rec is not None and rec[0] in (PROBE, ECHO) and rec[2] == seq, (rec, seq)
        assert kind is None or rec[0] == kind

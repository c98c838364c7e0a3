"""The probe flow's wire format, defined once: the prober and echo server (lab/traffic.py)
write it, the capture analysis (captures/analysis.py) reads it, the tests build it.

A probe is a UDP datagram to the VM's port PROBE_PORT whose payload is PROBE_HEADER
(PROBE_MAGIC, the sequence number as uint32 and the send time as uint64 ns since the epoch,
both in network order), then PROBE_FILL, repeated and cut to the probe's size (PROBE_SIZE by
default). The echo is the same payload sent back from PROBE_PORT. A probe is identified by
the client's source port and the sequence number. The long-lived TCP session goes to
TCP_PORT.

Why the fill is text and not zeros: Wireshark tries its heuristic dissectors on UDP
payloads, and with zero padding the Mojito DHT heuristic took about one probe in 65,536 (it
reads byte 16 and a little-endian length at offset 19, which were the send time's fifth and
last bytes and the first padding bytes) and showed it as a malformed Mojito message. With
printable bytes from offset 20 on, no length or type field a heuristic reads there can
match, and the varying bytes (8 to 19) sit between a fixed magic and a fixed text.
tests/unit/test_probe_wire.py dissects every variant with tshark. A student who opens a
probe in Wireshark reads what it is in the bytes pane.

This module imports nothing heavy: the prober starts in tens of milliseconds.
"""
import struct

PROBE_PORT = 7000
TCP_PORT = 7001
PROBE_MAGIC = b"LLPROBE1"
PROBE_HEADER = struct.Struct("!8sIQ")            # magic, seq, send time (ns since the epoch)
PROBE_SIZE = 64
PROBE_FILL = f" lisp-lab probe: UDP to port {PROBE_PORT}, echoed back; captures/probe.py. ".encode()


def probe_padding(size):
    """The bytes after the header of a probe of `size` bytes: PROBE_FILL, repeated and cut."""
    n = max(0, size - PROBE_HEADER.size)
    return (PROBE_FILL * (n // len(PROBE_FILL) + 1))[:n]


def make_probe(seq, t_ns, size=PROBE_SIZE):
    """The payload of probe `seq` sent at `t_ns` (ns since the epoch)."""
    return PROBE_HEADER.pack(PROBE_MAGIC, seq & 0xFFFFFFFF, t_ns) + probe_padding(size)


def parse_probe(payload):
    """(seq, send time in ns) of a probe payload, or None when it is not one."""
    if len(payload) < PROBE_HEADER.size or payload[:8] != PROBE_MAGIC:
        return None
    _, seq, t_ns = PROBE_HEADER.unpack_from(payload)
    return seq, t_ns

"""Run Wireshark's dissector (tshark) on packets and read back what it saw.

Used by the outside-reference tests: we build a message with our codec, wrap it in real
Ethernet/IP/UDP headers with scapy, write a pcap, and ask tshark what each field holds.

    frames = dissect(tshark, packets, tmp_path / "x.pcap")
    assert_clean(frames[0])                     # no malformed packet, no expert warning/error
    assert_fields(frames[0], {"lisp.nonce": [0x1122334455667788]}, families=("lisp",))

tshark's PDML output gives, for every field, `show` (the value as tshark displays it) and
`value` (the raw bytes, in hex). A Frame keeps both, in the order tshark met them, so a field
that occurs several times (two locators, an ECM's outer and inner IP header) is a list.
"""
import ipaddress
import subprocess
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

from scapy.utils import wrpcap

# Expert-info severities (epan/proto.h: PI_COMMENT .. PI_ERROR).
SEVERITY_NAMES = {0x100000: "comment", 0x200000: "chat", 0x400000: "note",
                  0x600000: "warn", 0x800000: "error"}
PI_WARN = 0x600000

# Checksum validation is off by default in tshark; turn it on so a bad IPv4 header checksum or
# UDP checksum (e.g. in the header an ECM carries) becomes an expert error.
PREFERENCES = ("-o", "ip.check_checksum:TRUE", "-o", "udp.check_checksum:TRUE")


@dataclass(repr=False)
class Frame:
    number: int
    fields: dict = field(default_factory=dict)     # name -> [(show, value), ...]
    experts: list = field(default_factory=list)    # [(severity int, group, message), ...]
    malformed: bool = False

    def __repr__(self):
        return f"Frame({self.number}, {len(self.fields)} fields, problems={self.problems()})"

    def shows(self, name):
        return [s for s, _ in self.fields.get(name, [])]

    def values(self, name):
        return [v for _, v in self.fields.get(name, [])]

    def one(self, name):
        shows = self.shows(name)
        assert len(shows) == 1, f"frame {self.number}: {name} occurs {len(shows)} times: {shows}"
        return shows[0]

    def problems(self):
        """Malformed markers and expert items of severity warn or error, as text."""
        out = ["malformed packet"] if self.malformed else []
        out += [f"expert {SEVERITY_NAMES.get(sev, hex(sev))}/{group}: {msg}"
                for sev, group, msg in self.experts if sev >= PI_WARN]
        return out


def dissect(tshark, packets, pcap_path, extra_args=()):
    """Write `packets` (scapy) to `pcap_path`, run tshark once, return one Frame per packet."""
    wrpcap(str(pcap_path), packets)
    # stderr is ignored: tshark warns there when it runs as root. The return code is checked.
    proc = subprocess.run([tshark, "-n", "-r", str(pcap_path), "-T", "pdml", *PREFERENCES,
                           *extra_args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          timeout=120)
    assert proc.returncode == 0, f"tshark failed ({proc.returncode}): {proc.stderr.decode()}"
    frames = [_frame(i + 1, p) for i, p in enumerate(ET.fromstring(proc.stdout).iter("packet"))]
    assert len(frames) == len(packets), f"tshark read {len(frames)} of {len(packets)} packets"
    return frames


def _frame(number, packet):
    f = Frame(number)
    for elem in packet.iter():
        name = elem.get("name")
        if not name:
            continue
        if name == "_ws.malformed":
            f.malformed = True
        if name == "_ws.expert":
            sub = {c.get("name"): c.get("show") for c in elem}
            f.experts.append((int(sub.get("_ws.expert.severity", "0")),
                              elem.get("showname", ""), sub.get("_ws.expert.message", "")))
        f.fields.setdefault(name, []).append((elem.get("show", ""), elem.get("value", "")))
    return f


def assert_clean(frame):
    """No malformed packet and no expert item of severity warning or error."""
    assert not frame.problems(), f"frame {frame.number}: {frame.problems()}"


def _normal(expected, show, value):
    """What tshark reported, converted to the type of the expected value."""
    if isinstance(expected, bool) or isinstance(expected, int):
        return int(show, 0)
    if isinstance(expected, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
        return ipaddress.ip_address(show)
    if isinstance(expected, bytes):
        return bytes.fromhex(value.replace(":", ""))
    return show


def mismatches(frame, expected, families=(), ignore=()):
    """Differences between what tshark reported and `expected` ({field: [values in order]}).

    Integers compare by value (tshark shows some in hex), addresses as addresses, bytes
    against the raw value. With `families` (e.g. ("lisp",)), every field of those protocols
    that tshark reported with a value must also appear in `expected` (or in `ignore`), so a
    field tshark found that we did not expect is an error too."""
    out = []
    for name, want in expected.items():
        got = frame.fields.get(name, [])
        try:
            got_n = [_normal(w, s, v) for w, (s, v) in zip(want, got)]
        except ValueError as e:
            out.append(f"{name}: cannot read {got}: {e}")
            continue
        if len(got) != len(want) or got_n != [int(w) if isinstance(w, bool) else w
                                              for w in want]:
            out.append(f"{name}: expected {want}, tshark shows {[s for s, _ in got]}")
    prefixes = tuple(f + "." for f in families)
    for name, items in frame.fields.items():
        if (prefixes and name.startswith(prefixes) and name not in expected
                and name not in ignore and any(s for s, _ in items)):
            out.append(f"{name}: unexpected field, tshark shows {[s for s, _ in items]}")
    return out


def assert_fields(frame, expected, families=(), ignore=()):
    bad = mismatches(frame, expected, families, ignore)
    assert not bad, f"frame {frame.number}:\n  " + "\n  ".join(bad)


def frame_summaries(tshark, pcap_path, extra_args=()):
    """[(frame.protocols, [expert severities]), ...] for every frame of a pcap, from one
    tshark run with its default preferences (default heuristic dissectors): the fast check
    for captures of many thousand frames, where PDML would take minutes. A malformed frame
    has "_ws.malformed" in its protocols."""
    proc = subprocess.run([tshark, "-n", "-r", str(pcap_path), "-T", "fields",
                           "-E", "separator=/t", "-E", "occurrence=a", "-E", "aggregator=,",
                           "-e", "frame.protocols", "-e", "_ws.expert.severity", *extra_args],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=300)
    assert proc.returncode == 0, f"tshark failed ({proc.returncode}): {proc.stderr.decode()}"
    out = []
    for line in proc.stdout.decode().splitlines():
        protocols, _, severities = line.partition("\t")
        out.append((protocols, [int(s) for s in severities.split(",") if s]))
    return out

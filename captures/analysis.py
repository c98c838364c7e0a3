"""Analysis of one mode's captures: from the pcaps alone to paths, counts, convergence, loss,
RTT and the LISP control messages of the move.

Input: a directory `captures/<run-id>/<mode>/` holding `links.json` and one `<link>.pcap`
per named link (see `load_links`). Output: `analyze_mode(mode_dir)` returns a plain dict
(strict-JSON-able) whose keys are documented in `RESULT_KEYS` below and in the README.

How the traffic is recognised (only Ethernet/IPv4/IPv6/UDP/TCP headers are read, by hand,
from the raw bytes of each frame: full scapy dissection would be about 50 times slower):

- probe: UDP from the client to the VM, destination port 7000, payload starting with
  b"LLPROBE1", then the sequence number (uint32) and the send time (uint64 ns): the format
  of captures/probe.py, which lab/traffic.py sends. A probe is
  identified by (client source port, sequence number), natively or inside LISP.
- echo: the same payload from the VM's port 7000 back to the client's source port.
- TCP: segments between the client and the VM's port 7001, in both directions.
- LISP data (UDP port 4341): the inner IP packet after the 8-byte LISP header is parsed as
  above, so an encapsulated probe on a core link counts as the same probe as the native one
  on an access link. VXLAN (4789, 8472) and GRE are opened the same way.
- LISP control (UDP port 4342, either side): the message type (first 4 bits); a
  Map-Request with the S bit is an SMR, with the s bit an SMR-invoked Map-Request; an ECM's
  inner message is decoded too.
- OSPF (IP protocol 89, not encapsulated): the packet type, so that the core's routing
  updates (LS Update) after the move can be counted (host-route mode).
- Anything else (ARP, neighbour discovery, other routing protocols, ...) is counted as a
  frame and otherwise ignored.

Times in the result are seconds (or milliseconds, where the key says `_ms`) relative to the
move: t = 0 is `move_time` from links.json, negative before the move.
"""
from __future__ import annotations

import ipaddress
import json
import math
import struct
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from scapy.error import Scapy_Exception
from scapy.utils import RawPcapNgReader, RawPcapReader

from captures.probe import PROBE_MAGIC, PROBE_PORT, TCP_PORT

from .failover import failover_check, from_captures
from .flows import FLOW_PORT, count_flows, flow_shares, split_check
from .group import converged_check, group_convergence

LISP_DATA_PORT = 4341
LISP_CONTROL_PORT = 4342
VXLAN_PORTS = (4789, 8472)
IPPROTO_OSPF = 89
OSPF_LS_UPDATE = 4              # OSPF packet type of a Link State Update

CONTROL_WINDOW_BEFORE_S = 1.0   # control messages listed from move_time - 1 s
RATE_BIN_S = 0.1                # bin of the per-link packet-rate series
MAX_RATE_BINS = 5000            # the bin grows if a capture is very long
TCP_END_SLACK_S = 1.0           # "until the end": last packet each way within this of the end
MAX_DEPTH = 3                   # nested encapsulations opened

MODES = ("l2-extension", "host-route", "lisp-extended-subnet", "lisp-across-subnet",
         "lisp-pubsub")

CONTROL_TYPES = {1: "Map-Request", 2: "Map-Reply", 3: "Map-Register", 4: "Map-Notify",
                 5: "Map-Notify-Ack", 6: "Map-Referral", 8: "ECM"}

# The contractual keys of a mode's result, with their meaning (the README copies this).
RESULT_KEYS = {
    "path_before": "links the client's probes cross to reach the VM before the move, in "
                   "capture-time order (the most common sequence; null if no probe)",
    "path_after": "the same after convergence (probes sent from move_time + convergence_ms, "
                  "or from move_done when there is no convergence)",
    "dci_packets_after_move": "client->VM probe and TCP frames on the DCI from move_time on",
    "dci_bytes_after_move": "their bytes (Ethernet frame lengths as recorded in the pcap)",
    "convergence_ms": "move_time -> the first probe seen on the VM's new access link "
                      "(role vm-target) that took the direct path (the lab model's expected "
                      "path after the move, expected_path_after); null if never, and where "
                      "that path crosses the DCI (the hair-pin is not a convergence)",
    "first_delivery_ms": "move_time -> the first probe seen on the VM's new access link "
                         "that did not cross the DCI, on any path (with LISP it may still "
                         "make a triangle through the old site's xTR); null if never",
    "probes_sent": "distinct probes seen on the client link",
    "probes_lost": "probes sent whose echo never came back to the client link",
    "rtt_ms": "[t_s, rtt_ms] per answered probe, from its probe and echo on the client link",
    "tcp_survived": "the TCP session (port 7001) had packets both ways after the move until "
                    "the end of the traffic, and no RST was seen",
    "neighbours": "how the lab kept neighbour entries (links.json): permanent on point-to-"
                  "point links, so no cold ARP is in a measured time; null if unknown",
    "flow_counts": "with a flows traffic step (lab.flows): {link: {flows, packets, bytes}} of "
                   "its flows seen on each link (natively or inside LISP); null otherwise",
    "flow_share": "with a flows traffic step: {link: percent of the flows sent that crossed "
                  "it}; null otherwise",
    "failover": "with a failover check (captures/failover.py): the primary link's failure "
                "and return: probe packets and bytes per provider link, failover_ms, "
                "probes_lost_failover, failback_ms, probes_lost_failback, target_ms; null "
                "otherwise",
    "convergence_budget": "a move's convergence step by step (LISP): {steps: [{step, "
                          "first_seen_ms, at_destination_ms, from, to}], floor_ms: the propagation floors "
                          "of the lab's link delays, convergence_ms}; null without LISP",
    "control_messages": "LISP control messages from move_time - 1 s: {time_s, link, type, "
                        "inner, src, dst}",
    "core_routing_updates_after_move": "OSPF LS Update packets captured on the links from "
                                       "move_time on (the core's route churn); null when "
                                       "links.json says the core does not run OSPF",
}


# --------------------------------------------------------------------------------------
# Frame parsing (bytes -> one record or None)

# Record kinds.
PROBE, ECHO, TCP_OUT, TCP_IN, CONTROL, ROUTING = 1, 2, 3, 4, 5, 6

_H = struct.Struct("!H")
_HH = struct.Struct("!HH")
_I = struct.Struct("!I")

# Linktypes of pcap files.
DLT_EN10MB, DLT_RAW, DLT_LINUX_SLL, DLT_IPV4, DLT_IPV6, DLT_LINUX_SLL2 = 1, 101, 113, 228, 229, 276
_IPV6_EXT = (0, 43, 60)   # hop-by-hop, routing, destination options


def control_type(payload: bytes) -> str | None:
    """The name of the LISP control message in a UDP 4342 payload (None if empty)."""
    if not payload:
        return None
    t = payload[0] >> 4
    if t == 1 and len(payload) >= 2:
        if payload[0] & 0x01:
            return "SMR"
        if payload[1] & 0x40:
            return "SMR-invoked Map-Request"
    return CONTROL_TYPES.get(t, f"type-{t}")


class FrameParser:
    """Turns one captured frame into at most one record of interest.

    Records are tuples whose first item is the kind:
      (PROBE, sport, seq, encapsulated)        client -> VM probe
      (ECHO, dport, seq, encapsulated)         VM -> client echo
      (TCP_OUT, client_port, flags, payload_len, encapsulated)
      (TCP_IN, client_port, flags, payload_len, encapsulated)
      (CONTROL, type, inner_type_or_None, src, dst)
      (ROUTING, ospf_packet_type)              an OSPF packet (not encapsulated)
    """

    def __init__(self, client: str | None, vm: str):
        self.vm = ipaddress.ip_address(vm).packed
        self.client = ipaddress.ip_address(client).packed if client else None

    def parse(self, buf: bytes, linktype: int = DLT_EN10MB):
        try:
            if linktype == DLT_EN10MB:
                return self._eth(buf, 0, 0, False)
            if linktype == DLT_LINUX_SLL:
                return self._l3(buf, _H.unpack_from(buf, 14)[0], 16, 0, False)
            if linktype == DLT_LINUX_SLL2:
                return self._l3(buf, _H.unpack_from(buf, 0)[0], 20, 0, False)
            if linktype in (DLT_RAW, DLT_IPV4, DLT_IPV6, 12, 14):
                return self._ip(buf, 0, 0, False)
        except (struct.error, IndexError):
            return None
        return None

    def _eth(self, buf, off, depth, encap):
        etype = _H.unpack_from(buf, off + 12)[0]
        off += 14
        while etype in (0x8100, 0x88A8, 0x9100):     # VLAN tags
            etype = _H.unpack_from(buf, off + 2)[0]
            off += 4
        return self._l3(buf, etype, off, depth, encap)

    def _l3(self, buf, etype, off, depth, encap):
        if etype == 0x0800 or etype == 0x86DD:
            return self._ip(buf, off, depth, encap)
        return None

    def _ip(self, buf, off, depth, encap):
        version = buf[off] >> 4
        if version == 4:
            ihl = (buf[off] & 0x0F) * 4
            total = _H.unpack_from(buf, off + 2)[0]
            if ihl < 20 or total < ihl:
                return None
            if _H.unpack_from(buf, off + 6)[0] & 0x1FFF:     # a later fragment
                return None
            proto = buf[off + 9]
            src = buf[off + 12:off + 16]
            dst = buf[off + 16:off + 20]
            l4 = off + ihl
            end = min(len(buf), off + total)
        elif version == 6:
            proto = buf[off + 6]
            plen = _H.unpack_from(buf, off + 4)[0]
            src = buf[off + 8:off + 24]
            dst = buf[off + 24:off + 40]
            l4 = off + 40
            end = min(len(buf), l4 + plen)
            while proto in _IPV6_EXT or proto == 44:
                if proto == 44:                            # fragment header
                    if _H.unpack_from(buf, l4 + 2)[0] & 0xFFF8:
                        return None
                    proto, l4 = buf[l4], l4 + 8
                else:
                    proto, l4 = buf[l4], l4 + (buf[l4 + 1] + 1) * 8
        else:
            return None
        if proto == 17:
            return self._udp(buf, l4, end, src, dst, depth, encap)
        if proto == 6:
            return self._tcp(buf, l4, end, src, dst, encap)
        if proto == 47 and depth < MAX_DEPTH:
            return self._gre(buf, l4, depth, encap)
        if proto == IPPROTO_OSPF and depth == 0 and end - l4 >= 2:
            return (ROUTING, buf[l4 + 1])
        return None

    def _udp(self, buf, l4, end, src, dst, depth, encap):
        if end - l4 < 8:
            return None
        sport, dport = _HH.unpack_from(buf, l4)
        pl = l4 + 8
        if (dport == LISP_DATA_PORT or sport == LISP_DATA_PORT) and depth < MAX_DEPTH:
            if end - pl >= 8 + 20:
                return self._ip(buf[:end], pl + 8, depth + 1, True)
            return None
        if dport in VXLAN_PORTS and depth < MAX_DEPTH:
            if end - pl >= 8 + 14:
                return self._eth(buf[:end], pl + 8, depth + 1, encap)
            return None
        if dport == LISP_CONTROL_PORT or sport == LISP_CONTROL_PORT:
            payload = buf[pl:end]
            kind = control_type(payload)
            if kind is None:
                return None
            inner = None
            if kind == "ECM":
                inner = self._ecm_inner(payload)
            return (CONTROL, kind, inner, _addr(src), _addr(dst))
        if dport == PROBE_PORT:
            if (src == self.client or self.client is None) and dst == self.vm \
                    and end - pl >= 12 and buf[pl:pl + 8] == PROBE_MAGIC:
                return (PROBE, sport, _I.unpack_from(buf, pl + 8)[0], encap)
        if sport == PROBE_PORT:
            if src == self.vm and (dst == self.client or self.client is None) \
                    and end - pl >= 12 and buf[pl:pl + 8] == PROBE_MAGIC:
                return (ECHO, dport, _I.unpack_from(buf, pl + 8)[0], encap)
        return None

    def _tcp(self, buf, l4, end, src, dst, encap):
        if end - l4 < 20:
            return None
        sport, dport = _HH.unpack_from(buf, l4)
        flags = buf[l4 + 13]
        paylen = max(0, end - l4 - (buf[l4 + 12] >> 4) * 4)
        if dport == TCP_PORT and dst == self.vm and (src == self.client or self.client is None):
            return (TCP_OUT, sport, flags, paylen, encap)
        if sport == TCP_PORT and src == self.vm and (dst == self.client or self.client is None):
            return (TCP_IN, dport, flags, paylen, encap)
        return None

    def _gre(self, buf, off, depth, encap):
        flags, proto = _HH.unpack_from(buf, off)
        hlen = 4 + 4 * (bool(flags & 0x8000) + bool(flags & 0x2000) + bool(flags & 0x1000))
        if proto == 0x6558:
            return self._eth(buf, off + hlen, depth + 1, encap)
        return self._l3(buf, proto, off + hlen, depth + 1, encap)

    @staticmethod
    def _ecm_inner(payload):
        """The type of the message inside an Encapsulated Control Message (or None)."""
        off = 4
        if len(payload) < off + 20:
            return None
        version = payload[off] >> 4
        if version == 4:
            off += (payload[off] & 0x0F) * 4
        elif version == 6:
            off += 40
        else:
            return None
        return control_type(payload[off + 8:]) if len(payload) > off + 8 else None


def _addr(raw: bytes) -> str:
    return str(ipaddress.ip_address(raw))


# --------------------------------------------------------------------------------------
# Reading one link's pcap


@dataclass
class LinkCapture:
    """What one link's pcap holds, reduced to what the analysis needs."""
    name: str
    role: str
    present: bool = False
    error: str | None = None
    frames: int = 0
    first_ts: float | None = None
    last_ts: float | None = None
    probe_first: dict = field(default_factory=dict)   # (sport, seq) -> first time seen
    echo_first: dict = field(default_factory=dict)    # (dport, seq) -> first time seen
    out_ts: list = field(default_factory=list)        # client->VM probe and TCP frames ...
    out_len: list = field(default_factory=list)       # ... and their frame lengths
    encapsulated: int = 0                             # client->VM frames seen inside LISP
    tcp: list = field(default_factory=list)           # (ts, kind, client_port, flags, paylen)
    control: list = field(default_factory=list)       # (ts, type, inner, src, dst)
    routing: list = field(default_factory=list)       # (ts, OSPF packet type)
    last_traffic_ts: float | None = None              # last probe, echo or TCP frame


def read_link(path: Path, name: str, role: str, parser: FrameParser) -> LinkCapture:
    """Stream one pcap (or pcapng) and keep the records of interest."""
    cap = LinkCapture(name=name, role=role)
    path = Path(path)
    if not path.exists():
        cap.error = "no pcap"
        return cap
    if path.stat().st_size == 0:
        cap.present, cap.error = True, "empty pcap (no header)"
        return cap
    cap.present = True
    try:
        reader = RawPcapReader(str(path))
    except (Scapy_Exception, OSError, EOFError, struct.error) as e:
        cap.error = f"unreadable pcap: {e}"
        return cap
    ng = isinstance(reader, RawPcapNgReader)
    scale = 1e-9 if getattr(reader, "nano", False) else 1e-6
    linktype = getattr(reader, "linktype", DLT_EN10MB)
    parse = parser.parse
    probe_first, echo_first = cap.probe_first, cap.echo_first
    out_ts, out_len, tcp, control = cap.out_ts, cap.out_len, cap.tcp, cap.control
    routing = cap.routing
    frames = encapsulated = 0
    first = last = last_traffic = None
    try:
        for data, meta in reader:
            if ng:
                if meta.tshigh is None:
                    continue
                ts = ((meta.tshigh << 32) + meta.tslow) / meta.tsresol
                rec = parse(data, meta.linktype)
            else:
                ts = meta.sec + meta.usec * scale
                rec = parse(data, linktype)
            frames += 1
            if first is None:
                first = ts
            last = ts
            if rec is None:
                continue
            kind = rec[0]
            if kind == PROBE:
                key = (rec[1], rec[2])
                if key not in probe_first:
                    probe_first[key] = ts
                out_ts.append(ts)
                out_len.append(meta.wirelen)
                encapsulated += rec[3]
                last_traffic = ts
            elif kind == ECHO:
                key = (rec[1], rec[2])
                if key not in echo_first:
                    echo_first[key] = ts
                last_traffic = ts
            elif kind == TCP_OUT or kind == TCP_IN:
                tcp.append((ts, kind, rec[1], rec[2], rec[3]))
                if kind == TCP_OUT:
                    out_ts.append(ts)
                    out_len.append(meta.wirelen)
                    encapsulated += rec[4]
                last_traffic = ts
            elif kind == CONTROL:
                control.append((ts, rec[1], rec[2], rec[3], rec[4]))
            elif kind == ROUTING:
                routing.append((ts, rec[1]))
    except (Scapy_Exception, struct.error) as e:     # a truncated tail: keep what was read
        cap.error = f"pcap cut short after {frames} frames: {e}"
    finally:
        reader.close()
    cap.frames, cap.first_ts, cap.last_ts = frames, first, last
    cap.encapsulated, cap.last_traffic_ts = encapsulated, last_traffic
    return cap


# --------------------------------------------------------------------------------------
# links.json


def load_links(mode_dir) -> dict:
    """Read and check `links.json` of a mode directory.

    {"links": [{"name": "client-access", "role": "client"}, ...], "client": "10.99.0.10",
     "vm": "10.10.0.5", "move_time": <unix s>, "move_done": <unix s>,
     "delay_emulation": "netem" | "userspace relay" | "none",
     "core_routing": "ospf" | "static"}
    """
    path = Path(mode_dir) / "links.json"
    with open(path, encoding="utf-8") as f:
        meta = json.load(f)
    for key in ("links", "vm", "move_time"):
        if meta.get(key) is None:
            raise ValueError(f"{path}: missing {key!r}")
    for i, link in enumerate(meta["links"]):
        if "name" not in link:
            raise ValueError(f"{path}: links[{i}] has no name")
    return meta


def _pick(links, role, fallback_name=None):
    for link in links:
        if link.get("role") == role:
            return link["name"]
    if fallback_name is not None and any(x["name"] == fallback_name for x in links):
        return fallback_name
    return None


# Tie-break of two links that saw the same probe at the same microsecond.
_ROLE_RANK = {"client": 0, "vm-origin": 2, "dci": 3, "vm-target": 4}


# --------------------------------------------------------------------------------------
# The analysis of one mode


def analyze_mode(mode_dir) -> dict:
    """Analyse `captures/<run-id>/<mode>/` (links.json + one pcap per link) into a dict."""
    started = time.perf_counter()
    mode_dir = Path(mode_dir)
    meta = load_links(mode_dir)
    links = meta["links"]
    parser = FrameParser(meta.get("client"), meta["vm"])
    caps = [read_link(mode_dir / f"{x['name']}.pcap", x["name"], x.get("role", ""), parser)
            for x in links]
    result = compute(meta, caps, mode_dir)
    result["mode"] = mode_dir.name
    result["analysis_s"] = round(time.perf_counter() - started, 3)
    for x in links:              # anything else links.json says per link (e.g. drops)
        extra = {k: v for k, v in x.items() if k not in ("name", "role")}
        result["links"][x["name"]].update(extra)
    return result


def compute(meta: dict, caps: list[LinkCapture], mode_dir=None) -> dict:
    """The result dict from links.json's metadata and the links' captures (and, in
    `mode_dir`, the nodes' event logs for the convergence budget)."""
    links = meta["links"]
    move = float(meta["move_time"])
    move_done = meta.get("move_done")
    move_done = float(move_done) if move_done is not None else None
    names = [c.name for c in caps]
    by_name = {c.name: c for c in caps}
    client_name = _pick(links, "client", "client-access") or (names[0] if names else None)
    dci_name = _pick(links, "dci", "dci")
    target_name = _pick(links, "vm-target")
    client = by_name.get(client_name)
    dci = by_name.get(dci_name)
    target = by_name.get(target_name)
    warnings = [f"{c.name}: {c.error}" for c in caps if c.error]
    # A DCI listed in links.json whose capture cannot be read: the DCI counts and the
    # convergence (which excludes probes that crossed the DCI) cannot be measured.
    dci_unknown = dci is not None and not _usable(dci)
    if dci_unknown:
        warnings.append("the DCI's capture is missing or unreadable: DCI counts and "
                        "convergence are null")

    def rel(t):
        return None if t is None else round(t - move, 6)

    # Probes, echoes, loss and RTT (client link).
    sent = client.probe_first if client else {}
    echoes = client.echo_first if client else {}
    rtt, lost_times, answered_times = [], [], []
    for key, ts in sorted(sent.items(), key=lambda kv: kv[1]):
        back = echoes.get(key)
        if back is not None and back >= ts:
            rtt.append([rel(ts), round((back - ts) * 1000.0, 3)])
            answered_times.append(ts)
        else:
            lost_times.append(ts)
    lost_before = sum(1 for t in lost_times if t < move)

    # Paths per probe: the captured links it crossed, in capture-time order.
    order = sorted(range(len(caps)),
                   key=lambda i: (_ROLE_RANK.get(caps[i].role, 1), i))
    rank = {caps[i].name: r for r, i in enumerate(order)}
    seen_on = [(c.name, rank[c.name], c.probe_first) for c in caps if c.probe_first]
    paths = {}
    for key in sent:
        hops = sorted((d[key], r, name) for name, r, d in seen_on if key in d)
        paths[key] = tuple(h[2] for h in hops)

    # First delivery: the first probe on the new access link that did not cross the DCI
    # (it may still have made a triangle through the old site's xTR).
    first_delivery_ms = None
    if target is not None and not dci_unknown:
        crossed = dci.probe_first if dci is not None else {}
        arrivals = [ts for key, ts in target.probe_first.items()
                    if ts >= move and key not in crossed]
        if arrivals:
            first_delivery_ms = round((min(arrivals) - move) * 1000.0, 3)
    # Convergence: the first probe, on the new access link, that took the direct path (the
    # model's expected path after the move). A direct path over the DCI is the hair-pin
    # itself: never converged. An older links.json without the expected path: the first
    # delivery, as this figure used to be.
    direct = meta.get("expected_path_after")
    if direct is None:
        convergence_ms = first_delivery_ms
    elif "dci" in direct or dci_unknown or target is None:
        convergence_ms = None
    else:
        arrivals = [ts for key, ts in target.probe_first.items()
                    if ts >= move and paths.get(key) == tuple(direct)]
        convergence_ms = round((min(arrivals) - move) * 1000.0, 3) if arrivals else None

    # The flows of a traffic-engineering scenario (lab.flows), per link.
    flow_counts = None
    fo = [d for d in meta.get("deferred_checks") or [] if d["check"] == "failover"]
    failover = from_captures(meta, {c.name: c for c in caps}, fo[0]) if fo else None
    if failover:                 # on the report's time axis too (t = 0: the move, or start)
        t0 = float(meta["move_time"])
        failover["down_s"] = round(failover["down_at"] - t0, 6)
        failover["up_s"] = (None if failover["up_at"] is None
                            else round(failover["up_at"] - t0, 6))
    if meta.get("flows") and mode_dir is not None:
        f = meta["flows"]
        flow_counts = count_flows(mode_dir, [c.name for c in caps], f["from"], f["to"],
                                  f.get("port", FLOW_PORT))

    # The most common path per phase.
    settle = move
    if convergence_ms is not None:
        settle = move + convergence_ms / 1000.0
    elif move_done is not None and move_done > move:
        settle = move_done
    before, after, after_move = Counter(), Counter(), Counter()
    per_probe = []
    for key, ts in sent.items():
        path = paths[key]
        per_probe.append((ts, path))
        if ts < move:
            before[path] += 1
        else:
            after_move[path] += 1
            if ts >= settle:
                after[path] += 1

    def top(counter):
        if not counter:
            return None, None
        path, n = counter.most_common(1)[0]
        return list(path), round(n / sum(counter.values()), 4)

    path_before, share_before = top(before)
    path_after, share_after = top(after)

    # The DCI: client->VM probe and TCP frames.
    def dci_count(t0):
        if dci is None or t0 is None or dci_unknown:
            return None, None
        n = b = 0
        for ts, ln in zip(dci.out_ts, dci.out_len):
            if ts >= t0:
                n += 1
                b += ln
        return n, b

    dci_pk, dci_by = dci_count(move)
    if dci is None:
        dci_pk = dci_by = 0                       # no DCI: nothing crosses it
    conv_abs = move + convergence_ms / 1000.0 if convergence_ms is not None else None
    dci_pk_conv, dci_by_conv = dci_count(conv_abs)
    if dci is None and conv_abs is not None:
        dci_pk_conv = dci_by_conv = 0
    dci_pk_before = dci_by_before = None if dci_unknown else 0
    if dci is not None and not dci_unknown:
        for ts, ln in zip(dci.out_ts, dci.out_len):
            if ts < move:
                dci_pk_before += 1
                dci_by_before += ln

    # Longest interruption of the probe flow that ends after the move.
    outage_ms = None
    for prev, nxt in zip(answered_times, answered_times[1:]):
        if nxt >= move:
            gap = (nxt - prev) * 1000.0
            if outage_ms is None or gap > outage_ms:
                outage_ms = gap
    if outage_ms is not None:
        outage_ms = round(outage_ms, 3)

    # Median RTTs per phase.
    def median(values):
        values = sorted(values)
        if not values:
            return None
        mid = len(values) // 2
        v = values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2
        return round(v, 3)

    rtt_before = median(r for t, r in rtt if t < 0)
    rtt_after = median(r for t, r in rtt if t >= (settle - move))

    tcp = _tcp_verdict(caps, client, move)
    control = _control(caps, move)
    routing_updates = None
    if meta.get("core_routing") == "ospf":
        routing_updates = sum(1 for c in caps for ts, kind in c.routing
                              if kind == OSPF_LS_UPDATE and ts >= move)

    t_lo = min((c.first_ts for c in caps if c.first_ts is not None), default=None)
    t_hi = max((c.last_ts for c in caps if c.last_ts is not None), default=None)

    result = {
        "path_before": path_before,
        "path_after": path_after,
        "path_before_share": share_before,
        "path_after_share": share_after,
        "paths_after_move": [{"path": list(p), "probes": n}
                             for p, n in after_move.most_common(5)],
        "dci_packets_after_move": dci_pk,
        "dci_bytes_after_move": dci_by,
        "dci_packets_before_move": dci_pk_before,
        "dci_bytes_before_move": dci_by_before,
        "dci_packets_after_convergence": dci_pk_conv,
        "dci_bytes_after_convergence": dci_by_conv,
        "convergence_ms": convergence_ms,
        "first_delivery_ms": first_delivery_ms,
        "convergence_budget": convergence_budget(meta, control["messages"], convergence_ms,
                                                 mode_dir),
        "probes_sent": len(sent),
        "probes_answered": len(answered_times),
        "probes_lost": len(lost_times),
        "lost_before_move": lost_before,
        "lost_after_move": len(lost_times) - lost_before,
        "lost_times_s": [rel(t) for t in lost_times],
        "outage_ms": outage_ms,
        "rtt_ms": rtt,
        "rtt_median_before_ms": rtt_before,
        "rtt_median_after_ms": rtt_after,
        **tcp,
        "control_messages": control["messages"],
        "control_counts": control["counts"],
        "core_routing_updates_after_move": routing_updates,
        "per_link_rate": _rates(caps, move, t_lo, t_hi),
        "move_time": move,
        "move_done": move_done,
        "move_duration_ms": (round((move_done - move) * 1000.0, 3)
                             if move_done is not None else None),
        "capture_start_s": rel(t_lo),
        "capture_end_s": rel(t_hi),
        "client": meta.get("client"),
        "vm": meta["vm"],
        "delay_emulation": meta.get("delay_emulation"),
        "neighbours": meta.get("neighbours"),
        "scenario": meta.get("scenario"),
        "link_roles": {"client": client_name, "dci": dci_name,
                       "vm-origin": _pick(links, "vm-origin"), "vm-target": target_name},
        "warnings": warnings,
        "flow_counts": flow_counts,
        "flow_share": flow_shares(flow_counts, (meta.get("flows") or {}).get("flows")),
        "failover": failover,
        "checks": list(meta.get("checks") or []) + [
            split_check(d, flow_counts or {}) if d["check"] == "split" else
            failover_check(d, failover) if d["check"] == "failover" else
            converged_check(d, _group_result(d, mode_dir)) if d["check"] == "converged" else
            _deferred_check(d, per_probe, convergence_ms, meta.get("client"), meta["vm"])
            for d in meta.get("deferred_checks") or []],
        "links": {c.name: {"role": c.role, "pcap": c.present, "error": c.error,
                           "frames": c.frames, "client_to_vm_frames": len(c.out_ts),
                           "lisp_encapsulated": c.encapsulated,
                           "control_messages": len(c.control)} for c in caps},
    }
    return result


def _deferred_check(check, per_probe, convergence_ms, client, vm):
    """A scenario's path or convergence check, from the captures: the most common path of
    the probes sent in the `window` seconds before the check's time, or the convergence."""
    out = {"step": check["step"], "at": check["at"], "file": check["file"],
           "line": check["line"]}
    if check["check"] == "convergence":
        ok = convergence_ms is not None and convergence_ms < check["below_ms"]
        out.update(ok=ok, detail=f"convergence {convergence_ms} ms (bound "
                                 f"{check['below_ms']:g} ms)")
        return out
    if (check["from"], check["to"]) != (client, vm):
        out.update(ok=False, detail=f"no probe flow from {check['from']} to {check['to']} "
                                    f"(the analysed flow is {client} to {vm})")
        return out
    t1 = check["time"]
    paths = Counter(p for ts, p in per_probe if t1 - check["window"] <= ts < t1)
    if not paths:
        out.update(ok=False, detail=f"no probe captured in the {check['window']:g} s before "
                                    f"t={check['at']:g} s")
        return out
    path, n = paths.most_common(1)[0]
    ok = list(path) == check["expect"]
    out.update(ok=ok, detail=(f"{n} of {sum(paths.values())} probes crossed "
                              f"{' > '.join(path)}" + ("" if ok else
                                                       f"; expected {' > '.join(check['expect'])}")))
    return out


def _group_result(check, mode_dir):
    """A converged check's measurement (captures/group.py), None without its capture."""
    if mode_dir is None or check.get("link") is None or check.get("move_time") is None:
        return None
    return group_convergence(Path(mode_dir) / f"{check['link']}.pcap", check["members"],
                             check["rloc"], float(check["move_time"]))


def _usable(cap: LinkCapture) -> bool:
    """A capture that was there and could be opened (possibly empty, possibly cut short)."""
    return cap.present and (cap.error is None or cap.frames > 0
                            or cap.error.startswith("empty"))


def _tcp_verdict(caps, client, move):
    """Did the long-lived TCP session survive the move?"""
    out = {"tcp_survived": False, "tcp_session_port": None, "tcp_rst_seen": False,
           "tcp_rst_time_s": None, "tcp_packets_after_move": {"to_vm": 0, "from_vm": 0},
           "tcp_last_to_vm_s": None, "tcp_last_from_vm_s": None, "tcp_gap_from_vm_ms": None}
    rst_times = [ts for c in caps for ts, _, _, flags, _ in c.tcp if flags & 0x04]
    if rst_times:
        out["tcp_rst_seen"] = True
        out["tcp_rst_time_s"] = round(min(rst_times) - move, 6)
    if client is None or not client.tcp:
        return out
    # The session: the client port with the most segments among those alive before the move.
    before = Counter(port for ts, _, port, _, _ in client.tcp if ts < move)
    overall = Counter(port for _, _, port, _, _ in client.tcp)
    port = (before or overall).most_common(1)[0][0]
    seg = [(ts, kind) for ts, kind, p, _, _ in client.tcp if p == port]
    to_vm = [ts for ts, kind in seg if kind == TCP_OUT and ts >= move]
    from_vm = [ts for ts, kind in seg if kind == TCP_IN and ts >= move]
    out["tcp_session_port"] = port
    out["tcp_packets_after_move"] = {"to_vm": len(to_vm), "from_vm": len(from_vm)}
    if to_vm:
        out["tcp_last_to_vm_s"] = round(to_vm[-1] - move, 6)
    if from_vm:
        out["tcp_last_from_vm_s"] = round(from_vm[-1] - move, 6)
        all_from = [ts for ts, kind in seg if kind == TCP_IN]
        gaps = [b - a for a, b in zip(all_from, all_from[1:]) if b >= move]
        if gaps:
            out["tcp_gap_from_vm_ms"] = round(max(gaps) * 1000.0, 3)
    end = client.last_traffic_ts
    out["tcp_survived"] = bool(
        not rst_times and to_vm and from_vm and end is not None
        and to_vm[-1] >= end - TCP_END_SLACK_S and from_vm[-1] >= end - TCP_END_SLACK_S)
    return out


# The steps of a move's convergence: (step, message type, from, to, the step it follows),
# with the roles of links.json's "budget" nodes. A Map-Reply comes from the new xTR, or from
# the Map-Server when it answers for the site (proxy reply). "publish" is the Map-Server's
# Map-Notify to a subscribed ITR (PubSub, RFC 9437); without PubSub (links.json's budget
# "pubsub": false) there is none to find: the Map-Server's Map-Notifies to the ITR are then
# the acknowledgements of the ITR's own registrations.
BUDGET_STEPS = (
    ("map_register", "Map-Register", ("new_xtr",), "map_server", "detected"),
    ("map_notify", "Map-Notify", ("map_server",), "old_xtr", "map_register"),
    ("publish", "Map-Notify", ("map_server",), "itr", "map_register"),
    ("smr", "SMR", ("old_xtr",), "itr", "map_notify"),
    ("map_request", "ECM", ("itr",), "map_server", "smr"),
    ("map_reply", "Map-Reply", ("new_xtr", "map_server"), "itr", "map_request"),
)


def convergence_budget(meta, messages, convergence_ms, mode_dir=None):
    """Where a move's convergence time goes: per step, when its message was first captured
    (on any link, after the step it follows) and when on its destination's uplink, in ms
    after the move; the new xTR's detection of the host from its event log; the first
    probe on the direct path (convergence_ms); and the propagation floors of the lab's link
    delays (links.json "budget", written by lab/scenario.py). None without LISP."""
    info = meta.get("budget")
    if not info:
        return None
    nodes = info["nodes"]
    rloc = {role: n["rloc"] for role, n in nodes.items()}
    steps = []
    detected = _detected_ms(meta, nodes["new_xtr"]["node"], mode_dir)
    steps.append({"step": "detected", "first_seen_ms": detected, "at_destination_ms": detected,
                  "from": nodes["new_xtr"]["node"], "to": nodes["new_xtr"]["node"]})
    seen = {"detected": detected if detected is not None else 0.0}
    for step, kind, senders, dst, follows in BUDGET_STEPS:
        if step == "publish" and info.get("pubsub") is False:
            steps.append({"step": step, "first_seen_ms": None, "at_destination_ms": None,
                          "from": None, "to": nodes[dst]["node"]})
            continue
        after = seen.get(follows, seen["detected"])
        srcs = {rloc[r] for r in senders}
        mine = [m for m in messages if m["type"] == kind and m["src"] in srcs
                and m["dst"] == rloc[dst] and m["time_s"] * 1000.0 >= after]
        if not mine:
            steps.append({"step": step, "first_seen_ms": None, "at_destination_ms": None,
                          "from": None, "to": nodes[dst]["node"]})
            continue
        first = mine[0]
        left = round(first["time_s"] * 1000.0, 3)
        at_dst = next((m for m in mine if m["link"] == nodes[dst]["link"]
                       and m["src"] == first["src"]), None)
        arrived = round(at_dst["time_s"] * 1000.0, 3) if at_dst else None
        sender = next(nodes[r]["node"] for r in senders if rloc[r] == first["src"])
        steps.append({"step": step, "first_seen_ms": left, "at_destination_ms": arrived,
                      "from": sender, "to": nodes[dst]["node"]})
        seen[step] = left
    steps.append({"step": "first_direct_probe", "first_seen_ms": None,
                  "at_destination_ms": convergence_ms, "from": nodes["itr"]["node"],
                  "to": nodes["new_xtr"]["node"]})
    return {"steps": steps, "floor_ms": info.get("floor_ms"), "convergence_ms": convergence_ms}


def _detected_ms(meta, node, mode_dir):
    """When `node` (the new xTR) detected the moved host (its event log's first
    dynamic_eid_detected for the VM's address after the move), in ms after the move."""
    if mode_dir is None:
        return None
    path = Path(mode_dir) / f"{node}.events.jsonl"
    move = float(meta["move_time"])
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    for line in lines:
        try:
            e = json.loads(line)
        except ValueError:
            continue
        if (e.get("event") == "dynamic_eid_detected" and str(e.get("eid", "")).endswith(
                "]" + str(meta["vm"])) and float(e.get("time", 0)) >= move):
            return round((float(e["time"]) - move) * 1000.0, 3)
    return None


def _control(caps, move):
    messages, counts = [], {}
    for idx, c in enumerate(caps):
        if c.control:
            counts[c.name] = dict(Counter(m[1] for m in c.control))
        for ts, kind, inner, src, dst in c.control:
            if ts >= move - CONTROL_WINDOW_BEFORE_S:
                messages.append((ts, idx, {"time_s": round(ts - move, 6), "link": c.name,
                                           "type": kind, "inner": inner,
                                           "src": src, "dst": dst}))
    messages.sort(key=lambda m: (m[0], m[1]))
    return {"messages": [m[2] for m in messages], "counts": counts}


def _rates(caps, move, t_lo, t_hi):
    """Client->VM frames per second per link, in bins, on a common time axis."""
    series = {"bin_s": RATE_BIN_S, "t_s": [], "pps": {}}
    if t_lo is None or t_hi is None:
        return series
    span = max(t_hi - t_lo, 0.0)
    bin_s = RATE_BIN_S
    if span / bin_s > MAX_RATE_BINS:
        bin_s = span / MAX_RATE_BINS
    # Bins aligned on the move, so that one edge is exactly t = 0.
    k0 = math.floor((t_lo - move) / bin_s)
    k1 = math.floor((t_hi - move) / bin_s)
    nbins = k1 - k0 + 1
    series["bin_s"] = round(bin_s, 6)
    series["t_s"] = [round((k0 + i) * bin_s, 6) for i in range(nbins)]
    for c in caps:
        if not c.out_ts:
            continue
        counts = [0] * nbins
        for ts in c.out_ts:
            i = math.floor((ts - move) / bin_s) - k0
            if 0 <= i < nbins:
                counts[i] += 1
        series["pps"][c.name] = [round(n / bin_s, 3) for n in counts]
    return series

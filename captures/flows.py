"""The flows of `lab.flows` per captured link: how many flows, datagrams and bytes crossed
each link, natively or inside LISP, and the split check of a traffic-engineering scenario
(a site's weights, measured on its provider links).

    counts = count_flows(mode_dir, links, src_ip, dst_ip, port)
    # {link: {"flows": n, "packets": p, "bytes": b}}
    split_check(check, counts)       # {"ok": ..., "detail": ...}

A flow is one UDP source port from `src_ip` to `dst_ip`:`port`; a link counts a flow when it
carried at least one of its datagrams.
"""
import ipaddress
import struct
from pathlib import Path

# The flows' wire format, shared with lab/flows.py (which must start fast: nothing heavy
# is imported at this module's top).
FLOW_MAGIC = b"LLFLOWS1"
FLOW_PORT = 7010
PAYLOAD_LEN = 64
FLOW = "flow"


def payload(flow, seq):
    """The UDP payload of datagram `seq` of flow `flow`."""
    return (FLOW_MAGIC + struct.pack("!II", flow, seq)).ljust(PAYLOAD_LEN, b"f")


def parse(data):
    """(flow index, datagram number) of a flow datagram's UDP payload, or None."""
    if len(data) < 16 or data[:8] != FLOW_MAGIC:
        return None
    return struct.unpack_from("!II", data, 8)


def _flow_parser(src, dst, port):
    """The analysis's frame parser (Ethernet, VLAN, LISP, VXLAN, GRE), keeping only the
    datagrams of the flows from `src` to `dst`:`port`."""
    from .analysis import FrameParser

    class FlowParser(FrameParser):
        def _udp(self, buf, l4, end, s, d, depth, encap):
            if end - l4 >= 16 and s == src_b and d == dst_b \
                    and int.from_bytes(buf[l4 + 2:l4 + 4], "big") == port \
                    and buf[l4 + 8:l4 + 16] == FLOW_MAGIC:
                return (FLOW, int.from_bytes(buf[l4:l4 + 2], "big"), end - l4)
            return super()._udp(buf, l4, end, s, d, depth, encap)

    src_b, dst_b = ipaddress.ip_address(src).packed, ipaddress.ip_address(dst).packed
    return FlowParser(src, dst)


def _link_counts(path, parser):
    from scapy.utils import RawPcapNgReader, RawPcapReader

    from .analysis import DLT_EN10MB
    out = {"flows": 0, "packets": 0, "bytes": 0}
    path = Path(path)
    if not path.exists() or path.stat().st_size == 0:
        return None
    try:
        reader = RawPcapReader(str(path))
    except Exception:                       # noqa: BLE001 (an unreadable pcap: unknown)
        return None
    ng = isinstance(reader, RawPcapNgReader)
    linktype = getattr(reader, "linktype", DLT_EN10MB)
    ports = set()
    try:
        for data, meta in reader:
            rec = parser.parse(data, meta.linktype if ng else linktype)
            if rec is None or rec[0] != FLOW:
                continue
            ports.add(rec[1])
            out["packets"] += 1
            out["bytes"] += meta.wirelen
    except EOFError:                          # a capture cut short: what was read counts
        pass
    finally:
        reader.close()
    out["flows"] = len(ports)
    return out


def count_flows(mode_dir, links, src, dst, port):
    """{link name: {"flows", "packets", "bytes"} or None (no readable pcap)}."""
    parser = _flow_parser(src, dst, port)
    return {name: _link_counts(Path(mode_dir) / f"{name}.pcap", parser) for name in links}


def flow_shares(counts, sent):
    """{link: percent of the `sent` flows that crossed it} (None without a count): what a
    requirement can bound without trusting the scenario's own split check."""
    if not sent:
        return None
    return {name: round(100.0 * c["flows"] / sent, 1)
            for name, c in (counts or {}).items() if c is not None}


def split_check(check, counts):
    """A scenario's split check: each of check["links"] carried its weight's share of the
    flows that crossed any of them, within check["tolerance"] points (percent)."""
    links, weights = check["links"], check["weights"]
    tol = float(check.get("tolerance", 5))
    got = {name: (counts.get(name) or {}).get("flows", 0) for name in links}
    total = sum(got.values())
    out = {"step": check["step"], "at": check["at"], "file": check["file"],
           "line": check["line"], "links": list(links), "weights": list(weights)}
    if not total:
        out.update(ok=False, detail=f"no flow captured on {', '.join(links)}")
        return out
    wsum = float(sum(weights))
    shares = {n: 100.0 * got[n] / total for n in links}
    want = {n: 100.0 * w / wsum for n, w in zip(links, weights)}
    ok = all(abs(shares[n] - want[n]) <= tol for n in links)
    text = ", ".join(f"{n} {got[n]} flows ({shares[n]:.1f} %, wanted {want[n]:.0f} %)"
                     for n in links)
    out.update(ok=ok, detail=f"{total} flows: {text}; tolerance {tol:g} points")
    return out

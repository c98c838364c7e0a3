"""When each VM of a group that moved together converged, from the client's uplink capture.

    result = group_convergence(pcap, members, rloc, move_time)
    converged_check(check, result)            # {"ok": ..., "detail": ...}

A member has converged when the client's ITR first sends one of its probes inside LISP to
the new xTR's RLOC (the direct path starts there: the ITR's map-cache points to the new
site). The probes of a group flow go round robin to the members, so a member's time is
known to within the flow's interval times the group's size (`resolution_ms`).
"""
import ipaddress
from pathlib import Path

from captures.probe import PROBE_MAGIC, PROBE_PORT

LISP_DATA_PORT = 4341
GROUP = "group"


def _parser(members, rloc):
    from .analysis import FrameParser

    class GroupParser(FrameParser):
        """(GROUP, member) for a probe to a member, inside LISP to `rloc`; else None."""

        def _udp(self, buf, l4, end, src, dst, depth, encap):
            if end - l4 < 8:
                return None
            dport = int.from_bytes(buf[l4 + 2:l4 + 4], "big")
            if depth == 0:
                if dport != LISP_DATA_PORT or bytes(dst) != rloc_b:
                    return None
                return super()._udp(buf, l4, end, src, dst, depth, encap)
            if encap and dport == PROBE_PORT and buf[l4 + 8:l4 + 16] == PROBE_MAGIC:
                name = by_address.get(bytes(dst))
                if name is not None:
                    return (GROUP, name)
            return None

    by_address = {ipaddress.ip_address(ip).packed: name for ip, name in members.items()}
    rloc_b = ipaddress.ip_address(rloc).packed
    return GroupParser(None, "0.0.0.0")


def group_convergence(pcap, members, rloc, move_time):
    """{"members", "converged", "min_ms", "median_ms", "max_ms", "last", "never",
    "per_member_ms"}: for each member ({address: name}) the milliseconds from `move_time`
    to its first probe captured in `pcap` inside LISP to `rloc`; None if the pcap cannot
    be read."""
    from scapy.utils import RawPcapNgReader, RawPcapReader

    from .analysis import DLT_EN10MB
    path = Path(pcap)
    if not path.exists() or path.stat().st_size == 0:
        return None
    try:
        reader = RawPcapReader(str(path))
    except Exception:                          # noqa: BLE001 (unreadable: unknown)
        return None
    parser = _parser(members, rloc)
    ng = isinstance(reader, RawPcapNgReader)
    linktype = getattr(reader, "linktype", DLT_EN10MB)
    scale = 1e-9 if getattr(reader, "nano", False) else 1e-6
    first = {}
    try:
        for data, meta in reader:
            if ng:
                if meta.tshigh is None:
                    continue
                ts = ((meta.tshigh << 32) + meta.tslow) / meta.tsresol
                rec = parser.parse(data, meta.linktype)
            else:
                ts = meta.sec + meta.usec * scale
                rec = parser.parse(data, linktype)
            if rec is not None and ts >= move_time and rec[1] not in first:
                first[rec[1]] = ts
    except EOFError:                            # a capture cut short: what was read counts
        pass
    finally:
        reader.close()
    names = list(members.values())
    per = {n: round((first[n] - move_time) * 1000.0, 1) for n in names if n in first}
    times = sorted(per.values())
    return {"members": len(names), "converged": len(times),
            "min_ms": times[0] if times else None,
            "median_ms": times[len(times) // 2] if times else None,
            "max_ms": times[-1] if times else None,
            "last": max(per, key=per.get) if per else None,
            "never": [n for n in names if n not in per],
            "per_member_ms": per}


def converged_check(check, result):
    """A scenario's `converged` check: every member converged within check["below_ms"]."""
    out = {"step": check["step"], "at": check["at"], "file": check["file"],
           "line": check["line"]}
    group = check["group"]
    if result is None:
        out.update(ok=False, detail=f"{group}: the capture on {check['link']} cannot be read")
        return out
    bound = float(check["below_ms"])
    late = sorted(n for n, ms in result["per_member_ms"].items() if ms >= bound)
    ok = not result["never"] and not late
    detail = (f"{group}: {result['converged']}/{result['members']} converged (first probe "
              f"to {check['rloc']} on {check['link']}), min/median/max "
              f"{result['min_ms']}/{result['median_ms']}/{result['max_ms']} ms (bound "
              f"{bound:g} ms; resolution {check.get('resolution_ms')} ms)")
    if result["never"]:
        detail += f"; never: {', '.join(result['never'][:5])}" + (
            f" and {len(result['never']) - 5} more" if len(result["never"]) > 5 else "")
    if late:
        detail += f"; too late: {', '.join(late[:5])}"
    out.update(ok=ok, detail=detail, groups={group: {k: v for k, v in result.items()
                                                     if k != "per_member_ms"}})
    return out

"""The report of a run: `report.md` for people, `report.json` for programs, PNG plots, and
`report.html`, one self-contained page with the topology, the paths, the timelines and the
ladder of LISP messages (captures/html.py).

    from captures.analysis import analyze_mode
    from captures.report import write_report
    results = {mode: analyze_mode(run_dir / mode) for mode in modes}
    paths = write_report(run_dir, results, delay_emulation)

or, for a run directory already on disk: `python -m captures.report captures/<run-id>`.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

from captures.failover import report_lines
from captures.analysis import (DLT_EN10MB, MODES, PROBE, FrameParser, analyze_mode,
                               load_links, read_link)

CONTROL_LINES_PER_MODE = 30     # report.md lists at most this many control messages per mode
LISP_MODES = tuple(m for m in MODES if m.startswith("lisp-"))
DEMO_JSON = "demo.json"         # {"demo_start": unix s}, written by `lisp-lab demo`


def order_modes(results: dict) -> list[str]:
    """The four lab modes in their teaching order, then any other mode as given."""
    return [m for m in MODES if m in results] + [m for m in results if m not in MODES]


def strict_json(obj):
    """A copy of `obj` that json.dumps(allow_nan=False) accepts: NaN and infinities become
    null, tuples and sets lists, paths strings."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, bool) or obj is None or isinstance(obj, (int, str)):
        return obj
    if isinstance(obj, dict):
        return {str(k): strict_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [strict_json(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item"):                 # numpy scalars
        return strict_json(obj.item())
    return str(obj)


def dumps(obj, level=0) -> str:
    """Strict JSON, indented, but a list holding no object (an RTT series, a path) on one
    line, so that 30 000 RTT points stay 30 000 short items rather than 120 000 lines."""
    pad, inner = "  " * level, "  " * (level + 1)
    if isinstance(obj, dict) and obj:
        items = [f"{inner}{json.dumps(str(k))}: {dumps(v, level + 1)}" for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(obj, list) and any(isinstance(v, dict) for v in obj):
        return "[\n" + ",\n".join(inner + dumps(v, level + 1) for v in obj) + "\n" + pad + "]"
    return json.dumps(obj, allow_nan=False, ensure_ascii=False, separators=(", ", ": "))


# --------------------------------------------------------------------------------------
# Cells of the side-by-side table


def _path(p, arrow=" → "):
    return arrow.join(p) if p else "—"


def _num(v, unit=""):
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:.1f}{unit}"
    return f"{v:,}{unit}"


def _moved(r):
    """Whether the scenario moved a VM (a lab without a move step has move_done None and
    its 'move' is the start of the run): the move rows say "no move" then, not "never"."""
    return r.get("move_done") is not None or "move_done" not in r


def _conv(r):
    if not _moved(r):
        return "no move"
    c = r.get("convergence_ms")
    return "never (null)" if c is None else f"{c:.1f} ms"


def _after_move(key, unit=""):
    return lambda r: _num(r.get(key), unit) if _moved(r) else "no move"


def _lost(r):
    sent, lost = r.get("probes_sent") or 0, r.get("probes_lost") or 0
    pct = f" ({100.0 * lost / sent:.1f} %)" if sent else ""
    return f"{lost:,}{pct}"


def _rtt(r):
    b, a = r.get("rtt_median_before_ms"), r.get("rtt_median_after_ms")
    return f"{_num(b, ' ms')} / {_num(a, ' ms')}"


def _tcp(r):
    if r.get("tcp_survived"):
        return "yes"
    why = "RST seen" if r.get("tcp_rst_seen") else "stopped"
    return f"no ({why})"


def _capture_drops(r):
    """tcpdump's "packets dropped by kernel" over the mode's links: "none", "unknown" (no
    tcpdump said), or the total and the links that dropped."""
    drops = {name: link.get("capture_drops") for name, link in (r.get("links") or {}).items()}
    unknown = [name for name, n in drops.items() if n is None]
    if len(unknown) == len(drops):
        return "unknown"
    dropped = [f"{name} {n:,}" for name, n in drops.items() if n]
    text = (f"{sum(n for n in drops.values() if n):,} ({', '.join(dropped)})" if dropped
            else "none")
    if unknown:
        text += f"; unknown on {', '.join(unknown)}"
    return text


ROWS = [
    ("Path before the move", lambda r: _path(r.get("path_before"))),
    ("Path after convergence", lambda r: _path(r.get("path_after"))),
    ("DCI packets after move", _after_move("dci_packets_after_move")),
    ("DCI bytes after move", _after_move("dci_bytes_after_move")),
    ("Convergence (direct path)", _conv),
    ("First delivery at the new site", _after_move("first_delivery_ms", " ms")),
    ("Core routing updates after move", _after_move("core_routing_updates_after_move")),
    ("Probes sent", lambda r: _num(r.get("probes_sent"))),
    ("Probes lost", _lost),
    ("Longest probe gap after move", lambda r: _num(r.get("outage_ms"), " ms")),
    ("Median RTT before / after", _rtt),
    ("TCP survived", _tcp),
    ("Capture drops", _capture_drops),
]


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def markdown_table(results: dict) -> str:
    modes = order_modes(results)
    lines = ["| | " + " | ".join(f"`{m}`" for m in modes) + " |",
             "|---|" + "---|" * len(modes)]
    for label, cell in ROWS:
        lines.append(f"| {label} | " + " | ".join(_md_cell(cell(results[m])) for m in modes)
                     + " |")
    return "\n".join(lines)


def summary_table(results: dict) -> str:
    """The side-by-side table as plain text for a terminal: one column per mode for the
    numbers, then the paths of each mode below (they are too long for columns)."""
    modes = order_modes(results)
    numeric = [(label, cell) for label, cell in ROWS if not label.startswith("Path")]
    rows = [[""] + modes] + [[label] + [cell(results[m]) for m in modes]
                             for label, cell in numeric]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    out = []
    for n, row in enumerate(rows):
        out.append("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    out.append("")
    width = max(len(m) for m in modes) if modes else 0
    for m in modes:
        r = results[m]
        out.append(f"{m.ljust(width)}  before: {_path(r.get('path_before'), ' > ')}")
        out.append(f"{''.ljust(width)}  after:  {_path(r.get('path_after'), ' > ')}")
    return "\n".join(out).replace("—", "-")      # plain ASCII for any terminal


TRIANGULAR = """\
## What the table shows: triangular routing

A VM keeps its IP address when it moves from DC1 to DC2, but the IP address is also what
the core uses to route to it. Without LISP the core still sends every packet for the VM's
subnet to DC1, so after the move the client's packets go client → core → DC1 → **DCI** →
DC2: they enter the wrong data center and hairpin over the data-center interconnect. That
is *triangular routing*. It costs the DCI's bandwidth (the "DCI bytes after move" row), adds
the DCI's delay to every round trip (compare the median RTT before and after), and makes
DC1 a dependency of a VM that no longer lives there. The replies do not take the triangle:
the VM answers through its new local gateway (anycast gateway), so the two directions take
different paths.

`host-route` repairs it by injecting a /32 for the VM into the core: DC2's gateway
redistributes it into OSPF, every core router has to learn it (the "Core routing updates
after move" row counts the OSPF LS Updates captured), and the convergence time is that of
the routing protocol.

With LISP the VM's address is an *EID*, and the core only routes *RLOCs* (the xTRs'
addresses). When DC2's xTR sees the VM it registers the /32 with the Map-Server
(Map-Register), the Map-Server tells DC1's xTR (Map-Notify), DC1's xTR answers the next stale
packet with a Solicit-Map-Request (SMR), the client's xTR asks the mapping system again
(Map-Request, Map-Reply) and from then on encapsulates straight to DC2's RLOC. The core's
routing table never changes, and the DCI carries no client traffic once the mapping has
converged.

`lisp-pubsub` is the same move as `lisp-across-subnet` with PubSub (RFC 9437): the client's
xTR subscribed to the VM's mapping when it first asked for it, so the Map-Server sends it a
Map-Notify as soon as DC2's xTR registers the VM. It skips the SMR round (old xTR → client
xTR → Map-Resolver → DC2's xTR → client xTR): compare the two convergence budgets below.
"""

DEFINITIONS = """\
## How the numbers are measured

All from the pcaps alone (one per link, `<mode>/<link>.pcap`), by `captures/analysis.py`:

- **Path**: for each probe (identified by source port and sequence number, natively or
  inside LISP), the links that captured it, ordered by capture time; the most common
  sequence among the probes sent before the move, and among those sent after convergence.
- **DCI packets/bytes after move**: client→VM probe and TCP frames captured on the DCI from
  the start of the move on (frame lengths as recorded in the pcap).
- **Convergence (direct path)**: from the start of the move to the first probe captured on
  the new site's access link that crossed exactly the links of the direct path (the lab
  model's expected path after the move); "never" if no such probe, and for a direct path
  over the DCI (the hair-pin of an L2 extension).
- **First delivery at the new site**: the first probe captured on the new site's access
  link that was *not* captured on the DCI, by any path (LISP's first ones may still make a
  triangle through the old xTR, which re-encapsulates them).
- **Convergence budget**: each message of the move (Map-Register, Map-Notify, PubSub's
  Map-Notify, SMR, Map-Request, Map-Reply) at its first capture after the step it follows
  and at its destination's uplink; the new xTR's detection from its event log; the
  propagation floors are sums of the lab's configured link delays along each message's path.
- **Probes lost**: probes seen leaving the client whose echo never came back to it.
- **Longest probe gap**: the longest time between two answered probes across the move.
- **TCP survived**: the long-lived TCP session kept packets flowing both ways until the end
  of the traffic, and no TCP reset was captured.
- **Capture drops**: the packets each link's tcpdump reported as "dropped by kernel" when it
  stopped, summed over the mode's links, with the links that dropped; "unknown" where
  tcpdump did not say. A link that dropped packets has a pcap with holes: its counts are
  lower bounds.
- **Demo start to the first probe through LISP**: from the start of `lisp-lab demo` to the
  capture, on the VM's access link, of the first probe of the first LISP mode played that
  was also captured LISP-encapsulated on a core link.
"""


def _control_section(mode: str, r: dict) -> list[str]:
    msgs = r.get("control_messages") or []
    lines = [f"### `{mode}`", ""]
    if not msgs:
        lines += ["No LISP control message in the captures from 1 s before the move on.", ""]
        return lines
    lines += ["| t (ms) | link | message | from → to |", "|---:|---|---|---|"]
    for m in msgs[:CONTROL_LINES_PER_MODE]:
        kind = m["type"] + (f" ({m['inner']})" if m.get("inner") else "")
        lines.append(f"| {m['time_s'] * 1000.0:.1f} | {m['link']} | {kind} | "
                     f"{m.get('src') or ''} → {m.get('dst') or ''} |")
    if len(msgs) > CONTROL_LINES_PER_MODE:
        lines.append(f"| … | | {len(msgs) - CONTROL_LINES_PER_MODE} more in report.json | |")
    lines.append("")
    return lines


def split_links(result) -> list:
    """The links of a result's split checks, in order; without a split check, every link
    that carried some of the flows (none without a flows scenario)."""
    counts = result.get("flow_counts")
    if not counts:
        return []
    out = []
    for c in result.get("checks") or []:
        for name in c.get("links") or []:
            if name not in out:
                out.append(name)
    return out or [name for name, c in counts.items() if c and c.get("flows")]


BUDGET_LABELS = {"detected": "host detected by the new xTR",
                 "map_register": "Map-Register (new xTR → Map-Server)",
                 "map_notify": "Map-Notify (Map-Server → old xTR)",
                 "publish": "Map-Notify (Map-Server → subscribed ITR, PubSub)",
                 "smr": "Solicit-Map-Request (old xTR → ITR)",
                 "map_request": "Map-Request (ITR → Map-Resolver)",
                 "map_reply": "Map-Reply (→ ITR)",
                 "first_direct_probe": "first probe on the direct path"}


def _budget_section(mode, budget) -> list[str]:
    lines = [f"### `{mode}`", "", "| step | first seen (ms) | at its destination (ms) |",
             "|---|---|---|"]
    for st in budget["steps"]:
        lines.append(f"| {BUDGET_LABELS.get(st['step'], st['step'])} | "
                     f"{_num(st['first_seen_ms'])} | {_num(st['at_destination_ms'])} |")
    floor = budget.get("floor_ms")
    if floor:
        lines += ["", f"Propagation floors from the link delays: register then notify the ITR "
                      f"(as PubSub does) and its first packet **{floor['notify']:g} ms**; through "
                      f"the old xTR's SMR **{floor['smr']:g} ms** (of which the SMR round "
                      f"{floor['smr_round']:g} ms"
                      + (f"; the old xTR hears of the host over the DCI in "
                         f"{floor['legs']['site_notify']:g} ms" if "site_notify" in
                         floor.get("legs", {}) else "")
                      + "). Measured: "
                      f"**{_num(budget.get('convergence_ms'), ' ms')}**."]
    lines.append("")
    return lines


def render_markdown(run_id: str, results: dict, delay_emulation: str, plots: list[str],
                    first_lisp_probe_s: float | None = None) -> str:
    modes = order_modes(results)
    out = [f"# LISP mobility lab: run `{run_id}`", "",
           f"Link delays emulated with: **{delay_emulation}**. The same VM move, played in "
           f"{len(modes)} mode(s); t = 0 is the start of the move.", ""]
    if any(results[m].get("neighbours") for m in modes):
        out += ["Warm paths: the lab keeps permanent neighbour (ARP/NDP) entries on its "
                "point-to-point links, as routing hellos keep them fresh on a real network, "
                "so no cold address resolution is in the times below.", ""]
    if first_lisp_probe_s is not None:
        out += [f"From the start of the demo to the first probe delivered through LISP: "
                f"**{first_lisp_probe_s:.1f} s**.", ""]
    out += [markdown_table(results), "", TRIANGULAR]
    warnings = [(m, w) for m in modes for w in results[m].get("warnings") or []]
    if warnings:
        out += ["## Capture warnings", ""]
        out += [f"- `{m}`: {w}" for m, w in warnings]
        out.append("")
    checked = [m for m in modes if results[m].get("checks")]
    if checked:
        out += ["## Checks", "",
                "Each scenario's checks, from its timeline (file:line is the step).", ""]
        for m in checked:
            for c in results[m]["checks"]:
                where = f"{Path(c['file']).name}:{c['line']}"
                out.append(f"- `{m}` {'ok' if c['ok'] else '**FAILED**'} ({where}, "
                           f"{c['step']}): {c['detail']}")
        out.append("")
    budgets = [m for m in modes if results[m].get("convergence_budget")]
    if budgets:
        out += ["## Convergence budget", "",
                "Where each LISP mode's convergence time went, from the captures (a message's "
                "first capture after the previous step, and its capture on the destination's "
                "uplink) and the new xTR's event log (detection); beside them the "
                "propagation floors of the lab's link delays.", ""]
        for m in budgets:
            out += _budget_section(m, results[m]["convergence_budget"])
    split = [m for m in modes if split_links(results[m])]
    if split:
        out += ["## Flows per link", "",
                "The flows of a traffic-engineering scenario (many short UDP flows, each "
                "hashed by the ITR to one locator), as the captures of each link saw them.", ""]
        for m in split:
            counts = results[m]["flow_counts"] or {}
            out += [f"### `{m}`", "", "| link | flows | packets | bytes |", "|---|---|---|---|"]
            for name in split_links(results[m]):
                c = counts.get(name) or {}
                out.append(f"| {name} | {_num(c.get('flows'))} | {_num(c.get('packets'))} | "
                           f"{_num(c.get('bytes'))} |")
            out.append("")
    failovers = [m for m in modes if results[m].get("failover")]
    if failovers:
        out += ["## Failover", "",
                "A primary provider link down and up (a failover check): the client's probes "
                "per provider link, and when they moved to the backup and back, from the "
                "captures (captures/failover.py)."]
        for m in failovers:
            out += [""] + [f"### `{m}`"] + report_lines(results[m]["failover"])[2:]
        out.append("")
    out += ["## LISP control messages around the move", "",
            "Captured on every link from 1 s before the move (the same message appears once "
            "per link it crosses).", ""]
    for m in modes:
        out += _control_section(m, results[m])
    out += ["## Plots", ""]
    out += [f"![{p}]({p})" for p in plots]
    out += ["", DEFINITIONS]
    return "\n".join(out)


# --------------------------------------------------------------------------------------
# The demo's start-up: from `lisp-lab demo` to the first probe delivered through LISP


class _LispProbes(FrameParser):
    """A parser that keeps only the client->VM probes found inside LISP (UDP 4341)."""

    def parse(self, buf, linktype=DLT_EN10MB):
        rec = super().parse(buf, linktype)
        return rec if rec is not None and rec[0] == PROBE and rec[3] else None


def first_lisp_probe_time(mode_dir) -> float | None:
    """Capture time (unix s) of the first probe delivered to the VM through LISP: the first
    client->VM probe captured on one of the VM's access links (roles vm-origin, vm-target) that
    was also captured LISP-encapsulated on a core link. None if there is none."""
    mode_dir = Path(mode_dir)
    meta = load_links(mode_dir)

    def probes(link, parser):
        return read_link(mode_dir / f"{link['name']}.pcap", link["name"], link.get("role", ""),
                         parser).probe_first

    tunnelled = set()
    for link in meta["links"]:
        if link.get("role") == "core":
            tunnelled |= probes(link, _LispProbes(meta.get("client"), meta["vm"])).keys()
    arrivals = [ts for link in meta["links"] if link.get("role") in ("vm-origin", "vm-target")
                for key, ts in probes(link, FrameParser(meta.get("client"), meta["vm"])).items()
                if key in tunnelled]
    return min(arrivals, default=None)


def demo_start_to_first_lisp_probe(run_dir, results: dict, demo_start) -> float | None:
    """Seconds from `demo_start` (unix s) to `first_lisp_probe_time` of the first LISP mode
    the demo played (the LISP mode of `results` whose move came first), to the millisecond.
    None without a demo start, without a LISP mode, or if that mode delivered no probe."""
    played = sorted((r["move_time"], m) for m, r in results.items()
                    if m in LISP_MODES and r.get("move_time") is not None)
    if demo_start is None or not played:
        return None
    t = first_lisp_probe_time(Path(run_dir) / played[0][1])
    return None if t is None else round(t - demo_start, 3)


# --------------------------------------------------------------------------------------


def html_extras(run_dir, modes, pngs=None) -> dict:
    """What report.html needs beyond the results, per mode: the lab's topology (from the
    mode's links.json, null if it has none or no links.json) and its timeline PNG's bytes."""
    out = {}
    for m in modes:
        topology = None
        meta_path = Path(run_dir) / m / "links.json"
        if meta_path.exists():
            try:
                topology = json.loads(meta_path.read_text(encoding="utf-8")).get("topology")
            except (OSError, ValueError):
                topology = None
        png = (pngs or {}).get(m)
        out[m] = {"topology": topology,
                  "timeline_png": png.read_bytes() if png is not None and png.exists() else None}
    return out


def write_report(run_dir, results: dict, delay_emulation: str,
                 first_lisp_probe_s: float | None = None) -> list[Path]:
    """Write report.md, report.json, `<mode>-timeline.png` per mode, comparison.png,
    `<mode>-flows.png` for a traffic-engineering scenario, and report.html into `run_dir`.
    Returns their paths: [report.md, report.json, comparison.png, timelines..., flows...,
    report.html]. `first_lisp_probe_s`: see demo_start_to_first_lisp_probe (report.json's
    demo_start_to_first_lisp_probe_s)."""
    from captures.html import render_html
    from captures.plots import (plot_comparison, plot_failover,   # matplotlib when needed
                                plot_flows, plot_timeline)

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    run_id = run_dir.name
    modes = order_modes(results)
    ordered = {m: results[m] for m in modes}

    pngs = [plot_comparison(ordered, run_dir / "comparison.png")]
    timelines = {}
    for m in modes:
        timelines[m] = plot_timeline(ordered[m], m, run_dir / f"{m}-timeline.png")
        pngs.append(timelines[m])
    for m in modes:
        links = split_links(ordered[m])
        if links:
            pngs.append(plot_flows(ordered[m], m, run_dir / f"{m}-flows.png", links))
        if ordered[m].get("failover"):
            pngs.append(plot_failover(ordered[m], m, run_dir / f"{m}-failover.png"))

    doc = strict_json({"run_id": run_id, "delay_emulation": delay_emulation,
                       "demo_start_to_first_lisp_probe_s": first_lisp_probe_s,
                       "modes": ordered})
    json_path = run_dir / "report.json"
    json_path.write_text(dumps(doc) + "\n", encoding="utf-8")

    md_path = run_dir / "report.md"
    md_path.write_text(render_markdown(run_id, ordered, delay_emulation,
                                       [p.name for p in pngs], first_lisp_probe_s),
                       encoding="utf-8")

    html_path = run_dir / "report.html"
    html_path.write_text(render_html(run_id, ordered, delay_emulation, ROWS,
                                     html_extras(run_dir, modes, timelines),
                                     first_lisp_probe_s, modes), encoding="utf-8")
    return [md_path, json_path] + pngs + [html_path]


def analyze_run(run_dir, modes=None) -> tuple[dict, str]:
    """Analyse every mode directory of a run (those holding links.json). Returns the results
    and the delay emulation the run used (from links.json)."""
    run_dir = Path(run_dir)
    if modes is None:
        found = [p.name for p in sorted(run_dir.iterdir()) if (p / "links.json").exists()]
        modes = order_modes(dict.fromkeys(found))
    results = {m: analyze_mode(run_dir / m) for m in modes}
    emulations = {r.get("delay_emulation") for r in results.values()} - {None}
    delay = " / ".join(sorted(emulations)) if emulations else "unknown"
    return results, delay


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m captures.report",
                                 description="Analyse a run's pcaps and write its report.")
    ap.add_argument("run_dir", help="captures/<run-id> (one sub-directory per mode)")
    ap.add_argument("--mode", action="append", help="only this mode (repeatable)")
    args = ap.parse_args(argv)
    started = time.perf_counter()
    results, delay = analyze_run(args.run_dir, args.mode)
    if not results:
        print(f"no mode directory with links.json under {args.run_dir}", file=sys.stderr)
        return 1
    demo = Path(args.run_dir) / DEMO_JSON
    demo_start = json.loads(demo.read_text())["demo_start"] if demo.exists() else None
    first = demo_start_to_first_lisp_probe(args.run_dir, results, demo_start)
    paths = write_report(args.run_dir, results, delay, first)
    print(summary_table(results))
    print(f"\nreport: {paths[0]}\njson:   {paths[1]}\npage:   {paths[-1]}\nplots:  "
          + ", ".join(str(p) for p in paths[2:-1]))
    print(f"({time.perf_counter() - started:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

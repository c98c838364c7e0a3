"""report.html: the run's report as one self-contained page (inline SVG, CSS and a few lines
of JavaScript; no server, no network, nothing fetched).

Per mode it draws the lab's topology (from links.json's `topology`, Lab.topology()) with the
probes' path before the move and after convergence highlighted, the per-link packet-rate
timeline with the move marked, a ladder of the LISP control messages captured around the
move, the tables, and what to open in Wireshark. Everything comes from the analysis'
results and links.json; `render_html` is pure (strings in, a string out), so it is tested
without a run, and a browser test (tests/emulation/test_report_html_browser.py) loads a real one.

    html = render_html(run_id, results, delay_emulation, rows, extras)

`rows`: the side-by-side table's rows, [(label, cell(result) -> str)] (captures.report.ROWS);
`extras`: {mode: {"topology": ..., "timeline_png": bytes or None}}.
"""
from __future__ import annotations

import base64
import html
import math
from urllib.parse import quote

from captures.probe import PROBE_PORT, TCP_PORT

BEFORE = "#2563eb"          # the path before the move (blue)
AFTER = "#d946ef"           # the path after convergence (fuchsia)
ROLE_COLOURS = {"client": "#6b7280", "vm-origin": "#2563eb", "dci": "#ea580c",
                "vm-target": "#16a34a"}
OTHER_LINK = "#cbd5e1"
MOVE = "#dc2626"
CONVERGED = "#16a34a"
NODE_STYLE = {              # kind -> (fill, stroke)
    "router": ("#e2e8f0", "#475569"), "xtr": ("#ede9fe", "#6d28d9"),
    "gateway": ("#e0e7ff", "#4338ca"), "map-server": ("#ccfbf1", "#0f766e"),
    "proxy": ("#fef3c7", "#b45309"), "switch": ("#f1f5f9", "#64748b"),
    "host": ("#ffffff", "#334155"), "vm": ("#fef9c3", "#a16207")}
LAYER = {"router": 0, "xtr": 1, "gateway": 1, "map-server": 1, "proxy": 1, "switch": 2,
         "host": 3, "vm": 3}
LADDER_BEFORE_S = 0.25      # the ladder: from this long before the move ...
LADDER_AFTER_S = 0.25       # ... to this long after convergence (or the move's end)
LADDER_MAX_ROWS = 60
SAME_MESSAGE_S = 0.25       # one message seen on several links within this: one arrow


def esc(text) -> str:
    return html.escape(str(text), quote=True)


def _fmt(v, nd=1):
    """A number without trailing zeros after the point: 1000.0 -> "1000", 0.25 -> "0.25"."""
    if not isinstance(v, float):
        return str(v)
    text = f"{v:.{nd}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


# --------------------------------------------------------------------------------------
# The topology


def layout(topology: dict, extra_nodes=(), width=960):
    """{node: (x, y)}: nodes in layers (routers, edge nodes, switches, hosts), ordered in
    each layer by the mean position of their neighbours (a few sweeps), then spaced."""
    kinds = {n["name"]: n["kind"] for n in topology["nodes"]}
    edges = [tuple(x["ends"]) for x in topology["links"]]
    for name, kind, neighbour in extra_nodes:
        kinds[name] = kind
        edges.append((name, neighbour))
    nbrs = {n: set() for n in kinds}
    for a, b in edges:
        if a in nbrs and b in nbrs:
            nbrs[a].add(b)
            nbrs[b].add(a)

    def layer_of(n):
        if kinds[n] in ("host", "vm") and not any(kinds[m] == "switch" for m in nbrs[n]):
            return 2                       # a host on its gateway's LAN, no switch
        return LAYER.get(kinds[n], 1)

    layers = [[n for n in kinds if layer_of(n) == i] for i in range(4)]
    layers = [lay for lay in layers if lay]
    where = {n: i for i, lay in enumerate(layers) for n in lay}
    pos = {n: float(j) for lay in layers for j, n in enumerate(lay)}

    def sweep(order):
        for i in order:
            def key(n, i=i):
                others = [pos[m] for m in nbrs[n] if where[m] != i]
                return sum(others) / len(others) if others else pos[n]
            layers[i].sort(key=key)
            for j, n in enumerate(layers[i]):
                pos[n] = float(j)

    for _ in range(4):
        sweep(range(1, len(layers)))
        sweep(range(len(layers) - 2, -1, -1))
    # x: spread the widest layer, then pull each node towards its neighbours, keeping a gap
    gap = 112.0
    widest = max(len(lay) for lay in layers)
    span = max(width - 80.0, gap * (widest - 1))
    xs = {}
    for lay in layers:
        step = span / max(len(lay), 1)
        for j, n in enumerate(lay):
            xs[n] = 40.0 + step * (j + 0.5)
    for _ in range(6):
        for i, lay in enumerate(layers):
            want = []
            for n in lay:
                others = [xs[m] for m in nbrs[n] if where[m] != i]
                want.append((xs[n] + sum(others) / len(others)) / 2 if others else xs[n])
            for j in range(1, len(want)):        # keep the order and the gap
                want[j] = max(want[j], want[j - 1] + gap)
            shift = min(0.0, (40.0 + span) - want[-1])
            want = [w + shift for w in want]
            for j in range(len(want) - 2, -1, -1):
                want[j] = min(want[j], want[j + 1] - gap)
            lo = min(want)
            if lo < 40.0:
                want = [w + 40.0 - lo for w in want]
            for n, w in zip(lay, want):
                xs[n] = w
    return {n: (xs[n], 90.0 + 105.0 * where[n]) for n in kinds}, where


def _walk(path, ends, start):
    """The nodes a list of link names visits, from `start` (a node of the first link)."""
    nodes = [start]
    for name in path:
        a, b = ends[name]
        nodes.append(b if nodes[-1] == a else a)
    return nodes


def _first_node(path, ends, client):
    """The end of the path's first link that is not shared with the second (the client)."""
    if not path:
        return None
    first = set(ends[path[0]])
    if client in first:
        return client
    if len(path) > 1:
        rest = first - set(ends[path[1]])
        if rest:
            return rest.pop()
    return ends[path[0]][0]


def node_of_address(topology: dict, address):
    for n in topology.get("nodes", []):
        if address in n.get("addresses", []):
            return n["name"]
    return None


def topology_svg(mode: str, r: dict, topology: dict | None) -> str:
    if not topology or not topology.get("nodes"):
        return ('<p class="note">No topology in this mode\'s links.json (a run made before '
                'the lab wrote one): the paths are in the tables below.</p>')
    ends = {x["name"]: tuple(x["ends"]) for x in topology["links"]}
    kinds = {n["name"]: n["kind"] for n in topology["nodes"]}
    roles = r.get("link_roles") or {}
    vm = node_of_address(topology, r.get("vm"))
    client = node_of_address(topology, r.get("client"))
    target_link = roles.get("vm-target")
    ghost = extra = None
    if vm and target_link in ends:
        # The VM after the move: drawn again under the site it moved to.
        attach = next((e for e in ends[target_link] if kinds.get(e) == "switch"),
                      ends[target_link][-1])
        ghost = f"{vm} (after)"
        extra = [(ghost, "vm", attach)]
    pos, where = layout(topology, extra or ())
    width = max(x for x, _ in pos.values()) + 80
    height = max(y for _, y in pos.values()) + 60
    out = [f'<svg class="topo" viewBox="0 0 {width:.0f} {height:.0f}" width="{width:.0f}" '
           f'height="{height:.0f}" role="img" aria-label="topology of {esc(mode)}">']
    # Sites: a light box around each site's nodes.
    sites = {}
    for n in topology["nodes"]:
        if n.get("site") and n["name"] in pos:
            sites.setdefault(n["site"], []).append(pos[n["name"]])
    if ghost:
        target_site = next((n["site"] for n in topology["nodes"]
                            if n["name"] in ends[target_link] and n.get("site")), None)
        if target_site:
            sites.setdefault(target_site, []).append(pos[ghost])
    for site, pts in sites.items():
        x0, x1 = min(p[0] for p in pts) - 52, max(p[0] for p in pts) + 52
        y0, y1 = min(p[1] for p in pts) - 30, max(p[1] for p in pts) + 40
        out.append(f'<rect class="site" x="{x0:.0f}" y="{y0:.0f}" width="{x1 - x0:.0f}" '
                   f'height="{y1 - y0:.0f}" rx="10"/><text class="site-label" '
                   f'x="{x0 + 6:.0f}" y="{y1 - 6:.0f}">site {esc(site)}</text>')

    def segment(a, b, same_layer_curve=True):
        (x1, y1), (x2, y2) = pos[a], pos[b]
        if same_layer_curve and where[a] == where[b] and abs(x2 - x1) > 130:
            bow = min(28 + 0.12 * abs(x2 - x1), 70.0)
            bow = -bow if where[a] == 0 else bow
            return f"M{x1:.1f},{y1:.1f} Q{(x1 + x2) / 2:.1f},{(y1 + y2) / 2 + bow:.1f} " \
                   f"{x2:.1f},{y2:.1f}", ((x1 + x2) / 2, (y1 + y2) / 2 + bow / 2)
        # labels nearer the lower end, where edges meeting at one router spread apart
        f = 0.62 if y2 > y1 else (0.38 if y2 < y1 else 0.5)
        return f"M{x1:.1f},{y1:.1f} L{x2:.1f},{y2:.1f}", (x1 + (x2 - x1) * f,
                                                          y1 + (y2 - y1) * f)

    links = list(topology["links"])
    if ghost:
        links.append({"name": f"{vm} after the move", "ends": [ghost, extra[0][2]],
                      "kind": "port", "captured": False, "ghost": True})
    labels = []                            # drawn last, over the paths
    for x in links:
        a, b = x["ends"]
        if a not in pos or b not in pos:
            continue
        d, (mx, my) = segment(a, b)
        cls = "link " + x["kind"] + (" ghost" if x.get("ghost") else "")
        out.append(f'<path class="{cls}" d="{d}"><title>{esc(x["name"])}'
                   f'{" (captured)" if x.get("captured") else ""}</title></path>')
        if x.get("captured"):
            labels.append(f'<text class="link-label" x="{mx:.0f}" y="{my - 4:.0f}">'
                          f'{esc(x["name"])}</text>')

    # The paths: parallel strokes, before on one side and after on the other.
    def path_strokes(path, colour, cls, shift, last_vm):
        if not path or any(p not in ends for p in path):
            return []
        start = _first_node(path, ends, client)
        nodes = _walk(path, ends, start)
        if last_vm and last_vm in pos and nodes[-1] != last_vm:
            nodes.append(last_vm)
        strokes = []
        for i, (a, b) in enumerate(zip(nodes, nodes[1:])):
            (x1, y1), (x2, y2) = pos[a], pos[b]
            dx, dy = x2 - x1, y2 - y1
            n = math.hypot(dx, dy) or 1.0
            ox, oy = -dy / n * shift, dx / n * shift
            if where.get(a) == where.get(b) and abs(dx) > 130:
                d, _ = segment(a, b)
                strokes.append(f'<path class="route {cls}" d="{d}" stroke="{colour}" '
                               f'transform="translate({ox:.1f},{oy:.1f})"/>')
                continue
            last = i == len(nodes) - 2
            cut = 26.0 if last else 0.0          # the arrow stops at the VM's box
            end = f' marker-end="url(#arrow-{cls})"' if last else ""
            strokes.append(f'<line class="route {cls}" x1="{x1 + ox:.1f}" y1="{y1 + oy:.1f}" '
                           f'x2="{x2 + ox - dx / n * cut:.1f}" '
                           f'y2="{y2 + oy - dy / n * cut:.1f}" stroke="{colour}"{end}/>')
        return strokes

    out.append('<defs>' + "".join(
        f'<marker id="arrow-{c}" viewBox="0 0 10 10" refX="6" refY="5" markerWidth="4" '
        f'markerHeight="4" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" '
        f'fill="{col}"/></marker>' for c, col in (("before", BEFORE), ("after", AFTER)))
        + '</defs>')
    out.append('<g class="paths">')
    out += path_strokes(r.get("path_before"), BEFORE, "before", -4.0, vm)
    out += path_strokes(r.get("path_after"), AFTER, "after", 4.0, ghost or vm)
    out.append('</g>')
    out += labels
    for name, (x, y) in pos.items():
        kind = kinds.get(name, "vm")
        fill, stroke = NODE_STYLE.get(kind, ("#fff", "#333"))
        w = max(64, 9 * len(name) + 18)
        label = "VM" if kind == "vm" else kind
        cls = "node ghost" if name == ghost else "node"
        addrs = next((n.get("addresses", []) for n in topology["nodes"]
                      if n["name"] == name), [])
        title = f"{name} ({kind})" + (": " + ", ".join(addrs) if addrs else "")
        out.append(f'<g class="{cls}"><title>{esc(title)}</title><rect x="{x - w / 2:.1f}" '
                   f'y="{y - 19:.1f}" width="{w:.0f}" height="38" rx="7" fill="{fill}" '
                   f'stroke="{stroke}"/><text x="{x:.1f}" y="{y - 2:.1f}" '
                   f'class="node-name">{esc(name)}</text><text x="{x:.1f}" y="{y + 12:.1f}" '
                   f'class="node-kind">{esc(label)}</text></g>')
    out.append("</svg>")
    return "\n".join(out)


def path_legend(r: dict) -> str:
    after = r.get("path_after") or []
    triangle = "dci" in after or (r.get("link_roles") or {}).get("dci") in after
    share = r.get("path_after_share")
    share_b = r.get("path_before_share")
    note = (' <strong class="bad">crosses the DCI: triangular routing</strong>' if triangle
            else "")
    return (f'<ul class="legend">'
            f'<li><label><input type="checkbox" data-toggle="before" checked> '
            f'<span class="swatch" style="background:{BEFORE}"></span> before the move: '
            f'{esc(" → ".join(r.get("path_before") or ["—"]))}'
            f'{_share(share_b)}</label></li>'
            f'<li><label><input type="checkbox" data-toggle="after" checked> '
            f'<span class="swatch" style="background:{AFTER}"></span> after convergence: '
            f'{esc(" → ".join(after or ["—"]))}{_share(share)}</label>{note}</li></ul>')


def _share(share):
    return f" <small>({share * 100:.0f} % of the probes)</small>" if share is not None else ""


# --------------------------------------------------------------------------------------
# The per-link packet rate


def _ticks(lo, hi, n=8):
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step) * step
    out, t = [], first
    while t <= hi + 1e-9:
        out.append(round(t, 10))
        t += step
    return out


def rate_svg(mode: str, r: dict) -> str:
    rates = r.get("per_link_rate") or {}
    t = rates.get("t_s") or []
    pps = rates.get("pps") or {}
    if not t or not pps:
        return '<p class="note">No client→VM packet was captured.</p>'
    bin_s = rates.get("bin_s") or 0.1
    roles = {name: (info or {}).get("role") for name, info in (r.get("links") or {}).items()}
    w, h, left, right, top, bottom = 960, 300, 56, 16, 36, 40
    # Only the time the flows ran (captures start before the traffic and end after it).
    busy = [i for i in range(len(t)) if any(v[i] for v in pps.values() if i < len(v))]
    lo = max(0, (busy[0] if busy else 0) - int(0.5 / bin_s))
    hi = min(len(t) - 1, (busy[-1] if busy else len(t) - 1) + int(0.5 / bin_s))
    t = t[lo:hi + 1]
    pps = {name: v[lo:hi + 1] for name, v in pps.items()}
    t0, t1 = t[0], t[-1] + bin_s
    ymax = max((max(v) for v in pps.values() if v), default=1.0) * 1.1 or 1.0

    def X(v):
        return left + (v - t0) / (t1 - t0 or 1) * (w - left - right)

    def Y(v):
        return top + (1 - v / ymax) * (h - top - bottom)

    out = [f'<svg class="rate" viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" '
           f'aria-label="client to VM packets per second per link, {esc(mode)}">']
    for v in _ticks(0, ymax, 5):
        out.append(f'<line class="grid" x1="{left}" x2="{w - right}" y1="{Y(v):.1f}" '
                   f'y2="{Y(v):.1f}"/><text class="tick" x="{left - 6}" y="{Y(v) + 4:.1f}" '
                   f'text-anchor="end">{_fmt(float(v), 0)}</text>')
    for v in _ticks(t0, t1, 10):
        out.append(f'<line class="grid" x1="{X(v):.1f}" x2="{X(v):.1f}" y1="{top}" '
                   f'y2="{h - bottom}"/><text class="tick" x="{X(v):.1f}" y="{h - bottom + 16}"'
                   f' text-anchor="middle">{_fmt(float(v), 2)}</text>')
    out.append(f'<text class="axis" x="{(left + w - right) / 2}" y="{h - 6}" '
               f'text-anchor="middle">seconds since the move (bins of {_fmt(bin_s, 3)} s)'
               f'</text><text class="axis" x="14" y="{(top + h - bottom) / 2}" '
               f'transform="rotate(-90 14 {(top + h - bottom) / 2})" text-anchor="middle">'
               f'client→VM packets/s</text>')
    order = list(ROLE_COLOURS)              # the client's line first: it is under the others
    story = sorted((n for n in pps if roles.get(n) in ROLE_COLOURS),
                   key=lambda n: order.index(roles[n]))
    others = [n for n in pps if n not in story]
    for name in others + story:
        colour = ROLE_COLOURS.get(roles.get(name), OTHER_LINK)
        pts = []
        for ts, v in zip(t, pps[name]):       # steps: flat over each bin
            pts.append(f"{X(ts):.1f},{Y(v):.1f}")
            pts.append(f"{X(ts + bin_s):.1f},{Y(v):.1f}")
        width = 2.6 if roles.get(name) == "dci" else (1.8 if name in story else 1.0)
        dash = ' stroke-dasharray="2 3"' if roles.get(name) == "client" else ""
        out.append(f'<polyline class="series" points="{" ".join(pts)}" stroke="{colour}" '
                   f'stroke-width="{width}"{dash}><title>{esc(name)}'
                   f'{" (" + esc(roles[name]) + ")" if roles.get(name) else ""}</title>'
                   f'</polyline>')

    def marker(v, colour, label, row, dash=""):
        if v is None or not (t0 <= v <= t1):
            return
        out.append(f'<line x1="{X(v):.1f}" x2="{X(v):.1f}" y1="{top - 14 * row}" '
                   f'y2="{h - bottom}" stroke="{colour}" stroke-width="1.6"{dash}/>'
                   f'<text class="marker" x="{X(v) + 4:.1f}" y="{top - 4 - 14 * row}" '
                   f'fill="{colour}">{esc(label)}</text>')

    marker(0.0, MOVE, "move starts", 1)
    if r.get("convergence_ms") is not None:
        marker(r["convergence_ms"] / 1000.0, CONVERGED,
               f"converged ({r['convergence_ms']:.0f} ms)", 0, ' stroke-dasharray="5 3"')
    out.append("</svg>")
    legend = "".join(
        f'<li><span class="swatch" style="background:{ROLE_COLOURS[roles[n]]}"></span>'
        f'{esc(n)} <small>({esc(roles[n])})</small></li>' for n in story)
    if others:
        legend += (f'<li><span class="swatch" style="background:{OTHER_LINK}"></span>'
                   f'other links <small>({esc(", ".join(others))})</small></li>')
    return "\n".join(out) + f'<ul class="legend inline">{legend}</ul>'


# --------------------------------------------------------------------------------------
# The ladder of LISP control messages


def _label(m):
    if m["type"] == "ECM" and m.get("inner"):
        return f"{m['inner']} (in an ECM)"
    return m["type"]


def ladder_messages(r: dict, topology: dict | None):
    """The control messages of the ladder: those from LADDER_BEFORE_S before the move to
    LADDER_AFTER_S after convergence (or the end of the move), one per message however
    many links captured it: [{t_ms, label, src, dst, links, count}]."""
    msgs = r.get("control_messages") or []
    end = r.get("convergence_ms")
    if end is None:
        end = r.get("move_duration_ms") or 0.0
    hi = end / 1000.0 + LADDER_AFTER_S
    topology = topology or {}
    groups = []
    for m in sorted(msgs, key=lambda m: m["time_s"]):
        ts = m["time_s"]
        if ts < -LADDER_BEFORE_S or ts > hi:
            continue
        key = (m["type"], m.get("inner"), m.get("src"), m.get("dst"))
        g = next((g for g in reversed(groups) if g["key"] == key
                  and ts - g["t"] <= SAME_MESSAGE_S), None)
        if g is None:
            src = node_of_address(topology, m.get("src")) or m.get("src") or "?"
            dst = node_of_address(topology, m.get("dst")) or m.get("dst") or "?"
            g = {"key": key, "t": ts, "label": _label(m), "src": src, "dst": dst,
                 "per_link": {}}
            groups.append(g)
        g["per_link"][m["link"]] = g["per_link"].get(m["link"], 0) + 1
    return [{"t_ms": g["t"] * 1000.0, "label": g["label"], "src": g["src"], "dst": g["dst"],
             "links": list(g["per_link"]), "count": max(g["per_link"].values())}
            for g in groups]


def ladder_svg(mode: str, r: dict, topology: dict | None) -> str:
    rows = ladder_messages(r, topology)
    if not rows:
        return ('<p class="note">No LISP control message was captured around the move'
                + (" (this mode runs no LISP)." if not r.get("control_counts") else ".")
                + "</p>")
    more = len(rows) - LADDER_MAX_ROWS
    rows = rows[:LADDER_MAX_ROWS]
    actors = []
    roles = r.get("link_roles") or {}
    ends = {x["name"]: x["ends"] for x in (topology or {}).get("links", [])}
    kinds = {n["name"]: n["kind"] for n in (topology or {}).get("nodes", [])}

    def gateway_of(link):
        return next((e for e in ends.get(link, []) if kinds.get(e) in ("xtr", "gateway")), None)

    preferred = [gateway_of(roles.get("client")),
                 *[n for n, k in kinds.items() if k == "map-server"],
                 gateway_of(roles.get("vm-origin")), gateway_of(roles.get("vm-target"))]
    involved = {x for row in rows for x in (row["src"], row["dst"])}
    for a in preferred + [x for row in rows for x in (row["src"], row["dst"])]:
        if a and a in involved and a not in actors:
            actors.append(a)
    events = [(row["t_ms"], "msg", row) for row in rows]
    events.append((0.0, "mark", ("move starts", MOVE)))
    if r.get("convergence_ms") is not None:
        events.append((r["convergence_ms"], "mark",
                       (f"converged: first probe straight to the new site", CONVERGED)))
    events.sort(key=lambda e: (e[0], e[1] == "msg"))
    col_w, left, top, row_h = 190, 96, 46, 27
    w = left + col_w * len(actors) + 20
    h = top + row_h * len(events) + 20
    x_of = {a: left + col_w * (i + 0.5) for i, a in enumerate(actors)}
    out = [f'<svg class="ladder" viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" '
           f'aria-label="LISP control messages around the move, {esc(mode)}">',
           '<defs><marker id="ladder-arrow" viewBox="0 0 10 10" refX="9" refY="5" '
           'markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path '
           'd="M0,0 L10,5 L0,10 z" fill="#334155"/></marker></defs>']
    for a, x in x_of.items():
        out.append(f'<text class="actor" x="{x:.0f}" y="20" text-anchor="middle">{esc(a)}'
                   f'</text><text class="actor-kind" x="{x:.0f}" y="34" text-anchor="middle">'
                   f'{esc(kinds.get(a, ""))}</text><line class="lifeline" x1="{x:.0f}" '
                   f'x2="{x:.0f}" y1="{top - 6}" y2="{h - 10}"/>')
    for i, (t_ms, kind, item) in enumerate(events):
        y = top + row_h * i + row_h * 0.6
        if kind == "mark":
            text, colour = item
            out.append(f'<line x1="{left - 90}" x2="{w - 10}" y1="{y:.0f}" y2="{y:.0f}" '
                       f'stroke="{colour}" stroke-dasharray="6 3"/><text class="marker" '
                       f'x="{left + 4}" y="{y - 4:.0f}" fill="{colour}">{esc(text)} '
                       f'({t_ms:+.1f} ms)</text>')
            continue
        x1, x2 = x_of[item["src"]], x_of[item["dst"]]
        count = f" ×{item['count']}" if item["count"] > 1 else ""
        cls = "msg " + item["label"].split(" ")[0].lower()
        out.append(f'<g class="{esc(cls)}"><title>{esc(item["label"])}{count}: '
                   f'{esc(item["src"])} → {esc(item["dst"])} at {t_ms:+.1f} ms; captured on '
                   f'{esc(", ".join(item["links"]))}</title>'
                   f'<text class="time" x="{left - 12}" y="{y + 4:.0f}" text-anchor="end">'
                   f'{t_ms:+.1f} ms</text><line x1="{x1:.0f}" x2="{x2:.0f}" y1="{y:.0f}" '
                   f'y2="{y:.0f}" marker-end="url(#ladder-arrow)"/><text class="msg-label" '
                   f'x="{(x1 + x2) / 2:.0f}" y="{y - 4:.0f}" text-anchor="middle">'
                   f'{esc(item["label"])}{count}</text></g>')
    out.append("</svg>")
    note = (f'<p class="note">{more} more in the same window; every message is in report.json '
            f'(<code>control_messages</code>).</p>' if more > 0 else "")
    return "\n".join(out) + note


# --------------------------------------------------------------------------------------
# Tables and the Wireshark section


def pcap_href(mode, link):
    """The relative address of a link's pcap from report.html (beside the mode folders)."""
    return esc(quote(mode, safe="") + "/" + quote(link, safe="") + ".pcap")


def _table(head, rows, cls="") -> str:
    out = [f'<table class="{cls}"><thead><tr>'
           + "".join(f"<th>{esc(h)}</th>" for h in head) + "</tr></thead><tbody>"]
    for row in rows:
        out.append("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def summary_html(results: dict, modes, rows) -> str:
    body = [[f"<strong>{esc(label)}</strong>"] + [esc(cell(results[m])) for m in modes]
            for label, cell in rows]
    return _table([""] + list(modes), body, "summary")


def _checks_html(r):
    checks = r.get("checks") or []
    if not checks:
        return ""
    rows = [['<span class="ok">ok</span>' if c["ok"] else '<span class="bad">FAILED</span>',
             esc(f"{str(c['file']).rsplit('/', 1)[-1]}:{c['line']}"), esc(c["step"]),
             esc(c["detail"])] for c in checks]
    return "<h4>Checks of the scenario</h4>" + _table(["", "step at", "step", "detail"], rows)


def _links_html(mode, r):
    rows = []
    for name, info in (r.get("links") or {}).items():
        drops = info.get("capture_drops")
        rows.append([f'<a href="{pcap_href(mode, name)}">{esc(name)}.pcap</a>',
                     esc(info.get("role") or ""), f"{info.get('frames', 0):,}",
                     f"{info.get('client_to_vm_frames', 0):,}",
                     f"{info.get('lisp_encapsulated', 0):,}",
                     f"{info.get('control_messages', 0):,}",
                     "unknown" if drops is None else f"{drops:,}"])
    return _table(["capture", "role", "frames", "client→VM frames", "inside LISP",
                   "LISP control", "dropped by tcpdump"], rows, "links")


def wireshark_html(mode: str, r: dict) -> str:
    """Which pcaps to open and with which display filters."""
    roles = r.get("link_roles") or {}
    links = r.get("links") or {}
    vm, client = r.get("vm") or "VM", r.get("client") or "CLIENT"
    ip = "ipv6" if ":" in str(vm) else "ip"
    move = r.get("move_time")
    lisp_core = max((n for n, x in links.items() if x.get("role") == "core"),
                    key=lambda n: links[n].get("lisp_encapsulated", 0), default=None)
    control = max(links, key=lambda n: links[n].get("control_messages", 0), default=None)
    files = []

    def add(name, why):
        if name and name in links and name not in [f[0] for f in files]:
            files.append((name, why))

    add(roles.get("client"), "the client's probes and their echoes: loss and RTT")
    add(roles.get("dci"), "the DCI: client traffic here after the move is the triangle")
    add(roles.get("vm-origin"), "the VM's access link before the move")
    add(roles.get("vm-target"), "the VM's access link after the move")
    if lisp_core and links[lisp_core].get("lisp_encapsulated"):
        add(lisp_core, "a core link carrying LISP-encapsulated probes (UDP 4341)")
    if control and links[control].get("control_messages"):
        add(control, "the link with the most LISP control messages")
    items = "".join(f'<li><a href="{pcap_href(mode, n)}"><code>{esc(mode)}/{esc(n)}'
                    f'.pcap</code></a>: {esc(why)}</li>' for n, why in files)
    filters = [("lisp", "LISP control messages: Map-Register, Map-Notify, Map-Request, "
                        "Map-Reply, Solicit-Map-Request"),
               ("udp.port == 4342", "the same, by port (RFC 9301 control port)"),
               ("lisp.mreq.flags.smr == 1", "only the Solicit-Map-Requests (SMR)"),
               ("lisp-data", "LISP-encapsulated data (UDP 4341, RFC 9300 header)"),
               (f"udp.dstport == {PROBE_PORT} && {ip}.dst == {vm}", "the probes to the VM"),
               (f"tcp.port == {TCP_PORT}", "the long-lived TCP session"),
               (f"{ip}.src == {client} && {ip}.dst == {vm}", "all client→VM packets, also "
                                                              "inside LISP")]
    if move is not None:
        filters.append((f"frame.time_epoch >= {move:.6f}", "only what was captured from "
                                                            "the start of the move on"))
    rows = [[f"<code>{esc(f)}</code>", esc(why)] for f, why in filters]
    return (f"<ul>{items}</ul>" + _table(["display filter", "shows"], rows, "filters")
            + '<p class="note">Open a file with <code>wireshark FILE</code>, or '
              '<code>tshark -r FILE -Y \'FILTER\'</code> in a terminal. Wireshark shows the '
              'probes as plain UDP data (they start with <code>LLPROBE1</code>). Around '
              'the move TCP\'s analysis warns of out-of-order segments and '
              'retransmissions: that is the move, not a broken capture.</p>')


# --------------------------------------------------------------------------------------
# The page


CSS = """
:root { --ink:#0f172a; --muted:#64748b; --line:#e2e8f0; --card:#ffffff; --bg:#f8fafc; }
* { box-sizing: border-box; }
body { margin:0; font:15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans",
       sans-serif; color:var(--ink); background:var(--bg); }
header { background:#0f172a; color:#f8fafc; padding:18px 28px; }
header h1 { margin:0 0 4px; font-size:22px; }
header p { margin:0; color:#cbd5e1; }
header code { background:#1e293b; color:#f8fafc; font-size:20px; }
nav { position:sticky; top:0; z-index:2; background:#1e293b; padding:8px 28px; }
nav a { color:#e2e8f0; margin-right:18px; text-decoration:none; font-weight:600; }
nav a:hover { text-decoration:underline; }
main { padding:18px 28px 40px; max-width:1280px; }
section.card { background:var(--card); border:1px solid var(--line); border-radius:10px;
               padding:16px 20px; margin:18px 0; box-shadow:0 1px 2px rgba(0,0,0,.04); }
h2 { margin:4px 0 12px; font-size:20px; } h3 { margin:18px 0 8px; font-size:16px; }
h4 { margin:14px 0 6px; font-size:14px; color:#334155; }
.figure { overflow-x:auto; }
table { border-collapse:collapse; margin:6px 0 10px; font-size:13.5px; }
th, td { border-bottom:1px solid var(--line); padding:5px 10px; text-align:left;
         vertical-align:top; }
th { background:#f1f5f9; font-weight:600; }
table.summary td:not(:first-child) { font-variant-numeric: tabular-nums; }
code { background:#f1f5f9; padding:1px 4px; border-radius:4px; font-size:12.5px; }
.note { color:var(--muted); font-size:13.5px; }
.ok { color:#15803d; font-weight:600; } .bad { color:#b91c1c; font-weight:600; }
ul.legend { list-style:none; padding:0; margin:8px 0; }
ul.legend li { margin:3px 0; }
ul.legend.inline li { display:inline-block; margin-right:16px; font-size:13px; }
.swatch { display:inline-block; width:22px; height:6px; border-radius:3px;
          vertical-align:middle; margin-right:4px; }
svg text { font-family: system-ui, "DejaVu Sans", sans-serif; }
svg.topo .site { fill:#f8fafc; stroke:#cbd5e1; stroke-dasharray:4 3; }
svg.topo .site-label { font-size:11px; fill:#94a3b8; font-style:italic; }
svg.topo .link { fill:none; stroke:#94a3b8; stroke-width:1.6; }
svg.topo .link.dci { stroke:#ea580c; stroke-width:2.4; stroke-dasharray:7 4; }
svg.topo .link.port { stroke-dasharray:3 3; }
svg.topo .link.ghost { stroke:#cbd5e1; }
svg.topo .link-label { font-size:10px; fill:#475569; text-anchor:middle;
                       paint-order:stroke; stroke:#fff; stroke-width:3px; }
svg.topo .route { fill:none; stroke-width:5; stroke-linecap:round; }
svg.topo.hide-before .before, svg.topo.hide-after .after { display:none; }
svg.topo .node-name { font-size:12.5px; font-weight:600; text-anchor:middle; }
svg.topo .node-kind { font-size:9.5px; fill:#64748b; text-anchor:middle; }
svg.topo .node.ghost rect { stroke-dasharray:4 3; }
svg.rate .grid { stroke:#eef2f7; } svg.rate .tick { font-size:10.5px; fill:#64748b; }
svg.rate .axis { font-size:11.5px; fill:#334155; }
svg.rate .series { fill:none; stroke-linejoin:round; }
svg .marker { font-size:11px; font-weight:600; }
svg.ladder .actor { font-size:13px; font-weight:700; }
svg.ladder .actor-kind { font-size:10px; fill:#64748b; }
svg.ladder .lifeline { stroke:#cbd5e1; stroke-width:2; }
svg.ladder g.msg line { stroke:#334155; stroke-width:1.5; }
svg.ladder g.msg:hover line { stroke:#d946ef; stroke-width:3; }
svg.ladder .msg-label { font-size:11.5px; fill:#0f172a; paint-order:stroke; stroke:#fff;
                        stroke-width:3px; }
svg.ladder .time { font-size:11px; fill:#64748b; font-variant-numeric: tabular-nums; }
svg.ladder g.smr line { stroke:#dc2626; } svg.ladder g.map-register line { stroke:#0f766e; }
svg.ladder g.map-notify line, svg.ladder g.map-notify-ack line { stroke:#0891b2; }
svg.ladder g.map-reply line { stroke:#6d28d9; }
img.plot { max-width:100%; border:1px solid var(--line); border-radius:6px; }
details summary { cursor:pointer; color:#334155; font-weight:600; }
"""

SCRIPT = """
document.querySelectorAll('input[data-toggle]').forEach(function (box) {
  box.addEventListener('change', function () {
    var svg = box.closest('section').querySelector('svg.topo');
    if (svg) { svg.classList.toggle('hide-' + box.dataset.toggle, !box.checked); }
  });
});
"""


def render_html(run_id: str, results: dict, delay_emulation, rows, extras=None,
                first_lisp_probe_s=None, modes=None) -> str:
    """The whole page (see the module's docstring)."""
    extras = extras or {}
    modes = list(modes or results)
    nav = "".join(f'<a href="#mode-{esc(m)}">{esc(m)}</a>' for m in modes)
    first = (f" From the start of the demo to the first probe delivered through LISP: "
             f"<strong>{first_lisp_probe_s:.1f} s</strong>." if first_lisp_probe_s is not None
             else "")
    out = ['<!DOCTYPE html>', '<html lang="en"><head><meta charset="utf-8">',
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           '<link rel="icon" href="data:,">',
           f'<title>LISP mobility lab: run {esc(run_id)}</title>', f'<style>{CSS}</style>',
           '</head><body>',
           f'<header><h1>LISP mobility lab: run <code>{esc(run_id)}</code></h1>'
           f'<p>The same VM move in {len(modes)} mode(s); t = 0 is the start of the move. '
           f'Link delays emulated with: {esc(delay_emulation)}.{first}</p></header>',
           f'<nav><a href="#summary">summary</a>{nav}</nav><main>',
           '<section class="card" id="summary"><h2>The modes side by side</h2>',
           summary_html(results, modes, rows),
           '<p class="note">Without LISP the core keeps routing the VM\'s subnet to DC1, so '
           'after the move the client\'s packets cross the DCI to reach DC2 (triangular '
           'routing). With LISP the new site\'s xTR registers the VM, the Map-Server '
           'notifies the old one, which answers stale traffic with a Solicit-Map-Request; '
           'the client\'s xTR asks again and tunnels straight to the new RLOC. report.md '
           'explains every row.</p></section>']
    for m in modes:
        r = results[m]
        x = extras.get(m) or {}
        topo = x.get("topology")
        scenario = r.get("scenario")
        out.append(f'<section class="card" id="mode-{esc(m)}"><h2>{esc(m)}</h2>')
        if scenario:
            out.append(f'<p class="note">Played from <code>{esc(scenario)}</code>.</p>')
        conv = r.get("convergence_ms")
        out.append(f'<p>Convergence: <strong>{"never" if conv is None else f"{conv:.1f} ms"}'
                   f'</strong>; DCI packets after the move: '
                   f'<strong>{esc(r.get("dci_packets_after_move"))}</strong>; probes lost: '
                   f'<strong>{esc(r.get("probes_lost"))}</strong> of '
                   f'{esc(r.get("probes_sent"))}.</p>')
        out.append("<h3>The topology and the probes' paths</h3>" + path_legend(r)
                   + f'<div class="figure">{topology_svg(m, r, topo)}</div>')
        out.append("<h3>Client→VM packets per link around the move</h3>"
                   f'<div class="figure">{rate_svg(m, r)}</div>')
        out.append("<h3>LISP control messages around the move</h3>"
                   '<p class="note">One arrow per message, from its sender to its receiver, at '
                   'the time it was first captured; hover for the links that captured it. '
                   f'Shown from {LADDER_BEFORE_S * 1000:.0f} ms before the move to '
                   f'{LADDER_AFTER_S * 1000:.0f} ms after convergence.</p>'
                   f'<div class="figure">{ladder_svg(m, r, topo)}</div>')
        after = r.get("paths_after_move") or []
        if after:
            out.append("<h4>Paths of the probes sent after the move</h4>" + _table(
                ["probes", "path"], [[f"{p['probes']:,}", esc(" → ".join(p["path"]))]
                                     for p in after]))
        out.append(_checks_html(r))
        warnings = r.get("warnings") or []
        if warnings:
            out.append("<h4>Capture warnings</h4><ul>"
                       + "".join(f"<li>{esc(w)}</li>" for w in warnings) + "</ul>")
        out.append("<h4>The captures</h4>" + _links_html(m, r))
        out.append("<h3>What to open in Wireshark</h3>" + wireshark_html(m, r))
        png = x.get("timeline_png")
        if png:
            data = base64.b64encode(png).decode("ascii")
            out.append(f'<details><summary>RTT and per-link rates (the PNG plot)</summary>'
                       f'<img class="plot" alt="{esc(m)} timeline" '
                       f'src="data:image/png;base64,{data}"></details>')
        out.append("</section>")
    out.append(f"</main><script>{SCRIPT}</script></body></html>")
    return "\n".join(out) + "\n"

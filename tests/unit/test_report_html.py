"""report.html's builder (captures/html.py) from a synthetic analysis result: one page with
nothing fetched, the topology with both paths drawn on the model's graph, the rate timeline
with the move, the ladder of control messages (one arrow per message), the tables and the
Wireshark section. tests/emulation/test_report_html_browser.py loads one from a real run in
Chromium."""
import json
import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

from captures.html import AFTER, BEFORE, ladder_messages, layout, render_html
from captures.report import ROWS, write_report
from topologies.model import load

LABS = Path(__file__).resolve().parents[2] / "topologies" / "labs"
MODE = "lisp-extended-subnet"
XTRC, XTR1, XTR2, MS = "172.16.10.1", "172.16.2.1", "172.16.3.1", "172.16.100.1"


def _msg(t, link, kind, src, dst, inner=None):
    return {"time_s": t, "link": link, "type": kind, "inner": inner, "src": src, "dst": dst}


def synthetic():
    """A LISP mode's result as the analysis makes it, and its lab's topology."""
    lab = load(LABS / f"demo-{MODE}.yaml")
    before = lab.expected_path("c1", "vm", "dc1")
    after = lab.expected_path("c1", "vm", "dc2")
    t = [round(-1.0 + 0.1 * i, 6) for i in range(30)]
    pps = {"client-access": [1000.0] * 30,
           "dc1-access": [1000.0] * 10 + [0.0] * 20,
           "dci": [0.0] * 10 + [1000.0] * 4 + [0.0] * 16,
           "dc2-access": [0.0] * 10 + [1000.0] * 20,
           "core-r1-r2": [1000.0] * 14 + [0.0] * 16}
    control = [
        _msg(-0.9, "client-uplink", "Map-Register", XTRC, MS),        # outside the ladder
        _msg(0.244, "dc2-uplink", "Map-Register", XTR2, MS),
        _msg(0.265, "core-r1-r3", "Map-Register", XTR2, MS),
        _msg(0.277, "msmr-link", "Map-Register", XTR2, MS),            # one message, 3 links
        _msg(0.287, "msmr-link", "Map-Notify", MS, XTR1),
        _msg(0.297, "dc1-uplink", "Map-Notify", MS, XTR1),
        _msg(0.332, "dc1-uplink", "SMR", XTR1, XTRC),
        _msg(0.333, "dc1-uplink", "SMR", XTR1, XTRC),                  # a second SMR
        _msg(0.365, "client-uplink", "ECM", XTRC, MS, "SMR-invoked Map-Request"),
        _msg(0.366, "msmr-link", "ECM", MS, XTR2, "SMR-invoked Map-Request"),
        _msg(0.397, "dc2-uplink", "Map-Reply", XTR2, XTRC),
        _msg(0.407, "client-uplink", "Map-Reply", XTR2, XTRC),
        _msg(3.0, "dc2-uplink", "Map-Register", XTR2, MS),             # outside the ladder
    ]
    links = {name: {"role": role, "pcap": True, "error": None, "frames": 100,
                    "client_to_vm_frames": 50, "lisp_encapsulated": 40 if "core" in name else 0,
                    "control_messages": 9 if name == "msmr-link" else 1, "capture_drops": 0}
             for name, role in [("client-access", "client"), ("dci", "dci"),
                                ("dc1-access", "vm-origin"), ("dc2-access", "vm-target"),
                                ("core-r1-r2", "core"), ("core-r1-r3", "core"),
                                ("msmr-link", "core"), ("<b>odd</b>", "core")]}
    r = {"path_before": before, "path_after": after, "path_before_share": 1.0,
         "path_after_share": 0.99, "paths_after_move": [{"path": after, "probes": 4000}],
         "convergence_ms": 362.3, "move_duration_ms": 690.0, "move_time": 1_780_000_000.5,
         "dci_packets_after_move": 259, "dci_bytes_after_move": 28794, "probes_sent": 7000,
         "probes_lost": 238, "probes_answered": 6762, "outage_ms": 238.9,
         "rtt_median_before_ms": 63.3, "rtt_median_after_ms": 62.2, "tcp_survived": True,
         "core_routing_updates_after_move": None, "client": "10.99.0.10", "vm": "10.10.0.5",
         "link_roles": {"client": "client-access", "dci": "dci", "vm-origin": "dc1-access",
                        "vm-target": "dc2-access"},
         "per_link_rate": {"bin_s": 0.1, "t_s": t, "pps": pps}, "control_messages": control,
         "control_counts": {"msmr-link": {"Map-Register": 1}}, "links": links,
         "checks": [{"step": "t=7s check path", "at": 7, "file": "/x/demo.yaml", "line": 13,
                     "ok": True, "detail": "crossed the expected path"}],
         "warnings": [], "scenario": "topologies/labs/demo-lisp-extended-subnet.yaml"}
    return r, lab.topology()


class _Refs(HTMLParser):
    def __init__(self):
        super().__init__()
        self.refs, self.tags = [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        for name, value in attrs:
            if name in ("src", "href", "xlink:href", "action", "data"):
                self.refs.append((tag, value))


def page(r=None, topo=None, png=None):
    if r is None:
        r, topo = synthetic()
    return render_html("run-1", {MODE: r}, "userspace relay", ROWS,
                       {MODE: {"topology": topo, "timeline_png": png}})


def test_the_page_fetches_nothing():
    text = page(png=b"\x89PNG\r\n\x1a\nfake")
    refs = _Refs()
    refs.feed(text)
    assert "script" in refs.tags and "svg" in refs.tags
    for tag, ref in refs.refs:
        assert (ref.startswith(("#", "data:")) or re.fullmatch(r"[\w.-]+/[^/:]+\.pcap", ref)), \
            (tag, ref)                     # in-page anchors, data URIs, the run's own pcaps
    assert "http:" not in text and "https:" not in text and "//" not in text.replace(
        "file://", "")
    assert 'src="data:image/png;base64,' in text


def test_every_svg_is_well_formed_xml():
    text = page()
    svgs = re.findall(r"<svg .*?</svg>", text, flags=re.S)
    assert len(svgs) == 3                  # topology, rate timeline, ladder
    for svg in svgs:
        ET.fromstring(svg)


def test_the_topology_draws_every_node_and_both_paths_on_the_graph():
    r, topo = synthetic()
    svg = re.search(r'<svg class="topo".*?</svg>', page(r, topo), flags=re.S).group(0)
    for n in topo["nodes"]:
        assert f">{n['name']}</text>" in svg, n["name"]
    assert ">vm (after)</text>" in svg     # the VM drawn again where it moved to
    # One stroke per hop: the path's links, then the VM's port.
    assert svg.count('class="route before"') == len(r["path_before"]) + 1
    assert svg.count('class="route after"') == len(r["path_after"]) + 1
    assert f'stroke="{BEFORE}"' in svg and f'stroke="{AFTER}"' in svg
    assert svg.count("marker-end=") == 2   # each path ends in an arrow at the VM


def test_a_triangle_is_drawn_across_the_dci_and_named():
    r, topo = synthetic()
    r["path_after"] = r["path_before"] + ["dci"]
    text = page(r, topo)
    assert "triangular routing" in text
    svg = re.search(r'<svg class="topo".*?</svg>', text, flags=re.S).group(0)
    assert svg.count('class="route after"') == len(r["path_after"]) + 1


def test_layout_keeps_layers_and_a_gap():
    _, topo = synthetic()
    pos, where = layout(topo)
    kinds = {n["name"]: n["kind"] for n in topo["nodes"]}
    ys = {k: {pos[n][1] for n in kinds if kinds[n] == k} for k in ("router", "switch")}
    assert len(ys["router"]) == 1 and len(ys["switch"]) == 1
    assert min(ys["router"]) < min(ys["switch"])
    for layer in set(where.values()):
        xs = sorted(pos[n][0] for n in where if where[n] == layer)
        assert all(b - a >= 100 for a, b in zip(xs, xs[1:]))


def test_the_ladder_has_one_arrow_per_message_between_named_nodes():
    r, topo = synthetic()
    rows = ladder_messages(r, topo)
    assert [(x["label"], x["src"], x["dst"], x["count"]) for x in rows] == [
        ("Map-Register", "xtr2", "msmr", 1),
        ("Map-Notify", "msmr", "xtr1", 1),
        ("SMR", "xtr1", "xtrc", 2),
        ("SMR-invoked Map-Request (in an ECM)", "xtrc", "msmr", 1),
        ("SMR-invoked Map-Request (in an ECM)", "msmr", "xtr2", 1),
        ("Map-Reply", "xtr2", "xtrc", 1)]
    assert rows[0]["links"] == ["dc2-uplink", "core-r1-r3", "msmr-link"]
    assert abs(rows[0]["t_ms"] - 244.0) < 1e-6
    svg = re.search(r'<svg class="ladder".*?</svg>', page(r, topo), flags=re.S).group(0)
    actors = re.findall(r'<text class="actor" [^>]*>([^<]+)</text>', svg)
    assert actors == ["xtrc", "msmr", "xtr1", "xtr2"]    # client side, MS, old DC, new DC
    assert "SMR ×2" in svg and "+244.0 ms" in svg
    assert "move starts" in svg and "converged" in svg


def test_the_rate_timeline_marks_the_move_and_the_convergence():
    svg = re.search(r'<svg class="rate".*?</svg>', page(), flags=re.S).group(0)
    assert svg.count("<polyline") == 5
    assert "move starts" in svg and "converged (362 ms)" in svg
    assert "<title>dci (dci)</title>" in svg


def test_tables_and_wireshark_section():
    text = page()
    for label, _ in ROWS:
        assert f"<strong>{label}</strong>" in text
    assert "362.3 ms" in text and "238 (3.4 %)" in text
    for f in ("<code>lisp</code>", "<code>lisp-data</code>", "<code>udp.port == 4342</code>",
              "<code>udp.dstport == 7000 &amp;&amp; ip.dst == 10.10.0.5</code>",
              "<code>frame.time_epoch &gt;= 1780000000.500000</code>"):
        assert f in text, f
    assert f'href="{MODE}/dci.pcap"' in text and f'href="{MODE}/msmr-link.pcap"' in text
    assert "&lt;b&gt;odd&lt;/b&gt;" in text and "<b>odd</b>" not in text   # escaped


def test_without_a_topology_the_page_says_so():
    r, _ = synthetic()
    text = page(r, None)
    assert "No topology in this mode" in text
    assert '<svg class="rate"' in text


def test_write_report_writes_the_page_beside_the_others(tmp_path):
    r, topo = synthetic()
    run = tmp_path / "run-7"
    (run / MODE).mkdir(parents=True)
    (run / MODE / "links.json").write_text(json.dumps({"topology": topo}))
    paths = write_report(run, {MODE: r}, "none")
    assert [p.name for p in paths] == ["report.md", "report.json", "comparison.png",
                                       f"{MODE}-timeline.png", "report.html"]
    text = paths[-1].read_text(encoding="utf-8")
    assert ">vm (after)</text>" in text and "data:image/png;base64,iVBOR" in text

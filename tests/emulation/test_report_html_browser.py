"""report.html of a real run, in a real browser: the demo's LISP mode with the DCI
(topologies/labs/demo-lisp-extended-subnet.yaml) is played with real daemons and captures,
its report written, and the page loaded in headless Chromium (Debian's package, installed by
scripts/install.sh). The page must load with no console error and no request beyond its own
file, and the screenshot must show the topology with both paths in their colours.

The console check is checked first: a page with a deliberate error must be caught. The
same run's captures must open in Wireshark (tshark, default preferences) with no malformed
frame and no expert error (issue 13; TCP's sequence warnings around the move are real).
"""
import io
import os
import time

import pytest
from PIL import Image

from captures.html import AFTER, BEFORE, NODE_STYLE
from captures.report import write_report
from lab.demo import LABS_DIR, Progress, run_scenario
from tests.chromium import Chromium, chromium_path
from tests.tshark_util import frame_summaries

MODE = "lisp-extended-subnet"
PI_ERROR = 0x800000             # tshark's expert severity "error"
BOXES = """Array.from(document.querySelectorAll('svg.topo')).map(function (e) {
  var r = e.getBoundingClientRect();
  return {x: r.left + window.scrollX, y: r.top + window.scrollY, w: r.width, h: r.height,
          names: Array.from(e.querySelectorAll('.node-name')).map(function (t) {
            return t.textContent; })};
})"""


def _rgb(hex_colour):
    return tuple(int(hex_colour[i:i + 2], 16) for i in (1, 3, 5))


@pytest.fixture(scope="module")
def browser():
    if chromium_path() is None:
        pytest.fail("chromium is not installed: run `sudo make install`")
    with Chromium() as b:
        yield b


def test_the_console_check_catches_an_error(browser, tmp_path):
    bad = tmp_path / "bad.html"
    bad.write_text('<!DOCTYPE html><html><head><link rel="icon" href="data:,"></head><body>'
                   '<img src="missing.png"><script>console.error("deliberate");'
                   'not_defined();</script></body></html>')
    seen = browser.load(bad)
    assert any("deliberate" in e for e in seen.errors), seen.errors
    assert any("not_defined" in e for e in seen.errors), seen.errors
    assert any("missing.png" in e or "ERR_FILE_NOT_FOUND" in e for e in seen.errors)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """The mode played and reported: (run directory, result, report.html)."""
    run_dir = tmp_path_factory.mktemp("run")
    result = run_scenario(LABS_DIR / f"demo-{MODE}.yaml", run_dir, Progress(), name=MODE,
                          run_id=f"pytest-emu-html-{os.getpid()}-{int(time.time())}")
    paths = write_report(run_dir, {MODE: result}, result.get("delay_emulation"))
    return run_dir, result, paths[-1]


def test_report_html_of_a_real_run_loads_cleanly_and_shows_the_paths(browser, run):
    run_dir, result, page = run
    assert result["convergence_ms"] is not None, "the run did not converge: no 'after' path"
    assert result["path_before"] != result["path_after"]
    assert page.name == "report.html"

    seen = browser.load(page, width=1300, height=900, script=BOXES)
    assert seen.errors == [], seen.errors
    own = page.resolve().as_uri()
    assert all(u == own or u.startswith("data:") for u in seen.requests), seen.requests

    image = Image.open(io.BytesIO(seen.screenshot)).convert("RGB")
    assert image.size[0] >= 1200 and image.size[1] > 2000        # the whole page
    assert len(image.getcolors(1 << 24)) > 100                   # not blank
    boxes = seen.value
    assert len(boxes) == 1
    box = boxes[0]
    names = set(box["names"])
    assert {"xtr1", "xtr2", "xtrc", "msmr", "vm", "vm (after)", "s1", "s2"} <= names, names
    assert box["w"] > 500 and box["h"] > 300
    topo = image.crop((int(box["x"]), int(box["y"]), int(box["x"] + box["w"]),
                       int(box["y"] + box["h"])))
    counts = {colour: n for n, colour in topo.getcolors(1 << 24)}
    # Each path is a 5-pixel stroke over several hops: hundreds of pixels of its colour.
    assert counts.get(_rgb(BEFORE), 0) > 500, "the path before the move is not drawn"
    assert counts.get(_rgb(AFTER), 0) > 500, "the path after convergence is not drawn"
    assert counts.get(_rgb(NODE_STYLE["xtr"][0]), 0) > 2000, "no xTR box drawn"
    shot = run_dir / "report-html.png"
    shot.write_bytes(seen.screenshot)           # for a person to look at


def test_the_runs_captures_open_in_wireshark_with_no_malformed_frame(tshark, run):
    run_dir, result, _ = run
    pcaps = sorted((run_dir / MODE).glob("*.pcap"))
    assert len(pcaps) == len(result["links"])
    probes = 0
    for pcap in pcaps:
        frames = frame_summaries(tshark, pcap)
        bad = [(i + 1, protocols) for i, (protocols, severities) in enumerate(frames)
               if "_ws.malformed" in protocols or any(s >= PI_ERROR for s in severities)]
        assert not bad, f"{pcap.name}: {len(bad)} malformed or expert-error frames: {bad[:5]}"
        probes += sum(p.endswith(":udp:data") for p, _ in frames)
    assert probes > 10000                       # the probes are there, as plain UDP data

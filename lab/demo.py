"""`lisp-lab demo`: the same VM move played in every mode, captured, measured and reported.

A mode is a scenario file, topologies/labs/demo-MODE.yaml, over one lab file (two-dc.yaml):
what differs between the modes is written there. Each is played by lab/scenario.py (build
the network, captures on every link, daemons, the timeline: probes at 1000/s and a TCP
session from the client to the VM, the VM's live move to DC2 two seconds in, the checks),
then analysed; at the end come report.md, report.json and plots in captures/<run-id>/.

Every namespace, link, process and capture a mode started is gone when the mode ends, also
after Ctrl-C (the Lab stops on signals) and after a crash (`lisp-lab clean`).
"""
import json
import sys
import time
from pathlib import Path

from topologies.model import load

ROOT = Path(__file__).resolve().parent.parent
CAPTURES_DIR = ROOT / "captures"
LABS_DIR = ROOT / "topologies" / "labs"
# Without LISP (hair-pin over the DCI), with host routes through OSPF, LISP on the extended
# subnet and across subnets (the client ITR learns the move from an SMR), and across subnets
# with PubSub (the Map-Server publishes it): the last two are SMR and PubSub side by side.
MODES = ("l2-extension", "host-route", "lisp-extended-subnet", "lisp-across-subnet",
         "lisp-pubsub")


def mode_file(mode):
    return LABS_DIR / f"demo-{mode}.yaml"


class Progress:
    def __init__(self, out=sys.stdout):
        self.out = out
        self.t0 = time.monotonic()

    def __call__(self, text):
        print(f"[{time.monotonic() - self.t0:6.1f}s] {text}", file=self.out, flush=True)


def run_scenario(path, run_dir, progress, name=None, cold_s=0.0, run_id=None):
    """Play one scenario file into run_dir/<name>/ and analyse it; returns the result."""
    from captures.analysis import analyze_mode
    from lab.scenario import play
    model = load(path)
    name = name or model.name
    mode_dir = Path(run_dir) / name
    mode_dir.mkdir(parents=True, exist_ok=True)
    say = (lambda text: progress(f"{name}: {text}"))
    play(model, mode_dir, say, run_id=run_id or f"lab-{name}-{int(time.time())}",
         cold_s=cold_s or None)
    result = analyze_mode(mode_dir)
    failed = [c for c in result["checks"] if not c["ok"]]
    for c in result["checks"]:
        if c in failed:
            say(f"check FAILED ({Path(c['file']).name}:{c['line']}): {c['detail']}")
    say(f"{len(result['checks']) - len(failed)} of {len(result['checks'])} checks passed")
    return result


def run_demo(run_id=None, modes=MODES, out=sys.stdout, cold_s=0.0):
    """All modes, then the report. Returns the run directory and the modes' results.

    The demo's start (wall clock) is kept in <run-dir>/demo.json: report.json's
    demo_start_to_first_lisp_probe_s counts from it."""
    started = time.time()
    from captures.report import DEMO_JSON, demo_start_to_first_lisp_probe, write_report
    progress = Progress(out)
    run_id = run_id or time.strftime("%Y%m%d-%H%M%S")
    run_dir = CAPTURES_DIR / run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / DEMO_JSON).write_text(json.dumps({"demo_start": started}) + "\n")
    results = {}
    for mode in modes:
        progress(f"{mode}: starting")
        r = results[mode] = run_scenario(mode_file(mode), run_dir, progress, mode, cold_s,
                                         run_id=f"demo-{mode}-{int(time.time())}")
        progress(f"{mode}: convergence {r.get('convergence_ms')} ms, DCI packets after move "
                 f"{r.get('dci_packets_after_move')}, probes lost {r.get('probes_lost')}")
    delay = next((r.get("delay_emulation") for r in results.values()), None)
    first = demo_start_to_first_lisp_probe(run_dir, results, started)
    if first is not None:
        progress(f"demo start to the first probe delivered through LISP: {first:.1f} s")
    paths = write_report(run_dir, results, delay, first)
    progress(f"report: {paths}")
    return run_dir, results

"""VM-move convergence per mode over repeated moves (issue 12; root, about 2.5 minutes a
round): the demo's five modes (the last, lisp-pubsub, is LISP with PubSub), side
by side in every round, each its scenario file played by lab.demo.run_scenario and measured
by the capture analysis.

    sudo .venv/bin/python -m bench.bench_moves [--rounds N] [--quick]

Per mode, min/median/max over the rounds of convergence_ms (the move to the first probe on
the direct path), first_delivery_ms (the first probe at the new site, any path) and
probes_lost (at 1,000 probes/s), and the propagation floors of the lab's link delays; and
per LISP mode, against the targets of issue 12, how many rounds met them:
  - PubSub: the direct path within 1.5 times the floor of the notification path;
  - SMR (the other LISP modes): within the floor of their notification path (register,
    notify the old xTR) plus one SMR round (SMR, Map-Request, Map-Reply) and the first
    packet: the SMR path's floor;
  - every LISP mode: no more probes lost than its floor in milliseconds.
Also the time to the first probe delivered through LISP, from the round's start (the demo's
start: the two non-LISP modes come first) and from the start of the first LISP mode.
Written to bench/results/moves.json and printed."""
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

from bench.common import RESULTS, spread, write_result
from lab.demo import MODES, Progress, mode_file, run_scenario
from topologies.model import load

PUBSUB = "lisp-pubsub"
FILES = {m: mode_file(m) for m in MODES}
ORDER = MODES
LISP_MODES = [m for m in ORDER if load(FILES[m]).lisp]
KEYS = ("convergence_ms", "first_delivery_ms", "probes_lost")


def targets(mode, floor):
    """(convergence bound ms, probes-lost bound) of a LISP mode from its floors."""
    if not floor:
        return None, None
    if mode == PUBSUB:
        return round(1.5 * floor["notify"], 1), int(floor["notify"])
    return round(floor["smr"], 1), int(floor["smr"])


def run(rounds=10, quick=False, out=sys.stderr):
    rounds = 2 if quick else rounds
    progress = Progress(out)
    rows = {m: [] for m in ORDER}
    demo_start_to_first_lisp = []      # round start -> first probe delivered through LISP
    mode_start_to_first_lisp = []      # the first LISP mode's start -> that probe
    from captures.report import first_lisp_probe_time
    work = Path(tempfile.mkdtemp(prefix="bench-moves-"))
    try:
        for i in range(rounds):
            round_start, first = time.time(), None
            for mode in ORDER:
                t0 = time.time()
                r = run_scenario(FILES[mode], work / str(i), progress, mode,
                                 run_id=f"bench-moves-{i}-{mode}-{int(t0)}")
                budget = r.get("convergence_budget") or {}
                floor = budget.get("floor_ms")
                bound, lost_bound = targets(mode, floor) if mode in LISP_MODES else (None, None)
                row = {k: r.get(k) for k in KEYS}
                row.update(floor_notify_ms=(floor or {}).get("notify"),
                           floor_smr_ms=(floor or {}).get("smr"),
                           target_ms=bound, target_lost=lost_bound,
                           checks_ok=all(c["ok"] for c in r["checks"]))
                if bound is not None:
                    row["within_target"] = (row["convergence_ms"] is not None
                                            and row["convergence_ms"] <= bound)
                    row["loss_within_target"] = (row["probes_lost"] is not None
                                                 and row["probes_lost"] <= lost_bound)
                rows[mode].append(row)
                if mode in LISP_MODES and first is None:
                    first = first_lisp_probe_time(work / str(i) / mode)
                    demo_start_to_first_lisp.append(
                        None if first is None else round(first - round_start, 2))
                    mode_start_to_first_lisp.append(
                        None if first is None else round(first - t0, 2))
                shutil.rmtree(work / str(i) / mode, ignore_errors=True)
            progress(f"bench_moves: round {i + 1}/{rounds}: " + ", ".join(
                f"{m} {rows[m][-1]['convergence_ms']} ms" for m in ORDER))
    finally:
        shutil.rmtree(work, ignore_errors=True)

    def summary(mode):
        rs = rows[mode]
        out = {k: spread([x[k] for x in rs]) for k in KEYS}
        out["never_converged"] = sum(1 for x in rs if x["convergence_ms"] is None)
        out["floor_notify_ms"] = rs[0]["floor_notify_ms"] if rs else None
        out["floor_smr_ms"] = rs[0]["floor_smr_ms"] if rs else None
        if mode in LISP_MODES and rs:
            out["target_ms"], out["target_lost"] = rs[0]["target_ms"], rs[0]["target_lost"]
            out["rounds_within_target"] = sum(1 for x in rs if x.get("within_target"))
            out["rounds_loss_within_target"] = sum(1 for x in rs if x.get("loss_within_target"))
        out["rounds_checks_ok"] = sum(1 for x in rs if x["checks_ok"])
        out["runs"] = rs
        return out
    result = {"when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "rounds": rounds,
              "probe_rate_per_s": 1000,
              "targets": {PUBSUB: "convergence <= 1.5 x floor_notify_ms",
                          "SMR modes": "convergence <= floor_smr_ms (notify the old xTR, "
                                       "one SMR round, the first packet)",
                          "loss": "probes_lost <= the mode's floor in ms (1 probe per ms)"},
              "modes": {m: summary(m) for m in ORDER},
              "demo_start_to_first_lisp_probe_s": spread(demo_start_to_first_lisp),
              "lisp_mode_start_to_first_lisp_probe_s": spread(mode_start_to_first_lisp)}
    write_result("moves", result)
    return result


def table(result):
    """The side-by-side lines a reader wants: one per mode."""
    lines = [f"{'mode':22} {'convergence ms min/med/max':>28} {'lost min/med/max':>18} "
             f"{'target ms':>9} {'within':>7}"]

    def three(s):
        return "/".join(f"{s[k]:g}" for k in ("min", "median", "max")) if s else "never"
    for m, s in result["modes"].items():
        within = (f"{s['rounds_within_target']}/{result['rounds']}"
                  if "rounds_within_target" in s else "-")
        lines.append(f"{m:22} {three(s['convergence_ms']):>28} {three(s['probes_lost']):>18} "
                     f"{s.get('target_ms') or '-':>9} {within:>7}")
    return "\n".join(lines)


def main(argv):
    rounds = int(argv[argv.index("--rounds") + 1]) if "--rounds" in argv else 10
    r = run(rounds, quick="--quick" in argv)
    print(table(r))
    print(f"bench_moves: written to {RESULTS / 'moves.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Convergence and probe loss per mode over repeated moves (root; not part of `make bench`
by default because it takes about a minute per round: `python -m bench.bench_moves N`).

For each of N rounds, every mode plays the demo's move (its scenario file, lab.demo.run_scenario) in the demo's
order and the capture analysis measures it. Reports median and max of convergence_ms and
probes_lost per mode, and the time to the first probe delivered through LISP (as
report.json's demo_start_to_first_lisp_probe_s: the first probe on a VM access link that was
also captured LISP-encapsulated on a core link), from the round's start (the demo's start:
the two non-LISP modes come first) and from the start of the first LISP mode."""
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from lab.demo import MODES, Progress, mode_file, run_scenario
from topologies.model import load

LISP_MODES = [m for m in MODES if load(mode_file(m)).lisp]


def run(rounds=10, out=sys.stderr):
    """`rounds` rounds; each plays every mode in the demo's order, as `lisp-lab demo` does,
    so a round's start stands for the demo's start."""
    from captures.report import first_lisp_probe_time
    progress = Progress(out)
    per_mode = {m: {"convergence_ms": [], "probes_lost": []} for m in MODES}
    demo_start_to_first_lisp = []      # round start -> first probe delivered through LISP
    mode_start_to_first_lisp = []      # the first LISP mode's start -> that probe
    work = Path(tempfile.mkdtemp(prefix="bench-moves-"))
    try:
        for i in range(rounds):
            round_start = time.time()
            first = None
            for mode in MODES:
                mode_dir = work / f"{i}" / mode
                t0 = time.time()
                r = run_scenario(mode_file(mode), work / f"{i}", progress, mode)
                per_mode[mode]["convergence_ms"].append(r["convergence_ms"])
                per_mode[mode]["probes_lost"].append(r["probes_lost"])
                if mode in LISP_MODES and first is None:
                    first = first_lisp_probe_time(mode_dir)
                    demo_start_to_first_lisp.append(
                        None if first is None else round(first - round_start, 2))
                    mode_start_to_first_lisp.append(
                        None if first is None else round(first - t0, 2))
                shutil.rmtree(mode_dir)
            progress(f"round {i + 1}/{rounds} done")
    finally:
        shutil.rmtree(work, ignore_errors=True)

    def summary(values):
        known = [v for v in values if v is not None]
        return {"median": round(statistics.median(known), 1) if known else None,
                "max": round(max(known), 1) if known else None,
                "never": len(values) - len(known), "values": values}
    return {"rounds": rounds,
            "modes": {m: {k: summary(v) for k, v in d.items()} for m, d in per_mode.items()},
            "demo_start_to_first_lisp_probe_s": summary(demo_start_to_first_lisp),
            "lisp_mode_start_to_first_lisp_probe_s": summary(mode_start_to_first_lisp)}


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    result = run(n)
    out = Path(__file__).resolve().parent / "results"
    out.mkdir(exist_ok=True)
    (out / "moves.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))

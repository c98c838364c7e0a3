"""Ingress traffic engineering (issue 11): the error of a 70/30 split by weight over
repeated runs of topologies/labs/te-weights.yaml (root).

    sudo .venv/bin/python -m bench.bench_te [--runs N]

Each run plays the scenario (1,000 short UDP flows from the client to the multihomed
branch, other source ports each run) and counts from the captures of the two provider links the flows that entered by
each; the error is |provider A's share - 70| in percentage points. Min/median/max over the
runs, written to bench/results/te.json and printed. (Failover time and loss: bench_failover.)"""
import json
import sys
import tempfile
import time
from pathlib import Path

from bench.common import RESULTS, spread, write_result
from lab.demo import LABS_DIR, Progress, run_scenario

LAB = LABS_DIR / "te-weights.yaml"


def run(runs=3, quick=False, out=sys.stderr):
    runs = 2 if quick else runs
    progress = Progress(out)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-te-") as work:
        for i in range(runs):
            # Other flows each run (their source ports start elsewhere): the ITR's hash of
            # the same 5-tuples would give the same split every time.
            lab = Path(work) / f"te-{i}.yaml"
            lab.write_text(LAB.read_text().replace(
                "packets: 3, rate: 3000}", f"packets: 3, rate: 3000, first_sport: "
                                         f"{20000 + 1000 * i}}}").replace(
                "extends: multihomed.yaml", f"extends: {LABS_DIR / 'multihomed.yaml'}"))
            r = run_scenario(lab, Path(work) / str(i), progress,
                             run_id=f"bench-te-{i}-{int(time.time())}")
            c = r["flow_counts"]
            a, b = c["provider-a"]["flows"], c["provider-b"]["flows"]
            share = 100.0 * a / (a + b) if a + b else None
            rows.append({"flows_a": a, "flows_b": b, "share_a_pct": share,
                         "error_points": None if share is None else round(abs(share - 70), 2),
                         "checks_ok": all(x["ok"] for x in r["checks"])})
            progress(f"bench_te: run {i + 1}/{runs}: provider-a {a}, provider-b {b}")
    result = {"when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "lab": LAB.name,
              "weights": [70, 30], "flows_per_run": 1000, "runs": rows,
              "split_error_points": spread(x["error_points"] for x in rows)}
    write_result("te", result)
    return result


def main(argv):
    runs = int(argv[argv.index("--runs") + 1]) if "--runs" in argv else 3
    r = run(runs)
    print(json.dumps(r["split_error_points"]))
    print(f"bench_te: written to {RESULTS / 'te.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

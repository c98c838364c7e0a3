"""Failover by RLOC-probing (issue 11): topologies/labs/te-priority.yaml played N times
(root). Each run: 1,000 probes a second from the client to the multihomed branch, the
primary provider link down at t=3 and up at t=6; from the captures (captures/failover.py)
the failover time (link down to the first probe on the backup link), the probes lost in
it, and the failback time (link up to the first probe on the primary again).

    sudo .venv/bin/python -m bench.bench_failover [--runs N] [--quick]

Min/median/max over the runs, the probe interval beside them and the target (3 probe
intervals) compared, written to bench/results/failover.json and printed."""
import json
import sys
import tempfile
import time
from pathlib import Path

from bench.common import RESULTS, spread, write_result
from lab.demo import LABS_DIR, Progress, run_scenario

LAB = LABS_DIR / "te-priority.yaml"
KEYS = ("failover_ms", "probes_lost_failover", "failback_ms", "probes_lost_failback")


def run(runs=5, quick=False, out=sys.stderr):
    runs = 2 if quick else runs
    progress = Progress(out)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-failover-") as work:
        for i in range(runs):
            r = run_scenario(LAB, Path(work) / str(i), progress,
                             run_id=f"bench-failover-{i}-{int(time.time())}")
            f = r.get("failover") or {}
            rows.append({**{k: f.get(k) for k in KEYS},
                         "within_target": f.get("within_target"),
                         "checks_ok": all(x["ok"] for x in r["checks"])})
            progress(f"bench_failover: run {i + 1}/{runs}: failover {f.get('failover_ms')} ms, "
                     f"{f.get('probes_lost_failover')} lost; failback {f.get('failback_ms')} ms")
            interval, target = f.get("probe_interval_s"), f.get("target_ms")
    result = {"when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "lab": LAB.name,
              "probe_rate_per_s": 1000, "probe_interval_s": interval,
              "target_ms": target, "target": "failover within 3 RLOC-probe intervals",
              "runs": rows, **{k: spread([x[k] for x in rows]) for k in KEYS},
              "runs_within_target": sum(1 for x in rows if x["within_target"])}
    write_result("failover", result)
    return result


def main(argv):
    runs = int(argv[argv.index("--runs") + 1]) if "--runs" in argv else 5
    r = run(runs, quick="--quick" in argv)
    print(json.dumps({k: r[k] for k in ("probe_interval_s", "target_ms", *KEYS,
                                        "runs_within_target")}))
    print(f"bench_failover: written to {RESULTS / 'failover.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

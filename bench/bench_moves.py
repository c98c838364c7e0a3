"""Convergence and probe loss per mode over repeated moves (root; not part of `make bench`
by default because it takes about a minute per round: `python -m bench.bench_moves N`).

For each of N rounds, every mode plays the demo's move (lab.demo.run_mode) and the capture
analysis measures it. Reports median and max of convergence_ms and probes_lost per mode, and
the time from the start of a LISP mode to the first probe delivered through LISP (the first
probe on DC1's access link, i.e. decapsulated by DC1's xTR)."""
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from captures.analysis import analyze_mode
from lab.demo import Progress, run_mode
from topologies import dc as D


def first_probe_time(pcap, vm):
    from scapy.all import IP, UDP, PcapReader
    with PcapReader(str(pcap)) as r:
        for p in r:
            if IP in p and UDP in p and p[IP].dst == vm and p[UDP].dport == 7000:
                return float(p.time)
    return None


def run(rounds=10, out=sys.stderr):
    progress = Progress(out)
    per_mode = {m: {"convergence_ms": [], "probes_lost": []} for m in D.MODES}
    first_lisp = []
    work = Path(tempfile.mkdtemp(prefix="bench-moves-"))
    try:
        for i in range(rounds):
            for mode in D.MODES:
                mode_dir = work / f"{i}" / mode
                t0 = time.time()
                run_mode(mode, mode_dir, progress)
                r = analyze_mode(mode_dir)
                per_mode[mode]["convergence_ms"].append(r["convergence_ms"])
                per_mode[mode]["probes_lost"].append(r["probes_lost"])
                if mode == "lisp-extended-subnet":
                    t = first_probe_time(mode_dir / "dc1-access.pcap", D.VM["addr"][:-3])
                    if t is not None:
                        first_lisp.append(round(t - t0, 2))
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
            "lisp_mode_start_to_first_probe_delivered_s": summary(first_lisp)}


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    result = run(n)
    out = Path(__file__).resolve().parent / "results"
    out.mkdir(exist_ok=True)
    (out / "moves.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))

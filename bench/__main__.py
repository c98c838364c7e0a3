"""`python -m bench [--quick]`: run the core benchmarks, print and save the numbers."""
import json
import os
import platform
import sys
import time
from pathlib import Path

from bench import bench_core, bench_dataplane, bench_mapcache


def main(argv):
    quick = "--quick" in argv
    results = {"when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
               "python": platform.python_version(), "machine": platform.machine(),
               "cpus": os.cpu_count(), "quick": quick}
    mods = [("core", bench_core), ("mapcache", bench_mapcache)]
    if os.geteuid() == 0:
        mods.append(("dataplane", bench_dataplane))
        mods.append(("kernel", __import__("bench.bench_kernel", fromlist=["run"])))
        mods.append(("te", __import__("bench.bench_te", fromlist=["run"])))
        mods.append(("failover", __import__("bench.bench_failover", fromlist=["run"])))
        mods.append(("moves", __import__("bench.bench_moves", fromlist=["run"])))
    else:
        print("bench: dataplane skipped (needs root: sudo make bench)")
    for name, mod in mods:
        print(f"bench: {name} ...", flush=True)
        results[name] = mod.run(quick=quick)
    out = Path(__file__).resolve().parent / "results"
    out.mkdir(exist_ok=True)
    (out / "core.json").write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    print(f"bench: written to {out / 'core.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

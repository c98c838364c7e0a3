"""Soak: one scenario played back to back, checking after each run that nothing is left.

    sudo .venv/bin/python -m bench.soak [--runs 50] [--scenario FILE]

Each run is a fresh `lisp-lab run FILE` process, as a class replaying a lab would do. After
each run it looks for what a run could leave behind: network namespaces, interfaces
(veth, bridges, TUN devices: anything that was not there before the first run), processes
(our daemons, tcpdump, relays, FRR, Mininet shells), ebtables rules and files under
/run/lisp-lab. While a run plays, a sampler reads the resident memory (VmRSS) of every LISP
daemon every 0.2 s; the peak per node per run shows whether the daemons grow from run to
run. What other live lab runs hold (their records say what) is not counted as left behind.
Writes bench/results/soak.json and prints a summary. Not a test: numbers for a report.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
SAVED_SYSCTLS = "/bridge-nf-saved.json"
OURS = ("nodes.daemon", "tcpdump", "lab/relay.py", "lab.traffic", "/usr/lib/frr/", "mnexec")


def links():
    out = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    return {line.split(":", 2)[1].strip().split("@")[0] for line in out.splitlines()}


def netns():
    return subprocess.run(["ip", "netns", "list"], capture_output=True,
                          text=True).stdout.split()


def ebtables_rules():
    rules = []
    for table in ("filter", "nat"):
        out = subprocess.run(["ebtables", "-t", table, "-L"], capture_output=True,
                             text=True).stdout
        rules += [f"{table}: {x}" for x in out.splitlines() if x.startswith("-")]
    return rules


def others():
    """What other live lab runs hold (another developer's test, a demo): their interfaces,
    the network namespaces of their nodes, their run directory and record. Not leftovers."""
    from lab import cleanup
    held = {"interfaces": set(), "netns": set(), "paths": set()}
    for path, r in cleanup.read_records():
        if not r or not cleanup.run_is_live(r) or str(r.get("run_id", "")).startswith("soak-"):
            continue
        held["interfaces"] |= {i["name"] for i in r.get("interfaces", [])}
        held["netns"] |= {n.get("netns") for n in r.get("nodes", []) if n.get("netns")}
        held["paths"] |= {str(path), str(r.get("run_dir") or path)}
    return held


def our_processes(held):
    from lab.cleanup import proc_cmdline, proc_netns
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid() or proc_netns(int(pid)) in held["netns"]:
            continue
        cmd = " ".join(proc_cmdline(int(pid)) or [])
        if any(x in cmd for x in OURS) and "bench.soak" not in cmd:
            found.append(f"{pid} {cmd.strip()[:120]}")
    return found


def run_files():
    base = Path("/run/lisp-lab")
    return sorted(str(p) for p in base.rglob("*") if p.is_file()) if base.exists() else []


def daemons_rss(run_id):
    """{node: VmRSS in kB} of the LISP daemons of run `run_id` running now."""
    from lab.cleanup import proc_cmdline
    out = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        cmd = proc_cmdline(int(pid)) or []
        if "nodes.daemon" not in cmd or not any(f"/{run_id}/" in a for a in cmd):
            continue
        try:
            node = Path(cmd[cmd.index("nodes.daemon") + 1]).stem
            for line in Path("/proc", pid, "status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    out[node] = max(out.get(node, 0), int(line.split()[1]))
        except (OSError, ValueError, IndexError):
            continue
    return out


def wait_for_idle(timeout=600):
    """Wait until no other lab runs on the machine (their interfaces and processes would
    look like leftovers); True if it became idle."""
    from lab import cleanup
    deadline = time.monotonic() + timeout
    while any(r and cleanup.run_is_live(r) for _, r in cleanup.read_records()):
        if time.monotonic() > deadline:
            return False
        time.sleep(1)
    return True


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--scenario", default=str(ROOT / "topologies" / "labs"
                                              / "demo-lisp-across-subnet.yaml"))
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("bench.soak: needs root", file=sys.stderr)
        return 1
    wait_for_idle()
    base_links, base_rules, base_files = links(), set(ebtables_rules()), set(run_files())
    runs = []
    started = time.monotonic()
    for i in range(args.runs):
        peak, stop = {}, threading.Event()
        run_id = f"soak-{i}"

        def sample():
            while not stop.is_set():
                for node, kb in daemons_rss(run_id).items():
                    peak[node] = max(peak.get(node, 0), kb)
                stop.wait(0.2)

        wait_for_idle(60)      # (another lab using the same names would make ours fail)
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        t0 = time.monotonic()
        r = subprocess.run([sys.executable, "-m", "lab.cli", "run", args.scenario,
                            "--run-id", run_id], capture_output=True, text=True, cwd=ROOT)
        stop.set()
        sampler.join()
        checks = next((line for line in r.stdout.splitlines() if line.startswith("checks:")),
                      "checks: ?")
        held = others()
        new_links = links() - base_links - held["interfaces"]
        left = {"netns": netns(), "interfaces": sorted(new_links),
                "processes": our_processes(held),
                "ebtables": sorted(set(ebtables_rules()) - base_rules) if not held["paths"]
                else [],         # (another lab's DCI rules cannot be told from ours)
                "run_files": sorted(f for f in set(run_files()) - base_files
                                    if not any(f.startswith(p) for p in held["paths"])
                                    # the bridge sysctls saved while any lab runs
                                    and not (held["paths"] and f.endswith(SAVED_SYSCTLS)))}
        left = {k: v for k, v in left.items() if v}
        runs.append({"run": i, "rc": r.returncode, "seconds": round(time.monotonic() - t0, 1),
                     "checks": checks, "leftovers": left, "rss_kb": peak,
                     "error": (r.stderr.strip().splitlines() or [""])[-1] if r.returncode
                     else None})
        subprocess.run(["rm", "-rf", str(ROOT / "captures" / run_id)])
        print(f"[{time.monotonic() - started:7.1f}s] run {i + 1}/{args.runs}: rc {r.returncode}"
              + (f" ({runs[-1]['error']})" if r.returncode else "") + ", "
              f"{checks}, {'nothing left' if not left else 'LEFT: ' + json.dumps(left)}, "
              f"peak RSS " + ", ".join(f"{n} {kb // 1024} MiB" for n, kb in sorted(peak.items())),
              flush=True)
    nodes = sorted({n for r in runs for n in r["rss_kb"]})
    summary = {"scenario": args.scenario, "runs": len(runs),
               "runs_ok": sum(r["rc"] == 0 for r in runs),
               "runs_with_leftovers": sum(bool(r["leftovers"]) for r in runs),
               "seconds_per_run": {"min": min(r["seconds"] for r in runs),
                                   "median": statistics.median(r["seconds"] for r in runs),
                                   "max": max(r["seconds"] for r in runs)},
               "peak_rss_kb": {n: {"first": runs[0]["rss_kb"].get(n),
                                   "last": runs[-1]["rss_kb"].get(n),
                                   "min": min(r["rss_kb"].get(n, 0) for r in runs),
                                   "median": statistics.median(r["rss_kb"].get(n, 0)
                                                               for r in runs),
                                   "max": max(r["rss_kb"].get(n, 0) for r in runs)}
                               for n in nodes}}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "soak.json").write_text(json.dumps({"summary": summary, "runs": runs},
                                                  indent=1))
    print(json.dumps(summary, indent=1))
    return 0 if summary["runs_with_leftovers"] == 0 and summary["runs_ok"] == len(runs) else 1


if __name__ == "__main__":
    sys.exit(main())

"""The kernel data path against the Python path and plain routing (issue 10), root.

    sudo .venv/bin/python -m bench.bench_kernel [--quick] [--reps N]

One lab (tests/data/kernel-lab.yaml: kph1 - kpx1 - kpr0 - kpx2 - kph2), one run, three
ways, interleaved (plain, python, kernel, plain, python, kernel, ...), 3 repetitions:
  plain   kernel routing through the same nodes, no daemons, no encapsulation
  plain_wire  the same with TSO/GSO off on the core links (wire-sized frames there, as
          the xTRs' LISP packets are)
  python  our xTR daemons, `[dataplane] path = "python"` (TUN, Python threads)
  kernel  our xTR daemons, `[dataplane] path = "kernel"` (tc-BPF, punts to Python)
Each: TCP (iperf3, one stream) and unpaced 64-byte UDP (iperf3 -u -l 64 -b 0, packets/s
received), the xTR daemons' CPU seconds (user + system of their processes: the kernel
path's work is softirq time and is not in them, so the machine's busy CPU seconds are
recorded too) and both per gigabyte of TCP. Min/median/max per figure; written to
bench/results/kernel.json and printed. The same method as bench/bench_dataplane.py
(iperf3 arguments, a 4 MiB receive buffer for the UDP runs).
"""
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from bench.common import spread, write_result
from lab.backend import Network
from lab.emu import wait_for
from topologies.model import load

PY = sys.executable
LAB = Path(__file__).resolve().parent.parent / "tests" / "data" / "kernel-lab.yaml"
XTRS = ("kpx1", "kpx2")
MODES = ("plain", "plain_wire", "python", "kernel")
# plain_wire: the xTRs' uplinks and the router's ports segment in software (tso, gso off),
# so the core carries wire-sized frames, as LISP must (issue 10, item 1); plain routing over
# veths otherwise forwards the hosts' 64 KiB GSO packets whole.
WIRE = {"kpx1": ["kpx1-kpr0"], "kpx2": ["kpx2-kpr0"], "kpr0": ["kpr0-kpx1", "kpr0-kpx2"]}
CLK = os.sysconf("SC_CLK_TCK")


def iperf(lab, workdir, dst_ip, args, tag, seconds):
    srv = lab.start_process("kph2", ["iperf3", "-s", "-1"], Path(workdir) / f"iperf-{tag}.log")
    time.sleep(0.5)
    r = lab.run("kph1", ["iperf3", "-c", dst_ip, "-J", "-t", str(seconds), *args],
                timeout=seconds + 20)
    srv.wait(10)
    return json.loads(r.stdout)


def _tree(pid):
    """pid and its descendants."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        for task in Path(f"/proc/{p}/task").glob("*"):
            try:
                todo += [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                pass
    return out


def proc_cpu(pids):
    """User + system CPU seconds of processes (and their descendants)."""
    total = 0
    for pid in pids:
        for p in _tree(pid):
            try:
                f = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
                total += int(f[11]) + int(f[12])
            except (OSError, IndexError, ValueError):
                pass
    return total / CLK


def machine_cpu():
    """Busy CPU seconds of the whole machine (every CPU), from /proc/stat."""
    f = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = f[3] + f[4]
    return (sum(f[:8]) - idle) / CLK


def measure(lab, workdir, dst_ip, tag, pids, seconds):
    out = {}
    c0, m0 = proc_cpu(pids), machine_cpu()
    tcp = iperf(lab, workdir, dst_ip, [], f"{tag}-tcp", seconds)["end"]
    c1, m1 = proc_cpu(pids), machine_cpu()
    rx = tcp["sum_received"]
    gb = rx["bytes"] / 1e9
    out["tcp_gbit_s"] = round(rx["bits_per_second"] / 1e9, 3)
    out["tcp_retransmits"] = tcp["sum_sent"].get("retransmits", 0)
    out["tcp_xtr_cpu_s"] = round(c1 - c0, 2)
    out["tcp_xtr_cpu_s_per_gb"] = round((c1 - c0) / gb, 3) if gb else None
    out["tcp_machine_cpu_s_per_gb"] = round((m1 - m0) / gb, 3) if gb else None
    c0 = proc_cpu(pids)
    s = iperf(lab, workdir, dst_ip, ["-u", "-l", "64", "-b", "0", "-w", "4M"], f"{tag}-udp",
              seconds)["end"]["sum"]
    out["udp64_xtr_cpu_s"] = round(proc_cpu(pids) - c0, 2)
    out["udp64_sent_pps"] = round(s["packets"] / s["seconds"])
    out["udp64_received_pps"] = round((s["packets"] - s["lost_packets"]) / s["seconds"])
    return out


def set_path(net, path):
    """(Re)start both xTR daemons with `[dataplane] path = PATH`; wait until they answer
    and the sites reach each other."""
    for node in XTRS:
        proc = net.daemons.get(node)
        if proc is not None and proc.alive:
            net.stop_daemon(node)
            proc.wait(10)
        cfg = net.daemon_paths[node]
        text = cfg.read_text()
        text = text.replace('path = "kernel"', f'path = "{path}"').replace(
            'path = "python"', f'path = "{path}"')
        cfg.write_text(text)
        net.start_daemon(node)
    ok = wait_for(lambda: all(net.answers(n) for n in XTRS), 15, 0.1)
    assert ok, "xTR daemons not answering"
    h2 = str(net.model.hosts["kph2"].addr(4))
    h1 = str(net.model.hosts["kph1"].addr(4))
    for a, b in (("kph1", h2), ("kph2", h1)):
        assert wait_for(lambda: net.lab.run(a, ["ping", "-c1", "-W1", b]).returncode == 0,
                        20, 0.2), f"{a} cannot reach {b} ({path})"
    if path == "kernel":
        from nodes.control import query
        for node in XTRS:
            c = query(net.socket(node), {"show": "counters"})["data"]
            assert c.get("kernel_path") == 1, f"{node}: kernel path not running"


def summary(rows):
    out = {key: spread(r.get(key) for r in rows) for key in rows[0]}
    return {k: v for k, v in out.items() if v is not None}


def run(quick=False, reps=3):
    seconds = 2 if quick else 5
    model = load(LAB)
    results = {"when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
               "cpus": os.cpu_count(), "kernel": os.uname().release, "seconds": seconds,
               "repetitions": reps, "order": "interleaved: " + ", ".join(MODES)}
    raw = {m: [] for m in MODES}
    dst = str(model.hosts["kph2"].addr(4))
    with tempfile.TemporaryDirectory() as workdir, Network(model, workdir,
                                                           run_id="bench-kernel") as net:
        lab = net.lab
        prefixes = [(str(model.sites[s].eid_prefixes[0]), model.rloc(model.sites[s].gateway))
                    for s in ("kpsite1", "kpsite2")]
        net.start_daemons(overrides={n: {"dataplane": {"path": "kernel"}} for n in XTRS})
        for rep in range(reps):
            for mode in MODES:
                if mode.startswith("plain"):
                    for node in XTRS:
                        if net.daemons[node].alive:
                            net.stop_daemon(node)
                            net.daemons[node].wait(10)
                    for node, devs in WIRE.items():
                        for dev in devs:
                            onoff = "off" if mode == "plain_wire" else "on"
                            lab.run(node, ["ethtool", "-K", dev, "tso", onoff, "gso", onoff])
                    for prefix, via in prefixes:
                        lab.run("kpr0", ["ip", "route", "replace", prefix, "via", via])
                    pids = []
                else:
                    for prefix, _ in prefixes:
                        lab.run("kpr0", ["ip", "route", "del", prefix])
                    for node, devs in WIRE.items():
                        for dev in devs:
                            lab.run(node, ["ethtool", "-K", dev, "tso", "on", "gso", "on"])
                    set_path(net, mode)
                    pids = [net.daemons[n].pid for n in XTRS]
                print(f"bench_kernel: repetition {rep + 1}/{reps}: {mode}", flush=True)
                row = measure(lab, workdir, dst, f"{mode}-{rep}", pids, seconds)
                if mode == "kernel":
                    from nodes.control import query
                    c = query(net.socket("kpx1"), {"show": "counters"})["data"]
                    row["kpx1_kernel_encapsulated"] = c.get("kernel_encapsulated", 0)
                    row["kpx1_python_encapsulated"] = (c.get("packets_encapsulated", 0)
                                                       - row["kpx1_kernel_encapsulated"])
                raw[mode].append(row)
    results["runs"] = raw
    results["summary"] = {m: summary(raw[m]) for m in MODES}
    med = {m: results["summary"][m] for m in MODES}
    for key in ("tcp_gbit_s", "udp64_received_pps"):
        for base in ("plain", "plain_wire"):
            p = med[base][key]["median"]
            for m in ("python", "kernel"):
                results[f"{m}_over_{base}_{key}"] = (round(med[m][key]["median"] / p, 3)
                                                     if p else None)
    write_result("kernel", results)
    return results


def main(argv):
    reps = int(argv[argv.index("--reps") + 1]) if "--reps" in argv else 3
    results = run("--quick" in argv, reps)
    s = results["summary"]
    print(json.dumps(results, indent=2))
    print("\nmedian (min-max) over", results["repetitions"], "interleaved repetitions:")
    for m in MODES:
        t, u = s[m]["tcp_gbit_s"], s[m]["udp64_received_pps"]
        cpu = s[m].get("tcp_xtr_cpu_s_per_gb", {}).get("median")
        print(f"  {m:10s} TCP {t['median']:.3f} ({t['min']:.3f}-{t['max']:.3f}) Gbit/s   "
              f"64-byte UDP {u['median']:,.0f} ({u['min']:,.0f}-{u['max']:,.0f}) pps   "
              f"xTR CPU {cpu} s/GB")
    print("bench_kernel: written to bench/results/kernel.json")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

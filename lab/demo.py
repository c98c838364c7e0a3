"""`lisp-lab demo`: the same VM move played in every mode, captured, measured and reported.

For each mode: build the two-data-center network (topologies/dc.py), configure the mode,
start a capture on every named link, start the LISP daemons (LISP modes), start the VM's
echo server, let the VM announce itself, start the client's probe flow (1000/s) and a
long-lived TCP session, move the VM from DC1 to DC2 (live: its switch-side interface is
re-attached; cold: its link is down for a while first), let it announce itself again, keep
the traffic running, stop everything, and analyse the captures. At the end: report.md,
report.json and plots in captures/<run-id>/.

Every namespace, link, process and capture a mode started is gone when the mode ends, also
after Ctrl-C (the Lab stops on signals) and after a crash (`lisp-lab clean`).
"""
import json
import re
import signal
import sys
import time
from pathlib import Path

from topologies import dc as D

PY = sys.executable
ROOT = Path(__file__).resolve().parent.parent
CAPTURES_DIR = ROOT / "captures"


class Progress:
    def __init__(self, out=sys.stdout):
        self.out = out
        self.t0 = time.monotonic()

    def __call__(self, text):
        print(f"[{time.monotonic() - self.t0:6.1f}s] {text}", file=self.out, flush=True)


def _drops(tcpdump):
    """Packets tcpdump reported as dropped by the kernel (None when it did not say)."""
    m = re.search(r"(\d+) packets? dropped by kernel", tcpdump.read_log())
    return int(m.group(1)) if m else None


def wire_sized(net, endpoints):
    """Turn offloads off at both ends of each captured link ((node, interface) pairs), so
    that tcpdump sees what a wire carries: with them on, a veth hands over TCP and UDP
    super-packets of up to 64 KiB (one "packet" for 45) and unfinished checksums, and the
    counts of the analysis would be wrong. (Relayed links have them off already.)"""
    from lab.delay import offloads_off
    problems = [p for node, name in endpoints for p in offloads_off(net[node].intf(name))]
    if problems:
        raise RuntimeError("cannot turn offloads off for wire-true captures: "
                           + "; ".join(problems))


def _answers(sock_dir, node):
    from nodes.control import ControlError, query
    try:
        query(str(Path(sock_dir) / f"{node}.sock"), {"show": "config"})
        return True
    except ControlError:
        return False


def _registered(sock_dir, eid):
    from nodes.control import ControlError, query
    try:
        rows = query(str(Path(sock_dir) / "msmr.sock"), {"show": "registrations"})["data"]
    except ControlError:
        return False
    return any(r["eid"] == eid for r in rows)


def run_mode(mode, mode_dir, progress, before_s=2.0, after_s=4.0, cold_s=0.0):
    """Play one move in `mode`; writes pcaps, traffic results and links.json into
    `mode_dir` and returns (links.json dict, delay emulation used)."""
    from lab.emu import Lab, wait_for
    mode_dir.mkdir(parents=True, exist_ok=True)
    vm_ip = D.VM["addr"].split("/")[0]
    with Lab(D.DataCenterTopo(), run_id=f"demo-{mode}-{int(time.time())}") as lab:
        net = lab.net
        D.configure(net, mode)
        try:
            if mode == "host-route":          # the core routes with OSPF (FRR)
                from lab import frr
                frr.start_core_ospf(lab, mode_dir)
                progress(f"{mode}: OSPF adjacencies up, routes in place")
            captures = []
            links = {n: c for n, c in D.CAPTURES.items()
                     if not (n == "dci" and mode == "lisp-across-subnet")}   # no DCI there
            wire_sized(net, links.values())
            for name, (node, intf) in links.items():
                cap = lab.start_process(node, ["tcpdump", "-n", "-U", "-s", "200", "-i", intf,
                                               "-w", mode_dir / f"{name}.pcap"],
                                        mode_dir / f"tcpdump-{name}.log", name=f"tcpdump-{name}")
                captures.append(cap)
            wait_for(lambda: all("listening on" in c.read_log() for c in captures), 5)
            daemons = {}
            if mode in D.LISP_MODES:
                for node, cfg in D.daemon_configs(mode, mode_dir, lab.run_dir).items():
                    daemons[node] = lab.start_process(node, [PY, "-m", "nodes.daemon", cfg],
                                                      mode_dir / f"{node}.log",
                                                      name=f"lisp-{node}")
                ready = wait_for(lambda: all(_answers(lab.run_dir, n) for n in daemons), 15, 0.1)
                progress(f"{mode}: LISP daemons {'ready' if ready else 'NOT ready'}")
            lab.start_process("vm", [PY, "-m", "lab.traffic", "echo"],
                              mode_dir / "echo.log", name="echo")
            announce = [PY, "-m", "lab.traffic", "announce", "--iface", "vm-eth0",
                        "--ip", vm_ip, "--ip6", D.VM["addr6"].split("/")[0]]
            lab.run("vm", announce, timeout=10)
            # As a booting VM does: resolve and use its gateway (in an extended subnet this
            # is what shows DC1's xTR that the VM is local).
            lab.run("vm", ["ping", "-c", "1", "-W", "1", D.VM["gw"]], timeout=5)
            if daemons:
                ok = wait_for(lambda: _registered(lab.run_dir, "10.10.0.5/32"), 10, 0.1)
                progress(f"{mode}: VM registered by DC1's xTR" if ok else
                         f"{mode}: VM NOT registered (see {mode_dir}/xtr1.log)")
            # Warm the path so the measurement starts from a working state.
            wait_for(lambda: lab.run("c1", ["ping", "-c1", "-W1", vm_ip]).returncode == 0, 10)
            total = before_s + after_s + cold_s + 1
            probe = lab.start_process("c1", [PY, "-m", "lab.traffic", "probe", "--dst", vm_ip,
                                             "--rate", "1000", "--duration", str(total),
                                             "--out", mode_dir / "probe.json"],
                                      mode_dir / "probe.log", name="probe")
            tcp = lab.start_process("c1", [PY, "-m", "lab.traffic", "tcp", "--dst", vm_ip,
                                           "--duration", str(total),
                                           "--out", mode_dir / "tcp.json"],
                                    mode_dir / "tcp.log", name="tcp")
            time.sleep(before_s)
            progress(f"{mode}: moving the VM to DC2")
            move_time = time.time()
            if cold_s:
                lab.run(None, ["ip", "link", "set", "dev", "s1-vm", "down"])
                time.sleep(cold_s)
            D.move_vm(net)
            if cold_s:
                lab.run(None, ["ip", "link", "set", "dev", "s1-vm", "up"])
            lab.run("vm", announce, timeout=10)
            move_done = time.time()
            routes = None
            if mode == "host-route":
                # Route health injection: r1's table before/after, when the /32 reached r1.
                routes = frr.inject_host_route(lab)
                routes["on_r1_ms"] = round((routes["on_r1_at"] - move_time) * 1000.0, 1)
                progress(f"{mode}: host route {routes['prefix']} on r1 (OSPF) "
                         f"{routes['on_r1_ms']} ms after the move")
            probe.wait(total + 10)
            tcp.wait(15)
            for c in captures:
                c.stop(signal.SIGINT)  # tcpdump flushes its buffer on SIGINT
            from lab.delay import delay_emulation
            delay = delay_emulation(lab)
            meta = {"mode": mode, "links": [{"name": n, "role": D.ROLES.get(n, "core"),
                                             "capture_drops": _drops(captures[i])}
                                            for i, n in enumerate(links)],
                    "client": D.CLIENT["addr"].split("/")[0], "vm": vm_ip,
                    "move_time": move_time, "move_done": move_done,
                    "delay_emulation": delay,
                    "expected_path_before": D.expected_path(mode, "before"),
                    "expected_path_after": D.expected_path(mode, "after"),
                    "core_routes": routes,
                    "core_routing": "ospf" if mode == "host-route" else "static"}
            meta["move"] = f"cold ({cold_s} s down)" if cold_s else "live"
            (mode_dir / "links.json").write_text(json.dumps(meta, indent=1))
            return meta, delay
        finally:
            D.unconfigure(net, mode)


def run_demo(run_id=None, modes=D.MODES, out=sys.stdout, cold_s=0.0):
    """All modes, then the report. Returns the run directory and the modes' results.

    The demo's start (wall clock) is kept in <run-dir>/demo.json: report.json's
    demo_start_to_first_lisp_probe_s counts from it."""
    started = time.time()
    from captures.analysis import analyze_mode
    from captures.report import DEMO_JSON, demo_start_to_first_lisp_probe, write_report
    progress = Progress(out)
    run_id = run_id or time.strftime("%Y%m%d-%H%M%S")
    run_dir = CAPTURES_DIR / run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / DEMO_JSON).write_text(json.dumps({"demo_start": started}) + "\n")
    results, delay = {}, None
    for mode in modes:
        progress(f"{mode}: starting")
        meta, delay = run_mode(mode, run_dir / mode, progress, cold_s=cold_s)
        results[mode] = analyze_mode(run_dir / mode)
        r = results[mode]
        progress(f"{mode}: convergence {r.get('convergence_ms')} ms, DCI packets after move "
                 f"{r.get('dci_packets_after_move')}, probes lost {r.get('probes_lost')}")
    first = demo_start_to_first_lisp_probe(run_dir, results, started)
    if first is not None:
        progress(f"demo start to the first probe delivered through LISP: {first:.1f} s")
    paths = write_report(run_dir, results, delay, first)
    progress(f"report: {paths}")
    return run_dir, results

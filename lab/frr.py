"""FRR (zebra, staticd, ospfd) in the lab's namespaces: real OSPF for labs with `routing: ospf`.

    from lab import frr
    frr.start(lab, model.frr_configs(), log_dir)    # every node's daemons, in its namespace
    frr.wait_for_routes(lab, model.ospf_nodes(), model.ospf_prefixes())
    frr.inject(lab, "xtr2", "10.10.0.5/32", "xtr2-lan", model.routers)

Each node's daemons get a directory of their own, <run dir>/frr/<node>/ (lab.run_dir): the
config files, the pid files, the vty sockets and zebra's socket (zserv.api), all passed on the
command line (-f, -i, --vty_socket, -z), so nothing is shared between nodes or with a system
FRR, and /etc/frr is never written. The daemons run in the foreground, started with
lab.start_process: the Lab stops them with everything else, also on Ctrl-C or an exception,
and they are in the run record. They run as the user `frr` where it exists (as a system FRR
does; then they can also remove their scratch directory under /var/tmp/frr when they stop),
else as root. Changing user clears their parent-death signal (any change of credentials
does, and FRR refuses to run as plain root:root when built with a vty group), so after a
SIGKILL of the lab they live on until `lisp-lab clean` stops them.
"""
import os
import pwd
import time
from pathlib import Path

from .emu import wait_for

FRR_BIN = Path("/usr/lib/frr")
DAEMONS = ("zebra", "staticd", "ospfd")          # zebra first: the others connect to it
START_TIMEOUT = 10.0


def _user():
    """(user, uid, gid) the daemons run as."""
    try:
        u = pwd.getpwnam("frr")
    except KeyError:
        u = pwd.getpwnam("root")
    return u.pw_name, u.pw_uid, u.pw_gid


def node_dir(lab, node):
    """Where one node's FRR files live."""
    return lab.run_dir / "frr" / node


def _argv(lab, node, daemon):
    d, user = node_dir(lab, node), _user()[0]
    return [FRR_BIN / daemon, "-f", d / f"{daemon}.conf", "-i", d / f"{daemon}.pid",
            "--vty_socket", d, "-z", d / "zserv.api", "-u", user, "-g", user,
            "-P", "0", "--log", "stdout"]


def _fail(procs, what):
    logs = "\n".join(f"--- {p.name} ({p.log_path})\n{p.read_log()[-1500:]}" for p in procs)
    raise RuntimeError(f"FRR: {what}\n{logs}")


def start(lab, configs, log_dir=None, timeout=START_TIMEOUT):
    """Write each node's configs ({node: {daemon: text}}) and start its daemons in its
    namespace; returns {node: {daemon: LabProcess}} once every daemon has its vty socket.
    Logs go to <log_dir>/frr-<node>-<daemon>.log (default: the node's directory)."""
    procs = {}

    def launch(node, daemon):
        d = node_dir(lab, node)
        log = Path(log_dir or d) / f"frr-{node}-{daemon}.log"
        procs[node][daemon] = lab.start_process(node, _argv(lab, node, daemon), log,
                                                name=f"frr-{node}-{daemon}")

    def up(sockets):
        dead = [p for n in procs.values() for p in n.values() if not p.alive]
        if dead:
            _fail(dead, "a daemon exited while starting")
        return all(s.exists() for s in sockets)

    for node, texts in configs.items():
        d = node_dir(lab, node)
        d.mkdir(parents=True, exist_ok=True)
        os.chown(d, *_user()[1:])        # pid files and sockets are written after setuid
        for daemon in DAEMONS:
            (d / f"{daemon}.conf").write_text(texts[daemon])
        procs[node] = {}
        launch(node, "zebra")
    if not wait_for(lambda: up([node_dir(lab, n) / "zserv.api" for n in configs]), timeout):
        _fail([p["zebra"] for p in procs.values()], "zebra did not open its socket")
    for node in configs:
        for daemon in DAEMONS[1:]:
            launch(node, daemon)
    sockets = [node_dir(lab, n) / f"{d}.vty" for n in configs for d in DAEMONS]
    if not wait_for(lambda: up(sockets), timeout):
        _fail([p for n in procs.values() for p in n.values()], "no vty socket")
    return procs


def vtysh(lab, node, *commands, daemon=None, timeout=10):
    """Run vtysh commands on `node`'s daemons (only on `daemon` if given: vtysh starts
    faster); returns the output, raises if a command fails. vtysh keeps its command history
    in $HOME: here the node's directory."""
    d = node_dir(lab, node)
    argv = ["vtysh", "--vty_socket", d] + (["-d", daemon] if daemon else [])
    for c in commands:
        argv += ["-c", c]
    r = lab.run(node, argv, timeout=timeout, env={**os.environ, "HOME": str(d)})
    if r.returncode != 0:
        raise RuntimeError(f"{node}: vtysh {' / '.join(commands)} failed: "
                           f"{(r.stdout + r.stderr).strip()}")
    return r.stdout


def routes(lab, node):
    """`node`'s IPv4 kernel routing table, as `ip route` prints it."""
    return lab.run(node, ["ip", "-4", "route"]).stdout


def ospf_routes(lab, node):
    """The destinations of `node`'s kernel routes that OSPF installed (proto ospf)."""
    out = lab.run(node, ["ip", "-4", "route", "show", "proto", "ospf"]).stdout
    return {_prefix(line.split()[0]) for line in out.splitlines() if line.strip()}


def _prefix(dst):
    return dst if "/" in dst else f"{dst}/32"


def wait_for_routes(lab, nodes, prefixes, timeout=START_TIMEOUT):
    """Wait until each of `nodes` has a kernel route to each of `prefixes` (connected or
    learnt); raise naming what is missing when `timeout` passes."""
    def missing():
        out = {}
        for node in nodes:
            table = lab.run(node, ["ip", "-4", "route"]).stdout
            have = {_prefix(line.split()[0]) for line in table.splitlines() if line.strip()}
            lost = sorted(set(prefixes) - have)
            if lost:
                out[node] = lost
        return out

    if wait_for(lambda: not missing(), timeout, 0.1):
        return
    raise RuntimeError(f"OSPF did not converge within {timeout} s; routes missing: {missing()} "
                       f"(adjacencies: `vtysh -c 'show ip ospf neighbor'` in the nodes, logs "
                       f"frr-<node>-ospfd.log)")


# --- route health injection ------------------------------------------------------------

def inject(lab, node, prefix, lan, routers, timeout=5.0):
    """Route health injection: `node` adds a static route for `prefix` toward its `lan`
    interface through vtysh; ospfd redistributes it. Waits until it is an OSPF route on
    every router of `routers` (the first of them is the one watched closely).

    Returns what changed: {"prefix", "node", "before" and "after" (the first router's
    `ip route`), "injected_at" and "configured_at" (unix times: vtysh started, vtysh done;
    vtysh itself takes about 0.1 s to start), "on_r1_at" (first poll that saw it on the
    first router as an OSPF route), "on_all_at" (the same on every router)}."""
    first = routers[0]
    before = routes(lab, first)
    injected_at = time.time()
    vtysh(lab, node, "configure terminal", f"ip route {prefix} {lan}", daemon="staticd")
    configured_at = time.time()
    on_first = wait_for(lambda: prefix in ospf_routes(lab, first) and time.time(),
                        timeout, 0.005)
    on_all = wait_for(lambda: all(prefix in ospf_routes(lab, r) for r in routers)
                      and time.time(), timeout, 0.02)
    if not on_all:
        raise RuntimeError(f"the host route {prefix} injected on {node} did not reach "
                           f"every core router as an OSPF route within {timeout} s")
    return {"prefix": prefix, "node": node, "before": before, "after": routes(lab, first),
            "injected_at": injected_at, "configured_at": configured_at,
            "on_r1_at": on_first, "on_all_at": on_all}

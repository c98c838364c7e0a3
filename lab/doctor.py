"""`lisp-lab doctor`: what this machine gives the lab, what will be degraded, how to fix each.

Every check has a name, a status (ok, degraded or missing), one line of detail and a fix.
A check marked `needed` is one without which no lab can run (root, Mininet, tcpdump, a TUN
device...): only such a check missing makes the command exit 1. Anything else is reported
and the command exits 0: without netem the userspace relay adds the link delays, without
FRR the OSPF labs cannot run, without the compiled tc-BPF program xTRs use the Python path.

Facts come from a Probes object, one method per thing read from the machine; the checks
turn facts into verdicts without touching the machine, so the unit tests hand them a
stand-in. The kernel features of the data plane are tried for real, the way the daemons
use them, by a child process in a throwaway network namespace (`python -m lab.doctor
--kernel-facts`, which prints them as JSON): a TUN with the virtio-net header and
offloads, a UDP_SEGMENT send, UDP_GRO, tx-udp-segmentation turned off on a veth, the
control port's steered SO_REUSEPORT pair, an AF_PACKET socket (the relay's), and the
kernel fast path loaded and attached to a veth. Nothing of it outlives the namespace,
except that bpffs is mounted on /sys/fs/bpf where it was not (as a fast-path daemon does).
"""
import argparse
import importlib
import json
import os
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OK, DEGRADED, MISSING = "ok", "degraded", "missing"
KERNEL_FACTS_TIMEOUT = 90.0       # loading the BPF object takes a few seconds on a busy host
PYTHON_PACKAGES = ("scapy", "pyroute2", "matplotlib", "yaml")
SBIN = ("/usr/sbin", "/sbin", "/usr/bin", "/bin")
INSTALL = "sudo make install"
AGAIN = "sudo .venv/bin/lisp-lab doctor"


@dataclass(frozen=True)
class Check:
    name: str
    status: str                  # OK, DEGRADED or MISSING
    detail: str                  # one line: what was found
    fix: str = ""                # one line: what to do (empty when ok)
    needed: bool = False         # missing means no lab can run here


# --- facts ---------------------------------------------------------------------------------

class Probes:
    """The machine as the checks see it. Each method reads one thing and never changes the
    machine (kernel_facts works in a namespace of its own); tests pass a stand-in."""

    def euid(self):
        return os.geteuid()

    def os_release(self):
        """{ID, VERSION_ID, PRETTY_NAME, ...} of /etc/os-release ({} when unreadable)."""
        try:
            text = Path("/etc/os-release").read_text()
        except OSError:
            return {}
        pairs = (line.split("=", 1) for line in text.splitlines() if "=" in line)
        return {k.strip(): v.strip().strip('"') for k, v in pairs}

    def kernel_release(self):
        return os.uname().release

    def python_version(self):
        return tuple(sys.version_info[:3])

    def import_error(self, module):
        """None when `module` imports in this interpreter, else the error in one line."""
        try:
            importlib.import_module(module)
        except Exception as e:              # noqa: BLE001 (a broken package says anything)
            return f"{type(e).__name__}: {e}".splitlines()[0]
        return None

    def mininet_version(self):
        try:
            from mininet.net import VERSION
        except Exception:                   # noqa: BLE001
            return None
        return VERSION

    def tool(self, name):
        """The path of program `name` (also in the sbin directories a sudo PATH may lack)."""
        found = shutil.which(name)
        if found:
            return found
        for d in SBIN:
            if os.access(f"{d}/{name}", os.X_OK):
                return f"{d}/{name}"
        return None

    def frr_missing(self):
        """The FRR programs the OSPF labs start that are not installed ([] when all are)."""
        from lab.frr import DAEMONS, FRR_BIN
        return [d for d in DAEMONS if not os.access(FRR_BIN / d, os.X_OK)] + \
            ([] if self.tool("vtysh") else ["vtysh"])

    def netem(self):
        """(available, detail): a netem qdisc tried in a throwaway namespace (needs root)."""
        from lab.netem import probe_netem
        return probe_netem()

    def kernel_facts(self):
        """{fact: {"ok": bool, "detail": str, ...}} from a child process in a throwaway
        network namespace (needs root), or {"error": text} when that child failed."""
        from lab.netem import enter_new_netns
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
        try:
            r = subprocess.run([sys.executable, "-m", "lab.doctor", "--kernel-facts"],
                               preexec_fn=enter_new_netns, env=env, cwd=str(ROOT),
                               stdin=subprocess.DEVNULL, capture_output=True, text=True,
                               timeout=KERNEL_FACTS_TIMEOUT)
        except (OSError, subprocess.SubprocessError) as e:
            return {"error": f"the probe did not run: {e}"}
        try:
            facts = json.loads(r.stdout.strip().splitlines()[-1])
        except (IndexError, ValueError):
            tail = (r.stderr.strip().splitlines() or ["no output"])[-1]
            return {"error": f"the probe failed (exit {r.returncode}): {tail}"}
        return facts

    def bpf_object(self):
        from nodes.kernelpath import object_path
        p = object_path()
        return str(p) if p else None

    def runs(self):
        """[{"run_id", "live", "pid"}] of the run records in /run/lisp-lab/runs/."""
        from lab import cleanup
        out = []
        for path, record in cleanup.read_records():
            if record is None:
                out.append({"run_id": path.stem, "live": False, "pid": None})
            else:
                out.append({"run_id": record.get("run_id", path.stem),
                            "live": cleanup.run_is_live(record),
                            "pid": (record.get("owner") or {}).get("pid")})
        return out

    def stale_pins(self):
        """Pinned BPF programs under /sys/fs/bpf/lisp-lab/ of fast-path daemons that died."""
        from nodes.kernelpath import PIN_ROOT
        try:
            pins = sorted(Path(PIN_ROOT).iterdir())
        except OSError:
            return []
        return [str(p) for p in pins if p.name.rsplit("-", 1)[-1].isdigit()
                and not Path(f"/proc/{p.name.rsplit('-', 1)[-1]}").exists()]

    def sysctls_saved(self):
        """True when a run saved the bridge-netfilter sysctls to put them back later."""
        from lab.cleanup import SYSCTL_SAVE
        return SYSCTL_SAVE.exists()


# --- checks: facts in, verdicts out ----------------------------------------------------------

def _ubuntu(osr):
    return osr.get("ID") == "ubuntu" or "ubuntu" in osr.get("ID_LIKE", "").split()


def check_root(p):
    if p.euid() == 0:
        return Check("root", OK, "running as root", needed=True)
    return Check("root", MISSING, "not root: a lab creates network namespaces, links and "
                 "TUN devices", "run the lab's commands with sudo: " + AGAIN, needed=True)


def check_python(p):
    v = p.python_version()
    if v < (3, 10):
        return Check("python", MISSING, f"Python {'.'.join(map(str, v))}: the lab needs 3.10 "
                     "or later", "use Debian 12 or Ubuntu 22.04/24.04, then " + INSTALL,
                     needed=True)
    modules = PYTHON_PACKAGES + (("tomli",) if v < (3, 11) else ())
    bad = [f"{m} ({err})" for m in modules for err in [p.import_error(m)] if err]
    if bad:
        return Check("python", MISSING, f"Python {'.'.join(map(str, v))} lacks "
                     + "; ".join(bad), INSTALL + " (the venv gets them)", needed=True)
    return Check("python", OK, f"Python {'.'.join(map(str, v))} with "
                 + ", ".join(modules), needed=True)


def check_mininet(p):
    version = p.mininet_version()
    mnexec = p.tool("mnexec")
    if version and mnexec:
        return Check("mininet", OK, f"Mininet {version} ({mnexec})", needed=True)
    what = ("the mininet package does not import in this Python" if not version
            else "mnexec is not installed")
    return Check("mininet", MISSING, what + " (the lab builds its networks with it)",
                 INSTALL + " (Debian's mininet package; the venv sees it through "
                 "--system-site-packages)", needed=True)


# (name, programs, needed, what goes without them)
TOOLS = (
    ("iproute2", ("ip", "tc"), True, "links, addresses, routes and qdiscs"),
    ("ethtool", ("ethtool",), True, "offloads off for wire-true captures and the relay"),
    ("tcpdump", ("tcpdump",), True, "the captures on every named link"),
    ("tshark", ("tshark",), False,
     "the wire-format tests against Wireshark's dissector fail (labs run)"),
    ("iperf3", ("iperf3",), False, "`traffic: iperf3` steps and the benchmarks cannot run"),
    ("ebtables", ("ebtables",), False,
     "labs with a DCI (the demo's extended-subnet modes) cannot filter its gateway frames"),
)


def check_tools(p):
    out = []
    for name, programs, needed, role in TOOLS:
        missing = [t for t in programs if not p.tool(t)]
        if not missing:
            out.append(Check(name, OK, ", ".join(p.tool(t) for t in programs), needed=needed))
        elif needed:
            out.append(Check(name, MISSING, f"{', '.join(missing)} not installed: needed for "
                             + role, INSTALL, needed=True))
        else:
            out.append(Check(name, DEGRADED, f"{', '.join(missing)} not installed: " + role,
                             INSTALL))
    return out


def check_frr(p):
    missing = p.frr_missing()
    if not missing:
        return Check("frr", OK, "zebra, staticd, ospfd and vtysh (OSPF labs, host-route mode)")
    return Check("frr", DEGRADED, f"no {', '.join(missing)}: the labs with `routing: ospf` "
                 "(the demo's host-route mode, fail-core-link) cannot run", INSTALL)


def _netem_fix(osr, kernel):
    if _ubuntu(osr):
        return (f"sudo apt-get install linux-modules-extra-{kernel} && sudo modprobe "
                "sch_netem")
    return ("sudo modprobe sch_netem; if it is not found, boot a kernel built with "
            "CONFIG_NET_SCH_NETEM (Debian's and Ubuntu's own kernels are)")


def check_delays(p, facts):
    osr, kernel = p.os_release(), p.kernel_release()
    ok, detail = p.netem()
    if ok:
        return Check("link delays", OK, "netem qdiscs (sch_netem): delays, loss and "
                     "bandwidth limits", needed=True)
    relay = _fact(facts, "af_packet")
    why = f"no netem ({detail.rstrip('.')})"
    if relay.get("ok"):
        return Check("link delays", DEGRADED, why + ": the userspace relay (AF_PACKET) adds "
                     "delays and loss; bandwidth limits are dropped",
                     _netem_fix(osr, kernel), needed=True)
    return Check("link delays", MISSING, why + " and no AF_PACKET socket for the relay ("
                 + relay["detail"] + "): delayed links cannot be built",
                 _netem_fix(osr, kernel), needed=True)


def _fact(facts, key):
    return facts.get(key) or {"ok": None, "detail": facts.get("error", "not checked")}


# (fact key, check name, needed, when it fails: what follows, fix)
KERNEL_CHECKS = (
    ("tun", "tun", True, "the xTRs' data plane has no TUN device",
     "a kernel with CONFIG_TUN (modprobe tun; /dev/net/tun)"),
    ("tun_offloads", "tun offloads", True,
     "the data plane opens its TUN with the virtio-net header and TSO "
     "(nodes/dataplane.py open_tun) and would not start",
     "a kernel whose TUN driver takes IFF_VNET_HDR and TUNSETOFFLOAD (any current Linux)"),
    ("udp_gso", "udp gso", False,
     "xTRs send one LISP packet per system call (slower bulk TCP)",
     "Linux 4.18 or later (UDP_SEGMENT)"),
    ("udp_gro", "udp gro", False, "ETRs receive one LISP packet per system call",
     "Linux 5.0 or later (UDP_GRO)"),
    ("uplink_segmentation", "uplink segmentation", False,
     "xTRs cannot keep UDP GSO batches off the wire, so they send one packet per call",
     "install ethtool; a kernel whose veths let tx-udp-segmentation be turned off"),
    ("control_steering", "control steering", False,
     "one control socket: a Map-Request flood can delay registrations",
     "Linux 4.5 or later (SO_ATTACH_REUSEPORT_CBPF)"),
)


def check_kernel(p, facts):
    out = []
    for key, name, needed, consequence, fix in KERNEL_CHECKS:
        f = _fact(facts, key)
        if f["ok"]:
            out.append(Check(name, OK, f["detail"], needed=needed))
        elif f["ok"] is None:                      # not tried: not root, or the probe broke
            out.append(Check(name, MISSING if needed else DEGRADED,
                             f"not checked ({f['detail']})", AGAIN, needed=needed))
        else:
            out.append(Check(name, MISSING if needed else DEGRADED,
                             f"{f['detail']}: {consequence}", fix, needed=needed))
    return out


def check_fast_path(p, facts):
    """The tc-BPF fast path is off by default (`dataplane: kernel` turns it on), so it is
    never needed; missing means such a lab's xTRs fall back to the Python path."""
    obj = p.bpf_object()
    if obj is None:
        return Check("kernel fast path", MISSING, "no compiled lisp_tc.o (.venv/lib/lisp-lab/):"
                     " xTRs use the Python data path", INSTALL + " (clang, libbpf-dev, bpftool;"
                     " a failed build is logged in /tmp/lisp-lab-bpf-build.log)")
    f = _fact(facts, "fast_path")
    if f["ok"]:
        return Check("kernel fast path", OK, f"{obj}: {f['detail']}")
    if f["ok"] is None:
        return Check("kernel fast path", DEGRADED, f"{obj} built; attaching not checked "
                     f"({f['detail']})", AGAIN)
    fix = ("sudo apt-get install linux-tools-$(uname -r)" if "bpftool" in f["detail"]
           and _ubuntu(p.os_release()) else INSTALL)
    return Check("kernel fast path", MISSING, f"{obj} built, but {f['detail']}: xTRs use the "
                 "Python data path", fix)


def check_leftovers(p):
    runs = p.runs()
    stale = [r for r in runs if not r["live"]]
    live = [r for r in runs if r["live"]]
    pins = p.stale_pins()
    sysctls = p.sysctls_saved() and not live
    found = []
    if stale:
        found.append(f"{len(stale)} record(s) of runs that died ("
                     + ", ".join(r["run_id"] for r in stale) + ")")
    if pins:
        found.append(f"{len(pins)} pinned BPF program set(s) of dead daemons")
    if sysctls:                   # the last run to stop puts them back (lab/cleanup.py)
        found.append("bridge-netfilter sysctls saved by a run and not put back")
    if found:
        fix = "sudo .venv/bin/lisp-lab clean" + (f"; rm -r {' '.join(pins)}" if pins else "")
        return Check("leftovers", DEGRADED, "; ".join(found), fix)
    if live:
        return Check("leftovers", OK, "none; in progress: " + ", ".join(
            f"{r['run_id']} (pid {r['pid']})" for r in live))
    return Check("leftovers", OK, "none")


def run_checks(p=None):
    """Every check, in the order a student reads them."""
    p = p or Probes()
    root = check_root(p)
    first = [root, check_python(p), check_mininet(p), *check_tools(p), check_frr(p)]
    if root.status != OK:                 # the kernel can only be asked as root
        return first + [Check("kernel", DEGRADED, "not checked without root: netem, TUN, "
                              "UDP GSO/GRO, offloads, the fast path", AGAIN),
                        check_leftovers(p)]
    facts = p.kernel_facts()
    return first + [check_delays(p, facts), *check_kernel(p, facts),
                    check_fast_path(p, facts), check_leftovers(p)]


def exit_status(checks):
    """0 when a lab can run here (degraded checks included), 1 when a needed one is missing."""
    return 1 if any(c.needed and c.status == MISSING for c in checks) else 0


def verdict(checks):
    blocking = [c.name for c in checks if c.needed and c.status == MISSING]
    if blocking:
        return f"a lab cannot run here: fix {', '.join(blocking)} first"
    lesser = [c.name for c in checks if c.status != OK]
    if lesser:
        return f"a lab can run here, degraded: {', '.join(lesser)}"
    return "a lab can run here, with everything"


def render(checks, system=""):
    """The report a person reads: one line per check, a fix under each that is not ok."""
    w = max(len(c.name) for c in checks)
    lines = [f"lisp-lab doctor: {system}".rstrip(": "), ""]
    for c in checks:
        lines.append(f"  {c.status:<8}  {c.name.ljust(w)}  {c.detail}")
        if c.status != OK and c.fix:
            lines.append(f"  {'':<8}  {''.ljust(w)}  fix: {c.fix}")
    lines += ["", f"verdict: {verdict(checks)}"]
    return "\n".join(lines)


def _system(p):
    osr = p.os_release()
    v = ".".join(map(str, p.python_version()))
    return (f"{osr.get('PRETTY_NAME', 'unknown system')}, kernel {p.kernel_release()}, "
            f"Python {v}")


def main(as_json=False, probes=None):
    """`lisp-lab doctor [--json]`: prints the report, returns the exit status."""
    p = probes or Probes()
    checks = run_checks(p)
    status = exit_status(checks)
    if as_json:
        print(json.dumps({"system": _system(p), "can_run": status == 0, "exit_status": status,
                          "verdict": verdict(checks), "checks": [asdict(c) for c in checks]},
                         indent=1))
    else:
        print(render(checks, _system(p)))
    return status


# --- the kernel facts, inside the throwaway namespace -----------------------------------------

def _ip(*args):
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


def _tun_facts(facts):
    """Opens a TUN as the data plane does; returns its (fd, name) or (None, None)."""
    import fcntl
    import struct

    from nodes.dataplane import IFF_NO_PI, IFF_TUN, TUNSETIFF, open_tun
    name = "ldoc-tun"
    try:
        fd = open_tun(name)
    except OSError as e:
        first = e
    else:
        facts["tun"] = {"ok": True, "detail": "/dev/net/tun opens a TUN device"}
        facts["tun_offloads"] = {"ok": True, "detail": "virtio-net header with checksum and "
                                 "TSO offloads (super-packets of up to 64 KiB)"}
        return fd, name
    try:                                  # which half failed: the TUN, or its offloads?
        fd = os.open("/dev/net/tun", os.O_RDWR)
        try:
            fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
        finally:
            os.close(fd)
    except OSError as e:
        facts["tun"] = {"ok": False, "detail": f"no TUN device ({e.strerror or e})"}
        facts["tun_offloads"] = {"ok": False, "detail": "no TUN device"}
        return None, None
    facts["tun"] = {"ok": True, "detail": "/dev/net/tun opens a TUN device"}
    facts["tun_offloads"] = {"ok": False,
                             "detail": f"TUN offloads refused ({first.strerror or first})"}
    return None, None


def _udp_facts(facts):
    import socket
    import struct

    from nodes.dataplane import SOL_UDP, UDP_GRO, UDP_SEGMENT
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        rx.bind(("127.0.0.1", 0))
        rx.settimeout(2.0)
        try:                                  # what DataPlane.send_gso does: one call, 2 datagrams
            tx.sendmsg([b"a" * 100, b"b" * 100], [(SOL_UDP, UDP_SEGMENT, struct.pack("=H", 100))],
                       0, rx.getsockname())
            got = [len(rx.recv(2048)), len(rx.recv(2048))]
            facts["udp_gso"] = ({"ok": True, "detail": "one UDP_SEGMENT send arrived as "
                                 "2 datagrams"} if got == [100, 100] else
                                {"ok": False, "detail": f"a UDP_SEGMENT send arrived as {got}"})
        except OSError as e:
            facts["udp_gso"] = {"ok": False, "detail": f"UDP_SEGMENT refused ({e.strerror or e})"}
        try:
            rx.setsockopt(SOL_UDP, UDP_GRO, 1)
            facts["udp_gro"] = {"ok": True, "detail": "UDP_GRO accepted on a receiving socket"}
        except OSError as e:
            facts["udp_gro"] = {"ok": False, "detail": f"UDP_GRO refused ({e.strerror or e})"}
    finally:
        rx.close()
        tx.close()


def _uplink_facts(facts):
    from nodes.offload import UDP_SEGMENTATION, udp_segmentation_off
    try:
        _ip("link", "add", "ldoc-a", "type", "veth", "peer", "name", "ldoc-b")
        was_on, now_off = udp_segmentation_off("ldoc-a")
    except OSError as e:
        if getattr(e, "errno", None) is None:     # no such feature: batches are cut anyway
            facts["uplink_segmentation"] = {"ok": True, "detail": f"a veth has no "
                                            f"{UDP_SEGMENTATION}: batches are cut anyway"}
        else:
            facts["uplink_segmentation"] = {"ok": False, "detail": f"ethtool: {e.strerror or e}"}
        return
    except subprocess.SubprocessError as e:
        facts["uplink_segmentation"] = {"ok": False, "detail": f"no veth pair ({e})"}
        return
    facts["uplink_segmentation"] = (
        {"ok": True, "detail": f"{UDP_SEGMENTATION} turned off on a veth "
                               f"({'was on' if was_on else 'was already off'})"}
        if now_off else {"ok": False, "detail": f"{UDP_SEGMENTATION} stays on on a veth"})


def _control_facts(facts):
    import socket

    from nodes.daemon import control_sockets
    try:
        socks = control_sockets(socket.AF_INET)
    except OSError as e:
        facts["control_steering"] = {"ok": False, "detail": f"port 4342: {e.strerror or e}"}
        return
    for s in socks.values():
        s.close()
    facts["control_steering"] = (
        {"ok": True, "detail": "SO_REUSEPORT pair with a classic BPF steering filter"}
        if "requests" in socks else
        {"ok": False, "detail": "SO_REUSEPORT steering (SO_ATTACH_REUSEPORT_CBPF) refused"})


def _af_packet_facts(facts):
    import socket
    try:
        socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3)).close()
        facts["af_packet"] = {"ok": True, "detail": "AF_PACKET raw sockets open"}
    except OSError as e:
        facts["af_packet"] = {"ok": False, "detail": f"AF_PACKET: {e.strerror or e}"}


def _fast_path_facts(facts, tun):
    from nodes import kernelpath
    ok, why = kernelpath.available()
    if not ok:
        facts["fast_path"] = {"ok": False, "detail": why}
        return
    if tun is None:
        facts["fast_path"] = {"ok": False, "detail": "no TUN device to attach beside"}
        return
    try:
        _ip("link", "add", "ldoc-lan", "type", "veth", "peer", "name", "ldoc-lanp")
        _ip("link", "add", "ldoc-up", "type", "veth", "peer", "name", "ldoc-upp")
        _ip("addr", "add", "192.0.2.1/24", "dev", "ldoc-up")
        for dev in ("ldoc-lan", "ldoc-up", tun):
            _ip("link", "set", dev, "up")
    except (OSError, subprocess.SubprocessError) as e:
        facts["fast_path"] = {"ok": False, "detail": f"no veths to attach to ({e})"}
        return
    try:
        kp = kernelpath.KernelPath("doctor", ["ldoc-lan"], tun, "192.0.2.1", 0, 1400,
                                   ["ldoc-up"])
    except (kernelpath.KernelPathError, OSError) as e:
        facts["fast_path"] = {"ok": False, "detail": f"tc-BPF attach failed ({e})"}
        return
    mode = kp.attach_mode
    kp.stop()
    facts["fast_path"] = {"ok": True, "detail": f"loaded and attached ({mode} "
                          f"{'links' if mode == 'tcx' else 'filters on clsact'})"}


def kernel_facts():
    """Every kernel fact, tried here (the caller put this process in a namespace of its own)."""
    facts = {}
    _ip("link", "set", "lo", "up")
    fd, tun = _tun_facts(facts)
    probes = ((_udp_facts, ("udp_gso", "udp_gro")), (_uplink_facts, ("uplink_segmentation",)),
              (_control_facts, ("control_steering",)), (_af_packet_facts, ("af_packet",)),
              (lambda f: _fast_path_facts(f, tun), ("fast_path",)))
    for probe, keys in probes:
        try:
            probe(facts)
        except Exception as e:                     # noqa: BLE001 (one fact, not the report)
            for key in keys:
                facts.setdefault(key, {"ok": False, "detail": f"{type(e).__name__}: {e}"})
    if fd is not None:
        os.close(fd)
    return facts


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m lab.doctor")
    parser.add_argument("--kernel-facts", action="store_true",
                        help="print the kernel facts as JSON (run in a throwaway namespace)")
    parser.add_argument("--json", action="store_true")
    a = parser.parse_args()
    if a.kernel_facts:
        print(json.dumps(kernel_facts()))
        sys.exit(0)
    sys.exit(main(as_json=a.json))

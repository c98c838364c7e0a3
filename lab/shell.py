"""`lisp-lab cli FILE`: a lab's network in Mininet's own CLI, with LISP commands added.

    $ sudo .venv/bin/lisp-lab cli topologies/labs/demo-lisp-across-subnet.yaml
    lisp-lab> registrations              # the Map-Server's table: the VM's /32 from xtr1
    lisp-lab> c1 ping -c3 vm             # Mininet's commands work as in `mn`
    lisp-lab> move vm dc2                # the VM moves (live); its registration by xtr2
    lisp-lab> trace c1 vm                # the links a probe crosses now, from captures
    lisp-lab> exit                       # (or Ctrl-D, or Ctrl-C at the prompt)

The network is made ready as a scenario's is before its t=0 (lab/scenario.py:prepare): the
LISP daemons, an echo server on every host (so probes and `trace` are answered), each VM
announces itself and uses its gateway, and its registration is awaited. No timeline is
played and no capture runs until `capture start`. Files go to captures/<run-id>/<lab>/.

Every command's error is one line and the session goes on. Leaving by any way (exit, EOF,
Ctrl-C at the prompt, SIGTERM or SIGHUP, an exception) goes through Network's context
manager, so every namespace, link, process and capture of the run is removed.
"""
import inspect
import re
import shlex
import signal
import sys
import time
import traceback
from collections import Counter

from mininet.cli import CLI
from mininet.util import quietRun

from .backend import PY, Network
from .emu import wait_for
from .scenario import host_eid, prepare, registrants

PROMPT = "lisp-lab> "
REGISTER_WAIT_S = 5.0         # how long `move` waits for the VM's new registration
TRACE_RATE = 20               # probes per second of `trace` ...
TRACE_SECONDS = 0.25          # ... for this long (5 probes)
LISP_COMMANDS = ("move", "mapcache", "registrations", "counters", "trace", "capture")


class ShellError(Exception):
    """A command's problem, said in one line."""


def say(text=""):
    try:
        print(text, flush=True)
    except OSError:             # a terminal that went away (SIGHUP): the clean-up goes on
        pass


# --- captures --------------------------------------------------------------------------

class Captures:
    """tcpdump on every capture point of the model, into one directory (one pcap per link,
    nanosecond time stamps)."""

    def __init__(self, shell, directory, bpf=(), tag="capture"):
        self.shell = shell
        self.dir = directory
        self.bpf = list(bpf)
        self.tag = tag
        self.procs = {}

    def start(self):
        net = self.shell.net
        self.shell.offloads_off()
        self.dir.mkdir(parents=True, exist_ok=True)
        try:
            for name, (node, intf) in net.model.captures().items():
                self.procs[name] = net.lab.start_process(
                    node, ["tcpdump", "-n", "-U", "--immediate-mode", "-s", "200",
                           "--time-stamp-precision", "nano", "-i", intf,
                           "-w", self.dir / f"{name}.pcap", *self.bpf],
                    self.dir / f"tcpdump-{name}.log", name=f"{self.tag}-{name}")
            if not wait_for(lambda: all("listening on" in p.read_log()
                                        for p in self.procs.values()), 5):
                late = [n for n, p in self.procs.items() if "listening on" not in p.read_log()]
                raise ShellError(f"tcpdump did not start on {', '.join(late)} (see "
                                 f"{self.dir}/tcpdump-*.log)")
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self):
        """Stop every tcpdump (SIGINT: it flushes); {link: packets captured or None}."""
        for p in self.procs.values():
            if p.alive:
                p.send_signal(signal.SIGINT)
        counts = {}
        for name, p in self.procs.items():
            p.stop(signal.SIGINT)           # also forgets it: the run record stays small
            found = re.search(r"(\d+) packets? captured", p.read_log())
            counts[name] = int(found.group(1)) if found else None
        self.procs = {}
        return counts


# --- trace -----------------------------------------------------------------------------

def probe_paths(directory, links, src_ip, dst_ip):
    """From a directory of per-link pcaps: ({probe: [(ts, link)] in time order},
    {echo: [...]}, {link: encapsulated frames})."""
    from captures.analysis import FrameParser, read_link
    parser = FrameParser(src_ip, dst_ip)
    probes, echoes, encap = {}, {}, {}
    for name in links:
        cap = read_link(directory / f"{name}.pcap", name, "", parser)
        for key, ts in cap.probe_first.items():
            probes.setdefault(key, []).append((ts, name))
        for key, ts in cap.echo_first.items():
            echoes.setdefault(key, []).append((ts, name))
        encap[name] = cap.encapsulated
    for seen in (*probes.values(), *echoes.values()):
        seen.sort()
    return probes, echoes, encap


def most_common(sightings):
    """(the most common sequence of links, how many took it, the others {seq: n})."""
    counts = Counter(tuple(n for _, n in seen) for seen in sightings.values())
    if not counts:
        return None, 0, {}
    (path, n), *rest = counts.most_common()
    return list(path), n, dict(rest)


def _seq_text(seq, n, total, what, last=None):
    """One path line: its links, how many took it, and where it stopped short of `last`."""
    lost = f"; not seen after {seq[-1]}" if last and seq[-1] != last else ""
    return f"{' > '.join(seq)}  ({n} of {total} {what}{lost})"


def format_trace(src, dst, dst_ip, sent, answered, probes, echoes, encap, expected,
                 where, directory, captured=()):
    """The text `trace` prints (see do_trace); `captured`: the model's capture points."""
    blind = [x for x in expected or () if x not in captured]
    lines = [f"trace {src} -> {dst} ({dst_ip}): {sent} probes sent, {answered} answered; "
             f"pcaps in {directory}"]
    path, n, others = most_common(probes)
    if path is None:
        lines.append("no probe was seen on any capture point (does "
                     f"`{src} ping -c1 {dst}` work?)")
    else:
        first = next(seen for seen in probes.values() if [x for _, x in seen] == path)
        t0 = first[0][0]
        rows = [("#", "LINK", "FIRST SEEN", "AFTER", "")]
        for i, (ts, name) in enumerate(first, 1):
            clock = time.strftime("%H:%M:%S", time.localtime(ts)) + f".{int(ts % 1 * 1e6):06d}"
            rows.append((str(i), name, clock, f"{(ts - t0) * 1000:.3f} ms",
                         "LISP-encapsulated" if encap.get(name) else ""))
        widths = [max(len(r[c]) for r in rows) for c in range(5)]
        lines += ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip()
                  for r in rows]
        last = expected[-1] if expected and not blind else None
        lines.append(f"path:     {_seq_text(path, n, len(probes), 'probes', last)}")
        for other, k in others.items():
            lines.append(f"          {_seq_text(list(other), k, len(probes), 'probes', last)}")
    if blind:
        lines.append(f"expected: not compared: the model's path from {src} crosses links "
                     f"without a capture point ({', '.join(blind)})")
    elif expected is not None:
        verdict = "" if path is None else ("; matches" if path == expected else "; DIFFERS")
        lines.append(f"expected: {' > '.join(expected)}  (the model's, {dst} in {where}"
                     f"{verdict})")
    back, k, _ = most_common(echoes)
    if back:
        first = expected[0] if expected and not blind else None
        lines.append(f"return:   {_seq_text(back, k, len(echoes), 'echoes', first)}")
    return "\n".join(lines)


# --- the CLI ---------------------------------------------------------------------------

def _words(line):
    try:
        return shlex.split(line)
    except ValueError as e:
        raise ShellError(str(e)) from None


def _doc(method):
    return inspect.cleandoc(method.__doc__ or "")


class LabCLI(CLI):
    """Mininet's CLI over a running Network, with the LISP commands below. Constructing it
    runs it (as Mininet's CLI does) until exit, EOF or Ctrl-C at the prompt."""

    prompt = PROMPT

    def __init__(self, net, stdin=None):
        self.net = net
        self.model = net.model
        self.capture = None            # the Captures of `capture start`, while running
        self.capture_n = 0
        self.trace_n = 0
        self.interrupted = False       # left by Ctrl-C at the prompt
        self._offloads = False
        super().__init__(net.net, stdin=stdin or sys.stdin)

    # --- the loop ---------------------------------------------------------------------

    def run(self):
        """Mininet's loop, except that Ctrl-C at the prompt leaves (a Ctrl-C during a
        node's command interrupts that command, as in Mininet)."""
        try:
            self._settle()
            if self.isatty():
                quietRun("stty echo sane intr ^C")
            self.cmdloop()
        except KeyboardInterrupt:
            self.interrupted = True
            say("\nInterrupt: leaving")

    def onecmd(self, line):
        """One command; its error is one line and never ends the session."""
        try:
            return super().onecmd(line)
        except KeyboardInterrupt:
            self._settle()
            say("interrupted")
        except ShellError as e:
            say(f"*** {e}")
        except Exception as e:          # noqa: BLE001 (a command must not end the session)
            text = " ".join(str(e).split()) or type(e).__name__
            say(f"*** {line.split()[0] if line.split() else line}: {text}")
        return None

    def getLocals(self):
        """Names for `py` and `px`: Mininet's (net, the nodes) and `lab`, the Network
        (e.g. `py lab.query("xtr1", "config")`, `py lab.where`)."""
        return {**super().getLocals(), "lab": self.net}

    def postcmd(self, stop, line):
        sys.stdout.flush()
        sys.stderr.flush()
        return stop

    def _settle(self, timeout=None):
        """No node left running a command (after an interrupted one): each is sent Ctrl-C
        and its output read until its prompt (at most `timeout` s, then it is given up:
        Mininet cannot stop a network whose nodes still wait for a command)."""
        for node in self.mn.values():
            if not node.waiting:
                continue
            node.sendInt()
            deadline = None if timeout is None else time.monotonic() + timeout
            while node.waiting and (deadline is None or time.monotonic() < deadline):
                try:
                    node.monitor(timeoutms=100)
                except OSError:
                    break
            node.waiting = False

    def offloads_off(self):
        """Offloads off at both ends of every captured link, once, so that a capture sees
        what a wire carries (see Network.start_captures)."""
        if self._offloads:
            return
        from .delay import offloads_off
        problems = [p for node, intf in self.model.captures().values()
                    for p in offloads_off(self.mn[node].intf(intf))]
        if problems:
            raise ShellError("cannot turn offloads off for wire-true captures: "
                             + "; ".join(problems))
        self._offloads = True

    def close(self):
        """Before the network goes: no node left in a command (a signal may have ended the
        session in the middle of one), and a running capture stopped so that its pcaps are
        whole."""
        self._settle(timeout=2.0)
        if self.capture is not None:
            counts, self.capture = self.capture.stop(), None
            say(f"captures stopped: {len(counts)} pcaps in {self.capture_dir()}")

    def capture_dir(self):
        return self.net.out_dir / f"capture-{self.capture_n}"

    # --- help -------------------------------------------------------------------------

    def do_help(self, line):
        "help [COMMAND]: describe the commands (help move, help trace, ...)."
        name = line.strip()
        if name in LISP_COMMANDS or name == "help":
            say(_doc(getattr(self, f"do_{name}")))
            return
        super().do_help(line)
        if not name:
            say("LISP commands of this lab:")
            for c in LISP_COMMANDS:
                say(f"  {_doc(getattr(self, f'do_{c}')).splitlines()[0]}")
            say("Leave with exit, Ctrl-D or Ctrl-C at the prompt: the lab is removed.")

    # --- names ------------------------------------------------------------------------

    def _lisp_node(self, command, name):
        nodes = sorted(self.net.daemon_paths)
        if not nodes:
            raise ShellError(f"{command}: this lab runs no LISP daemon")
        if name not in nodes:
            raise ShellError(f"{command}: no LISP daemon on {name!r} (LISP nodes: "
                             f"{', '.join(nodes)})")
        return name

    def _host(self, command, name):
        if name not in self.model.hosts:
            raise ShellError(f"{command}: no host {name!r} (hosts: "
                             f"{', '.join(sorted(self.model.hosts))})")
        return name

    def _complete(self, names, text):
        return [n for n in sorted(names) if n.startswith(text)]

    # --- move -------------------------------------------------------------------------

    def do_move(self, line):
        """move VM SITE [--cold S]: move a VM to another data center.

        Live by default: the VM's switch port is re-attached to SITE's switch, so its
        namespace, addresses and TCP sessions survive, then it announces itself
        (gratuitous ARP / unsolicited NA) as after a migration. --cold S: its link is down
        S seconds first. With LISP, waits up to 5 s for SITE's xTR to register the VM.
        Example: move vm dc2"""
        words = _words(line)
        cold = 0.0
        if "--cold" in words or any(w.startswith("--cold=") for w in words):
            i = next(i for i, w in enumerate(words) if w.split("=")[0] == "--cold")
            value = words[i].partition("=")[2] if "=" in words[i] else (
                words[i + 1] if i + 1 < len(words) else "")
            del words[i:i + (1 if "=" in words[i] else 2)]
            try:
                cold = float(value)
            except ValueError:
                raise ShellError(f"move: --cold wants seconds, not {value!r}") from None
            if not 0 <= cold <= 600:
                raise ShellError("move: --cold wants 0 to 600 seconds")
        if len(words) != 2:
            raise ShellError("move: usage: move VM SITE [--cold S]")
        vm, site = words
        vms = sorted(h.name for h in self.model.vms())
        if vm not in vms:
            raise ShellError(f"move: no VM {vm!r} (VMs: {', '.join(vms) or 'none'})")
        dcs = sorted(s.name for s in self.model.sites.values() if s.switch)
        if site not in dcs:
            raise ShellError(f"move: no data center {site!r} (data centers: {', '.join(dcs)})")
        if self.net.where[vm] == site:
            raise ShellError(f"move: {vm} is in {site} already")
        t0 = time.monotonic()
        try:
            self.net.move(vm, site, cold)
        except KeyboardInterrupt:
            say(f"move interrupted: {vm} is in {self._settle_port(vm)}")
            return
        took = time.monotonic() - t0
        say(f"{vm} moved to {site} ({f'cold, {cold:g} s down' if cold else 'live'}) in "
            f"{took:.2f} s")
        target = self.model.sites[site]
        if not (self.model.lisp and target.lisp and target.gateway in self.net.daemon_paths):
            return
        eid, rloc = host_eid(self.model.hosts[vm]), self.model.rloc(target.gateway)
        if wait_for(lambda: rloc in registrants(self.net, eid), REGISTER_WAIT_S, 0.05):
            say(f"{eid} registered by {target.gateway} ({rloc}) within "
                f"{time.monotonic() - t0:.2f} s of the move's start")
        else:
            say(f"{eid} NOT registered by {target.gateway} ({rloc}) within "
                f"{REGISTER_WAIT_S:g} s (see {self.net.out_dir / (target.gateway + '.log')})")

    def _settle_port(self, vm):
        """After an interrupted move: the VM's switch port up on whichever switch it is
        attached to now; returns that switch's site (and the Network knows it too)."""
        port = f"{self.model.sites[self.model.hosts[vm].site].switch}-{vm}"
        shown = self.net.lab.run(None, ["ip", "-o", "link", "show", "dev", port], timeout=5)
        master = re.search(r" master (\S+)", shown.stdout)
        site = next((s.name for s in self.model.sites.values()
                     if master and s.switch == master.group(1)), self.net.where[vm])
        self.net.lab.run(None, ["ip", "link", "set", "dev", port, "up"], timeout=5)
        if site != self.net.where[vm]:
            self.net.where[vm] = site
            self.net.announce(vm)
        return site

    def complete_move(self, text, line, begidx, endidx):
        words = line[:begidx].split()
        if len(words) == 1:
            return self._complete((h.name for h in self.model.vms()), text)
        return self._complete((s.name for s in self.model.sites.values() if s.switch), text)

    # --- what the daemons know ----------------------------------------------------------

    def do_mapcache(self, line):
        """mapcache NODE: the map-cache of NODE's LISP daemon, as a table.

        NODE is an xTR or a proxy xTR; one line per EID-prefix: instance ID, prefix, RLOCs
        (address priority/weight), action, TTL left.
        Example: mapcache xtrc"""
        from .cli import format_map_cache
        words = _words(line)
        if len(words) != 1:
            raise ShellError("mapcache: usage: mapcache NODE")
        node = self._lisp_node("mapcache", words[0])
        say(format_map_cache(self.net.query(node, "map-cache")))

    def complete_mapcache(self, text, line, begidx, endidx):
        return self._complete(self.net.daemon_paths, text)

    def do_registrations(self, line):
        """registrations [MS]: what the Map-Server has registered, as a table.

        One line per EID-prefix and registrant: the registration site, whether it is a more
        specific of the site's prefixes (a moved VM's /32), who registered it, its RLOCs and
        when it expires. With several Map-Servers, each of them, or only MS.
        Example: registrations"""
        from .cli import format_registrations
        words = _words(line)
        servers = list(self.model.map_servers)
        if not servers:
            raise ShellError("registrations: this lab has no Map-Server")
        if len(words) > 1:
            raise ShellError("registrations: usage: registrations [MS]")
        if words:
            if words[0] not in servers:
                raise ShellError(f"registrations: no Map-Server {words[0]!r} (Map-Servers: "
                                 f"{', '.join(servers)})")
            servers = words
        for ms in servers:
            if len(servers) > 1:
                say(f"--- {ms}")
            say(format_registrations(self.net.query(ms, "registrations")))

    def do_counters(self, line):
        """counters NODE [WORD]: the counters of NODE's LISP daemon.

        Control messages sent and received, drops and their reasons, data-plane packets;
        with WORD only the counters whose name holds it.
        Example: counters xtr2 smr"""
        from .cli import format_counters
        words = _words(line)
        if len(words) not in (1, 2):
            raise ShellError("counters: usage: counters NODE [WORD]")
        node = self._lisp_node("counters", words[0])
        counters = self.net.query(node, "counters")
        if len(words) == 2:
            counters = {k: v for k, v in counters.items() if words[1].lower() in k.lower()}
        say(format_counters(counters))

    complete_counters = complete_mapcache

    # --- trace ------------------------------------------------------------------------

    def do_trace(self, line):
        """trace SRC DST: the links a probe from host SRC to host DST crosses, seen live.

        Short captures run on every capture point of the lab while SRC sends 5 UDP
        probes (lab/traffic.py's format) to DST; the links are listed in the order a probe
        crossed them, with the time it was first seen on each, then the path most probes
        took, the model's expected path (for DST where it is now) and the echoes' path.
        Example: trace c1 vm"""
        words = _words(line)
        if len(words) != 2:
            raise ShellError("trace: usage: trace SRC DST (hosts)")
        src, dst = (self._host("trace", w) for w in words)
        if src == dst:
            raise ShellError("trace: SRC and DST are the same host")
        s, d = self.model.hosts[src], self.model.hosts[dst]
        version = next((v for v in (4, 6) if s.ip(v) and d.ip(v)), None)
        if version is None:
            raise ShellError(f"trace: {src} and {dst} have no address family in common")
        src_ip, dst_ip = s.ip(version), d.ip(version)
        self.trace_n += 1
        directory = self.net.out_dir / f"trace-{self.trace_n}"
        links = list(self.model.captures())
        cap = Captures(self, directory, ["udp"], tag=f"trace{self.trace_n}").start()
        try:
            out = directory / "probe.json"
            r = self.net.lab.run(src, [PY, "-m", "lab.traffic", "probe", "--dst", dst_ip,
                                       "--rate", str(TRACE_RATE), "--duration",
                                       str(TRACE_SECONDS), "--linger", "0.5", "--out", out],
                                 timeout=20)
            time.sleep(0.1)                  # the last frames reach their capture points
        finally:
            cap.stop()
        if r.returncode != 0 or not out.exists():
            raise ShellError(f"trace: the prober failed in {src}: "
                             f"{' '.join((r.stderr or r.stdout).split()) or r.returncode}")
        import json
        result = json.loads(out.read_text())
        probes, echoes, encap = probe_paths(directory, links, src_ip, dst_ip)
        where = self.net.where[dst]
        try:
            expected = self.model.expected_path(src, dst, where)
        except Exception:                   # noqa: BLE001 (no model path for this pair)
            expected = None
        say(format_trace(src, dst, dst_ip, result["sent"], result["received"], probes, echoes,
                         encap, expected, where, directory, links))

    def complete_trace(self, text, line, begidx, endidx):
        return self._complete(self.model.hosts, text)

    # --- captures ---------------------------------------------------------------------

    def do_capture(self, line):
        """capture start|stop|status: tcpdump on every capture point of the lab.

        The capture points are each routed link, each LISP site's access link and the DCI.
        Each start writes a new directory
        captures/<run-id>/<lab>/capture-N/ with one LINK.pcap per link; stop says how many
        packets each link captured. Leaving the CLI stops a running capture."""
        words = _words(line)
        what = words[0] if words else "status"
        if len(words) > 1 or what not in ("start", "stop", "status"):
            raise ShellError("capture: usage: capture start|stop|status")
        if what == "status":
            say(f"capturing on {len(self.capture.procs)} links into {self.capture_dir()}"
                if self.capture else "no capture running (capture start)")
        elif what == "start":
            if self.capture is not None:
                raise ShellError(f"capture: already capturing into {self.capture_dir()}")
            self.capture_n += 1
            self.capture = Captures(self, self.capture_dir()).start()
            say(f"capturing on {len(self.capture.procs)} links: "
                f"{self.capture_dir()}/LINK.pcap ({', '.join(self.capture.procs)})")
        else:
            if self.capture is None:
                raise ShellError("capture: no capture running")
            counts, self.capture = self.capture.stop(), None
            say(f"stopped; {len(counts)} pcaps in {self.capture_dir()}:")
            w = max(len(n) for n in counts)
            for name, n in counts.items():
                say(f"  {name.ljust(w)}  {'?' if n is None else n} packet"
                    + ("" if n == 1 else "s"))

    def complete_capture(self, text, line, begidx, endidx):
        return self._complete(("start", "stop", "status"), text)


# --- lisp-lab cli ------------------------------------------------------------------------

def banner(net, model, path):
    vms = ", ".join(f"{h.name} ({h.ip(4) or h.ip(6)}) in {h.site}"
                    for h in model.vms()) or "none"
    dcs = " ".join(s.name for s in model.sites.values() if s.switch) or "none"
    say(f"*** {model.name} ({path}) is up, run {net.run_id}; files in {net.out_dir}")
    say(f"*** nodes: {' '.join(sorted(model.node_names()))}")
    say(f"*** VMs: {vms}; data centers: {dcs}")
    say(f"*** LISP commands: {', '.join(LISP_COMMANDS)} (help COMMAND); Mininet's work too "
        f"(xtr1 ip route, c1 ping vm, net)")
    say("*** exit, Ctrl-D or Ctrl-C at the prompt removes the lab")


def main(model, args, stdin=None):
    """`lisp-lab cli FILE`: build `model`'s network, open the CLI on `stdin` (default
    sys.stdin), remove it all on leaving. Returns the exit status: 0; 130 when left by
    Ctrl-C; 128 + N after signal N; 1 when the lab could not start or the CLI crashed."""
    from .demo import CAPTURES_DIR, Progress
    run_id = getattr(args, "run_id", None) or \
        f"cli-{model.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    out_dir = CAPTURES_DIR / run_id / model.name
    progress = Progress()
    shell = None
    progress(f"building {model.name}: {len(model.node_names())} nodes, {len(model.links)} "
             f"links, {len(model.sites)} sites")
    try:
        with Network(model, out_dir, run_id=run_id, progress=progress) as net:
            # as a scenario has it before t=0, without captures, an echo server everywhere
            prepare(net, captures=False, echo_hosts=list(model.hosts), warm=False)
            banner(net, model, getattr(args, "file", model.file))
            try:                 # constructing a CLI runs it: keep it reachable meanwhile
                shell = LabCLI.__new__(LabCLI)
                LabCLI.__init__(shell, net, stdin)
            finally:
                if shell is not None and getattr(shell, "net", None) is not None:
                    shell.close()
                say("*** removing the lab")
    except KeyboardInterrupt:
        say("lisp-lab cli: interrupted; everything the lab started has been removed")
        return 130
    except SystemExit as e:             # SIGTERM or SIGHUP (lab/emu.py turns them into this)
        say(f"lisp-lab cli: stopped by a signal; everything the lab started has been "
            f"removed (its files stay in {out_dir})")
        return e.code
    except Exception as e:              # noqa: BLE001 (one line; the details in a file)
        log = out_dir / "cli-error.log"
        try:
            log.parent.mkdir(parents=True, exist_ok=True)
            log.write_text(traceback.format_exc())
            where = f" (details in {log})"
        except OSError:
            where = ""
        text = " ".join(str(e).split()) or type(e).__name__
        print(f"lisp-lab cli: {text}{where}; everything the lab started has been removed",
              file=sys.stderr, flush=True)
        return 1
    say(f"*** {model.name} removed; its files stay in {out_dir}")
    return 130 if shell is not None and shell.interrupted else 0

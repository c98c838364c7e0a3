"""Start and stop an emulated network safely: Mininet, our daemons, and the host settings.

    from lab.emu import Lab

    with Lab(MyTopo()) as lab:                       # builds and starts the network
        h1, h2 = lab["h1"], lab["h2"]
        ms = lab.start_process(h1, [sys.executable, "-m", "nodes", "ms.json"], "ms.log")
        print(lab.run(h2, ["ping", "-c1", h1.IP()]).stdout)
    # here every process is stopped, the network is gone, the host is as it was

What the Lab guarantees:

- Host preparation, once per run: the bridge-nf-call-{arp,ip,ip6}tables sysctls are set to 0
  when they exist (with br_netfilter loaded, bridged frames would otherwise cross iptables),
  and the old values are put back when the last run on the machine ends.
- Link delays: `netem_available()` probes once per process whether the kernel has netem. If
  not, it prints one line saying so, and a link with a `delay` or a `loss` becomes A -
  relay host - B with a userspace AF_PACKET relay adding them (lab/delay.py); bandwidth
  parameters are dropped (a TCLink would fail with "Specified qdisc kind is unknown").
  `lab.netem` says which one a run used; the run record has `delay_emulation`.
- Processes: `start_process` runs a program inside a Mininet host's namespaces in its own
  process group (session), with a parent-death signal (SIGTERM when the Python thread that
  started it dies). Stopping the Lab terminates every such group (SIGTERM, up to 2 s, then
  SIGKILL), then every other process still inside the hosts' namespaces, and only then
  tears the network down, so no process keeps a namespace (and its interfaces) alive.
- The Lab stops on normal exit, on an exception, and on SIGINT, SIGTERM or SIGHUP (handlers
  turn them into KeyboardInterrupt or SystemExit, so `finally` blocks run; a second signal
  during the stop is noted, not obeyed, so the clean-up completes).
- A record of what the run created is kept in /run/lisp-lab/runs/<run_id>.json and updated
  as things are created; a clean stop removes it. After a SIGKILL, `lab.cleanup.clean_all()`
  (`lisp-lab clean`) uses it to remove exactly what the run made.

The parent-death signal belongs to the thread that starts a process: start processes from
the thread that owns the Lab (normally the main thread).
"""
import atexit
import ctypes
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from . import cleanup as registry
from .netem import NETEM_NOTICE, netem_available, netem_status

__all__ = ["Lab", "LabProcess", "wait_for", "netem_available", "netem_status", "link_class",
           "NETEM_NOTICE"]

_libc = ctypes.CDLL(None, use_errno=True)
_prctl = _libc.prctl
_setns = _libc.setns
PR_SET_PDEATHSIG = 1
CLONE_NEWNS = 0x00020000
CLONE_NEWNET = 0x40000000

# Link parameters that need tc (netem, htb/tbf); a plain Link ignores them.
TC_PARAMS = ("bw", "delay", "jitter", "loss", "max_queue_size", "speedup", "use_hfsc",
             "use_tbf", "latency_ms", "enable_ecn", "enable_red")

STOP_TIMEOUT = 2.0
_active_runs = set()       # run ids of the Labs of this process that are started


def wait_for(predicate, timeout, step=0.05):
    """Poll `predicate` until it is true or `timeout` seconds pass; returns its last value."""
    deadline = time.monotonic() + timeout
    while not (value := predicate()) and time.monotonic() < deadline:
        time.sleep(step)
    return value


def link_class():
    """The Mininet link class to use: TCLink with netem, plain Link without it."""
    from mininet.link import Link, TCLink
    return TCLink if netem_available() else Link


def _without_tc(cls, params):
    """(link class, params) with the tc-only parts replaced, for a kernel without netem."""
    from mininet.link import Intf, Link, TCIntf, TCLink
    if isinstance(cls, type) and issubclass(cls, TCLink):
        cls = Link
    params = {k: v for k, v in params.items() if k not in TC_PARAMS}
    for side in ("params1", "params2"):
        if isinstance(params.get(side), dict):
            params[side] = {k: v for k, v in params[side].items() if k not in TC_PARAMS}
    if isinstance(params.get("intf"), type) and issubclass(params["intf"], TCIntf):
        params["intf"] = Intf
    return cls, params


# --- processes inside a namespace ----------------------------------------------------------

def _namespace_fds(node):
    """Open the network and mount namespaces of a Mininet node (none for a node that runs
    in the root namespace, such as a LinuxBridge switch)."""
    if node is None or not getattr(node, "inNamespace", False):
        return []
    fds = []
    try:
        for kind, flag in (("net", CLONE_NEWNET), ("mnt", CLONE_NEWNS)):
            path = f"/proc/{node.pid}/ns/{kind}"
            if kind == "mnt" and os.stat(path).st_ino == os.stat("/proc/self/ns/mnt").st_ino:
                continue
            fds.append((os.open(path, os.O_RDONLY | os.O_CLOEXEC), flag))
    except OSError:
        for fd, _ in fds:
            os.close(fd)
        raise
    return fds


def _spawn(node, argv, cwd=None, env=None, **popen_kwargs):
    """Popen `argv` inside `node`'s namespaces (root namespace for None), in a new session
    (so its own process group), with SIGTERM as parent-death signal."""
    parent = os.getpid()
    workdir = os.fspath(cwd) if cwd is not None else os.getcwd()
    fds = _namespace_fds(node)

    def in_child():
        # Runs in the forked child before exec (start_new_session has already called
        # setsid). Only async-signal-safe work: no imports, no locks.
        if _prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG)")
        if os.getppid() != parent:          # the parent died before the prctl took effect
            os._exit(1)
        for fd, flag in fds:
            if _setns(fd, flag) != 0:
                raise OSError(ctypes.get_errno(), "setns")
        os.chdir(workdir)                   # joining a mount namespace moves us to its /

    try:
        return subprocess.Popen([str(a) for a in argv], preexec_fn=in_child,
                                start_new_session=True, close_fds=True, env=env,
                                **popen_kwargs)
    finally:
        for fd, _ in fds:
            os.close(fd)


class LabProcess:
    """A program started by Lab.start_process: its own process group, tracked by the Lab."""

    def __init__(self, lab, popen, argv, host, log_path, name, entry):
        self.lab = lab
        self.popen = popen
        self.argv = list(argv)
        self.host = host                 # the Mininet node, or None for the root namespace
        self.log_path = Path(log_path) if log_path is not None else None
        self.name = name
        self.entry = entry               # what the run record says about it
        self.pid = popen.pid
        self.pgid = popen.pid            # a session leader leads its process group

    def __repr__(self):
        where = self.host.name if self.host is not None else "root"
        return f"<LabProcess {self.name} pid={self.pid} in {where} rc={self.poll()}>"

    def poll(self):
        return self.popen.poll()

    @property
    def returncode(self):
        return self.popen.returncode

    @property
    def alive(self):
        return self.popen.poll() is None

    def wait(self, timeout=None):
        return self.popen.wait(timeout)

    def send_signal(self, sig):
        """Send `sig` to the whole process group."""
        return registry.safe_killpg(self.pgid, self.entry.get("starttime"), sig)

    def stop(self, sig=signal.SIGTERM, timeout=STOP_TIMEOUT):
        """Send `sig` to the group, wait up to `timeout` s for the program to exit, then
        SIGKILL the group. Returns the exit code. (Use sig=SIGINT for tcpdump, which then
        flushes its capture file.)"""
        return self.lab.stop_process(self, sig, timeout)

    def read_log(self):
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")


# --- the Lab ---------------------------------------------------------------------------------

def _new_run_id():
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(3)


def _recording_mininet():
    """A Mininet that reports every node, link and bridge to its Lab as it creates them."""
    from mininet.net import Mininet

    class RecordingMininet(Mininet):
        def __init__(self, *args, lab, **kwargs):
            self._lab = lab
            super().__init__(*args, **kwargs)

        def addHost(self, name, cls=None, **params):
            node = super().addHost(name, cls=cls, **params)
            self._lab._node_added(node)
            return node

        def addSwitch(self, name, cls=None, **params):
            node = super().addSwitch(name, cls=cls, **params)
            self._lab._node_added(node)
            start = node.start

            def start_and_record(*a, **kw):
                result = start(*a, **kw)
                self._lab._switch_started(node)
                return result

            node.start = start_and_record
            return node

        def addLink(self, node1, node2, port1=None, port2=None, cls=None, **params):
            if not self._lab.netem:
                from . import delay
                if delay.wants_relay(params):
                    # No netem: the delay is emulated by a userspace relay host between
                    # the two nodes (two plain links, each recorded through this method).
                    return delay.relayed_link(self, node1, node2, port1, port2, cls,
                                              **params)
                cls, params = _without_tc(self.link if cls is None else cls, params)
            link = super().addLink(node1, node2, port1, port2, cls, **params)
            self._lab._link_added(link)
            return link

    return RecordingMininet


class Lab:
    """One emulated run: host preparation, a Mininet network built from `topo` (optional),
    the processes started in it, a run record, and a guaranteed stop.

    topo: a mininet Topo, or None for a Lab that only manages processes.
    run_id: names the run record (default: date-time plus random hex).
    switch, link: Mininet classes (default LinuxBridge, and link_class()).
    handle_signals: install SIGINT/SIGTERM/SIGHUP handlers while the Lab runs (only
        possible in the main thread; ignored elsewhere).
    mininet_options: more keyword arguments for Mininet (ipBase, autoStaticArp, ...).

    Attributes: run_id, prefix (a short unique prefix for names this run creates in the root
    namespace, see ifname()), net (the Mininet object), netem (bool), record_path,
    stop_errors (what went wrong while stopping, if anything).
    """

    def __init__(self, topo=None, run_id=None, *, switch=None, link=None,
                 handle_signals=True, stop_timeout=STOP_TIMEOUT, **mininet_options):
        run_id = run_id or _new_run_id()
        if not all(c.isalnum() or c in "-_." for c in run_id) or run_id.startswith(".") \
                or run_id in registry.RESERVED_NAMES:
            raise ValueError(f"run_id may only hold letters, digits, '-', '_' and '.', and "
                             f"may not be one of {sorted(registry.RESERVED_NAMES)}: {run_id!r}")
        self.topo = topo
        self.run_id = run_id
        self.prefix = "ll" + secrets.token_hex(2)
        self.switch = switch
        self.link = link
        self.handle_signals = handle_signals
        self.stop_timeout = stop_timeout
        self.mininet_options = mininet_options
        self.net = None
        self.netem = None
        self.processes = []
        self.relays = {}
        self.stop_errors = []
        self.record_path = registry.record_path(run_id)
        self._record = None
        self._record_lock = threading.RLock()
        self._old_handlers = {}
        self._started = False
        self._stopping = False
        self._stopped = False
        self._pending_signal = None
        self._owns_run = False

    # --- context manager ------------------------------------------------------------

    def __enter__(self):
        return self.start()

    def __exit__(self, exc_type, exc, tb):
        self.stop()
        if exc_type is None and self._pending_signal is not None:
            # a signal arrived while the Lab was stopping: honour it now
            raise self._exception_for(self._pending_signal)
        return False

    def __getitem__(self, name):
        return self.net[name]

    # --- start ------------------------------------------------------------------------

    def start(self):
        if self._started:
            raise RuntimeError("this Lab was already started (a Lab runs once)")
        self._started = True
        self._install_signal_handlers()
        atexit.register(self._stop_at_exit)
        try:
            self._take_run_id()
            self._record["sysctls_found"] = registry.disable_bridge_netfilter(self.run_id)
            self.netem = netem_available()
            self._record["netem"] = self.netem
            self._save()
            if self.topo is not None:
                self._build()
        except BaseException:
            self.stop()
            raise
        return self

    def _take_run_id(self):
        """Refuse a run id in use by a live run; clean up a dead run that had it (its record
        would otherwise be overwritten, and what it left forgotten)."""
        with registry.host_lock():
            for path, record in registry.read_records():
                if path != self.record_path or record is None:
                    continue
                mine = record.get("owner", {}).get("pid") == os.getpid()
                if (self.run_id in _active_runs if mine else registry.run_is_live(record)):
                    raise RuntimeError(f"run id {self.run_id} is in use by the live process "
                                       f"{record['owner']['pid']}")
                print(f"lisp-lab: a crashed run {self.run_id} left things behind: "
                      f"cleaning them first", file=sys.stderr, flush=True)
                registry.clean_record(record, verbose=True)
            owner = registry.proc_identity(os.getpid())
            owner["cmdline"] = registry.proc_cmdline(os.getpid())
            self._record = {"version": registry.RECORD_VERSION, "run_id": self.run_id,
                            "prefix": self.prefix, "created": time.time(), "owner": owner,
                            "netem": None, "sysctls_found": {}, "nodes": [],
                            "processes": [], "interfaces": []}
            self._save()                  # under the lock: the run id is ours from here
            _active_runs.add(self.run_id)
            self._owns_run = True

    def _build(self):
        from mininet.nodelib import LinuxBridge
        cls = _recording_mininet()
        link = self.link or link_class()
        options = {"controller": None, "autoSetMacs": True, **self.mininet_options,
                   "switch": self.switch or LinuxBridge, "link": link, "build": False}
        # built in two steps so that self.net exists (and can be stopped) if building fails
        self.net = cls(self.topo, lab=self, **options)
        self.net.build()
        self.net.start()
        from . import delay
        self.relays = delay.start_relays(self)
        with self._record_lock:
            self._record["delay_emulation"] = delay.delay_emulation(self)
            self._save()

    # --- the run record -----------------------------------------------------------------

    def _save(self):
        with self._record_lock:
            if self._record is not None and not self._stopped:
                registry.write_record(self._record)

    def _node_added(self, node):
        entry = registry.proc_identity(node.pid)
        entry.update(name=node.name, in_namespace=bool(node.inNamespace))
        with self._record_lock:
            self._record["nodes"].append(entry)
            self._save()

    def _record_root_interfaces(self, names):
        links = registry.root_links()
        with self._record_lock:
            known = {(i["name"], i["ifindex"]) for i in self._record["interfaces"]}
            for name in names:
                now = links.get(name)
                if now is not None and (name, now["ifindex"]) not in known:
                    self._record["interfaces"].append(
                        {"name": name, "ifindex": now["ifindex"], "kind": now["kind"]})
            self._save()

    def _link_added(self, link):
        names = [i.name for i in (link.intf1, link.intf2)
                 if not getattr(i.node, "inNamespace", False)]
        if names:
            self._record_root_interfaces(names)

    def _switch_started(self, switch):
        if not getattr(switch, "inNamespace", False):
            self._record_root_interfaces([switch.name])

    def add_interface(self, name):
        """Record an interface of the root namespace created for this run by someone else
        (a TUN device, an extra bridge), so that a clean-up after a crash removes it. It
        must exist already (its ifindex is recorded)."""
        if name not in registry.root_links():
            raise ValueError(f"no interface {name} in the root namespace")
        self._record_root_interfaces([name])

    @property
    def run_dir(self):
        """/run/lisp-lab/<run_id>/, for the run's sockets and small state files: created on
        first use, recorded, and removed when the run stops (or by clean_all after a
        crash)."""
        path = registry.RUN_DIR / self.run_id
        if self._record is not None and self._record.get("run_dir") != str(path):
            path.mkdir(parents=True, exist_ok=True)
            with self._record_lock:
                self._record["run_dir"] = str(path)
                self._save()
        return path

    def ifname(self, suffix):
        """A name for an interface this run creates in the root namespace, unique to the run
        (at most 15 characters, the kernel's limit)."""
        name = f"{self.prefix}{suffix}"
        if len(name) > 15:
            raise ValueError(f"interface name too long: {name}")
        return name

    # --- processes --------------------------------------------------------------------------

    def _node(self, host):
        if host is None or not isinstance(host, str):
            return host
        return self.net[host]

    def start_process(self, host, argv, log_path=None, env=None, cwd=None, name=None):
        """Start `argv` inside `host` (a Mininet node or its name; None for the root
        namespace), in its own process group with a parent-death signal, stdout and stderr
        appended to `log_path` (discarded when None). Returns a LabProcess; the Lab stops it
        when it stops, if it is still running."""
        if not self._started or self._stopping:
            raise RuntimeError("start the Lab before starting processes in it")
        node = self._node(host)
        argv = [os.fspath(a) if isinstance(a, os.PathLike) else str(a) for a in argv]
        log = open(log_path, "ab") if log_path is not None else subprocess.DEVNULL
        try:
            popen = _spawn(node, argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                           stdout=log, stderr=subprocess.STDOUT)
        finally:
            if log is not subprocess.DEVNULL:
                log.close()
        entry = registry.proc_identity(popen.pid)
        entry.update(name=name or os.path.basename(argv[0]), argv=argv,
                     host=node.name if node is not None else None,
                     log=str(log_path) if log_path is not None else None)
        proc = LabProcess(self, popen, argv, node, log_path, entry["name"], entry)
        with self._record_lock:
            self.processes.append(proc)
            self._record["processes"].append(entry)
            self._save()
        return proc

    def stop_process(self, proc, sig=signal.SIGTERM, timeout=STOP_TIMEOUT):
        """Stop one started process (see LabProcess.stop); returns its exit code."""
        self._stop_group([proc], sig, timeout)
        with self._record_lock:
            if proc in self.processes:
                self.processes.remove(proc)
            if proc.entry in self._record["processes"]:
                self._record["processes"].remove(proc.entry)
            self._save()
        return proc.returncode

    @staticmethod
    def _stop_group(procs, sig, timeout):
        for p in procs:
            if p.poll() is None:
                p.send_signal(sig)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(p.poll() is None for p in procs):
            time.sleep(0.02)
        for p in procs:
            # also the group's other members, which may outlive a leader that exited
            p.send_signal(signal.SIGKILL)
            try:
                p.popen.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass

    def packet_sockets(self, pairs):
        """AF_PACKET sockets bound to each (host, interface) of `pairs`, inside the host's
        network namespace: made on one short-lived thread that enters each namespace in
        turn (a socket keeps the namespace it was made in; our other threads stay where
        they are). For frames sent from many hosts at once (a group of VMs announcing a
        move) without a process per host."""
        out = {"socks": []}

        def make():
            try:
                for host, iface in pairs:
                    node = self._node(host)
                    fd = os.open(f"/proc/{node.pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
                    try:
                        if _setns(fd, CLONE_NEWNET) != 0:
                            err = ctypes.get_errno()
                            raise OSError(err, f"setns into {node.name}: {os.strerror(err)}")
                    finally:
                        os.close(fd)
                    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
                    out["socks"].append(sock)
                    sock.bind((iface, 0))
            except OSError as e:
                out["error"] = e

        t = threading.Thread(target=make, name="netns-sockets")   # it ends in another netns
        t.start()
        t.join()
        if "error" in out:
            for sock in out["socks"]:
                sock.close()
            raise out["error"]
        return out["socks"]

    def run(self, host, argv, timeout=30, input=None, check=False, env=None, cwd=None):
        """Run `argv` inside `host` to completion (like subprocess.run, text output captured);
        its process group is killed if it outlives `timeout`."""
        node = self._node(host)
        popen = _spawn(node, argv, cwd=cwd, env=env, text=True,
                       stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        start = registry.proc_starttime(popen.pid)
        try:
            out, err = popen.communicate(input, timeout=timeout)
        except BaseException:
            registry.safe_killpg(popen.pid, start, signal.SIGKILL)
            popen.communicate()
            raise
        registry.safe_killpg(popen.pid, start, signal.SIGKILL)   # leftovers of the group
        result = subprocess.CompletedProcess(popen.args, popen.returncode, out, err)
        if check:
            result.check_returncode()
        return result

    # --- signals ---------------------------------------------------------------------------

    _HANDLED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    @staticmethod
    def _exception_for(signum):
        if signum == signal.SIGINT:
            return KeyboardInterrupt()
        return SystemExit(128 + signum)

    def _on_signal(self, signum, frame):
        if self._stopping:
            if self._pending_signal is None:
                print(f"lisp-lab: {signal.Signals(signum).name} received: stopping the lab, "
                      f"please wait", file=sys.stderr, flush=True)
            self._pending_signal = signum
            return
        raise self._exception_for(signum)

    def _install_signal_handlers(self):
        if not self.handle_signals or threading.current_thread() is not threading.main_thread():
            return
        for sig in self._HANDLED:
            self._old_handlers[sig] = signal.signal(sig, self._on_signal)

    def _restore_signal_handlers(self):
        for sig, old in self._old_handlers.items():
            signal.signal(sig, old if old is not None else signal.SIG_DFL)
        self._old_handlers = {}

    # --- stop ------------------------------------------------------------------------------

    def _stop_at_exit(self):
        if self._started and not self._stopped:
            self.stop()

    def _step(self, what, fn, *args):
        try:
            fn(*args)
        except Exception as e:          # keep going: every later step still matters
            self.stop_errors.append(f"{what}: {e!r}")

    def stop(self):
        """Stop everything (idempotent): started processes, then whatever else runs inside
        the hosts' namespaces, then the Mininet network, then leftover interfaces; restore
        the sysctls, remove the run record, restore the signal handlers."""
        if self._stopped or self._stopping:
            return
        self._stopping = True
        try:
            self._step("stopping processes", self._stop_group, list(self.processes),
                       signal.SIGTERM, self.stop_timeout)
            self._step("emptying host namespaces", self._sweep_namespaces)
            if self.net is not None:
                self._step("stopping Mininet", self.net.stop)
            self._step("stopping node shells", self._kill_shells)
            self._step("removing interfaces", self._remove_interfaces)
            if self._record is not None and self._record.get("run_dir"):
                self._step("removing the run directory", registry.remove_run_dir,
                           self._record)
            if self._owns_run:
                self._step("restoring sysctls", registry.restore_bridge_netfilter,
                           self.run_id)
            if self.stop_errors and self._owns_run and self._record is not None:
                with self._record_lock:        # no longer in progress: clean_all may take it
                    self._record["stopped"] = True
                    self._save()
            if self.stop_errors:
                print(f"lisp-lab: run {self.run_id} did not stop cleanly "
                      f"({'; '.join(self.stop_errors)}); its record stays in "
                      f"{self.record_path}: run `lisp-lab clean`", file=sys.stderr, flush=True)
            elif self._owns_run:
                with self._record_lock:
                    self._stopped = True
                    registry.remove_record(self.run_id)
        finally:
            self._stopped = True
            self.processes = []
            if self._owns_run:
                _active_runs.discard(self.run_id)
            atexit.unregister(self._stop_at_exit)
            self._restore_signal_handlers()
            self._stopping = False

    def _sweep_namespaces(self):
        """Kill whatever still runs inside the hosts' namespaces (user commands, programs
        started with host.popen) apart from the node shells, which Mininet stops."""
        if self._record is None:
            return
        shells = [n for n in self._record["nodes"] if n.get("in_namespace")
                  and registry.is_our_shell(n) and registry.proc_netns(n["pid"]) == n["netns"]]
        inodes = {n["netns"] for n in shells}
        keep = {n["pid"] for n in shells}
        if not inodes:
            return
        victims = []
        for name in os.listdir("/proc"):
            if name.isdigit() and int(name) not in keep \
                    and registry.proc_netns(int(name)) in inodes:
                ident = registry.proc_identity(int(name))
                if ident["starttime"] is not None:
                    victims.append(ident)
        for sig, grace in ((signal.SIGTERM, 1.0), (signal.SIGKILL, 1.0)):
            for v in victims:
                if registry.same_process(v):
                    try:
                        os.kill(v["pid"], sig)
                    except ProcessLookupError:
                        pass
            if registry.wait_gone(victims, grace):
                break

    def _kill_shells(self):
        """Mininet stops its node shells; this catches those a failed build or stop left."""
        if self._record is None:
            return
        shells = [n for n in self._record["nodes"] if registry.is_our_shell(n)]
        for n in shells:
            registry.safe_killpg(n["pid"], n["starttime"], signal.SIGKILL)
        if not registry.wait_gone(shells, 2.0):
            raise RuntimeError("node shells survived SIGKILL: "
                               + ", ".join(n["name"] for n in shells if registry.same_process(n)))

    def _remove_interfaces(self):
        if self._record is None or not self._record["interfaces"]:
            return
        links = registry.root_links()
        left = []
        for intf in sorted(self._record["interfaces"], key=lambda i: i.get("kind") == "bridge"):
            now = links.get(intf["name"])
            if now is not None and now["ifindex"] == intf["ifindex"]:
                if not registry.delete_link(intf["name"], now["kind"]):
                    left.append(intf["name"])
        if left:
            raise RuntimeError(f"could not delete {', '.join(left)}")

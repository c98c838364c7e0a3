"""What a run leaves behind, and how to remove it (`lisp-lab clean`).

Every emulated run (lab.emu.Lab) keeps a record in /run/lisp-lab/runs/<run_id>.json of what
it created: the Mininet nodes' shells, the processes it started, and the interfaces it made
in the root network namespace. A run that stops normally, or on Ctrl-C or SIGTERM, removes
its record itself. A run that was killed hard (SIGKILL, a crash of Python, a power cut of
the terminal) leaves the record behind, and `clean_all()` uses it to remove exactly what
that run made, and nothing else:

- a process is only signalled when its PID still exists, its start time (from
  /proc/<pid>/stat) is the one recorded, and its command line still looks like ours, so a
  PID the kernel has since given to an unrelated program is never touched;
- a network namespace of a Mininet host is only swept (every process inside it killed)
  when one of those verified processes still lives in it: namespace inode numbers are
  reused at once, so an inode alone proves nothing;
- an interface is only deleted when both its name and its ifindex are the recorded ones
  (Mininet reuses names such as `s1-eth1` from run to run);
- a record whose owner (the Python process that ran the lab) is still alive is a run in
  progress and is left alone, unless `include_live=True`.

This module imports nothing from Mininet, so `lisp-lab clean` works even when Mininet
itself is broken. lab.emu writes the records through the helpers below.
"""
import argparse
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

RUN_DIR = Path("/run/lisp-lab")
RUNS_DIR = RUN_DIR / "runs"
LOCK_FILE = RUN_DIR / "lock"
SYSCTL_SAVE = RUN_DIR / "bridge-nf-saved.json"
RECORD_VERSION = 1
RESERVED_NAMES = frozenset({"runs", "lock"})     # names in RUN_DIR that are not run ids

# Bridged frames pass through iptables/ip6tables/arptables while these are 1 (only when the
# br_netfilter module is loaded: then the files exist).
BRIDGE_NF_SYSCTLS = tuple(Path("/proc/sys/net/bridge") / f"bridge-nf-call-{t}"
                          for t in ("arptables", "iptables", "ip6tables"))

# The command line of a Mininet node's shell: bash --norc --noediting -is mininet:<name>
SHELL_ARGV = ["bash", "--norc", "--noediting", "-is"]


# --- /proc ------------------------------------------------------------------------------

def pid_alive(pid):
    """True when `pid` runs (a zombie does not count)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return False
    return stat[stat.rindex(b")") + 2:].split()[0] != b"Z"


def proc_starttime(pid):
    """Field 22 of /proc/<pid>/stat (clock ticks after boot), or None when there is no such
    process. Together with the PID it names one process for the lifetime of the machine."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # the command name (field 2) is in parentheses and may hold spaces or ')'
    fields = stat[stat.rindex(b")") + 2:].split()
    if fields[0] == b"Z":           # a zombie holds its PID but is no longer running
        return None
    return int(fields[19])


def proc_cmdline(pid):
    """The argument list of a process ([] for a kernel thread), or None when it is gone."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            raw = f.read()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return [a.decode(errors="replace") for a in raw.split(b"\0")[:-1]] if raw else []


def proc_netns(pid):
    """The inode of the network namespace of a process, or None."""
    try:
        return os.stat(f"/proc/{pid}/ns/net").st_ino
    except OSError:
        return None


def proc_pgid(pid):
    try:
        return os.getpgid(pid)
    except OSError:
        return None


def proc_identity(pid):
    """What a record stores to recognise a process later: pid, start time, pgid, netns."""
    return {"pid": pid, "starttime": proc_starttime(pid), "pgid": proc_pgid(pid),
            "netns": proc_netns(pid)}


def same_process(entry):
    """True when the process of a record entry is still the one that was recorded."""
    pid, start = entry.get("pid"), entry.get("starttime")
    return bool(pid) and start is not None and proc_starttime(pid) == start


def argv_matches(cmdline, argv):
    """True when a live command line is the one a process was started with: equal, or the
    program was a script run through its interpreter (cmdline ends with the arguments and
    names the same program)."""
    if not cmdline or not argv:
        return False
    if cmdline == list(argv):
        return True
    rest = list(argv[1:])
    if rest and cmdline[-len(rest):] != rest:
        return False
    name = os.path.basename(argv[0])
    return any(os.path.basename(a) == name for a in cmdline[:len(cmdline) - len(rest)])


def is_our_shell(entry):
    """A recorded Mininet node shell that is still alive and still that shell."""
    if not same_process(entry):
        return False
    cmd = proc_cmdline(entry["pid"]) or []
    return cmd[:4] == SHELL_ARGV and f"mininet:{entry.get('name')}" in cmd


def is_our_process(entry):
    """A recorded started process that is still alive and still that program."""
    return same_process(entry) and argv_matches(proc_cmdline(entry["pid"]), entry.get("argv"))


def pids_in_netns(inode):
    """Every PID whose network namespace has this inode."""
    out = []
    for name in os.listdir("/proc"):
        if name.isdigit() and proc_netns(int(name)) == inode:
            out.append(int(name))
    return out


def root_netns():
    return proc_netns(os.getpid())


def safe_killpg(pgid, leader_starttime, sig):
    """Signal process group `pgid`, whose leader had start time `leader_starttime`, unless
    that number now belongs to someone else. While a group has members the kernel never
    gives its number to a new process, so the number is still ours when no process holds
    it (only the group's remaining members use it) or when the leader is the recorded one.
    Returns True when the group was signalled."""
    if not pgid or pgid <= 1:
        return False
    now = proc_starttime(pgid)
    if now is not None and now != leader_starttime:
        return False
    try:
        os.killpg(pgid, sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def signal_group_or_pid(entry, sig):
    """Send `sig` to the process group of a recorded process when it leads its own group,
    else to the process. Returns True when something was signalled."""
    pid, pgid = entry["pid"], entry.get("pgid")
    try:
        if pgid == pid and proc_pgid(pid) == pid:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
        return True
    except ProcessLookupError:
        return False


def wait_gone(entries, timeout):
    """Wait until none of the recorded processes is alive (or `timeout` seconds)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(same_process(e) for e in entries):
            return True
        time.sleep(0.05)
    return not any(same_process(e) for e in entries)


# --- interfaces of the root namespace ----------------------------------------------------

def root_links():
    """{name: {"ifindex": int, "kind": str or None}} for every interface of this process's
    network namespace (the root namespace for the lab and `lisp-lab clean`)."""
    proc = subprocess.run(["ip", "-j", "-d", "link", "show"], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, timeout=30)
    if proc.returncode != 0:
        raise RuntimeError(f"ip link show failed: {proc.stderr.decode().strip()}")
    out = {}
    for link in json.loads(proc.stdout or b"[]"):
        kind = (link.get("linkinfo") or {}).get("info_kind")
        out[link["ifname"]] = {"ifindex": link["ifindex"], "kind": kind}
    return out


def delete_link(name, kind=None):
    """Delete one interface of the root namespace; True when it is gone afterwards."""
    if kind == "openvswitch":
        cmd = ["ovs-vsctl", "--if-exists", "del-br", name]
    else:
        cmd = ["ip", "link", "del", "dev", name]
    try:
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        pass
    return name not in root_links()


# --- records ------------------------------------------------------------------------------

def record_path(run_id):
    return RUNS_DIR / f"{run_id}.json"


def write_record(record):
    """Write a run record atomically (a reader never sees half a file)."""
    RUNS_DIR.mkdir(parents=True, exist_ok=True)
    path = record_path(record["run_id"])
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(record, indent=1, sort_keys=True))
    os.replace(tmp, path)


def remove_record(run_id):
    try:
        record_path(run_id).unlink()
        return True
    except FileNotFoundError:
        return False


def remove_run_dir(record):
    """Remove the run's own directory (/run/lisp-lab/<run_id>/) when the record names it.
    Returns its path when something was removed."""
    path = record.get("run_dir")
    if not path or Path(path) != RUN_DIR / str(record.get("run_id")) \
            or Path(path).name in RESERVED_NAMES or not Path(path).is_dir():
        return None
    shutil.rmtree(path, ignore_errors=True)
    return path


def read_records():
    """[(path, record or None when unreadable)] for every run record, oldest first."""
    if not RUNS_DIR.is_dir():
        return []
    out = []
    for path in sorted(RUNS_DIR.glob("*.json"), key=lambda p: p.stat().st_mtime):
        try:
            out.append((path, json.loads(path.read_text())))
        except (OSError, ValueError):
            out.append((path, None))
    return out


def run_is_live(record):
    """True when the process that owns the run is still alive (the run is in progress)."""
    if record.get("stopped"):          # its lab stopped, but could not remove everything
        return False
    owner = record.get("owner") or {}
    return same_process(owner)


@contextmanager
def host_lock():
    """Serialises changes to the host-wide state (sysctls, records) between lab processes."""
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    with open(LOCK_FILE, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


# --- bridge netfilter sysctls ----------------------------------------------------------

def read_sysctls():
    """{path: value} for the bridge-nf-call sysctls that exist ({} without br_netfilter)."""
    out = {}
    for path in BRIDGE_NF_SYSCTLS:
        try:
            out[str(path)] = path.read_text().strip()
        except OSError:
            pass
    return out


def write_sysctl(path, value):
    try:
        Path(path).write_text(f"{value}\n")
        return True
    except OSError:
        return False


def disable_bridge_netfilter(run_id):
    """Set the bridge-nf-call sysctls to 0 for a run. The values found before the first
    live run are saved once in SYSCTL_SAVE, so they are restored when the last run ends
    (or by clean_all after a crash). Returns the values that were found."""
    with host_lock():
        found = read_sysctls()
        if not SYSCTL_SAVE.exists() and found:
            SYSCTL_SAVE.write_text(json.dumps(found))
        for path in found:
            write_sysctl(path, 0)
        return found


def restore_bridge_netfilter(own_run_id=None):
    """Put back the saved sysctl values unless another run is still in progress. Returns
    {path: value} of what was restored ({} when nothing was)."""
    with host_lock():
        return _restore_sysctls_locked(own_run_id)


def _restore_sysctls_locked(own_run_id):
    for _, rec in read_records():
        if rec and rec.get("run_id") != own_run_id and run_is_live(rec):
            return {}
    try:
        saved = json.loads(SYSCTL_SAVE.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError):
        saved = {}
    restored = {path: value for path, value in saved.items() if write_sysctl(path, value)}
    try:
        SYSCTL_SAVE.unlink()
    except FileNotFoundError:
        pass
    return restored


# --- clean-up ----------------------------------------------------------------------------

def _say(verbose, text):
    if verbose:
        print(f"lisp-lab clean: {text}", flush=True)


def _kill_verified(entries, verbose, summary, what, grace=2.0):
    """SIGTERM then, after `grace` seconds, SIGKILL the groups of verified processes."""
    if not entries:
        return
    for e in entries:
        if signal_group_or_pid(e, signal.SIGTERM):
            _say(verbose, f"stopped {what} {e.get('name') or e.get('argv')} (pid {e['pid']})")
            summary["processes_killed"].append(e["pid"])
    if not wait_gone(entries, grace):
        for e in entries:
            if same_process(e):
                signal_group_or_pid(e, signal.SIGKILL)
        wait_gone(entries, 1.0)
    for e in entries:                 # a group may outlive its leader
        if e.get("pgid") == e["pid"]:
            safe_killpg(e["pid"], e.get("starttime"), signal.SIGKILL)


def sweep_netns(inode, verbose, summary, grace=1.0):
    """Kill every process inside a network namespace (never the caller's own)."""
    if inode is None or inode == root_netns():
        return
    victims = [proc_identity(pid) for pid in pids_in_netns(inode)]
    victims = [v for v in victims if v["starttime"] is not None]
    for v in victims:
        try:
            os.kill(v["pid"], signal.SIGTERM)
            summary["processes_killed"].append(v["pid"])
            _say(verbose, f"stopped pid {v['pid']} ({' '.join(proc_cmdline(v['pid']) or [])}) "
                          f"inside a lab namespace")
        except ProcessLookupError:
            pass
    if not wait_gone(victims, grace):
        for v in victims:
            if same_process(v):
                try:
                    os.kill(v["pid"], signal.SIGKILL)
                except ProcessLookupError:
                    pass
        wait_gone(victims, 1.0)


def clean_record(record, verbose=True, summary=None):
    """Remove what one run record lists (see the module docstring for the safety rules)."""
    summary = summary if summary is not None else _empty_summary()
    run_id = record.get("run_id", "?")
    root = root_netns()
    # 1. Which of the recorded processes are still ours, and which namespaces they prove.
    procs = [e for e in record.get("processes", []) if is_our_process(e)]
    shells = [e for e in record.get("nodes", []) if is_our_shell(e)]
    namespaces = {e["netns"] for e in procs + shells
                  if e.get("netns") and proc_netns(e["pid"]) == e["netns"]} - {None, root}
    # 2. Started programs first (a daemon may still be writing a capture), then every
    #    process inside the lab's host namespaces, then the node shells.
    _kill_verified(procs, verbose, summary, "process")
    for inode in namespaces:
        sweep_netns(inode, verbose, summary)
    _kill_verified([e for e in shells if same_process(e)], verbose, summary, "node shell",
                   grace=1.0)
    # 3. Interfaces: once the namespaces are gone, their veth pairs go with them; delete
    #    what remains of the recorded ones (name and ifindex must both match).
    wanted = [i for i in record.get("interfaces", []) if i.get("name")]
    deadline = time.monotonic() + 2.0
    links = root_links()
    while (time.monotonic() < deadline and namespaces
           and any(_still_there(i, links) and i.get("kind") == "veth" for i in wanted)):
        time.sleep(0.1)
        links = root_links()
    # bridges last: their ports go first
    for intf in sorted(wanted, key=lambda i: i.get("kind") == "bridge"):
        if _still_there(intf, links):
            if delete_link(intf["name"], links[intf["name"]]["kind"]):
                key = "tuns_deleted" if intf.get("kind") == "tun" else "interfaces_deleted"
                summary[key].append(intf["name"])
                _say(verbose, f"deleted {intf.get('kind') or 'interface'} {intf['name']}")
            else:
                summary["errors"].append(f"could not delete {intf['name']}")
            links = root_links()
        elif intf["name"] in links:
            summary["interfaces_not_ours"].append(intf["name"])
            _say(verbose, f"left {intf['name']} alone: same name, but not the interface "
                          f"run {run_id} created")
    for table, chain, rule in remove_ebtables_rules({i["name"] for i in wanted}):
        summary["ebtables_rules_deleted"].append(f"{table} {chain} {rule}")
        _say(verbose, f"deleted ebtables rule ({table} {chain}) {rule}")
    if remove_run_dir(record):
        summary["run_dirs_removed"].append(record["run_dir"])
        _say(verbose, f"removed {record['run_dir']}")
    if remove_record(run_id):
        summary["records_removed"].append(run_id)
    summary["runs_cleaned"].append(run_id)
    return summary


def remove_ebtables_rules(names):
    """Delete the ebtables rules (filter and nat tables) that match on an interface named in
    `names` (`-i`/`-o`/`--logical-in`/`--logical-out`): the rules a run put on its bridges'
    ports (the DCI's FHRP isolation). Such a rule outlives the interface and would apply to
    the next interface of that name. Returns [(table, chain, rule)] deleted."""
    deleted, names = [], set(names)
    if not names or not shutil.which("ebtables"):
        return deleted
    for table in ("filter", "nat"):
        out = subprocess.run(["ebtables", "-t", table, "-L"], capture_output=True,
                             text=True).stdout
        chain = None
        for line in out.splitlines():
            if line.startswith("Bridge chain:"):
                chain = line.split()[2].rstrip(",")
                continue
            words = line.split()
            if not chain or not words or not words[0].startswith("-"):
                continue
            ifaces = {words[k + 1] for k, w in enumerate(words[:-1])
                      if w in ("-i", "-o", "--logical-in", "--logical-out")}
            if ifaces & names:
                r = subprocess.run(["ebtables", "-t", table, "-D", chain, *words],
                                   capture_output=True, text=True)
                if r.returncode == 0:
                    deleted.append((table, chain, line.strip()))
    return deleted


def _still_there(intf, links):
    now = links.get(intf["name"])
    return now is not None and now["ifindex"] == intf.get("ifindex")


def _empty_summary():
    return {"runs_cleaned": [], "runs_skipped_live": [], "records_removed": [],
            "processes_killed": [], "interfaces_deleted": [], "tuns_deleted": [],
            "interfaces_not_ours": [], "run_dirs_removed": [], "sysctls_restored": {},
            "ebtables_rules_deleted": [],
            "mininet_cleanup": False,
            "errors": []}


def clean_all(verbose=True, include_live=False, mininet_cleanup=False):
    """Remove what interrupted runs left behind; returns a summary dict:

    runs_cleaned, runs_skipped_live, records_removed (run ids); processes_killed (PIDs);
    interfaces_deleted, tuns_deleted (names); interfaces_not_ours (recorded names now used
    by something else, left alone); run_dirs_removed (paths); sysctls_restored
    ({path: value}); mininet_cleanup
    (whether `mn -c` ran); errors (texts).

    Runs still in progress are skipped unless `include_live`. `mininet_cleanup=True` also
    runs Mininet's own `mn -c`, which deletes EVERY Open vSwitch bridge and every interface
    that looks like a Mininet one on the machine, ours or not: only on explicit request.
    Idempotent: a second call finds nothing to do."""
    summary = _empty_summary()
    with host_lock():
        for path, record in read_records():
            if record is None:
                summary["errors"].append(f"unreadable record {path}, removed")
                path.unlink(missing_ok=True)
                continue
            run_id = record.get("run_id", path.stem)
            if run_is_live(record) and not include_live:
                summary["runs_skipped_live"].append(run_id)
                _say(verbose, f"run {run_id} is still in progress (pid "
                              f"{record['owner']['pid']}): left alone")
                continue
            _say(verbose, f"cleaning run {run_id}")
            try:
                clean_record(record, verbose, summary)
            except Exception as e:                      # keep going with the other runs
                summary["errors"].append(f"run {run_id}: {e!r}")
        summary["sysctls_restored"] = _restore_sysctls_locked(None)
        for path, value in summary["sysctls_restored"].items():
            _say(verbose, f"restored {path.replace('/proc/sys/', '').replace('/', '.')} "
                          f"= {value}")
    if mininet_cleanup:
        _say(verbose, "running `mn -c` (removes every Mininet-looking interface and OVS "
                      "bridge on this machine)")
        subprocess.run(["mn", "-c"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        summary["mininet_cleanup"] = True
    if verbose and not any(summary[k] for k in ("runs_cleaned", "processes_killed",
                                                "interfaces_deleted", "tuns_deleted",
                                                "run_dirs_removed", "sysctls_restored",
                                                "mininet_cleanup")):
        _say(verbose, "nothing to clean")
    for e in summary["errors"]:
        print(f"lisp-lab clean: error: {e}", file=sys.stderr, flush=True)
    return summary


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m lab.cleanup",
                                     description="remove what interrupted lab runs left")
    parser.add_argument("--include-live", action="store_true",
                        help="also clean runs whose lab process is still alive")
    parser.add_argument("--mininet", action="store_true",
                        help="also run `mn -c` (touches every Mininet-looking interface)")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("lisp-lab clean: needs root (sudo)", file=sys.stderr)
        return 1
    summary = clean_all(verbose=not args.json, include_live=args.include_live,
                        mininet_cleanup=args.mininet)
    if args.json:
        print(json.dumps(summary, indent=1))
    return 1 if summary["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())

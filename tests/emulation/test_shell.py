"""`lisp-lab cli` driven as a user would: commands in on stdin, output asserted, and nothing
of the run left behind afterwards, whichever way the session ends (exit, EOF, Ctrl-C).

The lab is tests/data/shell-lab.yaml (one client site, two data centers across subnets, a
VM, MS/MR, one router; no delays), which builds in a few seconds. Each command is sent once
the previous one's prompt is back, as a user types: Mininet's CLI hands whatever is typed
while a node's command runs to that command.
"""
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from lab import cleanup
from lab.demo import CAPTURES_DIR
from lab.shell import PROMPT
from topologies.model import load

ROOT = Path(__file__).resolve().parents[2]
LAB_FILE = ROOT / "tests" / "data" / "shell-lab.yaml"
LAB = load(LAB_FILE)
VM_IP = LAB.hosts["vm"].ip(4)
START_TIMEOUT = 120          # a loaded two-core machine (other tests run at the same time)
COMMAND_TIMEOUT = 60


class Session:
    """A `lisp-lab cli` subprocess: send a line, get the output up to the next prompt."""

    def __init__(self, run_id):
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "lab.cli", "cli", str(LAB_FILE), "--run-id", run_id],
            cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, bufsize=1)
        self.out = ""
        self.lock = threading.Lock()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        self.seen = 0                    # prompts consumed so far
        self.start_text = self._until_prompt(START_TIMEOUT)

    def _read(self):
        while True:
            c = self.proc.stdout.read(1)
            if not c:
                return
            with self.lock:
                self.out += c

    def _until_prompt(self, timeout):
        """The text between the last prompt consumed and the next one."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                parts = self.out.split(PROMPT)
            if len(parts) > self.seen + 1:
                self.seen += 1
                return parts[self.seen - 1]
            if self.proc.poll() is not None and not self.reader.is_alive():
                break
            time.sleep(0.05)
        raise AssertionError(f"no prompt within {timeout} s; output so far:\n{self.out}")

    def cmd(self, line, timeout=COMMAND_TIMEOUT):
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        return self._until_prompt(timeout).strip("\n")

    def finish(self, timeout=60):
        """Wait for the process to end; (returncode, the output after the last prompt)."""
        rc = self.proc.wait(timeout)
        self.reader.join(5)
        return rc, self.out.split(PROMPT)[-1]

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def record_of(run_id):
    for _, record in cleanup.read_records():
        if record and record.get("run_id") == run_id:
            return record
    return None


@pytest.fixture
def session(emu):
    """A started session, with what the run had created read from its record while it ran,
    and the root namespace's interfaces from before it."""
    before = emu.snapshot()[0]
    run_id = emu.run_id("shell")
    s = Session(run_id)
    s.run_id = run_id
    s.before = before
    s.record = record_of(run_id)
    assert s.record, f"no run record for {run_id} while the CLI runs"
    try:
        yield s
    finally:
        s.kill()
        shutil.rmtree(CAPTURES_DIR / run_id, ignore_errors=True)


def processes_of(run_id, netns):
    """Processes alive in one of the run's network namespaces, or whose command line names
    the run (its daemons' configs and its pcaps are under captures/<run-id>/)."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        pid = int(name)
        if not cleanup.pid_alive(pid):
            continue
        if cleanup.proc_netns(pid) in netns or run_id in " ".join(cleanup.proc_cmdline(pid)
                                                                 or []):
            found.append((pid, cleanup.proc_cmdline(pid)))
    return found


def assert_nothing_left(emu, s):
    """No interface, process, run record or run directory of the session's run is left
    (`s`: a Session, or anything with the run's id, record and interfaces from before)."""
    record = s.record
    after = emu.link_table()
    created = {i["name"] for i in record["interfaces"]}
    assert created, "the record listed no interface (the check below would prove nothing)"
    left = sorted(n for n in after if n not in s.before and (
        n in created or n.startswith(("tsw1", "tsw2"))))
    assert not left, f"interfaces of the run are left: {left}"
    assert record_of(s.run_id) is None, "the run record is left"
    if record.get("run_dir"):
        assert not Path(record["run_dir"]).exists(), "the run directory is left"
    entries = record["nodes"] + record["processes"]
    assert entries, "the record listed no process"
    alive = [e.get("name") or e["pid"] for e in entries if cleanup.same_process(e)]
    assert not alive, f"processes of the run are still alive: {alive}"
    netns = {n["netns"] for n in record["nodes"] if n.get("in_namespace")}
    assert netns and netns != {cleanup.root_netns()}
    assert not processes_of(record["run_id"], netns)
    if getattr(s, "proc", None) is not None:
        assert not emu.pid_alive(s.proc.pid)


def table_rows(text, eid):
    return [line for line in text.splitlines() if line.split()[1:2] == [eid]]


def test_a_session_of_lisp_and_mininet_commands(emu, session):
    s = session
    assert "vm (10.10.0.5/32) registered by xtr1" in s.start_text
    # the session's own processes are in the record: the daemons, the echo servers
    names = {p["name"] for p in s.record["processes"]}
    assert {"lisp-xtr1", "lisp-xtr2", "lisp-xtrc", "lisp-msmr", "echo-vm"} <= names

    out = s.cmd("registrations")
    rows = table_rows(out, f"{VM_IP}/32")
    assert rows and LAB.rloc("xtr1") in rows[0], out

    out = s.cmd(f"c1 ping -c5 -i0.2 {VM_IP}")      # the first packets resolve the mapping
    received = re.search(r"(\d+) received", out)
    assert received and int(received.group(1)) >= 1, out
    out = s.cmd("mapcache xtrc")
    rows = [line for line in out.splitlines() if VM_IP in line]
    assert rows and LAB.rloc("xtr1") in rows[0], out

    out = s.cmd("help move")
    assert out.startswith("move VM SITE [--cold S]"), out

    out = s.cmd("move nosuch dc2")                 # one line, and the session goes on
    assert out.splitlines() == ["*** move: no VM 'nosuch' (VMs: vm)"], out
    out = s.cmd("mapcache nosuch")
    assert len(out.splitlines()) == 1 and "nosuch" in out, out
    out = s.cmd("trace c1")
    assert len(out.splitlines()) == 1 and "usage" in out, out

    # Ctrl-C during a command ends that command, not the session
    s.proc.stdin.write("move vm dc2 --cold 30\n")
    s.proc.stdin.flush()
    port = f"{LAB.sites['dc1'].switch}-vm"          # the VM's switch port, down while cold
    assert emu.wait_for(lambda: "state DOWN" in subprocess.run(
        ["ip", "-o", "link", "show", "dev", port], capture_output=True, text=True).stdout, 30)
    s.proc.send_signal(signal.SIGINT)
    out = s._until_prompt(COMMAND_TIMEOUT).strip("\n")
    assert out == "move interrupted: vm is in dc1", out

    out = s.cmd("move vm dc2")
    assert "vm moved to dc2 (live)" in out, out
    assert f"{VM_IP}/32 registered by xtr2 ({LAB.rloc('xtr2')})" in out, out
    out = s.cmd("registrations")
    rows = table_rows(out, f"{VM_IP}/32")
    assert rows and LAB.rloc("xtr2") in rows[0], out

    # the first probes after a move may still take the old site's triangle; the path most
    # probes take converges to the direct one, through DC2's access link
    expected = LAB.expected_path("c1", "vm", "dc2")
    for _ in range(5):
        out = s.cmd("trace c1 vm")
        path = re.search(r"^path: +(.+?)  \(", out, re.M)
        assert path, out
        if path.group(1).split(" > ") == expected:
            break
        time.sleep(1)
    links = path.group(1).split(" > ")
    assert links[-1] == "dc2-access", out
    assert links == expected, out
    assert re.search(r"^expected: .*dc2-access  \(the model's, vm in dc2; matches\)$", out,
                     re.M), out
    assert re.search(r"^  1  client-access ", out, re.M), out

    out = s.cmd("counters xtr2")
    counters = dict(line.split() for line in out.splitlines())
    assert int(counters.get("map_register_sent", 0)) > 0, out

    out = s.cmd("capture start")
    where = re.search(r"capturing on \d+ links: (\S+)/LINK\.pcap", out)
    assert where, out
    s.cmd(f"c1 ping -c2 -i0.2 {VM_IP}")
    out = s.cmd("capture stop")
    assert re.search(r"^  client-access +[1-9]\d* packets?$", out, re.M), out
    pcaps = Path(where.group(1))
    assert {p.stem for p in pcaps.glob("*.pcap")} == set(LAB.captures())

    out = s.cmd("xtr1 ip route")                   # Mininet's own commands keep working
    assert "172.16.2.0/30 dev xtr1-r1" in out, out
    out = s.cmd("nodes")
    assert "xtrc" in out and "vm" in out, out
    out = s.cmd("py lab.where['vm']")              # and `py` knows the lab
    assert out == "dc2", out

    s.proc.stdin.write("exit\n")
    s.proc.stdin.flush()
    rc, tail = s.finish()
    assert rc == 0, tail
    assert "shell-lab removed" in tail, tail
    assert_nothing_left(emu, s)


@pytest.mark.parametrize("how", ["eof", "ctrl-c", "sigterm", "sighup-in-a-command"])
def test_leaving_without_exit_cleans_up_the_same(emu, session, how):
    """Ctrl-D (stdin closed), Ctrl-C at the prompt, SIGTERM, and SIGHUP (the terminal
    closed) while a node's command runs all remove the lab."""
    s = session
    assert s.cmd("registrations")                  # a working session first
    s.cmd("capture start")                         # and something more to stop
    if how == "eof":
        s.proc.stdin.close()
    elif how == "sighup-in-a-command":
        s.proc.stdin.write(f"c1 ping -i0.2 {VM_IP}\n")     # runs until interrupted
        s.proc.stdin.flush()
        assert emu.wait_for(lambda: "bytes from" in s.out.split(PROMPT)[-1], 30), s.out
        s.proc.send_signal(signal.SIGHUP)
    else:
        s.proc.send_signal(signal.SIGINT if how == "ctrl-c" else signal.SIGTERM)
    rc, tail = s.finish()
    assert rc == {"eof": 0, "ctrl-c": 130, "sigterm": 128 + signal.SIGTERM,
                  "sighup-in-a-command": 128 + signal.SIGHUP}[how], tail
    assert ("shell-lab removed" if how in ("eof", "ctrl-c") else "stopped by a signal") \
        in tail, tail
    assert "did not stop cleanly" not in s.out, s.out
    assert "Traceback" not in s.out, s.out
    assert_nothing_left(emu, s)


def test_a_crash_of_the_cli_removes_everything(emu, monkeypatch, capsys):
    """An exception that escapes the CLI itself (not a command's: those are one line in the
    session) ends it with one line, and the lab is removed all the same."""
    from types import SimpleNamespace

    from lab import shell
    before = emu.snapshot()[0]
    run_id = emu.run_id("shell-crash")
    seen = {}

    def crash(cli, *a):
        seen["record"] = record_of(run_id)
        raise RuntimeError("boom in the CLI")

    monkeypatch.setattr(shell.LabCLI, "cmdloop", crash)
    r, w = os.pipe()
    try:
        with open(r) as stdin:
            rc = shell.main(LAB, SimpleNamespace(run_id=run_id, file=str(LAB_FILE)), stdin)
    finally:
        os.close(w)
        shutil.rmtree(CAPTURES_DIR / run_id, ignore_errors=True)
    err = capsys.readouterr().err
    assert rc == 1
    lines = [line for line in err.splitlines() if "boom" in line]
    assert len(lines) == 1 and lines[0].startswith("lisp-lab cli: boom in the CLI"), err
    assert "Traceback" not in err
    assert seen["record"]
    assert_nothing_left(emu, SimpleNamespace(before=before, run_id=run_id,
                                             record=seen["record"]))

"""The emulation harness (lab.emu, lab.cleanup): a network that starts, works, and always
goes away, leaving nothing of its own and touching nothing else.

Interface checks compare `ip -o link` (name -> ifindex) before and after: every interface
that existed before must still be there with the same ifindex, and nothing the run created
may remain. (New interfaces that are not the run's are tolerated, as other programs may be
running on the machine.)
"""
import json
import os
import select
import signal
import subprocess
import textwrap
import time
from pathlib import Path

import pytest

from lab import cleanup
from lab.cleanup import clean_all
from lab.emu import NETEM_NOTICE, Lab

TERM_IGNORING = ("import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                 "print('ready', flush=True); time.sleep(1000)")


def record_of(lab):
    return json.loads(lab.record_path.read_text())


def assert_gone(emu, before, record, pids=(), sysctls=None):
    """Nothing of the run in `record` is left, and nothing that existed before was touched."""
    after = emu.link_table()
    changed = {n: (i, after.get(n)) for n, i in before.items() if after.get(n) != i}
    assert not changed, f"interfaces that existed before were touched: {changed}"
    created = {i["name"] for i in record["interfaces"]}
    assert created, "the record listed no interface (the checks below would prove nothing)"
    left = sorted(n for n in after if n not in before and (n in created or any(
        n.startswith(node["name"] + "-") for node in record["nodes"])))
    assert not left, f"interfaces of the run are left: {left}"
    assert not cleanup.record_path(record["run_id"]).exists(), "the run record is left"
    if record.get("run_dir"):
        assert not Path(record["run_dir"]).exists(), "the run directory is left"
    alive = [p for p in list(pids) + [n["pid"] for n in record["nodes"]] if emu.pid_alive(p)]
    assert not alive, f"processes of the run are still alive: {alive}"
    assert emu.sysctls_restored(sysctls), (emu.read_sysctls(), sysctls)


def test_two_hosts_ping_and_a_clean_stop(emu, tmp_path):
    before, sysctls = emu.snapshot()
    with Lab(emu.two_host_topo("eh1", "eh2", "es1"), run_id=emu.run_id("ping")) as lab:
        h1, h2 = lab["eh1"], lab["eh2"]
        result = lab.run(h1, ["ping", "-c", "2", "-W", "2", h2.IP()], timeout=10)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "2 packets transmitted, 2 received" in result.stdout

        record = record_of(lab)
        created = {i["name"]: i["ifindex"] for i in record["interfaces"]}
        assert set(created) == {"es1", "es1-eth1", "es1-eth2"}
        assert {n: emu.link_table().get(n) for n in created} == created
        assert {i["name"]: i["kind"] for i in record["interfaces"]} == {
            "es1": "bridge", "es1-eth1": "veth", "es1-eth2": "veth"}
        assert record["owner"]["pid"] == os.getpid()
        assert [n["name"] for n in record["nodes"]] == ["eh1", "eh2", "es1"]
        assert record["netem"] is lab.netem
        # bridged frames do not cross iptables while the lab runs
        assert set(emu.read_sysctls().values()) <= {"0"}
        if sysctls is not None:
            assert record["sysctls_found"] == sysctls

        (lab.run_dir / "ctl.sock").write_text("")
        assert record_of(lab)["run_dir"] == str(lab.run_dir)
        proc = lab.start_process(h2, ["sleep", "1000"], tmp_path / "sleep.log")
        assert os.readlink(f"/proc/{proc.pid}/ns/net") == os.readlink(f"/proc/{h2.pid}/ns/net")
        assert os.getpgid(proc.pid) == proc.pid and os.getsid(proc.pid) == proc.pid
        assert [p["pid"] for p in record_of(lab)["processes"]] == [proc.pid]
    assert proc.returncode == -signal.SIGTERM
    assert not lab.run_dir.exists()
    assert_gone(emu, before, record, [proc.pid], sysctls)


def test_a_body_that_raises_still_cleans_up(emu, tmp_path):
    before, sysctls = emu.snapshot()
    with pytest.raises(RuntimeError, match="boom"):
        with Lab(emu.two_host_topo("eh1", "eh2", "es1"), run_id=emu.run_id("raise")) as lab:
            proc = lab.start_process("eh1", ["sleep", "1000"], tmp_path / "sleep.log")
            record = record_of(lab)
            raise RuntimeError("boom")
    assert proc.returncode == -signal.SIGTERM
    assert_gone(emu, before, record, [proc.pid], sysctls)


def test_stopping_the_lab_kills_what_was_started(emu, python, tmp_path):
    """Obedient and SIGTERM-ignoring programs, a grandchild in the same group, a program
    started with Mininet's own popen (not tracked, but inside a host namespace) and one in
    the root namespace: all are gone after the Lab stops."""
    before = emu.snapshot()[0]
    log = tmp_path / "procs.log"
    pidfile = tmp_path / "grandchild.pid"
    with Lab(emu.two_host_topo("eh1", "eh2", "es1"), run_id=emu.run_id("kill")) as lab:
        obedient = lab.start_process("eh1", ["sleep", "1000"], log)
        stubborn_log = tmp_path / "stubborn.log"
        stubborn = lab.start_process("eh2", [python, "-c", TERM_IGNORING], stubborn_log)
        parent = lab.start_process("eh1", ["sh", "-c", f"sleep 1001 & echo $! > {pidfile}; wait"],
                                   log)
        in_root = lab.start_process(None, ["sleep", "1002"], log)
        untracked = lab["eh2"].popen(["sleep", "1003"])
        assert emu.wait_for(lambda: "ready" in stubborn_log.read_text(), 10)
        assert emu.wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), 5)
        grandchild = int(pidfile.read_text())
        assert os.getpgid(grandchild) == parent.pid
        assert os.readlink(f"/proc/{in_root.pid}/ns/net") == os.readlink("/proc/self/ns/net")
        record = record_of(lab)
        assert len(record["processes"]) == 4
        started = time.monotonic()
    took = time.monotonic() - started
    assert obedient.returncode == -signal.SIGTERM
    assert stubborn.returncode == -signal.SIGKILL       # it ignored SIGTERM for 2 s
    assert 1.9 <= took < 6, f"stopping took {took:.1f} s"
    assert in_root.returncode == -signal.SIGTERM
    assert untracked.wait(timeout=5) is not None
    pids = [obedient.pid, stubborn.pid, parent.pid, grandchild, in_root.pid, untracked.pid]
    assert_gone(emu, before, record, pids)


def test_stop_process_with_sigint_and_early_exit(emu, tmp_path):
    with Lab(emu.two_host_topo("eh1", "eh2", "es1"), run_id=emu.run_id("one")) as lab:
        short = lab.start_process("eh1", ["sh", "-c", "echo hello; exit 3"], tmp_path / "s.log")
        assert short.wait(timeout=5) == 3
        assert short.read_log() == "hello\n"
        long = lab.start_process("eh1", ["sleep", "1000"], tmp_path / "l.log")
        assert long.stop(sig=signal.SIGINT) == -signal.SIGINT
        assert [p["pid"] for p in record_of(lab)["processes"]] == [short.pid]
    assert not emu.pid_alive(long.pid)


CHILD = """
import json, os, sys, time
from lab.emu import Lab
from mininet.topo import Topo
names, run_id, out = sys.argv[1].split(","), sys.argv[2], sys.argv[3]

class T(Topo):
    def build(self):
        s = self.addSwitch(names[2])
        self.addLink(self.addHost(names[0]), s)
        self.addLink(self.addHost(names[1]), s)

IGNORE = {ignore!r}
lab = Lab(T(), run_id=run_id)
try:
    lab.start()
    plain = lab.start_process(names[0], ["sleep", "1000"], out + ".log")
    stubborn = lab.start_process(names[1], [sys.executable, "-c", IGNORE], out + ".h.log")
    stubborn_root = lab.start_process(None, [sys.executable, "-c", IGNORE], out + ".r.log")
    for p in (stubborn, stubborn_root):
        while "ready" not in p.read_log():
            time.sleep(0.02)
    (lab.run_dir / "ctl.sock").write_text("")
    print(json.dumps({{"plain": plain.pid, "stubborn": [stubborn.pid, stubborn_root.pid],
                      "record": str(lab.record_path)}}), flush=True)
    time.sleep(60)
finally:
    print("finally ran", flush=True)
    lab.stop()
"""


def start_child(tmp_path, python, child_env, names, run_id):
    script = tmp_path / "child.py"
    script.write_text(textwrap.dedent(CHILD.format(ignore=TERM_IGNORING)))
    proc = subprocess.Popen([python, str(script), ",".join(names), run_id,
                             str(tmp_path / "child")], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=child_env)
    ready, _, _ = select.select([proc.stdout], [], [], 20)
    if not ready:
        proc.kill()
        pytest.fail(f"the child did not start its lab: {proc.communicate()}")
    line = proc.stdout.readline()
    if not line.startswith("{"):
        proc.kill()
        pytest.fail(f"the child did not start its lab: {line} {proc.communicate()}")
    return proc, json.loads(line)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_to_the_lab_process_cleans_up(emu, python, child_env, tmp_path, sig):
    before, sysctls = emu.snapshot()
    proc, info = start_child(tmp_path, python, child_env, ("gh1", "gh2", "gs1"),
                             emu.run_id("sig"))
    record = json.loads(Path(info["record"]).read_text())
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=20)
    assert "finally ran" in out, err
    # SIGTERM exits with 128+15; an uncaught KeyboardInterrupt ends Python by SIGINT
    assert proc.returncode == (143 if sig == signal.SIGTERM else -signal.SIGINT), err
    assert_gone(emu, before, record, [info["plain"], *info["stubborn"]], sysctls)


def test_a_hard_killed_run_is_removed_by_clean_all(emu, python, child_env, tmp_path, capsys):
    decoy_bridge = f"kdecoy{os.getpid() % 100000}"
    subprocess.run(["ip", "link", "add", "name", decoy_bridge, "type", "bridge"], check=True)
    decoy_proc = subprocess.Popen(["sleep", "1004"], start_new_session=True)
    try:
        before, sysctls = emu.snapshot()
        run_id = emu.run_id("hard")
        proc, info = start_child(tmp_path, python, child_env, ("kh1", "kh2", "ks1"), run_id)
        record = json.loads(Path(info["record"]).read_text())
        proc.kill()
        proc.communicate(timeout=10)

        # What a crash leaves: the record, the bridge, the programs that ignore SIGTERM,
        # and (held alive by one of them) kh2's namespace with its veth pair.
        # The plain program died with its parent (parent-death signal).
        assert emu.wait_for(lambda: not emu.pid_alive(info["plain"]), 3)
        assert Path(info["record"]).exists()
        assert Path(record["run_dir"], "ctl.sock").exists()
        assert all(emu.pid_alive(p) for p in info["stubborn"])
        links = emu.link_table()
        recorded = {i["name"]: i["ifindex"] for i in record["interfaces"]}
        assert links.get("ks1") == recorded["ks1"]
        assert links.get("ks1-eth2") == recorded["ks1-eth2"]
        if sysctls:
            assert set(emu.read_sysctls().values()) == {"0"}
        capsys.readouterr()

        summary = clean_all(verbose=True)
        printed = capsys.readouterr().out
        assert run_id in summary["runs_cleaned"] and run_id in summary["records_removed"]
        assert set(info["stubborn"]) <= set(summary["processes_killed"])
        assert "ks1" in summary["interfaces_deleted"]
        assert summary["run_dirs_removed"] == [record["run_dir"]]
        assert not Path(record["run_dir"]).exists()
        assert f"cleaning run {run_id}" in printed and "deleted bridge ks1" in printed
        assert summary["errors"] == []
        assert_gone(emu, before, record, [info["plain"], *info["stubborn"]], sysctls)
        # nothing else was touched
        assert emu.link_table().get(decoy_bridge) == before[decoy_bridge]
        assert decoy_proc.poll() is None

        again = clean_all(verbose=True)             # idempotent
        assert run_id not in again["runs_cleaned"]
        assert not {"ks1", "ks1-eth1", "ks1-eth2"} & set(again["interfaces_deleted"])
    finally:
        decoy_proc.kill()
        decoy_proc.wait()
        subprocess.run(["ip", "link", "del", decoy_bridge], stderr=subprocess.DEVNULL)


def test_clean_all_leaves_live_runs_and_foreign_things_alone(emu, tmp_path):
    with Lab(emu.two_host_topo("eh1", "eh2", "es1"), run_id=emu.run_id("live")) as lab:
        summary = clean_all(verbose=False)
        assert lab.run_id in summary["runs_skipped_live"]
        assert lab.record_path.exists()
        assert lab.run(lab["eh1"], ["ping", "-c", "1", "-W", "2", lab["eh2"].IP()]).returncode == 0

    # A record of a dead run whose names and PIDs now belong to others.
    bridge = f"kfake{os.getpid() % 100000}"
    subprocess.run(["ip", "link", "add", "name", bridge, "type", "bridge"], check=True)
    victim = subprocess.Popen(["sleep", "1005"], start_new_session=True)
    finished = subprocess.Popen(["true"])
    finished.wait()
    try:
        start = cleanup.proc_starttime(victim.pid)
        run_id = emu.run_id("forged")
        cleanup.write_record({
            "version": 1, "run_id": run_id, "owner": {"pid": finished.pid, "starttime": 1},
            "nodes": [{"name": "fh1", "pid": victim.pid, "pgid": victim.pid,
                       "starttime": start, "netns": cleanup.proc_netns(victim.pid),
                       "in_namespace": True}],                     # not a Mininet shell
            "processes": [
                {"pid": victim.pid, "pgid": victim.pid, "starttime": start + 1,
                 "argv": ["sleep", "1005"]},                        # PID reused
                {"pid": victim.pid, "pgid": victim.pid, "starttime": start,
                 "argv": ["lisp-node", "x.json"]}],                # another program
            "interfaces": [{"name": bridge, "ifindex": emu.link_table()[bridge] + 1000,
                            "kind": "bridge"}]})                    # name reused
        summary = clean_all(verbose=False)
        assert run_id in summary["runs_cleaned"]
        assert bridge in summary["interfaces_not_ours"]
        assert victim.pid not in summary["processes_killed"]
        assert victim.poll() is None
        assert bridge in emu.link_table()
        assert not cleanup.record_path(run_id).exists()
    finally:
        victim.kill()
        victim.wait()
        subprocess.run(["ip", "link", "del", bridge], stderr=subprocess.DEVNULL)


def netem_expected():
    """An independent guess at netem support: the module is loaded or installed."""
    if Path("/sys/module/sch_netem").exists():
        return True
    try:
        return subprocess.run(["modinfo", "sch_netem"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL).returncode == 0
    except OSError:
        return False


def test_netem_detection_and_a_delayed_link(emu, python, child_env):
    """netem is probed once per process; without it one line says so, and a topology that
    asks for a link delay still gets it, from a userspace relay."""
    script = textwrap.dedent("""
        import json, sys, re
        from lab.emu import Lab, netem_available, link_class
        from mininet.topo import Topo
        first, second = netem_available(), netem_available()
        class T(Topo):
            def build(self):
                s = self.addSwitch("ns1")
                self.addLink(self.addHost("nh1"), s, delay="5ms")
                self.addLink(self.addHost("nh2"), s, delay="5ms")
        with Lab(T(), run_id=sys.argv[1]) as lab:
            r = lab.run("nh1", ["ping", "-c", "3", "-i", "0.2", "-W", "2", lab["nh2"].IP()])
            rtt = re.search(r"= ([0-9.]+)/", r.stdout)
            print(json.dumps({"first": first, "second": second, "link": link_class().__name__,
                              "lab": lab.netem, "rc": r.returncode,
                              "rtt_min": float(rtt.group(1)) if rtt else None}))
    """)
    proc = subprocess.run([python, "-c", script, emu.run_id("netem")], env=child_env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    expected = netem_expected()
    assert got["first"] is expected and got["second"] is expected and got["lab"] is expected
    assert got["rc"] == 0
    notices = [line for line in proc.stderr.splitlines() if "netem" in line]
    assert got["rtt_min"] >= 15.0            # 5 ms on each of 4 link traversals, either way
    if expected:
        assert got["link"] == "TCLink" and notices == []
    else:
        assert got["link"] == "Link"
        assert notices == [NETEM_NOTICE]
        assert NETEM_NOTICE.startswith("netem is not available on this kernel: link delays "
                                       "and loss are emulated by a userspace relay")


def test_a_machine_without_br_netfilter_sysctls(emu, monkeypatch, tmp_path):
    """Without br_netfilter the sysctl files do not exist: the Lab neither fails nor writes."""
    missing = tmp_path / "no-such-dir" / "bridge-nf-call-iptables"
    monkeypatch.setattr(cleanup, "BRIDGE_NF_SYSCTLS", (missing,))
    before = emu.snapshot()[0]
    with Lab(emu.two_host_topo("eh1", "eh2", "es1"), run_id=emu.run_id("nosysctl")) as lab:
        assert record_of(lab)["sysctls_found"] == {}
        assert lab.run("eh1", ["ping", "-c", "1", "-W", "2", lab["eh2"].IP()]).returncode == 0
        record = record_of(lab)
    assert not missing.parent.exists()
    assert_gone(emu, before, record)


def test_a_run_id_in_use_is_refused_and_the_running_lab_untouched(emu):
    run_id = emu.run_id("twice")
    with Lab(emu.two_host_topo("eh1", "eh2", "es1"), run_id=run_id) as lab:
        record = lab.record_path.read_text()
        with pytest.raises(RuntimeError, match="in use"):
            Lab(emu.two_host_topo("fh1", "fh2", "fs1"), run_id=run_id).start()
        assert lab.record_path.read_text() == record
        assert lab.run("eh1", ["ping", "-c", "1", "-W", "2", lab["eh2"].IP()]).returncode == 0
        assert "fs1" not in emu.link_table()
    assert not lab.record_path.exists()


def test_clean_removes_the_ebtables_rules_on_a_dead_runs_ports(emu):
    """A run that dies after putting FHRP-isolation rules on its DCI port leaves them
    behind; clean removes those (matched by the run's interface names) and only those."""
    mine, other = "zzlisp-dci", "zzlisp-keep"
    rules = [("nat", "PREROUTING", ["-i", mine, "-s", "00:00:5e:00:01:01", "-j", "DROP"]),
             ("filter", "FORWARD", ["-p", "ARP", "--arp-ip-dst", "10.10.0.1", "-o", mine,
                                    "-j", "DROP"]),
             ("filter", "FORWARD", ["-o", other, "-j", "DROP"])]
    try:
        for table, chain, rule in rules:
            subprocess.run(["ebtables", "-t", table, "-A", chain, *rule], check=True)
        deleted = cleanup.remove_ebtables_rules({mine})
        assert sorted(t for t, _, _ in deleted) == ["filter", "nat"]
        listing = {t: subprocess.run(["ebtables", "-t", t, "-L"], capture_output=True,
                                     text=True).stdout for t in ("filter", "nat")}
        assert mine not in listing["filter"] + listing["nat"]
        assert other in listing["filter"]
    finally:
        for table, chain, rule in rules:
            subprocess.run(["ebtables", "-t", table, "-D", chain, *rule],
                           capture_output=True)

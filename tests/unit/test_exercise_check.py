"""lab/check.py without root: the exercises' requirement files read and name what their
scenarios have, and each kind of requirement is judged right on synthetic runs (passes,
fails, and says the measured value)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from lab import check
from lab.check import Measured, exercises, judge, judge_all, load_exercise, summary_lines
from topologies.model import LabFileError, load

ROOT = Path(__file__).resolve().parents[2]
MOVE_T = 1000.0


def ex6():
    return load_exercise(check.find_exercise("6"))


def req(ex, rid):
    return next(r for r in ex.requirements if r.id == rid)


def run(result=None, moves=None, events=None, frames=None):
    """A synthetic measured run of exercise 6's lab (its hosts' addresses and RLOCs)."""
    model = load(ex6().scenario)
    base = {"checks": [], "path_after": None, "convergence_ms": None}
    base.update(result or {})
    return Measured(base, [{"host": "vm", "to": "dc2", "time": MOVE_T, "cold_s": 0}]
                    if moves is None else moves, events or {}, frames,
                    {h.name: [str(a.ip) for a in h.addresses] for h in model.hosts.values()},
                    {n: [model.rloc(n)] for n in ("xtr1", "xtr2", "xtrc", "msmr")})


def ev(name, t, **fields):
    return {"time": t, "event": name, **fields}


def test_every_exercise_reads_and_names_what_its_files_have():
    found = exercises()
    assert [e.name[:2] for e in found] == ["01", "02", "03", "04", "05", "06"]
    for e in found:
        assert e.page.exists() and e.scenario.exists(), e.name
        for f in [e.scenario] + ([e.answer] if e.answer else []):
            check.check_names(e, load(f))        # raises naming the requirement's line


def test_find_exercise_by_number_name_or_path_and_a_clear_line_otherwise():
    assert check.find_exercise("6").name == "06-securing.check.yaml"
    assert check.find_exercise("06-securing").name == "06-securing.check.yaml"
    assert check.find_exercise("5").name == "05-traffic-engineering.check.yaml"
    with pytest.raises(LabFileError, match=r"no exercise '7' \(exercises: 01-first-packet, "):
        check.find_exercise("7")


def test_a_bad_requirement_file_is_one_line_with_its_line(tmp_path):
    f = tmp_path / "09-x.check.yaml"
    f.write_text("title: x\nrequirements:\n  - {id: a, says: b, report: k, max: 1}\n"
                 "  - {id: c, says: d, report: k, events: e}\n")
    with pytest.raises(LabFileError, match=r"09-x.check.yaml:4: a requirement has exactly one"):
        load_exercise(f)
    f.write_text("title: x\nrequirements:\n  - id: a\n    says: b\n    report: k\n"
                 "    maximum: 1\n")
    with pytest.raises(LabFileError, match=r"09-x.check.yaml:6: unknown key 'maximum'"):
        load_exercise(f)


def test_a_requirement_naming_a_missing_link_fails_before_any_run(tmp_path):
    f = tmp_path / "09-x.check.yaml"
    f.write_text("title: x\nrequirements:\n  - {id: a, says: b, capture: nowhere, "
                 "filter: lisp}\n")
    with pytest.raises(LabFileError, match=r":3: requirement a: no captured link 'nowhere'"):
        check.check_names(load_exercise(f), load(ex6().scenario))


def test_events_match_the_host_the_rloc_and_the_time_after_the_move():
    e = ex6()
    xtr2 = load(e.scenario).rloc("xtr2")
    good = run(events={"msmr": [ev("registered", MOVE_T + 0.2, eid="10.10.0.5/32",
                                   **{"from": xtr2})]})
    ok, detail = judge(req(e, "key-accepted"), good)
    assert ok and detail.startswith("msmr logged 1 registered with eid vm, from xtr2 after")
    early = run(events={"msmr": [ev("registered", MOVE_T - 0.2, eid="10.10.0.5/32",
                                    **{"from": xtr2})]})
    assert not judge(req(e, "key-accepted"), early)[0]
    other = run(events={"msmr": [ev("registered", MOVE_T + 1, eid="10.10.0.200/32",
                                    **{"from": xtr2})]})
    assert not judge(req(e, "key-accepted"), other)[0]


def test_a_failed_registration_says_why_from_the_rejections_it_saw():
    e = ex6()
    xtr2 = load(e.scenario).rloc("xtr2")
    bad = run(events={"msmr": [ev("register_rejected", MOVE_T + i, reason="authentication "
                                  "failed", **{"from": xtr2}) for i in range(3)]})
    ok, detail = judge(req(e, "key-accepted"), bad)
    assert not ok
    assert detail == ("msmr logged 0 registered with eid vm, from xtr2 after the move (wanted "
                      "at least 1); msmr logged 3 register_rejected: 3 x authentication failed")
    ok, detail = judge(req(e, "no-auth-failure"), bad)
    assert not ok and "logged 3 register_rejected" in detail and "(wanted at most 0)" in detail


def test_an_eid_matches_a_prefix_covering_the_host():
    e = ex6()
    seen = run(events={"xtr1": [ev("dynamic_eid_rejected", 5.0, eid="[0]10.10.0.200",
                                   reason="outside dynamic-EID ranges")]})
    assert judge(req(e, "rogue-seen"), seen)[0]
    assert not judge(req(e, "rogue-seen"), run())[0]
    ex4 = load_exercise(check.find_exercise("4"))
    m = load(ex4.scenario)
    r = Measured({}, [], {"pxtr": [ev("map_cache_installed", 1.0, eid="[0]2001:db8:a::/64",
                                      **{"from": m.rloc("xtrw")})]}, None,
                 {"h1": ["2001:db8:a::10"]}, {"xtrw": [m.rloc("xtrw")]})
    assert judge(req(ex4, "proxy-learns"), r)[0]


def test_after_the_move_without_a_move_fails_saying_so():
    ok, detail = judge(req(ex6(), "key-accepted"), run(moves=[]))
    assert not ok and "has no move" in detail


def test_report_values_null_bounds_contains_and_equals():
    e2 = load_exercise(check.find_exercise("2"))
    assert judge(req(e2, "converged"), run({"convergence_ms": 412.5})) == \
        (True, "convergence_ms = 412.5 (wanted at most 2000)")
    ok, detail = judge(req(e2, "converged"), run({"convergence_ms": None}))
    assert not ok and detail == "convergence_ms = null: no number was measured"
    assert not judge(req(e2, "converged"), run({"convergence_ms": 2400.0}))[0]
    path = ["client-access", "client-uplink", "core-r1-r3", "dc2-uplink", "dc2-access"]
    assert judge(req(e2, "direct-path"), run({"path_after": path}))[0]
    assert judge(req(e2, "no-hairpin"), run({"path_after": path}))[0]
    hairpin = path[:2] + ["core-r1-r2", "dc1-uplink", "dc1-access", "dci", "dc2-access"]
    ok, detail = judge(req(e2, "no-hairpin"), run({"path_after": hairpin}))
    assert not ok and detail.endswith(": has dci")
    e3 = load_exercise(check.find_exercise("3"))
    assert judge(req(e3, "no-dci"), run({"link_roles": {"dci": None}}))[0]
    ok, detail = judge(req(e3, "no-dci"), run({"link_roles": {"dci": "dci"}}))
    assert not ok and detail == "link_roles.dci = dci (wanted null)"
    ok, detail = judge(req(e3, "no-dci"), run({}))
    assert not ok and detail == "the run measured no link_roles.dci"


def test_scenario_checks_missing_failed_and_passed():
    e2 = load_exercise(check.find_exercise("2"))
    r = req(e2, "convergence-check")
    path = {"step": "t=6s check path from=c1 to=vm path=expected", "ok": True,
            "detail": "x", "file": "f.yaml", "line": 3}
    ok, detail = judge(r, run({"checks": [path]}))
    assert not ok and "had 0 convergence check(s)" in detail and "check: convergence" in detail
    conv = {"step": "t=6s check convergence below_ms=2000", "ok": False,
            "detail": "convergence None ms (bound 2000 ms)", "file": "/x/f.yaml", "line": 9}
    ok, detail = judge(r, run({"checks": [path, conv]}))
    assert not ok and detail.endswith("f.yaml:9: convergence None ms (bound 2000 ms)")
    assert judge(r, run({"checks": [path, dict(conv, ok=True)]}))[0]


def test_moved_and_capture_requirements():
    e2 = load_exercise(check.find_exercise("2"))
    assert judge(req(e2, "moved"), run())[0]
    ok, detail = judge(req(e2, "moved"), run(moves=[]))
    assert not ok and detail == "the timeline moved no vm (to dc2)"
    assert not judge(req(e2, "moved"), run(moves=[{"host": "vm", "to": "dc1", "time": 1}]))[0]
    seen = []

    def frames(link, filt):
        seen.append((link, filt))
        return [MOVE_T - 1, MOVE_T + 0.3]
    ok, detail = judge(req(e2, "smr"), run(frames=frames))
    assert ok and detail.startswith("1 frame(s) on client-uplink match `lisp.type == 1")
    assert seen == [("client-uplink", "lisp.type == 1 && lisp.mreq.flags.smr == 1")]
    ok, detail = judge(req(e2, "smr"), run(frames=lambda link, f: [MOVE_T - 1]))
    assert not ok and "0 frame(s)" in detail

    assert judge(req(e2, "smr"), run(frames=None)) == (False, "the run kept no captures")

    def broken(link, filt):
        raise ValueError("tshark: \"lisp.nope\" is neither a field nor a protocol name.")
    ok, detail = judge(req(e2, "smr"), run(frames=broken))
    assert not ok and detail.startswith("client-uplink: tshark: ")


def test_real_tshark_counts_frames_of_a_capture(tmp_path):
    """The frames() used on real runs, on one of the reference captures."""
    import shutil
    if not shutil.which("tshark"):
        pytest.skip("tshark is not installed")
    shutil.copy(ROOT / "tests/data/oor-xtr-registers.pcap", tmp_path / "x.pcap")
    frames = check.tshark_frames(tmp_path)
    n = len(frames("x", "lisp.type == 3"))
    assert n >= 1 and len(frames("x", "lisp.type == 3 || lisp.type == 4")) >= n
    with pytest.raises(ValueError, match="tshark"):
        frames("x", "lisp.no_such_field == 1")
    with pytest.raises(OSError, match="no capture"):
        frames("y", "lisp")


def test_summary_is_json_with_one_line_per_requirement():
    e = ex6()
    s = judge_all(e, run(), file="mine.yaml", run_dir="/tmp/r")
    json.loads(json.dumps(s))
    assert s["total"] == len(e.requirements) and s["passed"] is False
    assert [r["id"] for r in s["requirements"]] == [r.id for r in e.requirements]
    lines = summary_lines(s)
    assert lines[0] == f"exercise 06-securing: {e.title}"
    fails = [x for x in lines if x.startswith("FAIL")]
    assert len(fails) == s["total"] - s["passed_count"]
    assert lines[-1] == f"{s['passed_count']} of {s['total']} requirements passed"
    assert any("hint: narrow dc1's dynamic_eids" in x for x in lines)


def test_cli_check_names_a_bad_file_in_one_line(tmp_path):
    bad = tmp_path / "mine.yaml"
    bad.write_text("extends: %s\nlab: mine\nsites:\n  dc1: {dynamic_eid: [10.10.0.0/29]}\n"
                   % (ROOT / "lab/exercises/06-securing.yaml"))
    r = subprocess.run([sys.executable, "-m", "lab.cli", "check", "6", str(bad)],
                       capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "Traceback" not in r.stderr
    assert f"{bad}:4: unknown key 'dynamic_eid'" in r.stderr
    r = subprocess.run([sys.executable, "-m", "lab.cli", "check", "42"],
                       capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert r.returncode == 2 and "no exercise '42'" in r.stderr


def test_validate_reads_a_requirement_file_against_its_scenario_and_solution(tmp_path):
    """`lisp-lab validate NN-name.check.yaml`: every shipped requirement file is ok; one
    that names a link its scenario does not capture is its one-line problem, exit 1."""
    import subprocess
    import sys
    cmd = [sys.executable, "-m", "lab.cli", "validate"]
    files = sorted(str(p) for p in check.EXERCISES_DIR.glob("*.check.yaml"))
    r = subprocess.run(cmd + files, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.count(": ok (exercise ") == len(files) == 6
    assert "05-traffic-engineering: 5 requirements, judged on 05-traffic-engineering.yaml and " \
           "answers/05-traffic-engineering.yaml" in r.stdout
    (tmp_path / "09-x.yaml").write_text(
        (check.EXERCISES_DIR / "05-traffic-engineering.yaml").read_text()
        .replace("../../topologies", str(check.EXERCISES_DIR.parents[1] / "topologies")))
    bad = tmp_path / "09-x.check.yaml"
    bad.write_text("title: x\nrequirements:\n  - {id: a, says: b, capture: nolink, filter: lisp}\n")
    r = subprocess.run(cmd + [str(bad)], capture_output=True, text=True)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.strip().count("\n") == 0
    assert f"{bad}:3: requirement a: no captured link 'nolink'" in r.stderr

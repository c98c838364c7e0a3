"""Scenarios played from their files: replays give the same results, a failing check fails
the run with its file and line, and a bad file builds nothing."""
import shutil
import subprocess
import sys
import time

from lab.demo import CAPTURES_DIR, Progress, mode_file, run_scenario

ACROSS = mode_file("lisp-across-subnet")
# Messages the move itself causes. Map-Register and Map-Notify are periodic (one per
# register interval), so their counts follow the run's length, not the scenario.
TRIGGERED = ("SMR", "ECM", "Map-Reply")


def triggered(result):
    return {link: {k: n for k, n in counts.items() if k in TRIGGERED}
            for link, counts in result["control_counts"].items()}


def test_two_runs_of_a_scenario_give_the_same_paths_and_control_messages(tmp_path):
    runs = []
    for i in range(2):
        runs.append(run_scenario(ACROSS, tmp_path / str(i), Progress(),
                                 run_id=f"pytest-emu-replay{i}-{int(time.time())}"))
    a, b = runs
    assert a["path_before"] == b["path_before"] and a["path_after"] == b["path_after"]
    assert triggered(a) == triggered(b)
    assert any(counts.get("SMR") for counts in triggered(a).values())
    assert all(c["ok"] for r in runs for c in r["checks"])


def test_a_failing_check_fails_the_run_naming_its_file_and_line(tmp_path, emu):
    """The VM never moves to dc2 here, so a check that xtr2 registered it must fail, and
    `lisp-lab run` exits 1 with the step's file:line."""
    scenario = tmp_path / "wrong.yaml"
    scenario.write_text(f"extends: {ACROSS}\nlab: wrong\ntimeline:\n"
                        "  - {at: 0, traffic: probes, from: c1, to: vm, rate: 100, duration: 2}\n"
                        "  - {at: 1, check: registered, eid: vm, by: xtr2, window: 1}\n")
    before = emu.snapshot()[0]
    run_id = f"pytest-emu-wrong-{int(time.time())}"
    try:
        r = subprocess.run([sys.executable, "-m", "lab.cli", "run", str(scenario), "--run-id",
                            run_id], capture_output=True, text=True, timeout=240, cwd=emu.root)
    finally:
        shutil.rmtree(CAPTURES_DIR / run_id, ignore_errors=True)
    assert r.returncode == 1, r.stdout + r.stderr
    assert f"FAILED {scenario}:5:" in r.stdout, r.stdout
    assert "not registered by xtr2" in r.stdout
    assert f"data:   {CAPTURES_DIR / run_id / 'report.json'}" in r.stdout
    assert "checks: 0 of 1 passed" in r.stdout
    assert set(emu.snapshot()[0]) - set(before) == set()      # (other runs' excluded)

"""Failures played as scenarios (topologies/labs/fail-*.yaml): each asserts its checks, and
the run leaves nothing behind."""
import json
import time

import pytest

from lab.cleanup import read_records
from lab.demo import LABS_DIR, Progress, run_scenario

FAILURES = ["fail-ms-restart", "fail-core-link", "fail-xtr-restart", "fail-lossy-move"]


@pytest.mark.parametrize("name", FAILURES)
def test_failure_scenario_passes_its_checks_and_leaves_nothing(name, tmp_path, emu):
    before = emu.snapshot()[0]
    r = run_scenario(LABS_DIR / f"{name}.yaml", tmp_path, Progress(),
                     run_id=f"pytest-emu-{name}-{int(time.time())}")
    failed = [c for c in r["checks"] if not c["ok"]]
    assert failed == [], failed
    assert len(r["checks"]) >= 5
    if name == "fail-ms-restart":
        # the TCP session rode out the Map-Server's restart and the timeline stopped it
        session = json.loads((tmp_path / name / "session.json").read_text())
        assert session["survived"] is True and session["stopped_by"] == "SIGTERM"
        assert 5 < session["end"] - session["start"] < 20           # not its 60 s duration
    if name == "fail-lossy-move":
        # the loss was real (5 % each way on the new path), and the move converged anyway
        after = r["probes_sent"] - sum(1 for t in r["lost_times_s"] if t < 0)
        assert r["lost_after_move"] > 0.03 * after, (r["lost_after_move"], after)
        assert r["convergence_ms"] is not None
    assert set(emu.snapshot()[0]) - set(before) == set()      # (other runs' excluded)
    assert not [rec for _, rec in read_records()
                if rec and str(rec.get("run_id", "")).startswith(f"pytest-emu-{name}")]

"""VM moves beyond the single move of the demo (issue 12), played as scenarios from
topologies/labs/: each passes its checks and leaves nothing behind.

- move-back: the VM moves to DC2 and back to DC1 0.6 s later, within the Map-Server's
  hold-down: the move back is honoured at once, DC1's xTR alone claims the VM (a
  registered check with only: true), the client's map-cache points to DC1 again and the
  probes end on the direct path to DC1;
- pubsub-move is the demo's lisp-pubsub mode (tests/emulation/test_demo.py): the
  Map-Server's Map-Notify reaches the client's ITR (the budget's publish step) and the
  direct path starts before the SMR round's Map-Reply is back;
- dead-xtr-move: DC1's xTR is killed as the VM moves: the client converges through PubSub
  alone; the same without PubSub (tests/data/dead-xtr-no-pubsub.yaml) never converges;
- move-100: a hundred VMs move at once (a group, count: 99, beside the probed VM): every
  one registered by DC2 alone and converged to the direct path."""
import time

import pytest

from lab.cleanup import read_records
from lab.demo import LABS_DIR, Progress, run_scenario
from tests.emulation.harness import DATA


def play(path, tmp_path, emu):
    before = emu.snapshot()[0]
    r = run_scenario(path, tmp_path, Progress(),
                     run_id=f"pytest-emu-{path.stem}-{int(time.time())}")
    assert set(emu.snapshot()[0]) - set(before) == set()
    assert not [rec for _, rec in read_records()
                if rec and str(rec.get("run_id", "")).startswith(f"pytest-emu-{path.stem}")]
    return r


def step(r, name):
    return next(s for s in r["convergence_budget"]["steps"] if s["step"] == name)


@pytest.mark.parametrize("name", ["move-back", "dead-xtr-move"])   # pubsub-move: the demo
def test_move_scenario_passes_its_checks_and_leaves_nothing(name, tmp_path, emu):
    r = play(LABS_DIR / f"{name}.yaml", tmp_path, emu)
    failed = [c for c in r["checks"] if not c["ok"]]
    assert failed == [], failed
    assert len(r["checks"]) >= 5, r["checks"]
    if name == "move-back":
        assert any("registered by xtr1 only" in c["detail"] for c in r["checks"]), r["checks"]
    if name == "dead-xtr-move":
        publish = step(r, "publish")
        assert publish["first_seen_ms"] is not None, r["convergence_budget"]
        assert r["convergence_ms"] is not None and r["convergence_ms"] > publish["first_seen_ms"]
    if name == "dead-xtr-move":
        assert step(r, "smr")["first_seen_ms"] is None       # nobody left to send one


def test_without_pubsub_a_move_away_from_a_dead_xtr_never_converges(tmp_path, emu):
    r = play(DATA / "dead-xtr-no-pubsub.yaml", tmp_path, emu)
    failed = {c["step"].split()[2] for c in r["checks"] if not c["ok"]}
    assert {"map_cache", "path", "convergence"} <= failed, r["checks"]
    assert r["convergence_ms"] is None


def test_a_hundred_vms_move_at_once_and_every_one_converges(tmp_path, emu):
    """move-100: the probed VM and 99 more move to DC2 in one step. Every check passes:
    all 99 registered by DC2's xTR alone, in the client's map-cache toward it and
    reachable; the Map-Server saw 100 moves and DC1's xTR sent an SMR for each; and the
    converged check found, in the client uplink's capture, every member's probes going
    inside LISP to DC2's RLOC within its bound."""
    r = play(LABS_DIR / "move-100.yaml", tmp_path, emu)
    failed = [c for c in r["checks"] if not c["ok"]]
    assert failed == [], failed
    converged = next(c for c in r["checks"] if c["step"].split()[2] == "converged")
    g = converged["groups"]["vms"]
    assert g["members"] == g["converged"] == 99 and g["never"] == [], converged
    assert 0 < g["min_ms"] <= g["median_ms"] <= g["max_ms"] < 3000, converged
    assert r["convergence_ms"] is not None, r["checks"]

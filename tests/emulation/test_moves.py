"""VM moves beyond the single move of the demo (issue 12), played as scenarios from
topologies/labs/: each passes its checks and leaves nothing behind.

- move-back: the VM moves to DC2 and back to DC1 0.6 s later, within the Map-Server's
  hold-down: the move back is honoured at once, DC1's xTR alone claims the VM (a
  registered check with only: true), the client's map-cache points to DC1 again and the
  probes end on the direct path to DC1."""
import time

import pytest

from lab.cleanup import read_records
from lab.demo import LABS_DIR, Progress, run_scenario


@pytest.mark.parametrize("name", ["move-back"])
def test_move_scenario_passes_its_checks_and_leaves_nothing(name, tmp_path, emu):
    before = emu.snapshot()[0]
    r = run_scenario(LABS_DIR / f"{name}.yaml", tmp_path, Progress(),
                     run_id=f"pytest-emu-{name}-{int(time.time())}")
    failed = [c for c in r["checks"] if not c["ok"]]
    assert failed == [], failed
    assert len(r["checks"]) >= 5, r["checks"]
    if name == "move-back":
        assert any("registered by xtr1 only" in c["detail"] for c in r["checks"]), r["checks"]
    assert set(emu.snapshot()[0]) - set(before) == set()
    assert not [rec for _, rec in read_records()
                if rec and str(rec.get("run_id", "")).startswith(f"pytest-emu-{name}")]

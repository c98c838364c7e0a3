"""Ingress traffic engineering on a multihomed site (issue 11), measured on the wire: the
client's ITR hashes each of many short UDP flows to one of the branch's two RLOCs, and the
captures of the two provider links count the flows that entered by each.

- topologies/labs/te-weights.yaml: equal priorities, weights 70/30: the split is within 5
  points of 70/30 over 1,000 flows (its split check);
- tests/data/te-priority.yaml: priorities 1/2: every flow enters by the primary."""
import time

import pytest

from lab.demo import LABS_DIR, Progress, run_scenario
from tests.emulation.harness import DATA


@pytest.mark.parametrize("path, low", [(LABS_DIR / "te-weights.yaml", 900),
                                       (DATA / "te-priority.yaml", 450)])
def test_the_flows_split_as_the_locator_set_says(path, low, tmp_path, emu):
    r = run_scenario(path, tmp_path, Progress(),
                     run_id=f"pytest-emu-te-{path.stem}-{int(time.time())}")
    failed = [c for c in r["checks"] if not c["ok"]]
    assert failed == [], failed
    split = next(c for c in r["checks"] if c["step"].split()[2] == "split")
    counts = r["flow_counts"]
    seen = counts["provider-a"]["flows"] + counts["provider-b"]["flows"]
    assert seen >= low, (counts, split)          # the flows were there to be counted
    assert counts["client-uplink"]["flows"] == seen

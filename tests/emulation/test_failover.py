"""Primary/backup failover by RLOC-probing (issue 11), measured on the wire: te-priority.yaml
is played once; provider A's link (the primary, priority 1) goes down at t=3 and up at t=6
while c1 sends 1,000 probes a second to h1. From the captures of the two provider links:
every probe on the primary before the failure, on the backup while it lasts, on the primary
again after it; the failover within 3 probe intervals and the probes lost bounded by it."""
import time

import pytest

from lab.demo import LABS_DIR, Progress, run_scenario

RATE = 1000                    # the lab's probes per second


@pytest.fixture(scope="module")
def played(tmp_path_factory):
    return run_scenario(LABS_DIR / "te-priority.yaml", tmp_path_factory.mktemp("failover"),
                        Progress(), run_id=f"pytest-emu-failover-{int(time.time())}")


def test_the_scenarios_checks_pass(played):
    failed = [c for c in played["checks"] if not c["ok"]]
    assert failed == [], failed


def test_the_probes_use_the_primary_then_the_backup_then_the_primary(played):
    f = played["failover"]
    assert f["before_on_primary"] > 2000 and f["before_on_backup"] == 0, f
    assert f["during_on_backup"] > 1000 and f["during_on_primary"] == 0, f
    assert f["after_on_primary"] > 2000 and f["after_on_backup"] == 0, f
    links = f["links"]
    assert links["provider-a"]["packets"] > 5000 and links["provider-b"]["packets"] > 1000
    assert links["provider-a"]["bytes"] > 100 * links["provider-a"]["packets"]


def test_failover_within_3_probe_intervals_and_loss_bounded(played):
    f = played["failover"]
    assert f["probe_interval_s"] == 0.5 and f["target_ms"] == 1500.0
    assert f["failover_ms"] is not None and f["failover_ms"] <= f["target_ms"], f
    # at most the probes of the failover itself (and a few in flight on the dead link)
    assert f["probes_lost_failover"] <= RATE * f["failover_ms"] / 1e3 + 50, f
    assert f["failback_ms"] is not None and f["failback_ms"] <= f["target_ms"], f
    assert f["probes_lost_failback"] <= RATE * f["failback_ms"] / 1e3 + 50, f

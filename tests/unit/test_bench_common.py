"""bench/common.py: the spread and the results file every benchmark writes."""
import json

from bench import common


def test_spread_is_min_median_max_of_the_numbers_only():
    assert common.spread([3, None, 1, 2.5, True, "n/a"]) == {"min": 1, "median": 2.5, "max": 3}
    assert common.spread([4, 1]) == {"min": 1, "median": 2.5, "max": 4}
    assert common.spread(x for x in [None, None]) is None


def test_write_result_writes_the_named_json_file(tmp_path, monkeypatch):
    monkeypatch.setattr(common, "RESULTS", tmp_path / "results")
    path = common.write_result("te", {"runs": [1, 2]})
    assert path == tmp_path / "results" / "te.json"
    assert json.loads(path.read_text()) == {"runs": [1, 2]}


def test_bench_moves_targets_follow_issue_12():
    """PubSub: 1.5 x the notification floor (register, notify the ITR, first packet); SMR:
    the notification to the old xTR plus one SMR round and the first packet (the SMR path's
    floor: a bound below it, as the notify floor plus an SMR round was, no implementation
    can meet); loss at 1,000 probes/s: the mode's floor in milliseconds."""
    from bench.bench_moves import LISP_MODES, ORDER, PUBSUB, targets
    floor = {"notify": 40.0, "smr": 110.0, "smr_round": 60.0}
    assert targets(PUBSUB, floor) == (60.0, 40)
    assert targets("lisp-across-subnet", floor) == (110.0, 110)
    assert targets("lisp-across-subnet", None) == (None, None)
    assert ORDER[-1] == PUBSUB and PUBSUB in LISP_MODES
    assert "l2-extension" in ORDER and "l2-extension" not in LISP_MODES

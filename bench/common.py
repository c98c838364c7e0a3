"""What every benchmark shares: min/median/max of a list of numbers, and writing its
numbers to bench/results/NAME.json (the files a reader compares and reruns)."""
import json
import statistics
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def spread(values):
    """{"min", "median", "max"} of the numbers among `values` (None and other values are
    left out: a run that measured nothing); None when there is no number."""
    nums = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return ({"min": min(nums), "median": statistics.median(nums), "max": max(nums)}
            if nums else None)


def write_result(name, result):
    """Write `result` to bench/results/<name>.json; returns the path."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    return path

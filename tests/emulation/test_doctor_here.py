"""`lisp-lab doctor` on this very machine: the real probes, the real kernel.

Whether netem is there is asked independently (`modprobe sch_netem`): where it is missing
(the development machine) doctor must call the link delays degraded, not failed, and exit
0; where it loads (Ubuntu CI runners with linux-modules-extra) it must call them ok. The
probes work in a throwaway namespace, so nothing of theirs may be left behind.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="lisp-lab doctor's kernel probes "
                                "need root (run `sudo make test`)")


def _doctor(*args):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "lab.cli", "doctor", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=180)


def _links():
    out = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True,
                         check=True).stdout
    return {line.split(":", 2)[1].strip().split("@")[0] for line in out.splitlines()}


def test_doctor_on_this_machine():
    netem_loads = subprocess.run(["modprobe", "sch_netem"], capture_output=True).returncode == 0
    r = _doctor("--json")
    assert r.returncode == 0, r.stdout + r.stderr
    report = json.loads(r.stdout)
    checks = {c["name"]: c for c in report["checks"]}
    assert report["can_run"] is True and report["exit_status"] == 0
    delays = checks["link delays"]
    if netem_loads:
        assert delays["status"] == "ok", delays
    else:
        assert delays["status"] == "degraded", delays
        assert "relay" in delays["detail"] and "sch_netem" in delays["fix"]
        assert "link delays" in report["verdict"]
    for name in ("root", "mininet", "tcpdump", "tun", "tun offloads"):
        assert checks[name]["status"] == "ok", checks[name]
    for c in report["checks"]:
        assert c["status"] in ("ok", "degraded", "missing") and "\n" not in c["detail"]
        assert c["status"] == "ok" or c["fix"], c


def test_doctor_text_and_nothing_left_behind():
    before = _links()
    r = _doctor()
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.splitlines()[-1].startswith("verdict: a lab can run here")
    assert "Traceback" not in r.stdout + r.stderr
    assert not {n for n in _links() - before if n.startswith("ldoc-")}
    pins = Path("/sys/fs/bpf/lisp-lab")
    assert not (pins.is_dir() and [p for p in pins.iterdir() if p.name.startswith("doctor-")])

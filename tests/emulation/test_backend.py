"""The Mininet backend (lab/backend.py) on its own: two labs naming the same switch."""
import subprocess
import sys
import time

from lab.cleanup import read_records

DATA = __import__("pathlib").Path(__file__).resolve().parents[1] / "data"

# Builds the lab, says so, keeps it two seconds, pings across it, and leaves.
BUILD = r"""
import sys, time
from lab.backend import Network
from topologies.model import load
try:
    with Network(load(sys.argv[1]), sys.argv[2], run_id=sys.argv[3]) as net:
        print("built", flush=True)
        time.sleep(2)
        print("ping", net.ping("sna", "snb"), flush=True)
except RuntimeError as e:
    print("refused", e, flush=True)
"""


def test_two_labs_with_the_same_switch_names_started_together(tmp_path, emu):
    """Mininet's LinuxBridge deletes a bridge of its name before making its own: two labs
    started together used to take each other's bridges (a demo mode then failed with
    "s2: Device does not exist"). Now one builds and works, the other refuses in one line,
    and nothing is left."""
    before = emu.snapshot()[0]
    stamp = int(time.time())
    procs = [subprocess.Popen([sys.executable, "-c", BUILD, str(DATA / "same-names.yaml"),
                               str(tmp_path / str(i)), f"pytest-emu-same{i}-{stamp}"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              cwd=emu.root) for i in range(2)]
    outs = [p.communicate(timeout=120)[0] for p in procs]
    built = [o for o in outs if "built" in o]
    refused = [o for o in outs if "refused" in o]
    assert len(built) == 1 and len(refused) == 1, outs
    assert "ping True" in built[0], built[0]
    assert "sn7" in refused[0] and "exist already" in refused[0], refused[0]
    assert set(emu.snapshot()[0]) - set(before) == set()
    assert not [r for _, r in read_records()
                if r and str(r.get("run_id", "")).startswith("pytest-emu-same")]

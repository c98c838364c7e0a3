"""One zero-length UDP datagram to an xTR's port 4341 used to stop its decapsulation for
good (issue 9, item 1): the thread died, the daemon looked healthy, and the site was cut off.
Here a host outside every site sends one to each xTR and the proxy xTR; pings between the
sites must still work afterwards, and `show counters` must count the datagram and report
both directions alive."""
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lab.emu import Lab, wait_for
from nodes.control import ControlError, query
from topologies import two_sites as T

PY = sys.executable
RUN_PREFIX = "pytest-emu-"
XTRS = ("xtr1", "xtr2", "pxtr")


class Sites:
    def __init__(self, lab, workdir):
        self.lab, self.workdir = lab, Path(workdir)
        T.configure(lab.net)
        configs = T.daemon_configs(self.workdir, lab.run_dir)
        self.daemons = {n: lab.start_process(n, [PY, "-m", "nodes.daemon", p],
                                             self.workdir / f"{n}.log", name=f"lisp-{n}")
                        for n, p in configs.items()}

    def query(self, node, what):
        return query(str(Path(self.lab.run_dir) / f"{node}.sock"), {"show": what})["data"]

    def registered(self):
        try:
            return {r["eid"] for r in self.query("msmr", "registrations")}
        except ControlError:
            return set()

    def ping(self, host, dst, count=5):
        return self.lab.run(host, ["ping", "-n", "-c", str(count), "-i", "0.2", "-W", "1",
                                   dst], timeout=count + 5)

    def logs(self):
        return {n: (self.workdir / f"{n}.log").read_text()[-1500:] for n in self.daemons}


@pytest.fixture(scope="module")
def sites(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("survives")
    with Lab(T.TwoSitesTopo(), run_id=f"{RUN_PREFIX}survives-{os.getpid()}") as lab:
        run = Sites(lab, workdir)
        want = {"10.1.0.0/24", "10.2.0.0/24"}
        if not wait_for(lambda: want <= run.registered(), 10, 0.2):
            pytest.fail(f"sites did not register: {run.registered()} logs: {run.logs()}")
        yield run


def test_a_zero_length_datagram_to_4341_does_not_stop_decapsulation(sites):
    pairs = (("h1", "10.2.0.10"), ("h2", "10.1.0.10"), ("n1", "10.1.0.10"))
    for src, dst in pairs:                  # mappings resolved (first packets are dropped)
        assert wait_for(lambda: sites.ping(src, dst, 1).returncode == 0, 8, 0.2), (src, dst)
    before = {n: sites.query(n, "counters").get("malformed_data", 0) for n in XTRS}
    send = ("import socket, sys\n"
            "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
            "for a in sys.argv[1:]:\n"
            "    s.sendto(b'', (a, 4341))\n")
    r = sites.lab.run("n1", [PY, "-c", send, *(T.rloc(n) for n in XTRS)])
    assert r.returncode == 0, r.stderr
    time.sleep(0.3)
    for src, dst in pairs:
        r = sites.ping(src, dst, 5)
        assert r.returncode == 0 and " 0% packet loss" in r.stdout, (src, dst, r.stdout,
                                                                      sites.logs())
    for n in XTRS:
        c = sites.query(n, "counters")
        assert c.get("malformed_data", 0) == before[n] + 1, (n, c)
        assert c["dataplane_decap"] == "alive" and c["dataplane_encap"] == "alive", (n, c)
        assert c.get("decap_errors", 0) == 0 and c.get("decap_thread_failures", 0) == 0, c
        assert sites.daemons[n].poll() is None, sites.logs()[n]
    # and `lisp-lab show NODE counters` says so
    r = subprocess.run([PY, "-m", "lab.cli", "show", "xtr2", "counters", "--socket",
                        str(Path(sites.lab.run_dir) / "xtr2.sock")], capture_output=True,
                       text=True)
    assert r.returncode == 0 and re.search(r"dataplane_decap +alive", r.stdout) \
        and re.search(r"dataplane_encap +alive", r.stdout), r.stdout + r.stderr

"""The two-data-center topology without LISP: triangular routing after a VM move
(l2-extension) and its host-route fix, seen on the DCI capture."""
import signal
import subprocess
import time

import pytest

from lab.emu import Lab
from topologies import dc as D

RUN_PREFIX = "pytest-emu-"


def dci_echo_requests(lab, seconds, workdir):
    """Echo requests client -> VM crossing the DCI while c1 pings for `seconds`."""
    pcap = workdir / "dci.pcap"
    cap = lab.start_process("s1", ["tcpdump", "-n", "-U", "-i", "s1-dci", "-w", pcap],
                            workdir / "tcpdump.log", name="tcpdump-dci")
    deadline = time.monotonic() + 5
    while "listening on" not in cap.read_log() and time.monotonic() < deadline:
        time.sleep(0.05)
    r = lab.run("c1", ["ping", "-n", "-c", str(int(seconds * 10)), "-i", "0.1", "-W", "1",
                       "10.10.0.5"], timeout=seconds + 10)
    time.sleep(0.3)
    cap.stop(signal.SIGINT)
    out = subprocess.run(["tcpdump", "-n", "-r", str(pcap), "icmp and dst host 10.10.0.5"],
                         capture_output=True, text=True).stdout
    return r, out.count("echo request")


@pytest.mark.parametrize("mode", ["l2-extension", "host-route"])
def test_move_hairpins_over_dci_without_lisp_and_host_route_fixes_it(mode, tmp_path):
    with Lab(D.DataCenterTopo(), run_id=RUN_PREFIX + "dc-" + mode) as lab:
        D.configure(lab.net, mode)
        try:
            assert lab.run("c1", ["ping", "-c", "3", "-i", "0.2", "-W", "1",
                                  "10.10.0.5"]).returncode == 0
            r, before = dci_echo_requests(lab, 1, tmp_path)
            assert r.returncode == 0 and before == 0          # VM in DC1: no DCI
            D.move_vm(lab.net)
            assert lab.run("vm", ["arping", "-U", "-c", "2", "-I", "vm-eth0",
                                  "10.10.0.5"]).returncode == 0
            routes_before = lab.run("r1", ["ip", "route"]).stdout
            if mode == "host-route":
                D.inject_host_route(lab.net)
                assert "10.10.0.5 via" in lab.run("r1", ["ip", "route"]).stdout
                assert lab.run("r1", ["ip", "route"]).stdout != routes_before
            r, after = dci_echo_requests(lab, 1, tmp_path)
            assert " 0% packet loss" in r.stdout, r.stdout
            if mode == "l2-extension":
                assert after >= 8        # triangular routing (tcpdump may miss the first)
            else:
                assert after == 0                             # direct path to DC2
        finally:
            D.unconfigure(lab.net, mode)
    rules = subprocess.run(["ebtables", "-L", "FORWARD"], capture_output=True,
                           text=True).stdout
    assert "s1-dci" not in rules

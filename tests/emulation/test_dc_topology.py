"""The two-data-center topology without LISP: triangular routing after a VM move
(l2-extension) and its host-route fix (OSPF in the core, FRR: DC2's gateway injects the VM's
host route), seen on the DCI capture and in the core's routing tables."""
import signal
import subprocess
import time

import pytest

from lab import frr
from lab.backend import Network
from lab.cleanup import pid_alive
from lab.demo import mode_file
from topologies.model import load

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
    daemons = []
    model = load(mode_file(mode))
    host_route = "10.10.0.5/32"
    with Network(model, tmp_path, run_id=RUN_PREFIX + "dc-" + mode) as net:
        lab = net.lab
        if mode == "host-route":
            daemons = [p for p in lab.processes if p.name.startswith("frr-")]
            assert len(daemons) == 3 * len(model.ospf_nodes())
            # before the move the core routes the VM subnet to DC1, learnt by OSPF
            assert "10.10.0.0/24" in frr.ospf_routes(lab, "r1")
            assert host_route not in frr.ospf_routes(lab, "r1")
        assert lab.run("c1", ["ping", "-c", "3", "-i", "0.2", "-W", "1",
                              "10.10.0.5"]).returncode == 0
        r, before = dci_echo_requests(lab, 1, tmp_path)
        assert r.returncode == 0 and before == 0          # VM in DC1: no DCI
        net.move("vm", "dc2")
        assert lab.run("vm", ["arping", "-U", "-c", "2", "-I", "vm-eth0",
                              "10.10.0.5"]).returncode == 0
        if mode == "host-route":
            change = net.inject_host_route("vm")
            assert "10.10.0.5 " not in change["before"]
            line = next(x for x in change["after"].splitlines()
                        if x.startswith("10.10.0.5 "))
            assert "proto ospf" in line and "dev r1-r3" in line     # toward DC2
            for router in model.routers:
                assert host_route in frr.ospf_routes(lab, router), router
            assert change["injected_at"] < change["on_r1_at"] <= change["on_all_at"]
        r, after = dci_echo_requests(lab, 1, tmp_path)
        assert " 0% packet loss" in r.stdout, r.stdout
        if mode == "l2-extension":
            assert after >= 8        # triangular routing (tcpdump may miss the first)
        else:
            assert after == 0                             # direct path to DC2
    rules = subprocess.run(["ebtables", "-L", "FORWARD"], capture_output=True,
                           text=True).stdout
    assert "s1-dci" not in rules
    if mode == "host-route":                  # every FRR daemon stopped with the Lab
        assert daemons and not any(pid_alive(p.pid) for p in daemons)

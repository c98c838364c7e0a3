"""One zero-length UDP datagram to an xTR's port 4341 used to stop its decapsulation for
good (issue 9, item 1): the thread died, the daemon looked healthy, and the site was cut off.
Here a host outside every site sends one to each xTR and the proxy xTR; pings between the
sites must still work afterwards, and `show counters` (also through `lisp-lab show`) must
count the datagram and report both directions alive."""
import re
import subprocess
import sys
import time

from tests.emulation.harness import DATA, lab_fixture

PY = sys.executable
XTRS = ("xtr1", "xtr2", "pxtr")

sites = lab_fixture(DATA / "two-sites.yaml", "survives")


def test_a_zero_length_datagram_to_4341_does_not_stop_decapsulation(sites):
    pairs = (("h1", "h2"), ("h2", "h1"), ("n1", "h1"))
    for src, dst in pairs:                  # mappings resolved (first packets are dropped)
        assert sites.warm(src, sites.ip(dst, 4)), (src, dst)
    before = {n: sites.counters(n).get("malformed_data", 0) for n in XTRS}
    send = ("import socket, sys\n"
            "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
            "for a in sys.argv[1:]:\n"
            "    s.sendto(b'', (a, 4341))\n")
    r = sites.sh("n1", [PY, "-c", send, *(sites.rloc(n) for n in XTRS)])
    assert r.returncode == 0, r.stderr
    time.sleep(0.3)
    for src, dst in pairs:
        r = sites.ping(src, sites.ip(dst, 4), 5)
        assert r.returncode == 0 and " 0% packet loss" in r.stdout, (src, dst, r.stdout,
                                                                      sites.logs())
    for n in XTRS:
        c = sites.counters(n)
        assert c.get("malformed_data", 0) == before[n] + 1, (n, c)
        assert c["dataplane_decap"] == "alive" and c["dataplane_encap"] == "alive", (n, c)
        assert c.get("decap_errors", 0) == 0 and c.get("decap_thread_failures", 0) == 0, c
        assert sites.daemons[n].poll() is None, sites.logs()[n]
    # and `lisp-lab show NODE counters` says so
    r = subprocess.run([PY, "-m", "lab.cli", "show", "xtr2", "counters", "--socket",
                        str(sites.sockets / "xtr2.sock")], capture_output=True, text=True)
    assert r.returncode == 0 and re.search(r"dataplane_decap +alive", r.stdout) \
        and re.search(r"dataplane_encap +alive", r.stdout), r.stdout + r.stderr


def test_decap_known_rlocs_only_learns_a_new_senders_locators(tmp_path):
    """With decap_known_rlocs_only on xtr2 (issue 9, item 7), the first packets from xtr1,
    whose RLOC xtr2 has never mapped, are dropped, and xtr2 looks up their source: h1's
    pings to h2 get through without h2 ever having sent to h1 first. (Before, xtr2 only
    learnt xtr1's locators from its own traffic, so a site that only receives dropped
    everything.)"""
    from tests.emulation.harness import running
    with running(DATA / "two-sites.yaml", "known-rlocs", tmp_path,
                 overrides={"xtr2": {"etr": {"decap_known_rlocs_only": True}}}) as run:
        assert run.warm("h1", run.ip("h2", 4)), run.logs()["xtr2"][-1500:]
        c = run.counters("xtr2")
        assert c.get("drop_unknown_rloc", 0) >= 1 and c.get("unknown_rloc_lookups", 0) >= 1, c
        assert run.rloc("xtr1") in {loc for locs in run.map_cache("xtr2").values()
                                     for loc in locs}
        r = run.ping("h1", run.ip("h2", 4), 5)
        assert " 0% packet loss" in r.stdout, r.stdout

"""Primary/backup failover by RLOC-probing (issue 11), measured on the wire: te-priority.yaml
is played once; provider A's link (the primary, priority 1) goes down at t=3 and up at t=6
while c1 sends 1,000 probes a second to h1. From the captures of the two provider links:
every probe on the primary before the failure, on the backup while it lasts, on the primary
again after it; the failover within 3 probe intervals and the probes lost bounded by it."""
import shutil
import subprocess
import time

import pytest

from lab.demo import LABS_DIR, Progress, run_scenario

RATE = 1000                    # the lab's probes per second
CLIENT_RLOC, BRANCH_A = "172.16.10.1", "172.16.2.1"     # xtrc's RLOC, xtrm's on provider A


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("failover")


@pytest.fixture(scope="module")
def played(run_dir):
    return run_scenario(LABS_DIR / "te-priority.yaml", run_dir, Progress(),
                        run_id=f"pytest-emu-failover-{int(time.time())}")


def tshark_fields(pcap, display_filter, *fields):
    """One tuple of `fields` per frame of `pcap` matching `display_filter`, as Wireshark's
    LISP dissectors read them (control on 4342, data on 4341)."""
    tshark = shutil.which("tshark") or pytest.skip("tshark is not installed")
    out = subprocess.run([tshark, "-n", "-r", str(pcap), "-d", "udp.port==4342,lisp",
                          "-d", "udp.port==4341,lisp-data", "-Y", display_filter, "-T", "fields",
                          "-E", "occurrence=f",          # the outer header's field
                          *[a for f in fields for a in ("-e", f)]],
                         capture_output=True, text=True, check=True)
    return [tuple(line.split("\t")) for line in out.stdout.splitlines()]


def test_the_scenarios_checks_pass(played):
    failed = [c for c in played["checks"] if not c["ok"]]
    assert failed == [], failed


def test_the_probes_use_the_primary_then_the_backup_then_the_primary(played):
    f = played["failover"]
    assert f["before_on_primary"] > 2000 and f["before_on_backup"] == 0, f
    assert f["during_on_backup"] > 1000 and f["during_on_primary"] == 0, f
    assert f["after_on_primary"] > 2000 and f["after_on_backup"] == 0, f
    links = f["links"]
    assert links["provider-a"]["packets"] > 5000 and links["provider-b"]["packets"] > 1000
    assert links["provider-a"]["bytes"] > 100 * links["provider-a"]["packets"]


def test_failover_within_3_probe_intervals_and_loss_bounded(played):
    f = played["failover"]
    assert f["probe_interval_s"] == 0.5 and f["target_ms"] == 1500.0
    assert f["failover_ms"] is not None and f["failover_ms"] <= f["target_ms"], f
    # at most the probes of the failover itself (and a few in flight on the dead link)
    assert f["probes_lost_failover"] <= RATE * f["failover_ms"] / 1e3 + 50, f
    assert f["failback_ms"] is not None and f["failback_ms"] <= f["target_ms"], f
    assert f["probes_lost_failback"] <= RATE * f["failback_ms"] / 1e3 + 50, f


def test_the_return_traffic_survives_the_outage_too(played):
    """The probes are echoed by h1: a probe is lost when either way fails. The branch's
    own probes of the client's RLOC leave over provider B while A is down, so they must be
    answered there, at B's RLOC (the ETR answers the ITR-RLOC the probe came from); they
    used to be answered at A's, the branch marked the client's only RLOC down and dropped
    every echo for the whole 3-second outage (3,488 probes lost against 954 in the
    failover). Now the round trip loses what the failover loses, and no more."""
    f = played["failover"]
    assert played["probes_lost"] <= f["probes_lost_failover"] + f["probes_lost_failback"] \
        + 50, (played["probes_lost"], f)


def test_tshark_shows_the_probe_bits_and_the_locator_status_bits(played, run_dir):
    """On the primary provider's link, as Wireshark reads it: the client ITR's RLOC-probes
    of the branch (Map-Requests with the P bit) and the branch's answers (Map-Replies with
    the P bit); the data packets' Locator-Status-Bits say what their sender's site has up:
    0x01 from the client (one RLOC), 0x03 from the branch (both of its RLOCs: it does not
    know that one path to it failed); nothing malformed."""
    pcap = run_dir / "te-priority" / "provider-a.pcap"
    probes = tshark_fields(pcap, "lisp.type == 1 && lisp.mreq.flags.probe == 1",
                           "ip.src", "ip.dst")
    answers = tshark_fields(pcap, "lisp.type == 2 && lisp.mrep.flags.probe == 1",
                            "ip.src", "ip.dst")
    assert probes.count((CLIENT_RLOC, BRANCH_A)) >= 5, probes
    assert answers.count((BRANCH_A, CLIENT_RLOC)) >= 5, answers
    data = tshark_fields(pcap, "lisp-data", "ip.src", "lisp-data.flags.lsb", "lisp-data.lsb8")
    seen = {(src, flag, int(bits, 16)) for src, flag, bits in data}
    assert seen == {(CLIENT_RLOC, "1", 0x01), (BRANCH_A, "1", 0x03)}, seen
    assert len(data) > 5000
    assert tshark_fields(pcap, "_ws.malformed || _ws.expert.severity >= 8388608",
                         "frame.number") == []

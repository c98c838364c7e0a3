"""The demo end to end: the same VM move in all five modes, real daemons, real captures.

One run (about 80 s here) serves every test of this module. The numbers of report.json are
recounted from the pcaps with tshark, independently of our analysis code."""
import json
import shutil
import subprocess
import time

import pytest

from lab.demo import CAPTURES_DIR, MODES, mode_file, run_demo
from topologies.model import load

MODELS = {m: load(mode_file(m)) for m in MODES}
LISP_MODES = [m for m in MODES if MODELS[m].lisp]
LAB = MODELS["lisp-across-subnet"]
VM = LAB.hosts["vm"].ip(4)
VM6 = LAB.hosts["vm"].ip(6)
CLIENT = LAB.hosts["c1"].ip(4)


def expected_path(mode, phase):
    """The model's path from the client to the VM, before the move (in DC1) or after it."""
    m = MODELS[mode]
    after = phase == "after"
    return m.expected_path("c1", "vm", "dc2" if after else "dc1",
                           host_route=after and any(s.kind == "host_route" for s in m.timeline))


@pytest.fixture(scope="module")
def demo():
    run_id = f"pytest-demo-{int(time.time())}"
    try:
        run_dir, results = run_demo(run_id)
        report = json.loads((run_dir / "report.json").read_text())
        yield run_dir, results, report
    finally:                                # also when the demo itself failed
        shutil.rmtree(CAPTURES_DIR / run_id, ignore_errors=True)


def tshark_count(tshark, pcap, display_filter):
    """(frames, bytes on the wire) matching `display_filter` in `pcap`."""
    out = subprocess.run([tshark, "-r", str(pcap), "-Y", display_filter, "-T", "fields",
                          "-e", "frame.len"], capture_output=True, text=True, check=True)
    lengths = [int(x) for x in out.stdout.split()]
    return len(lengths), sum(lengths)


def tshark_times(tshark, pcap, display_filter):
    """The capture times (Unix time) of the frames matching `display_filter` in `pcap`."""
    out = subprocess.run([tshark, "-r", str(pcap), "-Y", display_filter, "-T", "fields",
                          "-e", "frame.time_epoch"], capture_output=True, text=True, check=True)
    return [float(x) for x in out.stdout.split()]


def client_to_vm(move_time=None):
    f = (f"ip.src == {CLIENT} && ip.dst == {VM} && "
         f"((udp.dstport == 7000) || (tcp.port == 7001))")
    return f if move_time is None else f"frame.time_epoch >= {move_time!r} && ({f})"


def test_report_has_every_mode_and_the_documented_keys(demo):
    run_dir, results, report = demo
    assert set(report["modes"]) == set(MODES)
    assert report["delay_emulation"]
    for mode, r in report["modes"].items():
        for key in ("path_before", "path_after", "dci_packets_after_move",
                    "dci_bytes_after_move", "convergence_ms", "probes_sent", "probes_lost",
                    "tcp_survived"):
            assert key in r, (mode, key)
        assert r["path_before"] == expected_path(mode, "before"), mode
        assert r["path_after"] == expected_path(mode, "after"), mode
    for png in ["comparison.png"] + [f"{m}-timeline.png" for m in MODES]:
        assert (run_dir / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| " in (run_dir / "report.md").read_text()


def test_every_mode_is_its_scenario_file_and_passes_its_checks(demo):
    """The modes are played from their files; report.json keeps the file and the result of
    each check of its timeline (live ones and those read from the captures)."""
    report = demo[2]
    for mode, r in report["modes"].items():
        assert r["scenario"] == str(mode_file(mode)), mode
        kinds = {c["step"].split()[2] for c in r["checks"]}
        assert {"reachable", "path"} <= kinds, (mode, kinds)
        if MODELS[mode].lisp:
            assert {"registered", "map_cache", "convergence"} <= kinds, (mode, kinds)
        failed = [c for c in r["checks"] if not c["ok"]]
        assert failed == [], (mode, failed)
        assert all(c["file"].endswith(".yaml") and c["line"] > 0 for c in r["checks"])


def test_demo_start_to_first_lisp_probe_is_within_the_demo(demo):
    run_dir, _, report = demo
    first = report["demo_start_to_first_lisp_probe_s"]
    start = json.loads((run_dir / "demo.json").read_text())["demo_start"]
    total = (run_dir / "report.json").stat().st_mtime - start     # the report comes last
    assert isinstance(first, float) and 0 < first < total, (first, total)


def test_l2_extension_hairpins_over_the_dci(demo):
    r = demo[2]["modes"]["l2-extension"]
    assert r["dci_packets_after_move"] > 1000        # ~1000 probes/s for several seconds
    assert r["convergence_ms"] is None
    assert r["path_after"][-1] == "dci"
    assert r["convergence_budget"] is None


@pytest.mark.parametrize("mode", LISP_MODES)
def test_lisp_converges_under_a_second_and_leaves_the_dci(demo, mode):
    r = demo[2]["modes"][mode]
    assert r["convergence_ms"] is not None and r["convergence_ms"] < 1000
    assert "dci" not in r["path_after"]
    assert r.get("dci_packets_after_convergence", 0) == 0
    assert r["tcp_survived"] is True                 # a live move keeps the session
    kinds = {m["type"] for m in r["control_messages"]} | {
        m.get("inner") for m in r["control_messages"] if m.get("inner")}
    for kind in ("Map-Register", "Map-Notify", "SMR", "Map-Reply"):
        assert kind in kinds, (mode, kind, kinds)
    assert kinds & {"SMR-invoked Map-Request", "Map-Request"}, kinds
    # The budget (issue 12): every step found, in order. With SMR the direct path follows
    # the Map-Reply; with PubSub it follows the Map-Server's publication and comes before
    # the SMR round's Map-Reply (the old xTR still sends its SMR).
    b = r["convergence_budget"]
    step = {s["step"]: s for s in b["steps"]}
    when = {k: s["first_seen_ms"] if s["first_seen_ms"] is not None else s["at_destination_ms"]
            for k, s in step.items()}
    reply = step["map_reply"]["at_destination_ms"]
    if MODELS[mode].pubsub:
        order = ["detected", "map_register", "publish", "first_direct_probe"]
        assert None not in [when[k] for k in order], b["steps"]
        assert [when[k] for k in order] == sorted(when[k] for k in order), b["steps"]
        assert reply is None or r["convergence_ms"] <= reply, b["steps"]
        assert 0 < b["floor_ms"]["notify"] <= r["convergence_ms"] < b["floor_ms"]["smr"] + 100
    else:
        assert when["publish"] is None, b["steps"]                  # nobody subscribed
        times = [when[s["step"]] for s in b["steps"] if s["step"] != "publish"]
        assert None not in times, b["steps"]
        assert times == sorted(times) and times[-1] == r["convergence_ms"], b["steps"]
        assert reply is not None and reply <= times[-1]
        assert 0 < b["floor_ms"]["notify"] < b["floor_ms"]["smr"] <= r["convergence_ms"]


def test_pubsub_and_smr_side_by_side(demo):
    """The demo's table has the same move with SMR (lisp-across-subnet) and with PubSub
    (lisp-pubsub); PubSub's client ITR had the mapping from the Map-Server's publication
    before the SMR round could have brought it, and its direct path came first."""
    run_dir, _, report = demo
    smr, pubsub = report["modes"]["lisp-across-subnet"], report["modes"]["lisp-pubsub"]
    assert pubsub["convergence_ms"] < smr["convergence_ms"], (pubsub, smr)
    table = (run_dir / "report.md").read_text()
    header = next(x for x in table.splitlines() if "lisp-across-subnet" in x and "|" in x)
    assert "lisp-pubsub" in header


def test_host_route_changes_the_core_routing_table_through_ospf(demo, tshark):
    """Route health injection: the VM's /32 reaches r1 as an OSPF route after the move, the
    core's LS Updates are counted (and recounted with tshark), the DCI is left."""
    run_dir, _, report = demo
    meta = json.loads((run_dir / "host-route" / "links.json").read_text())
    routes = meta["core_routes"]
    assert meta["core_routing"] == "ospf"
    assert "10.10.0.5 " not in routes["before"]
    line = next(x for x in routes["after"].splitlines() if x.startswith("10.10.0.5 "))
    assert "proto ospf" in line
    assert meta["move_time"] < routes["injected_at"] < routes["on_r1_at"] <= routes["on_all_at"]
    assert 0 < routes["on_r1_ms"] < 2000
    r = report["modes"]["host-route"]
    # no probe can take the new path before the host route exists
    assert r["convergence_ms"] is not None
    assert r["convergence_ms"] > (routes["injected_at"] - meta["move_time"]) * 1000
    assert "dci" not in r["path_after"] and r["dci_packets_after_convergence"] == 0
    updates = r["core_routing_updates_after_move"]
    assert updates >= 3             # at least xtr2 -> r3 -> r1 and r2, one per link
    recount = sum(tshark_count(tshark, run_dir / "host-route" / f"{x['name']}.pcap",
                               f"frame.time_epoch >= {meta['move_time']!r} && ospf.msg == 4")[0]
                  for x in meta["links"])
    assert updates == recount
    for mode in MODES:
        if mode != "host-route":     # no FRR there
            assert report["modes"][mode]["core_routing_updates_after_move"] is None, mode


@pytest.mark.parametrize("mode", MODES)
def test_report_numbers_equal_a_tshark_recount(demo, tshark, mode):
    run_dir, _, report = demo
    r = report["modes"][mode]
    meta = json.loads((run_dir / mode / "links.json").read_text())
    probes, _ = tshark_count(tshark, run_dir / mode / "client-access.pcap",
                             f"ip.src == {CLIENT} && ip.dst == {VM} && udp.dstport == 7000")
    assert r["probes_sent"] == probes
    if MODELS[mode].dci is None:
        assert r["dci_packets_after_move"] == 0      # no DCI in this mode
        return
    frames, nbytes = tshark_count(tshark, run_dir / mode / "dci.pcap",
                                  client_to_vm(meta["move_time"]))
    assert (r["dci_packets_after_move"], r["dci_bytes_after_move"]) == (frames, nbytes)


# The VM's unsolicited neighbour advertisement (RFC 4861 7.2.6): override flag set,
# solicited flag clear, its IPv6 address as the target.
VM_NA = (f"icmpv6.type == 136 && icmpv6.nd.na.flag.o == 1 && icmpv6.nd.na.flag.s == 0 && "
         f"icmpv6.nd.na.target_address == {VM6}")


@pytest.mark.parametrize("mode", MODES)
def test_the_moved_vm_announces_its_ipv6_address_in_dc2(demo, tshark, mode):
    """After the move the VM announces itself over IPv6 too, as a hypervisor does after a
    migration: DC2's access link carries its unsolicited neighbour advertisement."""
    run_dir = demo[0]
    meta = json.loads((run_dir / mode / "links.json").read_text())
    after = [t for t in tshark_times(tshark, run_dir / mode / "dc2-access.pcap", VM_NA)
             if t >= meta["move_time"]]
    assert after, mode


def test_across_subnets_the_advertisement_makes_dc2_register_the_vms_ipv6_host(demo, tshark):
    """Across subnets DC2's xTR hears the VM only after the move: its first Map-Register of
    the VM's /128 follows the VM's neighbour advertisement on DC2's access link."""
    mode_dir = demo[0] / "lisp-across-subnet"
    meta = json.loads((mode_dir / "links.json").read_text())
    registers = tshark_times(tshark, mode_dir / "dc2-uplink.pcap",
                             f"ip.src == {LAB.rloc('xtr2')} && lisp.type == 3 && "
                             f"lisp.mapping.eid.ipv6 == {VM6} && "
                             f"lisp.mapping.eid.masklen == 128")
    adverts = [t for t in tshark_times(tshark, mode_dir / "dc2-access.pcap", VM_NA)
               if t >= meta["move_time"]]
    assert registers and adverts
    assert meta["move_time"] <= adverts[0] <= registers[0] < adverts[0] + 1.0


def test_cold_move_in_lisp_mode(tmp_path):
    """A cold move: the VM's link is down 1.5 s before it comes up in DC2. LISP still
    converges; the probes of the down time are lost; the TCP session rides it out."""
    from lab.demo import Progress, run_scenario
    r = run_scenario(mode_file("lisp-across-subnet"), tmp_path, Progress(), cold_s=1.5,
                     run_id=f"pytest-emu-cold-{int(time.time())}")
    meta = json.loads((tmp_path / "lisp-across-subnet" / "links.json").read_text())
    assert meta["move"].startswith("cold")
    assert r["convergence_ms"] is not None and r["convergence_ms"] >= 1500
    assert r["probes_lost"] >= 1400                  # 1.5 s at 1000 probes/s
    assert r["tcp_survived"] is True

"""The shipped labs beyond the demo, each played from its file with real daemons and real
captures: three data centers, a multihomed site, IPv6 sites over the IPv4 core. Every
check of each timeline must pass, and the probes' paths must be the model's."""
import os
import subprocess
import time

from lab.demo import LABS_DIR, Progress, run_scenario
from topologies.model import load


def play(name, tmp_path):
    path = LABS_DIR / f"{name}.yaml"
    model = load(path)
    started = time.monotonic()
    result = run_scenario(path, tmp_path, Progress(), name=name,
                          run_id=f"pytest-emu-{name}-{os.getpid()}-{int(time.time())}")
    result["elapsed_s"] = time.monotonic() - started
    return model, result


def frames(tshark, pcap, display_filter):
    """How many frames of `pcap` match `display_filter`, as tshark reads them."""
    out = subprocess.run([tshark, "-r", str(pcap), "-Y", display_filter, "-T", "fields",
                          "-e", "frame.number"], capture_output=True, text=True,
                         check=True).stdout
    return len(out.split())


def assert_every_check_passed(model, result):
    """One result per check of the timeline, in the file's lines, all passed."""
    wanted = sorted(s.where[1] for s in model.timeline if s.kind == "check")
    assert sorted(c["line"] for c in result["checks"]) == wanted
    failed = [f"line {c['line']}: {c['detail']}" for c in result["checks"] if not c["ok"]]
    assert not failed, failed


def path_checks(model, result):
    """[(time, model's expected path, the check's detail)] of the timeline's path checks."""
    details = {c["line"]: c["detail"] for c in result["checks"]}
    out = []
    for s in model.timeline:
        if s.kind == "check" and s.args["check"] == "path":
            site = model.host_site_at(s.args["to"], s.at + 1e-9)
            out.append((s.at, model.expected_path(s.args["from"], s.args["to"], site),
                        details[s.where[1]]))
    return out


def test_three_data_centers_the_vm_goes_round_and_every_phase_takes_its_direct_path(
        tmp_path):
    """DC1 -> DC2 -> DC3 -> DC1: after each move the new xTR registers the VM, the client's
    ITR points at the new RLOC, the VM answers, and the probes of each phase enter the DC
    where the VM is, straight from the client's router (no triangle)."""
    model, r = play("three-dc", tmp_path)
    assert_every_check_passed(model, r)
    phases = path_checks(model, r)
    assert [p[1][-1] for p in phases] == ["dc1-access", "dc2-access", "dc3-access",
                                          "dc1-access"]
    for _, expect, detail in phases:
        assert detail.endswith("crossed " + " > ".join(expect)), detail
    assert r["tcp_survived"], "the TCP session did not survive the three moves"
    assert r["elapsed_s"] < 90


def test_multihomed_site_itr_learns_both_rlocs_and_traffic_enters_by_the_preferred(tmp_path):
    """The client's ITR holds both of the branch's RLOCs with their priorities and weights,
    and the probes enter the branch by provider B (priority 1), not provider A, although
    provider A's link is listed first."""
    model, r = play("multihomed", tmp_path)
    assert_every_check_passed(model, r)
    rlocs = model.rlocs("xtrm")
    assert [(up.name, p) for up, _, p, _ in rlocs] == [("provider-b", 1), ("provider-a", 2)]
    mc = next(c for c in r["checks"] if c["step"].startswith("t=1s check map_cache"))
    for _, addr, p, w in rlocs:
        assert f"{addr} p{p}/w{w}" in mc["detail"], mc["detail"]
    expect = model.expected_path("c1", "h1", "branch")
    assert "provider-b" in expect and "provider-a" not in expect
    assert r["path_after"] == expect
    for _, want, detail in path_checks(model, r):
        assert detail.endswith("crossed " + " > ".join(want)), detail
    assert r["elapsed_s"] < 60


def test_ipv6_sites_over_the_ipv4_core_and_a_dual_stack_site_through_the_proxy(tmp_path):
    """Two IPv6-only LISP sites: each host reaches the other over IPv6, the ITR maps the
    IPv6 EID to the other xTR's IPv4 RLOC, and the IPv6 probes follow the model's path.
    The IPv6 site and the dual-stack non-LISP site reach each other through the proxy
    xTR: the proxy's map-cache maps the IPv6 EID to its site's xTR, and native IPv6 between
    the two hosts crosses the proxy's link (the only IPv6 path there is)."""
    model, r = play("ipv6", tmp_path)
    assert_every_check_passed(model, r)
    assert r["vm"] == model.hosts["h2"].ip(6) and r["client"] == model.hosts["h1"].ip(6)
    assert model.hosts["h1"].ip(4) is None and model.hosts["h2"].ip(4) is None
    expect = model.expected_path("h1", "h2", "east")
    assert r["path_after"] == expect
    for _, want, detail in path_checks(model, r):
        assert detail.endswith("crossed " + " > ".join(want)), detail
    assert r["probes_answered"] > 0.9 * r["probes_sent"]
    native = subprocess.run(["tcpdump", "-nr", str(tmp_path / "ipv6" / "pxtr-link.pcap"),
                             f"ip6 and host {model.hosts['n1'].ip(6)}"], capture_output=True,
                            text=True).stdout
    assert f"{model.hosts['n1'].ip(6)} > {model.hosts['h1'].ip(6)}" in native, native
    assert f"{model.hosts['h1'].ip(6)} > {model.hosts['n1'].ip(6)}" in native, native
    assert r["elapsed_s"] < 60


def test_ipv4_sites_over_an_ipv6_only_core(tmp_path, tshark):
    """(issue 11) IPv4 EIDs over an IPv6 core: the xTRs register with the Map-Server and
    map each other over IPv6, the probes cross the core inside IPv6 LISP packets (tshark
    reads outer IPv6, UDP 4341, the LISP header and the IPv4 probe inside), the control
    messages are LISP over IPv6, and no IPv4 packet is routed by the core at all."""
    model, r = play("ipv6-core", tmp_path)
    assert_every_check_passed(model, r)
    assert model.core_family == 6 and ":" in model.rloc("xtrw")
    assert r["path_after"] == model.expected_path("h1", "h2", "east")
    assert r["probes_answered"] > 0.9 * r["probes_sent"]
    core = tmp_path / "ipv6-core" / "core-r1-r2.pcap"

    def count(display_filter):
        return frames(tshark, core, display_filter)

    h1, h2 = model.hosts["h1"].ip(4), model.hosts["h2"].ip(4)
    data6 = count(f"ipv6.src == {model.rloc('xtrw')} && ipv6.dst == {model.rloc('xtre')} && "
                  f"udp.dstport == 4341 && lisp-data && ip.src == {h1} && ip.dst == {h2}")
    assert data6 > 0.5 * r["probes_sent"], data6
    assert count("lisp && ipv6") > 0                   # Map-Registers toward the Map-Server
    assert count("ip && !ipv6") == 0                   # not one IPv4 packet in the core
    assert count("_ws.malformed || _ws.expert.severity == error") == 0


def test_two_tenants_behind_the_same_xtrs_keep_their_instance_ids(tmp_path, tshark):
    """(issue 11) Two instance IDs in each xTR's data plane: the blue tenant's probes
    cross the core with instance ID 2 in the LISP header and the red tenant's pings with
    instance ID 0 (tshark reads both), each delivered to its own LAN; a red host does not
    reach a blue prefix (the Map-Server has none in instance 0: the timeline's unreachable
    check)."""
    model, r = play("tenants", tmp_path)
    assert_every_check_passed(model, r)
    assert r["path_after"] == model.expected_path("b1", "b2", "eastblue")
    core = tmp_path / "tenants" / "core-r1-r2.pcap"

    def count(display_filter):
        return frames(tshark, core, display_filter)

    b1, b2 = model.hosts["b1"].ip(4), model.hosts["b2"].ip(4)
    h1, h2 = model.hosts["h1"].ip(4), model.hosts["h2"].ip(4)
    assert count(f"lisp-data.iid == 2 && ip.src == {b1} && ip.dst == {b2}") > \
        0.5 * r["probes_sent"]
    assert count(f"lisp-data.iid == 0 && ip.src == {h1} && ip.dst == {h2} && icmp") >= 1
    assert count(f"lisp-data.iid == 0 && (ip.dst == {b2} || ip.src == {b1})") == 0
    assert count("_ws.malformed") == 0
    assert "unreachable" in {c["step"].split()[2] for c in r["checks"]}   # (and it passed)

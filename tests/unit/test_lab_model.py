"""The lab model without root: every kind of bad file gets one line naming file, line and
problem; the shipped files validate; derivations (routes, paths, configs) are right."""
import ipaddress
import subprocess
import sys
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:          # Python 3.10 (Ubuntu 22.04): the same parser as tomli
    import tomli as tomllib

from topologies.model import LabFileError, lab_files, load
from topologies.render import toml

from tests.unit.labtexts import TINY, error_of, write

LABS = Path(__file__).resolve().parents[2] / "topologies" / "labs"

GOOD = TINY


def test_a_good_file_loads(tmp_path):
    lab = load(write(tmp_path, GOOD))
    assert lab.name == "tiny" and set(lab.hosts) == {"ha", "hb"}
    assert [s.kind for s in lab.timeline] == ["traffic", "check"]


# (what is wrong, the edit that makes it wrong, the line reported, words in the message)
BAD = [
    ("unknown key", ("routers: [r1]", "routers: [r1]\nrouterz: [r2]"), 3, "unknown key 'routerz'"),
    ("unknown site key, with a hint",
     ("eid_prefixes: [10.1.0.0/24]}", "eid_prefix: [10.1.0.0/24]}"), 8, "did you mean"),
    ("unknown step", ("{at: 1, check: reachable, from: ha, to: hb}",
                      "{at: 1, teleport: ha}"), 16, "unknown step 'teleport'"),
    ("unknown check", ("check: reachable", "check: teleported"), 16, "unknown check"),
    ("unknown node in a link", ("ends: [xb, r1]", "ends: [xb, r9]"), 5, "unknown node 'r9'"),
    ("unknown host in a step", ("from: ha, to: hb}\n  - {at: 1", "from: hz, to: hb}\n  - {at: 1"),
     15, "unknown host 'hz'"),
    ("address outside its subnet", ("address: 10.1.0.10/24", "address: 10.7.0.10/24"), 12,
     "outside site sa's LAN"),
    ("duplicate name", ("  hb: {site: sb", "  ms: {site: sb"), 13, "duplicate name 'ms'"),
    ("duplicate key", ("  hb: {site: sb", "  ha: {site: sb"), 13, "duplicate key 'ha'"),
    ("time going backwards", ("{at: 0, traffic", "{at: 2, traffic"), 16, "time goes backwards"),
    ("missing key", ("  sb: {kind: client, gateway: xb, ", "  sb: {gateway: xb, "), 9,
     "needs the key 'kind'"),
    ("a link subnet too large", ("172.16.2.0/30", "172.16.2.0/24"), 5, "must be a /30 or /31"),
    ("overlapping subnets", ("172.16.2.0/30", "172.16.1.0/30"), 5, "overlaps link a-up"),
    ("not YAML", ("lab: tiny", "lab: [tiny"), 2, "not valid YAML"),
    ("an address without its length", ("address: 10.2.0.10/24", "address: 10.2.0.10"), 13,
     "with its prefix length"),
    ("a bad prefix", ("eid_prefixes: [10.2.0.0/24]", "eid_prefixes: [10.2.0.1/24]"), 9,
     "not a valid prefix"),
]


@pytest.mark.parametrize("what,edit,line,words", BAD, ids=[b[0] for b in BAD])
def test_a_bad_file_gets_one_line_naming_file_line_and_problem(tmp_path, what, edit, line,
                                                                words):
    old, new = edit
    assert old in GOOD
    e = error_of(tmp_path, GOOD.replace(old, new, 1))
    text = str(e)
    assert "\n" not in text
    assert text.startswith(f"{tmp_path / 'lab.yaml'}:{line}: "), text
    assert words in text, text


def test_an_error_in_an_extended_file_names_that_file(tmp_path):
    write(tmp_path, GOOD.replace("address: 10.2.0.10/24", "address: 10.9.0.10/24"),
          "base.yaml")
    p = write(tmp_path, "extends: base.yaml\nlab: over\n")
    with pytest.raises(LabFileError) as e:
        load(p)
    assert str(e.value).startswith(f"{tmp_path / 'base.yaml'}:13: ")


def test_extends_merges_mappings_replaces_lists_and_null_removes(tmp_path):
    write(tmp_path, GOOD, "base.yaml")
    p = write(tmp_path, "extends: base.yaml\nlab: over\nsites:\n  sb: {lan: 10.3.0.1/24}\n"
                        "hosts:\n  hb: {address: 10.3.0.10/24}\ntimeline: null\n")
    lab = load(p)
    assert lab.name == "over" and lab.timeline == []
    assert str(lab.sites["sb"].lan[0]) == "10.3.0.1/24"
    assert lab.sites["sb"].eid_prefixes == [ipaddress.ip_network("10.2.0.0/24")]   # kept
    loop = write(tmp_path, "extends: loop.yaml\nlab: x\n", "loop.yaml")
    with pytest.raises(LabFileError, match="loop"):
        load(loop)


def test_a_switch_name_needs_a_number(tmp_path):
    """Mininet derives a switch's datapath ID from the digits of its name: without one the
    build would fail with a traceback, so the file is refused first."""
    text = GOOD.replace("  sb: {kind: client, gateway: xb, ", "  sb: {kind: client, gateway: xb, "
                        "switch: sw, ")
    e = error_of(tmp_path, text)
    assert str(e).endswith(":9: switch 'sw': a switch's name needs a number (Mininet derives "
                           "its datapath ID from it), e.g. sw1")


def test_yaml_1_1_surprises_are_not_made(tmp_path):
    """on/off/yes stay strings, a MAC is never a base-60 number: a wrong value is named."""
    e = error_of(tmp_path, GOOD.replace("routers: [r1]", "lisp: on\nrouters: [r1]"))
    assert "lisp 'on' must be true or false" in str(e)


def test_every_shipped_file_validates():
    files = lab_files(LABS)
    assert len(files) >= 6
    bad = [(p.name, str(m)) for p, m in files if isinstance(m, LabFileError)]
    assert bad == []


def test_validate_command_without_root(tmp_path):
    """`lisp-lab validate`: ok lines and exit 0, or the one-line problem and exit 1; never
    a traceback."""
    good = write(tmp_path, GOOD, "good.yaml")
    bad = write(tmp_path, GOOD.replace("ends: [xb, r1]", "ends: [xb, r9]"), "bad.yaml")
    cmd = [sys.executable, "-m", "lab.cli", "validate"]
    r = subprocess.run(cmd + [str(good)], capture_output=True, text=True)
    assert r.returncode == 0 and "ok (tiny" in r.stdout
    r = subprocess.run(cmd + [str(bad)], capture_output=True, text=True)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.strip().count("\n") == 0 and f"{bad}:5:" in r.stderr


# --- derivations ---------------------------------------------------------------------------

def demo(mode):
    return load(LABS / f"demo-{mode}.yaml")


def test_static_routes_follow_shortest_paths_and_reach_every_link():
    lab = demo("lisp-extended-subnet")
    routes = lab.static_routes()
    r2 = dict((str(p), via) for p, via in routes["r2"])
    assert r2["172.16.3.0/30"] == "172.16.23.2"          # DC2's uplink: straight to r3
    assert r2["172.16.10.0/30"] == "172.16.12.1"         # the client's: through r1
    assert r2["10.0.0.0/8"] == "172.16.12.1"             # the EID space: to the proxy xTR
    for r in lab.routers:
        known = {str(p) for p, _ in routes[r]} | {str(x.subnet) for x in lab.links.values()
                                                   if r in x.ends()}
        assert {str(x.subnet) for x in lab.links.values()} <= known, r
    assert "10.10.0.0/24" not in r2                      # with LISP the core knows no EID
    l2 = dict((str(p), via) for p, via in demo("l2-extension").static_routes()["r1"])
    assert l2["10.10.0.0/24"] == "172.16.12.2"           # without it: toward DC1 via r2


def test_expected_paths_per_mode():
    head = ["client-access", "client-uplink"]
    dc1 = head + ["core-r1-r2", "dc1-uplink", "dc1-access"]
    dc2 = head + ["core-r1-r3", "dc2-uplink", "dc2-access"]
    assert demo("l2-extension").expected_path("c1", "vm", "dc2") == dc1 + ["dci"]
    assert demo("host-route").expected_path("c1", "vm", "dc2", host_route=True) == dc2
    for mode in ("lisp-extended-subnet", "lisp-across-subnet"):
        assert demo(mode).expected_path("c1", "vm", "dc1") == dc1
        assert demo(mode).expected_path("c1", "vm", "dc2") == dc2


def test_daemon_configs_are_valid_configs_of_the_daemon(tmp_path):
    """Every derived config renders to TOML that nodes/config.py accepts."""
    from nodes.config import load_config
    for mode in ("lisp-extended-subnet", "lisp-across-subnet"):
        for node, (role, cfg) in demo(mode).daemon_configs(tmp_path, tmp_path).items():
            path = tmp_path / f"{mode}-{node}.toml"
            path.write_text(toml(cfg))
            assert tomllib.loads(path.read_text()) == cfg
            assert load_config(path).role == role, (mode, node)
            if role == "msmr":
                # The daemon's default is RFC 9301's three minutes; a lab's xTRs register
                # every register_interval, so its Map-Server's timeout is written out.
                xtr = next(c for r, c in demo(mode).daemon_configs(tmp_path, tmp_path)
                           .values() if r == "xtr")
                assert load_config(path).registration_timeout == \
                    3 * xtr["etr"]["register_interval"]


def test_across_subnets_dc2_has_its_own_lan_and_no_dci():
    lab = demo("lisp-across-subnet")
    assert lab.dci is None and "dci" not in lab.captures()
    cmds = lab.node_commands()["xtr2"]
    assert "ip addr add 10.20.0.1/24 dev xtr2-lan" in cmds
    assert "ip addr add 10.10.0.1/32 dev xtr2-gw" in cmds      # the VM's old gateway
    assert lab.fhrp_isolation_rules() == []
    assert len(demo("lisp-extended-subnet").fhrp_isolation_rules()) == 8


def test_toml_rendering_escapes_strings():
    text = toml({"node": {"name": 'a"b\\c'}, "rloc": [{"address": "1.2.3.4", "weight": 5}]})
    assert tomllib.loads(text) == {"node": {"name": 'a"b\\c'},
                                   "rloc": [{"address": "1.2.3.4", "weight": 5}]}


def test_run_of_a_bad_file_says_one_line_and_builds_nothing(tmp_path):
    """`lisp-lab run` checks the file before it needs root or builds anything."""
    from lab.cleanup import read_records
    before = len(read_records())
    bad = write(tmp_path, GOOD.replace("{at: 1, check", "{at: 1, chekc"), "bad.yaml")
    r = subprocess.run([sys.executable, "-m", "lab.cli", "run", str(bad)], capture_output=True,
                       text=True)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.count("\n") == 1 and f"{bad}:16: unknown step 'chekc'" in r.stderr
    assert len(read_records()) == before


def test_with_ospf_the_expected_path_goes_around_a_link_that_is_down():
    lab = load(LABS / "fail-core-link.yaml")
    assert lab.links_down_at(2) == set() and lab.links_down_at(3) == {"core-r1-r2"}
    assert lab.links_down_at(6) == set()
    around = lab.expected_path("c1", "vm", "dc1", down={"core-r1-r2"})
    assert around[2:4] == ["core-r1-r3", "core-r2-r3"]
    static = demo("lisp-across-subnet")      # static routes do not go around anything
    assert static.expected_path("c1", "vm", "dc1", down={"core-r1-r2"})[2] == "core-r1-r2"
    # with OSPF the EID space behind the proxy xTR is still a static route on its router
    assert "ip route replace 10.0.0.0/8 via 172.16.101.1" in lab.node_commands()["r1"]


def test_a_stop_step_names_a_flow_started_before_it(tmp_path):
    stop = GOOD + "  - {at: 2, stop: probes-ha-hb}\n"
    assert [s.kind for s in load(write(tmp_path, stop)).timeline][-1] == "stop"
    e = error_of(tmp_path, GOOD + "  - {at: 2, stop: nosuch}\n")
    assert "no traffic step before it starts a flow of that name" in str(e)
    e = error_of(tmp_path, GOOD + "  - {at: 2, traffic: probes, from: ha, to: hb}\n")
    assert "a flow named 'probes-ha-hb' exists already" in str(e) and ":17:" in str(e)


def test_a_run_that_fails_says_one_line_never_a_traceback(tmp_path, monkeypatch, capsys):
    """Whatever goes wrong while a scenario plays (a device gone, Mininet refusing a link),
    `lisp-lab run` and `lisp-lab demo` print one line and keep the traceback in a file."""
    import lab.cli as cli
    import lab.demo

    def boom(*a, **kw):
        raise RuntimeError("move vm to dc2: Device does not exist\nmore detail")
    monkeypatch.setattr(cli, "_root", lambda command: True)
    monkeypatch.setattr(lab.demo, "run_scenario", boom)
    monkeypatch.setattr(lab.demo, "run_demo", boom)
    good = write(tmp_path, GOOD)
    for argv in (["run", str(good)], ["demo", "--modes", "l2-extension"]):
        if argv[0] == "demo":
            monkeypatch.setattr("os.geteuid", lambda: 0)
        assert cli.main(argv) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err, err
        assert f"lisp-lab {argv[0]}: move vm to dc2: Device does not exist" in err
        log = err.rsplit("details in ", 1)[1].rstrip(")\n")
        assert "RuntimeError" in open(log).read()


def test_a_lab_chooses_its_xtrs_data_path(tmp_path):
    lab = load(write(tmp_path, "dataplane: kernel\n" + GOOD))
    configs = lab.daemon_configs(tmp_path, tmp_path)
    assert {n: c["dataplane"].get("path") for n, (role, c) in configs.items()
            if role == "xtr"} == {"xa": "kernel", "xb": "kernel"}
    assert "path" not in load(write(tmp_path, GOOD)).daemon_configs(tmp_path, tmp_path)[
        "xa"][1]["dataplane"]
    e = error_of(tmp_path, "dataplane: ebpf\n" + GOOD)
    assert str(e).endswith(":1: dataplane 'ebpf': python or kernel (the xTRs' data path)")


def test_one_way_delays_and_the_floors_of_a_move():
    """(issue 12) The propagation floors of a move from the link delays of the demo's lab:
    every core link and xTR uplink 10 ms, the Map-Server's link 0 ms; the client's xTR on
    r1, DC1's on r2, DC2's on r3, the Map-Server on r1."""
    from topologies.model import load
    from pathlib import Path
    m = load(Path(__file__).resolve().parents[2] / "topologies" / "labs"
             / "demo-lisp-across-subnet.yaml")
    assert m.one_way_ms("xtr2", "msmr") == 20.0            # uplink + r3-r1
    assert m.one_way_ms("xtr1", "xtrc") == 30.0            # uplink + r2-r1 + uplink
    assert m.one_way_ms("xtrc", "xtrc") == 0.0
    f = m.convergence_floor("xtr2", "xtr1", "xtrc", "msmr")
    assert f["notify"] == 20 + 10 + 30                     # register, publish, first packet
    assert f["smr_round"] == 30 + 10 + 20 + 30             # SMR, request, forward, reply
    assert f["smr"] == 20 + 20 + f["smr_round"] + 30
    assert "site_notify" not in f["legs"]                  # no DCI across subnets


def test_with_the_site_local_notify_the_old_xtr_hears_over_the_dci():
    """On the extended subnet the old xTR hears of the host over the DCI (5 ms), sooner
    than register-then-notify (40 ms): the SMR path's floor starts from there (a move
    converged in 146 ms, under the 160 ms floor that ignored it)."""
    from topologies.model import load
    from pathlib import Path
    labs = Path(__file__).resolve().parents[2] / "topologies" / "labs"
    m = load(labs / "demo-lisp-extended-subnet.yaml")
    f = m.convergence_floor("xtr2", "xtr1", "xtrc", "msmr")
    assert f["legs"]["site_notify"] == 5.0
    assert f["smr"] == 5 + f["smr_round"] + 30
    off = load(labs / "demo-lisp-extended-subnet.yaml")
    off.dci.site_notify = False
    assert off.convergence_floor("xtr2", "xtr1", "xtrc", "msmr")["smr"] == 20 + 20 + 90 + 30


def test_links_json_names_the_nodes_of_a_moves_budget():
    from pathlib import Path
    from lab.scenario import budget_meta
    from topologies.model import load
    labs = Path(__file__).resolve().parents[2] / "topologies" / "labs"
    m = load(labs / "demo-lisp-across-subnet.yaml")
    vm = next(h for h in m.hosts.values() if h.vm)
    client = next(h for h in m.hosts.values() if not h.vm and m.sites[h.site].lisp)
    b = budget_meta(m, client.name, vm.site, "dc2" if vm.site == "dc1" else "dc1")
    assert {r: n["node"] for r, n in b["nodes"].items()} == {
        "new_xtr": "xtr2", "old_xtr": "xtr1", "itr": "xtrc", "map_server": "msmr"}
    assert b["nodes"]["new_xtr"] == {"node": "xtr2", "rloc": m.rloc("xtr2"),
                                     "link": "dc2-uplink"}
    assert b["floor_ms"]["notify"] == 60.0
    assert budget_meta(load(labs / "demo-l2-extension.yaml"), client.name, vm.site,
                       "dc2") is None                   # no LISP: no budget


def test_a_registered_check_can_ask_that_no_other_xtr_claims_the_host(tmp_path):
    ok = GOOD + "  - {at: 2, check: registered, eid: ha, by: xa, only: true}\n"
    step = load(write(tmp_path, ok)).timeline[-1]
    assert step.args["only"] is True and step.args["by"] == "xa"
    for bad in ("{at: 2, check: registered, eid: ha, only: true}",
                "{at: 2, check: registered, eid: ha, by: xa, only: 1}",
                "{at: 2, check: reachable, from: ha, to: hb, only: true}"):
        e = error_of(tmp_path, GOOD + f"  - {bad}\n")
        assert ":17:" in str(e) and "only: true" in str(e), str(e)


@pytest.mark.parametrize("step, words", [
    ("{at: 2, check: split, links: [a-up, nope], weights: [70, 30]}", "unknown link 'nope'"),
    ("{at: 2, check: split, links: [a-up, b-up], weights: [70]}", "one number"),
    ("{at: 2, check: split, links: [a-up, b-up], weights: [0, 0]}", "not all 0"),
    ("{at: 2, check: split, links: [a-up], weights: [70]}", "two or more"),
    ("{at: 2, check: split, weights: [70, 30]}", "needs links"),
    ("{at: 2, check: reachable, from: ha, to: hb, weights: [1, 2]}", "is for a split check"),
    ("{at: 2, traffic: probes, from: ha, to: hb, name: p2, flows: 10}", "flows traffic step"),
])
def test_a_bad_split_check_or_flows_step_is_one_line(tmp_path, step, words):
    e = error_of(tmp_path, GOOD + f"  - {step}\n")
    assert ":17:" in str(e) and words in str(e) and "\n" not in str(e), str(e)


def test_a_split_check_and_a_flows_step_load(tmp_path):
    text = GOOD + ("  - {at: 2, traffic: flows, from: ha, to: hb, flows: 500, packets: 2}\n"
                   "  - {at: 4, check: split, links: [a-up, b-up], weights: [70, 30],"
                   " tolerance: 4}\n")
    flows, split = load(write(tmp_path, text)).timeline[-2:]
    assert (flows.args["flows"], flows.args["packets"]) == (500, 2)
    assert split.args["weights"] == [70, 30] and split.args["tolerance"] == 4


def test_a_lab_turns_rloc_probing_on_for_its_xtrs(tmp_path):
    """mapping_system: {rloc_probing: S} becomes every xTR's [itr] rloc_probe_interval,
    which the daemon accepts; without it the xTRs do not probe; a bad value is one line."""
    from nodes.config import load_config
    text = GOOD.replace("key: k}", "key: k, rloc_probing: 0.5}")
    assert text != GOOD
    configs = load(write(tmp_path, text)).daemon_configs(tmp_path, tmp_path)
    xtrs = {n: c for n, (role, c) in configs.items() if role == "xtr"}
    assert {n: c["itr"].get("rloc_probe_interval") for n, c in xtrs.items()} == \
        {"xa": 0.5, "xb": 0.5}
    path = tmp_path / "xa.toml"
    path.write_text(toml(xtrs["xa"]))
    assert load_config(path).rloc_probe_interval == 0.5
    plain = load(write(tmp_path, GOOD)).daemon_configs(tmp_path, tmp_path)
    assert "rloc_probe_interval" not in plain["xa"][1]["itr"]
    for bad in ("0", "true", "fast", "100"):
        e = error_of(tmp_path, GOOD.replace("key: k}", f"key: k, rloc_probing: {bad}}}"))
        assert ":10: rloc_probing (the xTRs' RLOC-probe interval, seconds" in str(e), str(e)


def test_rloc_probing_may_give_the_probe_timeout_and_retries(tmp_path):
    from nodes.config import build_core, load_config
    text = GOOD.replace("key: k}", "key: k, rloc_probing: {interval: 0.5, timeout: 0.15, "
                                   "retries: 3}}")
    cfg = load(write(tmp_path, text)).daemon_configs(tmp_path, tmp_path)["xa"][1]
    assert {k: v for k, v in cfg["itr"].items() if k.startswith("rloc_probe")} == {
        "rloc_probe_interval": 0.5, "rloc_probe_timeout": 0.15, "rloc_probe_retries": 3}
    path = tmp_path / "xa.toml"
    path.write_text(toml(cfg))
    prober = build_core(load_config(path)).itr.prober
    assert (prober.interval, prober.timeout, prober.retries) == (0.5, 0.15, 3)
    for bad, words in (("{timeout: 0.1}", "needs the key 'interval'"),
                       ("{interval: 0.5, timeout: 0.9}", "at most the interval"),
                       ("{interval: 0.5, retries: 1.5}", "whole number"),
                       ("{interval: 0.5, retry: 2}", "unknown key 'retry'")):
        e = error_of(tmp_path, GOOD.replace("key: k}", f"key: k, rloc_probing: {bad}}}"))
        assert ":10: " in str(e) and words in str(e), str(e)


PROBING = "  rloc_probing: {interval: 0.5, timeout: 0.15, retries: 3}"


def test_a_failover_check_names_provider_links_and_needs_probing(tmp_path):
    lab = load(LABS / "te-priority.yaml")
    fo = next(s for s in lab.timeline if s.args.get("check") == "failover")
    assert fo.args["primary"] == "provider-a" and lab.uplink_site("provider-b").name == "branch"
    text = (LABS / "te-priority.yaml").read_text()
    assert PROBING in text
    bad = tmp_path / "fo.yaml"
    for old, new, words in (("primary: provider-a", "primary: core-r1-r2", "not a provider link"),
                            (PROBING, "  pubsub: false", "needs RLOC-probing"),
                            ("within: 3}", "within: 3, tolerance: 2}", "split check")):
        bad.write_text(text.replace(old, new).replace("extends: multihomed.yaml",
                                                      f"extends: {LABS}/multihomed.yaml"))
        with pytest.raises(LabFileError) as e:
            load(bad)
        assert words in str(e.value) and "\n" not in str(e.value), str(e.value)


def test_a_link_that_comes_back_gets_its_routes_back():
    """The kernel drops the routes across a link that goes down; set_link puts these back."""
    lab = load(LABS / "te-priority.yaml")
    assert lab.routes_over("xtrm", "provider-a") == ["ip route replace default via 172.16.2.2"]
    assert lab.routes_over("r1", "core-r1-r2") == [
        "ip route replace 172.16.23.0/30 via 172.16.12.2",
        "ip route replace 172.16.2.0/30 via 172.16.12.2"]
    # the backup provider's default route, for when the first provider's link is down
    assert "ip route add default via 172.16.3.2 metric 110" in lab.node_commands()["xtrm"]

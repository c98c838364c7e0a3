"""Host groups (`count: N`, issue 12's 100-VM scenario): a group expands into members with
consecutive addresses, steps that may name a group do, the others refuse it in one line,
and a converged check carries what the analysis needs (captures/group.py). No root."""
import struct

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from scapy.utils import wrpcap

from captures.group import converged_check, group_convergence
from captures.probe import PROBE_PORT, make_probe
from lab.scenario import _deferred
from lab.traffic import build_parser
from topologies.model import load
from tests.unit.labtexts import TINY, error_of, write

GROUP_LAB = TINY.replace(
    "eid_prefixes: [10.2.0.0/24]}", "eid_prefixes: [10.2.0.0/24], switch: s2}").replace(
    "  hb: {site: sb, address: 10.2.0.10/24}\n",
    "  hb: {site: sb, address: 10.2.0.10/24}\n"
    "  hg: {site: sb, address: 10.2.0.100/24, count: 5}\n")


def test_a_group_expands_into_members_with_consecutive_addresses(tmp_path):
    lab = load(write(tmp_path, GROUP_LAB))
    assert lab.groups == {"hg": ["hg1", "hg2", "hg3", "hg4", "hg5"]}
    assert [lab.hosts[m].ip(4) for m in lab.groups["hg"]] == [
        f"10.2.0.{i}" for i in range(100, 105)]
    assert "hg" not in lab.hosts and lab.members("hg") == lab.groups["hg"]
    assert lab.members("hb") == ["hb"]
    assert {lab.hosts[m].site for m in lab.members("hg")} == {"sb"}


def test_the_shipped_100_vm_lab_has_100_vms_that_move_at_once():
    from lab.demo import LABS_DIR
    lab = load(LABS_DIR / "move-100.yaml")
    assert len(lab.vms()) == 100 and len(lab.groups["vms"]) == 99
    assert lab.hosts["vms99"].ip(4) == "10.10.0.198"
    moves = lab.moves()
    assert {m.args["move"] for m in moves} == {"vm", "vms"} and len({m.at for m in moves}) == 1
    assert lab.host_site_at("vms", 0) == "dc1" and lab.host_site_at("vms50", 3) == "dc2"


@pytest.mark.parametrize("edit, words", [
    # a member's address leaves the LAN: the member and its group are named
    (lambda t: t.replace("10.2.0.100/24, count: 5", "10.2.0.252/24, count: 5"),
     ["hg4 (of group hg)", "broadcast address"]),
    (lambda t: t.replace("count: 5", "count: 2.5"), ["not a whole number"]),
    (lambda t: t.replace("count: 5", "count: 1"), ["count"]),
    (lambda t: t.replace("  hg: {", "  hgroupxy: {"), ["longer than 8 characters"]),
    (lambda t: t.replace("  hg: {", "  hb3: {").replace("count: 5", "count: 5}\n  hb31: "
                         "{site: sb, address: 10.2.0.50/24"), ["duplicate name 'hb31'"]),
    # only some steps take a group; the others name one of its members
    (lambda t: t + "  - {at: 2, traffic: tcp, from: ha, to: hg}\n", ["is a group of hosts"]),
    (lambda t: t + "  - {at: 2, check: path, from: ha, to: hg}\n", ["is a group of hosts"]),
    (lambda t: t + "  - {at: 2, check: converged, eid: hg, below_ms: 100}\n",
     ["no move of hg"]),
])
def test_group_errors_are_one_line(tmp_path, edit, words):
    e = error_of(tmp_path, edit(GROUP_LAB))
    for w in words:
        assert w in str(e), str(e)


def test_steps_that_take_a_group(tmp_path):
    text = GROUP_LAB + ("  - {at: 1, traffic: probes, from: ha, to: hg, rate: 500}\n"
                        "  - {at: 2, check: reachable, from: ha, to: hg}\n"
                        "  - {at: 2, check: map_cache, node: xa, eid: hg}\n"
                        "  - {at: 2, check: registered, eid: hg}\n")
    lab = load(write(tmp_path, text))
    assert [s.args.get("to", s.args.get("eid")) for s in lab.timeline[2:]] == ["hg"] * 4


def test_a_converged_check_names_the_clients_uplink_the_new_rloc_and_the_resolution():
    from lab.demo import LABS_DIR
    lab = load(LABS_DIR / "move-100.yaml")
    step = next(s for s in lab.timeline if s.args.get("check") == "converged")
    moves = [{"host": "vm", "time": 100.0}, {"host": "vms", "time": 100.1}]
    d = _deferred(lab, step, 200.0, moves)
    assert d["link"] == "client-uplink" and d["rloc"] == lab.rloc("xtr2")
    assert d["move_time"] == 100.1 and len(d["members"]) == 99
    assert d["members"]["10.10.0.100"] == "vms1"
    assert d["resolution_ms"] == 49.5               # 99 members at 2,000 probes/s


def test_probes_take_several_destinations():
    args = build_parser().parse_args(["probe", "--dst", "10.0.0.1", "--dst", "10.0.0.2"])
    assert args.dst == ["10.0.0.1", "10.0.0.2"]


# --- the measurement: captures/group.py --------------------------------------------------

NEW, OLD, CLIENT = "192.0.2.3", "192.0.2.2", "10.99.0.10"
MAC = "02:00:00:00:00:01"
MEMBERS = {"10.10.0.100": "vms1", "10.10.0.101": "vms2", "10.10.0.102": "vms3"}


def probe(dst, t, rloc=None, seq=1):
    inner = IP(src=CLIENT, dst=dst) / UDP(sport=40000, dport=PROBE_PORT) / make_probe(seq, 0)
    if rloc is None:
        pkt = Ether(src=MAC, dst=MAC) / inner
    else:
        lisp = struct.pack("!BBBBI", 0x00, 0, 0, 0, 0)      # N=0, L=0, instance 0
        pkt = (Ether(src=MAC, dst=MAC) / IP(src="192.0.2.9", dst=rloc) / UDP(sport=50000, dport=4341)
               / (lisp + bytes(inner)))
    pkt.time = t
    return pkt


def test_group_convergence_is_each_members_first_probe_to_the_new_rloc(tmp_path):
    pcap = tmp_path / "client-uplink.pcap"
    packets = [
        probe("10.10.0.100", 9.9, NEW),          # before the move: not counted
        probe("10.10.0.100", 10.05, OLD),        # to the old xTR: not converged yet
        probe("10.10.0.101", 10.08),             # natively: not converged either
        probe("10.10.0.100", 10.25, NEW),        # vms1 at 250 ms
        probe("10.10.0.101", 10.4, NEW),         # vms2 at 400 ms
        probe("10.10.0.100", 10.5, NEW),         # vms1 again: its first one counts
        probe("10.10.0.77", 10.1, NEW),          # not a member
    ]
    wrpcap(str(pcap), packets)
    r = group_convergence(pcap, MEMBERS, NEW, 10.0)
    assert r["per_member_ms"] == {"vms1": 250.0, "vms2": 400.0}
    assert r["never"] == ["vms3"] and r["converged"] == 2 and r["max_ms"] == 400.0
    check = {"step": "t=8s check converged", "at": 8, "file": "f", "line": 1,
             "group": "vms", "below_ms": 1000, "link": "client-uplink", "rloc": NEW,
             "resolution_ms": 49.5}
    out = converged_check(check, r)
    assert not out["ok"] and "never: vms3" in out["detail"], out
    wrpcap(str(pcap), packets + [probe("10.10.0.102", 10.7, NEW)])
    out = converged_check(check, group_convergence(pcap, MEMBERS, NEW, 10.0))
    assert out["ok"] and "3/3 converged" in out["detail"], out
    out = converged_check({**check, "below_ms": 500}, group_convergence(pcap, MEMBERS, NEW,
                                                                         10.0))
    assert not out["ok"] and "too late: vms3" in out["detail"], out


def test_an_unreadable_capture_fails_the_check_saying_so(tmp_path):
    assert group_convergence(tmp_path / "none.pcap", MEMBERS, NEW, 0.0) is None
    out = converged_check({"step": "s", "at": 1, "file": "f", "line": 1, "group": "vms",
                           "below_ms": 10, "link": "client-uplink", "rloc": NEW}, None)
    assert not out["ok"] and "cannot be read" in out["detail"]

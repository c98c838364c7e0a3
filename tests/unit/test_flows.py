"""The flows of a traffic-engineering scenario (lab/flows.py, captures/flows.py): their
datagrams are found on each link natively and inside LISP, counted per flow, and the split
check compares the flows' shares with the weights (issue 11)."""
import json
import subprocess
import sys

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import Raw
from scapy.utils import wrpcap

from captures.flows import FLOW_PORT, count_flows, flow_shares, parse, payload, split_check

SRC, DST, OTHER = "10.99.0.10", "10.50.0.10", "10.99.0.11"


def datagram(sport, flow, seq, src=SRC, dport=FLOW_PORT):
    return IP(src=src, dst=DST) / UDP(sport=sport, dport=dport) / Raw(payload(flow, seq))


def lisp(inner, rloc):
    return Ether() / IP(src="172.16.10.1", dst=rloc) / UDP(sport=50000, dport=4341) / Raw(
        bytes.fromhex("88000001 00000001") + bytes(inner))


def test_payload_round_trip():
    assert parse(payload(7, 2)) == (7, 2) and len(payload(7, 2)) == 64
    assert parse(b"LLPROBE1" + bytes(56)) is None


def test_flows_are_counted_per_link_natively_and_inside_lisp(tmp_path):
    a = [lisp(datagram(20000 + i, i, k), "172.16.2.1") for i in range(7) for k in range(3)]
    b = [lisp(datagram(20100 + i, 100 + i, k), "172.16.3.1") for i in range(3) for k in range(3)]
    noise = [lisp(datagram(20200, 1, 0, src=OTHER), "172.16.2.1"),        # another source
             lisp(datagram(20201, 1, 0, dport=7000), "172.16.2.1"),       # another port
             Ether() / IP(src=SRC, dst=DST) / UDP(sport=1, dport=FLOW_PORT) / Raw(b"x" * 20)]
    native = [Ether() / datagram(20000 + i, i, 0) for i in range(10)]
    wrpcap(str(tmp_path / "provider-a.pcap"), a + noise)
    wrpcap(str(tmp_path / "provider-b.pcap"), b)
    wrpcap(str(tmp_path / "access.pcap"), native)
    got = count_flows(tmp_path, ["provider-a", "provider-b", "access", "missing"], SRC, DST,
                      FLOW_PORT)
    assert got["provider-a"]["flows"] == 7 and got["provider-a"]["packets"] == 21
    assert got["provider-a"]["bytes"] == 21 * len(a[0])
    assert got["provider-b"] == {"flows": 3, "packets": 9, "bytes": 9 * len(b[0])}
    assert got["access"]["flows"] == 10 and got["missing"] is None


CHECK = {"step": "t=5s check split", "at": 5.0, "file": "te.yaml", "line": 20,
         "links": ["a", "b"], "weights": [70.0, 30.0], "tolerance": 5.0}


@pytest.mark.parametrize("a, b, ok", [(700, 300, True), (660, 340, True), (640, 360, False),
                                      (1000, 0, False), (0, 0, False)])
def test_the_split_check_compares_shares_with_the_weights(a, b, ok):
    r = split_check(CHECK, {"a": {"flows": a}, "b": {"flows": b}})
    assert r["ok"] is ok, r
    assert r["line"] == 20 and "\n" not in r["detail"]
    if a + b:
        assert f"a {a} flows ({100 * a / (a + b):.1f} %, wanted 70 %)" in r["detail"], r
    else:
        assert "no flow captured" in r["detail"]


def test_a_priority_split_wants_every_flow_on_the_primary():
    check = dict(CHECK, weights=[100.0, 0.0], tolerance=0.0)
    assert split_check(check, {"a": {"flows": 50}, "b": {"flows": 0}})["ok"] is True
    assert split_check(check, {"a": {"flows": 49}, "b": {"flows": 1}})["ok"] is False


def test_flow_shares_are_percent_of_the_flows_sent():
    counts = {"a": {"flows": 696}, "b": {"flows": 304}, "missing": None, "lost": {"flows": 0}}
    assert flow_shares(counts, 1000) == {"a": 69.6, "b": 30.4, "lost": 0.0}
    # flows lost on the way lower every share: the denominator is what was sent
    assert flow_shares({"a": {"flows": 450}}, 900) == {"a": 50.0}
    assert flow_shares(counts, 0) is None and flow_shares(None, 10) == {}


def test_the_sender_writes_its_json_and_refuses_bad_arguments(tmp_path):
    out = tmp_path / "f.json"
    r = subprocess.run([sys.executable, "-m", "lab.flows", "--dst", "127.0.0.1", "--flows", "4",
                        "--packets", "2", "--rate", "5000", "--first-sport", "41000",
                        "--out", str(out)], capture_output=True, text=True, timeout=20)
    assert r.returncode == 0, r.stderr
    doc = json.loads(out.read_text())
    assert (doc["flows"], doc["packets_sent"], doc["send_errors"]) == (4, 8, 0)
    r = subprocess.run([sys.executable, "-m", "lab.flows", "--dst", "127.0.0.1",
                        "--first-sport", "65000", "--flows", "1000"], capture_output=True,
                       text=True, timeout=20)
    assert r.returncode == 2 and "port range" in r.stderr and "Traceback" not in r.stderr


def test_the_report_shows_the_split_links_or_every_link_that_carried_flows():
    from captures.report import split_links
    counts = {"access": {"flows": 10}, "provider-a": {"flows": 7}, "provider-b": {"flows": 0},
              "dead": None}
    split = {"step": "check: split", "links": ["provider-b", "provider-a"]}
    assert split_links({"flow_counts": counts, "checks": [split]}) == ["provider-b", "provider-a"]
    # no split check (a starter file of exercise 5): the links the flows crossed
    assert split_links({"flow_counts": counts, "checks": []}) == ["access", "provider-a"]
    assert split_links({"flow_counts": None, "checks": [split]}) == []

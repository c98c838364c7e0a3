"""The lab model's graph for the report's picture (Lab.topology()): the nodes and links of
the Mininet topology, every capture point among them, and the expected paths as walks."""
import json
from pathlib import Path

from topologies.model import load

LABS = Path(__file__).resolve().parents[2] / "topologies" / "labs"


def _graph(name):
    lab = load(LABS / name)
    return lab, lab.topology()


def test_two_dc_nodes_links_and_kinds():
    lab, g = _graph("two-dc.yaml")
    json.dumps(g, allow_nan=False)                       # plain data for links.json
    kinds = {n["name"]: n["kind"] for n in g["nodes"]}
    assert kinds == {"r1": "router", "r2": "router", "r3": "router", "xtr1": "xtr",
                     "xtr2": "xtr", "xtrc": "xtr", "msmr": "map-server",
                     "pxtr": "proxy", "vm": "vm", "c1": "host", "n1": "host",
                     "s1": "switch", "s2": "switch"}
    _, plain = _graph("demo-l2-extension.yaml")                # no LISP: plain gateways
    assert {n["name"]: n["kind"] for n in plain["nodes"]}["xtr1"] == "gateway"
    links = {x["name"]: x for x in g["links"]}
    assert links["core-r1-r3"]["ends"] == ["r1", "r3"] and links["core-r1-r3"]["kind"] == "core"
    assert links["dc1-uplink"]["kind"] == "uplink"
    assert links["dc1-access"]["ends"] == ["xtr1", "s1"]
    assert links["client-access"]["ends"] == ["xtrc", "c1"]     # no switch: host on the LAN
    assert links["vm-eth0"] == {"name": "vm-eth0", "ends": ["vm", "s1"], "kind": "port",
                                "captured": False}
    assert links["dci"]["ends"] == ["s1", "s2"] and links["dci"]["kind"] == "dci"
    assert links["internet-access"]["captured"] is False        # non-LISP sites: no capture
    assert {n for n, x in links.items() if x["captured"]} == set(lab.captures())
    names = set(kinds)
    assert all(set(x["ends"]) <= names for x in g["links"])
    sites = {n["name"]: n["site"] for n in g["nodes"]}
    assert sites["xtr1"] == "dc1" and sites["s2"] == "dc2" and sites["vm"] == "dc1"
    assert sites["r1"] is None and sites["msmr"] is None


def test_addresses_name_the_nodes_of_captured_packets():
    _, g = _graph("demo-lisp-extended-subnet.yaml")
    owner = {}
    for n in g["nodes"]:
        for a in n["addresses"]:
            owner.setdefault(a, set()).add(n["name"])
    assert owner["172.16.3.1"] == {"xtr2"}                      # DC2's RLOC
    assert owner["172.16.100.1"] == {"msmr"}
    assert owner["10.99.0.10"] == {"c1"} and "2001:db8:10::5" in next(
        n["addresses"] for n in g["nodes"] if n["name"] == "vm")
    kinds = {n["name"]: n["kind"] for n in g["nodes"]}
    assert kinds["xtr1"] == kinds["xtr2"] == kinds["xtrc"] == "xtr"


def test_every_expected_path_is_a_walk_in_the_graph():
    """Consecutive links of the model's expected paths share a node, in every shipped lab
    with a move: the report draws the paths on this graph."""
    checked = 0
    for path in sorted(LABS.glob("*.yaml")):
        lab = load(path)
        g = lab.topology()
        ends = {x["name"]: set(x["ends"]) for x in g["links"]}
        for move in lab.moves():
            host = move.args["move"]
            src = next((s.args["from"] for s in lab.timeline if s.kind == "traffic"
                        and s.args["to"] == host), None)
            if src is None:
                continue
            member = lab.members(host)[0]          # a group's first member stands for it
            for site in (lab.hosts[member].site, move.args["to"]):
                walk = lab.expected_path(src, member, site)
                assert all(ends[a] & ends[b] for a, b in zip(walk, walk[1:])), (path, walk)
                checked += 1
    assert checked >= 8

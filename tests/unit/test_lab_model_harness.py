"""The lab model's keys that the emulation tests' lab files need (tests/data/*.yaml), without
root: xTR-held gateways of dynamic-EID ranges (`gateway` of a range, the site's
`gateway_mac`), `proxy_arp`, a static prefix beside dynamic ranges, foreign hosts; each bad
use is one line naming file, line and problem. And the daemon config overrides of
lab/backend.py's start_daemons."""
from pathlib import Path

import pytest

from topologies.model import load

from tests.unit.labtexts import CORE, error_of, write

DATA = Path(__file__).resolve().parents[1] / "data"

LAB = "lab: held\n" + CORE + """\
sites:
  sa:
    kind: datacenter
    gateway: xa
    switch: sw1
    lan: 10.1.0.1/24
    eid_prefixes: [10.1.0.0/24]
    gateway_mac: "00:00:5E:00:01:01"
    dynamic_eids:
      - {prefix: 10.10.0.0/24, gateway: 10.10.0.1/24}
      - {prefix: 2001:db8:10::/64, gateway: 2001:db8:10::1/64}
  sb:
    kind: datacenter
    gateway: xb
    switch: sw2
    lan: 10.2.0.1/24
    eid_prefixes: [10.2.0.0/24]
    gateway_mac: "00:00:5e:00:01:01"
    proxy_arp: true
    dynamic_eids:
      - {prefix: 10.10.0.0/24, gateway: 10.10.0.1/32, detect: gateway}
mapping_system: {map_servers: [ms], key: k, instance_id: 5}
hosts:
  vm: {site: sa, address: [10.10.0.5/24, 2001:db8:10::5/64], vm: true}
  own: {site: sa, address: 10.1.0.10/24}
  rogue: {site: sa, address: 10.66.0.7/24, foreign: true}
"""


def test_xtr_held_gateways_go_to_the_daemon_config(tmp_path):
    lab = load(write(tmp_path, LAB))
    configs = lab.daemon_configs("/w", "/s")
    _, xa = configs["xa"]
    assert xa["eid_prefix"] == [{"prefix": "10.1.0.0/24", "instance_id": 5}]
    assert xa["dynamic_eid"] == [
        {"prefix": "10.10.0.0/24", "instance_id": 5, "interface": "xa-lan",
         "gateway": "10.10.0.1/24", "gateway_mac": "00:00:5e:00:01:01"},
        {"prefix": "2001:db8:10::/64", "instance_id": 5, "interface": "xa-lan",
         "gateway": "2001:db8:10::1/64", "gateway_mac": "00:00:5e:00:01:01"}]
    assert "proxy_arp" not in xa["dataplane"]
    assert xa["dataplane"]["lan_interfaces"] == ["xa-lan"]        # no macvlan
    _, xb = configs["xb"]
    assert xb["dataplane"]["proxy_arp"] is True
    assert xb["dynamic_eid"][0]["detect"] == "gateway"
    assert xb["dynamic_eid"][0]["detect_mac"] == "00:00:5e:00:01:01"
    assert xb["dynamic_eid"][0]["gateway"] == "10.10.0.1/32"
    # the network's own commands hold no gateway: the daemons add them
    cmds = lab.node_commands()
    assert not any("10.10.0.1" in c or "macvlan" in c for c in cmds["xa"] + cmds["xb"])


def test_hosts_use_the_held_gateway_of_their_range_and_foreign_hosts_none(tmp_path):
    lab = load(write(tmp_path, LAB))
    cmds = lab.node_commands()
    assert "ip route add default via 10.10.0.1" in cmds["vm"]
    assert "ip -6 route add default via 2001:db8:10::1" in cmds["vm"]
    assert "ip route add default via 10.1.0.1" in cmds["own"]
    assert cmds["rogue"] == ["ip addr add 10.66.0.7/24 dev rogue-eth0"]
    assert lab.host_gateway("vm", 4) == "10.10.0.1"
    assert lab.host_gateway("vm", 4, site="sb") == "10.10.0.1"   # after a move: the /32
    assert lab.host_gateway("own", 4, site="sb") == "10.2.0.1"
    assert lab.host_gateway("rogue", 4) is None


# (the edit that makes LAB wrong, the line reported, words in the message)
BAD = [
    (("gateway: 10.10.0.1/24}", "gateway: 10.11.0.1/24}"), 16, "not in the range 10.10.0.0/24"),
    (("gateway: 2001:db8:10::1/64}", "gateway: 10.10.0.1/64}"), 17, "not valid"),
    (('    gateway_mac: "00:00:5E:00:01:01"\n', ""), 15, "needs the site's gateway_mac"),
    (('gateway_mac: "00:00:5E:00:01:01"', 'gateway_mac: "00:00:5e:00:01"'), 14, "six hex pairs"),
    (('gateway_mac: "00:00:5E:00:01:01"', 'gateway_mac: "00:00:5e:00:01:01"\n'
      '    anycast_gateway: {address: 10.1.0.254, mac: "00:00:5e:00:01:02"}'), 14,
     "has an anycast_gateway"),
    (("proxy_arp: true", "proxy_arp: yes"), 25, "must be true or false"),
    (("gateway: 10.10.0.1/32, detect: gateway}", "detect: gateway}"), 26, "detect: gateway"),
    (("10.66.0.7/24, foreign: true}", "10.66.0.7/24}"), 32, "foreign: true if on purpose"),
    (("foreign: true}", "foreign: 1}"), 32, "foreign 1 must be true or false"),
    (("address: 10.1.0.10/24}", "address: 10.10.0.1/24}"), 31, "is the gateway's address"),
]


@pytest.mark.parametrize("edit,line,words", BAD, ids=[b[2] for b in BAD])
def test_a_bad_use_is_one_line_naming_the_place(tmp_path, edit, line, words):
    old, new = edit
    assert LAB.count(old) == 1, old
    text = LAB.replace(old, new)
    if "detect: gateway}" in new:                 # a range that detects by the MAC, no MAC
        text = text.replace('    gateway_mac: "00:00:5e:00:01:01"\n', "")
    e = error_of(tmp_path, text)
    msg = str(e)
    assert "\n" not in msg and words in msg, msg
    assert msg.startswith(f"{tmp_path / 'lab.yaml'}:{line}:"), msg


def test_proxy_arp_on_a_non_lisp_site_is_refused(tmp_path):
    text = LAB + "  n1: {site: web, address: 198.51.100.10/24}\n"
    text = text.replace("mapping_system:", "  web: {kind: non-lisp, gateway: r1, "
                                           "lan: 198.51.100.1/24, proxy_arp: true}\n"
                                           "mapping_system:")
    msg = str(error_of(tmp_path, text))
    assert "proxy_arp: site web is non-lisp" in msg and ":28:" in msg, msg


def test_the_mobility_lab_of_the_emulation_tests():
    """tests/data/mobility.yaml keeps the plan test_mobility_io was written for."""
    lab = load(DATA / "mobility.yaml")
    assert all(n.startswith("mob") for n in lab.node_names() + lab.switches())
    configs = lab.daemon_configs("/w", "/s")
    assert set(configs) == {"mobx1", "mobx2", "mobc", "mobms"}
    x1, x2, c = (configs[n][1] for n in ("mobx1", "mobx2", "mobc"))
    assert [d["gateway"] for d in x1["dynamic_eid"]] == ["10.10.0.1/24", "2001:db8:10::1/64"]
    assert [d["gateway"] for d in x2["dynamic_eid"]] == ["10.10.0.1/32", "2001:db8:10::1/128"]
    assert {d["gateway_mac"] for d in x1["dynamic_eid"] + x2["dynamic_eid"]} == \
        {"00:00:5e:00:01:01"}
    assert x1["eid_prefix"] == [{"prefix": "10.1.0.0/24", "instance_id": 5}]
    assert x2["eid_prefix"] == [{"prefix": "10.20.0.0/24", "instance_id": 5}]
    assert x2["dataplane"]["proxy_arp"] and not x1["dataplane"].get("proxy_arp")
    assert {m["secret"] for m in x1["map_server"] + x2["map_server"]} == {"dc-key"}
    assert [m["secret"] for m in c["map_server"]] == ["client-key"]
    sites = {s["name"]: s for s in configs["mobms"][1]["site"]}
    assert set(sites) == {"dc", "client"}
    assert {p["prefix"] for p in sites["dc"]["prefix"]} == \
        {"10.10.0.0/24", "2001:db8:10::/64", "10.1.0.0/24", "10.20.0.0/24"}
    assert sites["dc"]["accept_more_specifics"]
    cmds = lab.node_commands()
    assert cmds["mobrg"] == ["ip addr add 10.66.0.7/24 dev mobrg-eth0"]
    assert "ip route add default via 10.1.0.1" in cmds["mobd1"]


def test_daemon_config_overrides_merge_into_the_derived_config():
    from lab.backend import _merged
    cfg = {"node": {"name": "x"}, "map_server": [{"address": "a", "secret": "s"},
                                                 {"address": "b", "secret": "s"}],
           "msmr": {"registration_timeout": 3}}
    out = _merged(cfg, {"map_server": {"secret": "wrong"},
                        "msmr": {"map_request_rate": 0}, "etr": {"register_interval": 2}})
    assert out["map_server"] == [{"address": "a", "secret": "wrong"},
                                 {"address": "b", "secret": "wrong"}]
    assert out["msmr"] == {"registration_timeout": 3, "map_request_rate": 0}
    assert out["etr"] == {"register_interval": 2} and out["node"] == {"name": "x"}
    assert cfg["map_server"][0]["secret"] == "s"                 # the derived one unchanged


def test_the_two_sites_lab_of_the_emulation_tests():
    """tests/data/two-sites.yaml keeps the plan test_daemons was written for (it replaces
    topologies/two_sites.py's PLAN)."""
    lab = load(DATA / "two-sites.yaml")
    configs = lab.daemon_configs("/w", "/s")
    assert {n: role for n, (role, _) in configs.items()} == \
        {"xtr1": "xtr", "xtr2": "xtr", "msmr": "msmr", "pxtr": "pxtr"}
    x1, x2, ms, px = (configs[n][1] for n in ("xtr1", "xtr2", "msmr", "pxtr"))
    assert x1["eid_prefix"] == [{"prefix": "10.1.0.0/24", "instance_id": 7},
                                {"prefix": "2001:db8:1::/64", "instance_id": 7}]
    assert [m["secret"] for m in x1["map_server"]] == ["site1-secret"]
    assert [m["secret"] for m in x2["map_server"]] == ["site2-secret"]
    assert {s["name"]: s["key"][0]["secret"] for s in ms["site"]} == \
        {"site1": "site1-secret", "site2": "site2-secret"}
    assert x1["itr"]["petr"] == lab.rloc("pxtr") and x1["dataplane"]["mtu"] == 1500
    assert px["eid_space"] == [{"prefix": "10.0.0.0/8", "instance_id": 7}]
    assert px["dataplane"]["lan_interfaces"] == ["pxtr-r0"]
    assert {k: v for k, v in lab.captures().items() if k.startswith("core-")} == \
        {f"core-{n}": ("r0", f"r0-{n}") for n in ("xtr1", "xtr2", "msmr", "pxtr")}
    assert ("10.0.0.0/8", "172.16.4.1") in [(str(p), v) for p, v in lab.static_routes()["r0"]]
    assert "ip route add default via 198.51.100.1" in lab.node_commands()["n1"]

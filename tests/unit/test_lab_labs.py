"""The shipped labs beyond the demo (three-dc, multihomed, ipv6) without root: what the
model derives from them, and the keys they added to the format (a map_cache check's
`rlocs: all`, a step's `family:`, a VM moving back to a site it left)."""
import ipaddress
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:          # Python 3.10 (Ubuntu 22.04): the same parser as tomli
    import tomli as tomllib

from topologies.model import load
from topologies.render import toml

from tests.unit.labtexts import CORE, TINY, error_of, write

LABS = Path(__file__).resolve().parents[2] / "topologies" / "labs"

GOOD = TINY

THREE_DC, MULTIHOMED, IPV6 = (load(LABS / f"{n}.yaml") for n in ("three-dc", "multihomed",
                                                                   "ipv6"))


def test_three_dc_each_phase_has_its_own_direct_path():
    """Where the VM is at each path check, and the path the probes take there: into that
    DC straight from the client's router."""
    checks = [s for s in THREE_DC.timeline if s.kind == "check" and s.args["check"] == "path"]
    sites = [THREE_DC.host_site_at("vm", s.at + 1e-9) for s in checks]
    assert sites == ["dc1", "dc2", "dc3", "dc1"]
    paths = [THREE_DC.expected_path("c1", "vm", site) for site in sites]
    assert paths[1] == ["client-access", "client-uplink", "core-r1-r3", "dc2-uplink",
                        "dc2-access"]
    assert paths[2] == ["client-access", "client-uplink", "core-r1-r4", "dc3-uplink",
                        "dc3-access"]
    assert paths[0] == paths[3]
    assert THREE_DC.dci is None


def test_three_dc_every_dc_registers_the_vm_range_as_one_site():
    configs = THREE_DC.daemon_configs("/w", "/s")
    for x in ("xtr1", "xtr2", "xtr3"):
        assert [d["prefix"] for d in configs[x][1]["dynamic_eid"]] == ["10.10.0.0/24"]
    sites = configs["msmr"][1]["site"]
    dcs = next(s for s in sites if s["name"] == "datacenters")
    assert dcs["accept_more_specifics"] and [p["prefix"] for p in dcs["prefix"]] == \
        ["10.10.0.0/24"]


def test_a_vm_may_move_back_to_the_site_it_left(tmp_path):
    lab = load(write(tmp_path, THREE_DC_BACK))
    assert [lab.host_site_at("vm", t) for t in (1, 3, 5)] == ["d1", "d2", "d1"]
    e = error_of(tmp_path, THREE_DC_BACK.replace("{at: 4, move: vm, to: d1}",
                                                 "{at: 4, move: vm, to: d2}"))
    assert "vm is already in d2 at t=4" in str(e)


THREE_DC_BACK = "lab: back\n" + CORE + """\
sites:
  d1: {kind: datacenter, gateway: xa, switch: sa1, lan: 10.1.0.1/24, dynamic_eids: [10.1.0.0/24]}
  d2: {kind: datacenter, gateway: xb, switch: sb1, lan: 10.2.0.1/24, dynamic_eids: [10.1.0.0/24]}
mapping_system: {map_servers: [ms], key: k}
hosts:
  vm: {site: d1, address: 10.1.0.10/24, vm: true}
timeline:
  - {at: 2, move: vm, to: d2}
  - {at: 4, move: vm, to: d1}
"""


def test_multihomed_locator_set_preferred_first_and_traffic_enters_by_it():
    rlocs = MULTIHOMED.rlocs("xtrm")
    assert [(up.name, addr, p, w) for up, addr, p, w in rlocs] == [
        ("provider-b", "172.16.3.1", 1, 100), ("provider-a", "172.16.2.1", 2, 100)]
    cfg = MULTIHOMED.daemon_configs("/w", "/s")["xtrm"][1]
    assert cfg["rloc"] == [{"address": "172.16.3.1", "priority": 1, "weight": 100},
                           {"address": "172.16.2.1", "priority": 2, "weight": 100}]
    assert MULTIHOMED.expected_path("c1", "h1", "branch") == [
        "client-access", "client-uplink", "core-r1-r3", "provider-b", "branch-access"]
    # each RLOC leaves by its own provider's link (source routing on the second uplink)
    cmds = MULTIHOMED.node_commands()["xtrm"]
    assert "ip route add default via 172.16.2.2" in cmds
    assert "ip rule add from 172.16.3.1 lookup 110" in cmds


MAP_CACHE = "{at: 1, check: reachable, from: ha, to: hb}"


@pytest.mark.parametrize("step, words", [
    ("{at: 1, check: map_cache, node: xa, eid: hb, rlocs: all}", "rlocs: all (a map_cache"),
    ("{at: 1, check: map_cache, node: xa, eid: hb, rloc: xb, rlocs: some}", "rlocs: all"),
    ("{at: 1, check: registered, eid: hb, rloc: xb, rlocs: all}", "rlocs: all"),
    ("{at: 1, check: reachable, from: ha, to: hb, family: 5}", "family 5: 4 or 6"),
    ("{at: 1, check: reachable, from: ha, to: hb, family: 6}", "ha has no IPv6 address"),
])
def test_bad_new_step_keys_get_one_line(tmp_path, step, words):
    e = error_of(tmp_path, GOOD.replace(MAP_CACHE, step))
    assert str(e).startswith(f"{tmp_path / 'lab.yaml'}:16: ") and words in str(e), str(e)


def test_rlocs_all_on_a_map_cache_check_validates(tmp_path):
    lab = load(write(tmp_path, GOOD.replace(
        MAP_CACHE, "{at: 1, check: map_cache, node: xa, eid: hb, rloc: xb, rlocs: all}")))
    assert lab.timeline[-1].args["rlocs"] == "all"


def test_a_host_family_is_its_ipv4_unless_it_has_only_ipv6():
    assert IPV6.hosts["h1"].family() == 6 and IPV6.hosts["h1"].addr() == "2001:db8:a::10"
    vm = THREE_DC.hosts["vm"]
    assert vm.family() == 4 and vm.addr() == "10.10.0.5" and vm.addr(6) is None


def test_traffic_between_hosts_of_no_common_family_is_refused(tmp_path):
    text = GOOD.replace("address: 10.2.0.10/24", "address: 2001:db8:2::10/64").replace(
        "lan: 10.2.0.1/24", "lan: [10.2.0.1/24, 2001:db8:2::1/64]")
    e = error_of(tmp_path, text)
    assert "ha has none" in str(e), str(e)


def test_ipv6_sites_ipv6_lans_and_eids_ipv4_rlocs(tmp_path):
    from nodes.config import load_config
    cmds = IPV6.node_commands()
    assert "ip -6 route add default via 2001:db8:a::1" in cmds["h1"]
    assert not any(c.startswith("ip route add default") for c in cmds["h1"])
    assert "ip -6 addr add 2001:db8:b::1/64 dev xtre-lan nodad" in cmds["xtre"]
    configs = IPV6.daemon_configs(tmp_path, tmp_path)
    for node, (role, cfg) in configs.items():
        if role == "xtr":
            assert all(ipaddress.ip_address(r["address"]).version == 4 for r in cfg["rloc"])
            assert all(ipaddress.ip_network(p["prefix"]).version == 6
                       for p in cfg["eid_prefix"])
        path = tmp_path / f"{node}.toml"
        path.write_text(toml(cfg))
        assert tomllib.loads(path.read_text()) == cfg
        assert load_config(path).role == role
    # the core routes no IPv6, and needs none
    assert all(p.version == 4 for routes in IPV6.static_routes().values() for p, _ in routes)
    assert IPV6.expected_path("h1", "h2", "east") == [
        "west-access", "west-uplink", "core-r1-r2", "east-uplink", "east-access"]


def test_family_steps_validate_in_the_ipv6_lab():
    steps = [s for s in IPV6.timeline if s.args.get("family") == 6]
    assert {s.kind for s in steps} == {"traffic", "check"}


def test_ipv6_routes_only_where_a_link_has_a_subnet6():
    """The proxy's link is the one IPv6 link: the proxy routes IPv6 to r1, r1 routes the
    IPv6 EID space to the proxy, and nothing else gets an IPv6 route."""
    cmds = IPV6.node_commands()
    assert "ip -6 addr add 2001:db8:101::1/64 dev pxtr-r1 nodad" in cmds["pxtr"]
    assert "ip -6 route add default via 2001:db8:101::2" in cmds["pxtr"]
    assert [c for c in cmds["r1"] if c.startswith("ip -6 route")] == [
        "ip -6 route replace 2001:db8:a::/48 via 2001:db8:101::1",
        "ip -6 route replace 2001:db8:b::/48 via 2001:db8:101::1"]
    for node in ("xtrw", "xtre", "msmr", "r2"):
        assert not any(c.startswith("ip -6 route") for c in cmds[node]), node
    assert "ip -6 route add default via 2001:db8:ff::1" in cmds["n1"]
    assert IPV6.daemon_configs("/w", "/s")["xtrw"][1]["itr"]["petr"] == "172.16.101.1"


@pytest.mark.parametrize("subnet6, words", [
    ("10.9.0.0/30", "must be an IPv6 /64 to /126"),
    ("2001:db8:1::/127", "must be an IPv6 /64 to /126"),
    ("2001:db8:1::1/64", "not a valid prefix"),
])
def test_a_bad_subnet6_gets_one_line(tmp_path, subnet6, words):
    e = error_of(tmp_path, GOOD.replace("subnet: 172.16.1.0/30}",
                                        f"subnet: 172.16.1.0/30, subnet6: \"{subnet6}\"}}"))
    assert str(e).startswith(f"{tmp_path / 'lab.yaml'}:4: ") and words in str(e), str(e)


IPV6_CORE = load(LABS / "ipv6-core.yaml")


def test_an_ipv6_core_routes_ipv6_only_and_its_rlocs_are_ipv6():
    """(issue 11) core family 6: the routers get an IPv6 route to every link's subnet6
    they are not on and no IPv4 route at all; the xTRs' RLOCs, the Map-Server's and the
    Map-Resolver's addresses in their configs are the uplinks' IPv6 addresses; the EIDs
    stay IPv4."""
    m = IPV6_CORE
    cmds = m.node_commands()
    assert [c for c in cmds["r1"] if "route" in c] == [
        "ip -6 route replace 2001:db8:2::/64 via 2001:db8:12::2"]
    assert [c for c in cmds["r2"] if "route" in c] == [
        "ip -6 route replace 2001:db8:1::/64 via 2001:db8:12::1",
        "ip -6 route replace 2001:db8:100::/64 via 2001:db8:12::1"]
    assert "ip -6 route add default via 2001:db8:1::2" in cmds["xtrw"]
    cfg = m.daemon_configs("/w", "/s")["xtrw"][1]
    assert cfg["rloc"] == [{"address": "2001:db8:1::1", "priority": 1, "weight": 100}]
    assert cfg["map_server"][0]["address"] == cfg["map_resolver"][0]["address"] \
        == "2001:db8:100::1"
    assert cfg["eid_prefix"] == [{"prefix": "10.1.0.0/24", "instance_id": 0}]
    tomllib.loads(toml(cfg))                               # a config the daemon can read
    assert load(LABS / "ipv6.yaml").core_family == 4       # the default


@pytest.mark.parametrize("change, words", [
    (("  family: 6\n", "  family: 5\n"), "core family 5: 4 or 6"),
    (("  routing: static\n", "  routing: ospf\n"), "core family 6 needs routing: static"),
    ((', subnet6: "2001:db8:100::/64"}', "}"),
     "link msmr-link: give it a subnet6 (core family 6 routes IPv6 only)"),
])
def test_a_bad_ipv6_core_gets_one_line(tmp_path, change, words):
    text = (LABS / "ipv6-core.yaml").read_text()
    assert change[0] in text
    e = error_of(tmp_path, text.replace(*change))
    assert str(e).startswith(f"{tmp_path / 'lab.yaml'}:") and words in str(e), str(e)

"""The FRR configs of the host-route scenario, derived from its lab file (no root)."""
import ipaddress

import pytest

from lab.demo import mode_file
from topologies.model import load

LAB = load(mode_file("host-route"))
CONFIGS = LAB.frr_configs()
OSPF_NODES = LAB.ospf_nodes()
# Links with OSPF on both ends (core links and the sites' uplinks).
CORE = [x for x in LAB.links.values() if set(x.ends()) <= set(OSPF_NODES)]
VM = LAB.hosts["vm"].addresses[0]


def ospf_interfaces(text):
    """{interface: [its lines]} of an ospfd config."""
    out, current = {}, None
    for line in text.splitlines():
        if line.startswith("interface "):
            current = line.split()[1]
            out[current] = []
        elif line.startswith(" ") and current is not None:
            out[current].append(line.strip())
        else:
            current = None
    return out


def router_ospf(text):
    lines = text.splitlines()
    start = lines.index("router ospf")
    return [x.strip() for x in lines[start + 1:] if x.startswith(" ")]


def announced(node):
    """The networks `node` puts into OSPF (from its config and the plan's addresses)."""
    addrs = {intf: addr for intf, addr, _ in LAB.ospf_interfaces(node)}
    return {ipaddress.ip_interface(addrs[i]).network
            for i in ospf_interfaces(CONFIGS[node]["ospfd"])}


def test_every_ospf_node_has_its_three_daemons():
    assert set(CONFIGS) == set(OSPF_NODES) == set(LAB.routers) | {"xtr1", "xtr2", "xtrc"}
    for node, texts in CONFIGS.items():
        assert set(texts) == {"zebra", "staticd", "ospfd"}
        for text in texts.values():
            assert text.startswith(f"hostname {node}\n")


def test_every_core_and_uplink_interface_runs_ospf_on_exactly_one_node():
    by_node = {n: ospf_interfaces(t["ospfd"]) for n, t in CONFIGS.items()}
    core = CORE
    assert {x.name for x in core} >= {"core-r1-r2", "core-r1-r3", "core-r2-r3",
                                      "dc1-uplink", "dc2-uplink", "client-uplink"}
    for x in core:
        for node in (x.a, x.b):
            intf = x.intf(node)
            owners = [n for n, intfs in by_node.items() if intf in intfs]
            assert owners == [node], (intf, owners)
            lines = by_node[node][intf]
            assert "ip ospf area 0" in lines
            assert "ip ospf network point-to-point" in lines
            assert "ip ospf hello-interval 1" in lines
            assert "ip ospf dead-interval 3" in lines
            assert "ip ospf passive" not in lines


def test_only_core_links_send_hellos():
    """Passive everywhere else: no OSPF packet on a LAN, an edge link or the DCI."""
    core = {x.intf(n) for x in CORE for n in (x.a, x.b)}
    for node, texts in CONFIGS.items():
        for intf, lines in ospf_interfaces(texts["ospfd"]).items():
            assert ("ip ospf passive" in lines) == (intf not in core), (node, intf)


def test_the_vm_subnet_is_announced_by_dc1_only_and_the_client_subnet_by_xtrc():
    vm_subnet = VM.network
    client = LAB.sites["client"].eid_prefixes[0]
    assert [n for n in OSPF_NODES if vm_subnet in announced(n)] == ["xtr1"]
    assert [n for n in OSPF_NODES if client in announced(n)] == ["xtrc"]
    xtr2 = CONFIGS["xtr2"]["ospfd"]
    assert not any(i.startswith("xtr2-lan") or i.startswith("xtr2-gw")
                   for i in ospf_interfaces(xtr2))
    assert "redistribute static" in router_ospf(xtr2)
    assert not any("connected" in x for x in router_ospf(xtr2))
    for node in OSPF_NODES:
        if node not in LAB.host_route_nodes():
            assert not any(x.startswith("redistribute") for x in router_ospf(
                CONFIGS[node]["ospfd"])), node


def test_every_subnet_of_the_plan_is_announced_once():
    subnets = [x.subnet for x in LAB.links.values()]
    subnets.append(LAB.sites["internet"].lan[0].network)
    for s in subnets:
        owners = [n for n in OSPF_NODES if s in announced(n)]
        expected = sorted(set(n for x in LAB.links.values() if x.subnet == s
                              for n in (x.a, x.b)) & set(OSPF_NODES)) or ["r1"]
        assert sorted(owners) == expected, (s, owners)
    assert set(LAB.ospf_prefixes()) == {str(n) for node in OSPF_NODES
                                      for n in announced(node)}


def test_router_ids_are_unique_addresses_of_their_node():
    ids = {}
    for node, texts in CONFIGS.items():
        rid = next(x.split()[-1] for x in router_ospf(texts["ospfd"])
                   if x.startswith("ospf router-id"))
        own = {str(ipaddress.ip_interface(a).ip) for _, a, _ in LAB.ospf_interfaces(node)}
        assert rid in own
        ids[rid] = node
    assert len(ids) == len(CONFIGS)


def test_fast_spf_and_lsa_timers():
    for texts in CONFIGS.values():
        lines = router_ospf(texts["ospfd"])
        delay, hold, max_hold = (0, 50, 500)
        assert f"timers throttle spf {delay} {hold} {max_hold}" in lines
        assert max_hold <= 1000
        assert "timers throttle lsa all 0" in lines
        assert "timers lsa min-arrival 0" in lines


def test_the_node_that_injects_the_host_route_is_dc2s_gateway():
    assert LAB.host_route_nodes() == ["xtr2"] == [LAB.captures()["dc2-access"][0]]


def routes_set(mode):
    """(node, command) of every route the lab's configuration sets."""
    cmds = load(mode_file(mode)).node_commands()
    return [(n, c) for n, cs in cmds.items() for c in cs if c.startswith("ip route")]


def test_host_route_mode_leaves_the_routing_of_ospf_nodes_to_ospf():
    static = routes_set("host-route")
    assert [n for n, _ in static if n in OSPF_NODES] == []
    assert {n for n, _ in static} == {"msmr", "pxtr", "c1", "n1", "vm"}    # default routes


@pytest.mark.parametrize("mode", ["l2-extension", "lisp-extended-subnet"])
def test_other_modes_keep_their_static_core(mode):
    static = routes_set(mode)
    for r in LAB.routers:
        assert any(n == r for n, _ in static), r
    to_vm = [c for n, c in static if n == "r1" and "10.10.0.0/24" in c]
    assert bool(to_vm) == (mode == "l2-extension")

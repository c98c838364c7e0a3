"""The node config file (nodes/config.py): the examples, building the core, and bad files."""
import ipaddress
import random
import re
from pathlib import Path

import pytest
from scapy.layers.inet import ICMP, UDP
from scapy.utils import rdpcap
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nodes.config import (ConfigError, DynamicEidConfig, NodeConfig, RlocConfig, build_core,
                          load_config, parse_config)
from nodes.lisp.actions import Event, SendControl
from nodes.lisp.etr import Etr, MapServerConfig
from nodes.lisp.itr import Itr
from nodes.lisp.mapserver import MapServerResolver, Site
from nodes.lisp.address import make_eid
from nodes.lisp.auth import sign
from nodes.lisp.messages import (ALG_HMAC_SHA1_96, ALG_HMAC_SHA256_128, MAP_REGISTER,
                                 EidRecord, Locator, MapNotify, MapRegister, encode)
from nodes.lisp.xtr import Xtr

ip = ipaddress.ip_address
net = ipaddress.ip_network
EXAMPLES = Path(__file__).resolve().parents[2] / "nodes" / "examples"


def example(role):
    return load_config(EXAMPLES / f"{role}.toml")


# --- the examples --------------------------------------------------------------------

@pytest.mark.parametrize("role, core_class", [("xtr", Xtr), ("msmr", MapServerResolver),
                                              ("pxtr", Xtr)])
def test_each_example_loads_and_builds(role, core_class):
    cfg = example(role)
    assert cfg.role == role
    assert type(build_core(cfg, random.Random(1))) is core_class


def test_xtr_example_values():
    cfg = example("xtr")
    assert (cfg.name, cfg.role) == ("xtr1", "xtr")
    assert cfg.control_socket == "/run/lisp-lab/xtr1.sock"
    assert cfg.event_log == "/tmp/lisp-lab/xtr1.events.jsonl"
    assert cfg.rlocs == [RlocConfig(ip("192.0.2.1"), 1, 100)]
    assert cfg.eid_prefixes == [(0, net("10.1.0.0/24"))]
    assert cfg.dynamic_eids == [DynamicEidConfig(0, net("10.10.0.0/24"), "xtr1-eth1",
                                                 ipaddress.ip_interface("10.10.0.1/24"),
                                                 "00:00:5e:00:01:01")]
    assert cfg.map_servers == [MapServerConfig(ip("192.0.2.100"), "datacenters-key", 0,
                                               ALG_HMAC_SHA256_128)]
    assert cfg.map_resolvers == [ip("192.0.2.100")]
    assert (cfg.register_interval, cfg.record_ttl, cfg.smr_interval) == (3.0, 1440, 1.0)
    assert (cfg.want_map_notify, cfg.proxy_reply, cfg.decap_known_rlocs_only) == (
        True, False, False)
    assert (cfg.miss_policy, cfg.petr) == ("hold", None)
    assert (cfg.tun, cfg.lan_interfaces, cfg.mtu, cfg.proxy_arp) == (
        "lisp0", ["xtr1-eth1"], 1500, False)
    assert cfg.sites == [] and cfg.eid_space == []


def test_msmr_example_values():
    cfg = example("msmr")
    assert cfg.registration_timeout == 9.0
    assert cfg.sites == [
        Site("datacenters", {0: "datacenters-key"},
             [(0, net("10.1.0.0/24")), (0, net("10.2.0.0/24")), (0, net("10.10.0.0/24"))],
             accept_more_specifics=True),
        Site("client", {1: "client-key"}, [(0, net("10.99.0.0/24"))]),
    ]
    assert cfg.rlocs == [] and cfg.map_resolvers == []


def test_pxtr_example_values():
    cfg = example("pxtr")
    assert cfg.rlocs == [RlocConfig(ip("192.0.2.30"))]
    assert cfg.eid_space == [(0, net("10.0.0.0/8"))]
    assert cfg.map_resolvers == [ip("192.0.2.100")]
    assert cfg.lan_interfaces == ["pxtr-eth1"]
    assert cfg.eid_prefixes == [] and cfg.dynamic_eids == [] and cfg.map_servers == []


def test_example_xtr_registers_with_example_msmr_and_dynamic_eids_are_accepted():
    """The examples fit together: xtr1's key is one of the msmr's, and the VM /32 xtr1
    detects is a more-specific the msmr accepts."""
    xtr = build_core(example("xtr"), random.Random(1))
    msmr = build_core(example("msmr"), random.Random(2))
    [register] = [a for a in xtr.tick(0.0) if isinstance(a, SendControl)]
    assert register.dst == ip("192.0.2.100")
    out = msmr.receive(register.wire(), ip("192.0.2.1"), 0.0)
    assert msmr.counters["registrations_accepted"] == 1
    [notify] = [a for a in out if isinstance(a, SendControl)]
    xtr_out = xtr.receive(notify.wire(), ip("192.0.2.100"), 0.1)
    assert any(isinstance(a, Event) and a.name == "registration_confirmed" for a in xtr_out)
    [vm_register] = [a for a in xtr.host_seen(0, ip("10.10.0.5"), 1.0)
                     if isinstance(a, SendControl)]
    msmr.receive(vm_register.wire(), ip("192.0.2.1"), 1.0)
    assert msmr.counters["registrations_accepted"] == 2
    assert msmr.counters["map_register_rejected"] == 0


# --- build_core wires the values in ------------------------------------------------------

FULL_XTR = """
[node]
name = "dc2"
role = "xtr"
control_socket = "/tmp/dc2.sock"

[[rloc]]
address = "198.51.100.2"
priority = 2
weight = 30

[[rloc]]
address = "2001:db8::2"
priority = 1
weight = 70

[[eid_prefix]]
prefix = "10.2.0.0/24"
instance_id = 7

[[eid_prefix]]
prefix = "2001:db8:2::/48"

[[dynamic_eid]]
prefix = "10.10.0.0/24"
instance_id = 7
interface = "dc2-eth1"
gateway = "10.10.0.1/32"
gateway_mac = "00:00:5E:00:01:07"

[[dynamic_eid]]
prefix = "2001:db8:10::/64"
instance_id = 7
interface = "dc2-eth1"
gateway = "2001:db8:10::1/64"

[[map_server]]
address = "198.51.100.100"
secret = "s3cret"
key_id = 5
algorithm = "hmac-sha-1-96"

[[map_resolver]]
address = "198.51.100.101"

[[map_resolver]]
address = "2001:db8::101"

[etr]
register_interval = 7
record_ttl = 10
want_map_notify = false
proxy_reply = true
smr_interval = 0.25
decap_known_rlocs_only = true

[itr]
miss_policy = "petr"
petr = "198.51.100.200"

[dataplane]
tun = "lisp9"
lan_interfaces = ["dc2-eth1", "dc2-eth2"]
mtu = 9000
proxy_arp = true
"""


def test_build_xtr_wires_every_value():
    cfg = parse_config(FULL_XTR, "full.toml")
    assert cfg.control_socket == "/tmp/dc2.sock"
    assert cfg.decap_known_rlocs_only is True
    assert (cfg.tun, cfg.lan_interfaces, cfg.mtu) == ("lisp9", ["dc2-eth1", "dc2-eth2"], 9000)
    assert cfg.proxy_arp is True
    assert cfg.dynamic_eids == [
        DynamicEidConfig(7, net("10.10.0.0/24"), "dc2-eth1",
                         ipaddress.ip_interface("10.10.0.1/32"), "00:00:5e:00:01:07"),
        DynamicEidConfig(7, net("2001:db8:10::/64"), "dc2-eth1",
                         ipaddress.ip_interface("2001:db8:10::1/64"), None)]
    core = build_core(cfg, random.Random(1))
    assert isinstance(core, Xtr) and core.name == "dc2"
    etr, itr = core.etr, core.itr
    assert isinstance(etr, Etr) and isinstance(itr, Itr)
    assert etr.rlocs == [Locator(ip("198.51.100.2"), 2, 30), Locator(ip("2001:db8::2"), 1, 70)]
    assert etr.prefixes == [(7, net("10.2.0.0/24")), (0, net("2001:db8:2::/48"))]
    assert etr.dynamic_ranges == [(7, net("10.10.0.0/24")), (7, net("2001:db8:10::/64"))]
    assert etr.map_servers == [MapServerConfig(ip("198.51.100.100"), "s3cret", 5,
                                               ALG_HMAC_SHA1_96)]
    assert etr.register_interval == 7.0 and isinstance(etr.register_interval, float)
    assert (etr.record_ttl, etr.want_map_notify, etr.proxy_reply, etr.smr_interval) == (
        10, False, True, 0.25)
    assert itr.rlocs == [ip("198.51.100.2"), ip("2001:db8::2")]
    assert itr.map_resolvers == [ip("198.51.100.101"), ip("2001:db8::101")]
    assert (itr.miss_policy, itr.petr, itr.pitr) == ("petr", ip("198.51.100.200"), False)


def test_built_xtr_signs_registers_with_the_configured_key_and_algorithm():
    core = build_core(parse_config(FULL_XTR), random.Random(1))
    [register] = [a for a in core.tick(0.0) if isinstance(a, SendControl)]
    assert register.dst == ip("198.51.100.100")
    msg = register.message
    assert (msg.key_id, msg.alg_id, msg.want_map_notify, msg.proxy_reply) == (
        5, ALG_HMAC_SHA1_96, False, True)
    assert {r.ttl for r in msg.records} == {10}
    ms = MapServerResolver([Site("dc2", {5: "s3cret"},
                                 [(7, net("10.2.0.0/24")), (0, net("2001:db8:2::/48"))])])
    ms.receive(register.wire(), ip("198.51.100.2"), 0.0)
    assert ms.counters["registrations_accepted"] == 1


def test_build_pxtr_is_a_proxy_itr_whose_etr_owns_nothing():
    cfg = parse_config(PXTR)
    core = build_core(cfg)
    assert isinstance(core, Xtr)
    assert core.itr.pitr is True
    assert core.itr.map_resolvers == [ip("192.0.2.100")]
    assert core.itr.rlocs == [ip("192.0.2.30")]
    assert core.etr.prefixes == [] and core.etr.map_servers == []
    assert core.etr.dynamic_ranges == []
    assert core.tick(0.0) == []          # registers nothing
    # Its Map-Requests carry the P (proxy ITR) bit.
    _, actions = core.route(0, ip("10.1.0.5"), 0.0)
    [request] = [a for a in actions if isinstance(a, SendControl)]
    assert request.message.message.pitr is True


def test_build_pxtr_ignores_etr_fields_of_a_hand_made_config():
    """A NodeConfig made in code (e.g. by a topology) for a pxtr with ETR fields set still
    gives an ETR that owns nothing."""
    cfg = NodeConfig("p", "pxtr", rlocs=[RlocConfig(ip("192.0.2.30"))],
                     eid_prefixes=[(0, net("10.1.0.0/24"))],
                     dynamic_eids=[DynamicEidConfig(0, net("10.9.0.0/24"), "eth1")],
                     map_servers=[MapServerConfig(ip("192.0.2.100"), "k")],
                     map_resolvers=[ip("192.0.2.100")])
    core = build_core(cfg)
    assert core.itr.pitr is True
    assert (core.etr.prefixes, core.etr.map_servers, core.etr.dynamic_ranges) == ([], [], [])


def test_build_msmr_wires_sites_and_registration_timeout():
    cfg = parse_config(MSMR.replace("[msmr]", "[msmr]\nregistration_timeout = 20"))
    core = build_core(cfg)
    assert isinstance(core, MapServerResolver) and core.name == "ms"
    assert core.ms.registration_timeout == 20.0
    [site] = core.ms.sites
    assert site.name == "dc1"
    assert site.keys == {0: "k0", 3: "k3"}
    assert site.prefixes == [(0, net("10.1.0.0/24")), (5, net("10.1.0.0/24"))]
    assert site.accept_more_specifics is True
    # The resolver half knows the site prefixes as the configured EID space.
    assert set(core.mr.space) == {(0, net("10.1.0.0/24")), (5, net("10.1.0.0/24"))}


def test_build_wires_the_hardening_keys():
    """Issue 9: replay protection, Map-Request rate limits, the Map-Reply floor and the
    Map-Server's dynamic-EID ranges go from the file into the core."""
    text = sub(MSMR, "[msmr]", "[msmr]\nmap_request_rate = 300\n"
                                "map_request_rate_per_source = 0\nreplay_window = 60")
    text = sub(text, 'name = "dc1"', 'name = "dc1"\nreplay_protection = "seen"')
    text += '[[site.dynamic_eid]]\nprefix = "10.1.0.128/25"\n'
    core = build_core(parse_config(text))
    [site] = core.ms.sites
    assert (site.replay_protection, site.dynamic_ranges) == ("seen",
                                                              [(0, net("10.1.0.128/25"))])
    assert core.ms.limiter.total.rate == 300.0 and core.ms.limiter.sources.rate == 0.0
    assert core.mr.limiter is core.ms.limiter and core.ms.nonces.window == 60.0
    default = build_core(parse_config(MSMR))
    assert default.ms.sites[0].replay_protection == "increasing"
    assert default.ms.sites[0].dynamic_ranges == []
    assert (default.ms.limiter.total.rate, default.ms.limiter.sources.rate) == (1000.0, 100.0)
    xtr = MINIMAL_XTR.replace('secret = "k"', 'secret = "k"\nreplay_protection = "off"')
    xtr += ("[itr]\nmap_request_rate = 5\nmap_request_interval = 2.5\n"
            "max_pending_requests = 7\nmin_mapping_prefix_ipv4 = 16\n"
            "min_mapping_prefix_ipv6 = 32\n")
    core = build_core(parse_config(xtr))
    assert core.etr.map_servers[0].replay_protection == "off"
    itr = core.itr
    assert (itr.rate.rate, itr.request_interval, itr.max_pending) == (5.0, 2.5, 7)
    assert itr.min_mapping_prefix == {4: 16, 6: 32}
    itr = build_core(parse_config(MINIMAL_XTR)).itr
    assert (itr.rate.rate, itr.request_interval, itr.max_pending) == (50.0, 1.0, 1000)
    assert itr.min_mapping_prefix == {4: 8, 6: 16}


def test_build_core_rejects_a_role_it_cannot_build():
    with pytest.raises(ConfigError, match="node.role: must be one of xtr, msmr, pxtr"):
        build_core(NodeConfig("n", "router"))


# --- defaults ---------------------------------------------------------------------------

MINIMAL_XTR = """
[node]
name = "xtr1"
role = "xtr"

[[rloc]]
address = "192.0.2.1"

[[eid_prefix]]
prefix = "10.1.0.0/24"

[[map_server]]
address = "192.0.2.100"
secret = "k"

[[map_resolver]]
address = "192.0.2.100"
"""

PXTR = """
[node]
name = "pxtr"
role = "pxtr"

[[rloc]]
address = "192.0.2.30"

[[eid_space]]
prefix = "10.0.0.0/8"

[[map_resolver]]
address = "192.0.2.100"
"""

MSMR = """
[node]
name = "ms"
role = "msmr"

[msmr]

[[site]]
name = "dc1"
accept_more_specifics = true

[[site.key]]
key_id = 0
secret = "k0"

[[site.key]]
key_id = 3
secret = "k3"
algorithm = "hmac-sha-1-96"

[[site.prefix]]
prefix = "10.1.0.0/24"

[[site.prefix]]
prefix = "10.1.0.0/24"
instance_id = 5
"""


def test_defaults_of_a_minimal_xtr():
    cfg = parse_config(MINIMAL_XTR)
    assert cfg == NodeConfig(
        "xtr1", "xtr", control_socket="/run/lisp-lab/xtr1.sock", event_log=None,
        rlocs=[RlocConfig(ip("192.0.2.1"), 1, 100)],
        eid_prefixes=[(0, net("10.1.0.0/24"))],
        map_servers=[MapServerConfig(ip("192.0.2.100"), "k", 0, ALG_HMAC_SHA256_128)],
        map_resolvers=[ip("192.0.2.100")], dataplane_path="kernel")
    assert (cfg.register_interval, cfg.record_ttl, cfg.want_map_notify, cfg.proxy_reply,
            cfg.miss_policy, cfg.petr, cfg.tun, cfg.lan_interfaces, cfg.mtu,
            cfg.smr_interval, cfg.decap_known_rlocs_only, cfg.proxy_arp,
            cfg.dataplane_path) == (
        3.0, 1440, True, False, "hold", None, "lisp0", [], 1500, 1.0, False, False, "kernel")


def test_defaults_of_a_minimal_msmr():
    cfg = parse_config(MSMR)
    # RFC 9301 section 8.2: registrations every minute, timed out after three minutes. A
    # lab with faster timers says so in its own file (topologies/model.py renders it).
    assert cfg.registration_timeout == 180.0
    assert build_core(cfg).ms.registration_timeout == 180.0
    assert cfg.control_socket == "/run/lisp-lab/ms.sock"


def test_lan_interfaces_default_to_the_dynamic_eid_interfaces():
    text = MINIMAL_XTR + """
[[dynamic_eid]]
prefix = "10.10.0.0/24"
interface = "eth1"

[[dynamic_eid]]
prefix = "10.20.0.0/24"
interface = "eth2"

[[dynamic_eid]]
prefix = "10.30.0.0/24"
interface = "eth1"
"""
    assert parse_config(text).lan_interfaces == ["eth1", "eth2"]


def test_gateways_and_proxy_arp():
    """A dual-stack range with its anycast gateway; a gateway whose subnet is wider or
    narrower than the range; a MAC without a gateway address; proxy ARP on a pxtr."""
    text = MINIMAL_XTR + """
[[dynamic_eid]]
prefix = "10.10.0.128/25"
interface = "eth1"
gateway = "10.10.0.1/24"
gateway_mac = "02:AA:bb:cc:dd:01"

[[dynamic_eid]]
prefix = "2001:db8:10::/48"
interface = "eth1"
gateway = "2001:db8:10::1/128"
gateway_mac = "02:aa:bb:cc:dd:01"

[[dynamic_eid]]
prefix = "10.20.0.0/24"
interface = "eth2"
gateway_mac = "02:00:00:00:00:02"

[[dynamic_eid]]
prefix = "10.20.0.0/24"
instance_id = 3
interface = "eth2"
gateway = "10.20.0.1/24"

[[dynamic_eid]]
prefix = "10.20.0.128/25"
instance_id = 3
interface = "eth2"
gateway = "10.20.0.1/24"
"""
    cfg = parse_config(text)
    gws = [(d.gateway, d.gateway_mac) for d in cfg.dynamic_eids]
    iface = ipaddress.ip_interface
    assert gws[:3] == [(iface("10.10.0.1/24"), "02:aa:bb:cc:dd:01"),
                       (iface("2001:db8:10::1/128"), "02:aa:bb:cc:dd:01"),
                       (None, "02:00:00:00:00:02")]
    assert cfg.proxy_arp is False
    assert parse_config(PXTR + '[dataplane]\nlan_interfaces = ["p1"]\nproxy_arp = true\n'
                        ).proxy_arp is True
    # the core sees the ranges only; gateways are the daemon's business
    assert build_core(cfg).etr.dynamic_ranges == [(0, net("10.10.0.128/25")),
                                                  (0, net("2001:db8:10::/48")),
                                                  (0, net("10.20.0.0/24")),
                                                  (3, net("10.20.0.0/24")),
                                                  (3, net("10.20.0.128/25"))]


def test_an_itr_only_xtr_needs_no_map_server():
    text = MINIMAL_XTR.replace('[[eid_prefix]]\nprefix = "10.1.0.0/24"\n', "").replace(
        '[[map_server]]\naddress = "192.0.2.100"\nsecret = "k"\n', "")
    cfg = parse_config(text)
    assert cfg.eid_prefixes == [] and cfg.map_servers == []
    assert build_core(cfg).tick(0.0) == []


def test_the_same_prefix_in_two_instances_is_two_prefixes():
    text = MINIMAL_XTR + '[[eid_prefix]]\nprefix = "10.1.0.0/24"\ninstance_id = 1\n'
    assert parse_config(text).eid_prefixes == [(0, net("10.1.0.0/24")),
                                               (1, net("10.1.0.0/24"))]


def test_ipv6_locators_and_eids():
    text = (MINIMAL_XTR.replace("192.0.2.1", "2001:db8::1")
            .replace("192.0.2.100", "2001:db8::100").replace("10.1.0.0/24", "2001:db8:1::/64"))
    cfg = parse_config(text)
    assert cfg.rlocs[0].address == ip("2001:db8::1")
    assert cfg.eid_prefixes == [(0, net("2001:db8:1::/64"))]


# --- bad configs: one clear line each ----------------------------------------------------

def sub(text, old, new):
    assert old in text, f"test bug: {old!r} is not in the base config"
    return text.replace(old, new, 1)


MS_BLOCK = '[[map_server]]\naddress = "192.0.2.100"\nsecret = "k"\n'
EID_BLOCK = '[[eid_prefix]]\nprefix = "10.1.0.0/24"\n'
RLOC_BLOCK = '[[rloc]]\naddress = "192.0.2.1"\n'
DYN = '[[dynamic_eid]]\nprefix = "10.9.0.0/24"\ninterface = "e1"\n'
DYN6 = '[[dynamic_eid]]\nprefix = "2001:db8:9::/64"\ninterface = "e1"\n'
TWO_SITES = MSMR + """
[[site]]
name = "dc2"

[[site.key]]
secret = "x"
algorithm = "sha1"

[[site.prefix]]
prefix = "10.2.0.0/24"
"""

BAD = [
    # addresses and prefixes
    (sub(MINIMAL_XTR, '"192.0.2.1"', '"10.0.0.300"'),
     'rloc[0].address: "10.0.0.300" is not an IP address'),
    (sub(MINIMAL_XTR, '"192.0.2.1"', '"192.0.2.0/24"'),
     'rloc[0].address: "192.0.2.0/24" is not an IP address'),
    (sub(MINIMAL_XTR, '"192.0.2.1"', '"0.0.0.0"'),
     "rloc[0].address: 0.0.0.0 is the unspecified address, not a usable locator"),
    (sub(MINIMAL_XTR, '"192.0.2.1"', '"224.0.0.5"'),
     "rloc[0].address: 224.0.0.5 is a multicast address, not a usable locator"),
    (sub(MINIMAL_XTR, '"192.0.2.1"', '"127.0.0.1"'),
     "rloc[0].address: 127.0.0.1 is a loopback address, not a usable locator"),
    (sub(MINIMAL_XTR, '"192.0.2.1"', '"fe80::1"'),
     "rloc[0].address: fe80::1 is a link-local address, not a usable locator"),
    (sub(MINIMAL_XTR, '"192.0.2.1"', '"2001:db8::1%eth0"'),
     'rloc[0].address: "2001:db8::1%eth0" has a scope (%...); use a global address'),
    (sub(MINIMAL_XTR, '"192.0.2.1"', "3221225985"),
     "rloc[0].address: must be a string, not an integer"),
    (sub(MINIMAL_XTR, '"10.1.0.0/24"', '"10.1.0.1/24"'),
     'eid_prefix[0].prefix: "10.1.0.1/24" has host bits set (the prefix is 10.1.0.0/24)'),
    (sub(MINIMAL_XTR, '"10.1.0.0/24"', '"10.1.0.0/33"'),
     'eid_prefix[0].prefix: "10.1.0.0/33" is not an IP prefix'),
    (sub(MINIMAL_XTR, '"10.1.0.0/24"', '"10.1.0.0"'),
     'eid_prefix[0].prefix: "10.1.0.0" has no prefix length (write e.g. "10.1.0.0/32")'),
    (sub(MINIMAL_XTR, '"10.1.0.0/24"', '"2001:db8::1/64"'),
     'eid_prefix[0].prefix: "2001:db8::1/64" has host bits set (the prefix is '
     '2001:db8::/64)'),
    (MINIMAL_XTR + EID_BLOCK, "eid_prefix[1].prefix: duplicate of eid_prefix[0].prefix"),
    (MINIMAL_XTR + '[[eid_prefix]]\nprefix = "10.1.0.0/24"\ninstance_id = 16777216\n',
     "eid_prefix[1].instance_id: 16777216 is out of range 0-16777215"),
    (MINIMAL_XTR + '[[eid_prefix]]\nprefix = "10.3.0.0/24"\ninstance_id = -1\n',
     "eid_prefix[1].instance_id: -1 is out of range 0-16777215"),
    (MINIMAL_XTR + RLOC_BLOCK, "rloc[1].address: duplicate of rloc[0].address"),
    (MINIMAL_XTR + '[[map_resolver]]\naddress = "192.0.2.100"\n',
     "map_resolver[1].address: duplicate of map_resolver[0].address"),
    (MINIMAL_XTR + MS_BLOCK, "map_server[1].address: duplicate of map_server[0].address"),
    (MINIMAL_XTR + '[[dynamic_eid]]\nprefix = "10.9.0.0/24"\ninterface = "e1"\n'
                   '[[dynamic_eid]]\nprefix = "10.9.0.0/24"\ninterface = "e2"\n',
     "dynamic_eid[1].prefix: duplicate of dynamic_eid[0].prefix"),
    # anycast gateway and proxy ARP
    (MINIMAL_XTR + DYN + 'gateway = "10.9.0.1"\n',
     'dynamic_eid[0].gateway: "10.9.0.1" has no prefix length (write the length of its '
     'subnet, e.g. "10.9.0.1/24")'),
    (MINIMAL_XTR + DYN6 + 'gateway = "2001:db8:9::1"\n',
     'dynamic_eid[0].gateway: "2001:db8:9::1" has no prefix length (write the length of '
     'its subnet, e.g. "2001:db8:9::1/64")'),
    (MINIMAL_XTR + DYN + 'gateway = "10.9.0.300/24"\n',
     'dynamic_eid[0].gateway: "10.9.0.300/24" is not an address with a prefix length '
     '(e.g. "10.10.0.1/24")'),
    (MINIMAL_XTR + DYN + 'gateway = "gw"\n',
     'dynamic_eid[0].gateway: "gw" is not an address with a prefix length '
     '(e.g. "10.10.0.1/24")'),
    (MINIMAL_XTR + DYN + 'gateway = "10.9.0.1/33"\n',
     'dynamic_eid[0].gateway: "10.9.0.1/33" is not an address with a prefix length '
     '(e.g. "10.10.0.1/24")'),
    (MINIMAL_XTR + DYN + "gateway = 167313665\n",
     "dynamic_eid[0].gateway: must be a string, not an integer"),
    (MINIMAL_XTR + DYN + 'gateway = "10.9.0.0/24"\n',
     "dynamic_eid[0].gateway: 10.9.0.0/24 is the network address of 10.9.0.0/24, not a "
     "host address"),
    (MINIMAL_XTR + DYN + 'gateway = "10.9.0.255/24"\n',
     "dynamic_eid[0].gateway: 10.9.0.255/24 is the broadcast address of 10.9.0.0/24, not a "
     "host address"),
    (MINIMAL_XTR + DYN + 'gateway = "0.0.0.0/0"\n',
     "dynamic_eid[0].gateway: 0.0.0.0 is the unspecified address, not a usable gateway"),
    (MINIMAL_XTR + DYN + 'gateway = "224.0.0.1/24"\n',
     "dynamic_eid[0].gateway: 224.0.0.1 is a multicast address, not a usable gateway"),
    (MINIMAL_XTR + DYN6 + 'gateway = "fe80::1/64"\n',
     "dynamic_eid[0].gateway: fe80::1 is a link-local address, not a usable gateway"),
    (MINIMAL_XTR + DYN + 'gateway = "2001:db8:9::1/64"\n',
     "dynamic_eid[0].gateway: 2001:db8:9::1/64 is IPv6, but dynamic_eid[0].prefix "
     "10.9.0.0/24 is IPv4"),
    (MINIMAL_XTR + DYN + 'gateway = "10.8.0.1/24"\n',
     "dynamic_eid[0].gateway: 10.8.0.1/24 is not on the range 10.9.0.0/24 (the hosts' "
     "gateway must be on their subnet)"),
    (MINIMAL_XTR + DYN + 'gateway = "10.9.0.1/24"\n' + DYN
     + 'instance_id = 1\ngateway = "10.9.0.1/16"\n',
     "dynamic_eid[1].gateway: 10.9.0.1/16 differs from dynamic_eid[0].gateway 10.9.0.1/24 "
     "(one address, one prefix length)"),
    (MINIMAL_XTR + DYN + 'gateway_mac = "00:00:5e:00:01"\n',
     'dynamic_eid[0].gateway_mac: "00:00:5e:00:01" is not a MAC address (six hex bytes '
     'with colons, e.g. "00:00:5e:00:01:01")'),
    (MINIMAL_XTR + DYN + 'gateway_mac = "00-00-5e-00-01-01"\n',
     'dynamic_eid[0].gateway_mac: "00-00-5e-00-01-01" is not a MAC address (six hex bytes '
     'with colons, e.g. "00:00:5e:00:01:01")'),
    (MINIMAL_XTR + DYN + 'gateway_mac = "01:00:5e:00:01:01"\n',
     "dynamic_eid[0].gateway_mac: 01:00:5e:00:01:01 is a multicast MAC address (the first "
     "byte is odd), not usable for a gateway"),
    (MINIMAL_XTR + DYN + 'gateway_mac = "00:00:00:00:00:00"\n',
     "dynamic_eid[0].gateway_mac: 00:00:00:00:00:00 is the all-zero MAC address, not "
     "usable for a gateway"),
    (MINIMAL_XTR + DYN + 'gateway_mac = "00:00:5e:00:01:01"\n' + DYN6
     + 'gateway_mac = "00:00:5e:00:01:02"\n',
     'dynamic_eid[1].gateway_mac: 00:00:5e:00:01:02 differs from dynamic_eid[0].gateway_mac '
     '00:00:5e:00:01:01 on the same interface "e1" (an interface has one MAC)'),
    (MINIMAL_XTR + DYN + "gatway = 1\n",
     "dynamic_eid[0].gatway: unknown key (did you mean gateway?)"),
    (MINIMAL_XTR + '[dataplane]\nproxy_arp = "yes"\n',
     "dataplane.proxy_arp: must be true or false, not a string"),
    (MINIMAL_XTR + "[dataplane]\nproxy_arp = true\n",
     "dataplane.proxy_arp: needs a LAN interface to answer on (dataplane.lan_interfaces, or "
     "the interface of a [[dynamic_eid]])"),
    # priorities, weights, keys
    (sub(MINIMAL_XTR, RLOC_BLOCK, RLOC_BLOCK + "priority = 256\n"),
     "rloc[0].priority: 256 is out of range 0-255"),
    (sub(MINIMAL_XTR, RLOC_BLOCK, RLOC_BLOCK + "weight = -1\n"),
     "rloc[0].weight: -1 is out of range 0-255"),
    (sub(MINIMAL_XTR, RLOC_BLOCK, RLOC_BLOCK + 'priority = "1"\n'),
     "rloc[0].priority: must be an integer, not a string"),
    (sub(MINIMAL_XTR, RLOC_BLOCK, RLOC_BLOCK + "weight = 50.0\n"),
     "rloc[0].weight: must be an integer, not a float"),
    (sub(MINIMAL_XTR, RLOC_BLOCK, RLOC_BLOCK + "priority = true\n"),
     "rloc[0].priority: must be an integer, not a boolean"),
    (sub(MINIMAL_XTR, 'secret = "k"', 'secret = ""'),
     "map_server[0].secret: must not be empty"),
    (sub(MINIMAL_XTR, 'secret = "k"\n', ""), "map_server[0].secret: missing (required)"),
    (sub(MINIMAL_XTR, 'secret = "k"', 'secret = "k"\nkey_id = 256'),
     "map_server[0].key_id: 256 is out of range 0-255"),
    (sub(MINIMAL_XTR, 'secret = "k"', 'secret = "k"\nalgorithm = "hmac-md5"'),
     "map_server[0].algorithm: must be one of hmac-sha-1-96, hmac-sha-256-128"),
    (sub(MINIMAL_XTR, 'secret = "k"', 'secret = "k"\nalgorithm = "none"'),
     "map_server[0].algorithm: must be one of hmac-sha-1-96, hmac-sha-256-128"),
    # required parts of each role
    (sub(MINIMAL_XTR, RLOC_BLOCK, ""), "rloc: role xtr needs at least one [[rloc]]"),
    (sub(MINIMAL_XTR, MS_BLOCK, ""),
     "map_server: an xtr with [[eid_prefix]] or [[dynamic_eid]] needs at least one "
     "[[map_server]] to register with"),
    (sub(sub(MINIMAL_XTR, MS_BLOCK, ""), EID_BLOCK,
         '[[dynamic_eid]]\nprefix = "10.9.0.0/24"\ninterface = "e1"\n'),
     "map_server: an xtr with [[eid_prefix]] or [[dynamic_eid]] needs at least one "
     "[[map_server]] to register with"),
    (sub(MINIMAL_XTR, '[[map_resolver]]\naddress = "192.0.2.100"\n', ""),
     "map_resolver: role xtr needs at least one [[map_resolver]]"),
    (sub(PXTR, '[[map_resolver]]\naddress = "192.0.2.100"\n', ""),
     "map_resolver: role pxtr needs at least one [[map_resolver]]"),
    (sub(PXTR, '[[rloc]]\naddress = "192.0.2.30"\n', ""),
     "rloc: role pxtr needs at least one [[rloc]]"),
    (MINIMAL_XTR + '[itr]\nmiss_policy = "petr"\n',
     'itr.petr: missing: itr.miss_policy "petr" needs the address of a proxy ETR'),
    (MINIMAL_XTR + '[itr]\nmiss_policy = "forward"\n',
     "itr.miss_policy: must be one of hold, drop, petr"),
    (MINIMAL_XTR + '[itr]\npetr = "2001:db8::200"\n',
     "itr.petr: 2001:db8::200 is IPv6, but no [[rloc]] is IPv6"),
    (sub(MINIMAL_XTR, 'address = "192.0.2.100"\nsecret', 'address = "2001:db8::64"\nsecret'),
     "map_server[0].address: 2001:db8::64 is IPv6, but no [[rloc]] is IPv6"),
    (PXTR + '[[map_resolver]]\naddress = "2001:db8::64"\n',
     "map_resolver[1].address: 2001:db8::64 is IPv6, but no [[rloc]] is IPv6"),
    # [node]
    ('[nod]\nname = "x"\nrole = "xtr"\n', "nod: unknown section (did you mean node?)"),
    ("", "node: missing (required): every config starts with a [node] table holding name "
         "and role"),
    ('[node]\nrole = "xtr"\n', "node.name: missing (required)"),
    ('[node]\nname = "x"\n', "node.role: missing (required)"),
    ('[node]\nname = "x"\nrole = "router"\n', "node.role: must be one of xtr, msmr, pxtr"),
    ('[node]\nname = "x y"\nrole = "xtr"\n',
     'node.name: "x y" is not a valid name (up to 64 letters, digits, "-", "_" or ".", '
     'starting with a letter or digit)'),
    ('[node]\nname = "a\\nb"\nrole = "xtr"\n',
     'node.name: "a\\nb" is not a valid name (up to 64 letters, digits, "-", "_" or ".", '
     'starting with a letter or digit)'),
    ('[node]\nname = ""\nrole = "xtr"\n', "node.name: must not be empty"),
    ('[node]\nname = "x"\nrole = "xtr"\n"my key" = 1\n',
     'node."my key": unknown key (expected one of: name, role, control_socket, event_log)'),
    ('[node]\nname = "x"\nrole = "xtr"\ncontrol_socket = "/' + "s" * 107 + '"\n',
     "node.control_socket: is longer than 107 bytes, the limit of a Unix socket path"),
    ('[node]\nname = "x"\nrole = "xtr"\nevent_log = ""\n', "node.event_log: must not be empty"),
    ('node = "x"\n', "node: must be a table, written [node], not a string"),
    # unknown keys and misplaced sections
    (sub(MINIMAL_XTR, 'address = "192.0.2.1"', 'adress = "192.0.2.1"'),
     "rloc[0].adress: unknown key (did you mean address?)"),
    (MINIMAL_XTR + "[etr]\nregister_intervall = 5\n",
     "etr.register_intervall: unknown key (did you mean register_interval?)"),
    (MINIMAL_XTR + "[etr]\ncolour = 1\n",
     "etr.colour: unknown key (expected one of: register_interval, record_ttl, away_ttl, "
     "host_timeout, want_map_notify, proxy_reply, smr_interval, decap_known_rlocs_only, "
     "site_notify_group, site_notify_interface)"),
    (MINIMAL_XTR + '[etr]\nsite_notify_group = "10.1.1.1"\n',
     "etr.site_notify_group: 10.1.1.1 is not a multicast group (224.0.0.0/4)"),
    (MINIMAL_XTR + "[etrr]\n", "etrr: unknown section (did you mean etr?)"),
    (MINIMAL_XTR + '[[eid_space]]\nprefix = "10.0.0.0/8"\n',
     "eid_space: not used by role xtr (its sections are: node, rloc, site_rloc, eid_prefix, "
     "dynamic_eid, map_server, map_resolver, etr, itr, dataplane, tenant)"),
    (MSMR + RLOC_BLOCK, "rloc: not used by role msmr (its sections are: node, msmr, site)"),
    (PXTR + EID_BLOCK,
     "eid_prefix: not used by role pxtr (its sections are: node, rloc, eid_space, "
     "map_resolver, itr, dataplane)"),
    (PXTR + "[etr]\nregister_interval = 1\n",
     "etr: not used by role pxtr (its sections are: node, rloc, eid_space, map_resolver, "
     "itr, dataplane)"),
    ('rloc = "192.0.2.1"\n' + sub(MINIMAL_XTR, RLOC_BLOCK, ""),
     "rloc: must be an array of tables, written [[rloc]], not a string"),
    ('rloc = ["192.0.2.1"]\n' + sub(MINIMAL_XTR, RLOC_BLOCK, ""),
     "rloc[0]: must be a table, written [[rloc]], not a string"),
    (sub(MINIMAL_XTR, RLOC_BLOCK, 'rloc = "192.0.2.1"\n'),
     "node.rloc: unknown key (rloc is a section of its own, written [[rloc]])"),
    (MINIMAL_XTR + "itr = {}\n",
     "map_resolver[0].itr: unknown key (itr is a section of its own, written [itr])"),
    (MINIMAL_XTR + "[[etr]]\n", "etr: must be a table, written [etr], not an array"),
    # [etr]
    (MINIMAL_XTR + "[etr]\nregister_interval = 0\n",
     "etr.register_interval: must be > 0 seconds, not 0"),
    (MINIMAL_XTR + "[etr]\nsmr_interval = -0.5\n",
     "etr.smr_interval: must be > 0 seconds, not -0.5"),
    (MINIMAL_XTR + "[etr]\nregister_interval = inf\n",
     "etr.register_interval: must be a finite number of seconds, not inf"),
    (MINIMAL_XTR + "[etr]\nregister_interval = nan\n",
     "etr.register_interval: must be a finite number of seconds, not nan"),
    (MINIMAL_XTR + '[etr]\nregister_interval = "3s"\n',
     "etr.register_interval: must be a number of seconds, not a string"),
    (MINIMAL_XTR + "[etr]\nregister_interval = 1979-05-27\n",
     "etr.register_interval: must be a number of seconds, not a date/time"),
    (MINIMAL_XTR + "[etr]\nrecord_ttl = 0\n", "etr.record_ttl: 0 is out of range 1-4294967295"),
    (MINIMAL_XTR + '[etr]\nwant_map_notify = "yes"\n',
     "etr.want_map_notify: must be true or false, not a string"),
    (MINIMAL_XTR + "[etr]\ndecap_known_rlocs_only = 1\n",
     "etr.decap_known_rlocs_only: must be true or false, not an integer"),
    # [dataplane]
    (MINIMAL_XTR + "[dataplane]\nmtu = 100\n", "dataplane.mtu: 100 is out of range 576-65535"),
    (sub(MINIMAL_XTR, '"10.1.0.0/24"', '"2001:db8:1::/64"') + "[dataplane]\nmtu = 1300\n",
     "dataplane.mtu: 1300 is too small for IPv6 EIDs (at least 1336: 1280 inside, 56 of "
     "encapsulation)"),
    (MINIMAL_XTR + '[dataplane]\ntun = "a-very-long-tun-name"\n',
     'dataplane.tun: "a-very-long-tun-name" is not a valid interface name (1-15 characters, '
     'no "/", ":" or spaces)'),
    (MINIMAL_XTR + '[dataplane]\nlan_interfaces = "eth1"\n',
     "dataplane.lan_interfaces: must be an array of strings, not a string"),
    (MINIMAL_XTR + '[dataplane]\nlan_interfaces = ["eth1", "eth/2"]\n',
     'dataplane.lan_interfaces[1]: "eth/2" is not a valid interface name (1-15 characters, '
     'no "/", ":" or spaces)'),
    (MINIMAL_XTR + '[dataplane]\nlan_interfaces = ["eth1", "eth1"]\n',
     "dataplane.lan_interfaces[1]: duplicate of dataplane.lan_interfaces[0]"),
    (MINIMAL_XTR + '[dataplane]\nlan_interfaces = ["lisp0"]\n',
     'dataplane.tun: "lisp0" is also a LAN interface'),
    (MINIMAL_XTR + '[[dynamic_eid]]\nprefix = "10.9.0.0/24"\ninterface = "eth9"\n'
                   '[dataplane]\nlan_interfaces = ["eth1"]\n',
     'dynamic_eid[0].interface: "eth9" is not in dataplane.lan_interfaces'),
    (MINIMAL_XTR + '[[dynamic_eid]]\nprefix = "10.9.0.0/24"\n',
     "dynamic_eid[0].interface: missing (required)"),
    # msmr and sites
    (TWO_SITES, "site[1].key[0].algorithm: must be one of hmac-sha-1-96, hmac-sha-256-128"),
    (sub(MSMR, "key_id = 3", "key_id = 300"), "site[0].key[1].key_id: 300 is out of range 0-255"),
    (sub(MSMR, "key_id = 3", "key_id = 0"), 'site[0].key[1].key_id: 0 is used twice in site "dc1"'),
    (sub(MSMR, 'secret = "k3"', 'secret = ""'), "site[0].key[1].secret: must not be empty"),
    (sub(MSMR, 'secret = "k3"', 'key = "k3"'),
     "site[0].key[1].key: unknown key (did you mean secret?)"),
    (sub(MSMR, 'secret = "k3"', 'secret = "k3"\ncolour = 1'),
     "site[0].key[1].colour: unknown key (expected one of: key_id, secret, algorithm)"),
    (MINIMAL_XTR + '[[eid_prefix]]\nprefix = "10.9.0.0/24"\niid = 3\n',
     "eid_prefix[1].iid: unknown key (did you mean instance_id?)"),
    (sub(MSMR, "[[site.key]]\nkey_id = 0", "[site.key]\nkey_id = 0").replace(
        '[[site.key]]\nkey_id = 3\nsecret = "k3"\nalgorithm = "hmac-sha-1-96"\n', ""),
     "site[0].key: must be an array of tables, written [[site.key]], not a table"),
    (sub(MSMR, "[[site.prefix]]\nprefix = \"10.1.0.0/24\"\n", "[[site.prefix]]\n"),
     "site[0].prefix[0].prefix: missing (required)"),
    (sub(MSMR, 'instance_id = 5', 'instance_id = 0'),
     "site[0].prefix[1].prefix: duplicate of site[0].prefix[0].prefix"),
    (MSMR + '[[site]]\nname = "dc9"\n[[site.key]]\nsecret = "z"\n'
            '[[site.prefix]]\nprefix = "10.1.0.0/24"\n',
     "site[1].prefix[0].prefix: duplicate of site[0].prefix[0].prefix"),
    (MSMR + '[[site]]\nname = "dc1"\n[[site.key]]\nsecret = "z"\n'
            '[[site.prefix]]\nprefix = "10.9.0.0/24"\n',
     "site[1].name: duplicate of site[0].name"),
    (MSMR + '[[site]]\nname = "dc9"\n[[site.prefix]]\nprefix = "10.9.0.0/24"\n',
     "site[1].key: a site needs at least one [[site.key]]"),
    (MSMR + '[[site]]\nname = "dc9"\n[[site.key]]\nsecret = "z"\n',
     "site[1].prefix: a site needs at least one [[site.prefix]]"),
    (MSMR + '[[site]]\n[[site.key]]\nsecret = "z"\n', "site[1].name: missing (required)"),
    (MSMR + '[[site]]\nname = "dc9"\nmore_specifics = true\n',
     "site[1].more_specifics: unknown key (did you mean accept_more_specifics?)"),
    ('[node]\nname = "ms"\nrole = "msmr"\n', "site: role msmr needs at least one [[site]]"),
    (sub(MSMR, "[msmr]", "[msmr]\nregistration_timeout = 0"),
     "msmr.registration_timeout: must be > 0 seconds, not 0"),
    # hardening (issue 9): replay protection, rate limits, dynamic-EID ranges
    (sub(MSMR, 'name = "dc1"', 'name = "dc1"\nreplay_protection = "strict"'),
     "site[0].replay_protection: must be one of increasing, seen, off"),
    (MINIMAL_XTR.replace('secret = "k"', 'secret = "k"\nreplay_protection = 1'),
     "map_server[0].replay_protection: must be one of increasing, seen, off"),
    (sub(MSMR, "[msmr]", "[msmr]\nmap_request_rate = -1"),
     "msmr.map_request_rate: must be a finite number >= 0 (0: no limit), not -1"),
    (sub(MSMR, "[msmr]", '[msmr]\nmap_request_rate_per_source = "fast"'),
     "msmr.map_request_rate_per_source: must be a number of messages a second, not a "
     "string"),
    (sub(MSMR, "[msmr]", "[msmr]\nreplay_window = 0"),
     "msmr.replay_window: must be > 0 seconds, not 0"),
    (MINIMAL_XTR + "[itr]\nmax_pending_requests = 0\n",
     "itr.max_pending_requests: 0 is out of range 1-1000000"),
    (MINIMAL_XTR + "[itr]\nmin_mapping_prefix_ipv4 = 33\n",
     "itr.min_mapping_prefix_ipv4: 33 is out of range 0-32"),
    (MINIMAL_XTR + "[itr]\nmap_request_interval = 0\n",
     "itr.map_request_interval: must be > 0 seconds, not 0"),
    (MSMR + '[[site.dynamic_eid]]\nprefix = "10.2.0.0/25"\n',
     'site[0].dynamic_eid[0].prefix: [0]10.2.0.0/25 is not inside a [[site.prefix]] of '
     'site "dc1"'),
    (MSMR + '[[site.dynamic_eid]]\nprefix = "10.1.0.0/25"\n'
            '[[site.dynamic_eid]]\nprefix = "10.1.0.0/25"\n',
     "site[0].dynamic_eid[1].prefix: [0]10.1.0.0/25 is listed twice"),
    (sub(MSMR, "accept_more_specifics = true", "accept_more_specifics = false")
     + '[[site.dynamic_eid]]\nprefix = "10.1.0.0/25"\n',
     "site[0].dynamic_eid: needs accept_more_specifics = true (hosts in the ranges register "
     "more-specific prefixes)"),
    (MSMR + '[[site.dynamic_eid]]\nrange = "10.1.0.0/25"\n',
     "site[0].dynamic_eid[0].range: unknown key (expected one of: prefix, instance_id)"),
]


@pytest.mark.parametrize("text, expected", BAD, ids=[e.split(":")[0] + f"-{i}"
                                                     for i, (_, e) in enumerate(BAD)])
def test_bad_config_gives_one_clear_line(text, expected):
    with pytest.raises(ConfigError) as info:
        parse_config(text, "t.toml")
    message = str(info.value)
    assert message == f"config t.toml: {expected}"
    assert len(message.splitlines()) == 1
    assert info.value.source == "t.toml"
    assert f"{info.value.path}: {info.value.reason}" == expected


def test_the_base_configs_of_the_bad_table_are_good():
    for text in (MINIMAL_XTR, PXTR, MSMR, FULL_XTR):
        parse_config(text)


def test_a_toml_syntax_error_names_the_line_and_column():
    text = MINIMAL_XTR.replace('name = "xtr1"', "name = xtr1")
    with pytest.raises(ConfigError) as info:
        parse_config(text, "x.toml")
    assert str(info.value) == ("config x.toml: TOML syntax error: Invalid value "
                               "(at line 3, column 8)")


def test_a_duplicate_toml_key_is_a_syntax_error():
    with pytest.raises(ConfigError, match=r"^config t\.toml: TOML syntax error: Cannot overwrite"):
        parse_config(MINIMAL_XTR.replace('role = "xtr"', 'role = "xtr"\nrole = "pxtr"'),
                     "t.toml")


def test_load_config_names_the_file(tmp_path):
    bad = tmp_path / "xtr1.toml"
    bad.write_text(sub(MINIMAL_XTR, '"192.0.2.1"', '"10.0.0.300"'))
    with pytest.raises(ConfigError) as info:
        load_config(bad)
    assert str(info.value) == f'config {bad}: rloc[0].address: "10.0.0.300" is not an IP address'
    good = tmp_path / "good.toml"
    good.write_text(MINIMAL_XTR)
    assert load_config(str(good)).name == "xtr1"


def test_missing_file_unreadable_file_and_binary_file(tmp_path):
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as info:
        load_config(missing)
    assert str(info.value) == f"config {missing}: cannot read: No such file or directory"
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path)
    assert str(info.value) == f"config {tmp_path}: cannot read: Is a directory"
    binary = tmp_path / "bin.toml"
    binary.write_bytes(b"[node]\nname = \"\xff\"\n")
    with pytest.raises(ConfigError) as info:
        load_config(binary)
    assert str(info.value) == f"config {binary}: not UTF-8 text (bad byte at offset 15)"


def test_a_utf8_byte_order_mark_is_accepted(tmp_path):
    path = tmp_path / "bom.toml"
    path.write_bytes(b"\xef\xbb\xbf" + MINIMAL_XTR.encode())
    assert load_config(path).name == "xtr1"


# --- never a traceback ----------------------------------------------------------------

_VALUES = ['""', '"x"', '"10.0.0.300"', '"192.0.2.7"', '"2001:db8::7"', '"10.0.0.0/8"',
           '"10.0.0.1/8"', '"eth1"', '"hmac-sha-1-96"', '"petr"', "0", "1", "-1", "255", "256",
           "16777216", "1.5", "-0.0", "inf", "nan", "true", "false", "[]", '["a", 1]',
           "{}", '{ address = "192.0.2.9" }', "1979-05-27", "07:32:00", '"\\u2028"']
_ASSIGNMENT = re.compile(r"^(\s*[A-Za-z_\"][^=\n]*= )(.*)$", re.M)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(["xtr", "msmr", "pxtr"]), st.data())
def test_any_mutation_of_an_example_loads_cleanly_or_raises_config_error(role, data):
    """Replace some values of an example, or delete lines, or cut it short: the result is a
    NodeConfig that builds, or a one-line ConfigError, never another exception."""
    text = (EXAMPLES / f"{role}.toml").read_text()
    matches = list(_ASSIGNMENT.finditer(text))
    chosen = data.draw(st.sets(st.integers(0, len(matches) - 1), min_size=1, max_size=3))
    parts, last = [], 0
    for i, m in enumerate(matches):
        if i in chosen:
            parts.append(text[last:m.start(2)])
            if data.draw(st.booleans()):
                parts.append(data.draw(st.sampled_from(_VALUES)))
            else:       # drop the whole line
                parts[-1] = text[last:m.start(1)]
            last = m.end(2)
    text = "".join(parts) + text[last:]
    if data.draw(st.booleans()):
        text = text[:data.draw(st.integers(0, len(text)))]
    try:
        cfg = parse_config(text, "m.toml")
    except ConfigError as e:
        assert str(e).startswith("config m.toml: ")
        assert len(str(e).splitlines()) == 1
        return
    build_core(cfg, random.Random(1))


# --- the documentation ------------------------------------------------------------------

def test_docs_describe_every_section_and_key():
    from nodes.config import ALL_SECTIONS, KEYS
    docs = (EXAMPLES.parents[1] / "docs" / "config.md").read_text()
    assert set(KEYS) == set(ALL_SECTIONS) | {"site.key", "site.prefix", "site.dynamic_eid"}
    for section, keys in KEYS.items():
        heading = re.search(rf"^#+ `\[\[?{re.escape(section)}\]\]?`.*?$(.*?)(?=^#+ |\Z)",
                            docs, re.M | re.S)
        assert heading, f"docs/config.md has no heading for [{section}]"
        for key in keys:
            assert re.search(rf"^\| `{key}`\s*\|", heading.group(1), re.M), (
                f"docs/config.md does not describe {section}.{key}")


def test_docs_examples_are_valid_configs():
    docs = (EXAMPLES.parents[1] / "docs" / "config.md").read_text()
    blocks = re.findall(r"```toml\n(.*?)```", docs, re.S)
    # Whole configs start with [node]; the one fragment (a site) is checked by
    # test_the_documented_site_for_rfc6833_key_ids_accepts_open_overlay_routers_registers.
    assert sum(not b.startswith("[node]") for b in blocks) == 1
    blocks = [b for b in blocks if b.startswith("[node]")]
    assert len(blocks) == 3
    assert [parse_config(b, "docs").role for b in blocks] == ["xtr", "msmr", "pxtr"]


def test_an_rfc_interval_peer_stays_registered_with_the_default_timeout():
    """A peer registering every 60 s (RFC 9301 section 8.2) is still registered just
    before its next refresh, and dropped three minutes after its last one."""
    ms = build_core(parse_config(MSMR)).ms
    raw = _register_bytes("10.1.0.0/24", "k0", nonce=1)
    ms.receive(raw, ip("192.0.2.1"), 0.0)
    ms.tick(59.0)
    assert ms.lookup(0, ip("10.1.0.1"), 59.0) is not None
    ms.tick(179.0)
    assert ms.lookup(0, ip("10.1.0.1"), 179.0) is not None
    ms.tick(180.0)
    assert ms.lookup(0, ip("10.1.0.1"), 180.0) is None


def _register_bytes(prefix, key, nonce):
    eid, mask = make_eid(prefix)
    rec = EidRecord(eid, mask, [Locator(ip("192.0.2.1"), local=True)])
    return encode(sign(MapRegister(nonce, [rec], 0, ALG_HMAC_SHA256_128), key))


def _doc_block(heading):
    """The first ```toml block after `heading` in docs/config.md."""
    text = (Path(__file__).resolve().parents[2] / "docs" / "config.md").read_text()
    after = text[text.index(heading):]
    start = after.index("```toml\n") + len("```toml\n")
    return after[start:after.index("```", start)]


def test_the_documented_site_for_rfc6833_key_ids_accepts_open_overlay_routers_registers(
        data_dir):
    """Open Overlay Router 1.3 (tests/data) sends the 16-bit Key ID 0x0001 of RFC 6833; the
    site block docs/config.md gives for such xTRs accepts every one of its Map-Registers
    (RFC 9301 reads 00 01 as Key ID 0, Algorithm ID 1) and answers each with a Map-Notify."""
    block = _doc_block("#### A site for xTRs that send RFC 6833's 16-bit Key ID")
    cfg = parse_config('[node]\nname = "ms"\nrole = "msmr"\n\n' + block)
    ms = build_core(cfg).ms
    registers = [bytes(p[UDP].payload)
                 for name in ("oor-xtr-oor-ms.pcap", "oor-xtr-registers.pcap")
                 for p in rdpcap(str(data_dir / name))
                 if ICMP not in p and bytes(p[UDP].payload)[0] >> 4 == MAP_REGISTER]
    assert len(registers) == 8 and all(r[12:14] == b"\x00\x01" for r in registers)
    for i, raw in enumerate(registers):
        out = ms.receive(raw, ip("10.0.0.2"), float(i))
        assert [type(a.message) for a in out if isinstance(a, SendControl)] == [MapNotify]
    assert ms.counters["registrations_accepted"] == 8
    assert ms.counters["map_register_rejected"] == 0
    assert ms.lookup(0, ip("192.168.10.7"), 8.0) is not None
    assert ms.lookup(0, ip("2001:db8:10::7"), 8.0) is not None
    # Key ID 1 is not what those bytes name:
    other = parse_config('[node]\nname = "ms"\nrole = "msmr"\n\n'
                         + block.replace("key_id = 0", "key_id = 1"))
    ms1 = build_core(other).ms
    assert not [a for a in ms1.receive(registers[0], ip("10.0.0.2"), 0.0)
                if isinstance(a, SendControl)]
    assert ms1.counters["register_auth_failed"] == 1

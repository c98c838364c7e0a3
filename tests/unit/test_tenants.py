"""Several instance IDs in one xTR's data plane (issue 11): [[tenant]] in the node config,
the lab model's second site behind the same xTR, and the data plane that hands each
decapsulated packet to its instance's TUN and encapsulates with its instance ID. Without
root: the data planes run on socket pairs (tests/unit/test_dataplane_hardening.py)."""
import ipaddress
from pathlib import Path

import pytest

from nodes.config import ConfigError, parse_config
from nodes.dataplane import DataPlane
from nodes.lisp.data import header_words
from test_config import MINIMAL_XTR
from test_dataplane_hardening import Core, inner, plane, wait  # noqa: F401 (fixture)
from topologies.model import load

LABS = Path(__file__).resolve().parents[2] / "topologies" / "labs"

# test_config's minimal xTR (10.1.0.0/24 in instance 0), a prefix in instance 2, a LAN
XTR = MINIMAL_XTR + """
[[eid_prefix]]
prefix = "10.11.0.0/24"
instance_id = 2

[dataplane]
lan_interfaces = ["lan0"]
"""


def test_a_tenant_has_its_instance_id_lans_and_tun():
    cfg = parse_config(XTR + '\n[[tenant]]\ninstance_id = 2\nlan_interfaces = ["lan2"]\n',
                       "t.toml")
    [t] = cfg.tenants
    assert (t.iid, t.lan_interfaces, t.tun) == (2, ["lan2"], "lisp2")
    assert parse_config(XTR, "t.toml").tenants == []


@pytest.mark.parametrize("tenant, words", [
    ('instance_id = 0\nlan_interfaces = ["lan2"]',
     "tenant[0].instance_id: 0 is the data plane's own instance ID"),
    ('instance_id = 2\nlan_interfaces = ["lan0"]',
     'tenant[0].lan_interfaces[0]: "lan0" is used already'),
    ('instance_id = 2\nlan_interfaces = ["lan2"]\ntun = "lisp0"', 'tenant[0].tun: "lisp0"'),
    ('instance_id = 2\nlan_interfaces = []', "tenant[0].lan_interfaces: give the tenant's"),
    ('lan_interfaces = ["lan2"]', "tenant[0].instance_id"),
])
def test_a_bad_tenant_is_one_line(tenant, words):
    with pytest.raises(ConfigError) as e:
        parse_config(XTR + "\n[[tenant]]\n" + tenant + "\n", "t.toml")
    assert words in str(e.value) and "\n" not in str(e.value), str(e.value)


def test_two_tenants_may_not_share_an_instance_id():
    two = '\n[[tenant]]\ninstance_id = 2\nlan_interfaces = ["lan%d"]\n'
    with pytest.raises(ConfigError) as e:
        parse_config(XTR + two % 2 + two % 3, "t.toml")
    assert "tenant[1].instance_id: 2 has a [[tenant]] already" in str(e.value)


def test_the_lab_makes_a_second_site_behind_an_xtr_a_tenant():
    """tenants.yaml: westblue (instance 2) behind xtrw beside west (instance 0): one
    config, the two sites' prefixes with their instance IDs, and a [[tenant]] on the
    second site's LAN that the daemon accepts; the Map-Server keeps four sites."""
    m = load(LABS / "tenants.yaml")
    configs = m.daemon_configs("/w", "/s")
    cfg = configs["xtrw"][1]
    assert cfg["eid_prefix"] == [{"prefix": "10.1.0.0/24", "instance_id": 0},
                                 {"prefix": "10.11.0.0/24", "instance_id": 2}]
    assert cfg["dataplane"]["lan_interfaces"] == ["xtrw-west"]
    assert cfg["tenant"] == [{"instance_id": 2, "lan_interfaces": ["xtrw-westblue"]}]
    from topologies.render import toml
    parsed = parse_config(toml(cfg), "xtrw.toml")
    assert [(t.iid, t.lan_interfaces) for t in parsed.tenants] == [(2, ["xtrw-westblue"])]
    # one registration site per xTR: it registers both instances in one Map-Register
    sites = {s["name"]: s["prefix"] for s in configs["msmr"][1]["site"]}
    assert sites["east"] == [{"prefix": "10.2.0.0/24", "instance_id": 0},
                             {"prefix": "10.12.0.0/24", "instance_id": 2}]
    assert set(sites) == {"west", "east"}


RLOC = ipaddress.ip_address("192.0.2.2")


def lisp(iid, pkt):
    flags, word2 = header_words(iid, None)
    return (flags | 1).to_bytes(4, "big") + word2.to_bytes(4, "big") + pkt


def test_a_packet_of_another_instance_goes_to_its_tenants_tun(plane):
    """The first data plane receives for all: instance 7's packets to its own TUN,
    instance 2's to the tenant's, an instance nobody serves dropped and counted."""
    first = plane(iid=7)
    tenant = plane(iid=2)
    first.dp.tenants = {2: tenant.dp}
    first.dp.start()
    first.send(lisp(2, inner(n=22)))
    assert tenant.from_tun() == inner(n=22)
    first.send(lisp(7, inner(n=77)))
    assert first.from_tun() == inner(n=77)
    first.send(lisp(9, inner()))
    assert wait(lambda: first.dp.counters["drop_wrong_instance_id"] == 1)
    assert tenant.dp.counters["packets_decapsulated"] == 1


def test_a_tenant_encapsulates_with_its_instance_id(plane):
    tenant = plane(core=Core(), iid=2)
    tenant.dp.start()
    tenant.to_tun(inner())
    assert wait(lambda: tenant.raw.sent)
    header = tenant.raw.sent[0][28:36]                  # after the outer IPv4 and UDP
    assert header[0] & 0x08                              # I: an instance ID follows
    assert int.from_bytes(header[4:7], "big") == 2
    assert tenant.raw.sent[0][36:] == inner()
    assert isinstance(tenant.dp, DataPlane)

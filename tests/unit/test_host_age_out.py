"""(issue 12) A detected host that goes quiet ages out: after `host_timeout` seconds without
a frame from it the ETR asks the LAN (an ARP probe / neighbour solicitation); a host that
answers stays; one that does not is removed and de-registered with a TTL-0 Map-Register
(RFC 9301 section 5.4), so the Map-Server stops sending its traffic here. Hosts used to stay
registered for ever."""
import ipaddress

from nodes.lisp.actions import ProbeHost, RouteDel
from nodes.lisp.messages import MapRegister, decode
from tests.unit.test_config import MINIMAL_XTR
from tests.unit.test_vm_move import VM, XTR1, build

net = ipaddress.ip_network


def registers(actions):
    return [decode(a.wire()) for a in actions if type(a).__name__ == "SendControl"
            and isinstance(decode(a.wire()), MapRegister)]


def test_a_quiet_host_is_probed_then_aged_out_and_deregistered():
    sim, msmr, x1, x2, client = build()
    etr = x1.etr
    etr.host_timeout = 30.0
    sim.tick(0.0)
    sim.now = 1.0
    sim.deliver(XTR1, x1.host_seen(0, VM, 1.0))
    assert msmr.ms.lookup(0, VM, 1.0) is not None
    assert not [a for a in x1.tick(20.0) if isinstance(a, ProbeHost)]       # not quiet yet
    probe = [a for a in x1.tick(31.5) if isinstance(a, ProbeHost)]
    assert probe == [ProbeHost(0, VM)]
    assert not [a for a in x1.tick(32.0) if isinstance(a, ProbeHost)]       # probed once
    # It answers: it stays, and is probed again only after another quiet spell.
    assert x1.host_seen(0, VM, 32.5) == []
    assert not [a for a in x1.tick(40.0) if isinstance(a, (ProbeHost, RouteDel))]
    assert [a for a in x1.tick(63.0) if isinstance(a, ProbeHost)] == [ProbeHost(0, VM)]
    # No answer this time: gone, its route removed, de-registered.
    sim.now = 67.0
    out = x1.tick(67.0)
    assert RouteDel(0, net("10.1.0.5/32"), "local") in out
    [reg] = [r for r in registers(out) if r.records and r.records[0].mask_len == 32]
    assert reg.records[0].ttl == 0
    assert (0, VM) not in etr.dynamic and etr.counters["dynamic_eid_aged_out"] == 1
    sim.deliver(XTR1, out)
    assert msmr.ms.lookup(0, VM, 67.5) is None or not msmr.ms.lookup(0, VM, 67.5).locators


def test_a_host_the_lan_says_is_gone_is_deregistered_too():
    sim, msmr, x1, x2, client = build()
    sim.tick(0.0)
    sim.deliver(XTR1, x1.host_seen(0, VM, 1.0))
    out = x1.etr.host_gone(0, VM, 2.0)
    [reg] = registers(out)
    assert reg.records[0].ttl == 0 and reg.records[0].mask_len == 32


def test_the_timeout_is_configurable_and_0_means_never():
    from nodes.config import build_core, parse_config
    base = MINIMAL_XTR
    assert parse_config(base).host_timeout == 600.0
    assert parse_config(base + "[etr]\nhost_timeout = 45\n").host_timeout == 45.0
    cfg = parse_config(base + "[etr]\nhost_timeout = 0\n")
    assert cfg.host_timeout is None and build_core(cfg).etr.host_timeout is None

"""(issue 12) The old xTR's away entry for a host that moved lives as long as the mapping
the ITRs may still hold (the TTL it registered the host with), not a fixed 5 minutes: an
ITR silent for longer than that came back to a dropped packet and no SMR, for a day."""
import ipaddress

from nodes.config import parse_config
from nodes.lisp.actions import Decision
from tests.unit.test_config import MINIMAL_XTR
from tests.unit.test_vm_move import CLIENT, VM, XTR2, moved

net = ipaddress.ip_network


def test_the_away_entry_lasts_the_registered_ttl():
    sim, msmr, x1, x2, client = moved()
    entry = x1.etr.away.get(0, net("10.1.0.5/32"))
    assert entry is not None
    assert entry.expires - 3.0 == x1.etr.record_ttl * 60.0 == 1440 * 60.0
    # An ITR that still uses the old mapping after 6 minutes is re-encapsulated and
    # solicited, not dropped.
    decision, actions = x1.decapsulated(0, VM, CLIENT, 3.0 + 360.0)
    assert decision == Decision("encap", XTR2)
    assert any(type(a).__name__ == "SendControl" for a in actions)


def test_the_away_lifetime_can_be_set():
    text = MINIMAL_XTR + "[etr]\nrecord_ttl = 10\n"
    assert parse_config(text).away_ttl is None                       # = record_ttl
    assert parse_config(text + "away_ttl = 30\n").away_ttl == 30.0

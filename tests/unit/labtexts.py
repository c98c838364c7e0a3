"""Lab-file texts and helpers shared by the unit tests of the lab model."""
import pytest

from topologies.model import LabFileError, load

# One router, two sites' gateways and a Map-Server on it: the links of the small test labs.
CORE = """\
routers: [r1]
links:
  a-up: {ends: [xa, r1], subnet: 172.16.1.0/30}
  b-up: {ends: [xb, r1], subnet: 172.16.2.0/30}
  ms-link: {ends: [ms, r1], subnet: 172.16.9.0/30}
"""

# Two client sites and a scenario (tests count its lines: keep them where they are).
TINY = "lab: tiny\n" + CORE + """\
sites:
  sa: {kind: client, gateway: xa, lan: 10.1.0.1/24, eid_prefixes: [10.1.0.0/24]}
  sb: {kind: client, gateway: xb, lan: 10.2.0.1/24, eid_prefixes: [10.2.0.0/24]}
mapping_system: {map_servers: [ms], key: k}
hosts:
  ha: {site: sa, address: 10.1.0.10/24}
  hb: {site: sb, address: 10.2.0.10/24}
timeline:
  - {at: 0, traffic: probes, from: ha, to: hb}
  - {at: 1, check: reachable, from: ha, to: hb}
"""


def write(tmp_path, text, name="lab.yaml"):
    p = tmp_path / name
    p.write_text(text)
    return p


def error_of(tmp_path, text):
    """The LabFileError a lab text gets; its text is always one line."""
    with pytest.raises(LabFileError) as e:
        load(write(tmp_path, text))
    assert "\n" not in str(e.value)
    return e.value

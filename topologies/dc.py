"""The demo's network in Mininet's own CLI, nodes and links only:

    sudo mn --custom topologies/dc.py --topo lispdc --switch lxbr --controller none

The network is the lab file topologies/labs/two-dc.yaml (two data centers, a DCI, a
three-router core, a client site, MS/MR, a proxy xTR); `lisp-lab run` or `lisp-lab cli`
configure it (addresses, routes, daemons), `mn` alone builds its links. `--topo
lispdc,delays=0` builds plain links (without sch_netem, tc refuses delayed links).
"""
import sys
from pathlib import Path

# `mn --custom` executes this file without __file__ and without the project on sys.path.
_here = Path(sys._getframe().f_code.co_filename).resolve().parent
if str(_here.parent) not in sys.path:
    sys.path.insert(0, str(_here.parent))

from topologies.model import load  # noqa: E402
from topologies.topo import LabTopo  # noqa: E402

LAB_FILE = _here / "labs" / "two-dc.yaml"


class DataCenterTopo(LabTopo):
    """The links of two-dc.yaml (with its DCI)."""

    def build(self, delays=True):
        super().build(lab=load(LAB_FILE), delays=bool(int(delays)))


TOPOS = {"lispdc": DataCenterTopo}

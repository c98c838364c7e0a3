"""(issue 12) The Solicit-Map-Request's layout, as the implementations we meet expect it:
the Source-EID is the EID whose mapping changed (the one the ITR must ask for again) and the
EID record is the ITR's own EID, the inner source of the packet that triggered the SMR.
Open Overlay Router refuses an SMR whose record is not one of its own EIDs ("EID not
locally configured") and never asks again; ours used to put the moved EID in both. On
receipt both layouts work: the ITR asks again for whichever of the Source-EID and the
records it has a map-cache entry for."""
import ipaddress

from nodes.lisp.messages import Locator, MapRequest, RequestRecord, decode
from tests.unit.test_vm_move import CLIENT, VM, XTR1, moved

ip = ipaddress.ip_address
CLIENT_HOST = ip("10.9.0.7")


def smr_of(actions):
    msgs = [decode(a.wire()) for a in actions if type(a).__name__ == "SendControl"]
    return next(m for m in msgs if isinstance(m, MapRequest) and m.smr)


def test_the_smr_names_the_moved_eid_as_source_and_the_itrs_eid_as_record():
    sim, _, x1, x2, client = moved(CLIENT_HOST)
    _, actions = x1.decapsulated(0, VM, CLIENT, 3.5, src=CLIENT_HOST)
    smr = smr_of(actions)
    assert smr.source_eid == VM
    assert [(r.eid, r.mask_len) for r in smr.records] == [(CLIENT_HOST, 32)]
    # Without the inner source (an old caller), the record is the moved EID, as before.
    _, actions = x1.decapsulated(0, VM, ip("192.0.2.77"), 3.6)
    assert [r.eid for r in smr_of(actions).records] == [VM]


def test_the_itr_asks_again_on_either_layout():
    for source, record in ((VM, CLIENT_HOST), (VM, VM), (None, VM)):
        sim, _, x1, x2, client = moved(CLIENT_HOST)
        smr = MapRequest(12345, [RequestRecord(record, 32)], [XTR1], source_eid=source,
                         smr=True)
        out = client.itr.receive_smr(smr, XTR1, 3.5)
        requests = [decode(a.wire()).message for a in out
                    if type(a).__name__ == "SendControl"]
        assert [(r.records[0].eid, r.smr_invoked) for r in requests] == [(VM, True)], \
            (source, record)

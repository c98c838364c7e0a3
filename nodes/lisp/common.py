"""Helpers the state machines share: decoding received datagrams, nonces, counters."""
import random
from collections import Counter

from .actions import Event
from .address import eid_prefix
from .errors import LispDecodeError
from .messages import EncapsulatedControl, MapRequest, decode


class Core:
    """Base of every state machine: counters, a random source for nonces, and a safe
    decoder. `rng` is injectable so tests are deterministic."""

    def __init__(self, name, rng=None):
        self.name = name
        self.rng = rng or random.SystemRandom()
        self.counters = Counter()

    def nonce(self):
        """A random non-zero 64-bit nonce."""
        return self.rng.getrandbits(64) or 1

    def decode(self, raw, src, out):
        """Decode a datagram; on bad bytes count it, log it, and return None."""
        try:
            return decode(raw)
        except LispDecodeError as e:
            self.counters["malformed"] += 1
            out.append(Event("malformed", {"from": str(src), "error": str(e)}))
            return None


def unwrap_request(msg):
    """(Map-Request, ECM or None) when msg is a Map-Request, plain or encapsulated."""
    if isinstance(msg, EncapsulatedControl) and isinstance(msg.message, MapRequest):
        return msg.message, msg
    if isinstance(msg, MapRequest):
        return msg, None
    return None, None


def reply_rloc(request, prefer_family=None, source=None):
    """The ITR-RLOC a Map-Reply goes to (RFC 9301 5.3: the ETR selects one of them): the
    request's own source address when it is one of them (a multihomed ITR sends from the
    RLOC of the link it leaves through, so the answer comes back over a working path: its
    first RLOC's link may be the one that is down); else the first of the preferred family,
    else the first IPv4/IPv6 one."""
    ips = [a for a in request.itr_rlocs if getattr(a, "version", None) in (4, 6)]
    if source is not None and source in ips:
        return source
    if prefer_family is not None:
        for a in ips:
            if a.version == prefer_family:
                return a
    return ips[0] if ips else None


def requested_prefix(request, counters):
    """(iid, prefix) that a Map-Request asks about (its first record, as RFC 9301 has a
    sender put exactly one), or None, counted as map_request_empty or map_request_bad_eid."""
    if not request.records:
        counters["map_request_empty"] += 1
        return None
    rec = request.records[0]
    try:
        return eid_prefix(rec.eid, rec.mask_len)
    except ValueError:
        counters["map_request_bad_eid"] += 1
        return None

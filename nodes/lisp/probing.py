"""RLOC-probing: the ITR's check that the locators it encapsulates to still answer.

RFC 9300 ("RLOC-Probing Algorithm"; RFC 6830 section 6.3.2) and RFC 9301 section 5.3 (the P
bit): on a jittered timer the ITR sends each locator of its map-cache a Map-Request with the
probe bit, straight to the locator (not encapsulated, not through the mapping system), for
the EID-prefix of a map-cache entry that lists it, with Source-EID AFI 0. The ETR answers with
a Map-Reply with the probe bit and the same nonce. The time between the two is the locator's
round-trip time. A locator that leaves `retries` probes in a row unanswered (each given
`timeout` seconds) is marked down in the map-cache, so that the per-flow locator choice
skips it and its flows move to the next usable locators (the next priority when none of the
best is left); the first answer marks it up again. A down locator is still probed, once an
interval, to see it come back.

State is kept per locator address (one RLOC serves many EID-prefixes): the probe's nonce
and send time, the misses, the last RTT and whether it is up. Pure: time comes in as `now`,
nonces from the caller, and `next_deadline()` says when the next probe or timeout is due.
"""
from dataclasses import dataclass

from .actions import Event, SendControl
from .address import eid_address
from .messages import MapRequest, RequestRecord


@dataclass
class LocatorProbe:
    """What we know of one locator from probing it."""
    address: object
    next_time: float               # when the next probe goes
    nonce: int = 0                 # of the outstanding probe (0: none)
    sent: float = 0.0              # when it went
    misses: int = 0                # probes in a row without an answer
    rtt: float = None              # seconds, from the last answered probe
    up: bool = True


class RlocProber:
    def __init__(self, interval, timeout=1.0, retries=3, rng=None):
        if interval <= 0:
            raise ValueError("RLOC-probing needs an interval > 0")
        self.interval = interval
        self.timeout = min(timeout, interval)
        self.retries = max(1, retries)
        self.rng = rng
        self.locators = {}         # address -> LocatorProbe
        self.by_nonce = {}         # nonce -> address

    def _jittered(self, now):
        # RFC 9300: probes go on a jittered timer, so that ITRs do not probe in step.
        jitter = self.rng.uniform(-0.1, 0.1) if self.rng is not None else 0.0
        return now + self.interval * (1.0 + jitter)

    def owns(self, nonce):
        return nonce in self.by_nonce

    def state(self, address):
        """The LocatorProbe of `address` (its RTT, up or down), or None."""
        return self.locators.get(address)

    def next_deadline(self):
        times = [p.sent + self.timeout if p.nonce else p.next_time
                 for p in self.locators.values()]
        return min(times) if times else None

    def tick(self, now, cache, itr_rlocs, new_nonce, counters):
        """Probes due and timeouts: (actions). `cache` is the ITR's MapCache."""
        out = []
        targets = {}                # locator address -> an entry that lists it
        for entry in cache:
            if entry.is_negative or entry.is_expired(now):
                continue
            for loc in entry.locators:
                if getattr(loc.address, "version", None) in (4, 6) and loc.priority != 255:
                    targets.setdefault(loc.address, entry)
        for address in list(self.locators):
            if address not in targets:              # no entry lists it any more
                self.by_nonce.pop(self.locators.pop(address).nonce, None)
        for address, entry in targets.items():
            p = self.locators.get(address)
            if p is None:
                p = self.locators[address] = LocatorProbe(address, now)
            if p.nonce and now - p.sent >= self.timeout:
                out += self._missed(p, now, cache, counters)
            if not p.nonce and now >= p.next_time:
                out += self._send(p, entry, now, itr_rlocs, new_nonce(), counters)
        return out

    def _send(self, p, entry, now, itr_rlocs, nonce, counters):
        rlocs = [r for r in itr_rlocs if r.version == p.address.version] or list(itr_rlocs)
        if not rlocs:
            return []
        p.nonce, p.sent = nonce, now
        self.by_nonce[nonce] = p.address
        req = MapRequest(nonce, [RequestRecord(eid_address(entry.iid,
                                                           entry.prefix.network_address),
                                               entry.prefix.prefixlen)],
                         rlocs, source_eid=None, probe=True)
        counters["rloc_probe_sent"] += 1
        return [SendControl(p.address, req)]

    def _missed(self, p, now, cache, counters):
        self.by_nonce.pop(p.nonce, None)
        p.nonce = 0
        p.misses += 1
        counters["rloc_probe_timeout"] += 1
        out = []
        if p.up and p.misses >= self.retries:
            p.up = False
            cache.set_locator_reachable(p.address, False)
            counters["rloc_down"] += 1
            out.append(Event("rloc_down", {"rloc": str(p.address), "misses": p.misses}))
        # Retry at once while it may still be up; a down locator once an interval.
        p.next_time = now if p.up else self._jittered(now)
        return out

    def receive_reply(self, reply, src, now, cache, counters):
        """A Map-Reply whose nonce is one of our probes'."""
        address = self.by_nonce.pop(reply.nonce)
        p = self.locators[address]
        p.nonce = 0
        p.rtt = now - p.sent
        p.misses = 0
        p.next_time = self._jittered(now)
        counters["rloc_probe_reply_received"] += 1
        if not reply.probe:
            counters["rloc_probe_reply_without_p_bit"] += 1
        out = []
        if not p.up:
            p.up = True
            cache.set_locator_reachable(address, True)
            counters["rloc_up"] += 1
            out.append(Event("rloc_up", {"rloc": str(address), "rtt_ms": round(p.rtt * 1e3, 3)}))
        return out

    def apply(self, entry):
        """A new or refreshed map-cache entry: the locators we know to be down stay down."""
        for loc in entry.locators:
            p = self.locators.get(loc.address)
            if p is not None and not p.up:
                entry.set_reachable(loc.address, False)

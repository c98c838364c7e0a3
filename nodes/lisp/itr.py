"""The ITR state machine (RFC 9300 section 6, RFC 9301 sections 6 and 8).

For each packet from the site the daemon asks `route()`: a map-cache hit gives the RLOC to
encapsulate to (chosen per flow by priority, then weight); a miss sends an Encapsulated
Map-Request to the Map-Resolver, retransmitted with exponential backoff, and the packet is
dropped or sent to the proxy ETR. A Map-Reply is accepted only when its nonce matches an
outstanding request. A Solicit-Map-Request (an ETR telling us our mapping is stale) makes us
ask again with the SMR-invoked bit set. Entries that are about to expire are refreshed.
"""
from dataclasses import dataclass

from .actions import Decision, Event, RouteAdd, RouteDel, SendControl
from .address import IPv4Address, IPv6Address, InstanceId, eid_prefix
from .common import Core
from .ipudp import IpUdp
from .mapcache import MapCache
from .messages import (ACT_DROP, ACT_DROP_AUTH_FAILURE, ACT_DROP_POLICY_DENIED,
                       ACT_NATIVELY_FORWARD, ACT_SEND_MAP_REQUEST, EncapsulatedControl,
                       MapRequest, RequestRecord)

_UNSPECIFIED = {4: IPv4Address("0.0.0.0"), 6: IPv6Address("::")}


@dataclass
class Pending:
    iid: int
    eid: object
    nonce: int
    attempts: int
    next_time: float
    smr_invoked: bool


class Itr(Core):
    def __init__(self, rlocs, map_resolvers, name="itr", petr=None, miss_policy="drop",
                 request_timeout=1.0, max_attempts=4, cache_size=100_000,
                 refresh_before=0.1, pitr=False, rng=None):
        super().__init__(name, rng)
        if miss_policy not in ("drop", "petr"):
            raise ValueError("miss_policy is 'drop' or 'petr'")
        if miss_policy == "petr" and petr is None:
            raise ValueError("miss_policy 'petr' needs a petr address")
        self.rlocs = list(rlocs)
        self.map_resolvers = list(map_resolvers)
        self.petr = petr
        self.miss_policy = miss_policy
        self.request_timeout = request_timeout
        self.max_attempts = max_attempts
        self.refresh_before = refresh_before
        self.pitr = pitr
        self.cache = MapCache(max_entries=cache_size)
        self.pending = {}        # (iid, eid) -> Pending
        self.by_nonce = {}       # nonce -> (iid, eid)

    # --- data packets ----------------------------------------------------------------

    def route(self, iid, dst, now, flow=b""):
        """(Decision, actions) for one packet from the site to EID `dst`."""
        if dst.is_multicast or dst.is_link_local or dst.is_unspecified or dst.is_loopback:
            # Never ask the mapping system about these (IPv6 neighbour discovery and MLD
            # reach the tunnel through the LAN's default route).
            self.counters["drop_not_unicast_eid"] += 1
            return Decision("drop", reason="not a unicast EID"), []
        entry = self.cache.lookup(iid, dst, now)
        if entry is not None:
            if entry.is_negative:
                return self._negative(entry, iid, dst, now)
            loc = entry.select_locator(flow)
            if loc is None:
                self.counters["drop_no_usable_rloc"] += 1
                return Decision("drop", reason="no usable RLOC"), []
            return Decision("encap", loc.address), []
        self.counters["map_cache_miss"] += 1
        actions = self.request(iid, dst, now)
        if self.miss_policy == "petr":
            return Decision("encap", self.petr), actions
        self.counters["drop_map_cache_miss"] += 1
        return Decision("drop", reason="map-cache miss"), actions

    def _negative(self, entry, iid, dst, now):
        act = entry.action
        if act == ACT_NATIVELY_FORWARD:
            if self.petr is not None:
                return Decision("encap", self.petr), []
            return Decision("native"), []
        if act == ACT_SEND_MAP_REQUEST:
            return Decision("drop", reason="send-map-request"), self.request(iid, dst, now)
        reason = {ACT_DROP: "negative entry: drop",
                  ACT_DROP_POLICY_DENIED: "negative entry: policy-denied",
                  ACT_DROP_AUTH_FAILURE: "negative entry: auth-failure"}.get(
                      act, "negative entry: no action")
        self.counters["drop_negative_entry"] += 1
        return Decision("drop", reason=reason), []

    # --- Map-Requests ----------------------------------------------------------------

    def request(self, iid, eid, now, smr_invoked=False):
        """Send a Map-Request for `eid` unless one is outstanding already."""
        key = (iid, eid)
        if key in self.pending:
            return []
        p = Pending(iid, eid, self.nonce(), 1, now + self.request_timeout, smr_invoked)
        self.pending[key] = p
        self.by_nonce[p.nonce] = key
        return self._send_request(p)

    def _send_request(self, p):
        if not self.map_resolvers:
            self.counters["no_map_resolver"] += 1
            return [Event("no_map_resolver", {"eid": str(p.eid)})]
        mr = self.map_resolvers[(p.attempts - 1) % len(self.map_resolvers)]
        eid_addr = InstanceId(p.iid, p.eid) if p.iid else p.eid
        req = MapRequest(p.nonce, [RequestRecord(eid_addr, p.eid.max_prefixlen)],
                         itr_rlocs=self.rlocs, source_eid=None, smr_invoked=p.smr_invoked,
                         pitr=self.pitr)
        inner_src = next((r for r in self.rlocs if r.version == p.eid.version),
                         _UNSPECIFIED[p.eid.version])
        ecm = EncapsulatedControl(req, IpUdp(inner_src, p.eid))
        self.counters["map_request_sent"] += 1
        if p.smr_invoked:
            self.counters["smr_invoked_request_sent"] += 1
        return [SendControl(mr, ecm),
                Event("map_request_sent", {"eid": f"[{p.iid}]{p.eid}", "nonce": p.nonce,
                                           "attempt": p.attempts, "to": str(mr),
                                           "smr_invoked": p.smr_invoked})]

    def receive_reply(self, reply, src, now):
        key = self.by_nonce.pop(reply.nonce, None)
        if key is None:
            self.counters["map_reply_nonce_mismatch"] += 1
            return [Event("map_reply_ignored", {"from": str(src), "nonce": reply.nonce,
                                                "reason": "no outstanding request"})]
        self.pending.pop(key, None)
        self.counters["map_reply_received"] += 1
        out = []
        for rec in reply.records:
            try:
                iid, prefix = eid_prefix(rec.eid, rec.mask_len)
            except ValueError:
                self.counters["map_reply_bad_eid"] += 1
                continue
            if rec.ttl == 0:
                if self.cache.remove(iid, prefix):
                    out.append(RouteDel(iid, prefix, "lisp"))
                continue
            existed = self.cache.get(iid, prefix) is not None
            self.cache.insert(iid, prefix, rec.locators, rec.ttl * 60.0, now, rec.action,
                              rec.map_version)
            if not existed:
                out.append(RouteAdd(iid, prefix, "lisp"))
            out.append(Event("map_cache_installed", {
                "eid": f"[{iid}]{prefix}", "rlocs": [str(x.address) for x in rec.locators],
                "ttl_min": rec.ttl, "action": rec.action, "from": str(src)}))
        return out

    def receive_smr(self, smr, src, now):
        """An ETR says the mapping we use for an EID changed: ask the mapping system again
        (rate-limited by the one-outstanding-request rule)."""
        self.counters["smr_received"] += 1
        out = []
        for rec in smr.records:
            try:
                iid, prefix = eid_prefix(rec.eid, rec.mask_len)
            except ValueError:
                continue
            eid = prefix.network_address
            if self.cache.lookup(iid, eid, now) is None:
                self.counters["smr_ignored_no_entry"] += 1
                continue
            out.append(Event("smr_received", {"eid": f"[{iid}]{eid}", "from": str(src)}))
            out += self.request(iid, eid, now, smr_invoked=True)
        return out

    # --- timers ----------------------------------------------------------------------

    def tick(self, now):
        out = []
        for key, p in list(self.pending.items()):
            if p.next_time > now:
                continue
            if p.attempts >= self.max_attempts:
                del self.pending[key]
                self.by_nonce.pop(p.nonce, None)
                self.counters["map_request_timeout"] += 1
                out.append(Event("map_request_timeout", {"eid": f"[{p.iid}]{p.eid}"}))
                continue
            p.attempts += 1
            p.next_time = now + self.request_timeout * (2 ** (p.attempts - 1))
            self.counters["map_request_retransmitted"] += 1
            out += self._send_request(p)
        for entry in self.cache.expire(now):
            out.append(RouteDel(entry.iid, entry.prefix, "lisp"))
            out.append(Event("map_cache_expired", {"eid": f"[{entry.iid}]{entry.prefix}"}))
        for entry in list(self.cache):
            lifetime = entry.expires - entry.created
            if entry.expires - now <= lifetime * self.refresh_before and not entry.is_negative:
                out += self.request(entry.iid, entry.prefix.network_address, now)
        return out

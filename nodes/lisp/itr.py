"""The ITR state machine (RFC 9300 section 6, RFC 9301 sections 6 and 8).

For each packet from the site the daemon asks `route()`: a map-cache hit gives the RLOC to
encapsulate to (chosen per flow by priority, then weight); a miss sends an Encapsulated
Map-Request to the Map-Resolver, retransmitted with exponential backoff, and the packet is
dropped or sent to the proxy ETR. A Map-Reply is accepted only when its nonce matches an
outstanding request, and of its records only those that answer the question are installed
(see `receive_reply`). A Solicit-Map-Request (an ETR telling us our mapping is stale) makes
us ask again with the SMR-invoked bit set. Entries that are about to expire are refreshed.

Limits (RFC 9301 section 5.3: an ITR rate-limits its Map-Requests): at most one Map-Request
per destination EID per `request_interval` and `map_request_rate` a second in all (a token
bucket); a request over a limit waits in the pending table (bounded by `max_pending`) and
goes when the limit allows, so a burst of new destinations is spread out, not lost.
"""
from dataclasses import dataclass, replace

from .actions import Decision, Event, RouteAdd, RouteDel, SendControl
from .address import AfiList, IPv4Address, IPv6Address, InstanceId, eid_prefix
from .common import Core
from .ipudp import IpUdp
from .mapcache import MapCache
from .ratelimit import TokenBucket
from .messages import (ACT_DROP, ACT_DROP_AUTH_FAILURE, ACT_DROP_POLICY_DENIED,
                       ACT_NATIVELY_FORWARD, ACT_SEND_MAP_REQUEST, REQUEST_RECORD_N_BIT,
                       EncapsulatedControl, MapRequest, RequestRecord)

_UNSPECIFIED = {4: IPv4Address("0.0.0.0"), 6: IPv6Address("::")}
# The shortest EID-prefix a Map-Reply with locators may install, per family: a site's
# prefix is never /0-/7 in IPv4 (/0-/15 in IPv6), and a positive /0 would take every
# destination. Negative replies may be as broad as the hole they describe.
MIN_MAPPING_PREFIX = {4: 8, 6: 16}


@dataclass
class Pending:
    iid: int
    eid: object
    nonce: int
    attempts: int          # Map-Requests sent so far (0: waiting for the rate limit)
    next_time: float       # when to send (attempts 0) or retransmit / give up
    smr_invoked: bool
    source: object = None  # the Source-EID (the missed packet's source), or None: AFI 0


class Itr(Core):
    def __init__(self, rlocs, map_resolvers, name="itr", petr=None, miss_policy="drop",
                 request_timeout=1.0, max_attempts=4, cache_size=100_000,
                 refresh_before=0.1, pitr=False, max_pending=1000, map_request_rate=50.0,
                 request_interval=1.0, min_mapping_prefix=None, rng=None, subscribe=None,
                 rloc_probing=None):
        super().__init__(name, rng)
        # PubSub (RFC 9437): (xTR-ID, Site-ID) to subscribe with, or None. Our Map-Requests
        # then carry the I bit with them and the N bit on the record; the Map-Server's
        # Map-Notifies for what we asked about replace our map-cache entries at once.
        self.subscribe = subscribe
        self.subscribed = set()  # (iid, EID) asked about with the N bit
        self.last_published = {}  # (Map-Server, iid, prefix) -> the last publication's nonce
        # RLOC-probing (probing.py): an RlocProber, or None (off)
        self.prober = rloc_probing
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
        self.max_pending = max_pending
        self.rate = TokenBucket(map_request_rate)
        self.request_interval = request_interval
        self.last_request = {}   # (iid, eid) -> when its last Map-Request went
        self.min_mapping_prefix = {**MIN_MAPPING_PREFIX, **(min_mapping_prefix or {})}

    # --- data packets ----------------------------------------------------------------

    def route(self, iid, dst, now, flow=b"", src=None):
        """(Decision, actions) for one packet from the site to EID `dst` (from `src`, the
        Source-EID of a Map-Request it makes us send)."""
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
        actions = self.request(iid, dst, now, source=src)
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

    def request(self, iid, eid, now, smr_invoked=False, source=None):
        """Send a Map-Request for `eid` unless one is outstanding already; over a rate limit
        it waits in the pending table (sent by `tick`). `source`: the EID whose packet
        missed (the Source-EID, RFC 9301 section 5.3); None (AFI 0) for a refresh."""
        key = (iid, eid)
        if key in self.pending:
            return []
        if len(self.pending) >= self.max_pending:
            self.counters["map_request_pending_full"] += 1
            return []
        p = Pending(iid, eid, self.nonce(), 0, now, smr_invoked, source)
        self.pending[key] = p
        self.by_nonce[p.nonce] = key
        return self._try_send(p, now)

    def _try_send(self, p, now):
        """Send (or retransmit) `p` if the per-destination and global limits allow, else
        leave it pending until they do."""
        key = (p.iid, p.eid)
        last = self.last_request.get(key)
        if last is not None and now - last < self.request_interval:
            p.next_time = last + self.request_interval
        elif not self.rate.take(now):
            p.next_time = self.rate.next_token(now)
        else:
            if p.attempts:
                self.counters["map_request_retransmitted"] += 1
            p.attempts += 1
            p.next_time = now + self.request_timeout * (2 ** (p.attempts - 1))
            self.last_request[key] = now
            return self._send_request(p)
        self.counters["map_request_deferred"] += 1
        return []

    def _send_request(self, p):
        if not self.map_resolvers:
            self.counters["no_map_resolver"] += 1
            return [Event("no_map_resolver", {"eid": str(p.eid)})]
        mr = self.map_resolvers[(p.attempts - 1) % len(self.map_resolvers)]
        eid_addr = InstanceId(p.iid, p.eid) if p.iid else p.eid
        sub = self.subscribe
        req = MapRequest(p.nonce, [RequestRecord(eid_addr, p.eid.max_prefixlen,
                                                 REQUEST_RECORD_N_BIT if sub else 0)],
                         itr_rlocs=self.rlocs, source_eid=self._source_eid(p),
                         smr_invoked=p.smr_invoked,
                         pitr=self.pitr, xtr_id=sub[0] if sub else None,
                         site_id=sub[1] if sub else 0)
        if sub:
            self.subscribed.add((p.iid, p.eid))
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

    @staticmethod
    def _source_eid(p):
        if p.source is None or p.source.version != p.eid.version:
            return None
        return InstanceId(p.iid, p.source) if p.iid else p.source

    def receive_reply(self, reply, src, now):
        if self.prober is not None and self.prober.owns(reply.nonce):
            return self.prober.receive_reply(reply, src, now, self.cache, self.counters)
        key = self.by_nonce.pop(reply.nonce, None)
        if key is None:
            self.counters["map_reply_nonce_mismatch"] += 1
            return [Event("map_reply_ignored", {"from": str(src), "nonce": reply.nonce,
                                                "reason": "no outstanding request"})]
        self.pending.pop(key, None)
        self.counters["map_reply_received"] += 1
        out = []
        for iid, prefix, rec in self._answering_records(reply, key, src, out):
            if rec.ttl == 0:
                if self.cache.remove(iid, prefix):
                    out.append(RouteDel(iid, prefix, "lisp"))
                continue
            existed = self.cache.get(iid, prefix) is not None
            entry = self.cache.insert(iid, prefix, self._locators(rec.locators),
                                      rec.ttl * 60.0, now, rec.action, rec.map_version)
            if self.prober is not None:
                self.prober.apply(entry)
            if not existed:
                out.append(RouteAdd(iid, prefix, "lisp"))
            out.append(Event("map_cache_installed", {
                "eid": f"[{iid}]{prefix}",
                "rlocs": [str(x.address) for x in self.cache.get(iid, prefix).locators],
                "ttl_min": rec.ttl, "action": rec.action, "from": str(src)}))
        return out

    def is_publication(self, notify):
        """Whether a Map-Notify is for us as a subscriber (RFC 9437): it names our xTR-ID
        and one of its records covers an EID we subscribed to."""
        if self.subscribe is None or notify.xtr_id != self.subscribe[0]:
            return False
        return bool(self._subscribed_records(notify))

    def _subscribed_records(self, notify):
        out = []
        for rec in notify.records:
            try:
                iid, prefix = eid_prefix(rec.eid, rec.mask_len)
            except ValueError:
                continue
            if any(s_iid == iid and eid.version == prefix.version and eid in prefix
                   for s_iid, eid in self.subscribed):
                out.append((iid, prefix, rec))
        return out

    def receive_publication(self, notify, src, now):
        """A Map-Notify (already authenticated by the caller) telling us, a subscriber, the
        current mapping of what we asked about: it replaces the map-cache entries (a record
        without locators, or with TTL 0, removes them). A nonce not newer than the last
        publication of that mapping from this Map-Server (each subscription counts its own
        nonces up from the request's) is a retransmission: acknowledged, not applied."""
        out = []
        for iid, prefix, rec in self._subscribed_records(notify):
            key = (src, iid, prefix)
            last = self.last_published.get(key)
            if last is not None and notify.nonce <= last:
                self.counters["map_notify_publication_repeated"] += 1
                continue
            if len(self.last_published) >= self.max_pending and key not in self.last_published:
                self.last_published.clear()
            self.last_published[key] = notify.nonce
            self.counters["map_notify_published"] += 1
            if rec.ttl == 0 or not rec.locators:
                if self.cache.remove(iid, prefix):
                    out.append(RouteDel(iid, prefix, "lisp"))
                out.append(Event("map_cache_published", {"eid": f"[{iid}]{prefix}",
                                                         "rlocs": [], "from": str(src)}))
                continue
            existed = self.cache.get(iid, prefix) is not None
            self.cache.insert(iid, prefix, self._locators(rec.locators), rec.ttl * 60.0, now,
                              rec.action, rec.map_version)
            if not existed:
                out.append(RouteAdd(iid, prefix, "lisp"))
            out.append(Event("map_cache_published", {
                "eid": f"[{iid}]{prefix}", "rlocs": [str(x.address) for x in rec.locators],
                "ttl_min": rec.ttl, "from": str(src)}))
        return out

    def _locators(self, locators):
        """The locators of a record as the map-cache keeps them: IPv4/IPv6 addresses. An
        AFI-List (RFC 8060 section 4.1: one RLOC's addresses of several families, as
        lispers.net sends them) is used through its first address of a family we have an
        RLOC of (else its first address); any other LCAF, or a list without an address,
        is skipped and counted (map_reply_locator_skipped)."""
        families = {r.version for r in self.rlocs}
        out = []
        for loc in locators:
            addr = loc.address
            if isinstance(addr, AfiList):
                ips = [a for a in addr.addresses if getattr(a, "version", None) in (4, 6)]
                ips.sort(key=lambda a: a.version not in families)
                if ips:
                    loc = replace(loc, address=ips[0])
                    self.counters["map_reply_afi_list_locator"] += 1
            if getattr(loc.address, "version", None) in (4, 6):
                out.append(loc)
            else:
                self.counters["map_reply_locator_skipped"] += 1
        return out

    def _answering_records(self, reply, key, src, out):
        """The records of `reply` that answer the request for EID `key` (iid, address):

        - a record whose EID-prefix contains the requested EID (RFC 9301 section 5.4: the
          reply carries the EID-prefix the requested EID belongs to), and, for a record
          with locators, no shorter than `min_mapping_prefix` (without LISP-SEC, RFC 9303,
          an ITR cannot check how broad a site's prefix really is; this floor keeps one
          reply from taking every destination);
        - a record more specific than such a covering record, inside it (RFC 9301 section
          5.5: an ETR with overlapping prefixes returns the more-specifics too, so that the
          covering prefix is not used for them).
        The others (another site's prefix, a default route) are dropped and counted."""
        iid, eid = key
        parsed = []
        for rec in reply.records:
            try:
                r_iid, prefix = eid_prefix(rec.eid, rec.mask_len)
            except ValueError:
                self.counters["map_reply_bad_eid"] += 1
                continue
            parsed.append((r_iid, prefix, rec))
        covering = []
        for r_iid, prefix, rec in parsed:
            if r_iid == iid and prefix.version == eid.version and eid in prefix:
                if rec.locators and prefix.prefixlen < self.min_mapping_prefix[eid.version]:
                    self._drop_record(out, "map_reply_record_too_broad", r_iid, prefix, src)
                else:
                    covering.append(prefix)
        for r_iid, prefix, rec in parsed:
            if r_iid == iid and prefix in covering:
                yield r_iid, prefix, rec
            elif r_iid == iid and any(prefix.version == c.version and prefix.subnet_of(c)
                                      for c in covering):
                yield r_iid, prefix, rec
            elif not (r_iid == iid and prefix.version == eid.version and eid in prefix):
                self._drop_record(out, "map_reply_record_not_covering", r_iid, prefix, src)

    def _drop_record(self, out, counter, iid, prefix, src):
        self.counters[counter] += 1
        self.counters["map_reply_record_dropped"] += 1
        out.append(Event("map_reply_record_dropped", {
            "eid": f"[{iid}]{prefix}", "from": str(src),
            "reason": "less specific than a mapping may be"
            if counter == "map_reply_record_too_broad"
            else "does not cover the requested EID"}))

    def locator_status(self, iid, src_eid, outer_src, lsb, now, width=32):
        """Honour the Locator-Status-Bits of a packet decapsulated from `outer_src` whose
        inner source is `src_eid` (RFC 9300 section 5.3): bit k, from the least significant,
        says whether the k-th locator of the source site's mapping (in the order its
        Map-Reply listed them) is up. `lsb` None (the L bit clear) says nothing. The bits
        are believed only from a locator of that mapping, and only when they say that this
        locator, which just sent the packet, is up (anything else is spoofed or stale);
        `width` is the field's size (8 with an instance ID, 32 without). Returns actions."""
        if lsb is None:
            return []
        entry = self.cache.lookup(iid, src_eid, now)
        if entry is None or entry.is_negative:
            self.counters["lsb_no_mapping"] += 1
            return []
        addresses = [loc.address for loc in entry.locators]
        if outer_src not in addresses:
            self.counters["lsb_ignored_not_a_locator"] += 1
            return []
        if len(addresses) > width:
            self.counters["lsb_ignored_too_many_locators"] += 1
            return []
        status = tuple(bool(lsb >> k & 1) for k in range(len(addresses)))
        if not status[addresses.index(outer_src)]:
            self.counters["lsb_ignored_sender_down"] += 1
            return []
        if all(status):
            status = None                    # every locator up: the same as no status
        if not entry.set_status(status):
            return []
        self.counters["lsb_status_changed"] += 1
        down = [str(a) for a, up in zip(addresses, status or ()) if not up]
        return [Event("locator_status_changed",
                      {"eid": f"[{entry.iid}]{entry.prefix}", "from": str(outer_src),
                       "down": down})]

    def receive_smr(self, smr, src, now):
        """An ETR says the mapping we use for an EID changed: ask the mapping system again
        (rate-limited by the one-outstanding-request rule)."""
        self.counters["smr_received"] += 1
        out = []
        # Either layout: the changed EID in the Source-EID (the record holding our own EID,
        # as OOR and lispers.net send it), or in the record (as we used to): ask again for
        # each one we have a map-cache entry for.
        candidates = []
        if getattr(smr.source_eid, "version", None) in (4, 6) or \
                getattr(getattr(smr.source_eid, "address", None), "version", None) in (4, 6):
            src_eid = smr.source_eid
            candidates.append((src_eid, src_eid.address.max_prefixlen
                               if hasattr(src_eid, "address") else src_eid.max_prefixlen))
        candidates += [(rec.eid, rec.mask_len) for rec in smr.records]
        asked = set()
        for eid_addr, mask_len in candidates:
            try:
                iid, prefix = eid_prefix(eid_addr, mask_len)
            except ValueError:
                continue
            eid = prefix.network_address
            if (iid, eid) in asked:
                continue
            asked.add((iid, eid))
            if self.cache.lookup(iid, eid, now) is None:
                continue
            out.append(Event("smr_received", {"eid": f"[{iid}]{eid}", "from": str(src)}))
            out += self.request(iid, eid, now, smr_invoked=True)
        if not out:
            self.counters["smr_ignored_no_entry"] += 1
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
            out += self._try_send(p, now)
        if len(self.last_request) > self.max_pending:
            self.last_request = {k: t for k, t in self.last_request.items()
                                 if now - t < self.request_interval}
        for entry in self.cache.expire(now):
            out.append(RouteDel(entry.iid, entry.prefix, "lisp"))
            out.append(Event("map_cache_expired", {"eid": f"[{entry.iid}]{entry.prefix}"}))
        for entry in list(self.cache):
            lifetime = entry.expires - entry.created
            if entry.expires - now <= lifetime * self.refresh_before and not entry.is_negative:
                out += self.request(entry.iid, entry.prefix.network_address, now)
        if self.prober is not None:
            out += self.prober.tick(now, self.cache, self.rlocs, self.nonce, self.counters)
        return out

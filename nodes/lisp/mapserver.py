"""Map-Server and Map-Resolver state machines (RFC 9301 sections 8.2-8.4).

Map-Server: holds the registrations of configured sites. A site has authentication keys
(by Key ID) and the EID prefixes it may register; with `accept_more_specifics` it may also
register more-specific prefixes inside them (dynamic EIDs: hosts that move), and when the
site lists its dynamic-EID ranges, only inside those. A Map-Register with a wrong key, from
an unknown site, for a prefix outside its site, or that replays an earlier one (its nonce not
above the last one accepted from that registrant: see replay.py) is rejected and counted,
and nothing of it is stored.

Registrations of a configured prefix from several xTRs of the site are merged (a multi-homed
site): each registrant, known by its xTR-ID (RFC 9301 section 5.6: it identifies the xTR;
without one, by the address its Map-Register came from), keeps its own locators and its own
expiry, and the prefix's mapping is the union of them, in the order the xTRs registered (the
merge semantics lispers.net applies, its "individual registrations"). Whenever that merged
set changes while the prefix has more than one registrant, every registrant receives a
Map-Notify carrying the merged record (each locator with its priority and weight), so that
each ETR can answer Map-Requests with the site's whole locator set. A more-specific
registration is a host that moved: the newest registrant owns it, and the ETRs that
registered it before receive a Map-Notify with the new RLOC set. Both kinds of Map-Notify are
retransmitted until the xTR answers with a Map-Notify-Ack.

Map-Requests reaching the Map-Server are answered by proxy (when the registration asked for
it with the P bit) or forwarded, still encapsulated, to a registered ETR. A request for a
configured EID that nothing registered gets a negative Map-Reply for the least-specific
prefix that holds the EID and no registered prefix (RFC 9301 section 8.4): the site's prefix
when nothing inside it is registered, less around a registered host. Map-Requests are
rate-limited per source and in all (ratelimit.RequestLimiter) before they are even decoded;
Map-Registers are not, so a flood of requests cannot starve registrations in the core.

Ports (RFC 9301 section 5): a Map-Notify that acknowledges a Map-Register goes to the
register's UDP source port, a Map-Reply to the source port of the Map-Request (an ECM's inner
UDP header); Map-Notifies sent as notifications go to 4342. `receive()` takes the datagram's
source port for that.

PubSub (RFC 9437): a Map-Request with the I bit (an xTR-ID) whose record has the N bit
subscribes its sender to that mapping, kept per (instance ID, prefix): the registered prefix
that answers it, or the requested one when none does. The subscription is acknowledged with
a Map-Notify carrying the current mapping (the request's nonce), and each change of the
mapping (a registration, a move, a change of a merged set, an expiry, a de-registration)
sends every subscriber a Map-Notify with the new record, its nonce one more than the last,
retransmitted until acknowledged; a subscriber that never acknowledges is dropped. These
Map-Notifies are signed with the key of the subscriber's site: the site its xTR-ID
registered with, else the site holding the request's source EID; without one the request is
answered but not subscribed (subscription_refused). Not done: unsubscribing, and checking
that the request comes from its xTR-ID (RFC 9437 section 7 asks for LISP-SEC or a
signature): any sender of a Map-Request can subscribe an xTR-ID of a known site.

Map-Resolver: takes Encapsulated Map-Requests, forwards them to the Map-Server that owns the
EID (or hands them to the co-located one), and answers requests for EIDs outside every
configured prefix with a negative Map-Reply for the largest hole that contains the EID.
"""
import ipaddress
from bisect import bisect_left, insort
from collections import Counter
from dataclasses import dataclass, field, replace

from .actions import Event, SendControl
from .address import eid_address, eid_prefix
from .auth import notify_for_register, sign, verify
from .common import Core, reply_rloc, requested_prefix, unwrap_request
from .ipudp import IpUdp
from .mapcache import MapCache, largest_hole
from .messages import (ACT_NATIVELY_FORWARD, ALG_HMAC_SHA256_128, CONTROL_PORT, ECM,
                       MAP_REQUEST, EidRecord,
                       EncapsulatedControl, Locator, MapNotify, MapNotifyAck, MapRegister,
                       MapReply)
from .ratelimit import RequestLimiter
from .replay import MODES as REPLAY_MODES, NonceMemory, next_nonce


def is_map_request(raw):
    """True for a datagram that is a Map-Request or an ECM (what the rate limit counts),
    read from its type field alone."""
    return bool(raw) and raw[0] >> 4 in (MAP_REQUEST, ECM)


@dataclass
class Site:
    name: str
    keys: dict                     # key_id -> shared secret
    prefixes: list                 # [(iid, ipaddress network)]
    accept_more_specifics: bool = False
    # Where more-specifics may be (the site's dynamic-EID ranges, [(iid, network)]); empty:
    # anywhere inside the site's prefixes.
    dynamic_ranges: list = field(default_factory=list)
    # "increasing" (RFC 9301 section 5.6), "seen" (random nonces, e.g. pre-RFC 9301 xTRs
    # such as Open Overlay Router 1.3) or "off": see replay.py.
    replay_protection: str = "increasing"

    def __post_init__(self):
        if self.replay_protection not in REPLAY_MODES:
            raise ValueError(f"replay_protection is one of {', '.join(REPLAY_MODES)}")

    def in_dynamic_range(self, iid, prefix):
        return any(r_iid == iid and r.version == prefix.version and prefix.subnet_of(r)
                   for r_iid, r in self.dynamic_ranges)


@dataclass(slots=True)
class Registrant:
    """One xTR's registration of one prefix."""
    source: object                 # the RLOC its last Map-Register came from
    record: EidRecord
    expires: float
    key_id: int
    alg_id: int
    proxy_reply: bool
    xtr_id: object = None
    site_id: int = 0


def registrant_key(msg, src):
    """Which registrant of a prefix a Map-Register speaks for: its xTR-ID (RFC 9301 section
    5.6: unique per xTR), or without one the address it came from."""
    return msg.xtr_id if msg.xtr_id is not None else src


@dataclass
class Registration:
    iid: int
    prefix: object
    site: Site
    more_specific: bool
    registrants: dict = field(default_factory=dict)   # registrant_key -> Registrant
    moved_away: dict = field(default_factory=dict)    # registrant_key -> hold-down end
    published: list = None                            # locator_set() subscribers last saw

    def locators(self):
        if len(self.registrants) == 1:
            return list(next(iter(self.registrants.values())).record.locators)
        seen, out = set(), []
        for reg in self.registrants.values():
            for loc in reg.record.locators:
                if loc.address not in seen:
                    seen.add(loc.address)
                    out.append(loc)
        return out

    def locator_set(self):
        """What a change of the merged mapping is measured by."""
        return [(x.address, x.priority, x.weight, x.m_priority, x.m_weight, x.reachable)
                for x in self.locators()]

    def record(self, authoritative=True):
        """The merged record for a Map-Reply or Map-Notify."""
        first = next(iter(self.registrants.values())).record
        return replace(first, locators=[replace(x, local=False, probed=False)
                                        for x in self.locators()],
                       authoritative=authoritative)


@dataclass
class PendingNotify:
    dst: object
    message: MapNotify
    key: object
    retries_left: int
    next_time: float
    # A move notification: (iid, prefix, registrant key) whose hold-down its ack ends.
    holddown: tuple = None
    # A PubSub notification: ((iid, prefix), xTR-ID) dropped if it is never acknowledged.
    subscription: tuple = None


@dataclass
class Subscription:
    """An xTR subscribed to a mapping (RFC 9437)."""
    xtr_id: int
    site_id: int
    itr: object                    # the ITR-RLOC its Map-Notifies go to
    key_id: int
    alg_id: int
    key: object
    nonce: int                     # of the last Map-Notify sent to it


def registrant_id(msg, src, placed):
    """Whose nonce sequence a Map-Register belongs to. With an xTR-ID, that xTR's (RFC 9301
    section 5.6 keeps the last nonce per xTR-ID and key). Without one, the RLOCs it
    registers and the EID-prefixes it carries: not the packet's source address, which the
    HMAC does not cover (a replay from another address must meet the same memory); and the
    prefixes too, because RFC 9301 does not say what identifies a registrant without an
    xTR-ID, and an xTR that sends one prefix per Map-Register, or several ETRs of a site
    that share one RLOC set, then keep their own sequences. A replayed message always has
    the identity, and so meets the nonce, of the message it copies."""
    if msg.xtr_id is not None:
        return ("xtr-id", msg.xtr_id)
    rlocs = frozenset(loc.address for rec in msg.records for loc in rec.locators)
    return ("rlocs", rlocs or src, frozenset((iid, prefix) for iid, prefix, *_ in placed))


class RegisteredIndex:
    """The network addresses of the registered prefixes, sorted per (instance ID, family),
    for the negative reply's prefix: the registered prefix that agrees longest with an EID
    is the one just before or just after it in that order."""

    def __init__(self):
        self.sorted = {}               # (iid, version) -> [network address as int]
        self.count = Counter()         # (iid, version, int) -> registered prefixes there

    def add(self, iid, prefix):
        key = (iid, prefix.version, int(prefix.network_address))
        self.count[key] += 1
        if self.count[key] == 1:
            insort(self.sorted.setdefault(key[:2], []), key[2])

    def remove(self, iid, prefix):
        key = (iid, prefix.version, int(prefix.network_address))
        self.count[key] -= 1
        if self.count[key] <= 0:
            del self.count[key]
            addrs = self.sorted[key[:2]]
            del addrs[bisect_left(addrs, key[2])]

    def free_prefix(self, iid, address, within):
        """The least-specific prefix inside `within` that holds `address` and no registered
        prefix. A registered prefix that does not hold the address overlaps a prefix of
        length L around it exactly when they agree on their first L bits (largest_hole)."""
        width = address.max_prefixlen
        a = int(address)
        addrs = self.sorted.get((iid, address.version), [])
        i = bisect_left(addrs, a)
        length = within.prefixlen
        for n in addrs[max(i - 1, 0):i + 1]:
            length = max(length, min(width, width - (a ^ n).bit_length() + 1))
        return ipaddress.ip_network((a, length), strict=False)


class MapServer(Core):
    def __init__(self, sites, name="ms", registration_timeout=180.0, notify_interval=1.0,
                 notify_retries=3, move_holddown=2.0, map_request_rate=1000.0,
                 map_request_rate_per_source=100.0, replay_window=3600.0, rng=None):
        super().__init__(name, rng)
        # After a host moved from ETR A to ETR B, A's registrations of it are ignored until
        # A acknowledges the move's Map-Notify, or at most this long after the last copy
        # of that Map-Notify we sent (it is retransmitted while unacknowledged): a periodic
        # Map-Register A sent just before it learnt of the move would otherwise read as a
        # move back, and both ETRs would think the host is away. After A's ack, a
        # registration from A is sent knowing of the move: the host really came back.
        self.move_holddown = move_holddown
        self.sites = list(sites)
        self.registration_timeout = registration_timeout
        self.notify_interval = notify_interval
        self.notify_retries = notify_retries
        self.table = MapCache(max_entries=1_000_000)     # LPM index over registrations
        self.index = RegisteredIndex()                   # the same prefixes, sorted
        self.registrations = {}                          # (iid, prefix) -> Registration
        self.pending_notifies = {}                       # nonce -> PendingNotify
        self._site_cache = {}                            # (iid, prefix) -> site_for()
        self.limiter = RequestLimiter(map_request_rate, map_request_rate_per_source)
        self.nonces = NonceMemory(window=replay_window)  # registrant -> nonces accepted
        self.last_notify_nonce = 0                       # our Map-Notifies count up too
        self.subscriptions = {}            # (iid, prefix) -> {xTR-ID: Subscription}
        self._changed = set()              # (iid, prefix) whose mapping changed, to tell
        self._xtr_keys = {}                # xTR-ID -> (site, key_id, alg_id) it registered

    # --- configuration look-ups ---------------------------------------------------

    def site_for(self, iid, prefix):
        """(site, more_specific) for a prefix, or (None, reason)."""
        found = self._site_cache.get((iid, prefix))
        if found is None:
            found = self._site_cache[(iid, prefix)] = self._find_site(iid, prefix)
            if len(self._site_cache) > 100_000:
                self._site_cache.clear()
        return found

    def _find_site(self, iid, prefix):
        covering = None
        width = prefix.max_prefixlen
        addr = int(prefix.network_address)
        for site in self.sites:
            for s_iid, s_prefix in site.prefixes:
                if s_iid != iid or s_prefix.version != prefix.version:
                    continue
                plen = s_prefix.prefixlen
                if plen > prefix.prefixlen:
                    continue
                shift = width - plen
                if addr >> shift != int(s_prefix.network_address) >> shift:
                    continue
                if plen == prefix.prefixlen:
                    return site, False
                covering = site
        if covering is None:
            return None, "no configured site has this prefix"
        if not covering.accept_more_specifics:
            return None, f"more-specific of site {covering.name}, which does not accept them"
        return covering, True

    def eid_space(self):
        return [(iid, p) for site in self.sites for iid, p in site.prefixes]

    def lookup(self, iid, address, now):
        entry = self.table.lookup(iid, address, now)
        return None if entry is None else self.registrations.get((entry.iid, entry.prefix))

    # --- events ---------------------------------------------------------------------

    def receive(self, raw, src, now, port=CONTROL_PORT):
        """Actions for one datagram from `src`, UDP source port `port`."""
        out = []
        if is_map_request(raw) and not self.limiter.allow(src, now, self.counters):
            return out
        msg = self.decode(raw, src, out)
        if msg is None:
            return out
        if isinstance(msg, MapRegister):
            self.counters["map_register_received"] += 1
            self._register(msg, raw, src, now, out, port)
        elif isinstance(msg, MapNotifyAck):
            self.counters["map_notify_ack_received"] += 1
            self._notify_ack(msg, raw, src, out)
        else:
            request, ecm = unwrap_request(msg)
            if request is None:
                self.counters["unexpected_message"] += 1
                out.append(Event("unexpected_message", {"from": str(src),
                                                        "type": type(msg).__name__}))
            else:
                self.counters["map_request_received"] += 1
                self.handle_request(request, ecm, src, now, out, port)
        self._tell_subscribers(now, out)
        return out

    def _reject(self, out, counter, src, reason, **fields):
        self.counters[counter] += 1
        self.counters["map_register_rejected"] += 1
        out.append(Event("register_rejected", {"from": str(src), "reason": reason, **fields}))

    def _register(self, msg, raw, src, now, out, port=CONTROL_PORT):
        if not msg.records:
            return self._reject(out, "register_empty", src, "no records")
        site, placed = None, []
        for rec in msg.records:
            try:
                iid, prefix = eid_prefix(rec.eid, rec.mask_len)
            except ValueError as e:
                return self._reject(out, "register_bad_eid", src, str(e))
            rec_site, more = self.site_for(iid, prefix)
            if rec_site is None:
                return self._reject(out, "register_unknown_site", src, more,
                                    eid=f"[{iid}]{prefix}")
            if more and rec_site.dynamic_ranges and not rec_site.in_dynamic_range(iid, prefix):
                return self._reject(out, "register_outside_dynamic_eid", src,
                                    f"outside the dynamic-EID ranges of site {rec_site.name}",
                                    eid=f"[{iid}]{prefix}")
            if site is not None and rec_site is not site:
                return self._reject(out, "register_mixed_sites", src,
                                    "records of different sites in one Map-Register")
            site = rec_site
            placed.append((iid, prefix, more, rec))
        key = site.keys.get(msg.key_id)
        if key is None or not verify(raw, key):
            self.counters["auth_failures"] += 1
            return self._reject(out, "register_auth_failed", src,
                                "unknown key id" if key is None else "authentication failed",
                                site=site.name)
        # Only an authenticated Map-Register reaches the nonce memory: a forged one must not
        # be able to raise the registrant's last nonce and lock it out.
        registrant = (site.name, msg.key_id, registrant_id(msg, src, placed))
        mode = site.replay_protection
        verdict = self.nonces.check(mode, registrant, msg.nonce, now)
        if verdict != "new":
            return self._reject(out, "register_replayed", src,
                                f"replay: nonce {msg.nonce:#x} is not above the last one "
                                f"accepted from this registrant" if verdict == "old"
                                else f"replay: nonce {msg.nonce:#x} was accepted before",
                                site=site.name)
        self.nonces.commit(mode, registrant, msg.nonce, now)
        self.counters["registrations_accepted"] += 1
        if msg.xtr_id is not None:
            if len(self._xtr_keys) > 100_000:
                self._xtr_keys.clear()
            self._xtr_keys[msg.xtr_id] = (site, msg.key_id, msg.alg_id)
        expires = now + self.registration_timeout
        key_of = registrant_key(msg, src)
        ignored = 0
        merged = []                  # (Registration, registrants) whose merged set changed
        for iid, prefix, more, rec in placed:
            reg = self.registrations.get((iid, prefix))
            if reg is None:
                reg = self.registrations[(iid, prefix)] = Registration(iid, prefix, site, more)
            if more and reg.moved_away.get(key_of, 0.0) > now:
                ignored += 1
                self.counters["register_ignored_after_move"] += 1
                out.append(Event("register_ignored", {
                    "iid": iid, "eid": prefix, "from": src,
                    "reason": "the host moved away from this RLOC moments ago"}))
                continue
            reg.moved_away.pop(key_of, None)
            if rec.ttl == 0:
                self._deregister(reg, key_of, src, now, out, merged)
                continue
            new = Registrant(src, rec, expires, msg.key_id, msg.alg_id, msg.proxy_reply,
                             msg.xtr_id, msg.site_id)
            if more:
                moved_from = []
                others = reg.registrants
                if len(others) > 1 or (others and key_of not in others):
                    new_rlocs = {loc.address for loc in rec.locators}
                    moved_from = [(k, r) for k, r in reg.registrants.items()
                                  if k != key_of and {x.address for x in r.record.locators}
                                  != new_rlocs]
                reg.registrants = {key_of: new}
                for k, old in moved_from:
                    reg.moved_away[k] = now + self.move_holddown
                    self._send_notify(old, reg, site, now, out, holddown=(iid, prefix, k))
                moved_from = [old for _, old in moved_from]
                if moved_from:
                    self.counters["host_moves"] += 1
                    out.append(Event("eid_moved", {
                        "iid": iid, "eid": prefix, "from": [o.source for o in moved_from],
                        "to": [x.address for x in rec.locators]}))
                changed = True
            else:
                old = reg.registrants.get(key_of)
                changed = old is None or old.record.locators != rec.locators
                before, had = reg.locator_set(), len(reg.registrants)
                reg.registrants[key_of] = new
                if changed and had and reg.locator_set() != before:
                    merged.append(reg)
            if changed or self.table.get(iid, prefix) is None:
                self._publish(reg, now)
            out.append(Event("registered", {"site": site.name, "iid": iid, "eid": prefix,
                                            "rlocs": [x.address for x in rec.locators],
                                            "from": src}))
        if msg.want_map_notify and ignored < len(placed):
            notify, data = notify_for_register(raw, msg, key)
            self.counters["map_notify_sent"] += 1
            # An acknowledgement: to the port the Map-Register came from (RFC 9301 5).
            out.append(SendControl(src, notify, dport=port, data=data))
        for reg in merged:
            self._notify_merged(reg, now, out)

    def _publish(self, reg, now):
        """Put a registration's (merged) mapping into the look-up table and the index."""
        if self.table.get(reg.iid, reg.prefix) is None:
            self.index.add(reg.iid, reg.prefix)
        self.table.insert(reg.iid, reg.prefix, reg.locators(), float("inf"), now)
        if self.subscriptions:          # (the common case, no subscriber, stays cheap)
            current = reg.locator_set()
            if current != reg.published:
                reg.published = current
                self._changed.add((reg.iid, reg.prefix))

    def _withdraw(self, reg):
        if self.table.get(reg.iid, reg.prefix) is not None:
            self.index.remove(reg.iid, reg.prefix)
            self.table.remove(reg.iid, reg.prefix)
            if self.subscriptions:
                self._changed.add((reg.iid, reg.prefix))

    # --- PubSub (RFC 9437) ---------------------------------------------------------

    def _mapping_record(self, iid, prefix):
        """The record a subscriber of (iid, prefix) is told: the registration's, or no
        locators with TTL 0 when it is gone (RFC 9301 section 5.4: remove it at once)."""
        reg = self.registrations.get((iid, prefix))
        if reg is not None and reg.registrants:
            return reg.record()
        return EidRecord(eid_address(iid, prefix.network_address), prefix.prefixlen, [],
                         ttl=0, action=ACT_NATIVELY_FORWARD)

    def _subscriber_key(self, request, iid):
        """(site, key_id, alg_id) to sign a subscriber's Map-Notifies with, or None."""
        known = self._xtr_keys.get(request.xtr_id)
        if known is not None:
            return known
        src = request.source_eid
        if getattr(src, "version", None) not in (4, 6):
            return None
        for site in self.sites:
            for s_iid, p in site.prefixes:
                if s_iid == iid and p.version == src.version and src in p:
                    key_id = min(site.keys)
                    return site, key_id, ALG_HMAC_SHA256_128
        return None

    def _subscribe(self, request, iid, prefix, reg, itr, now, out):
        """RFC 9437 section 5: subscribe the requester, and acknowledge with a Map-Notify
        carrying the current mapping and the Map-Request's nonce."""
        found = self._subscriber_key(request, iid)
        if found is None or itr is None:
            self.counters["subscription_refused"] += 1
            out.append(Event("subscription_refused", {
                "eid": f"[{iid}]{prefix}", "xtr_id": f"{request.xtr_id:032x}",
                "reason": "no ITR-RLOC" if itr is None
                else "no key for the subscriber's site"}))
            return
        site, key_id, alg_id = found
        where = (iid, reg.prefix) if reg is not None else (iid, prefix)
        if reg is not None:
            reg.published = reg.locator_set()       # what this subscriber is told now
        sub = Subscription(request.xtr_id, request.site_id, itr, key_id, alg_id,
                           site.keys[key_id], request.nonce)
        subs = self.subscriptions.setdefault(where, {})
        if request.xtr_id not in subs:
            self.counters["subscriptions"] += 1
        subs[request.xtr_id] = sub
        out.append(Event("subscribed", {"eid": f"[{where[0]}]{where[1]}", "to": str(itr),
                                        "xtr_id": f"{request.xtr_id:032x}"}))
        self._notify_subscriber(where, sub, now, out, next_nonce=False)

    def _notify_subscriber(self, where, sub, now, out, next_nonce=True):
        if next_nonce:
            sub.nonce = (sub.nonce + 1) & 0xFFFF_FFFF_FFFF_FFFF
        notify = sign(MapNotify(sub.nonce, [self._mapping_record(*where)], sub.key_id,
                                sub.alg_id, xtr_id=sub.xtr_id, site_id=sub.site_id), sub.key)
        self.pending_notifies[notify.nonce] = PendingNotify(
            sub.itr, notify, sub.key, self.notify_retries, now + self.notify_interval,
            subscription=(where, sub.xtr_id))
        self.counters["map_notify_sent"] += 1
        self.counters["subscriber_notify_sent"] += 1
        out.append(SendControl(sub.itr, notify))

    def _tell_subscribers(self, now, out):
        """A Map-Notify to the subscribers of every mapping that changed (RFC 9437)."""
        if not self._changed:
            return
        changed, self._changed = self._changed, set()
        for c_iid, c_prefix in changed:
            for where, subs in list(self.subscriptions.items()):
                s_iid, s_prefix = where
                if s_iid != c_iid or s_prefix.version != c_prefix.version or not (
                        s_prefix.subnet_of(c_prefix) or c_prefix.subnet_of(s_prefix)):
                    continue
                for sub in list(subs.values()):
                    self._notify_subscriber(where, sub, now, out)

    def _deregister(self, reg, key_of, src, now, out, merged):
        """A record with TTL 0: the registrant withdraws its registration of the prefix
        (RFC 9301 section 5.4: a TTL of 0 removes the mapping at once). The others of a
        merged prefix then hear of the smaller set, as after any change."""
        before, had = reg.locator_set(), len(reg.registrants)
        if reg.registrants.pop(key_of, None) is not None:
            self.counters["deregistrations"] += 1
            out.append(Event("deregistered", {"site": reg.site.name, "iid": reg.iid,
                                              "eid": reg.prefix, "from": src}))
        if not reg.registrants:
            del self.registrations[(reg.iid, reg.prefix)]
            self._withdraw(reg)
            return
        self._publish(reg, now)
        if not reg.more_specific and had > 1 and reg.locator_set() != before:
            merged.append(reg)

    def _notify_merged(self, reg, now, out):
        """Tell every registrant of a multi-xTR prefix its new merged locator set."""
        if not reg.registrants:
            return
        for r in reg.registrants.values():
            self._send_notify(r, reg, reg.site, now, out)
        self.counters["merged_notify"] += 1
        out.append(Event("merged_notify", {
            "eid": f"[{reg.iid}]{reg.prefix}", "rlocs": [str(x.address) for x in reg.locators()],
            "to": [str(r.source) for r in reg.registrants.values()]}))

    def _send_notify(self, registrant, reg, site, now, out, holddown=None):
        """An unsolicited Map-Notify telling a registrant the (new) RLOC set of `reg`,
        signed with the key it registered with, and with its xTR-ID when it sent one."""
        key = site.keys[registrant.key_id]
        # An increasing nonce, so that the ETR can refuse a replayed move (etr.py).
        self.last_notify_nonce = next_nonce(self.last_notify_nonce, now)
        notify = sign(MapNotify(self.last_notify_nonce, [reg.record()], registrant.key_id,
                                registrant.alg_id, xtr_id=registrant.xtr_id,
                                site_id=registrant.site_id if registrant.xtr_id is not None
                                else 0), key)
        dst = registrant.source
        self.pending_notifies[notify.nonce] = PendingNotify(
            dst, notify, key, self.notify_retries, now + self.notify_interval, holddown)
        self.counters["map_notify_sent"] += 1
        out.append(SendControl(dst, notify))

    def _notify_ack(self, msg, raw, src, out):
        pending = self.pending_notifies.get(msg.nonce)
        if pending is None or not verify(raw, pending.key):
            self.counters["map_notify_ack_unexpected"] += 1
            out.append(Event("notify_ack_ignored", {"from": str(src)}))
            return
        del self.pending_notifies[msg.nonce]
        out.append(Event("notify_acked", {"from": str(src)}))
        if pending.holddown is not None:
            iid, prefix, key_of = pending.holddown
            reg = self.registrations.get((iid, prefix))
            if reg is not None:
                reg.moved_away.pop(key_of, None)

    def handle_request(self, request, ecm, src, now, out, port=CONTROL_PORT):
        """Answer (proxy) or forward one Map-Request (plain or encapsulated; `port`: the
        UDP source port of the datagram)."""
        asked = requested_prefix(request, self.counters)
        if asked is None:
            return
        iid, prefix = asked
        itr = reply_rloc(request)
        # Where the ITR listens: the source port it sent the request from (RFC 9301 5).
        dport = ecm.inner.sport if ecm is not None else port
        reg = self.lookup(iid, prefix.network_address, now)
        if request.xtr_id is not None and request.records[0].notify:
            self._subscribe(request, iid, prefix, reg, itr, now, out)
        if itr is None:              # no IPv4/IPv6 ITR-RLOC: nobody to answer, nor to forward for
            self.counters["map_request_no_itr_rloc"] += 1
            return
        if reg is None:
            covering = next((p for s in self.sites for i, p in s.prefixes
                             if i == iid and p.version == prefix.version
                             and prefix.subnet_of(p)), prefix)
            # Never the whole site prefix when a host inside it is registered: the ITR
            # would forward that host's traffic natively for the TTL (RFC 9301 8.4).
            free = self.index.free_prefix(iid, prefix.network_address, covering)
            self._negative(request, iid, free, 1, itr, out, "not registered", dport)
            return
        if any(r.proxy_reply for r in reg.registrants.values()):
            self.counters["map_reply_sent"] += 1
            reply = MapReply(request.nonce, [reg.record(authoritative=False)])
            out.append(SendControl(itr, reply, dport=dport))
            out.append(Event("proxy_reply", {"eid": f"[{iid}]{reg.prefix}", "to": str(itr)}))
            return
        etr = next(iter(reg.registrants.values())).source
        if ecm is None:
            ecm = EncapsulatedControl(request, IpUdp(itr, etr, sport=port))
        self.counters["map_request_forwarded"] += 1
        out.append(SendControl(etr, ecm))
        out.append(Event("request_forwarded", {"eid": f"[{iid}]{reg.prefix}",
                                               "to": str(etr)}))

    def _negative(self, request, iid, prefix, ttl, itr, out, why, dport=CONTROL_PORT):
        rec = EidRecord(eid_address(iid, prefix.network_address), prefix.prefixlen, [],
                        ttl=ttl, action=ACT_NATIVELY_FORWARD, authoritative=True)
        self.counters["negative_reply_sent"] += 1
        out.append(SendControl(itr, MapReply(request.nonce, [rec]), dport=dport))
        out.append(Event("negative_reply", {"eid": f"[{iid}]{prefix}", "reason": why,
                                            "to": str(itr)}))

    def _drop_subscription(self, where, xtr_id, out):
        subs = self.subscriptions.get(where, {})
        if subs.pop(xtr_id, None) is not None:
            self.counters["subscriptions_dropped"] += 1
            out.append(Event("subscription_dropped", {
                "eid": f"[{where[0]}]{where[1]}", "xtr_id": f"{xtr_id:032x}",
                "reason": "its Map-Notify was never acknowledged"}))
        if not subs:
            self.subscriptions.pop(where, None)

    def tick(self, now):
        """Expire registrations and retransmit unacknowledged Map-Notifies."""
        out = []
        for key, reg in list(self.registrations.items()):
            before, had = reg.locator_set(), len(reg.registrants)
            for k, r in list(reg.registrants.items()):
                if r.expires <= now:
                    del reg.registrants[k]
                    self.counters["registrations_expired"] += 1
                    out.append(Event("registration_expired", {
                        "eid": f"[{reg.iid}]{reg.prefix}", "from": str(r.source)}))
            if not reg.registrants:
                del self.registrations[key]
                self._withdraw(reg)
            elif len(reg.registrants) < had:
                self._publish(reg, now)
                if not reg.more_specific and reg.locator_set() != before:
                    self._notify_merged(reg, now, out)
        for nonce, p in list(self.pending_notifies.items()):
            if p.next_time > now:
                continue
            if p.retries_left <= 0:
                del self.pending_notifies[nonce]
                self.counters["map_notify_unacked"] += 1
                out.append(Event("notify_unacked", {"to": str(p.dst)}))
                if p.subscription is not None:
                    self._drop_subscription(*p.subscription, out)
                continue
            p.retries_left -= 1
            p.next_time = now + self.notify_interval
            self.counters["map_notify_retransmitted"] += 1
            out.append(SendControl(p.dst, p.message))
            if p.holddown is not None:
                # still unacknowledged: the old ETR may not have heard of the move yet (a
                # busy one works through a hundred notifies for seconds), so its
                # registrations stay suspect for the hold-down after this copy too
                iid, prefix, key_of = p.holddown
                reg = self.registrations.get((iid, prefix))
                if reg is not None and key_of in reg.moved_away:
                    reg.moved_away[key_of] = max(reg.moved_away[key_of],
                                                 now + self.move_holddown)
        self._tell_subscribers(now, out)
        return out


class MapResolver(Core):
    """Routes Encapsulated Map-Requests to the Map-Server that owns the EID.

    `map_servers` is a list of (iid, prefix, ms_rloc). With `local_ms`, requests for the
    prefixes of that Map-Server are handed to it directly (a combined MS/MR node)."""

    def __init__(self, map_servers=(), local_ms=None, name="mr", negative_ttl=15,
                 map_request_rate=1000.0, map_request_rate_per_source=100.0, rng=None):
        super().__init__(name, rng)
        self.local_ms = local_ms
        # A combined node has one budget: the co-located Map-Server's limiter.
        self.limiter = (local_ms.limiter if local_ms is not None
                        else RequestLimiter(map_request_rate, map_request_rate_per_source))
        self.routes = MapCache(max_entries=100_000)
        self.space = []
        for iid, prefix, rloc in map_servers:
            self.add_route(iid, prefix, rloc)
        if local_ms is not None:
            for iid, prefix in local_ms.eid_space():
                self.add_route(iid, prefix, None)
        self.negative_ttl = negative_ttl

    def add_route(self, iid, prefix, ms_rloc):
        self.routes.insert(iid, prefix, [Locator(ms_rloc)] if ms_rloc else [], float("inf"), 0)
        self.space.append((iid, prefix))

    def receive(self, raw, src, now, port=CONTROL_PORT):
        out = []
        if is_map_request(raw) and not self.limiter.allow(src, now, self.counters):
            return out
        msg = self.decode(raw, src, out)
        if msg is not None:
            self.handle(msg, src, now, out, port)
        return out

    def handle(self, msg, src, now, out, port=CONTROL_PORT):
        request, ecm = unwrap_request(msg)
        if request is None or ecm is None:
            self.counters["mr_unexpected_message"] += 1
            out.append(Event("unexpected_message", {"from": str(src),
                                                    "type": type(msg).__name__}))
            return
        self.counters["map_request_received"] += 1
        if request.smr_invoked:
            self.counters["smr_invoked_request_received"] += 1
        asked = requested_prefix(request, self.counters)
        if asked is None:
            return
        iid, prefix = asked
        itr = reply_rloc(request)
        if itr is None:              # no IPv4/IPv6 ITR-RLOC: nobody to answer, nor to forward for
            self.counters["map_request_no_itr_rloc"] += 1
            return
        route = self.routes.lookup(iid, prefix.network_address, now)
        if route is None:
            space = [p for i, p in self.space if i == iid]
            hole = largest_hole(space, prefix.network_address)
            rec = EidRecord(eid_address(iid, hole.network_address), hole.prefixlen, [],
                            ttl=self.negative_ttl, action=ACT_NATIVELY_FORWARD)
            self.counters["negative_reply_sent"] += 1
            # To the ITR's port: the ECM's inner UDP source port (RFC 9301 section 5).
            out.append(SendControl(itr, MapReply(request.nonce, [rec]),
                                   dport=ecm.inner.sport))
            out.append(Event("negative_reply", {"eid": f"[{iid}]{hole}",
                                                "reason": "not EID space", "to": str(itr)}))
        elif not route.locators:
            self.local_ms.handle_request(request, ecm, src, now, out, port)
        else:
            self.counters["map_request_forwarded"] += 1
            out.append(SendControl(route.locators[0].address, ecm))


class MapServerResolver:
    """A Map-Server and a Map-Resolver in one node, as in the lab's mapping-system node."""

    def __init__(self, sites, name="msmr", rng=None, **ms_options):
        self.name = name
        self.ms = MapServer(sites, name=name, rng=rng, **ms_options)
        self.mr = MapResolver(local_ms=self.ms, name=name, rng=rng)

    @property
    def counters(self):
        return self.ms.counters + self.mr.counters

    def receive(self, raw, src, now, port=CONTROL_PORT):
        if raw and raw[0] >> 4 == ECM:
            return self.mr.receive(raw, src, now, port)
        return self.ms.receive(raw, src, now, port)

    def tick(self, now):
        return self.ms.tick(now)

"""The ETR state machine with host mobility (RFC 9301 sections 6 and 8; LISP host mobility).

Registration: every `register_interval` the ETR sends each Map-Server a signed Map-Register
with its configured EID prefixes and the host EIDs it has detected, and it answers the
Map-Requests for them with Map-Replies. Map-Register nonces increase (RFC 9301 section 5.6;
replay.py), so the Map-Server can refuse a replayed registration.

Mobility: a host seen on the LAN with a source inside a configured dynamic-EID range becomes
a local host EID (a /32 or /128), registered at once. Anything outside those ranges is
ignored and counted. When a Map-Notify says that a host EID we registered now lives behind
other RLOCs, we drop it, keep an "away" entry with the new RLOCs, acknowledge with a
Map-Notify-Ack, and from then on answer data that still arrives for it with a rate-limited
Solicit-Map-Request to the ITR that sent it, while re-encapsulating that data to the new
RLOCs so nothing is lost during the move. A Map-Notify is checked for replay: one that
confirms a Map-Register must match a Map-Register still unconfirmed, and a move notification
must carry a nonce above the last one from that Map-Server (the same nonce again is a
retransmission: acknowledged again, not applied again).
"""
import ipaddress
from dataclasses import dataclass, replace

from .actions import Decision, Event, ProbeHost, RouteAdd, RouteDel, SendControl
from .address import eid_address, eid_prefix
from .auth import sign, verify
from .common import Core, reply_rloc, requested_prefix
from .mapcache import MapCache
from .messages import (ALG_HMAC_SHA256_128, CONTROL_PORT, EidRecord, MapNotify, MapNotifyAck,
                       MapRegister, MapReply, MapRequest, RequestRecord)
from .replay import NonceMemory, next_nonce


@dataclass
class MapServerConfig:
    address: object
    key: object
    key_id: int = 0
    alg_id: int = ALG_HMAC_SHA256_128
    # How this Map-Server numbers its move notifications: "increasing" (ours), "seen"
    # (random nonces, as other implementations send) or "off" (replay.py).
    replay_protection: str = "increasing"


@dataclass
class DynamicEid:
    iid: int
    address: object
    first_seen: float
    last_seen: float
    probed_at: float = None     # when we last asked the LAN whether it is still there


def host_prefix(ip):
    return ipaddress.ip_network((ip, ip.max_prefixlen))


class Etr(Core):
    def __init__(self, rlocs, prefixes, map_servers, name="etr", register_interval=60.0,
                 record_ttl=1440, want_map_notify=True, proxy_reply=False,
                 dynamic_ranges=(), smr_interval=1.0, away_ttl=None, probe_interval=1.0,
                 rng=None, xtr_id=None, host_timeout=600.0, site_rlocs=(),
                 site_notify=None):
        super().__init__(name, rng)
        # The site-local Map-Notify (extended subnet): a multicast group on the LAN that
        # the LAN extension carries to the site's other xTRs. A host we detect is announced
        # there at once, signed with the first Map-Server's key (the site's), so the xTR it
        # left stops answering for it without waiting for the Map-Server. None: off.
        self.site_notify = site_notify
        self.last_site_notify_nonce = 0
        self.site_notify_nonces = NonceMemory(max_keys=64)      # per sending xTR
        # A detected host with no frame for host_timeout seconds is probed (ARP / NS); one
        # that does not answer within 3 probe_intervals ages out and is de-registered.
        # None: never.
        self.host_timeout = host_timeout
        self.xtr_id = xtr_id        # sent in Map-Registers (the I bit) when given: RFC 9437
        self.rlocs = list(rlocs)                 # messages.Locator, local=True
        self.rloc_addresses = {loc.address for loc in self.rlocs}
        self.prefixes = list(prefixes)           # [(iid, network)]
        # The site's other locators (its other xTRs), answered with beside ours: configured
        # ones for every EID, and per EID the set the Map-Server's Map-Notify last told us.
        self.site_rlocs = [replace(x, local=False, probed=False) for x in site_rlocs]
        self.site_sets = {}                      # (iid, network) -> [Locator], learned
        self.map_servers = list(map_servers)
        self.register_interval = register_interval
        self.record_ttl = record_ttl
        self.want_map_notify = want_map_notify
        self.proxy_reply = proxy_reply
        self.dynamic_ranges = list(dynamic_ranges)
        self.smr_interval = smr_interval
        # How long we answer for a host that moved away (re-encapsulate, solicit): as long
        # as an ITR may hold the mapping we registered for it (its TTL), by default.
        self.away_ttl = record_ttl * 60.0 if away_ttl is None else away_ttl
        self.dynamic = {}                        # (iid, ip) -> DynamicEid
        self.away = MapCache(max_entries=100_000)
        self.smr_last = {}                       # (itr, iid, ip) -> time
        self.probe_interval = probe_interval
        self.probe_last = {}                     # (iid, ip) -> time of the last ProbeHost
        self.next_register = 0.0
        self.outstanding = {}                    # Map-Register nonce -> time sent
        self.confirmed = {}                      # Map-Register nonce -> time confirmed
        self.last_register_nonce = 0
        self.notify_nonces = NonceMemory(max_keys=1024)   # per Map-Server

    # --- registration ------------------------------------------------------------------

    def records(self):
        locs = [replace(x, local=True) for x in self.rlocs]
        recs = [EidRecord(eid_address(iid, p.network_address), p.prefixlen, locs, self.record_ttl)
                for iid, p in self.prefixes]
        recs += [EidRecord(eid_address(d.iid, d.address), d.address.max_prefixlen, locs,
                           self.record_ttl) for d in self.dynamic.values()]
        return recs

    def register(self, now, records=None):
        """Signed Map-Registers for `records` (default: everything we own) to every MS."""
        records = self.records() if records is None else records
        out = []
        if not records:
            return out
        for ms in self.map_servers:
            for start in range(0, len(records), 32):
                self.last_register_nonce = next_nonce(self.last_register_nonce, now)
                msg = MapRegister(self.last_register_nonce, records[start:start + 32],
                                  ms.key_id, ms.alg_id, proxy_reply=self.proxy_reply,
                                  want_map_notify=self.want_map_notify,
                                  xtr_id=self.xtr_id)
                self.outstanding[msg.nonce] = now
                self.counters["map_register_sent"] += 1
                out.append(SendControl(ms.address, sign(msg, ms.key)))
        return out

    def tick(self, now):
        out = []
        if now >= self.next_register:
            self.next_register = now + self.register_interval
            self.outstanding = {n: t for n, t in self.outstanding.items()
                                if now - t < 3 * self.register_interval}
            self.confirmed = {n: t for n, t in self.confirmed.items()
                              if now - t < 100 * self.register_interval}
            out += self.register(now)
        for entry in self.away.expire(now):
            out.append(RouteDel(entry.iid, entry.prefix, "away"))
        if self.host_timeout is not None:
            out += self._age_hosts(now)
        return out

    def _age_hosts(self, now):
        out = []
        for key, d in list(self.dynamic.items()):
            if now - d.last_seen < self.host_timeout:
                continue
            if d.probed_at is None or d.probed_at < d.last_seen:
                d.probed_at = now                   # still there? Its answer refreshes it.
                self.counters["dynamic_eid_probes"] += 1
                out += [ProbeHost(d.iid, d.address),
                        Event("dynamic_eid_probe", {"eid": f"[{d.iid}]{d.address}",
                                                    "reason": "quiet"})]
            elif now - d.probed_at >= 3 * self.probe_interval:
                self.counters["dynamic_eid_aged_out"] += 1
                out += self._remove_host(d.iid, d.address, now, "dynamic_eid_aged_out")
        return out

    def _remove_host(self, iid, ip, now, event):
        """Forget a detected host: its route, and its registration (a TTL-0 Map-Register,
        RFC 9301 section 5.4: the Map-Server removes it at once)."""
        self.dynamic.pop((iid, ip), None)
        self.site_sets.pop((iid, host_prefix(ip)), None)
        locs = [replace(x, local=True) for x in self.rlocs]
        return ([RouteDel(iid, host_prefix(ip), "local"),
                 Event(event, {"eid": f"[{iid}]{ip}"})]
                + self.register(now, [EidRecord(eid_address(iid, ip), ip.max_prefixlen, locs,
                                                0)]))

    # --- Map-Requests -------------------------------------------------------------------

    def owns(self, iid, ip):
        """The record we answer for EID `ip`, or None."""
        if (iid, ip) in self.dynamic:
            return iid, host_prefix(ip)
        best = None
        for p_iid, p in self.prefixes:
            if p_iid == iid and p.version == ip.version and ip in p:
                if best is None or p.prefixlen > best.prefixlen:
                    best = p
        return (iid, best) if best is not None else None

    def handle_request(self, request, src, now, port=CONTROL_PORT):
        out = []
        asked = requested_prefix(request, self.counters)
        if asked is None:
            return out
        iid, prefix = asked
        ip = prefix.network_address
        if self.away.lookup(iid, ip, now) is not None and (iid, ip) not in self.dynamic:
            self.counters["map_request_for_away_eid"] += 1
            return out
        owned = self.owns(iid, ip)
        if owned is None:
            self.counters["map_request_not_ours"] += 1
            out.append(Event("map_request_not_ours", {"eid": f"[{iid}]{ip}", "from": str(src)}))
            return out
        itr = reply_rloc(request, source=src)
        if itr is None:
            self.counters["map_request_no_itr_rloc"] += 1
            return out
        o_iid, o_prefix = owned
        locs = self.locator_set(o_iid, o_prefix, request.probe)
        record = EidRecord(eid_address(o_iid, o_prefix.network_address), o_prefix.prefixlen, locs,
                           self.record_ttl)
        self.counters["map_reply_sent"] += 1
        out.append(SendControl(itr, MapReply(request.nonce, [record], probe=request.probe),
                               dport=port))
        out.append(Event("map_reply_sent", {"eid": f"[{o_iid}]{o_prefix}", "to": str(itr),
                                            "smr_invoked": request.smr_invoked}))
        return out

    def locator_set(self, iid, prefix, probe=False):
        """The locators we answer a Map-Request for (iid, prefix) with: the site's whole set
        (DESIGN: an ITR must learn a multihomed site's locators whichever xTR answers).
        Ours first, with the L bit (RFC 9301 section 5.4: a locator local to the ETR that
        sends the Map-Reply) and, in a probe reply, the p bit (the probe reached one of
        them); then the configured site locators and those the Map-Server told us, each
        address once, with their own priority and weight."""
        out = [replace(x, local=True, probed=probe) for x in self.rlocs]
        seen = {x.address for x in out}
        for loc in self.site_rlocs + self.site_sets.get((iid, prefix), []):
            if loc.address not in seen:
                seen.add(loc.address)
                out.append(loc)
        return out

    def _owns_exactly(self, iid, prefix):
        if (iid, prefix) in self.prefixes:
            return True
        ip = prefix.network_address
        return prefix.prefixlen == ip.max_prefixlen and (iid, ip) in self.dynamic

    def _learn_site_sets(self, records, confirmation, out):
        """Keep the site's locator set of each record for an EID we own that lists one of
        our RLOCs (a record without ours is a move away: see handle_notify). The Map-Server
        merges a site's registrations and tells each registrant the merged set; a
        confirmation that only echoes our own Map-Register tells nothing, so it keeps what
        we knew. Locators that are not an IPv4/IPv6 address are skipped and counted."""
        for rec in records:
            try:
                iid, prefix = eid_prefix(rec.eid, rec.mask_len)
            except ValueError:
                continue
            if not self._owns_exactly(iid, prefix) or not any(
                    x.address in self.rloc_addresses for x in rec.locators):
                continue
            others = []
            for loc in rec.locators:
                if loc.address in self.rloc_addresses:
                    continue
                if getattr(loc.address, "version", None) not in (4, 6):
                    self.counters["map_notify_locator_skipped"] += 1
                    continue
                others.append(replace(loc, local=False, probed=False))
            if confirmation and not others:
                continue
            key = (iid, prefix)
            if others == self.site_sets.get(key, []):
                continue
            if others:
                self.site_sets[key] = others
            else:
                self.site_sets.pop(key, None)
            self.counters["site_locator_set_learned"] += 1
            out.append(Event("site_locators_learned", {
                "eid": f"[{iid}]{prefix}", "rlocs": [str(x.address) for x in others]}))

    # --- Map-Notify and mobility -------------------------------------------------------

    def handle_site_notify(self, notify, raw, src, now):
        """A site-local Map-Notify from another xTR of the site, over the LAN extension:
        a host it detected. Authenticated with the site's key, newer than the last one
        from that xTR; the host, if we hold it, has moved away to the notify's RLOCs. No
        Map-Notify-Ack: the Map-Server's own notification still follows."""
        out = []
        ms = self.map_servers[0]
        if not verify(raw, ms.key):
            self.counters["auth_failures"] += 1
            self.counters["site_notify_rejected"] += 1
            out.append(Event("notify_rejected", {"from": str(src), "site_local": True}))
            return out
        verdict = self.site_notify_nonces.check("increasing", src, notify.nonce, now)
        if verdict == "repeat":
            # the same datagram again: each of our control sockets on the port gets a copy
            # of a multicast one, and a replay of the last one must not act either
            self.counters["site_notify_repeated"] += 1
            return out
        if verdict != "new":
            self.counters["site_notify_replayed"] += 1
            self.counters["site_notify_rejected"] += 1
            out.append(Event("notify_rejected", {"from": str(src), "site_local": True,
                                                 "reason": f"replay: nonce {notify.nonce:#x}"}))
            return out
        self.site_notify_nonces.commit("increasing", src, notify.nonce, now)
        self.counters["site_notify_received"] += 1
        self._moved_away(notify.records, now, out, {"via": "site-local Map-Notify",
                                                    "from": str(src)})
        return out

    def _moved_away(self, records, now, out, why=None):
        """The hosts of `records` that we hold and that are now at other RLOCs: away."""
        for rec in records:
            try:
                iid, prefix = eid_prefix(rec.eid, rec.mask_len)
            except ValueError:
                continue
            ip = prefix.network_address
            new_rlocs = {x.address for x in rec.locators}
            if (prefix.prefixlen == ip.max_prefixlen and (iid, ip) in self.dynamic
                    and new_rlocs and not new_rlocs & self.rloc_addresses):
                del self.dynamic[(iid, ip)]
                self.site_sets.pop((iid, prefix), None)
                self.away.insert(iid, prefix, rec.locators, self.away_ttl, now)
                self.counters["eid_moved_away"] += 1
                out.append(RouteDel(iid, prefix, "local"))
                out.append(RouteAdd(iid, prefix, "away"))
                out.append(Event("eid_away", {"eid": f"[{iid}]{ip}",
                                              "rlocs": [str(a) for a in new_rlocs],
                                              **(why or {})}))

    def handle_notify(self, notify, raw, src, now):
        out = []
        ms = next((m for m in self.map_servers if m.address == src), None)
        if ms is None and self.site_notify is not None and self.map_servers \
                and not notify.xtr_id and notify.records:
            return self.handle_site_notify(notify, raw, src, now)
        if ms is None or not verify(raw, ms.key):
            self.counters["auth_failures"] += 1
            self.counters["map_notify_rejected"] += 1
            out.append(Event("notify_rejected", {"from": str(src)}))
            return out
        self.counters["map_notify_received"] += 1
        if self.outstanding.pop(notify.nonce, None) is not None:
            self.confirmed[notify.nonce] = now
            self._learn_site_sets(notify.records, True, out)
            out.append(Event("registration_confirmed", {"from": str(src),
                                                        "records": len(notify.records)}))
            return out
        verdict = "old" if notify.nonce in self.confirmed else self.notify_nonces.check(
            ms.replay_protection, ms.address, notify.nonce, now)
        if verdict == "old":
            self.counters["map_notify_replayed"] += 1
            self.counters["map_notify_rejected"] += 1
            out.append(Event("notify_rejected", {"from": str(src), "reason": (
                f"replay: nonce {notify.nonce:#x} is older than the last one accepted")}))
            return out
        if verdict == "repeat":
            # A retransmission (our Map-Notify-Ack was lost) or a replay of the last one:
            # acknowledge it again, but do not act on it again (the host may be back).
            self.counters["map_notify_repeated"] += 1
            return out + [self._ack(notify, ms)]
        self.notify_nonces.commit(ms.replay_protection, ms.address, notify.nonce, now)
        self._learn_site_sets(notify.records, False, out)
        self._moved_away(notify.records, now, out)
        out.append(self._ack(notify, ms))
        return out

    def _ack(self, notify, ms):
        ack = MapNotifyAck(notify.nonce, notify.records, notify.key_id, notify.alg_id,
                           xtr_id=notify.xtr_id, site_id=notify.site_id)
        self.counters["map_notify_ack_sent"] += 1
        return SendControl(ms.address, sign(ack, ms.key))

    def in_dynamic_range(self, iid, ip):
        return any(r_iid == iid and r.version == ip.version and ip in r
                   for r_iid, r in self.dynamic_ranges)

    def host_seen(self, iid, ip, now):
        """A source address seen on the LAN (ARP, neighbour advertisement or data)."""
        key = (iid, ip)
        known = self.dynamic.get(key)
        if known is not None:
            known.last_seen = now
            return []
        if not self.in_dynamic_range(iid, ip):
            self.counters["dynamic_eid_rejected"] += 1
            return [Event("dynamic_eid_rejected", {"eid": f"[{iid}]{ip}",
                                                   "reason": "outside dynamic-EID ranges"})]
        self.dynamic[key] = DynamicEid(iid, ip, now, now)
        self.counters["dynamic_eid_detected"] += 1
        prefix = host_prefix(ip)
        out = [Event("dynamic_eid_detected", {"eid": f"[{iid}]{ip}"})]
        locs = [replace(x, local=True) for x in self.rlocs]
        record = EidRecord(eid_address(iid, ip), ip.max_prefixlen, locs, self.record_ttl)
        # The messages first, then the routes: programming a route takes the daemon a
        # millisecond or two, and the old xTR and the Map-Server need not wait for it.
        out += self.register(now, [record])
        if self.site_notify is not None and self.map_servers:
            ms = self.map_servers[0]
            self.last_site_notify_nonce = next_nonce(self.last_site_notify_nonce, now)
            notify = MapNotify(self.last_site_notify_nonce, [record], ms.key_id, ms.alg_id)
            self.counters["site_notify_sent"] += 1
            out.append(SendControl(self.site_notify, sign(notify, ms.key)))
        if self.away.remove(iid, prefix):
            out.append(RouteDel(iid, prefix, "away"))
        out.append(RouteAdd(iid, prefix, "local"))
        return out

    def host_gone(self, iid, ip, now):
        """The LAN says the host left (e.g. its neighbour entry failed)."""
        if (iid, ip) not in self.dynamic:
            return []
        return self._remove_host(iid, ip, now, "dynamic_eid_removed")

    def decapsulated(self, iid, dst, outer_src, now, flow=b"", src=None):
        """(Decision, actions) for a packet decapsulated for inner destination `dst` (from
        inner source `src`, when the caller knows it)."""
        away = self.away.lookup(iid, dst, now)
        if away is not None and (iid, dst) not in self.dynamic:
            out = self.solicit(outer_src, iid, dst, now, src)
            loc = away.select_locator(flow)
            if loc is None:
                self.counters["drop_away_no_rloc"] += 1
                return Decision("drop", reason="away entry has no usable RLOC"), out
            self.counters["reencapsulated_to_new_rloc"] += 1
            return Decision("encap", loc.address), out
        if self.owns(iid, dst) is not None:
            return Decision("deliver"), []
        if self.in_dynamic_range(iid, dst):
            # Sent here, so someone's mapping says the host is behind us: it may be on our
            # LAN and silent (after our restart nothing is detected). Ask the LAN, once a
            # probe_interval per host; its answer detects it, and registers it.
            self.counters["drop_dynamic_eid_not_detected"] += 1
            last = self.probe_last.get((iid, dst))
            if last is not None and now - last < self.probe_interval:
                return Decision("drop", reason="host not detected (probed)"), []
            if len(self.probe_last) >= 4096:
                self.probe_last.clear()
            self.probe_last[(iid, dst)] = now
            self.counters["dynamic_eid_probes"] += 1
            return (Decision("drop", reason="host not detected (probed)"),
                    [ProbeHost(iid, dst), Event("dynamic_eid_probe", {"eid": f"[{iid}]{dst}"})])
        self.counters["drop_not_our_eid"] += 1
        return Decision("drop", reason="not one of our EIDs"), []

    def solicit(self, itr, iid, ip, now, itr_eid=None):
        """A rate-limited Solicit-Map-Request telling `itr` that its mapping for `ip` is
        stale. The Source-EID is `ip`, the EID whose mapping changed; the record is the
        ITR's own EID (`itr_eid`, the inner source of the packet that made us send it), as
        the ITR's Map-Request would name it: what Open Overlay Router and lispers.net expect
        (RFC 9301 section 6.1 has the ITR ask again for the EID the SMR names). Without
        `itr_eid`, the record is `ip` too."""
        key = (itr, iid, ip)
        last = self.smr_last.get(key)
        if last is not None and now - last < self.smr_interval:
            self.counters["smr_rate_limited"] += 1
            return []
        self.smr_last[key] = now
        itr_rlocs = [loc.address for loc in self.rlocs] or [itr]
        rec = itr_eid if itr_eid is not None and itr_eid.version == ip.version else ip
        smr = MapRequest(self.nonce(), [RequestRecord(eid_address(iid, rec), rec.max_prefixlen)],
                         itr_rlocs, source_eid=eid_address(iid, ip), smr=True)
        self.counters["smr_sent"] += 1
        return [SendControl(itr, smr), Event("smr_sent", {"eid": f"[{iid}]{ip}",
                                                          "to": str(itr)})]

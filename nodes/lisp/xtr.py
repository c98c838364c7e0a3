"""An xTR: the ITR and the ETR of one node, fed from one control socket.

`receive()` decodes a control datagram once and hands it to the right half: Map-Replies and
Solicit-Map-Requests to the ITR; Map-Requests (plain or encapsulated) and Map-Notifies to
the ETR.
"""
from .actions import Decision, Event
from .auth import verify
from .common import unwrap_request
from .messages import CONTROL_PORT, MapNotify, MapNotifyAck, MapReply


class Xtr:
    def __init__(self, itr, etr, name="xtr"):
        self.name = name
        self.itr = itr
        self.etr = etr

    @property
    def counters(self):
        return self.itr.counters + self.etr.counters

    def receive(self, raw, src, now, port=CONTROL_PORT):
        out = []
        msg = self.etr.decode(raw, src, out)
        if msg is None:
            return out
        request, ecm = unwrap_request(msg)
        if isinstance(msg, MapReply):
            return self.itr.receive_reply(msg, src, now)
        if request is not None and request.smr and ecm is None:
            return self.itr.receive_smr(request, src, now)
        if request is not None:
            self.etr.counters["map_request_received"] += 1
            # The reply goes to the ITR's port: an ECM's inner UDP source port, else the
            # datagram's (RFC 9301 section 5).
            return self.etr.handle_request(request, src, now,
                                           ecm.inner.sport if ecm is not None else port)
        if isinstance(msg, MapNotify) and not isinstance(msg, MapNotifyAck):
            if self.itr.is_publication(msg):
                return self._publication(msg, raw, src, now)
            return self.etr.handle_notify(msg, raw, src, now)
        self.etr.counters["unexpected_message"] += 1
        return [Event("unexpected_message", {"from": str(src), "type": type(msg).__name__})]

    def _publication(self, notify, raw, src, now):
        """A Map-Notify for the ITR as a PubSub subscriber (RFC 9437 section 5): from one of
        our Map-Servers, signed with our site's key (the one the ETR registers with),
        applied by the ITR and acknowledged with a Map-Notify-Ack."""
        ms = next((m for m in self.etr.map_servers if m.address == src), None)
        if ms is None or not verify(raw, ms.key):
            self.itr.counters["auth_failures"] += 1
            self.itr.counters["map_notify_publication_rejected"] += 1
            return [Event("publication_rejected", {"from": str(src)})]
        return self.itr.receive_publication(notify, src, now) + [self.etr._ack(notify, ms)]

    def tick(self, now):
        return self.itr.tick(now) + self.etr.tick(now)

    def route(self, iid, dst, now, flow=b"", src=None):
        """A packet from the site (or one the kernel sends into the tunnel): a host that
        moved away from us is reached through its away entry, the rest through the ITR."""
        away = self.etr.away.lookup(iid, dst, now)
        if away is not None and (iid, dst) not in self.etr.dynamic:
            loc = away.select_locator(flow)
            if loc is not None:
                return Decision("encap", loc.address), []
        return self.itr.route(iid, dst, now, flow, src)

    def decapsulated(self, iid, dst, outer_src, now, flow=b"", src=None):
        return self.etr.decapsulated(iid, dst, outer_src, now, flow, src)

    def locator_status(self, iid, src, outer_src, lsb, now, width=32):
        """The Locator-Status-Bits of a packet from `outer_src` (Itr.locator_status)."""
        return self.itr.locator_status(iid, src, outer_src, lsb, now, width)

    def host_seen(self, iid, ip, now):
        return self.etr.host_seen(iid, ip, now)

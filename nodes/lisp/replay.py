"""Replay protection for Map-Register and Map-Notify: the nonce as a sequence number.

RFC 9301 section 5.6 (Map-Register, Nonce field): the ETR increments the nonce with every
Map-Register it sends; the Map-Server keeps the last nonce it accepted for each xTR-ID and
key, and a Map-Register whose nonce is not greater than that one MUST be dropped (a replay
attack could have occurred). The HMAC covers the nonce, so a replay cannot be given a new
one. We take that rule ("increasing") rather than a timestamp with a window (the LISP
security drafts' other choice): it needs no synchronised clocks between xTRs and the
Map-Server, and our ETR's nonce is the time in microseconds (or the last nonce plus one,
whichever is larger), so it keeps increasing across a restart of the ETR without the
persistent storage the RFC asks for.

Implementations from before RFC 9301 send random nonces (Open Overlay Router 1.3 does: see
tests/data) or zero. For them a site can choose "seen": a nonce already accepted from that
registrant within `window` seconds is a replay (random 64-bit nonces do not repeat), or
"off" (no check; needed for a registrant that always sends nonce 0).

`check()` answers "new" (accept it, then `commit()`), "repeat" (the same nonce as the last
accepted one, or one already seen) or "old" (smaller than the last accepted one).
"""
MODES = ("increasing", "seen", "off")
MASK64 = 2 ** 64 - 1


def next_nonce(last, now):
    """The next nonce of a sender that numbers its messages: the time in microseconds, or
    last + 1 if that is larger (never 0, never the same twice)."""
    return max(last + 1, int(now * 1_000_000)) & MASK64 or 1


class NonceMemory:
    """The nonces accepted per registrant (or per Map-Server), at most `max_keys` of them
    (least recently used forgotten first) and, in "seen" mode, `max_seen` nonces per key."""

    def __init__(self, window=3600.0, max_keys=100_000, max_seen=4096):
        self.window = window
        self.max_keys = max_keys
        self.max_seen = max_seen
        self.last = {}          # key -> last accepted nonce ("increasing")
        self.seen = {}          # key -> {nonce: time accepted} ("seen")

    def check(self, mode, key, nonce, now):
        if mode == "off":
            return "new"
        if mode == "increasing":
            last = self.last.get(key)
            if last is None or nonce > last:
                return "new"
            return "repeat" if nonce == last else "old"
        seen = self.seen.get(key)
        if seen is None:
            return "new"
        while seen:                                      # oldest first: drop the expired
            first = next(iter(seen))
            if seen[first] > now - self.window:
                break
            del seen[first]
        return "repeat" if nonce in seen else "new"

    def commit(self, mode, key, nonce, now):
        if mode == "increasing":
            self._put(self.last, key, nonce)
        elif mode == "seen":
            seen = self.seen.pop(key, None) or {}
            seen.pop(nonce, None)
            seen[nonce] = now
            if len(seen) > self.max_seen:
                del seen[next(iter(seen))]
            self._put(self.seen, key, seen)

    def _put(self, table, key, value):
        table.pop(key, None)
        if len(table) >= self.max_keys:
            del table[next(iter(table))]
        table[key] = value

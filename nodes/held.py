"""Packets that wait for a mapping: an ITR's map-cache miss holds the packet while its
Map-Request is out, as a neighbour table holds packets while it resolves an address
(`unres_qlen`), instead of dropping the first packets of every new destination. When the
map-cache changes, the data plane takes the held packets and encapsulates them again; a
packet that still misses waits on, until it is `hold_s` old.

Bounded three ways: packets per destination, packets in all, and age. What does not fit is
refused (the caller drops and counts it); what is too old is dropped when next seen.
"""
import collections
import time

PER_DESTINATION = 128    # packets held for one destination EID (Linux's unres_qlen: 101)
TOTAL = 2048             # packets held in all
HOLD_S = 1.0             # the ITR's first Map-Request timeout: what is older is dropped


class HeldPackets:
    def __init__(self, per_destination=PER_DESTINATION, total=TOTAL, hold_s=HOLD_S,
                 clock=time.monotonic):
        self.per_destination = per_destination
        self.total = total
        self.hold_s = hold_s
        self.clock = clock
        self._queue = collections.deque()      # (since, destination, packet), oldest first
        self._count = collections.Counter()    # destination -> packets held
        self.expired = 0                       # dropped for age, in all

    def __len__(self):
        return len(self._queue)

    def hold(self, destination, packet, since=None):
        """Keep `packet` (bytes) for `destination` (any hashable: the EID's bytes); `since`:
        when it was first held (a packet held again keeps its age). False when refused:
        full for that destination or in all, or already too old."""
        now = self.clock()
        self._expire(now)
        since = now if since is None else since
        if now - since >= self.hold_s or len(self._queue) >= self.total \
                or self._count[destination] >= self.per_destination:
            return False
        self._queue.append((since, destination, packet))
        self._count[destination] += 1
        return True

    def take(self):
        """Every held packet that is not too old, oldest first, as [(since, destination,
        packet)]; the queue is then empty."""
        self._expire(self.clock())
        out = list(self._queue)
        self._queue.clear()
        self._count.clear()
        return out

    def _expire(self, now):
        q = self._queue
        while q and now - q[0][0] >= self.hold_s:
            _since, dst, _pkt = q.popleft()
            self._count[dst] -= 1
            if not self._count[dst]:
                del self._count[dst]
            self.expired += 1

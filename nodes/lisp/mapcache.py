"""The map-cache: EID prefix -> RLOC set, with longest-prefix match (RFC 9300 and RFC 9301).

An ITR looks up the destination EID of every packet here. A hit gives an entry whose locators
(RLOCs) say where to tunnel the packet; a negative entry (no locators) says what to do instead
(its `action`); a miss means "send a Map-Request". The Map-Server reuses the same class for its
table of registered EID prefixes.

How a lookup works
    Each (instance ID, address family) has its own table, so IIDs and families never mix.
    A prefix of length L is stored in a dict under the int (first L bits) | (1 << L); the
    extra 1 bit says the length, so 10.0.0.0/8 and 10.0.0.0/16 get different keys. To look up
    an address, try each prefix length present, longest first: shift the address, add the
    length bit, probe the dict, stop at the first live entry. That is longest-prefix match.

    To keep the list of lengths to try short, a prefix of /16 or longer sits in the "bucket"
    of its first 16 bits, and each bucket knows which lengths occur in it; shorter prefixes
    sit in the "root". A lookup tries the lengths of its own bucket only, then the root
    entries that cover that bucket, which the bucket remembers (recomputed after the root
    changes). With a million random IPv4 prefixes that is about ten dict probes, a few
    microseconds in CPython.

Time
    Nothing here reads a clock: every method that needs the time takes `now` (seconds, a
    float, from any monotonic clock the caller likes). An entry is expired when
    now >= entry.expires. Lookups skip expired entries (a covering prefix then matches);
    `expire(now)` removes them: call it from a timer, e.g. once a second.

Size bound and eviction: second chance, an approximation of LRU
    The cache never holds more than `max_entries` entries. Entries are kept oldest first.
    A lookup hit only sets the entry's "used" flag, the cheapest bookkeeping there is on the
    per-packet path. Inserting a new prefix into a full cache first drops one already-expired
    entry if there is one. Otherwise it looks at the oldest entry: if its flag is set, the
    flag is cleared and the entry goes to the back (its second chance); the first entry
    found without the flag is evicted and counted in `evictions`. So an entry used since the
    last pass survives, as with LRU (least recently used). It costs O(1) amortised: each move
    to the back uses up one flag that a lookup set.
"""
import bisect
import heapq
import ipaddress
import itertools
import struct
import zlib
from collections import OrderedDict
from enum import IntEnum

__all__ = ["Action", "MapCache", "MapCacheEntry", "flow_key", "largest_hole"]


class Action(IntEnum):
    """The ACT field of a mapping record (RFC 9301 5.4): what to do with a negative entry."""
    NO_ACTION = 0
    NATIVELY_FORWARD = 1
    SEND_MAP_REQUEST = 2
    DROP = 3                  # Drop/No-Reason
    DROP_POLICY_DENIED = 4
    DROP_AUTH_FAILURE = 5


_ACTIONS = tuple(Action)
BUCKET_BITS = 16              # prefixes at least this long are also grouped by their first bits
_PORTS = struct.Struct("!BHH")
_GOLDEN = 0x9E3779B1          # 2**32 / golden ratio: mixes the CRC's bits (Fibonacci hashing)


def flow_key(src, dst, proto=0, sport=0, dport=0):
    """Pack an inner 5-tuple into bytes, the input of `MapCacheEntry.select_locator`.

    src and dst are ipaddress objects (IPv4Address, IPv6Address) or their packed bytes;
    proto is the IP protocol number, sport and dport the ports (0 when there are none).
    """
    s = src if isinstance(src, (bytes, bytearray)) else src.packed
    d = dst if isinstance(dst, (bytes, bytearray)) else dst.packed
    return bytes(s) + bytes(d) + _PORTS.pack(proto, sport, dport)


class MapCacheEntry:
    """One mapping: an EID prefix in an instance ID, its locators, and how long it is valid.

    `locators` are the caller's objects (with .address, .priority, .weight, .reachable) and are
    never modified. The cache keeps its own view of which ones are up in `reachable`, a tuple
    parallel to `locators`, which starts from each locator's .reachable and is changed by
    `MapCache.set_locator_reachable`.
    """
    __slots__ = ("iid", "prefix", "locators", "reachable", "status", "action", "map_version",
                 "ttl", "created", "expires", "data", "_choice", "_alive", "_used")

    def __init__(self, iid, prefix, locators, ttl, now, action=0, map_version=0, data=None):
        self.iid = iid
        self.prefix = prefix
        self.locators = tuple(locators)
        self.reachable = tuple(bool(loc.reachable) for loc in self.locators)
        self.status = None        # the site's own Locator-Status-Bits, last received (or None)
        self.action = _ACTIONS[action] if 0 <= action < len(_ACTIONS) else action
        self.map_version = map_version
        self.ttl = ttl
        self.created = now
        self.expires = now + ttl
        self.data = data          # free for the owner, e.g. the Map-Server's registration
        self._choice = None       # selection table, built on first use (see _build_choice)
        self._alive = True        # False once the entry left its cache
        self._used = False        # set by a lookup hit, cleared by the eviction hand

    @property
    def is_negative(self):
        """True when the entry has no locators: packets follow `action` instead."""
        return not self.locators

    def is_expired(self, now):
        return now >= self.expires

    def usable_locators(self):
        """The locators a packet may use: reachable, priority not 255, and an IPv4 or IPv6
        address (never an LCAF the ITR did not resolve to one)."""
        status = self.status or (True,) * len(self.locators)
        return [loc for loc, up, said in zip(self.locators, self.reachable, status)
                if up and said and loc.priority != 255
                and getattr(loc.address, "version", None) in (4, 6)]

    def set_status(self, status):
        """The Locator-Status-Bits the site itself sent (RFC 9300 section 5.3), a tuple of
        bools parallel to `locators`, or None (no status). A locator its site says is down
        is not used, whatever probing says, until the site says it is up again. Returns
        True if anything changed."""
        status = None if status is None else tuple(bool(b) for b in status)
        if status == self.status:
            return False
        self.status = status
        self._choice = None
        return True

    def set_reachable(self, address, up):
        """Mark every locator with this address up or down. Returns True if anything changed."""
        new = tuple(up if loc.address == address else r
                    for loc, r in zip(self.locators, self.reachable))
        if new == self.reachable:
            return False
        self.reachable = new
        self._choice = None       # rebuilt on the next select_locator
        return True

    def _build_choice(self):
        """Build (locators, cumulative weights, total weight) for select_locator.

        Candidates are the usable locators with the lowest priority value. They are sorted by
        address, so the choice does not depend on the order the Map-Reply listed them in.
        A weight of 0 gets no traffic, unless all weights are 0: then all share equally.
        """
        usable = self.usable_locators()
        if not usable:
            self._choice = ((), (), 0)
            return self._choice
        best = min(loc.priority for loc in usable)
        cands = sorted((loc for loc in usable if loc.priority == best),
                       key=lambda loc: (loc.address.version, int(loc.address)))
        weights = [loc.weight for loc in cands]
        if not any(weights):
            weights = [1] * len(cands)
        cum = tuple(itertools.accumulate(weights))
        self._choice = (tuple(cands), cum, cum[-1])
        return self._choice

    def select_locator(self, flow_key):
        """The RLOC for this flow, or None when no locator is usable.

        Lowest priority first, then by weight: the CRC-32 of flow_key (stable across runs and
        processes, unlike hash()) picks a point in [0, total weight), and the locator whose
        share of the weights holds that point wins. The same flow always gets the same
        locator, so its packets are not reordered.
        """
        choice = self._choice or self._build_choice()
        cands, cum, total = choice
        if len(cands) <= 1:
            return cands[0] if cands else None
        h = (zlib.crc32(flow_key) * _GOLDEN) & 0xFFFFFFFF
        return cands[bisect.bisect_right(cum, (h * total) >> 32)]

    def __repr__(self):
        what = f"{len(self.locators)} locators" if self.locators else f"negative {self.action!r}"
        return (f"<MapCacheEntry iid={self.iid} {self.prefix} {what} "
                f"map_version={self.map_version} expires={self.expires:g}>")


class _Bucket:
    """Entries whose prefixes share their first 16 bits (or, for the root, are shorter)."""
    __slots__ = ("entries", "counts", "levels", "cover", "gen")

    def __init__(self):
        self.entries = {}     # prefix key (see _Table) -> entry
        self.counts = {}      # prefix length -> number of entries of that length here
        self.levels = ()      # (shift, marker) per length present, longest first
        self.cover = ()       # the root's entries covering this bucket, longest first ...
        self.gen = -1         # ... valid while gen == the table's root_gen


class _Table:
    """The entries of one (instance ID, family), indexed for longest-prefix match (see the
    module docstring). Prefixes are ints here: net is the network address, plen its length."""
    __slots__ = ("width", "shift", "level", "root", "buckets", "root_gen", "size")

    def __init__(self, width):
        self.width = width    # 32 or 128
        self.shift = width - BUCKET_BITS
        # (shift, marker) per length, shared by every bucket's levels: fewer objects to
        # visit per lookup, which matters more than one would think (cache misses)
        self.level = [(width - n, 1 << n) for n in range(width + 1)]
        self.root = _Bucket()
        self.buckets = {}     # first 16 bits -> _Bucket
        self.root_gen = 0     # bumped whenever root changes, to refresh the buckets' covers
        self.size = 0

    def _key(self, plen, net):
        return (net >> (self.width - plen)) | (1 << plen)

    def _bucket(self, plen, net, create=False):
        if plen < BUCKET_BITS:
            self.root_gen += 1
            return self.root
        top = net >> self.shift
        b = self.buckets.get(top)
        if b is None and create:
            b = self.buckets[top] = _Bucket()
        return b

    def get(self, plen, net):
        b = self.buckets.get(net >> self.shift) if plen >= BUCKET_BITS else self.root
        return None if b is None else b.entries.get(self._key(plen, net))

    def _set_levels(self, b):
        b.levels = tuple(self.level[n] for n in sorted(b.counts, reverse=True))

    def add(self, plen, net, entry):
        """Add entry for the prefix net/plen (net an int); it must not be present."""
        b = self._bucket(plen, net, create=True)
        b.entries[self._key(plen, net)] = entry
        n = b.counts.get(plen, 0)
        b.counts[plen] = n + 1
        if n == 0:
            self._set_levels(b)
        self.size += 1

    def replace(self, plen, net, entry):
        self._bucket(plen, net).entries[self._key(plen, net)] = entry

    def discard(self, plen, net):
        b = self._bucket(plen, net)
        del b.entries[self._key(plen, net)]
        b.counts[plen] -= 1
        if b.counts[plen] == 0:
            del b.counts[plen]
            self._set_levels(b)
            if not b.counts and b is not self.root:
                del self.buckets[net >> self.shift]
        self.size -= 1

    def _scan(self, b, a, now):
        """The first live entry of bucket b containing int address a, longest first."""
        d = b.entries
        for shift, marker in b.levels:
            e = d.get((a >> shift) | marker)
            if e is not None and now < e.expires:
                return e
        return None

    def match(self, a, now):
        """The live entry with the longest prefix containing int address a, or None."""
        b = self.buckets.get(a >> self.shift)
        if b is None:
            return self._scan(self.root, a, now)
        d = b.entries
        for shift, marker in b.levels:
            e = d.get((a >> shift) | marker)
            if e is not None and now < e.expires:
                return e
        if b.gen != self.root_gen:            # refresh the cached covering root entries
            root = self.root.entries
            b.cover = tuple(e for e in (root.get((a >> shift) | marker)
                                        for shift, marker in self.root.levels) if e is not None)
            b.gen = self.root_gen
        for e in b.cover:
            if now < e.expires:
                return e
        return None


def _as_network(prefix):
    if isinstance(prefix, (ipaddress.IPv4Network, ipaddress.IPv6Network)):
        return prefix
    return ipaddress.ip_network(prefix)


class MapCache:
    """EID-prefix -> locators, per instance ID, IPv4 and IPv6, with TTLs and a size bound.

    See the module docstring for how lookups and eviction work.
    """

    def __init__(self, max_entries=100_000):
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.max_entries = max_entries
        self.evictions = 0
        self._tables = {}             # (iid, ip version) -> _Table
        self._order = OrderedDict()     # entry -> None, oldest first (the eviction order)
        self._heap = []               # (expires, seq, entry), soonest first; may hold dead entries
        self._seq = itertools.count()
        self._by_rloc = {}            # locator address -> set of entries that list it
        self._expired = []            # expired entries dropped by insert, for the next expire()

    # -- changing the cache --------------------------------------------------------------

    def insert(self, iid, prefix, locators, ttl, now, action=0, map_version=0, data=None):
        """Add a mapping, replacing any entry for the same (iid, prefix). Returns the new entry.

        ttl is in seconds (the wire carries minutes). No locators makes a negative entry.
        """
        prefix = _as_network(prefix)
        if ttl < 0:
            raise ValueError(f"negative ttl {ttl}")
        key = (iid, prefix.version)
        plen = prefix.prefixlen
        net = int(prefix.network_address)
        t = self._tables.get(key)
        old = t.get(plen, net) if t is not None else None
        entry = MapCacheEntry(iid, prefix, locators, ttl, now, action, map_version, data)
        if old is not None:
            self._forget(old)
            t.replace(plen, net, entry)           # same key: the index does not change
        else:
            if len(self._order) >= self.max_entries:
                self._make_room(now)
                t = self._tables.get(key)         # making room may have emptied the table
            if t is None:
                t = self._tables[key] = _Table(prefix.max_prefixlen)
            t.add(plen, net, entry)
        self._order[entry] = None
        heapq.heappush(self._heap, (entry.expires, next(self._seq), entry))
        for loc in entry.locators:
            s = self._by_rloc.get(loc.address)
            if s is None:
                s = self._by_rloc[loc.address] = set()
            s.add(entry)
        if len(self._heap) > 2 * len(self._order) + 64:
            self._compact_heap()
        return entry

    def remove(self, iid, prefix):
        """Remove the entry for exactly (iid, prefix). Returns True if there was one."""
        e = self.get(iid, prefix)
        if e is None:
            return False
        self._remove_entry(e)
        return True

    def expire(self, now):
        """Remove and return every entry expired at `now` (now >= expires), soonest first."""
        out, self._expired = self._expired, []
        while True:
            e = self._pop_expired(now)
            if e is None:
                return out
            out.append(e)

    def set_locator_reachable(self, address, reachable):
        """Mark a locator up or down in every entry that lists it. Returns how many entries
        changed. A down locator is skipped by select_locator until it is marked up again."""
        if isinstance(address, str):
            address = ipaddress.ip_address(address)
        changed = 0
        for e in self._by_rloc.get(address, ()):
            if e.set_reachable(address, bool(reachable)):
                changed += 1
        return changed

    def clear(self):
        """Remove every entry (the eviction count is kept)."""
        evictions = self.evictions
        self.__init__(self.max_entries)
        self.evictions = evictions

    # -- reading the cache ---------------------------------------------------------------

    def lookup(self, iid, address, now):
        """Longest-prefix match of an IPv4Address or IPv6Address in instance ID iid.

        Returns the live entry with the longest prefix containing the address, or None.
        Expired entries count as absent. A hit marks the entry used (see eviction above).
        """
        return self.lookup_int(iid, address.version, int(address), now)

    def lookup_int(self, iid, version, addr, now):
        """`lookup` for an address given as an int, with its IP version (4 or 6)."""
        t = self._tables.get((iid, version))
        if t is None:
            return None
        e = t.match(addr, now)
        if e is not None:
            e._used = True
        return e

    def get(self, iid, prefix, now=None):
        """The entry for exactly (iid, prefix), or None. With `now`, expired counts as absent.
        Unlike lookup, this does not mark the entry used."""
        prefix = _as_network(prefix)
        t = self._tables.get((iid, prefix.version))
        if t is None:
            return None
        e = t.get(prefix.prefixlen, int(prefix.network_address))
        if e is not None and now is not None and now >= e.expires:
            return None
        return e

    def entries(self):
        """All entries (expired ones too, until expire() runs), sorted by iid, family, prefix."""
        return sorted(self._order, key=lambda e: (e.iid, e.prefix.version,
                                                int(e.prefix.network_address),
                                                e.prefix.prefixlen))

    def __iter__(self):
        return iter(self.entries())

    def __len__(self):
        return len(self._order)

    def __repr__(self):
        return f"<MapCache {len(self)}/{self.max_entries} entries, {self.evictions} evictions>"

    # -- internals -----------------------------------------------------------------------

    def _forget(self, e):
        """Unlink e from the eviction order and the locator index (not from its table)."""
        del self._order[e]
        for loc in e.locators:
            s = self._by_rloc.get(loc.address)
            if s is not None:
                s.discard(e)
                if not s:
                    del self._by_rloc[loc.address]
        e._alive = False

    def _remove_entry(self, e):
        key = (e.iid, e.prefix.version)
        t = self._tables[key]
        t.discard(e.prefix.prefixlen, int(e.prefix.network_address))
        if t.size == 0:
            del self._tables[key]
        self._forget(e)

    def _pop_expired(self, now):
        """Remove and return the live entry that expires first, if it has expired."""
        heap = self._heap
        while heap:
            expires, _, e = heap[0]
            if not e._alive:
                heapq.heappop(heap)               # replaced or removed earlier
            elif expires <= now:
                heapq.heappop(heap)
                self._remove_entry(e)
                return e
            else:
                return None
        return None

    def _make_room(self, now):
        e = self._pop_expired(now)
        if e is not None:
            if len(self._expired) < self.max_entries:
                self._expired.append(e)
            return
        order = self._order
        while True:                       # second chance: skip (once) entries used lately
            victim = next(iter(order))
            if not victim._used:
                break
            victim._used = False
            order.move_to_end(victim)
        self._remove_entry(victim)
        self.evictions += 1

    def _compact_heap(self):
        self._heap = [item for item in self._heap if item[2]._alive]
        heapq.heapify(self._heap)


def largest_hole(eid_space, address):
    """The largest prefix containing `address` that overlaps none of the prefixes in
    `eid_space`: what a Map-Resolver returns in a negative Map-Reply for a non-EID address.

    Only prefixes of the address's family matter. Raises ValueError if the address is inside
    the EID space.

    A configured prefix p overlaps a candidate prefix of length L around the address exactly
    when p lies inside it, i.e. when the address and p agree on their first L bits. So the
    answer's length is one more than the longest such agreement over all p (0 if there is none).
    """
    if not isinstance(address, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
        address = ipaddress.ip_address(address)
    width = address.max_prefixlen
    a = int(address)
    length = 0
    for p in eid_space:
        p = _as_network(p)
        if p.version != address.version:
            continue
        if address in p:
            raise ValueError(f"{address} is inside the EID prefix {p}")
        common = width - (a ^ int(p.network_address)).bit_length()   # < p.prefixlen here
        length = max(length, common + 1)
    cls = ipaddress.IPv4Network if address.version == 4 else ipaddress.IPv6Network
    return cls((a, length), strict=False)

"""Benchmark of the map-cache: insert time and lookup speed with many random prefixes.

    .venv/bin/python bench/bench_mapcache.py            # 1,000,000 IPv4 + 100,000 IPv6 prefixes
    .venv/bin/python bench/bench_mapcache.py --quick    # ten times fewer

IPv4 prefixes are /8 to /32 (each length equally likely, duplicates dropped), outside
224.0.0.0/3 so that lookups there miss; IPv6 prefixes are /16 to /128 inside 2000::/3. Half the looked-up addresses lie
inside a random loaded prefix (a hit at that length or longer), half are uniform random
addresses (for IPv4 mostly hits on short prefixes, for IPv6 mostly misses).
"""
import gc
import ipaddress
import json
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from nodes.lisp.mapcache import MapCache, flow_key  # noqa: E402

SEED = 9300
LOOKUPS = 200_000


class _Loc:
    __slots__ = ("address", "priority", "weight", "reachable")

    def __init__(self, address):
        self.address, self.priority, self.weight, self.reachable = address, 1, 50, True


def _random_prefixes(rng, count, width, min_len, max_len, draw):
    """count distinct (network int, length), each length uniform, around addresses from draw()."""
    seen = set()
    ones = (1 << width) - 1
    while len(seen) < count:
        plen = rng.randint(min_len, max_len)
        seen.add((draw() & (ones ^ (ones >> plen)), plen))
    return sorted(seen)


def _family(rng, version, count, now, lookups):
    if version == 4:
        width = 32
        cls_net, cls_addr = ipaddress.IPv4Network, ipaddress.IPv4Address
        # anywhere below 224.0.0.0: the first three bits are 000 to 110
        raw = _random_prefixes(rng, count, 32, 8, 32,
                               lambda: rng.randrange(7) << 29 | rng.getrandbits(29))
    else:
        width = 128
        cls_net, cls_addr = ipaddress.IPv6Network, ipaddress.IPv6Address
        raw = _random_prefixes(rng, count, 128, 16, 128,
                               lambda: 1 << 125 | rng.getrandbits(125))       # 2000::/3
    rng.shuffle(raw)
    nets = [cls_net(p) for p in raw]
    rlocs = [_Loc(ipaddress.IPv4Address(f"192.0.2.{i}")) for i in range(1, 9)]
    locsets = [[rlocs[i], rlocs[(i + 1) % 8]] for i in range(8)]

    mc = MapCache(max_entries=count)
    t0 = time.perf_counter()
    for i, net in enumerate(nets):
        mc.insert(0, net, locsets[i & 7], 86400.0, now)
    insert_s = time.perf_counter() - t0

    addrs = []
    for i in range(lookups):
        if i % 2:
            a, plen = raw[rng.randrange(count)]
            a |= rng.getrandbits(width - plen) if plen < width else 0
        else:
            a = rng.getrandbits(width)
        addrs.append(cls_addr(a))
    ints = [int(a) for a in addrs]

    gc.collect()          # start each timing with no garbage-collector debt from the loading
    lookup = mc.lookup
    t0 = time.perf_counter()
    hits = 0
    for a in addrs:
        if lookup(0, a, now) is not None:
            hits += 1
    lookup_s = time.perf_counter() - t0

    lookup_int = mc.lookup_int
    t0 = time.perf_counter()
    for a in ints:
        lookup_int(0, version, a, now)
    lookup_int_s = time.perf_counter() - t0

    # per-packet RLOC choice on the entries found (two locators, weights 50/50); the first
    # call on an entry builds its selection table, so time a second pass
    found = [e for e in map(lambda a: mc.lookup(0, a, now), addrs[:lookups // 4]) if e]
    keys = [flow_key(cls_addr(i), a, 6, 1024 + i % 50000, 80)
            for i, a in enumerate(addrs[:len(found)])]
    for e, k in zip(found, keys):
        e.select_locator(k)
    t0 = time.perf_counter()
    for e, k in zip(found, keys):
        e.select_locator(k)
    select_s = time.perf_counter() - t0

    p = f"ipv{version}_"
    return {
        p + "prefixes": len(mc),
        p + "insert_s": round(insert_s, 3),
        p + "insert_us": round(insert_s / count * 1e6, 3),
        p + "lookups": lookups,
        p + "hit_ratio": round(hits / lookups, 3),
        p + "lookup_us": round(lookup_s / lookups * 1e6, 3),
        p + "lookups_per_s": round(lookups / lookup_s),
        p + "lookup_int_us": round(lookup_int_s / lookups * 1e6, 3),
        p + "select_locator_us": round(select_s / max(len(found), 1) * 1e6, 3),
    }


def run(quick=False):
    """Load random prefixes, time inserts and lookups; return the numbers as a dict."""
    rng = random.Random(SEED)
    scale = 10 if quick else 1
    lookups = LOOKUPS // scale
    result = {"quick": quick, "python": sys.version.split()[0]}
    result.update(_family(rng, 4, 1_000_000 // scale, 1000.0, lookups))
    result.update(_family(rng, 6, 100_000 // scale, 1000.0, lookups))
    return result


if __name__ == "__main__":
    print(json.dumps(run(quick="--quick" in sys.argv[1:]), indent=2))

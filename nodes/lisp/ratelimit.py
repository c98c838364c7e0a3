"""Token buckets for the control plane's rate limits (RFC 9301 section 5.3 spirit).

A bucket holds up to `burst` tokens and gains `rate` tokens a second; each message takes one.
Time comes in as `now` (the core reads no clock). `KeyedBuckets` keeps one bucket per key
(a source RLOC, a destination EID), bounded in number: when full, the least recently used
key is forgotten, which can only make that key's next message more likely to pass.
"""


class TokenBucket:
    __slots__ = ("rate", "burst", "tokens", "last")

    def __init__(self, rate, burst=None, now=None):
        self.rate = float(rate)
        self.burst = float(burst if burst is not None else max(rate, 1.0))
        self.tokens = self.burst
        self.last = now

    def take(self, now):
        """True (and one token spent) when a message may go now. A rate of 0 is no limit."""
        if self.rate <= 0:
            return True
        if self.last is not None and now > self.last:
            self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
        if self.last is None or now > self.last:
            self.last = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False

    def next_token(self, now):
        """When the next token will be there (now, if one is)."""
        if self.rate <= 0 or self.tokens >= 1.0:
            return now
        return now + (1.0 - self.tokens) / self.rate


class KeyedBuckets:
    """One TokenBucket per key, at most `max_keys` of them."""

    def __init__(self, rate, burst=None, max_keys=10_000):
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        self.buckets = {}

    def take(self, key, now):
        if self.rate <= 0:
            return True
        bucket = self.buckets.pop(key, None)
        if bucket is None:
            bucket = TokenBucket(self.rate, self.burst, now)
            if len(self.buckets) >= self.max_keys:
                del self.buckets[next(iter(self.buckets))]
        self.buckets[key] = bucket              # most recently used last
        return bucket.take(now)


class RequestLimiter:
    """The Map-Resolver's and Map-Server's limit on Map-Requests it answers: `per_source`
    a second from one source RLOC and `rate` a second in all (0: no limit). A request over
    either limit is dropped and counted (map_request_rate_limited_source or _global): an
    answer goes to whatever ITR-RLOC the request names, so answering a flood would make the
    mapping system a reflector."""

    def __init__(self, rate=1000.0, per_source=100.0):
        self.total = TokenBucket(rate)
        self.sources = KeyedBuckets(per_source)

    def allow(self, src, now, counters):
        if not self.sources.take(src, now):
            counters["map_request_rate_limited_source"] += 1
        elif not self.total.take(now):
            counters["map_request_rate_limited_global"] += 1
        else:
            return True
        counters["map_request_rate_limited"] += 1
        return False

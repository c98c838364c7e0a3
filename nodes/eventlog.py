"""Structured event log: one JSON object per line (JSON Lines), one file per node.

    log = EventLog("/run/lisp-lab/xtr1.events.jsonl", "xtr1")
    log.write("registered", eid=ipaddress.ip_network("10.1.0.5/32"), rlocs=[rloc])
    log.close()

gives the line

    {"time": 1718000000.123, "node": "xtr1", "event": "registered", "eid": "10.1.0.5/32", ...}

"time" is Unix time (a float, from `clock`, time.time by default) so the logs of all nodes
and the packet captures share one time line. Values JSON cannot carry are converted:
ipaddress objects and unknown objects to str, bytes to hex, enums to their name, sets and
tuples to lists (see nodes.control.jsonable). A field named like one of the three fixed keys
is written with a trailing underscore ("time_") rather than replacing it.

The file is opened in append mode and line-buffered: each event reaches the operating system
as one write() of a complete line, so a crash of the daemon loses nothing already written.
With path None the log writes nothing but still counts events (count, counts), so a node can
run without a log file.

Bounded (a flood must not fill the disk): the events one received datagram or LAN frame can
cause without changing any state (PER_DATAGRAM: control_received, control_sent, malformed,
rejected registrations, ...) are rate-limited per event name (a token bucket: `burst` at
once, then `rate` per second), and none of them is written once the file has reached
`max_bytes`. Every other event (registrations, map-cache changes, SMRs, routes, the
daemon's own errors, start and stop) is always written. What was not written is counted per
event name (not_logged, not_logged_total; the daemon shows the total with its counters) and
said in the log itself: an "events_not_logged" line with the running totals at most once
per SUMMARY_INTERVAL while events are being dropped, and one at close. The defaults let a
lab run at its normal pace (a few control messages a second per node) lose nothing.

read_events(path) reads a log back, for the analysis side and for tests.
"""
import json
import os
import threading
import time
from collections import Counter

from .control import jsonable

__all__ = ["EventLog", "read_events", "PER_DATAGRAM"]

_FIXED = ("time", "node", "event")

# Events that one datagram (control port) or LAN frame can cause and that change no state:
# a flood makes one of them per packet. Their counts are in the daemon's counters anyway.
PER_DATAGRAM = frozenset({
    "control_received", "control_sent", "malformed", "unexpected_message",
    "map_request_not_ours", "map_reply_sent", "map_reply_ignored", "map_request_sent",
    "no_map_resolver", "negative_reply", "proxy_reply", "request_forwarded",
    "register_rejected", "register_ignored", "notify_rejected", "notify_acked",
    "notify_ack_ignored", "dynamic_eid_rejected",
})
RATE = 20.0                 # per-datagram events per second and event name, sustained
BURST = 200                 # ... and at once
MAX_BYTES = 16 << 20        # no per-datagram event once the file is this large
SUMMARY_INTERVAL = 1.0      # seconds between two "events_not_logged" lines, at most


class EventLog:
    def __init__(self, path, node, clock=time.time, *, monotonic=time.monotonic,
                 rate=RATE, burst=BURST, max_bytes=MAX_BYTES, per_datagram=PER_DATAGRAM):
        if not rate >= 0 or not burst >= 1 or not max_bytes >= 1:
            raise ValueError(f"event log bounds must be positive: rate={rate!r} "
                             f"burst={burst!r} max_bytes={max_bytes!r}")
        self.path = None if path is None else os.fspath(path)
        self.node = node
        self.clock = clock
        self.monotonic = monotonic
        self.rate = float(rate)
        self.burst = int(burst)
        self.max_bytes = int(max_bytes)
        self.per_datagram = frozenset(per_datagram)
        self.count = 0              # events offered (written, dropped, or with no file)
        self.counts = Counter()     # per event name
        self.not_logged = Counter() # per-datagram events not written, per event name
        self.size = 0               # bytes in the file (what was there, plus ours)
        self._buckets = {}          # event name -> [tokens, when last refilled]
        self._summary_due = None    # when the next summary may be written
        self._summarised = 0        # not_logged_total in the last summary
        self._lock = threading.Lock()
        self._file = None
        if self.path is not None:
            parent = os.path.dirname(os.path.abspath(self.path))
            os.makedirs(parent, exist_ok=True)
            self._file = open(self.path, "a", buffering=1, encoding="utf-8")
            self.size = self._file.tell()

    @property
    def not_logged_total(self):
        return sum(self.not_logged.values())

    def write(self, event, /, **fields):
        """Append one event (unless it is a per-datagram one over its bound: then count it).
        Never raises for odd field values; does nothing after close()."""
        event = str(event)
        with self._lock:
            self.count += 1
            self.counts[event] += 1
            if event in self.per_datagram and not self._admit(event):
                self.not_logged[event] += 1
                self._maybe_summarise()
                return
        record = {"time": float(self.clock()), "node": self.node, "event": event}
        for key, value in fields.items():
            while key in record:
                key += "_"
            record[key] = jsonable(value)
        line = json.dumps(record, separators=(",", ":"), allow_nan=False) + "\n"
        with self._lock:
            self._append(line)
            self._maybe_summarise()

    def _admit(self, event):
        """(lock held) May per-datagram event `event` be written now? Takes a token."""
        if self.size >= self.max_bytes:
            return False
        now = self.monotonic()
        bucket = self._buckets.get(event)
        if bucket is None:
            bucket = self._buckets[event] = [float(self.burst), now]
        tokens = min(float(self.burst), bucket[0] + (now - bucket[1]) * self.rate)
        bucket[1] = now
        if tokens < 1.0:
            bucket[0] = tokens
            return False
        bucket[0] = tokens - 1.0
        return True

    def _append(self, line):
        if self._file is not None:
            self._file.write(line)
            self.size += len(line.encode("utf-8"))

    def _maybe_summarise(self, force=False):
        """(lock held) Write the running totals of what was not logged, when there is news
        and the last summary is SUMMARY_INTERVAL old (or `force`)."""
        total = self.not_logged_total
        if total == self._summarised:
            return
        now = self.monotonic()
        if not force and self._summary_due is not None and now < self._summary_due:
            return
        self._summary_due = now + SUMMARY_INTERVAL
        self._summarised = total
        record = {"time": float(self.clock()), "node": self.node,
                  "event": "events_not_logged", "total": total,
                  "by_event": dict(sorted(self.not_logged.items()))}
        self._append(json.dumps(record, separators=(",", ":")) + "\n")

    def close(self):
        with self._lock:
            if self._file is not None:
                self._maybe_summarise(force=True)
                self._file.close()
                self._file = None

    @property
    def closed(self):
        return self._file is None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return f"<EventLog {self.node} {self.path or '(no file)'} {self.count} events>"


def read_events(path):
    """All events of a log file, in order, as dicts.

    An incomplete last line (the writer died in the middle of it) is skipped; any other line
    that is not a JSON object raises ValueError naming the file and line number.
    """
    events = []
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    last = len(lines) - 1           # the text after the final newline ("" if complete)
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            ev = json.loads(line)
            if not isinstance(ev, dict):
                raise ValueError("not a JSON object")
        except ValueError as e:
            if n - 1 == last:
                break               # a truncated final line
            raise ValueError(f"{path}:{n}: bad event line: {e}") from None
        events.append(ev)
    return events

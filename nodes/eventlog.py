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

read_events(path) reads a log back, for the analysis side and for tests.
"""
import json
import os
import threading
import time
from collections import Counter

from .control import jsonable

__all__ = ["EventLog", "read_events"]

_FIXED = ("time", "node", "event")


class EventLog:
    def __init__(self, path, node, clock=time.time):
        self.path = None if path is None else os.fspath(path)
        self.node = node
        self.clock = clock
        self.count = 0              # events written (or, with no file, that would have been)
        self.counts = Counter()     # per event name
        self._lock = threading.Lock()
        self._file = None
        if self.path is not None:
            parent = os.path.dirname(os.path.abspath(self.path))
            os.makedirs(parent, exist_ok=True)
            self._file = open(self.path, "a", buffering=1, encoding="utf-8")

    def write(self, event, /, **fields):
        """Append one event. Never raises for odd field values; does nothing after close()."""
        record = {"time": float(self.clock()), "node": self.node, "event": str(event)}
        for key, value in fields.items():
            while key in record:
                key += "_"
            record[key] = jsonable(value)
        line = json.dumps(record, separators=(",", ":"), allow_nan=False) + "\n"
        with self._lock:
            self.count += 1
            self.counts[record["event"]] += 1
            if self._file is not None:
                self._file.write(line)

    def close(self):
        with self._lock:
            if self._file is not None:
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

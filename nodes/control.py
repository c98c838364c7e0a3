"""The node daemon's local control socket, and the tables it serves.

Protocol (a Unix stream socket, one per node, by default /run/lisp-lab/NODE.sock)
    The client sends one JSON object per line (UTF-8, at most MAX_REQUEST bytes), e.g.

        {"show": "map-cache"}   {"show": "registrations"}   {"show": "counters"}
        {"show": "config"}

    and the server answers each with one JSON line, in order:

        {"ok": true, "data": ...}         or        {"ok": false, "error": "..."}

    A connection may carry any number of requests; any number of clients may be connected.
    A bad request (not JSON, not an object, too long) or a handler that raises gets an
    ok:false reply; the server itself never stops because of them.

Server side (asyncio, for the daemon):
    server = await start_control_server(path, handler)   # handler(request) -> reply dict
    ...
    server.close(); await server.wait_closed()           # the socket file is removed

Client side (plain blocking sockets, for `lisp-lab show`):
    query(path, {"show": "counters"}) -> {"ok": True, "data": {...}}, or raises ControlError

Table helpers: map_cache_rows() and registration_rows() turn the core's map-cache and
Map-Server registrations into JSON-ready rows, so the daemon and the CLI agree on one format.
"""
import asyncio
import errno
import json
import math
import os
import socket
import stat
import time
from enum import Enum

__all__ = ["ControlClient", "ControlError", "ControlServer", "DEFAULT_DIR", "MAX_REPLY",
           "MAX_REQUEST", "action_name", "health_counters", "jsonable", "map_cache_rows",
           "query", "registration_rows", "socket_path", "start_control_server"]

DEFAULT_DIR = "/run/lisp-lab"
MAX_REQUEST = 64 * 1024          # bytes per request line, newline excluded
MAX_REPLY = 64 * 1024 * 1024     # bytes per reply line the client accepts


class ControlError(Exception):
    """A control request failed: node not running, no answer, bad reply, or ok:false."""


def socket_path(node, directory=DEFAULT_DIR):
    """The control socket of a node: DIRECTORY/NODE.sock."""
    return os.path.join(directory, f"{node}.sock")


# --- JSON conversion ------------------------------------------------------------------

def jsonable(value):
    """`value` with everything JSON cannot carry turned into something it can.

    ipaddress objects (addresses, networks, interfaces) and anything unknown become str,
    bytes become hex, enums their name, sets and tuples lists, dict keys str; floats that
    are not finite become the strings "inf", "-inf", "nan" (strict JSON has no such numbers).
    """
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, Enum):
        return value.name
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    if isinstance(value, dict):
        return {_key(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted((jsonable(v) for v in value), key=lambda v: (type(v).__name__, str(v)))
    return str(value)


def _key(k):
    if isinstance(k, str):
        return k
    k = jsonable(k)
    return k if isinstance(k, str) else json.dumps(k)


def _dumps(obj):
    return json.dumps(jsonable(obj), separators=(",", ":"), allow_nan=False)


# --- server ---------------------------------------------------------------------------

def _error(message):
    return {"ok": False, "error": message}


class ControlServer:
    """A running control socket. close() stops listening, drops the connected clients and
    removes the socket file; wait_closed() waits until all that is done."""

    def __init__(self, path, handler, max_request=MAX_REQUEST):
        self.path = os.fspath(path)
        self.handler = handler
        self.max_request = max_request
        self.requests = 0            # requests answered (good or bad)
        self.errors = 0              # of which ok:false
        self._server = None
        self._inode = None           # (st_dev, st_ino) of our socket file
        self._writers = set()
        self._tasks = set()
        self._closed = False

    async def _start(self):
        parent = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(parent, mode=0o755, exist_ok=True)
        _remove_stale_socket(self.path)
        self._server = await asyncio.start_unix_server(self._client, path=self.path)
        st = os.stat(self.path)
        self._inode = (st.st_dev, st.st_ino)
        return self

    # -- one connection ------------------------------------------------------------------

    async def _client(self, reader, writer):
        task = asyncio.current_task()
        self._tasks.add(task)
        self._writers.add(writer)
        buf = bytearray()
        discarding = False           # inside an oversized line: skip to its newline
        try:
            while True:
                chunk = await reader.read(65536)
                if not chunk:
                    return
                buf += chunk
                while True:
                    nl = buf.find(b"\n")
                    if nl < 0:
                        if not discarding and len(buf) > self.max_request:
                            await self._send(writer, self._too_large())
                            discarding = True
                        if discarding:
                            buf.clear()
                        break
                    line = bytes(buf[:nl])
                    del buf[:nl + 1]
                    if discarding:
                        discarding = False
                        continue
                    if len(line) > self.max_request:
                        reply = self._too_large()
                    elif not line.strip():
                        continue                          # blank line: nothing asked
                    else:
                        reply = self._answer(line)
                    await self._send(writer, reply)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass                                          # the client went away
        except asyncio.CancelledError:
            pass
        finally:
            self._writers.discard(writer)
            self._tasks.discard(task)
            writer.close()

    def _too_large(self):
        return _error(f"request too large (limit {self.max_request} bytes per line)")

    def _answer(self, line):
        """The reply line (bytes) for one request line; never raises."""
        try:
            request = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            return _error(f"bad request: not JSON ({e})")
        if not isinstance(request, dict):
            return _error(f"bad request: expected a JSON object, got {type(request).__name__}")
        try:
            reply = self.handler(request)
        except Exception as e:
            return _error(f"{type(e).__name__}: {e}" if str(e) else type(e).__name__)
        if not isinstance(reply, dict) or not isinstance(reply.get("ok"), bool):
            return _error(f"handler returned a malformed reply: {reply!r:.200}")
        return reply

    async def _send(self, writer, reply):
        self.requests += 1
        try:
            data = _dumps(reply)
        except (TypeError, ValueError) as e:
            reply = _error(f"reply cannot be encoded as JSON: {e}")
            data = _dumps(reply)
        if not reply.get("ok"):
            self.errors += 1
        writer.write(data.encode() + b"\n")
        await writer.drain()

    # -- life cycle ------------------------------------------------------------------------

    def close(self):
        if self._closed:
            return
        self._closed = True
        self._server.close()
        for w in list(self._writers):
            w.close()
        for t in list(self._tasks):
            t.cancel()
        self._unlink()

    async def wait_closed(self):
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        await self._server.wait_closed()

    def _unlink(self):
        """Remove the socket file, unless another server has replaced it since."""
        try:
            st = os.stat(self.path)
            if (st.st_dev, st.st_ino) == self._inode:
                os.unlink(self.path)
        except FileNotFoundError:
            pass

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        self.close()
        await self.wait_closed()


def _remove_stale_socket(path):
    """Remove a socket file left by a daemon that died. Refuse to remove a socket that a
    live process still answers on, or anything that is not a socket."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise OSError(errno.EEXIST, f"{path} exists and is not a socket; not removing it")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(0.5)
        probe.connect(path)
    except (ConnectionRefusedError, FileNotFoundError):
        pass                                              # stale: nobody listens
    except OSError:
        pass                                              # unusable either way: replace it
    else:
        raise OSError(errno.EADDRINUSE,
                      f"control socket {path} is in use by a running process")
    finally:
        probe.close()
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


async def start_control_server(path, handler, max_request=MAX_REQUEST):
    """Listen on the Unix socket `path` and answer requests with `handler`.

    handler(request: dict) -> dict is called on the event loop, once per request, and returns
    the reply ({"ok": True, "data": ...} or {"ok": False, "error": ...}). The parent
    directory is created if missing; a stale socket file is replaced. Returns a
    ControlServer (close() then await wait_closed()).
    """
    return await ControlServer(path, handler, max_request)._start()


# --- client ---------------------------------------------------------------------------

def _node_name(path):
    name = os.path.basename(os.fspath(path))
    return name[:-5] if name.endswith(".sock") else name


class ControlClient:
    """A blocking connection to a control socket, for one or more requests.

        with ControlClient(path) as c:
            counters = c.request({"show": "counters"})["data"]
    """

    def __init__(self, path, timeout=2.0, node=None):
        self.path = os.fspath(path)
        self.node = node or _node_name(self.path)
        self.timeout = timeout
        self._buf = bytearray()
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self.sock.settimeout(timeout)
            self.sock.connect(self.path)
        except FileNotFoundError:
            self.close()
            raise ControlError(f"node {self.node} is not running: "
                               f"no control socket at {self.path}") from None
        except ConnectionRefusedError:
            self.close()
            raise ControlError(f"node {self.node} is not running: control socket "
                               f"{self.path} refuses connections (stale socket)") from None
        except PermissionError:
            self.close()
            raise ControlError(f"permission denied on control socket {self.path} "
                               f"(try again with sudo)") from None
        except socket.timeout:
            self.close()
            raise ControlError(f"node {self.node} did not accept a connection on "
                               f"{self.path} within {timeout:g} s") from None
        except OSError as e:
            self.close()
            raise ControlError(f"cannot connect to node {self.node} at {self.path}: "
                               f"{e.strerror or e}") from None

    def request(self, request):
        """Send one request, return the reply dict (ok true). Raises ControlError."""
        try:
            line = json.dumps(jsonable(request), separators=(",", ":")).encode() + b"\n"
        except (TypeError, ValueError) as e:
            raise ControlError(f"request cannot be encoded as JSON: {e}") from None
        deadline = time.monotonic() + self.timeout
        try:
            self.sock.settimeout(self.timeout)
            self.sock.sendall(line)
            raw = self._read_line(deadline)
        except socket.timeout:
            raise ControlError(f"node {self.node} did not answer within "
                               f"{self.timeout:g} s") from None
        except OSError as e:
            raise ControlError(f"connection to node {self.node} failed: "
                               f"{e.strerror or e}") from None
        try:
            reply = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            raise ControlError(f"node {self.node} sent a bad reply (not JSON: {e})") from None
        if not isinstance(reply, dict) or not isinstance(reply.get("ok"), bool):
            raise ControlError(f"node {self.node} sent a bad reply: {raw[:200]!r}")
        if not reply["ok"]:
            raise ControlError(f"node {self.node}: {reply.get('error') or 'request failed'}")
        return reply

    def _read_line(self, deadline):
        while True:
            nl = self._buf.find(b"\n")
            if nl >= 0:
                line = bytes(self._buf[:nl])
                del self._buf[:nl + 1]
                return line
            if len(self._buf) > MAX_REPLY:
                raise ControlError(f"node {self.node} sent a reply larger than "
                                   f"{MAX_REPLY} bytes")
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout()
            self.sock.settimeout(left)
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise ControlError(f"node {self.node} closed the connection "
                                   f"without replying")
            self._buf += chunk

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def query(path, request, timeout=2.0, node=None):
    """Send one request to the control socket at `path`; return the reply dict
    ({"ok": True, "data": ...}). Raises ControlError with a one-line message when the
    node is not running, refuses, does not answer within `timeout` seconds, sends
    something that is not a reply, or replies ok:false. `node` names the node in
    messages (default: the socket's file name without .sock)."""
    with ControlClient(path, timeout, node) as client:
        return client.request(request)


# --- the tables -------------------------------------------------------------------------

def action_name(action):
    """The name of a mapping action: Action.NATIVELY_FORWARD -> "natively-forward"."""
    if isinstance(action, Enum):
        return action.name.lower().replace("_", "-")
    try:
        from .lisp.mapcache import Action
        return action_name(Action(action))
    except (ValueError, TypeError):
        return f"action-{action}"


def _seconds_left(expires, now):
    """Whole seconds until `expires`, never negative; None when it never expires."""
    left = expires - now
    if math.isnan(left) or left == math.inf:
        return None
    return max(0, round(left)) if left > 0 else 0


def _rloc(loc, reachable, prober=None):
    out = {"address": str(loc.address), "priority": int(loc.priority),
           "weight": int(loc.weight), "reachable": bool(reachable)}
    p = prober.state(loc.address) if prober is not None else None
    if p is not None:           # RLOC-probing (nodes/lisp/probing.py): its RTT and up/down
        out["probe"] = {"up": bool(p.up), "misses": int(p.misses),
                        "rtt_ms": None if p.rtt is None else round(p.rtt * 1e3, 1)}
    return out


def _prefix_order(iid, prefix):
    return (iid, prefix.version, int(prefix.network_address), prefix.prefixlen)


def map_cache_rows(mapcache, now, prober=None):
    """One JSON-ready row per map-cache entry, sorted by instance ID and prefix:

        {"iid": 0, "eid": "10.2.0.0/24",
         "rlocs": [{"address": "192.0.2.2", "priority": 1, "weight": 100, "reachable": true}],
         "action": "no-action", "ttl_left_s": 58, "negative": false}

    "reachable" is the cache's current view (RLOC-probing, down marks, the Locator-Status-
    Bits its site sent), not what the Map-Reply said; ttl_left_s is None for an entry that never expires, 0 once expired.
    With the ITR's RlocProber, a locator it probes also has "probe": {"up", "misses",
    "rtt_ms"} (rtt_ms None until a probe was answered).
    """
    rows = []
    for e in mapcache:
        reach = getattr(e, "reachable", None)
        if reach is None or len(reach) != len(e.locators):
            reach = [getattr(loc, "reachable", True) for loc in e.locators]
        said = getattr(e, "status", None) or (True,) * len(e.locators)
        rows.append({
            "iid": e.iid,
            "eid": str(e.prefix),
            "rlocs": [_rloc(loc, up and ok, prober)
                      for loc, up, ok in zip(e.locators, reach, said)],
            "action": action_name(e.action),
            "ttl_left_s": _seconds_left(e.expires, now),
            "negative": not e.locators,
        })
    return rows


def registration_rows(map_server, now):
    """One JSON-ready row per registered EID prefix of a Map-Server, sorted:

        {"iid": 0, "eid": "10.1.0.0/24", "site": "dc1", "more_specific": false,
         "registrants": [{"from": "192.0.2.1", "rlocs": [{...}, ...], "expires_in_s": 172}]}

    Registrants are listed in the order they registered; rlocs have the same shape as in
    map_cache_rows (reachable is the R bit the ETR registered)."""
    rows = []
    regs = sorted(map_server.registrations.values(),
                  key=lambda r: _prefix_order(r.iid, r.prefix))
    for reg in regs:
        rows.append({
            "iid": reg.iid,
            "eid": str(reg.prefix),
            "site": reg.site.name,
            "more_specific": bool(reg.more_specific),
            "registrants": [{
                "from": str(r.source),
                "rlocs": [_rloc(loc, getattr(loc, "reachable", True))
                          for loc in r.record.locators],
                "expires_in_s": _seconds_left(r.expires, now),
            } for r in reg.registrants.values()],
        })
    return rows


def health_counters(health):
    """The data plane's health (DataPlane.health()) as lines of `show counters`:
    {"dataplane_encap": "alive" | "dead", "dataplane_decap": ...}."""
    return {f"dataplane_{k}": "alive" if up else "dead" for k, up in sorted(health.items())}

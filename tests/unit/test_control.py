"""Unit tests of the control socket (nodes.control), `lisp-lab show` and the event log.

Real Unix sockets in tmp_path: no root needed."""
import asyncio
import contextlib
import enum
import ipaddress
import json
import os
import pathlib
import random
import shutil
import socket
import tempfile
import threading

import pytest

from lab import cli
from nodes.control import (ControlClient, ControlError, jsonable, map_cache_rows, query,
                           registration_rows, socket_path, start_control_server)
from nodes.eventlog import EventLog, read_events
from nodes.lisp.address import make_eid
from nodes.lisp.auth import sign
from nodes.lisp.mapcache import Action, MapCache
from nodes.lisp.mapserver import MapServer, Site
from nodes.lisp.messages import EidRecord, Locator, MapRegister, encode

ip = ipaddress.ip_address
net = ipaddress.ip_network


@pytest.fixture
def sock_dir():
    """A fresh directory in /tmp: pytest's tmp_path can be too long for a socket path
    (sun_path holds 108 bytes)."""
    d = tempfile.mkdtemp(prefix="ctl-", dir="/tmp")
    yield pathlib.Path(d)
    shutil.rmtree(d, ignore_errors=True)


def echo_handler(request):
    if request.get("boom"):
        raise RuntimeError("handler exploded")
    if "show" in request:
        return {"ok": True, "data": {"you_asked": request["show"]}}
    return {"ok": False, "error": f"unknown request {request!r}"}


async def exchange(reader, writer, line):
    writer.write(line if isinstance(line, bytes) else line.encode())
    await writer.drain()
    return json.loads(await asyncio.wait_for(reader.readline(), 2))


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 10))


@contextlib.contextmanager
def threaded_server(path, handler, **kw):
    """A control server on its own event loop thread, for the blocking client and the CLI."""
    loop = asyncio.new_event_loop()
    t = threading.Thread(target=loop.run_forever, daemon=True)
    t.start()
    server = asyncio.run_coroutine_threadsafe(
        start_control_server(path, handler, **kw), loop).result(5)
    try:
        yield server
    finally:
        async def stop():
            server.close()
            await server.wait_closed()
        asyncio.run_coroutine_threadsafe(stop(), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
        t.join(5)
        loop.close()


# --- the server -------------------------------------------------------------------------

def test_several_requests_per_connection_and_several_clients(sock_dir):
    path = str(sock_dir / "n1.sock")

    async def main():
        server = await start_control_server(path, echo_handler)
        r1, w1 = await asyncio.open_unix_connection(path)
        r2, w2 = await asyncio.open_unix_connection(path)
        assert await exchange(r1, w1, '{"show": "counters"}\n') == \
            {"ok": True, "data": {"you_asked": "counters"}}
        assert await exchange(r2, w2, '{"show": "map-cache"}\n') == \
            {"ok": True, "data": {"you_asked": "map-cache"}}
        assert await exchange(r1, w1, '{"show": "registrations"}\n') == \
            {"ok": True, "data": {"you_asked": "registrations"}}
        # two requests in one write: two replies, in order
        w2.write(b'{"show": "a"}\n{"show": "b"}\n')
        await w2.drain()
        a = json.loads(await r2.readline())
        b = json.loads(await r2.readline())
        assert (a["data"]["you_asked"], b["data"]["you_asked"]) == ("a", "b")
        # a request split across writes
        w1.write(b'{"sho')
        await w1.drain()
        await asyncio.sleep(0.05)
        assert await exchange(r1, w1, b'w": "split"}\n') == \
            {"ok": True, "data": {"you_asked": "split"}}
        for w in (w1, w2):
            w.close()
        assert server.requests == 6 and server.errors == 0
        server.close()
        await server.wait_closed()

    run(main())


def test_handler_exception_and_bad_requests_get_ok_false_and_server_survives(sock_dir):
    path = str(sock_dir / "n2.sock")

    async def main():
        server = await start_control_server(path, echo_handler)
        r, w = await asyncio.open_unix_connection(path)
        reply = await exchange(r, w, '{"boom": true}\n')
        assert reply == {"ok": False, "error": "RuntimeError: handler exploded"}
        reply = await exchange(r, w, "this is not json\n")
        assert reply["ok"] is False and reply["error"].startswith("bad request: not JSON")
        reply = await exchange(r, w, "[1, 2]\n")
        assert reply == {"ok": False,
                         "error": "bad request: expected a JSON object, got list"}
        reply = await exchange(r, w, b"\xff\xfe\n")
        assert reply["ok"] is False and "not JSON" in reply["error"]
        reply = await exchange(r, w, '{"nothing": 1}\n')
        assert reply == {"ok": False, "error": "unknown request {'nothing': 1}"}
        # oversized: one error reply, then the rest of that line is skipped
        big = '{"show": "' + "x" * (70 * 1024) + '"}\n'
        reply = await exchange(r, w, big)
        assert reply == {"ok": False,
                         "error": "request too large (limit 65536 bytes per line)"}
        # still alive, on the same connection and for a new client
        assert (await exchange(r, w, '{"show": "after"}\n'))["ok"] is True
        r2, w2 = await asyncio.open_unix_connection(path)
        assert (await exchange(r2, w2, '{"show": "new"}\n'))["data"] == {"you_asked": "new"}
        assert server.errors == 6
        w.close()
        w2.close()
        server.close()
        await server.wait_closed()

    run(main())


def test_client_vanishing_mid_request_does_not_hurt_the_server(sock_dir):
    path = str(sock_dir / "v.sock")
    with threaded_server(path, echo_handler) as server:
        for _ in range(3):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(path)
            s.sendall(b'{"show": "half')           # no newline, then gone
            s.close()
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(path)
        s.sendall(b'{"show": "x"}\n')
        s.close()                                   # gone before reading its reply
        assert query(path, {"show": "alive"})["data"] == {"you_asked": "alive"}
        assert server.errors == 0


def test_oversized_line_arriving_in_one_piece_with_small_limit(sock_dir):
    path = str(sock_dir / "n3.sock")

    async def main():
        server = await start_control_server(path, echo_handler, max_request=100)
        r, w = await asyncio.open_unix_connection(path)
        w.write(('{"show": "' + "y" * 200 + '"}\n{"show": "ok"}\n').encode())
        await w.drain()
        first = json.loads(await r.readline())
        second = json.loads(await r.readline())
        assert first == {"ok": False, "error": "request too large (limit 100 bytes per line)"}
        assert second == {"ok": True, "data": {"you_asked": "ok"}}
        w.close()
        server.close()
        await server.wait_closed()

    run(main())


def test_handler_reply_malformed_or_not_json_encodable(sock_dir):
    path = str(sock_dir / "n4.sock")
    replies = iter([["not", "a", "dict"], {"ok": True, "data": {1, 2}},
                    {"ok": True, "data": float("nan")}, {"ok": True, "data": object()},
                    {"ok": True, "data": [ip("10.0.0.1"), net("10.0.0.0/8"), b"\x01\xff"]}])

    async def main():
        server = await start_control_server(path, lambda req: next(replies))
        r, w = await asyncio.open_unix_connection(path)
        reply = await exchange(r, w, "{}\n")
        assert reply["ok"] is False and "malformed reply" in reply["error"]
        assert await exchange(r, w, "{}\n") == {"ok": True, "data": [1, 2]}
        assert await exchange(r, w, "{}\n") == {"ok": True, "data": "nan"}
        assert (await exchange(r, w, "{}\n"))["data"].startswith("<object object")
        assert await exchange(r, w, "{}\n") == {"ok": True,
                                                "data": ["10.0.0.1", "10.0.0.0/8", "01ff"]}
        w.close()
        server.close()
        await server.wait_closed()

    run(main())


def test_parent_created_socket_removed_on_close_even_with_a_client_connected(sock_dir):
    path = sock_dir / "run" / "lisp-lab" / "xtr1.sock"

    async def main():
        server = await start_control_server(str(path), echo_handler)
        assert path.is_socket()
        r, w = await asyncio.open_unix_connection(str(path))
        assert (await exchange(r, w, '{"show": "x"}\n'))["ok"]
        server.close()
        await asyncio.wait_for(server.wait_closed(), 2)    # does not wait for the client
        assert not path.exists()
        assert await asyncio.wait_for(r.read(), 2) == b""   # the client was disconnected
        w.close()

    run(main())
    with pytest.raises(ControlError, match="no control socket"):
        query(path, {"show": "x"})


def test_stale_socket_file_is_replaced_at_start(sock_dir):
    path = str(sock_dir / "stale.sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)
    s.close()                                   # the file stays: a daemon that crashed
    assert os.path.exists(path)
    with pytest.raises(ControlError, match="refuses connections"):
        query(path, {"show": "counters"}, node="xtr9")
    with threaded_server(path, echo_handler):
        assert query(path, {"show": "counters"}) == \
            {"ok": True, "data": {"you_asked": "counters"}}
    assert not os.path.exists(path)


def test_live_socket_and_regular_file_are_not_replaced(sock_dir):
    path = str(sock_dir / "live.sock")
    with threaded_server(path, echo_handler):
        with pytest.raises(OSError, match="in use by a running process"):
            run(start_control_server(path, echo_handler))
        assert query(path, {"show": "still-mine"})["data"] == {"you_asked": "still-mine"}
    plain = sock_dir / "plain.sock"
    plain.write_text("keep me")
    with pytest.raises(OSError, match="is not a socket"):
        run(start_control_server(str(plain), echo_handler))
    assert plain.read_text() == "keep me"


# --- the client -----------------------------------------------------------------------

def test_query_missing_socket_names_the_node_and_path(sock_dir):
    path = str(sock_dir / "ghost.sock")
    with pytest.raises(ControlError) as e:
        query(path, {"show": "counters"})
    assert str(e.value) == f"node ghost is not running: no control socket at {path}"
    with pytest.raises(ControlError) as e:
        query(path, {"show": "counters"}, node="xtr1")
    assert str(e.value) == f"node xtr1 is not running: no control socket at {path}"


def test_query_ok_false_timeout_and_hangup(sock_dir):
    path = str(sock_dir / "q.sock")
    with threaded_server(path, echo_handler):
        with pytest.raises(ControlError) as e:
            query(path, {"boom": True}, node="ms")
        assert str(e.value) == "node ms: RuntimeError: handler exploded"
        with ControlClient(path) as c:          # several requests, one connection
            assert [c.request({"show": w})["data"]["you_asked"] for w in "abc"] == \
                ["a", "b", "c"]
    silent = str(sock_dir / "silent.sock")
    lsock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    lsock.bind(silent)
    lsock.listen()
    try:
        with pytest.raises(ControlError) as e:
            query(silent, {"show": "counters"}, timeout=0.2)
        assert str(e.value) == "node silent did not answer within 0.2 s"
        done = threading.Event()

        def hang_up():
            conn, _ = lsock.accept()
            conn.recv(100)
            conn.sendall(b'{"ok": tr')           # half a reply, then close
            conn.close()
            done.set()
        while True:                              # drop the connection of the first query
            try:
                lsock.setblocking(False)
                lsock.accept()[0].close()
            except BlockingIOError:
                break
        lsock.settimeout(5)
        t = threading.Thread(target=hang_up)
        t.start()
        with pytest.raises(ControlError, match="closed the connection without replying"):
            query(silent, {"show": "counters"})
        t.join(5)
        assert done.is_set()
    finally:
        lsock.close()


def test_socket_path_default():
    assert socket_path("xtr1") == "/run/lisp-lab/xtr1.sock"
    assert socket_path("ms", "/tmp/x") == "/tmp/x/ms.sock"


# --- table rows from the core -----------------------------------------------------------

def test_map_cache_rows_from_a_real_map_cache():
    mc = MapCache()
    mc.insert(0, "10.2.0.0/24", [Locator(ip("192.0.2.2"), 1, 50),
                                 Locator(ip("192.0.2.3"), 1, 50)], ttl=60, now=100.0)
    mc.insert(0, "10.9.0.0/16", [], ttl=15, now=100.0, action=Action.NATIVELY_FORWARD)
    mc.insert(7, "2001:db8:2::/48", [Locator(ip("2001:db8::2"), 2, 100)], ttl=1,
              now=100.0)
    mc.insert(0, "10.1.0.0/24", [Locator(ip("192.0.2.1"))], ttl=float("inf"), now=100.0)
    mc.insert(0, "10.3.0.0/24", [], ttl=30, now=100.0, action=Action.DROP)
    assert mc.set_locator_reachable("192.0.2.3", False) == 1
    rows = map_cache_rows(mc, 110.4)
    assert rows == [
        {"iid": 0, "eid": "10.1.0.0/24",
         "rlocs": [{"address": "192.0.2.1", "priority": 1, "weight": 100, "reachable": True}],
         "action": "no-action", "ttl_left_s": None, "negative": False},
        {"iid": 0, "eid": "10.2.0.0/24",
         "rlocs": [{"address": "192.0.2.2", "priority": 1, "weight": 50, "reachable": True},
                   {"address": "192.0.2.3", "priority": 1, "weight": 50, "reachable": False}],
         "action": "no-action", "ttl_left_s": 50, "negative": False},
        {"iid": 0, "eid": "10.3.0.0/24", "rlocs": [], "action": "drop", "ttl_left_s": 20,
         "negative": True},
        {"iid": 0, "eid": "10.9.0.0/16", "rlocs": [], "action": "natively-forward",
         "ttl_left_s": 5, "negative": True},
        {"iid": 7, "eid": "2001:db8:2::/48",
         "rlocs": [{"address": "2001:db8::2", "priority": 2, "weight": 100,
                    "reachable": True}],
         "action": "no-action", "ttl_left_s": 0, "negative": False},   # expired, not purged
    ]
    json.dumps(rows, allow_nan=False)          # JSON-ready as is
    assert map_cache_rows(MapCache(), 0.0) == []


def register(prefix, rloc, key="k1", notify=False, nonce=1):
    eid, mask = make_eid(prefix)
    rec = EidRecord(eid, mask, [Locator(ip(rloc), 1, 100, local=True)])
    return encode(sign(MapRegister(nonce, [rec], 1, 2, want_map_notify=notify), key))


def test_registration_rows_from_a_real_map_server():
    sites = [Site("dc1", {1: "k1"}, [(0, net("10.1.0.0/24"))], accept_more_specifics=True),
             Site("client", {1: "k1"}, [(0, net("10.9.0.0/24"))])]
    ms = MapServer(sites, registration_timeout=180.0, rng=random.Random(1))
    ms.receive(register("10.9.0.0/24", "192.0.2.9"), ip("192.0.2.9"), 0.0)
    ms.receive(register("10.1.0.0/24", "192.0.2.1"), ip("192.0.2.1"), 0.0)
    ms.receive(register("10.1.0.0/24", "192.0.2.2"), ip("192.0.2.2"), 10.0)
    ms.receive(register("10.1.0.5/32", "192.0.2.2"), ip("192.0.2.2"), 20.0)
    assert ms.counters["registrations_accepted"] == 4
    rloc = lambda a: {"address": a, "priority": 1, "weight": 100, "reachable": True}  # noqa
    assert registration_rows(ms, 30.4) == [
        {"iid": 0, "eid": "10.1.0.0/24", "site": "dc1", "more_specific": False,
         "registrants": [{"from": "192.0.2.1", "rlocs": [rloc("192.0.2.1")],
                          "expires_in_s": 150},
                         {"from": "192.0.2.2", "rlocs": [rloc("192.0.2.2")],
                          "expires_in_s": 160}]},
        {"iid": 0, "eid": "10.1.0.5/32", "site": "dc1", "more_specific": True,
         "registrants": [{"from": "192.0.2.2", "rlocs": [rloc("192.0.2.2")],
                          "expires_in_s": 170}]},
        {"iid": 0, "eid": "10.9.0.0/24", "site": "client", "more_specific": False,
         "registrants": [{"from": "192.0.2.9", "rlocs": [rloc("192.0.2.9")],
                          "expires_in_s": 150}]},
    ]
    assert registration_rows(MapServer(sites), 0.0) == []


# --- table formatting -------------------------------------------------------------------

MC_ROWS = [
    {"iid": 0, "eid": "10.2.0.0/24",
     "rlocs": [{"address": "192.0.2.2", "priority": 1, "weight": 50, "reachable": True},
               {"address": "192.0.2.3", "priority": 1, "weight": 50, "reachable": False}],
     "action": "no-action", "ttl_left_s": 50, "negative": False},
    {"iid": 0, "eid": "10.9.0.0/16", "rlocs": [], "action": "natively-forward",
     "ttl_left_s": 5, "negative": True},
    {"iid": 7, "eid": "2001:db8:2::/48",
     "rlocs": [{"address": "2001:db8::2", "priority": 2, "weight": 100, "reachable": True}],
     "action": "no-action", "ttl_left_s": None, "negative": False},
]


def test_format_map_cache():
    assert cli.format_map_cache(MC_ROWS) == (
        "IID  EID-PREFIX       RLOCS                                ACTION            TTL\n"
        "0    10.2.0.0/24      192.0.2.2 1/50, 192.0.2.3 1/50 down  no-action         50s\n"
        "0    10.9.0.0/16      negative                             natively-forward  5s\n"
        "7    2001:db8:2::/48  2001:db8::2 2/100                    no-action         never")
    assert cli.format_map_cache([]) == "(empty)"


REG_ROWS = [
    {"iid": 0, "eid": "10.1.0.0/24", "site": "dc1", "more_specific": False,
     "registrants": [
         {"from": "192.0.2.1", "rlocs": [{"address": "192.0.2.1", "priority": 1,
                                          "weight": 100, "reachable": True}],
          "expires_in_s": 150},
         {"from": "192.0.2.2", "rlocs": [{"address": "192.0.2.2", "priority": 1,
                                          "weight": 100, "reachable": False}],
          "expires_in_s": 160}]},
    {"iid": 0, "eid": "10.1.0.5/32", "site": "dc1", "more_specific": True,
     "registrants": [{"from": "192.0.2.2", "rlocs": [{"address": "192.0.2.2", "priority": 1,
                                                      "weight": 100, "reachable": True}],
                      "expires_in_s": 170}]},
]


def test_format_registrations():
    assert cli.format_registrations(REG_ROWS) == (
        "IID  EID-PREFIX   SITE  MORE-SPECIFIC  FROM       RLOCS                 EXPIRES\n"
        "0    10.1.0.0/24  dc1   no             192.0.2.1  192.0.2.1 1/100       150s\n"
        "                                       192.0.2.2  192.0.2.2 1/100 down  160s\n"
        "0    10.1.0.5/32  dc1   yes            192.0.2.2  192.0.2.2 1/100       170s")
    assert cli.format_registrations([]) == "(empty)"


def test_format_counters_and_config():
    assert cli.format_counters({"map_request_sent": 3, "b": 12, "cache_hits": 1024}) == (
        "b                   12\n"
        "cache_hits        1024\n"
        "map_request_sent     3")
    assert cli.format_counters({}) == "(empty)"
    assert cli.format_config({"role": "xtr", "name": "xtr1", "uptime_s": 3.5}) == (
        "name      xtr1\n"
        "role      xtr\n"
        "uptime_s  3.5")
    assert cli.format_config({}) == "(empty)"


# --- lisp-lab show, end to end ----------------------------------------------------------

def node_handler(request):
    what = request.get("show")
    if what == "map-cache":
        return {"ok": True, "data": MC_ROWS}
    if what == "registrations":
        return {"ok": False, "error": "xtr1 is not a Map-Server"}
    if what == "counters":
        return {"ok": True, "data": {"map_request_sent": 3, "cache_hits": 1024}}
    if what == "config":
        return {"ok": True, "data": "not a dict"}
    return {"ok": False, "error": f"unknown request {request!r}"}


def test_show_end_to_end(sock_dir, capsys):
    path = str(sock_dir / "xtr1.sock")
    with threaded_server(path, node_handler):
        assert cli.main(["show", "xtr1", "map-cache", "--socket", path]) == 0
        out, err = capsys.readouterr()
        assert out == cli.format_map_cache(MC_ROWS) + "\n" and err == ""
        assert out.startswith("IID  EID-PREFIX")

        assert cli.main(["show", "xtr1", "map-cache", "--json", "--socket", path]) == 0
        out, err = capsys.readouterr()
        assert json.loads(out) == MC_ROWS and err == ""

        assert cli.main(["show", "xtr1", "counters", "--socket", path]) == 0
        out, _ = capsys.readouterr()
        assert out == "cache_hits        1024\nmap_request_sent     3\n"

        assert cli.main(["show", "xtr1", "counters", "--json", "--socket", path]) == 0
        assert json.loads(capsys.readouterr().out) == {"map_request_sent": 3,
                                                       "cache_hits": 1024}

        # the node says no: one line on stderr, exit 1
        assert cli.main(["show", "xtr1", "registrations", "--socket", path]) == 1
        out, err = capsys.readouterr()
        assert out == "" and err == "lisp-lab show: node xtr1: xtr1 is not a Map-Server\n"

        # a reply of the wrong shape: one line, exit 1, no traceback
        assert cli.main(["show", "xtr1", "config", "--socket", path]) == 1
        out, err = capsys.readouterr()
        assert out == "" and err.startswith("lisp-lab show: node xtr1 sent a bad reply")
        assert err.count("\n") == 1 and "Traceback" not in err


def test_show_real_map_cache_through_the_socket(sock_dir, capsys):
    mc = MapCache()
    mc.insert(0, "10.2.0.0/24", [Locator(ip("192.0.2.2"), 1, 100)], ttl=60, now=0.0)
    path = str(sock_dir / "xtr2.sock")
    with threaded_server(path, lambda req: {"ok": True, "data": map_cache_rows(mc, 1.0)}):
        assert cli.main(["show", "xtr2", "map-cache", "--socket", path]) == 0
    assert capsys.readouterr().out == (
        "IID  EID-PREFIX   RLOCS            ACTION     TTL\n"
        "0    10.2.0.0/24  192.0.2.2 1/100  no-action  59s\n")


def test_show_node_not_running(sock_dir, capsys):
    path = str(sock_dir / "nope.sock")
    assert cli.main(["show", "xtr1", "counters", "--socket", path]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err == f"lisp-lab show: node xtr1 is not running: no control socket at {path}\n"
    # without --socket: the default place
    assert cli.main(["show", "no-such-node-4711", "map-cache"]) == 1
    err = capsys.readouterr().err
    assert err == ("lisp-lab show: node no-such-node-4711 is not running: "
                   "no control socket at /run/lisp-lab/no-such-node-4711.sock\n")


def test_show_rejects_bad_arguments(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["show", "xtr1", "routes"])
    assert e.value.code == 2
    with pytest.raises(SystemExit):
        cli.main(["show", "../etc", "counters"])
    assert "invalid node name" in capsys.readouterr().err


# --- the event log ----------------------------------------------------------------------

class Color(enum.Enum):
    RED = 1


def test_event_log_lines_parse_back_and_values_are_converted(tmp_path):
    path = tmp_path / "logs" / "xtr1.events.jsonl"
    times = iter([1000.5, 1001.25, 1002.0, 1003.0])
    log = EventLog(path, "xtr1", clock=lambda: next(times))
    log.write("registered", eid=net("10.1.0.5/32"), rlocs=[ip("192.0.2.2"), ip("2001:db8::1")],
              **{"from": ip("192.0.2.1")})
    log.write("control_received", data=b"\x13\x00\xff", nested={ip("10.0.0.1"): {1, 2}},
              color=Color.RED, n=3, ok=True, none=None, ttl=float("inf"), t=(1, 2))
    # line-buffered: on disk before close
    assert len(read_events(path)) == 2
    log.write("odd", time="mine", node="other", event="x")
    log.close()
    log.write("after_close")                    # a no-op, not an error
    events = read_events(path)
    assert events == [
        {"time": 1000.5, "node": "xtr1", "event": "registered", "eid": "10.1.0.5/32",
         "rlocs": ["192.0.2.2", "2001:db8::1"], "from": "192.0.2.1"},
        {"time": 1001.25, "node": "xtr1", "event": "control_received", "data": "1300ff",
         "nested": {"10.0.0.1": [1, 2]}, "color": "RED", "n": 3, "ok": True, "none": None,
         "ttl": "inf", "t": [1, 2]},
        {"time": 1002.0, "node": "xtr1", "event": "odd", "time_": "mine", "node_": "other",
         "event_": "x"},
    ]
    assert log.count == 4 and log.counts["registered"] == 1
    # one JSON object per line, nothing else
    lines = path.read_text().splitlines()
    assert len(lines) == 3 and all(json.loads(x)["node"] == "xtr1" for x in lines)


def test_event_log_appends_and_reader_skips_a_truncated_last_line(tmp_path):
    path = tmp_path / "e.jsonl"
    with EventLog(path, "ms", clock=lambda: 1.0) as log:
        log.write("started")
    with EventLog(path, "ms", clock=lambda: 2.0) as log:
        log.write("stopped", counters={"a": 1})
    with open(path, "a") as f:
        f.write('{"time": 3.0, "node": "ms", "ev')        # the writer died here
    assert [e["event"] for e in read_events(path)] == ["started", "stopped"]
    path.write_text('{"event": "a"}\nnot json\n{"event": "b"}\n')
    with pytest.raises(ValueError, match=r"e.jsonl:2: bad event line"):
        read_events(path)


def test_event_log_without_a_file_counts_only(tmp_path):
    log = EventLog(None, "xtr1")
    log.write("started", pid=1)
    log.write("started", pid=2)
    log.write("stopped")
    log.close()
    assert log.count == 3 and log.counts == {"started": 2, "stopped": 1}
    assert list(tmp_path.iterdir()) == []


def test_jsonable():
    assert jsonable({"a": (ip("::1"), b"\x00"), 5: frozenset({"x"})}) == \
        {"a": ["::1", "00"], "5": ["x"]}
    assert jsonable(Action.DROP) == "DROP" and jsonable(float("-inf")) == "-inf"


def test_map_cache_rows_and_table_show_each_probed_locators_rtt_and_state():
    """show NODE map-cache: with RLOC-probing, each locator's probe RTT and up/down (issue
    11); the RTT is the prober's, the down mark its misses."""
    from collections import Counter

    from nodes.lisp.probing import RlocProber
    mc = MapCache()
    a, b, c = (ipaddress.ip_address(x) for x in ("192.0.2.1", "192.0.2.2", "192.0.2.3"))
    mc.insert(0, "10.2.0.0/24", [Locator(a, 1, 100), Locator(b, 2, 100), Locator(c, 3, 100)],
              ttl=60, now=0.0)
    prober = RlocProber(1.0)
    prober.tick(0.0, mc, [ipaddress.ip_address("192.0.2.9")], iter(range(1, 99)).__next__,
                Counter())
    pa = prober.state(a)
    prober.receive_reply(type("R", (), {"nonce": pa.nonce, "probe": True})(), a, 0.0613, mc,
                         Counter())
    pb = prober.state(b)
    pb.up, pb.misses = False, 3
    mc.set_locator_reachable(b, False)
    rows = map_cache_rows(mc, 1.0, prober)
    assert [r.get("probe") for r in rows[0]["rlocs"]] == [
        {"up": True, "misses": 0, "rtt_ms": 61.3},
        {"up": False, "misses": 3, "rtt_ms": None},
        {"up": True, "misses": 0, "rtt_ms": None}]
    assert "probe" not in map_cache_rows(mc, 1.0)[0]["rlocs"][0]      # no prober: as before
    text = cli.format_map_cache(rows)
    assert ("192.0.2.1 1/100 up rtt 61.3ms, 192.0.2.2 2/100 down (3 missed), "
            "192.0.2.3 3/100 up (no answer yet)") in text, text


def test_map_cache_rows_show_a_locator_down_when_its_site_says_so():
    """(issue 11) show map-cache: a locator that the site's Locator-Status-Bits say is down
    is shown down (not reachable), although no probe or down mark says so."""
    mc = MapCache()
    a, b = (ipaddress.ip_address(x) for x in ("192.0.2.2", "192.0.2.3"))
    mc.insert(0, "10.2.0.0/24", [Locator(a, 1, 50), Locator(b, 1, 50)], ttl=60, now=100.0)
    mc.get(0, "10.2.0.0/24").set_status((True, False))
    [row] = map_cache_rows(mc, 101.0)
    assert [r["reachable"] for r in row["rlocs"]] == [True, False]
    assert "192.0.2.2 1/50, 192.0.2.3 1/50 down" in cli.format_map_cache([row])

"""Traffic the demo runs during each VM move: a probe flow, a long-lived TCP session, and the
announcement a VM makes after it moved.

    python -m lab.traffic echo     [--port 7000] [--tcp-port 7001]            (in the VM)
    python -m lab.traffic probe    --dst VM [--rate 1000] [--duration S] [--out F.json]
    python -m lab.traffic tcp      --dst VM [--port 7001] [--interval 0.01] [--duration S]
                                   [--out F.json] [--stall-timeout 10]
    python -m lab.traffic announce --iface IF --ip IP [--ip6 IP6] [--count 3]  (in the VM)

Probe flow (a contract with the capture analysis, defined once in captures/probe.py): UDP to
the VM's port 7000, payload PROBE_MAGIC (8 bytes) + sequence number (uint32, network order) +
send time (uint64, ns since the epoch from time.time_ns(), network order), then a fixed text
up to 64 bytes (so that no Wireshark heuristic takes a probe for another protocol);
`make_probe` and `parse_probe` build and read it. The echo server sends every datagram back unchanged, from
the address the probe was sent to. The prober keeps an absolute schedule (slot n is due at
start + n/rate, so the rate never drifts). When it wakes up late it catches up at twice the
rate, in batches of at most --max-burst probes back to back; only slots more than
--max-backlog (0.1 s) late are skipped (counted in `skipped_slots`; sequence numbers stay
contiguous, one per probe sent).

The echo server listens on UDP and TCP, IPv4 and IPv6, and prints one line
"echo: ready (udp4/7000 tcp4/7001 udp6/7000 tcp6/7001) at <epoch seconds>" once bound.

Probe JSON: sent (probes the prober tried to send; those the kernel refused, e.g. with no
route while a link is down, are also in send_errors), received, lost (= sent - received:
echoes still missing after --linger), duplicates, skipped_slots, lost_seqs ([[first, last],
...] inclusive ranges),
rtt_ms ([[t_rel_s, rtt_ms], ...]: t_rel_s is the probe's send time relative to `start`;
every `rtt_every`-th sample when there are more than --max-rtt-samples), rtt_stats (count,
min, mean, p50, p90, p99, max, in ms), start and end (epoch seconds of the first probe and
of the end of sending), pacing (achieved rate, lateness of the sends), cpu_s, stopped_by.

TCP session: 100-byte chunks (TCP_MAGIC + counter (uint64) + a pattern derived from the
counter) every --interval; the echo is checked chunk by chunk. JSON: connected, survived
(connected, no reset, error or stall, and every byte echoed and verified by the end),
bytes_sent, bytes_echoed, chunks_sent, chunks_verified, max_stall_ms (longest gap between
two consecutive echoes; when the session ends with bytes unechoed, the gap from the last
echo to the end counts too), error (null or one line), start, end, cpu_s, stopped_by.
A gap longer than --stall-timeout with data outstanding is a failure (the kernel's
TCP_USER_TIMEOUT is set to the same value).

Announce: on --iface, for each --ip a broadcast gratuitous ARP request (target MAC zero)
and reply (target MAC = sender MAC), sender IP = target IP; for each --ip6 an unsolicited
neighbour advertisement to ff02::1 with the override flag and the target link-layer address;
--count rounds --interval apart. Frames are built by hand on an AF_PACKET socket. A peer
updates an existing neighbour entry on either; with arp_accept=1 it also creates one.

The prober, echo server and TCP client ask for a better CPU priority (--nice, default -10,
ignored without the right) so that they keep their schedule on a busy two-core machine.
All roles stop cleanly on SIGTERM, SIGINT or SIGHUP: the prober and the TCP client stop
sending, wait a moment for echoes in flight, write their JSON and exit 0. Expected errors
are one line on stderr and exit status 1; a session that failed is a result (exit 0).
This module avoids heavy imports (no scapy): the prober and the echo server start in tens
of milliseconds and use little CPU.
"""
import argparse
import array
import errno
import json
import math
import os
import resource
import select
import selectors
import signal
import socket
import struct
import sys
import time
from pathlib import Path

from captures.probe import (PROBE_HEADER, PROBE_MAGIC, PROBE_PORT, PROBE_SIZE, TCP_PORT,
                            make_probe, parse_probe, probe_padding)
from nodes.lisp.ipudp import internet_checksum

__all__ = ["PROBE_MAGIC", "PROBE_SIZE", "PROBE_PORT", "TCP_PORT", "TCP_MAGIC", "make_probe",
           "parse_probe", "make_chunk", "seq_ranges", "arp_announcement", "neighbour_advert",
           "main"]

TCP_MAGIC = b"LLTCPEC1"
TCP_HEADER = struct.Struct("!8sQ")               # magic, chunk counter

# Linux values the socket module does not export
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)
IPV6_RECVPKTINFO = getattr(socket, "IPV6_RECVPKTINFO", 49)
IPV6_PKTINFO = getattr(socket, "IPV6_PKTINFO", 50)
TCP_USER_TIMEOUT = getattr(socket, "TCP_USER_TIMEOUT", 18)
ETH_P_ARP = 0x0806
ETH_P_IPV6 = 0x86DD

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


class UsageError(Exception):
    """An expected error: reported as one line, exit status 1."""


# --- wire formats --------------------------------------------------------------------------

_PATTERN = bytes(range(256)) * 2 + bytes(range(256))


def make_chunk(counter, size=100):
    """TCP chunk number `counter`: TCP_MAGIC, the counter, then bytes derived from it."""
    head = TCP_HEADER.pack(TCP_MAGIC, counter)
    fill = size - len(head)
    off = counter % 251
    body = _PATTERN[off:off + fill] if fill <= len(_PATTERN) - off else \
        (_PATTERN[off:] * (fill // 256 + 2))[:fill]
    return head + body


def seq_ranges(flags, upto, limit=None):
    """Inclusive [first, last] ranges of the indexes below `upto` whose flag is 0 (indexes
    past the end of `flags` count as 0); at most `limit` ranges."""
    ranges = []
    i = 0
    n = min(upto, len(flags))
    while i < upto:
        if i < n and flags[i]:
            i += 1
            continue
        j = i
        while j + 1 < upto and (j + 1 >= n or not flags[j + 1]):
            j += 1
        ranges.append([i, j])
        if limit is not None and len(ranges) >= limit:
            break
        i = j + 1
    return ranges


def arp_announcement(mac, ip, op):
    """A broadcast gratuitous ARP frame for `ip` (sender IP = target IP) from `mac`: the
    request form (op 1, target MAC zero, RFC 5227) or the reply form (op 2, target MAC =
    sender MAC, which Linux needs to treat a reply as gratuitous)."""
    spa = socket.inet_aton(ip)
    tha = bytes(6) if op == 1 else mac
    frame = b"\xff" * 6 + mac + struct.pack("!H", ETH_P_ARP) + struct.pack(
        "!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, op, mac, spa, tha, spa)
    return frame + bytes(60 - len(frame))          # minimum Ethernet frame, without FCS


def neighbour_advert(mac, ip6):
    """An unsolicited neighbour advertisement for `ip6` from `mac` to all nodes (ff02::1):
    override flag set, solicited and router flags clear, target link-layer address option,
    hop limit 255, source address = the target (as Linux sends it)."""
    src = socket.inet_pton(socket.AF_INET6, ip6)
    dst = socket.inet_pton(socket.AF_INET6, "ff02::1")
    body = struct.pack("!BBHI16sBB6s", 136, 0, 0, 0x20000000, src, 2, 1, mac)
    pseudo = src + dst + struct.pack("!I3xB", len(body), 58)
    body = body[:2] + struct.pack("!H", internet_checksum(pseudo + body)) + body[4:]
    ip_header = struct.pack("!IHBB16s16s", 6 << 28, len(body), 58, 255, src, dst)
    return b"\x33\x33\x00\x00\x00\x01" + mac + struct.pack("!H", ETH_P_IPV6) + ip_header + body


# --- helpers ----------------------------------------------------------------------------------

class Stopper:
    """Stop signals set `signum` and wake up select() through a socket pair (so the loops
    react at once, whatever their timeout)."""

    def __init__(self):
        self.signum = None
        self._r, self._w = socket.socketpair()
        self._r.setblocking(False)
        self._w.setblocking(False)
        self._old = {}
        self._old_fd = None

    @property
    def stopped(self):
        return self.signum is not None

    @property
    def name(self):
        return signal.Signals(self.signum).name if self.signum is not None else None

    def fileno(self):
        return self._r.fileno()

    def drain(self):
        try:
            while self._r.recv(64):
                pass
        except OSError:
            pass

    def _handler(self, signum, frame):
        if self.signum is None:
            self.signum = signum

    def __enter__(self):
        self._old_fd = signal.set_wakeup_fd(self._w.fileno(), warn_on_full_buffer=False)
        for sig in STOP_SIGNALS:
            self._old[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old if old is not None else signal.SIG_DFL)
        signal.set_wakeup_fd(self._old_fd if self._old_fd is not None else -1)
        self._r.close()
        self._w.close()
        return False


def _resolve(host, port, kind):
    """(family, sockaddr) for host:port; IPv4 or IPv6 from the address."""
    try:
        infos = socket.getaddrinfo(host, port, 0, kind)
    except socket.gaierror as e:
        raise UsageError(f"cannot resolve {host}: {e.strerror}") from None
    for family, _, _, _, sockaddr in infos:
        if family in (socket.AF_INET, socket.AF_INET6):
            return family, sockaddr
    raise UsageError(f"no IPv4 or IPv6 address for {host}")


def _cpu_seconds():
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return round(ru.ru_utime + ru.ru_stime, 3)


def _write_json(path, data):
    """Write `data` to `path` atomically (a reader never sees half a file); None: stdout."""
    # one top-level key per line, each value compact: readable, and small with 60k RTTs
    text = "{\n" + ",\n".join(f" {json.dumps(k)}: {json.dumps(v, separators=(',', ':'))}"
                               for k, v in data.items()) + "\n}\n"
    if path is None:
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
    except OSError as e:
        raise UsageError(f"cannot write {path}: {e.strerror or e}") from None


def _stats(values):
    if not values:
        return None
    ordered = sorted(values)
    n = len(ordered)

    def pct(q):
        return round(ordered[min(n - 1, int(q * (n - 1) + 0.5))], 3)

    return {"count": n, "min": round(ordered[0], 3), "mean": round(sum(ordered) / n, 3),
            "p50": pct(0.5), "p90": pct(0.9), "p99": pct(0.99), "max": round(ordered[-1], 3)}


def _say(role, text, to_stderr=False):
    """One status line: on stdout, or on stderr when stdout carries the JSON."""
    print(f"{role}: {text}", file=sys.stderr if to_stderr else sys.stdout, flush=True)


def _error_text(e):
    if isinstance(e, ConnectionRefusedError):
        return "connection refused"
    if isinstance(e, ConnectionResetError):
        return "connection reset by peer"
    if isinstance(e, TimeoutError) or getattr(e, "errno", None) == errno.ETIMEDOUT:
        return "connection timed out (data unacknowledged for the user timeout)"
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    return str(e)


# --- probe ------------------------------------------------------------------------------------

def run_probe(args, stopper):
    dsts = args.dst if isinstance(args.dst, list) else [args.dst]
    resolved = [_resolve(d, args.port, socket.SOCK_DGRAM) for d in dsts]
    family = resolved[0][0]
    if any(f != family for f, _ in resolved):
        raise UsageError("--dst: every destination of one probe flow in the same family")
    addrs = [a for _, a in resolved]   # several: probe seq goes to addrs[seq % len(addrs)]
    addr, n_dst = addrs[0], len(addrs)
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.setblocking(False)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    except OSError:
        pass
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        kernel_stamps = True
    except OSError:
        kernel_stamps = False
    cmsg_space = socket.CMSG_SPACE(16) if kernel_stamps else 0

    rate = float(args.rate)
    interval = 1e9 / rate
    total = int(round(rate * args.duration)) if args.duration > 0 else None
    size = max(PROBE_HEADER.size, args.size)
    buf = bytearray(PROBE_HEADER.size) + probe_padding(size)
    bufsize = max(2048, size + 64)
    pack_into = PROBE_HEADER.pack_into
    got = bytearray(total if total is not None else 65536)
    rtt_t = array.array("d")
    rtt_v = array.array("d")
    seq = slot = received = duplicates = send_errors = skipped = 0
    late_sum = late_max = late_over_1ms = 0
    last_send_error = None
    monotonic_ns, time_ns = time.monotonic_ns, time.time_ns
    # With kernel receive timestamps the RTTs do not depend on when we read the echoes, so
    # the sending loop wakes up only for its schedule and reads whatever arrived meanwhile:
    # half the wake-ups (and CPU) of waking up for every echo too.
    rlist = [sock, stopper]
    send_wait = [stopper] if kernel_stamps else rlist

    def drain():
        nonlocal received, duplicates
        while True:
            try:
                if kernel_stamps:
                    data, anc, _, _ = sock.recvmsg(bufsize, cmsg_space)
                else:
                    data, anc = sock.recv(bufsize), ()
            except OSError:           # nothing more to read (or an error report: read again
                return                # at the next wake-up)
            rx_ns = None
            for level, kind, cdata in anc:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(cdata) >= 16:
                    sec, nsec = struct.unpack_from("@qq", cdata)
                    rx_ns = sec * 1_000_000_000 + nsec
            if rx_ns is None:
                rx_ns = time_ns()
            if len(data) < PROBE_HEADER.size or data[:8] != PROBE_MAGIC:
                continue
            _, s, t_ns = PROBE_HEADER.unpack_from(data)
            if s >= seq or t_ns < start_ns or t_ns > rx_ns:
                continue                  # not one of ours
            if got[s]:
                duplicates += 1
                continue
            got[s] = 1
            received += 1
            rtt_t.append((t_ns - start_ns) / 1e9)
            rtt_v.append((rx_ns - t_ns) / 1e6)

    max_backlog = max(args.max_burst, int(args.max_backlog * rate))
    hold_until = 0                        # while catching up: no batch before this time
    t0 = monotonic_ns()
    start_ns = time_ns()
    end_ns = None
    while not stopper.stopped:
        if total is not None and slot >= total:
            break
        now = monotonic_ns()
        due = t0 + slot * interval
        if now >= due and now >= hold_until:
            n_due = int((now - due) // interval) + 1
            if total is not None:
                n_due = min(n_due, total - slot)
            if n_due > max_backlog:             # a long stall: give up the oldest slots
                skipped += n_due - max_backlog
                slot += n_due - max_backlog
                n_due = max_backlog
            batch = min(n_due, args.max_burst)
            for _ in range(batch):
                late = now - (t0 + slot * interval)
                late_sum += late
                if late > late_max:
                    late_max = late
                if late > 1_000_000:
                    late_over_1ms += 1
                if seq >= len(got):
                    got.extend(bytes(len(got)))
                pack_into(buf, 0, PROBE_MAGIC, seq & 0xFFFFFFFF, time_ns())
                try:
                    sock.sendto(buf, addr if n_dst == 1 else addrs[seq % n_dst])
                except OSError as e:      # no route while a link is down, a full buffer
                    send_errors += 1
                    last_send_error = e.strerror or str(e)
                seq += 1
                slot += 1
            now = monotonic_ns()
            # behind schedule: catch up at twice the rate, in batches of at most max_burst
            hold_until = now + batch * interval / 2 if n_due > batch else 0
            if total is not None and slot >= total:
                break
        wake = max(t0 + slot * interval, hold_until)
        ready = select.select(send_wait, (), (), max(0.0, (wake - now) / 1e9))[0]
        if kernel_stamps or sock in ready:
            drain()
        if stopper in ready:
            stopper.drain()
    end_ns = time_ns()

    # wait for the echoes still in flight
    linger = min(args.linger, args.stop_linger) if stopper.stopped else args.linger
    stopped_while_sending = stopper.name
    deadline = monotonic_ns() + linger * 1e9
    while received < seq:
        if stopper.stopped and stopped_while_sending is None:
            break                         # a signal during the linger: finish now
        left = (deadline - monotonic_ns()) / 1e9
        if left <= 0:
            break
        ready = select.select(rlist, (), (), left)[0]
        if sock in ready:
            drain()
        if stopper in ready:
            stopper.drain()
    sock.close()

    n = len(rtt_v)
    every = max(1, math.ceil(n / args.max_rtt_samples)) if args.max_rtt_samples > 0 else 0
    rtt = [[round(rtt_t[i], 6), round(rtt_v[i], 3)] for i in range(0, n, every)] if every \
        else []
    elapsed = (end_ns - start_ns) / 1e9
    lost_ranges = seq_ranges(got, seq, limit=args.max_lost_ranges)
    result = {
        "tool": "lab.traffic probe", "format": 1,
        "dst": dsts[0] if n_dst == 1 else dsts, "port": args.port, "family": 6 if family == socket.AF_INET6 else 4,
        "rate": rate, "duration": args.duration, "size": size,
        "start": start_ns / 1e9, "end": end_ns / 1e9,
        "sent": seq, "received": received, "lost": seq - received,
        "duplicates": duplicates, "send_errors": send_errors,
        "last_send_error": last_send_error, "skipped_slots": skipped,
        "lost_seqs": lost_ranges,
        "lost_seqs_truncated": len(lost_ranges) >= args.max_lost_ranges > 0,
        "rtt_ms": rtt, "rtt_every": every,
        "rtt_stats": _stats(rtt_v),
        "rtt_clock": "kernel receive timestamp" if kernel_stamps else "time.time_ns",
        "pacing": {
            "achieved_rate": round((seq - 1) / elapsed, 2) if elapsed > 0 and seq > 1 else None,
            "late_mean_ms": round(late_sum / seq / 1e6, 4) if seq else None,
            "late_max_ms": round(late_max / 1e6, 3),
            "late_over_1ms": late_over_1ms,
        },
        "cpu_s": _cpu_seconds(),
        "stopped_by": stopped_while_sending or stopper.name,
    }
    _write_json(args.out, result)
    stats = result["rtt_stats"]
    _say("probe", f"sent {seq} received {received} lost {seq - received}"
                  + (f" rtt p50 {stats['p50']} ms max {stats['max']} ms" if stats else "")
                  + (f" (stopped by {result['stopped_by']})" if result["stopped_by"] else ""),
         to_stderr=args.out is None)
    return 0


# --- echo server ---------------------------------------------------------------------------

class _TcpConn:
    __slots__ = ("sock", "pending", "reading")

    def __init__(self, sock):
        self.sock = sock
        self.pending = bytearray()
        self.reading = True


def run_echo(args, stopper):
    sel = selectors.DefaultSelector()
    sel.register(stopper, selectors.EVENT_READ, "stop")
    owned = []
    families = [(socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")]
    bound = []
    for family, anyaddr in families:
        for kind, port in ((socket.SOCK_DGRAM, args.port), (socket.SOCK_STREAM, args.tcp_port)):
            if not port:
                continue
            try:
                s = socket.socket(family, kind)
            except OSError:
                continue                  # no IPv6 in this namespace
            owned.append(s)
            try:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:
                    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                if kind == socket.SOCK_DGRAM:
                    if family == socket.AF_INET:
                        s.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
                    else:
                        s.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVPKTINFO, 1)
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
                s.bind((anyaddr, port))
                if kind == socket.SOCK_STREAM:
                    s.listen(64)
            except OSError as e:
                if family == socket.AF_INET6 and e.errno in (errno.EADDRNOTAVAIL,
                                                             errno.EAFNOSUPPORT):
                    continue
                proto = "udp" if kind == socket.SOCK_DGRAM else "tcp"
                raise UsageError(f"cannot listen on {proto} port {port}: "
                                 f"{e.strerror or e}") from None
            s.setblocking(False)
            sel.register(s, selectors.EVENT_READ,
                         ("udp", family) if kind == socket.SOCK_DGRAM else "listen")
            bound.append(f"{'udp' if kind == socket.SOCK_DGRAM else 'tcp'}"
                         f"{'6' if family == socket.AF_INET6 else '4'}/{port}")
    if not bound:
        raise UsageError("nothing to listen on")
    _say("echo", f"ready ({' '.join(bound)}) at {time.time():.6f}")

    udp_echoed = udp_errors = tcp_conns = tcp_bytes = 0
    space4 = socket.CMSG_SPACE(12)
    space6 = socket.CMSG_SPACE(20)
    conns = {}

    def close(conn):
        try:
            sel.unregister(conn.sock)
        except (KeyError, ValueError):
            pass
        conn.sock.close()
        conns.pop(conn.sock, None)

    def udp_ready(s, family):
        nonlocal udp_echoed, udp_errors
        for _ in range(256):              # then let the other sockets have a turn
            try:
                data, anc, _, peer = s.recvmsg(65535, space6 if family == socket.AF_INET6
                                               else space4)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                continue
            reply_anc = []
            for level, kind, cdata in anc:
                if family == socket.AF_INET and level == socket.IPPROTO_IP \
                        and kind == IP_PKTINFO and len(cdata) >= 12:
                    dst = cdata[8:12]             # the header's destination address
                    if not (dst[0] >= 224 or dst == b"\xff\xff\xff\xff"):
                        reply_anc = [(level, kind, struct.pack("@i4s4s", 0, dst, bytes(4)))]
                elif family == socket.AF_INET6 and level == socket.IPPROTO_IPV6 \
                        and kind == IPV6_PKTINFO and len(cdata) >= 20:
                    dst = cdata[:16]
                    if dst[0] != 0xFF:
                        reply_anc = [(level, kind, cdata[:20])]
            try:
                s.sendmsg([data], reply_anc, 0, peer)
                udp_echoed += 1
            except OSError:
                udp_errors += 1

    def accept(s):
        nonlocal tcp_conns
        while True:
            try:
                c, _ = s.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            c.setblocking(False)
            c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = _TcpConn(c)
            conns[c] = conn
            sel.register(c, selectors.EVENT_READ, conn)
            tcp_conns += 1

    def conn_ready(conn, events):
        nonlocal tcp_bytes
        try:
            if events & selectors.EVENT_READ and conn.reading:
                data = conn.sock.recv(65536)
                if not data:
                    close(conn)
                    return
                conn.pending += data
                tcp_bytes += len(data)
            if conn.pending:
                n = conn.sock.send(conn.pending)
                del conn.pending[:n]
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            close(conn)
            return
        # stop reading while a lot waits to go back; wait for room to write when needed
        conn.reading = len(conn.pending) < (1 << 20)
        want = (selectors.EVENT_READ if conn.reading else 0) | \
            (selectors.EVENT_WRITE if conn.pending else 0)
        sel.modify(conn.sock, want, conn)

    while not stopper.stopped:
        for key, events in sel.select():
            what = key.data
            if what == "stop":
                stopper.drain()
            elif what == "listen":
                accept(key.fileobj)
            elif isinstance(what, tuple):
                udp_ready(key.fileobj, what[1])
            elif key.fileobj in conns:
                conn_ready(what, events)
    for conn in list(conns.values()):
        close(conn)
    for s in owned:
        s.close()
    sel.close()
    _say("echo", f"stopped by {stopper.name}: {udp_echoed} datagrams echoed "
                 f"({udp_errors} send errors), {tcp_conns} TCP connections, {tcp_bytes} bytes "
                 f"echoed, cpu {_cpu_seconds()} s")
    return 0


# --- TCP session --------------------------------------------------------------------------

def run_tcp(args, stopper):
    family, addr = _resolve(args.dst, args.port, socket.SOCK_STREAM)
    size = max(TCP_HEADER.size + 1, args.size)
    monotonic = time.monotonic
    result = {"tool": "lab.traffic tcp", "format": 1, "dst": args.dst, "port": args.port,
              "family": 6 if family == socket.AF_INET6 else 4, "interval": args.interval,
              "duration": args.duration, "size": size, "stall_timeout": args.stall_timeout,
              "connected": False, "survived": False, "bytes_sent": 0, "bytes_echoed": 0,
              "chunks_sent": 0, "chunks_verified": 0, "max_stall_ms": 0.0, "connect_ms": None,
              "error": None, "start": time.time(), "end": None}

    def finish(error=None):
        result["error"] = error
        result["survived"] = bool(result["connected"] and error is None)
        result["end"] = time.time()
        result["cpu_s"] = _cpu_seconds()
        result["stopped_by"] = stopper.name
        _write_json(args.out, result)
        _say("tcp", ("survived" if result["survived"] else f"failed: {error}")
             + f", {result['bytes_echoed']}/{result['bytes_sent']} bytes echoed, longest "
               f"stall {result['max_stall_ms']} ms", to_stderr=args.out is None)
        return 0

    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, TCP_USER_TIMEOUT,
                            int(args.stall_timeout * 1000))
        except OSError:
            pass
        sock.setblocking(False)
        t_connect = monotonic()
        err = sock.connect_ex(addr)
        if err not in (0, errno.EINPROGRESS):
            return finish(_error_text(OSError(err, os.strerror(err))))
        if err:
            deadline = t_connect + args.connect_timeout
            while True:
                left = deadline - monotonic()
                if stopper.stopped:
                    return finish(f"stopped by {stopper.name} while connecting")
                if left <= 0:
                    return finish(f"connect timed out after {args.connect_timeout} s")
                r, w, _ = select.select([stopper], [sock], [], left)
                if r:
                    stopper.drain()
                if w:
                    break
            err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                return finish(_error_text(OSError(err, os.strerror(err))))
        result["connected"] = True
        result["connect_ms"] = round((monotonic() - t_connect) * 1000, 3)
        return _tcp_session(args, stopper, sock, size, result, finish)
    finally:
        sock.close()


def _tcp_session(args, stopper, sock, size, result, finish):
    monotonic = time.monotonic
    interval = args.interval
    total = int(round(args.duration / interval)) if args.duration > 0 else None
    out = bytearray()
    rx = bytearray()
    sent = echoed = produced = verified = 0
    max_gap = 0.0
    t0 = monotonic()
    last_echo = None                      # time of the last echo (or of the first send)
    outstanding_since = None
    finishing_at = None                   # when we stopped producing chunks
    linger = None
    error = None

    def update():
        result.update(bytes_sent=sent, bytes_echoed=echoed, chunks_sent=produced,
                      chunks_verified=verified, max_stall_ms=round(max_gap * 1000, 1))

    while True:
        now = monotonic()
        if finishing_at is None:
            if stopper.stopped or (total is not None and produced >= total):
                finishing_at = now
                linger = args.stop_linger if stopper.stopped else args.stall_timeout
            else:
                while produced < (total if total is not None else produced + 1) \
                        and t0 + produced * interval <= now:
                    if sent + len(out) == echoed:
                        outstanding_since = now
                    out += make_chunk(produced, size)
                    produced += 1
                    if last_echo is None:
                        last_echo = now
        try:
            if out:
                n = sock.send(out)
                del out[:n]
                sent += n
        except (BlockingIOError, InterruptedError):
            pass
        except OSError as e:
            error = _error_text(e)
            break
        unechoed = sent + len(out) - echoed
        if finishing_at is not None:
            if unechoed == 0:
                break
            if stopper.stopped and linger > args.stop_linger:
                linger = args.stop_linger         # a signal while waiting for the last echoes
                finishing_at = now
            if now - finishing_at >= linger:
                error = (f"stopped by {stopper.name} with {unechoed} bytes not echoed yet"
                         if stopper.stopped else f"{unechoed} bytes never echoed")
                break
        stall_ref = None
        if unechoed:
            stall_ref = max(last_echo or now, outstanding_since or now)
            if now - stall_ref >= args.stall_timeout:
                error = f"no echo for {args.stall_timeout:g} s"
                break
        # sleep until the next chunk is due, the stall limit, or the end of the linger
        wake = []
        if finishing_at is None:
            wake.append(t0 + produced * interval)
        else:
            wake.append(finishing_at + linger)
        if stall_ref is not None:
            wake.append(stall_ref + args.stall_timeout)
        timeout = max(0.0, min(wake) - monotonic())
        try:
            r, _, _ = select.select([sock, stopper], [sock] if out else [], [], timeout)
        except OSError as e:
            error = _error_text(e)
            break
        if stopper in r:
            stopper.drain()
        if sock in r:
            try:
                data = sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError as e:
                error = _error_text(e)
                break
            if not data:
                error = "connection closed by peer"
                break
            t = monotonic()
            if last_echo is not None:
                max_gap = max(max_gap, t - last_echo)
            last_echo = t
            echoed += len(data)
            rx += data
            while len(rx) >= size:
                if rx[:size] != make_chunk(verified, size):
                    error = f"echo of chunk {verified} does not match what was sent"
                    break
                del rx[:size]
                verified += 1
            if error is None and rx and rx != make_chunk(verified, size)[:len(rx)]:
                error = f"echo of chunk {verified} does not match what was sent"
            if error:
                break
            if sent + len(out) - echoed == 0:
                outstanding_since = None
    if error is not None and sent + len(out) > echoed and last_echo is not None:
        max_gap = max(max_gap, monotonic() - last_echo)       # the gap the session died in
    update()
    if error is None:
        try:
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
    return finish(error)


# --- announce -------------------------------------------------------------------------------

def _parse_mac(text):
    parts = text.split(":")
    if len(parts) != 6 or not all(len(p) in (1, 2) for p in parts):
        raise UsageError(f"invalid MAC address {text!r}")
    try:
        return bytes(int(p, 16) for p in parts)
    except ValueError:
        raise UsageError(f"invalid MAC address {text!r}") from None


def _format_mac(mac):
    return ":".join(f"{b:02x}" for b in mac)


def run_announce(args, stopper):
    frames = []
    for ip in args.ip:
        try:
            socket.inet_aton(ip)
            if ip.count(".") != 3:
                raise OSError
        except OSError:
            raise UsageError(f"invalid IPv4 address {ip!r}") from None
    for ip6 in args.ip6:
        try:
            raw = socket.inet_pton(socket.AF_INET6, ip6)
        except OSError:
            raise UsageError(f"invalid IPv6 address {ip6!r}") from None
        if raw[0] == 0xFF or raw == bytes(16):
            raise UsageError(f"not a unicast IPv6 address: {ip6}")
    if not args.ip and not args.ip6:
        raise UsageError("nothing to announce: give --ip and/or --ip6")
    try:
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    except PermissionError:
        raise UsageError("a raw packet socket needs root (CAP_NET_RAW)") from None
    with sock:
        try:
            sock.bind((args.iface, 0))
        except OSError as e:
            if e.errno == errno.ENODEV:
                raise UsageError(f"no interface {args.iface}") from None
            raise UsageError(f"cannot use {args.iface}: {e.strerror or e}") from None
        mac = _parse_mac(args.mac) if args.mac else sock.getsockname()[4][:6]
        if len(mac) != 6:
            raise UsageError(f"{args.iface} has no Ethernet address")
        for ip in args.ip:
            frames += [arp_announcement(mac, ip, 1), arp_announcement(mac, ip, 2)]
        for ip6 in args.ip6:
            frames.append(neighbour_advert(mac, ip6))
        sent = 0
        for round_ in range(args.count):
            if stopper.stopped:
                break
            if round_:
                select.select([stopper], [], [], args.interval)
                if stopper.stopped:
                    break
            for frame in frames:
                try:
                    sock.send(frame)
                    sent += 1
                except OSError as e:
                    if e.errno == errno.ENETDOWN:
                        raise UsageError(f"{args.iface} is down") from None
                    raise UsageError(f"cannot send on {args.iface}: {e.strerror or e}") \
                        from None
    _say("announce", f"{args.iface} {_format_mac(mac)}: {sent} frames "
                     f"({', '.join(args.ip + args.ip6)})")
    return 0


# --- command line --------------------------------------------------------------------------

def _positive(kind):
    def check(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"must be positive: {text!r}")
        return value
    return check


def _non_negative(kind):
    def check(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if value < 0:
            raise argparse.ArgumentTypeError(f"must not be negative: {text!r}")
        return value
    return check


def _port(text):
    value = _non_negative(int)(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"not a port: {text!r}")
    return value


def build_parser():
    p = argparse.ArgumentParser(prog="python -m lab.traffic",
                                description="Probe flow, TCP session and VM announcements "
                                            "for the VM-move demo.")
    sub = p.add_subparsers(dest="role", metavar="ROLE", required=True)
    nice = argparse.ArgumentParser(add_help=False)
    nice.add_argument("--nice", type=int, default=-10,
                      help="scheduling priority to take if allowed (-20..19; default -10: "
                           "timely on a busy machine, at a few %% of a core)")

    e = sub.add_parser("echo", parents=[nice],
                       help="echo server for probes (UDP) and the TCP session")
    e.add_argument("--port", type=_port, default=PROBE_PORT, help="UDP port (0: none)")
    e.add_argument("--tcp-port", type=_port, default=TCP_PORT, help="TCP port (0: none)")

    pr = sub.add_parser("probe", parents=[nice],
                        help="sequence-numbered UDP probes, RTT and loss")
    pr.add_argument("--dst", required=True, action="append",
                    help="the VM's address (IPv4 or IPv6); repeated: the probes go round "
                         "robin to each (probe n to the (n mod count)th)")
    pr.add_argument("--port", type=_port, default=PROBE_PORT)
    pr.add_argument("--rate", type=_positive(float), default=1000.0, help="probes per second")
    pr.add_argument("--duration", type=_non_negative(float), default=0.0,
                    help="seconds of sending (0: until SIGTERM or SIGINT)")
    pr.add_argument("--out", help="JSON result file (default: stdout)")
    pr.add_argument("--size", type=_positive(int), default=PROBE_SIZE, help="payload bytes")
    pr.add_argument("--linger", type=_non_negative(float), default=1.0,
                    help="seconds to wait for the last echoes after sending")
    pr.add_argument("--stop-linger", type=_non_negative(float), default=0.3,
                    help="the same after a stop signal")
    pr.add_argument("--max-burst", type=_positive(int), default=5,
                    help="most probes sent back to back when catching up")
    pr.add_argument("--max-backlog", type=_non_negative(float), default=0.1,
                    help="seconds behind schedule beyond which slots are skipped")
    pr.add_argument("--max-rtt-samples", type=_non_negative(int), default=60000)
    pr.add_argument("--max-lost-ranges", type=_positive(int), default=10000)

    t = sub.add_parser("tcp", parents=[nice],
                       help="a long-lived TCP session through the echo server")
    t.add_argument("--dst", required=True, help="the VM's address (IPv4 or IPv6)")
    t.add_argument("--port", type=_port, default=TCP_PORT)
    t.add_argument("--interval", type=_positive(float), default=0.01,
                   help="seconds between chunks")
    t.add_argument("--duration", type=_non_negative(float), default=0.0,
                   help="seconds of sending (0: until SIGTERM or SIGINT)")
    t.add_argument("--out", help="JSON result file (default: stdout)")
    t.add_argument("--size", type=_positive(int), default=100, help="chunk bytes")
    t.add_argument("--stall-timeout", type=_positive(float), default=10.0,
                   help="seconds without an echo (data outstanding) that fail the session")
    t.add_argument("--connect-timeout", type=_positive(float), default=5.0)
    t.add_argument("--stop-linger", type=_non_negative(float), default=0.5,
                   help="seconds to wait for the last echoes after a stop signal")

    a = sub.add_parser("announce", help="gratuitous ARP / unsolicited NA from a moved VM")
    a.add_argument("--iface", required=True)
    a.add_argument("--ip", action="append", default=[], help="IPv4 address (repeatable)")
    a.add_argument("--ip6", action="append", default=[], help="IPv6 address (repeatable)")
    a.add_argument("--mac", help="sender MAC (default: the interface's)")
    a.add_argument("--count", type=_positive(int), default=3, help="rounds of frames")
    a.add_argument("--interval", type=_non_negative(float), default=0.1,
                   help="seconds between rounds")
    return p


ROLES = {"echo": run_echo, "probe": run_probe, "tcp": run_tcp, "announce": run_announce}


def _set_priority(value):
    """Best effort: a better CPU priority keeps the schedule on a busy machine (the demo
    runs on two cores with the LISP daemons). Without the right (not root) nothing changes."""
    if value is None:
        return
    try:
        os.setpriority(os.PRIO_PROCESS, 0, value)
    except OSError:
        pass


def main(argv=None):
    args = build_parser().parse_args(argv)
    _set_priority(getattr(args, "nice", None))
    try:
        with Stopper() as stopper:
            return ROLES[args.role](args, stopper)
    except UsageError as e:
        print(f"traffic {args.role}: {e}", file=sys.stderr, flush=True)
        return 1
    except OSError as e:
        print(f"traffic {args.role}: {e.strerror or e}", file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:             # a signal before the handlers were in place
        return 0


if __name__ == "__main__":
    sys.exit(main())

"""A layer-2 relay between two interfaces that delays every frame by a fixed time (and drops a
given share of them at random).

    python3 lab/relay.py --delay-ms 10 IF_A IF_B [--loss-pct 5] [--limit 10000] [--name NAME]

Run inside a network namespace that holds IF_A and IF_B (a relay node of lab.delay, which
starts it). Every frame that arrives on IF_A is sent out of IF_B `delay` later, and every
frame that arrives on IF_B is sent out of IF_A `delay` later: ARP, IPv6 neighbour discovery,
VLAN tags and any payload pass unchanged (the relay has no address and never speaks).

How it works (standard library only, so it runs with any Python 3.8+):
- Four AF_PACKET sockets: one receiving socket per interface (ETH_P_ALL, with
  PACKET_IGNORE_OUTGOING, and the packet type checked too, so the relay never reads back
  what it sent) and one sending socket per interface (protocol 0: it receives nothing).
- One process per direction (forked after the sockets are bound, so no frame is missed
  between start-up and the "ready" line, and the directions do not share a GIL). Each runs
  one loop: send every frame whose release time has come, then wait in select() (which
  takes a timeout in microseconds) for the next frame or the next release, whichever is
  first. The timer slack is set to 1 ns so the kernel wakes the loop on time.
- A frame's release time is its arrival time plus the delay. The arrival time is the
  kernel's receive timestamp (SO_TIMESTAMPNS, moved to the monotonic clock), so a frame that
  waited in the socket buffer while the loop was busy is not delayed more. The delay is
  fixed, so release times never decrease and a FIFO queue keeps the order of each direction.
- The queue is bounded (--limit frames, like netem's limit): a frame that finds it full is
  dropped and counted.
- --loss-pct P drops each arriving frame with probability P/100, independently (netem's
  plain `loss P%`), counted as dropped_loss.
- A VLAN tag the kernel took out of a frame (it always does before packet sockets see it) is
  put back from PACKET_AUXDATA.
- Offloads must be off on the relay's interfaces and on their peers (lab.delay does it):
  then each frame is a real, complete frame with its checksums computed. A frame the kernel
  hands over with an unfinished checksum is still forwarded, and counted (csum_partial).

Output (stdout, one JSON object per line): {"event": "ready", ...} once both directions can
receive, and {"event": "stats", "direction": "IF_A->IF_B", ...} per direction when it stops
(frames and bytes forwarded, dropped because the queue or the kernel's receive buffer was
full, send and receive errors, truncated frames, the largest queue, and how late releases
were: mean and max in microseconds).

SIGTERM or SIGINT stops it at once (the Lab sees it gone in about 0.1 s); each direction
also has SIGTERM as parent-death signal, so nothing outlives the relay's main process. A
receive error (ENETDOWN when an interface goes down) is counted and the relay goes on: the
socket resumes when the interface comes back up.
"""
import argparse
import collections
import ctypes
import json
import os
import random
import select
import signal
import socket
import struct
import sys
import time

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_AUXDATA = 8
PACKET_STATISTICS = 6
PACKET_IGNORE_OUTGOING = 23
PACKET_OUTGOING = 4
TP_STATUS_CSUMNOTREADY = 1 << 3
TP_STATUS_VLAN_VALID = 1 << 4
TP_STATUS_VLAN_TPID_VALID = 1 << 6
SO_RCVBUFFORCE = 33
SO_SNDBUFFORCE = 32
SO_TIMESTAMPNS = 35          # (SO_TIMESTAMPNS_OLD): a struct timespec per frame
SCM_TIMESTAMPNS = SO_TIMESTAMPNS
PR_SET_TIMERSLACK = 29
PR_SET_PDEATHSIG = 1
ETH_P_8021Q = 0x8100

# struct tpacket_auxdata: status, len, snaplen (u32), mac, net (u16), vlan_tci, vlan_tpid
AUXDATA = struct.Struct("=IIIHHHH")
TIMESPEC = struct.Struct("@ll")           # struct timespec: tv_sec, tv_nsec (longs)
BUFSIZE = 65536 + 64          # any frame (even a GSO one, which then fails to send, counted)
BATCH = 64                    # frames read per wake-up before releases are checked again
RCVBUF = 1 << 20              # the kernel's backlog when the loop falls behind (bytes)
SNDBUF = 4 << 20

_libc = ctypes.CDLL(None, use_errno=True)


def prctl(option, arg):
    if _libc.prctl(option, ctypes.c_ulong(arg), 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"prctl({option}): {os.strerror(err)}")


def receiver(ifname, rcvbuf=RCVBUF):
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    s.bind((ifname, ETH_P_ALL))
    try:
        s.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
    except OSError:
        pass                  # kernel older than 4.20: the packet type check below suffices
    s.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
    s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    try:
        s.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, rcvbuf)
    except OSError:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.setblocking(False)
    return s


def sender(ifname):
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)    # protocol 0: receives nothing
    s.bind((ifname, 0))
    try:
        s.setsockopt(socket.SOL_SOCKET, SO_SNDBUFFORCE, SNDBUF)
    except OSError:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SNDBUF)
    return s


class Direction:
    """Frames from `rx` to `tx`, each released `delay` seconds after it arrived."""

    def __init__(self, label, rx, tx, delay, limit, loss=0.0):
        self.label = label
        self.loss = loss                 # probability of dropping a frame
        self.random = random.Random()
        self.rx = rx
        self.tx = tx
        self.delay = delay
        self.limit = limit
        self.queue = collections.deque()
        self.buf = bytearray(BUFSIZE)
        self.view = memoryview(self.buf)
        self.counts = dict(forwarded=0, bytes=0, dropped_queue_full=0, dropped_loss=0,
                           send_errors=0,
                           receive_errors=0, truncated=0, csum_partial=0, vlan_restored=0,
                           max_queue=0)
        self.late_sum = 0.0
        self.late_max = 0.0
        self.last_error = None

    def _receive(self, now, offset):
        """Read up to BATCH waiting frames into the queue. `offset` converts a realtime
        kernel timestamp into the monotonic clock."""
        rx, queue, counts, limit = self.rx, self.queue, self.counts, self.limit
        buf, view = self.buf, self.view
        last_due = queue[-1][0] if queue else 0.0
        for _ in range(BATCH):
            try:
                n, anc, flags, addr = rx.recvmsg_into([buf], 256)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as e:     # e.g. ENETDOWN once when the interface goes down: the
                counts["receive_errors"] += 1     # socket stays bound and resumes on up
                self.last_error = f"receive: {e.strerror or e}"
                break
            if addr[2] == PACKET_OUTGOING:
                continue
            if flags & socket.MSG_TRUNC:
                counts["truncated"] += 1
                continue
            if self.loss and self.random.random() < self.loss:
                counts["dropped_loss"] += 1
                continue
            arrived = now
            frame = None
            for level, kind, data in anc:
                if level == socket.SOL_SOCKET and kind == SCM_TIMESTAMPNS:
                    sec, nsec = TIMESPEC.unpack_from(data)
                    t = sec + nsec * 1e-9 - offset
                    if now - 1.0 < t <= now:     # ignore a timestamp from a clock step
                        arrived = t
                elif level == SOL_PACKET and kind == PACKET_AUXDATA:
                    status, _len, _snap, _mac, _net, tci, tpid = AUXDATA.unpack_from(data)
                    if status & TP_STATUS_CSUMNOTREADY:
                        counts["csum_partial"] += 1
                    if status & TP_STATUS_VLAN_VALID:
                        if not status & TP_STATUS_VLAN_TPID_VALID:
                            tpid = ETH_P_8021Q
                        frame = b"".join((view[:12], struct.pack("!HH", tpid, tci),
                                          view[12:n]))
                        counts["vlan_restored"] += 1
            if len(queue) >= limit:
                counts["dropped_queue_full"] += 1
                continue
            if frame is None:
                frame = buf[:n]
            due = arrived + self.delay
            if due < last_due:           # keep release times in arrival order
                due = last_due
            last_due = due
            queue.append((due, frame))
        if len(queue) > counts["max_queue"]:
            counts["max_queue"] = len(queue)

    def _release(self, now):
        queue, counts, send = self.queue, self.counts, self.tx.send
        while queue and queue[0][0] <= now:
            due, frame = queue.popleft()
            try:
                send(frame)
            except OSError as e:
                counts["send_errors"] += 1
                self.last_error = f"send: {e.strerror or e} ({len(frame)} bytes)"
                continue
            late = now - due
            self.late_sum += late
            if late > self.late_max:
                self.late_max = late
            counts["forwarded"] += 1
            counts["bytes"] += len(frame)
            now = time.monotonic()

    def run(self):
        rx = self.rx
        monotonic, realtime = time.monotonic, time.time
        offset = realtime() - monotonic()
        wait = select.select
        rlist = [rx]
        while True:
            now = monotonic()
            self._release(now)
            if self.queue:
                timeout = self.queue[0][0] - monotonic()
                if timeout < 0:
                    timeout = 0
            else:
                timeout = None
            ready, _, _ = wait(rlist, (), (), timeout)
            if ready:
                now = monotonic()
                offset = realtime() - now
                self._receive(now, offset)

    def kernel_drops(self):
        """Frames the kernel dropped because the receive buffer was full (PACKET_STATISTICS
        counts since the last read; read once, at the end)."""
        try:
            _packets, drops = struct.unpack("=II", self.rx.getsockopt(SOL_PACKET,
                                                                      PACKET_STATISTICS, 8))
            return drops
        except OSError:
            return None

    def stats(self):
        n = self.counts["forwarded"]
        return {"event": "stats", "direction": self.label, **self.counts,
                "dropped_rcvbuf_full": self.kernel_drops(),
                "queued_at_exit": len(self.queue),
                "late_mean_us": round(self.late_sum / n * 1e6, 1) if n else None,
                "late_max_us": round(self.late_max * 1e6, 1),
                "last_error": self.last_error}


def say(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


class Stop(Exception):
    pass


def _raise_stop(signum, frame):
    raise Stop()


def run_direction(direction):
    """The body of one direction's process: loop until SIGTERM/SIGINT (whose handlers raise
    Stop), then report."""
    code = 0
    try:
        try:
            direction.run()
        finally:                        # a second signal must not cut the report short
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            signal.signal(signal.SIGINT, signal.SIG_IGN)
    except Stop:
        pass
    except BaseException as e:          # report, and let the main process stop the other
        say({"event": "error", "direction": direction.label, "error": repr(e)})
        code = 1
    try:
        say(direction.stats())
    finally:
        os._exit(code)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("if_a")
    p.add_argument("if_b")
    p.add_argument("--delay-ms", type=float, required=True,
                   help="one-way delay added in each direction, in milliseconds")
    p.add_argument("--loss-pct", type=float, default=0.0,
                   help="share of frames dropped at random in each direction, in percent")
    p.add_argument("--limit", type=int, default=10000,
                   help="most frames waiting per direction (default 10000)")
    p.add_argument("--rcvbuf", type=int, default=RCVBUF,
                   help="receive buffer per interface, in bytes: the backlog the kernel keeps "
                        f"when the relay falls behind (default {RCVBUF})")
    p.add_argument("--name", default="relay", help="a name for the log lines")
    args = p.parse_args(argv)
    if args.delay_ms < 0 or args.limit < 1 or not 0 <= args.loss_pct <= 100:
        p.error("the delay must be >= 0, the loss from 0 to 100 and the limit >= 1")

    stopping = False
    children = {}

    def stop_children():
        for pid in list(children):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    def on_signal(signum, frame):
        nonlocal stopping
        stopping = True
        stop_children()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    prctl(PR_SET_TIMERSLACK, 1)           # inherited by the direction processes
    delay = args.delay_ms / 1000.0
    rx_a, rx_b = receiver(args.if_a, args.rcvbuf), receiver(args.if_b, args.rcvbuf)
    tx_a, tx_b = sender(args.if_a), sender(args.if_b)
    loss = args.loss_pct / 100.0
    directions = [Direction(f"{args.if_a}->{args.if_b}", rx_a, tx_b, delay, args.limit, loss),
                  Direction(f"{args.if_b}->{args.if_a}", rx_b, tx_a, delay, args.limit, loss)]
    parent = os.getpid()
    stop_signals = {signal.SIGTERM, signal.SIGINT}
    for d in directions:
        # signals wait while forking: the child must not run the parent's handler
        signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
        pid = os.fork()
        if pid == 0:
            try:
                signal.signal(signal.SIGTERM, _raise_stop)
                signal.signal(signal.SIGINT, _raise_stop)
                prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
                signal.pthread_sigmask(signal.SIG_UNBLOCK, stop_signals)
                if os.getppid() != parent:
                    os._exit(1)
                run_direction(d)
            finally:
                os._exit(1)
        children[pid] = d.label
        signal.pthread_sigmask(signal.SIG_UNBLOCK, stop_signals)
    for s in (rx_a, rx_b, tx_a, tx_b):
        s.close()
    say({"event": "ready", "name": args.name, "if_a": args.if_a, "if_b": args.if_b,
         "delay_ms": args.delay_ms, "loss_pct": args.loss_pct, "limit": args.limit,
         "pids": sorted(children)})

    code = 0
    if stopping:                          # a signal came before the children were known
        stop_children()
    while children:
        try:
            pid, status = os.waitpid(-1, 0)
        except ChildProcessError:
            break
        except InterruptedError:
            continue
        label = children.pop(pid, None)
        if label is None:
            continue
        if not stopping:                  # a direction died on its own: stop the other
            say({"event": "error", "direction": label,
                 "error": f"exited unexpectedly (status {status})"})
            code = 1
            stopping = True
            stop_children()
    return code


if __name__ == "__main__":
    sys.exit(main())

"""Fuzzing the daemons (issue 9): from a namespace of its own (fzatk, a host of a non-LISP
site of tests/data/fuzz-lab.yaml), 100,000 datagrams or more to each daemon's control port
4342 (an xTR, the Map-Server/Map-Resolver, the proxy xTR) and 100,000 to each data port 4341
(the xTR, the proxy xTR): valid messages of every type built with nodes/lisp/messages.py
(Map-Request plain, SMR, RLOC-probe and encapsulated; Map-Reply; Map-Register, Map-Notify
and Map-Notify-Ack signed with a key the daemons do not know; every address kind: IPv4,
IPv6, instance ID, AFI list, distinguished name, MAC, an opaque LCAF), then mutated:
truncated, bit-flipped, wrong record, locator and ITR-RLOC counts, wrong AFIs and LCAF
lengths, garbage appended, or random bytes; and LISP data packets with bad headers (wrong
instance ID, flags) and bad inner packets (truncated, wrong version, bad lengths, random).
Bounded in count and time (a few seconds per daemon), only to the lab's own addresses (the
inner destinations of data packets too).

Meanwhile the two LISP sites ping each other; after it they still do, every daemon is alive
and healthy (data-plane threads alive, registrations in place, no internal error), and each
daemon's counters account for what it was sent: every datagram was read (control_received,
and for 4341 the data plane's outcome counters) or dropped by the kernel for a full receive
buffer (the drops column of /proc/net/udp in the daemon's namespace), and every datagram
read on 4342 has an outcome counter (malformed, rate-limited, or a message counted as
received, rejected or unexpected).

The fuzzer is this module: python -m tests.emulation.test_fuzz SEED RATE HOST:PORT:COUNT...
"""
import ipaddress
import json
import random
import re
import signal
import struct
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PY = sys.executable
IID = 7
ATK = "198.51.61.66"               # the fuzzer (ITR-RLOC of its requests, inner source)
EIDS = ["10.61.1.10", "10.61.1.99", "10.61.2.10", "10.61.2.99", "2001:db8:61:1::10"]
PER_PORT = 100_000
RATE = 20_000                      # datagrams a second to each port of one daemon

# --- the fuzzer (no root, no lab: importable by the unit of the test and run as a module) --


def valid_messages(rng):
    """Wire bytes of valid control messages of every type and address kind."""
    from nodes.lisp.address import (AfiList, DistinguishedName, InstanceId, Lcaf, MacAddress,
                                    eid_address)
    from nodes.lisp.auth import sign
    from nodes.lisp.ipudp import IpUdp
    from nodes.lisp.messages import (ALG_HMAC_SHA1_96, ALG_HMAC_SHA256_128, ALG_NONE,
                                     EidRecord, EncapsulatedControl, Locator, MapNotify,
                                     MapNotifyAck, MapRegister, MapReply, MapRequest,
                                     RequestRecord, encode)
    ip = ipaddress.ip_address
    atk = ip(ATK)
    eids = [eid_address(IID, ip(e)) for e in EIDS] + [
        eid_address(0, ip("10.61.1.10")), ip("10.61.2.10"), ip("2001:db8:61:2::10"),
        InstanceId(IID, None), InstanceId(2 ** 32 - 1, ip("0.0.0.0"), 8)]
    rlocs = [ip("172.26.1.1"), ip("172.26.2.1"), atk, ip("2001:db8:61:9::1"),
             AfiList((ip("172.26.1.1"), ip("2001:db8:61:9::1"))),
             DistinguishedName("fz"), MacAddress(b"\x00\x00\x5e\x00\x01\x07"),
             Lcaf(9, b"\x01\x02\x03\x04")]

    def mask(e):
        a = e.address if isinstance(e, InstanceId) else e
        return rng.choice([0, 8, 24, 32]) if getattr(a, "version", 4) == 4 or a is None \
            else rng.choice([0, 64, 128])

    def locs(n):
        return [Locator(rng.choice(rlocs[:4]), rng.randrange(256), rng.randrange(256),
                        local=rng.random() < 0.5, probed=rng.random() < 0.2,
                        reachable=rng.random() < 0.8) for _ in range(n)]

    def record(n=1):
        e = rng.choice(eids)
        return EidRecord(e, mask(e), locs(n), ttl=rng.choice([0, 1, 1440]),
                         action=rng.randrange(6), authoritative=rng.random() < 0.5,
                         map_version=rng.randrange(4096))

    out = []
    for _ in range(200):
        nonce = rng.getrandbits(64)
        e = rng.choice(eids)
        req = MapRequest(nonce, [RequestRecord(e, mask(e))],
                         [atk] + ([rng.choice(rlocs[3:5])] if rng.random() < 0.3 else []),
                         source_eid=rng.choice([None, eid_address(IID, ip("10.61.2.10")),
                                                eid_address(IID, atk)]),
                         authoritative=rng.random() < 0.3, probe=rng.random() < 0.2,
                         smr=rng.random() < 0.2, smr_invoked=rng.random() < 0.2,
                         pitr=rng.random() < 0.1,
                         map_reply_record=record() if rng.random() < 0.2 else None)
        inner6 = rng.random() < 0.2
        inner = IpUdp(ip("2001:db8:61:9::66") if inner6 else atk,
                      ip("2001:db8:61:1::10") if inner6 else ip("10.61.1.10"))
        alg = rng.choice([ALG_NONE, ALG_HMAC_SHA1_96, ALG_HMAC_SHA256_128])
        records = [record(rng.randrange(0, 4)) for _ in range(rng.randrange(0, 4))]
        key = b"not-the-key"
        out += [encode(req), encode(EncapsulatedControl(req, inner, to_ms=rng.random() < 0.3)),
                encode(MapReply(nonce, records, probe=rng.random() < 0.2)),
                encode(sign(MapRegister(nonce, records or [record()], key_id=rng.randrange(3),
                                        alg_id=alg, want_map_notify=rng.random() < 0.5,
                                        proxy_reply=rng.random() < 0.5,
                                        xtr_id=rng.getrandbits(128) if rng.random() < 0.5
                                        else None), key)),
                encode(sign(MapNotify(nonce, records, key_id=0, alg_id=alg), key)),
                encode(sign(MapNotifyAck(nonce, records, key_id=0, alg_id=alg), key))]
    return out


AFIS = [0, 1, 2, 6, 16387, 16389, 17, 0xFFFF]


def mutate(rng, wire):
    """One hostile variant of a valid control message's bytes."""
    b = bytearray(wire)
    how = rng.randrange(9)
    if how == 0 and b:                                          # truncated
        return bytes(b[:rng.randrange(len(b))])
    if how == 1:                                                # bits flipped
        for _ in range(rng.randrange(1, 9)):
            i = rng.randrange(len(b))
            b[i] ^= 1 << rng.randrange(8)
        return bytes(b)
    if how == 2:                                                # wrong record count
        b[3] = rng.randrange(256)
        return bytes(b)
    if how == 3 and len(b) > 2:                                 # wrong ITR-RLOC/locator count
        b[2] = (b[2] & 0xE0) | rng.randrange(32)
        i = rng.randrange(len(b))
        b[i] = rng.randrange(256)
        return bytes(b)
    if how == 4 and len(b) > 14:                                # a wrong AFI somewhere
        i = rng.randrange(12, len(b) - 1)
        b[i:i + 2] = struct.pack("!H", rng.choice(AFIS))
        return bytes(b)
    if how == 5 and len(b) > 16:                                # a wrong length (LCAF...)
        i = rng.randrange(12, len(b) - 1)
        b[i:i + 2] = struct.pack("!H", rng.choice([0, 1, 3, 255, 0xFFFF, len(b)]))
        return bytes(b)
    if how == 6:                                                # garbage appended
        return bytes(b) + rng.randbytes(rng.randrange(1, 64))
    if how == 7:                                                # a type's header, then noise
        return bytes([b[0]]) + rng.randbytes(rng.randrange(0, 80))
    return rng.randbytes(rng.randrange(0, 200))                 # random bytes (or none)


def inner_packet(rng, dst):
    """A valid inner IPv4 (ICMP echo, UDP) or IPv6 packet to `dst`, from the fuzzer."""
    from nodes.lisp.ipudp import internet_checksum
    src = ipaddress.ip_address(ATK)
    dst = ipaddress.ip_address(dst)
    payload = rng.randbytes(rng.randrange(0, 64))
    if dst.version == 6:
        body = struct.pack("!HHHH", 40000, 9, 8 + len(payload), 0) + payload
        return (struct.pack("!IHBB", 0x60000000, len(body), 17, 64)
                + ipaddress.ip_address("2001:db8:61:9::66").packed + dst.packed + body)
    if rng.random() < 0.5:
        proto, body = 1, struct.pack("!BBHHH", 8, 0, 0, 0x4646, 1) + payload
    else:
        proto, body = 17, struct.pack("!HHHH", 40000, 9, 8 + len(payload), 0) + payload
    hdr = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(body), rng.getrandbits(16),
                                0, 64, proto, 0, src.packed, dst.packed))
    hdr[10:12] = struct.pack("!H", internet_checksum(bytes(hdr)))
    return bytes(hdr) + body


def data_packet(rng, inner_dsts):
    """A LISP data packet (8-byte header + inner packet), often a broken one. Inner
    destinations stay among `inner_dsts` (the lab's own addresses)."""
    from nodes.lisp.data import fast_header
    dst = rng.choice(inner_dsts)
    inner = bytearray(inner_packet(rng, dst))
    hdr = bytearray(fast_header(rng.getrandbits(24), IID))
    how = rng.randrange(10)
    if how == 0:
        hdr = bytearray(fast_header(rng.getrandbits(24), rng.choice([0, 8, IID + 1])))
    elif how == 1:
        hdr[0] = rng.randrange(256)                                 # any flags
    elif how == 2:
        inner = inner[:rng.randrange(len(inner))]                   # truncated inner
    elif how == 3:
        inner[0] = (rng.choice([0, 1, 5, 7, 15]) << 4) | (inner[0] & 0x0F)  # wrong version
    elif how == 4:
        inner[0] = (inner[0] & 0xF0) | rng.randrange(16)            # wrong IHL
    elif how == 5:
        inner[2:4] = struct.pack("!H", rng.randrange(65536))        # wrong length
    elif how == 6:
        for _ in range(rng.randrange(1, 6)):                        # bits flipped
            i = rng.randrange(len(inner))
            if i not in range(*((12, 20) if inner[0] >> 4 == 4 else (8, 40))):
                inner[i] ^= 1 << rng.randrange(4 if i == 0 else 8)  # (addresses, version stay)
    elif how == 7:
        return rng.randbytes(rng.randrange(0, 9))                   # no room for a header
    elif how == 8:
        noise = bytearray(rng.randbytes(rng.randrange(1, 100)))     # noise after a header
        noise[0] = (rng.choice([0, 2, 3, 5, 8, 15]) << 4) | (noise[0] & 15)  # (not IP)
        return bytes(hdr + noise)
    return bytes(hdr + inner)                                       # (9: a valid packet)


def fuzz(seed, rate, targets, inner_dsts=("10.61.1.99", "198.51.61.99", "2001:db8:61:1::99")):
    """Send to every (host, port, count) of `targets` at `rate` a second per target,
    interleaved; returns {"host:port": sent}."""
    import socket
    rng = random.Random(seed)
    bases = valid_messages(rng)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 22)
    sent = {f"{h}:{p}": 0 for h, p, _ in targets}
    errors = 0
    start = time.monotonic()
    while True:
        due = int((time.monotonic() - start) * rate) + 200
        busy = False
        for host, port, count in targets:
            key = f"{host}:{port}"
            while sent[key] < min(count, due):
                busy = True
                data = (mutate(rng, rng.choice(bases)) if port == 4342
                        else data_packet(rng, inner_dsts))
                try:
                    s.sendto(data, (host, port))
                    sent[key] += 1
                except OSError:
                    errors += 1            # (a full send buffer: not sent, not counted)
        if all(sent[f"{h}:{p}"] >= c for h, p, c in targets):
            break
        if not busy:
            time.sleep(0.002)
    return {"sent": sent, "errors": errors, "seconds": round(time.monotonic() - start, 2)}


def main(argv):
    seed, rate = int(argv[0]), float(argv[1])
    targets = [(h, int(p), int(c)) for h, p, c in (t.split(":") for t in argv[2:])]
    print(json.dumps(fuzz(seed, rate, targets)), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
    sys.exit(0)


# --- the test ------------------------------------------------------------------------------

from lab.emu import wait_for  # noqa: E402
from tests.emulation.harness import DATA, lab_fixture  # noqa: E402

# Outcome counters of a datagram read on 4342: every one ends in one of them at least.
CONTROL_OUTCOMES = (
    "malformed", "map_request_rate_limited", "map_request_received", "map_reply_received",
    "map_reply_nonce_mismatch", "map_register_received", "map_notify_received",
    "map_notify_rejected", "map_notify_ack_received", "unexpected_message",
    "mr_unexpected_message", "smr_received", "control_errors")
# ... of a LISP packet read on 4341: the data plane's, and the drops the ETR core decides
DATA_OUTCOMES = ("malformed_data", "drop_wrong_instance_id", "drop_unknown_rloc",
                 "packets_decapsulated", "decap_errors", "drop_not_our_eid",
                 "drop_dynamic_eid_not_detected", "drop_away_no_rloc")
LEGIT = 2000           # datagrams of the lab's own traffic a daemon may see meanwhile

fuzzlab = lab_fixture(DATA / "fuzz-lab.yaml", "fuzz")


def udp_drops(run, node):
    """{local port: datagrams dropped} of the UDP sockets in `node`'s namespace."""
    out = {}
    for path in ("/proc/net/udp", "/proc/net/udp6"):
        for line in run.sh(node, ["cat", path]).stdout.splitlines()[1:]:
            parts = line.split()
            if len(parts) >= 13:
                port = int(parts[1].rsplit(":", 1)[1], 16)
                out[port] = out.get(port, 0) + int(parts[12])
    return out


def test_fuzzer_builds_every_message_type_and_mutates_them():
    """(no lab) The fuzzer's valid messages decode and cover every type; its mutations are
    mostly not valid any more; its data packets keep the lab's inner destinations."""
    from nodes.lisp.messages import decode, message_type
    rng = random.Random(1)
    bases = valid_messages(rng)
    assert {message_type(b) for b in bases} == {1, 2, 3, 4, 5, 8}
    for b in bases:
        decode(b)
    bad = 0
    for _ in range(2000):
        try:
            decode(mutate(rng, rng.choice(bases)))
        except Exception:
            bad += 1
    assert bad > 1000
    for _ in range(4000):
        p = data_packet(rng, ["10.61.1.99", "2001:db8:61:1::99"])
        if len(p) >= 28 and p[8] >> 4 == 4:
            assert p[24:28] == ipaddress.ip_address("10.61.1.99").packed
        if len(p) >= 48 and p[8] >> 4 == 6:
            assert p[32:48] == ipaddress.ip_address("2001:db8:61:1::99").packed


def test_100k_fuzzed_datagrams_per_port_crash_nothing_and_are_all_counted(fuzzlab, tmp_path):
    run = fuzzlab
    daemons = {"fzx1": (4342, 4341), "fzms": (4342,), "fzpx": (4342, 4341)}
    assert run.warm("fzh1", "fzh2")

    pings = run.lab.start_process("fzh1", ["ping", "-n", "-i", "0.05", "-W", "1",
                                           run.ip("fzh2")],
                                  log_path=tmp_path / "ping.log", name="ping")
    results, before, after, drops0, drops1 = {}, {}, {}, {}, {}
    start = time.monotonic()
    try:
        # One daemon after the other, each one's counters around its own fuzzing only (the
        # proxy xTR forwards what it decapsulates for the EID space to fzx1, re-encapsulated)
        for n, (node, ports) in enumerate(daemons.items()):
            before[node], drops0[node] = run.counters(node), udp_drops(run, node)
            log = tmp_path / f"fuzz-{node}.log"
            targets = [f"{run.rloc(node)}:{p}:{PER_PORT}" for p in ports]
            fz = run.lab.start_process("fzatk", [PY, "-m", "tests.emulation.test_fuzz",
                                                 1000 + n, RATE, *targets],
                                       log_path=log, cwd=REPO, name="fuzz")
            assert wait_for(lambda: not fz.alive, 30, 0.1), f"fuzzing {node} took too long"
            results[node] = json.loads(log.read_text().strip().splitlines()[-1])
            time.sleep(0.5)                         # the last queued datagrams are read
            after[node], drops1[node] = run.counters(node), udp_drops(run, node)
        fuzz_s = time.monotonic() - start
    finally:
        pings.stop(sig=signal.SIGINT)               # ping prints its summary
    summary = (tmp_path / "ping.log").read_text()
    m = re.search(r"(\d+) packets transmitted, (\d+) received", summary)
    assert m, summary[-500:]
    sent_pings, got_pings = int(m.group(1)), int(m.group(2))

    report = {"fuzz_s": round(fuzz_s, 1), "pings": f"{got_pings}/{sent_pings}"}
    for node, ports in daemons.items():
        d = {k: after[node].get(k, 0) - before[node].get(k, 0)
             for k in after[node] if isinstance(after[node][k], int)}
        sent = results[node]["sent"]
        kernel = {p: drops1[node].get(p, 0) - drops0[node].get(p, 0) for p in ports}
        control = sum(d.get(k, 0) for k in CONTROL_OUTCOMES)
        r = report[node] = {"sent": sent, "kernel_drops": kernel,
                            "control_received": d.get("control_received", 0),
                            "control_outcomes": control, "control_errors":
                            d.get("control_errors", 0)}
        to_control = sent[f"{run.rloc(node)}:4342"]
        # 4342: every datagram read or dropped by the kernel; every one read has an outcome
        assert d.get("control_received", 0) + kernel[4342] >= to_control, report
        assert control >= d.get("control_received", 0), report
        assert d.get("control_received", 0) <= to_control + LEGIT, report
        assert d.get("control_errors", 0) == 0, (report, run.events(node, "control_error"))
        if 4341 in ports:
            data = sum(d.get(k, 0) for k in DATA_OUTCOMES)
            r["data_outcomes"] = data
            to_data = sent[f"{run.rloc(node)}:4341"]
            # every packet has an outcome or was dropped by the kernel (a GRO batch counts
            # its packets one by one); none is counted twice beyond the lab's own traffic
            assert data + kernel[4341] >= to_data * 0.999, report
            assert data <= to_data + LEGIT, (report, d)
            assert d.get("decap_errors", 0) == 0, report
    print(json.dumps(report))
    assert all(sum(r["sent"].values()) >= PER_PORT * len(daemons[n])
               for n, r in results.items()), report

    # legitimate traffic got through during the fuzzing, and does after it
    assert sent_pings >= 0.8 * fuzz_s / 0.05 and got_pings >= 0.95 * sent_pings, report
    ping = run.ping("fzh1", "fzh2", count=20)
    assert " 0% packet loss" in ping.stdout, ping.stdout
    # alive and healthy: processes up, control sockets answer, data-plane threads alive,
    # the sites still registered, no internal error in a log
    for node in run.daemons:
        assert run.daemons[node].alive, run.logs()
        c = run.counters(node)
        assert all(v == "alive" for k, v in c.items() if k.startswith("dataplane_")), c
    run.wait_registered(timeout=5)
    for node, text in run.logs().items():
        assert "Traceback" not in text and "internal error" not in text, (node, text)

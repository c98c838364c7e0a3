"""The ITR's send batching (nodes/dataplane.py, DataPlane.encapsulate and _flush_batch)
without a TUN or sockets: packets of several flows, interleaved as they come out of the TUN,
must each leave exactly once, in their order, with the right outer port, whether alone
(raw socket) or in a UDP GSO batch."""
import ipaddress
import threading
from collections import Counter

from scapy.layers.inet import IP, UDP

from nodes.dataplane import DATA_PORT, DataPlane, outer_sport
from nodes.lisp.actions import Decision

RLOC = ipaddress.ip_address("192.0.2.2")


class Core:
    def route(self, iid, dst, key):
        return Decision("encap", rloc=RLOC)


class Sock:
    def __init__(self):
        self.sent = []

    def sendmsg(self, buffers, cmsg=(), flags=0, addr=None):
        self.sent.append(([bytes(b) for b in buffers], cmsg, addr))
        return sum(len(b) for b in buffers)

    def setsockopt(self, *a):
        pass


def dataplane():
    """A DataPlane whose TUN and sockets are not opened (only what encapsulation uses)."""
    dp = object.__new__(DataPlane)
    dp.iid, dp.counters, dp.known_rlocs = 7, Counter(), None
    dp.generation = dp._flows_gen = 0
    dp._flows, dp._dflows, dp._known = {}, {}, None
    dp.decide, dp.lock = Core(), threading.Lock()
    dp._batch, dp._batch_entry, dp._batch_ttl, dp._batch_tos = [], None, None, None
    dp._batch_size = dp._batch_max = 0
    dp._gso_ok, dp._rloc_addrs, dp.nonce, dp.mtu = True, {}, 5, 1500
    dp._lisp_flags, dp._lisp_word2 = 0xC8000000, (7 << 8) | 1
    dp.rloc4, dp._src4 = ipaddress.ip_address("192.0.2.1"), bytes([192, 0, 2, 1])
    dp.raw4, dp.gso = Sock(), Sock()
    dp._gso_socket = lambda sport: dp.gso.__dict__.setdefault(sport, [dp.gso, None, None])
    return dp


def probe(sport, seq, size=64):
    return bytes(IP(src="10.99.0.10", dst="10.10.0.5", ttl=63)
                 / UDP(sport=sport, dport=7000) / (seq.to_bytes(4, "big") + bytes(size - 4)))


def flush_if_queued(dp):
    if dp._batch:
        dp._flush_batch()


def sent_packets(dp):
    """(outer source port, inner packet) of everything sent, in sending order."""
    out = []
    for buffers, cmsg, addr in dp.raw4.sent:                   # outer headers built here
        hdr, inner = buffers
        out.append((int.from_bytes(hdr[20:22], "big"), inner))
    for buffers, cmsg, addr in dp.gso.sent:                    # [lisp, packet, b""] * n
        assert addr == (str(RLOC), DATA_PORT) and cmsg
        out += [(None, buffers[i + 1]) for i in range(0, len(buffers), 3)]
    return out


def test_interleaved_flows_each_packet_leaves_once_and_in_order():
    dp = dataplane()
    pattern = [1, 1, 2, 1, 2, 2, 2, 1, 3, 1, 1, 1]           # flows by source port
    packets = [probe(1000 + f, i) for i, f in enumerate(pattern)]
    for p in packets:
        dp.encapsulate(memoryview(bytearray(p)))
    flush_if_queued(dp)                                     # what the loop does when idle
    inner = [p for _, p in sent_packets(dp)]
    assert sorted(inner) == sorted(packets)                 # none lost, none twice
    for flow in set(pattern):                               # each flow in its order
        mine = [p for p in packets if UDP(p[20:]).sport == 1000 + flow]
        assert [p for p in inner if p in mine] == mine
    assert dp.counters["packets_encapsulated"] == len(packets)
    assert dp.gso.sent, "back-to-back packets of one flow should leave in a GSO batch"


def test_a_lone_packet_goes_out_by_itself_with_its_flows_outer_port():
    dp = dataplane()
    p = probe(1234, 0)
    dp.encapsulate(memoryview(bytearray(p)))
    flush_if_queued(dp)
    ((sport, inner),) = sent_packets(dp)
    assert inner == p and not dp.gso.sent
    assert 0xC000 <= sport <= 0xFFFF and sport == dp._flows[next(iter(dp._flows))][2]


def test_a_shorter_packet_ends_a_batch_and_a_longer_one_starts_another():
    dp = dataplane()
    sizes = [200, 200, 100, 200, 300, 300]
    packets = [probe(1000, i, n) for i, n in enumerate(sizes)]
    for p in packets:
        dp.encapsulate(memoryview(bytearray(p)))
    flush_if_queued(dp)
    assert [p for _, p in sent_packets(dp)] != [] and \
        sorted(p for _, p in sent_packets(dp)) == sorted(packets)
    gso_sizes = [[len(b) for b in buffers[1::3]] for buffers, _, _ in dp.gso.sent]
    assert all(s[:-1] == [s[0]] * (len(s) - 1) and s[-1] <= s[0] for s in gso_sizes)
    assert outer_sport(0) >= 0xC000

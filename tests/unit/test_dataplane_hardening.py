"""The data plane's threads survive what arrives (nodes/dataplane.py, issue 9), without root:
the loops run on real file descriptors, the TUN replaced by a datagram socket pair and the
LISP port by a UDP socket on 127.0.0.1.

- an empty datagram to port 4341 is counted and decapsulation goes on;
- an exception while handling one packet (in either direction) is counted, logged once per
  kind, and the next packet goes through;
- a loop that fails is restarted; one that keeps failing stops, health() and check() say so;
- `show counters` carries the health of both directions;
- (issue 10) the uplink's `tx-udp-segmentation` is turned off at start and put back at stop;
  where it stays on, the ITR sends one LISP packet per system call.
"""
import ipaddress
import socket
import sys
import threading
import time
from collections import Counter

import pytest
from scapy.layers.inet import IP, UDP

from nodes import control
from nodes.dataplane import DataPlane, DataPlaneError
from nodes.lisp.actions import Decision
from nodes.offload import VNET_LEN

LISP_IID7 = bytes.fromhex("c8000001 00000701")          # N, L, I; nonce 1; IID 7; LSB 1
RLOC = ipaddress.ip_address("192.0.2.2")


class Core:
    """The decisions: deliver what is decapsulated, encapsulate to RLOC; `fail` names
    destinations whose decision raises (a bug somewhere in the core)."""

    def __init__(self, fail=()):
        self.fail = set(fail)

    def _check(self, dst):
        if str(dst) in self.fail:
            raise KeyError(f"no decision for {dst}")

    def decapsulated(self, iid, dst, outer_src, key):
        self._check(dst)
        return Decision("deliver")

    def route(self, iid, dst, key):
        self._check(dst)
        return Decision("encap", rloc=RLOC)


class RawSock:
    """Stands for the raw IPv4 socket: records what is sent."""

    def __init__(self):
        self.sent = []

    def sendmsg(self, buffers, cmsg=(), flags=0, addr=None):
        self.sent.append(b"".join(bytes(b) for b in buffers))
        return len(self.sent[-1])

    def close(self):
        pass


class Plane:
    """A DataPlane on socket pairs: `tun` is the far end of its TUN, `send(datagram)`
    reaches its port 4341, `log` lists what it logged."""

    def __init__(self, core, known_rlocs=None, rlocs=("192.0.2.1",), iid=7, **options):
        self.tun, tun_fd = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.rx.bind(("127.0.0.1", 0))
        self.rx.setblocking(False)
        self.tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.raw = RawSock()
        self.log = []
        self._tun_fd = tun_fd
        self.dp = DataPlane("lisp-test", list(rlocs), iid, core, threading.Lock(), Counter(),
                            known_rlocs=known_rlocs,
                            log=lambda event, **f: self.log.append((event, f)),
                            devices=(tun_fd.detach(), self.raw, None, [self.rx]), **options)
        self.tun.settimeout(2)

    def send(self, datagram):
        self.tx.sendto(datagram, self.rx.getsockname())

    def from_tun(self):
        """The next packet the data plane wrote to its TUN (without the vnet header)."""
        return self.tun.recv(70000)[VNET_LEN:]

    def to_tun(self, pkt):
        self.tun.send(bytes(VNET_LEN) + pkt)

    def close(self):
        self.dp.stop()
        for s in (self.tun, self.tx):
            s.close()


@pytest.fixture
def plane():
    made = []

    def make(core=None, known_rlocs=None, **kw):
        p = Plane(core or Core(), known_rlocs, **kw)
        made.append(p)
        return p
    yield make
    for p in made:
        p.close()


def inner(dst="10.2.0.10", n=20):
    return bytes(IP(src="10.1.0.10", dst=dst, ttl=64) / UDP(sport=1234, dport=7)
                 / (b"x" * n))


def wait(cond, timeout=2.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.01)
    return cond()


@pytest.mark.parametrize("known", [None, lambda: {"127.0.0.1"}],
                         ids=["any-source", "known-rlocs-only"])
def test_an_empty_datagram_is_counted_and_decapsulation_goes_on(plane, known):
    p = plane(known_rlocs=known)
    p.dp.start()
    p.send(b"")
    p.send(LISP_IID7 + inner())
    assert p.from_tun() == inner()          # the thread is still decapsulating
    assert p.dp.counters["malformed_data"] == 1
    assert p.dp.health() == {"encap": True, "decap": True}
    p.dp.check()                            # raises nothing


def test_an_exception_while_decapsulating_is_counted_logged_once_and_the_loop_goes_on(plane):
    p = plane(Core(fail={"10.2.0.66"}))
    p.dp.start()
    for _ in range(3):
        p.send(LISP_IID7 + inner("10.2.0.66"))
    p.send(LISP_IID7 + inner())
    assert p.from_tun() == inner()
    assert p.dp.counters["decap_errors"] == 3
    errors = [f for e, f in p.log if e == "dataplane_error"]
    assert len(errors) == 1 and errors[0]["thread"] == "decap" \
        and errors[0]["error"].startswith("KeyError")
    assert p.dp.health()["decap"]


def test_an_exception_while_encapsulating_is_counted_logged_once_and_the_loop_goes_on(plane):
    p = plane(Core(fail={"10.2.0.66"}))
    p.dp.start()
    for _ in range(3):
        p.to_tun(inner("10.2.0.66"))
    p.to_tun(inner())
    assert wait(lambda: p.raw.sent), "the packet after the failures was not encapsulated"
    assert p.raw.sent[0][36:] == inner()
    assert p.dp.counters["encap_errors"] == 3
    errors = [f for e, f in p.log if e == "dataplane_error"]
    assert len(errors) == 1 and errors[0]["thread"] == "encap"
    assert p.dp.health()["encap"]


def test_a_failing_loop_is_restarted_and_one_that_keeps_failing_is_reported(plane):
    p = plane()
    runs = Counter()
    real = p.dp._decap_loop

    def flaky(sock):                        # fails outside per-packet handling
        runs["decap"] += 1
        if runs["decap"] <= 2:
            raise MemoryError("the loop itself")
        return real(sock)
    p.dp._decap_loop = flaky
    p.dp.start()
    p.send(LISP_IID7 + inner())
    assert p.from_tun() == inner()          # restarted, and decapsulating
    assert p.dp.counters["decap_thread_failures"] == 2
    assert p.dp.health() == {"encap": True, "decap": True}

    q = plane()
    q.dp._decap_loop = lambda sock: 1 / 0   # always
    q.dp.start()
    assert wait(lambda: not q.dp.health()["decap"], 3)
    assert q.dp.health() == {"encap": True, "decap": False}
    with pytest.raises(DataPlaneError, match="decap thread stopped"):
        q.dp.check()
    assert [f["action"] for e, f in q.log if e == "dataplane_thread_failed"][-1] == "stopped"


def test_show_counters_says_whether_each_direction_is_alive(plane):
    p = plane()
    assert control.health_counters(p.dp.health()) == {"dataplane_encap": "dead",
                                                      "dataplane_decap": "dead"}
    p.dp.start()
    assert control.health_counters(p.dp.health()) == {"dataplane_encap": "alive",
                                                      "dataplane_decap": "alive"}


# --- the uplink's UDP segmentation (issue 10): what the data plane does with the answers ---

class Uplinks:
    """Stands for the ethtool calls: interfaces, and whether their UDP segmentation
    turns off (`stuck` stay on)."""

    def __init__(self, monkeypatch, stuck=()):
        self.on = {"xtr-core": True, "lo": True}
        self.stuck = set(stuck)
        import nodes.dataplane as D
        monkeypatch.setattr(D, "ipv4_interfaces",
                            lambda: [("lo", "127.0.0.1"), ("xtr-core", "192.0.2.1")])
        monkeypatch.setattr(D, "default_route_interfaces", lambda: ["xtr-core"])
        monkeypatch.setattr(D, "udp_segmentation_off", self.off)
        monkeypatch.setattr(D, "udp_segmentation_on", self.back_on)

    def off(self, name):
        was = self.on[name]
        if name not in self.stuck:
            self.on[name] = False
        return was, not self.on[name]

    def back_on(self, name):
        self.on[name] = True
        return True


def test_udp_segmentation_is_turned_off_on_the_uplink_and_put_back_at_stop(plane,
                                                                          monkeypatch):
    links = Uplinks(monkeypatch)
    p = plane()
    p.dp.segment_before_uplinks()
    assert links.on == {"xtr-core": False, "lo": True}       # the RLOC's interface only
    assert p.dp._gso_ok and p.dp.counters["uplink_udp_segmentation_off"] == 1
    p.dp.stop()
    assert links.on["xtr-core"]


def test_an_uplink_that_keeps_udp_segmentation_means_one_packet_per_send(plane, monkeypatch):
    Uplinks(monkeypatch, stuck={"xtr-core"})
    p = plane()
    p.dp.segment_before_uplinks()
    assert not p.dp._gso_ok and p.dp.counters["gso_off_uplink_offload"] == 1
    assert [f["reason"] for e, f in p.log if e == "udp_gso_disabled"] == \
        ["xtr-core: tx-udp-segmentation stays on"]
    for _ in range(4):                     # back-to-back packets of one flow: no GSO send
        p.dp.encapsulate(memoryview(bytearray(inner(n=100))))
    if p.dp._batch:
        p.dp._flush_batch()
    assert len(p.raw.sent) == 4
    assert p.dp.counters["udp_gso_sends"] == p.dp.counters["gso_send_refused"] == 0


def test_queued_wire_sized_segments_reach_the_tun_as_super_packets_intact(plane):
    """Wire-sized LISP packets (no GRO on a veth) of one TCP flow, queued on the socket,
    are written to the TUN as few super-packets, with every byte in order, although more
    of them are queued than the decapsulation ring holds."""
    from scapy.layers.inet import TCP
    from nodes.offload import VNET
    p = plane()
    data = bytes(range(256)) * 160                       # 40 segments of 1024 bytes
    for i in range(40):
        seg = IP(src="10.1.0.10", dst="10.2.0.10", id=100 + i, flags="DF") / TCP(
            sport=40000, dport=5001, seq=1 + 1024 * i, flags="A") / data[i * 1024:][:1024]
        p.send(LISP_IID7 + bytes(seg))
    time.sleep(0.1)                                      # all queued before the loop reads
    p.dp.start()
    got, writes = b"", 0
    while len(got) < len(data):
        pkt = p.tun.recv(70000)
        _flags, gso, hdr_len, _size, _cs, _co = VNET.unpack_from(pkt)
        body = pkt[VNET_LEN:]
        got += body[hdr_len if gso else 40:]
        writes += 1
    assert got == data and p.dp.counters["packets_decapsulated"] == 40
    assert writes <= 40 // 16 + 2, writes                # not one write per packet


class LookingCore(Core):
    """A core that records the data plane's requests to resolve an unknown sender."""

    def __init__(self):
        super().__init__()
        self.asked = []

    def unknown_rloc(self, iid, src, outer_src):
        self.asked.append((iid, str(src), outer_src))


def test_a_packet_from_an_unknown_rloc_is_dropped_and_its_source_looked_up(plane):
    """decap_known_rlocs_only (issue 9, item 7): a packet from an RLOC that is not in the
    map-cache is dropped, and its inner source EID is looked up (once a second per EID),
    so the sender's locators become known instead of its packets being dropped for good."""
    core = LookingCore()
    known = set()
    p = plane(core, known_rlocs=lambda: known)
    p.dp.start()
    for _ in range(3):
        p.send(LISP_IID7 + inner())
    assert wait(lambda: p.dp.counters["drop_unknown_rloc"] == 3)
    assert core.asked == [(7, "10.1.0.10", "127.0.0.1")]           # once, not three times
    assert p.dp.counters["unknown_rloc_lookups"] == 1
    known.add("127.0.0.1")                  # the Map-Reply came: the mapping changed
    p.dp.invalidate()
    p.send(LISP_IID7 + inner())
    assert p.from_tun() == inner()


@pytest.mark.parametrize("rlocs, iid, flags, word2", [
    (("192.0.2.1",), 7, 0xC8, 0x00000701),                   # one RLOC: LSB 1
    (("192.0.2.1", "198.51.100.1"), 7, 0xC8, 0x00000703),    # multihomed: both up
    (("192.0.2.1", "2001:db8::1"), 7, 0xC8, 0x00000703),
    (("192.0.2.1", "198.51.100.1", "203.0.113.1"), None, 0xC0, 0x00000007),
])
def test_the_locator_status_bits_say_every_locator_of_the_site_is_up(plane, rlocs, iid,
                                                                     flags, word2):
    """(issue 11, RFC 9300 5.3) Bit k of the LSB is the k-th locator of the site: an xTR
    with two RLOCs that sent LSB 0x01 told every receiver that its second one was down."""
    p = plane(rlocs=rlocs, iid=iid)
    p.dp.start()
    p.to_tun(inner())
    assert wait(lambda: p.raw.sent), "nothing was encapsulated"
    lisp = p.raw.sent[0][28:36]
    assert lisp[0] == flags and lisp[1:4] != b"\0\0\0"
    assert int.from_bytes(lisp[4:8], "big") == word2


class Core6(Core):
    def route(self, iid, dst, key):
        return Decision("encap", rloc=ipaddress.ip_address("::1"))


def test_an_ipv6_rloc_gets_the_flow_hash_port_hop_limit_and_traffic_class(plane,
                                                                          monkeypatch):
    """(issue 11) Over an IPv6 RLOC the outer header follows the same rules as over IPv4
    (RFC 9300 5.3 and 7): the flow-hash source port, the inner hop limit/TTL and traffic
    class copied. It used to leave from one ephemeral port with the socket's defaults."""
    import nodes.dataplane as dpmod
    from nodes.dataplane import flow_of, outer_sport
    rx = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    rx.bind(("::1", 0))
    rx.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVHOPLIMIT, 1)
    rx.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVTCLASS, 1)
    rx.settimeout(2)
    monkeypatch.setattr(dpmod, "DATA_PORT", rx.getsockname()[1])
    udp6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    udp6.bind(("::1", 0))
    p = plane(Core6(), rlocs=("192.0.2.1", "::1"))
    p.dp.udp6 = udp6
    p.dp.start()
    sent = []
    for tos, ttl, sport in ((0xB8, 37, 1234), (0x00, 64, 4321)):
        pkt = bytes(IP(src="10.1.0.10", dst="10.2.0.10", ttl=ttl, tos=tos)
                    / UDP(sport=sport, dport=7) / (b"x" * 20))
        p.to_tun(pkt)
        data, anc, _, addr = rx.recvmsg(2048, 256)
        cmsg = {t: int.from_bytes(v, sys.byteorder) for lvl, t, v in anc}
        sent.append((addr[1], cmsg.get(socket.IPV6_HOPLIMIT), cmsg.get(socket.IPV6_TCLASS)))
        inner = data[8:]
        assert inner[12:] == pkt[12:], inner                  # the inner packet, after LISP
        assert sent[-1] == (outer_sport(flow_of(inner)[4]), inner[8], tos), sent
    assert sent[0][0] != sent[1][0]                    # two flows, two ports
    rx.close()


def test_the_tun_mtu_leaves_room_for_an_ipv6_outer_header():
    """(issue 11) With an IPv6 RLOC the encapsulation is 56 bytes, not 36: a 1464-byte
    packet fitted the TUN and left as a 1520-byte IPv6 packet on a 1500-byte path."""
    from nodes.dataplane import tun_mtu
    assert tun_mtu(1500, ["192.0.2.1"]) == 1464
    assert tun_mtu(1500, ["192.0.2.1", "2001:db8::1"]) == 1444
    assert tun_mtu(1400, ["2001:db8::1"]) == 1344


class StatusCore(Core):
    """Also records the Locator-Status-Bits the data plane reports."""

    def __init__(self):
        super().__init__()
        self.status = []

    def locator_status(self, iid, src, outer_src, lsb, width):
        self.status.append((iid, str(src), str(outer_src), lsb, width))


def test_received_locator_status_bits_reach_the_core_once_per_change(plane):
    """(issue 11) RFC 9300 5.3: the L bit and the LSBs of a decapsulated packet (8 bits with
    an instance ID) go to the core with the packet's inner source, once per change of what
    a sending RLOC says; a new mapping (generation) makes the next packet report again."""
    core = StatusCore()
    p = plane(core)
    p.dp.start()
    def with_lsb(bits):                               # N, L, I; nonce 1; IID 7; the LSBs
        return bytes.fromhex("c8000001") + bytes([0, 0, 7, bits])
    for bits in (0b01, 0b01, 0b11, 0b11):
        p.send(with_lsb(bits) + inner())
        assert p.from_tun() == inner()
    p.send(bytes.fromhex("88000001 00000701") + inner())     # N, I, L clear: says nothing
    assert p.from_tun() == inner()
    assert core.status == [(7, "10.1.0.10", "127.0.0.1", 0b01, 8),
                           (7, "10.1.0.10", "127.0.0.1", 0b11, 8)]
    p.dp.invalidate()
    p.send(with_lsb(0b11) + inner())
    assert p.from_tun() == inner()
    assert len(core.status) == 3 and p.dp.counters["lsb_changes_seen"] == 3


def test_packets_of_one_flow_to_an_ipv6_rloc_leave_in_one_gso_send(plane, monkeypatch):
    """(issue 11) GSO over an IPv6 RLOC as over an IPv4 one: back-to-back packets of one
    flow leave in one UDP_SEGMENT send (they used to leave one per system call), each a
    datagram of its own with the flow's port, hop limit and traffic class."""
    import nodes.dataplane as dpmod
    from nodes.dataplane import flow_of, outer_sport
    rx = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    rx.bind(("::1", 0))
    rx.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVHOPLIMIT, 1)
    rx.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVTCLASS, 1)
    rx.settimeout(2)
    monkeypatch.setattr(dpmod, "DATA_PORT", rx.getsockname()[1])
    udp6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    udp6.bind(("::1", 0))
    p = plane(Core6(), rlocs=("192.0.2.1", "::1"))
    p.dp.udp6 = udp6
    pkts = [bytes(IP(src="10.1.0.10", dst="10.2.0.10", ttl=37, tos=0xB8)
                  / UDP(sport=1234, dport=7) / (bytes([i]) * 100)) for i in range(5)]
    for pkt in pkts:
        p.dp.encapsulate(memoryview(bytearray(pkt)))
    if p.dp._batch:
        p.dp._flush_batch()
    assert p.dp.counters["udp_gso_sends"] == 1, p.dp.counters
    assert p.dp.counters["packets_encapsulated"] == 5 and not p.raw.sent
    port = outer_sport(flow_of(pkts[0])[4])
    for pkt in pkts:
        data, anc, _, addr = rx.recvmsg(2048, 256)
        cmsg = {t: int.from_bytes(v, sys.byteorder) for lvl, t, v in anc}
        assert data[8:] == pkt and len(data) == 8 + len(pkt)     # one LISP packet each
        assert (addr[1], cmsg.get(socket.IPV6_HOPLIMIT), cmsg.get(socket.IPV6_TCLASS)) == \
            (port, 37, 0xB8)
    rx.close()


def test_udp_segmentation_is_turned_off_where_the_ipv6_rloc_leaves(plane, monkeypatch):
    """(issue 10 and 11) An xTR with an IPv6 RLOC only: the interface that holds it and
    the IPv6 default route's get their tx-udp-segmentation turned off, so its GSO batches
    are cut into datagrams before the uplink (it used to do nothing without an IPv4 RLOC);
    an RLOC that no interface holds means no batches."""
    import nodes.dataplane as D
    links = Uplinks(monkeypatch)
    links.on["xtr-core6"] = True
    monkeypatch.setattr(D, "ipv6_interfaces", lambda: [("lo", "::1"),
                                                       ("xtr-core6", "2001:db8::1")])
    monkeypatch.setattr(D, "default_route_interfaces6", lambda: ["xtr-core6"])
    p = plane(rlocs=("2001:db8::1",))
    p.dp.segment_before_uplinks()
    assert links.on == {"xtr-core": True, "lo": True, "xtr-core6": False}
    assert p.dp._gso_ok
    q = plane(rlocs=("2001:db8::99",))
    monkeypatch.setattr(D, "default_route_interfaces6", lambda: [])
    q.dp.segment_before_uplinks()
    assert not q.dp._gso_ok
    assert [f["reason"] for e, f in q.log if e == "udp_gso_disabled"] == \
        ["no interface holds 2001:db8::99"]


def test_the_ipv6_interfaces_and_default_routes_are_read_from_proc():
    from nodes.offload import default_route_interfaces6, ipv6_interfaces
    if not socket.has_ipv6 or not ipv6_interfaces():
        pytest.skip("no IPv6 in this namespace")
    assert ("lo", "::1") in ipv6_interfaces()
    assert "lo" not in default_route_interfaces6()      # the kernel's unreachable ::/0

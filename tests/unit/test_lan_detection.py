"""Host detection on a LAN (nodes/daemon.py, Daemon.on_lan) without sockets: ARP and
neighbour-discovery frames built by scapy, fed through a fake packet socket."""
import ipaddress
from collections import Counter

import pytest
from scapy.layers.inet6 import ICMPv6ND_NA, IPv6
from scapy.layers.l2 import ARP

from nodes import daemon as dmod

VM4, VM6 = "10.10.0.5", "2001:db8:10::5"


class FakeSocket:
    def __init__(self, frames):
        self.frames = list(frames)

    def recvfrom(self, size):
        if not self.frames:
            raise BlockingIOError
        return self.frames.pop(0)[:size], ("lan0", 0, 0)       # PACKET_HOST: not ours


def daemon(gateway_mode):
    d = object.__new__(dmod.Daemon)
    d.io_counters = Counter()
    d.detect_gateway = {"lan0"} if gateway_mode else set()
    d.own_addresses = {ipaddress.ip_address("10.10.0.1")}
    d.seen = []
    d.lan_host_seen = lambda ifname, ip, now: d.seen.append(str(ip))
    d.now = lambda: 0.0
    return d


def unsolicited_na():
    return bytes(IPv6(src=VM6, dst="ff02::1", hlim=255)
                 / ICMPv6ND_NA(tgt=VM6, R=0, S=0, O=1))


def gratuitous_arp():
    return bytes(ARP(op=1, psrc=VM4, pdst=VM4, hwsrc="02:00:00:00:00:05"))


def test_any_mode_detects_the_na_and_the_gratuitous_arp():
    d = daemon(gateway_mode=False)
    d.on_lan(FakeSocket([unsolicited_na()]), "lan0", 6)
    d.on_lan(FakeSocket([gratuitous_arp()]), "lan0", 4)
    assert d.seen == [VM6, VM4]


def test_gateway_mode_ignores_nd_and_gratuitous_arp_but_not_arp_for_the_gateway():
    """In an extended subnet ND and gratuitous ARP cross the DCI: they must not count."""
    d = daemon(gateway_mode=True)
    d.on_lan(FakeSocket([unsolicited_na()]), "lan0", 6)
    d.on_lan(FakeSocket([gratuitous_arp()]), "lan0", 4)
    assert d.seen == []
    assert d.io_counters["lan_nd_ignored_gateway_mode"] == 1
    assert d.io_counters["lan_arp_not_for_gateway"] == 1
    d.on_lan(FakeSocket([bytes(ARP(op=1, psrc=VM4, pdst="10.10.0.1"))]), "lan0", 4)
    assert d.seen == [VM4]


@pytest.mark.parametrize("hlim", [64, 254])
def test_nd_from_off_link_is_not_a_host(hlim):
    d = daemon(gateway_mode=False)
    na = bytearray(unsolicited_na())
    na[7] = hlim
    d.on_lan(FakeSocket([bytes(na)]), "lan0", 6)
    assert d.seen == [] and d.io_counters["lan_no_host_source"] == 1

"""The Python side of the kernel data path (nodes/kernelpath.py), without root: the trie
keys and values, what the daemon writes for the core's state, the program's RLOC and port
choice held to the Python path's, and the `[dataplane] path` key."""
import ipaddress
import random
import struct

import pytest

from nodes.config import ConfigError, parse_config
from nodes.dataplane import flow_of, outer_sport
from nodes.kernelpath import (ACT_ENCAP, ACT_PUNT, MAX_LOCS, bpf_choice, decode_key,
                              decode_mc, desired_maps, entry_value, lpm_key, mc_value)
from nodes.lisp.mapcache import MapCache
from nodes.lisp.messages import Locator

ip = ipaddress.ip_address
net = ipaddress.ip_network


def test_key_layout():
    k = lpm_key(7, "10.2.0.0/24")
    # prefix length (host order) counts the 32 bits of instance ID, then both big-endian
    assert k == struct.pack("=I", 32 + 24) + b"\x00\x00\x00\x07" + bytes([10, 2, 0, 0])
    assert decode_key(k) == (7, net("10.2.0.0/24"))
    assert decode_key(lpm_key(0xFFFFFF, "0.0.0.0/0")) == (0xFFFFFF, net("0.0.0.0/0"))
    k6 = lpm_key(7, "2001:db8:2::/64")
    assert k6 == struct.pack("=I", 32 + 64) + b"\x00\x00\x00\x07" + \
        ipaddress.ip_address("2001:db8:2::").packed
    assert decode_key(k6) == (7, net("2001:db8:2::/64"))
    assert decode_key(lpm_key(1, "::/0")) == (1, net("::/0"))


def test_value_round_trip():
    v = mc_value(ACT_ENCAP, [ip("192.0.2.1"), ip("192.0.2.2")], [50, 100], 100)
    assert decode_mc(v) == (ACT_ENCAP, [(ip("192.0.2.1"), 50), (ip("192.0.2.2"), 100)], 100)
    assert decode_mc(mc_value(ACT_PUNT)) == (ACT_PUNT, [], 0)


def _entry(locs, now=0.0):
    c = MapCache()
    return c.insert(7, net("10.2.0.0/24"), locs, 60, now)


def test_entry_values():
    assert decode_mc(entry_value(_entry([])))[0] == ACT_PUNT               # negative
    assert decode_mc(entry_value(_entry([Locator(ip("2001:db8::1"))])))[0] == ACT_PUNT
    many = [Locator(ip(f"192.0.2.{i}")) for i in range(1, MAX_LOCS + 2)]
    assert decode_mc(entry_value(_entry(many)))[0] == ACT_PUNT             # too many
    down = _entry([Locator(ip("192.0.2.1"), priority=255)])
    assert decode_mc(entry_value(down))[0] == ACT_PUNT                    # none usable
    # lowest priority only, sorted by address, cumulative weights
    e = _entry([Locator(ip("192.0.2.9"), 1, 30), Locator(ip("192.0.2.3"), 1, 70),
                Locator(ip("192.0.2.1"), 2, 100)])
    assert decode_mc(entry_value(e)) == (ACT_ENCAP, [(ip("192.0.2.3"), 70),
                                                     (ip("192.0.2.9"), 100)], 100)


@pytest.mark.parametrize("weights", [(1,), (50, 50), (10, 0, 90), (0, 0), (1, 2, 3, 4, 5)])
def test_the_program_picks_the_cores_rloc_and_the_python_port(weights):
    locs = [Locator(ip(f"192.0.2.{i + 1}"), 1, w) for i, w in enumerate(weights)]
    e = _entry(locs)
    value = entry_value(e)
    rnd = random.Random(len(weights))
    for _ in range(400):
        pkt = bytearray(40)
        pkt[0], pkt[9] = 0x45, rnd.choice((6, 17, 1))
        pkt[12:20] = rnd.randbytes(8)
        pkt[20:24] = rnd.randbytes(4)
        _v, _s, _d, key, h = flow_of(pkt)
        rloc, sport = bpf_choice(value, key)
        assert rloc == e.select_locator(key).address
        assert sport == outer_sport(h)


class _Etr:
    def __init__(self):
        self.prefixes = [(7, net("10.1.0.0/24")), (7, net("2001:db8:1::/64"))]
        self.dynamic = {(7, ip("10.9.0.5")): object()}
        self.away = MapCache()


class _Itr:
    def __init__(self):
        self.cache = MapCache()


class _Core:
    def __init__(self):
        self.itr, self.etr = _Itr(), _Etr()


def test_desired_maps():
    core = _Core()
    core.itr.cache.insert(7, net("10.2.0.0/24"), [Locator(ip("192.0.2.2"))], 60, 0)
    core.itr.cache.insert(7, net("10.3.0.0/24"), [], 60, 0)                    # negative
    core.itr.cache.insert(7, net("10.4.0.0/24"), [Locator(ip("192.0.2.4"))], 1, 0)  # expires
    core.itr.cache.insert(7, net("2001:db8:2::/64"), [Locator(ip("192.0.2.2"))], 60, 0)
    core.etr.away.insert(7, net("10.1.0.77/32"), [Locator(ip("192.0.2.2"))], 60, 0)
    mc, own = desired_maps(core, 5.0)
    mc = {decode_key(k): decode_mc(v)[0] for k, v in mc.items()}
    own = {decode_key(k): struct.unpack("=I", v)[0] for k, v in own.items()}
    assert mc == {(7, net("10.2.0.0/24")): ACT_ENCAP, (7, net("10.3.0.0/24")): ACT_PUNT,
                  (7, net("10.1.0.77/32")): ACT_PUNT, (7, net("2001:db8:2::/64")): ACT_ENCAP}
    assert own == {(7, net("10.1.0.0/24")): ACT_ENCAP, (7, net("10.1.0.77/32")): ACT_PUNT,
                   (7, net("10.9.0.5/32")): ACT_ENCAP, (7, net("2001:db8:1::/64")): ACT_ENCAP}


XTR = """
[node]
name = "x"
role = "{role}"
[[rloc]]
address = "192.0.2.1"
{extra}
[dataplane]
lan_interfaces = ["lan0"]
{path}
"""


def _cfg(path="", role="xtr", extra='[[eid_prefix]]\nprefix = "10.1.0.0/24"\n'
         '[[map_server]]\naddress = "192.0.2.100"\nsecret = "k"\n'
         '[[map_resolver]]\naddress = "192.0.2.100"'):
    return parse_config(XTR.format(role=role, extra=extra, path=path))


def test_path_key():
    assert _cfg().dataplane_path == "kernel"                   # the default for an xtr
    assert _cfg('path = "kernel"').dataplane_path == "kernel"
    assert _cfg('path = "python"').dataplane_path == "python"
    for bad in ('path = "ebpf"', "path = 1"):
        with pytest.raises(ConfigError) as e:
            _cfg(bad)
        assert "dataplane.path" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(ConfigError) as e:
        _cfg('path = "kernel"', role="pxtr",
             extra='[[eid_space]]\nprefix = "10.0.0.0/8"\n[[map_resolver]]\naddress = "192.0.2.100"')
    assert "xtr only" in str(e.value)


def test_path_default_from_the_environment(monkeypatch):
    monkeypatch.setenv("LISP_LAB_DATAPLANE_PATH", "kernel")
    assert _cfg().dataplane_path == "kernel"
    assert _cfg('path = "python"').dataplane_path == "python"      # the file wins
    monkeypatch.setenv("LISP_LAB_DATAPLANE_PATH", "fast")
    with pytest.raises(ConfigError) as e:
        _cfg()
    assert "LISP_LAB_DATAPLANE_PATH" in str(e.value)
    monkeypatch.setenv("LISP_LAB_DATAPLANE_PATH", "python")
    assert _cfg().dataplane_path == "python"
    assert _cfg('path = "kernel"').dataplane_path == "kernel"
    monkeypatch.delenv("LISP_LAB_DATAPLANE_PATH")
    assert _cfg().dataplane_path == "kernel"


def test_the_config_map_carries_the_python_paths_header_words():
    """The kernel path writes the LISP header words the Python path sends (N, I, the
    instance ID and the Locator-Status-Bits: issue 10/11), not constants of its own: it
    used to send I with instance ID 0 where the Python path sent no I at all."""
    from nodes.kernelpath import _CFG, config_value
    from nodes.lisp.data import DataHeader, encode_data_header, header_words
    for iid, lsb in ((7, 1), (7, 3), (None, 1), (None, None), (0xABCDEF, None)):
        words = header_words(iid, lsb)
        fields = _CFG.unpack(config_value(5, "192.0.2.1", iid, 1500, True, words))
        assert fields[:6] == (0, 5, bytes([192, 0, 2, 1]), iid or 0, 1500, 1)
        hdr = struct.pack("!II", fields[6] | 0x123456, fields[7])
        assert hdr == encode_data_header(DataHeader(nonce=0x123456, instance_id=iid, lsb=lsb))
    default = _CFG.unpack(config_value(5, "192.0.2.1", 7, 1500))
    assert (default[6], default[7]) == (0xC8000000, 0x00000701)


def test_a_burst_of_mapping_changes_costs_a_few_kernel_syncs_not_one_each():
    """move-100: the old xTR's kernel path rebuilt its tries from the whole core state on
    every data-plane invalidate (three per Map-Notify), so working through 99 move
    notifies took 3.1 s instead of 0.6 s on the Python path, and the last VMs converged
    after 3.3 s. A change syncs at once when none did for a while (a single move loses
    nothing); changes right after it share one sync, which follows within the gap."""
    import asyncio
    import threading as _threading
    from collections import Counter

    from nodes.daemon import KERNEL_SYNC_GAP_S, Daemon

    class FakeKernelPath:
        def __init__(self):
            self.syncs = []

        def sync(self, core, now, generation=None):
            self.syncs.append(generation)

    class FakeDataPlane:
        generation = 0

    async def burst():
        d = Daemon.__new__(Daemon)
        d.loop = asyncio.get_running_loop()
        d.lock, d.io_counters, d.core = _threading.Lock(), Counter(), None
        d.kernelpath, d.dataplane, d.now = FakeKernelPath(), FakeDataPlane(), lambda: 0.0
        d.stopping = d.signalled = None
        for i in range(300):                   # 100 notifies, 3 invalidates each
            d.dataplane.generation = i + 1
            d.kernel_sync_soon()
        first = list(d.kernelpath.syncs)
        await asyncio.sleep(KERNEL_SYNC_GAP_S * 3)
        return first, d.kernelpath.syncs

    first, syncs = asyncio.run(burst())
    assert first == [1]                         # the first change: synced at once
    assert syncs[-1] == 300 and len(syncs) <= 3, syncs   # the last one too, shared

"""The kernel fast path of an xTR (issue 10, item 2): the tc-BPF programs of
nodes/bpf/lisp_tc.c, their maps, their counters.

    kp = KernelPath(name, lan_interfaces, tun, rloc4, iid, mtu)   # loads, attaches
    kp.sync(core)          # after every map-cache change (and once a second)
    kp.counters()          # {"kernel_encapsulated": n, ...}
    kp.stop()              # detaches, puts the uplink's offloads back, unpins

Loading goes through `bpftool prog loadall` (programs and maps pinned under
/sys/fs/bpf/lisp-lab/NODE-PID/); attaching through tcx links (kernel 6.6 and later) that
the daemon holds as file descriptors, so a daemon that dies, even by kill -9, takes its
programs off the interfaces with it and the node stops forwarding as with the Python path;
on older kernels through `tc filter ... bpf object-pinned` on a clsact qdisc. The maps are
read and written with the bpf(2) system call (ctypes). The
object is built at install time (scripts/install.sh -> .venv/lib/lisp-lab/lisp_tc.o);
`available()` says whether this node can use it, and why not.

The map-cache in the kernel: LPM tries (IPv4, IPv6) keyed by (instance ID, prefix), values
either "punt" (negative entries, away hosts, IPv6 RLOCs or too many locators: the Python path
decides) or the candidates of select_locator() (lowest priority, sorted by address, with
cumulative weights), so the program picks the same RLOC for a flow as the core would. A
second trie holds the EIDs this ETR delivers (its EID prefixes and detected hosts; an away
host is "punt": the core re-encapsulates and sends SMRs).
"""
import ctypes
import ipaddress
import os
import shutil
import socket
import struct
import subprocess
import sys
import threading
from pathlib import Path

from .lisp.data import header_words, site_lsb

OBJECT_NAME = "lisp_tc.o"
BPFFS = "/sys/fs/bpf"
PIN_ROOT = BPFFS + "/lisp-lab"
TC_PREF = 4341                    # the tc filter priority our filters use (and remove)
MAX_LOCS = 8
ACT_PUNT, ACT_ENCAP = 0, 1
CFG_DECAP_KNOWN_ONLY = 1
# The uplink features turned off so that the kernel checksums and segments what the
# program encapsulates (a veth passes partial checksums and GSO super-packets on).
UPLINK_FEATURES = ("tx-checksum-ip-generic", "tx-udp_tnl-segmentation",
                   "tx-udp_tnl-csum-segmentation")

# Index -> counter name (the enum in lisp_tc.c).
COUNTERS = ("kernel_encapsulated", "kernel_decapsulated", "kernel_punt_miss",
            "kernel_punt_entry", "kernel_punt_mtu", "kernel_punt_ttl", "kernel_punt_fragment",
            "kernel_punt_odd", "kernel_punt_ipv6", "kernel_punt_decap_not_ours",
            "kernel_punt_decap_iid", "kernel_punt_decap_other", "kernel_encap_skbs",
            "kernel_redirect_errors", "kernel_punt_decap_lsb")
N_COUNTERS = 16

# enabled, tun ifindex, rloc4 (BE), iid, mtu, flags, the LISP header's two words (no nonce)
_CFG = struct.Struct("=II4sIIIII")
_KEY = struct.Struct("=I4s4s")              # prefixlen (host order), iid BE, address BE
_KEY6 = struct.Struct("=I4s16s")
_MC = struct.Struct(f"=III{MAX_LOCS}I" + "4s" * MAX_LOCS)
_OWN = struct.Struct("=I")

# bpf(2)
_NR_BPF = {"x86_64": 321, "aarch64": 280}.get(os.uname().machine, 321)
BPF_MAP_LOOKUP_ELEM, BPF_MAP_UPDATE_ELEM, BPF_MAP_DELETE_ELEM = 1, 2, 3
BPF_MAP_GET_NEXT_KEY, BPF_OBJ_GET = 4, 7
BPF_LINK_CREATE, BPF_TCX_INGRESS = 28, 46
_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def config_value(tun_ifindex, rloc4, iid, mtu, known_rlocs_only=False, header=None):
    """The config map's value (struct lisp_cfg), disabled until the first sync: `header`
    is the (first, second) word pair of the LISP header the Python path sends
    (DataPlane._lisp_flags/_lisp_word2), so that both paths write the same bits; by
    default N, I and the instance ID with L and LSB 1 (one locator, up)."""
    if header is None:
        header = header_words(iid, site_lsb([rloc4], instance_id=iid))
    return _CFG.pack(0, tun_ifindex, ipaddress.IPv4Address(rloc4).packed, iid or 0, mtu,
                     CFG_DECAP_KNOWN_ONLY if known_rlocs_only else 0, *header)


class KernelPathError(Exception):
    """The kernel path cannot run on this node (the message says why, in one line)."""


def object_path():
    """Where the compiled program is: $LISP_LAB_BPF_OBJECT, the venv's lib/lisp-lab/, or
    nodes/bpf/build/ of the checkout."""
    env = os.environ.get("LISP_LAB_BPF_OBJECT")
    candidates = ([Path(env)] if env else []) + [
        Path(sys.prefix) / "lib" / "lisp-lab" / OBJECT_NAME,
        Path(__file__).resolve().parent / "bpf" / "build" / OBJECT_NAME]
    for p in candidates:
        if p.is_file():
            return p
    return None


def available():
    """(True, "") when this machine can run the kernel path, else (False, why)."""
    if object_path() is None:
        return False, (f"no compiled {OBJECT_NAME} (scripts/install.sh builds it with clang "
                       f"and libbpf-dev)")
    for tool in ("bpftool", "tc"):
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
            return False, f"{tool} is not installed"
    try:
        ok = subprocess.run(["bpftool", "version"], capture_output=True,
                            timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        ok = False
    if not ok:
        return False, "bpftool does not run (on Ubuntu: linux-tools for this kernel)"
    if os.geteuid() != 0:
        return False, "needs root"
    return True, ""


def _bpf(cmd, attr):
    buf = ctypes.create_string_buffer(bytes(attr), max(len(attr), 32))
    r = _libc.syscall(_NR_BPF, cmd, buf, len(buf))
    if r < 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    return r


class Map:
    """A pinned BPF map, by its path."""

    def __init__(self, path, key_size, value_size, percpu=False):
        self.path = str(path)
        self._path = ctypes.create_string_buffer(self.path.encode())
        self.fd = _bpf(BPF_OBJ_GET, struct.pack("=QII", ctypes.addressof(self._path), 0, 0))
        self.key_size, self.value_size = key_size, value_size
        self.ncpu = possible_cpus() if percpu else 1
        self.stride = (value_size + 7) // 8 * 8 if percpu else value_size

    def _attr(self, key, value=None, flags=0):
        k = ctypes.create_string_buffer(bytes(key), self.key_size)
        v = ctypes.create_string_buffer(bytes(value) if value is not None else b"",
                                        self.stride * self.ncpu)
        return k, v, struct.pack("=IIQQQ", self.fd, 0, ctypes.addressof(k),
                                 ctypes.addressof(v), flags)

    def update(self, key, value):
        k, v, attr = self._attr(key, value)
        _bpf(BPF_MAP_UPDATE_ELEM, attr)

    def delete(self, key):
        # BPF_MAP_DELETE_ELEM takes fd and key only: the kernel refuses (EINVAL) an
        # attribute with anything set after the key, so no value pointer here
        k = ctypes.create_string_buffer(bytes(key), self.key_size)
        attr = struct.pack("=IIQQQ", self.fd, 0, ctypes.addressof(k), 0, 0)
        try:
            _bpf(BPF_MAP_DELETE_ELEM, attr)
        except FileNotFoundError:
            pass

    def lookup(self, key):
        """The value (bytes; per CPU: a list of bytes), or None."""
        k, v, attr = self._attr(key)
        try:
            _bpf(BPF_MAP_LOOKUP_ELEM, attr)
        except FileNotFoundError:
            return None
        raw = v.raw
        if self.ncpu > 1 or self.stride != self.value_size:
            return [raw[i * self.stride:i * self.stride + self.value_size]
                    for i in range(self.ncpu)]
        return raw[:self.value_size]

    def keys(self):
        out, prev = [], None
        while True:
            k = ctypes.create_string_buffer(bytes(prev) if prev else b"", self.key_size)
            nxt = ctypes.create_string_buffer(self.key_size)
            attr = struct.pack("=IIQQ", self.fd, 0, ctypes.addressof(k) if prev else 0,
                               ctypes.addressof(nxt))
            try:
                _bpf(BPF_MAP_GET_NEXT_KEY, attr)
            except FileNotFoundError:
                return out
            prev = nxt.raw
            out.append(prev)
            if len(out) > 1 << 20:
                return out

    def close(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def possible_cpus():
    """The number of possible CPUs (the per-CPU maps' value count)."""
    try:
        text = Path("/sys/devices/system/cpu/possible").read_text().strip()
    except OSError:
        return os.cpu_count() or 1
    n = 0
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        n = max(n, int(hi or lo) + 1)
    return n


# --- map contents (pure: unit-tested without root) ----------------------------------------

def lpm_key(iid, prefix):
    """The trie key of (instance ID, prefix): 32 bits of instance ID then the prefix, both
    in network byte order; the length counts both. IPv4 and IPv6 prefixes have a trie
    each (12- and 24-byte keys)."""
    prefix = ipaddress.ip_network(prefix)
    k = _KEY if prefix.version == 4 else _KEY6
    return k.pack(32 + prefix.prefixlen, struct.pack("!I", iid & 0xFFFFFFFF),
                  prefix.network_address.packed)


def decode_key(raw):
    """(iid, IPv4Network or IPv6Network) of a trie key."""
    k = _KEY if len(raw) == _KEY.size else _KEY6
    plen, iid, addr = k.unpack(raw[:k.size])
    return (struct.unpack("!I", iid)[0],
            (ipaddress.IPv6Network if k is _KEY6 else ipaddress.IPv4Network)(
                (int.from_bytes(addr, "big"), plen - 32), strict=False))


def mc_value(action, cands=(), cum=(), total=0):
    rl = [c.packed for c in cands] + [bytes(4)] * (MAX_LOCS - len(cands))
    return _MC.pack(action, len(cands), total, *(list(cum) + [0] * (MAX_LOCS - len(cum))),
                    *rl)


def decode_mc(raw):
    v = _MC.unpack(raw[:_MC.size])
    action, count, total = v[:3]
    cum = v[3:3 + count]
    rlocs = [ipaddress.IPv4Address(x) for x in v[3 + MAX_LOCS:3 + MAX_LOCS + count]]
    return action, list(zip(rlocs, cum)), total


def entry_value(entry):
    """The trie value for a map-cache entry: ACT_ENCAP with select_locator's candidates
    when they are all IPv4 RLOCs (at most MAX_LOCS), else ACT_PUNT."""
    if entry.is_negative:
        return mc_value(ACT_PUNT)
    cands, cum, total = entry._choice or entry._build_choice()
    if not cands or len(cands) > MAX_LOCS or any(c.address.version != 4 for c in cands):
        return mc_value(ACT_PUNT)
    return mc_value(ACT_ENCAP, [c.address for c in cands], cum, total)


def desired_maps(core, now):
    """({key: value} of the map-cache tries, {key: value} of the own-EIDs tries; IPv4
    and IPv6 keys together, told apart by their size) for the core's state: its map-cache
    (live entries), its away hosts (punt: the core re-encapsulates and solicits), its EID
    prefixes and detected hosts (deliver)."""
    mc, own = {}, {}
    dynamic = getattr(core.etr, "dynamic", {})
    for e in core.itr.cache.entries():
        if not e.is_expired(now):
            mc[lpm_key(e.iid, e.prefix)] = entry_value(e)
    for iid, p in getattr(core.etr, "prefixes", ()):
        own[lpm_key(iid, p)] = _OWN.pack(ACT_ENCAP)
    for e in core.etr.away.entries():
        if e.is_expired(now):
            continue
        key = lpm_key(e.iid, e.prefix)
        if (e.iid, e.prefix.network_address) in dynamic and \
                e.prefix.prefixlen == e.prefix.max_prefixlen:
            continue
        mc[key] = mc_value(ACT_PUNT)
        own[key] = _OWN.pack(ACT_PUNT)
    for (iid, ip) in dynamic:
        own[lpm_key(iid, ipaddress.ip_network(ip))] = _OWN.pack(ACT_ENCAP)
    return mc, own


# --- the uplink's features -----------------------------------------------------------------

def _features(dev):
    """{feature: "on"/"off"} of `dev` (ethtool -k), fixed ones left out."""
    out = subprocess.run(["ethtool", "-k", dev], capture_output=True, text=True, timeout=5)
    feats = {}
    for line in out.stdout.splitlines()[1:]:
        name, _, rest = line.strip().partition(":")
        parts = rest.split()
        if parts and "[fixed]" not in rest:
            feats[name] = parts[0]
    return feats


def _set_features(dev, values):
    if values:
        args = [x for k, v in values.items() for x in (k, v)]
        subprocess.run(["ethtool", "-K", dev, *args], capture_output=True, timeout=5)


def _run(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
    if r.returncode != 0:
        raise KernelPathError(f"{' '.join(cmd[:4])}...: "
                              f"{(r.stderr or r.stdout).strip().splitlines()[-1:] or '?'}")
    return r


class KernelPath:
    """The programs attached on one node, and their maps."""

    def __init__(self, name, lan_interfaces, tun, rloc4, iid, mtu, uplinks,
                 known_rlocs_only=False, log=None, header=None):
        ok, why = available()
        if not ok:
            raise KernelPathError(why)
        if rloc4 is None:
            raise KernelPathError("no IPv4 RLOC")
        if not lan_interfaces or not uplinks:
            raise KernelPathError("needs a LAN interface and an uplink holding the IPv4 RLOC")
        self.name, self.lans, self.uplinks = name, list(lan_interfaces), list(uplinks)
        self.log = log or (lambda *a, **k: None)
        self.pin = Path(PIN_ROOT) / f"{name}-{os.getpid()}"
        self.attached = []                 # (dev, created clsact)
        self.links = []                    # tcx link fds
        self.attach_mode = None
        self.features = {}                 # dev -> {feature: value before}
        self.maps = {}
        self.written = {"mc4": {}, "own4": {}, "mc6": {}, "own6": {}}   # what they hold
        self.lsb_written = {}              # outer source (4 bytes) -> the bits in lisp_lsb4
        self.lsb_generation = None
        self.lsb_lock = threading.Lock()   # decapsulation thread and event loop
        self.syncs = 0
        try:
            self._load()
            cfg = config_value(socket.if_nametoindex(tun), rloc4, iid, mtu,
                               known_rlocs_only, header)
            self.maps["cfg"].update(struct.pack("=I", 0), cfg)
            for dev in self.uplinks:
                self._uplink_features(dev)
            plan = [(d, "lisp_encap") for d in self.lans] + \
                   [(d, "lisp_decap") for d in self.uplinks]
            try:
                for dev, prog in plan:
                    self._attach_tcx(dev, prog)
                self.attach_mode = "tcx"
            except OSError:                       # an older kernel: tc's clsact
                for fd in self.links:
                    os.close(fd)
                self.links = []
                for dev, prog in plan:
                    self._attach(dev, prog)
                self.attach_mode = "tc"
            self._cfg = cfg
            self.maps["cfg"].update(struct.pack("=I", 0), struct.pack("=I", 1) + cfg[4:])
        except Exception:
            self.stop()
            raise

    def _attach_tcx(self, dev, prog):
        path = ctypes.create_string_buffer(str(self.pin / prog).encode())
        prog_fd = _bpf(BPF_OBJ_GET, struct.pack("=QII", ctypes.addressof(path), 0, 0))
        try:
            attr = struct.pack("=IIIIIIQ", prog_fd, socket.if_nametoindex(dev),
                               BPF_TCX_INGRESS, 0, 0, 0, 0)
            self.links.append(_bpf(BPF_LINK_CREATE, attr))
        finally:
            os.close(prog_fd)

    def _load(self):
        for old in Path(PIN_ROOT).glob(f"{self.name}-*"):   # of a daemon that died
            pid = old.name.rsplit("-", 1)[-1]
            if pid.isdigit() and not Path(f"/proc/{pid}").exists():
                shutil.rmtree(old, ignore_errors=True)
        if not os.path.ismount(BPFFS):
            os.makedirs(BPFFS, exist_ok=True)
            _run(["mount", "-t", "bpf", "bpf", BPFFS])
        if self.pin.exists():
            shutil.rmtree(self.pin, ignore_errors=True)
        self.pin.parent.mkdir(parents=True, exist_ok=True)
        _run(["bpftool", "prog", "loadall", str(object_path()), str(self.pin),
              "pinmaps", str(self.pin / "maps")])
        m = self.pin / "maps"
        self.maps = {"cfg": Map(m / "lisp_cfg", 4, _CFG.size),
                     "mc4": Map(m / "lisp_mc4", _KEY.size, _MC.size),
                     "own4": Map(m / "lisp_own4", _KEY.size, _OWN.size),
                     "mc6": Map(m / "lisp_mc6", _KEY6.size, _MC.size),
                     "own6": Map(m / "lisp_own6", _KEY6.size, _OWN.size),
                     "lsb4": Map(m / "lisp_lsb4", 4, 4),
                     "counters": Map(m / "lisp_counters", 4, 8, percpu=True)}

    def _uplink_features(self, dev):
        before = _features(dev)
        change = {f: "off" for f in UPLINK_FEATURES if before.get(f) == "on"}
        _set_features(dev, change)
        self.features[dev] = {f: "on" for f in change}

    def _attach(self, dev, prog):
        r = subprocess.run(["tc", "qdisc", "add", "dev", dev, "clsact"], capture_output=True,
                           text=True, timeout=10)
        created = r.returncode == 0
        # A filter at our priority is a daemon's of this node that died without cleaning up
        # (kill -9): its program would go on with its old maps. Ours replaces it.
        subprocess.run(["tc", "filter", "del", "dev", dev, "ingress", "pref", str(TC_PREF)],
                       capture_output=True, timeout=10)
        self.attached.append((dev, created))
        _run(["tc", "filter", "add", "dev", dev, "ingress", "pref", str(TC_PREF), "bpf",
              "direct-action", "object-pinned", str(self.pin / prog)])

    def stop(self):
        cfg = self.maps.get("cfg")
        if cfg is not None and cfg.fd is not None:
            try:
                cfg.update(struct.pack("=I", 0), bytes(_CFG.size))   # everything to Python
            except OSError:
                pass
        for dev, created in reversed(self.attached):
            subprocess.run(["tc", "filter", "del", "dev", dev, "ingress", "pref",
                            str(TC_PREF)], capture_output=True, timeout=10)
            if created:
                subprocess.run(["tc", "qdisc", "del", "dev", dev, "clsact"],
                               capture_output=True, timeout=10)
        self.attached = []
        for fd in self.links:                     # detaches the programs
            os.close(fd)
        self.links = []
        for dev, values in self.features.items():
            _set_features(dev, values)
        self.features = {}
        for m in self.maps.values():
            m.close()
        self.maps = {}
        shutil.rmtree(self.pin, ignore_errors=True)

    # --- the maps ------------------------------------------------------------------------

    def lsb_passed(self, outer_src, lsb):
        """The Python path passed `outer_src`'s Locator-Status-Bits `lsb` on to the core (or
        had them already): packets that carry the same bits stay in the kernel from now."""
        try:
            key = ipaddress.IPv4Address(outer_src).packed
        except ValueError:
            return                          # an IPv6 RLOC: the program decapsulates IPv4 only
        with self.lsb_lock:
            if self.lsb_written.get(key) == lsb:
                return
            if len(self.lsb_written) >= 4096:
                self._forget_lsb()
            self.maps["lsb4"].update(key, struct.pack("=I", lsb))
            self.lsb_written[key] = lsb

    def forget_lsb(self):
        """Empty the bits map: every sender's next packet with the L bit is punted, so the
        core hears the bits again (a mapping change starts without the old status)."""
        with self.lsb_lock:
            self._forget_lsb()

    def _forget_lsb(self):
        m = self.maps["lsb4"]
        for key in list(self.lsb_written):
            m.delete(key)
        self.lsb_written = {}

    def sync(self, core, now, generation=None):
        """Make the tries hold what the core says (only the differences are written); when
        the data plane's `generation` moved (a mapping changed), forget the bits too."""
        if generation is not None and generation != self.lsb_generation:
            self.lsb_generation = generation
            self.forget_lsb()
        mc, own = desired_maps(core, now)
        for name, new in (("mc4", mc), ("own4", own), ("mc6", mc), ("own6", own)):
            size = _KEY.size if name.endswith("4") else _KEY6.size
            new = {k: v for k, v in new.items() if len(k) == size}
            have = self.written[name]
            m = self.maps[name]
            for key in [k for k in have if k not in new]:
                m.delete(key)
                del have[key]
            for key, value in new.items():
                if have.get(key) != value:
                    m.update(key, value)
                    have[key] = value
        self.syncs += 1

    def entries(self, which="mc4"):
        """{(iid, prefix): value} read back from the kernel (tests, inspection)."""
        m = self.maps[which]
        out = {}
        for k in m.keys():
            v = m.lookup(k)
            if v is not None:
                out[decode_key(k)] = decode_mc(v) if which.startswith("mc") else \
                    _OWN.unpack(v)[0]
        return out

    def counters(self):
        m = self.maps.get("counters")
        if m is None:
            return {}
        out = {}
        for i, name in enumerate(COUNTERS):
            vals = m.lookup(struct.pack("=I", i)) or []
            out[name] = sum(struct.unpack("=Q", v)[0] for v in vals)
        out["kernel_map_syncs"] = self.syncs
        out["kernel_attach_tcx"] = int(self.attach_mode == "tcx")
        out["kernel_path"] = 1
        return out


def bpf_choice(value, flow_key):
    """What lisp_tc.c does with a trie value and a flow's key (the bytes of
    nodes/dataplane.py flow_of): (RLOC or None for a punt, outer UDP source port). The
    program's C, written again in Python, for the tests that hold it to the Python path."""
    import zlib
    action, cands, total = decode_mc(value)
    crc = zlib.crc32(flow_key)
    sport = 0xC000 | ((((crc * 0x9E3779B1) & 0xFFFFFFFF) >> 18) & 0x3FFF)
    if action != ACT_ENCAP or not cands:
        return None, sport
    idx = 0
    if len(cands) > 1:
        point = ((crc * 0x9E3779B1) & 0xFFFFFFFF) * total >> 32
        idx = next((i for i, (_r, c) in enumerate(cands) if c > point), len(cands) - 1)
    return cands[idx][0], sport

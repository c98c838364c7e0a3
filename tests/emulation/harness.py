"""The emulation tests' harness: a lab file built by lab/backend.py's Network (the same
backend as `lisp-lab run`), its captures and LISP daemons started, the sites' registrations
awaited, and the questions tests ask a running network. A test's network is a lab file
(tests/data/*.yaml or topologies/labs/), never a hand-made plan.

    sites = lab_fixture(DATA / "two-sites.yaml", "daemons", captures=True)   # a fixture

    def test_ping(sites):
        assert sites.warm("h1", "h2")

    with running(DATA / "two-sites.yaml", "wrongkey", tmp_path,      # or a with block
                 overrides={"xtr2": {"map_server": {"secret": "not-the-key"}}},
                 register=["10.1.0.0/24"]) as run:
        ...

Run ids start with "pytest-emu-" (the conftest's session finaliser removes what a crashed
test left) and carry the process id, so two sessions never share one.
"""
import contextlib
import os
import sys
from pathlib import Path

import pytest

from lab.backend import Network
from lab.emu import wait_for
from nodes.control import ControlError
from nodes.eventlog import read_events
from topologies.model import load

RUN_PREFIX = "pytest-emu-"
DATA = Path(__file__).resolve().parents[1] / "data"
LABS = Path(__file__).resolve().parents[2] / "topologies" / "labs"


class Run:
    """A running lab: the Network (`net`), its model, and helpers over both."""

    def __init__(self, net):
        self.net = net
        self.model = net.model
        self.lab = net.lab                       # lab/emu.py's Lab: run, start_process
        self.workdir = net.out_dir               # configs, logs, event logs, pcaps
        self.sockets = Path(net.run_dir)         # control sockets (removed at the end)
        self.saved = {}                          # what a test keeps from before the daemons

    @property
    def daemons(self):
        return self.net.daemons

    def start_daemons(self, overrides=None, register=None, timeout=10.0):
        self.net.start_daemons(overrides=overrides)
        self.wait_registered(register, timeout)

    # --- the model's facts ---------------------------------------------------------------

    def rloc(self, node):
        return self.model.rloc(node)

    def ip(self, host, version=None):
        return self.model.hosts[host].addr(version)

    def static_eids(self):
        """The EID prefixes the lab's sites register as they are, at startup."""
        return {str(p) for s in self.model.lisp_sites() for p in s.eid_prefixes}

    # --- the daemons ---------------------------------------------------------------------

    def query(self, node, what):
        return self.net.query(node, what)

    def counters(self, node):
        return self.query(node, "counters")

    def registrations(self):
        """{eid: [registrant RLOC addresses]} at the (first) Map-Server; {} while it does
        not answer."""
        try:
            rows = self.query(self.model.map_servers[0], "registrations")
        except ControlError:
            return {}
        return {r["eid"]: [x["address"] for g in r["registrants"] for x in g["rlocs"]]
                for r in rows}

    def registered(self):
        return set(self.registrations())

    def wait_registered(self, eids=None, timeout=10.0):
        """Wait until every EID prefix of `eids` (default: the static ones) is registered;
        raise naming what is missing, with the daemons' last log lines."""
        want = self.static_eids() if eids is None else set(eids)
        if want and not wait_for(lambda: want <= self.registered(), timeout, 0.1):
            raise RuntimeError(f"not registered within {timeout:g} s: "
                               f"{sorted(want - self.registered())}; logs: {self.logs()}")

    def map_cache(self, node):
        """{eid: [RLOC addresses]} of a node's map-cache."""
        return {r["eid"]: [x["address"] for x in r["rlocs"]]
                for r in self.query(node, "map-cache")}

    def events(self, node, name=None):
        evs = read_events(self.workdir / f"{node}.events.jsonl")
        return [e for e in evs if name is None or e["event"] == name]

    def logs(self, tail=1500):
        return {n: p.read_log()[-tail:] for n, p in self.daemons.items()}

    # --- nodes ---------------------------------------------------------------------------

    def sh(self, node, argv, timeout=10):
        """Run argv in a node (None: the root namespace); the CompletedProcess."""
        return self.lab.run(node, [str(a) for a in argv], timeout=timeout)

    def link_mac(self, node, ifname):
        out = self.sh(node, ["ip", "-o", "link", "show", "dev", ifname]).stdout
        return out.split("link/ether ")[1].split()[0]

    def addresses(self, node, ifname):
        """The global addresses (address/length) of an interface."""
        out = self.sh(node, ["ip", "-o", "addr", "show", "dev", ifname]).stdout
        return {line.split()[3] for line in out.splitlines() if " inet" in line
                and "scope link" not in line}

    def route_dev(self, node, dst):
        out = self.sh(node, ["ip", "route", "get", dst]).stdout
        return out.split(" dev ")[1].split()[0] if " dev " in out else out

    def ping(self, host, dst, count=5, extra=()):
        """`ping -c count` from a host to an address (or a host's name: its address)."""
        dst = self.ip(dst) if dst in self.model.hosts else dst
        return self.lab.run(host, ["ping", "-n", "-c", str(count), "-i", "0.2", "-W", "1",
                                   *extra, dst], timeout=count + 5)

    def warm(self, host, dst, timeout=8.0):
        """Ping until the mapping is resolved (the first packets are dropped meanwhile)."""
        return wait_for(lambda: self.ping(host, dst, 1).returncode == 0, timeout, 0.2)

    # --- captures ------------------------------------------------------------------------

    def pcap(self, link):
        return self.workdir / f"{link}.pcap"

    def stop_captures(self):
        """Stop every capture; {link name: pcap path}."""
        self.net.stop_captures()
        for c in self.net.captures.values():
            c.wait(5)
        return {name: self.pcap(name) for name in self.net.captures}


def run_id(name):
    return f"{RUN_PREFIX}{name}-{os.getpid()}"


@contextlib.contextmanager
def running(lab_file, name, out_dir, *, overrides=None, captures=False, snaplen=256,
            daemons=True, register=None, before_daemons=None, timeout=10.0):
    """A lab file's network, running, as a Run; everything is removed on leaving.

    captures: tcpdump on every capture point of the model first; overrides: daemon config
    values merged into the derived ones (lab/backend.py's start_daemons); register: the
    EID prefixes to wait for (default the sites' static ones; [] waits for none);
    before_daemons(run): called once the network is configured, before any daemon;
    daemons=False starts none (the test calls run.start_daemons)."""
    model = load(lab_file)
    with Network(model, out_dir, run_id=run_id(name)) as net:
        run = Run(net)
        if captures:
            net.start_captures(snaplen=snaplen)
        if before_daemons is not None:
            before_daemons(run)
        if daemons:
            run.start_daemons(overrides, register, timeout)
        yield run


def lab_fixture(lab_file, name, scope="module", **options):
    """A pytest fixture (module-scoped by default) yielding a running lab's Run: assign it
    to the fixture's name in a test module, `sites = lab_fixture(...)`."""
    @pytest.fixture(scope=scope)
    def fixture(tmp_path_factory):
        # (the with block is the try/finally: Network and Lab undo everything they did,
        # also when the test or the set-up fails)
        with running(lab_file, name, tmp_path_factory.mktemp(name), **options) as run:
            yield run
    return fixture


# --- a checked TCP transfer -----------------------------------------------------------------

# In the receiving host: `python -c TCP_SERVER PORT [6]` says "ready", then prints the byte
# count and SHA-256 of one connection. In the sending host: `python -c TCP_SENDER ADDRESS
# PORT PATTERN_HEX SIZE` sends SIZE bytes of the 32-byte pattern.
TCP_SERVER = r'''
import hashlib, socket, sys
v6 = len(sys.argv) > 2 and sys.argv[2] == "6"
s = socket.socket(socket.AF_INET6 if v6 else socket.AF_INET)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("::" if v6 else "0.0.0.0", int(sys.argv[1]))); s.listen(1); print("ready", flush=True)
c, _ = s.accept(); h = hashlib.sha256(); n = 0
while True:
    b = c.recv(1 << 16)
    if not b:
        break
    h.update(b); n += len(b)
print(n, h.hexdigest(), flush=True)
'''

TCP_SENDER = r'''
import socket, sys
data = bytes.fromhex(sys.argv[3]) * (int(sys.argv[4]) // 32)
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=20)
s.sendall(data); s.shutdown(socket.SHUT_WR); s.recv(1); s.close()
'''


def transfer_received(server, pattern, size):
    """True when the TCP_SERVER process got exactly `size` bytes of `pattern`."""
    import hashlib
    server.wait(10)
    n, digest = server.read_log().split()[-2:]
    return int(n) == size and digest == hashlib.sha256(pattern * (size // 32)).hexdigest()


# The daemons' pinned maps live in their node's mount namespace (its own bpffs): read and
# write them from there.
IN_NODE = r'''
import glob, json, os, struct, sys
from pathlib import Path
import nodes.kernelpath as kp
d = Path(sorted(glob.glob(f"{kp.PIN_ROOT}/{sys.argv[1]}-*"), key=os.path.getmtime)[-1]) / "maps"
if sys.argv[2] == "entries":
    m = kp.Map(d / "lisp_mc4", kp._KEY.size, kp._MC.size)
    print(json.dumps([[kp.decode_key(k)[0], str(kp.decode_key(k)[1]),
                       kp.decode_mc(m.lookup(k))[0]] for k in m.keys()]))
elif sys.argv[2] == "lsb":
    import socket
    m = kp.Map(d / "lisp_lsb4", 4, 4)
    print(json.dumps({socket.inet_ntoa(k): struct.unpack("=I", m.lookup(k))[0]
                      for k in m.keys()}))
else:
    m = kp.Map(d / "lisp_cfg", 4, kp._CFG.size)
    raw = bytearray(m.lookup(struct.pack("=I", 0)))
    raw[0:4] = struct.pack("=I", int(sys.argv[3]))
    m.update(struct.pack("=I", 0), bytes(raw))
    print("ok")
'''


def in_node(run, node, *args):
    """Run IN_NODE in `node` ("entries": the IPv4 map-cache trie; "lsb": the Locator-
    Status-Bits map; "cfg", "0" or "1": the kernel path off or on in its config map)."""
    r = run.lab.run(node, [sys.executable, "-c", IN_NODE, node, *args], timeout=10,
                    cwd=str(Path(__file__).resolve().parents[2]))
    assert r.returncode == 0, r.stderr
    return r.stdout


def set_kernel_path(run, node, on):
    """Switch `node`'s kernel path off (everything goes to the Python path, as if the
    programs were not there) or back on."""
    assert in_node(run, node, "cfg", "1" if on else "0").strip() == "ok"


def kernel_path_running(run, node):
    return run.counters(node).get("kernel_path") == 1

"""What leaves an xTR is wire-sized on every link, whatever the links' offloads (issue 10,
item 1).

The ITR sends a batch of LISP packets in one UDP_SEGMENT system call. With the default
offloads of a veth, such a batch used to stay one "super-packet" across the uplink and the
core router (frames of 7,282 bytes), and a receiver that reads LISP from a raw socket, as
other implementations do, took it for one LISP packet and lost every inner packet but the
first. Here, with the offloads left on (the demo turns them off on its captured links; this
test must not), a TCP transfer goes from h1 (behind xtr1) to h2, and a raw-socket (AF_PACKET)
receiver on the core router reads every frame on xtr1's uplink and on xtr2's link: no frame
may be larger than the MTU plus the Ethernet header, and each LISP data frame must carry
exactly one inner packet. Both data paths: the Python one (UDP_SEGMENT sends) and the kernel
one (tc-BPF encapsulation of the hosts' GSO packets, segmented by the kernel)."""
import json
import os
import signal
import sys
import time

import pytest

from lab.emu import wait_for
from tests.emulation.harness import (DATA, TCP_SENDER, TCP_SERVER, kernel_path_running,
                                     lab_fixture, set_kernel_path, transfer_received)

PY = sys.executable
MTU = 1500
TRANSFER = 4 << 20
LINKS = ("r0-xtr1", "r0-xtr2")           # xtr1's uplink and the far side's link, at r0

# No captures: those turn the captured links' offloads off, and this test needs them on.
sites = lab_fixture(DATA / "two-sites.yaml", "wire")

# The raw-socket receiver, on each interface given: every frame from the xTR's RLOC (SRC),
# its size; of those, the LISP data frames (UDP to 4341), the inner packets found by walking
# each one's UDP payload (LISP header, inner packet, LISP header, ...: what a batch that
# stayed one packet carries), and the inner TCP payload by sequence number.
RECEIVER = r'''
import json, signal, socket, struct, sys
src = socket.inet_aton(sys.argv[1])
socks = {}
for name in sys.argv[2:]:
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 << 20)
    s.bind((name, 0))
    s.settimeout(0.2)
    socks[name] = s
stats = {n: {"frames": 0, "max_frame": 0, "over_mtu": 0, "lisp_frames": 0, "inner": 0,
             "seqs": {}} for n in socks}
stop = []
signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
print("ready", flush=True)
while not stop:
    for name, s in socks.items():
        try:
            f = s.recv(1 << 17)
        except (socket.timeout, InterruptedError):
            continue
        if len(f) < 14 + 20 or f[12:14] != b"\x08\x00" or f[26:30] != src:
            continue                            # not IPv4 from the xTR's RLOC
        st = stats[name]
        st["frames"] += 1                       # every frame the xTR sent, any protocol
        st["max_frame"] = max(st["max_frame"], len(f))
        st["over_mtu"] += len(f) > int(MTU) + 14
        udp = 14 + (f[14] & 15) * 4
        if f[23] != 17 or len(f) < udp + 16 or struct.unpack_from("!H", f, udp + 2)[0] != 4341:
            continue
        st["lisp_frames"] += 1
        at, end = udp + 8, len(f)
        while at + 8 + 20 <= end:               # LISP header, then an inner packet
            i = at + 8
            if f[i] >> 4 == 4:
                length, ihl2 = struct.unpack_from("!H", f, i + 2)[0], (f[i] & 15) * 4
                proto = f[i + 9]
            elif f[i] >> 4 == 6:
                length, ihl2 = 40 + struct.unpack_from("!H", f, i + 4)[0], 40
                proto = f[i + 6]
            else:
                break
            if length < 20:
                break
            st["inner"] += 1
            if proto == 6 and i + ihl2 + 20 <= end:
                seq = struct.unpack_from("!I", f, i + ihl2 + 4)[0]
                data = length - ihl2 - (f[i + ihl2 + 12] >> 4) * 4
                if data > 0:
                    st["seqs"][seq] = data
            at = i + length
print(json.dumps({n: dict(st, seqs=sum(st["seqs"].values())) for n, st in stats.items()}),
      flush=True)
'''.replace("int(MTU)", str(MTU))

def started(proc, timeout=5):
    return wait_for(lambda: "ready" in proc.read_log(), timeout, 0.05)


@pytest.fixture(params=["python", "kernel"])
def path(request, sites):
    """Each data path of xtr1 in turn: the kernel path (the default where it runs) or the
    Python path (the kernel programs switched off in their config map)."""
    kernel = kernel_path_running(sites, "xtr1")
    if request.param == "kernel" and not kernel:
        pytest.skip("xtr1's kernel data path is not running here: "
                    f"{[e.get('reason') for e in sites.events('xtr1', 'kernel_path_unavailable')]}")
    if request.param == "python" and kernel:
        set_kernel_path(sites, "xtr1", False)
    yield request.param
    if request.param == "python" and kernel:
        set_kernel_path(sites, "xtr1", True)


def test_a_tcp_transfer_leaves_the_xtr_one_lisp_packet_per_frame(sites, path):
    lab, workdir = sites.lab, sites.workdir
    before = sites.counters("xtr1")
    offloads = sites.sh("xtr1", ["ethtool", "-k", "xtr1-r0"]).stdout \
        + sites.sh("r0", ["ethtool", "-k", "r0-xtr2"]).stdout
    assert offloads.count("generic-segmentation-offload: on") == 2   # nothing turned off
    assert sites.warm("h1", "h2")
    (workdir / "receiver.py").write_text(RECEIVER)
    # A log per data path: logs are appended to, and the second run must not take the
    # first receiver's "ready" for its own (it then missed the kernel path's transfer).
    receiver = lab.start_process("r0", [PY, workdir / "receiver.py", sites.rloc("xtr1"),
                                        *LINKS], workdir / f"receiver-{path}.log",
                                 name="raw-receiver")
    server = lab.start_process("h2", [PY, "-c", TCP_SERVER, "5001"],
                               workdir / f"server-{path}.log", name="tcp-server")
    assert started(receiver) and started(server), (receiver.read_log(), server.read_log())
    pattern = os.urandom(32)
    r = lab.run("h1", [PY, "-c", TCP_SENDER, sites.ip("h2", 4), "5001", pattern.hex(),
                       str(TRANSFER)], timeout=60)
    assert r.returncode == 0, r.stderr
    assert transfer_received(server, pattern, TRANSFER), server.read_log()
    time.sleep(0.3)
    receiver.stop(signal.SIGTERM)
    stats = json.loads(receiver.read_log().strip().splitlines()[-1])
    xtr1 = sites.counters("xtr1")
    print(json.dumps({"frames": stats, "xtr1": {k: v for k, v in xtr1.items() if k.startswith(
        ("udp_gso", "gso_", "uplink_", "packets_encapsulated", "tun_super"))}}))
    for link in LINKS:
        st = stats[link]
        assert st["over_mtu"] == 0 and st["max_frame"] <= MTU + 14, (link, st)
        assert st["inner"] == st["lisp_frames"], (link, st)      # one inner packet each
        assert st["lisp_frames"] >= TRANSFER // MTU, (link, st)   # it saw the transfer
        assert st["seqs"] >= TRANSFER, (link, st)                 # every byte, readable
    sent = {k: xtr1.get(k, 0) - before.get(k, 0)
            for k in ("udp_gso_sends", "kernel_encapsulated", "gso_off_uplink_offload")}
    if path == "python":
        # Still one UDP_SEGMENT send per batch: the kernel segments before the uplink.
        assert sent["udp_gso_sends"] > 0 and sent["gso_off_uplink_offload"] == 0, sent
        assert sent["kernel_encapsulated"] == 0, sent
    else:
        # The tc program encapsulated the transfer (GSO packets from h1 included).
        assert sent["kernel_encapsulated"] >= TRANSFER // MTU, sent

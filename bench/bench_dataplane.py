"""Data-plane and mapping-system benchmarks over real namespaces (root).

Same topology (tests/data/two-sites.yaml, the daemon tests' lab), same run, two ways:
  lisp   h1 -> xtr1 (encap) -> r0 -> xtr2 (decap) -> h2, our daemons
  plain  h1 -> xtr1 -> r0 -> xtr2 -> h2, kernel routing, no daemons, no encapsulation
For each: small-UDP packets per second received (iperf3 -u -l 64: unpaced, and paced at
about 39k and 51k packets/s; iperf3's -b counts the 64-byte payloads, so 20M is 39k/s) and
TCP throughput (iperf3, 1 stream). The UDP runs give the receiver a 4 MiB socket buffer. Then, with the daemons running:
Map-Server registrations per second and Map-Resolver requests per second over real UDP,
from a load generator in xtr1's namespace (its daemon stopped first to free port 4342),
with at most 64 requests outstanding.
"""
import json
import sys
import tempfile
import time
from pathlib import Path

from lab.backend import Network
from lab.emu import wait_for
from topologies.model import load

PY = sys.executable
SECONDS = 5
LAB = Path(__file__).resolve().parent.parent / "tests" / "data" / "two-sites.yaml"
# The load generator's Map-Requests all come from one source: no request limits at the
# Map-Server, so that the bench measures what it answers, not what it is allowed to.
MSMR_UNLIMITED = {"msmr": {"map_request_rate": 0, "map_request_rate_per_source": 0}}


def iperf(lab, workdir, args, tag):
    srv = lab.start_process("h2", ["iperf3", "-s", "-1"], Path(workdir) / f"iperf-{tag}.log")
    time.sleep(0.5)
    r = lab.run("h1", ["iperf3", "-c", "10.2.0.10", "-J", "-t", str(SECONDS), *args],
                timeout=SECONDS + 20)
    srv.wait(10)
    return json.loads(r.stdout)


def measure_path(lab, workdir, tag):
    out = {}
    for name, rate in (("udp64", "0"), ("udp64_paced", "20M"), ("udp64_paced51k", "26M")):
        # -w 4M: a 4 MiB socket buffer at the receiving iperf3, for both paths (our ETR
        # delivers in batches, which the default buffer of a small-datagram receiver drops)
        s = iperf(lab, workdir, ["-u", "-l", "64", "-b", rate, "-w", "4M"],
                  f"{tag}-{name}")["end"]["sum"]
        out[f"{name}_sent_pps"] = round(s["packets"] / s["seconds"])
        out[f"{name}_received_pps"] = round((s["packets"] - s["lost_packets"]) / s["seconds"])
        out[f"{name}_loss_percent"] = round(s["lost_percent"], 1)
    tcp = iperf(lab, workdir, [], tag + "-tcp")
    out["tcp_gbit_s"] = round(tcp["end"]["sum_received"]["bits_per_second"] / 1e9, 3)
    return out


LOADGEN = r'''
import ipaddress, json, socket, sys, time
sys.path.insert(0, sys.argv[1])
from nodes.lisp.address import make_eid
from nodes.lisp.auth import sign
from nodes.lisp.ipudp import IpUdp
from nodes.lisp.messages import *
ms, key, n, kind = sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
me = ipaddress.ip_address(sys.argv[6])
s = socket.socket(); s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((str(me), 4342)); s.settimeout(2.0)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
msgs = []
for i in range(n):
    if kind == "register":
        eid, m = make_eid("10.1.0.0/24", 7)
        rec = EidRecord(eid, m, [Locator(me, local=True)])
        msgs.append(encode(sign(MapRegister(i + 1, [rec], 0, 2, want_map_notify=True), key)))
    else:
        dst = ipaddress.ip_address(f"192.{(i >> 8) & 255}.{i & 255}.1")
        eid, m = make_eid(f"{dst}/32", 7)
        req = MapRequest(i + 1, [RequestRecord(eid, m)], [me])
        msgs.append(encode(EncapsulatedControl(req, IpUdp(me, dst))))
got = 0
start = time.perf_counter()
window = 64                      # keep at most this many requests outstanding
sent = 0
while got < n:
    while sent < n and sent - got < window:
        s.sendto(msgs[sent], (ms, 4342)); sent += 1
    try:
        s.recv(2048); got += 1
    except socket.timeout:
        break
elapsed = time.perf_counter() - start
print(json.dumps({"sent": sent, "answered": got, "seconds": round(elapsed, 3),
                  "per_s": round(got / elapsed)}))
'''


def mapping_system(net, workdir, n=5000):
    """Registrations/s and Map-Requests/s answered by the msmr daemon, from xtr1's netns
    (its own daemon is stopped first so that the port is free)."""
    gen = Path(workdir) / "loadgen.py"
    gen.write_text(LOADGEN)
    root = str(Path(__file__).resolve().parent.parent)
    m = net.model
    out = {}
    for kind in ("register", "request"):
        r = net.lab.run("xtr1", [PY, gen, root, m.rloc("msmr"), m.sites["site1"].key, str(n),
                                 kind, m.rloc("xtr1")], timeout=120)
        res = json.loads(r.stdout)
        out[f"msmr_{kind}s_per_s"] = res["per_s"]
        out[f"msmr_{kind}s_answered"] = f"{res['answered']}/{res['sent']}"
    return out


def xtr_counters(lab):
    """The xTRs' data-plane counters after the runs: how much went through the offloads
    (super-packets read and written, UDP GSO sends, GRO batches) and what was dropped."""
    from nodes.control import query
    out = {}
    for node in ("xtr1", "xtr2"):
        rows = query(str(Path(lab.run_dir) / f"{node}.sock"), {"show": "counters"})["data"]
        out[node] = {k: v for k, v in sorted(rows.items()) if v and (
            k.startswith(("packets_", "tun_", "udp_", "gso_", "drop_")))}
    return out


def run(quick=False):
    results = {}
    model = load(LAB)
    with tempfile.TemporaryDirectory() as workdir, Network(model, workdir,
                                                           run_id="bench-dataplane") as net:
        lab = net.lab
        results["delay_emulation"] = "netem" if lab.netem else "none (no delays configured)"
        # plain kernel routing: r0 knows the site prefixes
        sites = [(str(model.sites[s].eid_prefixes[0]), model.rloc(model.sites[s].gateway))
                 for s in ("site1", "site2")]
        for prefix, via in sites:
            lab.run("r0", ["ip", "route", "add", prefix, "via", via])
        results["plain"] = measure_path(lab, workdir, "plain")
        for prefix, _ in sites:
            lab.run("r0", ["ip", "route", "del", prefix])
        net.start_daemons(overrides={"msmr": MSMR_UNLIMITED})
        wait_for(lambda: lab.run("h1", ["ping", "-c1", "-W1", "10.2.0.10"]).returncode == 0,
                 20, 0.2)
        results["lisp"] = measure_path(lab, workdir, "lisp")
        results["lisp_xtr_counters"] = xtr_counters(lab)
        for k in ("udp64_received_pps", "tcp_gbit_s"):
            p = results["plain"][k]
            results[f"lisp_over_plain_{k}"] = round(results["lisp"][k] / p, 3) if p else None
        net.stop_daemon("xtr1")
        results.update(mapping_system(net, workdir, 2000 if quick else 10000))
    return results


if __name__ == "__main__":
    print(json.dumps(run("--quick" in sys.argv), indent=2))

"""The node daemons in real namespaces: two LISP sites, a Map-Server/Map-Resolver, a proxy
xTR and a non-LISP host around an IPv4 core (tests/data/two-sites.yaml, built by the
emulation harness: tests/emulation/harness.py).

Real processes (`python -m nodes.daemon`), real packets, captures on the core links."""
import hashlib
import ipaddress
import os
import re
import signal
import subprocess
import sys
import time

import pytest
from scapy.all import UDP, rdpcap

from nodes.lisp.address import eid_prefix
from nodes.lisp.messages import EncapsulatedControl, MapReply, decode
from tests.emulation.harness import DATA, lab_fixture, running

PY = sys.executable
LAB = DATA / "two-sites.yaml"
INSTANCE_ID = 7                 # the lab's mapping_system.instance_id

# Captures on every link first; the sites' four prefixes registered.
sites = lab_fixture(LAB, "daemons", captures=True)


def control_messages(pcap):
    """(outer src, message) for every LISP control packet of a pcap, decoded by our codec."""
    out = []
    for p in rdpcap(str(pcap)):
        if UDP in p and 4342 in (p[UDP].sport, p[UDP].dport):
            out.append((p.payload.src, decode(bytes(p[UDP].payload))))
    return out


def test_ping_both_ways_ipv4_and_ipv6_eids(sites):
    for src, dst in (("h1", "10.2.0.10"), ("h2", "10.1.0.10"),
                     ("h1", "2001:db8:2::10"), ("h2", "2001:db8:1::10")):
        assert sites.warm(src, dst), f"{src} never reached {dst}"
        r = sites.ping(src, dst, 5)
        assert r.returncode == 0 and " 0% packet loss" in r.stdout, (src, dst, r.stdout)


@pytest.mark.parametrize("server,client,dst", [
    ("h2", "h1", "10.2.0.10"), ("h1", "h2", "10.1.0.10"),
    ("h2", "h1", "2001:db8:2::10"), ("h1", "h2", "2001:db8:1::10")])
def test_tcp_transfer_both_ways(sites, server, client, dst):
    """4 MiB over TCP (full-size segments: path-MTU discovery through the tunnel), checked
    by SHA-256 on both ends."""
    assert sites.warm(client, dst)
    payload = sites.workdir / f"send-{client}-{dst}.bin"
    payload.write_bytes(os.urandom(4 << 20))
    received = sites.workdir / f"recv-{server}-{dst}.bin"
    family = "-6" if ":" in dst else "-4"
    srv = sites.lab.start_process(
        server, ["sh", "-c", f"exec nc {family} -l -p 5000 > {received}"],
        sites.workdir / f"nc-{server}.log", name="nc-server")
    time.sleep(0.3)
    r = sites.lab.run(client, ["sh", "-c", f"nc {family} -N -w 5 {dst} 5000 < {payload}"],
                      timeout=30)
    assert r.returncode == 0, r.stderr
    srv.wait(10)
    assert hashlib.sha256(received.read_bytes()).hexdigest() == \
        hashlib.sha256(payload.read_bytes()).hexdigest()


def test_path_mtu_oversized_packet_gets_icmp_and_full_size_fits(sites):
    """TUN MTU = 1500 - 36: a 1500-byte DF packet gets 'Frag needed (mtu = 1464)'."""
    assert sites.warm("h1", "10.2.0.10")
    big = sites.ping("h1", "10.2.0.10", 1, ["-M", "do", "-s", "1472"])
    # Either the ICMP from xtr1 ("Frag needed ... mtu = 1464") or, once the path MTU is
    # learnt (the TCP tests above), the local error ("message too long, mtu=1464").
    assert big.returncode != 0 and re.search(r"mtu ?= ?1464", big.stdout + big.stderr), \
        big.stdout + big.stderr
    fits = sites.ping("h1", "10.2.0.10", 2, ["-M", "do", "-s", str(1464 - 28)])
    assert fits.returncode == 0, fits.stdout


def test_non_lisp_host_through_proxy_xtr(sites):
    for src, dst in (("n1", "10.1.0.10"), ("h1", "198.51.100.10")):
        assert sites.warm(src, dst), f"{src} never reached {dst}"
        r = sites.ping(src, dst, 5)
        assert r.returncode == 0 and " 0% packet loss" in r.stdout, (src, dst, r.stdout)
    counters = sites.query("pxtr", "counters")
    assert counters["packets_encapsulated"] > 0 and counters["packets_decapsulated"] > 0


def test_counters_and_map_cache_are_shown(sites):
    assert sites.warm("h1", "10.2.0.10")
    rows = sites.query("xtr1", "map-cache")
    entry = next(r for r in rows if r["eid"] == "10.2.0.0/24")
    assert entry["iid"] == INSTANCE_ID
    assert [x["address"] for x in entry["rlocs"]] == [sites.rloc("xtr2")]
    c = sites.query("xtr1", "counters")
    for key in ("packets_encapsulated", "packets_decapsulated", "map_request_sent",
                "map_reply_received", "map_register_sent", "map_notify_received"):
        assert c.get(key, 0) > 0, (key, c)
    r = subprocess.run([PY, "-m", "lab.cli", "show", "xtr1", "map-cache", "--socket",
                        str(sites.sockets / "xtr1.sock")], capture_output=True, text=True)
    assert r.returncode == 0 and "10.2.0.0/24" in r.stdout and sites.rloc("xtr2") in r.stdout


def test_zz_captures_one_resolution_and_tshark_agrees(sites, tshark):
    """Runs last in this module: the captures cover everything above (and this test's own
    traffic, so that it also stands alone)."""
    assert sites.warm("h1", "10.2.0.10")
    sites.lab.run("h1", ["ping", "-n", "-q", "-c", "30", "-i", "0.02", "10.2.0.10"])
    pcaps = sites.stop_captures()
    core1 = pcaps["core-xtr1"]
    msgs = control_messages(core1)
    xtr1, xtr2 = (ipaddress.ip_address(sites.rloc(x)) for x in ("xtr1", "xtr2"))

    def asks_for_site2(m):
        if not isinstance(m, EncapsulatedControl):
            return False
        rec = m.message.records[0]
        net = eid_prefix(rec.eid, rec.mask_len)[1]
        return net.version == 4 and net.subnet_of(ipaddress.ip_network("10.2.0.0/24"))
    requests = [m for s, m in msgs if str(s) == str(xtr1) and asks_for_site2(m)]
    replies = [m for s, m in msgs if str(s) == str(xtr2) and isinstance(m, MapReply)
               and any(str(eid_prefix(r.eid, r.mask_len)[1]) == "10.2.0.0/24"
                       for r in m.records)]
    # Many pings and four TCP transfers to site 2, one resolution (TTL is a day).
    assert len(requests) == 1, requests
    assert len(replies) == 1 and replies[0].nonce == requests[0].message.nonce

    fields = subprocess.run(
        [tshark, "-r", str(core1), "-Y", "lisp-data", "-T", "fields",
         "-e", "lisp-data.flags.iid", "-e", "lisp-data.iid", "-e", "lisp-data.nonce"],
        capture_output=True, text=True, check=True).stdout.split("\n")
    rows = [line.split("\t") for line in fields if line.strip()]
    assert len(rows) >= 30
    for flag_iid, iid, nonce in rows:
        assert flag_iid in ("1", "True") and int(iid, 0) == INSTANCE_ID
        assert int(nonce, 0) != 0
    # The inner TCP streams carry random bytes that Wireshark's heuristic dissectors
    # (GSM A-bis and friends) misread; our concern is the LISP layers and the inner IP.
    bad = subprocess.run(
        [tshark, "-r", str(core1), "--disable-protocol", "tcp", "-Y",
         "(lisp || lisp-data) && (_ws.malformed || _ws.expert.severity >= 6291456)"],
        capture_output=True, text=True, check=True).stdout
    assert bad.strip() == ""
    control = subprocess.run([tshark, "-r", str(core1), "-Y", "lisp", "-T", "fields",
                              "-e", "lisp.type"], capture_output=True, text=True,
                             check=True).stdout.replace(",", " ").split()
    assert {"1", "2", "3", "4", "8"} <= set(control)   # request, reply, register, notify, ECM


def test_zz_stop_leaves_no_tun_route_rule_or_process(sites):
    started = time.monotonic()
    for name, proc in sites.daemons.items():
        proc.send_signal(signal.SIGTERM)
    for name, proc in sites.daemons.items():
        proc.wait(3)
        assert proc.returncode == 0, (name, proc.read_log()[-2000:])
    assert time.monotonic() - started < 1.5
    for node in ("xtr1", "xtr2", "pxtr"):
        links = sites.lab.run(node, ["ip", "-o", "link", "show", "type", "tun"]).stdout
        assert links.strip() == "", (node, links)
        rules = sites.lab.run(node, ["ip", "rule"]).stdout + sites.lab.run(
            node, ["ip", "-6", "rule"]).stdout
        assert "lookup 100" not in rules and "suppress_prefixlength" not in rules, rules
        for fam in ("-4", "-6"):
            table = sites.lab.run(node, ["ip", fam, "route", "show", "table", "100"]).stdout
            assert table.strip() == "", (node, table)
        main = sites.lab.run(node, ["ip", "route"]).stdout
        assert "lisp0" not in main
    for name in sites.daemons:
        assert not (sites.sockets / f"{name}.sock").exists()


def test_wrong_key_is_rejected_and_site_stays_unreachable(tmp_path):
    # xtr2 signs its Map-Registers with a key the Map-Server does not hold for site2
    with running(LAB, "wrongkey", tmp_path, register=["10.1.0.0/24"],
                 overrides={"xtr2": {"map_server": {"secret": "not-the-key"}}}) as run:
        time.sleep(2.5)                      # a few more rounds of site 2's registrations
        assert "10.2.0.0/24" not in run.registered()
        counters = run.query("msmr", "counters")
        assert counters["auth_failures"] >= 2
        assert counters.get("register_auth_failed", 0) == counters["auth_failures"]
        r = run.ping("h1", "10.2.0.10", 6)
        assert " 100% packet loss" in r.stdout, r.stdout
        xtr2 = run.query("xtr2", "counters")
        assert xtr2["map_register_sent"] >= 2 and xtr2.get("map_notify_received", 0) == 0

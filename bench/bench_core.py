"""Codec and Map-Server throughput of the protocol core (no I/O)."""
import ipaddress
import random
import time

from nodes.lisp.address import make_eid
from nodes.lisp.auth import sign
from nodes.lisp.ipudp import IpUdp
from nodes.lisp.mapserver import MapServer, Site
from nodes.lisp.messages import (ALG_HMAC_SHA1_96, ALG_HMAC_SHA256_128, EidRecord,
                                 EncapsulatedControl, Locator, MapRegister, MapRequest,
                                 RequestRecord, decode, encode)


def _rate(fn, seconds):
    """Calls of fn per second, measured for about `seconds`."""
    n, start = 0, time.perf_counter()
    while True:
        for _ in range(200):
            fn()
        n += 200
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return n / elapsed


def sample_register(alg=ALG_HMAC_SHA256_128):
    eid, mask = make_eid("10.1.0.0/24")
    rec = EidRecord(eid, mask, [Locator(ipaddress.ip_address("192.0.2.1"), local=True),
                                Locator(ipaddress.ip_address("2001:db8::1"), priority=2)])
    return sign(MapRegister(0x1122334455667788, [rec], 0, alg, want_map_notify=True), "k")


def sample_request():
    eid, mask = make_eid("10.1.0.5/32")
    req = MapRequest(0x99, [RequestRecord(eid, mask)],
                     [ipaddress.ip_address("192.0.2.9")])
    return EncapsulatedControl(req, IpUdp(ipaddress.ip_address("192.0.2.9"),
                                          ipaddress.ip_address("10.1.0.5")))


def codec(seconds=1.0):
    reg, req = sample_register(), sample_request()
    reg_raw, req_raw = encode(reg), encode(req)
    return {
        "map_register_encode_decode_per_s": round(_rate(lambda: decode(encode(reg)), seconds)),
        "map_register_decode_per_s": round(_rate(lambda: decode(reg_raw), seconds)),
        "ecm_map_request_encode_decode_per_s": round(
            _rate(lambda: decode(encode(req)), seconds)),
        "ecm_map_request_decode_per_s": round(_rate(lambda: decode(req_raw), seconds)),
    }


def map_server(n=20_000, alg=ALG_HMAC_SHA1_96):
    """Registrations per second through MapServer.receive (decode, HMAC check, store),
    for n distinct host EIDs of one site, the Map-Registers signed beforehand."""
    site = Site("dc", {0: "k"}, [(0, ipaddress.ip_network("10.0.0.0/8"))],
                accept_more_specifics=True)
    ms = MapServer([site], rng=random.Random(1))
    rloc = ipaddress.ip_address("192.0.2.1")
    raws = []
    for i in range(n):
        eid, mask = make_eid(f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}/32")
        rec = EidRecord(eid, mask, [Locator(rloc, local=True)])
        raws.append(encode(sign(MapRegister(i + 1, [rec], 0, alg, want_map_notify=True),
                                "k")))
    start = time.perf_counter()
    for raw in raws:
        ms.receive(raw, rloc, 0.0)
    elapsed = time.perf_counter() - start
    assert ms.counters["registrations_accepted"] == n, ms.counters
    return {"ms_registrations": n, "ms_registrations_per_s": round(n / elapsed),
            "ms_algorithm": "hmac-sha-1-96" if alg == ALG_HMAC_SHA1_96 else "hmac-sha-256-128"}


def run(quick=False):
    out = codec(0.3 if quick else 1.0)
    out.update(map_server(2_000 if quick else 20_000))
    out.update({"ms_sha256_" + k[3:]: v for k, v in
                map_server(2_000 if quick else 20_000, ALG_HMAC_SHA256_128).items()
                if k == "ms_registrations_per_s"})
    return out

"""Many short UDP flows, to measure how an ITR spreads flows over a site's locators
(ingress traffic engineering: priority and weight, RFC 9300 section 10 / RFC 9301).

    python -m lab.flows --dst IP [--flows 1000] [--packets 3] [--rate 2000]
                        [--port 7010] [--first-sport 20000] [--out F.json]

Flow i is UDP from source port first-sport + i to IP's --port: --packets datagrams of
captures.flows.payload(): a magic, the flow index and the datagram number, 64 bytes.
The ITR hashes each flow's 5-tuple to one locator, so the flows' share per provider link,
counted from the captures (captures/flows.py), is the split the weights asked for. Nothing
needs to listen at --port: the datagrams are counted on the way. Sent at --rate datagrams
per second on an absolute schedule. JSON: flows, packets_sent, send_errors, start, end.
Stops cleanly (writing its JSON) on SIGTERM/SIGINT; a bad argument is one line and exit 2.
"""
import argparse
import json
import signal
import socket
import sys
import time

from captures.flows import FLOW_PORT, payload


def send(dst, flows, packets, rate, port, first_sport, stop):
    family = socket.AF_INET6 if ":" in dst else socket.AF_INET
    sent = errors = 0
    start = time.time()
    t0, n = time.monotonic(), 0
    for i in range(flows):
        if stop:
            break
        s = socket.socket(family, socket.SOCK_DGRAM)
        try:
            s.bind(("::" if family == socket.AF_INET6 else "0.0.0.0", first_sport + i))
            for k in range(packets):
                due = t0 + n / rate
                n += 1
                delay = due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                try:
                    s.sendto(payload(i, k), (dst, port))
                    sent += 1
                except OSError:
                    errors += 1
        except OSError:
            errors += packets
        finally:
            s.close()
    return {"flows": flows, "packets": packets, "packets_sent": sent, "send_errors": errors,
            "port": port, "first_sport": first_sport, "start": start, "end": time.time(),
            "stopped_by": "signal" if stop else None}


def _positive(text):
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if v <= 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text!r}")
    return v


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m lab.flows", description=__doc__.split("\n")[0])
    p.add_argument("--dst", required=True)
    p.add_argument("--flows", type=int, default=1000)
    p.add_argument("--packets", type=int, default=3)
    p.add_argument("--rate", type=_positive, default=2000.0)
    p.add_argument("--port", type=int, default=FLOW_PORT)
    p.add_argument("--first-sport", type=int, default=20000)
    p.add_argument("--out")
    a = p.parse_args(argv)
    if not 1 <= a.flows or a.first_sport + a.flows > 65536 or a.packets < 1:
        p.error("--flows and --first-sport must fit in the port range; --packets >= 1")
    stop = []
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda *_: stop.append(1))
    out = send(a.dst, a.flows, a.packets, a.rate, a.port, a.first_sport, stop)
    text = json.dumps(out)
    if a.out:
        with open(a.out, "w", encoding="utf-8") as f:
            f.write(text + "\n")
    print(text, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

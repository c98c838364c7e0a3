"""The site-local Map-Notify of an extended subnet (issue 12), on the wire: in the demo's
lisp-extended-subnet mode, DC2's xTR announces the moved VM to the group the DCI carries,
DC1's xTR lets it go on that notification before the Map-Server's arrives, and Wireshark
reads the announcement as a LISP Map-Notify with the VM's /32 and DC2's RLOC."""
import json
import subprocess
import time

from lab.demo import Progress, mode_file, run_scenario
from topologies.model import SITE_NOTIFY_GROUP


def events(path):
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_the_old_xtr_lets_the_vm_go_on_the_site_local_notify_first(tmp_path, emu, tshark):
    r = run_scenario(mode_file("lisp-extended-subnet"), tmp_path, Progress(),
                     run_id=f"pytest-emu-site-notify-{int(time.time())}")
    assert [c for c in r["checks"] if not c["ok"]] == [], r["checks"]
    d = tmp_path / "lisp-extended-subnet"
    move = json.loads((d / "links.json").read_text())["move_time"]
    x1 = events(d / "xtr1.events.jsonl")
    [away] = [e for e in x1 if e["event"] == "eid_away" and e["eid"] == "[0]10.10.0.5"]
    assert away["via"] == "site-local Map-Notify" and away["from"] == "10.10.0.3", away
    from_ms = [e["time"] for e in x1 if e["event"] == "control_received"
               and e["type"] == "Map-Notify" and e["frm"] == "172.16.100.1"
               and e["time"] > move]
    assert from_ms and away["time"] < from_ms[0], (away, from_ms)   # ahead of the MS
    # on DC1's LAN: the announcement as Wireshark reads it, nothing malformed
    out = subprocess.run([tshark, "-n", "-r", str(d / "dc1-access.pcap"), "-Y",
                          f"ip.dst == {SITE_NOTIFY_GROUP} && udp.dstport == 4342",
                          "-T", "fields", "-e", "ip.src", "-e", "lisp.type",
                          "-e", "lisp.mapping.eid.ipv4", "-e", "lisp.loc.locator",
                          "-e", "_ws.malformed", "-e", "frame.time_epoch"],
                         capture_output=True, text=True, timeout=120)
    rows = [line.split("\t") for line in out.stdout.splitlines()]
    after = [row for row in rows if float(row[5]) >= move]
    assert after, out.stdout + out.stderr
    src, kind, eid, loc, malformed, _ = after[0]
    assert (src, kind, eid, loc, malformed) == ("10.10.0.3", "4", "10.10.0.5",
                                                 "172.16.3.1", ""), after[0]

"""`sudo mn --custom topologies/dc.py --topo lispdc`: Mininet's own command line loads the
demo's topology, builds every node and link of it, and removes them all when it exits.

mn runs non-interactively (its CLI reads commands from stdin) inside a network namespace made
for the test, so its interface names (xtr1-lan, s1, ...) cannot meet those of another run,
and "nothing left behind" is simply: the namespace holds only `lo` afterwards.

mn is started as its own script under its own interpreter, with one change: its machine-wide
clean-up (`mn -c`, which mn also runs when it fails) is replaced by a message. That clean-up
kills every `mininet:` shell, `ping` and `mnexec` of the machine, in every namespace, so it
would end other people's runs; here it would only hide a failure.
"""
import os
import re
import shutil
import signal
import subprocess

import pytest

from topologies import dc as D

NO_CLEANUP = "mn wanted its machine-wide clean-up (mn -c): not run by this test"
RUN_MN = """
import runpy, sys
import mininet.clean
def cleanup():
    print({no_cleanup!r}, file=sys.stderr, flush=True)
mininet.clean.cleanup = cleanup
sys.argv = ["mn"] + sys.argv[1:]
runpy.run_path({mn!r}, run_name="__main__")
"""
# Commands typed at mn's CLI: the nodes, the links, the bridges' ports (the switches live in
# the namespace mn runs in; the CLI would turn a node name in the arguments into its IP
# address, hence no `master s1`), each host's shell pid. Their output goes to stderr.
COMMANDS = """\
nodes
net
s1 ip -o link show type bridge_slave
py ' '.join('pid=%d' % h.pid for h in net.hosts)
exit
"""


def mn_interpreter(mn):
    """The interpreter named on mn's #! line (Debian's /usr/bin/python3, with its Mininet)."""
    with open(mn, encoding="utf-8") as f:
        first = f.readline()
    return first[2:].split() if first.startswith("#!") else ["python3"]


def expected_links():
    """{frozenset of the two interface names} of every link of the topology."""
    topo = D.DataCenterTopo()
    return {frozenset((info["intfName1"], info["intfName2"]))
            for _, _, info in topo.links(withInfo=True)}


def links_of(output):
    """The same set from the lines of mn's `net` command ("node intf:peer-intf ...")."""
    nodes = set(D.DataCenterTopo().nodes())
    links = set()
    for line in output.splitlines():
        words = line.split()
        if not words or words[0] not in nodes:
            continue
        for word in words[1:]:
            intf, _, peer = word.partition(":")
            if intf != "lo" and peer not in ("", "None"):
                links.add(frozenset((intf, peer)))
    return links


@pytest.fixture
def netns():
    if shutil.which("mn") is None:
        pytest.skip("Mininet's `mn` is not installed (sudo make install)")
    name = f"mncustom{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    subprocess.run(["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"], check=True)
    yield name
    subprocess.run(["ip", "netns", "del", name])


def ns_links(ns):
    out = subprocess.run(["ip", "netns", "exec", ns, "ip", "-o", "link", "show"],
                         capture_output=True, text=True, check=True).stdout
    return [line.split(":")[1].strip().split("@")[0] for line in out.splitlines()]


def run_mn(ns, topo_arg):
    """`mn --custom topologies/dc.py --topo TOPO_ARG --switch lxbr --controller none` in the
    namespace `ns`, typing COMMANDS at its CLI."""
    mn = shutil.which("mn")
    script = RUN_MN.format(mn=mn, no_cleanup=NO_CLEANUP)
    argv = ["ip", "netns", "exec", ns, *mn_interpreter(mn), "-c", script,
            "--custom", D.__file__, "--topo", topo_arg, "--switch", "lxbr",
            "--controller", "none"]
    try:
        return subprocess.run(argv, input=COMMANDS, capture_output=True, text=True,
                              timeout=120)
    except subprocess.TimeoutExpired as e:
        # mn is gone (killed); its host shells are not: stop the ones it printed.
        for pid in re.findall(r"pid=(\d+)", (e.stderr or b"").decode(errors="replace")):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    if b"mininet:" in f.read():
                        os.kill(int(pid), signal.SIGKILL)
            except OSError:
                pass
        raise


def test_the_topology_loads_and_leaves_nothing_behind(netns):
    r = run_mn(netns, "lispdc")
    out = r.stderr
    assert r.returncode == 0 and NO_CLEANUP not in out, out
    assert "completed in" in out, out
    # Every node, every link (by both interface names), each bridge's ports.
    nodes = re.search(r"available nodes are: \n(.*)\n", out).group(1).split()
    assert sorted(nodes) == sorted(D.DataCenterTopo().nodes())
    assert links_of(out) == expected_links()
    ports = dict(re.findall(r"\d+: (\S+?)@\S+ .* master (\S+)", out))
    assert ports == {"s1-xtr1": "s1", "s1-vm": "s1", "s1-dci": "s1",
                     "s2-xtr2": "s2", "s2-dci": "s2"}
    # Nothing left: no interface in the namespace, no host shell alive.
    assert ns_links(netns) == ["lo"]
    pids = [int(p) for p in re.findall(r"pid=(\d+)", out)]
    assert len(pids) == len(D.DataCenterTopo().hosts())
    for pid in pids:
        assert not os.path.exists(f"/proc/{pid}"), f"host shell {pid} still alive"


def test_without_delays_no_tc_is_needed(netns):
    """`--topo lispdc,delays=0`: plain links, so a kernel without netem prints no errors."""
    r = run_mn(netns, "lispdc,delays=0")
    out = r.stderr
    assert r.returncode == 0 and NO_CLEANUP not in out, out
    assert "completed in" in out and "*** Error:" not in out and "delay)" not in out, out
    assert links_of(out) == expected_links()
    assert ns_links(netns) == ["lo"]

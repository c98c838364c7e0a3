"""Warm paths (issue 12): the lab keeps the neighbour entries of its point-to-point links
valid, as routing hellos do on a real network, so that the first packet after an idle
spell (a Map-Register after a move) waits for no ARP and a move's measured convergence has
no cold address resolution in it. lab/backend.py Network.warm_neighbours."""
from tests.emulation.harness import DATA, lab_fixture

sites = lab_fixture(DATA / "two-sites.yaml", "warm")


def neighbours(run, node, dev, family="-4"):
    return run.sh(node, ["ip", family, "neigh", "show", "dev", dev]).stdout


def mac(run, node, dev):
    return run.sh(node, ["cat", f"/sys/class/net/{dev}/address"]).stdout.strip()


def test_every_point_to_point_link_has_permanent_neighbours(sites):
    for x in sites.model.links.values():
        for end in x.ends():
            peer = x.other(end)
            got = neighbours(sites, end, x.intf(end))
            want = f"{x.ip(peer)} lladdr {mac(sites, peer, x.intf(peer))} PERMANENT"
            assert want in got, (x.name, end, got)


def test_a_link_that_comes_back_is_warm_again(sites):
    link = sites.model.links["core-pxtr"]
    sites.net.set_link(link.name, False)
    assert "PERMANENT" not in neighbours(sites, "r0", link.intf("r0"))   # flushed
    sites.net.set_link(link.name, True)
    for end in link.ends():
        assert "PERMANENT" in neighbours(sites, end, link.intf(end)), end
    r = sites.sh("r0", ["ping", "-c1", "-W2", str(link.ip("pxtr"))])
    assert r.returncode == 0, r.stdout

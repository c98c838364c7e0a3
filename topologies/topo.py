"""A Mininet Topo built from a lab model (topologies/model.py): its nodes and links only.

Addresses, routes, daemons and the timeline are applied by lab/backend.py once the network
runs. Interface names come from the model: `A-B` on a routed link, `GW-lan` on a site's LAN,
`HOST-eth0` on a host, `SWITCH-NODE` on a switch port (Mininet's LinuxBridge enslaves only
interfaces named after the bridge, so a VM's switch port keeps its first switch's name when
a move re-attaches it to another bridge) and `SWITCH-dci` for the DCI.
"""
from mininet.link import TCLink
from mininet.nodelib import LinuxBridge
from mininet.topo import Topo


def _tc(delay_ms=0.0, loss_pct=0.0, rate_mbit=None):
    params = {}
    if delay_ms:
        params["delay"] = f"{delay_ms:g}ms"
    if loss_pct:
        params["loss"] = loss_pct
    if rate_mbit:
        params["bw"] = rate_mbit
    return {"cls": TCLink, **params} if params else {}


class LabTopo(Topo):
    """The nodes and links of `lab` (a model.Lab). `delays=False` builds plain links."""

    def build(self, lab=None, delays=True):
        self.lab = lab
        for name in lab.node_names():
            self.addHost(name, ip=None)
        for sw in lab.switches():
            self.addSwitch(sw, cls=LinuxBridge)
        for x in lab.links.values():
            params = _tc(x.delay_ms, x.loss_pct, x.rate_mbit) if delays else {}
            self.addLink(x.a, x.b, intfName1=x.intf(x.a), intfName2=x.intf(x.b), **params)
        for site in lab.sites.values():
            lan = site.lan_intf(lab)
            hosts = [h for h in lab.hosts.values() if h.site == site.name]
            if site.switch:
                self.addLink(site.gateway, site.switch, intfName1=lan,
                             intfName2=f"{site.switch}-{site.gateway}")
                for h in hosts:
                    self.addLink(h.name, site.switch, intfName1=h.intf(),
                                 intfName2=f"{site.switch}-{h.name}")
            elif hosts:
                self.addLink(hosts[0].name, site.gateway, intfName1=hosts[0].intf(),
                             intfName2=lan)
        if lab.dci is not None:
            s1, s2 = (lab.sites[s].switch for s in lab.dci.sites)
            params = _tc(lab.dci.delay_ms) if delays else {}
            self.addLink(s1, s2, intfName1=f"{s1}-dci", intfName2=f"{s2}-dci", **params)

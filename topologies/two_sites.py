"""Two LISP sites, a Map-Server/Map-Resolver, a proxy xTR and a non-LISP host.

    h1 --- xtr1 ---+              +--- xtr2 --- h2        (LISP sites, IPv4 + IPv6 EIDs)
                   |              |
                   +----- r0 -----+                       (IPv4 core router)
                   |              |
                  msmr           pxtr      n1             (mapping system, proxy xTR,
                                            |              a non-LISP host behind r0)
                                            r0

Everything (addresses, routes, daemon configs, capture points) comes from PLAN below; no
address is written twice. The core (r0) knows only RLOC subnets, the non-LISP network, and
a route for the EID space toward the proxy xTR (which draws traffic for LISP sites).

Use with Mininet directly:  sudo mn --custom topologies/two_sites.py --topo lisp2sites
(that only builds the links; the lab's test harness also runs `configure` and the daemons).
"""
import ipaddress
from dataclasses import dataclass, field

from mininet.topo import Topo

KEYS = {"site1": "site1-secret", "site2": "site2-secret"}


@dataclass
class Router:
    name: str
    role: str                        # "xtr", "msmr", "pxtr", "core", "host"
    core_addr: str = ""              # address/len on the link to r0 (RLOC for LISP nodes)
    lan: list = field(default_factory=list)     # LAN gateway addresses (address/len)
    eids: list = field(default_factory=list)    # EID prefixes registered (xtr)
    site: str = ""                   # Map-Server site name (xtr)
    host: str = ""                   # the host behind the LAN
    host_addrs: list = field(default_factory=list)


PLAN = {
    "xtr1": Router("xtr1", "xtr", "172.16.1.2/30", ["10.1.0.1/24", "2001:db8:1::1/64"],
                   ["10.1.0.0/24", "2001:db8:1::/64"], "site1", "h1",
                   ["10.1.0.10/24", "2001:db8:1::10/64"]),
    "xtr2": Router("xtr2", "xtr", "172.16.2.2/30", ["10.2.0.1/24", "2001:db8:2::1/64"],
                   ["10.2.0.0/24", "2001:db8:2::/64"], "site2", "h2",
                   ["10.2.0.10/24", "2001:db8:2::10/64"]),
    "msmr": Router("msmr", "msmr", "172.16.3.2/30"),
    "pxtr": Router("pxtr", "pxtr", "172.16.4.2/30"),
}
NON_LISP = {"name": "n1", "addr": "198.51.100.10/24", "gw": "198.51.100.1/24"}
EID_SPACE = ["10.0.0.0/8", "2001:db8::/32"]
INSTANCE_ID = 7


def addr(cidr):
    return str(ipaddress.ip_interface(cidr).ip)


def gateway(cidr):
    """r0's side of a /30 core link: the other usable address."""
    iface = ipaddress.ip_interface(cidr)
    return str(next(h for h in iface.network.hosts() if h != iface.ip))


class TwoSitesTopo(Topo):
    def build(self):
        self.addHost("r0", ip=None)
        for r in PLAN.values():
            self.addHost(r.name, ip=None)
            self.addLink(r.name, "r0", intfName1=f"{r.name}-core", intfName2=f"r0-{r.name}")
            if r.host:
                self.addHost(r.host, ip=None)
                self.addLink(r.host, r.name, intfName1=f"{r.host}-eth0",
                             intfName2=f"{r.name}-lan")
        self.addHost(NON_LISP["name"], ip=None)
        self.addLink(NON_LISP["name"], "r0", intfName1="n1-eth0", intfName2="r0-n1")


TOPOS = {"lisp2sites": TwoSitesTopo}

# Capture points: the interface on r0's side of every core link.
CAPTURE_POINTS = {f"core-{r}": f"r0-{r}" for r in PLAN} | {"core-n1": "r0-n1"}


def configure(net):
    """Addresses, routes and forwarding for every node of a started Mininet `net`."""
    def sh(node, *cmds):
        for c in cmds:
            out = net[node].cmd(c + " 2>&1; echo rc=$?")
            if not out.strip().endswith("rc=0"):
                raise RuntimeError(f"{node}: `{c}` failed: {out.strip()}")

    sh("r0", "sysctl -qw net.ipv4.ip_forward=1")
    for r in PLAN.values():
        sh(r.name, f"ip addr add {r.core_addr} dev {r.name}-core",
           f"ip route add default via {gateway(r.core_addr)}",
           "sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1",
           "sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0")
        iface = ipaddress.ip_interface(r.core_addr)
        sh("r0", f"ip addr add {gateway(r.core_addr)}/{iface.network.prefixlen} dev r0-{r.name}")
        for gw in r.lan:
            sh(r.name, f"ip addr add {gw} dev {r.name}-lan")
        for a, gw in zip(r.host_addrs, r.lan):
            v6 = ":" in a
            sh(r.host, f"ip {'-6 ' if v6 else ''}addr add {a} dev {r.host}-eth0"
                       + (" nodad" if v6 else ""),
               f"ip {'-6 ' if v6 else ''}route add default via {addr(gw)}")
        for gw in r.lan:
            if ":" in gw:
                sh(r.name, f"ip -6 addr change {gw} dev {r.name}-lan nodad")
    sh("n1", f"ip addr add {NON_LISP['addr']} dev n1-eth0",
       f"ip route add default via {addr(NON_LISP['gw'])}")
    sh("r0", f"ip addr add {NON_LISP['gw']} dev r0-n1")
    # The proxy ITR draws the (IPv4) EID space from the non-LISP world.
    sh("r0", f"ip route add {EID_SPACE[0]} via {addr(PLAN['pxtr'].core_addr)}")


def rloc(name):
    return addr(PLAN[name].core_addr)


def _eid_tables(prefixes, table):
    return "".join(f'[[{table}]]\nprefix = "{p}"\ninstance_id = {INSTANCE_ID}\n'
                   for p in prefixes)


def daemon_configs(workdir, sockets_dir, keys=None, register_interval=1.0):
    """Write one TOML config per LISP node into `workdir`; returns {node: path}.

    `keys` maps site name -> the secret its xTR uses (default: the right ones; a test
    gives one xTR a wrong key to see its registrations rejected)."""
    from pathlib import Path
    workdir = Path(workdir)
    keys = {**KEYS, **(keys or {})}
    msmr = rloc("msmr")
    paths = {}

    def write(name, text):
        p = workdir / f"{name}.toml"
        p.write_text(text)
        paths[name] = p

    head = ('[node]\nname = "{n}"\nrole = "{r}"\ncontrol_socket = "{s}/{n}.sock"\n'
            'event_log = "{w}/{n}.events.jsonl"\n')
    sites = ""
    for r in PLAN.values():
        if r.role != "xtr":
            continue
        sites += (f'[[site]]\nname = "{r.site}"\n[[site.key]]\nkey_id = 0\n'
                  f'secret = "{KEYS[r.site]}"\nalgorithm = "hmac-sha-256-128"\n'
                  + _eid_tables(r.eids, "site.prefix"))
        write(r.name, head.format(n=r.name, r="xtr", s=sockets_dir, w=workdir)
              + f'[[rloc]]\naddress = "{rloc(r.name)}"\n'
              + _eid_tables(r.eids, "eid_prefix")
              + f'[[map_server]]\naddress = "{msmr}"\nsecret = "{keys[r.site]}"\n'
                f'key_id = 0\nalgorithm = "hmac-sha-256-128"\n'
              + f'[[map_resolver]]\naddress = "{msmr}"\n'
              + f'[etr]\nregister_interval = {register_interval}\n'
              + f'[itr]\nmiss_policy = "drop"\npetr = "{rloc("pxtr")}"\n'
              + f'[dataplane]\nlan_interfaces = ["{r.name}-lan"]\nmtu = 1500\n')
    write("msmr", head.format(n="msmr", r="msmr", s=sockets_dir, w=workdir)
          + f"[msmr]\nregistration_timeout = {3 * register_interval}\n" + sites)
    write("pxtr", head.format(n="pxtr", r="pxtr", s=sockets_dir, w=workdir)
          + f'[[rloc]]\naddress = "{rloc("pxtr")}"\n'
          + _eid_tables(EID_SPACE[:1], "eid_space")
          + f'[[map_resolver]]\naddress = "{msmr}"\n'
          + '[dataplane]\nlan_interfaces = ["pxtr-core"]\nmtu = 1500\n')
    return paths

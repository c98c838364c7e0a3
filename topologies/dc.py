"""Two data centers, a DCI, an IPv4 core of three routers, a client site and the mapping
system: the topology of the VM-mobility demo. Everything derives from PLAN below.

                      c1 (client)                 n1 (non-LISP client)
                        |                           |
                      xtrc ---- r1 --------------- +
                               /  \\    \\
                            r2 ---- r3   msmr, pxtr (on r1)
                            |        |
                          xtr1     xtr2          (DC gateways: anycast 10.10.0.1)
                            |        |
                     s1 (DC1) ==DCI== s2 (DC2)  (access switches; the DCI stretches the
                            |                    VM segment, FHRP frames filtered)
                           vm  --(moves to s2)-->

Modes (the same move of the same VM):
  l2-extension          no LISP; the core routes the VM subnet to DC1; after the move the
                        client's traffic enters DC1 and crosses the DCI (triangular routing).
  host-route            no LISP; the core and the DC gateways run OSPF (FRR, lab/frr.py);
                        after the move DC2's gateway injects a host route for the VM (a
                        static /32 redistributed into OSPF: route health injection) and the
                        core learns it (route churn).
  lisp-extended-subnet  LISP xTRs with dynamic EIDs, DCI in place.
  lisp-across-subnet    LISP, no DCI: DC2's LAN is another subnet; the VM keeps its address
                        (xtr2 also answers as the VM's old gateway).

The VM has an IPv4 and an IPv6 address; after the move it announces both (gratuitous ARP,
unsolicited neighbour advertisement). Across subnets the advertisement alone makes DC2's
xTR register the VM's /128 (its IPv6 subnet is a dynamic-EID range there).

    sudo mn --custom topologies/dc.py --topo lispdc      (links only; lab/ configures modes)
"""
import ipaddress
from dataclasses import dataclass

from mininet.link import TCLink
from mininet.nodelib import LinuxBridge
from mininet.topo import Topo

MODES = ("l2-extension", "host-route", "lisp-extended-subnet", "lisp-across-subnet")
LISP_MODES = ("lisp-extended-subnet", "lisp-across-subnet")

INSTANCE_ID = 0
ANYCAST_GW = "10.10.0.1/24"
ANYCAST_MAC = "00:00:5e:00:01:01"
VM = {"name": "vm", "addr": "10.10.0.5/24", "gw": "10.10.0.1",
      "addr6": "2001:db8:10::5/64"}     # IPv6: the VM announces it too (neighbour adv.)
CLIENT = {"name": "c1", "addr": "10.99.0.10/24", "gw": "10.99.0.1/24", "xtr": "xtrc",
          "prefix": "10.99.0.0/24"}
NON_LISP = {"name": "n1", "addr": "198.51.100.10/24", "gw": "198.51.100.1/24"}
DC2_SUBNET_ACROSS = "10.20.0.1/24"     # DC2's own LAN subnet in lisp-across-subnet
KEY = "dc-lab-key"
DELAYS_MS = {"core": 10, "dci": 5}


@dataclass
class P2P:
    """A routed point-to-point link: a /30 between two nodes."""
    name: str            # the link's name in captures (captures/<run>/<mode>/<name>.pcap)
    a: str
    b: str
    subnet: str
    kind: str = "core"   # "core" links get the core delay

    def addr(self, node):
        hosts = list(ipaddress.ip_network(self.subnet).hosts())
        return f"{hosts[0] if node == self.a else hosts[1]}/30"

    def intf(self, node):
        return f"{node}-{self.b if node == self.a else self.a}"


# (Not named LINKS: `mn --custom` copies this file's names into its own globals, where LINKS
# is Mininet's table of link classes.)
P2P_LINKS = [
    P2P("core-r1-r2", "r1", "r2", "172.16.12.0/30"),
    P2P("core-r1-r3", "r1", "r3", "172.16.13.0/30"),
    P2P("core-r2-r3", "r2", "r3", "172.16.23.0/30"),
    P2P("dc1-uplink", "xtr1", "r2", "172.16.2.0/30"),
    P2P("dc2-uplink", "xtr2", "r3", "172.16.3.0/30"),
    P2P("client-uplink", "xtrc", "r1", "172.16.10.0/30"),
    P2P("msmr-link", "msmr", "r1", "172.16.100.0/30", "edge"),
    P2P("pxtr-link", "pxtr", "r1", "172.16.101.0/30", "edge"),
]
ROUTERS = ("r1", "r2", "r3")
# Static core routing: next hop per (router, destination router) over the triangle.
CORE_NEXT = {("r1", "r2"): "r2", ("r1", "r3"): "r3", ("r2", "r1"): "r1",
             ("r2", "r3"): "r3", ("r3", "r1"): "r1", ("r3", "r2"): "r2"}
ATTACHED = {"xtr1": "r2", "xtr2": "r3", "xtrc": "r1", "msmr": "r1", "pxtr": "r1"}

# Capture points: link name -> (node, interface). The analysis reads links.json.
CAPTURES = {link.name: (link.b, link.intf(link.b)) for link in P2P_LINKS}
CAPTURES.update({"client-access": ("xtrc", "xtrc-lan"), "dci": ("s1", "s1-dci"),
                 "dc1-access": ("xtr1", "xtr1-lan"), "dc2-access": ("xtr2", "xtr2-lan")})
ROLES = {"client-access": "client", "dci": "dci", "dc1-access": "vm-dc1",
         "dc2-access": "vm-dc2"}


def link(name):
    return next(x for x in P2P_LINKS if x.name == name)


def rloc(node):
    """The address of a node on its uplink to the core."""
    up = next(x for x in P2P_LINKS if node in (x.a, x.b) and ATTACHED.get(node) in (x.a, x.b))
    return str(ipaddress.ip_interface(up.addr(node)).ip)


def expected_path(mode, phase):
    """The links the client's packets to the VM cross (before / after the move)."""
    head = ["client-access", "client-uplink"]
    to_dc1 = head + ["core-r1-r2", "dc1-uplink", "dc1-access"]
    to_dc2 = head + ["core-r1-r3", "dc2-uplink", "dc2-access"]
    if phase == "before":
        return to_dc1
    if mode == "l2-extension":
        return to_dc1 + ["dci"]
    return to_dc2


class DataCenterTopo(Topo):
    """The links of every mode (the DCI is there; lisp-across-subnet takes it down)."""

    def build(self, delays=True):
        """`delays`: the link delays of DELAYS_MS (netem, or a userspace relay without it)."""
        for name in ROUTERS + ("xtr1", "xtr2", "xtrc", "msmr", "pxtr", "c1", "n1", "vm"):
            self.addHost(name, ip=None)
        self.addSwitch("s1", cls=LinuxBridge)
        self.addSwitch("s2", cls=LinuxBridge)
        for x in P2P_LINKS:
            params = {}
            if x.kind == "core" and delays:
                params = {"cls": TCLink, "delay": f"{DELAYS_MS['core']}ms"}
            self.addLink(x.a, x.b, intfName1=x.intf(x.a), intfName2=x.intf(x.b), **params)
        self.addLink("c1", "xtrc", intfName1="c1-eth0", intfName2="xtrc-lan")
        self.addLink("n1", "r1", intfName1="n1-eth0", intfName2="r1-n1")
        self.addLink("xtr1", "s1", intfName1="xtr1-lan", intfName2="s1-xtr1")
        self.addLink("xtr2", "s2", intfName1="xtr2-lan", intfName2="s2-xtr2")
        # The switch-side name must contain "s1": Mininet's LinuxBridge only enslaves
        # interfaces named after it. It keeps the name when the move re-attaches it to s2.
        self.addLink("vm", "s1", intfName1="vm-eth0", intfName2="s1-vm")
        dci = {"cls": TCLink, "delay": f"{DELAYS_MS['dci']}ms"} if delays else {}
        self.addLink("s1", "s2", intfName1="s1-dci", intfName2="s2-dci", **dci)


TOPOS = {"lispdc": DataCenterTopo}


def _sh(net, node, *cmds):
    for c in cmds:
        out = net[node].cmd(c + " 2>&1; echo rc=$?")
        if not out.strip().endswith("rc=0"):
            raise RuntimeError(f"{node}: `{c}` failed: {out.strip()}")


def configure(net, mode):
    """Addresses, core routing, gateways and the DCI for `mode` on a started network.

    In host-route mode the routing of the core and of the sites' gateways is left to OSPF
    (FRR): after this, start it with `lab.frr.start_core_ospf(lab)`. The other modes route
    with static routes set here."""
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r} (one of {', '.join(MODES)})")
    for node in ROUTERS + ("xtr1", "xtr2", "xtrc", "msmr", "pxtr"):
        _sh(net, node, "sysctl -qw net.ipv4.ip_forward=1 net.ipv4.conf.all.rp_filter=0 "
                       "net.ipv4.conf.default.rp_filter=0")
    for x in P2P_LINKS:
        for node in (x.a, x.b):
            _sh(net, node, f"ip addr add {x.addr(node)} dev {x.intf(node)}")
    ospf = mode == "host-route"
    # Edge nodes: default route to their core router (OSPF nodes learn their routes).
    for node, router in ATTACHED.items():
        if ospf and node in OSPF_NODES:
            continue
        up = next(x for x in P2P_LINKS if node in (x.a, x.b) and router in (x.a, x.b))
        _sh(net, node, f"ip route add default via {ipaddress.ip_interface(up.addr(router)).ip}")
    # Core: every /30 of the lab is reachable over the triangle.
    for r in ROUTERS if not ospf else ():
        for x in P2P_LINKS:
            if r in (x.a, x.b):
                continue
            owner = x.b                 # every link's b end is a core router
            if owner == r:
                continue
            nh_router = CORE_NEXT[(r, owner)]
            nh = ipaddress.ip_interface(link(_core_link(r, nh_router)).addr(nh_router)).ip
            _sh(net, r, f"ip route replace {x.subnet} via {nh}")
    # Sites.
    _sh(net, "c1", f"ip addr add {CLIENT['addr']} dev c1-eth0",
        f"ip route add default via {ipaddress.ip_interface(CLIENT['gw']).ip}")
    _sh(net, "xtrc", f"ip addr add {CLIENT['gw']} dev xtrc-lan")
    _sh(net, "n1", f"ip addr add {NON_LISP['addr']} dev n1-eth0",
        f"ip route add default via {ipaddress.ip_interface(NON_LISP['gw']).ip}")
    _sh(net, "r1", f"ip addr add {NON_LISP['gw']} dev r1-n1")
    for r in ("r2", "r3") if not ospf else ():
        _sh(net, r, f"ip route add 198.51.100.0/24 via "
                    f"{ipaddress.ip_interface(link(_core_link(r, 'r1')).addr('r1')).ip}")
    _sh(net, "vm", f"ip addr add {VM['addr']} dev vm-eth0",
        f"ip -6 addr add {VM['addr6']} dev vm-eth0 nodad",
        f"ip route add default via {VM['gw']}")
    # DC gateways: the same IP and MAC in both DCs (anycast gateway).
    for x in ("xtr1", "xtr2"):
        across = mode == "lisp-across-subnet" and x == "xtr2"
        add_anycast_gateway(net, x, own=DC2_SUBNET_ACROSS if across else GATEWAY_OWN[x])
    # The DCI: FHRP isolation (the anycast gateway's frames stay in their DC), or no DCI.
    if mode == "lisp-across-subnet":
        _sh(net, "s1", "ip link set dev s1-dci down")
    else:
        for table, rule in fhrp_isolation_rules():
            _sh(net, "s1", f"ebtables -t {table} -A {rule}")
    # Without LISP the core routes the VM subnet (and the client subnet) natively: static
    # routes in l2-extension; in host-route OSPF announces them (see ospf_interfaces).
    if mode == "l2-extension":
        _native_prefix(net, "10.10.0.0/24", "xtr1")
        _native_prefix(net, CLIENT["prefix"], "xtrc")
    elif mode in LISP_MODES:
        # With LISP the core knows no EID; the proxy xTR draws the EID space for n1.
        _sh(net, "r1", f"ip route add 10.0.0.0/8 via {rloc('pxtr')}")


GATEWAY_OWN = {"xtr1": "10.10.0.2/24", "xtr2": "10.10.0.3/24"}


def add_anycast_gateway(net, xtr, own):
    """The anycast gateway on a DC xTR, as first-hop redundancy protocols do it: the xTR
    keeps its own MAC and address on the LAN (routed frames carry its own MAC, so they may
    cross the DCI without making the bridges see the gateway MAC in two places), and a
    macvlan sub-interface with the shared MAC holds the shared gateway address as a /32.
    ARP for the gateway is answered by the macvlan only (arp_ignore=1 on the LAN). Across
    subnets, `own` is DC2's own subnet and the /32 still answers for the VM's old gateway."""
    lan, gw = f"{xtr}-lan", f"{xtr}-gw"
    _sh(net, xtr, f"ip addr add {own} dev {lan}",
        f"ip link add link {lan} name {gw} address {ANYCAST_MAC} type macvlan mode bridge",
        f"ip addr add {VM['gw']}/32 dev {gw}",
        f"sysctl -qw net.ipv6.conf.{gw}.disable_ipv6=1",   # no stray frames from it
        f"ip link set dev {gw} up",
        # arp_announce=2: our own ARP requests on the LAN come from the LAN's own address;
        # from the gateway address they would teach hosts the LAN's MAC for their gateway.
        f"sysctl -qw net.ipv4.conf.{lan}.arp_ignore=1 net.ipv4.conf.{lan}.arp_accept=1 "
        f"net.ipv4.conf.{lan}.arp_announce=2 "
        f"net.ipv4.conf.{gw}.rp_filter=0 net.ipv4.conf.{lan}.rp_filter=0")


def fhrp_isolation_rules():
    """ebtables rules (table, rule) that keep each DC's anycast gateway to itself: frames
    from the gateway MAC are dropped as they come in from the DCI, in nat PREROUTING, so
    neither bridge ever learns the gateway MAC on its DCI port (learning happens before
    the filter table's FORWARD chain), and frames to it or ARP for the gateway address
    never cross the DCI."""
    rules = [("nat", f"PREROUTING -i {port} -s {ANYCAST_MAC} -j DROP")
             for port in ("s1-dci", "s2-dci")]
    for io in ("-o", "-i"):
        rules.append(("filter", f"FORWARD {io} s1-dci -d {ANYCAST_MAC} -j DROP"))
        for field in ("--arp-ip-dst", "--arp-ip-src"):
            rules.append(("filter", f"FORWARD {io} s1-dci -p ARP {field} {VM['gw']} -j DROP"))
    return rules


def unconfigure(net, mode):
    """Undo what `configure` did outside the hosts' namespaces (the bridges live in the
    root namespace): the DCI's ebtables rules. Safe to call more than once."""
    if mode == "lisp-across-subnet":
        return
    for table, rule in fhrp_isolation_rules():
        net["s1"].cmd(f"ebtables -t {table} -D {rule} 2>/dev/null")


def _core_link(r, other):
    return next(x.name for x in P2P_LINKS if {x.a, x.b} == {r, other})


def _native_prefix(net, prefix, site_router):
    """Route `prefix` through the core toward `site_router` (no LISP)."""
    edge = ATTACHED[site_router]
    up = next(x for x in P2P_LINKS if {x.a, x.b} == {site_router, edge})
    _sh(net, edge, f"ip route replace {prefix} via "
                   f"{ipaddress.ip_interface(up.addr(site_router)).ip}")
    for r in ROUTERS:
        if r == edge:
            continue
        nh = ipaddress.ip_interface(link(_core_link(r, CORE_NEXT[(r, edge)])).addr(
            CORE_NEXT[(r, edge)])).ip
        _sh(net, r, f"ip route replace {prefix} via {nh}")


# --- host-route mode: OSPF in the core (FRR), from the same plan ----------------------------

OSPF_NODES = ROUTERS + ("xtr1", "xtr2", "xtrc")
OSPF_HELLO_S, OSPF_DEAD_S = 1, 3          # adjacencies up in a few seconds
SPF_THROTTLE_MS = (0, 50, 500)            # SPF delay, initial hold, maximum hold
# Site networks each node announces (passive interfaces: no OSPF packet goes there). DC2's
# LAN is not announced: before the move the core routes the VM subnet to DC1 only.
OSPF_SITE_LANS = {"xtr1": [("xtr1-lan", GATEWAY_OWN["xtr1"])],
                  "xtrc": [("xtrc-lan", CLIENT["gw"])],
                  "r1": [("r1-n1", NON_LISP["gw"])]}
RHI_NODE = "xtr2"                          # DC2's gateway injects the moved VM's host route
HOST_ROUTE = f"{ipaddress.ip_interface(VM['addr']).ip}/32"


def ospf_interfaces(node):
    """host-route mode: [(interface, address, passive)] of `node` in OSPF area 0. Core links
    and DC uplinks run OSPF (point to point); the edge links of the core routers (Map-Server,
    proxy xTR) and the site LANs of OSPF_SITE_LANS are announced as passive interfaces."""
    out = []
    for x in P2P_LINKS:
        if node in (x.a, x.b) and (x.kind == "core" or node in ROUTERS):
            out.append((x.intf(node), x.addr(node), x.kind != "core"))
    out += [(intf, addr, True) for intf, addr in OSPF_SITE_LANS.get(node, [])]
    return out


def ospf_prefixes():
    """Every prefix OSPF announces before the move (each node must have a route to all)."""
    return sorted({str(ipaddress.ip_interface(addr).network)
                   for node in OSPF_NODES for _, addr, _ in ospf_interfaces(node)})


def frr_configs():
    """host-route mode: {node: {daemon: config text}} for zebra, staticd and ospfd on every
    OSPF node. Short hello/dead timers and a fast SPF and LSA throttle keep the start-up and
    the convergence short; DC2's gateway redistributes its static routes (the host route
    it injects after the move, see host_route_injection)."""
    configs = {}
    for node in OSPF_NODES:
        head = f"hostname {node}\n!\n"
        ospf = head
        for intf, _, passive in ospf_interfaces(node):
            ospf += f"interface {intf}\n ip ospf area 0\n"
            if passive:
                ospf += " ip ospf passive\n"
            else:
                ospf += (f" ip ospf network point-to-point\n"
                         f" ip ospf hello-interval {OSPF_HELLO_S}\n"
                         f" ip ospf dead-interval {OSPF_DEAD_S}\n")
            ospf += "!\n"
        router_id = ipaddress.ip_interface(ospf_interfaces(node)[0][1]).ip
        ospf += (f"router ospf\n ospf router-id {router_id}\n"
                 f" timers throttle spf {' '.join(map(str, SPF_THROTTLE_MS))}\n"
                 " timers throttle lsa all 0\n timers lsa min-arrival 0\n")
        if node == RHI_NODE:
            ospf += " redistribute static\n"
        configs[node] = {"zebra": head, "staticd": head, "ospfd": ospf + "!\n"}
    return configs


def host_route_injection():
    """Route health injection after the move: (node, vtysh commands). DC2's gateway adds a
    static route for the VM toward its LAN; ospfd redistributes it into OSPF."""
    return RHI_NODE, ["configure terminal", f"ip route {HOST_ROUTE} {RHI_NODE}-lan"]


def move_vm(net, to="s2"):
    """Re-attach the VM's switch-side interface to the other access switch (a live move:
    namespace, addresses and TCP state stay)."""
    _sh(net, "s1", f"ip link set dev s1-vm master {to}")


def daemon_configs(mode, workdir, sockets_dir, register_interval=1.0):
    """One TOML config per LISP node for a LISP mode; returns {node: path}.

    DC xTRs register no static prefix: the VM subnet is a dynamic-EID range on their LAN,
    so each registers the hosts it detects (a /32 per VM; across subnets the VM's IPv6
    subnet is a range too: a /128 per VM). The client's xTR registers the client site. The
    proxy xTR draws the EID space for the non-LISP client."""
    from pathlib import Path
    if mode not in LISP_MODES:
        raise ValueError(f"{mode} runs no LISP daemons")
    workdir = Path(workdir)
    msmr = rloc("msmr")
    head = ('[node]\nname = "{n}"\nrole = "{r}"\ncontrol_socket = "{s}/{n}.sock"\n'
            'event_log = "{w}/{n}.events.jsonl"\n')
    common = (f'[[map_server]]\naddress = "{msmr}"\nsecret = "{KEY}"\nkey_id = 0\n'
              f'algorithm = "hmac-sha-256-128"\n[[map_resolver]]\naddress = "{msmr}"\n'
              f'[etr]\nregister_interval = {register_interval}\n'
              f'[itr]\nmiss_policy = "drop"\npetr = "{rloc("pxtr")}"\n')
    vm_ranges = [str(ipaddress.ip_interface(VM[a]).network) for a in ("addr", "addr6")]
    detect = (f'detect = "gateway"\ndetect_mac = "{ANYCAST_MAC}"\n'
              if mode == "lisp-extended-subnet" else "")
    # The IPv6 range only where neighbour discovery counts (detect "any"). On an extended
    # subnet (detect "gateway") the daemon ignores ND, which crosses the DCI and would make
    # both DCs claim the VM, so an IPv6 range there would never detect anything.
    dynamic = vm_ranges if mode == "lisp-across-subnet" else vm_ranges[:1]
    texts = {}
    for x in ("xtr1", "xtr2"):
        texts[x] = (head + f'[[rloc]]\naddress = "{rloc(x)}"\n'
                    + "".join(f'[[dynamic_eid]]\nprefix = "{p}"\ninstance_id = {INSTANCE_ID}\n'
                              f'interface = "{x}-lan"\n' + detect for p in dynamic)
                    + common
                    + f'[dataplane]\nlan_interfaces = ["{x}-lan", "{x}-gw"]\nmtu = 1500\n')
    texts["xtrc"] = (head + f'[[rloc]]\naddress = "{rloc("xtrc")}"\n'
                     f'[[eid_prefix]]\nprefix = "{CLIENT["prefix"]}"\n'
                     f'instance_id = {INSTANCE_ID}\n' + common
                     + '[dataplane]\nlan_interfaces = ["xtrc-lan"]\nmtu = 1500\n')
    texts["msmr"] = (head + f"[msmr]\nregistration_timeout = {3 * register_interval}\n"
                     '[[site]]\nname = "datacenters"\naccept_more_specifics = true\n'
                     f'[[site.key]]\nkey_id = 0\nsecret = "{KEY}"\n'
                     'algorithm = "hmac-sha-256-128"\n'
                     + "".join(f'[[site.prefix]]\nprefix = "{p}"\ninstance_id = {INSTANCE_ID}\n'
                               for p in vm_ranges)
                     + '[[site]]\nname = "client"\n'
                     f'[[site.key]]\nkey_id = 0\nsecret = "{KEY}"\n'
                     'algorithm = "hmac-sha-256-128"\n'
                     f'[[site.prefix]]\nprefix = "{CLIENT["prefix"]}"\n'
                     f'instance_id = {INSTANCE_ID}\n')
    texts["pxtr"] = (head + f'[[rloc]]\naddress = "{rloc("pxtr")}"\n'
                     f'[[eid_space]]\nprefix = "10.0.0.0/8"\ninstance_id = {INSTANCE_ID}\n'
                     f'[[map_resolver]]\naddress = "{msmr}"\n'
                     '[dataplane]\nlan_interfaces = ["pxtr-r1"]\nmtu = 1500\n')
    paths = {}
    for node, text in texts.items():
        role = {"msmr": "msmr", "pxtr": "pxtr"}.get(node, "xtr")
        p = workdir / f"{node}.toml"
        p.write_text(text.format(n=node, r=role, s=sockets_dir, w=workdir))
        paths[node] = p
    return paths

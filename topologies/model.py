"""The lab model: a lab as pure data (topologies/reader.py makes one from a checked lab file),
and everything derived from it: interface names, addresses, routes, daemon and FRR configs,
capture points, expected paths. No I/O here; lab/backend.py applies a Lab to Mininet and
lab/scenario.py plays its timeline. docs/labs.md describes the format.

    lab = load("topologies/labs/demo-lisp-extended-subnet.yaml")
    lab.node_commands()["xtr1"]          # the shell commands that configure xtr1
    lab.daemon_configs(...)              # {node: (role, config dict)} for the LISP daemons
    lab.expected_path("c1", "vm", "dc2") # the links a probe from c1 to vm crosses
"""
import ipaddress
from dataclasses import dataclass, field
from pathlib import Path

from .labfile import LabFileError

__all__ = ["Lab", "Site", "Host", "P2PLink", "Dci", "Step", "LabFileError", "load",
           "STEP_KINDS", "CHECK_KINDS"]



# --- the model's data --------------------------------------------------------------------

@dataclass
class P2PLink:
    """A routed point-to-point link between two nodes: the first two addresses of `subnet`."""
    name: str
    a: str
    b: str
    subnet: ipaddress.IPv4Network
    delay_ms: float = 0.0
    loss_pct: float = 0.0
    rate_mbit: float | None = None
    subnet6: ipaddress.IPv6Network | None = None   # optional: ::1 and ::2 of it, a then b

    def ends(self):
        return (self.a, self.b)

    def ip6(self, node):
        return self.subnet6[1 if node == self.a else 2] if self.subnet6 else None

    def other(self, node):
        return self.b if node == self.a else self.a

    def ip(self, node):
        hosts = list(self.subnet.hosts()) if self.subnet.prefixlen < 31 else list(self.subnet)
        return hosts[0] if node == self.a else hosts[1]

    def addr(self, node):
        return f"{self.ip(node)}/{self.subnet.prefixlen}"

    def intf(self, node):
        return f"{node}-{self.other(node)}"


@dataclass
class Site:
    name: str
    kind: str                      # datacenter, client, non-lisp
    gateway: str                   # the node that is the site's first hop (xTR or router)
    lan: list                      # the gateway's own addresses (ip_interface), v4 and/or v6
    switch: str | None = None
    anycast: tuple | None = None   # (address, mac): the anycast gateway of data centers
    announce: bool = True          # without LISP, the core routes the LAN to this site
    dynamic_eids: list = field(default_factory=list)   # [(network, detect)]
    eid_prefixes: list = field(default_factory=list)   # [network]
    instance_id: int = 0
    key: str = ""
    ms_site: str = ""              # the registration site at the Map-Server
    rloc_te: dict = field(default_factory=dict)        # uplink name -> (priority, weight)
    # Gateways the xTR itself holds on its LAN (the daemon adds and removes them), instead
    # of the anycast gateway's macvlan: range network -> ip_interface, all with gateway_mac
    dynamic_gateways: dict = field(default_factory=dict)
    gateway_mac: str | None = None
    proxy_arp: bool = False        # the xTR answers ARP on its LAN for addresses it routes

    @property
    def lisp(self):
        return self.kind != "non-lisp"

    def lan_intf(self, lab):
        """The gateway's interface on the site's LAN."""
        lans = [s for s in lab.sites.values() if s.gateway == self.gateway]
        return f"{self.gateway}-lan" if len(lans) == 1 else f"{self.gateway}-{self.name}"

    def access_link(self):
        return f"{self.name}-access"


@dataclass
class Host:
    name: str
    site: str
    addresses: list                # ip_interface
    vm: bool = False
    foreign: bool = False          # its address is outside the site's subnets on purpose

    def ip(self, version=4):
        return next((str(a.ip) for a in self.addresses if a.version == version), None)

    def family(self, family=None):
        """The address family traffic to this host uses: `family` (4 or 6) if given, else
        IPv4 if the host has an IPv4 address, else IPv6."""
        return int(family) if family else (4 if self.ip(4) else 6)

    def addr(self, family=None):
        return self.ip(self.family(family))

    def intf(self):
        return f"{self.name}-eth0"


@dataclass
class Dci:
    sites: tuple                   # the two data centers whose LANs it joins
    delay_ms: float = 0.0
    fhrp_isolation: bool = True
    site_notify: bool = True       # the xTRs tell each other of a host over it (multicast)


@dataclass
class Step:
    """One step of a scenario's timeline: at `at` seconds, do `kind` with `args`."""
    at: float
    kind: str
    args: dict
    where: tuple = ("?", 0)        # (file, line), for errors at run time

    def flow_name(self):
        """A traffic step's flow: its `name`, or KIND-FROM-TO."""
        a = self.args
        return a.get("name") or f"{a['traffic']}-{a['from']}-{a['to']}"

    def describe(self):
        rest = " ".join(f"{k}={v}" for k, v in self.args.items() if k != self.kind)
        return f"t={self.at:g}s {self.kind} {self.args.get(self.kind, '')} {rest}".rstrip()


# The site-local Map-Notify's group on an extended LAN (administratively scoped, RFC 2365).
SITE_NOTIFY_GROUP = "239.255.43.42"

STEP_KINDS = {
    # kind: (required keys, optional keys)
    "traffic": (("traffic", "from", "to"), ("rate", "duration", "name", "bandwidth",
                                            "family", "flows", "packets", "first_sport")),
    "move": (("move", "to"), ("cold",)),
    "host_route": (("host_route",), ()),
    "link": (("link", "state"), ()),
    "daemon": (("daemon", "action"), ()),
    "capture": (("capture",), ()),
    "stop": (("stop",), ()),
    "wait": (("wait",), ()),
    "check": (("check",), ("from", "to", "node", "eid", "rloc", "name", "min", "max",
                           "path", "below_ms", "by", "window", "expect", "rlocs",
                           "family", "only", "links", "weights", "tolerance",
                           "primary", "backup", "within")),
}
TRAFFIC_KINDS = ("probes", "tcp", "iperf3", "flows")
CHECK_KINDS = ("reachable", "unreachable", "map_cache", "registered", "counter", "path",
               "convergence", "split", "failover", "converged")


@dataclass
class Lab:
    name: str
    description: str
    file: str
    lisp: bool
    routers: list
    routing: str                   # static or ospf
    links: dict                    # name -> P2PLink
    sites: dict                    # name -> Site
    hosts: dict                    # name -> Host
    dci: Dci | None
    map_servers: list              # node names
    proxies: dict                  # node name -> [(iid, network)]
    timeline: list                 # [Step]
    register_interval: float = 1.0
    pubsub: bool = False           # the xTRs subscribe to what they ask about (RFC 9437)
    rloc_probing: float | None = None  # the xTRs' RLOC-probe interval in seconds (None: off)
    rloc_probe_options: dict = field(default_factory=dict)  # [itr] rloc_probe_timeout, _retries
    dataplane: str | None = None   # the xTRs' [dataplane] path: "python", "kernel", or theirs
    core_delay_ms: float = 0.0
    extends: str | None = None
    groups: dict = field(default_factory=dict)   # a host group (count: N) -> member names
    core_family: int = 4           # 6: the core routes IPv6 only; RLOCs are IPv6 addresses

    # --- nodes and links ----------------------------------------------------------------

    def gateways(self):
        return list(dict.fromkeys(s.gateway for s in self.sites.values()
                                  if s.gateway not in self.routers))

    def switches(self):
        return [s.switch for s in self.sites.values() if s.switch]

    def node_names(self):
        """Every namespace node: routers, site gateways, mapping system, proxies, hosts."""
        return list(dict.fromkeys(self.routers + self.gateways() + self.map_servers
                                  + list(self.proxies) + list(self.hosts)))

    def edge_nodes(self):
        """Nodes that reach the core through uplinks to routers."""
        return [n for n in self.gateways() + self.map_servers + list(self.proxies)]

    def uplinks(self, node):
        """The links from an edge node to core routers, in file order."""
        return [x for x in self.links.values() if node in x.ends()
                and x.other(node) in self.routers]

    def uplink_site(self, link):
        """The site whose gateway (an xTR) has the link named `link` as an uplink, or None."""
        return next((s for s in self.sites.values() if s.lisp and any(
            x.name == link for x in self.uplinks(s.gateway))), None)

    def core_links(self):
        return [x for x in self.links.values() if x.a in self.routers and x.b in self.routers]

    def rloc(self, node, uplink=None):
        """The node's address on its (first, or named) uplink."""
        ups = self.uplinks(node)
        up = next(x for x in ups if x.name == uplink) if uplink else ups[0]
        return str(self._core_ip(up, node))

    def _core_ip(self, link, node):
        """`node`'s address on `link` in the core's family (its RLOC on an uplink)."""
        return link.ip6(node) if self.core_family == 6 else link.ip(node)

    def rlocs(self, node):
        """[(uplink, address, priority, weight)] of an xTR, its preferred first."""
        site = self.site_of_gateway(node)
        out = []
        for up in self.uplinks(node):
            prio, weight = site.rloc_te.get(up.name, (1, 100)) if site else (1, 100)
            out.append((up, str(self._core_ip(up, node)), prio, weight))
        return sorted(out, key=lambda r: (r[2], -r[3]))

    def site_of_gateway(self, node):
        return next((s for s in self.sites.values() if s.gateway == node), None)

    def lisp_sites(self):
        return [s for s in self.sites.values() if s.lisp] if self.lisp else []

    def vms(self):
        return [h for h in self.hosts.values() if h.vm]

    # --- shortest paths in the core ------------------------------------------------------

    def _router_graph(self, down=()):
        graph = {r: [] for r in self.routers}
        for x in self.core_links():
            if x.name in down:
                continue
            graph[x.a].append(x.b)
            graph[x.b].append(x.a)
        return {r: sorted(n) for r, n in graph.items()}

    def router_path(self, src, dst, down=()):
        """The routers from `src` to `dst` (both included): fewest hops, ties broken by
        name, the same paths the static routes follow; `down`: links to leave out."""
        graph = self._router_graph(down)
        prev, frontier, seen = {}, [src], {src}
        while frontier and dst not in seen:
            nxt = []
            for r in frontier:
                for n in graph[r]:
                    if n not in seen:
                        seen.add(n)
                        prev[n] = r
                        nxt.append(n)
            frontier = sorted(nxt)
        if dst not in seen:
            return None
        path = [dst]
        while path[-1] != src:
            path.append(prev[path[-1]])
        return path[::-1]

    def one_way_ms(self, a, b):
        """The configured propagation delay from edge node `a` to edge node `b` (xTRs,
        Map-Servers, proxies) over the core: a's first uplink, the routers' shortest path
        and b's first uplink, as the static routes go. None where there is no path."""
        if a == b:
            return 0.0
        up_a, up_b = self.uplinks(a), self.uplinks(b)
        if not up_a or not up_b:
            return None
        routers = self.router_path(up_a[0].other(a), up_b[0].other(b))
        if routers is None:
            return None
        hops = [self.link_between(x, y) for x, y in zip(routers, routers[1:])]
        return up_a[0].delay_ms + sum(x.delay_ms for x in hops) + up_b[0].delay_ms

    def convergence_floor(self, new_xtr, old_xtr, itr, map_server):
        """The propagation floors of a move (RFC 9301 / RFC 9437 message paths, no
        processing time), in ms: `notify` is the register-then-notify path (the new xTR's
        Map-Register to the Map-Server, its Map-Notify to the ITR, as PubSub does, then the
        ITR's first packet to the new xTR); `smr` the path through the old xTR (Map-Register,
        Map-Notify to the old xTR, its SMR to the ITR, the ITR's Map-Request through the
        Map-Resolver to the new xTR, its Map-Reply, the first packet); `smr_round` that SMR
        round alone. In an extended subnet with the site-local Map-Notify the old xTR
        hears of the host over the DCI (`site_notify` leg), when that is sooner than the
        Map-Server's notification."""
        d = self.one_way_ms
        legs = {"register": d(new_xtr, map_server), "notify_old": d(map_server, old_xtr),
                "smr": d(old_xtr, itr), "request": d(itr, map_server),
                "forward": d(map_server, new_xtr), "reply": d(new_xtr, itr),
                "publish": d(map_server, itr), "first_packet": d(itr, new_xtr)}
        if any(v is None for v in legs.values()):
            return None
        smr_round = legs["smr"] + legs["request"] + legs["forward"] + legs["reply"]
        old_hears = legs["register"] + legs["notify_old"]
        dci = self.dci
        if dci is not None and dci.site_notify and {self.sites[s].gateway for s in dci.sites} \
                >= {new_xtr, old_xtr}:
            legs["site_notify"] = dci.delay_ms
            old_hears = min(old_hears, dci.delay_ms)
        return {"notify": legs["register"] + legs["publish"] + legs["first_packet"],
                "smr": old_hears + smr_round + legs["first_packet"],
                "smr_round": smr_round, "legs": legs}

    def link_between(self, a, b):
        return next((x for x in self.links.values() if set(x.ends()) == {a, b}), None)

    def next_hop(self, router, dst_router, version=4):
        """The address (of IP `version`) `router` sends to, toward `dst_router`."""
        path = self.router_path(router, dst_router)
        nh = path[1]
        link = self.link_between(router, nh)
        return str(link.ip6(nh) if version == 6 else link.ip(nh))

    def _link_routes(self, version=4):
        """{router: [(link subnet, via)]}: every link subnet (subnet6 with `version` 6)
        that a router is not on, through its next router toward one that is."""
        routes = {r: [] for r in self.routers}
        owner = {}
        for x in self.links.values():
            for end in x.ends():
                if end in self.routers:
                    owner.setdefault(x.subnet6 if version == 6 else x.subnet, set()).add(end)
        for r in self.routers:
            for subnet, routers in owner.items():
                if r not in routers:
                    routes[r].append((subnet, self.next_hop(r, min(routers), version)))
        return routes

    # --- addresses and routes ------------------------------------------------------------

    def routed_prefixes(self):
        """[(prefix, router, via)]: what the core routes, at the router where it enters:
        `via` is the edge node's address there, or None where the router owns it (a
        connected LAN). Every link subnet is connected somewhere and needs no entry."""
        out = []
        for site in self.sites.values():
            native = not site.lisp or not self.lisp
            if not (native and site.announce):
                continue
            for lan in site.lan:
                if lan.version != 4:
                    continue
                if site.gateway in self.routers:
                    out.append((lan.network, site.gateway, None))
                else:
                    up = self.uplinks(site.gateway)[0]
                    out.append((lan.network, up.other(site.gateway), str(up.ip(site.gateway))))
        if self.lisp:
            for pxtr, spaces in self.proxies.items():
                up = self.uplinks(pxtr)[0]
                for _iid, net in spaces:
                    if net.version == 4:
                        out.append((net, up.other(pxtr), str(up.ip(pxtr))))
        return out

    def static_routes(self):
        """{router: [(prefix, via)]} for static core routing."""
        routes = self._link_routes()
        for r in self.routers:
            for prefix, at, via in self.routed_prefixes():
                if at == r:
                    if via is not None:
                        routes[r].append((prefix, via))
                else:
                    routes[r].append((prefix, self.next_hop(r, at)))
        return routes

    def node_commands(self):
        """{node: [shell command]} that configure the started network (addresses, forwarding,
        routes, anycast gateways); run in order, in each node's namespace."""
        cmds = {n: [] for n in self.node_names()}
        forwarding = ("sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1 "
                      "net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0")
        for n in self.routers + self.edge_nodes():
            cmds[n].append(forwarding)
        for x in self.links.values():
            for end in x.ends():
                cmds[end].append(f"ip addr add {x.addr(end)} dev {x.intf(end)}")
                if x.subnet6:
                    cmds[end].append(f"ip -6 addr add {x.ip6(end)}/{x.subnet6.prefixlen} "
                                     f"dev {x.intf(end)} nodad")
        for node, more in self._ipv6_routes().items():
            cmds[node] += more
        ospf = self.ospf_nodes()
        for node in self.edge_nodes():
            ups = self.uplinks(node)
            if node in ospf or not ups:
                continue
            first = ups[0]
            cmds[node].append(f"ip route add default via {first.ip(first.other(node))}")
            # Several providers: what leaves from one RLOC goes out through its own link
            # (source routing), so each RLOC is reachable and used as it is registered.
            for i, up in enumerate(ups[1:], start=1):
                table = 100 + 10 * i
                cmds[node] += [f"ip rule add from {up.ip(node)} lookup {table}",
                               f"ip route add default via {up.ip(up.other(node))} "
                               f"table {table}",
                               # the way out when the first provider's link is down
                               f"ip route add default via {up.ip(up.other(node))} "
                               f"metric {table}"]
        if self.core_family == 6:
            for r, routes in self.static_routes6().items():
                cmds[r] += [f"ip -6 route replace {p} via {via}" for p, via in routes]
        elif self.routing == "static":
            for r, routes in self.static_routes().items():
                cmds[r] += [f"ip route replace {p} via {via}" for p, via in routes]
        else:
            # OSPF carries the links and LANs; what sits behind a node outside OSPF (the
            # EID space behind a proxy xTR) is a static route on its router only.
            for prefix, r, via in self.routed_prefixes():
                if via is not None and r in self.routers and \
                        not any(via == str(x.ip(n)) for n in ospf for x in self.uplinks(n)):
                    cmds[r].append(f"ip route replace {prefix} via {via}")
        for site in self.sites.values():
            lan = site.lan_intf(self)
            own = site.lan
            for a in own:
                cmds[site.gateway].append(f"ip {'-6 ' if a.version == 6 else ''}addr add "
                                          f"{a} dev {lan}" + (" nodad" if a.version == 6 else ""))
            if site.anycast:
                cmds[site.gateway] += self._anycast_commands(site, lan)
        for host in self.hosts.values():
            site = self.sites[host.site]
            for a in host.addresses:
                cmds[host.name].append(f"ip {'-6 ' if a.version == 6 else ''}addr add {a} "
                                       f"dev {host.intf()}" + (" nodad" if a.version == 6
                                                                else ""))
            gw4, gw6 = (self.host_gateway(host.name, v) for v in (4, 6))
            if gw4 and host.ip(4):
                cmds[host.name].append(f"ip route add default via {gw4}")
            if gw6 and host.ip(6):
                cmds[host.name].append(f"ip -6 route add default via {gw6}")
        return cmds

    def static_routes6(self):
        """{router: [(subnet6, via)]} of an IPv6 core (core family 6): every link's subnet6
        that a router is not on, through its next router; no IPv4 route crosses it."""
        return self._link_routes(6)

    def _ipv6_routes(self):
        """IPv6 routing where links have a subnet6 (the core routes IPv4 only): an edge node
        with an IPv6 uplink routes IPv6 by default through it, and the router at the other
        end routes a proxy xTR's IPv6 EID space to it. So a non-LISP site's IPv6 LAN on
        the proxy's router reaches the IPv6 EIDs through the proxy."""
        out = {}
        for node in self.edge_nodes():
            up = next((x for x in self.uplinks(node) if x.subnet6), None)
            if up is None:
                continue
            r = up.other(node)
            out.setdefault(node, []).append(f"ip -6 route add default via {up.ip6(r)}")
            for _iid, net in self.proxies.get(node, []):
                if net.version == 6:
                    out.setdefault(r, []).append(f"ip -6 route replace {net} via "
                                                 f"{up.ip6(node)}")
        return out

    def host_gateway(self, host, version=4, site=None):
        """The address host `host` (at `site`, default its own) sends off-link traffic of
        `version` to: the xTR-held gateway of a dynamic-EID range holding its address, else
        the anycast gateway (IPv4), else the LAN's own address; None for a foreign host."""
        h, s = self.hosts[host], self.sites[site or self.hosts[host].site]
        if h.foreign:
            return None
        ip = h.ip(version)
        for net, gw in s.dynamic_gateways.items():
            if ip and net.version == version and ipaddress.ip_address(ip) in net:
                return str(gw.ip)
        if version == 4 and s.anycast:
            return s.anycast[0]
        return next((str(a.ip) for a in s.lan if a.version == version), None)

    def _anycast_commands(self, site, lan):
        """The anycast gateway, as first-hop redundancy protocols do it: the gateway keeps
        its own MAC and address on the LAN (routed frames carry its own MAC, so they may
        cross the DCI without making the bridges see the gateway MAC in two places), and a
        macvlan with the shared MAC holds the shared address as a /32. ARP for it is
        answered by the macvlan only (arp_ignore=1 on the LAN); arp_announce=2 makes our
        own ARP requests come from the LAN's own address. Across subnets the /32 still
        answers for a moved VM's old gateway."""
        gw_ip, mac = site.anycast
        gw = f"{site.gateway}-gw"
        return [f"ip link add link {lan} name {gw} address {mac} type macvlan mode bridge",
                f"ip addr add {gw_ip}/32 dev {gw}",
                f"sysctl -qw net.ipv6.conf.{gw}.disable_ipv6=1",
                f"ip link set dev {gw} up",
                f"sysctl -qw net.ipv4.conf.{lan}.arp_ignore=1 net.ipv4.conf.{lan}.arp_accept=1 "
                f"net.ipv4.conf.{lan}.arp_announce=2 net.ipv4.conf.{gw}.rp_filter=0 "
                f"net.ipv4.conf.{lan}.rp_filter=0"]

    def dci_ports(self):
        """The two bridge ports of the DCI (switch-side interface names)."""
        if self.dci is None:
            return ()
        s1, s2 = (self.sites[s].switch for s in self.dci.sites)
        return (f"{s1}-dci", f"{s2}-dci")

    def fhrp_isolation_rules(self):
        """ebtables (table, rule) pairs that keep each data center's anycast gateway to
        itself: frames from the gateway MAC are dropped as they come in from the DCI, in nat
        PREROUTING, so neither bridge learns the gateway MAC on its DCI port (learning
        happens before the filter table's FORWARD chain), and frames to it or ARP for the
        gateway address never cross the DCI."""
        if self.dci is None or not self.dci.fhrp_isolation:
            return []
        gateways = {self.sites[s].anycast for s in self.dci.sites if self.sites[s].anycast}
        rules, p1 = [], self.dci_ports()[0]
        for ip, mac in sorted(gateways):
            rules += [("nat", f"PREROUTING -i {port} -s {mac} -j DROP")
                      for port in self.dci_ports()]
            for io in ("-o", "-i"):
                rules.append(("filter", f"FORWARD {io} {p1} -d {mac} -j DROP"))
                for fld in ("--arp-ip-dst", "--arp-ip-src"):
                    rules.append(("filter", f"FORWARD {io} {p1} -p ARP {fld} {ip} -j DROP"))
        return rules

    # --- OSPF (routing: ospf) ------------------------------------------------------------

    def ospf_nodes(self):
        if self.routing != "ospf":
            return []
        return self.routers + [g for g in self.gateways()]

    def ospf_interfaces(self, node):
        """[(interface, address, passive)] of `node` in OSPF area 0: links between two OSPF
        nodes run OSPF (point to point); a router's links to other nodes and the announced
        LANs are passive (announced, no OSPF packet sent there)."""
        ospf = set(self.ospf_nodes())
        out = []
        for x in self.links.values():
            if node in x.ends():
                both = x.other(node) in ospf
                if both or node in self.routers:
                    out.append((x.intf(node), x.addr(node), not both))
        for site in self.sites.values():
            if site.gateway == node and (not site.lisp or not self.lisp) and site.announce:
                out += [(site.lan_intf(self), str(a), True) for a in site.lan if a.version == 4]
        return out

    def ospf_prefixes(self):
        return sorted({str(ipaddress.ip_interface(a).network) for n in self.ospf_nodes()
                       for _, a, _ in self.ospf_interfaces(n)})

    def host_route_nodes(self):
        """Nodes that inject host routes in the timeline (they redistribute statics)."""
        out = []
        for step in self.timeline:
            if step.kind == "move" and any(s.kind == "host_route" for s in self.timeline):
                out.append(self.sites[step.args["to"]].gateway)
        return list(dict.fromkeys(out))

    def frr_configs(self, hello_s=1, dead_s=3, spf=(0, 50, 500)):
        """{node: {daemon: config}} for zebra, staticd and ospfd on every OSPF node. Short
        hello/dead timers and fast SPF and LSA throttles keep start-up and convergence
        short; a node that injects host routes redistributes its static routes."""
        configs = {}
        inject = set(self.host_route_nodes())
        for node in self.ospf_nodes():
            head = f"hostname {node}\n!\n"
            ospf = head
            for intf, _, passive in self.ospf_interfaces(node):
                ospf += f"interface {intf}\n ip ospf area 0\n"
                ospf += (" ip ospf passive\n" if passive else
                         f" ip ospf network point-to-point\n ip ospf hello-interval {hello_s}\n"
                         f" ip ospf dead-interval {dead_s}\n")
                ospf += "!\n"
            router_id = ipaddress.ip_interface(self.ospf_interfaces(node)[0][1]).ip
            ospf += (f"router ospf\n ospf router-id {router_id}\n"
                     f" timers throttle spf {' '.join(map(str, spf))}\n"
                     " timers throttle lsa all 0\n timers lsa min-arrival 0\n")
            if node in inject:
                ospf += " redistribute static\n"
            configs[node] = {"zebra": head, "staticd": head, "ospfd": ospf + "!\n"}
        return configs

    # --- LISP daemons --------------------------------------------------------------------

    def daemon_configs(self, workdir, sockets_dir):
        """{node: (role, config dict)} of every LISP daemon (none without LISP). Data center
        xTRs register no static prefix: their dynamic-EID ranges make them register each
        host they detect. Sites with the same `ms_site` are one site at the Map-Server."""
        if not self.lisp:
            return {}
        ms = [self.rloc(m) for m in self.map_servers]
        pxtrs = list(self.proxies)

        def head(node, role):
            return {"node": {"name": node, "role": role,
                             "control_socket": f"{sockets_dir}/{node}.sock",
                             "event_log": f"{workdir}/{node}.events.jsonl"}}

        out = {}
        for site in self.lisp_sites():
            node, lan = site.gateway, site.lan_intf(self)
            if node in out:
                self._another_site(out[node][1], site, lan)
                continue
            cfg = head(node, "xtr")
            cfg["rloc"] = [{"address": a, "priority": p, "weight": w}
                           for _, a, p, w in self.rlocs(node)]
            if site.eid_prefixes:
                cfg["eid_prefix"] = [{"prefix": str(p), "instance_id": site.instance_id}
                                     for p in site.eid_prefixes]
            if site.dynamic_eids:
                cfg["dynamic_eid"] = []
                for prefix, detect in site.dynamic_eids:
                    d = {"prefix": str(prefix), "instance_id": site.instance_id,
                         "interface": lan}
                    if detect == "gateway":
                        d.update(detect="gateway", detect_mac=site.anycast[1]
                                 if site.anycast else site.gateway_mac)
                    if prefix in site.dynamic_gateways:
                        d.update(gateway=str(site.dynamic_gateways[prefix]),
                                 gateway_mac=site.gateway_mac)
                    cfg["dynamic_eid"].append(d)
            cfg["map_server"] = [{"address": a, "secret": site.key, "key_id": 0,
                                  "algorithm": "hmac-sha-256-128"} for a in ms]
            cfg["map_resolver"] = [{"address": a} for a in ms]
            cfg["etr"] = {"register_interval": self.register_interval}
            if self.dci is not None and self.dci.site_notify and site.name in self.dci.sites \
                    and site.dynamic_eids:
                # the site-local Map-Notify, on the LAN the DCI extends (issue 12)
                cfg["etr"].update(site_notify_group=SITE_NOTIFY_GROUP,
                                  site_notify_interface=lan)
            cfg["itr"] = {"miss_policy": "hold"}      # a miss waits for its mapping
            if self.pubsub:
                cfg["itr"]["subscribe"] = True
            if self.rloc_probing:
                cfg["itr"]["rloc_probe_interval"] = self.rloc_probing
                cfg["itr"].update(self.rloc_probe_options)
            if pxtrs:
                cfg["itr"]["petr"] = self.rloc(pxtrs[0])
            lans = [lan] + ([f"{node}-gw"] if site.anycast else [])
            cfg["dataplane"] = {"lan_interfaces": lans, "mtu": 1500}
            if self.dataplane:
                cfg["dataplane"]["path"] = self.dataplane
            if site.proxy_arp:
                cfg["dataplane"]["proxy_arp"] = True
            out[node] = ("xtr", cfg)
        for m in self.map_servers:
            cfg = head(m, "msmr")
            cfg["msmr"] = {"registration_timeout": 3 * self.register_interval}
            cfg["site"] = []
            for name, members in self.ms_sites().items():
                prefixes = list(dict.fromkeys(
                    (s.instance_id, p) for s in members
                    for p in [d for d, _ in s.dynamic_eids] + s.eid_prefixes))
                entry = {"name": name,
                         "key": [{"key_id": 0, "secret": members[0].key,
                                  "algorithm": "hmac-sha-256-128"}],
                         "prefix": [{"prefix": str(p), "instance_id": iid}
                                    for iid, p in prefixes]}
                ranges = list(dict.fromkeys((s.instance_id, p) for s in members
                                            for p, _ in s.dynamic_eids))
                if ranges:
                    # the Map-Server enforces the ranges too: a host /32 elsewhere in the
                    # site's prefix is refused even with the site's key
                    entry = {"name": name, "accept_more_specifics": True,
                             **{k: v for k, v in entry.items() if k != "name"},
                             "dynamic_eid": [{"prefix": str(p), "instance_id": iid}
                                             for iid, p in ranges]}
                cfg["site"].append(entry)
            out[m] = ("msmr", cfg)
        for p, spaces in self.proxies.items():
            cfg = head(p, "pxtr")
            cfg["rloc"] = [{"address": self.rloc(p)}]
            cfg["eid_space"] = [{"prefix": str(n), "instance_id": iid} for iid, n in spaces]
            cfg["map_resolver"] = [{"address": a} for a in ms]
            cfg["dataplane"] = {"lan_interfaces": [self.uplinks(p)[0].intf(p)], "mtu": 1500}
            out[p] = ("pxtr", cfg)
        return out

    @staticmethod
    def _another_site(cfg, site, lan):
        """A second site behind the same xTR: with the first site's instance ID, its
        prefixes and LAN join the data plane's; with another one it is a tenant (its own
        TUN, LAN and kernel table: [[tenant]], docs/config.md)."""
        if site.dynamic_eids:
            raise ValueError(f"site {site.name}: a second site behind {cfg['node']['name']} "
                             f"has static eid_prefixes only")
        first = cfg["eid_prefix"][0]["instance_id"] if cfg.get("eid_prefix") else None
        cfg.setdefault("eid_prefix", []).extend(
            {"prefix": str(p), "instance_id": site.instance_id} for p in site.eid_prefixes)
        if first is None or site.instance_id == first:
            cfg["dataplane"]["lan_interfaces"].append(lan)
            return
        tenants = cfg.setdefault("tenant", [])
        mine = next((t for t in tenants if t["instance_id"] == site.instance_id), None)
        if mine is None:
            tenants.append({"instance_id": site.instance_id, "lan_interfaces": [lan]})
        else:
            mine["lan_interfaces"].append(lan)

    def ms_sites(self):
        """{registration site at the Map-Server: [lab sites]}: sites with the same
        `ms_site`, and the sites behind one xTR (its tenants too: it registers them all in
        one Map-Register, which the Map-Server takes from one site only)."""
        groups, first = {}, {}
        for s in self.lisp_sites():
            name = s.ms_site or first.setdefault(s.gateway, s.name)
            groups.setdefault(name, []).append(s)
        return groups

    # --- captures and paths --------------------------------------------------------------

    def captures(self):
        """{link name: (node, interface)}: every routed link (at its second end), every
        site's access link (at the gateway's LAN side) and the DCI."""
        out = {x.name: (x.b, x.intf(x.b)) for x in self.links.values()}
        for s in self.sites.values():
            if s.kind != "non-lisp":
                out[s.access_link()] = (s.gateway, s.lan_intf(self))
        if self.dci is not None:
            out["dci"] = (self.sites[self.dci.sites[0]].switch, self.dci_ports()[0])
        return out

    def topology(self):
        """The lab as a graph to draw (the report's picture), plain JSON-able data:

        {"nodes": [{"name", "kind", "site", "addresses"}], "links": [{"name", "ends",
        "kind", "captured"}]}. Node kinds: router, xtr, gateway (a non-LISP site's first hop
        that is not a router), map-server, proxy, switch, host, vm; `site` is the node's
        site (null for the core and the mapping system); `addresses` every address the
        node holds (its link ends, its LAN, a host's own), so that a captured packet's
        source or destination can be named. Link kinds: core (router to router), uplink
        (an edge node to a router), access (a site's gateway to its LAN), port (a host to
        its site's switch), dci; `captured`: the lab captures it (captures()). The links
        are those of the Mininet topology (topologies/topo.py), hosts where they start."""
        captured = self.captures()
        addresses = {n: [] for n in self.node_names() + self.switches()}
        for x in self.links.values():
            for end in x.ends():
                addresses[end] += [str(x.ip(end))] + ([str(x.ip6(end))] if x.subnet6 else [])
        for s in self.sites.values():
            addresses[s.gateway] += [str(a.ip) for a in s.lan]
        for h in self.hosts.values():
            addresses[h.name] += [str(a.ip) for a in h.addresses]

        def kind(name):
            if name in self.hosts:
                return "vm" if self.hosts[name].vm else "host"
            if name in self.routers:
                return "router"
            if name in self.map_servers:
                return "map-server"
            if name in self.proxies:
                return "proxy"
            if name in self.switches():
                return "switch"
            site = self.site_of_gateway(name)
            return "xtr" if self.lisp and site is not None and site.lisp else "gateway"

        site_of = {h.name: h.site for h in self.hosts.values()}
        for s in self.sites.values():
            site_of.setdefault(s.gateway, s.name)
            if s.switch:
                site_of[s.switch] = s.name
        nodes = [{"name": n, "kind": kind(n),
                  "site": None if n in self.routers else site_of.get(n),
                  "addresses": list(dict.fromkeys(addresses[n]))}
                 for n in self.node_names() + self.switches()]
        links = [{"name": x.name, "ends": [x.a, x.b],
                  "kind": "core" if x.a in self.routers and x.b in self.routers else "uplink"}
                 for x in self.links.values()]
        for s in self.sites.values():
            hosts = [h for h in self.hosts.values() if h.site == s.name]
            if s.switch:
                links.append({"name": s.access_link(), "ends": [s.gateway, s.switch],
                              "kind": "access"})
                links += [{"name": h.intf(), "ends": [h.name, s.switch], "kind": "port"}
                          for h in hosts]
            elif hosts:
                links.append({"name": s.access_link(), "ends": [s.gateway, hosts[0].name],
                              "kind": "access"})
        if self.dci is not None:
            links.append({"name": "dci", "ends": [self.sites[s].switch for s in self.dci.sites],
                          "kind": "dci"})
        for x in links:
            x["captured"] = x["name"] in captured
        return {"nodes": nodes, "links": links}

    def entry_site(self, dst, at_site, host_route=False):
        """The site whose gateway receives the core's traffic for host `dst` while it is at
        `at_site`: with LISP or an injected host route, the site where it is; otherwise the
        site that announces a LAN holding its address."""
        if (self.lisp and self.sites[at_site].lisp) or host_route:
            return at_site
        if not self.hosts[dst].ip(4):               # (the core routes IPv4 only)
            return at_site
        ip = ipaddress.ip_address(self.hosts[dst].ip(4))
        for s in self.sites.values():
            if s.announce and any(ip in a.network for a in s.lan if a.version == 4):
                return s.name
        return at_site

    def routes_over(self, node, link):
        """The routes of `node` (from node_commands) whose next hop is across `link`, as
        `ip route replace` commands: the kernel deletes them when the link goes down, and
        they are put back when it comes up."""
        x = self.links[link]
        nets = [n for n in (x.subnet, getattr(x, "subnet6", None)) if n is not None]
        out = []
        for c in self.node_commands().get(node, []):
            words = c.split()
            if [w for w in words[:4] if w != "-6"][:3] not in (["ip", "route", "add"],
                                                               ["ip", "route", "replace"]) \
                    or "via" not in words:
                continue
            via = ipaddress.ip_address(words[words.index("via") + 1])
            if any(via.version == n.version and via in n for n in nets):
                out.append(c.replace(" route add ", " route replace ", 1))
        return out

    def links_down_at(self, t):
        """The links a timeline has taken down (and not up again) before time `t`."""
        down = set()
        for s in self.timeline:
            if s.kind == "link" and s.at < t:
                (down.add if s.args["state"] == "down" else down.discard)(s.args["link"])
        return down

    def expected_path(self, src, dst, dst_site, host_route=False, down=()):
        """The captured links a packet from host `src` to host `dst` (now at `dst_site`)
        crosses, in order: the source site's access link and uplink, the core's shortest
        path, the entry site's uplink and access link, and the DCI if the host is on the
        other side of it. `down`: core links that are down (with OSPF the core routes
        around them; static routes do not, so then the path is the same, and lost)."""
        s_site = self.sites[self.hosts[src].site]
        entry = self.sites[self.entry_site(dst, dst_site, host_route)]
        path = [s_site.access_link()]
        s_up = self.uplinks(s_site.gateway)[0]
        e_up = self._ingress_uplink(entry)
        path.append(s_up.name)
        routers = self.router_path(s_up.other(s_site.gateway), e_up.other(entry.gateway),
                                   down if self.routing == "ospf" else ())
        path += [self.link_between(a, b).name for a, b in zip(routers, routers[1:])]
        path += [e_up.name, entry.access_link()]
        if entry.name != dst_site and self.dci is not None:
            path.append("dci")
        return path

    def _ingress_uplink(self, site):
        """The uplink traffic enters a site by: its preferred RLOC's with LISP."""
        if self.lisp and site.lisp:
            return self.rlocs(site.gateway)[0][0]
        return self.uplinks(site.gateway)[0]

    def moves(self):
        return [s for s in self.timeline if s.kind == "move"]

    def members(self, name):
        """The hosts `name` stands for in a step: a group's members, or the host itself."""
        return list(self.groups[name]) if name in self.groups else [name]

    def host_site_at(self, host, t):
        """The site `host` (a host, or a group: where its first member is) is at after
        every move of the timeline before time `t`."""
        host = self.members(host)[0]
        site = self.hosts[host].site
        for s in self.moves():
            if host in self.members(s.args["move"]) and s.at < t:
                site = s.args["to"]
        return site


def load(path):
    """Read, check and model a lab file (and what it extends). Raises LabFileError, whose
    text is one line: file:line: problem (topologies/reader.py)."""
    from .reader import load as read_lab
    return read_lab(path)


def lab_files(root=None):
    """The shipped lab files: [(path, Lab or LabFileError)]."""
    root = Path(root or Path(__file__).parent / "labs")
    out = []
    for p in sorted(root.glob("*.yaml")):
        try:
            out.append((p, load(p)))
        except LabFileError as e:
            out.append((p, e))
    return out

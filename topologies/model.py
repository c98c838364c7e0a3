"""The lab model: a lab file (topologies/labfile.py reads it) checked and turned into pure data,
and everything derived from it: interface names, addresses, routes, daemon and FRR configs,
capture points, expected paths. No I/O here but reading the file; lab/backend.py applies a
Lab to Mininet and lab/scenario.py plays its timeline. docs/labs.md describes the format.

    lab = load("topologies/labs/demo-lisp-extended-subnet.yaml")
    lab.node_commands()["xtr1"]          # the shell commands that configure xtr1
    lab.daemon_configs(...)              # {node: (role, config dict)} for the LISP daemons
    lab.expected_path("c1", "vm", "dc2") # the links a probe from c1 to vm crosses
"""
import ipaddress
import re
from dataclasses import dataclass, field
from pathlib import Path

from .labfile import LabFileError, Map, Seq, check_keys, read

__all__ = ["Lab", "Site", "Host", "P2PLink", "Dci", "Step", "LabFileError", "load",
           "STEP_KINDS", "CHECK_KINDS"]

TOP_KEYS = ("lab", "description", "lisp", "routers", "core", "links", "sites", "hosts",
            "dci", "mapping_system", "proxies", "timeline", "traffic_defaults")
SITE_KINDS = ("datacenter", "client", "non-lisp")
NAME = re.compile(r"^[a-z][a-z0-9]{0,7}$")
MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
DELAY = re.compile(r"^(\d+(?:\.\d+)?)\s*ms$")


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


@dataclass
class Step:
    """One step of a scenario's timeline: at `at` seconds, do `kind` with `args`."""
    at: float
    kind: str
    args: dict
    where: tuple = ("?", 0)        # (file, line), for errors at run time

    def describe(self):
        rest = " ".join(f"{k}={v}" for k, v in self.args.items() if k != self.kind)
        return f"t={self.at:g}s {self.kind} {self.args.get(self.kind, '')} {rest}".rstrip()


STEP_KINDS = {
    # kind: (required keys, optional keys)
    "traffic": (("traffic", "from", "to"), ("rate", "duration", "name", "bandwidth",
                                            "family")),
    "move": (("move", "to"), ("cold",)),
    "host_route": (("host_route",), ()),
    "link": (("link", "state"), ()),
    "daemon": (("daemon", "action"), ()),
    "capture": (("capture",), ()),
    "wait": (("wait",), ()),
    "check": (("check",), ("from", "to", "node", "eid", "rloc", "name", "min", "max",
                           "path", "below_ms", "by", "window", "expect", "rlocs",
                           "family")),
}
TRAFFIC_KINDS = ("probes", "tcp", "iperf3")
CHECK_KINDS = ("reachable", "unreachable", "map_cache", "registered", "counter", "path",
               "convergence")


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
    core_delay_ms: float = 0.0
    extends: str | None = None

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

    def core_links(self):
        return [x for x in self.links.values() if x.a in self.routers and x.b in self.routers]

    def rloc(self, node, uplink=None):
        """The node's address on its (first, or named) uplink."""
        ups = self.uplinks(node)
        up = next(x for x in ups if x.name == uplink) if uplink else ups[0]
        return str(up.ip(node))

    def rlocs(self, node):
        """[(uplink, address, priority, weight)] of an xTR, its preferred first."""
        site = self.site_of_gateway(node)
        out = []
        for up in self.uplinks(node):
            prio, weight = site.rloc_te.get(up.name, (1, 100)) if site else (1, 100)
            out.append((up, str(up.ip(node)), prio, weight))
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

    def link_between(self, a, b):
        return next((x for x in self.links.values() if set(x.ends()) == {a, b}), None)

    def next_hop(self, router, dst_router):
        """The address `router` sends to, toward `dst_router`."""
        path = self.router_path(router, dst_router)
        nh = path[1]
        return str(self.link_between(router, nh).ip(nh))

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
        routes = {r: [] for r in self.routers}
        owner = {}
        for x in self.links.values():
            for end in x.ends():
                if end in self.routers:
                    owner.setdefault(x.subnet, set()).add(end)
        for r in self.routers:
            for subnet, routers in owner.items():
                if r not in routers:
                    routes[r].append((subnet, self.next_hop(r, min(routers))))
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
                               f"table {table}"]
        if self.routing == "static":
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
            cfg["itr"] = {"miss_policy": "drop"}
            if pxtrs:
                cfg["itr"]["petr"] = self.rloc(pxtrs[0])
            lans = [lan] + ([f"{node}-gw"] if site.anycast else [])
            cfg["dataplane"] = {"lan_interfaces": lans, "mtu": 1500}
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

    def ms_sites(self):
        groups = {}
        for s in self.lisp_sites():
            groups.setdefault(s.ms_site or s.name, []).append(s)
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

    def host_site_at(self, host, t):
        """The site `host` is at after every move of the timeline before time `t`."""
        site = self.hosts[host].site
        for s in self.moves():
            if s.args["move"] == host and s.at < t:
                site = s.args["to"]
        return site


# --- reading and checking a lab file -----------------------------------------------------

def _name(m, key, what):
    v = m[key]
    if not isinstance(v, str) or not NAME.match(v):
        raise m.error(key, f"{what} {v!r}: a name is 1-8 lower-case letters and digits, "
                           f"starting with a letter (interface names derive from it)")
    return v


def _key_name(m, key, what):
    """A mapping's key used as a node or site name."""
    if not isinstance(key, str) or not NAME.match(key):
        raise m.error(key, f"{what} {key!r}: a name is 1-8 lower-case letters and digits, "
                           f"starting with a letter (interface names derive from it)")
    return key


def _net(m, key, v=None, v4only=False, what="prefix"):
    v = m[key] if v is None else v
    try:
        net = ipaddress.ip_network(str(v), strict=True)
    except ValueError as e:
        raise m.error(key, f"{what} {v!r} is not a valid prefix ({e})") from None
    if v4only and net.version != 4:
        raise m.error(key, f"{what} {v} must be IPv4 (the core is IPv4)")
    return net


def _iface(m, key, v=None, what="address"):
    v = m[key] if v is None else v
    if not isinstance(v, str) or "/" not in v:
        raise m.error(key, f"{what} {v!r} must be an address with its prefix length, "
                           f"e.g. 10.10.0.5/24")
    try:
        a = ipaddress.ip_interface(v)
    except ValueError as e:
        raise m.error(key, f"{what} {v!r} is not valid ({e})") from None
    if a.ip == a.network.network_address and a.network.prefixlen < (31 if a.version == 4
                                                                      else 127):
        raise m.error(key, f"{what} {v} is its subnet's network address")
    if a.version == 4 and a.ip == a.network.broadcast_address and a.network.prefixlen < 31:
        raise m.error(key, f"{what} {v} is its subnet's broadcast address")
    return a


def _addrs(m, key, what="address"):
    v = m[key]
    items = v if isinstance(v, Seq) else [v]
    if isinstance(v, Seq):
        return [_iface(v, i, item, what) for i, item in enumerate(items)]
    return [_iface(m, key, v, what)]


def _delay(m, key):
    v = m[key]
    if isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0:
        return float(v)
    match = DELAY.match(str(v)) if isinstance(v, str) else None
    if not match:
        raise m.error(key, f"delay {v!r}: write milliseconds, e.g. 10ms or 0")
    return float(match.group(1))


def _number(m, key, low=0.0, high=None, what=None):
    v = m[key]
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v < low \
            or (high is not None and v > high):
        rng = f"from {low:g}" + (f" to {high:g}" if high is not None else "")
        raise m.error(key, f"{what or key} {v!r} must be a number {rng}")
    return v


def _bool(m, key):
    v = m[key]
    if not isinstance(v, bool):
        raise m.error(key, f"{key} {v!r} must be true or false")
    return v


def _mapping(parent, key, what):
    v = parent[key]
    if not isinstance(v, Map):
        raise parent.error(key, f"{what} must be a mapping (key: value lines)")
    return v


def _seq(parent, key, what):
    v = parent[key]
    if not isinstance(v, Seq):
        raise parent.error(key, f"{what} must be a list")
    return v


def load(path):
    """Read, check and model a lab file (and what it extends). Raises LabFileError."""
    data = read(path)
    return build(data, str(path))


def build(data, path="?"):
    check_keys(data, TOP_KEYS, ("lab", "routers", "links", "sites", "hosts"), "the lab")
    if not isinstance(data["lab"], str) or not data["lab"].strip():
        raise data.error("lab", "lab: give the lab a name")
    names = {}

    def claim(name, m, key, what):
        if name in names:
            raise m.error(key, f"duplicate name {name!r}: already the {names[name]}")
        names[name] = what

    lisp = _bool(data, "lisp") if "lisp" in data else True
    routers_seq = _seq(data, "routers", "routers")
    routers = []
    for i, r in enumerate(routers_seq):
        if not isinstance(r, str) or not NAME.match(r):
            raise routers_seq.error(i, f"router {r!r}: a name is 1-8 lower-case letters and "
                                       f"digits, starting with a letter")
        claim(r, routers_seq, i, "router")
        routers.append(r)
    core = data.get("core") if "core" in data else Map(file=data.file, line=data.line)
    if not isinstance(core, Map):
        raise data.error("core", "core must be a mapping (routing:, delay:)")
    check_keys(core, ("routing", "delay"), (), "core")
    routing = core.get("routing", "static")
    if routing not in ("static", "ospf"):
        raise core.error("routing", f"core routing {routing!r}: one of static, ospf")
    core_delay = _delay(core, "delay") if "delay" in core else 0.0

    # Map-Servers and proxies: names first, so links can name them.
    ms_names, key_default, iid_default, reg_interval = [], None, 0, 1.0
    if "mapping_system" in data:
        msys = _mapping(data, "mapping_system", "mapping_system")
        check_keys(msys, ("map_servers", "key", "instance_id", "register_interval"),
                   ("map_servers", "key"), "mapping_system")
        seq = _seq(msys, "map_servers", "map_servers")
        for i, n in enumerate(seq):
            _name(seq, i, "Map-Server")
            claim(n, seq, i, "Map-Server")
            ms_names.append(n)
        key_default = msys["key"]
        if not isinstance(key_default, str) or not key_default:
            raise msys.error("key", "key: the shared secret, a non-empty string")
        if "instance_id" in msys:
            iid_default = int(_number(msys, "instance_id", 0, 0xFFFFFF))
        if "register_interval" in msys:
            reg_interval = float(_number(msys, "register_interval", 0.1, 60))
    proxies = {}
    if "proxies" in data:
        pm = _mapping(data, "proxies", "proxies")
        for n, spec in pm.items():
            _key_name(pm, n, "proxy xTR")
            claim(n, pm, n, "proxy xTR")
            if not isinstance(spec, Map):
                raise pm.error(n, f"proxy xTR {n}: a mapping with eid_space:")
            check_keys(spec, ("eid_space",), ("eid_space",), f"proxy xTR {n}")
            seq = _seq(spec, "eid_space", "eid_space")
            proxies[n] = [(iid_default, _net(seq, i, p)) for i, p in enumerate(seq)]

    # Sites declare their gateways; links come after so they can name every node.
    sites_m = _mapping(data, "sites", "sites")
    sites = {}
    site_keys = ("kind", "gateway", "switch", "lan", "anycast_gateway", "announce",
                 "dynamic_eids", "eid_prefixes", "instance_id", "key", "ms_site", "rlocs",
                 "gateway_mac", "proxy_arp")
    for sname, spec in sites_m.items():
        _key_name(sites_m, sname, "site")
        if not isinstance(spec, Map):
            raise sites_m.error(sname, f"site {sname}: a mapping (kind:, gateway:, lan:, ...)")
        check_keys(spec, site_keys, ("kind", "gateway", "lan"), f"site {sname}")
        kind = spec["kind"]
        if kind not in SITE_KINDS:
            raise spec.error("kind", f"site kind {kind!r}: one of {', '.join(SITE_KINDS)}")
        gw = _name(spec, "gateway", "gateway")
        if gw not in routers:
            if gw in names and names[gw] != "site gateway":
                raise spec.error("gateway", f"gateway {gw!r} is already the {names[gw]}")
            names[gw] = "site gateway"
        site = Site(sname, kind, gw, _addrs(spec, "lan", "LAN address"),
                    instance_id=iid_default, key=key_default or "")
        if "switch" in spec:
            site.switch = _name(spec, "switch", "switch")
            claim(site.switch, spec, "switch", f"switch of site {sname}")
        if "anycast_gateway" in spec:
            ag = _mapping(spec, "anycast_gateway", "anycast_gateway")
            check_keys(ag, ("address", "mac"), ("address", "mac"), "anycast_gateway")
            ip = ag["address"]
            try:
                ip = ipaddress.ip_address(str(ip))
            except ValueError:
                raise ag.error("address", f"anycast gateway address {ip!r} is not an "
                                          f"address") from None
            mac = ag["mac"]
            if not isinstance(mac, str) or not MAC.match(mac.lower()):
                raise ag.error("mac", f"anycast gateway mac {mac!r}: six hex pairs, "
                                      f"e.g. \"00:00:5e:00:01:01\" (quote it)")
            site.anycast = (str(ip), mac.lower())
        if "announce" in spec:
            site.announce = _bool(spec, "announce")
        if "instance_id" in spec:
            site.instance_id = int(_number(spec, "instance_id", 0, 0xFFFFFF))
        if "key" in spec:
            site.key = spec["key"]
            if not isinstance(site.key, str) or not site.key:
                raise spec.error("key", "key: a non-empty string")
        if "ms_site" in spec:
            site.ms_site = spec["ms_site"]
            if not isinstance(site.ms_site, str) or not re.match(r"^[a-z][a-z0-9-]{0,31}$",
                                                                 site.ms_site):
                raise spec.error("ms_site", f"ms_site {site.ms_site!r}: a site name at the "
                                            f"Map-Server (lower-case letters, digits, -)")
        if "eid_prefixes" in spec:
            seq = _seq(spec, "eid_prefixes", "eid_prefixes")
            site.eid_prefixes = [_net(seq, i, p) for i, p in enumerate(seq)]
        if "gateway_mac" in spec:
            mac = spec["gateway_mac"]
            if not isinstance(mac, str) or not MAC.match(mac.lower()):
                raise spec.error("gateway_mac", f"gateway_mac {mac!r}: six hex pairs, "
                                                f"e.g. \"00:00:5e:00:01:01\" (quote it)")
            if site.anycast:
                raise spec.error("gateway_mac", f"site {sname} has an anycast_gateway: "
                                                f"gateway_mac is for xTR-held gateways instead")
            site.gateway_mac = mac.lower()
        if "proxy_arp" in spec:
            site.proxy_arp = _bool(spec, "proxy_arp")
            if site.proxy_arp and not site.lisp:
                raise spec.error("proxy_arp", f"proxy_arp: site {sname} is non-lisp (its "
                                              f"gateway runs no xTR)")
        if "dynamic_eids" in spec:
            seq = _seq(spec, "dynamic_eids", "dynamic_eids")
            for i, d in enumerate(seq):
                if isinstance(d, Map):
                    check_keys(d, ("prefix", "detect", "gateway"), ("prefix",),
                               "a dynamic EID range")
                    detect = d.get("detect", "any")
                    if detect not in ("any", "gateway"):
                        raise d.error("detect", f"detect {detect!r}: one of any, gateway")
                    if detect == "gateway" and not (site.anycast or site.gateway_mac):
                        raise d.error("detect", "detect: gateway needs the site's "
                                                "anycast_gateway or gateway_mac (its MAC)")
                    net = _net(d, "prefix")
                    site.dynamic_eids.append((net, detect))
                    if "gateway" in d:
                        gw = _iface(d, "gateway", what="gateway")
                        if gw.version != net.version or gw.ip not in net:
                            raise d.error("gateway", f"gateway {gw} is not in the range {net}")
                        if not site.gateway_mac:
                            raise d.error("gateway", f"a range's gateway needs the site's "
                                                     f"gateway_mac (site {sname})")
                        site.dynamic_gateways[net] = gw
                else:
                    site.dynamic_eids.append((_net(seq, i, d), "any"))
        if site.kind == "non-lisp" and (site.dynamic_eids or site.eid_prefixes):
            raise spec.error("kind", f"site {sname} is non-lisp: it has no EIDs")
        if site.lisp and lisp and not (site.dynamic_eids or site.eid_prefixes):
            raise spec.error(None, f"LISP site {sname} needs eid_prefixes or dynamic_eids")
        if site.lisp and lisp and not ms_names:
            raise spec.error(None, f"LISP site {sname}: the lab has no mapping_system")
        site._rlocs_m = spec.get("rlocs")
        sites[sname] = site
    # Links.
    links_m = _mapping(data, "links", "links")
    links = {}
    for lname, spec in links_m.items():
        if not isinstance(lname, str) or not re.match(r"^[a-z][a-z0-9-]{0,30}$", lname):
            raise links_m.error(lname, f"link name {lname!r}: lower-case letters, digits, -")
        if lname == "dci" or lname.endswith("-access"):
            raise links_m.error(lname, f"link name {lname!r} is reserved (the DCI and the "
                                       f"sites' access links are named after them)")
        if not isinstance(spec, Map):
            raise links_m.error(lname, f"link {lname}: a mapping (ends:, subnet:, ...)")
        check_keys(spec, ("ends", "subnet", "delay", "loss", "rate", "subnet6"),
                   ("ends", "subnet"), f"link {lname}")
        ends = spec["ends"]
        if not isinstance(ends, Seq) or len(ends) != 2 or ends[0] == ends[1]:
            raise spec.error("ends", f"link {lname}: ends: [NODE, NODE], two different nodes")
        for i, e in enumerate(ends):
            if e not in names or names[e].startswith("switch") or names[e] == "host":
                raise ends.error(i, f"link {lname}: unknown node {e!r} (routers, site gateways, "
                                    f"Map-Servers and proxy xTRs have links)")
        subnet = _net(spec, "subnet", v4only=True, what="link subnet")
        if subnet.prefixlen not in (30, 31):
            raise spec.error("subnet", f"link subnet {subnet} must be a /30 or /31")
        a, b = ends
        if a in routers and b not in routers:       # the router is the second end
            a, b = b, a
        x = P2PLink(lname, a, b, subnet)
        if any(set(y.ends()) == {a, b} for y in links.values()):
            raise spec.error("ends", f"link {lname}: {a} and {b} already have a link")
        both_core = a in routers and b in routers
        x.delay_ms = _delay(spec, "delay") if "delay" in spec else (core_delay if both_core
                                                                    or a in names and names[a]
                                                                    == "site gateway" else 0.0)
        if "loss" in spec:
            x.loss_pct = float(_number(spec, "loss", 0, 100))
        if "rate" in spec:
            x.rate_mbit = float(_number(spec, "rate", 0.001))
        if "subnet6" in spec:
            x.subnet6 = _net(spec, "subnet6", what="link subnet6")
            if x.subnet6.version != 6 or not 64 <= x.subnet6.prefixlen <= 126:
                raise spec.error("subnet6", f"link subnet6 {spec['subnet6']} must be an IPv6 "
                                            f"/64 to /126")
        for y in links.values():
            if y.subnet.overlaps(subnet):
                raise spec.error("subnet", f"link subnet {subnet} overlaps link {y.name}'s "
                                           f"{y.subnet}")
        for end in (a, b):
            if len(x.intf(end)) > 15:
                raise spec.error("ends", f"interface name {x.intf(end)} is longer than 15 "
                                         f"characters: use shorter node names")
        links[lname] = x
    # Every edge node needs an uplink.
    for n, what in names.items():
        if what in ("site gateway", "Map-Server", "proxy xTR"):
            if not any(n in x.ends() and x.other(n) in routers for x in links.values()):
                raise links_m.error(None, f"{what} {n} has no link to a router")
    for sname, site in sites.items():
        rm = site.__dict__.pop("_rlocs_m")
        if rm is None:
            continue
        if not isinstance(rm, Map):
            raise sites_m[sname].error("rlocs", "rlocs: a mapping of uplink: {priority:, weight:}")
        for up, te in rm.items():
            x = links.get(up)
            if x is None or site.gateway not in x.ends():
                raise rm.error(up, f"rlocs: {up!r} is not an uplink of {site.gateway}")
            if not isinstance(te, Map):
                raise rm.error(up, "rlocs: each uplink takes {priority: N, weight: N}")
            check_keys(te, ("priority", "weight"), (), f"rlocs {up}")
            site.rloc_te[up] = (int(_number(te, "priority", 0, 255)) if "priority" in te else 1,
                                int(_number(te, "weight", 0, 100)) if "weight" in te else 100)

    # Hosts.
    hosts_m = _mapping(data, "hosts", "hosts")
    hosts = {}
    for hname, spec in hosts_m.items():
        _key_name(hosts_m, hname, "host")
        if not isinstance(spec, Map):
            raise hosts_m.error(hname, f"host {hname}: a mapping (site:, address:)")
        claim(hname, hosts_m, hname, "host")
        check_keys(spec, ("site", "address", "vm", "foreign"), ("site", "address"),
                   f"host {hname}")
        if spec["site"] not in sites:
            raise spec.error("site", f"host {hname}: unknown site {spec['site']!r} "
                                     f"(sites: {', '.join(sites)})")
        site = sites[spec["site"]]
        h = Host(hname, site.name, _addrs(spec, "address"),
                 _bool(spec, "vm") if "vm" in spec else False,
                 _bool(spec, "foreign") if "foreign" in spec else False)
        for a in h.addresses:
            # the LAN's subnets and those of the xTR-held gateways
            subnets = site.lan + list(site.dynamic_gateways.values())
            same = [lan for lan in subnets if lan.version == a.version]
            # (a family the site's LAN has no subnet of is the hosts' own: no gateway)
            if same and not h.foreign and not any(a.network == lan.network for lan in same):
                nets = ", ".join(str(x.network) for x in subnets)
                raise spec.error("address", f"host {hname}: {a} is outside site {site.name}'s "
                                            f"LAN ({nets}; foreign: true if on purpose)")
            if any(a.ip == lan.ip for lan in subnets):
                raise spec.error("address", f"host {hname}: {a.ip} is the gateway's address")
        hosts[hname] = h
    all_addrs = {}
    for h in hosts.values():
        for a in h.addresses:
            if a.ip in all_addrs:
                raise hosts_m[h.name].error("address", f"host {h.name}: {a.ip} is also "
                                                       f"{all_addrs[a.ip]}'s address")
            all_addrs[a.ip] = h.name
    for s in sites.values():
        here = [h for h in hosts.values() if h.site == s.name]
        if not s.switch and len(here) > 1:
            raise sites_m.error(s.name, f"site {s.name} has {len(here)} hosts: give it a "
                                        f"switch")
        if not s.switch and any(h.vm for h in here):
            raise sites_m.error(s.name, f"site {s.name} has a VM: give it a switch (a VM "
                                        f"moves between switches)")

    dci = None
    if "dci" in data:
        dm = _mapping(data, "dci", "dci")
        check_keys(dm, ("sites", "delay", "fhrp_isolation"), ("sites",), "dci")
        ds = dm["sites"]
        if not isinstance(ds, Seq) or len(ds) != 2 or ds[0] == ds[1]:
            raise dm.error("sites", "dci: sites: [SITE, SITE], two data centers")
        for i, s in enumerate(ds):
            if s not in sites or not sites[s].switch:
                raise ds.error(i, f"dci: {s!r} is not a site with a switch")
        dci = Dci(tuple(ds), _delay(dm, "delay") if "delay" in dm else 0.0,
                  _bool(dm, "fhrp_isolation") if "fhrp_isolation" in dm else True)

    lab = Lab(name=data["lab"], description=str(data.get("description", "")).strip(),
              file=path, lisp=lisp, routers=routers, routing=routing, links=links,
              sites=sites, hosts=hosts, dci=dci, map_servers=ms_names, proxies=proxies,
              timeline=[], register_interval=reg_interval, core_delay_ms=core_delay,
              extends=getattr(data, "extends", None))
    if "timeline" in data:
        lab.timeline = _timeline(_seq(data, "timeline", "timeline"), lab)
    return lab


def _timeline(seq, lab):
    steps, last = [], 0.0
    lab.timeline = steps                 # the steps so far: where a VM is when a move comes
    for i, m in enumerate(seq):
        if not isinstance(m, Map):
            raise seq.error(i, "a timeline step is a mapping: {at: SECONDS, KIND: ...}")
        if "at" not in m:
            raise m.error(None, "a timeline step needs at: (seconds from the start)")
        at = float(_number(m, "at", 0, 3600, "at"))
        if at < last:
            raise m.error("at", f"time goes backwards: at {at:g} after a step at {last:g}")
        last = at
        kinds = [k for k in m if k in STEP_KINDS]
        if len(kinds) != 1:
            unknown = [k for k in m if k != "at" and not any(k in STEP_KINDS[j][0] + STEP_KINDS[j][1]
                                                             for j in STEP_KINDS)]
            if unknown:
                raise m.error(unknown[0], f"unknown step {unknown[0]!r} (steps: "
                                          f"{', '.join(STEP_KINDS)})")
            raise m.error(None, "a step does one thing: one of " + ", ".join(STEP_KINDS))
        kind = kinds[0]
        req, opt = STEP_KINDS[kind]
        check_keys(m, ("at",) + req + opt, req, f"a {kind} step")
        args = {k: v for k, v in m.items() if k != "at"}
        _check_step(m, kind, args, lab, at)
        steps.append(Step(at, kind, args, m.at(kind)))
    return steps


def _host(m, key, lab):
    if m[key] not in lab.hosts:
        raise m.error(key, f"unknown host {m[key]!r} (hosts: {', '.join(lab.hosts)})")


def _node(m, key, lab, lisp_only=False):
    nodes = lab.node_names()
    if m[key] not in nodes:
        raise m.error(key, f"unknown node {m[key]!r}")
    if lisp_only and m[key] not in lab.daemon_configs("", ""):
        raise m.error(key, f"{m[key]} runs no LISP daemon in this lab")


def _family(m, lab):
    """A step's `family:` (4 or 6): every host it names has an address of that family."""
    fam = m.get("family")
    if fam is not None and fam not in (4, 6):
        raise m.error("family", f"family {fam!r}: 4 or 6")
    for k in ("from", "to", "eid"):
        if k in m and m[k] in lab.hosts:
            h = lab.hosts[m[k]]
            if fam is not None and not h.ip(fam):
                raise m.error("family", f"host {h.name} has no IPv{fam} address")
    ends = [lab.hosts[m[k]] for k in ("from", "to") if k in m and m[k] in lab.hosts]
    if fam is None and len(ends) == 2 and not ends[0].ip(ends[1].family()):
        raise m.error("to", f"{ends[1].name}'s IPv{ends[1].family()} address: {ends[0].name} "
                            f"has none (family: 4 or 6)")


def _check_step(m, kind, args, lab, at):
    if kind in ("traffic", "check"):
        _family(m, lab)
    if kind == "traffic":
        if args["traffic"] not in TRAFFIC_KINDS:
            raise m.error("traffic", f"traffic {args['traffic']!r}: one of "
                                     f"{', '.join(TRAFFIC_KINDS)}")
        _host(m, "from", lab)
        _host(m, "to", lab)
        if "rate" in m:
            _number(m, "rate", 1, 100000)
        if "duration" in m:
            _number(m, "duration", 0.1, 3600)
    elif kind == "move":
        _host(m, "move", lab)
        if not lab.hosts[args["move"]].vm:
            raise m.error("move", f"host {args['move']} is not a VM (vm: true)")
        to = args["to"]
        if to not in lab.sites or not lab.sites[to].switch:
            raise m.error("to", f"move to {to!r}: not a site with a switch")
        if lab.host_site_at(args["move"], at + 1e-9) == to:
            raise m.error("to", f"{args['move']} is already in {to} at t={at:g}")
        if "cold" in m:
            _number(m, "cold", 0, 600)
    elif kind == "host_route":
        _host(m, "host_route", lab)
        if lab.routing != "ospf":
            raise m.error("host_route", "host_route needs core routing: ospf")
    elif kind == "link":
        if args["link"] not in lab.links and args["link"] != "dci":
            raise m.error("link", f"unknown link {args['link']!r}")
        if args["state"] not in ("up", "down"):
            raise m.error("state", "state: up or down")
    elif kind == "daemon":
        _node(m, "daemon", lab, lisp_only=True)
        if args["action"] not in ("stop", "start", "kill"):
            raise m.error("action", "action: stop, start or kill")
    elif kind == "capture":
        if args["capture"] not in ("start", "stop"):
            raise m.error("capture", "capture: start or stop")
    elif kind == "check":
        c = args["check"]
        if c not in CHECK_KINDS:
            raise m.error("check", f"unknown check {c!r} (checks: {', '.join(CHECK_KINDS)})")
        need = {"reachable": ("from", "to"), "unreachable": ("from", "to"),
                "map_cache": ("node", "eid"), "registered": ("eid",),
                "counter": ("node", "name"), "path": ("from", "to"),
                "convergence": ("below_ms",)}[c]
        for k in need:
            if k not in m:
                raise m.error("check", f"check {c} needs {k}:")
        for k in ("from", "to"):
            if k in m:
                _host(m, k, lab)
        if "node" in m:
            _node(m, "node", lab, lisp_only=c in ("map_cache", "counter"))
        if "eid" in m and m["eid"] not in lab.hosts:
            raise m.error("eid", f"eid: a host's name (hosts: {', '.join(lab.hosts)})")
        for k in ("by", "rloc"):
            if k in m and m[k] not in lab.daemon_configs("", ""):
                raise m.error(k, f"{k}: {m[k]!r} is not a LISP node of this lab")
        if "rlocs" in m and (c != "map_cache" or m["rlocs"] != "all" or "rloc" not in m):
            raise m.error("rlocs", "rlocs: all (a map_cache check with rloc: NODE: the entry "
                                   "holds every RLOC of NODE, with its priority and weight)")
        if "path" in m and m["path"] != "expected":
            seq = m["path"]
            if not isinstance(seq, Seq):
                raise m.error("path", "path: expected, or a list of link names")
            known = set(lab.captures())
            for i, name in enumerate(seq):
                if name not in known:
                    raise seq.error(i, f"path: unknown link {name!r}")
        if "below_ms" in m:
            _number(m, "below_ms", 1, 600000)
        if "window" in m:
            _number(m, "window", 0.05, 600)


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

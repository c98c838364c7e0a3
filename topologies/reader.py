"""Reading a lab file into the model: every key checked, one line per problem.

topologies/labfile.py reads the YAML (lines, `extends`); this module checks each section
(routers, core, mapping system, proxies, sites, links, hosts, DCI, timeline) and builds a
topologies.model.Lab. A problem is a LabFileError naming the file, the line and what is
wrong; nothing else is raised for a bad file. docs/labs.md describes every key.
"""
import ipaddress
import re

from .labfile import LabFileError, Map, Seq, check_keys, read
from .model import (CHECK_KINDS, STEP_KINDS, TRAFFIC_KINDS, Dci, Host, Lab, P2PLink, Site,
                    Step)

__all__ = ["load", "build", "LabFileError"]

TOP_KEYS = ("lab", "description", "lisp", "routers", "core", "links", "sites", "hosts",
            "dci", "mapping_system", "proxies", "timeline", "dataplane")
SITE_KINDS = ("datacenter", "client", "non-lisp")
NAME = re.compile(r"^[a-z][a-z0-9]{0,7}$")
MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
DELAY = re.compile(r"^(\d+(?:\.\d+)?)\s*ms$")


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


class _Reader:
    """One lab file being read, section by section: what each has made, and the names
    taken so far (a name is one node, switch or host, whatever it is)."""

    def __init__(self, data):
        self.data = data
        self.names = {}                      # name -> what it is ("router", "host", ...)
        self.groups = {}                     # a host group's name -> its members' names
        self.lisp = _bool(data, "lisp") if "lisp" in data else True

    def claim(self, name, m, key, what):
        if name in self.names:
            raise m.error(key, f"duplicate name {name!r}: already the {self.names[name]}")
        self.names[name] = what

    def read_routers(self):
        """The core routers."""
        data, claim = self.data, self.claim
        routers_seq = _seq(data, "routers", "routers")
        routers = []
        for i, r in enumerate(routers_seq):
            if not isinstance(r, str) or not NAME.match(r):
                raise routers_seq.error(i, f"router {r!r}: a name is 1-8 lower-case letters and "
                                           f"digits, starting with a letter")
            claim(r, routers_seq, i, "router")
            routers.append(r)
        self.routers = routers

    def read_core(self):
        """How the core routes, and its default delay."""
        data = self.data
        core = data.get("core") if "core" in data else Map(file=data.file, line=data.line)
        if not isinstance(core, Map):
            raise data.error("core", "core must be a mapping (routing:, delay:, family:)")
        check_keys(core, ("routing", "delay", "family"), (), "core")
        routing = core.get("routing", "static")
        if routing not in ("static", "ospf"):
            raise core.error("routing", f"core routing {routing!r}: one of static, ospf")
        core_delay = _delay(core, "delay") if "delay" in core else 0.0
        self.routing, self.core_delay = routing, core_delay
        # family 6: the core routes IPv6 only, and RLOCs and the mapping system's addresses
        # are the links' IPv6 ones (every link needs a subnet6; IPv4 EIDs cross it in LISP)
        self.core_family = core.get("family", 4)
        if self.core_family not in (4, 6):
            raise core.error("family", f"core family {self.core_family!r}: 4 or 6")
        if self.core_family == 6 and routing != "static":
            raise core.error("family", "core family 6 needs routing: static")

    def read_mapping_system(self):
        """The Map-Servers, the default key, instance ID and register interval."""
        data, claim = self.data, self.claim
        ms_names, key_default, iid_default, reg_interval = [], None, 0, 1.0
        if "mapping_system" in data:
            msys = _mapping(data, "mapping_system", "mapping_system")
            check_keys(msys, ("map_servers", "key", "instance_id", "register_interval",
                              "pubsub", "rloc_probing"), ("map_servers", "key"),
                       "mapping_system")
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
            if "pubsub" in msys and not isinstance(msys["pubsub"], bool):
                raise msys.error("pubsub", "pubsub: true or false (the xTRs subscribe to "
                                           "the mappings they ask for, RFC 9437)")
        probing, options = None, {}
        if "mapping_system" in data and "rloc_probing" in data["mapping_system"]:
            msys = data["mapping_system"]
            rp = msys["rloc_probing"]
            if isinstance(rp, Map):     # {interval: S, timeout: S, retries: N}
                check_keys(rp, ("interval", "timeout", "retries"), ("interval",),
                           "rloc_probing")
                probing = float(_number(rp, "interval", 0.1, 60,
                                        "interval (RLOC-probe interval, seconds)"))
                if "timeout" in rp:
                    options["rloc_probe_timeout"] = float(_number(
                        rp, "timeout", 0.01, probing, "timeout (seconds a probe waits, at "
                                                      "most the interval)"))
                if "retries" in rp:
                    r = _number(rp, "retries", 1, 100, "retries (unanswered probes in a row "
                                                       "that mark a locator down)")
                    if r != int(r):
                        raise rp.error("retries", f"retries {r!r} must be a whole number")
                    options["rloc_probe_retries"] = int(r)
            else:
                probing = float(_number(msys, "rloc_probing", 0.1, 60,
                                        "rloc_probing (the xTRs' RLOC-probe interval, seconds,"
                                        " or {interval, timeout, retries})"))
        self.rloc_probing, self.rloc_probe_options = probing, options
        self.pubsub = bool(data["mapping_system"].get("pubsub", False)) \
            if "mapping_system" in data else False
        self.ms_names, self.key_default = ms_names, key_default
        self.iid_default, self.reg_interval = iid_default, reg_interval

    def read_proxies(self):
        """The proxy xTRs and their EID space."""
        data, claim, iid_default = self.data, self.claim, self.iid_default
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
        self.proxies = proxies

    def read_sites(self):
        """The sites (their gateways are named here: the links, read next, name them)."""
        data, names, claim, lisp = self.data, self.names, self.claim, self.lisp
        routers, ms_names = self.routers, self.ms_names
        key_default, iid_default = self.key_default, self.iid_default
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
                if not re.search(r"\d", site.switch):     # Mininet needs a datapath ID
                    raise spec.error("switch", f"switch {site.switch!r}: a switch's name needs "
                                               f"a number (Mininet derives its datapath ID "
                                               f"from it), e.g. {site.switch}1")
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
        self.sites, self.sites_m = sites, sites_m

    def read_links(self):
        """The routed point-to-point links."""
        data, names, routers, core_delay = self.data, self.names, self.routers, self.core_delay
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
                    raise ends.error(i, f"link {lname}: unknown node {e!r} (routers, site "
                                        f"gateways, Map-Servers and proxy xTRs have links)")
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
            elif self.core_family == 6:
                raise spec.error("ends", f"link {lname}: give it a subnet6 (core family 6 "
                                         f"routes IPv6 only)")
            for y in links.values():
                if y.subnet.overlaps(subnet):
                    raise spec.error("subnet", f"link subnet {subnet} overlaps link {y.name}'s "
                                               f"{y.subnet}")
            for end in (a, b):
                if len(x.intf(end)) > 15:
                    raise spec.error("ends", f"interface name {x.intf(end)} is longer than 15 "
                                             f"characters: use shorter node names")
            links[lname] = x
        self.links, self.links_m = links, links_m

    def read_uplinks(self):
        """Every edge node reaches a router; the sites' RLOC priorities and weights."""
        names, routers, links, links_m = self.names, self.routers, self.links, self.links_m
        sites, sites_m = self.sites, self.sites_m
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
                raise sites_m[sname].error("rlocs", "rlocs: a mapping of uplink: "
                                                    "{priority:, weight:}")
            for up, te in rm.items():
                x = links.get(up)
                if x is None or site.gateway not in x.ends():
                    raise rm.error(up, f"rlocs: {up!r} is not an uplink of {site.gateway}")
                if not isinstance(te, Map):
                    raise rm.error(up, "rlocs: each uplink takes {priority: N, weight: N}")
                check_keys(te, ("priority", "weight"), (), f"rlocs {up}")
                site.rloc_te[up] = (int(_number(te, "priority", 0, 255)) if "priority" in te else 1,
                                    int(_number(te, "weight", 0, 100)) if "weight" in te else 100)

    def read_hosts(self):
        """The hosts and VMs, inside their sites' subnets."""
        data, claim, sites, sites_m = self.data, self.claim, self.sites, self.sites_m
        hosts_m = _mapping(data, "hosts", "hosts")
        hosts, keys = {}, {}                 # keys: host -> its key in the file (a group's)
        for hname, spec in hosts_m.items():
            _key_name(hosts_m, hname, "host")
            if not isinstance(spec, Map):
                raise hosts_m.error(hname, f"host {hname}: a mapping (site:, address:)")
            claim(hname, hosts_m, hname, "host")
            check_keys(spec, ("site", "address", "vm", "foreign", "count"), ("site", "address"),
                       f"host {hname}")
            if spec["site"] not in sites:
                raise spec.error("site", f"host {hname}: unknown site {spec['site']!r} "
                                         f"(sites: {', '.join(sites)})")
            site = sites[spec["site"]]
            first = _addrs(spec, "address")
            members = [(hname, first)]
            if "count" in spec:
                # a group: NAME1..NAMEn, each next address one up (steps may name the group)
                n = _number(spec, "count", 2, 250, "count")
                if n != int(n):
                    raise spec.error("count", f"host {hname}: count {n:g} is not a whole number")
                if len(hname) + len(str(int(n))) > 8:
                    raise hosts_m.error(hname, f"host {hname}: a group's members are named "
                                               f"{hname}1..{hname}{int(n)}, longer than 8 "
                                               f"characters: shorten the name")
                members = [(f"{hname}{i}", [ipaddress.ip_interface(
                    f"{a.ip + i - 1}/{a.network.prefixlen}") for a in first])
                    for i in range(1, int(n) + 1)]
                for name, _ in members:
                    claim(name, hosts_m, hname, "host")
                self.groups[hname] = [name for name, _ in members]
            for name, addresses in members:
                hosts[name] = self._host(hname, spec, site, name, addresses)
                keys[name] = hname
        all_addrs = {}
        for h in hosts.values():
            for a in h.addresses:
                if a.ip in all_addrs:
                    raise hosts_m[keys[h.name]].error("address", f"host {h.name}: {a.ip} is "
                                                                 f"also {all_addrs[a.ip]}'s address")
                all_addrs[a.ip] = h.name
        for s in sites.values():
            here = [h for h in hosts.values() if h.site == s.name]
            if not s.switch and len(here) > 1:
                raise sites_m.error(s.name, f"site {s.name} has {len(here)} hosts: give it a "
                                            f"switch")
            if not s.switch and any(h.vm for h in here):
                raise sites_m.error(s.name, f"site {s.name} has a VM: give it a switch (a VM "
                                            f"moves between switches)")
        self.hosts = hosts

    @staticmethod
    def _host(key, spec, site, name, addresses):
        """One host (or a group's member `name`) at `site`, its addresses checked."""
        h = Host(name, site.name, addresses, _bool(spec, "vm") if "vm" in spec else False,
                 _bool(spec, "foreign") if "foreign" in spec else False)
        who = name if name == key else f"{name} (of group {key})"
        for a in h.addresses:
            # the LAN's subnets and those of the xTR-held gateways
            subnets = site.lan + list(site.dynamic_gateways.values())
            same = [lan for lan in subnets if lan.version == a.version]
            # (a family the site's LAN has no subnet of is the hosts' own: no gateway)
            if same and not h.foreign and not any(a.network == lan.network for lan in same):
                nets = ", ".join(str(x.network) for x in subnets)
                raise spec.error("address", f"host {who}: {a} is outside site {site.name}'s "
                                            f"LAN ({nets}; foreign: true if on purpose)")
            if any(a.ip == lan.ip for lan in subnets):
                raise spec.error("address", f"host {who}: {a.ip} is the gateway's address")
            if a.version == 4 and a.network.prefixlen < 31 and a.ip in (
                    a.network.network_address, a.network.broadcast_address):
                raise spec.error("address", f"host {who}: {a.ip} is its subnet's network or "
                                            f"broadcast address")
        return h

    def read_dci(self):
        """The DCI between two data centers, if any."""
        data, sites = self.data, self.sites
        dci = None
        if "dci" in data:
            dm = _mapping(data, "dci", "dci")
            check_keys(dm, ("sites", "delay", "fhrp_isolation", "site_notify"), ("sites",),
                       "dci")
            ds = dm["sites"]
            if not isinstance(ds, Seq) or len(ds) != 2 or ds[0] == ds[1]:
                raise dm.error("sites", "dci: sites: [SITE, SITE], two data centers")
            for i, s in enumerate(ds):
                if s not in sites or not sites[s].switch:
                    raise ds.error(i, f"dci: {s!r} is not a site with a switch")
            dci = Dci(tuple(ds), _delay(dm, "delay") if "delay" in dm else 0.0,
                      _bool(dm, "fhrp_isolation") if "fhrp_isolation" in dm else True,
                      _bool(dm, "site_notify") if "site_notify" in dm else True)
        self.dci = dci

def build(data, path="?"):
    """A Lab from a lab file's merged Map (labfile.read); raises LabFileError."""
    check_keys(data, TOP_KEYS, ("lab", "routers", "links", "sites", "hosts"), "the lab")
    if not isinstance(data["lab"], str) or not data["lab"].strip():
        raise data.error("lab", "lab: give the lab a name")
    r = _Reader(data)
    for section in (r.read_routers, r.read_core, r.read_mapping_system, r.read_proxies,
                    r.read_sites, r.read_links, r.read_uplinks, r.read_hosts, r.read_dci):
        section()                            # in this order: each uses what came before
    lab = Lab(name=data["lab"], description=str(data.get("description", "")).strip(),
              file=path, lisp=r.lisp, routers=r.routers, routing=r.routing, links=r.links,
              sites=r.sites, hosts=r.hosts, groups=r.groups, dci=r.dci,
              map_servers=r.ms_names,
              proxies=r.proxies, timeline=[], register_interval=r.reg_interval,
              pubsub=r.pubsub, rloc_probing=r.rloc_probing,
              rloc_probe_options=r.rloc_probe_options,
              core_delay_ms=r.core_delay, extends=getattr(data, "extends", None),
              core_family=r.core_family)
    if "dataplane" in data:
        if data["dataplane"] not in ("python", "kernel"):
            raise data.error("dataplane", f"dataplane {data['dataplane']!r}: python or kernel "
                                          f"(the xTRs' data path)")
        lab.dataplane = data["dataplane"]
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
            known = {k for req, opt in STEP_KINDS.values() for k in req + opt}
            unknown = [k for k in m if k != "at" and k not in known]
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


def _host(m, key, lab, group=False):
    """m[key] names a host (or, with `group`, a host group: count: N)."""
    if m[key] in lab.groups:
        if not group:
            raise m.error(key, f"{key}: {m[key]!r} is a group of hosts; name one of them "
                               f"({m[key]}1..{lab.groups[m[key]][-1]}) here")
        return
    if m[key] not in lab.hosts:
        names = [n for n in lab.hosts if not any(n in g for g in lab.groups.values())]
        raise m.error(key, f"unknown host {m[key]!r} (hosts: "
                           f"{', '.join(names + list(lab.groups))})")


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
    def host(name):            # a group's members have the same families
        return lab.hosts[lab.members(name)[0]] if name in lab.groups else lab.hosts.get(name)

    for k in ("from", "to", "eid"):
        if k in m and host(m[k]) is not None:
            h = host(m[k])
            if fam is not None and not h.ip(fam):
                raise m.error("family", f"host {h.name} has no IPv{fam} address")
    ends = [host(m[k]) for k in ("from", "to") if k in m and host(m[k]) is not None]
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
        _host(m, "to", lab, group=args["traffic"] == "probes")    # probes: round robin
        if "rate" in m:
            _number(m, "rate", 1, 100000)
        if "duration" in m:
            _number(m, "duration", 0.1, 3600)
        for k, hi in (("flows", 20000), ("packets", 1000), ("first_sport", 65535)):
            if k in m:
                if args["traffic"] != "flows":
                    raise m.error(k, f"{k}: is for a flows traffic step")
                _number(m, k, 1, hi)
        name = Step(at, kind, args).flow_name()
        if any(s.kind == "traffic" and s.flow_name() == name for s in lab.timeline):
            raise m.error("traffic", f"a flow named {name!r} exists already: give this one a "
                                     f"name:")
    elif kind == "stop":
        flows = [s.flow_name() for s in lab.timeline if s.kind == "traffic"]
        if args["stop"] not in flows:
            raise m.error("stop", f"stop {args['stop']!r}: no traffic step before it starts a "
                                  f"flow of that name (flows: {', '.join(flows) or 'none'})")
    elif kind == "move":
        _host(m, "move", lab, group=True)        # a group's members move at once
        if not lab.hosts[lab.members(args["move"])[0]].vm:
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
                "convergence": ("below_ms",), "split": ("links", "weights"),
                "failover": ("primary", "backup"), "converged": ("eid", "below_ms")}[c]
        for k in need:
            if k not in m:
                raise m.error("check", f"check {c} needs {k}:")
        for k in ("from", "to"):
            if k in m:
                _host(m, k, lab, group=k == "to" and c in ("reachable", "unreachable"))
        if "node" in m:
            _node(m, "node", lab, lisp_only=c in ("map_cache", "counter"))
        if "eid" in m:
            _host(m, "eid", lab, group=True)
        if c == "converged":
            moved = [s for s in lab.moves() if set(lab.members(m["eid"]))
                     & set(lab.members(s.args["move"]))]
            if not moved:
                raise m.error("eid", f"check converged: no move of {m['eid']} before it")
            if not lab.lisp:
                raise m.error("check", "check converged: the client's ITR encapsulates to "
                                       "the new xTR (a LISP lab)")
        for k in ("by", "rloc"):
            if k in m and m[k] not in lab.daemon_configs("", ""):
                raise m.error(k, f"{k}: {m[k]!r} is not a LISP node of this lab")
        if "only" in m and (c != "registered" or m["only"] is not True or "by" not in m):
            raise m.error("only", "only: true (a registered check with by: NODE: no other "
                                  "xTR's RLOC is registered for the host)")
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
        if c == "split":
            links, weights = m["links"], m["weights"]
            if not isinstance(links, Seq) or len(links) < 2:
                raise m.error("links", "links: a list of two or more link names")
            for i, name in enumerate(links):
                if name not in lab.captures():
                    raise links.error(i, f"links: unknown link {name!r}")
            if not isinstance(weights, Seq) or len(weights) != len(links) or not all(
                    isinstance(w, (int, float)) and not isinstance(w, bool) and w >= 0
                    for w in weights) or not sum(weights):
                raise m.error("weights", "weights: one number (0 or more) per link, not all 0")
        elif any(k in m for k in ("links", "weights", "tolerance")):
            k = next(k for k in ("links", "weights", "tolerance") if k in m)
            raise m.error(k, f"{k}: is for a split check")
        if c == "failover":
            for k in ("primary", "backup"):
                if m[k] not in lab.links or lab.uplink_site(m[k]) is None:
                    raise m.error(k, f"{k}: {m[k]!r} is not a provider link (an xTR's uplink)")
            if not lab.rloc_probing:
                raise m.error("check", "check failover needs RLOC-probing "
                                       "(mapping_system: {rloc_probing: SECONDS})")
            if "within" in m:
                _number(m, "within", 0.1, 100, "within (probe intervals)")
        elif any(k in m for k in ("primary", "backup", "within")):
            k = next(k for k in ("primary", "backup", "within") if k in m)
            raise m.error(k, f"{k}: is for a failover check")
        if "tolerance" in m:
            _number(m, "tolerance", 0, 100)
        if "below_ms" in m:
            _number(m, "below_ms", 1, 600000)
        if "window" in m:
            _number(m, "window", 0.05, 600)

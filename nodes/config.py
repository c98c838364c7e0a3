"""The node daemon's config file: TOML in, a checked NodeConfig out, and the core built from it.

    cfg = load_config("xtr1.toml")   # parse and check every key; ConfigError if anything is off
    core = build_core(cfg)           # an Xtr (xtr, pxtr) or a MapServerResolver (msmr)

Every key is checked when the file is loaded, and a key this module does not know is an error
(a typo must not silently become a default). A bad file raises ConfigError, whose message is
one line naming the file, the key path and the reason:

    config xtr1.toml: rloc[0].address: "10.0.0.300" is not an IP address

docs/config.md describes every key; nodes/examples/ has one example per role.
"""
from __future__ import annotations

import difflib
import hashlib
import ipaddress
import json
import math
import os
import re
from dataclasses import dataclass, field

try:
    import tomllib
except ModuleNotFoundError:          # Python 3.10: the same parser, packaged as tomli
    import tomli as tomllib

from .lisp.auth import ALG_BY_NAME
from .lisp.etr import Etr, MapServerConfig
from .lisp.itr import Itr
from .lisp.probing import RlocProber
from .lisp.mapserver import MapServerResolver, Site
from .lisp.messages import Locator
from .lisp.replay import MODES as REPLAY_MODES
from .lisp.xtr import Xtr

ROLES = ("xtr", "msmr", "pxtr")
ALGORITHMS = tuple(name for name in ALG_BY_NAME if name != "none")
DEFAULT_ALGORITHM = "hmac-sha-256-128"
MISS_POLICIES = ("hold", "drop", "petr")
MAX_IID = 2 ** 24 - 1
MIN_MTU, MAX_MTU = 576, 65535
MIN_MTU_IPV6_EID = 1280 + 56     # an IPv6 link needs 1280; encapsulation takes up to 56
UNIX_PATH_MAX = 107              # bytes in sun_path, less the terminating NUL

# The top-level tables and arrays of tables each role may use, in the order they are read.
SECTIONS = {
    "xtr": ("node", "rloc", "site_rloc", "eid_prefix", "dynamic_eid", "map_server",
            "map_resolver", "etr", "itr", "dataplane", "tenant"),
    "pxtr": ("node", "rloc", "eid_space", "map_resolver", "itr", "dataplane"),
    "msmr": ("node", "msmr", "site"),
}
DETECT = ("any", "gateway")
ARRAYS = ("rloc", "site_rloc", "eid_prefix", "dynamic_eid", "map_server", "map_resolver", "eid_space",
          "site", "tenant")
ALL_SECTIONS = tuple(dict.fromkeys(s for role in ROLES for s in SECTIONS[role]))

# The keys of each table (docs/config.md describes every one of them).
KEYS = {
    "node": ("name", "role", "control_socket", "event_log"),
    "rloc": ("address", "priority", "weight"),
    "site_rloc": ("address", "priority", "weight"),
    "eid_prefix": ("prefix", "instance_id"),
    "dynamic_eid": ("prefix", "instance_id", "interface", "gateway", "gateway_mac", "detect",
                    "detect_mac"),
    "map_server": ("address", "secret", "key_id", "algorithm", "replay_protection"),
    "map_resolver": ("address",),
    "eid_space": ("prefix", "instance_id"),
    "etr": ("register_interval", "record_ttl", "away_ttl", "host_timeout", "want_map_notify",
            "proxy_reply",
            "smr_interval", "decap_known_rlocs_only", "site_notify_group",
            "site_notify_interface"),
    "itr": ("miss_policy", "petr", "map_request_rate", "map_request_interval",
            "max_pending_requests", "min_mapping_prefix_ipv4", "min_mapping_prefix_ipv6",
            "subscribe", "xtr_id", "rloc_probe_interval", "rloc_probe_timeout",
            "rloc_probe_retries"),
    "dataplane": ("tun", "lan_interfaces", "mtu", "proxy_arp", "path"),
    "tenant": ("instance_id", "lan_interfaces", "tun"),
    "msmr": ("registration_timeout", "map_request_rate", "map_request_rate_per_source",
             "replay_window"),
    "site": ("name", "accept_more_specifics", "replay_protection", "key", "prefix",
             "dynamic_eid"),
    "site.key": ("key_id", "secret", "algorithm"),
    "site.prefix": ("prefix", "instance_id"),
    "site.dynamic_eid": ("prefix", "instance_id"),
}


class ConfigError(Exception):
    """A config file that cannot be used. str(e) is one line: file, key path, reason."""

    def __init__(self, message, source=None, path=None, reason=None):
        super().__init__(" ".join(str(message).splitlines()))
        self.source = source
        self.path = path
        self.reason = reason


@dataclass
class RlocConfig:
    address: ipaddress.IPv4Address | ipaddress.IPv6Address
    priority: int = 1
    weight: int = 100


@dataclass
class DynamicEidConfig:
    iid: int
    prefix: ipaddress.IPv4Network | ipaddress.IPv6Network
    interface: str
    # The anycast gateway of the range's hosts, set up by the daemon on `interface`:
    gateway: ipaddress.IPv4Interface | ipaddress.IPv6Interface | None = None
    gateway_mac: str | None = None              # "00:00:5e:00:01:01" (lower case)
    # "any": every ARP / ND source counts; "gateway": only ARP requests for one of our
    # addresses and IPv4 frames sent to detect_mac (an extended subnet: see docs/config.md)
    detect: str = "any"
    detect_mac: str | None = None


@dataclass
class TenantConfig:
    """Another instance ID in the xTR's data plane: its own LAN interfaces, TUN and kernel
    table (its [[eid_prefix]]es carry its instance ID)."""
    iid: int
    lan_interfaces: list
    tun: str


@dataclass
class NodeConfig:
    name: str
    role: str                                   # "xtr" | "msmr" | "pxtr"
    control_socket: str = ""                    # "" -> /run/lisp-lab/{name}.sock
    event_log: str | None = None
    rlocs: list = field(default_factory=list)              # [RlocConfig]
    site_rlocs: list = field(default_factory=list)         # [RlocConfig]: the site's others
    eid_prefixes: list = field(default_factory=list)       # [(iid, network)]
    tenants: list = field(default_factory=list)            # [TenantConfig]
    dynamic_eids: list = field(default_factory=list)       # [DynamicEidConfig]
    map_servers: list = field(default_factory=list)        # [nodes.lisp.etr.MapServerConfig]
    map_resolvers: list = field(default_factory=list)      # [ip_address]
    sites: list = field(default_factory=list)              # [nodes.lisp.mapserver.Site]
    register_interval: float = 3.0              # seconds (RFC 9301 suggests 60)
    registration_timeout: float = 180.0         # seconds: RFC 9301 8.2 (labs set their own)
    record_ttl: int = 1440                      # minutes
    away_ttl: float | None = None               # seconds; None: record_ttl
    host_timeout: float | None = 600.0          # seconds a detected host may be quiet
    want_map_notify: bool = True
    proxy_reply: bool = False
    site_notify_group: object = None            # IPv4 multicast group on the LAN, or None
    site_notify_interface: str | None = None    # its interface (default: the first LAN)
    miss_policy: str = "hold"                   # hold, drop or petr (nodes/held.py)
    petr: object = None                         # ip_address or None
    decap_known_rlocs_only: bool = False
    tun: str = "lisp0"
    lan_interfaces: list = field(default_factory=list)
    mtu: int = 1500                             # outer path MTU
    proxy_arp: bool = False                     # answer ARP on the LAN for routed addresses
    dataplane_path: str = "python"              # "python" (TUN) or "kernel" (an xtr: default)
    smr_interval: float = 1.0                   # seconds
    eid_space: list = field(default_factory=list)          # [(iid, network)], pxtr
    # ITR limits (RFC 9301 section 5.3) and the Map-Reply check
    map_request_rate: float = 50.0              # Map-Requests a second from the ITR (0: none)
    map_request_interval: float = 1.0           # seconds between two for one destination
    max_pending_requests: int = 1000
    min_mapping_prefix: dict = field(default_factory=lambda: {4: 8, 6: 16})
    subscribe: bool = False                     # PubSub (RFC 9437): subscribe when requesting
    xtr_id: int | None = None                   # 128 bits; derived from the name by default
    rloc_probe_interval: float = 0.0            # seconds between RLOC-probes (0: none)
    rloc_probe_timeout: float = 1.0             # seconds a probe waits (at most the interval)
    rloc_probe_retries: int = 3                 # unanswered probes in a row: locator down
    # Map-Server / Map-Resolver limits on the Map-Requests answered (0: no limit)
    ms_map_request_rate: float = 1000.0
    ms_map_request_rate_per_source: float = 100.0
    replay_window: float = 3600.0               # seconds a "seen" nonce is remembered

    def __post_init__(self):
        if not self.control_socket:
            self.control_socket = f"/run/lisp-lab/{self.name}.sock"


# --- loading ---------------------------------------------------------------------------

def load_config(path) -> NodeConfig:
    """Read, parse and check the config file at `path`."""
    source = os.fspath(path)
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        reason = f"cannot read: {e.strerror or e}"
        raise ConfigError(f"config {source}: {reason}", source, None, reason) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        reason = f"not UTF-8 text (bad byte at offset {e.start})"
        raise ConfigError(f"config {source}: {reason}", source, None, reason) from None
    return parse_config(text, source)


def parse_config(text: str, source: str = "<string>") -> NodeConfig:
    """Parse and check config text; `source` names it in error messages."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        reason = f"TOML syntax error: {e}"
        raise ConfigError(f"config {source}: {reason}", source, None, reason) from None
    try:
        return _node_config(data)
    except _Invalid as e:
        raise ConfigError(f"config {source}: {e.path}: {e.reason}", source, e.path,
                          e.reason) from None


# --- building the protocol core ---------------------------------------------------------

def build_core(cfg: NodeConfig, rng=None):
    """The sans-I/O core for this node: an Xtr for "xtr" and "pxtr" (a proxy ITR: pitr=True,
    and an ETR that owns no EIDs and registers nothing), a MapServerResolver for "msmr".
    `rng` (e.g. random.Random(1)) makes nonces reproducible in tests."""
    if cfg.role == "msmr":
        return MapServerResolver(cfg.sites, name=cfg.name, rng=rng,
                                 registration_timeout=cfg.registration_timeout,
                                 map_request_rate=cfg.ms_map_request_rate,
                                 map_request_rate_per_source=cfg.ms_map_request_rate_per_source,
                                 replay_window=cfg.replay_window)
    if cfg.role not in ("xtr", "pxtr"):
        raise ConfigError(f"config of {cfg.name}: node.role: must be one of "
                          f"{', '.join(ROLES)}")
    proxy = cfg.role == "pxtr"
    locators = [Locator(r.address, r.priority, r.weight) for r in cfg.rlocs]
    itr = Itr([r.address for r in cfg.rlocs], cfg.map_resolvers, name=cfg.name,
              petr=cfg.petr, pitr=proxy,
              miss_policy="drop" if cfg.miss_policy == "hold" else cfg.miss_policy,
              max_pending=cfg.max_pending_requests, map_request_rate=cfg.map_request_rate,
              request_interval=cfg.map_request_interval,
              min_mapping_prefix=cfg.min_mapping_prefix, rng=rng,
              subscribe=(cfg.xtr_id, 0) if cfg.subscribe else None,
              rloc_probing=RlocProber(cfg.rloc_probe_interval, cfg.rloc_probe_timeout,
                                      cfg.rloc_probe_retries, rng=rng)
              if cfg.rloc_probe_interval else None)
    etr = Etr(locators,
              [] if proxy else cfg.eid_prefixes,
              [] if proxy else cfg.map_servers,
              name=cfg.name, register_interval=cfg.register_interval,
              record_ttl=cfg.record_ttl, want_map_notify=cfg.want_map_notify,
              away_ttl=cfg.away_ttl, host_timeout=cfg.host_timeout,
              proxy_reply=cfg.proxy_reply,
              dynamic_ranges=[] if proxy else [(d.iid, d.prefix) for d in cfg.dynamic_eids],
              smr_interval=cfg.smr_interval, rng=rng,
              xtr_id=cfg.xtr_id if cfg.subscribe else None,
              site_rlocs=[Locator(r.address, r.priority, r.weight) for r in cfg.site_rlocs],
              site_notify=None if proxy else cfg.site_notify_group)
    return Xtr(itr, etr, name=cfg.name)


# --- checking ----------------------------------------------------------------------------

class _Invalid(Exception):
    """One bad key: turned into a ConfigError (with the file name) by parse_config."""

    def __init__(self, path, reason):
        super().__init__(path, reason)
        self.path = path
        self.reason = reason


_REQUIRED = object()
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _show(value):
    """A value as it would be written in TOML, on one line and not too long."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        text = json.dumps(value, ensure_ascii=False)
        text = "".join(c if c.isprintable() else c.encode("unicode_escape").decode()
                       for c in text)
        return text if len(text) <= 60 else text[:56] + '..."'
    return str(value)


def _type_name(value):
    for kind, name in ((bool, "a boolean"), (int, "an integer"), (float, "a float"),
                       (str, "a string"), (list, "an array"), (dict, "a table")):
        if isinstance(value, kind):
            return name
    return "a date/time"


def _key_text(key):
    return key if _BARE_KEY.fullmatch(key) else _show(key)


def _join(path, key):
    return f"{path}.{_key_text(key)}" if path else _key_text(key)


# Names a student may reach for, and the key this format uses instead.
_ALIASES = {"key": "secret", "password": "secret", "iid": "instance_id", "vni": "instance_id",
            "instance": "instance_id", "alg": "algorithm", "eid": "prefix", "ip": "address",
            "interfaces": "lan_interfaces"}


def _unknown(path, key, known, what="key"):
    hint = [_ALIASES[key]] if _ALIASES.get(key) in known else difflib.get_close_matches(
        key, known, n=1, cutoff=0.6)
    if path is not None and key in ALL_SECTIONS:
        written = f"[[{key}]]" if key in ARRAYS else f"[{key}]"
        more = f" ({key} is a section of its own, written {written})"
    elif hint:
        more = f" (did you mean {hint[0]}?)"
    elif known:
        more = f" (expected one of: {', '.join(known)})"
    else:
        more = " (this table takes no keys)"
    return _Invalid(_join(path, key), f"unknown {what}{more}")


class _Table:
    """One TOML table being read: every key must be one of `keys`."""

    def __init__(self, data, path, keys):
        self.data = data
        self.path = path
        for key in data:
            if key not in keys:
                raise _unknown(path, key, keys)

    def path_of(self, key):
        return _join(self.path, key)

    def get(self, key, check, default=_REQUIRED):
        if key not in self.data:
            if default is _REQUIRED:
                raise _Invalid(self.path_of(key), "missing (required)")
            return default
        return check(self.data[key], self.path_of(key))


def _table(data, key):
    """The table `[key]` of the top level (empty when absent)."""
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise _Invalid(key, f"must be a table, written [{key}], not {_type_name(value)}")
    return _Table(value, key, KEYS[key])


def _array(data, key, path=None):
    """The array of tables `[[key]]` (empty when absent; inside the table at `path` when
    given) as a list of _Table."""
    full = _join(path, key)
    value = data.get(key, [])
    name = key if path is None else _dotted(path, key)
    keys = KEYS[name]
    written = f"[[{name}]]"
    if not isinstance(value, list):
        raise _Invalid(full, f"must be an array of tables, written {written}, "
                             f"not {_type_name(value)}")
    out = []
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            raise _Invalid(f"{full}[{i}]", f"must be a table, written {written}, "
                                           f"not {_type_name(item)}")
        out.append(_Table(item, f"{full}[{i}]", keys))
    return out


def _dotted(path, key):
    """site[1] + key -> site.key (how the array is written in TOML)."""
    return re.sub(r"\[\d+\]", "", path) + "." + key


# Checkers: (value, path) -> the value to keep, or raise _Invalid.

def _string(value, path):
    if not isinstance(value, str):
        raise _Invalid(path, f"must be a string, not {_type_name(value)}")
    return value


def _nonempty(value, path):
    if _string(value, path) == "":
        raise _Invalid(path, "must not be empty")
    return value


def _boolean(value, path):
    if not isinstance(value, bool):
        raise _Invalid(path, f"must be true or false, not {_type_name(value)}")
    return value


def _integer(low, high):
    def check(value, path):
        if isinstance(value, bool) or not isinstance(value, int):
            raise _Invalid(path, f"must be an integer, not {_type_name(value)}")
        if not low <= value <= high:
            raise _Invalid(path, f"{value} is out of range {low}-{high}")
        return value
    return check


_byte = _integer(0, 255)
_iid = _integer(0, MAX_IID)


def _seconds(value, path):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _Invalid(path, f"must be a number of seconds, not {_type_name(value)}")
    if not math.isfinite(value):
        raise _Invalid(path, f"must be a finite number of seconds, not {value}")
    if value <= 0:
        raise _Invalid(path, f"must be > 0 seconds, not {value}")
    return float(value)


def _seconds_or_off(value, path):
    """Seconds > 0, or 0 for "off"."""
    if not isinstance(value, bool) and isinstance(value, (int, float)) and value == 0:
        return 0.0
    return _seconds(value, path)


def _rate(value, path):
    """Messages a second: a number >= 0, where 0 means no limit."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _Invalid(path, f"must be a number of messages a second, not {_type_name(value)}")
    if not math.isfinite(value) or value < 0:
        raise _Invalid(path, f"must be a finite number >= 0 (0: no limit), not {value}")
    return float(value)


def _choice(options):
    def check(value, path):
        if not isinstance(value, str) or value not in options:
            raise _Invalid(path, f"must be one of {', '.join(options)}")
        return value
    return check


def _name(value, path):
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", _nonempty(value, path)):
        raise _Invalid(path, f"{_show(value)} is not a valid name (up to 64 letters, "
                             f"digits, \"-\", \"_\" or \".\", starting with a letter or digit)")
    return value


def _ifname(value, path):
    _nonempty(value, path)
    if (len(value.encode()) > 15 or value in (".", "..")
            or any(c in "/:" or c.isspace() for c in value)):
        raise _Invalid(path, f"{_show(value)} is not a valid interface name (1-15 "
                             f"characters, no \"/\", \":\" or spaces)")
    return value


def _socket_path(value, path):
    if len(_nonempty(value, path).encode()) > UNIX_PATH_MAX:
        raise _Invalid(path, f"is longer than {UNIX_PATH_MAX} bytes, the limit of a Unix "
                             f"socket path")
    return value


def _multicast4(value, path):
    """An IPv4 multicast group (the site-local Map-Notify's, e.g. 239.255.43.42)."""
    _string(value, path)
    try:
        ip = ipaddress.IPv4Address(value)
    except ValueError:
        raise _Invalid(path, f"{_show(value)} is not an IPv4 address") from None
    if not ip.is_multicast:
        raise _Invalid(path, f"{value} is not a multicast group (224.0.0.0/4)")
    return ip


def _address(value, path):
    """An RLOC-space address: a unicast IPv4 or IPv6 address a packet can be sent to."""
    _string(value, path)
    try:
        ip = ipaddress.ip_address(value)
    except ValueError:
        raise _Invalid(path, f"{_show(value)} is not an IP address") from None
    _check_usable(ip, value, path, "locator")
    return ip


def _check_usable(ip, value, path, role):
    """Refuse scoped, unspecified, multicast, loopback and link-local addresses."""
    if getattr(ip, "scope_id", None):
        raise _Invalid(path, f"{_show(value)} has a scope (%...); use a global address")
    for test, what in (("is_unspecified", "the unspecified address"),
                       ("is_multicast", "a multicast address"),
                       ("is_loopback", "a loopback address"),
                       ("is_link_local", "a link-local address")):
        if getattr(ip, test):
            raise _Invalid(path, f"{ip} is {what}, not a usable {role}")


def _prefix(value, path):
    _string(value, path)
    try:
        loose = ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise _Invalid(path, f"{_show(value)} is not an IP prefix") from None
    if "/" not in value:
        raise _Invalid(path, f"{_show(value)} has no prefix length (write e.g. "
                             f"\"{loose.network_address}/{loose.max_prefixlen}\")")
    try:
        return ipaddress.ip_network(value)
    except ValueError:
        raise _Invalid(path, f"{_show(value)} has host bits set (the prefix is "
                             f"{loose})") from None


def _gateway(value, path):
    """A gateway: an address of the LAN with its prefix length, "10.10.0.1/24"."""
    _string(value, path)
    try:
        iface = ipaddress.ip_interface(value)
        if "/" not in value:
            hint = 64 if iface.version == 6 else 24
            raise _Invalid(path, f"{_show(value)} has no prefix length (write the length of "
                                 f"its subnet, e.g. \"{iface.ip}/{hint}\")")
    except ValueError:
        raise _Invalid(path, f"{_show(value)} is not an address with a prefix length "
                             f"(e.g. \"10.10.0.1/24\")") from None
    ip, network = iface.ip, iface.network
    _check_usable(ip, value, path, "gateway")
    if network.num_addresses > 2:
        if ip == network.network_address:
            raise _Invalid(path, f"{iface} is the network address of {network}, not a "
                                 f"host address")
        if ip.version == 4 and ip == network.broadcast_address:
            raise _Invalid(path, f"{iface} is the broadcast address of {network}, not a "
                                 f"host address")
    return iface


_MAC = re.compile(r"[0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2}){5}")


def _mac(value, path):
    """An Ethernet unicast MAC address, "00:00:5e:00:01:01"; kept in lower case."""
    _string(value, path)
    if not _MAC.fullmatch(value):
        raise _Invalid(path, f"{_show(value)} is not a MAC address (six hex bytes with "
                             f"colons, e.g. \"00:00:5e:00:01:01\")")
    octets = bytes.fromhex(value.replace(":", ""))
    if octets[0] & 1:
        raise _Invalid(path, f"{value} is a multicast MAC address (the first byte is odd), "
                             f"not usable for a gateway")
    if not any(octets):
        raise _Invalid(path, f"{value} is the all-zero MAC address, not usable for a gateway")
    return value.lower()


def _family(ip):
    return f"IPv{ip.version}"


# --- the sections -------------------------------------------------------------------------

def _node_config(data):
    for key in data:
        if key not in ALL_SECTIONS:
            raise _unknown(None, key, ALL_SECTIONS, "section")
    if "node" not in data:
        raise _Invalid("node", "missing (required): every config starts with a [node] "
                               "table holding name and role")
    node = _table(data, "node")
    name = node.get("name", _name)
    role = node.get("role", _choice(ROLES))
    for key in data:
        if key not in SECTIONS[role]:
            raise _Invalid(key, f"not used by role {role} (its sections are: "
                                f"{', '.join(SECTIONS[role])})")
    cfg = NodeConfig(name, role,
                     control_socket=node.get("control_socket", _socket_path, ""),
                     event_log=node.get("event_log", _nonempty, None))
    if role == "msmr":
        _msmr(data, cfg)
    else:
        _xtr(data, cfg)
    return cfg


def _no_duplicates(items, key_of, path_of):
    seen = {}
    for i, item in enumerate(items):
        key = key_of(item)
        if key in seen:
            raise _Invalid(path_of(i), f"duplicate of {path_of(seen[key])}")
        seen[key] = i


def _eid_entries(data, section):
    """[[eid_prefix]] or [[eid_space]]: (iid, prefix) pairs, each listed once."""
    out = [(t.get("instance_id", _iid, 0), t.get("prefix", _prefix))
           for t in _array(data, section)]
    _no_duplicates(out, lambda x: x, lambda i: f"{section}[{i}].prefix")
    return out


def _xtr(data, cfg):
    role = cfg.role
    for t in _array(data, "rloc"):
        cfg.rlocs.append(RlocConfig(t.get("address", _address), t.get("priority", _byte, 1),
                                    t.get("weight", _byte, 100)))
    if not cfg.rlocs:
        raise _Invalid("rloc", f"role {role} needs at least one [[rloc]]")
    _no_duplicates(cfg.rlocs, lambda r: r.address, lambda i: f"rloc[{i}].address")
    families = {r.address.version for r in cfg.rlocs}

    def reachable(ip, path):
        if ip.version not in families:
            raise _Invalid(path, f"{ip} is {_family(ip)}, but no [[rloc]] is "
                                 f"{_family(ip)}")
        return ip

    if role == "xtr":
        # The site's other xTRs' locators, answered with beside ours (docs/config.md).
        own = {r.address for r in cfg.rlocs}
        for i, t in enumerate(_array(data, "site_rloc")):
            address = t.get("address", _address)
            if address in own:
                raise _Invalid(f"site_rloc[{i}].address", f"{address} is one of our own "
                                                          "[[rloc]]s")
            cfg.site_rlocs.append(RlocConfig(address, t.get("priority", _byte, 1),
                                             t.get("weight", _byte, 100)))
        _no_duplicates(cfg.site_rlocs, lambda r: r.address,
                       lambda i: f"site_rloc[{i}].address")
        cfg.eid_prefixes = _eid_entries(data, "eid_prefix")
        for t in _array(data, "dynamic_eid"):
            cfg.dynamic_eids.append(DynamicEidConfig(t.get("instance_id", _iid, 0),
                                                     t.get("prefix", _prefix),
                                                     t.get("interface", _ifname),
                                                     t.get("gateway", _gateway, None),
                                                     t.get("gateway_mac", _mac, None),
                                                     t.get("detect", _choice(DETECT), "any"),
                                                     t.get("detect_mac", _mac, None)))
            d = cfg.dynamic_eids[-1]
            if d.detect == "gateway" and (d.detect_mac or d.gateway_mac) is None:
                raise _Invalid(f"dynamic_eid[{len(cfg.dynamic_eids) - 1}].detect_mac",
                               'detect = "gateway" needs detect_mac (or gateway_mac): the '
                               "MAC whose frames show a host is local")
        _no_duplicates(cfg.dynamic_eids, lambda d: (d.iid, d.prefix),
                       lambda i: f"dynamic_eid[{i}].prefix")
        _check_gateways(cfg.dynamic_eids)
        for t in _array(data, "map_server"):
            cfg.map_servers.append(MapServerConfig(
                reachable(t.get("address", _address), t.path_of("address")),
                t.get("secret", _nonempty), t.get("key_id", _byte, 0),
                ALG_BY_NAME[t.get("algorithm", _choice(ALGORITHMS), DEFAULT_ALGORITHM)],
                t.get("replay_protection", _choice(REPLAY_MODES), "increasing")))
        _no_duplicates(cfg.map_servers, lambda m: m.address,
                       lambda i: f"map_server[{i}].address")
        if (cfg.eid_prefixes or cfg.dynamic_eids) and not cfg.map_servers:
            raise _Invalid("map_server", "an xtr with [[eid_prefix]] or [[dynamic_eid]] "
                                         "needs at least one [[map_server]] to register with")
    else:
        cfg.eid_space = _eid_entries(data, "eid_space")

    for t in _array(data, "map_resolver"):
        cfg.map_resolvers.append(reachable(t.get("address", _address), t.path_of("address")))
    if not cfg.map_resolvers:
        raise _Invalid("map_resolver", f"role {role} needs at least one [[map_resolver]]")
    _no_duplicates(cfg.map_resolvers, lambda a: a, lambda i: f"map_resolver[{i}].address")

    if role == "xtr":
        etr = _table(data, "etr")
        cfg.register_interval = etr.get("register_interval", _seconds, cfg.register_interval)
        cfg.record_ttl = etr.get("record_ttl", _integer(1, 2 ** 32 - 1), cfg.record_ttl)
        cfg.away_ttl = etr.get("away_ttl", _seconds, None)
        timeout = etr.get("host_timeout", _seconds_or_off, 600.0)
        cfg.host_timeout = timeout or None
        cfg.want_map_notify = etr.get("want_map_notify", _boolean, cfg.want_map_notify)
        cfg.proxy_reply = etr.get("proxy_reply", _boolean, cfg.proxy_reply)
        cfg.smr_interval = etr.get("smr_interval", _seconds, cfg.smr_interval)
        cfg.decap_known_rlocs_only = etr.get("decap_known_rlocs_only", _boolean,
                                             cfg.decap_known_rlocs_only)
        cfg.site_notify_group = etr.get("site_notify_group", _multicast4, None)
        cfg.site_notify_interface = etr.get("site_notify_interface", _ifname, None)

    itr = _table(data, "itr")
    cfg.miss_policy = itr.get("miss_policy", _choice(MISS_POLICIES), cfg.miss_policy)
    cfg.petr = itr.get("petr", lambda v, p: reachable(_address(v, p), p), None)
    if cfg.miss_policy == "petr" and cfg.petr is None:
        raise _Invalid("itr.petr", 'missing: itr.miss_policy "petr" needs the address of '
                                   'a proxy ETR')
    cfg.map_request_rate = itr.get("map_request_rate", _rate, cfg.map_request_rate)
    cfg.map_request_interval = itr.get("map_request_interval", _seconds,
                                       cfg.map_request_interval)
    cfg.max_pending_requests = itr.get("max_pending_requests", _integer(1, 1_000_000),
                                       cfg.max_pending_requests)
    cfg.min_mapping_prefix = {4: itr.get("min_mapping_prefix_ipv4", _integer(0, 32), 8),
                              6: itr.get("min_mapping_prefix_ipv6", _integer(0, 128), 16)}
    cfg.subscribe = itr.get("subscribe", _boolean, False)
    cfg.xtr_id = itr.get("xtr_id", _xtr_id, None)
    if cfg.subscribe and cfg.xtr_id is None:
        cfg.xtr_id = default_xtr_id(cfg.name)
    cfg.rloc_probe_interval = itr.get("rloc_probe_interval", _seconds_or_off, 0.0)
    cfg.rloc_probe_timeout = itr.get("rloc_probe_timeout", _seconds, 1.0)
    cfg.rloc_probe_retries = itr.get("rloc_probe_retries", _integer(1, 100), 3)

    dp = _table(data, "dataplane")
    cfg.tun = dp.get("tun", _ifname, cfg.tun)
    lans = dp.get("lan_interfaces", _string_list(_ifname), None)
    if lans is None:
        lans = list(dict.fromkeys(d.interface for d in cfg.dynamic_eids))
    else:
        _no_duplicates(lans, lambda x: x, lambda i: f"dataplane.lan_interfaces[{i}]")
        for i, d in enumerate(cfg.dynamic_eids):
            if d.interface not in lans:
                raise _Invalid(f"dynamic_eid[{i}].interface",
                               f"{_show(d.interface)} is not in dataplane.lan_interfaces")
    if cfg.tun in lans:
        raise _Invalid("dataplane.tun", f"{_show(cfg.tun)} is also a LAN interface")
    cfg.lan_interfaces = lans
    cfg.mtu = dp.get("mtu", _integer(MIN_MTU, MAX_MTU), cfg.mtu)
    cfg.proxy_arp = dp.get("proxy_arp", _boolean, cfg.proxy_arp)
    cfg.dataplane_path = dp.get("path", _choice(("python", "kernel")),
                                _default_path(cfg.role))
    if cfg.dataplane_path == "kernel" and cfg.role != "xtr":
        raise _Invalid("dataplane.path", '"kernel" is for an xtr only (a pxtr uses "python")')
    if cfg.proxy_arp and not lans:
        raise _Invalid("dataplane.proxy_arp", "needs a LAN interface to answer on "
                                              "(dataplane.lan_interfaces, or the interface "
                                              "of a [[dynamic_eid]])")
    if role == "xtr":
        _tenants(data, cfg)
    eids = [p for _, p in cfg.eid_prefixes + cfg.eid_space]
    eids += [d.prefix for d in cfg.dynamic_eids]
    if cfg.mtu < MIN_MTU_IPV6_EID and any(p.version == 6 for p in eids):
        raise _Invalid("dataplane.mtu", f"{cfg.mtu} is too small for IPv6 EIDs (at least "
                                        f"{MIN_MTU_IPV6_EID}: 1280 inside, 56 of "
                                        f"encapsulation)")


def dataplane_iid(cfg):
    """The instance ID of the data plane's own TUN: the first [[eid_prefix]]'s, else the
    first [[dynamic_eid]]'s or [[eid_space]]'s, else 0."""
    return (cfg.eid_prefixes[0][0] if cfg.eid_prefixes else
            cfg.dynamic_eids[0].iid if cfg.dynamic_eids else
            cfg.eid_space[0][0] if cfg.eid_space else 0)


def _tenants(data, cfg):
    """[[tenant]]: another instance ID in the data plane, with its own LAN interfaces."""
    own = dataplane_iid(cfg)
    taken = set(cfg.lan_interfaces) | {cfg.tun}
    for i, t in enumerate(_array(data, "tenant")):
        iid = t.get("instance_id", _integer(0, 0xFFFFFF))
        if iid == own:
            raise _Invalid(f"tenant[{i}].instance_id", f"{iid} is the data plane's own "
                                                       "instance ID (the first [[eid_prefix]]'s)")
        if any(x.iid == iid for x in cfg.tenants):
            raise _Invalid(f"tenant[{i}].instance_id", f"{iid} has a [[tenant]] already")
        lans = t.get("lan_interfaces", _string_list(_ifname))
        tun = t.get("tun", _ifname, f"lisp{iid}")
        if not lans:
            raise _Invalid(f"tenant[{i}].lan_interfaces", "give the tenant's LAN interfaces")
        for j, name in enumerate(lans + [tun]):
            if name in taken:
                where = (f"tenant[{i}].lan_interfaces[{j}]" if j < len(lans)
                         else f"tenant[{i}].tun")
                raise _Invalid(where, f"{_show(name)} is used already (another tenant, the "
                                      f"data plane's TUN or its LAN interfaces)")
            taken.add(name)
        if any(d.iid == iid for d in cfg.dynamic_eids):
            raise _Invalid(f"tenant[{i}].instance_id", f"a tenant has static EID prefixes only "
                                                       f"([[dynamic_eid]] with instance ID {iid})")
        cfg.tenants.append(TenantConfig(iid, lans, tun))


def default_xtr_id(name):
    """A node's 128-bit xTR-ID when its config names none: from its name, so that it is
    the same across restarts (RFC 9301 section 5.6: it identifies the xTR, not a run)."""
    return int.from_bytes(hashlib.sha256(f"lisp-lab xTR {name}".encode()).digest()[:16], "big")


def _xtr_id(value, path):
    if not isinstance(value, str) or not re.fullmatch(r"[0-9a-fA-F]{1,32}", value) \
            or not int(value, 16):
        raise _Invalid(path, f"{_show(value)} is not an xTR-ID (1 to 32 hex digits, not 0)")
    return int(value, 16)


def _default_path(role):
    """`dataplane.path` when the file does not say: for an xtr "kernel" (the tc-BPF fast
    path where this kernel runs it; where it does not, the daemon says why in one line and
    the Python path carries everything), or the value of $LISP_LAB_DATAPLANE_PATH (to run a
    whole test suite or lab on one path); "python" for the other roles."""
    if role != "xtr":
        return "python"
    value = os.environ.get("LISP_LAB_DATAPLANE_PATH", "")
    if value and value not in ("python", "kernel"):
        raise _Invalid("dataplane.path", f"LISP_LAB_DATAPLANE_PATH={value!r} must be one of "
                                         f"python, kernel")
    return value or "kernel"


def _check_gateways(dynamic_eids):
    """A gateway serves its range (same family, overlapping subnet); an interface has one
    MAC, and one prefix length per gateway address."""
    macs, addresses = {}, {}          # interface -> (mac, i); (interface, ip) -> (iface, i)
    for i, d in enumerate(dynamic_eids):
        gw = d.gateway
        if gw is not None:
            path = f"dynamic_eid[{i}].gateway"
            if gw.version != d.prefix.version:
                raise _Invalid(path, f"{gw} is {_family(gw)}, but dynamic_eid[{i}].prefix "
                                     f"{d.prefix} is {_family(d.prefix)}")
            if not gw.network.overlaps(d.prefix):
                raise _Invalid(path, f"{gw} is not on the range {d.prefix} (the hosts' "
                                     f"gateway must be on their subnet)")
            seen = addresses.setdefault((d.interface, gw.ip), (gw, i))
            if seen[0] != gw:
                raise _Invalid(path, f"{gw} differs from dynamic_eid[{seen[1]}].gateway "
                                     f"{seen[0]} (one address, one prefix length)")
        if d.gateway_mac is not None:
            seen = macs.setdefault(d.interface, (d.gateway_mac, i))
            if seen[0] != d.gateway_mac:
                raise _Invalid(f"dynamic_eid[{i}].gateway_mac",
                               f"{d.gateway_mac} differs from dynamic_eid[{seen[1]}]."
                               f"gateway_mac {seen[0]} on the same interface "
                               f"{_show(d.interface)} (an interface has one MAC)")


def _string_list(check):
    def check_list(value, path):
        if not isinstance(value, list):
            raise _Invalid(path, f"must be an array of strings, not {_type_name(value)}")
        return [check(v, f"{path}[{i}]") for i, v in enumerate(value)]
    return check_list


def _msmr(data, cfg):
    ms = _table(data, "msmr")
    cfg.registration_timeout = ms.get("registration_timeout", _seconds,
                                      cfg.registration_timeout)
    cfg.ms_map_request_rate = ms.get("map_request_rate", _rate, cfg.ms_map_request_rate)
    cfg.ms_map_request_rate_per_source = ms.get("map_request_rate_per_source", _rate,
                                                cfg.ms_map_request_rate_per_source)
    cfg.replay_window = ms.get("replay_window", _seconds, cfg.replay_window)
    owner = {}                     # (iid, prefix) -> path of the first site prefix
    for t in _array(data, "site"):
        name = t.get("name", _name)
        keys = {}
        for kt in _array(t.data, "key", t.path):
            key_id = kt.get("key_id", _byte, 0)
            secret = kt.get("secret", _nonempty)
            kt.get("algorithm", _choice(ALGORITHMS), DEFAULT_ALGORITHM)
            if key_id in keys:
                raise _Invalid(kt.path_of("key_id"),
                               f"{key_id} is used twice in site {_show(name)}")
            keys[key_id] = secret
        if not keys:
            raise _Invalid(t.path_of("key"), "a site needs at least one [[site.key]]")
        prefixes = []
        for pt in _array(t.data, "prefix", t.path):
            entry = (pt.get("instance_id", _iid, 0), pt.get("prefix", _prefix))
            if entry in owner:
                raise _Invalid(pt.path_of("prefix"), f"duplicate of {owner[entry]}")
            owner[entry] = pt.path_of("prefix")
            prefixes.append(entry)
        if not prefixes:
            raise _Invalid(t.path_of("prefix"), "a site needs at least one [[site.prefix]]")
        more = t.get("accept_more_specifics", _boolean, False)
        ranges = []
        for rt in _array(t.data, "dynamic_eid", t.path):
            iid, prefix = rt.get("instance_id", _iid, 0), rt.get("prefix", _prefix)
            if not any(iid == p_iid and prefix.version == p.version and prefix.subnet_of(p)
                       for p_iid, p in prefixes):
                raise _Invalid(rt.path_of("prefix"), f"[{iid}]{prefix} is not inside a "
                                                     f"[[site.prefix]] of site {_show(name)}")
            if (iid, prefix) in ranges:
                raise _Invalid(rt.path_of("prefix"), f"[{iid}]{prefix} is listed twice")
            ranges.append((iid, prefix))
        if ranges and not more:
            raise _Invalid(t.path_of("dynamic_eid"), "needs accept_more_specifics = true "
                                                     "(hosts in the ranges register more-"
                                                     "specific prefixes)")
        cfg.sites.append(Site(name, keys, prefixes, more, ranges,
                              t.get("replay_protection", _choice(REPLAY_MODES),
                                    "increasing")))
    if not cfg.sites:
        raise _Invalid("site", "role msmr needs at least one [[site]]")
    _no_duplicates(cfg.sites, lambda x: x.name, lambda i: f"site[{i}].name")

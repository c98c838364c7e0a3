"""What the state machines ask the outside world to do ("event in, actions out").

A state machine never touches a socket, a route or a clock. It returns a list of these
actions, and the daemon carries them out: it encodes and sends messages, programs kernel
routes, and writes log events.
"""
from dataclasses import dataclass, field


@dataclass
class SendControl:
    """Send `message` (a nodes.lisp.messages object, already signed if it needs to be) in a
    UDP datagram to `dst` (an RLOC) on `dport`. `data`, when set, is that message already
    encoded (equal to encode(message))."""
    dst: object
    message: object
    dport: int = 4342
    sport: int = 4342
    data: bytes = None    # the encoded message, when the core already has it

    def wire(self):
        """The bytes to send."""
        if self.data is not None:
            return self.data
        from .messages import encode
        return encode(self.message)


@dataclass
class RouteAdd:
    """Steer traffic for (iid, prefix): kind is "lisp" (into the TUN: remote EIDs and
    map-cache entries), "local" (a detected host EID, toward the LAN), or "away" (a host EID
    that moved: into the TUN, so its traffic is re-encapsulated to the new RLOC)."""
    iid: int
    prefix: object
    kind: str


@dataclass
class RouteDel:
    iid: int
    prefix: object
    kind: str


@dataclass
class ProbeHost:
    """Ask the LAN whether host `ip` (of a dynamic-EID range) is there: an ARP request or a
    neighbour solicitation on the range's interface. Its answer is a frame from the host,
    which detects it. For traffic that arrives for a host this ETR has not detected (yet,
    or again after a restart: a host that only receives never announces itself)."""
    iid: int
    ip: object


@dataclass
class Event:
    """A structured log event (one JSON line in the daemon's log)."""
    name: str
    fields: dict = field(default_factory=dict)


@dataclass
class Decision:
    """What to do with one data packet: verb is "encap" (to `rloc`), "native" (forward
    without LISP), "deliver" (it is for a local EID), or "drop" (with `reason`)."""
    verb: str
    rloc: object = None
    reason: str = ""

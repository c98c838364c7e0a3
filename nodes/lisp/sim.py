"""An in-memory network for the state machines: no sockets, no clock.

Every message goes through the real codec (encode, then the receiver decodes the bytes), so
what the simulation shows is what would be on the wire. Used by the tests and handy for
students who want to watch a VM move message by message:

    net = SimNetwork()
    net.attach(rloc, node)               # node has receive(raw, src, now, port)
    net.deliver(src_rloc, actions)       # carry out SendControl actions, recursively
    net.trace                            # [(src, dst, "Map-Register"), ...]
"""
from .actions import SendControl
from .messages import (EncapsulatedControl, MapNotify, MapNotifyAck, MapRegister, MapReply,
                       MapRequest)


def describe(msg):
    """A short name for a message: SMR and SMR-invoked requests are told apart."""
    if isinstance(msg, EncapsulatedControl):
        return "ECM(" + describe(msg.message) + ")"
    if isinstance(msg, MapRequest):
        if msg.smr:
            return "SMR"
        return "Map-Request(smr-invoked)" if msg.smr_invoked else "Map-Request"
    for cls, name in ((MapReply, "Map-Reply"), (MapRegister, "Map-Register"),
                      (MapNotifyAck, "Map-Notify-Ack"), (MapNotify, "Map-Notify")):
        if isinstance(msg, cls):
            return name
    return type(msg).__name__


class SimNetwork:
    def __init__(self):
        self.nodes = {}
        self.now = 0.0
        self.trace = []         # (src, dst, description)
        self.other_actions = []  # (node address, action) for everything but SendControl

    def attach(self, address, node):
        self.nodes[address] = node

    def deliver(self, src, actions):
        """Carry out `actions` emitted by the node at `src`, breadth first, until quiet."""
        queue = [(src, a) for a in actions]
        while queue:
            origin, action = queue.pop(0)
            if not isinstance(action, SendControl):
                self.other_actions.append((origin, action))
                continue
            raw = action.wire()
            self.trace.append((origin, action.dst, describe(action.message)))
            node = self.nodes.get(action.dst)
            if node is not None:
                queue += [(action.dst, a)
                          for a in node.receive(raw, origin, self.now, action.sport)]

    def tick(self, now):
        self.now = now
        for address, node in list(self.nodes.items()):
            self.deliver(address, node.tick(now))

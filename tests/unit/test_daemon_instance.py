"""One daemon per node (issue 9, item 5): the claim on the network namespace
(nodes.daemon.claim_namespace), without root: an abstract Unix socket of a test's own."""
import os

import pytest

from nodes.daemon import AlreadyRunning, claim_namespace


def test_a_second_claim_is_refused_naming_the_holder_and_freed_at_close():
    name = b"\0lisp-lab-test-claim-%d" % os.getpid()
    first = claim_namespace(name)
    try:
        with pytest.raises(AlreadyRunning) as e:
            claim_namespace(name)
        message = str(e.value)
        assert "\n" not in message
        assert "already running" in message and f"pid {os.getpid()} " in message, message
        assert "pytest" in message                   # the holder's command line
    finally:
        first.close()
    claim_namespace(name).close()                    # free again once the holder is gone


def test_a_send_to_no_address_is_counted_as_a_control_error_not_raised():
    """The core once asked to send a Map-Reply to None (a fuzzed request with no IP
    ITR-RLOC): the exception escaped into asyncio's receive callback and printed a
    traceback. A send with no valid destination is a core bug: counted and logged."""
    from collections import Counter

    from nodes.daemon import Daemon
    from nodes.lisp.actions import SendControl
    from nodes.lisp.messages import MapReply

    written = []

    class Log:
        def write(self, name, **fields):
            written.append((name, fields))

    d = Daemon.__new__(Daemon)
    d.io_counters, d.log, d.transports = Counter(), Log(), {}
    d.send(SendControl(None, MapReply(nonce=1, records=[])))
    assert d.io_counters["control_errors"] == 1 and d.io_counters["control_sent"] == 0
    assert written[0][0] == "control_error" and "None" in written[0][1]["error"]

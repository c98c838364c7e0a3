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

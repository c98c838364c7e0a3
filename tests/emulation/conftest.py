"""Fixtures of the emulation tests (they run as root; tests/conftest.py skips them otherwise).

Every Lab a test builds uses a run id starting with RUN_PREFIX and node names of its own, so
that a failing test can be cleaned up after (the session finaliser below removes any run
record of ours that is left) and so that it does not collide with other Mininet runs.
"""
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lab.cleanup import pid_alive
from lab.emu import wait_for

ROOT = Path(__file__).resolve().parents[2]
RUN_PREFIX = "pytest-emu-"


def link_table():
    """{name: ifindex} of the interfaces of the root namespace, from `ip -o link`."""
    out = subprocess.run(["ip", "-o", "link", "show"], check=True, text=True,
                         stdout=subprocess.PIPE).stdout
    table = {}
    for line in out.splitlines():
        index, name = line.split(":", 2)[:2]
        table[name.strip().split("@")[0]] = int(index)
    return table


def other_runs():
    """Records of lab runs in progress in other processes (other people's tests, a demo):
    while one exists, the machine's interfaces and sysctls may change under our feet."""
    from lab import cleanup
    return [r for _, r in cleanup.read_records()
            if r and cleanup.run_is_live(r) and r["owner"]["pid"] != os.getpid()]


def snapshot():
    """(interfaces, sysctls) before a test: the interfaces of the root namespace except those
    of runs in progress elsewhere (they may come and go), and the bridge-nf-call sysctls,
    or None for them when another run holds them at 0."""
    others = other_runs()
    theirs = {i["name"] for r in others for i in r.get("interfaces", [])}
    links = {n: i for n, i in link_table().items() if n not in theirs}
    return links, (None if others else read_sysctls())


def sysctls_restored(expected):
    """The sysctls are back to `expected`, unless another run is in progress (then they are
    its business) or `expected` is unknown (None)."""
    return expected is None or bool(other_runs()) or read_sysctls() == expected






def read_sysctls():
    from lab.cleanup import read_sysctls as read
    return read()


def two_host_topo(h1, h2, switch, ip1=None, ip2=None, **linkopts):
    """A Topo of two hosts on one switch (a LinuxBridge under the Lab)."""
    from mininet.topo import Topo

    class TwoHosts(Topo):
        def build(self):
            s = self.addSwitch(switch)
            self.addLink(self.addHost(h1, **({"ip": ip1} if ip1 else {})), s, **linkopts)
            self.addLink(self.addHost(h2, **({"ip": ip2} if ip2 else {})), s, **linkopts)

    return TwoHosts()


@pytest.fixture
def emu():
    """The helpers above, for the tests (conftest modules are not imported by name)."""
    from types import SimpleNamespace
    return SimpleNamespace(link_table=link_table, wait_for=wait_for, pid_alive=pid_alive,
                           snapshot=snapshot, sysctls_restored=sysctls_restored,
                           other_runs=other_runs,
                           read_sysctls=read_sysctls, two_host_topo=two_host_topo,
                           run_id=lambda name: f"{RUN_PREFIX}{name}-{os.getpid()}-"
                                               f"{time.monotonic_ns() % 10**6}",
                           root=ROOT)


@pytest.fixture
def python():
    """The interpreter running the tests (the venv's), for programs started in hosts."""
    return sys.executable


@pytest.fixture
def child_env():
    """Environment for Python programs started inside hosts: the project importable."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    return env


@pytest.fixture(scope="session", autouse=True)
def _leave_the_machine_clean():
    """Whatever a failing test left behind (its run record names it) is removed at the end."""
    yield
    from lab import cleanup
    for _path, record in cleanup.read_records():
        if record and str(record.get("run_id", "")).startswith(RUN_PREFIX) \
                and not (cleanup.run_is_live(record) and record["owner"]["pid"] != os.getpid()):
            cleanup.clean_record(record, verbose=True)
    cleanup.restore_bridge_netfilter(None)

"""Whether this kernel can emulate link delays with netem: probed once per process.

Without it (as on the development machine) the lab says so once, on stderr, and its delayed
links get a userspace relay instead (lab/delay.py). lab/emu.py and lab/delay.py both ask
here, so neither imports the other for it.
"""
import ctypes
import os
import shutil
import subprocess
import sys
import threading

__all__ = ["netem_available", "netem_status", "probe_netem", "enter_new_netns", "NETEM_NOTICE"]

_libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWNET = 0x40000000

NETEM_NOTICE = ("netem is not available on this kernel: link delays and loss are emulated "
                "by a userspace relay (AF_PACKET) on each such link; bandwidth limits are not "
                "(load the sch_netem module, e.g. from linux-modules-extra on Ubuntu, to have "
                "them)")

_netem = None           # (available, detail) once probed in this process
_netem_lock = threading.Lock()


def enter_new_netns():
    """Move the calling process into a new, empty network namespace (a subprocess's
    preexec_fn: what it does there dies with it)."""
    if _libc.unshare(CLONE_NEWNET) != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"unshare(CLONE_NEWNET): {os.strerror(e)}")


def probe_netem():
    """(available, detail), probed now and saying nothing (`lisp-lab doctor` asks this).
    It tries to add a netem qdisc to the loopback of a throwaway network namespace. That is
    what a TCLink with a delay needs, it loads sch_netem on demand where it is a module,
    and it changes nothing on the machine (the namespace dies with the command)."""
    try:
        tc = shutil.which("tc") or "/sbin/tc"
        proc = subprocess.run([tc, "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms"],
                              preexec_fn=enter_new_netns, stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=20)
    except (OSError, subprocess.SubprocessError) as e:
        return False, f"could not run the probe: {e}"
    detail = proc.stderr.decode(errors="replace").strip()
    return proc.returncode == 0, detail or "tc accepted a netem qdisc"


def netem_status():
    """(available, detail) for netem, probed once per process. The first probe that finds
    no netem prints NETEM_NOTICE (one line, on stderr)."""
    global _netem
    with _netem_lock:
        if _netem is None:
            _netem = probe_netem()
            if not _netem[0]:
                print(NETEM_NOTICE, file=sys.stderr, flush=True)
        return _netem


def netem_available():
    """True when the kernel can emulate link delays with netem (probed once per process)."""
    return netem_status()[0]

"""`lisp-lab doctor`'s verdicts from faked machine facts: what is ok, degraded or missing,
the fix offered for each, and the exit status (1 only when no lab can run)."""
import json

import pytest

from lab import cli, doctor
from lab.doctor import DEGRADED, MISSING, OK

GOOD_KERNEL = {k: {"ok": True, "detail": f"{k} works"}
               for k in ("tun", "tun_offloads", "udp_gso", "udp_gro", "uplink_segmentation",
                         "control_steering", "af_packet", "fast_path")}


class FakeProbes:
    """A machine where everything works, unless a test says otherwise."""

    def __init__(self, **facts):
        self.euid_ = 0
        self.osr = {"ID": "debian", "VERSION_ID": "12", "PRETTY_NAME": "Debian 12"}
        self.kernel = "6.1.0-18-amd64"
        self.py = (3, 11, 2)
        self.broken = {}                      # module -> error
        self.mininet = "2.3.0"
        self.absent = set()                   # programs not installed
        self.frr = []
        self.netem_ = (True, "tc accepted a netem qdisc")
        self.facts = json.loads(json.dumps(GOOD_KERNEL))
        self.obj = "/x/.venv/lib/lisp-lab/lisp_tc.o"
        self.runs_ = []
        self.pins = []
        self.saved = False
        self.kernel_asked = 0
        for k, v in facts.items():
            setattr(self, k, v)

    def euid(self):
        return self.euid_

    def os_release(self):
        return self.osr

    def kernel_release(self):
        return self.kernel

    def python_version(self):
        return self.py

    def import_error(self, module):
        return self.broken.get(module)

    def mininet_version(self):
        return self.mininet

    def tool(self, name):
        return None if name in self.absent else f"/usr/bin/{name}"

    def frr_missing(self):
        return self.frr

    def netem(self):
        return self.netem_

    def kernel_facts(self):
        self.kernel_asked += 1
        return self.facts

    def bpf_object(self):
        return self.obj

    def runs(self):
        return self.runs_

    def stale_pins(self):
        return self.pins

    def sysctls_saved(self):
        return self.saved


def checks_of(**facts):
    return {c.name: c for c in doctor.run_checks(FakeProbes(**facts))}


def status(checks):
    return doctor.exit_status(list(checks.values()))


def test_everything_works():
    checks = checks_of()
    assert {c.status for c in checks.values()} == {OK}
    assert status(checks) == 0
    assert doctor.verdict(list(checks.values())) == "a lab can run here, with everything"
    assert {"root", "mininet", "link delays", "tun", "tun offloads", "udp gso", "udp gro",
            "kernel fast path", "leftovers", "tcpdump", "tshark", "frr", "iperf3"} <= set(checks)


def test_no_netem_but_the_relay_is_degraded_and_runs():
    checks = checks_of(netem_=(False, "Error: Specified qdisc kind is unknown."))
    delays = checks["link delays"]
    assert delays.status == DEGRADED and delays.needed
    assert "relay" in delays.detail and "Specified qdisc kind is unknown" in delays.detail
    assert "modprobe sch_netem" in delays.fix
    assert status(checks) == 0
    assert doctor.verdict(list(checks.values())) == \
        "a lab can run here, degraded: link delays"


def test_the_netem_fix_on_ubuntu_names_this_kernels_extra_modules():
    checks = checks_of(netem_=(False, "unknown qdisc"), kernel="5.15.0-91-generic",
                       osr={"ID": "ubuntu", "VERSION_ID": "22.04"})
    assert "linux-modules-extra-5.15.0-91-generic" in checks["link delays"].fix
    debian = checks_of(netem_=(False, "unknown qdisc"))
    assert "linux-modules-extra" not in debian["link delays"].fix


def test_no_netem_and_no_relay_cannot_run():
    facts = json.loads(json.dumps(GOOD_KERNEL))
    facts["af_packet"] = {"ok": False, "detail": "AF_PACKET: Address family not supported"}
    checks = checks_of(netem_=(False, "unknown qdisc"), facts=facts)
    assert checks["link delays"].status == MISSING
    assert "Address family not supported" in checks["link delays"].detail
    assert status(checks) == 1


def test_not_root_cannot_run_and_the_kernel_is_not_asked():
    p = FakeProbes(euid_=1000)
    checks = {c.name: c for c in doctor.run_checks(p)}
    assert checks["root"].status == MISSING and "sudo" in checks["root"].fix
    assert p.kernel_asked == 0
    assert checks["kernel"].status == DEGRADED and "without root" in checks["kernel"].detail
    assert status(checks) == 1
    assert doctor.verdict(list(checks.values())).startswith("a lab cannot run here: fix root")


@pytest.mark.parametrize("facts, failing", [
    ({"mininet": None}, "mininet"),
    ({"absent": {"mnexec"}}, "mininet"),
    ({"absent": {"tcpdump"}}, "tcpdump"),
    ({"absent": {"tc"}}, "iproute2"),
    ({"absent": {"ethtool"}}, "ethtool"),
    ({"py": (3, 9, 18)}, "python"),
    ({"broken": {"pyroute2": "ModuleNotFoundError: No module named 'pyroute2'"}}, "python"),
])
def test_a_missing_essential_stops_every_lab(facts, failing):
    checks = checks_of(**facts)
    assert checks[failing].status == MISSING and checks[failing].needed
    assert checks[failing].fix
    assert status(checks) == 1
    assert f"fix {failing}" in doctor.verdict(list(checks.values()))


def test_python_310_also_needs_tomli():
    assert checks_of(py=(3, 10, 12), broken={"tomli": "ModuleNotFoundError"})["python"] \
        .status == MISSING
    assert checks_of(py=(3, 11, 2), broken={"tomli": "ModuleNotFoundError"})["python"] \
        .status == OK


@pytest.mark.parametrize("facts, degraded", [
    ({"absent": {"tshark"}}, "tshark"),
    ({"absent": {"iperf3"}}, "iperf3"),
    ({"absent": {"ebtables"}}, "ebtables"),
    ({"frr": ["ospfd", "vtysh"]}, "frr"),
])
def test_a_missing_optional_tool_is_degraded(facts, degraded):
    checks = checks_of(**facts)
    assert checks[degraded].status == DEGRADED and not checks[degraded].needed
    assert checks[degraded].fix == doctor.INSTALL
    assert status(checks) == 0


def test_frr_names_what_is_missing_and_which_labs_suffer():
    c = checks_of(frr=["ospfd"])["frr"]
    assert "ospfd" in c.detail and "host-route" in c.detail


@pytest.mark.parametrize("key, name, rc", [
    ("tun", "tun", 1),
    ("tun_offloads", "tun offloads", 1),
    ("udp_gso", "udp gso", 0),
    ("udp_gro", "udp gro", 0),
    ("uplink_segmentation", "uplink segmentation", 0),
    ("control_steering", "control steering", 0),
])
def test_kernel_features(key, name, rc):
    facts = json.loads(json.dumps(GOOD_KERNEL))
    facts[key] = {"ok": False, "detail": f"{key} refused (Invalid argument)"}
    checks = checks_of(facts=facts)
    assert checks[name].status == (MISSING if rc else DEGRADED)
    assert f"{key} refused (Invalid argument)" in checks[name].detail
    assert checks[name].fix == next(k[4] for k in doctor.KERNEL_CHECKS if k[0] == key)
    assert status(checks) == rc


def test_a_broken_kernel_probe_is_not_taken_for_a_working_kernel():
    checks = checks_of(facts={"error": "the probe failed (exit 1): boom"})
    assert checks["tun"].status == MISSING and "boom" in checks["tun"].detail
    assert checks["udp gso"].status == DEGRADED
    assert status(checks) == 1


def test_kernel_fast_path():
    assert checks_of()["kernel fast path"].status == OK
    none = checks_of(obj=None)["kernel fast path"]
    assert none.status == MISSING and not none.needed and "lisp_tc.o" in none.detail
    facts = json.loads(json.dumps(GOOD_KERNEL))
    facts["fast_path"] = {"ok": False, "detail": "bpftool does not run (on Ubuntu: ...)"}
    ubuntu = checks_of(facts=facts, osr={"ID": "ubuntu"})
    assert ubuntu["kernel fast path"].status == MISSING
    assert "linux-tools-" in ubuntu["kernel fast path"].fix
    assert status(ubuntu) == 0
    assert status(checks_of(obj=None)) == 0


def test_leftovers():
    assert checks_of()["leftovers"].detail == "none"
    dead = checks_of(runs_=[{"run_id": "demo-1", "live": False, "pid": 4242}])["leftovers"]
    assert dead.status == DEGRADED and "demo-1" in dead.detail and "lisp-lab clean" in dead.fix
    live = checks_of(runs_=[{"run_id": "demo-2", "live": True, "pid": 77}])["leftovers"]
    assert live.status == OK and "demo-2 (pid 77)" in live.detail
    pins = checks_of(pins=["/sys/fs/bpf/lisp-lab/xtr1-999"])["leftovers"]
    assert pins.status == DEGRADED and "rm -r /sys/fs/bpf/lisp-lab/xtr1-999" in pins.fix
    assert checks_of(saved=True)["leftovers"].status == DEGRADED
    assert checks_of(saved=True, runs_=[{"run_id": "r", "live": True, "pid": 1}])[
        "leftovers"].status == OK                   # a live run holds the sysctls
    assert status(checks_of(runs_=[{"run_id": "demo-1", "live": False, "pid": 1}])) == 0


def test_render_gives_a_fix_under_every_check_that_is_not_ok():
    checks = doctor.run_checks(FakeProbes(netem_=(False, "unknown"), absent={"iperf3"}))
    text = doctor.render(checks, "Debian 12")
    lines = text.splitlines()
    assert lines[0] == "lisp-lab doctor: Debian 12"
    for i, line in enumerate(lines):
        if line.lstrip().startswith(("degraded", "missing")):
            assert lines[i + 1].strip().startswith("fix: ")
    assert lines[-1] == "verdict: a lab can run here, degraded: iperf3, link delays"


def test_cli_doctor_json(monkeypatch, capsys):
    monkeypatch.setattr(doctor, "Probes", lambda: FakeProbes(absent={"tcpdump"}))
    assert cli.main(["doctor", "--json"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert out["can_run"] is False and out["exit_status"] == 1
    bad = [c for c in out["checks"] if c["status"] == MISSING]
    assert [c["name"] for c in bad] == ["tcpdump"] and bad[0]["needed"] is True
    monkeypatch.setattr(doctor, "Probes", lambda: FakeProbes())
    assert cli.main(["doctor"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == \
        "verdict: a lab can run here, with everything"


def test_os_release_is_read_from_its_file(tmp_path, monkeypatch):
    (tmp_path / "os-release").write_text('ID=ubuntu\nVERSION_ID="24.04"\n# c\nPRETTY_NAME="U"\n')
    real = doctor.Path
    monkeypatch.setattr(doctor, "Path", lambda p: real(tmp_path / "os-release")
                        if p == "/etc/os-release" else real(p))
    assert doctor.Probes().os_release() == {"ID": "ubuntu", "VERSION_ID": "24.04",
                                            "PRETTY_NAME": "U"}

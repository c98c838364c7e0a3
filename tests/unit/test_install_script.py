"""scripts/install.sh picks the distribution's package names: its package part (everything
before the virtual environment is made) runs here against stand-in apt-get, dpkg-query,
modprobe, id and uname that record what they are asked, on a Debian 12 and on Ubuntu
22.04/24.04 os-release. The whole script is run for real by CI on both Ubuntu releases."""
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "install.sh"
KERNEL = "5.15.0-91-generic"
OS_RELEASE = {
    "debian-12": 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\nVERSION_ID="12"\n',
    "ubuntu-22.04": 'NAME="Ubuntu"\nVERSION_ID="22.04"\nID=ubuntu\nID_LIKE=debian\n',
    "ubuntu-24.04": 'NAME="Ubuntu"\nVERSION_ID="24.04"\nID=ubuntu\nID_LIKE=debian\n',
}
STUBS = {
    "id": 'echo 0',
    "uname": f'echo {KERNEL}',
    "dpkg-query": 'exit 1',                        # nothing installed yet
    "apt-get": 'echo "apt-get $*" >> "$CALLS"',
    "modprobe": 'echo "modprobe $*" >> "$CALLS"; exit 1',   # no sch_netem here
}


def package_part():
    """The script up to the making of the virtual environment."""
    text = SCRIPT.read_text()
    cut = text.index('if [ ! -x "$venv/bin/python" ]')
    return text[:cut]


def run_packages(tmp_path, release, **stubs):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in {**STUBS, **stubs}.items():
        (bin_dir / name).write_text(f"#!/bin/bash\n{body}\n")
        (bin_dir / name).chmod(0o755)
    (tmp_path / "os-release").write_text(OS_RELEASE[release])
    part = tmp_path / "install-packages.sh"
    part.write_text(package_part())
    calls = tmp_path / "calls"
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "CALLS": str(calls),
           "LISP_LAB_OS_RELEASE": str(tmp_path / "os-release")}
    r = subprocess.run(["bash", str(part)], env=env, capture_output=True, text=True,
                       timeout=30, cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    lines = calls.read_text().splitlines() if calls.exists() else []
    installed = {w for line in lines if line.startswith("apt-get install")
                 for w in line.split()[2:] if not w.startswith("-")}
    return installed, lines, r.stdout


def test_the_script_parses():
    r = subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_debian_12_names(tmp_path):
    installed, calls, _ = run_packages(tmp_path, "debian-12")
    assert {"mininet", "tshark", "frr", "tcpdump", "iperf3", "clang", "libbpf-dev",
            "bpftool", "make", "chromium"} <= installed
    assert not {p for p in installed if p.startswith(("linux-tools", "linux-modules-extra"))}
    assert not [c for c in calls if c.startswith("modprobe")]


@pytest.mark.parametrize("release", ["ubuntu-22.04", "ubuntu-24.04"])
def test_ubuntu_names(tmp_path, release):
    installed, calls, out = run_packages(tmp_path, release)
    assert {"mininet", "tshark", "frr", "tcpdump", "iperf3", "clang", "libbpf-dev",
            "linux-tools-common", f"linux-tools-{KERNEL}",
            f"linux-modules-extra-{KERNEL}"} <= installed
    assert "bpftool" not in installed
    # Ubuntu has no chromium .deb (a snap): an optional chromium-browser where no Chrome is
    assert "chromium" not in installed and "chromium-browser" in installed
    assert "modprobe sch_netem" in calls
    assert "sch_netem does not load" in out


def test_an_optional_package_the_archive_lacks_skips_only_itself(tmp_path):
    lacking = ('echo "apt-get $*" >> "$CALLS"; '
               f'case " $* " in *" linux-modules-extra-{KERNEL} "*) exit 100;; esac')
    installed, calls, out = run_packages(tmp_path, "ubuntu-22.04", **{"apt-get": lacking})
    assert f"could not install linux-modules-extra-{KERNEL}" in out
    assert "apt-get update -qq" in calls               # tried again once after an update
    assert "linux-libc-dev" in installed

#!/usr/bin/env bash
# One install step for the LISP mobility lab (Debian 12, Ubuntu 22.04/24.04), run as root.
#   1. distribution packages the lab uses (only the missing ones; apt-get update only then);
#   2. the project's virtual environment in .venv, made from the distribution's
#      /usr/bin/python3 with --system-site-packages so that it sees Debian's Mininet;
#   3. the project itself (editable) with its Python dependencies from PyPI.
# Idempotent: when nothing changed, a second run only checks and prints "up to date".
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
venv="$here/.venv"
stamp="$venv/.lisp-lab-installed"

if [ "$(id -u)" -ne 0 ]; then
    echo "install: must run as root (try: sudo make install)" >&2
    exit 1
fi

# Packages: emulation (mininet, iproute2, bridges, ebtables/iptables), captures (tcpdump,
# tshark), traffic (iperf3), routing for the core (frr), the venv, the headers that the
# NetfilterQueue delay emulator builds against, and YAML for the lab files (also for
# `mn --custom topologies/dc.py`, which runs under the distribution's python3).
apt_packages=(
    mininet iproute2 bridge-utils ebtables iptables ethtool procps psmisc kmod
    iputils-ping iputils-arping netcat-openbsd
    tcpdump tshark iperf3 frr sudo
    python3 python3-venv python3-dev python3-pip gcc libnetfilter-queue-dev
    python3-yaml chromium           # chromium: headless, for the report.html browser test
)

missing=()
for p in "${apt_packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "install: distribution packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The kernel fast path (nodes/bpf/lisp_tc.c, issue 10): clang, the libbpf headers, bpftool
# (loads it) and linux-libc-dev. Optional: when a package or the compilation fails, the
# install goes on and the lab uses the Python data path (dataplane.path = "python").
bpf_packages=(clang llvm libbpf-dev bpftool linux-libc-dev)
bpf_missing=()
for p in "${bpf_packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        bpf_missing+=("$p")
    fi
done
if [ ${#bpf_missing[@]} -gt 0 ]; then
    echo "install: kernel data path packages: ${bpf_missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    updated=
    for p in "${bpf_missing[@]}"; do          # one by one: a missing name skips only itself
        apt-get install -y -qq --no-install-recommends "$p" >/dev/null 2>&1 \
            || { [ -z "$updated" ] && updated=1 && apt-get update -qq >/dev/null 2>&1 \
                 && apt-get install -y -qq --no-install-recommends "$p" >/dev/null 2>&1; } \
            || echo "install: could not install $p (the kernel data path may be unavailable)"
    done
fi

if [ ! -x "$venv/bin/python" ]; then
    echo "install: virtual environment in $venv (sees the distribution's Mininet)"
    /usr/bin/python3 -m venv --system-site-packages "$venv"
fi

if [ ! -f "$stamp" ] || [ "$here/setup.py" -nt "$stamp" ]; then
    echo "install: the project and its Python dependencies"
    "$venv/bin/python" -m pip install -q --upgrade pip
    "$venv/bin/python" -m pip install -q -e "$here[test]"
    touch "$stamp"
fi

bpf_out="$venv/lib/lisp-lab"
if [ ! -f "$bpf_out/lisp_tc.o" ] || [ "$here/nodes/bpf/lisp_tc.c" -nt "$bpf_out/lisp_tc.o" ]; then
    if make -s -C "$here/nodes/bpf" OUT="$bpf_out" >/tmp/lisp-lab-bpf-build.log 2>&1; then
        echo "install: kernel data path built ($bpf_out/lisp_tc.o)"
    else
        rm -f "$bpf_out/lisp_tc.o"
        echo "install: the kernel data path is unavailable (compiling nodes/bpf/lisp_tc.c failed:" \
             "see /tmp/lisp-lab-bpf-build.log); the lab uses the Python data path"
    fi
fi

"$venv/bin/python" -c "import mininet.net, scapy, pyroute2, matplotlib, pytest, hypothesis, yaml" \
    || { echo "install: the virtual environment is broken; remove $venv and run again" >&2; exit 1; }
echo "install: up to date ($venv)"

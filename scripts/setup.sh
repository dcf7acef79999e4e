#!/usr/bin/env bash
# Installs what cluster-lab needs on a Debian/Ubuntu machine, without prompts, and only what is missing:
# the Debian packages below and a .venv with the project. A second run installs nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
    iproute2 iptables nftables openssh-server openssh-client containernetworking-plugins
    conntrack dnsmasq-base iputils-ping procps util-linux python3 python3-venv curl iperf3 graphviz sudo
    # the Gateway API's proxy (the lab runs it in gateway pods only)
    nginx-light
    # what `lab exec` finds in pods: busybox's applets (busybox images), nc with -z, dig and nslookup
    busybox-static netcat-openbsd bind9-dnsutils
    # real VMs (lab up --provider qemu, the VM test tier): qemu, and what builds the cached Debian image
    qemu-system-x86 qemu-utils debootstrap e2fsprogs
)

if [ "$(id -u)" -ne 0 ]; then
    echo "setup: run as root (the lab creates network namespaces and installs Debian packages)" >&2
    exit 1
fi

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${missing[@]}"
    if [[ " ${missing[*]} " == *" nginx-light "* ]] && [ -d /run/systemd/system ]; then
        # the package starts its own web server on this machine's port 80: the lab wants none
        systemctl disable --now nginx.service >/dev/null 2>&1 || true
    fi
fi

# Vagrant and its libvirt provider where the distribution has them (Debian 12 does; some releases
# don't): the tests run `vagrant validate` on the Vagrantfile, and `lab inventory from-vagrant` runs
# `vagrant ssh-config`. Nothing is fetched when they are installed or not to be had.
vagrant_wanted=()
if ! dpkg-query -W -f='${Status}' vagrant-libvirt 2>/dev/null | grep -q 'install ok installed' &&
    ! compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null; then
    apt-get update -q  # no package lists yet: apt-cache would know of nothing
fi
for p in vagrant vagrant-libvirt; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' && continue
    # (grep reads all of it: with -q, apt-cache would die of SIGPIPE and pipefail would say "not available")
    apt-cache policy "$p" 2>/dev/null | grep 'Candidate: [^(]' >/dev/null && vagrant_wanted+=("$p")
done
if [ ${#vagrant_wanted[@]} -gt 0 ]; then
    echo "setup: installing Debian packages: ${vagrant_wanted[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q --no-install-recommends "${vagrant_wanted[@]}" ||
        { apt-get update -q && apt-get install -y -q --no-install-recommends "${vagrant_wanted[@]}"; }
fi

stamp=.venv/.cluster-lab-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    [ -x .venv/bin/python ] || python3 -m venv .venv
    # setuptools >= 70.1 builds wheels by itself (the packaging test installs the project non-editable).
    .venv/bin/python -m pip install -q --disable-pip-version-check 'setuptools>=70.1'
    echo "setup: installing the project into .venv"
    .venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'
    touch "$stamp"
fi

# kubectl 1.20 from Debian's kubernetes-client, unpacked into .venv (not installed: it would clash with another
# kubectl on this machine), for the tests that compare the lab's --dry-run=client output with kubectl's.
# Debian has the package; where a distribution has none, nothing is fetched and those tests say so.
kubectl_dir=.venv/opt/kubectl-1.20
if [ ! -x "$kubectl_dir/usr/bin/kubectl" ] &&
    apt-cache policy kubernetes-client 2>/dev/null | grep 'Candidate: [^(]' >/dev/null; then
    echo "setup: unpacking Debian's kubernetes-client (kubectl 1.20) into $kubectl_dir"
    download=$(mktemp -d)
    (cd "$download" && apt-get download -q kubernetes-client >/dev/null 2>&1) ||
        { apt-get update -q && (cd "$download" && apt-get download -q kubernetes-client); }
    mkdir -p "$kubectl_dir"
    dpkg-deb -x "$download"/kubernetes-client_*.deb "$kubectl_dir"
    rm -rf "$download"
fi

#!/bin/sh
# Installs every Debian 12 package trawl needs to build, test and benchmark.
# Idempotent; run as root on a fresh Debian 12 machine.
set -eu
export DEBIAN_FRONTEND=noninteractive
PKGS="build-essential cmake ninja-build pkg-config git
  libpcap-dev libdbus-1-dev libssl-dev libzstd-dev zlib1g-dev libzmq3-dev cppzmq-dev
  libyaml-cpp-dev libcli11-dev libspdlog-dev libfmt-dev nlohmann-json3-dev
  libcap-dev libgtest-dev libgmock-dev libbenchmark-dev
  clang libclang-rt-14-dev
  tshark tcpdump tcpreplay netsniff-ng wireshark-common zstd prometheus curl perl jq python3
  iproute2 iputils-ping procps psmisc openssl ca-certificates"
missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  echo "setup: installing$missing" >&2
  # wireshark-common asks whether non-root users may capture; answer no.
  echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends $missing
fi

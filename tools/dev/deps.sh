#!/usr/bin/env bash
# Installs the Debian 12 packages ringgate needs to build, run and test.
# Sourced by run.sh, test.sh and .ci/run.  Installs only what is missing, so a
# ready machine pays one dpkg query.
set -euo pipefail

RINGGATE_BUILD_PACKAGES=(
  meson ninja-build pkg-config g++
  liburing-dev libwslay-dev android-libboringssl-dev libabsl-dev libtomlplusplus-dev
  libhiredis-dev   # control/backplane.cpp: the Redis backplane
  libgtest-dev googletest libbenchmark-dev libsimdjson-dev
)
RINGGATE_TEST_PACKAGES=(
  python3 python3-websockets python3-pytest python3-prometheus-client python3-cryptography
  iproute2 procps
  chromium libnss3-tools   # tests/integration/test_browser.py: headless Chromium, certutil for its NSS trust
  haproxy                  # tests/integration/test_haproxy.py: the balancer of deploy/haproxy/haproxy.cfg
  redis-server             # tests/integration/test_backplane.py: the backplane (redis-server 7.0, redis-cli)
  clang-14 libclang-rt-14-dev lld-14   # the libFuzzer build (tests/fuzz, tools/fuzz.sh)
)

ringgate_install_packages() {
  local missing=()
  local pkg
  for pkg in "$@"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
      missing+=("$pkg")
    fi
  done
  if [ ${#missing[@]} -eq 0 ]; then
    return 0
  fi
  echo "ringgate: installing Debian packages: ${missing[*]}" >&2
  local sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    sudo=(sudo)
  fi
  export DEBIAN_FRONTEND=noninteractive
  "${sudo[@]}" apt-get update -qq
  "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# meson setup + ninja for one build directory.  Extra args go to meson setup.
ringgate_build() {
  local dir="$1"
  shift
  if [ ! -f "$dir/build.ninja" ]; then
    meson setup "$dir" "$@" >/dev/null
  fi
  ninja -C "$dir" >/dev/null
}

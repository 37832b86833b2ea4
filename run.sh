#!/usr/bin/env bash
# Installs what ringgate needs, builds it, and runs it with the embedded
# defaults (127.0.0.1:8080, echo on /echo).  Arguments go to ringgate:
#   ./run.sh --listen 0.0.0.0:9000 --echo-path /
set -euo pipefail
cd "$(dirname "$0")"
. tools/dev/deps.sh
ringgate_install_packages "${RINGGATE_BUILD_PACKAGES[@]}"
ringgate_build build
exec ./build/ringgate "$@"

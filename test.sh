#!/usr/bin/env bash
# Installs what the tests need, builds ringgate three times and runs the whole
# suite against each build: GoogleTest unit tests, then integration tests that
# drive the real binary with real clients.  The builds:
#   debugoptimized  build/          -O2 with asserts: what ./run.sh runs
#   release         build-release/  -O3, NDEBUG: what a packager ships
#   asan            build-asan/     ASan+UBSan, asserts on
# The last line counts test cases: "N passed, M failed".
#   RINGGATE_SUITES="debugoptimized" ./test.sh   runs only the named builds (faster local loop)
#   RINGGATE_SKIP_ASAN=1 ./test.sh               the same as leaving asan out of RINGGATE_SUITES
set -uo pipefail
cd "$(dirname "$0")"
. tools/dev/deps.sh
set -e
ringgate_install_packages "${RINGGATE_BUILD_PACKAGES[@]}" "${RINGGATE_TEST_PACKAGES[@]}"
set +e

PY=/usr/bin/python3   # Debian's interpreter: it sees python3-websockets
results=build-results
rm -rf "$results"
mkdir -p "$results"
status=0

run_suite() {  # name build-dir [meson setup args...]
  local name="$1" dir="$2"
  shift 2
  echo "== $name: build ($dir)" >&2
  if ! ringgate_build "$dir" "$@"; then
    echo "== $name: BUILD FAILED" >&2
    ninja -C "$dir" 2>&1 | tail -40 >&2
    status=1
    return
  fi
  echo "== $name: unit tests" >&2
  if ! meson test -C "$dir" --print-errorlogs >"$results/$name-meson.log" 2>&1; then
    status=1
    tail -60 "$results/$name-meson.log" >&2
  fi
  cp "$dir/meson-logs/testlog.junit.xml" "$results/$name-unit.junit.xml" 2>/dev/null || true
  echo "== $name: integration tests" >&2
  if ! RINGGATE_BIN="$PWD/$dir/ringgate" "$PY" -m pytest -q -p no:cacheprovider tests/integration \
      --junitxml="$results/$name-integration.junit.xml" -o junit_suite_name="$name-integration" >&2; then
    status=1
  fi
}

suites="${RINGGATE_SUITES:-debugoptimized release asan}"
[ "${RINGGATE_SKIP_ASAN:-0}" = "1" ] && suites="${suites//asan/}"
for suite in $suites; do
  case "$suite" in
    debugoptimized) run_suite debugoptimized build ;;
    release) run_suite release build-release --buildtype=release ;;
    asan)
      # halt_on_error/abort make any sanitizer report fail the test that caused it.
      ASAN_OPTIONS="halt_on_error=1:abort_on_error=1:detect_leaks=1" \
      UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1" \
        run_suite asan build-asan -Db_sanitize=address,undefined -Dcpp_args=-fno-sanitize-recover=all -Db_lundef=false
      ;;
    *) echo "unknown suite '$suite' (debugoptimized, release, asan)" >&2; status=1 ;;
  esac
done

"$PY" tools/test_summary.py "$results"/*.junit.xml || status=1
exit $status

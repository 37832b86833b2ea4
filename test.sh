#!/usr/bin/env bash
# Installs what the tests need, builds ringgate three times and runs the whole
# suite against each build: GoogleTest unit tests, then integration tests that
# drive the real binary with real clients.  The builds:
#   debugoptimized  build/          -O2 with asserts: what ./run.sh runs
#   release         build-release/  -O3, NDEBUG: what a packager ships
#   asan            build-asan/     ASan+UBSan, asserts on
# Then the fuzz targets (tests/fuzz), built with clang into build-fuzz/: every
# committed corpus replayed, and each target run by libFuzzer for a short,
# fixed time (long runs are tools/fuzz.sh's, by hand).
# The last line counts test cases: "N passed, M failed".
#   RINGGATE_SUITES="debugoptimized" ./test.sh   runs only the named builds (faster local loop;
#                                                 add "fuzz" to run the fuzz step too)
#   RINGGATE_SKIP_ASAN=1 ./test.sh               the same as leaving asan out of RINGGATE_SUITES
#   RINGGATE_FUZZ_SECONDS=30 ./test.sh           libFuzzer time per target (default 30)
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

# Fuzzing: each committed corpus replayed (one test case per target, in
# meson's JUnit), then each target fuzzed for RINGGATE_FUZZ_SECONDS (one
# test case per target; a finding fails it, and its input stays in
# build-fuzz/runs/).
run_fuzz() {
  local seconds="${RINGGATE_FUZZ_SECONDS:-30}"
  echo "== fuzz: build (build-fuzz), replay the corpora" >&2
  if ! tools/fuzz.sh replay >"$results/fuzz-replay.log" 2>&1; then
    status=1
    tail -40 "$results/fuzz-replay.log" >&2
  fi
  cp build-fuzz/meson-logs/testlog.junit.xml "$results/fuzz-replay.junit.xml" 2>/dev/null || true
  echo "== fuzz: ${seconds}s per target" >&2
  tools/fuzz.sh all "$seconds" >"$results/fuzz-run.txt" 2>"$results/fuzz-run.log" || status=1
  cat "$results/fuzz-run.txt" >&2
  "$PY" tools/fuzz_junit.py "$results/fuzz-run.txt" >"$results/fuzz-run.junit.xml" || status=1
}

suites="${RINGGATE_SUITES:-debugoptimized release asan fuzz}"
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
    fuzz) run_fuzz ;;
    *) echo "unknown suite '$suite' (debugoptimized, release, asan, fuzz)" >&2; status=1 ;;
  esac
done

"$PY" tools/test_summary.py "$results"/*.junit.xml || status=1
exit $status

#!/usr/bin/env bash
# Runs the libFuzzer targets of tests/fuzz.
#
#   tools/fuzz.sh [TARGET|all|replay] [SECONDS] [libFuzzer flags...]
#
#   tools/fuzz.sh                      every target, 60 s each
#   tools/fuzz.sh all 30               every target, 30 s each (the CI run)
#   tools/fuzz.sh http_upgrade 600     one target (the fuzz_ prefix is optional; a,b,c for several)
#   tools/fuzz.sh jwt 60 -max_len=2048 extra flags go to libFuzzer
#   tools/fuzz.sh all 360 -runs=10000000   10 M executions or 6 minutes, whichever first
#   tools/fuzz.sh replay               every committed corpus once (meson test --suite fuzz)
#
# Sets up the clang build in build-fuzz/ first if needed (installing
# clang-14, libclang-rt-14-dev and lld-14 when missing).  Each run starts from
# a copy of the committed corpus (tests/fuzz/corpus/<target>) in a scratch
# directory, so the repository is never written; the grown corpus and any
# finding stay there (build-fuzz/runs/<time>/).  Prints one line per target
# (executions, executions per second, coverage, corpus, result) and exits
# non-zero if any target found a crash, a leak, a timeout or an OOM.
#
# Environment: RINGGATE_FUZZ_BUILD (default build-fuzz), RINGGATE_FUZZ_RUNS
# (where scratch directories go, default $RINGGATE_FUZZ_BUILD/runs).
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD

what="${1:-all}"
seconds="${2:-60}"
shift $(( $# > 2 ? 2 : $# ))
extra=("$@")
build="${RINGGATE_FUZZ_BUILD:-build-fuzz}"

all_targets=()
for f in tests/fuzz/fuzz_*.cpp; do
  all_targets+=("$(basename "$f" .cpp)")
done

# ---- the clang build
. tools/dev/deps.sh
set -e
ringgate_install_packages "${RINGGATE_BUILD_PACKAGES[@]}" clang-14 libclang-rt-14-dev lld-14
if [ ! -f "$build/build.ninja" ]; then
  echo "fuzz: setting up $build (clang-14, libFuzzer, ASan, UBSan)" >&2
  CXX=clang++-14 CXX_LD=lld meson setup "$build" -Dfuzz=true -Db_lundef=false >/dev/null
fi
ninja -C "$build" -j2 >/dev/null
set +e

if [ "$what" = replay ]; then
  exec meson test -C "$build" --suite fuzz --print-errorlogs
fi

targets=()
if [ "$what" = all ]; then
  targets=("${all_targets[@]}")
else
  IFS=, read -r -a wanted <<<"$what"
  for t in "${wanted[@]}"; do
    t="fuzz_${t#fuzz_}"
    if [ ! -x "$build/tests/fuzz/$t" ]; then
      echo "fuzz: no target '$t'; targets: ${all_targets[*]#fuzz_}" >&2
      exit 2
    fi
    targets+=("$t")
  done
fi

runs="${RINGGATE_FUZZ_RUNS:-$build/runs}/$(date +%Y%m%d-%H%M%S)"
mkdir -p "$runs"
runs="$(cd "$runs" && pwd)"
echo "fuzz: ${#targets[@]} target(s), ${seconds}s each; scratch $runs" >&2
printf '%-22s %12s %6s %9s %6s %7s %8s  %s\n' target execs secs exec/s cov ft corpus result
status=0
for t in "${targets[@]}"; do
  work="$runs/$t"
  mkdir -p "$work/corpus"
  if [ -d "tests/fuzz/corpus/$t" ]; then
    cp tests/fuzz/corpus/"$t"/* "$work/corpus/" 2>/dev/null
  fi
  # -timeout: an input that takes 10 s is a hang.  Findings go to $work.
  (cd "$work" && "$root/$build/tests/fuzz/$t" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
      -print_final_stats=1 -artifact_prefix="$work/" "${extra[@]}" corpus >"$work/log" 2>&1)
  rc=$?
  # The last status line: "#N  DONE  cov: C ft: F corp: K/S lim: L exec/s: E rss: R".
  last="$(grep -E '^#[0-9]+' "$work/log" | tail -1)"
  execs="$(grep -oE '^stat::number_of_executed_units: *[0-9]+' "$work/log" | grep -oE '[0-9]+$')"
  [ -n "$execs" ] || execs="$(sed -nE 's/^#([0-9]+).*/\1/p' <<<"$last")"
  rate="$(grep -oE '^stat::average_exec_per_sec: *[0-9]+' "$work/log" | grep -oE '[0-9]+$')"
  secs="$(sed -nE 's/^Done [0-9]+ runs in ([0-9]+) second.*/\1/p' "$work/log")"
  cov="$(sed -nE 's/.*cov: ([0-9]+).*/\1/p' <<<"$last")"
  ft="$(sed -nE 's/.* ft: ([0-9]+).*/\1/p' <<<"$last")"
  corp="$(sed -nE 's/.* corp: ([0-9]+).*/\1/p' <<<"$last")"
  if [ "$rc" -eq 0 ]; then
    result=ok
  else
    status=1
    artifact="$(sed -nE 's/.*Test unit written to (.*)$/\1/p' "$work/log" | tail -1)"
    kind="$(grep -m1 -oE 'ERROR: [A-Za-z]+: [a-z-]+[^ ]*|fuzz check failed: .*|runtime error: .*' "$work/log")"
    result="FOUND (rc $rc): ${kind:-see log} ${artifact:+-> $artifact} (log $work/log)"
  fi
  printf '%-22s %12s %6s %9s %6s %7s %8s  %s\n' "$t" "${execs:-?}" "${secs:-?}" "${rate:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}" "$result"
done
exit $status

#!/usr/bin/env bash
# Builds the fuzz targets (tests/fuzz, libFuzzer + ASan + UBSan with
# clang) and runs each for a bounded time on a writable copy of its seed
# corpus. Prints one summary line per fuzzer and exits non-zero if any
# found a crash (a property violation, a sanitizer report, a timeout or
# an out-of-memory).
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]    # default 60 s, every target
#
#   FUZZ_JOBS=N        fuzzers run at once (default 2, one per core here)
#   FUZZ_BUILD=direct  compile with clang++ directly instead of Bazel
#   FUZZ_OUTPUT_BASE   Bazel output base for the clang build
#
# Outputs under out/fuzz/: bin/ (direct builds), corpus/<t>/ (seeds plus
# what the fuzzer added; kept between runs), crashes/<t>/ (reproducers),
# <t>.log. Replay a reproducer with the gcc regression driver:
#   bazel build //tests/fuzz:<t>_fuzz_test && bazel-bin/tests/fuzz/<t>_fuzz_test FILE
# then minimise it (<fuzzer> -minimize_crash=1 -runs=10000 FILE) and add it
# to tests/fuzz/corpus/<t>/ as regression-<what>.
#
# Build: Bazel with --config=fuzz (.bazelrc) in a separate output base.
# Switching CC to clang re-runs the auto-configured C++ toolchain; in the
# main output base that would thrash the gcc cache (and every other
# user's), so the clang build gets its own (a second, short-lived Bazel
# server: --max_idle_secs). This works offline with Debian's
# bazel-bootstrap 4.2.3. FUZZ_BUILD=direct is the fallback that needs no
# Bazel at all: clang++ on the few source files each target uses.
set -uo pipefail
cd "$(dirname "$0")/.."

secs=${1:-60}
shift || true
all=(length_field fixed_length delimiter line heartbeat rudp_wire)
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=("${all[@]}")
jobs=${FUZZ_JOBS:-2}

scripts/deps.sh clang libclang-rt-14-dev || exit 1

out=out/fuzz
mkdir -p "$out"

# Sources per target for the direct build (the Bazel deps, flattened).
direct_srcs() {
  local common="codec/codec.cc base/buffer.cc"
  case $1 in
    length_field) echo "$common codec/length_field.cc" ;;
    fixed_length) echo "$common codec/fixed_length.cc" ;;
    delimiter | line) echo "$common codec/delimiter.cc" ;;
    heartbeat) echo "$common codec/length_field.cc codec/heartbeat.cc" ;;
    rudp_wire) echo "rudp/wire.cc rudp/crc32c.cc" ;;
  esac
}

if [ "${FUZZ_BUILD:-bazel}" = direct ]; then
  bin=$out/bin
  mkdir -p "$bin"
  for t in "${targets[@]}"; do
    # shellcheck disable=SC2046
    clang++ -std=c++20 -O2 -g -I. -Wall -Wextra -Werror \
      -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
      -fno-omit-frame-pointer "tests/fuzz/${t}_fuzz.cc" $(direct_srcs "$t") \
      -o "$bin/${t}_fuzzer" || { echo "fuzz: build of $t failed" >&2; exit 1; }
  done
else
  ob=${FUZZ_OUTPUT_BASE:-${XDG_CACHE_HOME:-$HOME/.cache}/sluice-fuzz-bazel}
  bz=(bazel "--output_base=$ob" --max_idle_secs=300)
  labels=()
  for t in "${targets[@]}"; do labels+=("//tests/fuzz:${t}_fuzzer"); done
  "${bz[@]}" build --config=fuzz "${labels[@]}" || {
    echo "fuzz: bazel build failed (try FUZZ_BUILD=direct)" >&2
    exit 1
  }
  bin=$("${bz[@]}" info --config=fuzz bazel-bin 2>/dev/null)/tests/fuzz
fi

run_one() {
  local t=$1
  mkdir -p "$out/corpus/$t" "$out/crashes/$t"
  cp -n "tests/fuzz/corpus/$t/"* "$out/corpus/$t/" 2>/dev/null
  chmod -R u+w "$out/corpus/$t"
  "$bin/${t}_fuzzer" "$out/corpus/$t" \
    -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$out/crashes/$t/" \
    >"$out/$t.log" 2>&1
  echo $? >"$out/$t.rc"
}

# At most $jobs fuzzers at a time.
for t in "${targets[@]}"; do
  while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n; done
  rm -f "$out/$t.rc" "$out/crashes/$t/"*
  run_one "$t" &
done
wait

failed=0
for t in "${targets[@]}"; do
  log=$out/$t.log
  rc=$(cat "$out/$t.rc" 2>/dev/null || echo 1)
  execs=$(sed -nE 's/^stat::number_of_executed_units: *([0-9]+).*/\1/p' "$log" | tail -1)
  stats=$(grep -E '^#[0-9]+' "$log" | grep -E 'cov: ' | tail -1)
  cov=$(sed -nE 's/.* cov: ([0-9]+).*/\1/p' <<<"$stats")
  ft=$(sed -nE 's/.* ft: ([0-9]+).*/\1/p' <<<"$stats")
  corp=$(sed -nE 's/.* corp: ([0-9]+)\/.*/\1/p' <<<"$stats")
  crash=$(ls "$out/crashes/$t/" 2>/dev/null | head -1)
  if [ "$rc" -eq 0 ] && [ -z "$crash" ]; then
    result=ok
  else
    result="FAILED rc=$rc ${crash:+$out/crashes/$t/$crash} (see $log)"
    failed=1
  fi
  printf 'fuzz %-13s %4ss execs=%-10s cov=%-5s ft=%-6s corpus=%-5s %s\n' \
    "$t" "$secs" "${execs:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}" "$result"
done
exit $failed

#!/usr/bin/env bash
# Runs the fuzz_compile libFuzzer target for a bounded time.
#
#   tests/fuzz/run.sh FUZZER_BINARY SECONDS
#
# Seeds: tests/fuzz/corpus/*, examples/*.srl and the negative test inputs
# (compiler/tests/negative/**/*.srl), all relative to the repository this
# script lives in. They are copied into a temporary work corpus, which
# libFuzzer extends while it runs and which is deleted afterwards.
#
# Exit status: 0 if the run ended without a finding; otherwise non-zero
# (libFuzzer's status for a crash, leak, timeout or out-of-memory). The
# reproducer and the full log are kept under $SRL_FUZZ_ARTIFACTS (default: a
# fresh directory under ${TMPDIR:-/tmp}), never in the source tree. Reproduce
# with: FUZZER_BINARY ARTIFACT_FILE
#
# Environment: SRL_FUZZ_ARTIFACTS (where findings go), SRL_FUZZ_ARGS (extra
# libFuzzer flags, e.g. "-jobs=2 -workers=2" or "-seed=1").
set -euo pipefail

usage() {
  echo "usage: $0 FUZZER_BINARY SECONDS" >&2
  exit 2
}
[[ $# -eq 2 ]] || usage
fuzzer=$1
seconds=$2  # not SECONDS: bash keeps that one for itself
[[ -x $fuzzer ]] || { echo "$0: $fuzzer is not an executable" >&2; exit 2; }
[[ $seconds =~ ^[1-9][0-9]*$ ]] || { echo "$0: SECONDS must be a positive integer" >&2; exit 2; }
fuzzer=$(cd "$(dirname "$fuzzer")" && pwd)/$(basename "$fuzzer")

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
dict=$here/srl.dict

tmp=${TMPDIR:-/tmp}
work=$(mktemp -d "$tmp/srl-fuzz-corpus.XXXXXX")
log=$(mktemp "$tmp/srl-fuzz-log.XXXXXX")
cleanup() { rm -rf "$work" "$log"; }
trap cleanup EXIT
artifacts=${SRL_FUZZ_ARTIFACTS:-}

# Seeds. Names are prefixed by origin so that equal names cannot collide.
nseeds=0
add_seeds() {  # PREFIX DIR FIND-ARGS...
  local prefix=$1 dir=$2 f
  shift 2
  [[ -d $dir ]] || return 0
  while IFS= read -r -d '' f; do
    cp -- "$f" "$work/$prefix-$(basename "$f")"
    nseeds=$((nseeds + 1))
  done < <(find "$dir" -type f "$@" -print0)
}
add_seeds corpus "$here/corpus"
add_seeds example "$root/examples" -name '*.srl'
add_seeds negative "$root/compiler/tests/negative" -name '*.srl'
echo "fuzz: $nseeds seed inputs, $seconds s, dictionary $dict"

# Findings go to a directory of their own; created up front because
# libFuzzer writes the reproducer there before it exits.
if [[ -z $artifacts ]]; then
  artifacts=$(mktemp -d "$tmp/srl-fuzz-artifacts.XXXXXX")
else
  mkdir -p "$artifacts"
fi

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:symbolize=1:intercept_tls_get_addr=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

status=0
# shellcheck disable=SC2086  # SRL_FUZZ_ARGS is a list of flags
"$fuzzer" "$work" \
  -dict="$dict" \
  -max_len=4096 \
  -timeout=10 \
  -rss_limit_mb=2048 \
  -max_total_time="$seconds" \
  -print_final_stats=1 \
  -artifact_prefix="$artifacts/" \
  ${SRL_FUZZ_ARGS:-} >"$log" 2>&1 || status=$?

# libFuzzer reports a finding with a line like "==123== ERROR: libFuzzer:
# deadly signal", "ERROR: LeakSanitizer", "ALARM: working on the last Unit
# for 10 seconds" or "out-of-memory"; a non-zero status covers them all, the
# log check also catches a sanitizer report that did not change the status.
if [[ $status -eq 0 ]] &&
   grep -qE '^==[0-9]+== ?ERROR: |^SUMMARY: (libFuzzer|AddressSanitizer|UndefinedBehaviorSanitizer|LeakSanitizer)|runtime error:' "$log"; then
  status=1
fi

grep -E '^stat::' "$log" || true
runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
final=$(grep -E '^(#[0-9]+[[:space:]]+DONE|Done [0-9]+ runs)' "$log" | tail -n 1 || true)
if [[ -n $final ]]; then echo "$final"; fi

if [[ $status -ne 0 ]]; then
  cp "$log" "$artifacts/fuzz.log"
  echo "fuzz: FAILED (status $status) after ${runs:-?} runs; last lines of the log:" >&2
  tail -n 80 "$log" >&2
  echo "fuzz: reproducer(s) and full log in $artifacts:" >&2
  ls -l "$artifacts" >&2
  exit "$status"
fi
rmdir "$artifacts" 2>/dev/null || true
echo "fuzz: OK, ${runs:-?} runs in $seconds s, no crash, leak or timeout"

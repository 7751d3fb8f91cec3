#!/usr/bin/env bash
# run.sh FUZZ_STAGE SECONDS [TARGET...]: runs each libFuzzer target (default: one per
# Tests/fuzz/corpus/<target>/) for SECONDS, starting from its checked-in corpus.
#
# New inputs go to FUZZ_STAGE/corpus/<target>/ (kept between runs, never checked in: copy an
# interesting one to Tests/fuzz/corpus/<target>/ by hand). A crash, a timeout (10 s on one
# input) or an out-of-memory leaves the input in FUZZ_STAGE/crashes/<target>-<kind>-<sha1>
# and fails the run; replay it with `FUZZ_STAGE/bin/fuzz-<target> THAT_FILE`. Exits 0 when
# no target failed, 1 otherwise, 2 on bad usage. Every target run is bounded by SECONDS + 60.
set -uo pipefail

if [ $# -lt 2 ]; then
    echo "usage: $0 FUZZ_STAGE SECONDS [TARGET...]" >&2
    exit 2
fi
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
stage=$(cd "$1" && pwd) || { echo "run.sh: no fuzz stage $1 (make fuzz)" >&2; exit 2; }
seconds=$2
shift 2
if [ $# -gt 0 ]; then
    targets=("$@")
else
    targets=()
    for d in "$repo"/Tests/fuzz/corpus/*/; do targets+=("$(basename "$d")"); done
fi

# The Swift backtracer would run before libFuzzer's handler and, under ASan, read memory it
# should not; libFuzzer prints the stack itself.
export SWIFT_BACKTRACE=enable=no
# Crashes are kept by libFuzzer's artifact_prefix; leak checking per input stays on
# (libFuzzer's -detect_leaks=1): the targets free what they allocate.
export ASAN_OPTIONS="${ASAN_OPTIONS:-halt_on_error=1:abort_on_error=0}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"

failed=0
mkdir -p "$stage/crashes"
for t in "${targets[@]}"; do
    bin="$stage/bin/fuzz-$t"
    seeds="$repo/Tests/fuzz/corpus/$t"
    if [ ! -x "$bin" ] || [ ! -d "$seeds" ]; then
        echo "== $t: no $bin or no $seeds" >&2
        failed=1
        continue
    fi
    mkdir -p "$stage/corpus/$t"
    log="$stage/crashes/$t.log"
    echo "== fuzz-$t for ${seconds} s (corpus $seeds, new inputs in $stage/corpus/$t)"
    timeout -k 10 $((seconds + 60)) "$bin" -max_total_time="$seconds" -timeout=10 \
        -rss_limit_mb=2048 -max_len=4096 -print_final_stats=1 \
        -artifact_prefix="$stage/crashes/$t-" "$stage/corpus/$t" "$seeds" >"$log" 2>&1
    rc=$?
    grep -a -E '^(#[0-9]+ +DONE|stat::number_of_executed_units|stat::peak_rss_mb)' "$log" | sed 's/^/   /'
    if [ "$rc" -ne 0 ]; then
        failed=1
        echo "== fuzz-$t FAILED (exit $rc); log $log"
        grep -a -E 'ERROR:|Fatal error|SUMMARY|Test unit written to|Base64:' "$log" | sed 's/^/   /'
        grep -a -E '^ +#[0-9]+ .* in .*(Chimaera|TaskCodec|Frame)' "$log" | head -8 | sed 's/^/   /'
    fi
done
exit "$failed"

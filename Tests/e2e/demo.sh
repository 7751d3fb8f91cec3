#!/usr/bin/env bash
# demo.sh STAGE: the `make demo` job. Starts a runtime from STAGE on a fresh segment, runs the
# C client example (the seed's 256 Md calls) against it, shows `chimaera status`, stops it,
# and prints the figures. The daemon is stopped on every exit path (killed by pid if the
# stop fails) and its segment removed.
set -euo pipefail

if [ $# -ne 1 ]; then
    echo "usage: $0 STAGE" >&2
    exit 2
fi
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
stage=$(cd "$1" && pwd)
chimaera="$stage/bin/chimaera"
segment="demo$$"
work=$(mktemp -d "${TMPDIR:-/tmp}/chimaera-demo.XXXXXX")
pid_file="$work/chimaera.pid"
log_file="$work/chimaera.log"
stopped=0

cleanup() {
    local status=$? pid=""
    trap - EXIT INT TERM
    [ -s "$pid_file" ] && pid=$(cat "$pid_file")
    if [ "$stopped" -eq 0 ]; then
        timeout 15 "$chimaera" stop --segment "$segment" --timeout-ms 5000 >/dev/null 2>&1 || true
    fi
    if [ -n "$pid" ]; then
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        if kill -0 "$pid" 2>/dev/null; then
            echo "demo: daemon $pid did not stop; killing it" >&2
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    rm -f "/dev/shm/chimaera_$segment"
    if [ "$status" -ne 0 ] && [ -s "$log_file" ]; then
        echo "demo: failed; the daemon's log:" >&2
        tail -n 40 "$log_file" >&2
    fi
    rm -rf "$work"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

export CHI_MODULE_PATH="$stage/lib/chimaera"
export CHIMAERA_SEGMENT="$segment"
unset CHIMAERA_EMBEDDED CHIMAERA_CONF

echo "== building examples/c/client_example.c against $stage"
"${CC:-cc}" -std=c11 -O2 -Wall -Wextra -I"$stage/include" \
    "$repo/examples/c/client_example.c" -o "$work/client_example" \
    -L"$stage/lib" -lchimaera -Wl,-rpath,"$stage/lib"

"${CC:-cc}" -std=c11 -O2 -Wall -Wextra -I"$stage/include" \
    "$repo/examples/c/bdev_example.c" -o "$work/bdev_example" \
    -L"$stage/lib" -lchimaera -Wl,-rpath,"$stage/lib"

echo "== starting the runtime on segment $segment"
timeout 60 "$chimaera" start --segment "$segment" --detach \
    --pid-file "$pid_file" --log-file "$log_file"
echo "runtime pid $(cat "$pid_file")"

echo "== client example (256 synchronous Md calls)"
timeout 120 "$work/client_example" | tee "$work/example.out"

echo "== block-device round trip (bdev, file backend through io_uring)"
TMPDIR="$work" timeout 120 "$work/bdev_example" | tee "$work/bdev.out"

echo "== chimaera status"
timeout 30 "$chimaera" status --segment "$segment"

echo "== stopping the runtime"
timeout 30 "$chimaera" stop --segment "$segment" --timeout-ms 10000
stopped=1
if [ -e "/dev/shm/chimaera_$segment" ]; then
    echo "demo: the segment /dev/shm/chimaera_$segment is still there after stop" >&2
    exit 1
fi

echo "== figures"
grep -E '^(OPS|Latency):' "$work/example.out"
cat "$work/bdev.out"

#!/usr/bin/env bash
# run-all.sh STAGE: every test, in order: the Swift unit tests, then the process-level tests
# (which build and run the C ABI tests) against the prefix staged in STAGE by `make all`.
# pytest runs last so that its summary line is the last line printed. Exits non-zero if
# anything failed.
set -uo pipefail

if [ $# -ne 1 ]; then
    echo "usage: $0 STAGE" >&2
    exit 2
fi
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CHI_STAGE=$(cd "$1" && pwd) || { echo "run-all: no staging directory $1" >&2; exit 2; }
export CHI_STAGE
cd "$repo"

failed=0
echo "== Swift unit tests (swift test)"
if ! swift test --scratch-path .build-test 2>&1; then
    echo "== Swift unit tests FAILED"
    failed=1
fi

echo "== process-level tests (pytest Tests/e2e, stage $CHI_STAGE)"
python3 -m pytest -q --durations=25 Tests/e2e
rc=$?
# Nothing may be printed after pytest's summary line.
if [ "$failed" -ne 0 ] || [ "$rc" -ne 0 ]; then
    exit 1
fi
exit 0

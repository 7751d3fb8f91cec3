#!/usr/bin/env python3
"""bench_md.py: round-trip time of synchronous Md calls from Python, as one JSON line:
{"python_sync_rtt_ns_p50": ..., "python_sync_rtt_ns_p99": ..., ...}.

Run against a daemon (see md_example.py for the environment):
    CHIMAERA_LIB=build/lib/libchimaera.so.1 PYTHONPATH=bindings/python \
        python3 examples/python/bench_md.py --segment demo --ops 100000
"""

import argparse
import json
import sys
import time

import chimaera


def percentile(sorted_ns, q):
    return sorted_ns[min(len(sorted_ns) - 1, int(q * len(sorted_ns)))]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--segment", default=None, help="runtime name (default $CHIMAERA_SEGMENT)")
    ap.add_argument("--ops", type=int, default=100000, help="timed Md calls")
    ap.add_argument("--warmup", type=int, default=1000, help="untimed Md calls first")
    ap.add_argument("--pool", default="bench_md_py")
    args = ap.parse_args()
    if args.ops < 1:
        ap.error("--ops must be >= 1")
    try:
        with chimaera.Client(segment=args.segment) as client:
            pool = client.create_pool(chimaera.SM_MODULE_NAME, args.pool)
            md, clock = pool.md, time.perf_counter_ns
            for _ in range(args.warmup):
                md()
            rtt = [0] * args.ops
            for i in range(args.ops):
                t0 = clock()
                md()
                rtt[i] = clock() - t0
    except chimaera.ChimaeraError as e:
        print(f"bench_md: {e}", file=sys.stderr)
        return 1
    rtt.sort()
    print(json.dumps({"python_sync_rtt_ns_p50": percentile(rtt, 0.50),
                      "python_sync_rtt_ns_p99": percentile(rtt, 0.99),
                      "ops": args.ops}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

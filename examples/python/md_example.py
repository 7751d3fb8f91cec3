#!/usr/bin/env python3
"""md_example.py: the seed's "Client API Example" in Python. Registers the small_message
module, creates the pool "ipc_test", runs 256 synchronous Md calls spread over the pool's
containers by direct hash, checks each returns 1, and prints the latency.

Run against a daemon (from the repository, with the library staged by `make all`):
    build/bin/chimaera start --segment demo --detach --pid-file /tmp/chimaera.pid
    CHIMAERA_SEGMENT=demo CHIMAERA_LIB=build/lib/libchimaera.so.1 \
        PYTHONPATH=bindings/python python3 examples/python/md_example.py
    build/bin/chimaera stop --segment demo
(After `pip install ./bindings/python`, PYTHONPATH is not needed; CHIMAERA_LIB is not either
when libchimaera.so.1 is on the library path.)
"""

import sys
import time

import chimaera


def main():
    ops, depth = 256, 0
    try:
        with chimaera.Client() as client:  # the segment comes from $CHIMAERA_SEGMENT
            client.register_module(chimaera.SM_MODULE_NAME)
            pool = client.create_pool(chimaera.SM_MODULE_NAME, "ipc_test")
            print(f"OPS: {ops}")
            start = time.perf_counter()
            for i in range(ops):
                dq = chimaera.dq_direct_hash(chimaera.SUBDOMAIN_GLOBAL_CONTAINERS, i)
                ret = pool.md(depth=depth, dq=dq)
                if ret != 1:
                    print(f"md_example: Md #{i} returned {ret}, expected 1", file=sys.stderr)
                    return 1
            usec = (time.perf_counter() - start) * 1e6
    except chimaera.ChimaeraError as e:
        print(f"md_example: {e}", file=sys.stderr)
        return 1
    print(f"Latency: {ops} ops, {usec:.1f} us total, {usec / ops:.3f} us/op, "
          f"{ops / usec:.3f} MOps/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

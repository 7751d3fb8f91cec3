// The seed's "Client API Example" in Swift: register small_message, create the pool
// "ipc_test", run 256 Md calls (then 256 more that suspend instead of blocking), check each
// returns 1 and print the latency. Run line: see Package.swift.
import Chimaera
import Glibc

func now() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

do {
    let client = try Client()
    try client.registerModule("small_message")
    let sm = try SmallMessageClient.create(client, name: "ipc_test")
    let ops = 256
    print("OPS: \(ops)")
    var t0 = now()
    for i in 0..<ops {
        let ret = try sm.md(depth: 0, .directHash(UInt64(i)))
        precondition(ret == 1, "Md returned \(ret)")
    }
    var us = Double(now() - t0) / 1000
    print("Latency: \(ops) ops, \(us) us total, \(us / Double(ops)) us/op, \(Double(ops) / us) MOps/s")
    t0 = now()
    for i in 0..<ops {
        let ret = try await sm.mdAsync(depth: 0, .directHash(UInt64(i)))
        precondition(ret == 1, "Md returned \(ret)")
    }
    us = Double(now() - t0) / 1000
    print("Async latency: \(ops) ops, \(us) us total, \(us / Double(ops)) us/op")
    client.close()
} catch {
    print("error: \(error)")
    exit(1)
}

// chi_bench_swift: small_message Md through the Swift API (ChimaeraSwift, over
// libchimaera.so) against a running runtime: the synchronous call and the awaited one.
//
//   chi_bench_swift --segment NAME [--iters N]
//
// Alternates short runs of each (awaited from the main actor), so both see the same CPU
// placements; in each round also a few awaits from a task of the global pool and a few with no
// poll before parking (the parker thread's path). Prints one JSON object line, then
// "sync_samples V:COUNT ...", "async_samples", "pool_samples" and "parked_samples" lines
// (10 ns steps) for `chimaera bench swift`, which merges them with the C client's samples of
// the same run.
import ChimaeraSwift
import Glibc

func nowNs() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
}

func fail(_ why: String) -> Never {
    let text = "chi_bench_swift: \(why)\n"
    _ = text.withCString { write(2, $0, strlen($0)) }
    exit(1)
}

func percentile(_ sorted: [UInt64], _ q: Double) -> UInt64 {
    guard !sorted.isEmpty else { return 0 }
    let rank = max(1, min(sorted.count, Int((q * Double(sorted.count)).rounded(.up))))
    return sorted[rank - 1]
}

/// "name V:COUNT V:COUNT ...", as the C bench programs print their samples.
func samplesLine(_ name: String, _ sorted: [UInt64]) -> String {
    var parts = [name]
    var i = 0
    while i < sorted.count {
        var j = i
        while j < sorted.count && sorted[j] == sorted[i] { j += 1 }
        parts.append("\(sorted[i]):\(j - i)")
        i = j
    }
    return parts.joined(separator: " ")
}

var segment: String?
var iters = 20_000
var args = CommandLine.arguments.dropFirst()
while let a = args.popFirst() {
    switch a {
    case "--segment": segment = args.popFirst()
    case "--iters": iters = args.popFirst().flatMap { Int($0) } ?? 0
    default: fail("unknown argument \(a) (usage: chi_bench_swift --segment NAME [--iters N])")
    }
}
guard let segment, iters >= 8 else { fail("usage: chi_bench_swift --segment NAME [--iters N >= 8]") }

do {
    let client = try Client(segment: segment, mode: .attach, connectTimeoutMs: 5000)
    let sm = try SmallMessageClient.create(client, name: "bench_swift")
    for i in 0..<1000 {
        guard try sm.md(depth: 0, .directHash(UInt64(i))) == 1 else { fail("Md did not return 1") }
        guard try await sm.mdAsync(depth: 0, .directHash(UInt64(i))) == 1 else { fail("Md did not return 1") }
    }
    var sync: [UInt64] = [], async: [UInt64] = [], pool: [UInt64] = [], parked: [UInt64] = []
    sync.reserveCapacity(iters)
    async.reserveCapacity(iters)
    let rounds = 8
    for round in 0..<rounds {
        let per = iters / rounds + (round < iters % rounds ? 1 : 0)
        for i in 0..<per {
            let t0 = nowNs()
            let r = try sm.md(depth: 0, .directHash(UInt64(i)))
            sync.append((nowNs() &- t0) / 10 * 10)
            if r != 1 { fail("Md returned \(r)") }
        }
        for i in 0..<per {
            let t0 = nowNs()
            let r = try await sm.mdAsync(depth: 0, .directHash(UInt64(i)))
            async.append((nowNs() &- t0) / 10 * 10)
            if r != 1 { fail("awaited Md returned \(r)") }
        }
        // Awaited from a task of the global pool rather than the main actor.
        let pooled = try await Task.detached { () throws(ChimaeraError) -> [UInt64] in
            var out: [UInt64] = []
            for i in 0..<max(1, per / 8) {
                let t0 = nowNs()
                let r = try await sm.mdAsync(depth: 0, .directHash(UInt64(i)))
                out.append((nowNs() &- t0) / 10 * 10)
                if r != 1 { fail("awaited Md returned \(r)") }
            }
            return out
        }.value
        pool += pooled
        // The parked path alone (no poll on the awaiting side): the parker thread's cost.
        client.awaitSpinNs = 0
        for i in 0..<max(1, per / 8) {
            let t0 = nowNs()
            let r = try await sm.mdAsync(depth: 0, .directHash(UInt64(i)))
            parked.append((nowNs() &- t0) / 10 * 10)
            if r != 1 { fail("awaited Md returned \(r)") }
        }
        client.awaitSpinNs = 20_000
    }
    sync.sort()
    async.sort()
    pool.sort()
    parked.sort()
    let s50 = percentile(sync, 0.5), a50 = percentile(async, 0.5)
    let ratio = s50 > 0 ? (Double(a50) / Double(s50) * 100).rounded() / 100 : 0
    print("{\"swift_sync_md_ns_p50\":\(s50),\"swift_sync_md_ns_p99\":\(percentile(sync, 0.99)),"
        + "\"swift_async_md_ns_p50\":\(a50),\"swift_async_md_ns_p99\":\(percentile(async, 0.99)),"
        + "\"swift_async_pool_md_ns_p50\":\(percentile(pool, 0.5)),"
        + "\"swift_parked_md_ns_p50\":\(percentile(parked, 0.5)),"
        + "\"swift_async_sync_ratio_p50\":\(ratio),\"iters\":\(sync.count)}")
    print(samplesLine("sync_samples", sync))
    print(samplesLine("async_samples", async))
    print(samplesLine("pool_samples", pool))
    print(samplesLine("parked_samples", parked))
    client.close()
} catch {
    fail("\(error)")
}

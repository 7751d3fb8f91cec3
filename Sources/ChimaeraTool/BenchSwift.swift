import Glibc

extension Bench {
    /// `bench swift`: small_message Md through the Swift API (libexec's chi_bench_swift, a
    /// program built on the ChimaeraSwift product), sync and awaited, beside the C client's
    /// sync Md (chi_bench_client) in the same run, alternating the two in `rounds` rounds so
    /// both see the same CPU placements. `swift_async_*` await from the main actor,
    /// `swift_async_pool_*` from a task of the global pool. `swift_parked_*` are awaited calls that park at once
    /// (no poll first): what a task slower than the poll pays. The goal for the
    /// awaited call, within 5x of the sync one, is printed as `target_async_sync_ratio`; it is
    /// a figure, not a check.
    static func swift(segment: String, iters: Int) -> [(String, Double)]? {
        var sync = Samples(), async = Samples(), pool = Samples(), parked = Samples(), c = Samples()
        let per = max(8, iters / rounds)
        for _ in 0..<rounds {
            let s = ChildProcess.run(libexec + "/chi_bench_swift", ["--segment", segment, "--iters", String(per)],
                                     timeoutMs: 600_000)
            guard s.status == 0,
                  sync.add(renamed(s.output, "sync_samples")), async.add(renamed(s.output, "async_samples")),
                  pool.add(renamed(s.output, "pool_samples")), parked.add(renamed(s.output, "parked_samples"))
            else {
                Tool.fail("bench swift: chi_bench_swift failed (\(s.status)): \(s.output.prefix(2000))")
                return nil
            }
            let r = client(segment, ["--sync", String(per), "--async", "0", "--samples"])
            guard r.status == 0, c.add(r.output) else {
                Tool.fail("bench swift: chi_bench_client failed (\(r.status)): \(r.output.prefix(2000))")
                return nil
            }
        }
        var out = sync.figures("swift_sync_md_ns") + async.figures("swift_async_md_ns")
            + [("swift_async_pool_md_ns_p50", pool.percentile(0.50)), ("swift_async_pool_md_ns_p99", pool.percentile(0.99))]
            + [("swift_parked_md_ns_p50", parked.percentile(0.50)), ("swift_parked_md_ns_p99", parked.percentile(0.99))]
            + c.figures("c_sync_md_ns")
        out.append(("async_sync_ratio_p50", ratio(async, sync)))
        out.append(("swift_c_sync_ratio_p50", ratio(sync, c)))
        out.append(("target_async_sync_ratio", 5))
        out.append(("rounds", Double(rounds)))
        out.append(("iters", Double(sync.n)))
        return out
    }

    /// `output`'s line starting with `name`, as a "samples ..." line for `Samples.add`.
    private static func renamed(_ output: String, _ name: String) -> String {
        guard let line = output.split(separator: "\n").first(where: { $0.hasPrefix(name + " ") }) else { return "" }
        return "samples" + line.dropFirst(name.count)
    }
}

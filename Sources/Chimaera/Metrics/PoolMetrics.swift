import CChimaera

/// Per-method task counters and latency histograms of one pool, one block per worker.
///
/// A worker writes only its own block, with plain (relaxed) stores and no lock: recording is
/// a clock read, a leading-zero count and three increments in memory the pool allocated when
/// it was made. A scrape sums the blocks of every worker with relaxed loads, so it sees a
/// snapshot that may lag a task or two behind, never a torn counter.
///
/// Not swift-metrics / swift-prometheus: their counters and histograms are shared objects
/// updated under a lock or with atomic read-modify-writes from every thread, a cost on each
/// task that a per-worker block avoids; the endpoint writes the text format itself.
///
/// Latency is a method's run, from the moment its worker starts it to its return (a method
/// that waits for subtasks includes the wait); the time a task spent queued is not in it.
final class PoolMetrics: @unchecked Sendable {
    /// Finite bucket bounds are 2^(minShift + i) ns for i in 0..<finiteBuckets (256 ns to
    /// about 2.1 s); one more bucket counts the slower runs (`+Inf`).
    static let minShift = 8, finiteBuckets = 24
    static let buckets = finiteBuckets + 1
    /// One (worker, method) cell: completed, errors, sum of ns, then the buckets (not
    /// cumulative), padded to whole cache lines so two workers never share one.
    private static let completedAt = 0, errorsAt = 1, sumAt = 2, bucketsAt = 3
    private static let cellWords = (bucketsAt + buckets + 7) & ~7

    /// Method ids below this have their own cell; any other id is counted in the last one.
    let methodSlots: Int
    private let workers: Int
    private let words: UnsafeMutablePointer<UInt64>
    /// Copied from `Clock` when the pool is made, so the task path reads no global.
    private let nsPerTick: Double

    /// - Parameters: methodIds: one more than the module's largest method id; workers: the
    ///   runtime's worker count.
    init(methodIds: Int, workers: Int) {
        methodSlots = max(1, methodIds) + 1
        self.workers = max(1, workers)
        let n = self.workers * methodSlots * Self.cellWords
        words = .allocate(capacity: n)
        words.initialize(repeating: 0, count: n)
        nsPerTick = Clock.nsPerTick
    }

    deinit { words.deallocate() }

    @inline(__always)
    private func cell(_ worker: Int, _ slot: Int) -> UnsafeMutablePointer<UInt64> {
        words + (worker * methodSlots + slot) * Self.cellWords
    }

    @inline(__always)
    private static func bump(_ p: UnsafeMutablePointer<UInt64>, _ d: UInt64) {
        chi_store64_relaxed(p, p.pointee &+ d)
    }

    /// The bucket a run of `ns` nanoseconds falls in.
    @inline(__always)
    static func bucket(ns: UInt64) -> Int {
        let bits = 64 - ns.leadingZeroBitCount // ns < 2^bits
        return min(max(bits - minShift, 0), finiteBuckets)
    }

    /// Records one run of `method` on `worker` (its own thread only) that took `ticks`
    /// chi_ticks() and returned `rc`. Allocates nothing and takes no lock.
    @inline(__always)
    func record(worker: Int, method: UInt32, rc: CInt, ticks: UInt64) {
        guard worker < workers else { return }
        let slot = Int(method) < methodSlots - 1 ? Int(method) : methodSlots - 1
        let c = cell(worker, slot)
        let ns = UInt64(Double(ticks) * nsPerTick)
        Self.bump(c + Self.completedAt, 1)
        if rc < 0 { Self.bump(c + Self.errorsAt, 1) }
        Self.bump(c + Self.sumAt, ns)
        Self.bump(c + Self.bucketsAt + Self.bucket(ns: ns), 1)
    }

    /// A method's figures summed over the workers (racy: see the type's comment).
    struct Totals {
        var completed: UInt64 = 0
        var errors: UInt64 = 0
        var sumNs: UInt64 = 0
        /// Per bucket, not cumulative.
        var buckets = [UInt64](repeating: 0, count: PoolMetrics.buckets)

        /// The upper bound (ns) of the bucket holding quantile `q` (0...1), or 0 with no runs;
        /// the last, unbounded bucket reports twice the largest finite bound.
        func quantileNs(_ q: Double) -> UInt64 {
            let total = buckets.reduce(0, +)
            guard total > 0 else { return 0 }
            let rank = UInt64((Double(total) * q).rounded(.up))
            var seen: UInt64 = 0
            for (i, n) in buckets.enumerated() {
                seen += n
                if seen >= max(rank, 1) { return PoolMetrics.upperBoundNs(i) }
            }
            return PoolMetrics.upperBoundNs(PoolMetrics.finiteBuckets)
        }
    }

    /// The upper bound of bucket `i` in ns (for the unbounded one, twice the last finite one).
    static func upperBoundNs(_ i: Int) -> UInt64 { UInt64(1) << UInt64(minShift + min(i, finiteBuckets)) }

    /// The totals of method slot `slot` (the last slot gathers undeclared ids).
    func totals(slot: Int) -> Totals {
        var t = Totals()
        for w in 0..<workers {
            let c = cell(w, slot)
            t.completed &+= chi_load64_relaxed(c + Self.completedAt)
            t.errors &+= chi_load64_relaxed(c + Self.errorsAt)
            t.sumNs &+= chi_load64_relaxed(c + Self.sumAt)
            for b in 0..<Self.buckets { t.buckets[b] &+= chi_load64_relaxed(c + Self.bucketsAt + b) }
        }
        return t
    }
}

import ArgumentParser
import CChimaeraABI
import Glibc

/// `chimaera bench`: each case starts its own runtime (unless --segment names a running one),
/// measures, prints its figures beside a baseline measured in the same run, and stops it.
struct Bench: ParsableCommand {
    static var configuration: CommandConfiguration {
        CommandConfiguration(
            abstract: "Run a benchmark case against its own runtime (or --segment's) and print its figures.",
            discussion: "Cases: small-message, idle\(availableExternal).")
    }

    @Argument(help: "The case: small-message, idle, or one with a program in libexec/chimaera (remote, bdev, python, orchestration, scale, upgrade, migrate, swift).")
    var which: String

    @Flag(help: "Print the figures as one JSON object.") var json = false
    @Option(help: "Measure against the runtime serving this segment instead of starting one.") var segment: String?
    @Option(help: "The config file of the runtime the case starts.") var config: String?
    @Option(help: "small-message: synchronous round trips in all.") var sync: String?
    @Option(help: "small-message: asynchronous tasks.") var async: String?
    @Option(help: "small-message: client threads of the async phase.") var threads: String?
    @Option(help: "idle: seconds to measure; remote: seconds of throughput.") var seconds: Double?
    @Option(help: "remote: round trips; swift: Md calls of each kind.") var iters: Int?
    @Flag(help: "bdev: run each case beside two CPU hogs.") var contended = false

    func run() throws { try Tool.finish(main()) }

    private func main() -> Int32 {
        let secondsOpt = seconds
        let seconds = secondsOpt ?? 10
        let external = Self.libexec + "/chi_bench_" + which.replacingDashes
        guard which == "small-message" || which == "idle" || (validName(which) && access(external, X_OK) == 0) else {
            Tool.fail("bench: unknown case \"\(which)\" (small-message, idle\(Self.availableExternal))")
            return 2
        }
        if which == "migrate" {
            guard segment == nil else {
                Tool.fail("bench migrate starts its own cluster; --segment does not apply")
                return 2
            }
            guard let f = Self.migrate() else { return 1 }
            Self.report(which, f, json: json)
            return 0
        }
        if which == "remote" {
            // Its own cluster of runtimes; --segment does not apply.
            guard segment == nil else {
                Tool.fail("bench remote starts its own cluster; --segment does not apply")
                return 2
            }
            guard let f = Self.remote(iters: iters ?? 20_000, seconds: secondsOpt ?? 2) else { return 1 }
            Self.report(which, f, json: json)
            return 0
        }
        // The orchestration case needs lanes that can move: two low-latency workers.
        let caseConfig = config ?? (which == "orchestration" && segment == nil ? Self.writeConfig(
            "runtime:\n  low_latency_workers: 2\n  high_latency_workers: 0\n") : nil)
        defer { if config == nil, let c = caseConfig { unlink(c) } }
        var daemon = OwnDaemon(segment: segment, config: caseConfig)
        guard daemon.start() else { return 1 }
        defer { daemon.stop() }
        var figures: [(String, Double)]
        switch which {
        case "small-message":
            guard let total = Int(sync ?? "100000"), total >= Self.rounds else {
                Tool.fail("bench small-message: --sync wants a count of at least \(Self.rounds)")
                return 2
            }
            guard let f = Self.smallMessage(segment: daemon.segment, sync: total, async: async, threads: threads) else { return 1 }
            figures = f
        case "idle":
            guard let f = Self.idle(daemon: daemon, seconds: seconds) else { return 1 }
            figures = f
        case "swift":
            guard let f = Self.swift(segment: daemon.segment, iters: iters ?? 40_000) else { return 1 }
            figures = f
        default:
            // A case with its own C program in libexec (chi_bench_<case>): it measures, and
            // prints one JSON object, against this runtime.
            let extra = contended ? ["--contended"] : []
            let r = ChildProcess.run(external, ["--segment", daemon.segment] + extra, timeoutMs: 1_200_000)
            guard r.status == 0 else {
                Tool.fail("bench \(which) failed (\(r.status)): \(r.output)")
                return 1
            }
            let f = ChildProcess.parseFlatJSON(r.output)
            figures = f.keys.sorted().map { ($0, f[$0]!) }
        }
        Self.report(which, figures, json: json)
        return 0
    }

    /// Writes `text` to a new temporary config file; returns its path.
    static func writeConfig(_ text: String) -> String? {
        var path = Array("/tmp/chimaera_bench_XXXXXX.yaml".utf8CString)
        let fd = mkstemps(&path, 5)
        guard fd >= 0 else { return nil }
        _ = text.withCString { write(fd, $0, strlen($0)) }
        close(fd)
        return String(decoding: path.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    static func report(_ which: String, _ figures: [(String, Double)], json: Bool) {
        if json {
            var parts = ["\"case\":\"\(which)\""]
            for (k, v) in figures {
                let text = v == v.rounded() && abs(v) < 1e15 ? String(Int(v)) : (v.isFinite ? String((v * 10000).rounded() / 10000) : "0")
                parts.append("\"\(k)\":\(text)")
            }
            print("{" + parts.joined(separator: ",") + "}")
        } else {
            print("chimaera bench \(which):")
            for (k, v) in figures { print("  \(k.padding(32)) \(format(v))") }
        }
    }

    /// Cases provided by C programs in libexec, for the usage message.
    static var availableExternal: String {
        guard let d = opendir(libexec) else { return "" }
        defer { closedir(d) }
        var names: [String] = []
        while let e = readdir(d) {
            let n = withUnsafeBytes(of: e.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if n.hasPrefix("chi_bench_"), !["chi_bench_client", "chi_bench_pingpong"].contains(n) {
                names.append(String(n.dropFirst(10)).replacingUnderscores)
            }
        }
        return names.sorted().map { ", " + $0 }.joined()
    }

    static func format(_ v: Double) -> String {
        v == v.rounded() ? String(Int(v)) : String(format2: "%.3f", v)
    }

    static var libexec: String {
        let exe = ChildProcess.selfExe
        var parts = exe.split(separator: "/", omittingEmptySubsequences: false)
        parts.removeLast(2)
        return parts.joined(separator: "/") + "/libexec/chimaera"
    }

    /// Rounds of the synchronous measurement. The VM moves its vCPUs now and then, which
    /// changes the cost of a cache-line transfer several-fold; alternating the baseline and
    /// the task path in short rounds lets both see the same placements.
    static let rounds = 8

    /// Sync round trips and async throughput from a C client, beside a raw two-process
    /// shared-memory ping-pong and ring.
    static func smallMessage(segment: String, sync: Int, async asyncCount: String?, threads: String?)
        -> [(String, Double)]?
    {
        let asyncArgs = asyncCount.map { ["--async", $0] } ?? []
        var out: [(String, Double)] = []
        guard let (rtt, base) = interleaved(segment: segment, sync: sync, cpu: nil) else { return nil }
        out += rtt.figures("sync_rtt_ns") + base.figures("baseline_pingpong_ns")
        out.append(("ratio_p50", ratio(rtt, base)))
        out.append(("rounds", Double(rounds)))
        // Throughput: the client's async phase and the raw ring, once each.
        let ring = ChildProcess.run(libexec + "/chi_bench_pingpong", ["--iters", "1000"])
        let async = client(segment, ["--sync", "0"] + asyncArgs + (threads.map { ["--threads", $0] } ?? []))
        guard ring.status == 0, async.status == 0 else {
            Tool.fail("throughput run failed: \(ring.status == 0 ? async.output : ring.output)")
            return nil
        }
        let r = ChildProcess.parseFlatJSON(ring.output), a = ChildProcess.parseFlatJSON(async.output)
        for k in a.keys.sorted() { out.append((k, a[k]!)) }
        if let v = r["baseline_ring_msgs_per_s"] { out.append(("baseline_ring_msgs_per_s", v)) }
        // The same with the client pinned to CPU 0 and the baseline's processes on CPUs 0 and
        // 1 (where the low-latency worker sits). Extra keys; the figures above are unpinned.
        if sysconf(Int32(_SC_NPROCESSORS_ONLN)) >= 2,
           let (prtt, pbase) = interleaved(segment: segment, sync: sync, cpu: 0)
        {
            out.append(("sync_rtt_ns_p50_pinned", prtt.percentile(0.50)))
            out.append(("sync_rtt_ns_p99_pinned", prtt.percentile(0.99)))
            out.append(("baseline_pingpong_ns_p50_pinned", pbase.percentile(0.50)))
            out.append(("ratio_p50_pinned", ratio(prtt, pbase)))
            let pa = client(segment, ["--sync", "0", "--threads", "1"] + asyncArgs, cpu: 0)
            if pa.status == 0, let v = ChildProcess.parseFlatJSON(pa.output)["async_tasks_per_s_1t"] {
                out.append(("async_tasks_per_s_1t_pinned", v))
            }
        }
        return out
    }

    /// `rounds` alternations of the raw ping-pong and the client's synchronous calls (`sync`
    /// in all), merged. With `cpu`, the client runs there and the ping-pong on CPUs 0 and 1.
    static func interleaved(segment: String, sync: Int, cpu: Int32?) -> (Samples, Samples)? {
        var rtt = Samples(), base = Samples()
        let per = sync / rounds
        for _ in 0..<rounds {
            let b = ChildProcess.run(libexec + "/chi_bench_pingpong",
                                     ["--iters", String(2 * per), "--no-ring", "--samples"] + (cpu == nil ? [] : ["--pin"]))
            guard b.status == 0, base.add(b.output) else {
                Tool.fail("baseline failed (\(b.status)): \(b.output.prefix(2000))")
                return nil
            }
            let c = client(segment, ["--sync", String(per), "--async", "0", "--samples"], cpu: cpu)
            guard c.status == 0, rtt.add(c.output) else {
                Tool.fail("bench client failed (\(c.status)): \(c.output.prefix(2000))")
                return nil
            }
        }
        return (rtt, base)
    }

    /// Runs chi_bench_client against `segment` (on `cpu` if given).
    static func client(_ segment: String, _ args: [String], cpu: Int32? = nil) -> ChildProcess.Result {
        ChildProcess.run(libexec + "/chi_bench_client", ["--segment", segment] + args, timeoutMs: 600_000, cpu: cpu)
    }

    /// p50 of `a` over p50 of `b`, to four decimals: a loaded machine can stretch the
    /// baseline's spinning ping-pong a hundredfold, and two decimals would then print 0.
    static func ratio(_ a: Samples, _ b: Samples) -> Double {
        let p = b.percentile(0.50)
        return p > 0 ? (a.percentile(0.50) / p * 10000).rounded() / 10000 : 0
    }

    /// Latency samples merged from several runs (each prints "samples V:COUNT ..."), for
    /// percentiles over all of them.
    struct Samples {
        private var counts: [UInt64: Int] = [:]
        private(set) var n = 0

        /// Adds the samples line of a run's output; false if it has none or a malformed one.
        mutating func add(_ output: String) -> Bool {
            guard let line = output.split(separator: "\n").first(where: { $0.hasPrefix("samples") }) else { return false }
            let pairs = line.split(separator: " ").dropFirst()
            for pair in pairs {
                let kv = pair.split(separator: ":")
                guard kv.count == 2, let v = UInt64(kv[0]), let c = Int(kv[1]) else { return false }
                counts[v, default: 0] += c
                n += c
            }
            return !pairs.isEmpty
        }

        /// Nearest rank, as the C programs compute it.
        func percentile(_ q: Double) -> Double {
            let rank = max(1, min(n, Int((q * Double(n)).rounded(.up))))
            var seen = 0
            for v in counts.keys.sorted() {
                seen += counts[v]!
                if seen >= rank { return Double(v) }
            }
            return 0
        }

        func figures(_ prefix: String) -> [(String, Double)] {
            [(prefix + "_p50", percentile(0.50)), (prefix + "_p99", percentile(0.99)),
             (prefix + "_p999", percentile(0.999))]
        }
    }

    /// CPU use of an idle runtime, the round trip of the first task after idleness, and the
    /// time from start to the first task served.
    static func idle(daemon: OwnDaemon, seconds: Double) -> [(String, Double)]? {
        do throws(ToolError) {
            let client = try Client(segment: daemon.segment, timeoutMs: 2000)
            let pool = try client.createPool(module: "small_message", name: "bench_idle", containersPerNode: 1)
            _ = try md(client, pool)
            let startup = Double(nowNs() &- daemon.startedAt) / 1e6
            usleep(1_000_000)
            let pid = try client.daemonPid()
            let c0 = ProcessStats.cpuTimeNs(pid: pid), t0 = nowNs()
            usleep(UInt32(seconds * 1e6))
            let c1 = ProcessStats.cpuTimeNs(pid: pid), t1 = nowNs()
            let pct = 100.0 * Double(c1 &- c0) / Double(t1 &- t0)
            var wakes: [Double] = [try md(client, pool)]
            for _ in 0..<2 {
                usleep(1_000_000)
                wakes.append(try md(client, pool))
            }
            wakes.sort()
            return [("idle_cpu_pct", (pct * 1000).rounded() / 1000), ("idle_seconds", seconds),
                    ("wake_rtt_us", (wakes[1] * 10).rounded() / 10), ("wake_rtt_us_max", (wakes[2] * 10).rounded() / 10),
                    ("startup_ms", (startup * 10).rounded() / 10)]
        } catch {
            Tool.fail(error.message)
            return nil
        }
    }

    /// One sync Md; returns its round trip in microseconds.
    static func md(_ c: Client, _ pool: UInt64) throws(ToolError) -> Double {
        let t0 = nowNs()
        _ = try c.md(pool: pool)
        return Double(nowNs() &- t0) / 1000
    }
}

/// A runtime the bench starts (and stops) itself, or one it was pointed at.
struct OwnDaemon {
    var segment: String
    let own: Bool
    let config: String?
    var startedAt: UInt64 = 0

    init(segment: String?, config: String?) {
        self.segment = segment ?? "bench_\(getpid())"
        own = segment == nil
        self.config = config
    }

    mutating func start() -> Bool {
        startedAt = nowNs()
        guard own else { return true }
        var args = ["start", "--segment", segment, "--detach", "--log-file", "/tmp/chimaera_\(segment).log"]
        if let config { args += ["--config", config] }
        let r = ChildProcess.run(ChildProcess.selfExe, args, timeoutMs: 30_000)
        if r.status != 0 { Tool.fail("cannot start a runtime for the bench: \(r.output)") }
        return r.status == 0
    }

    func stop() {
        guard own else { return }
        _ = ChildProcess.run(ChildProcess.selfExe, ["stop", "--segment", segment], timeoutMs: 30_000)
        unlink("/tmp/chimaera_\(segment).log")
    }
}

extension String {
    var replacingDashes: String { String(map { $0 == "-" ? "_" : $0 }) }
    var replacingUnderscores: String { String(map { $0 == "_" ? "-" : $0 }) }
    func padding(_ n: Int) -> String { self + String(repeating: " ", count: max(0, n - count)) }
}

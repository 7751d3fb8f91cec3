import ArgumentParser
import CChimaeraABI
import Glibc

/// Set by SIGINT/SIGTERM while `top` runs; the loop restores the terminal and exits.
nonisolated(unsafe) private var topInterrupted: sig_atomic_t = 0
/// Set when stdin reached end of file: from then on `top` only sleeps between frames.
nonisolated(unsafe) private var topStdinGone = false

/// `chimaera top`: a live view of a runtime, refreshed every `--interval` seconds: tasks/s and
/// p50/p99 run time per pool (from the pools' histograms), worker busy %, queue depths and
/// peers. `q` quits; `--once` prints one frame (rates over one interval) and exits.
struct Top: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "A live view of a runtime: tasks/s and p50/p99 per pool, worker busy %, queues, peers (q quits).")

    @OptionGroup var runtime: RuntimeOptions

    @Option(help: "Seconds between refreshes (0.1 to 60).")
    var interval = 1.0

    @Flag(help: "Print one frame, measured over one interval, and exit.")
    var once = false

    func validate() throws {
        guard interval >= 0.1 && interval <= 60 else { throw ValidationError("--interval \(interval): expected 0.1 to 60 seconds") }
    }

    func run() throws { try Tool.finish(top()) }

    private func top() -> Int32 {
        guard let r = Tool.resolve(runtime) else { return 2 }
        let client: Client
        var prev: Sample
        do throws(ToolError) {
            client = try Client(segment: r.segment)
            prev = Sample(try client.statsJSON())
        } catch {
            Tool.fail(error.message)
            return 1
        }
        let term = once ? nil : RawTerminal()
        defer { term?.restore() }
        signal(SIGINT) { _ in topInterrupted = 1 }
        signal(SIGTERM) { _ in topInterrupted = 1 }
        while topInterrupted == 0 {
            if waitForQuit(seconds: interval) { break }
            let cur: Sample
            do throws(ToolError) {
                cur = Sample(try client.statsJSON())
            } catch {
                term?.restore()
                Tool.fail(error.message)
                return 1
            }
            let frame = Self.frame(r.segment, prev, cur, live: !once)
            if once {
                print(frame, terminator: "")
                return 0
            }
            // Home, clear, draw: raw mode needs \r\n line ends.
            let text = "\u{1B}[H\u{1B}[2J" + frame.split(separator: "\n", omittingEmptySubsequences: false).joined(separator: "\r\n")
            _ = text.withCString { write(1, $0, strlen($0)) }
            prev = cur
        }
        return 0
    }

    /// Sleeps up to `seconds`, or until `q` (or Q) arrives on a terminal's stdin.
    private func waitForQuit(seconds: Double) -> Bool {
        let end = nowNs() + UInt64(seconds * 1e9)
        while topInterrupted == 0 {
            let now = nowNs()
            if now >= end { return false }
            let waitMs = Int32(min((end - now) / 1_000_000 + 1, 1000))
            if once || topStdinGone {
                // One frame, or no keyboard: stdin is not read (it may be a file or /dev/null).
                usleep(UInt32(waitMs) * 1000)
                continue
            }
            var pfd = pollfd(fd: 0, events: Int16(POLLIN), revents: 0)
            if poll(&pfd, 1, waitMs) > 0 {
                var ch: UInt8 = 0
                let got = read(0, &ch, 1)
                if got == 0 { topStdinGone = true } // keep refreshing until interrupted
                if got == 1 && (ch == UInt8(ascii: "q") || ch == UInt8(ascii: "Q")) { return true }
            }
        }
        return true
    }

    /// One frame from two samples `dt` apart.
    static func frame(_ segment: String, _ a: Sample, _ b: Sample, live: Bool) -> String {
        let dt = max(Double(b.uptimeMs - a.uptimeMs) / 1000, 0.001)
        var out = "chimaera top: runtime \"\(segment)\" pid \(b.pid), up \(b.uptimeMs / 1000) s"
            + (live ? "   (q quits)" : "") + "\n"
        out += "shared memory: \(b.heapUsed >> 20) MiB used of \(b.heapCapacity >> 20) MiB; clients \(b.clients)\n\n"
        out += pad("POOL", 24) + pad("MODULE", 16) + lpad("TASKS/S", 12) + lpad("ERR/S", 9)
            + lpad("P50", 10) + lpad("P99", 10) + lpad("QUEUED", 8) + lpad("TOTAL", 12) + "\n"
        for p in b.pools {
            let before = a.pools.first { $0.id == p.id }
            let done = p.completed - (before?.completed ?? 0)
            let errs = p.errors - (before?.errors ?? 0)
            var delta = p.buckets
            if let o = before?.buckets, o.count == delta.count { for i in delta.indices { delta[i] -= o[i] } }
            out += pad(p.name, 24) + pad(p.module, 16)
                + lpad(String(format2: "%.1f", Double(done) / dt), 12) + lpad(String(format2: "%.1f", Double(errs) / dt), 9)
                + lpad(quantile(delta, 0.50), 10) + lpad(quantile(delta, 0.99), 10)
                + lpad(String(p.queued), 8) + lpad(String(p.completed), 12) + "\n"
        }
        out += "\n" + pad("WORKER", 8) + pad("KIND", 14) + lpad("BUSY%", 8) + lpad("TASKS/S", 12) + lpad("SLEEPS/S", 10)
            + lpad("INBOX", 7) + "\n"
        for w in b.workers {
            let before = a.workers.first { $0.id == w.id }
            let busy = 100 * Double(w.busyNs - (before?.busyNs ?? 0)) / (dt * 1e9)
            out += pad("#\(w.id)", 8) + pad(w.kind, 14) + lpad(String(format2: "%.1f", min(busy, 100)), 8)
                + lpad(String(format2: "%.1f", Double(w.tasks - (before?.tasks ?? 0)) / dt), 12)
                + lpad(String(format2: "%.1f", Double(w.sleeps - (before?.sleeps ?? 0)) / dt), 10)
                + lpad(String(w.inbox), 7) + "\n"
        }
        if !b.peers.isEmpty {
            out += "\n" + pad("PEER", 8) + pad("ADDRESS", 28) + pad("STATE", 12) + lpad("PENDING", 8) + "\n"
            for p in b.peers {
                out += pad("node \(p.node)", 8) + pad(p.address, 28) + pad(p.state, 12) + lpad(String(p.pending), 8) + "\n"
            }
        }
        return out
    }

    /// The upper bound of the bucket holding quantile `q` of `buckets` (log2, from 256 ns).
    static func quantile(_ buckets: [Int], _ q: Double) -> String {
        let total = buckets.reduce(0, +)
        guard total > 0 else { return "-" }
        let rank = max(Int((Double(total) * q).rounded(.up)), 1)
        var seen = 0
        for (i, n) in buckets.enumerated() {
            seen += n
            if seen >= rank {
                return i == buckets.count - 1 ? ">" + duration(Double(UInt64(1) << UInt64(8 + i - 1)))
                    : "<" + duration(Double(UInt64(1) << UInt64(8 + i)))
            }
        }
        return "-"
    }

    static func duration(_ ns: Double) -> String {
        if ns < 1e3 { return "\(Int(ns))ns" }
        if ns < 1e6 { return String(format2: "%.0fus", ns / 1e3) }
        if ns < 1e9 { return String(format2: "%.0fms", ns / 1e6) }
        return String(format2: "%.1fs", ns / 1e9)
    }

    private static func pad(_ s: String, _ n: Int) -> String {
        let t = s.count >= n ? String(s.prefix(n - 1)) : s
        return t + String(repeating: " ", count: n - t.count)
    }
    private static func lpad(_ s: String, _ n: Int) -> String {
        s.count >= n ? s : String(repeating: " ", count: n - s.count) + s
    }
}

/// The figures of one stats JSON that `top` shows.
struct Sample {
    struct Pool { var id: Int; var name, module: String; var completed, errors, queued: Int; var buckets: [Int] }
    struct WorkerFig { var id: Int; var kind: String; var tasks, busyNs, sleeps, inbox: Int }
    struct Peer { var node: Int; var address, state: String; var pending: Int }
    var pid, uptimeMs, heapUsed, heapCapacity, clients: Int
    var pools: [Pool] = []
    var workers: [WorkerFig] = []
    var peers: [Peer] = []

    init(_ json: String) {
        let s = StatsView(json)
        pid = s.int("pid")
        uptimeMs = s.int("uptime_ms")
        heapUsed = s.object("shm")?.int("heap_used") ?? 0
        heapCapacity = s.object("shm")?.int("heap_capacity") ?? 0
        clients = s.objects("clients").count
        for p in s.objects("pools") {
            var pool = Pool(id: p.int("id"), name: p.string("name"), module: p.string("module"), completed: 0, errors: 0,
                            queued: p.objects("lanes").reduce(0) { $0 + $1.int("queued") }, buckets: [])
            for m in p.objects("methods") {
                pool.completed += m.int("completed")
                pool.errors += m.int("errors")
                let b = m.ints("buckets")
                if pool.buckets.count < b.count { pool.buckets += Array(repeating: 0, count: b.count - pool.buckets.count) }
                for i in b.indices { pool.buckets[i] += b[i] }
            }
            pools.append(pool)
        }
        for w in s.objects("workers") {
            workers.append(WorkerFig(id: w.int("id"), kind: w.string("kind"), tasks: w.int("tasks_run"),
                                     busyNs: w.int("busy_ns"), sleeps: w.int("sleeps"), inbox: w.int("inbox")))
        }
        for p in s.object("remote")?.objects("peers") ?? [] where p.string("state") != "self" {
            peers.append(Peer(node: p.int("node"), address: p.string("address"), state: p.string("state"),
                              pending: p.int("pending")))
        }
    }
}

/// The terminal in raw mode (no echo, no line buffering; signals still work) until `restore`.
final class RawTerminal {
    private var saved = termios()
    private var active = false

    init() {
        guard isatty(0) != 0, tcgetattr(0, &saved) == 0 else { return }
        var raw = saved
        raw.c_lflag &= ~tcflag_t(ICANON | ECHO)
        raw.c_cc.6 = 1 // VMIN
        raw.c_cc.5 = 0 // VTIME
        guard tcsetattr(0, TCSANOW, &raw) == 0 else { return }
        active = true
        // Hide the cursor while drawing.
        _ = "\u{1B}[?25l".withCString { write(1, $0, strlen($0)) }
    }

    func restore() {
        guard active else { return }
        active = false
        _ = tcsetattr(0, TCSANOW, &saved)
        _ = "\u{1B}[?25h\n".withCString { write(1, $0, strlen($0)) }
    }
}

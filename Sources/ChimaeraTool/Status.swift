import ArgumentParser
import CChimaeraABI
import Glibc

/// `chimaera status`: the runtime's statistics, and its CPU use (since start, and over a
/// window measured from /proc without waking the runtime).
struct Status: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Workers, pools, lanes, task counts and CPU use of a runtime.")

    @OptionGroup var runtime: RuntimeOptions

    @Flag(help: "Print the runtime's statistics as one JSON object.")
    var json = false

    @Option(help: "Also measure the runtime's CPU use over this many milliseconds.")
    var cpuWindowMs = 0

    func run() throws { try Tool.finish(status()) }

    private func status() -> Int32 {
        guard let r = Tool.resolve(runtime) else { return 2 }
        let name = r.segment
        let windowMs = cpuWindowMs
        let client: Client
        do throws(ToolError) {
            client = try Client(segment: name)
        } catch {
            Tool.fail(error.message)
            return 1
        }
        let pid = (try? client.daemonPid()) ?? 0
        var windowPct: Double?
        if windowMs > 0 {
            let c0 = ProcessStats.cpuTimeNs(pid: pid), t0 = nowNs()
            usleep(UInt32(windowMs) * 1000)
            let c1 = ProcessStats.cpuTimeNs(pid: pid), t1 = nowNs()
            windowPct = 100.0 * Double(c1 &- c0) / Double(max(t1 &- t0, 1))
        }
        let stats: String
        do throws(ToolError) {
            stats = try client.statsJSON()
        } catch {
            Tool.fail(error.message)
            return 1
        }
        if json {
            print(stats)
            return 0
        }
        let top = StatsView(stats)
        print("runtime \"\(name)\": pid \(pid), up \(top.int("uptime_ms") / 1000) s")
        print(String(format2: "cpu: %.2f%% of one core since start", top.double("cpu_pct_since_start")))
        if let w = windowPct { print(String(format2: "cpu: %.2f%% of one core over the last \(windowMs) ms", w)) }
        if let shm = top.object("shm") {
            print("shared memory: \(shm.int("heap_used") >> 20) MiB used of \(shm.int("heap_capacity") >> 20) MiB")
        }
        if let remote = top.object("remote") {
            let peers = remote.objects("peers").filter { $0.string("state") != "self" }.map { p in
                "node \(p.int("node")) \(p.string("address")) \(p.string("state"))"
                    + (p.string("reason").isEmpty ? "" : " (\(p.string("reason")))")
            }
            print("cluster: node \(top.int("node_id")) of \(top.int("nodes")); sent \(remote.int("sent")), served \(remote.int("served")), failed \(remote.int("failed"))")
            for p in peers { print("  \(p)") }
        }
        let clients = top.objects("clients")
        print("clients: \(clients.count) attached, \(top.int("clients_gone")) gone, \(top.int("clients_refused")) refused; bad ring entries \(top.int("bad_tasks"))")
        for c in clients {
            print("  #\(c.int("id")) pid=\(c.int("pid")) \(c.string("state")) in_flight=\(c.int("tasks_in_flight")) queued=\(c.int("queued")) memory=\(c.int("memory_bytes") >> 10)KiB")
        }
        print("workers:")
        for w in top.objects("workers") {
            print("  #\(w.int("id")) \(w.string("kind")) cpu=\(w.int("cpu")) tasks=\(w.int("tasks_run")) busy=\(w.int("busy_ns") / 1000)us sleeps=\(w.int("sleeps")) fibers=\(w.int("fibers"))")
        }
        print("modules:")
        for m in top.objects("modules") {
            print("  \(m.string("name")) version \(m.int("version")) from \(m.string("path"))")
        }
        print("pools:")
        for p in top.objects("pools") {
            let lanes = p.objects("lanes")
            let run = lanes.reduce(0) { $0 + $1.int("tasks_run") }
            let queued = lanes.reduce(0) { $0 + $1.int("queued") }
            print("  #\(p.int("id")) \(p.string("name")) module=\(p.string("module")) v\(p.int("module_version")) containers=\(p.int("containers")) lanes=\(lanes.count) tasks=\(run) queued=\(queued)")
            for c in p.objects("placement") {
                let size = c.has("state_bytes") ? " state=\(Self.bytes(c.int("state_bytes")))" : ""
                print("    container \(c.int("container")) on node \(c.int("node"))\(size)")
            }
        }
        return 0
    }

    /// 1536 -> "1.5 KiB".
    static func bytes(_ n: Int) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB"]
        var v = Double(n), u = 0
        while v >= 1024 && u < units.count - 1 {
            v /= 1024
            u += 1
        }
        return u == 0 ? "\(n) B" : String(format2: "%.1f ", v) + units[u]
    }
}

extension String {
    /// Formats one Double with a printf pattern (no Foundation).
    init(format2 fmt: String, _ v: Double) {
        var buf = [CChar](repeating: 0, count: 256)
        _ = withVaList([v]) { vsnprintf(&buf, 256, fmt, $0) }
        self = String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

/// A read-only view of the stats JSON, enough for printing (keys of the top object and of
/// the objects in its arrays). Not a general JSON parser.
struct StatsView {
    private let text: Substring

    init(_ text: String) { self.text = text[...] }
    private init(sub: Substring) { text = sub }

    private func raw(_ key: String) -> Substring? {
        // Search the top level only: track depth so nested keys are skipped.
        var depth = 0
        var i = text.startIndex
        let needle = "\"\(key)\":"
        while i < text.endIndex {
            let ch = text[i]
            if ch == "{" || ch == "[" { depth += 1 } else if ch == "}" || ch == "]" { depth -= 1 }
            if depth == 1 && ch == "\"" && text[i...].hasPrefix(needle) {
                let start = text.index(i, offsetBy: needle.count)
                return text[start...]
            }
            if ch == "\"" && depth >= 1 {
                // Skip the string.
                var j = text.index(after: i)
                while j < text.endIndex && text[j] != "\"" {
                    if text[j] == "\\" { j = text.index(after: j) }
                    j = text.index(after: j)
                }
                i = j
            }
            i = text.index(after: i)
        }
        return nil
    }

    func int(_ key: String) -> Int { Int(double(key)) }

    func has(_ key: String) -> Bool { raw(key) != nil }

    func double(_ key: String) -> Double {
        guard let r = raw(key) else { return 0 }
        return Double(r.prefix { "-0123456789.eE+".contains($0) }) ?? 0
    }

    func string(_ key: String) -> String {
        guard let r = raw(key), r.first == "\"" else { return "" }
        return String(r.dropFirst().prefix { $0 != "\"" })
    }

    /// The integers of the array under `key` (`[1,2,3]`); empty if it is not one.
    func ints(_ key: String) -> [Int] {
        guard let r = raw(key), r.first == "[" else { return [] }
        return r.dropFirst().prefix { $0 != "]" }.split(separator: ",").compactMap {
            Int($0.trimmingPrefix(" "))
        }
    }

    /// The object under `key`, up to its own closing brace (nested objects and strings
    /// skipped: the first `}` would end it inside its first nested object).
    func object(_ key: String) -> StatsView? {
        guard let r = raw(key), r.first == "{" else { return nil }
        var depth = 0
        var inString = false
        var i = r.startIndex
        while i < r.endIndex {
            let ch = r[i]
            if inString {
                if ch == "\\" { i = r.index(after: i) } else if ch == "\"" { inString = false }
            } else if ch == "\"" {
                inString = true
            } else if ch == "{" || ch == "[" {
                depth += 1
            } else if ch == "}" || ch == "]" {
                depth -= 1
                if depth == 0 { return StatsView(sub: r[...i]) }
            }
            i = r.index(after: i)
        }
        return nil
    }

    func objects(_ key: String) -> [StatsView] {
        guard let r = raw(key), r.first == "[" else { return [] }
        var out: [StatsView] = []
        var depth = 0
        var start = r.startIndex
        var inString = false
        var i = r.startIndex
        while i < r.endIndex {
            let ch = r[i]
            if inString {
                if ch == "\\" { i = r.index(after: i) } else if ch == "\"" { inString = false }
            } else if ch == "\"" {
                inString = true
            } else if ch == "{" || ch == "[" {
                depth += 1
                if depth == 2 && ch == "{" { start = i }
            } else if ch == "}" || ch == "]" {
                if depth == 2 && ch == "}" { out.append(StatsView(sub: r[start...i])) }
                depth -= 1
                if depth == 0 { break }
            }
            i = r.index(after: i)
        }
        return out
    }
}

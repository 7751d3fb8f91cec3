import Glibc

/// The runtime's log: one line per event on stderr (the daemon's log file), prefixed with
/// the time, the process and the level. Quiet below `Log.level`.
package enum Log {
    nonisolated(unsafe) package static var level = RuntimeConfig.LogLevel.info

    private static func rank(_ l: RuntimeConfig.LogLevel) -> Int {
        switch l {
        case .debug: 0
        case .info: 1
        case .warn: 2
        case .error: 3
        }
    }

    package static func write(_ l: RuntimeConfig.LogLevel, _ message: @autoclosure () -> String) {
        guard rank(l) >= rank(level) else { return }
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        var tm = tm()
        var secs = ts.tv_sec
        gmtime_r(&secs, &tm)
        let stamp = String(format4: Int(tm.tm_hour), Int(tm.tm_min), Int(tm.tm_sec), ts.tv_nsec / 1_000_000)
        let line = "\(stamp) chimaera[\(getpid())] \(l.rawValue): \(message())\n"
        // One write per line, so lines from several threads do not interleave.
        _ = line.withCString { Glibc.write(2, $0, strlen($0)) }
    }

    package static func debug(_ m: @autoclosure () -> String) { write(.debug, m()) }
    package static func info(_ m: @autoclosure () -> String) { write(.info, m()) }
    package static func warn(_ m: @autoclosure () -> String) { write(.warn, m()) }
    package static func error(_ m: @autoclosure () -> String) { write(.error, m()) }
}

extension String {
    /// "HH:MM:SS.mmm".
    fileprivate init(format4 h: Int, _ m: Int, _ s: Int, _ ms: Int) {
        func two(_ v: Int) -> String { v < 10 ? "0\(v)" : "\(v)" }
        let msText = ms < 10 ? "00\(ms)" : ms < 100 ? "0\(ms)" : "\(ms)"
        self = "\(two(h)):\(two(m)):\(two(s)).\(msText)"
    }
}

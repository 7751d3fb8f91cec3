import Glibc
import Logging

/// The runtime's log, through swift-log: one `Logger` per subsystem (label `chimaera.<name>`:
/// runtime, remote, worker, module, upgrade, migrate, metrics...), each line on stderr
/// prefixed with the time, the process, the level and the subsystem. In the foreground that is
/// the terminal; detached (`chimaera start --detach --log-file FILE`) stderr is the log file,
/// which is rotated by size (`runtime.log_max_bytes`, `runtime.log_keep`). The handler is
/// the runtime's own and is handed to each Logger: nothing is bootstrapped process-wide, so an
/// application that embeds the runtime keeps its own swift-log setup.
package enum Log {
    nonisolated(unsafe) package static var level = RuntimeConfig.LogLevel.info {
        didSet { lock.withLock { loggers.removeAll() } }
    }
    private static let lock = LogLock()
    nonisolated(unsafe) private static var loggers: [String: Logger] = [:]

    /// The logger of a subsystem.
    package static func logger(_ subsystem: String) -> Logger {
        lock.withLock {
            if let l = loggers[subsystem] { return l }
            var l = Logger(label: "chimaera.\(subsystem)") { label in LineHandler(label: label) }
            l.logLevel = level.swiftLog
            loggers[subsystem] = l
            return l
        }
    }

    /// Where rotation applies: set once the log file is known (the CHIMAERA_LOG_FILE the tool
    /// exports for a detached runtime).
    package static func useFile(_ path: String, maxBytes: Int, keep: Int) {
        LogFile.shared.configure(path: path, maxBytes: maxBytes, keep: keep)
    }

    /// A message that starts "remote: ..." or "worker 3: ..." is filed under that subsystem.
    private static func subsystem(of message: String) -> String {
        guard let colon = message.firstIndex(of: ":") else { return "runtime" }
        let head = message[..<colon]
        let word = head.split(separator: " ").first.map(String.init) ?? ""
        let known = ["remote", "worker", "module", "pool", "orchestrator", "metrics", "clients", "runtime", "work"]
        return known.contains(word) && head.count <= 40 ? word : "runtime"
    }

    package static func write(_ l: RuntimeConfig.LogLevel, _ message: @autoclosure () -> String) {
        guard l.rank >= level.rank else { return }
        let text = message()
        logger(subsystem(of: text)).log(level: l.swiftLog, "\(text)")
    }

    package static func debug(_ m: @autoclosure () -> String) { write(.debug, m()) }
    package static func info(_ m: @autoclosure () -> String) { write(.info, m()) }
    package static func warn(_ m: @autoclosure () -> String) { write(.warn, m()) }
    package static func error(_ m: @autoclosure () -> String) { write(.error, m()) }
}

extension RuntimeConfig.LogLevel {
    var rank: Int {
        switch self {
        case .debug: 0
        case .info: 1
        case .warn: 2
        case .error: 3
        }
    }

    var swiftLog: Logger.Level {
        switch self {
        case .debug: .debug
        case .info: .info
        case .warn: .warning
        case .error: .error
        }
    }
}

/// One line per event: "HH:MM:SS.mmm chimaera[PID] LEVEL [subsystem]: message".
struct LineHandler: LogHandler {
    let label: String
    var logLevel: Logger.Level = .info
    var metadata: Logger.Metadata = [:]

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(level: Logger.Level, message: Logger.Message, metadata: Logger.Metadata?,
             source: String, file: String, function: String, line: UInt) {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        var tm = tm()
        var secs = ts.tv_sec
        gmtime_r(&secs, &tm)
        let stamp = String(format4: Int(tm.tm_hour), Int(tm.tm_min), Int(tm.tm_sec), ts.tv_nsec / 1_000_000)
        let name: String
        switch level {
        case .warning: name = "warn"
        case .critical: name = "error"
        default: name = level.rawValue
        }
        let sub = label.hasPrefix("chimaera.") ? String(label.dropFirst(9)) : label
        // The message keeps its own "remote: " prefix; the label is added for the others.
        let text = "\(message)"
        let tag = text.hasPrefix(sub + ":") || text.hasPrefix(sub + " ") ? "" : "\(sub): "
        LogFile.shared.write("\(stamp) chimaera[\(getpid())] \(name): \(tag)\(text)\n")
    }
}

/// stderr, and the log file's rotation when there is one.
final class LogFile: @unchecked Sendable {
    static let shared = LogFile()
    private let lock = LogLock()
    private var path: String?
    private var maxBytes = 0
    private var keep = 0
    private var size = 0

    func configure(path: String, maxBytes: Int, keep: Int) {
        lock.withLock {
            self.path = path
            self.maxBytes = maxBytes
            self.keep = keep
            var st = stat()
            size = fstat(2, &st) == 0 ? Int(st.st_size) : 0
        }
    }

    /// One write per line (lines from several threads do not interleave); rotates first when
    /// the line would take the file past its size.
    func write(_ line: String) {
        lock.withLock {
            let n = line.utf8.count
            if let path, maxBytes > 0, size > 0, size + n > maxBytes { rotate(path) }
            _ = line.withCString { Glibc.write(2, $0, strlen($0)) }
            size += n
        }
    }

    /// FILE.(keep-1) -> FILE.keep, ..., FILE -> FILE.1; a fresh FILE becomes stdout and stderr.
    private func rotate(_ path: String) {
        if keep > 0 {
            unlink("\(path).\(keep)")
            var i = keep - 1
            while i >= 1 {
                rename("\(path).\(i)", "\(path).\(i + 1)")
                i -= 1
            }
            rename(path, "\(path).1")
        } else {
            unlink(path)
        }
        let fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
        guard fd >= 0 else { return } // keep writing to the renamed file rather than lose lines
        dup2(fd, 1)
        dup2(fd, 2)
        close(fd)
        size = 0
    }
}

/// A mutex for the log (no Foundation).
final class LogLock: @unchecked Sendable {
    private var m = pthread_mutex_t()
    init() { pthread_mutex_init(&m, nil) }
    func withLock<T>(_ body: () -> T) -> T {
        pthread_mutex_lock(&m)
        defer { pthread_mutex_unlock(&m) }
        return body()
    }
}

extension String {
    /// "HH:MM:SS.mmm".
    fileprivate init(format4 h: Int, _ m: Int, _ s: Int, _ ms: Int) {
        func two(_ v: Int) -> String { v < 10 ? "0\(v)" : "\(v)" }
        let msText = ms < 10 ? "00\(ms)" : ms < 100 ? "0\(ms)" : "\(ms)"
        self = "\(two(h)):\(two(m)):\(two(s)).\(msText)"
    }
}

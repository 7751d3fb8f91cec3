import ChimaeraYAML
import Glibc

/// The runtime's settings, as read from a YAML file such as `chimaera.yaml`.
///
/// Every key is optional; a property keeps its default when its key is absent. Values are
/// checked when parsed, so a `RuntimeConfig` obtained from `load` or `parse` is always valid.
/// One set by hand is not checked.
package struct RuntimeConfig: Sendable, Equatable {
    /// How much the runtime logs (`runtime.log_level`).
    package enum LogLevel: String, Sendable, CaseIterable {
        case debug, info, warn, error
    }

    /// How a client reaches the runtime (`client.mode`).
    package enum ClientMode: String, Sendable, CaseIterable {
        /// Connect to a daemon already serving the shared-memory segment.
        case attach
        /// Start the runtime inside the client's own process.
        case embedded
    }

    /// `runtime.name`: names the shared-memory segment `/dev/shm/chimaera_<name>`.
    package var name = "default"
    /// `runtime.shm_size`: the segment's size in bytes.
    package var shmSize = 1 << 30
    /// `runtime.queue_depth`: the number of ingress queue slots, a power of two.
    package var queueDepth = 4096
    /// `runtime.low_latency_workers`: workers for short tasks.
    package var lowLatencyWorkers = 1
    /// `runtime.high_latency_workers`: workers for long tasks.
    package var highLatencyWorkers = 1
    /// `runtime.pin_workers`: whether each worker is pinned to a CPU.
    package var pinWorkers = true
    /// `runtime.worker_spin_us`: how long an idle worker polls before sleeping.
    package var workerSpinUs = 50
    /// `runtime.module_path`: directories searched, in order, for `lib<name>.so`.
    package var modulePath: [String] = []
    /// `runtime.modules`: modules loaded at start, in order.
    package var modules: [String] = []
    /// `runtime.log_level`.
    package var logLevel = LogLevel.info
    /// `runtime.log_max_bytes` and `runtime.log_keep`: the log file (`chimaera start
    /// --log-file`) is rotated at this size, keeping this many older files (FILE.1 ...).
    package var logMaxBytes = 64 << 20
    package var logKeep = 3
    /// `runtime.work_orchestrator`: the policy module that moves lanes between workers.
    package var workOrchestrator = "worch_load_balance"
    /// `client.mode`.
    package var clientMode = ClientMode.attach
    /// `client.spin_us`: how long a waiting client polls before sleeping.
    package var clientSpinUs = 20
    /// The `cluster` section: the nodes this runtime works with.
    package var cluster = ClusterConfig()
    /// The bounds on what clients may make the runtime spend (`runtime.max_*` and friends).
    package var limits = RuntimeLimits()
    /// `client.submit_timeout_ms`: how long chi_task_submit waits while the runtime holds
    /// the client back (its ring full) before it returns -EAGAIN.
    package var submitTimeoutMs = 5000
    /// `runtime.metrics`: the Prometheus endpoint, off unless `listen` is given.
    package var metrics = MetricsConfig()

    /// The default configuration.
    package init() {}

    // The limits each key is checked against; error messages are built from them.
    fileprivate static let nameMaxLength = 48
    fileprivate static let shmSizeRange = (16 << 20)...(64 << 30)
    fileprivate static let queueDepthRange = 64...1_048_576
    fileprivate static let workerRange = 0...64
    fileprivate static let spinRange = 0...100_000
    /// A bound on what `load` reads, so a path such as /dev/zero cannot exhaust memory.
    fileprivate static let maxFileSize = 1 << 20

    /// Loads the configuration from a file.
    ///
    /// - Parameter path: The file to read. When nil, `$CHIMAERA_CONF` names the file; when
    ///   that is unset or empty, the defaults are returned without reading anything.
    /// - Throws: `ConfigError` naming the file when it cannot be read or is larger than 1 MiB,
    ///   and as `parse(_:file:)` does for its content.
    package static func load(path: String?) throws(ConfigError) -> RuntimeConfig {
        guard let path = path ?? getenv("CHIMAERA_CONF").map({ String(cString: $0) }),
            !path.isEmpty
        else { return RuntimeConfig() }
        return try parse(bytes: try readFile(path), file: path)
    }

    /// Parses YAML text into a configuration.
    ///
    /// - Parameters:
    ///   - text: The YAML source. An empty document, or `{}`, gives the defaults.
    ///   - file: The name used in error messages.
    /// - Throws: `ConfigError` for a YAML syntax error, an unknown or repeated key, or a value
    ///   out of its range; the error names the file, the line and the dotted key.
    package static func parse(_ text: String, file: String) throws(ConfigError) -> RuntimeConfig {
        try parse(bytes: Array(text.utf8), file: file)
    }

    /// Parses raw file bytes; as `parse(_:file:)`, and invalid UTF-8 is an error on its line.
    static func parse(bytes: [UInt8], file: String) throws(ConfigError) -> RuntimeConfig {
        var config = RuntimeConfig()
        guard let root = try YAMLNode.parse(bytes: bytes, file: file) else { return config }
        let r = ValueReader(file: file)
        for entry in try r.entries(of: root, path: nil) {
            switch entry.key {
            case "runtime": try config.readRuntime(entry.value, r)
            case "client": try config.readClient(entry.value, r)
            case "cluster": try config.readCluster(entry.value, r)
            default: throw r.unknownKey(entry.key, line: entry.keyLine)
            }
        }
        return config
    }

    /// Parses a size: a byte count with an optional binary suffix K, M, G or T (either case).
    ///
    /// - Returns: The size in bytes, or nil for anything else (signs, fractions, spaces,
    ///   "KB"-style suffixes) or a size that does not fit in an `Int`.
    package static func parseSize(_ s: String) -> Int? {
        var digits = Substring(s)
        var shift = 0
        switch s.last {
        case "k", "K": shift = 10
        case "m", "M": shift = 20
        case "g", "G": shift = 30
        case "t", "T": shift = 40
        default: break
        }
        if shift != 0 { digits = digits.dropLast() }
        guard !digits.isEmpty, digits.utf8.allSatisfy({ (0x30...0x39).contains($0) }),
            let count = Int(digits)
        else { return nil }
        let (bytes, overflow) = count.multipliedReportingOverflow(by: 1 << shift)
        return overflow ? nil : bytes
    }

    private mutating func readRuntime(_ node: YAMLNode, _ r: ValueReader) throws(ConfigError) {
        var workersLine: Int?
        var limitsLine: Int?
        for entry in try r.entries(of: node, path: "runtime") {
            let key = "runtime." + entry.key
            let v = entry.value
            switch entry.key {
            case "name":
                name = try r.scalar(v, key, "a name \(nameRule)") { isIdentifier($0) ? $0 : nil }
            case "shm_size":
                let range = Self.shmSizeRange
                let expected = "a size between \(sizeText(range.lowerBound)) and "
                    + "\(sizeText(range.upperBound)) (bytes, or a number with a K, M or G suffix)"
                shmSize = try r.scalar(v, key, expected) {
                    Self.parseSize($0).flatMap { range.contains($0) ? $0 : nil }
                }
            case "queue_depth":
                let range = Self.queueDepthRange
                let expected = "a power of two between \(range.lowerBound) and \(range.upperBound)"
                queueDepth = try r.scalar(v, key, expected) {
                    Int($0).flatMap { range.contains($0) && $0.nonzeroBitCount == 1 ? $0 : nil }
                }
            case "low_latency_workers":
                lowLatencyWorkers = try r.integer(v, key, in: Self.workerRange)
                workersLine = entry.keyLine
            case "high_latency_workers":
                highLatencyWorkers = try r.integer(v, key, in: Self.workerRange)
                workersLine = entry.keyLine
            case "pin_workers":
                pinWorkers = try r.bool(v, key)
            case "worker_spin_us":
                workerSpinUs = try r.integer(v, key, in: Self.spinRange)
            case "module_path":
                let each = "a non-empty directory path"
                modulePath = try r.list(v, key, of: "directories", each: each) {
                    $0.isEmpty || $0.utf8.contains(0) ? nil : $0
                }
            case "modules":
                let each = "a module name \(nameRule)"
                modules = try r.list(v, key, of: "module names", each: each) {
                    isIdentifier($0) ? $0 : nil
                }
            case "log_level":
                logLevel = try r.choice(v, key)
            case "log_max_bytes":
                let expected = "a size between 64K and 1T (bytes, or a number with a K, M or G suffix)"
                logMaxBytes = try r.scalar(v, key, expected) {
                    Self.parseSize($0).flatMap { (65536...(1 << 40)).contains($0) ? $0 : nil }
                }
            case "log_keep":
                logKeep = try r.integer(v, key, in: 1...100)
            case "work_orchestrator":
                workOrchestrator = try r.scalar(v, key, "a module name \(nameRule)") { isIdentifier($0) ? $0 : nil }
            case "metrics":
                try metrics.read(v, r)
            default:
                guard try limits.read(entry.key, v, key, r) else { throw r.unknownKey(key, line: entry.keyLine) }
                limitsLine = entry.keyLine
            }
        }
        if let line = limitsLine, limits.maxTaskDepth >= limits.maxFibers {
            throw ConfigError(
                file: r.file, line: line,
                message: "runtime.max_task_depth (\(limits.maxTaskDepth)) must be smaller than runtime.max_fibers (\(limits.maxFibers)): a chain of subtasks holds one fiber per level")
        }
        if let line = workersLine, lowLatencyWorkers + highLatencyWorkers < 1 {
            throw ConfigError(
                file: r.file, line: line,
                message: "runtime.low_latency_workers + runtime.high_latency_workers: "
                    + "expected at least 1 worker in total, got 0")
        }
    }

    private mutating func readClient(_ node: YAMLNode, _ r: ValueReader) throws(ConfigError) {
        for entry in try r.entries(of: node, path: "client") {
            let key = "client." + entry.key
            switch entry.key {
            case "mode": clientMode = try r.choice(entry.value, key)
            case "spin_us": clientSpinUs = try r.integer(entry.value, key, in: Self.spinRange)
            case "submit_timeout_ms": submitTimeoutMs = try r.integer(entry.value, key, in: 0...3_600_000)
            default: throw r.unknownKey(key, line: entry.keyLine)
            }
        }
    }
}

/// The `cluster` section. One runtime per node; every node reads the same host list and so
/// agrees on node ids (an entry's position, from 1) and on where each container lives.
package struct ClusterConfig: Sendable, Equatable {
    /// A node's address as written in the host list.
    package struct Host: Sendable, Equatable {
        package var host: String
        package var port: Int
    }

    /// `cluster.hosts`, or the lines of `cluster.hostfile`: `host` or `host:port` each.
    package var hosts: [Host] = []
    /// `cluster.hostfile`: where `hosts` came from, when from a file.
    package var hostfile: String?
    /// `cluster.node_id`: this runtime's entry (1-based); 0 = find it by address.
    package var nodeId = 0
    /// `cluster.port`: the port of entries that give none, and of a single node.
    package var port = 9513
    /// `cluster.listen`: the address to listen on; empty = this node's host entry.
    package var listen = ""
    /// `cluster.key`, or the content of `cluster.key_file`: the shared secret peers prove
    /// they hold (HMAC-SHA256 challenge). Required with more than one host.
    package var key: [UInt8] = []
    /// `cluster.timeout_ms`: how long a task sent to another node may take before it fails
    /// with CHI_ENODE, and how long a silent peer is trusted.
    package var timeoutMs = 5000
    /// `cluster.heartbeat_ms`: how often an idle connection is probed.
    package var heartbeatMs = 500
    /// How peer connections are secured (`cluster.tls`).
    package enum TLSMode: Sendable, Equatable {
        /// TLS 1.3 with an external PSK derived from `cluster.key` (the default).
        case psk
        /// TLS 1.3 with mutual certificate authentication: PEM files.
        case certificates(ca: String, cert: String, key: String)
        /// No TLS: frames travel in the clear after the HMAC handshake. For measuring what
        /// TLS costs only; anyone on the path can read and alter them.
        case off
    }
    /// `cluster.tls`: `{ca, cert, key}` file paths, `psk` or `off`.
    package var tls = TLSMode.psk
    /// `cluster.max_pending_connections`: connections accepted but not yet authenticated;
    /// one more is closed at once (and logged) until a handshake ends.
    package var maxPendingConnections = 64
    /// `cluster.handshake_timeout_ms`: how long an accepted connection may take to
    /// authenticate before it is closed.
    package var handshakeTimeoutMs = 2000
    /// `cluster.max_bulk`: the largest bulk field a peer's request may carry or ask for;
    /// a larger one is answered with CHI_EMSGSIZE and nothing is allocated.
    package var maxBulk = 64 << 20
    /// `cluster.connection_budget`: bulk bytes the requests of one connection may hold here
    /// at once; a request past it is answered with ENOBUFS.
    package var connectionBudget = 256 << 20
    /// `cluster.metadata`: `embedded` (the default) or `etcd://HOST:PORT,...`.
    package var metadata = MetadataConfig.embedded
    /// `cluster.probe_interval_ms`, `cluster.probe_timeout_ms`, `cluster.indirect_probes`,
    /// `cluster.suspicion_timeout_ms`, `cluster.gossip_per_message`: the membership
    /// protocol's timing and bounds (see SwimConfig and docs/cluster.md).
    package var membership = SwimConfig()

    package init() {}

    package var isMultiNode: Bool { hosts.count > 1 }

    /// Parses `host`, `host:port` or `[v6]:port`; nil when malformed.
    package static func parseHost(_ s: String, defaultPort: Int) -> Host? {
        let t = s.trimmingCharacters(in: " \t")
        if t.isEmpty || t.contains(" ") { return nil }
        if t.hasPrefix("[") {
            guard let close = t.firstIndex(of: "]") else { return nil }
            let h = String(t[t.index(after: t.startIndex)..<close])
            let rest = t[t.index(after: close)...]
            if rest.isEmpty { return h.isEmpty ? nil : Host(host: h, port: defaultPort) }
            guard rest.first == ":", let p = Int(rest.dropFirst()), (1...65535).contains(p) else { return nil }
            return Host(host: h, port: p)
        }
        let parts = t.split(separator: ":", omittingEmptySubsequences: false)
        switch parts.count {
        case 1: return Host(host: t, port: defaultPort)
        case 2:
            guard !parts[0].isEmpty, let p = Int(parts[1]), (1...65535).contains(p) else { return nil }
            return Host(host: String(parts[0]), port: p)
        default:
            return Host(host: t, port: defaultPort) // a bare IPv6 address
        }
    }

    /// Reads a hostfile: one host per line, `#` starts a comment, blank lines are skipped.
    package static func readHostfile(_ path: String, defaultPort: Int) throws(ConfigError) -> [Host] {
        let bytes = try readFile(path)
        var hosts: [Host] = []
        for (i, raw) in String(decoding: bytes, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            var line = Substring(raw)
            if let hash = line.firstIndex(of: "#") { line = line[..<hash] }
            let t = line.trimmingCharacters(in: " \t\r")
            if t.isEmpty { continue }
            guard let h = parseHost(t, defaultPort: defaultPort) else {
                throw ConfigError(file: path, line: i + 1, message: "expected host or host:port, got \(t.debugDescription)")
            }
            hosts.append(h)
        }
        return hosts
    }
}

extension StringProtocol {
    fileprivate func trimmingCharacters(in set: String) -> String {
        let chars = Set(set)
        var s = Substring(self)
        while let f = s.first, chars.contains(f) { s = s.dropFirst() }
        while let l = s.last, chars.contains(l) { s = s.dropLast() }
        return String(s)
    }
}

extension RuntimeConfig {
    fileprivate static let portRange = 1...65535
    fileprivate static let timeoutRange = 50...3_600_000
    fileprivate static let heartbeatRange = 10...600_000
    /// The frame decoder's ceiling (TaskCodec.maxBulk) bounds both.
    fileprivate static let maxBulkRange = 1...(256 << 20)
    fileprivate static let budgetRange = (1 << 20)...(1 << 40)

    fileprivate static func readTLS(_ v: YAMLNode, _ key: String, _ r: ValueReader) throws(ConfigError) -> ClusterConfig.TLSMode {
        if case .scalar = v {
            return try r.scalar(v, key, "psk, off, or a mapping {ca, cert, key}") {
                $0 == "psk" ? .psk : $0 == "off" ? .off : nil
            }
        }
        var files: [String: String] = [:]
        for e in try r.entries(of: v, path: key) {
            let k = key + "." + e.key
            guard ["ca", "cert", "key"].contains(e.key) else { throw r.unknownKey(k, line: e.keyLine) }
            files[e.key] = try r.scalar(e.value, k, "a PEM file path") { $0.isEmpty ? nil : $0 }
        }
        for k in ["ca", "cert", "key"] where files[k] == nil {
            throw ConfigError(file: r.file, line: v.line, message: "\(key).\(k): required (a PEM file path)")
        }
        return .certificates(ca: files["ca"]!, cert: files["cert"]!, key: files["key"]!)
    }

    fileprivate static func clusterSize(
        _ v: YAMLNode, _ key: String, _ r: ValueReader, _ range: ClosedRange<Int>
    ) throws(ConfigError) -> Int {
        let expected = "a size between \(sizeText(range.lowerBound)) and "
            + "\(sizeText(range.upperBound)) (bytes, or a number with a K, M or G suffix)"
        return try r.scalar(v, key, expected) { parseSize($0).flatMap { range.contains($0) ? $0 : nil } }
    }

    fileprivate mutating func readCluster(_ node: YAMLNode, _ r: ValueReader) throws(ConfigError) {
        var hostNodes: YAMLNode?
        var hostfileLine = 0
        var keyFile: (path: String, line: Int)?
        var line = 0
        var probeLine = 0
        for entry in try r.entries(of: node, path: "cluster") {
            let key = "cluster." + entry.key
            let v = entry.value
            line = entry.keyLine
            switch entry.key {
            case "hosts": hostNodes = v
            case "hostfile":
                cluster.hostfile = try r.scalar(v, key, "a file path") { $0.isEmpty ? nil : $0 }
                hostfileLine = entry.keyLine
            case "node_id": cluster.nodeId = try r.integer(v, key, in: 0...4096)
            case "port": cluster.port = try r.integer(v, key, in: Self.portRange)
            case "listen": cluster.listen = try r.scalar(v, key, "an address") { $0.isEmpty ? nil : $0 }
            case "key":
                cluster.key = Array(try r.scalar(v, key, "a secret of at least 16 characters") {
                    $0.utf8.count >= 16 ? $0 : nil
                }.utf8)
            case "key_file":
                keyFile = (try r.scalar(v, key, "a file path") { $0.isEmpty ? nil : $0 }, entry.keyLine)
            case "timeout_ms": cluster.timeoutMs = try r.integer(v, key, in: Self.timeoutRange)
            case "heartbeat_ms": cluster.heartbeatMs = try r.integer(v, key, in: Self.heartbeatRange)
            case "tls": cluster.tls = try Self.readTLS(v, key, r)
            case "max_pending_connections": cluster.maxPendingConnections = try r.integer(v, key, in: 1...65536)
            case "handshake_timeout_ms": cluster.handshakeTimeoutMs = try r.integer(v, key, in: Self.timeoutRange)
            case "max_bulk": cluster.maxBulk = try Self.clusterSize(v, key, r, Self.maxBulkRange)
            case "connection_budget": cluster.connectionBudget = try Self.clusterSize(v, key, r, Self.budgetRange)
            case "metadata":
                cluster.metadata = try r.scalar(v, key, MetadataConfig.expected) { MetadataConfig.parse($0) }
            case "probe_interval_ms":
                cluster.membership.probeIntervalNs = UInt64(try r.integer(v, key, in: 10...60_000)) * 1_000_000
                probeLine = entry.keyLine
            case "probe_timeout_ms":
                cluster.membership.probeTimeoutNs = UInt64(try r.integer(v, key, in: 5...60_000)) * 1_000_000
                probeLine = entry.keyLine
            case "indirect_probes": cluster.membership.indirectProbes = try r.integer(v, key, in: 0...16)
            case "suspicion_timeout_ms":
                cluster.membership.suspicionTimeoutNs = UInt64(try r.integer(v, key, in: 50...3_600_000)) * 1_000_000
            case "gossip_per_message": cluster.membership.gossipPerMessage = try r.integer(v, key, in: 1...SwimCodec.maxGossip)
            default: throw r.unknownKey(key, line: entry.keyLine)
            }
        }
        if let hostNodes {
            let port = cluster.port
            cluster.hosts = try r.list(hostNodes, "cluster.hosts", of: "hosts", each: "host or host:port") {
                ClusterConfig.parseHost($0, defaultPort: port)
            }
        }
        if cluster.membership.probeTimeoutNs >= cluster.membership.probeIntervalNs {
            throw ConfigError(file: r.file, line: probeLine == 0 ? line : probeLine,
                              message: "cluster.probe_timeout_ms: \(cluster.membership.probeTimeoutNs / 1_000_000) must be below cluster.probe_interval_ms (\(cluster.membership.probeIntervalNs / 1_000_000)): indirect probes need the rest of the interval")
        }
        if let path = cluster.hostfile {
            guard hostNodes == nil else {
                throw ConfigError(file: r.file, line: hostfileLine,
                                  message: "cluster.hostfile: give either cluster.hosts or cluster.hostfile, not both")
            }
            cluster.hosts = try ClusterConfig.readHostfile(path, defaultPort: cluster.port)
        }
        if let (path, kline) = keyFile {
            guard cluster.key.isEmpty else {
                throw ConfigError(file: r.file, line: kline, message: "cluster.key_file: give either cluster.key or cluster.key_file, not both")
            }
            var bytes = try readFile(path)
            while let l = bytes.last, l == 0x0a || l == 0x0d || l == 0x20 { bytes.removeLast() }
            guard bytes.count >= 16 else {
                throw ConfigError(file: r.file, line: kline, message: "cluster.key_file: \(path) holds fewer than 16 bytes")
            }
            cluster.key = bytes
        }
        if cluster.nodeId > cluster.hosts.count && !(cluster.hosts.isEmpty && cluster.nodeId <= 1) {
            throw ConfigError(file: r.file, line: line,
                              message: "cluster.node_id: \(cluster.nodeId) is beyond the \(cluster.hosts.count) hosts listed")
        }
        if case .certificates(let ca, _, _) = cluster.tls, cluster.key.isEmpty {
            // TLS authenticates peers; the HMAC handshake inside it then only exchanges node
            // ids, under a key every holder of the CA certificate can compute.
            cluster.key = Array(try readFile(ca)) + Array("chimaera cluster ca".utf8)
        }
        if cluster.isMultiNode && cluster.key.isEmpty {
            throw ConfigError(file: r.file, line: line,
                              message: "cluster.key: required when cluster.hosts lists more than one node (peers prove they hold it)")
        }
    }
}


/// Converts YAML nodes to values, producing errors that name the file, line and key.
struct ValueReader {
    let file: String

    /// The entries of a section; a null section (`runtime:` with nothing under it) has none.
    func entries(of node: YAMLNode, path: String?) throws(ConfigError) -> [YAMLNode.Entry] {
        if node.isNull { return [] }
        guard case .mapping(let entries, _) = node else {
            throw mismatch(node, path ?? "the top level", "a mapping")
        }
        var seen: [String: Int] = [:]
        for entry in entries {
            if let first = seen.updateValue(entry.keyLine, forKey: entry.key) {
                let key = path.map { "\($0).\(entry.key)" } ?? entry.key
                throw ConfigError(
                    file: file, line: entry.keyLine,
                    message: "duplicate key \"\(key)\" (first given on line \(first))")
            }
        }
        return entries
    }

    /// The value of a scalar node, as `convert` makes it; nil from `convert` is an error.
    func scalar<T>(
        _ node: YAMLNode, _ key: String, _ expected: String, _ convert: (String) -> T?
    ) throws(ConfigError) -> T {
        guard case .scalar(let text, _, _) = node, !node.isNull, let value = convert(text) else {
            throw mismatch(node, key, expected)
        }
        return value
    }

    func integer(
        _ node: YAMLNode, _ key: String, in range: ClosedRange<Int>
    ) throws(ConfigError) -> Int {
        try scalar(node, key, "an integer between \(range.lowerBound) and \(range.upperBound)") {
            Int($0).flatMap { range.contains($0) ? $0 : nil }
        }
    }

    /// YAML 1.1's spellings, in any case, since that is what people write in YAML files.
    func bool(_ node: YAMLNode, _ key: String) throws(ConfigError) -> Bool {
        try scalar(node, key, "true or false (or yes/no, on/off)") {
            switch $0.lowercased() {
            case "true", "yes", "on": true
            case "false", "no", "off": false
            default: nil
            }
        }
    }

    func choice<E: RawRepresentable & CaseIterable>(
        _ node: YAMLNode, _ key: String
    ) throws(ConfigError) -> E where E.RawValue == String {
        let names = E.allCases.map(\.rawValue).joined(separator: ", ")
        return try scalar(node, key, "one of \(names)") { E(rawValue: $0) }
    }

    /// A list of scalars, each converted as `scalar` does; a null value is the empty list.
    func list<T>(
        _ node: YAMLNode, _ key: String, of what: String, each expected: String,
        _ convert: (String) -> T?
    ) throws(ConfigError) -> [T] {
        if node.isNull { return [] }
        guard case .sequence(let items, _) = node else {
            throw mismatch(node, key, "a list of \(what)")
        }
        var values: [T] = []
        for (i, item) in items.enumerated() {
            values.append(try scalar(item, "\(key)[\(i)]", expected, convert))
        }
        return values
    }

    func unknownKey(_ key: String, line: Int) -> ConfigError {
        ConfigError(file: file, line: line, message: "unknown key \"\(key)\"")
    }

    func mismatch(_ node: YAMLNode, _ key: String, _ expected: String) -> ConfigError {
        let got: String
        switch node {
        case _ where node.isNull: got = "no value"
        case .scalar(let text, _, _): got = text.debugDescription
        case .sequence: got = "a list"
        case .mapping: got = "a mapping"
        }
        return ConfigError(
            file: file, line: node.line, message: "\(key): expected \(expected), got \(got)")
    }
}

private let nameRule = "of 1 to \(RuntimeConfig.nameMaxLength) characters from A-Z a-z 0-9 _ . -"

/// Whether `s` follows `nameRule`, which keeps it safe inside a file name.
private func isIdentifier(_ s: String) -> Bool {
    (1...RuntimeConfig.nameMaxLength).contains(s.utf8.count)
        && s.utf8.allSatisfy { c in
            switch c {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "_"), UInt8(ascii: "."),
                UInt8(ascii: "-"):
                true
            default: false
            }
        }
}

/// `size` in the largest binary unit that divides it exactly, as `parseSize` reads it back.
func sizeText(_ size: Int) -> String {
    for (shift, unit) in [(40, "T"), (30, "G"), (20, "M"), (10, "K")]
    where size != 0 && size % (1 << shift) == 0 {
        return "\(size >> shift)\(unit)"
    }
    return "\(size)"
}

/// Reads a whole file, failing with an error that names it.
///
/// Calls open/read directly because `Sys` has no file reading yet; move there when it does.
fileprivate func readFile(_ path: String) throws(ConfigError) -> [UInt8] {
    func failure() -> ConfigError {
        ConfigError(file: path, line: nil, message: "cannot read: \(Sys.errnoText())")
    }
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { throw failure() }
    defer { close(fd) }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 64 << 10)
    while true {
        let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n < 0 && errno == EINTR { continue }
        guard n >= 0 else { throw failure() }
        if n == 0 { return bytes }
        bytes += chunk[..<n]
        if bytes.count > RuntimeConfig.maxFileSize {
            throw ConfigError(
                file: path, line: nil, message: "larger than 1 MiB, not a config file")
        }
    }
}

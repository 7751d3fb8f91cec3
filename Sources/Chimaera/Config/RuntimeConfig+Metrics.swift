import ChimaeraYAML

/// `runtime.metrics`: the opt-in Prometheus endpoint (Metrics/MetricsServer.swift).
package struct MetricsConfig: Sendable, Equatable {
    /// `runtime.metrics.listen`: `host:port` to serve `GET /metrics` on; no endpoint when nil.
    package var host: String?
    package var port = 9464

    package var isEnabled: Bool { host != nil }

    /// Splits `host:port` (an IPv6 host in brackets: `[::1]:9464`); nil if either is bad.
    static func parseListen(_ s: String) -> (host: String, port: Int)? {
        guard let colon = s.lastIndex(of: ":") else { return nil }
        var host = String(s[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        guard !host.isEmpty, !host.contains(" "), let port = Int(s[s.index(after: colon)...]),
              (1...65535).contains(port) else { return nil }
        return (host, port)
    }

    mutating func read(_ node: YAMLNode, _ r: ValueReader) throws(ConfigError) {
        for entry in try r.entries(of: node, path: "runtime.metrics") {
            let key = "runtime.metrics." + entry.key
            switch entry.key {
            case "listen":
                let (h, p) = try r.scalar(entry.value, key, "host:port, such as 127.0.0.1:9464") {
                    Self.parseListen($0)
                }
                host = h
                port = p
            default:
                throw r.unknownKey(key, line: entry.keyLine)
            }
        }
    }
}

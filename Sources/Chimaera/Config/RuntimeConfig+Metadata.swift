/// `cluster.metadata`: where the pool catalog, the container map and node liveness live
/// (Sources/Chimaera/Metadata).
package enum MetadataConfig: Sendable, Equatable {
    /// The runtime's own leader log (the default; no extra service).
    case embedded
    /// An etcd v3 cluster: its client endpoints, tried in order, and the key prefix the
    /// cluster's entries live under (so several Chimaera clusters can share one etcd).
    case etcd(endpoints: [ClusterConfig.Host], prefix: String)

    /// The port of an endpoint that names none (etcd's client port).
    package static let etcdDefaultPort = 2379
    /// The most endpoints one value may list.
    package static let maxEndpoints = 16
    package static let defaultPrefix = "/chimaera/"

    /// What the config reader says a bad value should look like.
    static let expected = "embedded, or etcd://HOST:PORT,HOST:PORT,... (optionally followed by /KEY/PREFIX)"

    /// Parses `embedded` or `etcd://HOST[:PORT],...[/PREFIX]`; nil when malformed (an empty
    /// or repeated endpoint, a bad port, more than `maxEndpoints`, a prefix with characters
    /// other than letters, digits and `_.-/`).
    package static func parse(_ s: String) -> MetadataConfig? {
        if s == "embedded" { return .embedded }
        guard s.hasPrefix("etcd://") else { return nil }
        let rest = s.dropFirst("etcd://".count)
        // The prefix starts at the first "/" outside an IPv6 address's brackets.
        var inBrackets = false
        var split = rest.endIndex
        for i in rest.indices {
            let c = rest[i]
            if c == "[" { inBrackets = true } else if c == "]" { inBrackets = false }
            if c == "/" && !inBrackets { split = i; break }
        }
        var prefix = defaultPrefix
        if split != rest.endIndex {
            let p = String(rest[split...])
            let allowed = p.unicodeScalars.allSatisfy {
                ("a"..."z").contains($0) || ("A"..."Z").contains($0) || ("0"..."9").contains($0)
                    || $0 == "_" || $0 == "." || $0 == "-" || $0 == "/"
            }
            guard allowed, p.count > 1, p.count <= 128, !p.contains("//") else { return nil }
            prefix = p.hasSuffix("/") ? p : p + "/"
        }
        let list = rest[..<split].split(separator: ",", omittingEmptySubsequences: false)
        guard !list.isEmpty, list.count <= maxEndpoints else { return nil }
        var endpoints: [ClusterConfig.Host] = []
        for item in list {
            guard !item.isEmpty, let h = ClusterConfig.parseHost(String(item), defaultPort: etcdDefaultPort),
                  !h.host.isEmpty, !endpoints.contains(h) else { return nil }
            endpoints.append(h)
        }
        return .etcd(endpoints: endpoints, prefix: prefix)
    }
}

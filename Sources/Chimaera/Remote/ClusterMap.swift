import CChimaera
import Glibc

/// Who is who in a cluster: every node's address by id (its position in the host list, from
/// 1) and this runtime's own id. Every node reads the same list, so all agree on the ids and
/// on where each container lives (`node(ofContainer:perNode:)`).
package struct ClusterMap: Sendable {
    package let hosts: [ClusterConfig.Host]
    package let selfId: UInt32

    /// The number of nodes (1 without a host list).
    package var count: Int { max(1, hosts.count) }
    package var isMultiNode: Bool { hosts.count > 1 }
    /// Every node but this one.
    package var others: [UInt32] { (1...UInt32(count)).filter { $0 != selfId } }
    /// The node that assigns pool ids (creation is the one step that needs a single voice).
    static let leader: UInt32 = 1

    /// The node a container of a pool lives on: containers are numbered node by node,
    /// `perNode` to each.
    @inline(__always)
    static func node(ofContainer i: Int, perNode: Int) -> UInt32 {
        UInt32(i / max(1, perNode)) + 1
    }

    /// "node 3 (10.0.0.3:9513)", for error messages.
    package func describe(_ id: UInt32) -> String {
        guard id >= 1 && Int(id) <= hosts.count else { return "node \(id)" }
        let h = hosts[Int(id) - 1]
        return "node \(id) (\(h.host):\(h.port))"
    }

    package func host(_ id: UInt32) -> ClusterConfig.Host {
        hosts.isEmpty ? ClusterConfig.Host(host: "127.0.0.1", port: 0) : hosts[Int(id) - 1]
    }

    /// Works out this runtime's node id: `override` ($CHIMAERA_NODE_ID or a tool option),
    /// then `cluster.node_id`, then the one host entry that `cluster.listen` or an address of
    /// this machine matches.
    package static func resolve(_ c: ClusterConfig, override: Int? = nil) throws(ChiError) -> ClusterMap {
        if c.hosts.count <= 1 {
            let id = override ?? (c.nodeId == 0 ? 1 : c.nodeId)
            guard id == 1 else {
                throw ChiError(CInt(CHI_ECONFIG), "node id \(id) given, but the cluster lists \(c.hosts.count) host(s)")
            }
            return ClusterMap(hosts: c.hosts, selfId: 1)
        }
        if let id = override ?? (c.nodeId > 0 ? c.nodeId : nil) {
            guard id >= 1 && id <= c.hosts.count else {
                throw ChiError(CInt(CHI_ECONFIG), "node id \(id) is not in 1...\(c.hosts.count) (the cluster's hosts)")
            }
            return ClusterMap(hosts: c.hosts, selfId: UInt32(id))
        }
        var matches: [Int] = []
        if !c.listen.isEmpty, let l = ClusterConfig.parseHost(c.listen, defaultPort: 0), l.port != 0 {
            matches = c.hosts.indices.filter { c.hosts[$0] == l }
        } else {
            let mine = Self.localAddresses()
            matches = c.hosts.indices.filter { i in
                Self.addresses(of: c.hosts[i].host).contains(where: mine.contains)
            }
        }
        guard matches.count == 1 else {
            let why = matches.isEmpty ? "no host entry is an address of this machine"
                : "host entries \(matches.map { String($0 + 1) }.joined(separator: ", ")) all match this machine"
            throw ChiError(CInt(CHI_ECONFIG),
                           "cannot tell which node this is: \(why); set cluster.node_id or $CHIMAERA_NODE_ID")
        }
        return ClusterMap(hosts: c.hosts, selfId: UInt32(matches[0] + 1))
    }

    /// The numeric addresses a host name resolves to.
    static func addresses(of host: String) -> [String] {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var res: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, nil, &hints, &res) == 0 else { return [] }
        defer { freeaddrinfo(res) }
        var out: [String] = []
        var p = res
        while let a = p {
            if let s = numeric(a.pointee.ai_addr, a.pointee.ai_addrlen) { out.append(s) }
            p = a.pointee.ai_next
        }
        return out
    }

    /// This machine's interface addresses.
    static func localAddresses() -> [String] {
        var list: UnsafeMutablePointer<ifaddrs>?
        guard getifaddrs(&list) == 0 else { return [] }
        defer { freeifaddrs(list) }
        var out: [String] = []
        var p = list
        while let a = p {
            if let sa = a.pointee.ifa_addr {
                let len = sa.pointee.sa_family == sa_family_t(AF_INET6)
                    ? socklen_t(MemoryLayout<sockaddr_in6>.size) : socklen_t(MemoryLayout<sockaddr_in>.size)
                if sa.pointee.sa_family == sa_family_t(AF_INET) || sa.pointee.sa_family == sa_family_t(AF_INET6),
                   let s = numeric(sa, len) { out.append(s) }
            }
            p = a.pointee.ifa_next
        }
        return out
    }

    private static func numeric(_ sa: UnsafeMutablePointer<sockaddr>?, _ len: socklen_t) -> String? {
        guard let sa else { return nil }
        var buf = [CChar](repeating: 0, count: Int(NI_MAXHOST))
        guard getnameinfo(sa, len, &buf, socklen_t(buf.count), nil, 0, NI_NUMERICHOST) == 0 else { return nil }
        return String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

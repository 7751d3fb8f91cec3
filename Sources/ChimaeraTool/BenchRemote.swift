import CChimaeraABI
import Glibc

extension Bench {
    /// `bench remote`: a cluster of four runtimes on this machine (loopback TCP, distinct
    /// ports and segments) and a client on node 1: sync Md to a container on node 2 beside a
    /// raw two-process TCP ping-pong measured in the same run, async throughput to node 2,
    /// and broadcast latency over 1..4 nodes.
    /// Runs the cluster twice: with TLS (`cluster.tls: psk`, the default; the figures under
    /// their plain names) and without (`cluster.tls: off`; the same names with `_plaintext`),
    /// so the cost of TLS is read off one run.
    static func remote(iters: Int, seconds: Double) -> [(String, Double)]? {
        let prog = libexec + "/chi_bench_remote"
        let base = ChildProcess.run(prog, ["--tcp", "--iters", "\(iters)"], timeoutMs: 600_000)
        guard base.status == 0 else {
            Tool.fail("bench remote: baseline failed (\(base.status)): \(base.output)")
            return nil
        }
        let b = ChildProcess.parseFlatJSON(base.output)
        guard let tls = remoteCluster(iters: iters, seconds: seconds, tls: "psk"),
              let plain = remoteCluster(iters: iters, seconds: seconds, tls: "off")
        else { return nil }
        var out: [(String, Double)] = []
        for k in tls.keys.sorted() { out.append((k, tls[k]!)) }
        for k in plain.keys.sorted() { out.append((k + "_plaintext", plain[k]!)) }
        for k in b.keys.sorted() { out.append((k, b[k]!)) }
        if let p = b["baseline_tcp_pingpong_ns_p50"], p > 0 {
            if let s = tls["remote_rtt_ns_p50"] { out.append(("ratio_p50", (s / p * 100).rounded() / 100)) }
            if let s = plain["remote_rtt_ns_p50"] { out.append(("ratio_p50_plaintext", (s / p * 100).rounded() / 100)) }
        }
        // Against the busy-polling ping-pong: the wire without wake-ups (issue 13's target).
        if let p = b["baseline_tcp_busy_ns_p50"], p > 0 {
            if let s = tls["remote_rtt_ns_p50"] { out.append(("ratio_busy_p50", (s / p * 100).rounded() / 100)) }
            if let s = plain["remote_rtt_ns_p50"] { out.append(("ratio_busy_p50_plaintext", (s / p * 100).rounded() / 100)) }
        }
        // The bulk path against the wire's stream (issue 13's target: 70%).
        if let st = b["baseline_tcp_stream_mbps"], st > 0 {
            if let m = tls["remote_bulk_mbps"] { out.append(("bulk_stream_ratio", (m / st * 100).rounded() / 100)) }
            if let m = plain["remote_bulk_mbps"] { out.append(("bulk_stream_ratio_plaintext", (m / st * 100).rounded() / 100)) }
        }
        out.append(("nodes", 4))
        return out
    }

    /// One cluster of four runtimes with `cluster.tls: tls`, and the client's figures.
    static func remoteCluster(iters: Int, seconds: Double, tls: String) -> [String: Double]? {
        let nodes = 4
        return withCluster(nodes: nodes, tls: tls, what: "bench remote") { segments in
            let prog = libexec + "/chi_bench_remote"
            let client = ChildProcess.run(prog, ["--segment", segments[0], "--nodes", "\(nodes)",
                                                 "--iters", "\(iters)", "--seconds", "\(seconds)"], timeoutMs: 1_200_000)
            guard client.status == 0 else {
                Tool.fail("bench remote: client failed (\(client.status)): \(client.output)")
                return nil
            }
            return ChildProcess.parseFlatJSON(client.output)
        }
    }

    /// `bench migrate`: a two-node cluster, and chi_bench_migrate's figures against node 1.
    static func migrate() -> [(String, Double)]? {
        let f: [String: Double]? = withCluster(nodes: 2, tls: "psk", what: "bench migrate") { segments in
            let r = ChildProcess.run(libexec + "/chi_bench_migrate", ["--segment", segments[0]], timeoutMs: 600_000)
            guard r.status == 0 else {
                Tool.fail("bench migrate failed (\(r.status)): \(r.output)")
                return nil
            }
            return ChildProcess.parseFlatJSON(r.output)
        }
        guard let f else { return nil }
        return f.keys.sorted().map { ($0, f[$0]!) } + [("nodes", 2)]
    }

    /// Starts `nodes` runtimes on loopback as one cluster (`cluster.tls: tls`), runs `body`
    /// with their segments, and stops them all whatever it returns.
    static func withCluster<T>(nodes: Int, tls: String, what: String, _ body: ([String]) -> T?) -> T? {
        guard let ports = freePorts(nodes) else {
            Tool.fail("\(what): no free TCP ports on 127.0.0.1")
            return nil
        }
        let tag = "bench_cluster_\(getpid())"
        let cfg = "/tmp/chimaera_\(tag).yaml"
        var rng = SystemRandomNumberGenerator()
        let key = (0..<4).map { _ in String(rng.next() as UInt64, radix: 16) }.joined()
        let text = """
            runtime:
              shm_size: 256M
              pin_workers: false
            cluster:
              hosts: [\(ports.map { "127.0.0.1:\($0)" }.joined(separator: ", "))]
              key: "\(key)"
              timeout_ms: 10000
              tls: \(tls)

            """
        guard let f = fopen(cfg, "w") else {
            Tool.fail("\(what): cannot write \(cfg)")
            return nil
        }
        fputs(text, f)
        fclose(f)
        defer { unlink(cfg) }
        let segments = (1...nodes).map { "\(tag)_n\($0)" }
        defer {
            for s in segments {
                _ = ChildProcess.run(ChildProcess.selfExe, ["stop", "--segment", s], timeoutMs: 30_000)
                unlink("/tmp/chimaera_\(s).log")
            }
        }
        for (i, s) in segments.enumerated() {
            let r = ChildProcess.run(ChildProcess.selfExe,
                                     ["start", "--config", cfg, "--node-id", "\(i + 1)", "--segment", s,
                                      "--detach", "--log-file", "/tmp/chimaera_\(s).log"], timeoutMs: 30_000)
            guard r.status == 0 else {
                Tool.fail("\(what): cannot start node \(i + 1): \(r.output)")
                return nil
            }
        }
        return body(segments)
    }

    /// `n` TCP ports free on 127.0.0.1 now (bound together, then released).
    static func freePorts(_ n: Int) -> [Int]? {
        var fds: [Int32] = []
        defer { for fd in fds { close(fd) } }
        var ports: [Int] = []
        for _ in 0..<n {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            guard fd >= 0 else { return nil }
            fds.append(fd)
            var a = sockaddr_in()
            a.sin_family = sa_family_t(AF_INET)
            a.sin_addr.s_addr = inet_addr("127.0.0.1")
            var len = socklen_t(MemoryLayout<sockaddr_in>.size)
            let ok = withUnsafeMutablePointer(to: &a) { p in
                p.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    bind(fd, $0, len) == 0 && getsockname(fd, $0, &len) == 0
                }
            }
            guard ok else { return nil }
            ports.append(Int(UInt16(bigEndian: a.sin_port)))
        }
        return ports
    }
}

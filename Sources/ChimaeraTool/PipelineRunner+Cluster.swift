import CChimaeraABI
import Glibc

/// `pipeline run --hostfile`: chimaera_run starts the cluster through `chimaera cluster start`
/// (local hosts here, others through ssh) and stops it with `cluster stop`; the applications
/// run on this node, against the first runtime the hostfile places here.
extension PipelineRunner {
    /// Runs `chimaera cluster start`; returns this node's segment and runtime pid, or nil after
    /// reporting why not (the nodes that did start are stopped at the end, as always).
    mutating func startCluster(_ r: PipelineFile.Runtime, hostfile: String, configArgs: [String]) -> (String, pid_t)? {
        let name = spec.name
        let host = Self.absolutePath(hostfile)
        say("pipeline \(name): \(r.name): starting a runtime on each host of \(hostfile)")
        clusterSegments = []
        let (status, out) = runTool(["cluster", "start", "--hostfile", host, "--segment", segment,
                                     "--log-dir", workDir] + configArgs, timeoutMs: 120_000)
        // "node 1 127.0.0.1:6001 [local, segment s_n1]: ok": the segments that run here.
        var local: [String] = []
        let marker = "[local, segment "
        for line in out.split(separator: "\n") {
            guard let at = line.indices.first(where: { line[$0...].hasPrefix(marker) }) else { continue }
            let rest = line[line.index(at, offsetBy: marker.count)...]
            if let close = rest.firstIndex(of: "]") { local.append(String(rest[..<close])) }
        }
        clusterSegments = local
        guard status == 0 else {
            Tool.fail("pipeline \(name): \(r.name): chimaera cluster start exited with status \(status):\n\(out)")
            return nil
        }
        guard let seg = local.first else {
            Tool.fail("pipeline \(name): \(r.name): no host of \(hostfile) is this machine: the applications need a runtime here")
            return nil
        }
        let pid = Self.readFile("\(workDir)/chimaera_\(seg).pid").flatMap { pid_t($0.filter { $0.isNumber }) } ?? 0
        return (seg, pid)
    }

    /// Runs `chimaera cluster stop` and removes this node's segments; returns the report's tail.
    mutating func stopCluster(_ local: [String]) -> String {
        clusterSegments = nil
        guard let hostfile else { return "" }
        let (status, out) = runTool(["cluster", "stop", "--hostfile", Self.absolutePath(hostfile), "--segment", segment],
                                    timeoutMs: 120_000, interruptible: false)
        for s in local { _ = chi_segment_remove(s) }
        if status != 0 { Tool.fail("pipeline \(spec.name): chimaera cluster stop exited with status \(status):\n\(out)") }
        return "; cluster \"\(segment)\" \(status == 0 ? "stopped" : "stop failed")"
    }

    /// Runs this program with `args` and the pipeline's environment; returns its status and
    /// output. A signal while it runs is passed on to it (`interruptible`).
    private func runTool(_ args: [String], timeoutMs: Int, interruptible: Bool = true) -> (Int32, String) {
        let out = workDir + "/cluster.out"
        unlink(out)
        guard case .success(let pid) = spawn([ChildProcess.selfExe] + args, env: env, output: out) else {
            return (127, "cannot run \(ChildProcess.selfExe)")
        }
        let deadline = nowNs() + UInt64(timeoutMs) * 1_000_000
        var status: Int32 = 124
        loop: while true {
            switch waitChild(pid, until: deadline, interruptible: interruptible) {
            case .exited(let s):
                status = s
                break loop
            case .signalled(let sig):
                // Let it finish what it started (the nodes are then stopped), but not hang.
                kill(-pid, sig)
            case .timedOut:
                kill(-pid, SIGKILL)
                _ = waitChild(pid, until: nowNs() + 5_000_000_000, interruptible: false)
                break loop
            }
        }
        let text = Self.readFile(out) ?? ""
        unlink(out)
        return (status, text)
    }

    static func absolutePath(_ p: String) -> String {
        if p.hasPrefix("/") { return p }
        guard let cwd = getcwd(nil, 0) else { return p }
        defer { free(cwd) }
        return String(cString: cwd) + "/" + p
    }
}

import CChimaera
import Glibc

/// The runtime's statistics as one JSON object: process, segment, workers, pools and lanes.
/// Counters of other workers are read without synchronisation: a snapshot, not a transaction.
extension Runtime {
    package func statsJSON() -> String {
        var j = JSONWriter()
        j.open()
        j.key("pid"); j.int(Int(getpid()))
        j.key("segment"); j.string(segment.name)
        let uptimeNs = chi_now_ns() &- startNs
        j.key("uptime_ms"); j.int(Int(uptimeNs / 1_000_000))
        let cpuNs = ProcessStats.cpuTimeNs()
        j.key("cpu_ns"); j.int(Int(cpuNs))
        j.key("cpu_pct_since_start")
        j.double(uptimeNs > 0 ? 100.0 * Double(cpuNs) / Double(uptimeNs) : 0)
        j.key("shm"); j.open()
        j.key("size"); j.int(segment.size)
        j.key("heap_capacity"); j.int(Int(spans.capacity))
        j.key("heap_used"); j.int(Int(spans.usedBytes))
        j.key("runtime_bytes"); j.int(Int(spans.bytes(of: SpanMap.runtimeOwner)))
        j.close()
        j.key("bad_tasks"); j.int(Int(workers.reduce(0) { $0 + $1.badTasks }))
        j.key("clients"); j.openArray()
        for c in registry.clients() {
            j.open()
            j.key("id"); j.int(Int(c.id))
            j.key("slot"); j.int(c.slot)
            j.key("pid"); j.int(Int(c.pid))
            j.key("state"); j.string(c.state)
            j.key("tasks_in_flight"); j.int(Int(c.inflight))
            j.key("queued"); j.int(c.queued)
            j.key("memory_bytes"); j.int(Int(c.bytes))
            if c.returnedDropped > 0 { j.key("returned_dropped"); j.int(Int(c.returnedDropped)) }
            j.close()
        }
        j.closeArray()
        j.key("clients_refused"); j.int(Int(registry.refusedConnections))
        j.key("clients_gone"); j.int(Int(registry.clientsGone))
        let l = config.limits
        j.key("limits"); j.open()
        j.key("max_clients"); j.int(l.maxClients)
        j.key("max_inflight_per_client"); j.int(l.maxInflightPerClient)
        j.key("max_client_memory"); j.int(l.maxClientMemory)
        j.key("max_fibers"); j.int(l.maxFibers)
        j.key("fiber_cache"); j.int(l.fiberCache)
        j.key("max_task_depth"); j.int(l.maxTaskDepth)
        j.key("max_task_size"); j.int(l.maxTaskSize)
        j.key("min_period_us"); j.int(l.minPeriodUs)
        j.key("max_period_s"); j.int(l.maxPeriodS)
        j.close()
        j.key("orchestrator"); j.open()
        j.key("policy"); j.string(orchestrator.policy)
        j.key("ticks"); j.int(Int(orchestrator.ticks))
        j.key("moves"); j.int(Int(orchestrator.movesAsked))
        j.close()
        j.key("node_id"); j.int(Int(nodeId))
        j.key("nodes"); j.int(cluster.count)
        if let rq = remote {
            j.key("remote"); j.open()
            j.key("sent"); j.int(Int(rq.counter(.sent)))
            j.key("served"); j.int(Int(rq.counter(.served)))
            j.key("failed"); j.int(Int(rq.counter(.failed)))
            j.key("rejected_connections"); j.int(Int(rq.counter(.rejectedConnections)))
            j.key("refused_pending"); j.int(Int(rq.counter(.refusedPending)))
            j.key("refused_bulk"); j.int(Int(rq.counter(.refusedBulk)))
            // Every dropped connection, inbound or outbound, by why.
            for (k, c) in [("rejected_certificate", RemoteQueue.Counter.rejectedCertificate),
                           ("rejected_tls_handshake", .rejectedTLSHandshake), ("rejected_tls_record", .rejectedTLSRecord),
                           ("rejected_handshake_timeout", .rejectedHandshakeTimeout), ("rejected_silent", .rejectedSilent),
                           ("rejected_protocol", .rejectedProtocol)] {
                j.key(k); j.int(Int(rq.counter(c)))
            }
            j.key("pools_from_catalogs"); j.int(Int(rq.counter(.catalogPools)))
            j.key("peers"); j.openArray()
            for p in rq.peerStates() {
                j.open()
                j.key("node"); j.int(Int(p.id))
                j.key("address"); j.string(p.host)
                j.key("state"); j.string(p.state)
                j.key("pending"); j.int(p.pending)
                if !p.reason.isEmpty { j.key("reason"); j.string(p.reason) }
                j.close()
            }
            j.closeArray()
            rq.writeMembership(&j)
            j.close()
        }
        j.key("workers"); j.openArray()
        for w in workers {
            j.open()
            j.key("id"); j.int(w.id)
            j.key("kind"); j.string(w.kind.rawValue)
            j.key("cpu"); j.int(Int(w.cpu))
            j.key("tasks_run"); j.int(Int(w.tasksRun))
            j.key("busy_ns"); j.int(Clock.ns(ticks: w.busyTicks))
            j.key("sleeps"); j.int(Int(w.sleeps))
            j.key("fibers"); j.int(w.fiberCount)
            j.key("idle_fibers"); j.int(w.idleFibers.count)
            j.key("inbox"); j.int(w.inbox.count)
            j.key("bad_tasks"); j.int(Int(w.badTasks))
            j.key("lanes_adopted"); j.int(Int(w.lanesAdopted))
            j.key("preemptions"); j.int(Int(w.preemptions))
            j.close()
        }
        j.closeArray()
        j.key("modules"); j.openArray()
        for m in loader.modules() {
            j.open()
            j.key("name"); j.string(m.name)
            j.key("version"); j.int(Int(m.version))
            j.key("path"); j.string(m.origin)
            j.close()
        }
        j.closeArray()
        j.key("pools"); j.openArray()
        for p in livePools() {
            j.open()
            j.key("id"); j.int(Int(p.id))
            j.key("name"); j.string(p.name)
            j.key("module"); j.string(p.module.name)
            j.key("module_version"); j.int(Int(p.module.version))
            j.key("containers"); j.int(p.containers.count)
            j.key("replicas"); j.int(p.replicas)
            j.key("placement"); j.openArray()
            for c in p.containers {
                j.open()
                j.key("container"); j.int(Int(c.id))
                j.key("node"); j.int(Int(c.node))
                // Known here for the containers this node holds, if the module tells.
                if c.node == nodeId, let n = stateBytes(p, c) {
                    j.key("state_bytes"); j.int(Int(truncatingIfNeeded: n))
                }
                if p.replicas > 1 {
                    j.key("backups"); j.openArray()
                    for b in c.backups { j.int(Int(b)) }
                    j.closeArray()
                    if c.node == nodeId { j.key("seq"); j.int(Int(truncatingIfNeeded: c.replicaSeq)) }
                    // This node's copy, if it is a backup: what it applied and its size.
                    if let b = c.shadow {
                        j.key("backup"); j.open()
                        j.key("node"); j.int(Int(nodeId))
                        j.key("applied"); j.int(Int(truncatingIfNeeded: b.replicaSeq))
                        if let n = stateBytes(p, b) { j.key("state_bytes"); j.int(Int(truncatingIfNeeded: n)) }
                        j.close()
                    }
                }
                j.close()
            }
            j.closeArray()
            p.writeMethodStats(&j)
            j.key("lanes"); j.openArray()
            for c in p.containers {
                for l in c.lanes {
                    j.open()
                    j.key("container"); j.int(Int(c.id))
                    j.key("group"); j.int(Int(l.group))
                    j.key("lane"); j.int(l.index)
                    j.key("prio"); j.string(l.prio == UInt32(CHI_PRIO_LOW_LATENCY) ? "low_latency" : "high_latency")
                    j.key("worker"); j.int(l.ownerId)
                    j.key("moves"); j.int(Int(l.moves))
                    j.key("queued"); j.int(l.load)
                    j.key("tasks_run"); j.int(Int(l.tasksRun))
                    j.key("busy_ns"); j.int(Clock.ns(ticks: l.busyTicks))
                    j.close()
                }
            }
            j.closeArray()
            j.close()
        }
        j.closeArray()
        j.close()
        return j.text
    }
}

/// Converts chi_ticks() counts to nanoseconds, with a rate measured once (2 ms) on first use.
enum Clock {
    static let nsPerTick: Double = {
        let t0 = chi_ticks(), n0 = chi_now_ns()
        usleep(2000)
        let t1 = chi_ticks(), n1 = chi_now_ns()
        return t1 > t0 ? Double(n1 - n0) / Double(t1 - t0) : 1
    }()

    static func ns(ticks: UInt64) -> Int { Int(Double(ticks) * nsPerTick) }
}

/// CPU time of this process, from /proc/self/stat.
package enum ProcessStats {
    /// utime + stime of process `pid` (self when nil) in nanoseconds, or 0 if unreadable.
    package static func cpuTimeNs(pid: pid_t? = nil) -> UInt64 {
        let path = pid.map { "/proc/\($0)/stat" } ?? "/proc/self/stat"
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { return 0 }
        defer { close(fd) }
        var buf = [UInt8](repeating: 0, count: 1024)
        let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, 1023) }
        guard n > 0 else { return 0 }
        let text = String(decoding: buf[0..<n], as: UTF8.self)
        // Fields after the command name (which may hold spaces) start after the last ')'.
        guard let close = text.lastIndex(of: ")") else { return 0 }
        let fields = text[text.index(after: close)...].split(separator: " ")
        // fields[0] is state (field 3); utime is field 14, stime 15.
        guard fields.count > 13, let ut = UInt64(fields[11]), let st = UInt64(fields[12]) else { return 0 }
        let hz = UInt64(sysconf(Int32(_SC_CLK_TCK)))
        return (ut + st) * 1_000_000_000 / max(hz, 1)
    }
}

/// A minimal JSON writer (no Foundation in the runtime library).
struct JSONWriter {
    private(set) var text = ""
    private var first = [true]
    private var afterKey = false

    private mutating func item() {
        if afterKey {
            afterKey = false
            return
        }
        if !first[first.count - 1] { text += "," }
        first[first.count - 1] = false
    }
    mutating func open() { item(); text += "{"; first.append(true) }
    mutating func close() { text += "}"; first.removeLast() }
    mutating func openArray() { item(); text += "["; first.append(true) }
    mutating func closeArray() { text += "]"; first.removeLast() }
    mutating func key(_ k: String) {
        item()
        appendQuoted(k)
        text += ":"
        afterKey = true
    }
    mutating func int(_ v: Int) { item(); text += String(v) }
    mutating func double(_ v: Double) {
        item()
        let r = (v * 100).rounded() / 100
        text += r.isFinite ? String(r) : "0"
    }
    mutating func string(_ s: String) {
        item()
        appendQuoted(s)
    }
    private mutating func appendQuoted(_ s: String) { text += Self.quote(s) }

    /// `s` as a JSON string literal, quotes included (the runtime's one JSON escaper).
    static func quote(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            default:
                if u.value < 0x20 {
                    out += "\\u00" + String(u.value, radix: 16).leftPad(2)
                } else {
                    out.unicodeScalars.append(u)
                }
            }
        }
        return out + "\""
    }
}

extension String {
    func leftPad(_ n: Int) -> String { String(repeating: "0", count: max(0, n - count)) + self }
}

extension Runtime {
    /// What the pool's module says container `c`'s state holds, or nil when it does not say
    /// or the container has no state now. Under `stateLock`, so the state is not freed or
    /// swapped for another version's meanwhile.
    func stateBytes(_ p: RuntimePool, _ c: Container) -> UInt64? {
        stateLock.withLock { () -> UInt64? in
            guard let sizeOf = p.module.vtable.state_bytes, let s = c.state else { return nil }
            return sizeOf(c.handle, s)
        }
    }
}

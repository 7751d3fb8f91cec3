import CChimaera
import Glibc

/// The runtime's figures in Prometheus's text exposition format (version 0.0.4), for the
/// metrics endpoint. The same numbers `statsJSON` reports, read the same way: counters of
/// other threads without synchronisation, so a scrape is a snapshot, not a transaction.
extension Runtime {
    package func metricsText() -> String {
        var m = PromWriter()
        let uptimeNs = chi_now_ns() &- startNs
        m.family("chimaera_uptime_seconds", "gauge", "Time since the runtime started.")
        m.sample("chimaera_uptime_seconds", [], Double(uptimeNs) / 1e9)
        m.family("chimaera_cpu_seconds_total", "counter", "CPU time of the runtime process.")
        m.sample("chimaera_cpu_seconds_total", [], Double(ProcessStats.cpuTimeNs()) / 1e9)

        m.family("chimaera_shm_size_bytes", "gauge", "Size of the shared-memory segment.")
        m.sample("chimaera_shm_size_bytes", [], Double(segment.size))
        m.family("chimaera_shm_heap_capacity_bytes", "gauge", "Bytes of the segment tasks and buffers are allocated from.")
        m.sample("chimaera_shm_heap_capacity_bytes", [], Double(spans.capacity))
        m.family("chimaera_shm_heap_used_bytes", "gauge", "Bytes of that heap in use.")
        m.sample("chimaera_shm_heap_used_bytes", [], Double(spans.usedBytes))
        m.family("chimaera_clients", "gauge", "Clients attached.")
        m.sample("chimaera_clients", [], Double(registry.clients().count))

        let ws = workers
        m.family("chimaera_worker_tasks_total", "counter", "Method runs on each worker.")
        for w in ws { m.sample("chimaera_worker_tasks_total", Self.workerLabels(w), Double(w.tasksRun)) }
        m.family("chimaera_worker_busy_seconds_total", "counter", "Time each worker spent running methods.")
        for w in ws {
            m.sample("chimaera_worker_busy_seconds_total", Self.workerLabels(w), Double(Clock.ns(ticks: w.busyTicks)) / 1e9)
        }
        m.family("chimaera_worker_sleeps_total", "counter", "Times each worker went to sleep idle.")
        for w in ws { m.sample("chimaera_worker_sleeps_total", Self.workerLabels(w), Double(w.sleeps)) }
        m.family("chimaera_worker_inbox_depth", "gauge", "Messages waiting in each worker's inbox.")
        for w in ws { m.sample("chimaera_worker_inbox_depth", Self.workerLabels(w), Double(w.inbox.count)) }

        let pools = livePools()
        m.family("chimaera_tasks_completed_total", "counter", "Method runs per pool and method.")
        m.family("chimaera_task_errors_total", "counter", "Method runs that returned an error, per pool and method.")
        m.family("chimaera_task_run_seconds", "histogram", "Run time of a method, from its start on a worker to its return.")
        for p in pools {
            for slot in 0..<p.metrics.methodSlots {
                let t = p.metrics.totals(slot: slot)
                let last = slot == p.metrics.methodSlots - 1
                // Methods the module declares are always listed; the gathering slot only
                // when a task named an undeclared id.
                guard last ? t.completed > 0 : p.module.method(UInt32(slot)) != nil else { continue }
                let labels = [("pool", p.name), ("pool_id", String(p.id)),
                              ("method", last ? "other" : p.module.methodName(UInt32(slot)))]
                m.sample("chimaera_tasks_completed_total", labels, Double(t.completed))
                m.sample("chimaera_task_errors_total", labels, Double(t.errors))
                var cumulative: UInt64 = 0
                for b in 0..<PoolMetrics.finiteBuckets {
                    cumulative &+= t.buckets[b]
                    let le = Double(PoolMetrics.upperBoundNs(b)) / 1e9
                    m.sample("chimaera_task_run_seconds_bucket", labels + [("le", PromWriter.number(le))], Double(cumulative))
                }
                cumulative &+= t.buckets[PoolMetrics.finiteBuckets]
                m.sample("chimaera_task_run_seconds_bucket", labels + [("le", "+Inf")], Double(cumulative))
                m.sample("chimaera_task_run_seconds_sum", labels, Double(t.sumNs) / 1e9)
                m.sample("chimaera_task_run_seconds_count", labels, Double(cumulative))
            }
        }
        m.family("chimaera_lane_queue_depth", "gauge", "Tasks queued on each lane.")
        for p in pools {
            for c in p.containers {
                for l in c.lanes {
                    m.sample("chimaera_lane_queue_depth",
                             [("pool", p.name), ("container", String(c.id)), ("group", String(l.group)),
                              ("lane", String(l.index)), ("worker", String(l.ownerId))],
                             Double(l.load))
                }
            }
        }
        m.family("chimaera_pool_tasks_in_flight", "gauge", "Tasks of each pool in flight.")
        for p in pools { m.sample("chimaera_pool_tasks_in_flight", [("pool", p.name)], Double(p.inflight)) }

        m.family("chimaera_nodes", "gauge", "Nodes in the cluster.")
        m.sample("chimaera_nodes", [], Double(cluster.count))
        if let rq = remote {
            m.family("chimaera_remote_tasks_total", "counter", "Tasks to and from other nodes, by outcome.")
            for (name, c) in [("sent", RemoteQueue.Counter.sent), ("served", .served), ("failed", .failed)] {
                m.sample("chimaera_remote_tasks_total", [("outcome", name)], Double(rq.counter(c)))
            }
            let peers = rq.peerStates().filter { $0.state != "self" }
            m.family("chimaera_peer_up", "gauge", "1 if the connection to a peer node is up, else 0; its state is a label.")
            for p in peers {
                m.sample("chimaera_peer_up", [("node", String(p.id)), ("address", p.host), ("state", p.state)],
                         p.state == "up" ? 1 : 0)
            }
            m.family("chimaera_peer_pending_tasks", "gauge", "Tasks sent to a peer node and not yet answered.")
            for p in peers { m.sample("chimaera_peer_pending_tasks", [("node", String(p.id))], Double(p.pending)) }
        }
        return m.text
    }

    private static func workerLabels(_ w: Worker) -> [(String, String)] {
        [("worker", String(w.id)), ("kind", w.kind.rawValue)]
    }
}

/// Writes Prometheus text exposition lines (no Foundation in the runtime library).
struct PromWriter {
    private(set) var text = ""

    mutating func family(_ name: String, _ type: String, _ help: String) {
        text += "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n"
    }

    mutating func sample(_ name: String, _ labels: [(String, String)], _ value: Double) {
        text += name
        if !labels.isEmpty {
            text += "{"
            for (i, (k, v)) in labels.enumerated() {
                if i > 0 { text += "," }
                text += k + "=\"" + Self.escape(v) + "\""
            }
            text += "}"
        }
        text += " " + Self.number(value) + "\n"
    }

    /// Integers print without a fraction; others in Swift's shortest round-trip form.
    static func number(_ v: Double) -> String {
        if !v.isFinite { return v.isNaN ? "NaN" : (v > 0 ? "+Inf" : "-Inf") }
        if v == v.rounded(), abs(v) < 1e15 { return String(Int64(v)) }
        return String(v)
    }

    static func escape(_ s: String) -> String {
        var out = ""
        for ch in s.unicodeScalars {
            switch ch {
            case "\\": out += "\\\\"
            case "\"": out += "\\\""
            case "\n": out += "\\n"
            default: out.unicodeScalars.append(ch)
            }
        }
        return out
    }
}

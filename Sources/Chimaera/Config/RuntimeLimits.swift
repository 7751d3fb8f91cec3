import ChimaeraYAML

/// The bounds on what clients (and module code) can make the runtime spend. Each has a
/// `runtime.` key; reaching one gives an error code (most often -CHI_ELIMIT) whose message
/// names the key, never a crash.
package struct RuntimeLimits: Sendable, Equatable {
    /// `runtime.max_clients`: clients attached at once.
    package var maxClients = 256
    /// `runtime.max_inflight_per_client`: a client's tasks accepted and not yet completed;
    /// beyond it the runtime leaves the client's tasks in its ring (back-pressure).
    package var maxInflightPerClient = 4096
    /// `runtime.max_client_memory`: bytes of the heap one client may hold (0: the heap).
    package var maxClientMemory = 0
    /// `runtime.max_fibers`: fibers (one mapped stack each) per worker.
    package var maxFibers = 4096
    /// `runtime.fiber_cache`: idle fibers a worker keeps; the others are unmapped.
    package var fiberCache = 64
    /// `runtime.max_task_depth`: how deep subtasks may nest (a chain holds a fiber per level).
    package var maxTaskDepth = 1024
    /// `runtime.max_task_size`: the largest task (header and parameters) the runtime copies.
    package var maxTaskSize = 1 << 20
    /// `runtime.min_period_us` and `runtime.max_period_s`: the periods a periodic task may have.
    package var minPeriodUs = 10
    package var maxPeriodS = 7 * 24 * 3600

    package init() {}

    package var minPeriodNs: UInt64 { UInt64(minPeriodUs) * 1000 }
    package var maxPeriodNs: UInt64 { UInt64(maxPeriodS) * 1_000_000_000 }

    /// Reads `runtime.<name>` if it is a limit; false if it is not one.
    mutating func read(_ name: String, _ v: YAMLNode, _ key: String, _ r: ValueReader) throws(ConfigError) -> Bool {
        switch name {
        case "max_clients": maxClients = try r.integer(v, key, in: 1...4096)
        case "max_inflight_per_client": maxInflightPerClient = try r.integer(v, key, in: 1...(1 << 20))
        case "max_client_memory":
            maxClientMemory = try r.scalar(v, key, "0 (no quota) or a size of at least 1M (bytes, or a number with a K, M or G suffix)") {
                RuntimeConfig.parseSize($0).flatMap { $0 == 0 || $0 >= 1 << 20 ? $0 : nil }
            }
        case "max_fibers": maxFibers = try r.integer(v, key, in: 16...32768)
        case "fiber_cache": fiberCache = try r.integer(v, key, in: 0...32768)
        case "max_task_depth": maxTaskDepth = try r.integer(v, key, in: 1...32767)
        case "max_task_size":
            maxTaskSize = try r.scalar(v, key, "a size between 256 and 64M") {
                RuntimeConfig.parseSize($0).flatMap { (256...(64 << 20)).contains($0) ? $0 : nil }
            }
        case "min_period_us": minPeriodUs = try r.integer(v, key, in: 1...1_000_000_000)
        case "max_period_s": maxPeriodS = try r.integer(v, key, in: 1...(100 * 365 * 24 * 3600))
        default: return false
        }
        return true
    }
}

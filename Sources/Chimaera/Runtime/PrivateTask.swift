import CChimaera
import Glibc

/// A task in the runtime's private memory: a subtask made by module code, a copy of a large
/// client task, a broadcast replica, or a request from another node. No client can reach it,
/// so the runtime keeps its own state beside it: whether it is done, the fiber that waits
/// for it, the message of a failure.
///
/// Layout of a block: a 64-byte prefix (a magic word, this object, the completion word),
/// then the task. `from(_:)` finds the object from a task pointer that module code hands
/// back; only code inside the runtime ever holds such pointers.
final class PrivateTask {
    static let prefix = 64
    static let magic: UInt64 = 0x5052_4956_5441_534B // "PRIVTASK"

    let block: UnsafeMutableRawPointer
    /// Bytes available to the task.
    let capacity: Int
    let cls: Int
    /// The completion word (DoneWord values); threads that wait sleep on it (futex).
    let state: UnsafeMutablePointer<UInt32>
    /// The fiber waiting for it, set before the waiter announces itself in `state`.
    var waiter: Ref<Fiber>?
    /// Why the runtime failed it, for chi_last_error in module code.
    var message: String?
    /// Whether module code made it (chi_task_new on the internal client).
    var isInternal = false
    /// The depth of the task that made it (internal tasks).
    var depth: UInt32 = 0
    /// Where it goes back to.
    unowned(unsafe) var pool: PrivateTaskPool

    var task: UnsafeMutablePointer<chi_task_t> {
        (block + Self.prefix).assumingMemoryBound(to: chi_task_t.self)
    }

    init(cls: Int, pool: PrivateTaskPool) {
        self.cls = cls
        capacity = PrivateTaskPool.size(ofClass: cls)
        self.pool = pool
        block = UnsafeMutableRawPointer.allocate(byteCount: Self.prefix + capacity, alignment: 64)
        block.storeBytes(of: Self.magic, as: UInt64.self)
        state = (block + 16).bindMemory(to: UInt32.self, capacity: 1)
        state.initialize(to: 0)
        (block + 8).storeBytes(of: UInt(bitPattern: Unmanaged.passUnretained(self).toOpaque()), as: UInt.self)
    }

    deinit { block.deallocate() }

    /// The private task whose task starts at `t`, if `t` is one.
    static func from(_ t: UnsafeRawPointer) -> PrivateTask? {
        let b = t - prefix
        guard b.load(as: UInt64.self) == magic, let p = UnsafeRawPointer(bitPattern: b.load(fromByteOffset: 8, as: UInt.self))
        else { return nil }
        return Unmanaged<PrivateTask>.fromOpaque(p).takeUnretainedValue()
    }
}

/// Free private tasks by size class (256 B doubling up to the largest task). A worker's pool
/// is taken from and refilled by its own thread without a lock; a task given back on
/// another thread goes to a locked side list that the owner picks up when it runs short.
/// Threads that are not workers share one pool under a lock. Tasks are made once and
/// reused: after warm-up the task path allocates nothing.
final class PrivateTaskPool: @unchecked Sendable {
    static let minShift = 8
    private var all: [PrivateTask] = []
    private var free: [[Ref<PrivateTask>]]
    /// The worker that owns the pool (its chi_tls_worker value), or nil: shared, locked.
    private let owner: UnsafeMutableRawPointer?
    private let lock = Mutex()
    private var foreign: [Ref<PrivateTask>] = []
    private let foreignCount = UnsafeMutablePointer<UInt64>.allocate(capacity: 1)
    let maxSize: Int

    init(maxTaskSize: Int, owner: UnsafeMutableRawPointer?) {
        maxSize = maxTaskSize
        self.owner = owner
        free = [[Ref<PrivateTask>]](repeating: [], count: Self.cls(of: maxTaskSize) + 1)
        for i in free.indices { free[i].reserveCapacity(64) }
        foreign.reserveCapacity(64)
        foreignCount.initialize(to: 0)
    }

    static func size(ofClass c: Int) -> Int { 1 << (c + minShift) }

    static func cls(of size: Int) -> Int {
        let s = max(size, 1 << minShift)
        return Int.bitWidth - (s - 1).leadingZeroBitCount - minShift
    }

    /// A private task of at least `size` bytes (its completion word reset); nil beyond the
    /// largest task. Call on the owner's thread (any thread for a shared pool).
    @inline(__always)
    func take(_ size: Int) -> PrivateTask? {
        guard size <= maxSize else { return nil }
        if owner == nil { return lock.withLock { takeOwned(size) } }
        return takeOwned(size)
    }

    @inline(__always)
    private func takeOwned(_ size: Int) -> PrivateTask {
        let c = Self.cls(of: size)
        if free[c].isEmpty && chi_load64_relaxed(foreignCount) > 0 {
            let back = lock.withLock { () -> [Ref<PrivateTask>] in
                defer { foreign.removeAll(keepingCapacity: true); chi_store64(foreignCount, 0) }
                return foreign
            }
            for r in back { r.with { free[$0.cls].append(r) } }
        }
        let pt: PrivateTask
        if let r = free[c].popLast() {
            pt = r.o
        } else {
            pt = PrivateTask(cls: c, pool: self)
            all.append(pt)
        }
        chi_store32(pt.state, 0)
        return pt
    }

    /// Makes `n` free tasks of `size`'s class ahead of use (on the owner's thread).
    func prewarm(_ n: Int, size: Int) {
        guard size <= maxSize else { return }
        let c = Self.cls(of: size)
        for _ in 0..<n {
            let pt = PrivateTask(cls: c, pool: self)
            all.append(pt)
            free[c].append(Ref(pt))
        }
    }

    /// Returns a private task to the pool it came from (any thread).
    static func give(_ pt: PrivateTask) {
        pt.waiter = nil
        if pt.message != nil { pt.message = nil }
        pt.isInternal = false
        pt.pool.put(pt)
    }

    private func put(_ pt: PrivateTask) {
        if owner == nil {
            lock.withLock { free[pt.cls].append(Ref(pt)) }
        } else if chi_tls_worker() == owner {
            free[pt.cls].append(Ref(pt))
        } else {
            lock.withLock {
                foreign.append(Ref(pt))
                chi_store64(foreignCount, UInt64(foreign.count))
            }
        }
    }

    /// Private tasks made so far (statistics; racy for a worker's pool).
    var count: Int { all.count }
}

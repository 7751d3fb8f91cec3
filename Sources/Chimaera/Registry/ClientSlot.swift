import CChimaera
import Glibc

/// An attached client as the runtime sees it: its rings, its error-message slots, and how
/// many of its tasks are in flight. Slots are made once and reused; workers refer to them
/// unretained (the registry owns them for the runtime's life).
///
/// The registry writes the fields below `state` under its lock; workers read `rings`,
/// `returned` and `msgs` only between the attach and detach messages they receive.
final class ClientSlot: @unchecked Sendable {
    enum State: String { case free, live, dying }

    let index: Int
    /// The owner id of this client's spans in the SpanMap.
    var owner: UInt16 { UInt16(index + 1) }
    var state = State.free
    var clientId: UInt64 = 0
    var pid: pid_t = 0
    /// The registration socket (-1 for an in-process client).
    var fd: Int32 = -1
    var areaOff: UInt64 = 0
    var since: UInt64 = 0
    var dyingSince: UInt64 = 0
    private(set) var rings: [ShmRing] = []
    private(set) var ringWorkers: [Int] = []
    private(set) var returned: ShmRing?
    private(set) var msgs: UnsafeMutablePointer<chi_msg_slot_t>?
    private let msgCounter: UnsafeMutablePointer<UInt32>
    /// Tasks accepted from ring i, at `accepted[8 i]` (one cache line each), written by that
    /// ring's worker only; `accepted[8 i + 1]` is the completion count it last summed.
    let accepted: UnsafeMutablePointer<UInt64>
    /// Tasks of this client completed, per worker and one for the network thread, at
    /// `completed[8 w]`, each written by its thread only.
    let completed: UnsafeMutablePointer<UInt64>
    private let completedSlots: Int
    /// Workers that dropped this client's rings and timers since it went.
    let detachAcks: UnsafeMutablePointer<UInt32>
    /// Fire-and-forget tasks that could not be handed back (the client's ring was full).
    let returnedDropped: UnsafeMutablePointer<UInt64>

    init(index: Int, workers: Int) {
        self.index = index
        msgCounter = .allocate(capacity: 1)
        msgCounter.initialize(to: 0)
        accepted = .allocate(capacity: 8 * Int(CHI_MAX_QUEUES))
        accepted.initialize(repeating: 0, count: 8 * Int(CHI_MAX_QUEUES))
        completedSlots = workers + 1
        completed = .allocate(capacity: 8 * completedSlots)
        completed.initialize(repeating: 0, count: 8 * completedSlots)
        detachAcks = .allocate(capacity: 1)
        detachAcks.initialize(to: 0)
        returnedDropped = .allocate(capacity: 1)
        returnedDropped.initialize(to: 0)
    }

    /// Binds the slot to a client's control area (registry, under its lock).
    func activate(area: UnsafeMutablePointer<chi_client_area_t>, areaOff: UInt64, segment: SharedSegment,
                  clientId: UInt64, pid: pid_t, fd: Int32) {
        self.areaOff = areaOff
        self.clientId = clientId
        self.pid = pid
        self.fd = fd
        let a = area.pointee
        rings = (0..<Int(a.nrings)).map { segment.ring(at: a.rings_off + UInt64($0) * a.ring_stride) }
        ringWorkers = withUnsafeBytes(of: a.ring_worker) { b in
            (0..<Int(a.nrings)).map { Int(b.load(fromByteOffset: $0 * 4, as: UInt32.self)) }
        }
        returned = segment.ring(at: a.returned_off)
        msgs = (segment.base + Int(a.msgs_off)).assumingMemoryBound(to: chi_msg_slot_t.self)
        for i in 0..<(8 * Int(CHI_MAX_QUEUES)) { accepted[i] = 0 }
        for i in 0..<(8 * completedSlots) { completed[i] = 0 }
        chi_store32(detachAcks, 0)
        chi_store64(returnedDropped, 0)
        since = chi_now_ns()
        state = .live
    }

    /// Forgets the client (registry, once its memory went back).
    func reset() {
        rings = []
        ringWorkers = []
        returned = nil
        msgs = nil
        fd = -1
        pid = 0
        clientId = 0
        areaOff = 0
        state = .free
    }

    /// Whether the slot serves a client (read without the registry's lock: a hint).
    var isLive: Bool { state == .live }

    var acceptedTotal: UInt64 {
        var n: UInt64 = 0
        for i in 0..<Int(CHI_MAX_QUEUES) { n &+= chi_load64(accepted + 8 * i) }
        return n
    }

    var completedTotal: UInt64 {
        var n: UInt64 = 0
        for i in 0..<completedSlots { n &+= chi_load64(completed + 8 * i) }
        return n
    }

    /// Tasks in flight (racy while the client submits; exact once its rings are detached,
    /// since completions only grow and each is counted after its last write to the client).
    var inflight: Int64 { Int64(bitPattern: acceptedTotal &- completedTotal) }

    /// Counts one completed task, on thread slot `w` (a worker id, or the network thread's).
    @inline(__always)
    func countCompleted(_ w: Int) {
        let p = completed + 8 * w
        chi_store64(p, chi_load64_relaxed(p) &+ 1)
    }

    /// Leaves `msg` for the client's task `taskId`; returns the value for its reserved[2]
    /// (0 when every slot was busy: the message is lost, the status is not).
    func leaveMessage(_ msg: String, taskId: UInt64) -> UInt64 {
        guard let msgs else { return 0 }
        let bytes = Array(msg.utf8.prefix(Int(CHI_MSG_TEXT)))
        for _ in 0..<Int(CHI_MSG_SLOTS) {
            let i = Int(chi_add32(msgCounter, 1) % CHI_MSG_SLOTS)
            let gen = UnsafeMutableRawPointer(msgs + i).assumingMemoryBound(to: UInt32.self)
            let g = chi_load32(gen)
            // Odd: another worker is writing it. The client may have scribbled it too: a
            // slot that never turns even is skipped, never waited for.
            guard g & 1 == 0, chi_cas32(gen, g, g &+ 1) else { continue }
            msgs[i].task_id = taskId
            msgs[i].len = UInt32(bytes.count)
            withUnsafeMutableBytes(of: &msgs[i].text) { $0.copyBytes(from: bytes) }
            chi_store32(gen, g &+ 2)
            return UInt64(g &+ 2) << 8 | UInt64(i + 1)
        }
        return 0
    }
}

import CChimaera
import Glibc

extension EtcdStore {
    package func watch(fromRevision revision: Int64, _ onEvent: @escaping @Sendable (MetadataEvent) -> Void,
                       onError: @escaping @Sendable (MetadataError) -> Void) throws(MetadataError) -> MetadataWatch {
        guard revision >= 0 else { throw .rejected("watch revision \(revision) is negative") }
        let w = EtcdWatch(store: self, next: revision == 0 ? 0 : revision + 1, onEvent: onEvent, onError: onError)
        try w.start()
        return w
    }

    /// The change a watched key-value stands for; nil for the entries that only mirror
    /// another of the same revision (`pool/id/...`, counters).
    func change(_ kv: KV, deleted: Bool) throws(MetadataError) -> MetadataEvent.Change? {
        guard kv.key.hasPrefix(prefix) else { return .other(key: kv.key) }
        let rest = kv.key.dropFirst(prefix.count)
        if rest.hasPrefix("pool/name/") && !deleted { return .pool(try Self.decode(kv)) }
        if rest.hasPrefix("pool/id/") || rest.hasPrefix("counter/") { return nil }
        if rest.hasPrefix("node/"), let n = UInt32(rest.dropFirst(5)) {
            if deleted { return .nodeDown(n) }
            guard let a = String(validating: kv.value, as: UTF8.self) else { throw .badResponse("node entry \(kv.key)") }
            return .nodeUp(n, address: a)
        }
        if rest.hasPrefix("container/") && !deleted {
            let parts = rest.dropFirst(10).split(separator: "/")
            guard parts.count == 2, let p = UInt64(parts[0]), let c = UInt32(parts[1]),
                  let s = String(validating: kv.value, as: UTF8.self), let node = UInt32(s) else {
                throw .badResponse("container entry \(kv.key)")
            }
            return .container(ContainerPlacement(pool: p, container: c, node: node, version: kv.modRevision))
        }
        return .other(key: kv.key)
    }
}

/// One watch of a store's whole prefix on its own thread, over one streaming request at a
/// time: when a member fails the stream resumes on the next endpoint from the revision after
/// the last one delivered, so events arrive once each, in order, across failovers.
final class EtcdWatch: MetadataWatch, @unchecked Sendable {
    let store: EtcdStore
    let onEvent: @Sendable (MetadataEvent) -> Void
    let onError: @Sendable (MetadataError) -> Void
    /// The start revision of the next stream; 0 until the first stream reports "now".
    private var next: Int64
    private let lock = Mutex()
    private var cancelled = false
    private var fd: CInt = -1
    private var thread = pthread_t()
    private var started = false

    init(store: EtcdStore, next: Int64, onEvent: @escaping @Sendable (MetadataEvent) -> Void,
         onError: @escaping @Sendable (MetadataError) -> Void) {
        self.store = store
        self.next = next
        self.onEvent = onEvent
        self.onError = onError
    }

    func start() throws(MetadataError) {
        let arg = Unmanaged.passRetained(self).toOpaque()
        let rc = pthread_create(&thread, nil, { arg in
            let w = Unmanaged<EtcdWatch>.fromOpaque(arg!).takeRetainedValue()
            w.run()
            return nil
        }, arg)
        guard rc == 0 else {
            Unmanaged<EtcdWatch>.fromOpaque(arg).release()
            throw .unavailable("cannot start the watch thread: \(Sys.errnoText(rc))")
        }
        started = true
    }

    func cancel() {
        let join = lock.withLock { () -> Bool in
            let first = !cancelled
            cancelled = true
            if fd >= 0 { shutdown(fd, CInt(SHUT_RDWR)) }
            return first && started
        }
        // From a callback (the watch thread itself) the loop ends when the callback returns.
        if join && pthread_equal(pthread_self(), thread) == 0 { pthread_join(thread, nil) }
        if join && pthread_equal(pthread_self(), thread) != 0 { pthread_detach(thread) }
    }

    private var isCancelled: Bool { lock.withLock { cancelled } }

    private func run() {
        let n = store.endpoints.count
        var index = 0
        var failingSince: UInt64?
        let timeoutNs = UInt64(store.timeoutMs) * 1_000_000
        var last = ""
        while !isCancelled {
            do throws(MetadataError) {
                if try stream(store.endpoints[index], delivered: { failingSince = nil }) { return }
            } catch .unavailable(let why) {
                last = why
            } catch {
                if !isCancelled { onError(error) }
                return
            }
            if isCancelled { return }
            let now = chi_now_ns()
            if failingSince == nil { failingSince = now }
            if now - failingSince! > timeoutNs {
                onError(.unavailable("the watch found no etcd endpoint for \(store.timeoutMs) ms (last: \(last))"))
                return
            }
            index = (index + 1) % n
            var ts = timespec(tv_sec: 0, tv_nsec: 50_000_000)
            nanosleep(&ts, nil)
        }
    }

    /// Runs one streaming request to `e` until it breaks. Returns true if the watch is over
    /// (cancelled, or ended by the server with a reason), throws `.unavailable` to fail over.
    private func stream(_ e: EtcdEndpoint, delivered: () -> Void) throws(MetadataError) -> Bool {
        let connectDeadline = chi_now_ns() + UInt64(store.timeoutMs) * 1_000_000
        let c: EtcdHTTP.Connection
        do throws(EtcdHTTP.Failure) {
            c = try EtcdHTTP.Connection.open(e, deadline: connectDeadline)
        } catch {
            throw .unavailable("\(e): \(EtcdStore.describe(error))")
        }
        let registered = lock.withLock { () -> Bool in
            guard !cancelled else { return false }
            fd = c.fd
            return true
        }
        defer {
            lock.withLock { fd = -1 }
            c.close()
        }
        guard registered else { return true }
        var body = "{\"create_request\":{\"key\":\(store.b64(store.prefix)),"
            + "\"range_end\":\(MetadataJSON.quote(EtcdStore.rangeEnd(store.prefix)))"
        if next > 0 { body += ",\"start_revision\":\"\(next)\"" }
        body += "}}"
        // The stream is quiet while nothing changes, so silence alone proves nothing. After a
        // request timeout of it, one read on the same member checks it still serves (a
        // stopped or partitioned member fails that); cancel() shuts the socket down, and a
        // member that dies resets it.
        let quietNs = UInt64(store.timeoutMs) * 1_000_000
        var reader: EtcdHTTP.BodyReader
        do throws(EtcdHTTP.Failure) {
            try c.send(EtcdHTTP.request(e, "/v3/watch", body, stream: true), deadline: connectDeadline)
            let (head, rest) = try EtcdHTTP.readHead(c, deadline: connectDeadline)
            guard head.status == 200 else { throw EtcdHTTP.Failure.malformed("HTTP \(head.status)") }
            reader = EtcdHTTP.BodyReader(chunked: head.chunked, length: head.length, pending: rest,
                                         maxBody: store.maxResponse)
        } catch {
            throw .unavailable("\(e): \(EtcdStore.describe(error))")
        }
        var buffer: [UInt8] = []
        while true {
            let piece: [UInt8]?
            do throws(EtcdHTTP.Failure) {
                piece = try reader.next(c, deadline: chi_now_ns() + quietNs)
            } catch .timeout {
                if isCancelled { return true }
                try probe(e)
                continue
            } catch {
                if isCancelled { return true }
                throw .unavailable("\(e): watch stream broke: \(EtcdStore.describe(error))")
            }
            guard let piece else {
                if isCancelled { return true }
                throw .unavailable("\(e): the watch stream ended")
            }
            buffer += piece
            // The gateway ends each message with a newline.
            while let nl = buffer.firstIndex(of: 0x0A) {
                let line = Array(buffer[..<nl])
                buffer.removeFirst(nl + 1)
                if line.allSatisfy({ $0 == 0x20 || $0 == 0x0D }) { continue }
                if try handle(line) { return true }
                delivered()
            }
            guard buffer.count <= store.maxResponse else {
                throw .badResponse("\(e): a watch message larger than \(store.maxResponse) bytes")
            }
        }
    }

    /// A linearizable read of one key on `e` alone: throws `.unavailable` unless it answers
    /// within the request timeout.
    private func probe(_ e: EtcdEndpoint) throws(MetadataError) {
        let body = "{\"key\":\(store.b64(store.prefix + "probe"))}"
        let deadline = chi_now_ns() + UInt64(store.timeoutMs) * 1_000_000
        do throws(EtcdHTTP.Failure) {
            let r = try EtcdHTTP.post(e, "/v3/kv/range", body, maxBody: store.maxResponse, deadline: deadline)
            guard r.status == 200 else { throw EtcdHTTP.Failure.malformed("HTTP \(r.status)") }
        } catch {
            throw .unavailable("\(e): the watch's member does not serve reads: \(EtcdStore.describe(error))")
        }
    }

    /// Delivers one stream message; true when the server ended the watch for good.
    private func handle(_ line: [UInt8]) throws(MetadataError) -> Bool {
        guard let j = MetadataJSON.parse(line) else { throw .badResponse("a watch message that is not JSON") }
        if let err = j["error"] {
            let message = err["message"]?.string ?? "watch error"
            // A member without a leader (require-leader) is one to leave, not the end.
            throw .unavailable(message)
        }
        guard let r = j["result"] else { throw .badResponse("a watch message without a result") }
        if r["created"]?.bool == true, next == 0 {
            next = try EtcdStore.revision(r) + 1
        }
        if r["canceled"]?.bool == true {
            if let compacted = r["compact_revision"]?.int64, compacted > 0 {
                onError(.rejected("the store was compacted to revision \(compacted), past the watch's \(next)"))
                return true
            }
            throw .unavailable(r["cancel_reason"]?.string ?? "the watch was cancelled by the server")
        }
        guard let events = r["events"]?.array else { return false }
        // Several events of one transaction share a revision: skip by where the batch began.
        let floor = next
        for ev in events {
            guard let kvj = ev["kv"] else { throw .badResponse("a watch event without a key") }
            let kv = try EtcdStore.kv(kvj)
            let deleted = ev["type"]?.string == "DELETE"
            guard kv.modRevision >= floor else { continue }
            if let change = try store.change(kv, deleted: deleted) {
                if isCancelled { return true }
                onEvent(MetadataEvent(change: change, revision: kv.modRevision))
            }
            next = max(next, kv.modRevision + 1)
        }
        return false
    }
}

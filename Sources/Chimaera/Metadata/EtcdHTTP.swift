import CChimaera
import Glibc

/// One etcd client endpoint, `HOST:PORT` of its client URL (plain HTTP).
package struct EtcdEndpoint: Sendable, Equatable, CustomStringConvertible {
    package var host: String
    package var port: Int

    package init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    package var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}

/// HTTP/1.1 to etcd's JSON gateway over blocking sockets, one connection per request.
///
/// Blocking sockets rather than an event loop because every caller is a runtime thread that
/// waits for the answer anyway, and a connection per request needs no lock to share. Each
/// step (connect, send, every read) is bounded by the request's deadline with poll(2); a
/// reply is bounded in header and body size before a byte of it is interpreted.
enum EtcdHTTP {
    /// The largest response header block accepted.
    static let maxHeader = 16 << 10

    /// A parsed response: the status and the body.
    struct Response {
        var status: Int
        var body: [UInt8]
    }

    /// Why one attempt failed: `.connect` means nothing was sent, so any endpoint may retry.
    enum Failure: Error {
        case connect(String)
        case io(String)
        case timeout
        case malformed(String)
        case tooLarge
    }

    /// An open connection; closed by `close()`.
    struct Connection {
        let fd: CInt

        /// Connects to `e` before `deadline` (chi_now_ns clock).
        static func open(_ e: EtcdEndpoint, deadline: UInt64) throws(Failure) -> Connection {
            var hints = addrinfo()
            hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
            var res: UnsafeMutablePointer<addrinfo>?
            let grc = getaddrinfo(e.host, String(e.port), &hints, &res)
            guard grc == 0, let ai = res else {
                throw .connect("cannot resolve \(e.host): \(String(cString: gai_strerror(grc)))")
            }
            defer { freeaddrinfo(res) }
            let fd = socket(ai.pointee.ai_family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue)
                            | Int32(SOCK_NONBLOCK.rawValue), 0)
            guard fd >= 0 else { throw .connect("socket: \(Sys.errnoText())") }
            var one: CInt = 1
            _ = setsockopt(fd, CInt(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<CInt>.size))
            if Glibc.connect(fd, ai.pointee.ai_addr, ai.pointee.ai_addrlen) != 0 {
                guard errno == EINPROGRESS else {
                    let why = Sys.errnoText()
                    Glibc.close(fd)
                    throw .connect("\(e): \(why)")
                }
                do throws(Failure) {
                    try wait(fd, Int16(POLLOUT), deadline)
                } catch {
                    Glibc.close(fd)
                    throw .connect("\(e): connect timed out")
                }
                var err: CInt = 0
                var len = socklen_t(MemoryLayout<CInt>.size)
                _ = getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len)
                if err != 0 {
                    Glibc.close(fd)
                    throw .connect("\(e): \(Sys.errnoText(err))")
                }
            }
            return Connection(fd: fd)
        }

        /// Waits until `fd` is ready for `events` or `deadline` passes.
        static func wait(_ fd: CInt, _ events: Int16, _ deadline: UInt64) throws(Failure) {
            while true {
                let now = chi_now_ns()
                guard now < deadline else { throw .timeout }
                var p = pollfd(fd: fd, events: events, revents: 0)
                let ms = Int32(min(UInt64(Int32.max), (deadline - now) / 1_000_000 + 1))
                let r = poll(&p, 1, ms)
                if r > 0 { return }
                if r < 0 && errno != EINTR { throw .io("poll: \(Sys.errnoText())") }
            }
        }

        func send(_ bytes: [UInt8], deadline: UInt64) throws(Failure) {
            var off = 0
            while off < bytes.count {
                let n = bytes.withUnsafeBytes {
                    Glibc.send(fd, $0.baseAddress! + off, bytes.count - off, Int32(MSG_NOSIGNAL))
                }
                if n > 0 { off += n; continue }
                if n < 0 && (errno == EAGAIN || errno == EINTR) {
                    try Self.wait(fd, Int16(POLLOUT), deadline)
                    continue
                }
                throw .io("send: \(Sys.errnoText())")
            }
        }

        /// Up to `max` bytes; empty at end of stream.
        func receive(max: Int, deadline: UInt64) throws(Failure) -> [UInt8] {
            var buf = [UInt8](repeating: 0, count: max)
            while true {
                let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, max, 0) }
                if n >= 0 { return Array(buf[0..<n]) }
                if errno == EAGAIN || errno == EINTR {
                    try Self.wait(fd, Int16(POLLIN), deadline)
                    continue
                }
                throw .io("recv: \(Sys.errnoText())")
            }
        }

        func close() { Glibc.close(fd) }
    }

    /// The request bytes of `POST path` with a JSON body.
    static func request(_ e: EtcdEndpoint, _ path: String, _ body: String, stream: Bool) -> [UInt8] {
        var head = "POST \(path) HTTP/1.1\r\nHost: \(e)\r\nContent-Type: application/json\r\n"
        head += "Content-Length: \(body.utf8.count)\r\n"
        // A watch refuses to run on a member that lost its leader (etcd's require-leader,
        // passed through the gateway as gRPC metadata), so a partitioned member cannot hold
        // a watcher silently.
        head += stream ? "Grpc-Metadata-hasleader: true\r\n" : "Connection: close\r\n"
        return Array((head + "\r\n" + body).utf8)
    }

    /// A response header block: the status and whether the body is chunked or its length.
    struct Head {
        var status: Int
        var chunked: Bool
        var length: Int?
    }

    /// Reads until the end of the header block; returns it and the body bytes read with it.
    static func readHead(_ c: Connection, deadline: UInt64) throws(Failure) -> (Head, [UInt8]) {
        var buf: [UInt8] = []
        let end: [UInt8] = [13, 10, 13, 10]
        while true {
            if let r = find(end, in: buf) {
                let head = try parseHead(Array(buf[..<r]))
                return (head, Array(buf[(r + 4)...]))
            }
            guard buf.count <= maxHeader else { throw .tooLarge }
            let more = try c.receive(max: 4096, deadline: deadline)
            guard !more.isEmpty else { throw buf.isEmpty ? .io("connection closed") : .malformed("truncated header") }
            buf += more
        }
    }

    static func find(_ needle: [UInt8], in hay: [UInt8], from: Int = 0) -> Int? {
        guard hay.count >= needle.count + from else { return nil }
        var i = from
        while i + needle.count <= hay.count {
            if hay[i] == needle[0] && Array(hay[i..<i + needle.count]) == needle { return i }
            i += 1
        }
        return nil
    }

    static func trim(_ s: Substring) -> String {
        var t = s
        while let f = t.first, f == " " || f == "\t" { t = t.dropFirst() }
        while let l = t.last, l == " " || l == "\t" { t = t.dropLast() }
        return String(t)
    }

    static func parseHead(_ bytes: [UInt8]) throws(Failure) -> Head {
        let text = String(decoding: bytes, as: UTF8.self)
        let lines = text.split(separator: "\r\n", omittingEmptySubsequences: false)
        let status = lines.first?.split(separator: " ")
        guard let status, status.count >= 2, status[0].hasPrefix("HTTP/1."), let code = Int(status[1]),
              (100...599).contains(code) else { throw .malformed("bad status line") }
        var head = Head(status: code, chunked: false, length: nil)
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            let name = line[..<colon].lowercased()
            let value = trim(line[line.index(after: colon)...])
            if name == "content-length" {
                guard let n = Int(value), n >= 0 else { throw .malformed("bad Content-Length") }
                head.length = n
            } else if name == "transfer-encoding" {
                head.chunked = value.lowercased().contains("chunked")
            }
        }
        return head
    }

    /// One exchange on a fresh connection to `e`, the whole body read (at most `maxBody`).
    static func post(_ e: EtcdEndpoint, _ path: String, _ body: String, maxBody: Int,
                     deadline: UInt64) throws(Failure) -> Response {
        let c = try Connection.open(e, deadline: deadline)
        defer { c.close() }
        try c.send(request(e, path, body, stream: false), deadline: deadline)
        let (head, rest) = try readHead(c, deadline: deadline)
        var reader = BodyReader(chunked: head.chunked, length: head.length, pending: rest, maxBody: maxBody)
        var out: [UInt8] = []
        while let piece = try reader.next(c, deadline: deadline) {
            out += piece
            guard out.count <= maxBody else { throw .tooLarge }
        }
        return Response(status: head.status, body: out)
    }

    /// Decodes a body as it arrives: by Content-Length, chunked, or to end of stream.
    struct BodyReader {
        let chunked: Bool
        var remaining: Int?
        var pending: [UInt8]
        let maxBody: Int
        var done = false
        /// Bytes left in the current chunk (chunked only); nil between chunks.
        var chunkLeft: Int?

        init(chunked: Bool, length: Int?, pending: [UInt8], maxBody: Int) {
            self.chunked = chunked
            remaining = chunked ? nil : length
            self.pending = pending
            self.maxBody = maxBody
        }

        /// The next piece of body, nil at its end.
        mutating func next(_ c: Connection, deadline: UInt64) throws(Failure) -> [UInt8]? {
            if done { return nil }
            if !chunked {
                if let r = remaining, r > maxBody { throw .tooLarge }
                if remaining == 0 { done = true; return nil }
                if pending.isEmpty {
                    pending = try c.receive(max: 16384, deadline: deadline)
                    if pending.isEmpty {
                        guard remaining == nil else { throw .malformed("body shorter than Content-Length") }
                        done = true
                        return nil
                    }
                }
                var piece = pending
                if let r = remaining {
                    piece = Array(pending.prefix(r))
                    remaining = r - piece.count
                }
                pending = []
                return piece
            }
            while true {
                if let left = chunkLeft {
                    if left == 0 {
                        // The CRLF after a chunk's data.
                        try fill(2, c, deadline)
                        guard pending[0] == 13 && pending[1] == 10 else { throw .malformed("bad chunk end") }
                        pending.removeFirst(2)
                        chunkLeft = nil
                        continue
                    }
                    if pending.isEmpty { try fill(1, c, deadline) }
                    let n = min(left, pending.count)
                    let piece = Array(pending[..<n])
                    pending.removeFirst(n)
                    chunkLeft = left - n
                    return piece
                }
                // A chunk-size line: hex digits, optional extensions, CRLF.
                var lineEnd = EtcdHTTP.find([13, 10], in: pending)
                while lineEnd == nil {
                    guard pending.count < 1024 else { throw .malformed("chunk size line too long") }
                    try fill(pending.count + 1, c, deadline)
                    lineEnd = EtcdHTTP.find([13, 10], in: pending)
                }
                let line = String(decoding: pending[..<lineEnd!], as: UTF8.self)
                pending.removeFirst(lineEnd! + 2)
                let hex = line.split(separator: ";").first.map(String.init) ?? ""
                guard !hex.isEmpty, hex.count <= 8, let size = Int(hex, radix: 16) else {
                    throw .malformed("bad chunk size")
                }
                guard size <= maxBody else { throw .tooLarge }
                if size == 0 {
                    done = true
                    return nil
                }
                chunkLeft = size
            }
        }

        private mutating func fill(_ n: Int, _ c: Connection, _ deadline: UInt64) throws(Failure) {
            while pending.count < n {
                let more = try c.receive(max: 16384, deadline: deadline)
                guard !more.isEmpty else { throw .io("connection closed inside a chunk") }
                pending += more
            }
        }
    }
}

import CChimaera
import Glibc

/// One mapped shared-memory segment: `/dev/shm/chimaera_<name>`.
///
/// The daemon creates it (mode 0600) and lays out the header, the workers' doorbells and the
/// heap of spans; clients attach to it and register over the socket the header names, which
/// gives each its own rings and spans. Everything inside is addressed by offset from `base`,
/// so the mapping address may differ between processes.
package final class SharedSegment: @unchecked Sendable {
    /// The segment's name (without the `chimaera_` prefix).
    package let name: String
    /// Where the segment is mapped in this process.
    package let base: UnsafeMutableRawPointer
    /// Its size in bytes.
    package let size: Int
    /// Whether this process created it (and so unlinks it).
    package let owner: Bool
    /// This mapping's identity for per-thread caches of its blocks; never reused.
    let mappingId: UInt64 = chi_add64(SharedSegment.mappingIds, 1) &+ 1
    nonisolated(unsafe) private static let mappingIds: UnsafeMutablePointer<UInt64> = {
        let p = UnsafeMutablePointer<UInt64>.allocate(capacity: 1)
        p.initialize(to: 0)
        return p
    }()
    private var unlinked = false

    /// The POSIX shm name of a segment.
    package static func shmName(_ name: String) -> String { "/chimaera_\(name)" }
    /// The file that backs a segment.
    package static func filePath(_ name: String) -> String { "/dev/shm/chimaera_\(name)" }
    /// The Unix socket where clients of a segment register.
    package static func socketPath(_ name: String) -> String { "/dev/shm/chimaera_\(name).sock" }

    /// Layout parameters fixed at creation.
    package struct Layout {
        package var workers: Int
    }

    private init(name: String, base: UnsafeMutableRawPointer, size: Int, owner: Bool) {
        self.name = name
        self.base = base
        self.size = size
        self.owner = owner
    }

    deinit {
        _ = Sys.munmap(base, size)
        if owner { unlink() }
    }

    /// The header at offset 0.
    package var header: UnsafeMutablePointer<chi_seg_header_t> {
        base.assumingMemoryBound(to: chi_seg_header_t.self)
    }

    /// Removes the name from /dev/shm (the mapping stays valid). Idempotent.
    package func unlink() {
        if unlinked { return }
        unlinked = true
        _ = Sys.shmUnlink(Self.shmName(name))
    }

    /// Converts an address in the mapping to an offset, if it lies inside.
    @inline(__always)
    package func offset(of p: UnsafeRawPointer) -> UInt64? {
        let d = p - UnsafeRawPointer(base)
        return d > 0 && d < size ? UInt64(d) : nil
    }

    /// The address of `[off, off + len)` if that range lies inside the segment.
    @inline(__always)
    package func pointer(_ off: UInt64, _ len: UInt64) -> UnsafeMutableRawPointer? {
        guard off > 0, off < UInt64(size), len <= UInt64(size) - off else { return nil }
        return base + Int(off)
    }

    /// Creates and lays out a new segment. A stale segment whose daemon is dead is replaced;
    /// one served by a live process is an error naming that process.
    package static func create(name: String, size: Int, layout: Layout, anonymous: Bool = false)
        throws(ChiError) -> SharedSegment
    {
        let shm = shmName(name)
        var fd = Sys.shmOpen(shm, O_CREAT | O_EXCL | O_RDWR, 0o600)
        if fd < 0 && Sys.errno == EEXIST {
            if let pid = livePid(of: name) {
                throw ChiError(EEXIST, "segment \(filePath(name)) is already served by pid \(pid); stop it first (chimaera stop --segment \(name))")
            }
            _ = Sys.shmUnlink(shm)
            fd = Sys.shmOpen(shm, O_CREAT | O_EXCL | O_RDWR, 0o600)
        }
        guard fd >= 0 else {
            throw ChiError(Sys.errno, "cannot create \(filePath(name)): \(Sys.errnoText())")
        }
        defer { close(fd) }
        guard Sys.ftruncate(fd, off_t(size)) == 0 else {
            let e = Sys.errno
            _ = Sys.shmUnlink(shm)
            throw ChiError(e, "cannot size \(filePath(name)) to \(size) bytes: \(Sys.errnoText(e))")
        }
        guard let base = Sys.mmap(nil, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0) else {
            let e = Sys.errno
            _ = Sys.shmUnlink(shm)
            throw ChiError(e, "cannot map \(filePath(name)): \(Sys.errnoText(e))")
        }
        let seg = SharedSegment(name: name, base: base, size: size, owner: true)
        if anonymous { seg.unlink() }
        try seg.format(layout)
        return seg
    }

    /// Attaches to a segment created by a runtime. Fails with `CHI_ENORUNTIME` when there is
    /// none, when its runtime died, or when it is not ready within `timeoutNs`.
    package static func attach(name: String, timeoutNs: UInt64) throws(ChiError) -> SharedSegment {
        let deadline = chi_now_ns() + timeoutNs
        let path = filePath(name)
        while true {
            let fd = Sys.shmOpen(shmName(name), O_RDWR, 0)
            if fd < 0 {
                let e = Sys.errno
                if e == ENOENT {
                    if chi_now_ns() >= deadline {
                        throw ChiError(CInt(CHI_ENORUNTIME), "no runtime is serving segment \"\(name)\" (\(path) does not exist); start one with `chimaera start --segment \(name)`")
                    }
                    usleep(10_000)
                    continue
                }
                throw ChiError(CInt(CHI_ENORUNTIME), "cannot open \(path): \(Sys.errnoText(e))")
            }
            var st = stat()
            fstat(fd, &st)
            let size = Int(st.st_size)
            if size < MemoryLayout<chi_seg_header_t>.size {
                close(fd)
                if chi_now_ns() >= deadline {
                    throw ChiError(CInt(CHI_ENORUNTIME), "segment \(path) is not initialised")
                }
                usleep(10_000)
                continue
            }
            let base = Sys.mmap(nil, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)
            close(fd)
            guard let base else {
                throw ChiError(CInt(CHI_ENORUNTIME), "cannot map \(path): \(Sys.errnoText())")
            }
            let seg = SharedSegment(name: name, base: base, size: size, owner: false)
            let h = seg.header
            if h.pointee.magic != CHI_SEG_MAGIC || chi_load32(&h.pointee.state) != CHI_SEG_READY {
                if chi_now_ns() >= deadline {
                    throw ChiError(CInt(CHI_ENORUNTIME), "segment \(path) exists but no runtime is ready on it")
                }
                usleep(10_000)
                continue
            }
            if h.pointee.abi_major != UInt32(CHI_ABI_MAJOR) || h.pointee.layout != CHI_SEG_LAYOUT {
                throw ChiError(CInt(CHI_EABI), "segment \(path) was made by a runtime with ABI \(h.pointee.abi_major).\(h.pointee.abi_minor) (layout \(h.pointee.layout)); this library is \(CHI_ABI_MAJOR).\(CHI_ABI_MINOR) (layout \(CHI_SEG_LAYOUT))")
            }
            if !Sys.processAlive(h.pointee.daemon_pid) {
                throw ChiError(CInt(CHI_ENORUNTIME), "the runtime of segment \(path) (pid \(h.pointee.daemon_pid)) is not running; remove the stale segment with `chimaera stop --segment \(name)`")
            }
            return seg
        }
    }

    /// The pid of the live daemon serving `name`, if any.
    package static func livePid(of name: String) -> pid_t? {
        let fd = Sys.shmOpen(shmName(name), O_RDONLY, 0)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0, Int(st.st_size) >= MemoryLayout<chi_seg_header_t>.size,
              let p = Sys.mmap(nil, MemoryLayout<chi_seg_header_t>.size, PROT_READ, MAP_SHARED, fd, 0)
        else { return nil }
        defer { _ = Sys.munmap(p, MemoryLayout<chi_seg_header_t>.size) }
        let h = p.assumingMemoryBound(to: chi_seg_header_t.self)
        guard h.pointee.magic == CHI_SEG_MAGIC else { return nil }
        let pid = h.pointee.daemon_pid
        return Sys.processAlive(pid) && pid != getpid() ? pid : nil
    }

    private func format(_ layout: Layout) throws(ChiError) {
        func align(_ x: Int, _ a: Int) -> Int { (x + a - 1) & ~(a - 1) }
        let h = header
        let doorbells = align(MemoryLayout<chi_seg_header_t>.size, 4096)
        let span = 1 << Int(CHI_SPAN_SHIFT)
        let heap = align(doorbells + layout.workers * MemoryLayout<chi_doorbell_t>.stride, span)
        guard heap + 16 * span <= size else {
            throw ChiError(ENOMEM, "segment of \(size) bytes is too small: it needs at least \((heap + 16 * span) >> 10) KiB")
        }
        h.pointee.size = UInt64(size)
        h.pointee.abi_major = UInt32(CHI_ABI_MAJOR)
        h.pointee.abi_minor = UInt32(CHI_ABI_MINOR)
        h.pointee.layout = CHI_SEG_LAYOUT
        h.pointee.daemon_pid = getpid()
        h.pointee.nworkers = UInt32(layout.workers)
        h.pointee.span_shift = CHI_SPAN_SHIFT
        h.pointee.doorbells_off = UInt64(doorbells)
        h.pointee.heap_off = UInt64(heap)
        h.pointee.heap_size = UInt64((size - heap) & ~(span - 1))
        h.pointee.start_ns = chi_now_ns()
        withUnsafeMutableBytes(of: &h.pointee.name) { buf in
            let bytes = Array(name.utf8.prefix(buf.count - 1))
            buf.copyBytes(from: bytes)
            buf[bytes.count] = 0
        }
        h.pointee.magic = CHI_SEG_MAGIC
    }

    /// Records where clients register (empty: nowhere, in-process clients only).
    package func setSocketPath(_ path: String) {
        withUnsafeMutableBytes(of: &header.pointee.socket_path) { buf in
            buf.initializeMemory(as: UInt8.self, repeating: 0)
            let bytes = Array(path.utf8.prefix(buf.count - 1))
            buf.copyBytes(from: bytes)
        }
    }

    /// Where clients register, from the header.
    package var socketPath: String {
        withUnsafeBytes(of: header.pointee.socket_path) { buf in
            String(decoding: buf.prefix(while: { $0 != 0 }), as: UTF8.self)
        }
    }

    /// The heap: where spans start, and its size.
    package var heapOff: UInt64 { header.pointee.heap_off }
    package var heapSize: UInt64 { header.pointee.heap_size }

    /// Marks the segment ready: clients may attach from now on.
    package func publishReady() { chi_store32(&header.pointee.state, CHI_SEG_READY) }

    /// The doorbell of worker `i`.
    package func doorbell(_ i: Int) -> UnsafeMutablePointer<chi_doorbell_t> {
        (base + Int(header.pointee.doorbells_off)).assumingMemoryBound(to: chi_doorbell_t.self) + i
    }

    /// A ring formatted at segment offset `off`.
    package func ring(at off: UInt64) -> ShmRing { ShmRing(at: base + Int(off)) }
}

import Glibc

/// The system calls the core makes, in one place so tests can make them fail.
///
/// Each member is a plain function value; a test may swap one (for example `mmap`) for a
/// failing stub. Not thread-safe to change while a runtime runs.
package enum Sys {
    nonisolated(unsafe) package static var shmOpen: (String, CInt, mode_t) -> CInt = {
        name, flags, mode in shm_open(name, flags, mode)
    }
    nonisolated(unsafe) package static var shmUnlink: (String) -> CInt = { shm_unlink($0) }
    nonisolated(unsafe) package static var ftruncate: (CInt, off_t) -> CInt = { Glibc.ftruncate($0, $1) }
    nonisolated(unsafe) package static var mmap:
        (UnsafeMutableRawPointer?, Int, CInt, CInt, CInt, off_t) -> UnsafeMutableRawPointer? = {
            addr, len, prot, flags, fd, off in
            let p = Glibc.mmap(addr, len, prot, flags, fd, off)
            return p == MAP_FAILED ? nil : p
        }
    nonisolated(unsafe) package static var munmap: (UnsafeMutableRawPointer, Int) -> CInt = {
        Glibc.munmap($0, $1)
    }

    /// The current errno value.
    package static var errno: CInt { Glibc.errno }

    /// `strerror(errno)` as a Swift string.
    package static func errnoText(_ e: CInt = Glibc.errno) -> String {
        guard let s = strerror(e) else { return "errno \(e)" }
        return String(cString: s)
    }

    /// Whether a process with this pid exists.
    package static func processAlive(_ pid: pid_t) -> Bool {
        if pid <= 0 { return false }
        return kill(pid, 0) == 0 || Glibc.errno == EPERM
    }
}

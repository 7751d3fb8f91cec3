import CChimaera

/// Field addresses of a task header, for atomic access to the words both sides touch.
extension UnsafeMutablePointer where Pointee == chi_task_t {
    /// The completion word.
    @inline(__always)
    package var donePtr: UnsafeMutablePointer<UInt32> { chi_task_done_ptr(self) }

    /// `reserved[i]`, the library's private words.
    @inline(__always)
    package func reservedPtr(_ i: Int) -> UnsafeMutablePointer<UInt64> {
        chi_task_reserved_ptr(self, Int32(i))
    }
}

/// Completion-word states beyond the public PENDING (0) and DONE (1).
enum DoneWord {
    static let pending: UInt32 = 0
    static let done: UInt32 = 1
    /// A client thread sleeps on the word (futex): the completer must wake it.
    static let sleeper: UInt32 = 2
    /// A runtime fiber waits (internal tasks: the private task holds it).
    static let fiber: UInt32 = 3
}

/// The library's flag on a task that was submitted and has not been deleted.
let submittedFlag: UInt32 = 0x8000_0000
/// The library's flag on a task submitted fire-and-forget: the runtime frees it.
let fafFlag: UInt32 = 0x4000_0000

/* chimaera/api/hshm.h: the small part of hermes-shm (hshm::, hipc::) that Chimaera client code
 * written for the seed uses: integer aliases, size units, a timer, HILOG, memory contexts and
 * shared-memory pointers. Header-only, C++11.
 *
 * This is a compatibility layer, not hermes-shm: there are no allocators here. A MemContext is
 * accepted and ignored (the C ABI has one shared heap per segment), and hipc::Pointer is the C
 * ABI's chi_shm_ptr_t. Include chimaera/api/chimaera_client.h rather than this file. */
#ifndef CHIMAERA_API_HSHM_H
#define CHIMAERA_API_HSHM_H

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <string>

#include "chimaera/task.h"

namespace hshm {

typedef uint8_t u8;
typedef uint16_t u16;
typedef uint32_t u32;
typedef uint64_t u64;
typedef int8_t i8;
typedef int16_t i16;
typedef int32_t i32;
typedef int64_t i64;

/// Size units: hshm::Unit<size_t>::Megabytes(1) == 1 << 20. Binary (1024-based) units.
template <typename T>
struct Unit {
    static T Bytes(T n) { return n; }
    static T Kilobytes(T n) { return n * static_cast<T>(1024); }
    static T Megabytes(T n) { return n * static_cast<T>(1024 * 1024); }
    static T Gigabytes(T n) { return n * static_cast<T>(1024ll * 1024 * 1024); }
    static T Terabytes(T n) { return n * static_cast<T>(1024ll * 1024 * 1024 * 1024); }
};

/// An accumulating wall-clock timer (steady clock): Resume starts a lap, Pause ends it, the
/// getters report the sum of the laps, including a lap still running. Not thread-safe.
class Timer {
public:
    Timer() : running_(false), total_ns_(0) {}
    void Resume() {
        if (!running_) {
            start_ = Clock::now();
            running_ = true;
        }
    }
    void Pause() {
        if (running_) {
            total_ns_ += Lap();
            running_ = false;
        }
    }
    void Reset() {
        running_ = false;
        total_ns_ = 0;
    }
    double GetNsec() const { return static_cast<double>(total_ns_ + (running_ ? Lap() : 0)); }
    double GetUsec() const { return GetNsec() / 1e3; }
    double GetMsec() const { return GetNsec() / 1e6; }
    double GetSec() const { return GetNsec() / 1e9; }

private:
    typedef std::chrono::steady_clock Clock;
    int64_t Lap() const {
        return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - start_).count();
    }
    bool running_;
    int64_t total_ns_;
    Clock::time_point start_;
};

/// HILOG levels. kInfo and kDebug go to stdout, the rest to stderr; kDebug is printed only
/// when HSHM_LOG_DEBUG is defined; kFatal aborts after printing.
struct LogLevel {
    enum Value { kDebug, kInfo, kWarning, kError, kFatal };
};

namespace detail {

inline void FormatRest(std::ostringstream &out, const char *fmt) { out << fmt; }

/// Writes fmt with each "{}" replaced by the next argument (operator<<). A "{}" without an
/// argument is written as is; arguments without a "{}" are dropped, as hshm's formatter does.
template <typename T, typename... Args>
void FormatRest(std::ostringstream &out, const char *fmt, const T &first, const Args &...rest) {
    for (const char *p = fmt; *p; ++p) {
        if (p[0] == '{' && p[1] == '}') {
            out << first;
            FormatRest(out, p + 2, rest...);
            return;
        }
        out << *p;
    }
}

}  // namespace detail

/// hshm::Formatter::format("{}.{}", a, b) -> std::string.
struct Formatter {
    template <typename... Args>
    static std::string format(const char *fmt, const Args &...args) {
        std::ostringstream out;
        detail::FormatRest(out, fmt, args...);
        return out.str();
    }
};

/// Prints one formatted line in a single write, so lines from threads do not interleave.
template <typename... Args>
void Log(LogLevel::Value level, const char *fmt, const Args &...args) {
#ifndef HSHM_LOG_DEBUG
    if (level == LogLevel::kDebug) return;
#endif
    std::string line = Formatter::format(fmt, args...);
    line += '\n';
    FILE *f = level <= LogLevel::kInfo ? stdout : stderr;
    std::fwrite(line.data(), 1, line.size(), f);
    std::fflush(f);
    if (level == LogLevel::kFatal) std::abort();
}

namespace ipc {

/// A memory context: which allocator (and thread) an allocation is for. The C ABI has one
/// shared heap per segment, so every call here accepts a MemContext and ignores it.
struct MemContext {};

/// A process-independent pointer into the runtime's shared memory (the C ABI's chi_shm_ptr_t:
/// segment id plus byte offset). Offset 0 is null. Pass it in task parameters; turn it into an
/// address with CHI_CLIENT->ToFullPtr.
struct Pointer {
    chi_shm_ptr_t shm_;

    Pointer() {
        shm_.segment = 0;
        shm_.reserved = 0;
        shm_.offset = 0;
    }
    /// Implicit, so a task's chi_shm_ptr_t field can be passed where a Pointer is expected.
    Pointer(const chi_shm_ptr_t &p) : shm_(p) {}
    bool IsNull() const { return shm_.offset == 0; }
    operator chi_shm_ptr_t() const { return shm_; }
    static Pointer GetNull() { return Pointer(); }
    bool operator==(const Pointer &o) const {
        return shm_.segment == o.shm_.segment && shm_.offset == o.shm_.offset;
    }
    bool operator!=(const Pointer &o) const { return !(*this == o); }
};

/// An address in this process paired with its shared-memory pointer. It owns nothing: free
/// a buffer with CHI_CLIENT->FreeBuffer, or hold a chi::Buffer, which frees itself.
template <typename T>
struct FullPtr {
    T *ptr_;
    Pointer shm_;

    FullPtr() : ptr_(nullptr) {}
    FullPtr(T *ptr, const Pointer &shm) : ptr_(ptr), shm_(shm) {}
    bool IsNull() const { return ptr_ == nullptr; }
    T *get() const { return ptr_; }
    T *operator->() const { return ptr_; }
    T &operator*() const { return *ptr_; }
    template <typename U>
    FullPtr<U> Cast() const {
        return FullPtr<U>(reinterpret_cast<U *>(ptr_), shm_);
    }
};

}  // namespace ipc
}  // namespace hshm

namespace hipc = hshm::ipc;

/// The default memory context (ignored by this binding; see hipc::MemContext).
#define HSHM_DEFAULT_MEM_CTX (::hshm::ipc::MemContext())
#define HSHM_MCTX HSHM_DEFAULT_MEM_CTX

/// HILOG(kInfo, "OPS: {}", ops): formats like hshm (each "{}" takes the next argument).
#define HILOG(LEVEL, ...) ::hshm::Log(::hshm::LogLevel::LEVEL, __VA_ARGS__)

#ifndef KILOBYTES
#define KILOBYTES(n) (static_cast<size_t>(n) << 10)
#endif
#ifndef MEGABYTES
#define MEGABYTES(n) (static_cast<size_t>(n) << 20)
#endif
#ifndef GIGABYTES
#define GIGABYTES(n) (static_cast<size_t>(n) << 30)
#endif

#endif

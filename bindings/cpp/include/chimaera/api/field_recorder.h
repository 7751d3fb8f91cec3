/* chimaera/api/field_recorder.h: the recording archive of the C++ module layer. A task
 * struct's SerializeIn and SerializeOut (a CreateTaskParams' serialize) run once with it, on an
 * object built by its SHM constructor, and it notes each field they name: offset (address minus
 * the object's), size, type, direction (the phase it was seen in) and bulk mode. Header-only,
 * C++17. Include chimaera/api/chimaera_module.h rather than this file. */
#ifndef CHIMAERA_API_FIELD_RECORDER_H
#define CHIMAERA_API_FIELD_RECORDER_H

#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "chimaera/api/chimaera_task.h"
#include "chimaera/module.h"

namespace chi {
namespace detail {

template <typename T>
constexpr u32 FieldTypeOf() {
    if constexpr (std::is_same<T, bool>::value) {
        return CHI_FT_BOOL;
    } else if constexpr (std::is_enum<T>::value) {
        return FieldTypeOf<typename std::underlying_type<T>::type>();
    } else if constexpr (std::is_integral<T>::value) {
        constexpr bool s = std::is_signed<T>::value;
        return sizeof(T) == 1 ? (s ? CHI_FT_I8 : CHI_FT_U8)
               : sizeof(T) == 2 ? (s ? CHI_FT_I16 : CHI_FT_U16)
               : sizeof(T) == 4 ? (s ? CHI_FT_I32 : CHI_FT_U32)
                                : (s ? CHI_FT_I64 : CHI_FT_U64);
    } else if constexpr (std::is_same<T, float>::value) {
        return CHI_FT_F32;
    } else if constexpr (std::is_same<T, double>::value) {
        return CHI_FT_F64;
    } else if constexpr (std::is_same<T, hipc::Pointer>::value ||
                         std::is_same<T, chi_shm_ptr_t>::value) {
        return CHI_FT_SHM_PTR;
    } else if constexpr (std::is_same<T, DomainQuery>::value ||
                         std::is_same<T, chi_domain_query_t>::value) {
        return CHI_FT_DOMAIN_QUERY;
    } else if constexpr (std::is_array<T>::value &&
                         std::is_same<typename std::remove_extent<T>::type, char>::value) {
        return CHI_FT_STR;
    } else {
        static_assert(std::is_trivially_copyable<T>::value,
                      "a serialised task field must be trivially copyable");
        return CHI_FT_BYTES;
    }
}

/// One field as the recording archive saw it.
struct RecordedField {
    u32 offset, size, type, dir, bulk_mode;
    long size_offset;  // a bulk field's size field (its offset), else -1
};

/// The recording archive: SerializeIn/SerializeOut/serialize run with it once, on a task
/// built by its SHM constructor, and it notes each field they name.
class FieldRecorder {
public:
    /// Records the fields of the object [base, base + size); they must lie at or after
    /// `header` bytes (the task header for a task, 0 for create params).
    FieldRecorder(const void *base, size_t size, size_t header = sizeof(chi_task_t))
        : base_(static_cast<const char *>(base)), size_(size), header_(header) {}
    /// The direction the calls that follow record (CHI_DIR_IN or CHI_DIR_OUT).
    void SetPhase(u32 dir) { phase_ = dir; }

    template <typename... Args>
    void operator()(Args &...args) {
        (Plain(args), ...);
    }
    /// ar.bulk(DT_WRITE | DT_EXPOSE, ptr, size): ptr is a hipc::Pointer field, size the
    /// integer field holding its byte count.
    template <typename P, typename S>
    void bulk(u32 mode, P &ptr, S &size) {
        static_assert(std::is_same<P, hipc::Pointer>::value || std::is_same<P, chi_shm_ptr_t>::value,
                      "ar.bulk takes a hipc::Pointer field");
        static_assert(std::is_integral<S>::value, "ar.bulk's size must be an integer field");
        u32 so = Offset(&size, sizeof(S));
        RecordedField &f = Add(Offset(&ptr, sizeof(P)), sizeof(P), CHI_FT_BULK);
        f.bulk_mode |= mode & (CHI_DT_WRITE | CHI_DT_EXPOSE);
        if (f.size_offset >= 0 && f.size_offset != static_cast<long>(so))
            Fail("a bulk field is paired with two different size fields");
        f.size_offset = so;
        Add(so, sizeof(S), FieldTypeOf<S>());
    }

    const std::vector<RecordedField> &fields() const { return fields_; }
    const std::string &error() const { return error_; }

private:
    template <typename T>
    void Plain(T &x) {
        Add(Offset(&x, sizeof(T)), sizeof(T), FieldTypeOf<T>());
    }
    u32 Offset(const void *p, size_t n) {
        const char *c = static_cast<const char *>(p);
        if (c < base_ + header_ || c + n > base_ + size_) {
            Fail(header_ != 0 ? "a serialised value is not a field of the task after its header"
                              : "a serialised value is not a field of the create params");
            return 0;
        }
        return static_cast<u32>(c - base_);
    }
    RecordedField &Add(u32 off, u32 size, u32 type) {
        for (RecordedField &f : fields_) {
            if (f.offset != off) continue;
            if (f.size != size) Fail("one field is serialised with two sizes");
            if (type == CHI_FT_BULK) f.type = CHI_FT_BULK;
            f.dir |= phase_;
            return f;
        }
        fields_.push_back(RecordedField{off, size, type, phase_, 0, -1});
        return fields_.back();
    }
    void Fail(const char *why) {
        if (error_.empty()) error_ = why;
    }
    const char *base_;
    size_t size_;
    size_t header_;
    u32 phase_ = CHI_DIR_IN;
    std::vector<RecordedField> fields_;
    std::string error_;
};

template <typename T, typename = void>
struct HasSerializeIn : std::false_type {};
template <typename T>
struct HasSerializeIn<T, std::void_t<decltype(std::declval<T &>().SerializeIn(
                             std::declval<FieldRecorder &>()))>> : std::true_type {};
template <typename T, typename = void>
struct HasSerializeOut : std::false_type {};
template <typename T>
struct HasSerializeOut<T, std::void_t<decltype(std::declval<T &>().SerializeOut(
                              std::declval<FieldRecorder &>()))>> : std::true_type {};

}  // namespace detail
}  // namespace chi

#endif

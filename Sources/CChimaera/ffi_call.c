// Plain-function method handlers, called through libffi from a method's task-layout
// descriptor: handler(rctx, field0, field1, ...) -> int32_t. IN scalars go by value; bulk
// data as a pointer the runtime checked (inside one buffer the submitter holds); everything
// else (IN blobs, OUT and INOUT fields) as a pointer into the task, which is the runtime's
// private copy, so nothing is read twice from memory a client can write.
#include <errno.h>
#include <ffi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chi_shim.h"

#define CHI_FFI_MAX_ARGS 64

struct chi_ffi_method {
    ffi_cif cif;
    const chi_method_desc_t *desc;
    uint32_t nargs;
    ffi_type *types[CHI_FFI_MAX_ARGS];
};

static ffi_type *scalar_type(uint32_t t) {
    switch (t) {
    case CHI_FT_U8: return &ffi_type_uint8;
    case CHI_FT_U16: return &ffi_type_uint16;
    case CHI_FT_U32: return &ffi_type_uint32;
    case CHI_FT_U64: return &ffi_type_uint64;
    case CHI_FT_I8: return &ffi_type_sint8;
    case CHI_FT_I16: return &ffi_type_sint16;
    case CHI_FT_I32: return &ffi_type_sint32;
    case CHI_FT_I64: return &ffi_type_sint64;
    case CHI_FT_F32: return &ffi_type_float;
    case CHI_FT_F64: return &ffi_type_double;
    case CHI_FT_BOOL: return &ffi_type_uint8;
    default: return NULL;
    }
}

static size_t scalar_size(uint32_t t) {
    switch (t) {
    case CHI_FT_U8: case CHI_FT_I8: case CHI_FT_BOOL: return 1;
    case CHI_FT_U16: case CHI_FT_I16: return 2;
    case CHI_FT_U32: case CHI_FT_I32: case CHI_FT_F32: return 4;
    case CHI_FT_U64: case CHI_FT_I64: case CHI_FT_F64: return 8;
    default: return 0;
    }
}

static int by_value(const chi_field_desc_t *f) {
    return f->dir == CHI_DIR_IN && scalar_type(f->type) != NULL;
}

chi_ffi_method_t *chi_ffi_prepare(const chi_method_desc_t *m, char *err, size_t errlen) {
    if (!m->handler) return NULL;
    if (m->nfields + 1 > CHI_FFI_MAX_ARGS) {
        snprintf(err, errlen, "method %s has %u fields; plain handlers take at most %d",
                 m->name ? m->name : "?", m->nfields, CHI_FFI_MAX_ARGS - 1);
        return NULL;
    }
    chi_ffi_method_t *fm = calloc(1, sizeof *fm);
    if (!fm) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    fm->desc = m;
    fm->nargs = m->nfields + 1;
    fm->types[0] = &ffi_type_pointer;
    for (uint32_t i = 0; i < m->nfields; i++) {
        const chi_field_desc_t *f = &m->fields[i];
        if (by_value(f) && f->size != scalar_size(f->type)) {
            snprintf(err, errlen, "method %s field %s: size %u does not match its type",
                     m->name ? m->name : "?", f->name ? f->name : "?", f->size);
            free(fm);
            return NULL;
        }
        if (f->type == CHI_FT_BULK &&
            (f->bulk_size_field < 0 || (uint32_t)f->bulk_size_field >= m->nfields)) {
            snprintf(err, errlen, "method %s bulk field %s has no valid size field",
                     m->name ? m->name : "?", f->name ? f->name : "?");
            free(fm);
            return NULL;
        }
        fm->types[i + 1] = by_value(f) ? scalar_type(f->type) : &ffi_type_pointer;
    }
    if (ffi_prep_cif(&fm->cif, FFI_DEFAULT_ABI, fm->nargs, &ffi_type_sint32, fm->types) != FFI_OK) {
        snprintf(err, errlen, "ffi_prep_cif failed for method %s", m->name ? m->name : "?");
        free(fm);
        return NULL;
    }
    return fm;
}

static uint64_t read_count(const char *task, const chi_field_desc_t *f) {
    switch (f->size) {
    case 1: return *(const uint8_t *)(task + f->offset);
    case 2: { uint16_t v; memcpy(&v, task + f->offset, 2); return v; }
    case 4: { uint32_t v; memcpy(&v, task + f->offset, 4); return v; }
    case 8: { uint64_t v; memcpy(&v, task + f->offset, 8); return v; }
    default: return UINT64_MAX;
    }
}

int chi_ffi_call(const chi_ffi_method_t *fm, chi_task_t *task, void *rctx,
                 chi_bulk_resolve_fn resolve, int32_t *rc) {
    const chi_method_desc_t *m = fm->desc;
    char *t = (char *)task;
    void *ptrs[CHI_FFI_MAX_ARGS];
    void *values[CHI_FFI_MAX_ARGS];
    ptrs[0] = rctx;
    values[0] = &ptrs[0];
    for (uint32_t i = 0; i < m->nfields; i++) {
        const chi_field_desc_t *f = &m->fields[i];
        if (by_value(f)) {
            values[i + 1] = t + f->offset;
            continue;
        }
        if (f->type == CHI_FT_BULK) {
            chi_shm_ptr_t p;
            memcpy(&p, t + f->offset, sizeof p);
            uint64_t n = read_count(t, &m->fields[f->bulk_size_field]);
            if (p.offset == 0 || n == 0) {
                ptrs[i + 1] = NULL;
            } else if (n == UINT64_MAX || (ptrs[i + 1] = resolve(rctx, p, n)) == NULL) {
                return -EFAULT;
            }
        } else {
            ptrs[i + 1] = t + f->offset;
        }
        values[i + 1] = &ptrs[i + 1];
    }
    ffi_arg result = 0;
    ffi_call((ffi_cif *)&fm->cif, FFI_FN(m->handler), &result, values);
    *rc = (int32_t)result;
    return 0;
}

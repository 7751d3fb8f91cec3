"""ctypes mirrors of the C ABI's plain structs and constants (include/chimaera/*.h).

Field for field, in header order; the sizes the headers state are checked at import, and
Tests/e2e/test_python_binding.py compares every offset with the C compiler's offsetof.
"""

from ctypes import (POINTER, Structure, c_char, c_char_p, c_int32, c_uint16, c_uint32, c_uint64,
                    c_void_p, sizeof)

# ---- version.h ---------------------------------------------------------------------------
ABI_MAJOR = 1
ABI_MINOR = 8


def abi_pack(major, minor):
    """CHI_ABI_PACK."""
    return (major << 16) | minor


# ---- task.h ------------------------------------------------------------------------------
SUBDOMAIN_GLOBAL_CONTAINERS = 1
SUBDOMAIN_LOCAL_CONTAINERS = 2
SUBDOMAIN_PHYSICAL_NODE = 3

DQ_LOCAL = 0x0001
DQ_DIRECT = 0x0002
DQ_GLOBAL = 0x0004
DQ_DYNAMIC = 0x0008
DQ_SCOPE_MASK = 0x000F
DQ_ID = 0x0010
DQ_HASH = 0x0020
DQ_RANGE = 0x0040
DQ_SEL_MASK = 0x00F0
DQ_BCAST = 0x0100
DQ_REP_UNTIL_SUCCESS = 0x0200
DQ_CHOOSE_ONE = 0x0400
DQ_ITER_MASK = 0x0F00

PRIO_LOW_LATENCY = 0
PRIO_HIGH_LATENCY = 1

TASK_PERIODIC = 0x0001
TASK_LONG_RUNNING = TASK_PERIODIC
TASK_FIRE_AND_FORGET = 0x0002
TF_SRL_SYM = 0x0004
TF_LOCAL = 0x0008
TASK_USER_FLAGS = 0x00FFFFFF

TASK_PENDING = 0
TASK_DONE = 1

METHOD_CREATE = 0
METHOD_DESTROY = 1
METHOD_NODE_FAILURE = 2
METHOD_RECOVER = 3
METHOD_MIGRATE = 4
METHOD_UPGRADE = 5
METHOD_CUSTOM = 10


class ChiShmPtr(Structure):
    """chi_shm_ptr_t: a process-independent pointer (segment id, byte offset)."""
    _fields_ = [("segment", c_uint32), ("reserved", c_uint32), ("offset", c_uint64)]

    def __repr__(self):
        return f"ChiShmPtr(segment={self.segment}, offset={self.offset:#x})"


class ChiDomainQuery(Structure):
    """chi_domain_query_t: where a task goes. Build one with the dq_* helpers."""
    _fields_ = [("flags", c_uint32), ("sub_domain", c_uint32), ("sel", c_uint64),
                ("count", c_uint64)]

    def __repr__(self):
        return (f"DomainQuery(flags={self.flags:#06x}, sub_domain={self.sub_domain}, "
                f"sel={self.sel}, count={self.count})")

    def __eq__(self, other):
        if not isinstance(other, ChiDomainQuery):
            return NotImplemented
        return bytes(self) == bytes(other)

    __hash__ = None


class ChiTask(Structure):
    """chi_task_t: the 128-byte task header; a method's parameters follow it."""
    _fields_ = [
        ("size", c_uint32), ("method", c_uint32), ("pool_id", c_uint64), ("task_id", c_uint64),
        ("dom_query", ChiDomainQuery), ("prio", c_uint32), ("flags", c_uint32),
        ("period_ns", c_uint64),
        # second cache line
        ("done", c_uint32), ("rc", c_int32), ("runs", c_uint32), ("lane_hash", c_uint32),
        ("parent", ChiShmPtr), ("reserved", c_uint64 * 4),
    ]


# ---- client.h ----------------------------------------------------------------------------
MODE_AUTO = 0
MODE_ATTACH = 1
MODE_EMBEDDED = 2
ADMIN_POOL_ID = 1


class ChiClientOpts(Structure):
    """chi_client_opts_t."""
    _fields_ = [("size", c_uint32), ("mode", c_uint32), ("segment", c_char_p),
                ("config_path", c_char_p), ("connect_timeout_ms", c_uint32),
                ("reserved", c_uint32)]


class ChiPoolCreateOpts(Structure):
    """chi_pool_create_opts_t."""
    _fields_ = [("size", c_uint32), ("containers_per_node", c_uint32), ("module", c_char_p),
                ("name", c_char_p), ("params", c_void_p), ("params_size", c_uint32),
                ("reserved", c_uint32), ("replicas", c_uint32), ("reserved2", c_uint32)]


class ChiPoolInfo(Structure):
    """chi_pool_info_t (ABI 1.3)."""
    _fields_ = [("size", c_uint32), ("containers", c_uint32), ("id", c_uint64),
                ("containers_per_node", c_uint32), ("nodes", c_uint32),
                ("name", c_char * 64), ("module", c_char * 64)]


# ---- module.h: task-layout descriptors ----------------------------------------------------
FT_U8, FT_U16, FT_U32, FT_U64 = 1, 2, 3, 4
FT_I8, FT_I16, FT_I32, FT_I64 = 5, 6, 7, 8
FT_F32, FT_F64, FT_BOOL = 9, 10, 11
FT_BYTES, FT_STR, FT_BULK, FT_SHM_PTR, FT_DOMAIN_QUERY = 12, 13, 14, 15, 16

DIR_IN, DIR_OUT, DIR_INOUT = 1, 2, 3
DT_WRITE, DT_EXPOSE = 1, 2
MF_PERIODIC_OK = 0x1
MF_CREATE_PARAMS = 0x2  # ABI 1.7: the descriptor lays out the create params, not a task
MF_LOCAL = 0x8  # ABI 1.7: the method's tasks never leave their node


class ChiFieldDesc(Structure):
    """chi_field_desc_t: one task parameter."""
    _fields_ = [("name", c_char_p), ("offset", c_uint32), ("size", c_uint32),
                ("type", c_uint32), ("dir", c_uint32), ("bulk_size_field", c_int32),
                ("bulk_mode", c_uint32)]


class ChiMethodDesc(Structure):
    """chi_method_desc_t: one method of a module."""
    _fields_ = [("id", c_uint32), ("task_size", c_uint32), ("flags", c_uint32),
                ("nfields", c_uint32), ("name", c_char_p),
                ("fields", POINTER(ChiFieldDesc)), ("handler", c_void_p)]


class ChiRecordDesc(Structure):
    """chi_record_desc_t (ABI 1.7): the element layout of an array (bytes) field."""
    _fields_ = [("method", c_uint32), ("field", c_uint32), ("elem_size", c_uint32),
                ("count_field", c_int32), ("name", c_char_p),
                ("fields", POINTER(ChiFieldDesc)), ("nfields", c_uint32),
                ("reserved", c_uint32)]


class ChiModuleVtable(Structure):
    """chi_module_vtable_t; the hooks are only ever called by the runtime, so void *."""
    _fields_ = [("size", c_uint32), ("abi_major", c_uint16), ("abi_minor", c_uint16),
                ("name", c_char_p), ("version", c_uint32), ("nmethods", c_uint32),
                ("methods", POINTER(ChiMethodDesc)), ("create", c_void_p),
                ("destroy", c_void_p), ("run", c_void_p), ("monitor", c_void_p),
                ("map_task_to_lane", c_void_p), ("upgrade", c_void_p), ("worch", c_void_p),
                ("migrate_out", c_void_p), ("migrate_in", c_void_p), ("state_bytes", c_void_p),
                # ABI 1.7: read only from a library of 1.7 or later (an older one's copy of
                # the vtable ends before them).
                ("nrecords", c_uint32), ("reserved_records", c_uint32),
                ("records", POINTER(ChiRecordDesc))]


# ---- admin.h and small_message.h ------------------------------------------------------------
ADMIN_MODULE_NAME = "chimaera_admin"
NAME_MAX = 64
SM_MODULE_NAME = "small_message"
SM_MD = 10
SM_IO = 11
SM_IO_WRITE = 1
SM_IO_READ = 2


class ChiSmMdTask(Structure):
    """chi_sm_md_task_t."""
    _fields_ = [("hdr", ChiTask), ("depth", c_uint32), ("ret", c_int32)]


class ChiSmIoTask(Structure):
    """chi_sm_io_task_t."""
    _fields_ = [("hdr", ChiTask), ("data", ChiShmPtr), ("size", c_uint64),
                ("io_flags", c_uint32), ("pattern", c_uint32), ("ret", c_uint64)]


# Sizes the headers promise; a mismatch here means this file no longer mirrors them.
_EXPECTED_SIZES = {ChiShmPtr: 16, ChiDomainQuery: 24, ChiTask: 128, ChiClientOpts: 32,
                   ChiPoolCreateOpts: 48, ChiFieldDesc: 32, ChiMethodDesc: 40,
                   ChiRecordDesc: 40, ChiModuleVtable: 128, ChiSmMdTask: 136, ChiSmIoTask: 168, ChiPoolInfo: 152}
for _t, _n in _EXPECTED_SIZES.items():
    if sizeof(_t) != _n:
        raise ImportError(f"chimaera: ctypes {_t.__name__} is {sizeof(_t)} bytes, "
                          f"the C header's is {_n}")

# What `from chimaera._types import *` (and so the chimaera package) exports: the constants
# and the struct mirrors, not the ctypes names imported above.
__all__ = [n for n, v in list(globals().items())
           if n.isupper() and isinstance(v, (int, str)) or n.startswith("Chi")] + ["abi_pack"]

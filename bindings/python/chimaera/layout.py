"""Task layouts built from a module's descriptors (chi_module_describe): one ctypes Structure
per method, placing each parameter at the offset its chi_field_desc_t gives, so any module is
callable from Python without binding code for it."""

import ctypes
import operator
import threading
from ctypes import (POINTER, Structure, byref, c_bool, c_char, c_double, c_float, c_int8,
                    c_int16, c_int32, c_int64, c_uint8, c_uint16, c_uint32, c_uint64, sizeof)

from . import _lib, errors
from ._types import (DIR_IN, DIR_OUT, FT_BOOL, FT_BULK, FT_BYTES, FT_DOMAIN_QUERY, FT_F32,
                     FT_F64, FT_I8, FT_I16, FT_I32, FT_I64, FT_SHM_PTR, FT_STR, FT_U8, FT_U16,
                     FT_U32, FT_U64, MF_PERIODIC_OK, ChiDomainQuery, ChiModuleVtable,
                     ChiShmPtr, ChiTask)

_INTS = {FT_U8: c_uint8, FT_U16: c_uint16, FT_U32: c_uint32, FT_U64: c_uint64,
         FT_I8: c_int8, FT_I16: c_int16, FT_I32: c_int32, FT_I64: c_int64}
_SIGNED = {FT_I8, FT_I16, FT_I32, FT_I64}
_FIXED = {FT_F32: c_float, FT_F64: c_double, FT_SHM_PTR: ChiShmPtr, FT_BULK: ChiShmPtr,
          FT_DOMAIN_QUERY: ChiDomainQuery}
_BOOL_BY_SIZE = {1: c_bool, 2: c_uint16, 4: c_uint32, 8: c_uint64}
TYPE_NAMES = {v: k[3:] for k, v in globals().items() if k.startswith("FT_")}


def _bad(module, method, msg):
    return errors.ChimaeraError(-errors.EBADTASK, f"{module}.{method}: {msg}",
                                call="chi_module_describe")


class Field:
    """One parameter of a method (a chi_field_desc_t, plus its ctypes type)."""
    __slots__ = ("name", "index", "offset", "size", "type", "dir", "bulk_size_field",
                 "bulk_mode", "ctype", "_range")

    def __init__(self, module, method, index, d):
        self.name = d.name.decode()
        self.index = index
        self.offset, self.size, self.type, self.dir = d.offset, d.size, d.type, d.dir
        self.bulk_size_field, self.bulk_mode = d.bulk_size_field, d.bulk_mode
        self._range = None
        t = self.type
        if t in _INTS:
            self.ctype = _INTS[t]
            bits = 8 * sizeof(self.ctype)
            self._range = ((-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if t in _SIGNED
                           else (0, (1 << bits) - 1))
        elif t in _FIXED:
            self.ctype = _FIXED[t]
        elif t == FT_BOOL:
            self.ctype = _BOOL_BY_SIZE.get(self.size)
        elif t == FT_BYTES:
            self.ctype = c_uint8 * self.size
        elif t == FT_STR:
            self.ctype = c_char * self.size
        else:
            raise _bad(module, method, f"field {self.name!r} has unknown type {t}")
        if self.ctype is None or sizeof(self.ctype) != self.size:
            raise _bad(module, method, f"field {self.name!r} of type "
                       f"{TYPE_NAMES.get(t, t)} has size {self.size}")
        if not self.dir & (DIR_IN | DIR_OUT):
            raise _bad(module, method, f"field {self.name!r} has no direction")

    def __repr__(self):
        d = {1: "IN", 2: "OUT", 3: "INOUT"}[self.dir]
        return f"<Field {self.name} {TYPE_NAMES.get(self.type)} {d} @{self.offset}+{self.size}>"

    def store(self, t, v):
        """Writes v into task t (an instance of the method's Structure)."""
        ty = self.type
        if self._range is not None:
            lo, hi = self._range
            v = operator.index(v)
            if not lo <= v <= hi:
                raise OverflowError(f"{self.name}={v} does not fit {TYPE_NAMES[ty]}")
            setattr(t, self.name, v)
        elif ty in (FT_BULK, FT_SHM_PTR):
            if getattr(v, "closed", False):
                raise ValueError(f"{self.name}: the buffer is closed")
            shm = getattr(v, "shm", v)
            if not isinstance(shm, ChiShmPtr):
                raise TypeError(f"{self.name} takes a Buffer or ChiShmPtr, not {type(v).__name__}")
            setattr(t, self.name, shm)
        elif ty == FT_DOMAIN_QUERY:
            if not isinstance(v, ChiDomainQuery):
                raise TypeError(f"{self.name} takes a DomainQuery, not {type(v).__name__}")
            setattr(t, self.name, v)
        elif ty == FT_BYTES:
            b = bytes(v)
            if len(b) > self.size:
                raise ValueError(f"{self.name}: {len(b)} bytes do not fit {self.size}")
            ctypes.memmove(ctypes.addressof(t) + self.offset, b, len(b))
        elif ty == FT_STR:
            b = v.encode() if isinstance(v, str) else bytes(v)
            if len(b) >= self.size or b"\0" in b:
                raise ValueError(f"{self.name}: {len(b)} bytes need {self.size - 1} at most, "
                                 "with no NUL")
            setattr(t, self.name, b)
        elif ty == FT_BOOL:
            setattr(t, self.name, bool(v) if self.size == 1 else int(bool(v)))
        else:
            setattr(t, self.name, float(v))

    def load(self, t):
        """Reads the field from task t as a Python value (a copy)."""
        ty = self.type
        v = getattr(t, self.name)
        if ty in (FT_BULK, FT_SHM_PTR, FT_DOMAIN_QUERY):
            return self.ctype.from_buffer_copy(v)
        if ty == FT_BYTES:
            return bytes(v)
        if ty == FT_STR:
            return v.decode(errors="replace")
        if ty == FT_BOOL:
            return bool(v)
        return v


class Method:
    """One method of a module: its id, task size, fields and the Structure of its task."""

    def __init__(self, module, d):
        self.module = module
        self.id, self.task_size, self.flags = d.id, d.task_size, d.flags
        self.name = d.name.decode()
        self.fields = tuple(Field(module, self.name, i, d.fields[i]) for i in range(d.nfields))
        self.by_name = {f.name: f for f in self.fields}
        self.outs = tuple(f for f in self.fields if f.dir & DIR_OUT)
        self.periodic_ok = bool(self.flags & MF_PERIODIC_OK)
        self.struct = self._build_struct()

    def _build_struct(self):
        if len(self.by_name) != len(self.fields):
            raise _bad(self.module, self.name, "two fields share a name")
        cfields, pos = [("_chi_hdr", ChiTask)], sizeof(ChiTask)
        for f in sorted(self.fields, key=lambda f: f.offset):
            if f.offset < pos:
                raise _bad(self.module, self.name, f"field {f.name!r} at offset {f.offset} "
                           f"overlaps the header or the field before it (ends at {pos})")
            if f.offset > pos:
                cfields.append((f"_chi_pad{len(cfields)}", c_uint8 * (f.offset - pos)))
            cfields.append((f.name, f.ctype))
            pos = f.offset + f.size
            if f.type == FT_BULK and not (0 <= f.bulk_size_field < len(self.fields)
                                          and self.fields[f.bulk_size_field].type in _INTS):
                raise _bad(self.module, self.name,
                           f"bulk field {f.name!r} names no integer size field")
        if pos > self.task_size:
            raise _bad(self.module, self.name,
                       f"fields end at {pos}, past the task size {self.task_size}")
        if pos < self.task_size:
            cfields.append(("_chi_tail", c_uint8 * (self.task_size - pos)))
        # Packed, with explicit padding: every field lands at exactly the descriptor's offset.
        struct = type(f"{self.module}_{self.name}_task", (Structure,),
                      {"_pack_": 1, "_fields_": cfields})
        assert sizeof(struct) == self.task_size
        return struct

    def fill(self, t, values):
        """Writes the IN fields named in values; a bulk field given a Buffer fills its size
        field with the buffer's size unless values sets it."""
        for key, v in values.items():
            f = self.by_name.get(key)
            if f is None:
                raise TypeError(f"{self.module}.{self.name} has no field {key!r} "
                                f"(fields: {', '.join(self.by_name) or 'none'})")
            # An OUT bulk field still needs its buffer: only the bytes it points at are OUT.
            if not f.dir & DIR_IN and f.type != FT_BULK:
                raise TypeError(f"{self.module}.{self.name}: field {key!r} is OUT only")
            f.store(t, v)
            if f.type == FT_BULK and hasattr(v, "shm"):
                sf = self.fields[f.bulk_size_field]
                if sf.name not in values:
                    sf.store(t, len(v))
                elif values[sf.name] > len(v):
                    raise ValueError(f"{sf.name}={values[sf.name]} exceeds the "
                                     f"{len(v)}-byte buffer given as {key}")

    def read(self, t):
        """The OUT (and INOUT) fields of task t, as a dict."""
        return {f.name: f.load(t) for f in self.outs}

    def __repr__(self):
        return f"<Method {self.module}.{self.name} id={self.id} size={self.task_size}>"


class Module:
    """A module's descriptors: name, version and methods by name and by id."""

    def __init__(self, name, vt):
        self.name = name
        self.version = vt.version
        self.abi = (vt.abi_major, vt.abi_minor)
        self.methods = {}
        self.by_id = {}
        for i in range(vt.nmethods):
            m = Method(name, vt.methods[i])
            self.methods[m.name] = m
            self.by_id[m.id] = m

    def method(self, key):
        m = self.by_id.get(key) if isinstance(key, int) else self.methods.get(key)
        if m is None:
            raise errors.ChimaeraError(
                -errors.ENOMETHOD, f"module {self.name} has no method {key!r} "
                f"(methods: {', '.join(self.methods)})", call="describe")
        return m


class Result:
    """What a task returned: rc, runs and each OUT field as an attribute."""

    def __init__(self, method, rc, runs, values):
        self.method = method
        self.rc = rc
        self.runs = runs
        self.__dict__.update(values)
        self._fields = tuple(values)

    def asdict(self):
        return {k: getattr(self, k) for k in self._fields}

    def __repr__(self):
        vals = ", ".join(f"{k}={getattr(self, k)!r}" for k in self._fields)
        return f"Result({self.method}: rc={self.rc}{', ' if vals else ''}{vals})"


_cache = {}
_cache_lock = threading.Lock()


def describe(name):
    """The Module named `name`, loaded into this process by chi_module_describe (cached: the
    vtable stays valid for the life of the process)."""
    m = _cache.get(name)
    if m is not None:
        return m
    with _cache_lock:
        m = _cache.get(name)
        if m is None:
            vt = POINTER(ChiModuleVtable)()
            _lib.load().chi_module_describe(name.encode(), byref(vt))
            m = _cache[name] = Module(name, vt.contents)
    return m

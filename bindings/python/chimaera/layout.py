"""Task layouts built from a module's descriptors (chi_module_describe): one ctypes Structure
per method, placing each parameter at the offset its chi_field_desc_t gives, so any module is
callable from Python without binding code for it. The same for the create parameters (ABI 1.7:
a descriptor flagged CHI_MF_CREATE_PARAMS) and for arrays of records in bytes fields
(chi_record_desc_t), which read back as lists of Record objects."""

import ctypes
import operator
import threading
from ctypes import (POINTER, Structure, byref, c_bool, c_char, c_double, c_float, c_int8,
                    c_int16, c_int32, c_int64, c_uint8, c_uint16, c_uint32, c_uint64, sizeof)

from . import _lib, errors
from ._types import (DIR_IN, DIR_OUT, FT_BOOL, FT_BULK, FT_BYTES, FT_DOMAIN_QUERY, FT_F32,
                     FT_F64, FT_I8, FT_I16, FT_I32, FT_I64, FT_SHM_PTR, FT_STR, FT_U8, FT_U16,
                     FT_U32, FT_U64, MF_CREATE_PARAMS, MF_LOCAL, MF_PERIODIC_OK, ChiDomainQuery,
                     ChiModuleVtable, ChiShmPtr, ChiTask)

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
                 "bulk_mode", "ctype", "record", "_range")

    def __init__(self, module, method, index, d):
        self.name = d.name.decode()
        self.index = index
        self.offset, self.size, self.type, self.dir = d.offset, d.size, d.type, d.dir
        self.bulk_size_field, self.bulk_mode = d.bulk_size_field, d.bulk_mode
        self.record = None  # a RecordType when the bytes field holds an array of records
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
        return f"<Field {self.name} {self.type_name} {d} @{self.offset}+{self.size}>"

    @property
    def type_name(self):
        """The type as error messages show it: u64, str[256], Block[64] ..."""
        if self.record is not None:
            return f"{self.record.name}[{self.record.capacity}]"
        t = TYPE_NAMES.get(self.type, str(self.type)).lower()
        return f"{t}[{self.size}]" if self.type in (FT_BYTES, FT_STR) else t

    def store(self, t, v):
        """Writes v into task t (an instance of the method's Structure)."""
        ty = self.type
        if self._range is not None:
            lo, hi = self._range
            try:
                v = operator.index(v)
            except TypeError:
                raise TypeError(f"{self.name} takes an integer ({TYPE_NAMES[ty].lower()}), "
                                f"not {type(v).__name__}") from None
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
            if self.record is not None and not isinstance(v, (bytes, bytearray, memoryview)):
                v = self.record.encode(v, self.name)
            elif not isinstance(v, (bytes, bytearray, memoryview)):
                # bytes(5) would be five zero bytes: a number here is a mistake, not data.
                raise TypeError(f"{self.name} takes bytes, not {type(v).__name__}")
            b = bytes(v)
            if len(b) > self.size:
                raise ValueError(f"{self.name}: {len(b)} bytes do not fit {self.size}")
            ctypes.memmove(ctypes.addressof(t) + self.offset, b, len(b))
        elif ty == FT_STR:
            if not isinstance(v, (str, bytes, bytearray)):
                raise TypeError(f"{self.name} takes a str, not {type(v).__name__}")
            b = v.encode() if isinstance(v, str) else bytes(v)
            if len(b) >= self.size or b"\0" in b:
                raise ValueError(f"{self.name}: {len(b)} bytes need {self.size - 1} at most, "
                                 "with no NUL")
            setattr(t, self.name, b)
        elif ty == FT_BOOL:
            if not isinstance(v, int):  # bool is an int; "no" would be truthy
                raise TypeError(f"{self.name} takes a bool, not {type(v).__name__}")
            setattr(t, self.name, bool(v) if self.size == 1 else int(bool(v)))
        else:
            if isinstance(v, (str, bytes)):
                raise TypeError(f"{self.name} takes a number, not {type(v).__name__}")
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
        # CHI_MF_LOCAL: its tasks carry CHI_TF_LOCAL, as the module's own callers' do.
        self.local = bool(self.flags & MF_LOCAL)
        # The create parameters are a plain struct: no task header before the fields.
        self.is_create_params = bool(self.flags & MF_CREATE_PARAMS)
        self.struct = self._build_struct()

    def _build_struct(self):
        if len(self.by_name) != len(self.fields):
            raise _bad(self.module, self.name, "two fields share a name")
        if self.is_create_params:
            cfields, pos = [], 0
        else:
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
        field with the buffer's size unless values sets it. A Record given for a name that
        is no field fills the fields named `<name>_<member>` (bdev's block=Block fills
        block_offset, block_size and block_container)."""
        values = self._expand_records(values)
        for key, v in values.items():
            f = self.by_name.get(key)
            if f is None:
                raise TypeError(f"{self.module}.{self.name} has no field {key!r} "
                                f"(fields: {self._known()})")
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

    def _known(self):
        return ", ".join(f"{f.name}: {f.type_name}" for f in self.fields) or "none"

    def _expand_records(self, values):
        if not any(isinstance(v, Record) and k not in self.by_name for k, v in values.items()):
            return values
        out = {}
        for key, v in values.items():
            if key in self.by_name or not isinstance(v, Record):
                out[key] = v
                continue
            names = [f"{key}_{m}" for m in v._fields]
            missing = [n for n in names if n not in self.by_name]
            if missing:
                raise TypeError(f"{self.module}.{self.name}: a {v._type} given as {key!r} "
                                f"needs the fields {', '.join(names)}; there is no "
                                f"{', '.join(map(repr, missing))} (fields: {self._known()})")
            for n, m in zip(names, v._fields):
                if n in values:
                    raise TypeError(f"{self.module}.{self.name}: {n!r} is given twice "
                                    f"(alone and in {key!r})")
                out[n] = getattr(v, m)
        return out

    def read(self, t):
        """The OUT (and INOUT) fields of task t, as a dict; an array of records comes as a
        RecordList (its count field, if any, says how many elements are valid)."""
        out = {}
        for f in self.outs:
            v = f.load(t)
            if f.record is not None:
                n = None
                if f.record.count_field >= 0:
                    cf = self.fields[f.record.count_field]
                    n = getattr(t, cf.name)
                v = f.record.decode(v, n)
            out[f.name] = v
        return out

    def encode(self, values):
        """The create parameters `values` (a mapping) as the bytes create receives; fields
        not given are zero. Errors name the module and list the known parameters."""
        t = self.struct()
        try:
            self.fill(t, values)
        except (TypeError, ValueError, OverflowError) as e:
            msg = str(e).replace(f"{self.module}.{self.name} has no field",
                                 f"{self.module} has no create parameter")
            msg = msg.replace("(fields:", "(known:")
            if "(known:" not in msg:
                msg = f"{self.module}: create parameter {msg} (known: {self._known()})"
            raise type(e)(msg) from None
        return bytes(t)

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
        self.create_params = None  # the Method laying out the create parameters, if described
        for i in range(vt.nmethods):
            m = Method(name, vt.methods[i])
            if m.is_create_params:
                self.create_params = m
                continue
            self.methods[m.name] = m
            self.by_id[m.id] = m
        # A library older than 1.7 copies a shorter vtable: its records are not there.
        if (_lib.load().chi_abi_version() & 0xFFFF) >= 7 and vt.nrecords and vt.records:
            for i in range(vt.nrecords):
                self._attach(RecordType(name, vt.records[i]), vt.records[i])

    def _attach(self, rt, r):
        m = (self.create_params if r.method == 0 and self.create_params is not None
             else self.by_id.get(r.method))
        if m is None or r.field >= len(m.fields):
            raise errors.ChimaeraError(-errors.EBADTASK, f"{self.name}: record {rt.name} names "
                                       f"field {r.field} of method {r.method}, which is not "
                                       "there", call="chi_module_describe")
        f = m.fields[r.field]
        if f.type != FT_BYTES or f.size % rt.elem_size:
            raise _bad(self.name, m.name, f"record {rt.name} does not fit field {f.name!r}")
        rt.capacity = f.size // rt.elem_size
        rt.count_field = r.count_field
        f.record = rt

    def encode_create(self, values):
        """The bytes of create parameters given by name (see Method.encode)."""
        if self.create_params is None:
            raise TypeError(f"module {self.name} describes no create parameters (it lists no "
                            "CHI_MF_CREATE_PARAMS descriptor): pass them as params=bytes")
        return self.create_params.encode(values)

    def method(self, key):
        m = self.by_id.get(key) if isinstance(key, int) else self.methods.get(key)
        if m is None:
            raise errors.ChimaeraError(
                -errors.ENOMETHOD, f"module {self.name} has no method {key!r} "
                f"(methods: {', '.join(self.methods)})", call="describe")
        return m


class RecordType:
    """The element layout of an array field (a chi_record_desc_t): a packed Structure of
    elem_size bytes with each member at its descriptor's offset."""

    def __init__(self, module, r):
        self.name = r.name.decode()
        self.elem_size = r.elem_size
        self.capacity = 0
        self.count_field = r.count_field
        self.fields = tuple(Field(module, self.name, i, r.fields[i]) for i in range(r.nfields))
        cfields, pos = [], 0
        for f in sorted(self.fields, key=lambda f: f.offset):
            if f.offset < pos or f.offset + f.size > self.elem_size:
                raise _bad(module, self.name, f"member {f.name!r} overlaps another or lies "
                           f"outside the {self.elem_size}-byte element")
            if f.offset > pos:
                cfields.append((f"_chi_pad{len(cfields)}", c_uint8 * (f.offset - pos)))
            cfields.append((f.name, f.ctype))
            pos = f.offset + f.size
        if pos < self.elem_size:
            cfields.append(("_chi_tail", c_uint8 * (self.elem_size - pos)))
        self.struct = type(f"{module}_{self.name}", (Structure,),
                           {"_pack_": 1, "_fields_": cfields})
        assert sizeof(self.struct) == self.elem_size

    def decode(self, raw, count=None):
        """The first `count` elements of raw (all when None), as a RecordList."""
        n = self.capacity if count is None else max(0, min(int(count), self.capacity))
        items = []
        for i in range(n):
            e = self.struct.from_buffer_copy(raw, i * self.elem_size)
            items.append(Record(self.name, {f.name: f.load(e) for f in self.fields}))
        return RecordList(items, raw)

    def encode(self, items, field_name):
        """A list of Records or mappings as the bytes of the array (at most capacity)."""
        items = list(items)
        if len(items) > self.capacity:
            raise ValueError(f"{field_name}: {len(items)} {self.name}s do not fit "
                             f"{self.capacity}")
        by_name = {f.name: f for f in self.fields}
        out = bytearray()
        for it in items:
            vals = it.asdict() if isinstance(it, Record) else dict(it)
            e = self.struct()
            for k, v in vals.items():
                f = by_name.get(k)
                if f is None:
                    raise TypeError(f"{field_name}: {self.name} has no member {k!r} "
                                    f"(members: {', '.join(by_name)})")
                f.store(e, v)
            out += bytes(e)
        return bytes(out)


class Record:
    """One element of an array field: its members as attributes (a copy)."""

    def __init__(self, type_name, values):
        self._type = type_name
        self.__dict__.update(values)
        self._fields = tuple(values)

    def asdict(self):
        return {k: getattr(self, k) for k in self._fields}

    def __eq__(self, other):
        if not isinstance(other, Record):
            return NotImplemented
        return self._type == other._type and self.asdict() == other.asdict()

    __hash__ = None

    def __repr__(self):
        vals = ", ".join(f"{k}={getattr(self, k)!r}" for k in self._fields)
        return f"{self._type}({vals})"


class RecordList(list):
    """The valid elements of an array field, as Records; bytes() of it gives the field's raw
    bytes, all of them, as before records were described."""

    def __init__(self, items, raw):
        super().__init__(items)
        self._raw = bytes(raw)

    def __bytes__(self):
        return self._raw


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
    """The Module named `name` as the module search path finds it now, loaded into this
    process by chi_module_describe (once per file: a changed CHI_MODULE_PATH that names
    another lib<name>.so gives that file's layouts; each vtable stays valid for the life of
    the process, and its Module is cached)."""
    vt = POINTER(ChiModuleVtable)()
    _lib.load().chi_module_describe(name.encode(), byref(vt))
    key = (name, ctypes.addressof(vt.contents))
    m = _cache.get(key)
    if m is None:
        with _cache_lock:
            m = _cache.get(key)
            if m is None:
                m = _cache[key] = Module(name, vt.contents)
    return m

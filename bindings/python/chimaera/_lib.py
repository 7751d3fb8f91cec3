"""Finds and loads libchimaera.so, checks its ABI major and registers every C function from
one table of (name, argtypes, restype, checked), as clang's cindex.py does.

Where the library is looked for, first match wins:
  1. $CHIMAERA_LIB (a path to the .so); when set, nothing else is tried;
  2. beside this package (chimaera/libchimaera.so.1, chimaera/lib/libchimaera.so.1, and the
     unversioned names), then in the prefix it is installed in (PREFIX/lib/python/chimaera
     -> PREFIX/lib/libchimaera.so.1, as `make install` lays it out);
  3. the dynamic linker's search path (libchimaera.so.1, then ctypes.util.find_library).
"""

import ctypes
import ctypes.util
import errno
import os
import threading
from ctypes import (POINTER, c_bool, c_char_p, c_int, c_int64, c_size_t, c_uint32,
                    c_uint64, c_void_p)
from pathlib import Path

from . import errors
from ._types import (ABI_MAJOR, ABI_MINOR, ChiClientOpts, ChiDomainQuery, ChiModuleVtable,
                     ChiPoolCreateOpts, ChiPoolInfo, ChiShmPtr)

SONAME = f"libchimaera.so.{ABI_MAJOR}"

# (name, argtypes, restype, checked): `checked` functions return int, and a negative return
# raises ChimaeraError (with chi_last_error's text) through ctypes' errcheck. Pointers into
# shared memory (tasks, buffers) and the client handle travel as void * (Python ints).
FUNCTIONS = [
    ("chi_abi_version", [], c_uint32, False),
    ("chi_strerror", [c_int], c_char_p, False),
    ("chi_last_error", [], c_char_p, False),
    ("chi_client_init", [POINTER(ChiClientOpts), POINTER(c_void_p)], c_int, True),
    ("chi_client_finalize", [c_void_p], c_int, True),
    ("chi_client_segment", [c_void_p, c_char_p, c_size_t], c_int, True),
    ("chi_task_new", [c_void_p, c_uint64, c_uint32, c_size_t, POINTER(ChiDomainQuery),
                      POINTER(c_void_p)], c_int, True),
    ("chi_task_submit", [c_void_p, c_void_p], c_int, True),
    ("chi_task_wait", [c_void_p, c_void_p, c_int64], c_int, True),
    ("chi_task_call", [c_void_p, c_void_p, c_int64], c_int, True),
    ("chi_task_is_done", [c_void_p], c_bool, False),
    ("chi_task_del", [c_void_p, c_void_p], c_int, True),
    ("chi_task_cancel", [c_void_p, c_void_p], c_int, True),
    ("chi_buffer_alloc", [c_void_p, c_size_t, POINTER(c_void_p)], c_int, True),
    ("chi_buffer_free", [c_void_p, c_void_p], c_int, True),
    ("chi_ptr_to_shm", [c_void_p, c_void_p, POINTER(ChiShmPtr)], c_int, True),
    ("chi_shm_to_ptr", [c_void_p, ChiShmPtr, c_size_t, POINTER(c_void_p)], c_int, True),
    ("chi_module_register", [c_void_p, c_char_p], c_int, True),
    ("chi_container_migrate", [c_void_p, c_uint64, c_uint32, c_uint32], c_int, True),
    ("chi_module_upgrade_report", [c_void_p, c_char_p, c_char_p, c_uint32, c_char_p, c_size_t], c_int, True),
    ("chi_pool_create", [c_void_p, POINTER(ChiPoolCreateOpts), POINTER(c_uint64)], c_int, True),
    ("chi_pool_get_id", [c_void_p, c_char_p, POINTER(c_uint64)], c_int, True),
    ("chi_pool_info", [c_void_p, c_uint64, c_char_p, POINTER(ChiPoolInfo)], c_int, True),
    ("chi_runtime_set_worch", [c_void_p, c_char_p], c_int, True),
    ("chi_pool_destroy", [c_void_p, c_uint64], c_int, True),
    ("chi_runtime_flush", [c_void_p], c_int, True),
    ("chi_runtime_stop", [c_void_p], c_int, True),
    ("chi_runtime_stats", [c_void_p, c_char_p, c_size_t], c_int, True),
    ("chi_module_describe", [c_char_p, POINTER(POINTER(ChiModuleVtable))], c_int, True),
]

_lock = threading.Lock()
_lib = None
_path = None

# The current process id, refreshed in a forked child: cheaper than os.getpid() (a system
# call) on every task, and what Client compares against to refuse use after fork.
pid = os.getpid()


def _after_fork_in_child():
    global pid
    pid = os.getpid()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def error_from(rc, call=None, message=None):
    """A ChimaeraError for a negative code, with the calling thread's chi_last_error text.

    Must run before this thread's next chi_* call, which replaces the message."""
    if message is None:
        message = (_lib.chi_last_error() or b"").decode(errors="replace") if _lib else ""
    name = _lib.chi_strerror(rc).decode(errors="replace") if _lib else None
    return errors.make_error(rc, message, name, call)


def _errcheck(rc, func, _args):
    if rc < 0:
        raise error_from(rc, func.__name__)
    return rc


def candidates():
    """Yields where the library is looked for, in order: (description, path or soname)."""
    env = os.environ.get("CHIMAERA_LIB")
    if env:
        yield "$CHIMAERA_LIB", env  # an explicit choice: no silent fallback elsewhere
        return
    here = Path(__file__).resolve().parent
    for d in (here, here / "lib", here.parent.parent):
        for n in (SONAME, "libchimaera.so"):
            if (d / n).exists():
                yield "beside the package", str(d / n)
    yield "the library path", SONAME
    found = ctypes.util.find_library("chimaera")  # runs ldconfig: only when reached
    if found and found != SONAME:
        yield "the library path", found


def check_abi(packed, path):
    """Raises ChimaeraError(-EABI) unless the packed version's major is ours."""
    major, minor = packed >> 16, packed & 0xFFFF
    if major != ABI_MAJOR:
        raise errors.ChimaeraError(
            -errors.EABI,
            f"{path} implements Chimaera ABI {major}.{minor}, but this Python binding needs "
            f"ABI {ABI_MAJOR}.x (built for {ABI_MAJOR}.{ABI_MINOR}); install a "
            f"libchimaera.so.{ABI_MAJOR} or a binding for ABI {major}", errors._FALLBACK_NAMES[errors.EABI], "load")
    return major, minor


def _register(lib):
    for name, argtypes, restype, checked in FUNCTIONS:
        fn = getattr(lib, name)
        fn.argtypes = argtypes
        fn.restype = restype
        if checked:
            fn.errcheck = _errcheck


def load():
    """Returns the loaded library (loading it on first use). Raises ChimaeraError: -ENOENT
    when no candidate loads (naming each place tried), -EABI on an ABI-major mismatch."""
    global _lib, _path
    if _lib is not None:
        return _lib
    with _lock:
        if _lib is not None:
            return _lib
        tried = []
        for where, path in candidates():
            try:
                lib = ctypes.CDLL(path)
            except OSError as e:
                tried.append(f"{path} ({where}): {e}")
                continue
            try:
                lib.chi_abi_version.argtypes = []
                lib.chi_abi_version.restype = c_uint32
            except AttributeError:
                tried.append(f"{path} ({where}): no chi_abi_version, not libchimaera")
                continue
            check_abi(lib.chi_abi_version(), path)
            _register(lib)
            _path = path
            _lib = lib
            return lib
        raise errors.ChimaeraError(
            -errno.ENOENT, "libchimaera could not be loaded; set CHIMAERA_LIB to its path. "
            "Tried: " + "; ".join(tried), "no libchimaera", "load")


def path():
    """The path (or soname) the library was loaded from."""
    load()
    return _path


def abi_version():
    """(major, minor) of the loaded library."""
    v = load().chi_abi_version()
    return v >> 16, v & 0xFFFF


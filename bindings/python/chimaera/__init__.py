"""Python binding of Chimaera (ctypes over libchimaera.so).

    import chimaera
    with chimaera.Client(segment="demo") as c:
        pool = c.create_pool("small_message", "ipc_test")
        r = pool.call("Md", depth=0, dq=chimaera.dq_direct_hash(
            chimaera.SUBDOMAIN_GLOBAL_CONTAINERS, 7))
        assert r.ret == 1

The library is loaded on first use (chimaera.load()): from $CHIMAERA_LIB, beside this
package, or the dynamic linker's path; an ABI-major mismatch raises ChimaeraError(-EABI).
"""

from . import _lib
from ._types import *  # noqa: F401,F403 (the C constants and struct mirrors)
from ._types import ABI_MAJOR, ABI_MINOR
from .buffer import Buffer
from .client import Client
from .dq import (DomainQuery, dq_direct_hash, dq_direct_id, dq_dynamic, dq_global,
                 dq_global_bcast, dq_local_hash, dq_local_id, dq_make, dq_range)
from .errors import (EABI, EBADTASK, ECONFIG, ENOCONTAINER, ENOMETHOD, ENOMODULE, ENOPOOL,
                     ENORUNTIME, ESTOPPED, ENODE, ELIMIT, EVERSION, ChimaeraError, ChimaeraTimeoutError)
from .layout import Result, describe
from .pool import Future, Pool

__version__ = "0.1.0"


def load():
    """Loads libchimaera.so now (otherwise the first Client does); returns the ctypes CDLL."""
    return _lib.load()


def abi_version():
    """(major, minor) ABI version of the loaded library."""
    return _lib.abi_version()


def library_path():
    """Where the loaded library came from."""
    return _lib.path()


def strerror(code):
    """chi_strerror: the short description of a code."""
    return _lib.load().chi_strerror(code).decode()

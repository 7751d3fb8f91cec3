"""ChimaeraError: what every failed chi_* call raises, and the library's error codes.

Codes follow the C ABI (include/chimaera/errors.h): a failed call returns a negative errno or
-CHI_E*; ``ChimaeraError.code`` keeps that negative value, ``.errno`` its magnitude.
"""

import errno as _errno
import os

# Codes beyond errno's range, as in errors.h (positive, like the C macros).
EBASE = 4096
ENOMODULE = EBASE + 1
ENOPOOL = EBASE + 2
ENOMETHOD = EBASE + 3
EABI = EBASE + 4
ENORUNTIME = EBASE + 5
EBADTASK = EBASE + 6
ENOCONTAINER = EBASE + 7
ECONFIG = EBASE + 8
ESTOPPED = EBASE + 9
ENODE = EBASE + 10
ELIMIT = EBASE + 11
EVERSION = EBASE + 12

# Used only when libchimaera.so could not be loaded, so chi_strerror is not available.
_FALLBACK_NAMES = {
    ENOMODULE: "no such module",
    ENOPOOL: "no such pool",
    ENOMETHOD: "no such method",
    EABI: "ABI version mismatch",
    ENORUNTIME: "no runtime is serving the segment",
    EBADTASK: "malformed task",
    ENOCONTAINER: "no container selected",
    ECONFIG: "bad configuration",
    ESTOPPED: "runtime or pool stopped",
    ENODE: "another node is unreachable",
    ELIMIT: "a runtime limit was reached",
    EVERSION: "the module is not newer than the one loaded",
}


class ChimaeraError(Exception):
    """A chi_* call (or a task's method) failed.

    Attributes:
        code: the negative code the call returned (``-errno`` or ``-chimaera.E*``).
        errno: ``-code``.
        name: ``chi_strerror(code)``, the code's short description.
        message: the detail (``chi_last_error()`` of the failing thread, or the binding's).
        call: the C function (or binding operation) that failed, if known.
    """

    def __init__(self, code, message="", name=None, call=None):
        code = -abs(int(code))
        self.code = code
        self.errno = -code
        self.name = name or _fallback_name(-code)
        self.message = message or ""
        self.call = call
        super().__init__(str(self))

    def __str__(self):
        where = f"{self.call}: " if self.call else ""
        detail = f": {self.message}" if self.message and self.message != self.name else ""
        return f"{where}{self.name}{detail} [{self.code}]"

    def relabel(self, call):
        """Names the operation that failed (e.g. "small_message.Md" for chi_task_call)."""
        self.call = call
        self.args = (str(self),)
        return self

    def __reduce__(self):
        # Keeps the attributes across pickling (multiprocessing sends exceptions back).
        return (_rebuild, (type(self), self.code, self.message, self.name, self.call))


class ChimaeraTimeoutError(ChimaeraError, TimeoutError):
    """A wait ran out of time (code ``-ETIMEDOUT``); the task may still complete later."""


def _rebuild(cls, code, message, name, call):
    return cls(code, message, name, call)


def _fallback_name(code):
    return _FALLBACK_NAMES.get(code) or os.strerror(code)


def make_error(code, message="", name=None, call=None):
    """Builds the right ChimaeraError subclass for a negative code."""
    cls = ChimaeraTimeoutError if abs(int(code)) == _errno.ETIMEDOUT else ChimaeraError
    return cls(code, message, name, call)

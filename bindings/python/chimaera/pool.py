"""Pool (a pool of a module's containers, and the calls on it) and Future (an async task)."""

import errno
import threading
from ctypes import sizeof

from . import errors, layout
from ._types import SM_MD, SM_MODULE_NAME, TASK_PERIODIC, TF_LOCAL, ChiSmMdTask
from .layout import Result

# Names Pool.call and call_async take for themselves; a module field with one of these names
# is passed in the `fields` mapping instead.
RESERVED = ("dq", "timeout", "period_ms", "fields")


def timeout_ns(timeout):
    """Seconds (None: forever) to chi_task_wait's nanoseconds (< 0: forever)."""
    if timeout is None:
        return -1
    if timeout < 0:
        raise ValueError(f"timeout must be >= 0 seconds or None, not {timeout}")
    return int(timeout * 1e9)


class Future:
    """A submitted task. wait(timeout) -> bool, done(), result(timeout) -> Result.

    The task's shared memory is freed by close() (or `with`, or garbage collection); a task
    still in flight then is handed to the client, which frees it once it completes. A
    periodic task (call_async(period_ms=...)) completes only when it is cancelled (cancel(),
    then result() raises -ECANCELED), its pool is destroyed or the runtime stops (-ESTOPPED);
    `runs` counts its runs meanwhile. Not guaranteed: close() racing a wait() in another thread.
    """

    def __init__(self, client, method, addr, periodic):
        self._client = client
        self._method = method
        self._addr = addr
        self._task = method.struct.from_address(addr)
        self.periodic = periodic
        self._lock = threading.Lock()
        self._result = None  # (rc, runs, values, message) once completed
        self._freed = False

    def _live(self):
        # The task's memory is gone once the Future or its Client is closed.
        if self._freed:
            raise errors.ChimaeraError(-errno.EINVAL, "the Future is closed", call="Future")
        self._client._check()

    def done(self):
        """True once the task has completed. Never blocks."""
        if self._result is not None:
            return True
        self._live()
        return bool(self._client._lib.chi_task_is_done(self._addr))

    def wait(self, timeout=None):
        """Waits up to timeout seconds (None: forever). Returns True once the task completed,
        False on timeout. Raises ChimaeraError if the runtime died or the client is unusable."""
        if self._result is not None:
            return True
        self._live()
        c = self._client
        # chi_task_wait hands out the runtime's message for a failed task once, through this
        # thread's chi_last_error(), and leaves that untouched when there is none: the text
        # from before tells a fresh message from a stale one.
        before = c._lib.chi_last_error()
        try:
            c._lib.chi_task_wait(c._h, self._addr, timeout_ns(timeout))
        except errors.ChimaeraTimeoutError:
            return False
        self._settle(before)
        return True

    def _settle(self, before):
        h = self._task._chi_hdr
        rc, runs = h.rc, h.runs
        msg = ""
        if rc < 0:
            after = self._client._lib.chi_last_error()
            msg = after.decode(errors="replace") if after != before else ""
        with self._lock:
            if self._result is None:
                self._result = (rc, runs, self._method.read(self._task), msg)

    def result(self, timeout=None):
        """The task's Result. Raises ChimaeraTimeoutError when it has not completed within
        timeout seconds, ChimaeraError when its rc is negative."""
        if not self.wait(timeout):
            raise errors.make_error(-errno.ETIMEDOUT, f"{self._method.module}."
                                    f"{self._method.name} did not complete within {timeout} s",
                                    call="Future.result")
        rc, runs, values, msg = self._result
        if rc < 0:
            raise errors.make_error(rc, msg, self._client._lib.chi_strerror(rc).decode(),
                                    f"{self._method.module}.{self._method.name}")
        return Result(self._method.name, rc, runs, values)

    def cancel(self):
        """Stops a periodic task: it completes with -ECANCELED (result() raises that)."""
        self._live()
        self._client._lib.chi_task_cancel(self._client._h, self._addr)

    @property
    def runs(self):
        """How many times the method body ran so far (periodic tasks count up)."""
        if self._result is not None:
            return self._result[1]
        self._live()
        return self._task._chi_hdr.runs

    def close(self):
        """Frees the task (later, through the client, if it is still in flight)."""
        with self._lock:
            if self._freed:
                return
            self._freed = True
        self._client._drop_task(self._addr)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def __repr__(self):
        state = "done" if self._result is not None else "pending"
        return f"<chimaera.Future {self._method.module}.{self._method.name} {state}>"


class Pool:
    """A pool: id, name and module. Calls build the method's task from the module's
    descriptors. As a context manager, destroys the pool on exit."""

    def __init__(self, client, pool_id, name=None, module=None):
        self.client = client
        self.id = pool_id
        self.name = name
        self.module = module

    def __repr__(self):
        return f"<chimaera.Pool {self.name!r} id={self.id} module={self.module!r}>"

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.destroy()

    def describe(self):
        """The module's layout.Module (its methods and their fields)."""
        if not self.module:
            raise errors.ChimaeraError(-errors.ENOMODULE, f"the module of pool {self.name!r} "
                                       "is unknown; pass module= to Client.pool", call="Pool")
        m = self.__dict__.get("_layout")
        if m is None:
            # Once per Pool: the module file it talks to does not change under it.
            m = self._layout = layout.describe(self.module)
        return m

    def destroy(self):
        """Destroys the pool: its periodic tasks complete with -ESTOPPED."""
        c = self.client
        c._check()
        c._lib.chi_pool_destroy(c._h, self.id)

    def _prepare(self, method, fields, kw, dq):
        m = self.describe().method(method)
        values = dict(fields) if fields else {}
        values.update(kw)
        addr = self.client._task_new(self.id, m.id, m.task_size, dq)
        t = m.struct.from_address(addr)
        if m.local:
            t._chi_hdr.flags |= TF_LOCAL
        try:
            m.fill(t, values)
        except BaseException:
            self.client._drop_task(addr)
            raise
        return m, addr, t

    def call(self, method, fields=None, *, dq=None, timeout=None, **kw):
        """Runs method (a name or id) synchronously and returns its Result (rc, runs and the
        OUT fields as attributes). IN fields come as keywords (or the `fields` mapping);
        omitted ones are zero. Raises ChimaeraError when the task's rc is negative,
        ChimaeraTimeoutError after timeout seconds (the task is freed once it completes)."""
        m, addr, t = self._prepare(method, fields, kw, dq)
        c = self.client
        try:
            c._lib.chi_task_call(c._h, addr, timeout_ns(timeout))
            h = t._chi_hdr
            return Result(m.name, h.rc, h.runs, m.read(t))
        except errors.ChimaeraError as e:
            raise e.relabel(f"{m.module}.{m.name}")
        finally:
            c._drop_task(addr)

    def call_async(self, method, fields=None, *, dq=None, period_ms=None, **kw):
        """Submits method and returns a Future at once. period_ms makes the task periodic
        (the method must allow it: CHI_MF_PERIODIC_OK)."""
        c = self.client
        m = self.describe().method(method)
        if period_ms is not None and not m.periodic_ok:
            raise errors.ChimaeraError(-errno.EINVAL, f"{m.module}.{m.name} may not run "
                                       "periodically (no CHI_MF_PERIODIC_OK)", call="call_async")
        m, addr, t = self._prepare(m.id, fields, kw, dq)
        try:
            if period_ms is not None:
                t._chi_hdr.period_ns = max(int(period_ms * 1e6), 1)
                t._chi_hdr.flags |= TASK_PERIODIC
            c._lib.chi_task_submit(c._h, addr)
        except BaseException:
            c._drop_task(addr)
            raise
        return Future(c, m, addr, period_ms is not None)

    def md(self, depth=0, dq=None, timeout=None):
        """small_message's Md, typed (chi_sm_md): returns its `ret` (1, or the number of
        containers that answered a broadcast). Needs no descriptors."""
        if self.module not in (None, SM_MODULE_NAME):
            raise errors.ChimaeraError(-errors.ENOMETHOD, f"pool {self.name!r} runs "
                                       f"{self.module}, not small_message", call="Pool.md")
        c = self.client
        addr = c._task_new(self.id, SM_MD, _MD_SIZE, dq)
        try:
            t = ChiSmMdTask.from_address(addr)
            t.depth = depth
            c._lib.chi_task_call(c._h, addr, timeout_ns(timeout))
            return t.ret
        except errors.ChimaeraError as e:
            raise e.relabel("small_message.Md")
        finally:
            c._drop_task(addr)


_MD_SIZE = sizeof(ChiSmMdTask)

"""Client: one connection to a runtime (chi_client_t), and the calls that need only it."""

import errno
import json
import os
import threading
import weakref
from ctypes import addressof, byref, c_uint64, c_void_p, create_string_buffer, sizeof

from . import _lib, errors, layout
from ._types import MODE_ATTACH, MODE_AUTO, MODE_EMBEDDED, ChiClientOpts, ChiDomainQuery, \
    ChiPoolCreateOpts, ChiPoolInfo
from .buffer import Buffer
from .pool import Pool

MODES = {"auto": MODE_AUTO, "attach": MODE_ATTACH, "embedded": MODE_EMBEDDED}


class Client:
    """A connection to a runtime: attached to a daemon's segment, or an embedded runtime.

    Args:
        segment: the runtime's name (None: $CHIMAERA_SEGMENT, then the config's runtime.name).
        config: a YAML configuration path (None: $CHIMAERA_CONF, else defaults).
        mode: "auto" (CHIMAERA_EMBEDDED=1 or the config's client.mode), "attach" or "embedded".
        connect_timeout_ms: how long to wait for a starting runtime (0: the library's 500 ms).

    Raises ChimaeraError(-ENORUNTIME) when no runtime serves the segment. Thread-safe: any
    number of threads may call through one Client. Close it (or use `with`); closing frees its
    buffers and stops an embedded runtime. After os.fork() the child must make its own Client:
    every call on the parent's raises ChimaeraError(-EINVAL).
    """

    def __init__(self, segment=None, config=None, mode="auto", connect_timeout_ms=0):
        self._lib = lib = _lib.load()
        self._closed = True
        if mode not in MODES and mode not in MODES.values():
            raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
        opts = ChiClientOpts(size=sizeof(ChiClientOpts), mode=MODES.get(mode, mode),
                             segment=os.fsencode(segment) if segment else None,
                             config_path=os.fsencode(config) if config else None,
                             connect_timeout_ms=connect_timeout_ms)
        h = c_void_p()
        lib.chi_client_init(byref(opts), byref(h))
        self._h = h.value
        self._pid = _lib.pid
        self._closed = False
        self._buffers = weakref.WeakSet()
        self._orphans = []  # tasks abandoned in flight (timed out), freed once done
        self._orphan_lock = threading.Lock()

    # ---- lifetime -------------------------------------------------------------------------

    def _check(self):
        if self._pid != _lib.pid:
            raise errors.ChimaeraError(
                -errno.EINVAL, f"this Client was created in process {self._pid} and cannot be "
                f"used in process {_lib.pid} (forked from it): create a new chimaera.Client in "
                "the child", call="Client")
        if self._closed:
            raise errors.ChimaeraError(-errno.EINVAL, "the Client is closed", call="Client")

    def close(self):
        """Frees the client's buffers and detaches (stopping an embedded runtime). Tasks
        still in flight are abandoned. Idempotent. In a forked child it only forgets the
        parent's handle."""
        if self._closed:
            return
        if self._pid != _lib.pid:
            self._closed = True
            return
        for b in list(self._buffers):
            b.close()
        self._closed = True
        self._lib.chi_client_finalize(self._h)

    @property
    def closed(self):
        return self._closed

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
        if self._closed:
            return "<chimaera.Client closed>"
        return f"<chimaera.Client segment={self.segment!r}>"

    # ---- tasks (used by Pool and Future) ----------------------------------------------------

    def _task_new(self, pool_id, method, size, dq):
        self._check()
        if self._orphans:
            self._reap()
        if dq is not None and not isinstance(dq, ChiDomainQuery):
            raise TypeError(f"dq must be a chimaera.DomainQuery or None, not {type(dq).__name__}")
        p = c_void_p()
        self._lib.chi_task_new(self._h, pool_id, method, size,
                               None if dq is None else byref(dq), byref(p))
        return p.value

    def _drop_task(self, addr):
        """Frees a task, or keeps it for _reap if it is still in flight."""
        if self._closed or self._pid != _lib.pid:
            return  # gone with the client, or the parent's
        try:
            self._lib.chi_task_del(self._h, addr)
        except errors.ChimaeraError as e:
            if e.errno != errno.EBUSY:
                raise
            with self._orphan_lock:
                self._orphans.append(addr)

    def _reap(self):
        with self._orphan_lock:
            left = []
            for addr in self._orphans:
                if self._lib.chi_task_is_done(addr):
                    self._lib.chi_task_del(self._h, addr)
                else:
                    left.append(addr)
            self._orphans = left

    # ---- runtime, modules and pools ---------------------------------------------------------

    @property
    def segment(self):
        """The segment name the client is attached to."""
        self._check()
        buf = create_string_buffer(256)
        n = self._lib.chi_client_segment(self._h, buf, len(buf))
        return buf.raw[:n].decode()

    def register_module(self, name):
        """Loads module `name` (lib<name>.so) in the runtime. Idempotent."""
        self._check()
        self._lib.chi_module_register(self._h, name.encode())

    def upgrade_module(self, name, path=None, force=False, recreate=False):
        """Hot upgrade (chi_module_upgrade): swaps the build of module `name` at `path` (or
        lib<name>.so found again on the search path) into every container of its pools, on
        every node, while tasks keep coming. Returns the runtime's report: old_version,
        new_version, containers and each container's pause_us."""
        self._check()
        flags = (0x1 if force else 0) | (0x2 if recreate else 0)
        buf = create_string_buffer(4096)
        self._lib.chi_module_upgrade_report(self._h, name.encode(),
                                            path.encode() if path else None, flags, buf, len(buf))
        return json.loads(buf.value.decode())

    def migrate_container(self, pool, container, to_node):
        """Moves container `container` of `pool` (a Pool, a name or an id) to node `to_node`
        (chi_container_migrate); its id does not change and every node routes to it there."""
        self._check()
        if isinstance(pool, str):
            pool = self.pool_info(pool)["id"]
        elif not isinstance(pool, int):
            pool = pool.id
        self._lib.chi_container_migrate(self._h, pool, container, to_node)

    def create_pool(self, module, name, containers_per_node=1, params=b"", replicas=1, **kwargs):
        """Creates (or finds, by name) a pool of `module`; returns its Pool.

        The create parameters are either raw bytes (`params=b"..."`, the module's params
        struct) or given by name, laid out by the module's create descriptor (ABI 1.7,
        CHI_MF_CREATE_PARAMS): `create_pool("bdev", "x", path="ram://", size=1 << 20)`, or
        `params={...}` for a parameter named like an argument here. Parameters not given are
        zero. An unknown name or a value of the wrong type raises TypeError (ValueError,
        OverflowError for one out of range) listing the known parameters, before anything
        reaches the runtime. `replicas`: copies of each container on distinct nodes
        (ABI 1.8; more than the cluster has nodes: -EINVAL)."""
        self._check()
        if isinstance(params, dict):
            kwargs = {**params, **kwargs}
            params = b""
        if kwargs:
            if params:
                raise TypeError("give the create parameters as params=bytes or by name, "
                                "not both")
            params = layout.describe(module).encode_create(kwargs)
        params = bytes(params)
        pbuf = create_string_buffer(params, len(params)) if params else None
        opts = ChiPoolCreateOpts(size=sizeof(ChiPoolCreateOpts),
                                 containers_per_node=containers_per_node,
                                 module=module.encode(), name=name.encode(),
                                 params=addressof(pbuf) if pbuf else None,
                                 params_size=len(params))
        opts.replicas = replicas
        pid = c_uint64()
        self._lib.chi_pool_create(self._h, byref(opts), byref(pid))
        return Pool(self, pid.value, name, module)

    def pool(self, name, module=None):
        """The existing pool `name` (-ENOPOOL if there is none), with its module, which generic
        calls need: one lookup in the runtime (chi_pool_info), whatever the number of pools."""
        info = self.pool_info(name)
        return Pool(self, info["id"], name, module or info["module"])

    def pool_info(self, name_or_id):
        """A pool's id, name, module and shape (chi_pool_info), by name or by id."""
        self._check()
        info = ChiPoolInfo(size=sizeof(ChiPoolInfo))
        if isinstance(name_or_id, int):
            self._lib.chi_pool_info(self._h, name_or_id, None, byref(info))
        else:
            self._lib.chi_pool_info(self._h, 0, name_or_id.encode(), byref(info))
        return {"id": info.id, "name": info.name.decode(), "module": info.module.decode(),
                "containers": info.containers, "containers_per_node": info.containers_per_node,
                "nodes": info.nodes}

    def set_work_orchestrator(self, name):
        """Switches the runtime's work-orchestration policy to module `name`."""
        self._check()
        self._lib.chi_runtime_set_worch(self._h, name.encode())

    def describe(self, module):
        """The task layouts of `module` (layout.Module), from chi_module_describe."""
        return layout.describe(module)

    def buffer(self, size):
        """A shared-memory Buffer of size bytes (see Buffer)."""
        return Buffer(self, size)

    def flush(self):
        """Waits until every task queued in the runtime before this call has run."""
        self._check()
        self._lib.chi_runtime_flush(self._h)

    def stop_runtime(self):
        """Asks the runtime to stop; returns once the request is accepted."""
        self._check()
        self._lib.chi_runtime_stop(self._h)

    def stats(self):
        """The runtime's statistics (workers, lanes, pools, task counts) as a dict."""
        self._check()
        cap = 1 << 16
        while True:
            buf = create_string_buffer(cap)
            try:
                n = self._lib.chi_runtime_stats(self._h, buf, cap)
            except errors.ChimaeraError as e:
                # -ERANGE does not say how much is needed: grow and retry, within reason.
                if e.errno != errno.ERANGE or cap >= 1 << 26:
                    raise
                cap *= 4
                continue
            return json.loads(buf.raw[:n].decode())

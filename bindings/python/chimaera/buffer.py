"""Buffer: bytes in the runtime's shared memory, seen from Python without a copy."""

import errno
from ctypes import byref, c_uint8, c_void_p

from . import _lib, errors
from ._types import ChiShmPtr


class Buffer:
    """A chi_buffer_alloc block. Make one with Client.buffer(size); close it (or use `with`).

    Attributes:
        view: a writable memoryview (format 'B') over the shared memory itself: what is
            written through it is what the runtime reads, and what the runtime writes shows up
            in it, with no copy either way. Also exported as the buffer protocol on Python 3.12+.
        shm: the ChiShmPtr a task's BULK or SHM_PTR field takes (passing the Buffer itself to
            Pool.call does the same and fills the size field).
        address: the block's address in this process; size: its length in bytes.

    Not guaranteed: close() refuses (-EBUSY) while an object holds `view` through the buffer
    protocol (struct.iter_unpack, most C extensions), but slices of `view` and memoryviews made
    from it share its memory without being seen: they must not be used after close().
    """

    def __init__(self, client, size):
        client._check()
        lib = client._lib
        p = c_void_p()
        lib.chi_buffer_alloc(client._h, size, byref(p))
        self._client = client
        self.address = p.value
        self.size = size
        self._closed = False
        try:
            self.shm = ChiShmPtr()
            lib.chi_ptr_to_shm(client._h, self.address, byref(self.shm))
        except BaseException:
            lib.chi_buffer_free(client._h, self.address)
            raise
        self._raw = memoryview((c_uint8 * size).from_address(self.address))
        self.view = self._raw.cast("B")
        client._buffers.add(self)

    def __len__(self):
        return self.size

    def __buffer__(self, flags):
        return self.view

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        state = "closed" if self._closed else f"at {self.address:#x}"
        return f"<chimaera.Buffer {self.size} bytes {state}, {self.shm!r}>"

    @property
    def closed(self):
        return self._closed

    def close(self):
        """Frees the block. Idempotent. In a forked child only forgets it: the block belongs
        to the parent's client and the memory is shared, so freeing it here would free the
        parent's data."""
        if self._closed:
            return
        c = self._client
        if c._pid == _lib.pid and not c._closed:
            try:
                self.view.release()
                self._raw.release()
            except BufferError:
                raise errors.ChimaeraError(
                    -errno.EBUSY, f"buffer {self.address:#x} is still exported (e.g. a numpy "
                    "array or memoryview made from .view); release that before closing",
                    call="Buffer.close") from None
            c._lib.chi_buffer_free(c._h, self.address)
        self._closed = True
        c._buffers.discard(self)

    def __del__(self):
        try:
            if not self._closed:
                self.close()
        except Exception:
            pass


"""Token buckets in shared memory: one count per limit for every worker process of a gateway on one machine.

The table is a small file mapped into each worker (under ``/dev/shm`` where it exists, so it never touches a
disk). The gateway's first process (the ``agentgateway`` command, while it checks the config) creates it and hands
its path to granian's workers through the environment; a worker that granian respawns maps the same file, so counts
survive it. Each bucket has a slot keyed by the limit's identity (a digest of who it applies to and its numbers),
never by its place in a list, so the counts of unchanged limits also survive a config reload.

A slot is ``key (16 bytes) | tokens (int64) | last fill (int64, CLOCK_MONOTONIC ns: one clock for every process of
the machine)``. Every check takes one ``flock`` on the whole table (two system calls, ~0.4 µs here), reads and
refills the request's buckets, and takes from all of them or from none. The lock is held for a few microseconds of
arithmetic and never across an ``await``; a process killed while holding it releases it with its file descriptor.
The lock is taken without letting go of the GIL when it is free (`_lock`): ``fcntl.flock`` always releases it for
the system call, and under load granian's threads take it each time (the ops-on bench paid that twice a request).

Fills are agentgateway's (and Envoy's): ``tokensPerFill`` whole tokens every ``fillInterval``, up to ``maxTokens``.
A token bucket may go below zero when a request used more tokens than it reserved; it then refills from there.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import errno
import fcntl
import mmap
import os
import struct
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

__all__ = ["TABLE_ENV", "Bucket", "SharedTable", "gateway_table", "wait_ns"]

#: ``<pid of the process that created the table>:<path>``, read by that process's granian workers.
TABLE_ENV = "AGENTGATEWAY_LIMITS_TABLE"

_MAGIC = b"AGWLIM01"
_HEADER = struct.Struct("<8sII")  # magic, capacity, slot size
_HEADER_SIZE = 64
_SLOT = struct.Struct("<16sqq")
_STATE = struct.Struct("<qq")
_SLOT_SIZE = 32
_EMPTY = bytes(16)
DEFAULT_CAPACITY = 4096  # 128 KiB: far more limits than a config holds, and slots are never freed

Clock = Callable[[], int]


# libc's flock called with the GIL held (ctypes.PyDLL): a non-blocking try needs no other thread to run meanwhile.
_LIBC = ctypes.PyDLL(None, use_errno=True)
_FLOCK = _LIBC.flock
_FLOCK.argtypes = (ctypes.c_int, ctypes.c_int)
_FLOCK.restype = ctypes.c_int


def _lock(fd: int) -> None:
    """The table's lock: taken at once when free, keeping the GIL; when another process holds it, waited for with
    ``fcntl.flock``, which lets this process's other threads run meanwhile."""
    if _FLOCK(fd, fcntl.LOCK_EX | fcntl.LOCK_NB) == 0:
        return
    error = ctypes.get_errno()
    if error not in (errno.EWOULDBLOCK, errno.EINTR):
        raise OSError(error, os.strerror(error))
    fcntl.flock(fd, fcntl.LOCK_EX)


def _unlock(fd: int) -> None:
    if _FLOCK(fd, fcntl.LOCK_UN) != 0:  # never blocks
        error = ctypes.get_errno()
        raise OSError(error, os.strerror(error))


@dataclass(frozen=True, slots=True)
class Bucket:
    """A token bucket's numbers (from a ``localRateLimit`` entry), times in nanoseconds."""

    max_tokens: int
    tokens_per_fill: int
    interval_ns: int


def _refill(tokens: int, last: int, now: int, bucket: Bucket) -> tuple[int, int]:
    if now > last:
        fills = (now - last) // bucket.interval_ns
        if fills:
            tokens = min(bucket.max_tokens, tokens + fills * bucket.tokens_per_fill)
            last += fills * bucket.interval_ns
    return tokens, last


def wait_ns(tokens: int, want: int, last: int, now: int, bucket: Bucket) -> int:
    """Nanoseconds until ``tokens`` (as of ``last``) become at least ``want``."""
    if tokens >= want:
        return 0
    fills = -(-(want - tokens) // bucket.tokens_per_fill)
    return max(0, last + fills * bucket.interval_ns - now)


class SharedTable:
    """The mapped table of one gateway. ``clock`` returns nanoseconds on a clock all processes share."""

    def __init__(self, path: str, capacity: int = DEFAULT_CAPACITY, clock: Clock = time.monotonic_ns) -> None:
        self.path = path
        self.clock = clock
        size = _HEADER_SIZE + capacity * _SLOT_SIZE
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            with self._locked():
                if os.fstat(self._fd).st_size < size:
                    os.ftruncate(self._fd, size)
                self._mm = mmap.mmap(self._fd, os.fstat(self._fd).st_size)
                magic, found_capacity, slot_size = _HEADER.unpack_from(self._mm, 0)
                if magic == _MAGIC:
                    if slot_size != _SLOT_SIZE:
                        raise OSError(f"{path} is a limits table of another layout")
                    capacity = found_capacity
                else:
                    _HEADER.pack_into(self._mm, 0, _MAGIC, capacity, _SLOT_SIZE)
        except BaseException:
            os.close(self._fd)
            raise
        self.capacity = capacity
        self.pid = os.getpid()

    @contextlib.contextmanager
    def _locked(self):  # type: ignore[no-untyped-def]
        _lock(self._fd)
        try:
            yield
        finally:
            _unlock(self._fd)

    def close(self) -> None:
        self._mm.close()
        os.close(self._fd)

    def slot(self, key: bytes, bucket: Bucket) -> int:
        """The offset of ``key``'s slot (16 bytes), made with a full bucket when the table has none yet."""
        if len(key) != 16 or key == _EMPTY:
            raise ValueError("a slot key is 16 bytes, not all zero")
        start = int.from_bytes(key[:8], "little") % self.capacity
        with self._locked():
            for probe in range(self.capacity):
                offset = _HEADER_SIZE + ((start + probe) % self.capacity) * _SLOT_SIZE
                found = self._mm[offset : offset + 16]
                if found == key:
                    return offset + 16
                if found == _EMPTY:
                    _SLOT.pack_into(self._mm, offset, key, bucket.max_tokens, self.clock())
                    return offset + 16
        raise OSError(f"the limits table {self.path} is full ({self.capacity} limits)")

    def take(self, items: Sequence[tuple[int, Bucket, int]]) -> tuple[bool, int, list[tuple[int, int]]]:
        """Takes ``cost`` from each ``(slot, bucket, cost)``, all or none. Returns whether every bucket held its
        cost, the clock's time and each bucket's ``(tokens, last fill)``: after the take, or as found when refused
        (``wait_ns`` says when to come back)."""
        mm = self._mm
        fd = self._fd
        unpack = _STATE.unpack_from
        found = []
        ok = True
        _lock(fd)
        try:
            now = self.clock()
            for offset, bucket, cost in items:
                tokens, last = unpack(mm, offset)
                if now - last >= bucket.interval_ns:
                    tokens, last = _refill(tokens, last, now, bucket)
                found.append((tokens, last))
                if tokens < cost:
                    ok = False
            if ok:
                pack = _STATE.pack_into
                for index, (offset, _bucket, cost) in enumerate(items):
                    tokens, last = found[index]
                    found[index] = (tokens - cost, last)
                    pack(mm, offset, tokens - cost, last)
        finally:
            _unlock(fd)
        return ok, now, found

    def give(self, offset: int, bucket: Bucket, amount: int) -> None:
        """Adds ``amount`` (negative: takes) to a bucket, as a token reservation is settled; capped at its size."""
        mm = self._mm
        _lock(self._fd)
        try:
            tokens, last = _STATE.unpack_from(mm, offset)
            tokens, last = _refill(tokens, last, self.clock(), bucket)
            _STATE.pack_into(mm, offset, min(bucket.max_tokens, tokens + amount), last)
        finally:
            _unlock(self._fd)

    def peek(self, offset: int, bucket: Bucket) -> int:
        """The tokens in a bucket now, taking nothing."""
        mm = self._mm
        _lock(self._fd)
        try:
            tokens, last = _STATE.unpack_from(mm, offset)
            tokens, _last = _refill(tokens, last, self.clock(), bucket)
        finally:
            _unlock(self._fd)
        return int(tokens)


_TABLES: dict[str, SharedTable] = {}


def _shm_dir() -> str | None:
    return "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None


def _open(path: str) -> SharedTable:
    table = _TABLES.get(path)
    if table is None or table.pid != os.getpid():
        table = _TABLES[path] = SharedTable(path)
    return table


def gateway_table(*, worker: bool) -> SharedTable:
    """This gateway's table. A granian worker (``worker``) maps the one its parent process created; any other
    process creates one, hands it to the workers it will start (``TABLE_ENV``) and removes it when it exits."""
    handed = os.environ.get(TABLE_ENV, "")
    owner, _, path = handed.partition(":")
    pid = os.getpid()
    if owner.isdigit() and path and (int(owner) == pid or (worker and int(owner) == os.getppid())):
        return _open(path)
    if worker:
        # Workers of an app served without the agentgateway command: siblings share their parent's table.
        path = os.path.join(_shm_dir() or tempfile.gettempdir(), f"agentgateway-limits-{os.getppid()}")
        return _open(path)
    handle, path = tempfile.mkstemp(prefix="agentgateway-limits-", dir=_shm_dir())
    os.close(handle)
    atexit.register(_remove, path)
    os.environ[TABLE_ENV] = f"{pid}:{path}"
    return _open(path)


def _remove(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)

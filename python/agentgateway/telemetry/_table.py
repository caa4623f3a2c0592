"""Counters shared across worker processes: one memory-mapped file per worker, summed by the main process.

prometheus-client's multiprocess mode keeps a file per worker too, but every update goes through its metric
objects (a label lookup with keyword arguments, a lock, a ``struct.pack_into``): ~1-2 µs per value, and a request
updates about twenty. Here a worker resolves a series to a slot index once (a dict lookup per request for all its
series together, see _metrics.py), and the updates of one settled exchange are one call into the core
(``native.record``: rust/sse_core/src/stats.rs, bucket searches and additions over the same memory, every slot
checked against the table's length); the few others are ``values[slot] += x`` on a ``memoryview`` of the file. No
lock: one writer per file.

The core writes through a ctypes view of the map that it holds (``StatsTable.bind``): while it is held the map
cannot be closed or resized (``BufferError``), so the memory cannot go away under it; `_grow` and `close` unbind it
first.

File layout (native byte order, 8-byte aligned)::

    header  magic u64 | used u64 (bytes of records, published last) | pid u64 | ready u64
    record  key_len u32 | slots u32 | key (JSON: [family, [label names], [label values]]) | padding | slots x f64

A record is written whole before ``used`` is advanced past it, so a reader never sees half a key. A reader copies
the file with one ``read()``; an 8-byte aligned double is never torn on the platforms we serve. A worker that
dies leaves its file behind: its counts stay in the sum (counters never go down), and the main process folds the
file into its own totals and removes it, so respawns do not pile up files.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import struct
from collections.abc import Iterator

import orjson

from .._core import StatsTable

__all__ = ["SeriesKey", "WorkerTable", "read_table"]

MAGIC = 0x31544741_54415453  # "STATAGT1"
_HEADER = struct.Struct("=QQQQ")
_RECORD = struct.Struct("=II")
_INITIAL_SIZE = 1 << 20
#: A hard cap on the file, whatever the labels do: past it new series are not created (and counted as dropped).
MAX_SIZE = 64 << 20
#: Enough for the widest series (a histogram's buckets and sum).
SCRATCH_SLOTS = 32

#: (family, label names, label values)
SeriesKey = tuple[str, tuple[str, ...], tuple[str, ...]]


def _pad8(n: int) -> int:
    return (n + 7) & ~7


class WorkerTable:
    """This process's values. ``values`` is indexed by the slot numbers `slot` returns."""

    __slots__ = ("_file", "_map", "_slots", "_used", "dropped", "native", "path", "scratch", "values")

    def __init__(self, directory: str | None) -> None:
        self._slots: dict[SeriesKey, int] = {}
        self.dropped = 0
        self._used = 0
        if directory is None:
            # No main process to read it (the app run in-process): an anonymous map works the same.
            self.path: str | None = None
            self._file: int | None = None
            self._map = mmap.mmap(-1, _INITIAL_SIZE)
        else:
            self.path = os.path.join(directory, f"w-{os.getpid()}.db")
            self._file = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
            os.ftruncate(self._file, _INITIAL_SIZE)
            self._map = mmap.mmap(self._file, _INITIAL_SIZE)
        _HEADER.pack_into(self._map, 0, MAGIC, 0, os.getpid(), 0)
        self.values = memoryview(self._map).cast("d")
        #: the same values for the core (one call per settled exchange, _metrics.py), and the groups' slots.
        self.native = StatsTable()
        self.native.bind(self._map)
        #: where updates of series that did not fit go (family "" is never exported).
        self.scratch = self.slot("", (), (), SCRATCH_SLOTS)

    def slot(self, family: str, names: tuple[str, ...], labels: tuple[str, ...], slots: int = 1) -> int:
        """The first of ``slots`` consecutive values of the series (created at zero on first use); the scratch
        slots when the table is full."""
        key = (family, names, labels)
        index = self._slots.get(key)
        if index is not None:
            return index
        encoded = orjson.dumps([family, names, labels])
        start = _HEADER.size + self._used
        values_at = _pad8(start + _RECORD.size + len(encoded))
        end = values_at + 8 * slots
        if end > len(self._map) and not self._grow(end):
            self.dropped += 1
            return self.scratch
        _RECORD.pack_into(self._map, start, len(encoded), slots)
        self._map[start + _RECORD.size : start + _RECORD.size + len(encoded)] = encoded
        self._map[values_at:end] = bytes(end - values_at)
        self._used = end - _HEADER.size
        struct.pack_into("=Q", self._map, 8, self._used)  # published: readers now see the record
        index = values_at // 8
        self._slots[key] = index
        return index

    def _grow(self, needed: int) -> bool:
        size = len(self._map)
        while size < needed:
            size *= 2
        if size > MAX_SIZE:
            return False
        self.values.release()
        self.native.unbind()  # its view holds the map open: dropped before it is closed
        if self._file is None:
            grown = mmap.mmap(-1, size)
            grown[: len(self._map)] = self._map[:]
            self._map.close()
            self._map = grown
        else:
            self._map.close()
            os.ftruncate(self._file, size)
            self._map = mmap.mmap(self._file, size)
        self.values = memoryview(self._map).cast("d")
        self.native.bind(self._map)
        return True

    def set_ready(self, ready: bool) -> None:
        struct.pack_into("=Q", self._map, 24, 1 if ready else 0)

    def close(self, *, remove: bool = False) -> None:
        self.values.release()
        self.native.unbind()
        self._map.close()
        if self._file is not None:
            os.close(self._file)
            self._file = None
            if remove and self.path is not None:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.path)


def read_table(data: bytes) -> tuple[int, bool, Iterator[tuple[SeriesKey, tuple[float, ...]]]]:
    """``(pid, ready, series)`` of one worker file's bytes."""
    magic, used, pid, ready = _HEADER.unpack_from(data, 0)
    if magic != MAGIC:
        raise ValueError("not a stats table")

    def series() -> Iterator[tuple[SeriesKey, tuple[float, ...]]]:
        offset = _HEADER.size
        end = min(_HEADER.size + used, len(data))
        while offset + _RECORD.size <= end:
            key_len, slots = _RECORD.unpack_from(data, offset)
            key_at = offset + _RECORD.size
            values_at = _pad8(key_at + key_len)
            family, names, labels = orjson.loads(data[key_at : key_at + key_len])
            if family:
                yield (family, tuple(names), tuple(labels)), struct.unpack_from(f"={slots}d", data, values_at)
            offset = values_at + 8 * slots

    return pid, bool(ready), series()

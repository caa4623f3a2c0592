"""The core's telemetry recorder (issue 18, rust/sse_core/src/stats.rs): the metric updates of one exchange and
the access log's text line, each checked against what the Python code wrote before, value for value and byte for
byte (floats as Python's ``format`` writes them), and the table's memory bound safely."""

from __future__ import annotations

import math
import mmap
import os
import random
import struct
import time
from bisect import bisect_left
from typing import Any

import orjson
import pytest
from agentgateway._core import STATS_BUCKETS, AccessLogBatches, CoreError, StatsTable
from agentgateway.telemetry import _access_log, _metrics
from agentgateway.telemetry._access_log import AccessLog
from agentgateway.telemetry._catalog import Catalog, Price, Tokens
from agentgateway.telemetry._table import SCRATCH_SLOTS, WorkerTable, read_table
from hypothesis import given, settings
from hypothesis import strategies as st

HTTP, GENAI, TOKEN, TTFT, TPOT = STATS_BUCKETS

# -- floats ----------------------------------------------------------------------------------------------------------

EDGES = [
    0.0, -0.0, 1.0, -1.0, 0.5, 1e-5, 1e-4, 9.99995e-5, 0.000123456789, 2.58e-05, 123456.5, 123457.5, 999999.5,
    999999.4, 1234565.0, 1e16, 1e22, 1e100, 1.7976931348623157e308, 5e-324, 2.2250738585072014e-308, 0.0078125,
    0.0000005, 0.0000015, 0.0005, 3e-5, 100.0, 1e5, 1e6, 0.1, 0.2, 0.3, 1 / 3, 2 / 3, 0.0625, 1.5, 2.5, 1e-7,
    12345.65, 0.00012345650000000001, math.inf, -math.inf, math.nan, -math.nan, 7.62939453125e-06,
]  # fmt: skip


def _line(cost: float | None = None, duration: float = 0.0, ttft: float | None = None, millis: int | None = 0) -> str:
    batches = AccessLogBatches()
    args: dict[str, Any] = {
        "request_id": "r1",
        "upstream_id": None,
        "caller": None,
        "model": None,
        "backend": None,
        "attempts": 0,
        "status": 200,
        "input": None,
        "output": 0,
        "cached": 0,
        "reasoning": 0,
        "error": None,
    }
    batches.text(
        args["request_id"], args["upstream_id"], args["caller"], args["model"], args["backend"], args["attempts"],
        args["status"], args["input"], args["output"], args["cached"], args["reasoning"], cost, duration, ttft,
        args["error"], millis=millis,
    )  # fmt: skip
    (data,) = batches.drain()
    return data.decode()


def _floats_of(line: str) -> tuple[str, str, str]:
    parts = dict(part.split("=", 1) for part in line.split() if "=" in part)
    return parts["cost"], parts["duration"], parts["ttft"]


def _check_floats(values: list[float]) -> None:
    for x in values:
        cost, duration, ttft = _floats_of(_line(cost=x, duration=x, ttft=x))
        assert (cost, duration, ttft) == (format(x, ".6g"), f"{x:.6f}", format(x, ".6g")), repr(x)


def test_floats_are_formatted_as_python_formats_them_at_the_edges() -> None:
    _check_floats(EDGES + [-x for x in EDGES])


def test_floats_are_formatted_as_python_formats_them_at_random() -> None:
    rng = random.Random(18)
    values: list[float] = []
    for _ in range(20_000):
        values.append(struct.unpack("d", rng.getrandbits(64).to_bytes(8, "little"))[0])  # any bit pattern
        values.append(rng.uniform(0, 120))  # durations
        values.append(rng.uniform(0, 1) * 10 ** rng.randint(-12, 3))  # costs
        # six-digit ties and the fixed/scientific switch
        values.append(rng.randint(100_000, 999_999) / 10 ** rng.randint(-3, 12) + rng.choice((0, 5e-7)))
    _check_floats(values)


@settings(max_examples=3000, deadline=None)
@given(st.floats(allow_nan=True, allow_infinity=True))
def test_any_float_is_formatted_as_python_formats_it(x: float) -> None:
    _check_floats([x])


# -- the text line ---------------------------------------------------------------------------------------------------

_SAFE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:/@*+")


def _reference_text(value: str | None) -> str:
    """`_access_log._text` as it was before the core wrote the line."""
    if value is None:
        return "-"
    return value if value and _SAFE.issuperset(value) else orjson.dumps(value).decode()


def _reference_line(stamp: str, *f: Any) -> bytes:
    """The text line `AccessLog.write` wrote in Python before (f-string and all)."""
    request_id, upstream_id, caller, model, backend, attempts, status, tokens, cost, duration, ttft, error = f
    middle = f"caller={_reference_text(caller)} model={_reference_text(model)} backend={_reference_text(backend)}"
    if tokens is None:
        counts = "input=- output=- cached=- reasoning=-"
    else:
        counts = f"input={tokens[0]} output={tokens[1]} cached={tokens[2]} reasoning={tokens[3]}"
    ident = request_id if request_id.isascii() and request_id.isalnum() else _reference_text(request_id)
    upstream = "-" if upstream_id is None else _reference_text(upstream_id)
    return (
        f"{stamp} request id={ident} upstream_id={upstream} {middle} attempts={attempts}"
        f" status={status} {counts} cost={'-' if cost is None else format(cost, '.6g')}"
        f" duration={duration:.6f} ttft={'-' if ttft is None else format(ttft, '.6g')}"
        f" error={'-' if error is None else _reference_text(error)}\n"
    ).encode()


def _stamp(millis: int) -> str:
    second = millis // 1000
    return f"{time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(second))}.{millis - second * 1000:03d}Z"


_texts = st.one_of(
    st.none(),
    st.text(max_size=30),
    st.text(alphabet='abcXYZ019-_.:/@*+ ="\\\n\t\x00\x1f\x7fé€😀', max_size=12),
    st.sampled_from(["gpt-4o-mini", "", "a b", "model_not_found", "upstream_error"]),
)
_counts = st.integers(min_value=-(2**63), max_value=2**63 - 1)


@settings(max_examples=1500, deadline=None)
@given(
    millis=st.integers(min_value=0, max_value=253402300799999),
    request_id=st.one_of(st.text(max_size=24), st.sampled_from(["0a1b2c3d4e5f00000001", "client-chosen-1"])),
    upstream_id=_texts,
    caller=_texts,
    model=_texts,
    backend=_texts,
    attempts=st.integers(min_value=0, max_value=10),
    status=st.integers(min_value=-1000, max_value=1000),
    tokens=st.one_of(st.none(), st.tuples(_counts, _counts, _counts, _counts)),
    cost=st.one_of(st.none(), st.floats()),
    duration=st.floats(),
    ttft=st.one_of(st.none(), st.floats()),
    error=_texts,
)
def test_the_text_line_is_the_one_python_wrote(
    millis: int, request_id: str, upstream_id: str | None, caller: str | None, model: str | None,
    backend: str | None, attempts: int, status: int, tokens: tuple[int, int, int, int] | None, cost: float | None,
    duration: float, ttft: float | None, error: str | None,
) -> None:  # fmt: skip
    fields = (request_id, upstream_id, caller, model, backend, attempts, status, tokens, cost, duration, ttft, error)
    batches = AccessLogBatches(1 << 20)
    counts = (None, 0, 0, 0) if tokens is None else tokens
    batches.text(request_id, upstream_id, caller, model, backend, attempts, status, *counts, cost, duration, ttft,
                 error, millis=millis)  # fmt: skip
    want = _reference_line(_stamp(millis), *fields)
    assert batches.drain() == (want,)
    # the module's own Python line (written for what the core does not take) is the same line
    assert _access_log._text_line(_stamp(millis), *fields) == want


def _reference_json(stamp: str, *f: Any) -> bytes:
    """The JSON line `AccessLog.write` wrote with orjson before (the dict and all)."""
    request_id, upstream_id, caller, model, backend, attempts, status, tokens, cost, duration, ttft, error = f
    fields: dict[str, Any] = {"time": stamp, "id": request_id}
    if upstream_id is not None:
        fields["upstream_id"] = upstream_id
    if caller is not None:
        fields["caller"] = caller
    if model is not None:
        fields["model"] = model
    if backend is not None:
        fields["backend"] = backend
    fields["attempts"] = attempts
    fields["status"] = status
    if tokens is not None:
        fields["input"], fields["output"], fields["cached"], fields["reasoning"] = tokens
    if cost is not None:
        fields["cost"] = cost
    fields["duration"] = round(duration, 6)
    if ttft is not None:
        fields["ttft"] = round(ttft, 6)
    if error is not None:
        fields["error"] = error
    return orjson.dumps(fields, option=orjson.OPT_APPEND_NEWLINE)


def _json_line(x: float, millis: int = 0) -> bytes:
    batches = AccessLogBatches()
    batches.json("r", None, None, None, None, 0, 200, None, 0, 0, 0, x, x, x, None, millis=millis)
    (data,) = batches.drain()
    return data


def test_json_floats_are_what_orjson_writes() -> None:
    rng = random.Random(19)
    values = [*EDGES, *(-x for x in EDGES)]
    for _ in range(30_000):
        values.append(struct.unpack("d", rng.getrandbits(64).to_bytes(8, "little"))[0])
        values.append(rng.uniform(0, 120))
        values.append(rng.uniform(0, 1) * 10 ** rng.randint(-12, 20))
        values.append(round(rng.uniform(0, 100) * 10 ** rng.randint(-8, 18), rng.randint(0, 8)))
    for x in values:
        assert _json_line(x) == _reference_json(_stamp(0), "r", None, None, None, None, 0, 200, None, x, x, x, None)


@settings(max_examples=1500, deadline=None)
@given(
    millis=st.integers(min_value=0, max_value=253402300799999),
    request_id=st.text(max_size=24),
    upstream_id=_texts,
    caller=_texts,
    model=_texts,
    backend=_texts,
    attempts=st.integers(min_value=0, max_value=10),
    status=st.integers(min_value=-1000, max_value=1000),
    tokens=st.one_of(st.none(), st.tuples(_counts, _counts, _counts, _counts)),
    cost=st.one_of(st.none(), st.floats()),
    duration=st.floats(),
    ttft=st.one_of(st.none(), st.floats()),
    error=_texts,
)
def test_the_json_line_is_the_one_orjson_wrote(
    millis: int, request_id: str, upstream_id: str | None, caller: str | None, model: str | None,
    backend: str | None, attempts: int, status: int, tokens: tuple[int, int, int, int] | None, cost: float | None,
    duration: float, ttft: float | None, error: str | None,
) -> None:  # fmt: skip
    fields = (request_id, upstream_id, caller, model, backend, attempts, status, tokens, cost, duration, ttft, error)
    batches = AccessLogBatches(1 << 20)
    counts = (None, 0, 0, 0) if tokens is None else tokens
    batches.json(request_id, upstream_id, caller, model, backend, attempts, status, *counts, cost, duration, ttft,
                 error, millis=millis)  # fmt: skip
    assert batches.drain() == (_reference_json(_stamp(millis), *fields),)


def test_json_numbers_that_are_not_floats_are_refused_for_python_to_write(tmp_path: Any) -> None:
    batches = AccessLogBatches()
    with pytest.raises(TypeError):
        batches.json("r", None, None, None, None, 0, 200, None, 0, 0, 0, None, 1, None, None)  # int duration
    with pytest.raises(TypeError):
        batches.json("r", None, None, None, None, 0, 200, 1.0, 0, 0, 0, None, 1.0, None, None)  # float count
    assert len(batches) == 0
    log, path = _log(tmp_path, "json")
    log.write("j2", None, None, "m", None, 0, 200, 2**64 - 1, 1, 0, 0, 3, 2, None, None)  # type: ignore[arg-type]
    log.flush()
    with open(path, "rb") as handle:
        text = handle.read()
    stamp = orjson.loads(text)["time"]
    assert text == _reference_json(stamp, "j2", None, None, "m", None, 0, 200, (2**64 - 1, 1, 0, 0), 3, 2, None, None)


def test_the_clock_is_utc_to_the_millisecond() -> None:
    rng = random.Random(7)
    moments = [0, 999, 1000, 951782400000, 951868799999, 4102444799999, int(time.time() * 1000)]
    moments += [rng.randint(0, 253402300799999) for _ in range(3000)]
    batches = AccessLogBatches(1 << 30)
    for millis in moments:
        batches.text("r", None, None, None, None, 0, 0, None, 0, 0, 0, None, 0.0, None, None, millis=millis)
    (data,) = batches.drain()
    assert [line.split(" ", 1)[0] for line in data.decode().splitlines()] == [_stamp(m) for m in moments]


def test_the_line_is_stamped_now_by_default() -> None:
    before = int(time.time() * 1000)
    stamp = _line(millis=None).split(" ", 1)[0]
    after = int(time.time() * 1000)
    assert _stamp(before) <= stamp <= _stamp(after)


def _log(tmp_path: Any, fmt: str = "text") -> tuple[AccessLog, str]:
    path = str(tmp_path / "log")
    log = AccessLog(fmt, fd=os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))
    return log, path


def _write(log: AccessLog, request_id: str, tokens: tuple[Any, Any] | None = None, model: str = "gpt-4o-mini") -> None:
    prompt, completion = (None, 0) if tokens is None else tokens
    log.write(request_id, "up", None, model, "b", 1, 200, prompt, completion, 0, 0, 1.5e-5, 0.25, 0.01, None)


def test_access_log_batches_stay_under_pipe_buf_and_a_full_one_is_written_at_once(tmp_path: Any) -> None:
    log, path = _log(tmp_path)
    sizes: list[int] = []
    real_write = os.write

    def write(fd: int, data: bytes) -> int:
        sizes.append(len(data))
        return real_write(fd, data)

    _access_log.os.write = write  # type: ignore[attr-defined]
    try:
        for index in range(40):
            _write(log, f"{index:020x}", (12, 40))
        line_size = os.path.getsize(path) if sizes else 0
        assert sizes, "40 lines of ~240 bytes are past 4096: the full batches went out before any flush"
        assert line_size == sum(sizes)
        log.flush()
        log.flush()  # nothing waits: no write
    finally:
        _access_log.os.write = real_write  # type: ignore[attr-defined]
    assert all(size <= 4096 for size in sizes)
    assert log.flushes == len(sizes)
    with open(path, "rb") as handle:
        lines = handle.read().decode().splitlines()
    assert [line.split()[2] for line in lines] == [f"id={index:020x}" for index in range(40)]
    assert lines[0].endswith(
        " request id=00000000000000000000 upstream_id=up caller=- model=gpt-4o-mini backend=b attempts=1 "
        "status=200 input=12 output=40 cached=0 reasoning=0 cost=1.5e-05 duration=0.250000 ttft=0.01 error=-"
    )


def test_a_line_longer_than_a_batch_is_written_alone_and_whole(tmp_path: Any) -> None:
    log, path = _log(tmp_path)
    _write(log, "a")
    _write(log, "b", model="m" * 5000)
    _write(log, "c")
    log.flush()
    assert log.flushes == 3
    with open(path, "rb") as handle:
        lines = handle.read().decode().splitlines()
    assert [line.split()[2] for line in lines] == ["id=a", "id=b", "id=c"]


def test_json_lines_and_text_lines_the_core_cannot_take_keep_their_bytes(tmp_path: Any) -> None:
    log, path = _log(tmp_path, "json")
    _write(log, "j1", (1, 2))
    log.flush()
    with open(path, "rb") as handle:
        line = orjson.loads(handle.read())
    assert (line["id"], line["input"], line["output"], line["cost"], line["duration"]) == ("j1", 1, 2, 1.5e-5, 0.25)

    # A float token count (not an int) and one past 64 bits: written in Python, the same line as before.
    log, path = _log(tmp_path)
    _write(log, "t1", (12.0, 2**70))
    log.flush()
    with open(path, "rb") as handle:
        text = handle.read()
    stamp = text.split(b" ", 1)[0].decode()
    reference = _reference_line(stamp, "t1", "up", None, "gpt-4o-mini", "b", 1, 200, (12.0, 2**70, 0, 0), 1.5e-5,
                                0.25, 0.01, None)  # fmt: skip
    assert text == reference


# -- the metric updates ----------------------------------------------------------------------------------------------


def _reference_record(values: Any, slots: dict[str, Any], ex: dict[str, Any]) -> None:
    """`Recorder.record`'s updates as the Python recorder made them (memoryview, bisect_left)."""
    values[slots["requests"]] += 1.0
    base = slots["duration"]
    elapsed = ex["elapsed"]
    values[base + bisect_left(HTTP, elapsed)] += 1.0
    values[base + len(HTTP) + 1] += elapsed
    if slots.get("genai") is None:
        return
    g = slots["genai"]
    values[g["duration"] + bisect_left(GENAI, elapsed)] += 1.0
    values[g["duration"] + len(GENAI) + 1] += elapsed
    tokens = ex["tokens"]
    if tokens is not None:
        for index, count in enumerate(tokens):
            if index < 2 or count:
                base = g["tokens"][index]
                values[base + bisect_left(TOKEN, count)] += 1.0
                values[base + len(TOKEN) + 1] += count
        cost = ex["cost"]
        if cost is None:
            values[g["unpriced"]] += 1.0
        elif cost:
            values[g["cost"]] += cost
    ttft = ex["ttft"]
    if ex["streamed"] and ttft is not None:
        values[g["ttft"] + bisect_left(TTFT, ttft)] += 1.0
        values[g["ttft"] + len(TTFT) + 1] += ttft
        if tokens is not None and tokens[1] > 1:
            tpot = (elapsed - ttft) / (tokens[1] - 1)
            values[g["tpot"] + bisect_left(TPOT, tpot)] += 1.0
            values[g["tpot"] + len(TPOT) + 1] += tpot


def _layout() -> dict[str, Any]:
    """Slots as `Recorder._group` lays them out (one series after the other)."""
    at = 0

    def take(width: int) -> int:
        nonlocal at
        at += width
        return at - width

    requests, duration = take(1), take(len(HTTP) + 2)
    genai = {
        "duration": take(len(GENAI) + 2),
        "tokens": [take(len(TOKEN) + 2) for _ in range(4)],
        "ttft": take(len(TTFT) + 2),
        "tpot": take(len(TPOT) + 2),
        "cost": take(1),
        "unpriced": take(1),
    }
    return {"requests": requests, "duration": duration, "genai": genai, "size": at}


def _native_group(native: StatsTable, slots: dict[str, Any]) -> int:
    g = slots.get("genai")
    if g is None:
        return native.add_group(slots["requests"], slots["duration"])
    return native.add_group(
        slots["requests"],
        slots["duration"],
        (g["duration"], *g["tokens"], g["ttft"], g["tpot"], g["cost"], g["unpriced"]),
    )


_seconds = st.one_of(
    st.floats(min_value=0, max_value=200), st.sampled_from([*HTTP, *GENAI, *TTFT, *TPOT, 0.0, 1e-9, 1e9])
)
_tokens = st.one_of(st.integers(min_value=0, max_value=2**40), st.sampled_from([0, 1, 2, *[int(b) for b in TOKEN]]))


@settings(max_examples=800, deadline=None)
@given(
    st.lists(
        st.fixed_dictionaries(
            {
                "genai": st.booleans(),
                "elapsed": _seconds,
                "streamed": st.booleans(),
                "ttft": st.one_of(st.none(), _seconds),
                "tokens": st.one_of(st.none(), st.tuples(_tokens, _tokens, _tokens, _tokens)),
                "cost": st.one_of(st.none(), st.just(0.0), st.floats(min_value=0, max_value=10)),
            }
        ),
        min_size=1,
        max_size=20,
    )
)
def test_the_core_updates_the_table_as_the_python_recorder_did(exchanges: list[dict[str, Any]]) -> None:
    layout = _layout()
    plain = {"requests": layout["requests"], "duration": layout["duration"]}
    size = layout["size"]
    memory = mmap.mmap(-1, 8 * size)
    reference = memoryview(bytearray(8 * size)).cast("d")
    native = StatsTable()
    native.bind(memory)
    groups = {True: _native_group(native, layout), False: _native_group(native, plain)}
    for ex in exchanges:
        slots = layout if ex["genai"] else plain
        _reference_record(reference, slots, ex)
        tokens = ex["tokens"]
        input_, output, cached, written = (None, 0, 0, 0) if tokens is None else tokens
        native.record(groups[ex["genai"]], ex["elapsed"], ex["streamed"], ex["ttft"], input_, output, cached,
                      written, ex["cost"])  # fmt: skip
    values = memoryview(memory).cast("d")
    assert list(values) == list(reference)  # exactly: the same float additions
    values.release()
    native.unbind()
    memory.close()


def test_a_group_past_the_table_writes_nothing_and_raises() -> None:
    memory = bytearray(8 * 20)
    native = StatsTable()
    native.bind(memory)
    assert len(native) == 20
    group = native.add_group(0, 5)  # the HTTP histogram (16 values) would end at 21: one past the end
    with pytest.raises(CoreError, match="stats table"):
        native.record(group, 0.1, False, None, None, 0, 0, 0, None)
    with pytest.raises(CoreError):
        native.add(20, 1.0)
    with pytest.raises(CoreError, match="no such group"):
        native.record(group + 1, 0.1, False, None, None, 0, 0, 0, None)
    assert bytes(memory) == bytes(160)
    fits = native.add_group(0, 2)
    native.record(fits, 0.1, False, None, None, 0, 0, 0, None)
    native.add(19, 2.0)
    values = struct.unpack("20d", memory)
    assert (values[0], values[2 + 5], values[2 + 15], values[19]) == (1.0, 1.0, 0.1, 2.0)
    native.clear_groups()
    assert native.groups == 0
    with pytest.raises(CoreError, match="no such group"):
        native.record(fits, 0.1, False, None, None, 0, 0, 0, None)


def test_the_bound_map_cannot_be_closed_under_the_core_and_unbound_writes_fail() -> None:
    memory = mmap.mmap(-1, 4096)
    native = StatsTable()
    native.bind(memory)
    with pytest.raises(BufferError):
        memory.close()
    with pytest.raises(BufferError):
        memory.resize(8192)
    native.unbind()
    assert len(native) == 0
    with pytest.raises(CoreError):
        native.add(0, 1.0)
    memory.close()
    with pytest.raises((TypeError, ValueError)):
        native.bind(memory)  # closed
    with pytest.raises(TypeError):
        native.bind(b"read-only bytes")


def test_a_table_that_grows_is_rebound_and_keeps_its_counts(tmp_path: Any) -> None:
    table = WorkerTable(str(tmp_path))
    try:
        first = table.slot("agentgateway_requests", ("n",), ("0",))
        group = table.native.add_group(first, table.slot("h", ("n",), ("0",), len(HTTP) + 2))
        table.native.record(group, 0.2, False, None, None, 0, 0, 0, None)
        size = len(table.native)
        # enough series to pass the first 1 MiB: the map is replaced (grown) at least once
        for index in range(20_000):
            table.slot("agentgateway_requests", ("n",), (f"{index:08d}",))
        assert len(table.native) > size
        table.native.record(group, 0.2, False, None, None, 0, 0, 0, None)
        table.values[first] += 1.0  # Python's view and the core's see the same memory
        assert table.values[first] == 3.0
        with open(table.path or "", "rb") as handle:
            _, _, series = read_table(handle.read())
            counts = {key: values for key, values in series}
        assert counts["agentgateway_requests", ("n",), ("0",)] == (3.0,)
        assert counts["h", ("n",), ("0",)][len(HTTP) + 1] == pytest.approx(0.4)
    finally:
        table.close(remove=True)


def test_a_full_table_records_into_its_scratch_slots() -> None:
    table = WorkerTable(None)
    try:
        assert max(len(bounds) for bounds in STATS_BUCKETS) + 2 <= SCRATCH_SLOTS
        group = table.native.add_group(table.scratch, table.scratch, (table.scratch,) * 9)
        table.native.record(group, 0.5, True, 0.1, 10, 20, 1, 1, None)
    finally:
        table.close()


def test_the_recorders_buckets_are_the_cores() -> None:
    assert STATS_BUCKETS == (
        _metrics.HTTP_DURATION_BUCKETS,
        _metrics.GENAI_DURATION_BUCKETS,
        _metrics.TOKEN_BUCKETS,
        _metrics.TTFT_BUCKETS,
        _metrics.TPOT_BUCKETS,
    )


def test_the_catalogs_cost_shortcut_is_the_general_float() -> None:
    """Catalog.cost_of prices the common case (no cache or reasoning tokens) with two terms: the same float as
    the general formula, whose other terms are 0 * price."""
    rng = random.Random(3)
    for _ in range(20_000):
        price = Price(*(rng.uniform(0, 100) * 1e-6 for _ in range(5)))
        prompt, completion = rng.randint(0, 10**7), rng.randint(0, 10**6)
        general = Catalog._cost_general(price, prompt, completion, 0, 0, 0)
        assert Catalog.cost_of(price, prompt, completion, 0, 0, 0) == general
        assert Catalog.cost(price, Tokens(prompt, completion)) == general


def test_attempts_are_counted_once_whether_their_group_or_the_loop_counts_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The usual single attempt is counted by its group's core record; failures, several attempts and none by
    the recorder's loop, as before."""
    from agentgateway.app import Gateway
    from agentgateway.config import load_config
    from agentgateway.exchange import Attempt, Exchange

    monkeypatch.delenv("AGENTGATEWAY_STATS_DIR", raising=False)
    monkeypatch.setenv("STATS_ADDR", "127.0.0.1:1")
    gateway = Gateway(
        load_config(
            "llm:\n  models:\n  - {name: m, provider: openAI, params: {apiKey: k, baseUrl: 'http://127.0.0.1:9/v1'}}\n"
        )
    )
    recorder = gateway.telemetry.recorder
    assert recorder is not None
    route = gateway.router.route("m")
    backend = route.targets(None)[0][0]  # type: ignore[arg-type]
    scope = {"type": "http", "method": "POST", "path": "/v1/chat/completions", "headers": []}

    def settle(status: int, *attempts: tuple[str, int | None]) -> None:
        exchange = Exchange(scope, [])
        exchange.route = route
        exchange.status = status
        for outcome, upstream_status in attempts:
            exchange.attempts.append(Attempt(backend, "m", 0.0, 0.1, upstream_status, outcome))
        recorder.record(exchange, 0.1, 12, 40, 0, 0, None, "")

    for _ in range(3):
        settle(200, ("ok", 200))
    settle(502, ("failed", 500))
    settle(200, ("failover", 503), ("ok", 200))
    settle(499, ("", None))
    settle(404)
    settle(200, ("ok", 200))
    _, _, series = read_table(recorder.table._map[:])
    counts = {(name, labels): values for (name, _, labels), values in series}
    attempts = {labels[2:]: values[0] for (name, labels), values in counts.items() if name.endswith("attempts")}
    assert attempts == {("ok", "200"): 5.0, ("failed", "500"): 1.0, ("failover", "503"): 1.0, ("aborted", ""): 1.0}
    retries = {labels: values[0] for (name, labels), values in counts.items() if name == "agentgateway_retries"}
    assert retries == {("m", "failover"): 1.0}
    assert sum(values[0] for (name, _), values in counts.items() if name == "agentgateway_requests") == 8.0

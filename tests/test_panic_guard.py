"""Every entry point of the Rust core runs under the panic guard (issue 20; rust/sse_core/src/guard.rs, whose unit
tests pin what the guard does: a panic becomes a CoreError naming what failed, a stateful object that panicked is
poisoned). A panic cannot be provoked from Python on purpose, so this pins the other half: no entry point of the
binding bypasses the guard. A function added without it fails here, by name."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from agentgateway import _core

CORE = Path(__file__).resolve().parents[1] / "rust" / "sse_core" / "src"
#: the binding's sources: python.rs, and the ``mod python`` of a core module that registers its own functions
BINDINGS = (CORE / "python.rs", CORE / "tokenize.rs")
#: what running under the guard looks like in a body
GUARDS = ("guarded(", ".guarded(", ".guarded_value(", "self.call(", "self.fact(")


def _body(lines: list[str], start: int) -> str:
    """The text of the function whose ``fn`` line is ``lines[start]``, to its closing brace."""
    depth, seen, out = 0, False, []
    for line in lines[start:]:
        out.append(line)
        depth += line.count("{") - line.count("}")
        seen = seen or "{" in line
        if seen and depth <= 0:
            break
    return "\n".join(out)


def entry_points() -> dict[str, str]:
    """``file:function`` (``file:Type.method``) -> body, for every ``#[pyfunction]`` and every method of a
    ``#[pymethods]`` block."""
    found: dict[str, str] = {}
    for path in BINDINGS:
        if not path.exists():
            continue
        lines = path.read_text().splitlines()
        in_methods, depth, pending, owner = False, 0, False, ""
        for index, line in enumerate(lines):
            stripped = line.strip()
            if stripped == "#[pyfunction]" or stripped.startswith("#[pyfunction("):
                pending = True
            elif stripped == "#[pymethods]":
                in_methods, depth = True, 0
                continue
            if in_methods and depth == 0 and (impl := re.match(r"impl (\w+)", stripped)):
                owner = impl.group(1) + "."
            match = re.match(r"\s*(?:pub(?:\(crate\))? )?fn (\w+)", line)
            if match and (pending or (in_methods and depth == 1)):
                found[f"{path.name}:{owner if in_methods else ''}{match.group(1)}"] = _body(lines, index)
                pending = False
            if in_methods:
                depth += line.count("{") - line.count("}")
                if depth == 0 and "}" in line:
                    in_methods = False
    return found


def test_the_scan_finds_the_entry_points() -> None:
    names = set(entry_points())
    for expected in (
        "python.rs:PyStreamTranslator.new",
        "python.rs:PyStreamTranslator.feed",
        "python.rs:PyStreamTranslator.usage",
        "python.rs:PyResponseParser.feed",
        "python.rs:PyResponseParser.keep_alive",
        "python.rs:PySigV4Signer.headers",
        "python.rs:translate_response",
        "python.rs:py_error_event",
        "python.rs:py_anthropic_error",
    ):
        assert expected in names, sorted(names)
    assert len(names) >= 20, sorted(names)


@pytest.mark.parametrize("name", sorted(entry_points()))
def test_every_entry_point_runs_under_the_panic_guard(name: str) -> None:
    body = entry_points()[name]
    assert any(guard in body for guard in GUARDS), f"{name} does not run under the panic guard:\n{body}"


def test_a_refused_call_says_what_failed() -> None:
    signer = _core.SigV4Signer("us-east-1", "bedrock", "bedrock-runtime.us-east-1.amazonaws.com", "application/json")
    with pytest.raises(_core.CoreError, match=r"^the SigV4 signer failed: the AWS credentials contain control"):
        signer.headers("/model/m/converse", b"{}", "AKIA\nEVIL", "secret", None)
    assert "internal error in the stream translator" not in (_core.CoreError.__doc__ or "")

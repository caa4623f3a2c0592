#!/usr/bin/env bash
# Instructions per transcript of the Rust core's translators and framing (issue 22), counted by
# valgrind (steadier than wall time on a shared machine): each case runs once and 101 times (the
# Python case 1001 times); the difference / 100 (1000) is one transcript's cost without the start-up. Harness: rust/sse_core/examples/core_cost.rs.
# `py:response-parser` is the Python binding's ResponseParser.feed over a Content-Length response (the
# OpenAI recording in 512-byte reads), counted the same way through the installed extension.
# Usage: benches/core_instructions.sh [case ...]   (cases: `core_cost list`, py:response-parser; default: all)
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-target}"
cargo build --quiet --release --example core_cost -p sse_core
bin="$target/release/examples/core_cost"
# The interpreter itself, not a pyenv shim (valgrind would count the shim's shell).
python=$(python3 -c 'import sys; print(sys.executable)')
parse_py='import sys
from agentgateway._core import ResponseParser
body = open("rust/sse_core/tests/data/openai_stream.sse", "rb").read()
head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-length: %d\r\n\r\n" % len(body)
response = head + body
reads = [response[i : i + 512] for i in range(0, len(response), 512)]
for _ in range(int(sys.argv[1])):
    parser = ResponseParser()
    for read in reads:
        parser.feed(read)
    parser.finish()'
count() { # instructions of `core_cost case n` (or of the Python case run n times)
    local run=("$bin" "$1" "$2")
    [ "$1" != py:response-parser ] || run=("$python" -c "$parse_py" "$2")
    PYTHONHASHSEED=0 valgrind --tool=cachegrind --cache-sim=no --cachegrind-out-file=/dev/null "${run[@]}" 2>&1 \
        | awk '/I +refs:/ { gsub(",", "", $NF); print $NF }'
}
cases=("$@")
if [ ${#cases[@]} -eq 0 ]; then
    mapfile -t cases < <("$bin" list)
    cases+=(py:response-parser)
fi
printf '%-30s %12s\n' case instructions
for case in "${cases[@]}"; do
    # Python's own work varies more from run to run: more runs.
    runs=100
    [ "$case" != py:response-parser ] || runs=1000
    one=$(count "$case" 1)
    many=$(count "$case" $((runs + 1)))
    printf '%-30s %12d\n' "$case" $(((many - one) / runs))
done

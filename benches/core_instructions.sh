#!/usr/bin/env bash
# Instructions per transcript of the Rust core's translators and framing (issue 22), counted by
# valgrind (steadier than wall time on a shared machine): each case runs once and 101 times; the
# difference / 100 is one transcript's cost without the start-up. Harness: rust/sse_core/examples/core_cost.rs.
# Usage: benches/core_instructions.sh [case ...]   (cases: `core_cost list`; default: all)
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-target}"
cargo build --quiet --release --example core_cost -p sse_core
bin="$target/release/examples/core_cost"
count() { # instructions of `core_cost case n`
    valgrind --tool=cachegrind --cache-sim=no --cachegrind-out-file=/dev/null "$bin" "$1" "$2" 2>&1 \
        | awk '/I *refs:/ { gsub(",", "", $NF); print $NF }'
}
cases=("$@")
[ ${#cases[@]} -gt 0 ] || mapfile -t cases < <("$bin" list)
printf '%-30s %12s\n' case instructions
for case in "${cases[@]}"; do
    one=$(count "$case" 1)
    many=$(count "$case" 101)
    printf '%-30s %12d\n' "$case" $(((many - one) / 100))
done

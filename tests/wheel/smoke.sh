#!/usr/bin/env bash
# The prebuilt wheel, as a user gets it (issue 9): build the sdist, build the manylinux2014 abi3 wheel from that
# sdist (one release build, and proof the sdist is complete), then install the wheel into a fresh virtualenv
# with no Rust toolchain reachable, and run the installed `agentgateway --demo` against the openai SDK.
#
#   bash tests/wheel/smoke.sh            (`make test-wheel`; part of `make test`)
#
# Needs Python >= 3.10 with venv, a Rust toolchain for the build step, and PyPI (maturin, ziglang, the
# package's dependencies, openai). Everything lands in a temporary directory that is removed at the end
# (KEEP_WHEEL_TEST=1 keeps it). CARGO_TARGET_DIR is honoured (default: the checkout's target/).
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
python=${PYTHON:-python3}
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$repo/target}
started=$SECONDS

work=$(mktemp -d "${TMPDIR:-/tmp}/agentgateway-wheel.XXXXXX")
pidfile=$work/gateway.pid

cleanup() {
    local status=$?
    trap - EXIT INT TERM
    # check_wheel.py stops the gateway itself; this covers that script dying first.
    if [[ -s $pidfile ]]; then
        local pid
        pid=$(<"$pidfile")
        if kill -0 "$pid" 2>/dev/null; then
            kill -TERM -- "-$pid" 2>/dev/null || true
            for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            kill -KILL -- "-$pid" 2>/dev/null || true
        fi
    fi
    if ((status != 0)); then
        [[ -f $work/gateway.log ]] && { echo "--- gateway log (last 40 lines)"; tail -n 40 "$work/gateway.log"; } >&2
        echo "FAIL wheel test (exit $status) after $((SECONDS - started)) s" >&2
    fi
    if [[ ${KEEP_WHEEL_TEST:-} == 1 ]]; then echo "kept $work" >&2; else rm -rf "$work"; fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

step() { printf '\n== %s (%d s)\n' "$*" "$((SECONDS - started))"; }

step "build tools: maturin + ziglang in $work/build-venv"
"$python" -m venv --upgrade-deps "$work/build-venv" >/dev/null
# ziglang (zig as a PyPI wheel: no container, no system toolchain) links against glibc 2.17 for manylinux2014;
# bounded to the zig releases this was checked with, as maturin's zig support follows zig's changes.
"$work/build-venv/bin/python" -m pip install --quiet "maturin>=1.9.3,<2" "ziglang>=0.13,<0.18"
maturin=$work/build-venv/bin/maturin

step "sdist"
# maturin finds zig through `python -m ziglang`, so the build venv goes first on PATH.
(cd "$repo" && PATH=$work/build-venv/bin:$PATH "$maturin" sdist --out "$work/dist")
sdist=$(echo "$work"/dist/*.tar.gz)
mkdir "$work/src"
tar -xzf "$sdist" -C "$work/src"

step "wheel from the sdist: --release --zig --compatibility manylinux2014"
(cd "$work"/src/*/ && PATH=$work/build-venv/bin:$PATH "$maturin" build --release --zig \
    --compatibility manylinux2014 --out "$work/dist")
wheel=$(echo "$work"/dist/*.whl)
"$python" "$repo/tests/wheel/check_wheel.py" artifacts "$wheel" "$sdist"

# From here on no Rust: cargo/rustc/rustup resolve to stubs that fail, and no PATH entry holding a toolchain
# is kept, so any attempt to compile would fail loudly instead of passing by accident.
no_rust=$work/no-rust
mkdir "$no_rust"
for tool in cargo rustc rustup; do
    printf '#!/bin/sh\necho "%s: no Rust toolchain in the wheel test" >&2\nexit 127\n' "$tool" >"$no_rust/$tool"
    chmod +x "$no_rust/$tool"
done
clean_path=$no_rust
IFS=: read -r -a path_dirs <<<"$PATH"
for dir in "${path_dirs[@]}"; do
    [[ -n $dir && ! -x $dir/cargo && ! -x $dir/rustc ]] && clean_path+=":$dir"
done
no_rust_env=(env PATH="$clean_path" CARGO=/bin/false RUSTC=/bin/false CARGO_HOME="$work/no-cargo-home"
    RUSTUP_HOME="$work/no-rustup-home" "NO_PROXY=127.0.0.1,localhost" "no_proxy=127.0.0.1,localhost")
unset CARGO_TARGET_DIR

step "fresh virtualenv, pip install --only-binary :all: (no Rust on PATH)"
venv=$work/venv
"${no_rust_env[@]}" "$python" -m venv --upgrade-deps "$venv" >/dev/null
[[ $("${no_rust_env[@]}" sh -c 'command -v cargo') == "$no_rust/cargo" ]] || { echo "cargo still reachable" >&2; exit 1; }
"${no_rust_env[@]}" "$venv/bin/python" -m pip install --quiet --only-binary :all: "$wheel" openai
"${no_rust_env[@]}" "$venv/bin/agentgateway" --version

step "installed: metadata, agentgateway --demo, openai SDK, SIGTERM"
(cd "$work" && "${no_rust_env[@]}" "$venv/bin/python" "$repo/tests/wheel/check_wheel.py" installed \
    --agentgateway "$venv/bin/agentgateway" --log "$work/gateway.log" --pidfile "$pidfile")

# abi3: the same wheel imports under every other CPython 3.10+ this machine has (pyenv's too).
step "abi3: the core imports under the other CPythons here"
mapfile -t others < <(
    {
        for v in 10 11 12 13 14; do command -v "python3.$v" || true; done
        if command -v pyenv >/dev/null; then ls -d "$(pyenv root)"/versions/3.1[0-9]*/bin/python3 2>/dev/null || true; fi
    } | while read -r exe; do
        "$exe" -c 'import sys; assert sys.version_info >= (3, 10); print(sys.executable)' 2>/dev/null || true
    done | sort -u
)
venv_base=$("$venv/bin/python" -c 'import sys; print(sys.base_prefix)')
for i in "${!others[@]}"; do
    exe=${others[$i]}
    [[ $("$exe" -c 'import sys; print(sys.base_prefix)') == "$venv_base" ]] && continue
    abi_venv=$work/venv-abi3-$i
    "${no_rust_env[@]}" "$exe" -m venv "$abi_venv" >/dev/null
    "${no_rust_env[@]}" "$abi_venv/bin/python" -m pip install --quiet --no-deps --only-binary :all: "$wheel"
    (cd "$work" && "${no_rust_env[@]}" "$abi_venv/bin/python" -c \
        'import os, sys, agentgateway, agentgateway._core as c; v = sys.version.split()[0]
print(f"ok  CPython {v}: agentgateway {agentgateway.__version__}, {os.path.basename(c.__file__)}")')
done

step "done: $(basename "$wheel"), $(basename "$sdist")"
echo "wheel test passed in $((SECONDS - started)) s"

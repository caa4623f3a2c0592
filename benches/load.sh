#!/usr/bin/env bash
# The load bench: the gateway against an nginx proxy_pass, plain and streamed, in CPU µs per request.
# Method and results: benches/README.md. Settings from the environment: DURATION (s, default 8), CONNS (32),
# WORKERS (1), ROUNDS (3), RATE (requests/s of the latency phase, 1000; 0 skips it), LATENCY_SECONDS (10),
# PROVIDERS (chat rows), MESSAGES (providers of the /v1/messages rows, none by default),
# MEMORY_REQUESTS (requests of the memory run, 0 = none), PYTHON (python3; needs the gateway's dependencies).
# Writes benches/results.md.
# load.py stops every process it started on exit, on failure and on SIGINT/SIGTERM/SIGHUP.
set -euo pipefail
export PATH="$PATH:/usr/sbin:/sbin"  # nginx lives in /usr/sbin
missing=()
for tool in nginx wrk; do
  command -v "$tool" >/dev/null || missing+=("$tool")
done
if ((${#missing[@]})); then
  echo "benches/load.sh: ${missing[*]} not found; install with: sudo apt-get install -y nginx wrk" >&2
  exit 1
fi
# The fixed-rate latency phase uses vegeta (open-loop load); fetched with Go when missing, else that phase is skipped.
if ! command -v vegeta >/dev/null && [ ! -x "$HOME/go/bin/vegeta" ] && command -v go >/dev/null; then
  echo "benches/load.sh: installing vegeta with go install" >&2
  go install github.com/tsenart/vegeta/v12@v12.13.0 || echo "benches/load.sh: no vegeta: latency phase skipped" >&2
fi
here=$(cd "$(dirname "$0")" && pwd)
exec "${PYTHON:-python3}" "$here/load.py" "$@"

#!/usr/bin/env bash
# Starts `pier serve` on a free loopback port with a temporary data directory, runs libpier's
# tests and examples against it, stops it; exits non-zero on any failure.
# Env: PIER_BIN (default .build/debug/pier, relative to the current directory or the repository
# root), PIER_C_ASAN=1 (also run the tests built with AddressSanitizer/UBSan),
# PIER_C_VALGRIND=1 (also run the tests under valgrind), PIER_C_RESTART=0 (skip the check that
# kills and restarts the server under an idempotent producer).
set -euo pipefail

client_dir="$(cd "$(dirname "$0")/.." && pwd)"
repo_dir="$(cd "$client_dir/../.." && pwd)"

bin="${PIER_BIN:-.build/debug/pier}"
if [[ "$bin" != /* ]]; then
    if [[ -x "$PWD/$bin" ]]; then bin="$PWD/$bin"; else bin="$repo_dir/$bin"; fi
fi
[[ -x "$bin" ]] || { echo "pier binary not found at $bin (set PIER_BIN)" >&2; exit 2; }

# Ask the kernel for a free port; the tiny race with other processes is acceptable in CI.
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null \
        || echo $((20000 + RANDOM % 20000)))"
endpoint="127.0.0.1:$port"
work="$(mktemp -d)"
server_pid=""

cleanup() {
    local rc=$?
    if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2>/dev/null; then
        kill -TERM "$server_pid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    if [[ $rc -ne 0 && -f "$work/server.log" ]]; then
        echo "--- last lines of the server log ---" >&2
        tail -n 40 "$work/server.log" >&2 || true
    fi
    rm -rf "$work"
    exit $rc
}
trap cleanup EXIT INT TERM

mkdir -p "$work/data"

# `timeout` bounds the server's life even if this script is killed without running the trap.
start_server() {
    timeout 1800 "$bin" serve --listen "$endpoint" --data-dir "$work/data" >>"$work/server.log" 2>&1 &
    server_pid=$!
    for i in $(seq 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
        kill -0 "$server_pid" 2>/dev/null || { echo "pier exited during startup" >&2; return 1; }
        sleep 0.1
    done
    echo "pier did not listen on $endpoint within 10 s" >&2
    return 1
}

start_server
echo "pier serving on $endpoint"

cd "$client_dir"
make -s all
export PIER_ENDPOINT="$endpoint"

status=0
timeout 600 make -s test || status=1
for ex in kv watch produce consume; do
    echo "--- example $ex"
    timeout 120 "build/examples/$ex" "$endpoint" || { echo "example $ex failed" >&2; status=1; }
done
if [[ "${PIER_C_RESTART:-1}" == 1 ]]; then
    echo "--- restart check (kill -9 and restart the server under an idempotent producer)"
    timeout 300 build/tests/producer-restart "$endpoint" 600000 &
    producer_pid=$!
    sleep 1
    # The server is timeout's child: kill it as a crash would, keep the data directory.
    victim="$(cat "/proc/$server_pid/task/$server_pid/children" 2>/dev/null || pgrep -P "$server_pid" || true)"
    kill -KILL ${victim:-$server_pid} 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    start_server || status=1
    wait "$producer_pid" || { echo "restart check failed" >&2; status=1; }
fi
if [[ "${PIER_C_ASAN:-0}" == 1 ]]; then
    timeout 900 make -s asan-test || status=1
fi
if [[ "${PIER_C_VALGRIND:-0}" == 1 ]]; then
    timeout 1800 make -s valgrind-test || status=1
fi
exit $status

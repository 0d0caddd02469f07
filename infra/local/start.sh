#!/usr/bin/env bash
# Start, on this machine only, a Ray head (token auth ON, dashboard and Jobs API on
# 127.0.0.1) and an MLflow tracking server (127.0.0.1, one worker, sqlite, local
# artifact root, artifacts served through the server). Everything they write
# (PIDs, logs, the Ray temp dir, the auth token, env files) lives in one folder.
#
# usage: infra/local/start.sh [--dir DIR] [ray|mlflow|all] [-- EXTRA `ray start` ARGS]
#
#   DIR                      state folder (default $ZEROSUM_LOCAL_DIR, else ./.zerosum-local)
#   ZEROSUM_RAY_PORT         GCS port (default 6379)
#   ZEROSUM_DASHBOARD_PORT   dashboard / Jobs API port (default 8265)
#   ZEROSUM_MLFLOW_PORT      MLflow port (default 5000)
#   ZEROSUM_RAY_NUM_CPUS     logical CPUs of the head (default: all)
#   ZEROSUM_BIN              folder with ray, mlflow, python (default: the repo's .venv/bin)
#   ZEROSUM_START_TIMEOUT    seconds to wait for each server (default 120)
#   RAY_AUTH_TOKEN / RAY_AUTH_TOKEN_PATH   use this token; else DIR/auth_token is created
#
# Then: source DIR/env.sh   (RAY_AUTH_MODE, RAY_ADDRESS, RAY_API_SERVER_ADDRESS,
#                            RAY_AUTH_TOKEN_PATH, MLFLOW_TRACKING_URI)
#       zerosum submit jobs/digits-dcgan.yaml --wait
# Ray binds its internal ports (GCS, raylet, agents) on the machine's address, not only
# 127.0.0.1: token auth guards them; keep this machine's firewall closed to them.
# Stop with infra/local/stop.sh (same --dir).
set -euo pipefail
usage() { sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//'; }
# shellcheck source=common.sh
source "$(dirname "$0")/common.sh"
parse_args "$@"
find_bin

RAY_PORT="${ZEROSUM_RAY_PORT:-6379}"
DASHBOARD_PORT="${ZEROSUM_DASHBOARD_PORT:-8265}"
MLFLOW_PORT="${ZEROSUM_MLFLOW_PORT:-5000}"
TIMEOUT="${ZEROSUM_START_TIMEOUT:-120}"

# The token: RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH if given, else a new random one
# in DIR/auth_token (mode 600). Never ~/.ray/auth_token: that belongs to the user.
setup_token() {
    if [ -n "${RAY_AUTH_TOKEN:-}" ]; then
        TOKEN_NOTE="RAY_AUTH_TOKEN from the environment"
        return
    fi
    if [ -z "${RAY_AUTH_TOKEN_PATH:-}" ]; then
        export RAY_AUTH_TOKEN_PATH="$STATE_DIR/auth_token"
        if [ ! -s "$RAY_AUTH_TOKEN_PATH" ]; then
            (umask 077 && "$BIN/python" -c 'import secrets; print(secrets.token_hex(32))' >"$RAY_AUTH_TOKEN_PATH")
        fi
    fi
    if [ ! -s "$RAY_AUTH_TOKEN_PATH" ]; then
        echo "error: RAY_AUTH_TOKEN_PATH=$RAY_AUTH_TOKEN_PATH is missing or empty" >&2
        exit 2
    fi
    TOKEN_NOTE="RAY_AUTH_TOKEN_PATH=$RAY_AUTH_TOKEN_PATH"
}

# give_up KEY: stop what this run started (ray|mlflow) and fail.
give_up() {
    bash "$(dirname "$0")/stop.sh" --dir "$STATE_DIR" "$1" >/dev/null 2>&1 || true
    exit 1
}

# wait_http KEY NAME LOG URL [auth]: poll URL until it answers 200; give up if the process
# dies, after TIMEOUT, or at once if the server refuses our token (another Ray head there?).
wait_http() {
    local key="$1" name="$2" log="$3" url="$4" auth="${5:-}" deadline=$((SECONDS + TIMEOUT)) code
    local pidfile="$STATE_DIR/$key.pid"
    while true; do
        code=0
        ZS_URL="$url" ZS_AUTH="$auth" "$BIN/python" - <<'PY' 2>/dev/null || code=$?
import os, pathlib, sys, urllib.error, urllib.request
request = urllib.request.Request(os.environ["ZS_URL"])
if os.environ["ZS_AUTH"]:
    token = os.environ.get("RAY_AUTH_TOKEN") or pathlib.Path(os.environ["RAY_AUTH_TOKEN_PATH"]).read_text().strip()
    request.add_header("Authorization", f"Bearer {token}")
try:
    sys.exit(0 if urllib.request.urlopen(request, timeout=3).status == 200 else 1)
except urllib.error.HTTPError as err:
    sys.exit(3 if err.code in (401, 403) else 1)
PY
        if [ "$code" -eq 0 ]; then return 0; fi
        if [ "$code" -eq 3 ]; then
            echo "error: $url refuses this token: is another Ray head using that port? (see $log)" >&2
            give_up "$key"
        fi
        if ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then
            echo "error: $name exited during start; last lines of $log:" >&2
            tail -n 30 "$log" >&2
            give_up "$key"
        fi
        if [ "$SECONDS" -ge "$deadline" ]; then
            echo "error: $name did not answer at $url within ${TIMEOUT}s; see $log" >&2
            give_up "$key"
        fi
        sleep 1
    done
}

start_ray() {
    local pidfile="$STATE_DIR/ray.pid" log="$STATE_DIR/logs/ray-head.log" cpus=()
    if pid_alive "$pidfile"; then
        echo "error: a Ray head from $STATE_DIR is already running (pid $(cat "$pidfile"))" >&2
        exit 2
    fi
    setup_token
    export RAY_AUTH_MODE=token
    # Ray's sockets live under RAY_TMPDIR; keep the path short (107-byte socket limit).
    RAY_TMPDIR="${RAY_TMPDIR:-$STATE_DIR}"
    mkdir -p "$RAY_TMPDIR"
    RAY_TMPDIR="$(cd "$RAY_TMPDIR" && pwd)"
    export RAY_TMPDIR
    echo "$RAY_TMPDIR" >"$STATE_DIR/ray.tmpdir"
    # Draining on SIGTERM is for Serve replicas; a local head stops at once (stop.sh).
    export RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S="${RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S:-0}"
    # Job entrypoints run `python ...`: make it this environment's python.
    export PATH="$BIN:$PATH"
    if [ -n "${ZEROSUM_RAY_NUM_CPUS:-}" ]; then cpus=(--num-cpus "$ZEROSUM_RAY_NUM_CPUS"); fi
    # --block keeps one foreground process that owns the head: stop.sh sends it SIGTERM
    # and Ray tears down its own processes. setsid gives it a process group to clean up.
    setsid "$BIN/ray" start --head --block --port "$RAY_PORT" \
        --dashboard-host 127.0.0.1 --dashboard-port "$DASHBOARD_PORT" --disable-usage-stats \
        "${cpus[@]}" "${EXTRA_RAY_ARGS[@]}" >"$log" 2>&1 </dev/null &
    echo $! >"$pidfile"
    wait_http ray "Ray head" "$log" "http://127.0.0.1:$DASHBOARD_PORT/api/version" auth
    {
        echo "export RAY_AUTH_MODE=token"
        echo "export RAY_ADDRESS=127.0.0.1:$RAY_PORT"
        echo "export RAY_API_SERVER_ADDRESS=http://127.0.0.1:$DASHBOARD_PORT"
        if [ -z "${RAY_AUTH_TOKEN:-}" ]; then echo "export RAY_AUTH_TOKEN_PATH=$RAY_AUTH_TOKEN_PATH"; fi
    } >"$STATE_DIR/ray.env"
    echo "Ray head:  http://127.0.0.1:$DASHBOARD_PORT (GCS 127.0.0.1:$RAY_PORT), token from $TOKEN_NOTE"
    echo "           pid $(cat "$pidfile"), log $log"
}

start_mlflow() {
    local pidfile="$STATE_DIR/mlflow.pid" log="$STATE_DIR/logs/mlflow.log" store="$STATE_DIR/mlflow"
    if pid_alive "$pidfile"; then
        echo "error: an MLflow server from $STATE_DIR is already running (pid $(cat "$pidfile"))" >&2
        exit 2
    fi
    mkdir -p "$store/artifacts"
    MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false setsid "$BIN/mlflow" server --host 127.0.0.1 \
        --port "$MLFLOW_PORT" --workers 1 --backend-store-uri "sqlite:///$store/mlflow.db" \
        --serve-artifacts --artifacts-destination "$store/artifacts" >"$log" 2>&1 </dev/null &
    echo $! >"$pidfile"
    wait_http mlflow "MLflow server" "$log" "http://127.0.0.1:$MLFLOW_PORT/health"
    echo "export MLFLOW_TRACKING_URI=http://127.0.0.1:$MLFLOW_PORT" >"$STATE_DIR/mlflow.env"
    echo "MLflow:    http://127.0.0.1:$MLFLOW_PORT (store $store), pid $(cat "$pidfile"), log $log"
}

case "$WHAT" in
    ray) start_ray ;;
    mlflow) start_mlflow ;;
    all) start_ray; start_mlflow ;;
esac
cat "$STATE_DIR"/ray.env "$STATE_DIR"/mlflow.env 2>/dev/null >"$STATE_DIR/env.sh" || true
echo "environment: source $STATE_DIR/env.sh"

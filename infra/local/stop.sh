#!/usr/bin/env bash
# Stop what infra/local/start.sh started from the same state folder, by the PIDs it
# recorded (never by process name: other Ray instances on this machine are left alone).
#
# usage: infra/local/stop.sh [--dir DIR] [ray|mlflow|all]
#   ZEROSUM_STOP_TIMEOUT   seconds to wait for a graceful stop before SIGKILL (default 30)
set -euo pipefail
usage() { sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//'; }
# shellcheck source=common.sh
source "$(dirname "$0")/common.sh"
parse_args "$@"
TIMEOUT="${ZEROSUM_STOP_TIMEOUT:-30}"

# stop_group NAME PIDFILE leader|group: SIGTERM the leader only (Ray's `ray start --block`
# shuts its own processes down) or the whole group (mlflow and its uvicorn worker), wait,
# then SIGTERM/SIGKILL whatever is left in the process group.
stop_group() {
    local name="$1" pidfile="$2" target="$3" pid deadline
    if ! pid_alive "$pidfile"; then
        echo "$name: not running"
        rm -f "$pidfile"
        return 0
    fi
    pid="$(cat "$pidfile")"
    if [ "$target" = group ]; then kill -TERM -- "-$pid" 2>/dev/null || true; else kill -TERM "$pid" 2>/dev/null || true; fi
    deadline=$((SECONDS + TIMEOUT))
    while kill -0 "$pid" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.5; done
    # setsid made pid the group id of everything it started: clear what is left of it.
    if kill -0 -- "-$pid" 2>/dev/null; then
        kill -TERM -- "-$pid" 2>/dev/null || true
        sleep 1
        kill -KILL -- "-$pid" 2>/dev/null || true
    fi
    rm -f "$pidfile"
    echo "$name: stopped (pid $pid)"
}

# Ray workers and job drivers run in process groups of their own; any that outlive the
# head still name its session folder on their command line. Only a temp dir inside this
# state folder is unique to this head: with a shared RAY_TMPDIR nothing is matched.
reap_ray_leftovers() {
    local pids tmpdir
    [ -f "$STATE_DIR/ray.tmpdir" ] || return 0
    tmpdir="$(cat "$STATE_DIR/ray.tmpdir")"
    case "$tmpdir" in
        "$STATE_DIR"|"$STATE_DIR"/*) ;;
        *) return 0 ;;
    esac
    pids="$(pgrep -f -- "$tmpdir/ray/session_" || true)"
    if [ -n "$pids" ]; then
        echo "ray: stopping leftover processes of this head: $(echo "$pids" | tr '\n' ' ')"
        # shellcheck disable=SC2086
        kill -KILL $pids 2>/dev/null || true
    fi
}

case "$WHAT" in
    ray) stop_group "Ray head" "$STATE_DIR/ray.pid" leader; reap_ray_leftovers ;;
    mlflow) stop_group "MLflow server" "$STATE_DIR/mlflow.pid" group ;;
    all)
        stop_group "MLflow server" "$STATE_DIR/mlflow.pid" group
        stop_group "Ray head" "$STATE_DIR/ray.pid" leader
        reap_ray_leftovers
        ;;
esac

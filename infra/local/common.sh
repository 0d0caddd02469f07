# Shared by start.sh and stop.sh: option parsing and the state folder.
# shellcheck shell=bash

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"

# --dir DIR wins over $ZEROSUM_LOCAL_DIR; the default is ./.zerosum-local.
STATE_DIR="${ZEROSUM_LOCAL_DIR:-$PWD/.zerosum-local}"
WHAT="all"
EXTRA_RAY_ARGS=()

parse_args() {
    while [ $# -gt 0 ]; do
        case "$1" in
            --dir) STATE_DIR="$2"; shift 2 ;;
            --dir=*) STATE_DIR="${1#--dir=}"; shift ;;
            ray|mlflow|all) WHAT="$1"; shift ;;
            --) shift; EXTRA_RAY_ARGS=("$@"); break ;;
            -h|--help) usage; exit 0 ;;
            *) echo "error: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
        esac
    done
    mkdir -p "$STATE_DIR/logs"
    STATE_DIR="$(cd "$STATE_DIR" && pwd)"
    chmod 700 "$STATE_DIR"
}

# The folder holding ray, mlflow and python: $ZEROSUM_BIN, else the repo's .venv, else PATH.
find_bin() {
    if [ -n "${ZEROSUM_BIN:-}" ]; then
        BIN="$ZEROSUM_BIN"
    elif [ -x "$REPO_ROOT/.venv/bin/ray" ]; then
        BIN="$REPO_ROOT/.venv/bin"
    else
        BIN="$(dirname "$(command -v ray || echo /nonexistent/ray)")"
    fi
    for tool in ray mlflow python; do
        if [ ! -x "$BIN/$tool" ]; then
            echo "error: $BIN/$tool not found; set ZEROSUM_BIN to the folder with ray, mlflow and python" >&2
            exit 2
        fi
    done
}

# pid_alive PIDFILE: true if the file names a live process that is still ours (its
# command line is `ray start --head` or `mlflow server`, not a recycled PID).
pid_alive() {
    local pid
    [ -f "$1" ] || return 1
    pid="$(cat "$1")"
    kill -0 "$pid" 2>/dev/null || return 1
    ps -o args= -p "$pid" 2>/dev/null | grep -Eq -- "start --head|mlflow server"
}

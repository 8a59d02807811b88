#!/usr/bin/env bash
# Manage a local Tansu broker (a Kafka-compatible broker) for the integration tests.
#
# Usage: scripts/tansu.sh <command> [args]
#
#   install                          install tansu ${TANSU_VERSION} into ${TANSU_ROOT} (skipped when
#                                    the binary is already there and reports that version);
#                                    prints TANSU_BIN=<path> on stdout
#   path                             print the binary path (exit 1 when it is not installed)
#   start [PORT]                     install if needed, start a broker with in-memory storage on
#                                    127.0.0.1:PORT (a free port when omitted), wait until it accepts
#                                    connections, print TANSU_BROKER=127.0.0.1:PORT on stdout.
#                                    Starting an already running broker just prints its address.
#   stop [PORT]                      stop the broker on PORT (all brokers started by this script
#                                    when omitted); stopping a stopped broker is not an error
#   status                           list the brokers started by this script
#   create-topic NAME PARTITIONS [PORT]
#                                    create a topic; an existing topic is not an error. PORT
#                                    defaults to $TANSU_PORT, else to the only running broker.
#
# Environment:
#   TANSU_ROOT     install root (default: $HOME/.cache/actix-kafka/tansu; binary in $TANSU_ROOT/bin)
#   TANSU_VERSION  version to install (default: 0.6.0)
#   TANSU_LOG      RUST_LOG filter for the broker (default: warn)
#   TMPDIR         state directory parent: pid and log files go to ${TMPDIR:-/tmp}/actix-kafka-tansu
#
# Human-readable messages go to stderr; only the machine-readable lines go to stdout.
set -euo pipefail

TANSU_VERSION="${TANSU_VERSION:-0.6.0}"
TANSU_ROOT="${TANSU_ROOT:-${HOME:?HOME is not set}/.cache/actix-kafka/tansu}"
TANSU_BIN_PATH="${TANSU_ROOT}/bin/tansu"
STATE_DIR="${TMPDIR:-/tmp}/actix-kafka-tansu"
START_TIMEOUT_SECS="${TANSU_START_TIMEOUT:-30}"

log() { printf 'tansu.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

usage() {
    sed -n '2,/^set -euo/p' "$0" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//' >&2
}

is_port() { [[ "${1:-}" =~ ^[0-9]+$ ]] && (( $1 > 0 && $1 < 65536 )); }

# --- install -----------------------------------------------------------------

installed_ok() {
    [[ -x "$TANSU_BIN_PATH" ]] || return 1
    local out
    out="$("$TANSU_BIN_PATH" --version 2>/dev/null)" || return 1
    [[ "$out" == *"$TANSU_VERSION"* ]]
}

cmd_install() {
    if installed_ok; then
        log "tansu ${TANSU_VERSION} already installed"
        echo "TANSU_BIN=${TANSU_BIN_PATH}"
        return 0
    fi
    command -v cargo >/dev/null 2>&1 || die "cargo not found on PATH (needed to install tansu)"
    mkdir -p "$TANSU_ROOT"
    # Serialise concurrent installs into the same root.
    local lock="${TANSU_ROOT}/.install.lock"
    exec 9>"$lock"
    if ! flock -n 9; then
        log "another install into ${TANSU_ROOT} is running; waiting for it"
        flock 9
    fi
    if installed_ok; then
        log "tansu ${TANSU_VERSION} was installed by a concurrent run"
    else
        log "installing tansu ${TANSU_VERSION} into ${TANSU_ROOT} (takes 10-20 minutes on 2 cores)"
        local started=$SECONDS
        # --force: we only get here when the binary is missing, broken or another version.
        cargo install tansu --version "$TANSU_VERSION" --locked --features dynostore \
            --root "$TANSU_ROOT" --force >&2
        installed_ok || die "tansu installed but '${TANSU_BIN_PATH} --version' does not report ${TANSU_VERSION}"
        log "installed tansu ${TANSU_VERSION} in $((SECONDS - started)) s"
    fi
    exec 9>&-
    echo "TANSU_BIN=${TANSU_BIN_PATH}"
}

ensure_installed() {
    installed_ok || cmd_install >/dev/null
}

cmd_path() {
    echo "$TANSU_BIN_PATH"
    installed_ok || { log "tansu ${TANSU_VERSION} is not installed; run: $0 install"; return 1; }
}

# --- broker processes ----------------------------------------------------------

pid_file() { echo "${STATE_DIR}/broker-$1.pid"; }
log_file() { echo "${STATE_DIR}/broker-$1.log"; }

# True when something accepts TCP connections on 127.0.0.1:$1.
port_open() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Prints the pid of our broker on port $1 if it is alive (and really is that tansu broker).
running_pid() {
    local port=$1 pf pid cmdline
    pf="$(pid_file "$port")"
    [[ -f "$pf" ]] || return 1
    pid="$(cat "$pf" 2>/dev/null || true)"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    # Guard against pid reuse: the process must be a tansu broker for this port.
    if [[ -r "/proc/$pid/cmdline" ]]; then
        cmdline="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null || true)"
        [[ "$cmdline" == *tansu*broker*"127.0.0.1:${port} "* ]] || return 1
    fi
    echo "$pid"
}

random_port() {
    local p i
    for ((i = 0; i < 200; i++)); do
        p=$((20000 + RANDOM % 40000))
        if ! port_open "$p" && [[ ! -f "$(pid_file "$p")" ]]; then
            echo "$p"
            return 0
        fi
    done
    die "could not find a free port"
}

# Launch tansu on $1; returns 0 once the port accepts connections, 1 if the process died.
launch() {
    local port=$1 lf pf pid deadline
    lf="$(log_file "$port")"
    pf="$(pid_file "$port")"
    local url="tcp://127.0.0.1:${port}"
    # Run from the state dir so tansu's dotenv loading does not pick up a stray .env file;
    # setsid detaches it from our process group so it survives this script.
    (
        cd "$STATE_DIR"
        export RUST_LOG="${TANSU_LOG:-warn},tansu_sans_io::record::deflated=error" NO_COLOR=1
        exec setsid "$TANSU_BIN_PATH" broker \
            --listener-url "$url" \
            --advertised-listener-url "$url" \
            --storage-engine "memory://tansu/" \
            </dev/null >"$lf" 2>&1
    ) &
    pid=$!
    echo "$pid" >"$pf"
    deadline=$((SECONDS + START_TIMEOUT_SECS))
    while ((SECONDS < deadline)); do
        if ! kill -0 "$pid" 2>/dev/null; then
            rm -f "$pf"
            log "broker on port ${port} exited during startup; log ${lf}:"
            tail -n 20 "$lf" >&2 || true
            return 1
        fi
        if port_open "$port"; then
            return 0
        fi
        sleep 0.2
    done
    log "broker on port ${port} did not accept connections within ${START_TIMEOUT_SECS} s; log ${lf}:"
    tail -n 20 "$lf" >&2 || true
    stop_port "$port"
    return 1
}

cmd_start() {
    local port="${1:-}" pid attempts
    [[ -z "$port" ]] || is_port "$port" || die "invalid port: $port"
    ensure_installed
    mkdir -p "$STATE_DIR"
    if [[ -n "$port" ]]; then
        if pid="$(running_pid "$port")"; then
            log "broker already running on port ${port} (pid ${pid})"
            echo "TANSU_BROKER=127.0.0.1:${port}"
            return 0
        fi
        rm -f "$(pid_file "$port")"
        port_open "$port" && die "port ${port} is already in use by another process"
        launch "$port" || die "could not start tansu on port ${port}"
    else
        for ((attempts = 0; ; attempts++)); do
            ((attempts < 5)) || die "could not start tansu (5 attempts)"
            port="$(random_port)"
            launch "$port" && break
        done
    fi
    log "broker running on 127.0.0.1:${port} (pid $(cat "$(pid_file "$port")"), log $(log_file "$port"))"
    echo "TANSU_BROKER=127.0.0.1:${port}"
}

stop_port() {
    local port=$1 pid i
    if pid="$(running_pid "$port")"; then
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < 50; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.2
        done
        if kill -0 "$pid" 2>/dev/null; then
            log "broker on port ${port} ignored SIGTERM; killing it"
            kill -KILL "$pid" 2>/dev/null || true
        fi
        log "stopped broker on port ${port} (pid ${pid})"
    else
        log "no broker running on port ${port}"
    fi
    rm -f "$(pid_file "$port")"
}

known_ports() {
    local f
    shopt -s nullglob
    for f in "$STATE_DIR"/broker-*.pid; do
        f="${f##*/broker-}"
        echo "${f%.pid}"
    done
    shopt -u nullglob
}

cmd_stop() {
    local port="${1:-}" p
    if [[ -n "$port" ]]; then
        is_port "$port" || die "invalid port: $port"
        stop_port "$port"
    else
        for p in $(known_ports); do stop_port "$p"; done
    fi
}

cmd_status() {
    local p pid any=0
    for p in $(known_ports); do
        if pid="$(running_pid "$p")"; then
            echo "127.0.0.1:${p} pid=${pid} log=$(log_file "$p")"
            any=1
        fi
    done
    ((any)) || log "no brokers running"
}

default_port() {
    if [[ -n "${TANSU_PORT:-}" ]]; then
        echo "$TANSU_PORT"
        return 0
    fi
    local p running=()
    for p in $(known_ports); do
        running_pid "$p" >/dev/null && running+=("$p")
    done
    ((${#running[@]} == 1)) || die "give a PORT (or set TANSU_PORT): ${#running[@]} brokers are running"
    echo "${running[0]}"
}

cmd_create_topic() {
    local name="${1:-}" partitions="${2:-}" port="${3:-}" out rc
    [[ -n "$name" && "$partitions" =~ ^[0-9]+$ ]] || die "usage: $0 create-topic NAME PARTITIONS [PORT]"
    [[ -n "$port" ]] || port="$(default_port)"
    is_port "$port" || die "invalid port: $port"
    ensure_installed
    set +e
    out="$(cd "${TMPDIR:-/tmp}" && NO_COLOR=1 "$TANSU_BIN_PATH" topic create "$name" \
        --broker "tcp://127.0.0.1:${port}" --partitions "$partitions" 2>&1)"
    rc=$?
    set -e
    if ((rc == 0)); then
        log "created topic ${name} with ${partitions} partitions on port ${port}"
    elif [[ "$out" == *"already exists"* ]]; then
        log "topic ${name} already exists on port ${port}"
    else
        printf '%s\n' "$out" >&2
        die "could not create topic ${name} on port ${port}"
    fi
}

main() {
    local cmd="${1:-}"
    [[ $# -gt 0 ]] && shift
    case "$cmd" in
        install) cmd_install "$@" ;;
        path) cmd_path "$@" ;;
        start) cmd_start "$@" ;;
        stop) cmd_stop "$@" ;;
        status) cmd_status "$@" ;;
        create-topic) cmd_create_topic "$@" ;;
        -h | --help | help) usage ;;
        *) usage; die "unknown command: ${cmd:-<none>}" ;;
    esac
}

main "$@"

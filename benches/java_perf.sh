#!/usr/bin/env bash
# The Java producer's perf tool (org.apache.kafka.tools.ProducerPerformance, what
# kafka-producer-perf-test.sh runs; Kafka's own client, the version scripts/kafka.sh installs) with
# the command line and the output of examples/producer_perf.rs and examples/rdkafka_perf.rs, so
# benches/race.sh can race it as a third client.
#
# Usage: benches/java_perf.sh --topic T --num-records N --record-size BYTES --throughput RPS
#            --bootstrap-server HOST:PORT [--report-interval-ms MS] [--stall-timeout-s S]
#            [--producer.config FILE] [--producer-props KEY=VALUE ...]
#
#   --producer-props       producer properties (Java names), up to the next --flag; passed on to
#                          ProducerPerformance's --producer-props together with
#                          bootstrap.servers=HOST:PORT from --bootstrap-server
#   --report-interval-ms   passed on as --reporting-interval (progress line period, default 5000)
#   --transactional-id, --transaction-duration-ms
#                          passed on (a transactional run, committing every that many ms)
#   --stall-timeout-s      ProducerPerformance has no such option: this wrapper stops the tool
#                          (exit 4) when it printed neither a progress line (one per interval
#                          while records complete) nor an exception (a failed record) for
#                          max(S, interval + 5 s) (default 60, 0 = never)
#   --delivery, --send-batch and other options of the Rust tools that the Java tool lacks are
#   ignored.
#
# It runs `bash scripts/kafka.sh run-class org.apache.kafka.tools.ProducerPerformance ...` (which
# execs `java -Xmx256m -cp KAFKA_HOME/libs/*`; `bash scripts/kafka.sh install` must have run, or
# run-class installs first) under `/usr/bin/time -f '%U %S %M'`, keeps the tool's output, then parses
# its final summary line
#   N records sent, X records/sec (Y MB/sec), A ms avg latency, M ms max latency, P50 ms 50th,
#   P95 ms 95th, P99 ms 99th, P999 ms 99.9th.
# and prints, like the Rust tools,
#   RESULT impl=java records=N size=BYTES errors=E secs=... rps=... mbps=... avg_ms=... p50_ms=...
#          p95_ms=... p99_ms=... p999_ms=... max_ms=... cpu_s=... cpu_s_per_M=... rss_peak_mb=...
#
# Differences from the Rust tools' figures, to keep in mind when comparing:
#   - cpu_s is user+sys of the whole JVM process from its first instruction to exit: JVM start-up,
#     class loading, the JIT compiling the hot paths (a few CPU seconds on a small machine) and GC
#     threads all count, and kafka.sh's short `java -version` probe too. The Rust tools count
#     from just before the producer is created. cpu_s_per_M = cpu_s / (records / 1e6), so
#     short runs make Java look more expensive than its steady state is.
#   - rss_peak_mb is the JVM's peak RSS (%M of /usr/bin/time, KiB / 1024), heap capped at 256 MiB
#     (-Xmx256m of run-class).
#   - latencies are whole milliseconds (System.currentTimeMillis), percentiles of a sample of at
#     most 500000 records; secs = records / rps (the tool prints no elapsed time).
#   - records = acknowledged records; errors = records requested - records acknowledged (the tool
#     prints a stack trace per failed record and counts only the successful ones).
#
# Exit codes (as the Rust tools): 0 ok, 1 records failed / the tool failed / no summary line,
# 2 usage, 3 configuration rejected (ConfigException before anything was sent), 4 stalled.
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$PWD"

die_usage() {
    echo "java_perf.sh: $*" >&2
    sed -n '7,9p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

TOPIC="" NUM="" SIZE="" TPUT="" BOOTSTRAP="" REPORT_MS=5000 STALL_S=60 CONFIG_FILE=""
PROPS=()
IGNORED=()
TXN_ID=""
TXN_MS=""
while (($#)); do
    arg=$1
    shift
    val=""
    has_val=0
    if [[ "$arg" == --*=* ]]; then
        val="${arg#*=}"
        arg="${arg%%=*}"
        has_val=1
    fi
    case "$arg" in
        --topic | --num-records | --record-size | --throughput | --bootstrap-server | --bootstrap-servers | \
            --report-interval-ms | --stall-timeout-s | --producer.config | --producer-config | \
            --transactional-id | --transaction-duration-ms)
            if ((!has_val)); then
                (($#)) || die_usage "$arg needs a value"
                val=$1
                shift
            fi
            case "$arg" in
                --topic) TOPIC=$val ;;
                --num-records) NUM=$val ;;
                --record-size) SIZE=$val ;;
                --throughput) TPUT=$val ;;
                --bootstrap-server | --bootstrap-servers) BOOTSTRAP=$val ;;
                --report-interval-ms) REPORT_MS=$val ;;
                --stall-timeout-s) STALL_S=$val ;;
                --producer.config | --producer-config) CONFIG_FILE=$val ;;
                --transactional-id) TXN_ID=$val ;;
                --transaction-duration-ms) TXN_MS=$val ;;
            esac
            ;;
        --producer-props)
            ((has_val)) && PROPS+=("$val")
            while (($#)) && [[ "$1" != --* ]]; do
                PROPS+=("$1")
                shift
            done
            ;;
        -h | --help)
            sed -n '2,/^set -uo/p' "$0" | sed -e '/^set -uo/d' -e 's/^# \{0,1\}//'
            exit 0
            ;;
        --*)
            # An option of the Rust tools the Java tool lacks (--delivery X, --send-batch N, ...):
            # skip it and its value, if it has one.
            if ((has_val)); then
                IGNORED+=("$arg=$val")
            else
                IGNORED+=("$arg")
            fi
            if ((!has_val)) && (($#)) && [[ "$1" != --* ]]; then
                IGNORED+=("$1")
                shift
            fi
            ;;
        *) die_usage "unexpected argument: $arg" ;;
    esac
done
[[ -n "$TOPIC" ]] || die_usage "--topic is required"
[[ "$NUM" =~ ^[1-9][0-9]*$ ]] || die_usage "--num-records must be a positive integer"
[[ "$SIZE" =~ ^[1-9][0-9]*$ ]] || die_usage "--record-size must be a positive integer"
[[ "$TPUT" =~ ^-?[0-9]+(\.[0-9]+)?$ ]] || die_usage "--throughput must be a number (-1: unthrottled)"
[[ "$REPORT_MS" =~ ^[1-9][0-9]*$ ]] || die_usage "--report-interval-ms must be a positive integer"
[[ "$STALL_S" =~ ^[0-9]+$ ]] || die_usage "--stall-timeout-s must be a non-negative integer"
[[ -x /usr/bin/time ]] || { echo "java_perf.sh: /usr/bin/time not found (apt-get install time)" >&2; exit 1; }

# bootstrap.servers: --bootstrap-server wins over one given in --producer-props.
ALL_PROPS=()
for p in "${PROPS[@]}"; do
    [[ -n "$BOOTSTRAP" && "$p" == bootstrap.servers=* ]] && continue
    ALL_PROPS+=("$p")
done
[[ -n "$BOOTSTRAP" ]] && ALL_PROPS=("bootstrap.servers=$BOOTSTRAP" "${ALL_PROPS[@]}")
if [[ -z "$BOOTSTRAP" && -z "$CONFIG_FILE" ]] && ! printf '%s\n' "${ALL_PROPS[@]}" | grep -q '^bootstrap.servers='; then
    die_usage "no bootstrap.servers: give --bootstrap-server or --producer-props bootstrap.servers=.."
fi

TMP="$(mktemp -d "${TMPDIR:-/tmp}/java_perf.XXXXXX")" || exit 1
OUT_FILE="$TMP/out"
TIME_FILE="$TMP/time"
: >"$OUT_FILE"
CHILD=""
TAIL=""
stop_child() { # SIGTERM to the JVM (the child of /usr/bin/time: run-class execs java)
    [[ -n "$CHILD" ]] || return 0
    pkill -TERM -P "$CHILD" 2>/dev/null
    kill -TERM "$CHILD" 2>/dev/null
}
on_exit() {
    stop_child
    [[ -n "$TAIL" ]] && kill "$TAIL" 2>/dev/null
    rm -rf "$TMP"
}
trap on_exit EXIT
trap 'stop_child; exit 143' TERM
trap 'stop_child; exit 130' INT

cmd=(bash "$ROOT/scripts/kafka.sh" run-class org.apache.kafka.tools.ProducerPerformance
    --topic "$TOPIC" --num-records "$NUM" --record-size "$SIZE" --throughput "$TPUT"
    --reporting-interval "$REPORT_MS")
[[ -n "$CONFIG_FILE" ]] && cmd+=(--producer.config "$CONFIG_FILE")
[[ -n "$TXN_ID" ]] && cmd+=(--transactional-id "$TXN_ID")
[[ -n "$TXN_MS" ]] && cmd+=(--transaction-duration-ms "$TXN_MS")
((${#ALL_PROPS[@]})) && cmd+=(--producer-props "${ALL_PROPS[@]}")
echo "java_perf.sh: ${cmd[*]}"
((${#IGNORED[@]})) && echo "java_perf.sh: ignored (the Java tool has no such option): ${IGNORED[*]}"

/usr/bin/time -f '%U %S %M' -o "$TIME_FILE" "${cmd[@]}" >"$OUT_FILE" 2>&1 </dev/null &
CHILD=$!
# Live copy of the tool's output (progress lines); ends by itself once the tool has exited.
tail -s 0.2 -n +1 -f --pid="$CHILD" "$OUT_FILE" &
TAIL=$!

# Wait for the tool. Stall watchdog: progress ("N records sent, ...") or exception lines (a
# failed record prints a stack trace) show that records complete; client log lines (e.g. WARN
# "could not connect") do not.
STALL_LIMIT=0
((STALL_S > 0)) && STALL_LIMIT=$((STALL_S > REPORT_MS / 1000 + 5 ? STALL_S : REPORT_MS / 1000 + 5))
STALLED=0
read_to=0
last_progress=$SECONDS
while kill -0 "$CHILD" 2>/dev/null; do
    sleep 0.5
    size="$(stat -c %s "$OUT_FILE" 2>/dev/null || echo 0)"
    if ((size > read_to)); then
        if tail -c +$((read_to + 1)) "$OUT_FILE" | head -c $((size - read_to)) |
            grep -qE '^[0-9]+ records sent, |^[A-Za-z0-9_.$]+(Exception|Error)(: |$)'; then
            last_progress=$SECONDS
        fi
        read_to=$size
    fi
    if ((STALL_LIMIT > 0 && SECONDS - last_progress >= STALL_LIMIT)); then
        STALLED=1
        stop_child
        break
    fi
done
wait "$CHILD"
rc=$?
CHILD=""
wait "$TAIL" 2>/dev/null
TAIL=""

# The summary: the last "... records sent, ... 99.9th." line (not a "steady state" one).
line="$(grep -E '^[0-9]+ records sent, .* ms 99\.9th\.' "$OUT_FILE" | grep -v 'steady state' | tail -n 1)"
read -r user_s sys_s max_kb < <(grep -E '^[0-9.]+ [0-9.]+ [0-9]+$' "$TIME_FILE" 2>/dev/null | tail -n 1)

if ((STALLED)); then
    echo "ERROR: no record completed for ${STALL_LIMIT} s; stopped the tool (stalled)"
    exit 4
fi
if [[ -z "$line" ]]; then
    if ((rc != 0)) && grep -q 'org.apache.kafka.common.config.ConfigException' "$OUT_FILE"; then
        echo "CONFIG_REJECTED impl=java: $(grep -m1 -o 'ConfigException: .*' "$OUT_FILE" | cut -c1-300)"
        exit 3
    fi
    echo "ERROR: ProducerPerformance printed no summary line (exit $rc)"
    exit 1
fi

# "N records sent, X records/sec (Y MB/sec), A ms avg latency, M ms max latency, P50 ms 50th,
#  P95 ms 95th, P99 ms 99th, P999 ms 99.9th."
read -r records rps mbps avg max p50 p95 p99 p999 < <(sed -E \
    's/^([0-9]+) records sent, ([0-9.]+) records\/sec \(([0-9.]+) MB\/sec\), ([0-9.]+) ms avg latency, ([0-9.]+) ms max latency, ([0-9.]+) ms 50th, ([0-9.]+) ms 95th, ([0-9.]+) ms 99th, ([0-9.]+) ms 99\.9th\..*$/\1 \2 \3 \4 \5 \6 \7 \8 \9/' <<<"$line")
[[ "$records" =~ ^[0-9]+$ && -n "$p999" ]] || { echo "ERROR: cannot parse the summary line: $line"; exit 1; }
errors=$((NUM > records ? NUM - records : 0))
if [[ -z "${user_s:-}" ]]; then
    echo "WARNING: no CPU / RSS figures from /usr/bin/time"
    user_s="" sys_s="" max_kb=""
fi
awk -v n="$records" -v size="$SIZE" -v e="$errors" -v rps="$rps" -v mbps="$mbps" -v avg="$avg" \
    -v p50="$p50" -v p95="$p95" -v p99="$p99" -v p999="$p999" -v max="$max" \
    -v u="$user_s" -v s="$sys_s" -v kb="$max_kb" 'BEGIN {
    secs = (rps > 0) ? n / rps : 0
    if (u == "") { cpu = "nan"; cpm = "nan"; rss = "nan" }
    else {
        cpu = sprintf("%.2f", u + s)
        cpm = (n > 0) ? sprintf("%.3f", (u + s) / (n / 1e6)) : "nan"
        rss = sprintf("%.1f", kb / 1024)
    }
    printf "client resources: %s s CPU (user+sys, whole JVM incl. start-up and JIT) over %.2f s, %s CPU s per million records, peak RSS %s MiB\n", cpu, secs, cpm, rss
    printf "RESULT impl=java records=%d size=%d errors=%d secs=%.3f rps=%.1f mbps=%.3f avg_ms=%.3f p50_ms=%.3f p95_ms=%.3f p99_ms=%.3f p999_ms=%.3f max_ms=%.3f cpu_s=%s cpu_s_per_M=%s rss_peak_mb=%s\n",
        n, size, e, secs, rps, mbps, avg, p50, p95, p99, p999, max, cpu, cpm, rss
}'
if ((errors > 0)); then
    echo "ERROR: $errors of $NUM records failed (see the stack traces above)"
    exit 1
fi
if ((rc != 0)); then
    echo "ERROR: ProducerPerformance exited with status $rc"
    exit 1
fi
exit 0

#!/usr/bin/env bash
# Side-by-side producer race, same workloads, same broker, runs in rotating order, medians in a
# table. The clients (--clients picks some; default all that are built):
#   ours        actix-kafka, one `send` per record, its DeliveryFutures awaited
#               (examples/producer_perf.rs --delivery future)
#   ours_cb     actix-kafka, one `send_with_callback` per record (--delivery callback)
#   rdkafka     librdkafka BaseProducer with a delivery callback (examples/rdkafka_perf.rs)
#   rdkafka_fut librdkafka through rdkafka's FutureProducer (rdkafka_perf --api future)
#   java        Kafka's own ProducerPerformance (kafka-producer-perf-test, benches/java_perf.sh)
#   krafka      the pure-Rust krafka crate (benches/krafka_perf, a separate crate: build it with
#               `cargo build --release --manifest-path benches/krafka_perf/Cargo.toml`; left
#               out when not built)
#
# Usage: benches/race.sh [options]
#
# Passes (each a table of its own, in this order):
#   kafka   (default) Apache Kafka via scripts/kafka.sh: one KRaft node (broker + controller), its
#           state in OUT/kafka, topics race-p1 (1 partition) and race-p12 (12); restarted with
#           empty storage before every workload (default; --broker-restart run: every run, which
#           costs ~8 s per run). Its log data (up to ~5 GB per workload: 9 runs of 500000 x 1 KiB)
#           is deleted at each restart and on exit. Needs Java 17+ and `bash scripts/kafka.sh
#           install` (start and run-class install on first use).
#   tansu   (--tansu) the Tansu broker (scripts/tansu.sh), in-memory storage, restarted before
#           every run (default)
#   mock    (--mock) librdkafka's mock cluster (rdkafka_perf --mock-cluster, a separate process);
#           Java has no mock cluster and does not race in this pass
#
#   --rounds N            rounds per workload (default 3). Each round runs every client once; the
#                         order rotates (ours, librdkafka, java / librdkafka, java, ours / java,
#                         ours, librdkafka / ...), so each client goes first once in 3 rounds
#                         (2 with two clients)
#   --quick               1 round, fewer records, 2 s latency runs (a smoke run)
#   --no-kafka            skip the Apache Kafka pass
#   --tansu               add the Tansu pass (after the Kafka pass)
#   --mock                add the mock-cluster pass (last)
#   --mock-only           only the mock-cluster pass
#   --mock-brokers N      brokers of the mock cluster (default 1)
#   --no-java             leave the Java producer out (as in the mock pass)
#   --clients "A B .."    the clients to race (default: ours ours_cb rdkafka rdkafka_fut java krafka)
#   --batch-size N        batch.size=N for every client (equal batches); default: each client's own
#   --security P          the Kafka pass races on a secured listener: ssl, sasl_plaintext or
#                         sasl_ssl (scripts/kafka.sh start --security P). actix-kafka and Java read
#                         the Java-named KAFKA_CLIENT_CONFIG (SASL: SCRAM-SHA-512 on sasl_ssl,
#                         PLAIN on sasl_plaintext; SSL: with the client certificate), librdkafka
#                         the same settings under its own names (ssl.ca.location, sasl.username..)
#   --only REGEX          run only the workloads whose name matches (bash regex)
#   --list                list the workloads and exit
#   --records-small N     records per run for 100 B workloads (default 2000000; quick 200000)
#   --records-large N     records per run for 1 KiB workloads (default 500000; quick 50000)
#   --lat-seconds S       length of a fixed-throughput latency run (default 5; quick 2)
#   --lat-fraction F      latency runs pace at F x librdkafka's median max rps (default 0.5)
#   --props "K=V ..."     extra producer properties for every client
#   --ours-props "K=V .." extra properties for actix-kafka only (e.g. mailbox.capacity=4096)
#   --ours-args "ARGS"    extra producer_perf arguments for actix-kafka (e.g. "--send-batch 512":
#                         the send_all_with_callback API instead of one send per record)
#   --rdkafka-props "..." extra properties for librdkafka only (e.g. queue.buffering.max.messages=...)
#   --java-props "..."    extra properties for the Java producer only (e.g. buffer.memory=67108864)
#   --broker-restart run|workload
#                         restart the broker with empty storage before every run or only before
#                         every workload; default: workload for Kafka (a fresh KRaft node takes
#                         ~8 s), run for Tansu and the mock cluster. Tansu's memory storage keeps
#                         every record (~4 GB after 10 M records) and a filling broker slows
#                         down, which would bias later runs.
#   --run-timeout S       hard limit of one run (default 300); a stall of 30 s without any
#                         acknowledgement also ends a run (exit code 4)
#   --wait-idle S         before each run, wait up to S seconds for other processes to use less
#                         than 0.25 cores (default 0: do not wait, only flag loaded runs)
#   --out DIR             logs and results (default target/race/YYYYmmdd-HHMMSS)
#   --no-build            skip `cargo build --release --examples`
#
# Every run's output is kept in OUT/logs/, every run's RESULT line in OUT/runs.tsv, the tables
# in OUT/summary.md. The CPU other processes used during each run (machine minus broker minus
# client, /proc/stat) is kept too; runs with more than 0.25 cores of such load (a shared
# machine) are flagged in the table's note column. The Java client's CPU figure is its whole
# JVM (start-up and JIT included, see benches/java_perf.sh), so its cpu_s/M is high for short
# runs. The script stops its own brokers (Kafka, Tansu) and mock cluster on exit (trap), whatever
# the reason. Exit code: 0 when every run of every client succeeded, 1 otherwise.
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$PWD"

ROUNDS=3
QUICK=0
DO_KAFKA=1
DO_TANSU=0
DO_MOCK=0
DO_JAVA=1
MOCK_BROKERS=1
ONLY=""
LIST=0
REC_SMALL=""
REC_LARGE=""
LAT_SECS=""
LAT_FRACTION=0.5
COMMON_PROPS=""
OURS_PROPS=""
OURS_ARGS=""
RD_PROPS=""
JAVA_PROPS=""
SECURITY=plaintext
RESTART_OPT="" # --broker-restart; empty: each pass's default (kafka: workload, others: run)
RESTART=run
RUN_TIMEOUT=300
STALL_TIMEOUT=30
OUT=""
BUILD=1
WAIT_IDLE=0
CLIENTS="ours ours_cb rdkafka rdkafka_fut java krafka"
BATCH_SIZE=""

die() { echo "race.sh: $*" >&2; exit 2; }
usage() { sed -n '2,/^set -uo/p' "$0" | sed -e '/^set -uo/d' -e 's/^# \{0,1\}//'; }

while (($#)); do
    case "$1" in
        --rounds) ROUNDS="${2:?}"; shift ;;
        --quick) QUICK=1 ;;
        --no-kafka) DO_KAFKA=0 ;;
        --tansu) DO_TANSU=1 ;;
        --mock) DO_MOCK=1 ;;
        --mock-only) DO_MOCK=1; DO_TANSU=0; DO_KAFKA=0 ;;
        --no-java) DO_JAVA=0 ;;
        --clients) CLIENTS="${2:?}"; shift ;;
        --batch-size) BATCH_SIZE="${2:?}"; shift ;;
        --mock-brokers) MOCK_BROKERS="${2:?}"; shift ;;
        --only) ONLY="${2:?}"; shift ;;
        --list) LIST=1 ;;
        --records-small) REC_SMALL="${2:?}"; shift ;;
        --records-large) REC_LARGE="${2:?}"; shift ;;
        --lat-seconds) LAT_SECS="${2:?}"; shift ;;
        --lat-fraction) LAT_FRACTION="${2:?}"; shift ;;
        --props) COMMON_PROPS="${2?}"; shift ;;
        --ours-props) OURS_PROPS="${2?}"; shift ;;
        --ours-args) OURS_ARGS="${2?}"; shift ;;
        --rdkafka-props) RD_PROPS="${2?}"; shift ;;
        --java-props) JAVA_PROPS="${2?}"; shift ;;
        --security) SECURITY="${2:?}"; shift ;;
        --broker-restart) RESTART_OPT="${2:?}"; shift ;;
        --run-timeout) RUN_TIMEOUT="${2:?}"; shift ;;
        --out) OUT="${2:?}"; shift ;;
        --wait-idle) WAIT_IDLE="${2:?}"; shift ;;
        --no-build) BUILD=0 ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; die "unknown option: $1" ;;
    esac
    shift
done
[[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]] || die "--rounds must be a positive integer"
[[ -z "$RESTART_OPT" || "$RESTART_OPT" == run || "$RESTART_OPT" == workload ]] || die "--broker-restart must be run or workload"
((DO_KAFKA || DO_TANSU || DO_MOCK)) || die "no pass left to run (--no-kafka without --tansu or --mock)"
[[ -z "$BATCH_SIZE" ]] || COMMON_PROPS="batch.size=$BATCH_SIZE${COMMON_PROPS:+ $COMMON_PROPS}"
if ((QUICK)); then
    ROUNDS=1
    : "${REC_SMALL:=200000}" "${REC_LARGE:=50000}" "${LAT_SECS:=2}"
else
    : "${REC_SMALL:=2000000}" "${REC_LARGE:=500000}" "${LAT_SECS:=5}"
fi

# --- workloads -----------------------------------------------------------------------------
# name;record size;partitions;producer props (both clients);kind;reference workload
#   kind tput: as fast as possible (--throughput -1)
#   kind lat:  paced at LAT_FRACTION x librdkafka's median rps of the reference workload,
#              for LAT_SECS seconds (latency under a moderate, equal load)
IDEM="acks=all enable.idempotence=true"
WORKLOADS=(
    "100B-p1-acks1-linger0;100;1;acks=1 linger.ms=0;tput;"
    "100B-p1-acks1-linger5;100;1;acks=1 linger.ms=5;tput;"
    "100B-p1-idem-linger0;100;1;${IDEM} linger.ms=0;tput;"
    "100B-p1-idem-linger5;100;1;${IDEM} linger.ms=5;tput;"
    "100B-p12-acks1-linger5;100;12;acks=1 linger.ms=5;tput;"
    "100B-p12-idem-linger5;100;12;${IDEM} linger.ms=5;tput;"
    "1KiB-p1-acks1-linger5;1024;1;acks=1 linger.ms=5;tput;"
    "1KiB-p1-idem-linger0;1024;1;${IDEM} linger.ms=0;tput;"
    "1KiB-p12-idem-linger5;1024;12;${IDEM} linger.ms=5;tput;"
    "1KiB-p1-acks1-linger5-bs256k;1024;1;acks=1 linger.ms=5 batch.size=262144;tput;"
    "1KiB-p1-acks1-linger5-lz4;1024;1;acks=1 linger.ms=5 compression.type=lz4;tput;"
    "1KiB-p1-acks1-linger5-zstd;1024;1;acks=1 linger.ms=5 compression.type=zstd;tput;"
    "lat-100B-p1-acks1-linger0;100;1;acks=1 linger.ms=0;lat;100B-p1-acks1-linger0"
    "lat-100B-p1-idem-linger5;100;1;${IDEM} linger.ms=5;lat;100B-p1-idem-linger5"
)

if ((LIST)); then
    printf '%-32s %6s %5s %-6s %s\n' workload size parts kind props
    for w in "${WORKLOADS[@]}"; do
        IFS=';' read -r n s p props kind ref <<<"$w"
        printf '%-32s %6s %5s %-6s %s%s\n' "$n" "$s" "$p" "$kind" "$props" "${ref:+  (rate: ${LAT_FRACTION} x librdkafka max of $ref)}"
    done
    exit 0
fi

[[ -n "$OUT" ]] || OUT="$ROOT/target/race/$(date +%Y%m%d-%H%M%S)"
mkdir -p "$OUT/logs" || die "cannot create $OUT"
RUNS="$OUT/runs.tsv"
TIMES_FILE="$OUT/.times"
printf 'pass\tworkload\timpl\tround\trc\trecords\trps\tmbps\tp50_ms\tp99_ms\tcpu_s\tcpu_s_per_M\trss_peak_mb\terrors\tother_load\tp999_ms\n' >"$RUNS"
SUMMARY="$OUT/summary.md"
: >"$SUMMARY"

log() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
say() { printf '%s\n' "$*" | tee -a "$SUMMARY"; }

# --- cleanup: everything this script started, by pid or port --------------------------------
TANSU_PORT=""
MOCK_PID=""
KAFKA_STATE="$(cd "$OUT" && pwd)/kafka" # KAFKA_STATE_DIR of our cluster (configs, logs, data, pids)
KAFKA_STARTED=0
kafka_sh() { KAFKA_STATE_DIR="$KAFKA_STATE" bash scripts/kafka.sh "$@"; }
kafka_down() { # stop our cluster (by the pids in its state folder) and drop its data, keep its logs
    ((KAFKA_STARTED)) || return 0
    # SIGKILL: the data is thrown away anyway, and a controlled shutdown takes seconds.
    kafka_sh stop --now >>"$OUT/broker.log" 2>&1
    rm -rf "$KAFKA_STATE"/broker-*/data
    KAFKA_STARTED=0
}
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [[ -n "$MOCK_PID" ]] && kill -0 "$MOCK_PID" 2>/dev/null; then
        kill "$MOCK_PID" 2>/dev/null
        wait "$MOCK_PID" 2>/dev/null
    fi
    if [[ -n "$TANSU_PORT" ]]; then
        bash scripts/tansu.sh stop "$TANSU_PORT" >/dev/null 2>&1
    fi
    kafka_down
    exit "$rc"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM

# --- build -------------------------------------------------------------------------------------
if ((BUILD)); then
    log "building release examples (cargo build --release --examples)"
    if ! cargo build --release --examples >"$OUT/build.log" 2>&1; then
        log "cargo build --release --examples failed (see $OUT/build.log); building the two perf examples only"
        cargo build --release --example producer_perf --example rdkafka_perf >>"$OUT/build.log" 2>&1 ||
            { tail -n 30 "$OUT/build.log" >&2; die "build failed (--no-build runs the binaries already in target/release/examples)"; }
    fi
fi
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
OURS_BIN="$TARGET_DIR/release/examples/producer_perf"
RD_BIN="$TARGET_DIR/release/examples/rdkafka_perf"
[[ -x "$OURS_BIN" && -x "$RD_BIN" ]] || die "missing $OURS_BIN or $RD_BIN (build them or drop --no-build)"
KRAFKA_BIN="$ROOT/benches/krafka_perf/target/release/krafka_perf"
JAVA_WRAPPER="$ROOT/benches/java_perf.sh"
if ((DO_JAVA && (DO_KAFKA || DO_TANSU))); then
    [[ -x /usr/bin/time ]] || die "the Java racer needs /usr/bin/time (apt-get install time), or pass --no-java"
fi

# --- brokers -------------------------------------------------------------------------------------
TOPIC1=race-p1
TOPIC12=race-p12
BOOTSTRAP=""

tansu_up() {
    local out
    if [[ -n "$TANSU_PORT" ]]; then
        bash scripts/tansu.sh stop "$TANSU_PORT" >>"$OUT/broker.log" 2>&1
        out="$(bash scripts/tansu.sh start "$TANSU_PORT" 2>>"$OUT/broker.log")" ||
            out="$(bash scripts/tansu.sh start 2>>"$OUT/broker.log")"
    else
        out="$(bash scripts/tansu.sh start 2>>"$OUT/broker.log")"
    fi
    BOOTSTRAP="$(sed -n 's/^TANSU_BROKER=//p' <<<"$out" | tail -n 1)"
    [[ -n "$BOOTSTRAP" ]] || { tail -n 20 "$OUT/broker.log" >&2; die "could not start tansu"; }
    TANSU_PORT="${BOOTSTRAP##*:}"
    bash scripts/tansu.sh create-topic "$TOPIC1" 1 "$TANSU_PORT" >>"$OUT/broker.log" 2>&1 &&
        bash scripts/tansu.sh create-topic "$TOPIC12" 12 "$TANSU_PORT" >>"$OUT/broker.log" 2>&1 ||
        { tail -n 20 "$OUT/broker.log" >&2; die "could not create topics"; }
}

# Security settings per client for a secured Kafka pass: Java names for ours and Java (the
# client.properties kafka.sh writes), librdkafka's names for librdkafka.
SEC_JAVA_CONF=""
SEC_RD_CONF=""
write_security_configs() {
    local cp="$KAFKA_STATE/client.properties" tls="$KAFKA_STATE/tls" mech
    SEC_JAVA_CONF="$OUT/security-java.properties"
    SEC_RD_CONF="$OUT/security-rdkafka.properties"
    grep -v '^bootstrap.servers=' "$cp" >"$SEC_JAVA_CONF"
    mech="$(sed -n 's/^sasl.mechanism=//p' "$cp")"
    {
        echo "security.protocol=${SECURITY^^}"
        case "$SECURITY" in
            ssl | sasl_ssl) echo "ssl.ca.location=$tls/ca.pem" ;;
        esac
        if [[ "$SECURITY" == ssl ]]; then
            echo "ssl.certificate.location=$tls/client.pem"
            echo "ssl.key.location=$tls/client.pk8"
        fi
        if [[ "$SECURITY" == sasl_* ]]; then
            echo "sasl.mechanisms=$mech"
            echo "sasl.username=alice"
            echo "sasl.password=alice-secret"
        fi
    } >"$SEC_RD_CONF"
}

kafka_up() {
    local out
    kafka_down
    KAFKA_STARTED=1 # before start: an interrupted start may have launched the broker already
    out="$(kafka_sh start --security "$SECURITY" 2>>"$OUT/broker.log")"
    BOOTSTRAP="$(sed -n 's/^KAFKA_BOOTSTRAP=//p' <<<"$out" | tail -n 1)"
    [[ -n "$BOOTSTRAP" ]] || { tail -n 20 "$OUT/broker.log" >&2; die "could not start Apache Kafka (logs in $KAFKA_STATE)"; }
    kafka_sh create-topic "$TOPIC1" 1 >>"$OUT/broker.log" 2>&1 &&
        kafka_sh create-topic "$TOPIC12" 12 >>"$OUT/broker.log" 2>&1 ||
        { tail -n 20 "$OUT/broker.log" >&2; die "could not create topics on Apache Kafka"; }
    [[ "$SECURITY" == plaintext ]] || write_security_configs
}

kafka_version() { # of the broker that ran: its log, else kafka.sh's default
    local v
    v="$(grep -h -m1 -o 'Kafka version: [^ ]*' "$KAFKA_STATE"/broker-1/server.log 2>/dev/null | head -n 1)"
    v="${v#Kafka version: }"
    [[ -n "$v" ]] || v="${KAFKA_VERSION:-}"
    [[ -n "$v" ]] || v="$(sed -n 's/^KAFKA_VERSION="\${KAFKA_VERSION:-\([^}]*\)}"$/\1/p' scripts/kafka.sh)"
    echo "${v:-?}"
}

mock_up() {
    local i
    if [[ -n "$MOCK_PID" ]]; then
        kill "$MOCK_PID" 2>/dev/null
        wait "$MOCK_PID" 2>/dev/null
        MOCK_PID=""
    fi
    : >"$OUT/mock.out"
    "$RD_BIN" --mock-cluster "$MOCK_BROKERS" --topic "$TOPIC1:1" --topic "$TOPIC12:12" \
        >"$OUT/mock.out" 2>>"$OUT/broker.log" &
    MOCK_PID=$!
    BOOTSTRAP=""
    for ((i = 0; i < 100; i++)); do
        BOOTSTRAP="$(sed -n 's/^MOCK_BOOTSTRAP=//p' "$OUT/mock.out")"
        [[ -n "$BOOTSTRAP" ]] && return 0
        kill -0 "$MOCK_PID" 2>/dev/null || break
        sleep 0.1
    done
    tail -n 20 "$OUT/broker.log" >&2
    die "the mock cluster did not start"
}

PASS=""
fresh_broker() {
    case "$PASS" in
        kafka) kafka_up ;;
        tansu) tansu_up ;;
        mock) mock_up ;;
    esac
}

# --- one run ---------------------------------------------------------------------------------------
ANY_FAIL=0
FAILURES=() # "pass|workload|impl|round|rc|log"
LAST_RPS=""

# --- other load on a shared machine ---------------------------------------------------------------
# CPU used by the whole machine (/proc/stat), by the broker process and by our child (bash
# `times`), in USER_HZ ticks (100/s); "other load" = machine - broker - client, in cores.
machine_ticks() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9; exit }' /proc/stat; }
pid_ticks() { # utime + stime of pid $1 (fields 14, 15; counted after the ")" of the name)
    local st
    st="$(cat "/proc/$1/stat" 2>/dev/null)" || { echo 0; return; }
    awk '{ print $12 + $13 }' <<<"${st##*)}"
}
children_ticks() { # user + sys of waited-for children of this shell
    # `times` must run in this shell: in a pipeline or $(...) it would report a subshell's.
    times >"$TIMES_FILE"
    tail -n 1 "$TIMES_FILE" | awk '{
        t = 0
        for (i = 1; i <= 2; i++) { split($i, a, "m"); sub("s", "", a[2]); t += a[1] * 60 + a[2] }
        printf "%d", t * 100 }'
}
broker_pid() {
    case "$PASS" in
        kafka) cat "$KAFKA_STATE/broker-1/kafka.pid" 2>/dev/null || echo 0 ;;
        tansu) cat "${TMPDIR:-/tmp}/actix-kafka-tansu/broker-${TANSU_PORT}.pid" 2>/dev/null || echo 0 ;;
        mock) echo "${MOCK_PID:-0}" ;;
        *) echo 0 ;;
    esac
}
OTHER_LOAD_LIMIT=0.25 # cores; runs above it are flagged

# Waits up to WAIT_IDLE seconds until the machine (less our idle broker) is quiet.
wait_idle() {
    ((WAIT_IDLE > 0)) || return 0
    local deadline=$((SECONDS + WAIT_IDLE)) m0 m1 load waited=0
    while :; do
        m0="$(machine_ticks)"
        sleep 0.5
        m1="$(machine_ticks)"
        load="$(awk -v d="$((m1 - m0))" 'BEGIN { printf "%.2f", d / 100 / 0.5 }')"
        awk -v o="$load" -v l="$OTHER_LOAD_LIMIT" 'BEGIN { exit !(o <= l) }' && break
        if ((SECONDS >= deadline)); then
            log "  machine still busy ($load cores) after ${WAIT_IDLE} s; running anyway"
            break
        fi
        ((waited++ == 0)) && log "  waiting for the machine to go quiet (other load $load cores)"
    done
}

# run_one IMPL WORKLOAD ROUND TOPIC SIZE RECORDS THROUGHPUT PROPS
run_one() {
    local impl=$1 wl=$2 round=$3 topic=$4 size=$5 records=$6 tput=$7 props=$8
    local bin=() extra="" log rc line args=""
    case "$impl" in
        ours) bin=("$OURS_BIN"); extra=$OURS_PROPS; args="--delivery future $OURS_ARGS" ;;
        ours_cb) bin=("$OURS_BIN"); extra=$OURS_PROPS; args="--delivery callback $OURS_ARGS" ;;
        rdkafka) bin=("$RD_BIN"); extra=$RD_PROPS ;;
        rdkafka_fut) bin=("$RD_BIN"); extra=$RD_PROPS; args="--api future" ;;
        java) bin=(bash "$JAVA_WRAPPER"); extra=$JAVA_PROPS ;;
        krafka) bin=("$KRAFKA_BIN") ;;
        *) die "unknown client: $impl" ;;
    esac
    [[ "$RESTART" == run || -z "$BOOTSTRAP" ]] && fresh_broker
    log="$OUT/logs/$PASS.$wl.$impl.r$round.log"
    # shellcheck disable=SC2206
    local secconf=()
    if [[ "$PASS" == kafka && "$SECURITY" != plaintext ]]; then
        case "$impl" in
            rdkafka | rdkafka_fut) secconf=(--producer.config "$SEC_RD_CONF") ;;
            *) secconf=(--producer.config "$SEC_JAVA_CONF") ;;
        esac
    fi
    local cmd=("${bin[@]}" --topic "$topic" --num-records "$records" --record-size "$size"
        --throughput "$tput" --bootstrap-server "$BOOTSTRAP" --stall-timeout-s "$STALL_TIMEOUT"
        --report-interval-ms 5000 "${secconf[@]}" $args --producer-props $props $COMMON_PROPS $extra)
    printf '$ %s\n' "${cmd[*]}" >"$log"
    wait_idle
    # The machine may be shared: measure what else used the CPUs during the run.
    local bpid m0 b0 c0 t0 m1 b1 c1 t1 other
    bpid="$(broker_pid)"
    children_ticks >"$OUT/.c0"
    m0="$(machine_ticks)"; b0="$(pid_ticks "$bpid")"; t0=$EPOCHREALTIME
    timeout --kill-after=5 "$RUN_TIMEOUT" "${cmd[@]}" >>"$log" 2>&1 </dev/null
    rc=$?
    t1=$EPOCHREALTIME; m1="$(machine_ticks)"; b1="$(pid_ticks "$bpid")"
    children_ticks >"$OUT/.c1"
    c0="$(cat "$OUT/.c0")"; c1="$(cat "$OUT/.c1")"
    other="$(awk -v m="$((m1 - m0))" -v b="$((b1 - b0))" -v c="$((c1 - c0))" -v t0="$t0" -v t1="$t1" \
        'BEGIN { o = (m - b - c) / 100 / (t1 - t0); if (o < 0) o = 0; printf "%.2f", o }')"
    line="$(grep '^RESULT ' "$log" | tail -n 1)"
    f() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$line"; }
    LAST_RPS="$(f rps)"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$PASS" "$wl" "$impl" "$round" "$rc" \
        "$(f records)" "$(f rps)" "$(f mbps)" "$(f p50_ms)" "$(f p99_ms)" "$(f cpu_s)" "$(f cpu_s_per_M)" \
        "$(f rss_peak_mb)" "$(f errors)" "$other" "$(f p999_ms)" >>"$RUNS"
    awk -v o="$other" -v l="$OTHER_LOAD_LIMIT" 'BEGIN { exit !(o > l) }' &&
        log "  note: other processes used $other cores during this run (shared machine)"
    if ((rc == 0)); then
        log "  $impl r$round: rps=$(f rps) p99=$(f p99_ms) ms cpu/M=$(f cpu_s_per_M) s rss=$(f rss_peak_mb) MiB"
    elif ((rc == 3)); then
        log "  $impl r$round: configuration rejected: $(grep -m1 '^CONFIG_REJECTED' "$log" | cut -c1-300)"
    else
        local why="exit $rc"
        case $rc in
            3) why="configuration rejected" ;;
            4) why="stalled (no ack for ${STALL_TIMEOUT} s)" ;;
            124 | 137) why="killed by the ${RUN_TIMEOUT} s run timeout" ;;
            1) why="records failed or run error" ;;
        esac
        log "  $impl r$round: FAILED: $why (log $log)"
        FAILURES+=("$PASS|$wl|$impl|$round|$rc|$why|$log")
    fi
    return "$rc"
}

# --- one pass over the workloads -------------------------------------------------------------------
declare -A SKIP_NOTE

median_of() { # pass workload impl column → median of successful runs, "-" if none
    awk -F'\t' -v p="$1" -v w="$2" -v i="$3" -v c="$4" '
        NR == 1 { for (k = 1; k <= NF; k++) col[$k] = k; next }
        $1 == p && $2 == w && $3 == i && $5 == 0 && $(col[c]) != "" { v[n++] = $(col[c]) }
        END {
            if (n == 0) { print "-"; exit }
            for (a = 0; a < n; a++) for (b = a + 1; b < n; b++) if (v[b] + 0 < v[a] + 0) { t = v[a]; v[a] = v[b]; v[b] = t }
            if (n % 2) print v[int(n / 2)]; else print (v[n / 2 - 1] + v[n / 2]) / 2
        }' "$RUNS"
}

IMPL_NAME_ours="actix-kafka send (futures)"
IMPL_NAME_ours_cb="actix-kafka send_with_callback"
IMPL_NAME_rdkafka="librdkafka BaseProducer"
IMPL_NAME_rdkafka_fut="librdkafka FutureProducer"
IMPL_NAME_java="Java ProducerPerformance"
IMPL_NAME_krafka="krafka"
impl_name() { local v="IMPL_NAME_$1"; echo "${!v}"; }

pass_impls() { # the clients racing in pass $1
    local c out=()
    for c in $CLIENTS; do
        case "$c" in
            java) [[ "$1" == mock ]] || ((!DO_JAVA)) && continue ;;
            krafka) [[ -x "$KRAFKA_BIN" ]] || continue ;;
            ours | ours_cb | rdkafka | rdkafka_fut) ;;
            *) die "unknown client in --clients: $c" ;;
        esac
        out+=("$c")
    done
    echo "${out[*]}"
}

run_pass() {
    PASS=$1
    BOOTSTRAP=""
    local w n size parts props kind ref topic records tput r rate impl i k
    local -a impls order
    local -A dead
    read -r -a impls <<<"$(pass_impls "$PASS")"
    RESTART="$RESTART_OPT"
    [[ -n "$RESTART" ]] || { [[ "$PASS" == kafka ]] && RESTART=workload || RESTART=run; }
    log "=== pass: $PASS (clients: ${impls[*]}; broker restarted before every $RESTART)"
    if [[ "$PASS" == mock ]]; then
        # Preflight: can our producer talk to the mock cluster at all? (A failure here is
        # reported once instead of failing every workload after max.block.ms.)
        fresh_broker
        if ! run_one ours preflight 1 "$TOPIC1" 100 1000 -1 "acks=1 max.block.ms=10000"; then
            log "  actix-kafka fails against the mock cluster; running librdkafka only in this pass"
            SKIP_NOTE["$PASS|*"]="actix-kafka failed the preflight (see failures)"
        fi
    fi
    for w in "${WORKLOADS[@]}"; do
        IFS=';' read -r n size parts props kind ref <<<"$w"
        [[ -z "$ONLY" || "$n" =~ $ONLY ]] || continue
        topic=$TOPIC1
        ((parts == 12)) && topic=$TOPIC12
        if ((size <= 100)); then records=$REC_SMALL; else records=$REC_LARGE; fi
        tput=-1
        if [[ "$kind" == lat ]]; then
            rate="$(median_of "$PASS" "$ref" rdkafka rps)"
            if [[ "$rate" == "-" ]]; then
                log "workload $n: calibrating with one librdkafka run of $ref"
                IFS=';' read -r _ _ _ rprops _ _ < <(printf '%s\n' "${WORKLOADS[@]}" | grep "^$ref;")
                run_one rdkafka "$ref" 0 "$topic" "$size" "$records" -1 "$rprops" || true
                rate="${LAST_RPS:--}"
            fi
            if [[ "$rate" == "-" || -z "$rate" ]]; then
                log "workload $n: skipped (no librdkafka rate for $ref)"
                SKIP_NOTE["$PASS|$n"]="no reference rate"
                continue
            fi
            tput="$(awk -v r="$rate" -v f="$LAT_FRACTION" 'BEGIN { printf "%d", r * f }')"
            records="$(awk -v t="$tput" -v s="$LAT_SECS" 'BEGIN { printf "%d", t * s }')"
            SKIP_NOTE["$PASS|$n|rate"]="$tput/s"
        fi
        log "workload $n: size=$size partitions=$parts records=$records throughput=$tput props: $props"
        [[ "$RESTART" == workload ]] && fresh_broker
        dead=()
        [[ -n "${SKIP_NOTE["$PASS|*"]:-}" ]] && dead[ours]=1
        for ((r = 1; r <= ROUNDS; r++)); do
            # Rotate the order: round r starts with client (r - 1) mod N.
            order=()
            for ((i = 0; i < ${#impls[@]}; i++)); do
                k=$(((r - 1 + i) % ${#impls[@]}))
                order+=("${impls[k]}")
            done
            for impl in "${order[@]}"; do
                ((${dead[$impl]:-0})) && continue
                run_one "$impl" "$n" "$r" "$topic" "$size" "$records" "$tput" "$props"
                case $? in
                    0) ;;
                    3)
                        dead[$impl]=1
                        SKIP_NOTE["$PASS|$n"]+="${SKIP_NOTE["$PASS|$n"]:+; }$(impl_name "$impl") rejects the config"
                        ;;
                    *)
                        dead[$impl]=1
                        SKIP_NOTE["$PASS|$n"]+="${SKIP_NOTE["$PASS|$n"]:+; }$(impl_name "$impl") failed (see failures)"
                        ANY_FAIL=1
                        ;;
                esac
            done
        done
    done
    print_table "$PASS"
}

fmt_ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "-" || b == "-" || b + 0 == 0) print "-"; else printf "%.2f", a / b }'; }
fmt_int() { awk -v a="$1" 'BEGIN { if (a == "-") print "-"; else printf "%d", a + 0.5 }'; }

print_table() {
    local pass=$1 w n size parts props kind ref impl note rps cpu r_rps r_cpu
    say ""
    case "$pass" in
        kafka)
            local listener="${SECURITY^^}"
            [[ "$SECURITY" == sasl_* ]] && listener+="/$(sed -n 's/^sasl.mechanism=//p' "$KAFKA_STATE/client.properties" 2>/dev/null)"
            say "### Apache Kafka $(kafka_version) (KRaft, single node, ${listener} listener, restarted before every $RESTART) — medians of $ROUNDS round(s)"
            ;;
        tansu)
            local tv
            tv="$("$(bash scripts/tansu.sh path 2>/dev/null)" --version 2>/dev/null | head -n 1)"
            say "### Tansu broker (${tv:-tansu}, in-memory storage, restarted before every $RESTART) — medians of $ROUNDS round(s)"
            ;;
        *)
            say "### librdkafka mock cluster ($MOCK_BROKERS broker(s), separate process; no Java client) — medians of $ROUNDS round(s)"
            ;;
    esac
    say ""
    say "$(awk -F'\t' -v p="$pass" -v l="$OTHER_LOAD_LIMIT" '$1 == p { n++; s += $15; if ($15 > m) m = $15; if ($15 > l) c++ }
        END { if (n) printf "Other processes used %.2f cores on average during the %d runs (max %.2f; %d run(s) above %.2f).", s / n, n, m, c + 0, l }' "$RUNS")"
    say ""
    say "| workload | client | rps | MB/s | cpu_s/M | p50 ms | p99 ms | p99.9 ms | peak RSS MiB | rps / librdkafka | cpu / librdkafka | note |"
    say "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
    for w in "${WORKLOADS[@]}"; do
        IFS=';' read -r n size parts props kind ref <<<"$w"
        [[ -z "$ONLY" || "$n" =~ $ONLY ]] || continue
        r_rps="$(median_of "$pass" "$n" rdkafka rps)"
        r_cpu="$(median_of "$pass" "$n" rdkafka cpu_s_per_M)"
        note="${SKIP_NOTE["$pass|$n"]:-${SKIP_NOTE["$pass|*"]:-}}"
        local busy_runs
        busy_runs="$(awk -F'\t' -v p="$pass" -v w="$n" -v l="$OTHER_LOAD_LIMIT" \
            '$1 == p && $2 == w && $15 > l { c++; if ($15 > m) m = $15 } END { if (c) printf "%d run(s) with other load (max %.2f cores)", c, m }' "$RUNS")"
        [[ -n "$busy_runs" ]] && note="${note:+$note; }$busy_runs"
        [[ -n "${SKIP_NOTE["$pass|$n|rate"]:-}" ]] && note="paced at ${SKIP_NOTE["$pass|$n|rate"]}${note:+; $note}"
        for impl in $(pass_impls "$pass"); do
            rps="$(median_of "$pass" "$n" "$impl" rps)"
            cpu="$(median_of "$pass" "$n" "$impl" cpu_s_per_M)"
            say "| $n | $(impl_name "$impl") | $(fmt_int "$rps") | $(median_of "$pass" "$n" "$impl" mbps) | $cpu | $(median_of "$pass" "$n" "$impl" p50_ms) | $(median_of "$pass" "$n" "$impl" p99_ms) | $(median_of "$pass" "$n" "$impl" p999_ms) | $(median_of "$pass" "$n" "$impl" rss_peak_mb) | $(fmt_ratio "$rps" "$r_rps") | $(fmt_ratio "$cpu" "$r_cpu") | $note |"
            note=""
        done
    done
}

# --- main ------------------------------------------------------------------------------------------
{
    echo "# producer race: $(for c in $(pass_impls kafka); do printf '%s, ' "$(impl_name "$c")"; done | sed 's/, $//')"
    echo ""
    echo "- $(date -u +%FT%TZ), $(nproc) cores, $(rustc --version 2>/dev/null), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?') + $(git status --porcelain -- src Cargo.toml 2>/dev/null | wc -l) uncommitted change(s) in src/ and Cargo.toml"
    echo "- records per run: $REC_SMALL (100 B), $REC_LARGE (1 KiB); rounds: $ROUNDS; latency runs: $LAT_SECS s at $LAT_FRACTION x librdkafka's median max rps"
    if [[ -n "$BATCH_SIZE" ]]; then
        echo "- equal batches: batch.size=$BATCH_SIZE for every client; other unset properties keep each client's defaults"
    else
        echo "- unset properties keep each client's defaults (notably batch.size: actix-kafka 16384 like Java's default, librdkafka 1000000; linger.ms 5 in all three: Java's default since Kafka 4.0, KIP-1030)"
    fi
    echo "- extra props: all='${COMMON_PROPS}' ours='${OURS_PROPS}' librdkafka='${RD_PROPS}' java='${JAVA_PROPS}'; ours args='${OURS_ARGS}'"
    echo "- rps / librdkafka and cpu / librdkafka compare with librdkafka's BaseProducer (>1 rps: faster; <1 cpu: cheaper per record)"
    if ((DO_JAVA && (DO_KAFKA || DO_TANSU))); then
        echo "- java = Kafka's ProducerPerformance (kafka-producer-perf-test, benches/java_perf.sh, -Xmx256m); its CPU is the whole JVM's, start-up and JIT included (a few CPU seconds, a large share of short runs); its latencies are whole ms"
    fi
} | tee -a "$SUMMARY"

((DO_KAFKA)) && run_pass kafka
kafka_down
((DO_TANSU)) && run_pass tansu
if [[ -n "$TANSU_PORT" ]]; then
    bash scripts/tansu.sh stop "$TANSU_PORT" >>"$OUT/broker.log" 2>&1
    TANSU_PORT=""
fi
((DO_MOCK)) && run_pass mock

if ((${#FAILURES[@]})); then
    say ""
    say "### Failures"
    for f in "${FAILURES[@]}"; do
        IFS='|' read -r p w i r rc why lf <<<"$f"
        say ""
        say "- $p / $w / $i / round $r: exit $rc, $why — $lf"
        say '```'
        { head -n 1 "$lf"; grep -vE '^[0-9]+ records sent, ' "$lf" | tail -n +2 | tail -n 12; } | cut -c1-400 | tee -a "$SUMMARY"
        say '```'
    done
fi
say ""
say "(runs: $RUNS, logs: $OUT/logs)"
exit "$ANY_FAIL"

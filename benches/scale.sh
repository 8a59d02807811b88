#!/usr/bin/env bash
# Scale benchmark (issue 19): many partitions and many topics, keyed 100 B records, ours
# (examples/producer_perf.rs, one send_with_callback per record) against librdkafka
# (examples/rdkafka_perf.rs, BaseProducer), same broker, same run, each client at its defaults:
#   p2000   1 topic with 2,000 partitions
#   t500    500 topics with 1 partition each (record i to topic i % 500)
# Reports records/s, CPU seconds per million records and peak RSS (from each tool's RESULT line).
#
# Every partition is written to once before the measured runs (a warm-up run, not measured), and
# the clients alternate which goes first.
#
# Usage: benches/scale.sh [--records N] [--rounds R] [--only p2000|t500] [--no-build]
#   (a local Apache Kafka 4.4 from scripts/kafka.sh, one KRaft node; its state in OUT/kafka,
#   stopped by pid on exit). Results: OUT/runs.tsv and OUT/summary.md, OUT=target/scale/<time>.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
RECORDS=1000000
ROUNDS=1
ONLY=""
BUILD=1
while (($#)); do
    case "$1" in
    --records) RECORDS="$2"; shift 2 ;;
    --rounds) ROUNDS="$2"; shift 2 ;;
    --only) ONLY="$2"; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    *) echo "usage: $0 [--records N] [--rounds R] [--only p2000|t500] [--no-build]" >&2; exit 2 ;;
    esac
done
OUT="${OUT:-target/scale/$(date +%Y%m%d-%H%M%S)}"
mkdir -p "$OUT/logs"
KAFKA_STATE="$OUT/kafka"
kafka_sh() { KAFKA_STATE_DIR="$KAFKA_STATE" bash scripts/kafka.sh "$@"; }
cleanup() { kafka_sh stop --now >>"$OUT/broker.log" 2>&1 || true; }
trap cleanup EXIT INT TERM
log() { echo "scale.sh: $*" >&2; }

if ((BUILD)); then
    log "building producer_perf and rdkafka_perf (release)"
    cargo build --release --example producer_perf --example rdkafka_perf >"$OUT/build.log" 2>&1 ||
        { tail -n 20 "$OUT/build.log" >&2; exit 1; }
fi
OURS=target/release/examples/producer_perf
RD=target/release/examples/rdkafka_perf
out="$(kafka_sh start 2>>"$OUT/broker.log")"
BOOTSTRAP="$(sed -n 's/^KAFKA_BOOTSTRAP=//p' <<<"$out" | tail -n 1)"
[[ -n "$BOOTSTRAP" ]] || { tail -n 20 "$OUT/broker.log" >&2; exit 1; }
log "Apache Kafka at $BOOTSTRAP"

# name  topic  topic-count  partitions-per-topic
WORKLOADS=("p2000 scale-p2000 1 2000" "t500 scale-t500 500 1")
printf 'workload\tround\timpl\trecords\trps\tcpu_s_per_M\trss_peak_mb\n' >"$OUT/runs.tsv"
status=0
for w in "${WORKLOADS[@]}"; do
    read -r name topic count parts <<<"$w"
    [[ -z "$ONLY" || "$ONLY" == "$name" ]] || continue
    log "$name: creating $count topic(s) with $parts partition(s)"
    "$RD" --create-topics "$parts" --topic "$topic" --topic-count "$count" --num-records 0 \
        --record-size 1 --throughput -1 --bootstrap-server "$BOOTSTRAP" >>"$OUT/broker.log" 2>&1 ||
        { log "could not create the topics of $name"; status=1; continue; }
    # A broker's first writes to a new partition create its log segment and index files, which
    # makes the first client to write there much slower: warm every partition up first (not
    # measured), then alternate which client goes first.
    warm=$((count * parts * 20))
    "$RD" --topic "$topic" --topic-count "$count" --keyed --num-records "$warm" --record-size 100 \
        --throughput -1 --bootstrap-server "$BOOTSTRAP" >"$OUT/logs/$name-warmup.log" 2>&1 ||
        log "$name: the warm-up run failed (see $OUT/logs/$name-warmup.log)"
    for ((r = 1; r <= ROUNDS; r++)); do
        order="ours rdkafka"
        ((r % 2 == 0)) && order="rdkafka ours"
        for impl in $order; do
            logf="$OUT/logs/$name-$r-$impl.log"
            common=(--topic "$topic" --topic-count "$count" --keyed --num-records "$RECORDS"
                --record-size 100 --throughput -1 --bootstrap-server "$BOOTSTRAP")
            if [[ $impl == ours ]]; then
                timeout 600 "$OURS" "${common[@]}" --delivery callback >"$logf" 2>&1
            else
                timeout 600 "$RD" "${common[@]}" >"$logf" 2>&1
            fi
            rc=$?
            line="$(grep '^RESULT ' "$logf" | tail -n 1)"
            get() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$line"; }
            if ((rc != 0)) || [[ -z "$line" ]]; then
                log "$name round $r $impl failed (exit $rc, see $logf)"
                status=1
                continue
            fi
            printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$r" "$impl" "$(get records)" "$(get rps)" \
                "$(get cpu_s_per_M)" "$(get rss_peak_mb)" >>"$OUT/runs.tsv"
            log "$name round $r $impl: rps $(get rps), cpu_s/M $(get cpu_s_per_M), peak RSS $(get rss_peak_mb) MiB"
        done
    done
done
{
    echo "# Scale benchmark ($(date -u +%Y-%m-%d), $(nproc) cores, Apache Kafka 4.4 single node, $RECORDS keyed 100 B records per run)"
    echo
    echo "| workload | impl | records/s (median) | CPU s per M records | peak RSS MiB |"
    echo "|---|---|---|---|---|"
    for name in p2000 t500; do
        for impl in ours rdkafka; do
            awk -F'\t' -v w="$name" -v i="$impl" '$1==w && $3==i {print $5, $6, $7}' "$OUT/runs.tsv" |
                sort -n | awk -v w="$name" -v i="$impl" '{a[NR]=$0} END {if (NR) {split(a[int((NR+1)/2)], m, " "); printf "| %s | %s | %s | %s | %s |\n", w, i, m[1], m[2], m[3]}}'
        done
    done
} >"$OUT/summary.md"
cat "$OUT/summary.md"
exit "$status"

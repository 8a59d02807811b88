#!/usr/bin/env bash
# The main job, in one command (see README):
#
#   scripts/demo.sh [FILE] [TOPIC]
#
# Produces every line of FILE (default: README.md) as one record to TOPIC (default: lines,
# 3 partitions) and prints each record's delivery (partition@offset) and a summary.
# Broker: $KAFKA_BOOTSTRAP if set (the topic must exist or auto-create must be on); otherwise a
# local Apache Kafka (KRaft, one node) is installed if needed (scripts/kafka.sh: Maven resolves it,
# about 1 minute the first time), started on free loopback ports, given the topic, and stopped
# at the end.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

file="${1:-README.md}"
topic="${2:-lines}"
state_dir=""
cleanup() {
    if [[ -n "$state_dir" ]]; then
        KAFKA_STATE_DIR="$state_dir" bash scripts/kafka.sh stop >/dev/null 2>&1 || true
        rm -rf "$state_dir"
    fi
}
trap cleanup EXIT
trap 'exit 143' TERM INT

if [[ -z "${KAFKA_BOOTSTRAP:-}" ]]; then
    state_dir="$(mktemp -d "${TMPDIR:-/tmp}/actix-kafka-demo.XXXXXX")"
    out="$(KAFKA_STATE_DIR="$state_dir" bash scripts/kafka.sh start)"
    KAFKA_BOOTSTRAP="$(sed -n 's/^KAFKA_BOOTSTRAP=//p' <<<"$out")"
    echo "demo: started Apache Kafka at ${KAFKA_BOOTSTRAP}"
    KAFKA_STATE_DIR="$state_dir" bash scripts/kafka.sh create-topic "$topic" 3
fi

cargo build --release --features cli --bin actix-kafka
./target/release/actix-kafka produce --bootstrap-server "$KAFKA_BOOTSTRAP" --topic "$topic" \
    --file "$file" --print-deliveries

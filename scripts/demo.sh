#!/usr/bin/env bash
# The main job, in one command (see README):
#
#   scripts/demo.sh [FILE] [TOPIC]
#
# Produces every line of FILE (default: README.md) as one record to TOPIC (default: lines,
# 3 partitions) and prints each record's delivery (partition@offset) and a summary.
# Broker: $KAFKA_BOOTSTRAP if set (the topic must exist or auto-create must be on); otherwise a
# local Tansu broker is installed if needed (scripts/tansu.sh), started on a free loopback port,
# given the topic, and stopped at the end.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

file="${1:-README.md}"
topic="${2:-lines}"
started_port=""
cleanup() { [[ -n "$started_port" ]] && bash scripts/tansu.sh stop "$started_port" >/dev/null 2>&1 || true; }
trap cleanup EXIT

if [[ -z "${KAFKA_BOOTSTRAP:-}" ]]; then
    out="$(bash scripts/tansu.sh start)"
    KAFKA_BOOTSTRAP="$(sed -n 's/^TANSU_BROKER=//p' <<<"$out" | tail -n 1)"
    started_port="${KAFKA_BOOTSTRAP##*:}"
    echo "demo: started Tansu at ${KAFKA_BOOTSTRAP}"
    bash scripts/tansu.sh create-topic "$topic" 3 "$started_port"
fi

cargo build --release --example console_producer
./target/release/examples/console_producer --bootstrap "$KAFKA_BOOTSTRAP" --topic "$topic" \
    --file "$file" --print-each

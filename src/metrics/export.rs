//! Feature `metrics`: the producer's metrics exported through the [`metrics`] facade, so any
//! recorder the application installed (`metrics-exporter-prometheus`, StatsD, ...) shows them
//! with no glue code.
//!
//! Every [`EXPORT_INTERVAL`] (and once more when the producer closes) the producer's
//! [`MetricsSnapshot`] is copied into the facade. Names are the Java producer's
//! (`producer-metrics` group) made Prometheus-friendly: `kafka_producer_` + the Java name with
//! `-` as `_` (`record-send-total` → `kafka_producer_record_send_total`). Every series has a
//! `client_id` label (`client.id`), as Java's JMX names do. Java's `*-total` metrics are
//! counters (set to the producer's absolute count); the others (rates, averages, maxima,
//! `connection-count`, `requests-in-flight`) are gauges. One metric of our own:
//! `kafka_producer_mailbox_depth{client_id, topic, partition}`, the records waiting in each
//! partition accumulator's mailbox (0 once the accumulator retired).
//!
//! Values lag the producer by at most one interval; [`crate::Producer::metrics`] is live.

use super::MetricsSnapshot;
use crate::record::TopicPartition;
use std::collections::HashSet;
use std::time::Duration;

/// How often the snapshot is copied into the facade.
pub const EXPORT_INTERVAL: Duration = Duration::from_secs(1);

/// The facade name of the Java metric `java_name`.
pub(crate) fn facade_name(java_name: &str) -> String {
    format!("kafka_producer_{}", java_name.replace('-', "_"))
}

/// Copies snapshots into the facade for one producer; remembers the partitions whose mailbox
/// depth it exported, so a retired accumulator's gauge drops to 0 instead of keeping its last
/// value.
pub(crate) struct Exporter {
    client_id: String,
    described: bool,
    partitions: HashSet<TopicPartition>,
}

impl Exporter {
    pub(crate) fn new(client_id: &str) -> Self {
        Exporter {
            client_id: client_id.to_string(),
            described: false,
            partitions: HashSet::new(),
        }
    }

    /// Copies `snapshot` into the facade (whatever recorder is installed now).
    pub(crate) fn export(&mut self, snapshot: &MetricsSnapshot) {
        if !self.described {
            self.described = true;
            for name in snapshot.values.keys() {
                let key = facade_name(name);
                let help = format!("Java producer metric {name} (producer-metrics group)");
                if name.ends_with("-total") {
                    ::metrics::describe_counter!(key, help);
                } else {
                    ::metrics::describe_gauge!(key, help);
                }
            }
            ::metrics::describe_gauge!(
                "kafka_producer_mailbox_depth",
                "Records waiting in the partition accumulator's mailbox (of mailbox.capacity)"
            );
        }
        let client_id = self.client_id.clone();
        for (name, value) in &snapshot.values {
            let key = facade_name(name);
            if name.ends_with("-total") {
                // Counts are whole and non-negative; `absolute` keeps the counter monotonic.
                let count = if value.is_finite() && *value > 0.0 {
                    *value as u64
                } else {
                    0
                };
                ::metrics::counter!(key, "client_id" => client_id.clone()).absolute(count);
            } else {
                ::metrics::gauge!(key, "client_id" => client_id.clone()).set(*value);
            }
        }
        let mut seen = HashSet::with_capacity(snapshot.mailbox_depth.len());
        for (tp, depth) in &snapshot.mailbox_depth {
            self.depth(tp, *depth as f64);
            seen.insert(tp.clone());
        }
        let gone: Vec<TopicPartition> = self.partitions.difference(&seen).cloned().collect();
        for tp in &gone {
            self.depth(tp, 0.0);
        }
        self.partitions = seen;
    }

    fn depth(&self, tp: &TopicPartition, value: f64) {
        ::metrics::gauge!(
            "kafka_producer_mailbox_depth",
            "client_id" => self.client_id.clone(),
            "topic" => tp.topic.to_string(),
            "partition" => tp.partition.to_string()
        )
        .set(value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn java_names_become_prometheus_names() {
        assert_eq!(
            facade_name("record-send-total"),
            "kafka_producer_record_send_total"
        );
        assert_eq!(
            facade_name("request-latency-avg"),
            "kafka_producer_request_latency_avg"
        );
    }
}

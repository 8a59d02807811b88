//! Producer metrics, named as the Java producer's (`producer-metrics` group) where they apply.
//!
//! Counters are atomics updated by the actors; [`Metrics::snapshot`] turns them into values.
//! Differences from Java: rates (`*-rate`) are averaged over the producer's lifetime (Java uses
//! a 30 s sampled window), and averages/maxima are over the lifetime too.

#[cfg(feature = "metrics")]
pub mod export;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::Instant;

/// Sum, count and maximum of a series of samples.
#[derive(Default, Debug)]
pub(crate) struct Stat {
    sum: AtomicU64,
    count: AtomicU64,
    max: AtomicU64,
}

impl Stat {
    pub(crate) fn record(&self, v: u64) {
        self.sum.fetch_add(v, Relaxed);
        self.count.fetch_add(1, Relaxed);
        self.max.fetch_max(v, Relaxed);
    }
    fn avg(&self) -> f64 {
        let c = self.count.load(Relaxed);
        if c == 0 {
            0.0
        } else {
            self.sum.load(Relaxed) as f64 / c as f64
        }
    }
    fn max(&self) -> f64 {
        self.max.load(Relaxed) as f64
    }
}

/// The producer's counters, shared by its actors.
#[derive(Debug)]
pub struct Metrics {
    started: Instant,
    pub(crate) records_sent: AtomicU64,
    pub(crate) records_errored: AtomicU64,
    pub(crate) records_retried: AtomicU64,
    pub(crate) batch_size: Stat,
    pub(crate) records_per_request: Stat,
    /// Compressed / uncompressed size, in parts per million.
    pub(crate) compression_ppm: Stat,
    pub(crate) record_queue_time_ms: Stat,
    pub(crate) request_latency_ms: Stat,
    pub(crate) requests_in_flight: AtomicI64,
    pub(crate) outgoing_bytes: AtomicU64,
    pub(crate) throttle_time_ms: Stat,
    pub(crate) batches_split: AtomicU64,
    pub(crate) connections_created: AtomicU64,
    pub(crate) connections_open: AtomicI64,
    pub(crate) successful_authentications: AtomicU64,
    pub(crate) successful_reauthentications: AtomicU64,
    pub(crate) failed_authentications: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            started: Instant::now(),
            records_sent: AtomicU64::new(0),
            records_errored: AtomicU64::new(0),
            records_retried: AtomicU64::new(0),
            batch_size: Stat::default(),
            records_per_request: Stat::default(),
            compression_ppm: Stat::default(),
            record_queue_time_ms: Stat::default(),
            request_latency_ms: Stat::default(),
            requests_in_flight: AtomicI64::new(0),
            outgoing_bytes: AtomicU64::new(0),
            throttle_time_ms: Stat::default(),
            batches_split: AtomicU64::new(0),
            connections_created: AtomicU64::new(0),
            connections_open: AtomicI64::new(0),
            successful_authentications: AtomicU64::new(0),
            successful_reauthentications: AtomicU64::new(0),
            failed_authentications: AtomicU64::new(0),
        }
    }
}

/// A metric update a core decided, for its shell to apply ([`Metrics::apply`]): the cores
/// (`src/core/`) update no shared state themselves (issue 19), they emit these as actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Count {
    /// `connection-creation-total`.
    Created,
    /// `connection-count` + 1.
    Opened,
    /// `connection-count` - 1.
    Closed,
    /// `successful-authentication-total`.
    Authenticated,
    /// `successful-reauthentication-total`.
    Reauthenticated,
    /// `failed-authentication-total`.
    AuthenticationFailed,
    /// A batch goes out for the first time: `batch-size-*` (bytes) and `record-queue-time-*`
    /// (ms since its first record was sent).
    BatchSent {
        /// Its size on the wire, bytes.
        bytes: u64,
        /// Time queued, ms.
        queue_ms: u64,
    },
    /// A batch goes out again: `record-retry-total` += its records.
    Retried {
        /// Records in the batch.
        records: u64,
    },
    /// A Produce request goes out: `records-per-request-*`, `outgoing-byte-total`,
    /// `requests-in-flight` + 1.
    Request {
        /// Records in the request.
        records: u64,
        /// Bytes of its batches.
        bytes: u64,
    },
    /// A Produce request is answered or failed: `request-latency-*` (ms),
    /// `produce-throttle-time-*` (ms, when answered), `requests-in-flight` - 1.
    Answered {
        /// Since it was sent, ms.
        latency_ms: u64,
        /// The broker's `throttle_time_ms`, if it answered.
        throttle_ms: Option<u64>,
    },
    /// A batch too large for the broker was split in two: `batch-split-total`.
    Split,
    /// A batch was built: compressed / uncompressed, parts per million
    /// (`compression-rate-*`).
    Compression {
        /// Parts per million.
        ppm: u64,
    },
}

impl Metrics {
    /// Applies what a core counted.
    pub(crate) fn apply(&self, count: Count) {
        let add = |c: &AtomicU64, n: u64| {
            c.fetch_add(n, Relaxed);
        };
        match count {
            Count::Created => add(&self.connections_created, 1),
            Count::Opened => {
                self.connections_open.fetch_add(1, Relaxed);
            }
            Count::Closed => {
                self.connections_open.fetch_sub(1, Relaxed);
            }
            Count::Authenticated => add(&self.successful_authentications, 1),
            Count::Reauthenticated => add(&self.successful_reauthentications, 1),
            Count::AuthenticationFailed => add(&self.failed_authentications, 1),
            Count::BatchSent { bytes, queue_ms } => {
                self.batch_size.record(bytes);
                self.record_queue_time_ms.record(queue_ms);
            }
            Count::Retried { records } => add(&self.records_retried, records),
            Count::Request { records, bytes } => {
                self.records_per_request.record(records);
                add(&self.outgoing_bytes, bytes);
                self.requests_in_flight.fetch_add(1, Relaxed);
            }
            Count::Answered {
                latency_ms,
                throttle_ms,
            } => {
                self.request_latency_ms.record(latency_ms);
                self.requests_in_flight.fetch_sub(1, Relaxed);
                if let Some(t) = throttle_ms {
                    self.throttle_time_ms.record(t);
                }
            }
            Count::Split => add(&self.batches_split, 1),
            Count::Compression { ppm } => self.compression_ppm.record(ppm),
        }
    }
}

/// A point-in-time view of the metrics.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MetricsSnapshot {
    /// Java metric name → value. Units: counts, records/s, bytes, ms, as in Java.
    pub values: BTreeMap<&'static str, f64>,
    /// Records waiting in each partition accumulator's mailbox (of `mailbox.capacity`).
    pub mailbox_depth: Vec<(crate::record::TopicPartition, usize)>,
}

impl MetricsSnapshot {
    /// The value of a metric by its Java name, e.g. `record-send-total`.
    pub fn get(&self, name: &str) -> Option<f64> {
        self.values.get(name).copied()
    }
}

impl Metrics {
    /// Current values, without the mailbox depths (the producer adds those).
    pub fn snapshot(&self) -> MetricsSnapshot {
        let secs = self.started.elapsed().as_secs_f64().max(1e-3);
        let sent = self.records_sent.load(Relaxed) as f64;
        let errors = self.records_errored.load(Relaxed) as f64;
        let retries = self.records_retried.load(Relaxed) as f64;
        let out = self.outgoing_bytes.load(Relaxed) as f64;
        let mut v = BTreeMap::new();
        v.insert("record-send-total", sent);
        v.insert("record-send-rate", sent / secs);
        v.insert("record-error-total", errors);
        v.insert("record-error-rate", errors / secs);
        v.insert("record-retry-total", retries);
        v.insert("record-retry-rate", retries / secs);
        v.insert("batch-size-avg", self.batch_size.avg());
        v.insert("batch-size-max", self.batch_size.max());
        v.insert("batch-split-total", self.batches_split.load(Relaxed) as f64);
        v.insert("records-per-request-avg", self.records_per_request.avg());
        v.insert(
            "request-total",
            self.records_per_request.count.load(Relaxed) as f64,
        );
        v.insert("compression-rate-avg", self.compression_ppm.avg() / 1e6);
        v.insert("record-queue-time-avg", self.record_queue_time_ms.avg());
        v.insert("record-queue-time-max", self.record_queue_time_ms.max());
        v.insert("request-latency-avg", self.request_latency_ms.avg());
        v.insert("request-latency-max", self.request_latency_ms.max());
        v.insert(
            "requests-in-flight",
            self.requests_in_flight.load(Relaxed).max(0) as f64,
        );
        v.insert("outgoing-byte-total", out);
        v.insert("outgoing-byte-rate", out / secs);
        v.insert("produce-throttle-time-avg", self.throttle_time_ms.avg());
        v.insert("produce-throttle-time-max", self.throttle_time_ms.max());
        let count = |a: &AtomicU64| a.load(Relaxed) as f64;
        v.insert(
            "connection-creation-total",
            count(&self.connections_created),
        );
        v.insert(
            "connection-creation-rate",
            count(&self.connections_created) / secs,
        );
        v.insert(
            "connection-count",
            self.connections_open.load(Relaxed).max(0) as f64,
        );
        v.insert(
            "successful-authentication-total",
            count(&self.successful_authentications),
        );
        v.insert(
            "successful-reauthentication-total",
            count(&self.successful_reauthentications),
        );
        v.insert(
            "failed-authentication-total",
            count(&self.failed_authentications),
        );
        MetricsSnapshot {
            values: v,
            mailbox_depth: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_and_names() {
        let m = Metrics::default();
        m.batch_size.record(100);
        m.batch_size.record(300);
        m.records_sent.fetch_add(7, Relaxed);
        let s = m.snapshot();
        assert_eq!(s.get("batch-size-avg"), Some(200.0));
        assert_eq!(s.get("batch-size-max"), Some(300.0));
        assert_eq!(s.get("record-send-total"), Some(7.0));
        assert!(s.get("record-send-rate").unwrap() > 0.0);
        assert_eq!(s.get("no-such-metric"), None);
    }
}

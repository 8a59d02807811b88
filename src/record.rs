//! The records users send and the metadata they get back.
//!
//! Names and shapes follow the Java client: [`ProducerRecord`], [`RecordMetadata`],
//! [`TopicPartition`], [`Header`].

use bytes::Bytes;
use std::fmt;
use std::sync::Arc;

/// A topic name and a partition index.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    /// Topic name.
    pub topic: Arc<str>,
    /// Partition index, from 0.
    pub partition: i32,
}

impl TopicPartition {
    /// A new topic-partition.
    pub fn new(topic: impl Into<Arc<str>>, partition: i32) -> Self {
        TopicPartition {
            topic: topic.into(),
            partition,
        }
    }
}

impl fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

/// A record header (KIP-82): a string key and an optional byte value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// Header key (UTF-8).
    pub key: String,
    /// Header value; `None` is a null value on the wire.
    pub value: Option<Bytes>,
}

impl Header {
    /// A header with a value.
    pub fn new(key: impl Into<String>, value: impl Into<Bytes>) -> Self {
        Header {
            key: key.into(),
            value: Some(value.into()),
        }
    }
}

/// A record to send: topic, optional partition, optional key, value, headers, optional timestamp.
///
/// Key and value are already serialized bytes (see [`crate::serializer`] for serializers).
/// `partition: None` lets the [`crate::partitioner::Partitioner`] choose; `timestamp: None`
/// stamps the record with the current time (CreateTime, ms since the epoch) at `send`.
#[derive(Clone, PartialEq, Eq)]
pub struct ProducerRecord {
    /// Topic to write to.
    pub topic: Arc<str>,
    /// Explicit partition; wins over the partitioner.
    pub partition: Option<i32>,
    /// Serialized key; `None` is a null key.
    pub key: Option<Bytes>,
    /// Serialized value; `None` is a null value (a tombstone on compacted topics).
    pub value: Option<Bytes>,
    /// Record headers, in order.
    pub headers: Vec<Header>,
    /// Timestamp in ms since the Unix epoch; `None` means "now".
    pub timestamp: Option<i64>,
}

/// Sizes, not contents: a key, value or header may be a secret, and a record reaches logs
/// through the `Debug` of errors that carry it ([`crate::SendError`]).
impl std::fmt::Debug for ProducerRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let size = |b: &Option<Bytes>| b.as_ref().map(|b| b.len());
        let headers: Vec<(&str, Option<usize>)> = self
            .headers
            .iter()
            .map(|h| (h.key.as_str(), h.value.as_ref().map(|v| v.len())))
            .collect();
        f.debug_struct("ProducerRecord")
            .field("topic", &self.topic)
            .field("partition", &self.partition)
            .field("key_bytes", &size(&self.key))
            .field("value_bytes", &size(&self.value))
            .field("headers", &headers)
            .field("timestamp", &self.timestamp)
            .finish()
    }
}

impl ProducerRecord {
    /// A record with a value and nothing else set.
    pub fn new(topic: impl Into<Arc<str>>, value: impl Into<Bytes>) -> Self {
        ProducerRecord {
            topic: topic.into(),
            partition: None,
            key: None,
            value: Some(value.into()),
            headers: Vec::new(),
            timestamp: None,
        }
    }

    /// A record with neither key nor value (set them with the builder methods).
    pub fn to(topic: impl Into<Arc<str>>) -> Self {
        ProducerRecord {
            topic: topic.into(),
            partition: None,
            key: None,
            value: None,
            headers: Vec::new(),
            timestamp: None,
        }
    }

    /// Sets the key.
    pub fn key(mut self, key: impl Into<Bytes>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Sets the value.
    pub fn value(mut self, value: impl Into<Bytes>) -> Self {
        self.value = Some(value.into());
        self
    }

    /// Sets an explicit partition.
    pub fn partition(mut self, partition: i32) -> Self {
        self.partition = Some(partition);
        self
    }

    /// Adds a header.
    pub fn header(mut self, key: impl Into<String>, value: impl Into<Bytes>) -> Self {
        self.headers.push(Header::new(key, value));
        self
    }

    /// Sets the timestamp (ms since the Unix epoch).
    pub fn timestamp(mut self, timestamp_ms: i64) -> Self {
        self.timestamp = Some(timestamp_ms);
        self
    }
}

/// What the broker says about a delivered record (Java's `RecordMetadata`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordMetadata {
    /// Topic the record was written to.
    pub topic: Arc<str>,
    /// Partition the record was written to.
    pub partition: i32,
    /// Offset of the record in the partition; `-1` when `acks=0` (no response to read it from).
    pub offset: i64,
    /// Timestamp (ms): the record's CreateTime, or the broker's LogAppendTime when the topic uses
    /// it.
    pub timestamp: i64,
    /// Size of the serialized key in bytes, `-1` when the key is null.
    pub serialized_key_size: i32,
    /// Size of the serialized value in bytes, `-1` when the value is null.
    pub serialized_value_size: i32,
}

impl RecordMetadata {
    /// The record's topic-partition.
    pub fn topic_partition(&self) -> TopicPartition {
        TopicPartition::new(self.topic.clone(), self.partition)
    }
}

/// `send`'s clock: the monotonic instant (for `delivery.timeout.ms`) and the wall-clock time in
/// ms (the record's CreateTime) from one clock read. The wall clock is read once per 100 ms per
/// thread and advanced by the monotonic clock in between, so a CreateTime follows a step of the
/// system clock within 100 ms.
pub(crate) fn send_clock() -> (std::time::Instant, i64) {
    use std::cell::Cell;
    use std::time::{Duration, Instant};
    thread_local! {
        static BASE: Cell<Option<(Instant, i64)>> = const { Cell::new(None) };
    }
    let now = Instant::now();
    // `try_with`: in a thread-local destructor the cache is gone; read the wall clock.
    let ms = BASE
        .try_with(|b| match b.get() {
            Some((at, wall)) if now.saturating_duration_since(at) < Duration::from_millis(100) => {
                wall + now.saturating_duration_since(at).as_millis() as i64
            }
            _ => {
                let wall = now_ms();
                b.set(Some((now, wall)));
                wall
            }
        })
        .unwrap_or_else(|_| now_ms());
    (now, ms)
}

/// Milliseconds since the Unix epoch (0 if the clock is before it): CreateTime of records.
#[inline]
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 19: a record's `Debug` (and so `SendError`'s) shows sizes, never the bytes.
    #[test]
    fn debug_prints_sizes_not_payloads() {
        let r = ProducerRecord::new("t", "hunter2-value")
            .key("secret-key")
            .header("auth", "s3cr3t");
        let shown = format!("{r:?}");
        for secret in ["hunter2", "secret-key", "s3cr3t"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        assert!(shown.contains("value_bytes: Some(13)"), "{shown}");
        assert!(shown.contains("\"auth\""), "{shown}");
    }
}

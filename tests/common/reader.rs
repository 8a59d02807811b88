//! Reading back with librdkafka (`check.crcs=true`; `read_committed` for transactions): what
//! is really stored in a topic, independent of our code.

use super::*;

/// One record as librdkafka consumed it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsumedRecord {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    /// In record order; duplicate keys are kept.
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    /// Milliseconds since the epoch (CreateTime or LogAppendTime), if any.
    pub timestamp: Option<i64>,
}

impl ConsumedRecord {
    /// The key as UTF-8 (lossy); `None` for a null key.
    pub fn key_str(&self) -> Option<String> {
        self.key
            .as_deref()
            .map(|k| String::from_utf8_lossy(k).into_owned())
    }

    /// The value as UTF-8 (lossy); `None` for a null value.
    pub fn value_str(&self) -> Option<String> {
        self.value
            .as_deref()
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }
}

/// librdkafka consumer used by the readers: explicit assignment (no group membership), CRC checks.
pub(super) fn reader(bootstrap: &str, read_committed: bool) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set(
            "group.id",
            format!(
                "actix-kafka-test-reader-{}-{}",
                std::process::id(),
                next_id()
            ),
        )
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("check.crcs", "true")
        .set("enable.partition.eof", "false")
        .set(
            "isolation.level",
            if read_committed {
                "read_committed"
            } else {
                "read_uncommitted"
            },
        )
        .set("fetch.wait.max.ms", "100")
        .set("socket.timeout.ms", "10000")
        .set("reconnect.backoff.ms", "50")
        .set("reconnect.backoff.max.ms", "500")
        .create()
        .expect("create rdkafka reader")
}

pub(super) fn assign_all(consumer: &BaseConsumer, topic: &str, partitions: &[i32]) {
    let mut tpl = TopicPartitionList::new();
    for &p in partitions {
        tpl.add_partition_offset(topic, p, Offset::Offset(0))
            .expect("add partition");
    }
    consumer.assign(&tpl).expect("assign partitions");
}

pub(super) fn to_record<M: Message>(m: &M) -> ConsumedRecord {
    ConsumedRecord {
        partition: m.partition(),
        offset: m.offset(),
        key: m.key().map(<[u8]>::to_vec),
        value: m.payload().map(<[u8]>::to_vec),
        headers: m
            .headers()
            .map(|hs| {
                hs.iter()
                    .map(|h| (h.key.to_string(), h.value.map(<[u8]>::to_vec)))
                    .collect()
            })
            .unwrap_or_default(),
        timestamp: m.timestamp().to_millis(),
    }
}

/// Errors that mean the stored data is bad: the test must fail, not retry.
pub(super) fn is_corruption(e: &KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::BadMessage
                | RDKafkaErrorCode::BadCompression
                | RDKafkaErrorCode::InvalidMessage
        )
    )
}

/// Blocking version of [`read_back`].
pub fn read_back_blocking(
    bootstrap: &str,
    topic: &str,
    expected: usize,
    timeout: Duration,
) -> Vec<ConsumedRecord> {
    let deadline = Instant::now() + timeout;
    let partitions = wait_for_topic(bootstrap, topic, None, timeout);
    let consumer = reader(bootstrap, true);
    assign_all(&consumer, topic, &partitions);
    let mut out = Vec::with_capacity(expected);
    let mut transient = Vec::new();
    while out.len() < expected && Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(100)) {
            None => {}
            Some(Ok(m)) => out.push(to_record(&m)),
            Some(Err(e)) if is_corruption(&e) => {
                panic!("librdkafka rejected data in {topic} on {bootstrap} (check.crcs=true): {e}")
            }
            Some(Err(e)) => transient.push(e.to_string()),
        }
    }
    if out.len() < expected && !transient.is_empty() {
        eprintln!(
            "read_back({topic}): got {}/{expected}; consumer errors: {transient:?}",
            out.len()
        );
    }
    out.sort_by_key(|r| (r.partition, r.offset));
    out
}

/// Reads `topic` from offset 0 of every partition with librdkafka (`check.crcs=true`,
/// `read_committed`, partitions assigned explicitly, unique group id, nothing committed) until
/// `expected` records were read or `timeout` passed, and returns them sorted by
/// (partition, offset). Returns fewer records on timeout (assert on the length); may return more
/// than `expected` only if they arrived in the same fetch. Panics if librdkafka reports corrupt
/// data (CRC mismatch, bad compression, invalid message).
///
/// Runs the blocking consumer on tokio's blocking pool: call it inside a tokio runtime
/// (`#[tokio::test]`, `#[actix_rt::test]`, `actix_rt::System`).
pub async fn read_back(
    bootstrap: &str,
    topic: &str,
    expected: usize,
    timeout: Duration,
) -> Vec<ConsumedRecord> {
    let (b, t) = (bootstrap.to_string(), topic.to_string());
    match tokio::task::spawn_blocking(move || read_back_blocking(&b, &t, expected, timeout)).await {
        Ok(v) => v,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => panic!("read_back task failed: {e}"),
    }
}

/// Blocking version of [`read_all`].
pub fn read_all_blocking(bootstrap: &str, topic: &str, timeout: Duration) -> Vec<ConsumedRecord> {
    read_all_isolated(bootstrap, topic, timeout, false)
}

/// Like [`read_all`] with `isolation.level=read_committed`: the records of committed
/// transactions (and non-transactional ones) up to each partition's end. Every transaction of
/// the topic must have ended (else the last stable offset stays behind and this times out).
pub async fn read_all_committed(
    bootstrap: &str,
    topic: &str,
    timeout: Duration,
) -> Vec<ConsumedRecord> {
    let (b, t) = (bootstrap.to_string(), topic.to_string());
    match tokio::task::spawn_blocking(move || read_all_isolated(&b, &t, timeout, true)).await {
        Ok(v) => v,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => panic!("read_all_committed task failed: {e}"),
    }
}

pub(super) fn read_all_isolated(
    bootstrap: &str,
    topic: &str,
    timeout: Duration,
    read_committed: bool,
) -> Vec<ConsumedRecord> {
    let deadline = Instant::now() + timeout;
    let partitions = wait_for_topic(bootstrap, topic, None, timeout);
    let consumer = reader(bootstrap, read_committed);
    // Snapshot of the end of every partition.
    let mut high: BTreeMap<i32, i64> = BTreeMap::new();
    for &p in &partitions {
        let (lo, hi) = loop {
            match consumer.fetch_watermarks(topic, p, Duration::from_secs(5)) {
                Ok(w) => break w,
                Err(e) => assert!(Instant::now() < deadline, "watermarks of {topic}/{p}: {e}"),
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        if hi > lo {
            high.insert(p, hi);
        }
    }
    let active: Vec<i32> = high.keys().copied().collect();
    assign_all(&consumer, topic, &active);
    let mut out = Vec::new();
    let mut next: BTreeMap<i32, i64> = BTreeMap::new();
    let done = |next: &BTreeMap<i32, i64>| {
        high.iter()
            .all(|(p, hi)| next.get(p).is_some_and(|n| n >= hi))
    };
    while !done(&next) {
        assert!(
            Instant::now() < deadline,
            "read_all({topic}): timed out after {timeout:?}; end offsets {high:?}, reached {next:?}"
        );
        match consumer.poll(Duration::from_millis(100)) {
            None => {
                // Control records (transaction markers) at the end of a partition are skipped by
                // librdkafka: trust its fetch position too.
                if let Ok(pos) = consumer.position() {
                    for e in pos.elements() {
                        if let Offset::Offset(o) = e.offset() {
                            let n = next.entry(e.partition()).or_insert(o);
                            *n = (*n).max(o);
                        }
                    }
                }
            }
            Some(Ok(m)) => {
                let n = next.entry(m.partition()).or_insert(0);
                *n = (*n).max(m.offset() + 1);
                out.push(to_record(&m));
            }
            Some(Err(e)) if is_corruption(&e) => {
                panic!("librdkafka rejected data in {topic} on {bootstrap} (check.crcs=true): {e}")
            }
            Some(Err(e)) => eprintln!("read_all({topic}): consumer error: {e}"),
        }
    }
    out.sort_by_key(|r| (r.partition, r.offset));
    out
}

/// Reads **everything** currently stored in `topic` (up to each partition's high watermark at
/// the time of the call, `read_uncommitted`, `check.crcs=true`), sorted by (partition, offset).
/// Use it to assert exact counts (no duplicates, nothing extra). Panics on timeout or corrupt
/// data. Same runtime requirement as [`read_back`].
pub async fn read_all(bootstrap: &str, topic: &str, timeout: Duration) -> Vec<ConsumedRecord> {
    let (b, t) = (bootstrap.to_string(), topic.to_string());
    match tokio::task::spawn_blocking(move || read_all_blocking(&b, &t, timeout)).await {
        Ok(v) => v,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => panic!("read_all task failed: {e}"),
    }
}

/// `(low, high)` watermarks of every partition of `topic`, by partition id.
pub fn watermarks(bootstrap: &str, topic: &str) -> BTreeMap<i32, (i64, i64)> {
    let partitions = wait_for_topic(bootstrap, topic, None, TOPIC_TIMEOUT);
    let consumer = admin_client(bootstrap);
    partitions
        .into_iter()
        .map(|p| {
            let w = consumer
                .fetch_watermarks(topic, p, Duration::from_secs(10))
                .unwrap_or_else(|e| panic!("watermarks of {topic}/{p}: {e}"));
            (p, w)
        })
        .collect()
}

//! Shared helpers for the integration tests (`mod common;` in every test file).
//!
//! * [`TestBroker`] / [`KafkaCluster`]: Apache Kafka 4 (KRaft) through `scripts/kafka.sh`: one
//!   broker shared by the tests of a process (or `KAFKA_TEST_BOOTSTRAP`), or a cluster of a test's
//!   own (1 or 3 brokers) to kill, pause and restart. See `kafka.rs`.
//! * [`read_back`] / [`read_all`]: an independent reader (librdkafka through `rdkafka`, with
//!   `check.crcs=true`) that returns what is really stored in a topic.
//! * [`rdkafka_produce_keyed`] / [`rdkafka_producer`]: librdkafka as a reference producer (Java
//!   compatible `murmur2_random` partitioner).
//! * [`mock_cluster`] / [`MockKafka`]: librdkafka's in-process mock cluster for fault injection
//!   (leader moves, brokers going down, request errors, request tracking).
//! * [`encode_batch`] / [`produce_raw_batch`]: hand-made record batches sent verbatim.
//!
//! Apache Kafka validates every batch's CRC itself (a bad one is refused with CORRUPT_MESSAGE),
//! and the readers check again (`check.crcs=true`, they panic with `BadMessage`).
//!
//! Everything here is blocking unless marked `async`; the blocking functions may be called from
//! inside a tokio / actix runtime (they only block the calling thread for a short while).
//!
//! Environment:
//! * `KAFKA_TEST_BOOTSTRAP`: a running cluster for the shared broker (set by `scripts/test.sh`).
//! * `KAFKA_KEEP_LOGS`: keep the state folders (`target/tmp/kafka-*`) of the clusters tests start.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashSet};
use std::ffi::{CStr, CString};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::raw::c_int;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::bindings as rdsys;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Headers, Message};
use rdkafka::metadata::Metadata;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{
    BaseProducer, DefaultProducerContext, FutureProducer, FutureRecord, Producer,
};
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

/// How long [`TestBroker::start`] / [`TestBroker::restart`] wait for the broker to answer.
pub const BROKER_START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long [`TestBroker::create_topic`] waits for the topic to show up in metadata.
pub const TOPIC_TIMEOUT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------------
// Small utilities
// ---------------------------------------------------------------------------------------------

static COUNTER: AtomicU64 = AtomicU64::new(0);

pub(crate) fn next_id() -> u64 {
    COUNTER.fetch_add(1, Ordering::Relaxed)
}

/// A topic name that is unique across tests and test processes: `{prefix}-{pid}-{nanos}-{n}`.
/// Characters that Kafka does not allow in topic names are replaced by `_`.
pub fn unique_topic(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let prefix: String = prefix
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(150)
        .collect();
    format!(
        "{prefix}-{}-{}-{}",
        std::process::id(),
        nanos % 1_000_000_000_000,
        next_id()
    )
}

/// Installs a `tracing` subscriber writing to the test output (filter from `RUST_LOG`, default
/// `warn`). Safe to call many times.
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_test_writer()
        .try_init();
}

/// Ports handed out by this process, so parallel tests never pick the same one.
fn used_ports() -> &'static Mutex<HashSet<u16>> {
    static PORTS: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    PORTS.get_or_init(|| Mutex::new(HashSet::new()))
}

/// A loopback port nobody listens on right now (and not handed out before by this process).
pub fn free_port() -> u16 {
    for _ in 0..100 {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .expect("bind 127.0.0.1:0 to find a free port");
        let port = listener.local_addr().expect("local_addr").port();
        drop(listener);
        if used_ports().lock().unwrap().insert(port) {
            return port;
        }
    }
    panic!("could not find a free loopback port");
}

fn port_accepts(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
}

pub(crate) fn log_dir() -> PathBuf {
    // Set by cargo for integration tests: <target>/tmp.
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let _ = std::fs::create_dir_all(&dir);
    dir
}

pub(crate) fn tail_of_file(path: &Path, max_bytes: u64) -> String {
    let Ok(mut f) = File::open(path) else {
        return String::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(max_bytes)));
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

/// A plain librdkafka client for metadata / watermark queries.
fn admin_client(bootstrap: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("actix-kafka-test-admin-{}", next_id()))
        .set("enable.auto.commit", "false")
        // Watermarks are the log's end, not the last stable offset (librdkafka's default
        // read_committed would stop at an open transaction).
        .set("isolation.level", "read_uncommitted")
        .set("socket.timeout.ms", "10000")
        .set("reconnect.backoff.ms", "50")
        .set("reconnect.backoff.max.ms", "500")
        .create()
        .expect("create rdkafka metadata client")
}

/// Partition ids of `topic`, once metadata reports the topic without error and every partition
/// has a leader. `None` while that is not (yet) the case.
fn partitions_ready(metadata: &Metadata, topic: &str) -> Option<Vec<i32>> {
    let t = metadata.topics().iter().find(|t| t.name() == topic)?;
    if t.error().is_some() || t.partitions().is_empty() {
        return None;
    }
    if t.partitions()
        .iter()
        .any(|p| p.error().is_some() || p.leader() < 0)
    {
        return None;
    }
    let mut ids: Vec<i32> = t.partitions().iter().map(|p| p.id()).collect();
    ids.sort_unstable();
    Some(ids)
}

/// Waits until `topic` is visible with a leader for every partition; returns the partition ids.
/// With `Some(n)` it also waits for exactly `n` partitions. Panics on timeout.
pub fn wait_for_topic(
    bootstrap: &str,
    topic: &str,
    partitions: Option<i32>,
    timeout: Duration,
) -> Vec<i32> {
    let client = admin_client(bootstrap);
    let deadline = Instant::now() + timeout;
    loop {
        let last = match client.fetch_metadata(Some(topic), Duration::from_secs(5)) {
            Ok(md) => match partitions_ready(&md, topic) {
                Some(ids) if partitions.is_none_or(|n| ids.len() == n as usize) => return ids,
                Some(ids) => format!("{} partitions", ids.len()),
                None => md
                    .topics()
                    .iter()
                    .find(|t| t.name() == topic)
                    .map(|t| format!("error {:?}, {} partitions", t.error(), t.partitions().len()))
                    .unwrap_or_else(|| "topic missing".into()),
            },
            Err(e) => e.to_string(),
        };
        assert!(
            Instant::now() < deadline,
            "topic {topic} not ready on {bootstrap} after {timeout:?} (want {partitions:?} partitions): {last}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

// ---------------------------------------------------------------------------------------------
// Reading back with librdkafka
// ---------------------------------------------------------------------------------------------

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
fn reader(bootstrap: &str, read_committed: bool) -> BaseConsumer {
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

fn assign_all(consumer: &BaseConsumer, topic: &str, partitions: &[i32]) {
    let mut tpl = TopicPartitionList::new();
    for &p in partitions {
        tpl.add_partition_offset(topic, p, Offset::Offset(0))
            .expect("add partition");
    }
    consumer.assign(&tpl).expect("assign partitions");
}

fn to_record<M: Message>(m: &M) -> ConsumedRecord {
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
fn is_corruption(e: &KafkaError) -> bool {
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

fn read_all_isolated(
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

// ---------------------------------------------------------------------------------------------
// Reference producer (librdkafka)
// ---------------------------------------------------------------------------------------------

/// A librdkafka `FutureProducer` with the Java-compatible `murmur2_random` partitioner,
/// `acks=all`, `linger.ms=0`.
pub fn rdkafka_producer(bootstrap: &str) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("partitioner", "murmur2_random")
        .set("acks", "all")
        .set("linger.ms", "0")
        .set("message.timeout.ms", "30000")
        .create()
        .expect("create rdkafka producer")
}

/// Produces one keyed record with librdkafka (`murmur2_random` partitioner, i.e. what the Java
/// client's default partitioner does for keyed records) and returns `(partition, offset)`.
/// The partition is the reference answer for "which partition does this key go to".
pub async fn rdkafka_produce_keyed(
    bootstrap: &str,
    topic: &str,
    key: &[u8],
    value: &[u8],
) -> (i32, i64) {
    let producer = rdkafka_producer(bootstrap);
    let delivery = producer
        .send(
            FutureRecord::to(topic).key(key).payload(value),
            Duration::from_secs(30),
        )
        .await
        .unwrap_or_else(|(e, _)| panic!("rdkafka produce to {topic} on {bootstrap}: {e}"));
    (delivery.partition, delivery.offset)
}

// ---------------------------------------------------------------------------------------------
// librdkafka mock cluster
// ---------------------------------------------------------------------------------------------

/// librdkafka's in-process mock cluster with `brokers` brokers (ids `1..=brokers`), through the
/// rdkafka crate's safe API. It lives until dropped; it is `!Send` (keep it on the test's thread,
/// which is fine with `#[tokio::test]` / `#[actix_rt::test]`). See [`MockKafka`] for a `Send`
/// wrapper with per-broker errors and request tracking.
///
/// ```ignore
/// let mc = mock_cluster(3);
/// let bootstrap = mc.bootstrap_servers();               // "127.0.0.1:p1,127.0.0.1:p2,..."
/// mc.create_topic("t", 4, 1).unwrap();                  // no CreateTopics API: create here
/// mc.partition_leader("t", 0, Some(2)).unwrap();        // move a leader (None = leaderless)
/// mc.broker_down(1).unwrap();                           // drop connections + refuse new ones
/// mc.broker_up(1).unwrap();                             // (-1 = all brokers; no leader change)
/// mc.broker_round_trip_time(2, Duration::from_millis(500)).unwrap();
/// // The next 2 Produce requests (to any broker) fail with NOT_LEADER_OR_FOLLOWER:
/// mc.request_errors(RDKafkaApiKey::Produce,
///     &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION; 2]);
/// // RD_KAFKA_RESP_ERR__TRANSPORT as an injected error makes the broker drop the connection.
/// mc.clear_request_errors(RDKafkaApiKey::Produce);
/// mc.topic_error("t", RDKafkaRespErr::RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE).unwrap(); // Metadata
/// ```
///
/// Supported API versions of the mock (librdkafka 2.12): ApiVersions 0-2 (v3 requests get
/// UNSUPPORTED_VERSION), Metadata 0-12, Produce 0-10, InitProducerId 0-4, Fetch 0-16,
/// ListOffsets 0-7. No CreateTopics; unknown topics are auto-created on Metadata/Produce.
pub fn mock_cluster(brokers: i32) -> MockCluster<'static, DefaultProducerContext> {
    MockCluster::new(brokers).expect("create librdkafka mock cluster")
}

/// One request received by a [`MockKafka`] broker while request tracking was on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MockRequest {
    pub broker_id: i32,
    /// Kafka API key (0 = Produce, 3 = Metadata, 18 = ApiVersions, 22 = InitProducerId, ...).
    pub api_key: i16,
    /// librdkafka's monotonic clock, microseconds.
    pub timestamp_us: i64,
}

/// librdkafka mock cluster owned directly through the C API: everything [`mock_cluster`] offers
/// plus per-broker error injection with delays and request tracking. `Send + Sync` (the mock API
/// is thread-safe). Broker ids are `1..=brokers`.
pub struct MockKafka {
    raw: *mut rdsys::rd_kafka_mock_cluster_t,
    /// The (never connecting) librdkafka handle the mock cluster runs on; must outlive `raw`.
    _handle: BaseProducer,
    pub brokers: i32,
}

unsafe impl Send for MockKafka {}
unsafe impl Sync for MockKafka {}

fn mock_result(op: &str, err: rdsys::rd_kafka_resp_err_t) -> Result<(), String> {
    if err == RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR {
        Ok(())
    } else {
        Err(format!("mock {op}: {:?}", RDKafkaErrorCode::from(err)))
    }
}

impl MockKafka {
    /// A mock cluster with `brokers` brokers.
    pub fn new(brokers: i32) -> MockKafka {
        assert!(brokers > 0);
        // No bootstrap.servers: this handle never connects anywhere, it only hosts the cluster.
        let handle: BaseProducer = ClientConfig::new()
            .set("log_level", "0")
            .create()
            .expect("create librdkafka handle for the mock cluster");
        let raw = unsafe {
            rdsys::rd_kafka_mock_cluster_new(handle.client().native_ptr(), brokers as c_int)
        };
        assert!(!raw.is_null(), "rd_kafka_mock_cluster_new failed");
        MockKafka {
            raw,
            _handle: handle,
            brokers,
        }
    }

    /// Comma-separated `host:port` list of all mock brokers.
    pub fn bootstrap(&self) -> String {
        unsafe { CStr::from_ptr(rdsys::rd_kafka_mock_cluster_bootstraps(self.raw)) }
            .to_string_lossy()
            .into_owned()
    }

    /// Creates a topic (replication factor min(brokers, 3)); leaders are spread over the brokers.
    pub fn create_topic(&self, topic: &str, partitions: i32) {
        let t = CString::new(topic).unwrap();
        let err = unsafe {
            rdsys::rd_kafka_mock_topic_create(self.raw, t.as_ptr(), partitions, self.brokers.min(3))
        };
        mock_result("topic_create", err).unwrap();
    }

    /// Moves the leader of `topic`/`partition` to `broker` (`None`: no leader).
    pub fn set_leader(&self, topic: &str, partition: i32, broker: Option<i32>) {
        let t = CString::new(topic).unwrap();
        let err = unsafe {
            rdsys::rd_kafka_mock_partition_set_leader(
                self.raw,
                t.as_ptr(),
                partition,
                broker.unwrap_or(-1),
            )
        };
        mock_result("partition_set_leader", err).unwrap();
    }

    /// Closes the broker's connections and refuses new ones (-1: all). Leaders do not move.
    pub fn broker_down(&self, broker: i32) {
        mock_result("broker_set_down", unsafe {
            rdsys::rd_kafka_mock_broker_set_down(self.raw, broker)
        })
        .unwrap();
    }

    /// Lets the broker accept connections again (-1: all).
    pub fn broker_up(&self, broker: i32) {
        mock_result("broker_set_up", unsafe {
            rdsys::rd_kafka_mock_broker_set_up(self.raw, broker)
        })
        .unwrap();
    }

    /// Delays every response of `broker` (-1: all) by `rtt`.
    pub fn set_rtt(&self, broker: i32, rtt: Duration) {
        let ms = rtt.as_millis().min(c_int::MAX as u128) as c_int;
        mock_result("broker_set_rtt", unsafe {
            rdsys::rd_kafka_mock_broker_set_rtt(self.raw, broker, ms)
        })
        .unwrap();
    }

    /// The next `errors.len()` requests with `api` (to any broker) fail with these errors, in
    /// order. `RD_KAFKA_RESP_ERR__TRANSPORT` makes the broker close the connection instead.
    pub fn push_request_errors(&self, api: RDKafkaApiKey, errors: &[RDKafkaRespErr]) {
        unsafe {
            rdsys::rd_kafka_mock_push_request_errors_array(
                self.raw,
                api as i16,
                errors.len(),
                errors.as_ptr(),
            )
        }
    }

    /// Like [`push_request_errors`](Self::push_request_errors) but only for requests to
    /// `broker`, each response delayed by its duration (NO_ERROR + delay = slow success).
    pub fn push_broker_request_errors(
        &self,
        broker: i32,
        api: RDKafkaApiKey,
        errors: &[(RDKafkaRespErr, Duration)],
    ) {
        for (err, rtt) in errors {
            let ms = rtt.as_millis().min(c_int::MAX as u128) as c_int;
            let r = unsafe {
                rdsys::rd_kafka_mock_broker_push_request_error_rtts(
                    self.raw,
                    broker,
                    api as i16,
                    1,
                    *err as c_int,
                    ms,
                )
            };
            mock_result("broker_push_request_error_rtts", r).unwrap();
        }
    }

    /// Drops the queued errors for `api` (cluster-wide stack).
    pub fn clear_request_errors(&self, api: RDKafkaApiKey) {
        unsafe { rdsys::rd_kafka_mock_clear_request_errors(self.raw, api as i16) }
    }

    /// Error returned for `topic` in Metadata responses (NO_ERROR to clear).
    pub fn set_topic_error(&self, topic: &str, err: RDKafkaRespErr) {
        let t = CString::new(topic).unwrap();
        unsafe { rdsys::rd_kafka_mock_topic_set_error(self.raw, t.as_ptr(), err) }
    }

    /// Restricts the versions the mock advertises for `api` (`None, None` disables it).
    pub fn set_api_versions(&self, api: RDKafkaApiKey, min: Option<i16>, max: Option<i16>) {
        let r = unsafe {
            rdsys::rd_kafka_mock_set_apiversion(
                self.raw,
                api as i16,
                min.unwrap_or(-1),
                max.unwrap_or(-1),
            )
        };
        mock_result("set_apiversion", r).unwrap();
    }

    /// Starts recording requests (see [`requests`](Self::requests)).
    pub fn start_request_tracking(&self) {
        unsafe { rdsys::rd_kafka_mock_start_request_tracking(self.raw) }
    }

    pub fn stop_request_tracking(&self) {
        unsafe { rdsys::rd_kafka_mock_stop_request_tracking(self.raw) }
    }

    /// Requests received since tracking started (or since [`clear_requests`](Self::clear_requests)).
    pub fn requests(&self) -> Vec<MockRequest> {
        let mut cnt: usize = 0;
        unsafe {
            let arr = rdsys::rd_kafka_mock_get_requests(self.raw, &mut cnt);
            if arr.is_null() {
                return Vec::new();
            }
            let out = (0..cnt)
                .map(|i| {
                    let r = *arr.add(i);
                    MockRequest {
                        broker_id: rdsys::rd_kafka_mock_request_id(r),
                        api_key: rdsys::rd_kafka_mock_request_api_key(r),
                        timestamp_us: rdsys::rd_kafka_mock_request_timestamp(r),
                    }
                })
                .collect();
            rdsys::rd_kafka_mock_request_destroy_array(arr, cnt);
            out
        }
    }

    /// Tracked requests with API key `api`.
    pub fn requests_of(&self, api: RDKafkaApiKey) -> Vec<MockRequest> {
        self.requests()
            .into_iter()
            .filter(|r| r.api_key == api as i16)
            .collect()
    }

    pub fn clear_requests(&self) {
        unsafe { rdsys::rd_kafka_mock_clear_requests(self.raw) }
    }
}

impl Drop for MockKafka {
    fn drop(&mut self) {
        unsafe { rdsys::rd_kafka_mock_cluster_destroy(self.raw) }
    }
}

// ---------------------------------------------------------------------------------------------
// Raw Produce (hand-made record batches)
// ---------------------------------------------------------------------------------------------

/// (key, value) of a record for [`encode_batch`].
pub type KeyValue<'a> = (Option<&'a [u8]>, Option<&'a [u8]>);

/// Encodes `records` (key, value) as one uncompressed v2 record batch with kafka-protocol.
pub fn encode_batch(records: &[KeyValue<'_>]) -> bytes::Bytes {
    use kafka_protocol::records::{
        Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let records: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, (k, v))| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: -1,
            timestamp: now,
            key: k.map(bytes::Bytes::copy_from_slice),
            value: v.map(bytes::Bytes::copy_from_slice),
            headers: Default::default(),
        })
        .collect();
    let mut buf = bytes::BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .expect("encode record batch");
    buf.freeze()
}

/// Sends one Produce request (v7, acks=-1) carrying `batch` verbatim for `topic`/`partition` over
/// a fresh connection to `bootstrap` (a single `host:port`) and returns the partition's
/// `(error_code, base_offset)`. For feeding brokers hand-made (e.g. deliberately corrupt) batches.
pub fn produce_raw_batch(
    bootstrap: &str,
    topic: &str,
    partition: i32,
    batch: bytes::Bytes,
) -> (i16, i64) {
    use bytes::{Buf, BufMut};
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::{
        ProduceRequest, ProduceResponse, RequestHeader, ResponseHeader, TopicName,
    };
    use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
    use std::io::Write;

    const VERSION: i16 = 7;
    let header = RequestHeader::default()
        .with_request_api_key(0)
        .with_request_api_version(VERSION)
        .with_correlation_id(1)
        .with_client_id(Some(StrBytes::from_static_str("actix-kafka-test-raw")));
    let request = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(batch))])]);
    let mut body = bytes::BytesMut::new();
    header.encode(&mut body, 1).unwrap();
    request.encode(&mut body, VERSION).unwrap();
    let mut frame = bytes::BytesMut::with_capacity(body.len() + 4);
    frame.put_i32(body.len() as i32);
    frame.extend_from_slice(&body);

    let mut stream =
        TcpStream::connect(bootstrap).unwrap_or_else(|e| panic!("connect {bootstrap}: {e}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    stream.write_all(&frame).unwrap();
    let mut len = [0u8; 4];
    stream
        .read_exact(&mut len)
        .expect("read Produce response size");
    let mut resp = vec![0u8; i32::from_be_bytes(len) as usize];
    stream.read_exact(&mut resp).expect("read Produce response");
    let mut resp = bytes::Bytes::from(resp);
    let rh = ResponseHeader::decode(&mut resp, 0).unwrap();
    assert_eq!(rh.correlation_id, 1);
    let pr = ProduceResponse::decode(&mut resp, VERSION).unwrap();
    assert!(
        !resp.has_remaining() || resp.remaining() < 8,
        "trailing bytes in Produce response"
    );
    let p = &pr.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}
mod kafka;
pub mod proxy;
#[allow(unused_imports)]
pub use kafka::{add_partitions, create_topic, KafkaCluster, TestBroker};

/// `(partition, leader, replicas, isr)` of every partition of `topic`, from librdkafka metadata.
pub fn partition_layout(bootstrap: &str, topic: &str) -> Vec<(i32, i32, Vec<i32>, Vec<i32>)> {
    let client = admin_client(bootstrap);
    let md = client
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("metadata of {topic}: {e}"));
    let mut out: Vec<_> = md
        .topics()
        .iter()
        .filter(|t| t.name() == topic)
        .flat_map(|t| t.partitions())
        .map(|p| (p.id(), p.leader(), p.replicas().to_vec(), p.isr().to_vec()))
        .collect();
    out.sort_by_key(|p| p.0);
    out
}

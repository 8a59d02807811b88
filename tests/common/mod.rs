//! Shared helpers for the integration tests (`mod common;` in every test file), by concern:
//! `kafka.rs` (brokers), `reader.rs`, `reference.rs`, `mock.rs`, `raw.rs`, `proxy.rs`; small
//! utilities here.
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
            "topic {topic} not ready on {bootstrap} after {timeout:?} (want {partitions:?} \
             partitions): {last}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

mod kafka;
mod mock;
pub mod proxy;
mod raw;
mod reader;
mod reference;
#[allow(unused_imports)]
pub use kafka::{add_partitions, create_topic, KafkaCluster, TestBroker};
#[allow(unused_imports)]
pub use mock::*;
#[allow(unused_imports)]
pub use raw::*;
#[allow(unused_imports)]
pub use reader::*;
#[allow(unused_imports)]
pub use reference::*;

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

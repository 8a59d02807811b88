//! Tests of the test harness itself (tests/common): Apache Kafka lifecycle (scripts/kafka.sh), the
//! librdkafka reader and the librdkafka mock cluster. They do not use actix-kafka's producer.

mod common;

use std::time::Duration;

use common::*;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};

const TIMEOUT: Duration = Duration::from_secs(30);

/// Produces `n` records `key-i`/`value-i` to partition `i % partitions` with one header each.
async fn produce_numbered(bootstrap: &str, topic: &str, n: usize, partitions: i32) {
    let producer = rdkafka_producer(bootstrap);
    for i in 0..n {
        let key = format!("key-{i}");
        let value = format!("value-{i}");
        let idx = i.to_string();
        let record = FutureRecord::to(topic)
            .key(&key)
            .payload(&value)
            .partition(i as i32 % partitions)
            .headers(OwnedHeaders::new().insert(Header {
                key: "idx",
                value: Some(&idx),
            }));
        producer
            .send(record, TIMEOUT)
            .await
            .unwrap_or_else(|(e, _)| panic!("produce {i}: {e}"));
    }
}

fn assert_numbered(records: &[ConsumedRecord], n: usize, partitions: i32) {
    assert_eq!(records.len(), n, "records: {records:#?}");
    let mut seen: Vec<usize> = records
        .iter()
        .map(|r| {
            let i: usize = r
                .key_str()
                .unwrap()
                .strip_prefix("key-")
                .unwrap()
                .parse()
                .unwrap();
            assert_eq!(r.value_str().unwrap(), format!("value-{i}"));
            assert_eq!(
                r.partition,
                i as i32 % partitions,
                "partition of record {i}"
            );
            assert_eq!(
                r.headers,
                vec![("idx".to_string(), Some(i.to_string().into_bytes()))]
            );
            assert!(
                r.timestamp.is_some_and(|t| t > 1_600_000_000_000),
                "timestamp {:?}",
                r.timestamp
            );
            i
        })
        .collect();
    seen.sort_unstable();
    assert_eq!(seen, (0..n).collect::<Vec<_>>());
    // Offsets are dense from 0 in every partition.
    for p in 0..partitions {
        let offsets: Vec<i64> = records
            .iter()
            .filter(|r| r.partition == p)
            .map(|r| r.offset)
            .collect();
        assert_eq!(
            offsets,
            (0..offsets.len() as i64).collect::<Vec<_>>(),
            "offsets of partition {p}"
        );
    }
}

#[tokio::test]
async fn kafka_produce_and_read_back() {
    let t0 = std::time::Instant::now();
    let broker = TestBroker::start();
    let t1 = std::time::Instant::now();
    let topic = unique_topic("harness");
    broker.create_topic(&topic, 3);
    eprintln!(
        "broker start {:?}, create_topic {:?}",
        t1 - t0,
        t1.elapsed()
    );

    produce_numbered(&broker.bootstrap, &topic, 10, 3).await;

    let records = read_back(&broker.bootstrap, &topic, 10, TIMEOUT).await;
    assert_numbered(&records, 10, 3);

    let all = read_all(&broker.bootstrap, &topic, TIMEOUT).await;
    assert_eq!(all, records);

    let wm = watermarks(&broker.bootstrap, &topic);
    assert_eq!(wm.len(), 3);
    assert_eq!(wm.values().map(|(_, hi)| hi).sum::<i64>(), 10, "{wm:?}");

    // The reference partitioner is deterministic for a key.
    let (p1, _) = rdkafka_produce_keyed(&broker.bootstrap, &topic, b"some-key", b"a").await;
    let (p2, _) = rdkafka_produce_keyed(&broker.bootstrap, &topic, b"some-key", b"b").await;
    assert_eq!(p1, p2);
    assert!((0..3).contains(&p1));
}

#[tokio::test]
async fn kafka_topics_and_restart_keep_data() {
    let mut broker = TestBroker::dedicated();
    let single = unique_topic("single");
    let many = unique_topic("many");
    broker.create_topic(&single, 1);
    broker.create_topic_with_config(&many, 8, &[("max.message.bytes", "1048576")]);
    assert_eq!(watermarks(&broker.bootstrap, &many).len(), 8);

    produce_numbered(&broker.bootstrap, &single, 3, 1).await;
    assert_eq!(
        read_back(&broker.bootstrap, &single, 3, TIMEOUT)
            .await
            .len(),
        3
    );

    let port: u16 = broker
        .bootstrap
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    broker.stop();
    assert!(!broker.is_running());
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "port still open after kill"
    );

    // Same port, data on disk: the records and topics are still there.
    broker.restart();
    assert!(broker.is_running());
    assert_eq!(
        watermarks(&broker.bootstrap, &single).get(&0),
        Some(&(0, 3))
    );
    assert_eq!(watermarks(&broker.bootstrap, &many).len(), 8);

    produce_numbered(&broker.bootstrap, &single, 5, 1).await;
    let records = read_all(&broker.bootstrap, &single, TIMEOUT).await;
    assert_eq!(records.len(), 3 + 5);
    let values: Vec<String> = records.iter().map(|r| r.value_str().unwrap()).collect();
    let expected: Vec<String> = (0..3).chain(0..5).map(|i| format!("value-{i}")).collect();
    assert_eq!(
        values, expected,
        "3 records before the kill, 5 after the restart"
    );
    let offsets: Vec<i64> = records.iter().map(|r| r.offset).collect();
    assert_eq!(offsets, (0..8).collect::<Vec<i64>>());
}

/// `scripts/kafka.sh` with three brokers: status lists them, a killed one is down and comes back,
/// a topic gets replication 3.
#[test]
fn three_broker_cluster_lifecycle() {
    let cluster = KafkaCluster::start(3);
    assert_eq!(cluster.bootstrap.split(',').count(), 3);
    let status = cluster.status();
    assert_eq!(status.len(), 3, "{status:?}");
    assert!(status.iter().all(|(_, pid)| pid.is_some()), "{status:?}");
    let topic = unique_topic("rf3");
    cluster.create_topic(&topic, 3);
    let layout = partition_layout(&cluster.bootstrap, &topic);
    assert_eq!(layout.len(), 3);
    assert!(
        layout
            .iter()
            .all(|(_, leader, replicas, _)| *leader > 0 && replicas.len() == 3),
        "{layout:?}"
    );
    cluster.kill_broker(2);
    assert_eq!(cluster.status()[1].1, None);
    cluster.start_broker(2);
    assert!(cluster.status()[1].1.is_some());
}

#[tokio::test]
async fn read_back_times_out_with_what_is_there() {
    let broker = TestBroker::start();
    let topic = unique_topic("short");
    broker.create_topic(&topic, 2);
    produce_numbered(&broker.bootstrap, &topic, 2, 2).await;
    let started = std::time::Instant::now();
    let records = read_back(&broker.bootstrap, &topic, 5, Duration::from_secs(2)).await;
    assert_eq!(records.len(), 2);
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[actix_rt::test]
async fn read_back_works_under_actix_rt() {
    let broker = TestBroker::start();
    let topic = unique_topic("actix");
    broker.create_topic(&topic, 1);
    let (partition, offset) = rdkafka_produce_keyed(&broker.bootstrap, &topic, b"k", b"v").await;
    assert_eq!((partition, offset), (0, 0));
    let records = read_back(&broker.bootstrap, &topic, 1, TIMEOUT).await;
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].key.as_deref(), Some(&b"k"[..]));
    assert_eq!(records[0].value.as_deref(), Some(&b"v"[..]));
}

#[tokio::test]
async fn mock_cluster_smoke() {
    let mc = mock_cluster(3);
    let bootstrap = mc.bootstrap_servers();
    let topic = unique_topic("mock");
    mc.create_topic(&topic, 3, 1).unwrap();
    mc.partition_leader(&topic, 0, Some(2)).unwrap();

    produce_numbered(&bootstrap, &topic, 10, 3).await;
    let records = read_back(&bootstrap, &topic, 10, TIMEOUT).await;
    assert_numbered(&records, 10, 3);

    // Injected errors are retried by librdkafka; the data still arrives exactly once.
    mc.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION; 2],
    );
    let (p, o) = rdkafka_produce_keyed(&bootstrap, &topic, b"retried", b"x").await;
    assert!(o >= 0 && (0..3).contains(&p));
    assert_eq!(read_all(&bootstrap, &topic, TIMEOUT).await.len(), 11);
}

#[tokio::test]
async fn mock_kafka_tracking_and_broker_errors() {
    let mk = MockKafka::new(2);
    let bootstrap = mk.bootstrap();
    assert_eq!(bootstrap.split(',').count(), 2, "{bootstrap}");
    let topic = unique_topic("mockkafka");
    mk.create_topic(&topic, 2);
    mk.set_leader(&topic, 0, Some(1));
    mk.set_leader(&topic, 1, Some(2));
    mk.start_request_tracking();

    // First Produce to broker 2 fails with a retriable error after 100 ms.
    mk.push_broker_request_errors(
        2,
        RDKafkaApiKey::Produce,
        &[(
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS,
            Duration::from_millis(100),
        )],
    );
    produce_numbered(&bootstrap, &topic, 4, 2).await;

    let produces = mk.requests_of(RDKafkaApiKey::Produce);
    assert!(produces.iter().any(|r| r.broker_id == 1), "{produces:?}");
    assert!(
        produces.iter().filter(|r| r.broker_id == 2).count() >= 2,
        "{produces:?}"
    );
    assert!(mk
        .requests()
        .iter()
        .any(|r| r.api_key == RDKafkaApiKey::Metadata as i16));

    let records = read_all(&bootstrap, &topic, TIMEOUT).await;
    assert_numbered(&records, 4, 2);

    // A broker that is down refuses connections until it is up again.
    mk.broker_down(1);
    mk.broker_up(1);
    mk.clear_requests();
    assert!(mk.requests_of(RDKafkaApiKey::Produce).is_empty());
}

/// Apache Kafka validates each batch's CRC: a batch with a wrong one is refused with
/// CORRUPT_MESSAGE (2) and nothing of it is stored.
#[tokio::test]
async fn corrupt_crc_is_refused() {
    let broker = TestBroker::start();
    let topic = unique_topic("crc");
    broker.create_topic(&topic, 1);

    let good = encode_batch(&[(Some(b"k0"), Some(b"good-value"))]);
    assert_eq!(
        produce_raw_batch(&broker.bootstrap, &topic, 0, good),
        (0, 0)
    );
    let mut bad = encode_batch(&[(Some(b"k1"), Some(b"bad--value"))]).to_vec();
    let n = bad.len();
    bad[n - 3] ^= 0x20; // flip a bit in the value: the CRC no longer matches
    let (code, _) = produce_raw_batch(&broker.bootstrap, &topic, 0, bad.into());
    assert_eq!(code, 2, "CORRUPT_MESSAGE");
    let all = read_all(&broker.bootstrap, &topic, TIMEOUT).await;
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].value.as_deref(), Some(&b"good-value"[..]));
}

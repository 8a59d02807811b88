//! Issue #4: interceptors, custom partitioners, MESSAGE_TOO_LARGE split, metrics, LogAppendTime.
mod common;

use actix_kafka::partitioner::{Partitioner, RoundRobinPartitioner};
use actix_kafka::{
    DeliveryResult, ProduceError, Producer, ProducerConfig, ProducerInterceptor, ProducerRecord,
};
use common::{read_back, unique_topic, MockKafka, TestBroker};
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn config(bootstrap: &str) -> actix_kafka::config::ProducerConfigBuilder {
    ProducerConfig::builder()
        .bootstrap_servers([bootstrap.to_string()])
        .max_block(Duration::from_secs(10))
}

/// Records the order of calls across interceptors.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<String>>>);

struct Tagger(Log);
impl ProducerInterceptor for Tagger {
    fn on_send(&self, record: ProducerRecord) -> ProducerRecord {
        self.0 .0.lock().unwrap().push("tagger.on_send".into());
        record.header("intercepted", "yes")
    }
    fn on_acknowledgement(&self, result: &DeliveryResult) {
        let tag = if result.is_ok() { "ok" } else { "err" };
        self.0
             .0
            .lock()
            .unwrap()
            .push(format!("tagger.on_ack.{tag}"));
    }
}

struct Panicker(Log);
impl ProducerInterceptor for Panicker {
    fn on_send(&self, _record: ProducerRecord) -> ProducerRecord {
        self.0 .0.lock().unwrap().push("panicker.on_send".into());
        panic!("interceptor bug")
    }
    fn on_acknowledgement(&self, _result: &DeliveryResult) {
        self.0 .0.lock().unwrap().push("panicker.on_ack".into());
        panic!("interceptor bug in ack")
    }
}

struct Upper;
impl ProducerInterceptor for Upper {
    fn on_send(&self, mut record: ProducerRecord) -> ProducerRecord {
        if let Some(v) = &record.value {
            record.value = Some(String::from_utf8_lossy(v).to_uppercase().into());
        }
        record
    }
}

#[actix_rt::test]
async fn interceptors_transform_observe_and_are_isolated() {
    let broker = TestBroker::start();
    let topic = unique_topic("icpt");
    broker.create_topic(&topic, 1);
    let log = Log::default();
    let producer = Producer::builder(config(&broker.bootstrap).build().unwrap())
        .interceptor(Tagger(log.clone()))
        .interceptor(Panicker(log.clone()))
        .interceptor(Upper)
        .start()
        .await
        .unwrap();
    let callback_saw = Arc::new(Mutex::new(None));
    let c = callback_saw.clone();
    let l = log.clone();
    producer
        .send_with_callback(ProducerRecord::new(topic.as_str(), "hello"), move |r| {
            l.0.lock().unwrap().push("user.callback".into());
            *c.lock().unwrap() = Some(r.map(|m| m.offset));
        })
        .await
        .unwrap();
    producer.flush().await;
    assert_eq!(*callback_saw.lock().unwrap(), Some(Ok(0)));
    assert_eq!(
        *log.0.lock().unwrap(),
        vec![
            "tagger.on_send",
            "panicker.on_send",
            "tagger.on_ack.ok",
            "panicker.on_ack",
            "user.callback"
        ],
        "on_send in order, on_acknowledgement before the user's callback, panics isolated"
    );
    // A send error reaches on_acknowledgement too (Java's onSendError).
    log.0.lock().unwrap().clear();
    let err = producer
        .send(ProducerRecord::new(topic.as_str(), "x").partition(9))
        .await
        .err()
        .unwrap();
    assert!(matches!(err, ProduceError::InvalidPartition { .. }));
    assert!(log
        .0
        .lock()
        .unwrap()
        .contains(&"tagger.on_ack.err".to_string()));
    producer.close(Duration::from_secs(5)).await;

    let read = read_back(&broker.bootstrap, &topic, 1, Duration::from_secs(30)).await;
    assert_eq!(
        read[0].value_str().as_deref(),
        Some("HELLO"),
        "transformed by on_send"
    );
    assert_eq!(
        read[0].headers,
        vec![("intercepted".to_string(), Some(b"yes".to_vec()))]
    );
}

/// Sends every record to the last partition.
struct LastPartition(AtomicUsize);
impl Partitioner for LastPartition {
    fn partition(&self, _topic: &str, _key: Option<&[u8]>, _len: usize, n: i32) -> i32 {
        self.0.fetch_add(1, Ordering::Relaxed);
        n - 1
    }
}

#[actix_rt::test]
async fn custom_and_round_robin_partitioners() {
    let broker = TestBroker::start();
    let topic = unique_topic("part");
    broker.create_topic(&topic, 4);
    let custom = Arc::new(LastPartition(AtomicUsize::new(0)));
    let producer = Producer::start_with_partitioner(
        config(&broker.bootstrap).build().unwrap(),
        custom.clone(),
    )
    .await
    .unwrap();
    for i in 0..20 {
        let md = producer
            .send(ProducerRecord::new(topic.as_str(), format!("{i}")).key("same-key"))
            .await
            .unwrap()
            .await
            .unwrap();
        assert_eq!(md.partition, 3);
    }
    // An explicit partition wins over the partitioner.
    let md = producer
        .send(ProducerRecord::new(topic.as_str(), "x").partition(1))
        .await
        .unwrap()
        .await
        .unwrap();
    assert_eq!(md.partition, 1);
    assert_eq!(custom.0.load(Ordering::Relaxed), 20);
    producer.close(Duration::from_secs(5)).await;

    let rr = Producer::start_with_partitioner(
        config(&broker.bootstrap).build().unwrap(),
        Arc::new(RoundRobinPartitioner::new()),
    )
    .await
    .unwrap();
    let mut counts = [0; 4];
    for i in 0..40 {
        let md = rr
            .send(ProducerRecord::new(topic.as_str(), format!("{i}")).key("k"))
            .await
            .unwrap()
            .await
            .unwrap();
        counts[md.partition as usize] += 1;
    }
    assert_eq!(counts, [10, 10, 10, 10], "round robin ignores keys");
    rr.close(Duration::from_secs(5)).await;
}

#[actix_rt::test]
async fn message_too_large_splits_and_delivers_everything() {
    let mk = MockKafka::new(1);
    let topic = unique_topic("split");
    mk.create_topic(&topic, 1);
    let producer = Producer::start(
        config(&mk.bootstrap())
            .linger(Duration::from_millis(200))
            .batch_size(64 * 1024)
            .build()
            .unwrap(),
    )
    .await
    .unwrap();
    // The first two Produce requests are refused as too large: the 100-record batch is split
    // into 50 + 50, then one half again into 25 + 25.
    mk.push_request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE; 2],
    );
    let mut deliveries = Vec::new();
    for i in 0..100 {
        deliveries.push(
            producer
                .send(
                    ProducerRecord::new(topic.as_str(), format!("record-{i}"))
                        .header("i", i.to_string()),
                )
                .await
                .unwrap(),
        );
    }
    let mut offsets = Vec::new();
    for d in deliveries {
        offsets.push(d.await.expect("delivered after split").offset);
    }
    assert_eq!(
        offsets,
        (0..100).collect::<Vec<i64>>(),
        "in order, each once"
    );
    let m = producer.metrics();
    assert_eq!(m.get("batch-split-total"), Some(2.0));
    producer.close(Duration::from_secs(5)).await;
    let read = read_back(&mk.bootstrap(), &topic, 100, Duration::from_secs(30)).await;
    let values: Vec<String> = read.iter().map(|r| r.value_str().unwrap()).collect();
    assert_eq!(
        values,
        (0..100).map(|i| format!("record-{i}")).collect::<Vec<_>>()
    );
}

#[actix_rt::test]
async fn single_record_too_large_for_broker_fails_clearly() {
    let mk = MockKafka::new(1);
    let topic = unique_topic("onebig");
    mk.create_topic(&topic, 1);
    let producer = Producer::start(config(&mk.bootstrap()).build().unwrap())
        .await
        .unwrap();
    mk.push_request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE],
    );
    let err = producer
        .send(ProducerRecord::new(topic.as_str(), "one"))
        .await
        .unwrap()
        .await
        .expect_err("refused");
    assert!(
        matches!(&err, ProduceError::Broker { code, .. } if code.0 == 10),
        "{err:?}"
    );
    assert!(err.to_string().contains("MessageTooLarge"), "{err}");
    producer.close(Duration::from_secs(5)).await;
}

/// RECORD_LIST_TOO_LARGE is not a reason to split (Java splits only on MESSAGE_TOO_LARGE): the
/// batch fails with the broker's code and nothing is split.
#[actix_rt::test]
async fn record_list_too_large_is_not_split() {
    let mk = MockKafka::new(1);
    let topic = unique_topic("rltl");
    mk.create_topic(&topic, 1);
    let producer = Producer::start(
        config(&mk.bootstrap())
            .linger(Duration::from_millis(100))
            .build()
            .unwrap(),
    )
    .await
    .unwrap();
    mk.push_request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE],
    );
    let mut ds = Vec::new();
    for i in 0..10 {
        ds.push(
            producer
                .send(ProducerRecord::new(topic.as_str(), format!("r{i}")))
                .await
                .unwrap(),
        );
    }
    for d in ds {
        let err = d.await.expect_err("refused");
        assert!(
            matches!(&err, ProduceError::Broker { code, .. } if code.0 == 18),
            "{err:?}"
        );
    }
    assert_eq!(producer.metrics().get("batch-split-total"), Some(0.0));
    producer.close(Duration::from_secs(5)).await;
}

/// CLUSTER_AUTHORIZATION_FAILED on a produce request is fatal for an idempotent producer (as
/// Java): the batch fails with it and later records fail with `Fatal` instead of being sent.
#[actix_rt::test]
async fn cluster_authorization_failure_is_fatal_for_idempotence() {
    let mk = MockKafka::new(1);
    let topic = unique_topic("clusterauth");
    mk.create_topic(&topic, 1);
    let producer = Producer::start(config(&mk.bootstrap()).build().unwrap())
        .await
        .unwrap();
    mk.push_request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED],
    );
    let err = producer
        .send_and_wait(ProducerRecord::new(topic.as_str(), "first"))
        .await
        .expect_err("refused");
    assert!(
        matches!(&err, ProduceError::Broker { code, .. } if code.0 == 31),
        "{err:?}"
    );
    let later = producer
        .send_and_wait(ProducerRecord::new(topic.as_str(), "second"))
        .await
        .expect_err("a fatal producer sends nothing more");
    assert!(matches!(later, ProduceError::Fatal(_)), "{later:?}");
    producer.close(Duration::from_secs(5)).await;
}

#[actix_rt::test]
async fn metrics_match_a_known_workload() {
    let broker = TestBroker::start();
    let topic = unique_topic("metrics");
    broker.create_topic(&topic, 2);
    let producer = Producer::start(config(&broker.bootstrap).build().unwrap())
        .await
        .unwrap();
    let value = vec![b'x'; 100];
    let mut deliveries = Vec::new();
    for i in 0..5000 {
        deliveries.push(
            producer
                .send(ProducerRecord::new(topic.as_str(), value.clone()).partition(i % 2))
                .await
                .unwrap(),
        );
    }
    for d in deliveries {
        d.await.unwrap();
    }
    let m = producer.metrics();
    println!("{:#?}", m.values);
    assert_eq!(m.get("record-send-total"), Some(5000.0));
    assert_eq!(m.get("record-error-total"), Some(0.0));
    assert_eq!(m.get("requests-in-flight"), Some(0.0));
    // Each record is 100 bytes of value + ~8 bytes of framing; batches are <= batch.size.
    let batch_max = m.get("batch-size-max").unwrap();
    assert!(batch_max <= 16384.0 + 200.0, "{batch_max}");
    let requests = m.get("request-total").unwrap();
    let per_request = m.get("records-per-request-avg").unwrap();
    assert!(
        (per_request * requests - 5000.0).abs() < 1.0,
        "{per_request} x {requests}"
    );
    let out = m.get("outgoing-byte-total").unwrap();
    assert!(
        (5000.0 * 108.0..5000.0 * 140.0).contains(&out),
        "outgoing bytes {out}"
    );
    assert_eq!(m.get("compression-rate-avg"), Some(1.0), "no compression");
    assert!(m.get("request-latency-avg").unwrap() >= 0.0);
    assert_eq!(m.mailbox_depth.len(), 2);
    assert!(m.mailbox_depth.iter().all(|(_, d)| *d == 0));
    producer.close(Duration::from_secs(5)).await;
}

#[actix_rt::test]
async fn log_append_time_topic_returns_broker_timestamp() {
    let broker = TestBroker::start();
    let topic = unique_topic("lat");
    broker.create_topic_with_config(&topic, 1, &[("message.timestamp.type", "LogAppendTime")]);
    let producer = Producer::start(config(&broker.bootstrap).build().unwrap())
        .await
        .unwrap();
    let create_time = 1_000_000_000_000; // 2001: far from now
    let md = producer
        .send(ProducerRecord::new(topic.as_str(), "x").timestamp(create_time))
        .await
        .unwrap()
        .await
        .unwrap();
    let create = producer
        .send(ProducerRecord::new(topic.as_str(), "y").timestamp(create_time))
        .await
        .unwrap()
        .await
        .unwrap();
    producer.close(Duration::from_secs(5)).await;
    println!(
        "LogAppendTime topic: metadata timestamp {} (CreateTime sent {create_time})",
        md.timestamp
    );
    // Apache Kafka answers log_append_time_ms: the broker's clock, not the CreateTime sent.
    assert_ne!(md.timestamp, create_time, "LogAppendTime, not CreateTime");
    assert_eq!(create.timestamp, md.timestamp.max(create.timestamp));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    assert!(
        (now - md.timestamp).abs() < 60_000,
        "broker time {}",
        md.timestamp
    );
}

/// The actix path as the README writes it, from plain tokio (`#[tokio::test]`, no actix System):
/// `KafkaProducer::start_producer` works, `addr.send(SendRecord(r)).await??.await?` compiles with
/// `?` throughout (`From<MailboxError>`), and `send_and_wait` returns the `RecordMetadata`.
#[tokio::test]
async fn actix_path_and_send_and_wait_from_plain_tokio() -> Result<(), actix_kafka::ProduceError> {
    use actix_kafka::prelude::*;
    let broker = TestBroker::start();
    let topic = unique_topic("actixpath");
    broker.create_topic(&topic, 1);
    let addr = KafkaProducer::start_producer(config(&broker.bootstrap).build()?).await?;
    let md = addr
        .send(SendRecord(ProducerRecord::new(topic.as_str(), "via-actor")))
        .await??
        .await?;
    assert_eq!((md.partition, md.offset), (0, 0));
    let producer = addr.send(GetHandle).await?;
    let md = producer
        .send_and_wait(ProducerRecord::new(topic.as_str(), "one-call").key("k"))
        .await?;
    assert_eq!(md.offset, 1);
    addr.send(Close(Duration::from_secs(5))).await?;
    // After close the actor is gone: a MailboxError turns into ProduceError::Closed.
    let after = addr.send(Flush).await.map_err(ProduceError::from);
    assert!(
        matches!(after, Err(ProduceError::Closed(_)) | Ok(())),
        "{after:?}"
    );
    let read = read_back(&broker.bootstrap, &topic, 2, Duration::from_secs(30)).await;
    let values: Vec<String> = read.iter().map(|r| r.value_str().unwrap()).collect();
    assert_eq!(
        values,
        vec!["via-actor".to_string(), "one-call".to_string()]
    );
    Ok(())
}

/// Typed keys and values (`TypedProducer<K, V>`, Java's `KafkaProducer<K, V>`) with the JSON
/// serializer (feature `serde_json`); librdkafka reads back the exact bytes.
#[cfg(feature = "serde_json")]
#[actix_rt::test]
async fn typed_producer_with_json_values() {
    use actix_kafka::serializer::{JsonSerializer, StringSerializer, TypedProducer};
    let broker = TestBroker::start();
    let topic = unique_topic("typed");
    broker.create_topic(&topic, 1);
    let producer = Producer::start(config(&broker.bootstrap).build().unwrap())
        .await
        .unwrap();
    let typed: TypedProducer<str, serde_json::Value> =
        TypedProducer::new(producer.clone(), StringSerializer, JsonSerializer);
    for i in 0..3 {
        let v = serde_json::json!({ "order": i, "items": ["a", "b"] });
        typed
            .send_and_wait(&topic, Some("customer-1"), &v)
            .await
            .unwrap();
    }
    producer.close(Duration::from_secs(5)).await;
    let read = read_back(&broker.bootstrap, &topic, 3, Duration::from_secs(30)).await;
    assert_eq!(read.len(), 3);
    for (i, r) in read.iter().enumerate() {
        assert_eq!(r.key_str().as_deref(), Some("customer-1"));
        let v: serde_json::Value = serde_json::from_slice(r.value.as_deref().unwrap()).unwrap();
        assert_eq!(v["order"], i as i64);
    }
}

/// Errors before enqueueing give the record back (`send_returning`), so it can be retried
/// without a clone: an explicit partition out of range, then a topic that does not exist.
#[actix_rt::test]
async fn send_returning_hands_the_record_back() {
    let broker = TestBroker::start();
    let topic = unique_topic("giveback");
    broker.create_topic(&topic, 2);
    let producer = Producer::start(
        config(&broker.bootstrap)
            .max_block(Duration::from_millis(1500))
            .allow_auto_create_topics(false)
            .build()
            .unwrap(),
    )
    .await
    .unwrap();
    let record = ProducerRecord::new(topic.as_str(), "payload")
        .key("k")
        .partition(7);
    let err = producer
        .send_returning(record.clone())
        .await
        .expect_err("partition 7 of 2");
    assert!(
        matches!(
            err.error,
            ProduceError::InvalidPartition { partition: 7, .. }
        ),
        "{err:?}"
    );
    assert_eq!(err.record, record, "the same record back");
    // Retry it with a partition that exists: delivered.
    let mut again = err.record;
    again.partition = Some(1);
    let md = producer.send_returning(again).await.unwrap().await.unwrap();
    assert_eq!(md.partition, 1);
    let missing = ProducerRecord::new("no-such-topic-xyz", "v");
    let err = producer
        .send_returning(missing.clone())
        .await
        .expect_err("unknown topic");
    assert!(
        matches!(
            err.error,
            ProduceError::UnknownTopic { .. } | ProduceError::MetadataTimeout { .. }
        ),
        "{err:?}"
    );
    assert_eq!(err.record, missing);
    producer.close(Duration::from_secs(5)).await;
}

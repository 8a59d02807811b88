//! Issue #2 end to end: our producer against Apache Kafka (scripts/kafka.sh), read back
//! independently by librdkafka (`check.crcs=true`).
mod common;

use actix_kafka::partitioner::{murmur2, to_positive};
use actix_kafka::{Acks, ProduceError, Producer, ProducerConfig, ProducerRecord};
use common::{read_back, read_back_blocking, unique_topic, MockKafka, TestBroker};
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

fn config(bootstrap: &str) -> actix_kafka::config::ProducerConfigBuilder {
    ProducerConfig::builder()
        .bootstrap_servers([bootstrap.to_string()])
        .max_block(Duration::from_secs(10))
}

#[actix_rt::test]
async fn hundred_thousand_keyed_records_with_headers_acks_all() {
    common::init_tracing();
    let broker = TestBroker::start();
    let topic = unique_topic("keyed");
    broker.create_topic(&topic, 3);
    let cfg = config(&broker.bootstrap)
        .acks(Acks::All)
        .linger(Duration::from_millis(5))
        .build()
        .unwrap();
    assert!(cfg.enable_idempotence, "Java 3+ default: idempotence on");
    let producer = Producer::start(cfg).await.unwrap();

    const N: usize = 100_000;
    let started = Instant::now();
    let mut deliveries = Vec::with_capacity(N);
    for i in 0..N {
        let record = ProducerRecord::new(topic.as_str(), format!("value-{i}"))
            .key(format!("key-{}", i % 5000))
            .header("seq", i.to_string())
            .header("src", "actix-kafka");
        deliveries.push(producer.send(record).await.expect("enqueue"));
    }
    let mut offsets: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
    let mut by_seq = Vec::with_capacity(N);
    for d in deliveries {
        let md = d.await.expect("every record acknowledged");
        offsets.entry(md.partition).or_default().push(md.offset);
        by_seq.push((md.partition, md.offset));
    }
    println!("produced {N} records in {:?}", started.elapsed());
    let stats = producer.sender_stats().await.unwrap();
    println!("sender: {stats:?}");
    assert!(
        stats.producer_id.0 >= 0,
        "idempotent producer got a producer id"
    );
    producer.close(Duration::from_secs(10)).await;

    // Offsets per partition are contiguous from 0.
    assert_eq!(offsets.len(), 3, "all three partitions used");
    for (p, mut offs) in offsets {
        offs.sort_unstable();
        let expect: Vec<i64> = (0..offs.len() as i64).collect();
        assert_eq!(offs, expect, "partition {p} offsets contiguous from 0");
    }
    // Each keyed record is on its murmur2 partition.
    for (i, (p, _)) in by_seq.iter().enumerate() {
        let key = format!("key-{}", i % 5000);
        assert_eq!(*p, to_positive(murmur2(key.as_bytes())) % 3, "record {i}");
    }

    // librdkafka reads back exactly those records, CRCs checked.
    let read = read_back(&broker.bootstrap, &topic, N, Duration::from_secs(120)).await;
    assert_eq!(read.len(), N, "librdkafka read back every record");
    let mut seen = vec![false; N];
    for r in &read {
        let seq: usize = r
            .headers
            .iter()
            .find(|(k, _)| k == "seq")
            .and_then(|(_, v)| v.as_deref())
            .map(|v| std::str::from_utf8(v).unwrap().parse().unwrap())
            .expect("seq header");
        assert!(!seen[seq], "record {seq} read twice");
        seen[seq] = true;
        assert_eq!(
            r.value_str().as_deref(),
            Some(format!("value-{seq}").as_str())
        );
        assert_eq!(
            r.key_str().as_deref(),
            Some(format!("key-{}", seq % 5000).as_str())
        );
        assert_eq!(
            r.headers,
            vec![
                ("seq".to_string(), Some(seq.to_string().into_bytes())),
                ("src".to_string(), Some(b"actix-kafka".to_vec()))
            ]
        );
        assert_eq!(
            (r.partition, r.offset),
            by_seq[seq],
            "record {seq} where we were told"
        );
    }
}

/// `partitioner.rack.aware` + `client.rack` (KIP-1123) on librdkafka's mock cluster, whose
/// brokers are in racks az1, az2, az3 and lead 9 partitions round robin: every keyless record
/// lands on a partition led in the producer's rack (az2), keyed records on their hash, and a
/// librdkafka reader finds them where we were told. Without rack awareness keyless records
/// spread over all partitions.
#[actix_rt::test]
async fn rack_aware_keyless_records_stay_in_the_client_rack() {
    let mk = MockKafka::new(3);
    for (broker, rack) in [(1, "az1"), (2, "az2"), (3, "az3")] {
        mk.set_rack(broker, rack);
    }
    let topic = unique_topic("rack");
    mk.create_topic(&topic, 9);
    for p in 0..9 {
        mk.set_leader(&topic, p, Some(p % 3 + 1));
    }
    let local: std::collections::BTreeSet<i32> = (0..9).filter(|p| p % 3 + 1 == 2).collect();
    let run = |rack_aware: bool| {
        let mk = mk.bootstrap();
        let topic = topic.clone();
        async move {
            let mut b = config(&mk)
                .bootstrap_servers(mk.split(',').map(str::to_string))
                .batch_size(200)
                .linger(Duration::ZERO);
            if rack_aware {
                b = b.set("partitioner.rack.aware", "true").unwrap();
                b = b.set("client.rack", "az2").unwrap();
            }
            let producer = Producer::start(b.build().unwrap()).await.unwrap();
            let mut seen = std::collections::BTreeSet::new();
            let mut where_ = BTreeMap::new();
            for i in 0..600 {
                let v = format!("{rack_aware}-{i}");
                let md = producer
                    .send_and_wait(ProducerRecord::new(topic.as_str(), v.clone()))
                    .await
                    .expect("delivered");
                seen.insert(md.partition);
                where_.insert(v, (md.partition, md.offset));
            }
            let key = "customer-7";
            let keyed = producer
                .send_and_wait(ProducerRecord::new(topic.as_str(), "k").key(key))
                .await
                .expect("keyed");
            assert_eq!(
                keyed.partition,
                to_positive(murmur2(key.as_bytes())) % 9,
                "keys are hashed over every partition"
            );
            producer.close(Duration::from_secs(5)).await;
            (seen, where_)
        }
    };
    let (aware, placed) = run(true).await;
    assert_eq!(aware, local, "keyless records outside the client rack");
    let (plain, _) = run(false).await;
    assert!(
        plain.len() > local.len(),
        "without rack awareness: {plain:?}"
    );
    // An independent reader finds them where we were told.
    let (b, t) = (mk.bootstrap(), topic.clone());
    let read = tokio::task::spawn_blocking(move || {
        read_back_blocking(&b, &t, 1202, Duration::from_secs(30))
    })
    .await
    .unwrap();
    for r in &read {
        if let Some(at) = r.value_str().and_then(|v| placed.get(&v)) {
            assert_eq!(*at, (r.partition, r.offset));
        }
    }
    let found = read
        .iter()
        .filter(|r| r.value_str().is_some_and(|v| placed.contains_key(&v)))
        .count();
    assert_eq!(found, 600);
}

#[actix_rt::test]
async fn keyed_partitions_match_librdkafka_murmur2_random() {
    let broker = TestBroker::start();
    let topic = unique_topic("murmur");
    broker.create_topic(&topic, 7);
    let producer = Producer::start(config(&broker.bootstrap).build().unwrap())
        .await
        .unwrap();
    for i in 0..40 {
        let key = format!("customer-{i}-{}", "x".repeat(i % 9));
        let ours = producer
            .send(ProducerRecord::new(topic.as_str(), "v").key(key.clone()))
            .await
            .unwrap()
            .await
            .unwrap()
            .partition;
        let (theirs, _) =
            common::rdkafka_produce_keyed(&broker.bootstrap, &topic, key.as_bytes(), b"v").await;
        assert_eq!(ours, theirs, "key {key}");
    }
    producer.close(Duration::from_secs(5)).await;
}

async fn produce_with_acks(acks: Acks) {
    let broker = TestBroker::start();
    let topic = unique_topic("acks");
    broker.create_topic(&topic, 2);
    let producer = Producer::start(config(&broker.bootstrap).acks(acks).build().unwrap())
        .await
        .unwrap();
    assert!(
        !producer.config().enable_idempotence,
        "acks={acks:?} turns default idempotence off"
    );
    let mut deliveries = Vec::new();
    for i in 0..2000 {
        deliveries.push(
            producer
                .send(ProducerRecord::new(topic.as_str(), format!("m{i}")).partition(i % 2))
                .await
                .unwrap(),
        );
    }
    let mut results = Vec::new();
    for d in deliveries {
        results.push(d.await.expect("delivered"));
    }
    producer.close(Duration::from_secs(5)).await;
    match acks {
        Acks::None => assert!(results.iter().all(|m| m.offset == -1), "acks=0: no offsets"),
        _ => {
            for p in 0..2 {
                let offs: Vec<i64> = results
                    .iter()
                    .filter(|m| m.partition == p)
                    .map(|m| m.offset)
                    .collect();
                assert_eq!(
                    offs,
                    (0..1000).collect::<Vec<_>>(),
                    "acks={acks:?} partition {p} in order"
                );
            }
        }
    }
    let read = read_back(&broker.bootstrap, &topic, 2000, Duration::from_secs(60)).await;
    assert_eq!(read.len(), 2000);
    let mut values: Vec<String> = read.iter().map(|r| r.value_str().unwrap()).collect();
    values.sort();
    let mut expect: Vec<String> = (0..2000).map(|i| format!("m{i}")).collect();
    expect.sort();
    assert_eq!(values, expect);
}

#[actix_rt::test]
async fn acks_0() {
    produce_with_acks(Acks::None).await;
}

#[actix_rt::test]
async fn acks_1() {
    produce_with_acks(Acks::Leader).await;
}

#[actix_rt::test]
async fn typed_errors_within_max_block() {
    let broker = TestBroker::start();
    let topic = unique_topic("errors");
    broker.create_topic(&topic, 1);
    let max_block = Duration::from_millis(1500);
    let producer = Producer::start(
        config(&broker.bootstrap)
            .max_block(max_block)
            .allow_auto_create_topics(false)
            .max_request_size(10_000)
            .build()
            .unwrap(),
    )
    .await
    .unwrap();

    // Oversized record: fails at send, at once.
    let t = Instant::now();
    let err = producer
        .send(ProducerRecord::new(topic.as_str(), vec![0u8; 20_000]))
        .await
        .expect_err("too large");
    assert!(
        matches!(err, ProduceError::RecordTooLarge { limit: 10_000, size } if size > 20_000),
        "{err}"
    );
    assert!(t.elapsed() < Duration::from_millis(500));

    // Unknown topic, auto-create off.
    let t = Instant::now();
    let err = producer
        .send(ProducerRecord::new("no-such-topic-here", "x"))
        .await
        .expect_err("unknown topic");
    let waited = t.elapsed();
    println!("unknown topic: {err} after {waited:?}");
    assert!(
        matches!(
            err,
            ProduceError::UnknownTopic { .. } | ProduceError::TopicError { .. }
        ),
        "{err:?}"
    );
    assert!(
        waited <= max_block + Duration::from_millis(700),
        "{waited:?}"
    );

    // Invalid topic name.
    let err = producer
        .send(ProducerRecord::new("bad topic name!", "x"))
        .await
        .expect_err("bad name");
    println!("bad name: {err}");
    assert!(
        matches!(
            err,
            ProduceError::TopicError { .. } | ProduceError::UnknownTopic { .. }
        ),
        "{err:?}"
    );

    // Explicit partition out of range.
    let err = producer
        .send(ProducerRecord::new(topic.as_str(), "x").partition(5))
        .await
        .expect_err("bad partition");
    assert!(
        matches!(err, ProduceError::InvalidPartition { partitions: 1, .. }),
        "{err:?}"
    );

    // The producer still works after all that.
    let md = producer
        .send(ProducerRecord::new(topic.as_str(), "ok"))
        .await
        .unwrap()
        .await
        .unwrap();
    assert_eq!(md.offset, 0);
    producer.close(Duration::from_secs(5)).await;
}

#[actix_rt::test]
async fn unreachable_bootstrap_fails_within_max_block() {
    let port = common::free_port(); // nothing listens there
    let max_block = Duration::from_millis(1200);
    let producer = Producer::start(
        ProducerConfig::builder()
            .bootstrap_servers([format!("127.0.0.1:{port}")])
            .max_block(max_block)
            .build()
            .unwrap(),
    )
    .await
    .unwrap();
    let t = Instant::now();
    let err = producer
        .send(ProducerRecord::new("t", "x"))
        .await
        .expect_err("no broker");
    let waited = t.elapsed();
    println!("unreachable: {err} after {waited:?}");
    assert!(
        matches!(err, ProduceError::MetadataTimeout { .. }),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("connect"),
        "reason names the connect failure: {err}"
    );
    assert!(
        waited >= max_block && waited <= max_block + Duration::from_millis(700),
        "{waited:?}"
    );
    // try_send fails at once.
    assert!(producer.try_send(ProducerRecord::new("t", "x")).is_err());
    producer.close(Duration::from_secs(1)).await;
}

#[actix_rt::test]
async fn broker_restart_mid_run_reconnects_and_continues() {
    common::init_tracing();
    let mut broker = TestBroker::dedicated();
    let topic = unique_topic("restart");
    broker.create_topic(&topic, 2);
    let producer = Producer::start(
        config(&broker.bootstrap)
            .linger(Duration::from_millis(2))
            .delivery_timeout(Duration::from_secs(60))
            // A KRaft node takes 8-13 s to come back here: senders wait for it (the mailbox
            // fills meanwhile) rather than fail with QueueFull after the default 10 s.
            .max_block(Duration::from_secs(60))
            .enable_idempotence(std::env::var("RESTART_IDEMPOTENCE").map_or(true, |v| v != "0"))
            .build()
            .unwrap(),
    )
    .await
    .unwrap();
    const N: usize = 3000;
    let send_all = {
        let producer = producer.clone();
        let topic = topic.clone();
        actix_rt::spawn(async move {
            let mut out = Vec::with_capacity(N);
            for i in 0..N {
                let d = producer
                    .send(ProducerRecord::new(topic.as_str(), format!("r{i}")).key(format!("k{i}")))
                    .await
                    .expect("enqueue");
                out.push((i, d));
                tokio::time::sleep(Duration::from_micros(500)).await;
            }
            out
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Kill (SIGKILL) and restart the broker process; its log stays on disk.
    let b = tokio::task::spawn_blocking(move || {
        broker.stop();
        std::thread::sleep(Duration::from_millis(700));
        broker.restart();
        broker
    });
    let broker = b.await.unwrap();
    let deliveries = send_all.await.unwrap();
    let mut acked = Vec::new();
    let mut failed = Vec::new();
    for (i, d) in deliveries {
        match d.await {
            Ok(md) => acked.push((i, md)),
            Err(e) => failed.push((i, e)),
        }
    }
    let stats = producer.sender_stats().await.unwrap();
    println!(
        "restart: {} acked, {} failed; retried batches {} / records {}; producer id resets {}",
        acked.len(),
        failed.len(),
        stats.batches_retried,
        stats.records_retried,
        stats.producer_id_resets
    );
    assert!(
        failed.is_empty(),
        "no record failed: {:?}",
        &failed[..failed.len().min(5)]
    );
    assert!(
        stats.records_retried > 0,
        "records in flight at the kill were retried"
    );
    producer.close(Duration::from_secs(5)).await;

    // Every record is in the log exactly once, at the place its acknowledgement named.
    let read = common::read_all(&broker.bootstrap, &topic, Duration::from_secs(20)).await;
    let read_at: HashMap<String, (i32, i64)> = read
        .iter()
        .map(|r| (r.value_str().unwrap(), (r.partition, r.offset)))
        .collect();
    assert_eq!(read.len(), read_at.len(), "no record twice in the log");
    assert_eq!(read.len(), N, "every record in the log");
    for (i, md) in &acked {
        assert_eq!(
            read_at.get(&format!("r{i}")),
            Some(&(md.partition, md.offset)),
            "record {i} is where its ack said"
        );
    }
}

/// `flush` waits for the records sent before it was called, not for records other tasks keep
/// sending meanwhile (Java's semantics): under a continuous stream of sends it still returns.
#[actix_rt::test]
async fn flush_returns_under_concurrent_sends() {
    use futures::FutureExt;
    let broker = TestBroker::start();
    let topic = unique_topic("flush-stream");
    broker.create_topic(&topic, 2);
    let producer = Producer::start(config(&broker.bootstrap).build().unwrap())
        .await
        .unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let streamer = {
        let (p, topic, stop) = (producer.clone(), topic.clone(), stop.clone());
        tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = p
                    .send(ProducerRecord::new(topic.as_str(), format!("stream-{n}")))
                    .await;
                n += 1;
            }
            n
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mine: Vec<_> = {
        let mut v = Vec::new();
        for i in 0..100 {
            v.push(
                producer
                    .send(ProducerRecord::new(topic.as_str(), format!("mine-{i}")))
                    .await
                    .unwrap(),
            );
        }
        v
    };
    let started = Instant::now();
    let flushed = tokio::time::timeout(Duration::from_secs(10), producer.flush()).await;
    let took = started.elapsed();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let streamed = streamer.await.unwrap();
    assert!(
        flushed.is_ok(),
        "flush did not return within 10 s while {streamed} records streamed"
    );
    // Every record sent before flush has its result when flush returns.
    for (i, d) in mine.into_iter().enumerate() {
        let r = d
            .now_or_never()
            .unwrap_or_else(|| panic!("record {i} not complete after flush"));
        r.expect("delivered");
    }
    eprintln!("flush returned in {took:?} with {streamed} records streamed concurrently");
    producer.close(Duration::from_secs(10)).await;
}

/// An explicit partition at or above the cached partition count waits for metadata that has
/// it (Java's `waitOnMetadata`), up to `max.block.ms`: partitions added meanwhile are used;
/// a partition that never appears is `InvalidPartition` after `max.block.ms`, not at once.
#[actix_rt::test]
async fn explicit_partition_beyond_the_cached_count_waits_for_new_partitions() {
    let broker = TestBroker::start();
    let topic = unique_topic("grow");
    broker.create_topic(&topic, 1);
    let max_block = Duration::from_secs(15);
    let producer = Producer::start(
        config(&broker.bootstrap)
            .max_block(max_block)
            .retry_backoff(Duration::from_millis(100))
            .build()
            .unwrap(),
    )
    .await
    .unwrap();
    // Cache the topic with its one partition.
    producer
        .send(ProducerRecord::new(topic.as_str(), "first"))
        .await
        .unwrap()
        .await
        .unwrap();
    let grow = {
        let (bootstrap, topic) = (broker.bootstrap.clone(), topic.clone());
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(500));
            common::add_partitions(&bootstrap, &topic, 3);
        })
    };
    let started = Instant::now();
    let md = producer
        .send(ProducerRecord::new(topic.as_str(), "to partition 2").partition(2))
        .await
        .expect("partition 2 once the topic has 3")
        .await
        .expect("delivered");
    grow.join().unwrap();
    assert_eq!(md.partition, 2);
    assert!(started.elapsed() < max_block, "{:?}", started.elapsed());
    let records = read_back(&broker.bootstrap, &topic, 2, Duration::from_secs(30)).await;
    assert!(records
        .iter()
        .any(|r| r.partition == 2 && r.value.as_deref() == Some(&b"to partition 2"[..])));

    // A partition that never appears: InvalidPartition, after max.block.ms.
    let short = Producer::start(
        config(&broker.bootstrap)
            .max_block(Duration::from_millis(1500))
            .build()
            .unwrap(),
    )
    .await
    .unwrap();
    let started = Instant::now();
    let err = short
        .send(ProducerRecord::new(topic.as_str(), "x").partition(7))
        .await
        .expect_err("partition 7 of 3");
    let waited = started.elapsed();
    assert!(
        matches!(
            err,
            ProduceError::InvalidPartition {
                partition: 7,
                partitions: 3,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        waited >= Duration::from_millis(1400) && waited < Duration::from_secs(5),
        "{waited:?}"
    );
    short.close(Duration::from_secs(5)).await;
    producer.close(Duration::from_secs(5)).await;
}

/// INVALID_RECORD with per-record errors (KIP-467): Kafka refuses a keyless record on a
/// compacted topic and names it in `record_errors`. Only those records fail (with the broker's
/// message); the others of the batch are sent again and delivered once each, in order, as an
/// independent reader (librdkafka) sees. With idempotence (the default) and without.
#[actix_rt::test]
async fn invalid_records_fail_alone_and_the_rest_of_their_batch_is_delivered() {
    let broker = TestBroker::start();
    for idempotence in [true, false] {
        let topic = unique_topic("compacted");
        broker.create_topic_with_config(&topic, 1, &[("cleanup.policy", "compact")]);
        common::init_tracing();
        let producer = Producer::start(
            config(&broker.bootstrap)
                .enable_idempotence(idempotence)
                .linger(Duration::from_millis(50))
                .delivery_timeout(Duration::from_secs(15))
                .request_timeout(Duration::from_secs(10))
                .build()
                .unwrap(),
        )
        .await
        .unwrap();
        let records: Vec<ProducerRecord> = (0..20)
            .map(|i| {
                let r = ProducerRecord::new(topic.as_str(), format!("v{i}")).partition(0);
                if i % 5 == 3 {
                    r // keyless: refused on a compacted topic
                } else {
                    r.key(format!("k{i}"))
                }
            })
            .collect();
        let futures = producer.send_all(records).await;
        let mut delivered = Vec::new();
        for (i, f) in futures.into_iter().enumerate() {
            let res = f.expect("accepted").await;
            if i % 5 == 3 {
                match res {
                    Err(ProduceError::Broker { code, message, .. }) => {
                        assert_eq!(code.0, 87, "INVALID_RECORD for record {i}");
                        println!("record {i}: {message:?}");
                    }
                    other => panic!("keyless record {i}: {other:?}"),
                }
            } else {
                let md = res.unwrap_or_else(|e| panic!("record {i}: {e}"));
                delivered.push((md.offset, format!("v{i}")));
            }
        }
        assert_eq!(delivered.len(), 16);
        let read = read_back(&broker.bootstrap, &topic, 16, Duration::from_secs(30)).await;
        let got: Vec<(i64, String)> = read
            .iter()
            .map(|r| {
                (
                    r.offset,
                    String::from_utf8_lossy(r.value.as_deref().unwrap_or(b"")).into_owned(),
                )
            })
            .collect();
        assert_eq!(
            got, delivered,
            "idempotence {idempotence}: read back = delivered, in order"
        );
        producer.close(Duration::from_secs(5)).await;
    }
}

/// A record is partitioned once, even when its mailbox is full and `send` has to wait: with
/// Java's `RoundRobinPartitioner` the n-th record lands in partition n % 2 (read back by
/// librdkafka), with a one-record mailbox that is full on almost every send.
#[actix_rt::test]
async fn a_record_waiting_for_a_mailbox_slot_is_partitioned_once() {
    common::init_tracing();
    let broker = TestBroker::start();
    let topic = unique_topic("rr-full");
    broker.create_topic(&topic, 2);
    let producer = Producer::builder(
        config(&broker.bootstrap)
            .mailbox_capacity(1)
            .linger(Duration::from_millis(1))
            .build()
            .unwrap(),
    )
    .partitioner(std::sync::Arc::new(
        actix_kafka::partitioner::RoundRobinPartitioner::new(),
    ))
    .start()
    .await
    .unwrap();
    const N: usize = 2000;
    let mut deliveries = Vec::with_capacity(N);
    for i in 0..N {
        deliveries.push(
            producer
                .send(ProducerRecord::new(topic.as_str(), format!("r{i}")))
                .await
                .expect("enqueue"),
        );
    }
    for (i, d) in deliveries.into_iter().enumerate() {
        let md = d.await.expect("delivered");
        assert_eq!(md.partition, (i % 2) as i32, "record {i}");
    }
    producer.close(Duration::from_secs(10)).await;
    let read = read_back(&broker.bootstrap, &topic, N, Duration::from_secs(60)).await;
    assert_eq!(read.len(), N);
    for r in &read {
        let i: usize = String::from_utf8_lossy(r.value.as_deref().unwrap_or_default())
            .trim_start_matches('r')
            .parse()
            .unwrap();
        assert_eq!(r.partition, (i % 2) as i32, "read back: record {i}");
    }
}

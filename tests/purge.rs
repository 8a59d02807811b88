//! Issue 22 item 3: `Producer::purge` (librdkafka's `rd_kafka_purge`, franz-go's
//! `AbortBufferedRecords`) on Apache Kafka 4 (scripts/kafka.sh), read back by librdkafka
//! (`check.crcs=true`; `read_committed` for the transaction). Batches are held in flight by the
//! test proxy, which delays every Produce request on its way to the broker.
mod common;

use actix_kafka::prelude::*;
use actix_kafka::Purge;
use common::proxy::{Proxy, PRODUCE};
use common::{read_all, read_all_committed, unique_topic, TestBroker};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

const READ: Duration = Duration::from_secs(60);

fn config(bootstrap: &str) -> actix_kafka::config::ProducerConfigBuilder {
    ProducerConfig::builder()
        .bootstrap_servers([bootstrap.to_string()])
        .max_block(Duration::from_secs(30))
}

fn values(of: &[common::ConsumedRecord]) -> BTreeSet<String> {
    of.iter()
        .map(|r| r.value_str().unwrap_or_default())
        .collect()
}

/// Sends `n` records `{prefix}-{i}` (keyed `k{i % keys}` if `keys > 0`), padded by `pad` bytes,
/// and returns their values with their futures.
async fn send_n(
    producer: &Producer,
    topic: &str,
    prefix: &str,
    n: usize,
    keys: usize,
    pad: usize,
) -> Vec<(String, DeliveryFuture)> {
    let mut futs = Vec::with_capacity(n);
    for i in 0..n {
        let v = format!("{prefix}-{i:04}{}", "x".repeat(pad));
        let mut r = ProducerRecord::new(topic, v.clone());
        if keys > 0 {
            r = r.key(format!("k{}", i % keys));
        }
        futs.push((v, producer.send(r).await.expect("send")));
    }
    futs
}

/// Waits for every future; returns (delivered values, purged with possibly_written flags).
async fn outcomes(futs: Vec<(String, DeliveryFuture)>) -> (BTreeSet<String>, Vec<(String, bool)>) {
    let mut delivered = BTreeSet::new();
    let mut purged = Vec::new();
    for (v, f) in futs {
        match tokio::time::timeout(Duration::from_secs(30), f).await {
            Ok(Ok(_)) => {
                delivered.insert(v);
            }
            Ok(Err(ProduceError::Purged { possibly_written })) => {
                purged.push((v, possibly_written))
            }
            Ok(Err(e)) => panic!("record {v}: {e}"),
            Err(_) => panic!("record {v}: no outcome within 30 s"),
        }
    }
    (delivered, purged)
}

/// Queued records (open batches lingering for a minute, over 3 partitions) all fail `Purged`,
/// not possibly written, as soon as `purge` returns; the producer goes on: records sent after
/// it are delivered, and a librdkafka reader finds exactly those.
#[actix_rt::test]
async fn purge_fails_queued_records_at_once_and_the_producer_goes_on() {
    let broker = TestBroker::start();
    let topic = unique_topic("purgeq");
    broker.create_topic(&topic, 3);
    let producer = Producer::start(
        config(&broker.bootstrap)
            .linger(Duration::from_secs(60))
            .batch_size(1_000_000)
            .build()
            .unwrap(),
    )
    .await
    .unwrap();
    let queued = send_n(&producer, &topic, "queued", 3000, 11, 0).await;
    let started = Instant::now();
    producer.purge(Purge::Queued).await;
    let took = started.elapsed();
    assert_eq!(
        producer.pending_records(),
        0,
        "every queued record has its outcome"
    );
    let (delivered, purged) = outcomes(queued).await;
    assert!(
        delivered.is_empty(),
        "delivered despite the purge: {}",
        delivered.len()
    );
    assert_eq!(purged.len(), 3000);
    assert!(purged.iter().all(|(_, written)| !written), "none was sent");
    assert!(took < Duration::from_secs(5), "purge took {took:?}");

    // Not closed: later records go through (linger flushed by `flush`).
    let later = send_n(&producer, &topic, "later", 300, 11, 0).await;
    producer.flush().await;
    let (delivered, purged) = outcomes(later).await;
    assert!(purged.is_empty());
    assert_eq!(delivered.len(), 300);
    producer.close(Duration::from_secs(10)).await;
    let read = read_all(&broker.bootstrap, &topic, READ).await;
    assert_eq!(
        values(&read),
        delivered,
        "the log holds the later records only, once each"
    );
    assert_eq!(read.len(), 300);
    println!(
        "SCENARIO purge_queued records=3000 purge_ms={}",
        took.as_millis()
    );
}

/// With idempotence, batches held in flight by a slow network are failed at once by
/// `Purge::QueuedAndInFlight` (possibly written: they reach the broker later and are in the
/// log), the queued ones behind them too (not written: never in the log). The sequence the
/// purge leaves open resets the producer id (KIP-360) once the answers are in, so the records
/// sent afterwards are written once each, with no sequence error.
#[actix_rt::test]
async fn purge_in_flight_fails_sent_batches_as_possibly_written_and_resets_the_producer_id() {
    let broker = TestBroker::start();
    let topic = unique_topic("purgef");
    broker.create_topic(&topic, 1);
    let proxy = Proxy::start(broker.bootstrap.parse().unwrap());
    let producer = Producer::start(
        config(&proxy.bootstrap())
            .linger(Duration::ZERO)
            .batch_size(1024)
            .request_timeout(Duration::from_secs(30))
            .delivery_timeout(Duration::from_secs(60))
            .build()
            .unwrap(),
    )
    .await
    .unwrap();
    producer
        .send_and_wait(ProducerRecord::new(topic.as_str(), "warm-up"))
        .await
        .expect("warm-up");
    proxy.set_latency(PRODUCE, Duration::from_secs(3));
    let futs = send_n(&producer, &topic, "held", 400, 0, 100).await;
    // Wait until requests are out (at most 5 in flight, one batch each: the rest is queued, in
    // the sender or, beyond `max.pending.batches.per.partition`, in the accumulator).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let stats = producer.sender_stats().await.expect("stats");
        if stats.requests_in_flight > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "nothing in flight: {stats:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let started = Instant::now();
    producer.purge(Purge::QueuedAndInFlight).await;
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(2),
        "purge waited for the network: {took:?}"
    );
    let (delivered, purged) = outcomes(futs).await;
    assert!(
        delivered.is_empty(),
        "{} delivered despite the purge",
        delivered.len()
    );
    assert_eq!(purged.len(), 400);
    let written: BTreeSet<String> = purged
        .iter()
        .filter(|(_, w)| *w)
        .map(|(v, _)| v.clone())
        .collect();
    let not_written: BTreeSet<String> = purged
        .iter()
        .filter(|(_, w)| !*w)
        .map(|(v, _)| v.clone())
        .collect();
    assert!(!written.is_empty(), "batches were in flight");
    assert!(!not_written.is_empty(), "batches were queued");

    proxy.set_latency(PRODUCE, Duration::ZERO);
    let later = send_n(&producer, &topic, "later", 100, 0, 0).await;
    let (delivered, purged) = outcomes(later).await;
    assert!(purged.is_empty());
    assert_eq!(delivered.len(), 100);
    let stats = producer.sender_stats().await.expect("stats");
    assert!(
        stats.producer_id_resets >= 1,
        "no producer-id reset: {stats:?}"
    );
    producer.close(Duration::from_secs(10)).await;

    let read = read_all(&broker.bootstrap, &topic, READ).await;
    let log = values(&read);
    assert_eq!(read.len(), log.len(), "a record is in the log twice");
    for v in &not_written {
        assert!(
            !log.contains(v),
            "{v} failed as not written but is in the log"
        );
    }
    for v in &delivered {
        assert!(log.contains(v), "{v} delivered but not in the log");
    }
    let held_in_log = log.iter().filter(|v| v.starts_with("held-")).count();
    assert!(held_in_log <= written.len());
    println!(
        "SCENARIO purge_in_flight purged={} possibly_written={} of_them_in_log={} purge_ms={} \
         resets={}",
        written.len() + not_written.len(),
        written.len(),
        held_in_log,
        took.as_millis(),
        stats.producer_id_resets
    );
}

/// In a transaction, purged records fail the transaction as any failed record does: the
/// commit fails (abortable), the abort ends it, and the next transaction commits. A
/// `read_committed` reader finds the second transaction's records only.
#[actix_rt::test]
async fn purge_in_a_transaction_makes_it_abortable_and_the_next_one_commits() {
    let broker = TestBroker::start();
    let topic = unique_topic("purget");
    broker.create_topic(&topic, 2);
    let producer = Producer::start(
        config(&broker.bootstrap)
            .transactional_id(unique_topic("purge-txn"))
            .linger(Duration::from_secs(60))
            .build()
            .unwrap(),
    )
    .await
    .unwrap();
    producer.init_transactions().await.expect("init");
    producer.begin_transaction().await.expect("begin");
    let first = send_n(&producer, &topic, "first", 200, 5, 0).await;
    producer.purge(Purge::Queued).await;
    let (delivered, purged) = outcomes(first).await;
    assert!(delivered.is_empty());
    assert_eq!(purged.len(), 200);
    let commit = producer.commit_transaction().await;
    assert!(
        matches!(&commit, Err(e) if e.is_abortable()),
        "commit after a purge: {commit:?}"
    );
    producer.abort_transaction().await.expect("abort");

    producer.begin_transaction().await.expect("begin again");
    let second = send_n(&producer, &topic, "second", 200, 5, 0).await;
    producer.commit_transaction().await.expect("commit");
    let (delivered, purged) = outcomes(second).await;
    assert!(purged.is_empty());
    producer.close(Duration::from_secs(10)).await;
    let read = read_all_committed(&broker.bootstrap, &topic, READ).await;
    assert_eq!(values(&read), delivered);
    assert_eq!(read.len(), 200);
}

/// The actor message does the same: `PurgeRecords` answers once the queued records failed.
#[actix_rt::test]
async fn the_purge_message_purges_through_the_actor() {
    let broker = TestBroker::start();
    let topic = unique_topic("purgea");
    broker.create_topic(&topic, 1);
    let producer = Producer::start(
        config(&broker.bootstrap)
            .linger(Duration::from_secs(60))
            .build()
            .unwrap(),
    )
    .await
    .unwrap();
    let futs = send_n(&producer, &topic, "v", 50, 0, 0).await;
    producer
        .actor()
        .send(PurgeRecords(Purge::Queued))
        .await
        .expect("the actor answers");
    assert_eq!(producer.pending_records(), 0);
    let (delivered, purged) = outcomes(futs).await;
    assert!(delivered.is_empty());
    assert_eq!(purged.len(), 50);
    producer.close(Duration::from_secs(5)).await;
}

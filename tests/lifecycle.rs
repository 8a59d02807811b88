//! The producer's lifecycle and its connections under bad input (issue 19): durations a user
//! passes saturate, `Close` through the actor is never cut short, a broker nobody uses is not
//! dialled forever. Errors are injected with librdkafka's mock cluster; the counting listener
//! below is a hostile peer (it accepts and hangs up), not a broker.
mod common;

use actix_kafka::prelude::*;
use actix_kafka::{Producer, ProducerConfig, ProducerRecord};
use common::{unique_topic, MockKafka};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn mock_config(bootstrap: &str) -> actix_kafka::config::ProducerConfigBuilder {
    ProducerConfig::builder()
        .bootstrap_servers(bootstrap.split(',').map(str::to_string))
        .linger(Duration::from_millis(5))
        .max_block(Duration::from_secs(10))
        .retry_backoff(Duration::from_millis(50))
        .reconnect_backoff(Duration::from_millis(20))
        .reconnect_backoff_max(Duration::from_millis(50))
}

/// Defect 7: `close(Duration::MAX)` panicked (`Instant + Duration` overflowed); it now
/// delivers what is pending and returns.
#[tokio::test]
async fn close_with_the_largest_duration_returns() {
    let mk = MockKafka::new(1);
    let topic = unique_topic("closemax");
    mk.create_topic(&topic, 1);
    let producer = Producer::start(mock_config(&mk.bootstrap()).build().unwrap())
        .await
        .unwrap();
    let fut = producer
        .send(ProducerRecord::new(topic.as_str(), "v"))
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(30), producer.close(Duration::MAX))
        .await
        .expect("close(Duration::MAX) returns once the record is delivered");
    assert_eq!(fut.await.map(|md| md.offset).ok(), Some(0));
    assert_eq!(producer.pending_records(), 0);
}

/// Defect 8: `Close` through the actor stopped the arbiter the actor runs on while it still
/// waited, so the caller got a `MailboxError` instead of the reply. Requests in flight to a
/// slow broker make close take its failing path (they fail only as their actors stop).
#[tokio::test]
async fn close_through_the_actor_replies_with_records_pending() {
    let mk = MockKafka::new(1);
    let topic = unique_topic("actorclose");
    mk.create_topic(&topic, 1);
    let producer = Producer::start(mock_config(&mk.bootstrap()).build().unwrap())
        .await
        .unwrap();
    producer
        .send_and_wait(ProducerRecord::new(topic.as_str(), "warm"))
        .await
        .unwrap();
    let addr = producer.actor();
    mk.set_rtt(1, Duration::from_secs(3));
    let mut futs = Vec::new();
    for i in 0..100 {
        futs.push(
            producer
                .send(ProducerRecord::new(topic.as_str(), format!("v{i}")))
                .await
                .unwrap(),
        );
    }
    let started = Instant::now();
    let reply = tokio::time::timeout(
        Duration::from_secs(20),
        addr.send(Close(Duration::from_millis(500))),
    )
    .await
    .expect("the Close reply comes");
    assert!(reply.is_ok(), "Close was cut short: {reply:?}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    // Every record has its outcome (failed with Closed, or delivered): none is left waiting.
    for f in futs {
        let r = tokio::time::timeout(Duration::from_secs(10), f)
            .await
            .expect("every record has an outcome after close");
        assert!(matches!(r, Err(ProduceError::Closed(_)) | Ok(_)), "{r:?}");
    }
    assert_eq!(producer.pending_records(), 0);
}

/// Defect 5: a bootstrap server that is gone got a connection attempt every reconnect backoff
/// for the producer's life. Once nothing asks for it, it is left alone.
#[tokio::test]
async fn a_dead_bootstrap_server_nobody_uses_is_not_dialled_forever() {
    let mk = MockKafka::new(1);
    let topic = unique_topic("deadboot");
    mk.create_topic(&topic, 1);
    // Accepts and hangs up at once: every attempt fails after the TCP handshake.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = listener.local_addr().unwrap().to_string();
    let accepted = Arc::new(AtomicU64::new(0));
    {
        let accepted = accepted.clone();
        listener.set_nonblocking(true).unwrap();
        std::thread::spawn(move || {
            let until = Instant::now() + Duration::from_secs(20);
            while Instant::now() < until {
                match listener.accept() {
                    Ok((s, _)) => {
                        accepted.fetch_add(1, Ordering::SeqCst);
                        drop(s);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
        });
    }
    let bootstrap = format!("{dead},{}", mk.bootstrap());
    let producer = Producer::start(mock_config(&bootstrap).build().unwrap())
        .await
        .unwrap();
    for i in 0..10 {
        producer
            .send_and_wait(ProducerRecord::new(topic.as_str(), format!("v{i}")))
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = accepted.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let during = accepted.load(Ordering::SeqCst) - before;
    producer.close(Duration::from_secs(5)).await;
    println!("attempts on the dead bootstrap server: {before} before, {during} in 3 s after");
    // With reconnect.backoff.max.ms=50 the old loop made ~60 attempts in 3 s.
    assert!(
        during <= 2,
        "{during} connection attempts to an unused dead server in 3 s"
    );
}

/// Defect 9: a partition nothing is sent to any more kept its accumulator actor and mailbox
/// for the producer's life (one per partition ever used). An accumulator idle for
/// `metadata.max.idle.ms` (and `delivery.timeout.ms`) now retires; a later send to its
/// partition starts a new one and is delivered after the records before it.
#[tokio::test]
async fn accumulators_of_partitions_no_longer_used_are_released() {
    let mk = MockKafka::new(1);
    let topics: Vec<String> = (0..40).map(|i| unique_topic(&format!("idle{i}"))).collect();
    for t in &topics {
        mk.create_topic(t, 1);
    }
    let config = mock_config(&mk.bootstrap())
        .metadata_max_idle(Duration::from_secs(5))
        .request_timeout(Duration::from_secs(2))
        .delivery_timeout(Duration::from_secs(3))
        .build()
        .unwrap();
    let producer = Producer::start(config).await.unwrap();
    for t in &topics {
        producer
            .send_and_wait(ProducerRecord::new(t.as_str(), "first"))
            .await
            .unwrap();
    }
    assert_eq!(producer.metrics().mailbox_depth.len(), topics.len());
    let deadline = Instant::now() + Duration::from_secs(20);
    while !producer.metrics().mailbox_depth.is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        producer.metrics().mailbox_depth.len(),
        0,
        "idle accumulators still held"
    );
    // Used again: a new accumulator, the record lands after the first one.
    let md = producer
        .send_and_wait(ProducerRecord::new(topics[3].as_str(), "again"))
        .await
        .unwrap();
    assert_eq!(md.offset, 1);
    assert_eq!(producer.metrics().mailbox_depth.len(), 1);
    producer.close(Duration::from_secs(5)).await;
}

/// A producer-wide bound (`queue.buffering.max.messages`, librdkafka's key and meaning): each
/// partition's `mailbox.capacity` alone let 2,000 partitions buffer 2 million records
/// (benches/scale.sh: 264-444 MiB peak RSS against librdkafka's 46). Past the bound `try_send`
/// fails with `QueueFull` at once and `send` waits up to `max.block.ms`; once records
/// complete, there is room again.
#[tokio::test]
async fn records_pending_over_all_partitions_are_bounded() {
    let mk = MockKafka::new(1);
    let topic = unique_topic("budget");
    mk.create_topic(&topic, 8);
    let config = mock_config(&mk.bootstrap())
        .linger(Duration::from_millis(2_000))
        .max_block(Duration::from_millis(300))
        .set("queue.buffering.max.messages", "10")
        .unwrap()
        .build()
        .unwrap();
    let producer = Producer::start(config).await.unwrap();
    let mut futures = Vec::new();
    for p in 0..10 {
        let record = ProducerRecord::new(topic.as_str(), "v").partition(p % 8);
        futures.push(producer.send(record).await.unwrap());
    }
    let over = producer.try_send(ProducerRecord::new(topic.as_str(), "v").partition(1));
    assert!(
        matches!(over, Err(ProduceError::QueueFull { .. })),
        "try_send over the bound: {over:?}"
    );
    let t = Instant::now();
    let waited = producer
        .send(ProducerRecord::new(topic.as_str(), "v").partition(2))
        .await;
    assert!(
        matches!(waited, Err(ProduceError::QueueFull { .. })),
        "send over the bound: {:?}",
        waited.map(|_| ())
    );
    assert!(
        t.elapsed() >= Duration::from_millis(250),
        "send waited max.block.ms"
    );
    producer.flush().await;
    for f in futures {
        f.await.unwrap();
    }
    // Room again.
    let md = producer
        .send_and_wait(ProducerRecord::new(topic.as_str(), "after").partition(3))
        .await
        .unwrap();
    assert_eq!(md.partition, 3);
    producer.close(Duration::from_secs(5)).await;
}

//! Issue 9 (supervision and resources): a producer started from plain tokio (its own actix
//! system thread and arbiters) leaves no thread behind after `close`. Its own test binary: the
//! process's thread list is the measurement.
mod common;

use actix_kafka::{Producer, ProducerConfig, ProducerRecord};
use common::{unique_topic, TestBroker};
use std::time::{Duration, Instant};

/// Names of this process's threads (`/proc/self/task/*/comm`).
fn thread_names() -> Vec<String> {
    let mut names = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc/self/task") {
        for e in dir.flatten() {
            if let Ok(n) = std::fs::read_to_string(e.path().join("comm")) {
                names.push(n.trim().to_string());
            }
        }
    }
    names
}

fn ours(names: &[String]) -> Vec<String> {
    names
        .iter()
        .filter(|n| n.starts_with("actix-kafka") || n.starts_with("actix-rt"))
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_from_plain_tokio_leaves_no_thread() {
    let broker = TestBroker::start();
    let topic = unique_topic("lifecycle");
    broker.create_topic(&topic, 2);
    assert!(ours(&thread_names()).is_empty(), "{:?}", thread_names());
    for round in 0..3 {
        let producer = Producer::start(
            ProducerConfig::builder()
                .bootstrap_servers([broker.bootstrap.clone()])
                .build()
                .unwrap(),
        )
        .await
        .unwrap();
        let md = producer
            .send_and_wait(ProducerRecord::new(
                topic.as_str(),
                format!("round-{round}"),
            ))
            .await
            .unwrap();
        assert!(md.offset >= 0);
        assert!(
            !ours(&thread_names()).is_empty(),
            "the producer runs on threads of its own"
        );
        producer.close(Duration::from_secs(10)).await;
        // Arbiter threads end moments after they are stopped; the system thread was joined.
        let deadline = Instant::now() + Duration::from_secs(5);
        while !ours(&thread_names()).is_empty() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(
            ours(&thread_names()).is_empty(),
            "threads left after close (round {round}): {:?}",
            ours(&thread_names())
        );
    }
}

//! Produces a workload and prints the metrics snapshot (Java metric names) through the actor
//! API (`GetMetrics`).
//!
//! ```text
//! KAFKA_BOOTSTRAP=127.0.0.1:9092 cargo run --release --example metrics -- [TOPIC]
//! ```
use actix_kafka::{Close, Flush, GetMetrics, SendRecord};
use actix_kafka::{KafkaProducer, ProducerConfig, ProducerRecord};
use std::time::Duration;

#[actix::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let bootstrap = std::env::var("KAFKA_BOOTSTRAP").unwrap_or_else(|_| "localhost:9092".into());
    let topic = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "metrics-demo".into());
    let addr = KafkaProducer::start_producer(ProducerConfig::from_map([(
        "bootstrap.servers",
        bootstrap,
    )])?)
    .await?;
    let mut last = None;
    for i in 0..50_000 {
        last = Some(
            addr.send(SendRecord(
                ProducerRecord::new(topic.as_str(), vec![b'x'; 100]).key(format!("{i}")),
            ))
            .await??,
        );
    }
    if let Some(d) = last {
        d.await?;
    }
    addr.send(Flush).await?;
    let m = addr.send(GetMetrics).await?;
    for (name, value) in &m.values {
        println!("{name:>28} {value:>14.3}");
    }
    for (tp, depth) in &m.mailbox_depth {
        println!("{:>28} mailbox depth {depth}", tp.to_string());
    }
    addr.send(Close(Duration::from_secs(5))).await?;
    Ok(())
}

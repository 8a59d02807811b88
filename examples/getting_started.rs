//! The README's "Getting started" program, as written there (plain tokio, no actix in sight):
//!
//! ```text
//! KAFKA_BOOTSTRAP=127.0.0.1:9092 cargo run --example getting_started
//! ```
use actix_kafka::{Producer, ProducerConfig, ProducerRecord};
use std::time::Duration;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // RUST_LOG=actix_kafka=debug shows what the producer does (broker connections, retries).
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let bootstrap = std::env::var("KAFKA_BOOTSTRAP").unwrap_or_else(|_| "127.0.0.1:9092".into());
    let config = ProducerConfig::builder()
        .bootstrap_servers([bootstrap])
        .max_block(Duration::from_secs(10)) // how long send waits for metadata (default 60 s)
        .build()?;
    let producer = Producer::start(config).await?;
    let md = producer
        .send_and_wait(ProducerRecord::new("greetings", "hello").key("user-1"))
        .await?;
    println!(
        "delivered to {}-{} at offset {}",
        md.topic, md.partition, md.offset
    );
    producer.close(Duration::from_secs(10)).await;
    Ok(())
}

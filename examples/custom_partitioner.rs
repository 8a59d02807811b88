//! A custom `Partitioner`: records whose key starts with `vip-` go to partition 0, the rest are
//! spread by Java's murmur2 over the other partitions.
//!
//! ```text
//! KAFKA_BOOTSTRAP=127.0.0.1:9092 cargo run --example custom_partitioner -- [TOPIC]
//! ```
use actix_kafka::partitioner::{murmur2, to_positive, Partitioner};
use actix_kafka::{Producer, ProducerConfig, ProducerRecord};
use std::sync::Arc;
use std::time::Duration;

struct VipPartitioner;

impl Partitioner for VipPartitioner {
    fn partition(&self, _topic: &str, key: Option<&[u8]>, _value_len: usize, n: i32) -> i32 {
        match key {
            Some(k) if k.starts_with(b"vip-") || n == 1 => 0,
            Some(k) => 1 + to_positive(murmur2(k)) % (n - 1),
            None => 1 + fastrand_like(n - 1),
        }
    }
}

fn fastrand_like(n: i32) -> i32 {
    (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0) as i32)
        .rem_euclid(n.max(1))
}

#[actix::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let bootstrap = std::env::var("KAFKA_BOOTSTRAP").unwrap_or_else(|_| "localhost:9092".into());
    let topic = std::env::args().nth(1).unwrap_or_else(|| "orders".into());
    let config = ProducerConfig::from_map([("bootstrap.servers", bootstrap)])?;
    let producer = Producer::start_with_partitioner(config, Arc::new(VipPartitioner)).await?;
    for key in ["vip-alice", "bob", "vip-carol", "dave", "erin"] {
        let md = producer
            .send(ProducerRecord::new(topic.as_str(), "order").key(key))
            .await?
            .await?;
        println!(
            "{key:>10} -> partition {} offset {}",
            md.partition, md.offset
        );
    }
    producer.close(Duration::from_secs(5)).await;
    Ok(())
}

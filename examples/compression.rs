//! Produces the same records with each codec and prints the compression each achieved.
//!
//! ```text
//! KAFKA_BOOTSTRAP=127.0.0.1:9092 cargo run --release --example compression -- [TOPIC]
//! ```
use actix_kafka::{Producer, ProducerConfig, ProducerRecord};
use std::time::{Duration, Instant};

#[actix::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let bootstrap = std::env::var("KAFKA_BOOTSTRAP").unwrap_or_else(|_| "localhost:9092".into());
    let topic = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "compression-demo".into());
    for (codec, level_key, level) in [
        ("none", None, ""),
        ("gzip", Some("compression.gzip.level"), "6"),
        ("snappy", None, ""),
        ("lz4", None, ""),
        ("zstd", Some("compression.zstd.level"), "3"),
    ] {
        let mut props = vec![
            ("bootstrap.servers", bootstrap.as_str()),
            ("compression.type", codec),
            ("linger.ms", "20"),
        ];
        if let Some(k) = level_key {
            props.push((k, level));
        }
        let producer = Producer::start(ProducerConfig::from_map(props)?).await?;
        let t = Instant::now();
        let mut last = None;
        for i in 0..20_000 {
            let v = format!(
                "{{\"id\":{i},\"event\":\"page_view\",\"path\":\"/products/{}\"}}",
                i % 50
            );
            last = Some(
                producer
                    .send(ProducerRecord::new(topic.as_str(), v))
                    .await?,
            );
        }
        if let Some(d) = last {
            d.await?;
        }
        producer.flush().await;
        let m = producer.metrics();
        println!(
            "{codec:>6}: 20000 records in {:>6.1} ms, compression-rate-avg {:.3}, {:.0} bytes sent",
            t.elapsed().as_secs_f64() * 1e3,
            m.get("compression-rate-avg").unwrap_or(1.0),
            m.get("outgoing-byte-total").unwrap_or(0.0)
        );
        producer.close(Duration::from_secs(10)).await;
    }
    Ok(())
}

//! Export the producer's metrics (Java names) through the `metrics` facade, rendered as
//! Prometheus text:
//!
//! ```text
//! KAFKA_BOOTSTRAP=127.0.0.1:9092 cargo run --example metrics_prometheus -- [TOPIC]
//! ```
//!
//! Every second the producer's `MetricsSnapshot` is copied into `metrics` gauges named
//! `kafka_producer_<java name with _>` (e.g. `kafka_producer_record_send_total`,
//! `kafka_producer_connection_count`, `kafka_producer_request_latency_avg`); any `metrics`
//! recorder can take them. Here the Prometheus recorder renders them to stdout; a web app would
//! serve `handle.render()` on `/metrics`.
use actix_kafka::{MetricsSnapshot, Producer, ProducerConfig, ProducerRecord};
use metrics_exporter_prometheus::PrometheusBuilder;
use std::time::Duration;

fn export(snapshot: &MetricsSnapshot) {
    for (name, value) in &snapshot.values {
        let name = format!("kafka_producer_{}", name.replace('-', "_"));
        metrics::gauge!(name).set(*value);
    }
}

#[actix::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let handle = PrometheusBuilder::new().install_recorder()?;
    let bootstrap = std::env::var("KAFKA_BOOTSTRAP").unwrap_or_else(|_| "127.0.0.1:9092".into());
    let topic = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "metrics-demo".into());
    let producer = Producer::start(
        ProducerConfig::builder()
            .bootstrap_servers([bootstrap])
            .build()?,
    )
    .await?;
    for round in 0..3 {
        for i in 0..1000 {
            producer
                .send(ProducerRecord::new(topic.as_str(), format!("r{round}-{i}")))
                .await?;
        }
        producer.flush().await;
        export(&producer.metrics());
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    producer.close(Duration::from_secs(5)).await;
    print!("{}", handle.render());
    Ok(())
}

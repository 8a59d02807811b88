//! The producer's metrics (Java names) in Prometheus text, with feature `metrics`:
//!
//! ```text
//! KAFKA_BOOTSTRAP=127.0.0.1:9092 cargo run --features metrics --example metrics_prometheus -- [TOPIC]
//! ```
//!
//! With the feature on, the producer copies its `MetricsSnapshot` into the `metrics` facade every
//! second (and at `close`) as `kafka_producer_<java name with _>{client_id="..."}` (e.g.
//! `kafka_producer_record_send_total`, `kafka_producer_connection_count`,
//! `kafka_producer_request_latency_avg`), plus `kafka_producer_mailbox_depth{topic, partition}`.
//! Installing a recorder is all the application does: here the Prometheus recorder renders to
//! stdout; a web app would serve `handle.render()` on `/metrics`.
use actix_kafka::{Producer, ProducerConfig, ProducerRecord};
use metrics_exporter_prometheus::PrometheusBuilder;
use std::time::Duration;

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
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    producer.close(Duration::from_secs(5)).await;
    print!("{}", handle.render());
    Ok(())
}

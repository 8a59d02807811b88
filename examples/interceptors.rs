//! A `ProducerInterceptor` that stamps a header on every record and counts acknowledgements,
//! as Java's `interceptor.classes` would.
//!
//! ```text
//! KAFKA_BOOTSTRAP=127.0.0.1:9092 cargo run --example interceptors -- [TOPIC]
//! ```
use actix_kafka::{DeliveryResult, Producer, ProducerConfig, ProducerInterceptor, ProducerRecord};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[derive(Default)]
struct Audit {
    acked: AtomicU64,
    failed: AtomicU64,
}

struct AuditInterceptor(Arc<Audit>);

impl ProducerInterceptor for AuditInterceptor {
    fn on_send(&self, record: ProducerRecord) -> ProducerRecord {
        record.header("produced-by", "interceptor-demo")
    }
    fn on_acknowledgement(&self, result: &DeliveryResult) {
        let counter = if result.is_ok() {
            &self.0.acked
        } else {
            &self.0.failed
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

#[actix::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let bootstrap = std::env::var("KAFKA_BOOTSTRAP").unwrap_or_else(|_| "localhost:9092".into());
    let topic = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "interceptor-demo".into());
    let audit = Arc::new(Audit::default());
    let producer = Producer::builder(ProducerConfig::from_map([(
        "bootstrap.servers",
        bootstrap,
    )])?)
    .interceptor(AuditInterceptor(audit.clone()))
    .start()
    .await?;
    for i in 0..100 {
        producer
            .send(ProducerRecord::new(topic.as_str(), format!("event {i}")))
            .await?;
    }
    producer.flush().await;
    println!(
        "acknowledged {}, failed {} (seen by the interceptor)",
        audit.acked.load(Ordering::Relaxed),
        audit.failed.load(Ordering::Relaxed)
    );
    producer.close(Duration::from_secs(5)).await;
    Ok(())
}

//! Issue 24 item 3 (feature `metrics`): the producer's metrics reach an installed `metrics`
//! recorder with no glue code. The Prometheus recorder's text is scraped and its values checked
//! against `Producer::metrics()`, on Apache Kafka 4 (scripts/kafka.sh).
mod common;

use actix_kafka::{Producer, ProducerConfig, ProducerRecord};
use common::{unique_topic, TestBroker};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

fn recorder() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        PrometheusBuilder::new()
            .install_recorder()
            .expect("the only recorder of this test binary")
    })
}

/// The value of `name{labels}` in Prometheus text: the line that starts with the name and whose
/// label set contains every `k="v"` of `labels`.
fn scraped(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(name)?;
        let (set, value) = match rest.strip_prefix('{') {
            Some(r) => {
                let (set, value) = r.split_once('}')?;
                (set, value)
            }
            None => ("", rest),
        };
        if !value.starts_with(' ') {
            return None; // a longer name with this prefix
        }
        let all = labels
            .iter()
            .all(|(k, v)| set.split(',').any(|p| p == format!("{k}=\"{v}\"")));
        all.then(|| value.trim().parse().ok()).flatten()
    })
}

#[actix_rt::test]
async fn the_producer_metrics_reach_the_prometheus_recorder_without_glue() {
    let handle = recorder();
    let broker = TestBroker::start();
    let topic = unique_topic("metrics");
    broker.create_topic(&topic, 3);
    let client_id = unique_topic("metrics-client");
    let producer = Producer::start(
        ProducerConfig::builder()
            .bootstrap_servers([broker.bootstrap.clone()])
            .client_id(client_id.clone())
            .build()
            .unwrap(),
    )
    .await
    .unwrap();
    for i in 0..2000 {
        let r = ProducerRecord::new(topic.as_str(), format!("v{i}")).key(format!("k{}", i % 17));
        producer.send(r).await.unwrap();
    }
    producer.flush().await;
    let live = producer.metrics();
    let sent = live.get("record-send-total").unwrap_or_default();
    assert_eq!(sent, 2000.0);
    let requests = live.get("request-total").unwrap_or_default();
    assert!(requests >= 1.0);
    // Within two export intervals the recorder has every value of the snapshot.
    let labels = [("client_id", client_id.as_str())];
    let deadline = Instant::now() + Duration::from_secs(10);
    let text = loop {
        let text = handle.render();
        let seen = scraped(&text, "kafka_producer_record_send_total", &labels);
        if seen == Some(2000.0) {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "record_send_total = {seen:?} in:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        text.contains("# TYPE kafka_producer_record_send_total counter"),
        "{text}"
    );
    assert!(
        text.contains("# TYPE kafka_producer_request_latency_avg gauge"),
        "{text}"
    );
    // Counters as the live snapshot has them (nothing is sent any more).
    for name in [
        "request-total",
        "record-error-total",
        "connection-creation-total",
    ] {
        let key = format!("kafka_producer_{}", name.replace('-', "_"));
        assert_eq!(
            scraped(&text, &key, &labels),
            live.get(name),
            "{key} in:\n{text}"
        );
    }
    let batch = scraped(&text, "kafka_producer_batch_size_avg", &labels).unwrap_or_default();
    assert!(
        (batch - live.get("batch-size-avg").unwrap_or_default()).abs() < 1e-6,
        "batch_size_avg {batch} vs {:?}",
        live.get("batch-size-avg")
    );
    assert!(scraped(&text, "kafka_producer_connection_count", &labels).unwrap_or_default() >= 1.0);
    // Per partition: the mailbox depth (0: everything was taken).
    for p in 0..3 {
        let depth = scraped(
            &text,
            "kafka_producer_mailbox_depth",
            &[
                ("client_id", client_id.as_str()),
                ("topic", topic.as_str()),
                ("partition", &p.to_string()),
            ],
        );
        assert_eq!(depth, Some(0.0), "partition {p} in:\n{text}");
    }
    producer.close(Duration::from_secs(5)).await;
    // `close` exports the last values.
    let text = handle.render();
    assert_eq!(
        scraped(&text, "kafka_producer_record_send_total", &labels),
        Some(2000.0)
    );
}

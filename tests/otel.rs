//! Issue 24 item 1 (feature `opentelemetry`): a PRODUCER span per record following
//! OpenTelemetry's messaging conventions, child of the caller's span, exported by the SDK's
//! in-memory exporter; the W3C `traceparent` injected into the record's headers, found by an
//! independent librdkafka reader with the exported span's trace and span ids. On Apache Kafka 4
//! (scripts/kafka.sh).
mod common;

use actix_kafka::{ProduceError, Producer, ProducerConfig, ProducerRecord};
use common::{read_back, unique_topic, TestBroker};
use opentelemetry::trace::{SpanKind, Status, TracerProvider as _};
use opentelemetry::Value;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::Duration;
use tracing::Instrument;
use tracing_subscriber::layer::SubscriberExt;

struct Otel {
    exporter: InMemorySpanExporter,
    provider: SdkTracerProvider,
}

/// The process's OpenTelemetry pipeline: a global `tracing` subscriber with the
/// tracing-opentelemetry layer (the producer's spans end on its actor threads), the W3C
/// propagator, spans kept in memory.
fn otel() -> &'static Otel {
    static OTEL: OnceLock<Otel> = OnceLock::new();
    OTEL.get_or_init(|| {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .build();
        let tracer = provider.tracer("otel-test");
        let subscriber =
            tracing_subscriber::registry().with(tracing_opentelemetry::layer().with_tracer(tracer));
        tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
        Otel { exporter, provider }
    })
}

fn attr<'a>(span: &'a SpanData, key: &str) -> Option<&'a Value> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| &kv.value)
}

fn text(v: Option<&Value>) -> Option<String> {
    v.map(|v| v.as_str().into_owned())
}

#[actix_rt::test]
async fn each_record_gets_a_producer_span_and_carries_its_traceparent() {
    let otel = otel();
    let broker = TestBroker::start();
    let topic = unique_topic("otel");
    broker.create_topic(&topic, 2);
    // max.block.ms 2 s: the record to a partition that does not exist waits that long for
    // metadata that has it.
    let producer = Producer::start(
        ProducerConfig::builder()
            .bootstrap_servers([broker.bootstrap.clone()])
            .max_block(Duration::from_secs(2))
            .build()
            .unwrap(),
    )
    .await
    .unwrap();
    // Ten records sent inside the application's span, one refused before it is enqueued.
    let request = tracing::info_span!("handle_request");
    let (delivered, refused) = async {
        let mut delivered = Vec::new();
        for i in 0..10 {
            let v = format!("v{i}");
            let md = producer
                .send_and_wait(ProducerRecord::new(topic.as_str(), v.clone()).key("k"))
                .await
                .expect("delivered");
            delivered.push((v, md));
        }
        let refused = producer
            .send(ProducerRecord::new(topic.as_str(), "nowhere").partition(99))
            .await
            .err();
        (delivered, refused)
    }
    .instrument(request)
    .await;
    assert!(matches!(
        refused,
        Some(ProduceError::InvalidPartition { .. })
    ));
    producer.close(Duration::from_secs(5)).await;
    let _ = otel.provider.force_flush();
    let spans = otel.exporter.get_finished_spans().expect("spans");
    let parent = spans
        .iter()
        .find(|s| s.name == "handle_request")
        .expect("the application's span");
    let name = format!("send {topic}");
    let ours: Vec<&SpanData> = spans.iter().filter(|s| s.name == name).collect();
    assert_eq!(
        ours.len(),
        11,
        "one span per record: {:?}",
        spans.iter().map(|s| &s.name).collect::<Vec<_>>()
    );
    let mut by_offset = HashMap::new();
    for s in &ours {
        assert_eq!(s.span_kind, SpanKind::Producer);
        assert_eq!(
            s.parent_span_id,
            parent.span_context.span_id(),
            "child of the caller's span"
        );
        assert_eq!(s.span_context.trace_id(), parent.span_context.trace_id());
        assert_eq!(text(attr(s, "messaging.system")).as_deref(), Some("kafka"));
        assert_eq!(
            text(attr(s, "messaging.operation.type")).as_deref(),
            Some("send")
        );
        assert_eq!(
            text(attr(s, "messaging.destination.name")).as_deref(),
            Some(topic.as_str())
        );
        match attr(s, "messaging.kafka.offset") {
            Some(Value::I64(offset)) => {
                let partition = text(attr(s, "messaging.destination.partition.id"));
                by_offset.insert((partition, *offset), *s);
            }
            _ => {
                assert!(matches!(s.status, Status::Error { .. }), "{s:?}");
                assert_eq!(
                    text(attr(s, "error.type")).as_deref(),
                    Some("InvalidPartition")
                );
            }
        }
    }
    assert_eq!(
        by_offset.len(),
        10,
        "ten delivered spans with partition and offset"
    );
    // An independent reader finds each record's traceparent: the trace of the caller, the span
    // of that record's send.
    let read = read_back(&broker.bootstrap, &topic, 10, Duration::from_secs(30)).await;
    assert_eq!(read.len(), 10);
    for r in &read {
        let span = by_offset
            .get(&(Some(r.partition.to_string()), r.offset))
            .unwrap_or_else(|| panic!("no span for {}:{}", r.partition, r.offset));
        let header = r
            .headers
            .iter()
            .find(|(k, _)| k == "traceparent")
            .and_then(|(_, v)| v.as_ref())
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .expect("a traceparent header");
        let expected = format!(
            "00-{}-{}-01",
            span.span_context.trace_id(),
            span.span_context.span_id()
        );
        assert_eq!(header, expected, "record {}:{}", r.partition, r.offset);
    }
    assert_eq!(delivered.len(), 10);
}

/// `inject_trace_context(false)`: the spans are made, no header is added.
#[actix_rt::test]
async fn injection_can_be_turned_off() {
    let otel = otel();
    let broker = TestBroker::start();
    let topic = unique_topic("otel-off");
    broker.create_topic(&topic, 1);
    let producer = Producer::builder(
        ProducerConfig::builder()
            .bootstrap_servers([broker.bootstrap.clone()])
            .build()
            .unwrap(),
    )
    .inject_trace_context(false)
    .start()
    .await
    .unwrap();
    producer
        .send_and_wait(ProducerRecord::new(topic.as_str(), "quiet"))
        .instrument(tracing::info_span!("off"))
        .await
        .expect("delivered");
    producer.close(Duration::from_secs(5)).await;
    let _ = otel.provider.force_flush();
    let name = format!("send {topic}");
    let spans = otel.exporter.get_finished_spans().expect("spans");
    assert_eq!(spans.iter().filter(|s| s.name == name).count(), 1);
    let read = read_back(&broker.bootstrap, &topic, 1, Duration::from_secs(30)).await;
    assert_eq!(read.len(), 1);
    assert!(read[0].headers.is_empty(), "{:?}", read[0].headers);
}

//! Feature `opentelemetry`: a PRODUCER span per record sent, and the W3C trace context in the
//! record's headers.
//!
//! Each record `send` accepts (any of the send calls, the actor's messages included) gets a
//! `tracing` span named `send {topic}` that follows OpenTelemetry's messaging semantic
//! conventions (v1.26+): span kind PRODUCER (`otel.kind`), `messaging.system = "kafka"`,
//! `messaging.operation.type = "send"`, `messaging.operation.name = "send"`,
//! `messaging.destination.name` (the topic); once the record is delivered
//! `messaging.destination.partition.id` and `messaging.kafka.offset`; on failure `error.type`
//! (the [`ProduceError`] variant) and an error status. The span is a child of the caller's
//! current span, and ends when the record has its outcome. `tracing-opentelemetry`'s layer, if
//! the application installed it, turns it into an OpenTelemetry span; without it the span
//! costs a `tracing` span and nothing is injected.
//!
//! The span's context is injected into the record's headers by OpenTelemetry's global text-map
//! propagator (`opentelemetry::global::set_text_map_propagator`; with the W3C
//! `TraceContextPropagator`: `traceparent` and `tracestate`), as the messaging conventions ask
//! of a producer ("the creation context ... SHOULD be propagated"), so a consumer can link its
//! processing to it. On by default with the feature;
//! [`crate::ProducerBuilder::inject_trace_context`] turns the injection off (the spans stay). A
//! header of the same name the record already has is replaced. Spans are at INFO level, target
//! `actix_kafka::otel`.

use crate::batch::DeliveryResult;
use crate::error::ProduceError;
use crate::record::{Header, ProducerRecord};
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The span of one record `send` accepted, ended with its outcome. Dropped without one (the
/// record was refused before it was enqueued, or its delivery was dropped), it ends as an
/// error of type `NotDelivered`.
pub(crate) struct SendSpan {
    span: tracing::Span,
    ended: bool,
}

impl Drop for SendSpan {
    fn drop(&mut self) {
        if !self.ended {
            self.span.record("otel.status_code", "error");
            self.span.record("error.type", "NotDelivered");
        }
    }
}

impl SendSpan {
    /// Starts the span of `record` (child of the current span) and, with `inject`, writes its
    /// context into the record's headers.
    pub(crate) fn start(record: &mut ProducerRecord, inject: bool) -> SendSpan {
        let span = tracing::info_span!(
            target: "actix_kafka::otel",
            "send",
            otel.name = %format_args!("send {}", record.topic),
            otel.kind = "producer",
            otel.status_code = Empty,
            messaging.system = "kafka",
            messaging.operation.type = "send",
            messaging.operation.name = "send",
            messaging.destination.name = %record.topic,
            messaging.destination.partition.id = Empty,
            messaging.kafka.offset = Empty,
            error.type = Empty,
        );
        if inject && !span.is_disabled() {
            let cx = span.context();
            opentelemetry::global::get_text_map_propagator(|p| {
                p.inject_context(&cx, &mut HeaderInjector(&mut record.headers));
            });
        }
        SendSpan { span, ended: false }
    }

    /// Records the outcome and ends the span.
    pub(crate) fn finish(mut self, result: &DeliveryResult) {
        match result {
            Ok(md) => {
                self.ended = true;
                self.span.record(
                    "messaging.destination.partition.id",
                    md.partition.to_string(),
                );
                if md.offset >= 0 {
                    self.span.record("messaging.kafka.offset", md.offset);
                }
            }
            Err(e) => self.failed(e),
        }
    }

    /// Records an error and ends the span.
    pub(crate) fn failed(mut self, e: &ProduceError) {
        self.ended = true;
        self.span.record("otel.status_code", "error");
        self.span.record("error.type", error_type(e));
    }
}

/// A low-cardinality name for `error.type`: the error's variant.
fn error_type(e: &ProduceError) -> &'static str {
    match e {
        ProduceError::Config(_) => "Config",
        ProduceError::RecordTooLarge { .. } => "RecordTooLarge",
        ProduceError::UnknownTopic { .. } => "UnknownTopic",
        ProduceError::TopicError { .. } => "TopicError",
        ProduceError::MetadataTimeout { .. } => "MetadataTimeout",
        ProduceError::InvalidPartition { .. } => "InvalidPartition",
        ProduceError::QueueFull { .. } => "QueueFull",
        ProduceError::DeliveryTimeout { .. } => "DeliveryTimeout",
        ProduceError::Broker { .. } => "Broker",
        ProduceError::Connection(_) => "Connection",
        ProduceError::Batch(_) => "Batch",
        ProduceError::Serialization(_) => "Serialization",
        ProduceError::Closed(_) => "Closed",
        ProduceError::Fatal(_) => "Fatal",
        ProduceError::Transaction(_) => "Transaction",
        ProduceError::Purged { .. } => "Purged",
    }
}

/// Writes propagation fields as record headers (replacing one of the same key).
struct HeaderInjector<'a>(&'a mut Vec<Header>);

impl opentelemetry::propagation::Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.retain(|h| h.key != key);
        self.0.push(Header {
            key: key.to_string(),
            value: Some(bytes::Bytes::from(value)),
        });
    }
}

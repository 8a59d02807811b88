//! Producer interceptors (Java's `ProducerInterceptor`, KIP-42).
//!
//! [`ProducerInterceptor::on_send`] sees (and may replace) each record before it is partitioned
//! and appended; [`ProducerInterceptor::on_acknowledgement`] sees every record's result — success
//! or error, including errors returned by `send` itself — before the user's future or callback.
//! As in Java, a failing interceptor does not break the pipeline: a panic in `on_send` is logged
//! and the record continues as it was before that interceptor; a panic in `on_acknowledgement`
//! is logged and ignored. Interceptors run on the caller's task (`on_send`) and on actor threads
//! (`on_acknowledgement`): keep them short.

use crate::batch::DeliveryResult;
use crate::record::ProducerRecord;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

/// Hooks around every record. Both methods have no-op defaults.
pub trait ProducerInterceptor: Send + Sync + 'static {
    /// Called in `send` before the record is partitioned; the returned record is sent.
    fn on_send(&self, record: ProducerRecord) -> ProducerRecord {
        record
    }
    /// Called once per record with its final result, before the user's future/callback.
    fn on_acknowledgement(&self, _result: &DeliveryResult) {}
}

/// An ordered chain of interceptors, applied in order.
#[derive(Clone, Default)]
pub struct Interceptors(pub(crate) Arc<[Arc<dyn ProducerInterceptor>]>);

impl Interceptors {
    /// A chain of the given interceptors (in call order).
    pub fn new(list: Vec<Arc<dyn ProducerInterceptor>>) -> Self {
        Interceptors(list.into())
    }

    /// True when there is no interceptor (the hot path then skips everything).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Runs every `on_send`; a panicking interceptor is skipped (the record as it was before it
    /// continues).
    pub fn on_send(&self, mut record: ProducerRecord) -> ProducerRecord {
        for i in self.0.iter() {
            let before = record.clone();
            match catch_unwind(AssertUnwindSafe(|| i.on_send(record))) {
                Ok(r) => record = r,
                Err(_) => {
                    tracing::warn!(
                        "ProducerInterceptor::on_send panicked; record passed on unchanged"
                    );
                    record = before;
                }
            }
        }
        record
    }

    /// Runs every `on_acknowledgement`; panics are logged and ignored.
    pub fn on_acknowledgement(&self, result: &DeliveryResult) {
        for i in self.0.iter() {
            if catch_unwind(AssertUnwindSafe(|| i.on_acknowledgement(result))).is_err() {
                tracing::warn!("ProducerInterceptor::on_acknowledgement panicked; ignored");
            }
        }
    }
}

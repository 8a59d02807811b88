//! [`RecordSender`]: the send API shared by [`crate::Producer`] and the test double
//! `mock::MockProducer` (feature `mock`), so application code can take either.

use crate::batch::DeliveryFuture;
use crate::error::ProduceError;
use crate::record::{ProducerRecord, RecordMetadata};
use std::future::Future;

/// Something records can be sent through: [`crate::Producer`] or `mock::MockProducer`.
///
/// Write application code against it (`fn publish(p: &impl RecordSender)`) and hand it the
/// mock in tests.
pub trait RecordSender: Clone + Send + Sync + 'static {
    /// Enqueues a record; the future resolves to its delivery. See [`crate::Producer::send`].
    fn send_record(
        &self,
        record: ProducerRecord,
    ) -> impl Future<Output = Result<DeliveryFuture, ProduceError>> + Send;

    /// Sends a record and waits for its delivery. See [`crate::Producer::send_and_wait`].
    fn send_and_wait_record(
        &self,
        record: ProducerRecord,
    ) -> impl Future<Output = Result<RecordMetadata, ProduceError>> + Send {
        let f = self.send_record(record);
        async move { f.await?.await }
    }
}

impl RecordSender for crate::Producer {
    fn send_record(
        &self,
        record: ProducerRecord,
    ) -> impl Future<Output = Result<DeliveryFuture, ProduceError>> + Send {
        self.send(record)
    }
}

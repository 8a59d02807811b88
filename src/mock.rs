//! A test double for the code that uses a producer (feature `mock`; Java ships `MockProducer`).
//!
//! [`MockProducer`] has the send API of [`crate::Producer`] (`send`, `send_with_callback`,
//! `send_and_wait`, `flush`, `close`) and no network: it records every record sent
//! ([`MockProducer::history`]) and completes deliveries on command
//! ([`MockProducer::complete_next`], [`MockProducer::error_next`]) or at once (`auto_complete`).
//! Partitions follow the default partitioner (explicit partition, else murmur2 of the key, else
//! partition 0) over `partitions` partitions per topic; offsets count up per partition from 0.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use actix_kafka::mock::MockProducer;
//! use actix_kafka::{ErrorCode, ProducerRecord};
//! let mock = MockProducer::new(false);
//! let first = mock.send(ProducerRecord::new("orders", "a")).await.unwrap();
//! let second = mock.send(ProducerRecord::new("orders", "b")).await.unwrap();
//! assert!(mock.complete_next());
//! assert!(mock.error_next(ErrorCode::RequestTimedOut.into()));
//! assert_eq!(first.await.unwrap().offset, 0);
//! assert!(second.await.is_err());
//! assert_eq!(mock.history().len(), 2);
//! # }
//! ```

use crate::batch::{Delivery, DeliveryFuture, DeliveryResult};
use crate::error::{KafkaCode, ProduceError};
use crate::record::{ProducerRecord, RecordMetadata, TopicPartition};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

struct Pending {
    tp: TopicPartition,
    timestamp: i64,
    key_size: i32,
    value_size: i32,
    delivery: Delivery,
}

#[derive(Default)]
struct State {
    history: Vec<ProducerRecord>,
    pending: VecDeque<Pending>,
    next_offset: HashMap<TopicPartition, i64>,
    closed: bool,
    send_error: Option<ProduceError>,
}

/// See the module docs. Cheap to clone: clones share the same state.
#[derive(Clone)]
pub struct MockProducer {
    auto_complete: bool,
    partitions: i32,
    state: Arc<Mutex<State>>,
}

impl MockProducer {
    /// A mock whose topics have one partition. `auto_complete`: every send succeeds at once;
    /// otherwise deliveries wait for [`complete_next`](Self::complete_next) /
    /// [`error_next`](Self::error_next).
    pub fn new(auto_complete: bool) -> Self {
        Self::with_partitions(auto_complete, 1)
    }

    /// A mock whose topics have `partitions` partitions (at least 1).
    pub fn with_partitions(auto_complete: bool, partitions: i32) -> Self {
        MockProducer {
            auto_complete,
            partitions: partitions.max(1),
            state: Arc::new(Mutex::new(State::default())),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes every later `send` fail with `error` before enqueueing (e.g. a `QueueFull` or
    /// `UnknownTopic` to test the caller's handling); `None` sends normally again.
    pub fn fail_sends(&self, error: Option<ProduceError>) {
        self.state().send_error = error;
    }

    fn enqueue(&self, record: ProducerRecord, delivery: Delivery) -> Result<(), ProduceError> {
        let mut st = self.state();
        if st.closed {
            return Err(ProduceError::closed("mock producer closed"));
        }
        if let Some(e) = &st.send_error {
            return Err(e.clone());
        }
        let partition = match record.partition {
            Some(p) if (0..self.partitions).contains(&p) => p,
            Some(p) => {
                return Err(ProduceError::InvalidPartition {
                    topic: record.topic.clone(),
                    partition: p,
                    partitions: self.partitions,
                })
            }
            None => record.key.as_deref().map_or(0, |k| {
                crate::partitioner::partition_for_key(k, self.partitions)
            }),
        };
        let timestamp = record.timestamp.unwrap_or_else(crate::record::now_ms);
        let pending = Pending {
            tp: TopicPartition::new(record.topic.clone(), partition),
            timestamp,
            key_size: record.key.as_ref().map_or(-1, |k| k.len() as i32),
            value_size: record.value.as_ref().map_or(-1, |v| v.len() as i32),
            delivery,
        };
        st.history.push(record);
        if self.auto_complete {
            let (p, result) = Self::succeed(&mut st, pending);
            drop(st);
            p.complete(result);
        } else {
            st.pending.push_back(pending);
        }
        Ok(())
    }

    fn succeed(st: &mut State, p: Pending) -> (Delivery, DeliveryResult) {
        let next = st.next_offset.entry(p.tp.clone()).or_insert(0);
        let offset = *next;
        *next += 1;
        let md = RecordMetadata {
            topic: p.tp.topic.clone(),
            partition: p.tp.partition,
            offset,
            timestamp: p.timestamp,
            serialized_key_size: p.key_size,
            serialized_value_size: p.value_size,
        };
        (p.delivery, Ok(md))
    }

    /// As [`crate::Producer::send`].
    ///
    /// # Errors
    /// [`ProduceError::Closed`] after [`close`](Self::close), the error set with
    /// [`fail_sends`](Self::fail_sends), [`ProduceError::InvalidPartition`].
    pub async fn send(&self, record: ProducerRecord) -> Result<DeliveryFuture, ProduceError> {
        let (tx, rx) = crate::completion::pair();
        self.enqueue(record, Delivery::Future(tx))?;
        Ok(rx)
    }

    /// As [`crate::Producer::send_with_callback`] (the callback runs on the thread that
    /// completes the record).
    ///
    /// # Errors
    /// As [`send`](Self::send).
    pub async fn send_with_callback(
        &self,
        record: ProducerRecord,
        callback: impl FnOnce(DeliveryResult) + Send + 'static,
    ) -> Result<(), ProduceError> {
        self.enqueue(
            record,
            Delivery::Callback(crate::batch::inline_callback(callback)),
        )
    }

    /// As [`crate::Producer::send_and_wait`].
    ///
    /// # Errors
    /// As [`send`](Self::send), then the delivery's error.
    pub async fn send_and_wait(
        &self,
        record: ProducerRecord,
    ) -> Result<RecordMetadata, ProduceError> {
        self.send(record).await?.await
    }

    /// Completes the oldest pending record successfully; `false` if none is pending.
    pub fn complete_next(&self) -> bool {
        let mut st = self.state();
        let Some(p) = st.pending.pop_front() else {
            return false;
        };
        let (d, r) = Self::succeed(&mut st, p);
        drop(st);
        d.complete(r);
        true
    }

    /// Fails the oldest pending record with a broker error `code` (as the real producer reports
    /// a non-retriable broker answer); `false` if none is pending.
    pub fn error_next(&self, code: KafkaCode) -> bool {
        let Some(p) = self.state().pending.pop_front() else {
            return false;
        };
        p.delivery.complete(Err(ProduceError::Broker {
            topic_partition: p.tp,
            code,
            message: None,
        }));
        true
    }

    /// Completes every pending record successfully (Java's `MockProducer.flush` with
    /// `autoComplete=false` completes them too).
    pub async fn flush(&self) {
        while self.complete_next() {}
    }

    /// Fails every pending record with [`ProduceError::Closed`]; later sends fail.
    pub async fn close(&self, _timeout: std::time::Duration) {
        let pending: Vec<Pending> = {
            let mut st = self.state();
            st.closed = true;
            st.pending.drain(..).collect()
        };
        for p in pending {
            p.delivery
                .complete(Err(ProduceError::closed("mock producer closed")));
        }
    }

    /// [`crate::Producer::purge`]: fails every pending record with [`ProduceError::Purged`]
    /// (`possibly_written` only with [`crate::Purge::QueuedAndInFlight`]: a mock has nothing
    /// queued apart from what it would send); later sends are accepted as before.
    pub async fn purge(&self, scope: crate::Purge) {
        let pending: Vec<Pending> = self.state().pending.drain(..).collect();
        let possibly_written = scope == crate::Purge::QueuedAndInFlight;
        for p in pending {
            p.delivery
                .complete(Err(ProduceError::Purged { possibly_written }));
        }
    }

    /// Every record sent, in order.
    pub fn history(&self) -> Vec<ProducerRecord> {
        self.state().history.clone()
    }

    /// Records not completed yet.
    pub fn pending(&self) -> usize {
        self.state().pending.len()
    }

    /// Forgets the history (pending records stay pending).
    pub fn clear(&self) {
        self.state().history.clear();
    }
}

impl crate::send::RecordSender for MockProducer {
    fn send_record(
        &self,
        record: ProducerRecord,
    ) -> impl std::future::Future<Output = Result<DeliveryFuture, ProduceError>> + Send {
        self.send(record)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codes::ErrorCode;

    #[tokio::test(flavor = "current_thread")]
    async fn auto_complete_partitions_and_offsets() {
        let m = MockProducer::with_partitions(true, 4);
        let a = m
            .send_and_wait(ProducerRecord::new("t", "a").key("k1"))
            .await
            .unwrap();
        let b = m
            .send_and_wait(ProducerRecord::new("t", "b").key("k1"))
            .await
            .unwrap();
        assert_eq!(a.partition, crate::partitioner::partition_for_key(b"k1", 4));
        assert_eq!((a.partition, a.offset, b.offset), (b.partition, 0, 1));
        assert_eq!(a.serialized_value_size, 1);
        let e = m.send(ProducerRecord::new("t", "x").partition(9)).await;
        assert!(matches!(
            e,
            Err(ProduceError::InvalidPartition { partition: 9, .. })
        ));
        assert_eq!(m.history().len(), 2);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn manual_completion_callbacks_and_close() {
        let m = MockProducer::new(false);
        let (tx, rx) = std::sync::mpsc::channel();
        m.send_with_callback(ProducerRecord::new("t", "a"), move |r| {
            tx.send(r.map(|md| md.offset)).unwrap();
        })
        .await
        .unwrap();
        let second = m.send(ProducerRecord::new("t", "b")).await.unwrap();
        let third = m.send(ProducerRecord::new("t", "c")).await.unwrap();
        assert_eq!(m.pending(), 3);
        assert!(m.complete_next());
        assert_eq!(rx.recv().unwrap(), Ok(0));
        assert!(m.error_next(ErrorCode::MessageTooLarge.into()));
        assert!(matches!(
            second.await,
            Err(ProduceError::Broker { code, .. }) if code.named() == ErrorCode::MessageTooLarge
        ));
        m.close(std::time::Duration::ZERO).await;
        assert!(matches!(third.await, Err(ProduceError::Closed(_))));
        assert!(m.send(ProducerRecord::new("t", "d")).await.is_err());
        assert!(!m.complete_next());
        m.fail_sends(Some(ProduceError::closed("x")));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn purge_fails_what_is_pending_and_later_sends_go_on() {
        let m = MockProducer::new(false);
        let a = m.send(ProducerRecord::new("t", "a")).await.unwrap();
        let b = m.send(ProducerRecord::new("t", "b")).await.unwrap();
        m.purge(crate::Purge::Queued).await;
        for f in [a, b] {
            assert_eq!(
                f.await.err(),
                Some(ProduceError::Purged {
                    possibly_written: false
                })
            );
        }
        let c = m.send(ProducerRecord::new("t", "c")).await.unwrap();
        m.purge(crate::Purge::QueuedAndInFlight).await;
        assert_eq!(
            c.await.err(),
            Some(ProduceError::Purged {
                possibly_written: true
            })
        );
        let d = m.send(ProducerRecord::new("t", "d")).await.unwrap();
        assert!(m.complete_next());
        assert!(d.await.is_ok());
        assert_eq!(m.history().len(), 4);
    }
}

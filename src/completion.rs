//! Per-record delivery results without an allocation per record.
//!
//! A [`DeliveryFuture`] and the [`Completer`] its record carries share one slot of a
//! [`Block`] of `SLOTS` slots: each thread fills its own current block (a thread-local), so a
//! block is allocated once per `SLOTS` sends instead of one channel per record, and it is freed
//! when the last future and completer of its records are gone. A slot is a small mutex around
//! the waker or the result: the completer writes the result once and wakes the future.

use crate::batch::DeliveryResult;
use crate::error::ProduceError;
use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

/// Records per block.
const SLOTS: usize = 32;

enum Slot {
    /// No result yet; the waker of the last poll.
    Waiting(Option<Waker>),
    Done(DeliveryResult),
    /// The future took the result.
    Taken,
}

/// `SLOTS` records' results.
pub(crate) struct Block {
    slots: [Mutex<Slot>; SLOTS],
}

impl Block {
    fn slot(&self, i: u8) -> Option<MutexGuard<'_, Slot>> {
        let m = self.slots.get(i as usize)?;
        // A poisoned slot (a panic while it was held: no code here panics) still holds a
        // consistent value.
        Some(m.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

thread_local! {
    /// This thread's block and its next free slot.
    static CURRENT: RefCell<Option<(Arc<Block>, u8)>> = const { RefCell::new(None) };
}

/// A new future and the completer that resolves it.
pub(crate) fn pair() -> (Completer, DeliveryFuture) {
    let new_block = || {
        Arc::new(Block {
            slots: std::array::from_fn(|_| Mutex::new(Slot::Waiting(None))),
        })
    };
    // `try_with`: in a thread-local destructor the current block is gone; use a block of its
    // own.
    let (block, i) = CURRENT
        .try_with(|c| {
            let mut c = c.borrow_mut();
            let (block, next) = match c.take() {
                Some((b, n)) if (n as usize) < SLOTS => (b, n),
                _ => (new_block(), 0),
            };
            *c = Some((block.clone(), next + 1));
            (block, next)
        })
        .unwrap_or_else(|_| (new_block(), 0));
    (
        Completer {
            block: Some(block.clone()),
            slot: i,
        },
        DeliveryFuture { block, slot: i },
    )
}

/// Resolves one [`DeliveryFuture`]. Dropped without [`complete`](Self::complete), it resolves
/// the future with [`ProduceError::Closed`]: a record is never left without an outcome.
pub(crate) struct Completer {
    block: Option<Arc<Block>>,
    slot: u8,
}

impl Completer {
    pub(crate) fn complete(mut self, result: DeliveryResult) {
        self.finish(result);
    }

    fn finish(&mut self, result: DeliveryResult) {
        let Some(block) = self.block.take() else {
            return;
        };
        let waker = match block.slot(self.slot) {
            Some(mut s) => match std::mem::replace(&mut *s, Slot::Done(result)) {
                Slot::Waiting(w) => w,
                // Written once only: a second result would be a bug; keep the first.
                other => {
                    *s = other;
                    None
                }
            },
            None => None,
        };
        if let Some(w) = waker {
            w.wake();
        }
    }
}

impl Drop for Completer {
    fn drop(&mut self) {
        if self.block.is_some() {
            self.finish(Err(ProduceError::closed("delivery dropped")));
        }
    }
}

/// Resolves to the record's [`RecordMetadata`](crate::RecordMetadata) once the broker
/// acknowledged it, or its error.
///
/// Dropping it does not cancel the record. Polling it after it returned a result returns
/// [`ProduceError::Closed`].
pub struct DeliveryFuture {
    block: Arc<Block>,
    slot: u8,
}

impl DeliveryFuture {
    /// The result if it is there, without a waker: `None` while the record is in flight.
    /// After it returned `Some`, the future is done (polling it again is an error).
    pub fn try_result(&mut self) -> Option<DeliveryResult> {
        let mut s = self.block.slot(self.slot)?;
        match std::mem::replace(&mut *s, Slot::Taken) {
            Slot::Done(r) => Some(r),
            Slot::Taken => Some(Err(ProduceError::closed("delivery result already taken"))),
            waiting @ Slot::Waiting(_) => {
                *s = waiting;
                None
            }
        }
    }
}

impl std::fmt::Debug for DeliveryFuture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeliveryFuture").finish_non_exhaustive()
    }
}

impl Future for DeliveryFuture {
    type Output = DeliveryResult;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<DeliveryResult> {
        let Some(mut s) = self.block.slot(self.slot) else {
            return Poll::Ready(Err(ProduceError::closed("delivery slot out of range")));
        };
        match &mut *s {
            Slot::Waiting(w) => {
                match w {
                    Some(w) if w.will_wake(cx.waker()) => {}
                    _ => *w = Some(cx.waker().clone()),
                }
                Poll::Pending
            }
            Slot::Done(_) => match std::mem::replace(&mut *s, Slot::Taken) {
                Slot::Done(r) => Poll::Ready(r),
                _ => Poll::Ready(Err(ProduceError::closed("delivery result already taken"))),
            },
            Slot::Taken => Poll::Ready(Err(ProduceError::closed("delivery result already taken"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::RecordMetadata;

    fn meta(offset: i64) -> DeliveryResult {
        Ok(RecordMetadata {
            topic: "t".into(),
            partition: 0,
            offset,
            timestamp: 0,
            serialized_key_size: -1,
            serialized_value_size: -1,
        })
    }

    #[tokio::test]
    async fn each_future_gets_its_own_result_across_blocks_and_threads() {
        let n = SLOTS * 3 + 5;
        let (completers, futures): (Vec<_>, Vec<_>) = (0..n).map(|_| pair()).unzip();
        let t = std::thread::spawn(move || {
            for (i, c) in completers.into_iter().enumerate().rev() {
                c.complete(meta(i as i64));
            }
        });
        for (i, f) in futures.into_iter().enumerate() {
            assert_eq!(f.await.unwrap().offset, i as i64);
        }
        t.join().unwrap();
    }

    #[tokio::test]
    async fn a_dropped_completer_resolves_closed_and_try_result_does_not_wait() {
        let (c, mut f) = pair();
        assert!(f.try_result().is_none());
        let waiter = tokio::spawn(f);
        tokio::task::yield_now().await;
        drop(c);
        let r = tokio::time::timeout(std::time::Duration::from_secs(1), waiter)
            .await
            .unwrap()
            .unwrap();
        assert!(matches!(r, Err(ProduceError::Closed(_))), "{r:?}");
        let (c, mut f) = pair();
        c.complete(meta(7));
        assert_eq!(f.try_result().unwrap().unwrap().offset, 7);
        assert!(f.try_result().unwrap().is_err(), "taken once");
    }
}

//! `SlotGate`: the counted bound on a partition accumulator's mailbox (`mailbox.capacity`).
//!
//! actix's own mailbox bound only parks the sending address (and `Addr::send` pushes past a
//! full mailbox by cloning its sender), so the producer counts mailbox slots itself: a record (or
//! a chunk of records) takes slots before its message is sent, and the message carries a
//! [`SlotPermit`] that gives them back when the accumulator has appended it. The fast path is
//! one atomic add; only a sender that finds the mailbox full parks, on a `Notify`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::Notify;

/// Counted mailbox slots of one accumulator.
#[derive(Debug)]
pub(crate) struct SlotGate {
    used: AtomicUsize,
    capacity: usize,
    waiters: AtomicUsize,
    notify: Notify,
}

/// Slots held by one message; released on drop.
#[derive(Debug)]
pub(crate) struct SlotPermit {
    gate: Arc<SlotGate>,
    n: usize,
}

impl Drop for SlotPermit {
    fn drop(&mut self) {
        self.gate.release(self.n);
    }
}

impl SlotGate {
    pub(crate) fn new(capacity: usize) -> Arc<Self> {
        Arc::new(SlotGate {
            used: AtomicUsize::new(0),
            capacity: capacity.max(1),
            waiters: AtomicUsize::new(0),
            notify: Notify::new(),
        })
    }

    /// Slots in use (records waiting in the mailbox).
    pub(crate) fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// Takes `n` (≤ capacity) slots if they are free.
    pub(crate) fn try_acquire(self: &Arc<Self>, n: usize) -> Option<SlotPermit> {
        debug_assert!(n <= self.capacity);
        // Compare-and-swap: a failed attempt leaves the count alone and wakes nobody (an
        // add-then-undo would notify the waiters, this caller included, and spin).
        let mut cur = self.used.load(Ordering::Acquire);
        loop {
            if cur + n > self.capacity {
                return None;
            }
            match self
                .used
                .compare_exchange_weak(cur, cur + n, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => {
                    return Some(SlotPermit {
                        gate: self.clone(),
                        n,
                    })
                }
                Err(actual) => cur = actual,
            }
        }
    }

    /// Waits for `n` (≤ capacity) slots.
    pub(crate) async fn acquire(self: &Arc<Self>, n: usize) -> SlotPermit {
        loop {
            if let Some(p) = self.try_acquire(n) {
                return p;
            }
            self.waiters.fetch_add(1, Ordering::AcqRel);
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(p) = self.try_acquire(n) {
                self.waiters.fetch_sub(1, Ordering::AcqRel);
                return p;
            }
            notified.await;
            self.waiters.fetch_sub(1, Ordering::AcqRel);
        }
    }

    fn release(&self, n: usize) {
        self.used.fetch_sub(n, Ordering::AcqRel);
        if self.waiters.load(Ordering::Acquire) > 0 {
            self.notify.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::time::Duration;

    #[tokio::test]
    async fn bounded_and_wakes_waiters() {
        let gate = SlotGate::new(3);
        let a = gate.try_acquire(2).unwrap();
        assert!(gate.try_acquire(2).is_none(), "2 + 2 > 3");
        let b = gate.try_acquire(1).unwrap();
        assert_eq!(gate.used(), 3);
        let g = gate.clone();
        let waiter = tokio::spawn(async move { g.acquire(2).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished(), "waits while full");
        drop(a);
        let c = tokio::time::timeout(Duration::from_secs(1), waiter)
            .await
            .expect("woken")
            .unwrap();
        assert_eq!(gate.used(), 3);
        drop((b, c));
        assert_eq!(gate.used(), 0);
    }

    #[tokio::test]
    async fn a_waiter_sleeps_while_full() {
        // A waiter on a full gate must park, not spin: it is polled a handful of times, not
        // thousands, while the gate stays full.
        let gate = SlotGate::new(1);
        let held = gate.try_acquire(1).unwrap();
        let polls = Arc::new(AtomicUsize::new(0));
        let (g, p) = (gate.clone(), polls.clone());
        let waiter = tokio::spawn(async move {
            let acquire = g.acquire(1);
            tokio::pin!(acquire);
            std::future::poll_fn(|cx| {
                p.fetch_add(1, Ordering::Relaxed);
                acquire.as_mut().poll(cx)
            })
            .await
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            polls.load(Ordering::Relaxed) <= 3,
            "polled {} times",
            polls.load(Ordering::Relaxed)
        );
        drop(held);
        tokio::time::timeout(Duration::from_secs(1), waiter)
            .await
            .unwrap()
            .unwrap();
    }
}

//! The accumulator side of the simulation: in a share of the plain seeds (drawn from a
//! generator of their own, so the other seeds keep every choice), records do not arrive as
//! ready-made batches but are sent one by one, as `send` sends them, into each partition's
//! real [`RecordMailbox`] (bounded by `mailbox.capacity`) and appended by the partition's
//! [`AccumulatorCore`], driven as the `PartitionAccumulator` shell drives it: `Drain` when a
//! push asks for one, linger timers, `flush` (a `FlushBatch` to every accumulator, then the
//! wait), batch slots (`max.pending.batches.per.partition`) awaited and handed back when
//! batches complete. A send that finds its mailbox full waits in order for a slot, and fails
//! after `max.block.ms` (as `send` does; the record was never enqueued, so it has no outcome to
//! wait for).
//!
//! Invariants, after every step:
//! - memory: per partition, the closed batches not completed are at most
//!   `max.pending.batches.per.partition` + 3, the records held at most `mailbox.capacity` plus
//!   what those batches and the open one can hold, and the sender holds at most
//!   `max.pending.batches.per.partition` of its batches (the slot holders);
//! - back-pressure never deadlocks: at the end of a seed every accumulator holds nothing
//!   (every sent record has its outcome, by the plain invariants), and no send waits.

use super::*;
use crate::batch::AppendRecord;
use crate::core::accumulator::{AccumulatorCore, Action as AccAction};
use crate::mailbox::{Pushed, RecordMailbox};

/// What the accumulator model did over a run of seeds (printed by `simulation`).
pub(super) static ACC_SEEDS: AtomicU64 = AtomicU64::new(0);
pub(super) static SENDS_BLOCKED: AtomicU64 = AtomicU64::new(0);
pub(super) static SENDS_TIMED_OUT: AtomicU64 = AtomicU64::new(0);
pub(super) static SLOT_WAITS: AtomicU64 = AtomicU64::new(0);
pub(super) static LINGER_CLOSES: AtomicU64 = AtomicU64::new(0);

/// What an accumulator seed chose.
#[derive(Debug, Clone)]
pub(super) struct AccParams {
    pub(super) batch_size: usize,
    pub(super) linger_ms: u64,
    pub(super) mailbox_capacity: usize,
}

impl AccParams {
    /// Whether seed `seed` runs the accumulators, and with what.
    pub(super) fn for_seed(seed: u64) -> Option<AccParams> {
        let mut rng = fastrand::Rng::with_seed(seed ^ 0x0acc_0001);
        if rng.bool() {
            return None;
        }
        Some(AccParams {
            batch_size: rng.usize(80..=600),
            linger_ms: if rng.u8(..3) == 0 { 0 } else { rng.u64(1..=40) },
            mailbox_capacity: rng.usize(1..=20),
        })
    }
}

/// The accumulators as their shells hold them, and the sends waiting for a mailbox slot.
pub(super) struct AccSim {
    pub(super) p: AccParams,
    cores: Vec<AccumulatorCore>,
    /// The shell awaits a batch slot for partition `i` ([`AccAction::WaitSlot`]).
    slot_wait: Vec<bool>,
    /// Sends waiting for a mailbox slot, in the order they came: (partition, since ms).
    blocked: VecDeque<(usize, u64)>,
}

impl AccSim {
    pub(super) fn new(
        p: AccParams,
        partitions: usize,
        config: &Arc<ProducerConfig>,
        shared: &Arc<Shared>,
        now: Instant,
    ) -> AccSim {
        ACC_SEEDS.fetch_add(1, Ordering::Relaxed);
        let cores = (0..partitions)
            .map(|i| {
                AccumulatorCore::new(
                    TopicPartition::new(TOPIC, i as i32),
                    config.clone(),
                    shared.clone(),
                    Arc::new(RecordMailbox::new(p.mailbox_capacity)),
                    now,
                )
            })
            .collect();
        AccSim {
            p,
            cores,
            slot_wait: vec![false; partitions],
            blocked: VecDeque::new(),
        }
    }

    /// The producer stopped: the sends still waiting fail (nothing was enqueued).
    pub(super) fn stop(&mut self) {
        self.blocked.clear();
    }

    /// Something is still held or waiting (the run goes on).
    pub(super) fn busy(&self) -> bool {
        !self.blocked.is_empty()
            || self
                .cores
                .iter()
                .any(|c| c.holdings() != (0, 0) || c.open_since().is_some())
    }
}

impl Sim {
    /// `send` of 1..=5 records to `partition` (else one drawn at random), one by one. `false`
    /// if the first found the mailbox full and nothing was sent (a probe tries again later);
    /// otherwise records that find it full wait for a slot (see [`AccSim`]).
    pub(super) fn acc_send(&mut self, partition: Option<usize>, probe: bool) -> bool {
        let partition = partition.unwrap_or_else(|| self.rng.usize(..self.p.partitions));
        let n = self.rng.usize(1..=5);
        self.batches_made += 1;
        for i in 0..n {
            let waiting = self
                .acc
                .as_ref()
                .is_some_and(|a| a.blocked.iter().any(|(p, _)| *p == partition));
            let reserved = !waiting
                && self
                    .acc
                    .as_ref()
                    .is_some_and(|a| a.cores[partition].mailbox().try_reserve(1));
            if reserved {
                self.acc_commit(partition);
            } else if i == 0 && probe {
                return false;
            } else if let Some(a) = self.acc.as_mut() {
                SENDS_BLOCKED.fetch_add(1, Ordering::Relaxed);
                a.blocked.push_back((partition, self.now_ms));
            }
        }
        true
    }

    /// A record whose mailbox slot is reserved: counted as pending, stamped and pushed (as
    /// `Producer::commit`); a push that asks for a drain sends the accumulator a `Drain`.
    fn acc_commit(&mut self, partition: usize) -> usize {
        let pending_slot = self.shared.pending.add(1);
        let rid = {
            let mut book = lock(&self.book);
            // One entry per record in `open_in_batch` (its batch is not known yet).
            let batch = book.open_in_batch.len();
            book.open_in_batch.push(1);
            book.add_record(partition, batch, self.now_ms)
        };
        let value = self.record_value(rid);
        let record = AppendRecord {
            timestamp: self.now_ms as i64,
            key: None,
            value: Some(Bytes::from(value)),
            headers: Vec::new(),
            delivery: self.record_delivery(rid),
            enqueued: self.now(),
            pending_slot,
        };
        let Some(a) = self.acc.as_mut() else {
            return rid as usize;
        };
        match a.cores[partition].mailbox().push(std::iter::once(record)) {
            Ok(Pushed::Wake) => {
                let at = self.now_ms;
                self.at(at, Ev::AccDrain(partition));
            }
            Ok(Pushed::Queued) => {}
            Err(back) => {
                // The accumulator stopped (it never does in the simulation): never lost.
                for r in back {
                    self.shared.fail_one(
                        r.delivery,
                        r.pending_slot,
                        ProduceError::closed("stopped"),
                    );
                }
            }
        }
        rid as usize
    }

    /// Runs one accumulator step and carries out its actions, as the shell does.
    pub(super) fn acc_step(
        &mut self,
        partition: usize,
        f: impl FnOnce(&mut AccumulatorCore, Instant, &mut Vec<AccAction>),
    ) {
        let now = self.now();
        let mut out = Vec::new();
        let Some(a) = self.acc.as_mut() else {
            return;
        };
        let Some(core) = a.cores.get_mut(partition) else {
            return;
        };
        f(core, now, &mut out);
        for action in out {
            if self.trace {
                eprintln!("         accumulator {partition}: {action:?}");
            }
            match action {
                AccAction::Ready(batch) => {
                    // `BatchReady`: the sender enqueues it and drains.
                    self.core.enqueue(batch);
                    let at = self.now_ms;
                    self.at(at, Ev::Wake);
                }
                AccAction::ArmLinger(due) => {
                    // Rounded up to the next virtual millisecond.
                    let ms = due.as_nanos().div_ceil(1_000_000) as u64;
                    let at = self.now_ms + ms;
                    self.at(at, Ev::Linger(partition));
                }
                AccAction::WaitSlot => {
                    SLOT_WAITS.fetch_add(1, Ordering::Relaxed);
                    if let Some(a) = self.acc.as_mut() {
                        a.slot_wait[partition] = true;
                    }
                }
                AccAction::Drain => {
                    let at = self.now_ms;
                    self.at(at, Ev::AccDrain(partition));
                }
                AccAction::Fail(refused) => refused.carry_out(&self.shared),
                AccAction::FailBatch(batch, err) => batch.fail(err),
                AccAction::Count(count) => self.shared.metrics.apply(count),
            }
        }
    }

    /// The linger timer of `partition` fired.
    pub(super) fn acc_linger(&mut self, partition: usize) {
        let before = self.batches_closed(partition);
        self.acc_step(partition, |c, now, out| c.linger_fired(now, out));
        if self.batches_closed(partition) > before {
            LINGER_CLOSES.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn batches_closed(&self, partition: usize) -> usize {
        self.acc
            .as_ref()
            .map_or(0, |a| a.cores[partition].holdings().1)
    }

    /// `flush`: a `FlushBatch` to every accumulator.
    pub(super) fn acc_flush(&mut self) {
        if self.acc.is_none() {
            return;
        }
        for partition in 0..self.p.partitions {
            let at = self.now_ms;
            self.at(at, Ev::AccFlush(partition));
        }
    }

    /// After every step: batch slots freed by completions reach the accumulators that await
    /// one, waiting sends take the mailbox slots freed (or give up after `max.block.ms`), and
    /// the memory invariant is checked.
    pub(super) fn acc_poll(&mut self) {
        let Some(a) = self.acc.as_mut() else {
            return;
        };
        let mut arrived = Vec::new();
        for (i, waiting) in a.slot_wait.iter_mut().enumerate() {
            if *waiting {
                if let Ok(permit) = a.cores[i].slots().clone().try_acquire_owned() {
                    *waiting = false;
                    arrived.push((i, permit));
                }
            }
        }
        for (i, permit) in arrived {
            self.acc_step(i, move |c, now, out| c.slot_arrived(Some(permit), now, out));
        }
        // Waiting sends, oldest first; one that cannot get in keeps the later ones to its
        // partition behind it.
        let max_block = self.p.max_block_ms;
        let mut stuck = std::collections::HashSet::new();
        let mut i = 0;
        loop {
            let Some(a) = self.acc.as_mut() else {
                return;
            };
            let Some(&(partition, since)) = a.blocked.get(i) else {
                break;
            };
            if stuck.contains(&partition) {
                i += 1;
            } else if a.cores[partition].mailbox().try_reserve(1) {
                a.blocked.remove(i);
                let rid = self.acc_commit(partition);
                if self.quiet.is_some_and(|q| q != usize::MAX) {
                    // Sent in the faulty phase (it waited for room since): not a probe, and
                    // behind that phase's backlog (see `Sim::probes_behind`).
                    self.probes_behind.insert(rid);
                }
            } else if self.now_ms >= since + max_block {
                // `send` fails (`max.block.ms`); nothing was enqueued.
                a.blocked.remove(i);
                SENDS_TIMED_OUT.fetch_add(1, Ordering::Relaxed);
            } else {
                stuck.insert(partition);
                i += 1;
            }
        }
        self.acc_check_memory();
    }

    /// The memory invariant (see the module docs).
    fn acc_check_memory(&self) {
        let Some(a) = self.acc.as_ref() else {
            return;
        };
        let pending = self.p.max_pending_batches;
        // A batch holds at most batch.size bytes (or one record), a record at least 9 here.
        let per_batch = a.p.batch_size / 9 + 1;
        for (i, c) in a.cores.iter().enumerate() {
            let (records, batches) = c.holdings();
            let bound = a.p.mailbox_capacity + (pending + 4) * per_batch;
            if batches > pending + 3 || records > bound {
                self.violation(format!(
                    "partition {i} holds {records} records (bound {bound}) and {batches} closed \
                     batches (bound {})",
                    pending + 3
                ));
            }
        }
    }

    /// At the end of a seed: nothing held, nothing waiting.
    pub(super) fn acc_finish(&self, v: &mut Vec<String>) {
        let Some(a) = self.acc.as_ref() else {
            return;
        };
        if !a.blocked.is_empty() {
            v.push(format!(
                "{} sends still wait for a mailbox slot",
                a.blocked.len()
            ));
        }
        for (i, c) in a.cores.iter().enumerate() {
            if c.holdings() != (0, 0) || c.open_since().is_some() {
                v.push(format!(
                    "accumulator {i} still holds {:?} (records, batches) at the end",
                    c.holdings()
                ));
            }
        }
    }
}

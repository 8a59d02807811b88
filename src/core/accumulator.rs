//! One partition's open batch, without actix or a clock: [`AccumulatorCore`].
//!
//! It appends records to the open [`RecordBatchBuilder`] and closes the batch when the next
//! record would not fit in `batch.size` (divided by the estimated compression ratio when
//! compressing), when the batch fills, when its `linger.ms` timer fires, or on flush. Closing
//! builds the batch (compression; the CRC-32C too unless idempotence writes it at drain time)
//! and numbers it (its place in the partition). The
//! [`crate::actors::accumulator::PartitionAccumulator`] actor arms the linger timers, holds the
//! batch slots (back-pressure) and hands closed batches to the sender.

use crate::batch::{AppendRecord, DROPPED_UNDELIVERED};
use crate::batch::{ProducerBatch, RecordThunk, Shared};
use crate::config::ProducerConfig;
use crate::error::ProduceError;
use crate::protocol::record_batch::{CompressionRatioEstimator, RecordBatchBuilder};
use crate::record::TopicPartition;
use std::sync::Arc;
use std::time::Instant;

struct OpenBatch {
    builder: RecordBatchBuilder,
    thunks: Vec<RecordThunk>,
    created: Instant,
}

/// What one append did.
#[derive(Default)]
pub(crate) struct Appended {
    /// Batches it closed, oldest first: the open one the record did not fit in, then the one
    /// it filled.
    pub(crate) closed: [Option<ProducerBatch>; 2],
    /// It opened a batch, which will close as this number: arm its `linger.ms` timer.
    pub(crate) opened: Option<u64>,
}

/// What an idle check decided (see [`AccumulatorCore::idle_check`]).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Idle {
    /// Idle long enough: retire (release the partition's accumulator and mailbox).
    Retire,
    /// Check again at this instant.
    CheckAt(Instant),
}

/// See the module docs.
/// Records the core refused, for the shell to fail ([`AccumulatorCore::take_refused`]): their
/// callbacks are user code and never run inside the core.
pub(crate) enum Refused {
    /// A record refused before it joined a batch (the accumulator was aborted), with its
    /// pending-record slot.
    Record(crate::batch::Delivery, u8, ProduceError),
    /// The records of a batch that could not be built, or that was open when the actor ended.
    Records(Vec<RecordThunk>, ProduceError),
}

impl Refused {
    /// Fails the records: for the shell to call once the core call has returned (their
    /// callbacks run here).
    pub(crate) fn carry_out(self, shared: &Shared) {
        match self {
            Refused::Record(delivery, slot, err) => {
                shared.deliver(delivery, Err(err));
                shared.finished_one(slot, false);
            }
            Refused::Records(thunks, err) => shared.fail_thunks(thunks, &err),
        }
    }
}

pub(crate) struct AccumulatorCore {
    tp: TopicPartition,
    config: Arc<ProducerConfig>,
    shared: Arc<Shared>,
    /// Refused records not yet failed by the shell (see [`Refused`]).
    refused: Vec<Refused>,
    open: Option<OpenBatch>,
    aborted: Option<ProduceError>,
    /// Compressed/uncompressed ratio seen so far: keeps compressed batches near `batch.size`.
    ratio: CompressionRatioEstimator,
    /// Uncompressed bytes the open batch may hold (`batch.size` / estimated ratio).
    limit: usize,
    /// Number of the next closed batch.
    next_number: u64,
    /// When the accumulator started or last appended a record (the latest record's send
    /// time): the idle clock.
    last_active: Instant,
    /// Bytes the last closed batch held: a new batch's buffer starts at that size (rounded up
    /// to a power of two, at least `MIN_BATCH_BUFFER`), not at `batch.size`, so thousands of
    /// partitions with a record or two per batch do not each hold `batch.size` bytes per
    /// batch (the buffer grows by doubling when records need more).
    last_batch_bytes: usize,
    /// Records the last closed batch held: a new batch's completion list starts with room
    /// for that many (at least 4), likewise.
    last_batch_records: usize,
}

/// The smallest buffer a new batch starts with (bytes).
const MIN_BATCH_BUFFER: usize = 512;

impl AccumulatorCore {
    pub(crate) fn new(
        tp: TopicPartition,
        config: Arc<ProducerConfig>,
        shared: Arc<Shared>,
        now: Instant,
    ) -> Self {
        AccumulatorCore {
            refused: Vec::new(),
            last_active: now,
            ratio: CompressionRatioEstimator::new(config.compression),
            limit: config.batch_size,
            tp,
            config,
            shared,
            open: None,
            aborted: None,
            next_number: 0,
            last_batch_bytes: 0,
            last_batch_records: 0,
        }
    }

    fn new_batch(&mut self, created: Instant) -> u64 {
        self.limit = self
            .ratio
            .uncompressed_limit(self.config.batch_size)
            .min(self.config.max_request_size);
        let start = self
            .last_batch_bytes
            .max(MIN_BATCH_BUFFER)
            .checked_next_power_of_two()
            .unwrap_or(usize::MAX)
            .min(self.limit);
        self.open = Some(OpenBatch {
            builder: RecordBatchBuilder::with_levels(
                start,
                self.config.compression,
                self.config.compression_levels(),
            ),
            thunks: Vec::with_capacity(self.last_batch_records.clamp(4, 4096)),
            created,
        });
        self.next_number
    }

    /// Bytes and completion slots allocated for the open batch, if one is open.
    #[cfg(test)]
    fn open_allocation(&self) -> Option<(usize, usize)> {
        self.open
            .as_ref()
            .map(|o| (o.builder.capacity(), o.thunks.capacity()))
    }

    /// The partition.
    pub(crate) fn topic_partition(&self) -> &TopicPartition {
        &self.tp
    }

    /// What every completion needs (for records failed outside a batch).
    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Bytes the open batch can still take (uncompressed), if one is open.
    pub(crate) fn open_room(&self) -> Option<usize> {
        let open = self.open.as_ref()?;
        Some(self.limit.saturating_sub(open.builder.size_in_bytes()))
    }

    /// When the open batch's first record was sent, if one is open.
    pub(crate) fn open_since(&self) -> Option<Instant> {
        self.open.as_ref().map(|o| o.created)
    }

    /// Appends to the open batch within the current limit; `false` if it would not fit.
    fn try_append_open(&mut self, r: &AppendRecord) -> bool {
        let limit = self.limit;
        self.open.as_mut().is_some_and(|open| {
            open.builder.try_append(
                r.timestamp,
                r.key.as_deref(),
                r.value.as_deref(),
                &r.headers,
                limit,
            )
        })
    }

    /// Whether the partition's accumulator may retire at `now` (issue 19's defect 9: a
    /// partition nothing is sent to any more costs nothing): no open batch, nothing `held` by
    /// the shell (records in its mailbox or backlog, closed batches waiting or not completed),
    /// and no record appended for `metadata.max.idle.ms` (Java drops an idle topic's metadata
    /// after it) and `delivery.timeout.ms` (so every batch it closed has its outcome: a new
    /// accumulator numbers batches from 0 again, and none of the old ones can be left).
    pub(crate) fn idle_check(&self, now: Instant, held: bool) -> Idle {
        let idle = self
            .config
            .metadata_max_idle
            .max(self.config.delivery_timeout);
        if held || self.open.is_some() {
            return Idle::CheckAt(crate::time::deadline_after(now, idle));
        }
        let at = crate::time::deadline_after(self.last_active, idle);
        if at <= now {
            Idle::Retire
        } else {
            Idle::CheckAt(at)
        }
    }

    /// Appends one record (its `delivery.timeout.ms` clock is `record.enqueued`).
    pub(crate) fn append(&mut self, record: AppendRecord) -> Appended {
        let mut done = Appended::default();
        self.last_active = self.last_active.max(record.enqueued);
        if let Some(err) = &self.aborted {
            self.refused.push(Refused::Record(
                record.delivery,
                record.pending_slot,
                err.clone(),
            ));
            return done;
        }
        if self.open.is_none() {
            done.opened = Some(self.new_batch(record.enqueued));
        }
        if !self.try_append_open(&record) {
            done.closed[0] = self.close();
            done.opened = Some(self.new_batch(record.enqueued));
            let ok = self.try_append_open(&record);
            debug_assert!(ok, "an empty batch accepts any record");
        }
        let AppendRecord {
            timestamp,
            key,
            value,
            delivery,
            pending_slot,
            ..
        } = record;
        let Some(open) = self.open.as_mut() else {
            // Unreachable: a batch was opened above. Never lose the record all the same.
            self.refused.push(Refused::Record(
                delivery,
                pending_slot,
                ProduceError::closed("accumulator has no open batch"),
            ));
            return done;
        };
        open.thunks.push(RecordThunk {
            delivery,
            timestamp,
            key_size: key.as_ref().map_or(-1, |k| k.len() as i32),
            value_size: value.as_ref().map_or(-1, |v| v.len() as i32),
            pending_slot,
        });
        if open.builder.size_in_bytes() >= self.limit {
            done.closed[1] = self.close();
        }
        done
    }

    /// The linger timer of batch `number` fired: closes it if it is still the open one.
    #[cfg(test)]
    pub(crate) fn linger_expired(&mut self, number: u64) -> Option<ProducerBatch> {
        (self.next_number == number && self.open.is_some())
            .then(|| self.close())
            .flatten()
    }

    /// Closes the open batch (flush, linger, full). A batch that cannot be built fails its
    /// records (`ProduceError::Batch`).
    pub(crate) fn close(&mut self) -> Option<ProducerBatch> {
        let open = self.open.take()?;
        let uncompressed = open.builder.size_in_bytes() as u64;
        self.last_batch_bytes = open.builder.size_in_bytes();
        self.last_batch_records = open.thunks.len();
        // With idempotence the sender writes producer id, epoch and sequence at drain time and
        // computes the CRC then: once per batch, not twice.
        let built = if self.config.enable_idempotence {
            open.builder.build_unsealed()
        } else {
            open.builder.build(-1, -1, -1)
        };
        let records = match built {
            Ok(r) => r,
            Err(e) => {
                self.refused
                    .push(Refused::Records(open.thunks, ProduceError::Batch(e)));
                return None;
            }
        };
        if uncompressed > 0 {
            self.ratio.observe(uncompressed as usize, records.len());
            let ppm = records.len() as u64 * 1_000_000 / uncompressed;
            self.shared.metrics.compression_ppm.record(ppm);
        }
        self.next_number += 1;
        Some(ProducerBatch::new(
            self.tp.clone(),
            records,
            open.thunks,
            open.created,
            self.next_number - 1,
            self.shared.clone(),
        ))
    }

    /// Fails the open batch and every later record with `err`.
    pub(crate) fn abort(&mut self, err: ProduceError) {
        if let Some(open) = self.open.take() {
            self.refused
                .push(Refused::Records(open.thunks, err.clone()));
        }
        self.aborted = Some(err);
    }

    /// The actor stops: the open batch's records fail (`Closed`), never silently.
    pub(crate) fn stopped(&mut self) {
        if let Some(open) = self.open.take() {
            self.refused.push(Refused::Records(
                open.thunks,
                ProduceError::closed(DROPPED_UNDELIVERED),
            ));
        }
    }

    /// The records refused since the last call, for the shell to fail now, in order.
    pub(crate) fn take_refused(&mut self) -> Vec<Refused> {
        std::mem::take(&mut self.refused)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::Delivery;
    use std::sync::Mutex;

    fn core(props: &[(&str, &str)]) -> AccumulatorCore {
        let mut b = ProducerConfig::builder().bootstrap_servers(["b:9092"]);
        for (k, v) in props {
            b = b.set(k, v).unwrap_or_else(|e| panic!("{e}"));
        }
        let config = Arc::new(b.build().unwrap_or_else(|e| panic!("{e}")));
        AccumulatorCore::new(
            TopicPartition::new("t", 0),
            config,
            Arc::new(Shared::default()),
            Instant::now(),
        )
    }

    fn record(value: &[u8], log: &Arc<Mutex<Vec<String>>>) -> AppendRecord {
        let log = log.clone();
        AppendRecord {
            timestamp: 1,
            key: None,
            value: Some(bytes::Bytes::copy_from_slice(value)),
            headers: Vec::new(),
            delivery: Delivery::Callback(crate::batch::inline_callback(move |r| {
                log.lock().unwrap().push(format!("{:?}", r.err()));
            })),
            enqueued: Instant::now(),
            pending_slot: 0,
        }
    }

    #[test]
    fn batches_close_when_full_numbered_in_order_and_linger_closes_only_its_own_batch() {
        let mut c = core(&[("batch.size", "200"), ("enable.idempotence", "false")]);
        let log = Arc::new(Mutex::new(Vec::new()));
        let first = c.append(record(&[1; 50], &log));
        assert_eq!(first.opened, Some(0));
        assert!(first.closed.iter().all(Option::is_none));
        let mut closed = Vec::new();
        for _ in 0..10 {
            let a = c.append(record(&[2; 50], &log));
            closed.extend(a.closed.into_iter().flatten());
        }
        assert!(!closed.is_empty());
        let numbers: Vec<u64> = closed.iter().map(|b| b.number).collect();
        assert_eq!(numbers, (0..numbers.len() as u64).collect::<Vec<_>>());
        assert!(closed.iter().all(|b| b.size_in_bytes() <= 200 + 61));
        // A stale linger timer (batch 0's) does not close the batch open now.
        assert!(c.linger_expired(0).is_none());
        let open = numbers.len() as u64;
        let last = c.linger_expired(open);
        assert!(last.is_some());
        assert!(c.linger_expired(open).is_none(), "nothing open");
        // Abort: later records fail at once.
        c.append(record(&[3; 10], &log));
        c.abort(ProduceError::closed("test"));
        c.append(record(&[4; 10], &log));
        assert_eq!(
            log.lock().unwrap().len(),
            0,
            "no user code runs in the core"
        );
        let shared = c.shared().clone();
        for r in c.take_refused() {
            r.carry_out(&shared);
        }
        assert_eq!(log.lock().unwrap().len(), 2);
        drop((closed, last));
    }

    /// Retires only with nothing open and nothing held, after both `metadata.max.idle.ms` and
    /// `delivery.timeout.ms` since the last record.
    #[test]
    fn an_idle_accumulator_retires_after_the_idle_time_and_never_with_work_left() {
        let mut c = core(&[
            ("metadata.max.idle.ms", "5000"),
            ("delivery.timeout.ms", "30000"),
            ("linger.ms", "0"),
        ]);
        let log = Arc::new(Mutex::new(Vec::new()));
        let t0 = Instant::now();
        let sec = std::time::Duration::from_secs;
        c.append(record(&[1; 10], &log));
        let last = t0 + sec(1);
        let mut r = record(&[1; 10], &log);
        r.enqueued = last;
        c.append(r);
        // An open batch is never retired, whatever the time.
        assert!(matches!(
            c.idle_check(last + sec(3600), false),
            Idle::CheckAt(_)
        ));
        let batch = c.close();
        assert!(batch.is_some());
        // delivery.timeout.ms (the larger) counts from the last record.
        assert_eq!(
            c.idle_check(last + sec(10), false),
            Idle::CheckAt(last + sec(30))
        );
        assert_eq!(c.idle_check(last + sec(30), false), Idle::Retire);
        // Anything the shell holds (a batch not completed, records queued) keeps it.
        assert!(matches!(
            c.idle_check(last + sec(30), true),
            Idle::CheckAt(_)
        ));
        drop(batch);
    }

    /// A partition with a record or two per batch does not allocate `batch.size` bytes (and
    /// room for 64 completions) for each batch: thousands of such partitions held hundreds of
    /// MiB (benches/scale.sh, 2,000 partitions). A new batch starts at what the last one
    /// needed; a full one still gets `batch.size` at once.
    #[test]
    fn a_batch_allocates_what_the_last_one_needed_not_batch_size() {
        let mut c = core(&[("batch.size", "16384"), ("linger.ms", "5")]);
        let log = Arc::new(Mutex::new(Vec::new()));
        c.append(record(&[1; 100], &log));
        let small = c.close();
        c.append(record(&[1; 100], &log));
        let (bytes, slots) = c.open_allocation().unwrap_or_default();
        assert!(bytes <= 1024, "a one-record batch allocated {bytes} bytes");
        assert!(slots <= 8, "room for {slots} completions");
        // Fill batches: the next one starts at batch.size.
        let mut closed = Vec::new();
        for _ in 0..400 {
            closed.extend(
                c.append(record(&[2; 100], &log))
                    .closed
                    .into_iter()
                    .flatten(),
            );
        }
        assert!(!closed.is_empty());
        let (bytes, _) = c.open_allocation().unwrap_or_default();
        assert!(
            bytes >= 16384,
            "a full partition's batch starts at {bytes} bytes"
        );
        drop((small, closed));
    }
}

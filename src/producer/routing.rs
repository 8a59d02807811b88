//! Where a record goes: the topic's metadata (waited for up to `max.block.ms`), its partition
//! (explicit, else the partitioner), the size check, and the partition's accumulator (started
//! on first use, on an arbiter of its own).

use super::*;

impl Producer {
    /// The partition's accumulator, started if there is none or the one there retired (idle
    /// for `metadata.max.idle.ms`, see [`RecordMailbox::retire_if_unused`]).
    pub(super) fn accumulator(&self, tp: &TopicPartition) -> Arc<AccumulatorSlot> {
        if let Some(slot) = self.inner.accumulators.get(tp) {
            if !slot.mailbox.retired() {
                return slot.clone();
            }
        }
        loop {
            // A retired one is gone (it removes itself; this covers the instant between).
            self.inner
                .accumulators
                .remove_if(tp, |_, s| s.mailbox.retired());
            let slot = self.start_accumulator(tp);
            if !slot.mailbox.retired() {
                return slot;
            }
        }
    }

    pub(super) fn start_accumulator(&self, tp: &TopicPartition) -> Arc<AccumulatorSlot> {
        let inner = &self.inner;
        let directory = Arc::downgrade(&inner.accumulators);
        inner
            .accumulators
            .entry(tp.clone())
            .or_insert_with(|| {
                let i = inner.next_arbiter.fetch_add(1, Ordering::Relaxed);
                let arbiter = &inner.accumulator_arbiters[i % inner.accumulator_arbiters.len()];
                let (tp, config, sender, shared) = (
                    tp.clone(),
                    inner.config.clone(),
                    inner.sender.clone(),
                    inner.shared.clone(),
                );
                let mailbox = Arc::new(RecordMailbox::new(inner.config.mailbox_capacity));
                let queue = mailbox.clone();
                let addr = PartitionAccumulator::start_in_arbiter(arbiter, move |_| {
                    PartitionAccumulator::new(tp, config, sender, shared, queue, directory)
                });
                Arc::new(AccumulatorSlot { addr, mailbox })
            })
            .clone()
    }

    pub(super) async fn topic(
        &self,
        topic: &Arc<str>,
        deadline: Instant,
    ) -> Result<Arc<TopicInfo>, ProduceError> {
        if let Some(t) = self.inner.cluster.topic(topic) {
            return Ok(t);
        }
        self.wait_topic(topic, 0, deadline).await
    }

    /// Asks the metadata manager for `topic` with at least `min_partitions` partitions.
    pub(super) async fn wait_topic(
        &self,
        topic: &Arc<str>,
        min_partitions: i32,
        deadline: Instant,
    ) -> Result<Arc<TopicInfo>, ProduceError> {
        let wait = self.inner.metadata.send(WaitForTopic {
            topic: topic.clone(),
            min_partitions,
        });
        // The manager answers by max.block.ms itself; the outer timeout is a safety net.
        let slack = deadline.saturating_duration_since(Instant::now()) + Duration::from_secs(1);
        match tokio::time::timeout(slack, wait).await {
            Ok(Ok(res)) => res,
            Ok(Err(_)) => Err(ProduceError::closed("metadata manager stopped")),
            Err(_) => Err(ProduceError::MetadataTimeout {
                topic: topic.clone(),
                waited_ms: self.inner.config.max_block.as_millis() as u64,
                reason: "metadata manager did not answer".into(),
            }),
        }
    }

    /// [`Self::route`]; an explicit partition at or above the cached partition count first
    /// waits (up to `max.block.ms` from `start`) for metadata that has it, as Java's
    /// `waitOnMetadata` (partitions may just have been added).
    pub(super) async fn route_waiting(
        &self,
        record: &ProducerRecord,
        info: Arc<TopicInfo>,
        start: Instant,
    ) -> Result<TopicPartition, ProduceError> {
        match record.partition {
            Some(p) if p >= info.partition_count() => {
                let deadline = start + self.inner.config.max_block;
                let info = self
                    .wait_topic(&record.topic, p.saturating_add(1), deadline)
                    .await?;
                self.route(record, &info)
            }
            _ => self.route(record, &info),
        }
    }

    /// Partition and size checks: everything `send` does before taking a mailbox slot.
    pub(super) fn route(
        &self,
        record: &ProducerRecord,
        info: &TopicInfo,
    ) -> Result<TopicPartition, ProduceError> {
        let n = info.partition_count();
        let partition = match record.partition {
            Some(p) if p >= 0 && p < n => p,
            Some(p) => {
                return Err(ProduceError::InvalidPartition {
                    topic: record.topic.clone(),
                    partition: p,
                    partitions: n,
                })
            }
            None => {
                let value_len = record.value.as_ref().map_or(0, |v| v.len());
                let p = self.inner.partitioner.partition_with_metadata(
                    &record.topic,
                    record.key.as_deref(),
                    value_len,
                    info,
                );
                // A (custom) partitioner's answer outside 0..n is the same typed error as an
                // explicit partition out of range, never an index into the tables.
                if p < 0 || p >= n {
                    return Err(ProduceError::InvalidPartition {
                        topic: record.topic.clone(),
                        partition: p,
                        partitions: n,
                    });
                }
                p
            }
        };
        let size = record_size_upper_bound(
            record.key.as_deref(),
            record.value.as_deref(),
            &record.headers,
        ) + RECORD_BATCH_OVERHEAD;
        let limit = self.inner.config.max_request_size;
        if size > limit {
            return Err(ProduceError::RecordTooLarge { size, limit });
        }
        Ok(TopicPartition::new(record.topic.clone(), partition))
    }
}

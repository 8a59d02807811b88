//! The one enqueue path (franz-go's `produce(ctx, r, promise, block)`): interceptors once,
//! admission against `queue.buffering.max.messages`, a slot in the partition's mailbox, and the
//! record handed to its accumulator; [`Block`] says whether it may wait. `send`, `try_send`,
//! `send_with_callback`, `send_returning` and `send_all` all come through here.

use super::*;

impl Producer {
    pub(super) fn append_record(
        record: ProducerRecord,
        delivery: Delivery,
        enqueued: Instant,
        now_ms: impl FnOnce() -> i64,
        pending_slot: u8,
    ) -> AppendRecord {
        AppendRecord {
            pending_slot,
            enqueued,
            timestamp: record.timestamp.unwrap_or_else(now_ms),
            key: record.key,
            value: record.value,
            headers: record.headers,
            delivery,
        }
    }

    /// Queues `n` records (their mailbox slots reserved, counted as pending in
    /// `pending_slot`) in an accumulator's mailbox and wakes it if it is not scheduled yet. A
    /// refused push (the accumulator stopped) gives the records back, slots and pending count
    /// released.
    pub(super) fn enqueue(
        &self,
        tp: &TopicPartition,
        slot: &AccumulatorSlot,
        records: impl IntoIterator<Item = AppendRecord>,
        n: u64,
        pending_slot: u8,
    ) -> Result<(), Vec<AppendRecord>> {
        match slot.mailbox.push(records) {
            Ok(Pushed::Queued) => Ok(()),
            Ok(Pushed::Wake) => {
                match slot.addr.try_send(Drain) {
                    // actix's own capacity (16 until the actor's `started` lifts it) may say
                    // full: the mailbox above is the bound, deliver anyway.
                    Ok(()) => {}
                    Err(actix::dev::SendError::Full(_)) => slot.addr.do_send(Drain),
                    Err(actix::dev::SendError::Closed(_)) => {
                        // The actor is gone without closing its mailbox (its arbiter
                        // stopped): whatever is queued fails now, these records included.
                        tracing::warn!(%tp, "accumulator stopped");
                        let err = Self::stopped(tp);
                        let shared = &self.inner.shared;
                        for r in slot.mailbox.close() {
                            shared.fail_one(r.delivery, r.pending_slot, err.clone());
                        }
                    }
                }
                Ok(())
            }
            Err(back) => {
                tracing::warn!(%tp, "accumulator stopped");
                self.inner.shared.pending.done(pending_slot, n);
                Err(back)
            }
        }
    }

    /// Interceptors' `on_send`, once per record, before anything else (Java's
    /// `KafkaProducer.send`).
    pub(super) fn intercepted(&self, record: ProducerRecord) -> ProducerRecord {
        let interceptors = &self.inner.shared.interceptors;
        if interceptors.is_empty() {
            record
        } else {
            interceptors.on_send(record)
        }
    }

    /// Interceptors see the errors raised before enqueueing too (Java's `onSendError`).
    pub(super) fn refused_before_enqueue(&self, error: &ProduceError) {
        let interceptors = &self.inner.shared.interceptors;
        if !interceptors.is_empty() {
            interceptors.on_acknowledgement(&Err(error.clone()));
        }
    }

    /// The one enqueue path of single records: interceptors, admission, metadata, routing,
    /// back-pressure, as `block` allows. An error before the record is enqueued gives it back
    /// (the record `on_send` returned).
    /// `delivery` is built only once the record is taken or handed to the waiting path (a
    /// `try_send` that fails takes no completion slot).
    pub(super) fn produce_now(
        &self,
        record: ProducerRecord,
        delivery: impl FnOnce() -> Delivery,
        block: Block,
    ) -> Now {
        let record = self.intercepted(record);
        #[cfg(feature = "opentelemetry")]
        let (record, mut span) = self.traced(record);
        #[cfg(feature = "opentelemetry")]
        let delivery = || Delivery::traced(span.take(), delivery());
        let now = self.send_now(record, delivery, block);
        if let Now::Done(Err(e)) = &now {
            #[cfg(feature = "opentelemetry")]
            if let Some(span) = span.take() {
                span.failed(&e.error);
            }
            self.refused_before_enqueue(&e.error);
        }
        now
    }

    /// Feature `opentelemetry`: the record's span (see [`crate::otel`]), its context injected
    /// into the record's headers unless the builder said not to.
    #[cfg(feature = "opentelemetry")]
    pub(super) fn traced(
        &self,
        mut record: ProducerRecord,
    ) -> (ProducerRecord, Option<crate::otel::SendSpan>) {
        let inject = self.inner.options.inject_trace_context;
        let span = crate::otel::SendSpan::start(&mut record, inject);
        (record, Some(span))
    }

    /// [`Self::produce_now`], then what it could not do without waiting (`Block::Wait`).
    #[allow(clippy::result_large_err)]
    pub(super) async fn produce(
        &self,
        record: ProducerRecord,
        delivery: Delivery,
    ) -> Result<(), SendError> {
        match self.produce_now(record, || delivery, Block::Wait) {
            Now::Done(res) => res,
            Now::Wait(record, delivery, routed) => {
                let res = self.send_waiting(record, delivery, routed).await;
                if let Err(e) = &res {
                    self.refused_before_enqueue(&e.error);
                }
                res
            }
        }
    }

    /// Waits for at least one of `n` mailbox slots until `deadline`; returns how many it took.
    /// Waits (until `deadline`) until `n` more records fit under
    /// `queue.buffering.max.messages`.
    pub(super) async fn wait_room(
        &self,
        n: u64,
        tp: &TopicPartition,
        start: Instant,
        deadline: Instant,
    ) -> Result<(), ProduceError> {
        let pending = &self.inner.shared.pending;
        if pending.has_room(n) {
            return Ok(());
        }
        let left = deadline.saturating_duration_since(Instant::now());
        tokio::time::timeout(left, pending.wait_room(n))
            .await
            .map_err(|_| ProduceError::QueueFull {
                topic_partition: tp.clone(),
                waited_ms: start.elapsed().as_millis() as u64,
            })
    }

    /// Waits (until `deadline`) for at least one of `n` slots of `tp`'s mailbox and takes as
    /// many as are free; if the accumulator in `slot` retires meanwhile, `slot` becomes the
    /// partition's new one.
    pub(super) async fn wait_some_slots(
        &self,
        slot: &mut Arc<AccumulatorSlot>,
        n: usize,
        tp: &TopicPartition,
        start: Instant,
        deadline: Instant,
    ) -> Result<usize, ProduceError> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let got = tokio::time::timeout(left, slot.mailbox.reserve_up_to(n))
                .await
                .map_err(|_| ProduceError::QueueFull {
                    topic_partition: tp.clone(),
                    waited_ms: start.elapsed().as_millis() as u64,
                })?;
            if got > 0 || n == 0 || !slot.mailbox.retired() {
                return Ok(got);
            }
            *slot = self.accumulator(tp);
        }
    }

    /// The checks before anything else: the producer is open, the transaction state allows
    /// sends.
    pub(super) fn admit(&self) -> Result<(), ProduceError> {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(ProduceError::closed("send after close"));
        }
        self.inner.shared.txn.check_send()
    }

    /// Queues a routed record whose mailbox slot is reserved: counts it as pending, stamps it
    /// (one clock read) and pushes it.
    // The error gives the record back by value (as `send_returning` does): no boxing on the
    // hot path for a rare error.
    #[allow(clippy::result_large_err)]
    pub(super) fn commit(
        &self,
        routed: &Routed,
        record: ProducerRecord,
        delivery: Delivery,
    ) -> Result<(), SendError> {
        let pending_slot = self.inner.shared.pending.add(1);
        let (enqueued, wall_ms) = crate::record::send_clock();
        let rec = Self::append_record(record, delivery, enqueued, || wall_ms, pending_slot);
        // Not accepted (the producer is shutting down): the record comes back.
        self.enqueue(
            &routed.tp,
            &routed.slot,
            std::iter::once(rec),
            1,
            pending_slot,
        )
        .map_err(|recs| Self::refused(&routed.tp, recs))
    }

    /// The send path without awaiting anything: metadata cached, the partition known and a
    /// free mailbox slot. With `Block::Wait`, anything that would wait (metadata, a partition
    /// not yet in the metadata, a full mailbox) gives the record and its delivery back for
    /// [`Self::send_waiting`], with its route once it has one (a record is partitioned once);
    /// with `Block::Never` it fails at once. Errors are final.
    pub(super) fn send_now(
        &self,
        record: ProducerRecord,
        delivery: impl FnOnce() -> Delivery,
        block: Block,
    ) -> Now {
        let fail = |error, record| Now::Done(Err(SendError { error, record }));
        if let Err(error) = self.admit() {
            return fail(error, record);
        }
        let Some(info) = self.inner.cluster.topic(&record.topic) else {
            return match block {
                Block::Wait => Now::Wait(record, delivery(), None),
                Block::Never => fail(self.fetch_without_waiting(&record.topic), record),
            };
        };
        let tp = match self.route(&record, &info) {
            Ok(tp) => tp,
            Err(ProduceError::InvalidPartition { .. })
                if record.partition.is_some() && block == Block::Wait =>
            {
                return Now::Wait(record, delivery(), None)
            }
            Err(error) => return fail(error, record),
        };
        let mut routed = Routed {
            slot: self.accumulator(&tp),
            tp,
        };
        let room = self.inner.shared.pending.has_room(1);
        let mut reserved = room && routed.slot.mailbox.try_reserve(1);
        if !reserved && room && routed.slot.mailbox.retired() {
            // It retired between the lookup and the reservation: its successor.
            routed.slot = self.accumulator(&routed.tp);
            reserved = routed.slot.mailbox.try_reserve(1);
        }
        if reserved {
            return Now::Done(self.commit(&routed, record, delivery()));
        }
        match block {
            Block::Wait => Now::Wait(record, delivery(), Some(routed)),
            Block::Never => fail(
                ProduceError::QueueFull {
                    topic_partition: routed.tp,
                    waited_ms: 0,
                },
                record,
            ),
        }
    }

    /// `try_send` found no metadata for `topic`: starts fetching it so a later `try_send` can
    /// succeed (no waiter, no task: the core keeps one entry per topic; at most one message
    /// per topic per `retry.backoff.ms`, so the metadata manager's mailbox does not grow with
    /// calls) and returns the error.
    pub(super) fn fetch_without_waiting(&self, topic: &Arc<str>) -> ProduceError {
        let now = Instant::now();
        let backoff = self.inner.config.retry_backoff;
        let asked = &self.inner.fetch_asked;
        let recent = asked
            .get(topic)
            .is_some_and(|t| now < crate::time::deadline_after(*t, backoff));
        if !recent {
            if asked.len() >= 1024 {
                asked.retain(|_, t| now < crate::time::deadline_after(*t, backoff));
            }
            asked.insert(topic.clone(), now);
            self.inner
                .metadata
                .do_send(crate::actors::metadata::FetchTopic(topic.clone()));
        }
        ProduceError::MetadataTimeout {
            topic: topic.clone(),
            waited_ms: 0,
            reason: "metadata not cached yet (try_send does not wait)".into(),
        }
    }

    /// The error of records an accumulator that stopped did not take.
    pub(super) fn stopped(tp: &TopicPartition) -> ProduceError {
        ProduceError::closed(format!("accumulator for {tp} stopped"))
    }

    /// The error (and the record, rebuilt) of a push the accumulator refused.
    pub(super) fn refused(tp: &TopicPartition, mut recs: Vec<AppendRecord>) -> SendError {
        let error = Self::stopped(tp);
        let Some(r) = recs.pop() else {
            return SendError {
                error,
                record: ProducerRecord::new(tp.topic.clone(), bytes::Bytes::new()),
            };
        };
        r.delivery.refused(&error);
        SendError {
            error,
            record: ProducerRecord {
                topic: tp.topic.clone(),
                partition: Some(tp.partition),
                key: r.key,
                value: r.value,
                headers: r.headers,
                timestamp: Some(r.timestamp),
            },
        }
    }

    /// What [`Self::send_now`] could not do without waiting: metadata (and a partition count
    /// that has the record's partition), then a mailbox slot, all within `max.block.ms`.
    pub(super) async fn send_waiting(
        &self,
        record: ProducerRecord,
        delivery: Delivery,
        routed: Option<Routed>,
    ) -> Result<(), SendError> {
        // The record goes back to the caller; its delivery (never used) ends its span, if any,
        // with the error.
        let back = |error: ProduceError, record: ProducerRecord, delivery: Delivery| {
            delivery.refused(&error);
            SendError { error, record }
        };
        let start = Instant::now();
        let deadline = start + self.inner.config.max_block;
        let routed = match routed {
            Some(r) => r,
            None => {
                let info = match self.topic(&record.topic, deadline).await {
                    Ok(t) => t,
                    Err(e) => return Err(back(e, record, delivery)),
                };
                let tp = match self.route_waiting(&record, info, start).await {
                    Ok(tp) => tp,
                    Err(e) => return Err(back(e, record, delivery)),
                };
                let routed = Routed {
                    slot: self.accumulator(&tp),
                    tp,
                };
                if self.inner.shared.pending.has_room(1) && routed.slot.mailbox.try_reserve(1) {
                    return self.commit(&routed, record, delivery);
                }
                routed
            }
        };
        let mut routed = routed;
        if let Err(e) = self.wait_room(1, &routed.tp, start, deadline).await {
            return Err(back(e, record, delivery));
        }
        if let Err(e) = self
            .wait_some_slots(&mut routed.slot, 1, &routed.tp, start, deadline)
            .await
        {
            return Err(back(e, record, delivery));
        }
        self.commit(&routed, record, delivery)
    }

    pub(super) async fn send_many(
        &self,
        records: impl IntoIterator<Item = ProducerRecord>,
        mut delivery: impl FnMut(usize) -> Delivery,
    ) -> Vec<Result<(), ProduceError>> {
        let start = Instant::now();
        let deadline = start + self.inner.config.max_block;
        let capacity = self.inner.config.mailbox_capacity.max(1);
        let mut results: Vec<Result<(), ProduceError>> = Vec::new();
        let mut groups: Vec<PartitionChunk> = Vec::new();
        let mut last_topic: Option<Arc<TopicInfo>> = None;
        let mut call_ms: Option<i64> = None;
        for (i, record) in records.into_iter().enumerate() {
            let record = self.intercepted(record);
            // A record refused below drops its span, which ends it as not delivered.
            #[cfg(feature = "opentelemetry")]
            let (record, span) = self.traced(record);
            results.push(Ok(()));
            if let Err(e) = self.admit() {
                results[i] = Err(e);
                continue;
            }
            let info = match &last_topic {
                Some(t) if *t.name == *record.topic => t.clone(),
                _ => match self.topic(&record.topic, deadline).await {
                    Ok(t) => {
                        last_topic = Some(t.clone());
                        t
                    }
                    Err(e) => {
                        results[i] = Err(e);
                        continue;
                    }
                },
            };
            let tp = match self.route_waiting(&record, info, start).await {
                Ok(tp) => tp,
                Err(e) => {
                    results[i] = Err(e);
                    continue;
                }
            };
            // One CreateTime for the whole call: its records are sent at the same instant.
            #[cfg(feature = "opentelemetry")]
            let rec = Self::append_record(
                record,
                Delivery::traced(span, delivery(i)),
                start,
                || *call_ms.get_or_insert_with(now_ms),
                0,
            );
            #[cfg(not(feature = "opentelemetry"))]
            let rec = Self::append_record(
                record,
                delivery(i),
                start,
                || *call_ms.get_or_insert_with(now_ms),
                0,
            );
            match groups.iter_mut().find(|g| g.0 == tp) {
                Some(g) => g.2.push((i, rec)),
                None => {
                    let slot = self.accumulator(&tp);
                    groups.push((tp, slot, vec![(i, rec)]));
                }
            }
        }
        for (tp, mut slot, mut recs) in groups {
            while !recs.is_empty() {
                // As many slots as are free (at least one, waiting up to max.block.ms): a
                // chunk never needs the whole mailbox empty at one instant, so steady single
                // sends cannot starve it.
                let want = recs.len().min(capacity);
                if let Err(e) = self.wait_room(want as u64, &tp, start, deadline).await {
                    for (i, rec) in recs.drain(..) {
                        drop(rec);
                        results[i] = Err(e.clone());
                    }
                    continue;
                }
                let got = match slot.mailbox.try_reserve_up_to(want) {
                    0 => {
                        self.wait_some_slots(&mut slot, want, &tp, start, deadline)
                            .await
                    }
                    got => Ok(got),
                };
                let n = match got {
                    Ok(n) => n,
                    Err(e) => {
                        // Not accepted: the deliveries are dropped unused (no callback runs).
                        for (i, rec) in recs.drain(..) {
                            drop(rec);
                            results[i] = Err(e.clone());
                        }
                        continue;
                    }
                };
                let rest = recs.split_off(n.min(recs.len()));
                let chunk = std::mem::replace(&mut recs, rest);
                let (indices, mut records): (Vec<usize>, Vec<AppendRecord>) =
                    chunk.into_iter().unzip();
                let pending_slot = self.inner.shared.pending.add(n as u64);
                for r in &mut records {
                    r.pending_slot = pending_slot;
                }
                if let Err(back) = self.enqueue(&tp, &slot, records, n as u64, pending_slot) {
                    let err = Self::stopped(&tp);
                    drop(back);
                    for i in indices {
                        results[i] = Err(err.clone());
                    }
                }
            }
        }
        for e in results.iter().filter_map(|r| r.as_ref().err()) {
            self.refused_before_enqueue(e);
        }
        results
    }
}

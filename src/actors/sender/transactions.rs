//! The sender's transactional side (KIP-98, KIP-447): the [`Transactional`] message, the
//! transaction coordinator calls (FindCoordinator, InitProducerId with the transactional id,
//! AddPartitionsToTxn, AddOffsetsToTxn, TxnOffsetCommit, EndTxn) and their retries.
//!
//! The sender owns the transaction because it owns what a transaction is made of: the producer
//! id and epoch, the sequences, and the batches. Requests from the handle are queued and run
//! one at a time (Java's single pending transition); `init`, `commit` and `abort` called again
//! while they run (after a `max.block.ms` timeout) join the running call, and called again after
//! it ended get its result. The rules of which call is allowed when are in
//! [`crate::transaction::TxnStateMachine`].

use super::Sender;
use crate::actors::connection::{call, ConnectionPool};
use crate::cluster::Cluster;
use crate::config::ProducerConfig;
use crate::core::sender::{DrainGate, ProducerIdState};
use crate::error::{KafkaCode, ProduceError};
use crate::record::TopicPartition;
use crate::transaction::{
    classify, txn_error_of, BatchRule, ConsumerGroupMetadata, ErrorClass, TransactionError, TxnApi,
    TxnOp, TxnPartitions, TxnState, TxnStateMachine,
};
use actix::prelude::*;
use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::txn_offset_commit_request::{
    TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
};
use kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddPartitionsToTxnRequest, EndTxnRequest, FindCoordinatorRequest,
    GroupId, InitProducerIdRequest, TopicName, TransactionalId, TxnOffsetCommitRequest,
};
use kafka_protocol::protocol::{Request, StrBytes};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// A transactional call of the handle (see [`crate::Producer::init_transactions`] and the
/// others). `PrepareCommit` / `PrepareAbort` change the state before the handle flushes;
/// `Commit` / `Abort` end the transaction with the coordinator once every record has its result.
pub(crate) enum TxnRequest {
    Init,
    Begin,
    SendOffsets {
        offsets: Vec<(TopicPartition, i64)>,
        group: ConsumerGroupMetadata,
    },
    PrepareCommit,
    Commit,
    PrepareAbort,
    Abort,
}

impl TxnRequest {
    fn op(&self) -> TxnOp {
        match self {
            TxnRequest::Init => TxnOp::Init,
            TxnRequest::Begin => TxnOp::Begin,
            TxnRequest::SendOffsets { .. } => TxnOp::SendOffsets,
            TxnRequest::PrepareCommit | TxnRequest::Commit => TxnOp::Commit,
            TxnRequest::PrepareAbort | TxnRequest::Abort => TxnOp::Abort,
        }
    }
}

/// A transactional call, answered on `reply` when it is done. The caller awaits the reply under
/// its `max.block.ms` and drops the receiver when it gives up, so the sender knows whether the
/// result reached anyone (else it keeps it for the repeated call).
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Transactional {
    pub(crate) request: TxnRequest,
    pub(crate) reply: oneshot::Sender<Result<(), TransactionError>>,
}

type Reply = oneshot::Sender<Result<(), TransactionError>>;

/// A coordinator: node id and address.
type Coordinator = (i32, Arc<str>);

/// What the coordinator calls need, cloneable into their futures.
#[derive(Clone)]
pub(super) struct TxnIo {
    pool: Arc<ConnectionPool>,
    cluster: Arc<Cluster>,
    config: Arc<ProducerConfig>,
    id: Arc<str>,
    /// Coordinators found so far: (key type, key) → (node id, address).
    coordinators: Arc<Mutex<HashMap<(i8, String), Coordinator>>>,
}

/// The transaction: state machine, partitions, the queue of calls.
pub(super) struct TxnCore {
    pub(super) sm: TxnStateMachine,
    pub(super) partitions: TxnPartitions,
    io: TxnIo,
    queue: VecDeque<(TxnRequest, Reply)>,
    running: Option<(TxnOp, Vec<Reply>)>,
    /// The last coordinator call that ended and its result, for a call repeated after a timeout.
    last_done: Option<(TxnOp, Result<(), TransactionError>)>,
}

impl TxnCore {
    pub(super) fn new(
        id: &str,
        pool: Arc<ConnectionPool>,
        cluster: Arc<Cluster>,
        config: Arc<ProducerConfig>,
    ) -> Self {
        TxnCore {
            sm: TxnStateMachine::new(),
            partitions: TxnPartitions::default(),
            io: TxnIo {
                pool,
                cluster,
                config,
                id: id.into(),
                coordinators: Default::default(),
            },
            queue: VecDeque::new(),
            running: None,
            last_done: None,
        }
    }

    pub(super) fn id(&self) -> &Arc<str> {
        &self.io.id
    }

    /// EndTxn (commit or abort) is out: nothing may be added to or sent in the transaction.
    pub(super) fn ending(&self) -> bool {
        matches!(&self.running, Some((TxnOp::Commit | TxnOp::Abort, _)))
    }
}

impl DrainGate for Option<TxnCore> {
    fn transactional(&self) -> bool {
        self.is_some()
    }

    fn refuse_queued(&self) -> Option<ProduceError> {
        let t = self.as_ref()?;
        match t.sm.batch_rule(t.ending()) {
            BatchRule::Fail(e) => Some(ProduceError::Transaction(e)),
            BatchRule::Send | BatchRule::Wait => None,
        }
    }

    fn ending(&self) -> bool {
        self.as_ref().is_some_and(|t| t.ending())
    }

    /// A partition may be sent to only once the coordinator added it to the transaction;
    /// queues it for AddPartitionsToTxn otherwise.
    fn partition_ready(&mut self, tp: &TopicPartition) -> bool {
        match self {
            None => true,
            Some(t) if t.partitions.added.contains(tp) => true,
            Some(t) => {
                t.partitions.pending.insert(tp.clone());
                false
            }
        }
    }
}

impl Handler<Transactional> for Sender {
    type Result = ();

    fn handle(&mut self, msg: Transactional, ctx: &mut Context<Self>) {
        let Transactional { request, reply } = msg;
        let Some(t) = self.txn.as_mut() else {
            let _ = reply.send(Err(TransactionError::NotTransactional));
            return;
        };
        let op = request.op();
        let joins = matches!(
            request,
            TxnRequest::Init | TxnRequest::Commit | TxnRequest::Abort
        );
        match &mut t.running {
            Some((running, waiters)) if joins && *running == op => waiters.push(reply),
            _ => {
                t.queue.push_back((request, reply));
                self.txn_pump(ctx);
            }
        }
    }
}

impl Sender {
    /// Publishes the state for `send`.
    fn txn_publish(&self) {
        if let Some(t) = &self.txn {
            self.shared.txn.set_state(t.sm.state());
        }
    }

    /// The first record that failed in the open transaction, as the error of the transaction.
    fn txn_failure(&self) -> Option<TransactionError> {
        self.shared.txn.first_failure().map(|e| txn_error_of(&e))
    }

    /// Runs queued transactional calls until one needs the coordinator (or none is left).
    pub(super) fn txn_pump(&mut self, ctx: &mut Context<Self>) {
        loop {
            let failure = self.txn_failure();
            let in_flight = self.core.has_in_flight();
            let busy = self.shared.pending.get() > 0 || self.core.has_queued();
            let Some(t) = self.txn.as_mut() else { return };
            if t.running.is_some() {
                return;
            }
            let Some((req, reply)) = t.queue.pop_front() else {
                return;
            };
            let op = req.op();
            // A commit/abort/init repeated after it ended (its caller timed out): its result.
            if matches!(
                req,
                TxnRequest::Init
                    | TxnRequest::Commit
                    | TxnRequest::PrepareCommit
                    | TxnRequest::Abort
                    | TxnRequest::PrepareAbort
            ) && t.sm.state() == TxnState::Ready
            {
                if let Some((done, res)) = &t.last_done {
                    if *done == op {
                        let res = res.clone();
                        // Handed out once: the final step of the repeated call consumes it
                        // (`Prepare*` only peeks), so a later call is judged by the state.
                        if matches!(
                            req,
                            TxnRequest::Init | TxnRequest::Commit | TxnRequest::Abort
                        ) {
                            t.last_done = None;
                        }
                        self.shared.txn.set_state(t.sm.state());
                        let _ = reply.send(res);
                        continue;
                    }
                }
            }
            if !matches!(req, TxnRequest::Commit | TxnRequest::Abort) {
                t.last_done = None;
            }
            match req {
                TxnRequest::Begin => {
                    let res = t.sm.start(TxnOp::Begin).map(|_| ());
                    if res.is_ok() {
                        t.partitions.clear();
                        self.shared.txn.clear_failure();
                    }
                    self.shared.txn.set_state(t.sm.state());
                    let _ = reply.send(res);
                }
                TxnRequest::PrepareCommit => {
                    let res = match failure {
                        Some(e) if t.sm.state() == TxnState::InTransaction => {
                            t.sm.fail(e);
                            t.sm.start(TxnOp::Commit).map(|_| ())
                        }
                        _ => t.sm.start(TxnOp::Commit).map(|_| ()),
                    };
                    self.shared.txn.set_state(t.sm.state());
                    let _ = reply.send(res);
                }
                TxnRequest::PrepareAbort => {
                    let res = t.sm.start(TxnOp::Abort).map(|_| ());
                    self.shared.txn.set_state(t.sm.state());
                    let _ = reply.send(res);
                    if t.sm.state() == TxnState::Aborting {
                        // Batches not sent yet will not be: Java's abortUndrainedBatches.
                        self.shared.txn.set_state(TxnState::Aborting);
                        self.core
                            .fail_queued(ProduceError::Transaction(TransactionError::Aborted));
                        self.settle();
                    }
                }
                TxnRequest::Commit | TxnRequest::Abort => {
                    let commit = matches!(req, TxnRequest::Commit);
                    let expected = if commit {
                        TxnState::Committing
                    } else {
                        TxnState::Aborting
                    };
                    if t.sm.state() != expected {
                        self.shared.txn.set_state(t.sm.state());
                        let _ = reply.send(Err(t.sm.refuse(op)));
                        continue;
                    }
                    if commit {
                        if let Some(e) = failure {
                            t.sm.fail(e.clone());
                            let err = match t.sm.state() {
                                TxnState::Committing => e,
                                _ => t.sm.refuse(op),
                            };
                            self.shared.txn.set_state(t.sm.state());
                            let _ = reply.send(Err(err));
                            self.txn_publish();
                            continue;
                        }
                    }
                    // EndTxn only once every record of the transaction has its result: the
                    // handle flushed, but a `send` that passed its state check before the
                    // commit may still be enqueueing (Java's `hasIncomplete`), and an
                    // AddPartitionsToTxn may still be out. Bounded: records fail by
                    // delivery.timeout.ms at the latest (and then the commit fails).
                    if t.partitions.adding || in_flight || busy {
                        t.queue.push_front((req, reply));
                        ctx.run_later(Duration::from_millis(10), |act, ctx| act.txn_pump(ctx));
                        return;
                    }
                    let producer = self.core.producer().unwrap_or((-1, -1));
                    let started = t.partitions.started();
                    let bump = !commit && failure.is_some();
                    t.running = Some((op, vec![reply]));
                    let io = t.io.clone();
                    let fut = async move {
                        if started {
                            if let Err(e) = io.end_txn(producer, commit).await {
                                return (false, Err(e));
                            }
                        }
                        if bump {
                            // The failed records may have left sequence gaps: a new epoch
                            // restarts every partition's sequence (KIP-360; InitProducerId v3+,
                            // brokers 2.5+).
                            return (true, io.init_producer_id(Some(producer)).await.map(Some));
                        }
                        (true, Ok(None))
                    };
                    ctx.spawn(fut.into_actor(self).map(move |(ended, res), act, ctx| {
                        if ended {
                            // The coordinator ended it: a retried call skips EndTxn.
                            if let Some(t) = act.txn.as_mut() {
                                t.partitions.clear();
                            }
                        }
                        let res = res.map(|new_pid| {
                            if let Some((id, epoch)) = new_pid {
                                act.core.set_producer_id(id, epoch);
                            }
                        });
                        act.txn_finish(op, res, ctx);
                    }));
                    return;
                }
                TxnRequest::Init => {
                    if let Err(e) = t.sm.start(TxnOp::Init) {
                        self.shared.txn.set_state(t.sm.state());
                        let _ = reply.send(Err(e));
                        continue;
                    }
                    self.shared.txn.set_state(TxnState::Initializing);
                    t.running = Some((op, vec![reply]));
                    let io = t.io.clone();
                    self.core.pid = ProducerIdState::Initializing;
                    ctx.spawn(
                        async move { io.init_producer_id(None).await }
                            .into_actor(self)
                            .map(move |res, act, ctx| {
                                let res =
                                    res.map(|(id, epoch)| act.core.set_producer_id(id, epoch));
                                if res.is_err() {
                                    act.core.pid = ProducerIdState::Unknown;
                                }
                                act.txn_finish(op, res, ctx);
                            }),
                    );
                    return;
                }
                TxnRequest::SendOffsets { offsets, group } => {
                    if let Err(e) = t.sm.start(TxnOp::SendOffsets) {
                        self.shared.txn.set_state(t.sm.state());
                        let _ = reply.send(Err(e));
                        continue;
                    }
                    let producer = self.core.producer().unwrap_or((-1, -1));
                    t.running = Some((op, vec![reply]));
                    let io = t.io.clone();
                    let already = t.partitions.offsets_added;
                    ctx.spawn(
                        async move {
                            if !already {
                                if let Err(e) = io.add_offsets(producer, &group.group_id).await {
                                    return (false, Err(e));
                                }
                            }
                            (true, io.txn_offset_commit(producer, &offsets, &group).await)
                        }
                        .into_actor(self)
                        .map(move |(added, res), act, ctx| {
                            // AddOffsetsToTxn opens the transaction on the coordinator even if
                            // the offset commit then fails: an EndTxn is needed either way.
                            if let Some(t) = act.txn.as_mut() {
                                t.partitions.offsets_added |= added;
                            }
                            act.txn_finish(op, res, ctx);
                        }),
                    );
                    return;
                }
            }
            self.txn_publish();
        }
    }

    /// A coordinator call ended: state, replies, next call.
    fn txn_finish(
        &mut self,
        op: TxnOp,
        res: Result<(), TransactionError>,
        ctx: &mut Context<Self>,
    ) {
        let Some(t) = self.txn.as_mut() else { return };
        match &res {
            Ok(()) => {
                if matches!(op, TxnOp::Init | TxnOp::Commit | TxnOp::Abort) {
                    t.sm.complete();
                }
                if matches!(op, TxnOp::Commit | TxnOp::Abort) {
                    t.partitions.clear();
                    self.shared.txn.clear_failure();
                }
            }
            Err(e) => {
                tracing::warn!(transactional_id = %t.io.id, operation = op.name(), error = %e, "transactional call failed");
                t.sm.fail(e.clone());
            }
        }
        let waiters = t.running.take().map(|(_, w)| w).unwrap_or_default();
        // Kept for a repeated call only if no caller was still waiting (it timed out): as
        // Java, a call repeated after it returned is judged by the state.
        let mut delivered = false;
        self.shared.txn.set_state(t.sm.state());
        for w in waiters {
            delivered |= w.send(res.clone()).is_ok();
        }
        t.last_done = (!delivered).then(|| (op, res.clone()));
        if let Err(e) = &res {
            if e.is_fatal() {
                self.emit_fenced(e);
            }
        }
        self.txn_publish();
        self.txn_pump(ctx);
        self.drain(ctx);
    }

    fn emit_fenced(&self, e: &TransactionError) {
        if let (TransactionError::Fenced { .. }, Some((id, epoch))) = (e, self.core.producer()) {
            self.shared
                .health
                .emit(crate::health::HealthEvent::ProducerFenced {
                    producer_id: id,
                    epoch,
                });
        }
    }

    /// Sends AddPartitionsToTxn for the partitions waiting for it (one request at a time).
    pub(super) fn txn_add_partitions(&mut self, ctx: &mut Context<Self>) {
        let Some(producer) = self.core.producer() else {
            return;
        };
        let Some(t) = self.txn.as_mut() else { return };
        if t.partitions.adding
            || t.partitions.pending.is_empty()
            || t.sm.batch_rule(t.ending()) != BatchRule::Send
        {
            return;
        }
        t.partitions.adding = true;
        let tps: Vec<TopicPartition> = std::mem::take(&mut t.partitions.pending)
            .into_iter()
            .collect();
        let io = t.io.clone();
        let fut = {
            let tps = tps.clone();
            async move { io.add_partitions(producer, &tps).await }
        };
        ctx.spawn(fut.into_actor(self).map(move |res, act, ctx| {
            let Some(t) = act.txn.as_mut() else { return };
            t.partitions.adding = false;
            match res {
                Ok(()) => {
                    tracing::debug!(
                        partitions = tps.len(),
                        "partitions added to the transaction"
                    );
                    t.partitions.added.extend(tps);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "AddPartitionsToTxn failed");
                    let e = crate::transaction::txn_error_of(&ProduceError::Transaction(e));
                    t.sm.fail(e.clone());
                    let err = ProduceError::Transaction(e.clone());
                    for tp in &tps {
                        act.core.fail_partition(tp, &err);
                    }
                    act.settle();
                    if e.is_fatal() {
                        act.emit_fenced(&e);
                    }
                    act.txn_publish();
                }
            }
            act.drain(ctx);
        }));
    }
}

/// `FindCoordinator` key types.
const KEY_GROUP: i8 = 0;
const KEY_TRANSACTION: i8 = 1;

impl TxnIo {
    /// Backoff before retry `attempt` (1, 2, ...): `retry.backoff.ms` growing to
    /// `retry.backoff.max.ms`; `CONCURRENT_TRANSACTIONS` starts at 20 ms (Java's short retry
    /// for a transaction that is just ending).
    fn backoff(&self, attempt: u32, code: i16) -> Duration {
        let base = if code == 51 {
            Duration::from_millis(20).min(self.config.retry_backoff)
        } else {
            self.config.retry_backoff
        };
        crate::backoff::exponential(base, self.config.retry_backoff_max, attempt)
    }

    /// The node for `(key_type, key)`: cached, else FindCoordinator through any broker.
    async fn coordinator(&self, key_type: i8, key: &str) -> Result<(i32, Arc<str>), Step> {
        let cache_key = (key_type, key.to_string());
        if let Some(c) = self
            .coordinators
            .lock()
            .ok()
            .and_then(|m| m.get(&cache_key).cloned())
        {
            return Ok(c);
        }
        let (address, conn) = self
            .pool
            .any(&self.cluster.brokers())
            .ok_or_else(|| Step::Fatal("no broker to ask for the coordinator".into()))?;
        let request = FindCoordinatorRequest::default()
            .with_key(StrBytes::from_string(key.to_string()))
            .with_key_type(key_type);
        let resp = match call(&conn, address, request, true, self.config.request_timeout).await {
            Ok(Some(r)) => r,
            Ok(None) => return Err(Step::Retry(0, false)),
            Err(e) if e.is_retriable() => return Err(Step::Retry(0, false)),
            Err(e) => return Err(Step::Fatal(e.to_string())),
        };
        if resp.error_code != 0 {
            return Err(Step::Code(resp.error_code));
        }
        let node = resp.node_id.0;
        if resp.port <= 0 || resp.port > 65535 || resp.host.is_empty() {
            return Err(Step::Retry(0, true));
        }
        // The address metadata knows this node by, so one connection serves both.
        let address: Arc<str> = self
            .cluster
            .brokers()
            .into_iter()
            .find(|b| b.node_id == node)
            .map(|b| b.address)
            .unwrap_or_else(|| format!("{}:{}", resp.host.as_str(), resp.port).into());
        if let Ok(mut m) = self.coordinators.lock() {
            m.insert(cache_key, (node, address.clone()));
        }
        Ok((node, address))
    }

    fn forget_coordinator(&self, key_type: i8, key: &str) {
        if let Ok(mut m) = self.coordinators.lock() {
            m.remove(&(key_type, key.to_string()));
        }
    }

    /// Sends a request to the coordinator of `(key_type, key)` until the answer is not
    /// retriable, at most `delivery.timeout.ms` (then `Timeout`): coordinator moves and loads,
    /// `CONCURRENT_TRANSACTIONS` and lost connections are retried with backoff.
    async fn coordinator_call<R>(
        &self,
        api: TxnApi,
        key_type: i8,
        key: &str,
        build: impl Fn() -> R,
        code_of: impl Fn(&R::Response) -> i16,
    ) -> Result<R::Response, TransactionError>
    where
        R: Request + Send + 'static,
        R::Response: Send,
    {
        let started = Instant::now();
        let deadline = started + self.config.delivery_timeout;
        let mut attempt = 0u32;
        loop {
            let step = match self.coordinator(key_type, key).await {
                Ok((node, address)) => {
                    let conn = self.pool.get(node, &address);
                    match call(&conn, address, build(), true, self.config.request_timeout).await {
                        Ok(Some(resp)) => {
                            let code = code_of(&resp);
                            if code == 0 {
                                return Ok(resp);
                            }
                            Step::Code(code)
                        }
                        Ok(None) => Step::Retry(0, true),
                        Err(e) if e.is_retriable() => {
                            tracing::debug!(?api, error = %e, "coordinator call failed; retrying");
                            Step::Retry(0, true)
                        }
                        Err(e) => Step::Fatal(e.to_string()),
                    }
                }
                Err(step) => step,
            };
            let (code, find) = match step {
                Step::Fatal(reason) => {
                    return Err(TransactionError::Fatal {
                        reason: format!("{api:?}: {reason}").into(),
                    })
                }
                Step::Retry(code, find) => (code, find),
                Step::Code(code) => match classify(api, code) {
                    ErrorClass::Ok => (0, false),
                    ErrorClass::Retry { find_coordinator } => (code, find_coordinator),
                    ErrorClass::Fenced => {
                        return Err(TransactionError::Fenced {
                            code: KafkaCode(code),
                        })
                    }
                    ErrorClass::Abortable { .. } => {
                        return Err(TransactionError::Abortable {
                            reason: format!("{api:?}: {}", KafkaCode(code)).into(),
                        })
                    }
                    ErrorClass::Fatal => {
                        return Err(TransactionError::Fatal {
                            reason: format!("{api:?}: {}", KafkaCode(code)).into(),
                        })
                    }
                },
            };
            tracing::debug!(?api, code = %KafkaCode(code), find_coordinator = find, attempt, "transactional call retried");
            if find {
                self.forget_coordinator(key_type, key);
            }
            attempt += 1;
            let wait = self.backoff(attempt, code);
            if Instant::now() + wait >= deadline {
                return Err(TransactionError::Timeout {
                    operation: api.operation(),
                    waited_ms: started.elapsed().as_millis() as u64,
                });
            }
            tokio::time::sleep(wait).await;
        }
    }

    fn txn_id(&self) -> TransactionalId {
        TransactionalId(StrBytes::from_string(self.id.to_string()))
    }

    /// InitProducerId with the transactional id: fences older producers of the id and aborts
    /// their open transaction; with `current`, bumps our own epoch (KIP-360).
    pub(super) async fn init_producer_id(
        &self,
        current: Option<(i64, i16)>,
    ) -> Result<(i64, i16), TransactionError> {
        let (old_id, old_epoch) = current.unwrap_or((-1, -1));
        let timeout_ms = self
            .config
            .transaction_timeout
            .as_millis()
            .min(i32::MAX as u128) as i32;
        let resp = self
            .coordinator_call(
                TxnApi::InitProducerId,
                KEY_TRANSACTION,
                &self.id,
                || {
                    InitProducerIdRequest::default()
                        .with_transactional_id(Some(self.txn_id()))
                        .with_transaction_timeout_ms(timeout_ms)
                        .with_producer_id(old_id.into())
                        .with_producer_epoch(old_epoch)
                },
                |r| r.error_code,
            )
            .await?;
        if resp.producer_id.0 < 0 || resp.producer_epoch < 0 {
            return Err(TransactionError::Fatal {
                reason: format!(
                    "InitProducerId answered producer id {} epoch {}",
                    resp.producer_id.0, resp.producer_epoch
                )
                .into(),
            });
        }
        Ok((resp.producer_id.0, resp.producer_epoch))
    }

    async fn add_partitions(
        &self,
        (pid, epoch): (i64, i16),
        tps: &[TopicPartition],
    ) -> Result<(), TransactionError> {
        let mut topics: Vec<AddPartitionsToTxnTopic> = Vec::new();
        for tp in tps {
            match topics.iter_mut().find(|t| *t.name.0 == *tp.topic) {
                Some(t) => t.partitions.push(tp.partition),
                None => topics.push(
                    AddPartitionsToTxnTopic::default()
                        .with_name(TopicName(StrBytes::from_string(tp.topic.to_string())))
                        .with_partitions(vec![tp.partition]),
                ),
            }
        }
        self.coordinator_call(
            TxnApi::AddPartitions,
            KEY_TRANSACTION,
            &self.id,
            || {
                AddPartitionsToTxnRequest::default()
                    .with_v3_and_below_transactional_id(self.txn_id())
                    .with_v3_and_below_producer_id(pid.into())
                    .with_v3_and_below_producer_epoch(epoch)
                    .with_v3_and_below_topics(topics.clone())
            },
            |r| {
                // The first real error; OPERATION_NOT_ATTEMPTED (55) only echoes another one.
                let codes = r.results_by_topic_v3_and_below.iter().flat_map(|t| {
                    t.results_by_partition
                        .iter()
                        .map(|p| p.partition_error_code)
                });
                let mut first = 0;
                for c in codes {
                    if c != 0 && (first == 0 || first == 55) {
                        first = c;
                    }
                }
                first
            },
        )
        .await
        .map(|_| ())
    }

    async fn add_offsets(
        &self,
        (pid, epoch): (i64, i16),
        group: &str,
    ) -> Result<(), TransactionError> {
        self.coordinator_call(
            TxnApi::AddOffsets,
            KEY_TRANSACTION,
            &self.id,
            || {
                AddOffsetsToTxnRequest::default()
                    .with_transactional_id(self.txn_id())
                    .with_producer_id(pid.into())
                    .with_producer_epoch(epoch)
                    .with_group_id(GroupId(StrBytes::from_string(group.to_string())))
            },
            |r| r.error_code,
        )
        .await
        .map(|_| ())
    }

    async fn txn_offset_commit(
        &self,
        (pid, epoch): (i64, i16),
        offsets: &[(TopicPartition, i64)],
        group: &ConsumerGroupMetadata,
    ) -> Result<(), TransactionError> {
        let mut topics: Vec<TxnOffsetCommitRequestTopic> = Vec::new();
        for (tp, offset) in offsets {
            let p = TxnOffsetCommitRequestPartition::default()
                .with_partition_index(tp.partition)
                .with_committed_offset(*offset)
                .with_committed_metadata(Some(StrBytes::from_static_str("")));
            match topics.iter_mut().find(|t| *t.name.0 == *tp.topic) {
                Some(t) => t.partitions.push(p),
                None => topics.push(
                    TxnOffsetCommitRequestTopic::default()
                        .with_name(TopicName(StrBytes::from_string(tp.topic.to_string())))
                        .with_partitions(vec![p]),
                ),
            }
        }
        self.coordinator_call(
            TxnApi::TxnOffsetCommit,
            KEY_GROUP,
            &group.group_id,
            || {
                let mut r = TxnOffsetCommitRequest::default()
                    .with_transactional_id(self.txn_id())
                    .with_group_id(GroupId(StrBytes::from_string(group.group_id.clone())))
                    .with_producer_id(pid.into())
                    .with_producer_epoch(epoch)
                    .with_topics(topics.clone());
                // KIP-447 fields (v3+): only when known, so older versions still encode.
                if group.generation_id >= 0 || !group.member_id.is_empty() {
                    r = r
                        .with_generation_id(group.generation_id)
                        .with_member_id(StrBytes::from_string(group.member_id.clone()));
                }
                if let Some(id) = &group.group_instance_id {
                    r = r.with_group_instance_id(Some(StrBytes::from_string(id.clone())));
                }
                r
            },
            |r| {
                r.topics
                    .iter()
                    .flat_map(|t| t.partitions.iter().map(|p| p.error_code))
                    .find(|c| *c != 0)
                    .unwrap_or(0)
            },
        )
        .await
        .map(|_| ())
    }

    async fn end_txn(
        &self,
        (pid, epoch): (i64, i16),
        commit: bool,
    ) -> Result<(), TransactionError> {
        self.coordinator_call(
            TxnApi::EndTxn,
            KEY_TRANSACTION,
            &self.id,
            || {
                EndTxnRequest::default()
                    .with_transactional_id(self.txn_id())
                    .with_producer_id(pid.into())
                    .with_producer_epoch(epoch)
                    .with_committed(commit)
            },
            |r| r.error_code,
        )
        .await
        .map(|_| ())
    }
}

/// One failed coordinator attempt.
enum Step {
    /// Retry (with the code for the backoff; `true`: find the coordinator again).
    Retry(i16, bool),
    /// The broker's code, to classify.
    Code(i16),
    /// Not retriable (authentication, no usable version, ...).
    Fatal(String),
}

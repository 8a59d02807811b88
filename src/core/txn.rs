//! The transaction manager's decisions (KIP-98, KIP-447, KIP-360): which transactional call runs
//! when, the coordinator calls it is made of, their retries, and what each answer does to the
//! transaction. No sockets and no clock: the shell (`Sender`'s transactional side) feeds it the
//! handle's requests, the answers to the calls it asked for and timer ticks, and carries out the
//! [`Action`]s it returns: FindCoordinator and the coordinator requests, replies to the handle,
//! the state `send` reads, the sender core's batches and the producer id.
//!
//! Requests from the handle are queued and run one at a time (Java's single pending
//! transition); `init`, `commit` and `abort` called again while they run (after a `max.block.ms`
//! timeout) join the running call, and called again after it ended get its result until a caller
//! takes it (a [`Receipt`]). The rules of which call is allowed when are [`TxnStateMachine`]'s; the
//! rule of where a batch may go is [`TxnStateMachine::batch_rule`].
//!
//! One coordinator call ([`CoordCall`]) is: find the coordinator (cached per key), send the
//! request, classify the answer ([`classify`], Java's `TransactionManager` handlers), and on a
//! retriable answer wait `retry.backoff.ms` (growing to `retry.backoff.max.ms`; 20 ms for
//! `CONCURRENT_TRANSACTIONS`) and go again, for at most `delivery.timeout.ms` (then
//! [`TransactionError::Timeout`]). Two may be out at once: the running call of the handle and
//! AddPartitionsToTxn for the partitions the drain found new.

use crate::batch::Shared;
use crate::codes::ErrorCode;
use crate::core::sender::{DrainGate, SenderCore};
use crate::error::{KafkaCode, ProduceError};
use crate::record::TopicPartition;
use crate::transaction::{
    classify, txn_error_of, BatchRule, ConsumerGroupMetadata, TransactionError, TxnApi, TxnOp,
    TxnOutcome, TxnPartitions, TxnState, TxnStateMachine,
};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

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
    /// Repeated while it runs or waits (its caller gave up), it is joined, not run again.
    fn joins(&self) -> bool {
        matches!(
            self,
            TxnRequest::Init | TxnRequest::Commit | TxnRequest::Abort
        )
    }

    pub(crate) fn op(&self) -> TxnOp {
        match self {
            TxnRequest::Init => TxnOp::Init,
            TxnRequest::Begin => TxnOp::Begin,
            TxnRequest::SendOffsets { .. } => TxnOp::SendOffsets,
            TxnRequest::PrepareCommit | TxnRequest::Commit => TxnOp::Commit,
            TxnRequest::PrepareAbort | TxnRequest::Abort => TxnOp::Abort,
        }
    }
}

/// Whether a caller took a transactional call's answer (Java's
/// `TransactionalRequestResult.isAcked`): marked by whoever receives the answer (the handle, once
/// its reply arrived within `max.block.ms`), read by the core when the call is repeated. Marked
/// by the receiver, not guessed by the core when it answers: a caller may give up between the
/// core's answer and its arrival, and that answer must still reach the repeated call.
#[derive(Clone, Debug, Default)]
pub(crate) struct Receipt(Arc<AtomicBool>);

impl Receipt {
    /// The caller has the answer.
    pub(crate) fn take(&self) {
        self.0.store(true, Ordering::Release);
    }

    pub(crate) fn taken(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// Whoever waits for a transactional call's result: the shell's reply channel, or the
/// simulation's caller. The core only asks, when the call is repeated, whether any of its
/// callers took the answer (else it keeps the result for the repeated call).
pub(crate) trait TxnWaiter {
    fn receipt(&self) -> &Receipt;
}

/// `FindCoordinator` key types.
pub(crate) const KEY_GROUP: i8 = 0;
pub(crate) const KEY_TRANSACTION: i8 = 1;

/// A coordinator request, for the shell to encode at the negotiated version (the transactional
/// id is the core's, [`TxnCore::id`]).
#[derive(Clone, Debug)]
pub(crate) enum CoordRequest {
    /// With `current`: bump our own epoch (KIP-360); without: fence older producers of the id.
    InitProducerId {
        current: Option<(i64, i16)>,
        transaction_timeout_ms: i32,
    },
    AddPartitions {
        producer: (i64, i16),
        partitions: Vec<TopicPartition>,
    },
    AddOffsets {
        producer: (i64, i16),
        group: Arc<str>,
    },
    TxnOffsetCommit {
        producer: (i64, i16),
        offsets: Vec<(TopicPartition, i64)>,
        group: ConsumerGroupMetadata,
    },
    EndTxn {
        producer: (i64, i16),
        commit: bool,
    },
}

impl CoordRequest {
    fn api(&self) -> TxnApi {
        match self {
            CoordRequest::InitProducerId { .. } => TxnApi::InitProducerId,
            CoordRequest::AddPartitions { .. } => TxnApi::AddPartitions,
            CoordRequest::AddOffsets { .. } => TxnApi::AddOffsets,
            CoordRequest::TxnOffsetCommit { .. } => TxnApi::TxnOffsetCommit,
            CoordRequest::EndTxn { .. } => TxnApi::EndTxn,
        }
    }
}

/// The answer to a FindCoordinator the core asked for.
#[derive(Clone, Debug)]
pub(crate) enum Found {
    /// The coordinator: node id and the address to reach it by.
    Node { node: i32, address: Arc<str> },
    /// The broker's error code.
    Code(i16),
    /// An answer with no usable host or port: ask again.
    Malformed,
    /// No answer (connection lost, request timeout): ask again.
    Lost,
    /// Cannot be asked at all (no broker known, authentication, no usable version).
    Fatal(Arc<str>),
}

/// The answer to a coordinator request the core asked for.
#[derive(Clone, Debug)]
pub(crate) enum Answer {
    /// The response's error codes: one for most requests, one per partition for
    /// AddPartitionsToTxn and TxnOffsetCommit.
    Codes(Vec<i16>),
    /// InitProducerId's answer.
    ProducerId { code: i16, id: i64, epoch: i16 },
    /// No answer (connection lost, request timeout): find the coordinator again and retry.
    Lost,
    /// Not retriable (authentication, no usable version, ...).
    Fatal(Arc<str>),
}

/// What the core asks its shell to do.
#[derive(Debug)]
pub(crate) enum Action<R> {
    /// Send FindCoordinator for `(key_type, key)` to any broker; answer with
    /// [`TxnCore::found`] and this token.
    FindCoordinator {
        token: u64,
        key_type: i8,
        key: Arc<str>,
    },
    /// Send `request` to the coordinator; answer with [`TxnCore::answered`] and this token.
    Call {
        token: u64,
        node: i32,
        address: Arc<str>,
        request: CoordRequest,
    },
    /// The result of a transactional call, for its caller.
    Reply(R, Result<(), TransactionError>),
    /// The state `send` reads changed.
    Publish(TxnState),
    /// A new transaction starts clean: forget the first failed record.
    ClearFailure,
    /// Fail the batches the sender has queued (not sent yet; Java's `abortUndrainedBatches`).
    FailQueued(ProduceError),
    /// Fail these partitions' batches (AddPartitionsToTxn failed for them).
    FailPartitions(Vec<TopicPartition>, ProduceError),
    /// The producer id InitProducerId is fetching: the sender sends nothing meanwhile.
    ProducerIdInitializing,
    /// InitProducerId failed: no producer id.
    ProducerIdUnknown,
    /// A new producer id and epoch for the sender.
    ProducerId(i64, i16),
    /// The producer was fenced: emit `HealthEvent::ProducerFenced` with the current id.
    Fenced,
    /// Partitions were added or a call ended: the sender may send more.
    Drain,
    /// Call [`TxnCore::tick`] at this instant.
    WakeAt(Instant),
}

/// What the core needs to know of the rest of the producer at each step.
#[derive(Clone, Debug, Default)]
pub(crate) struct TxnView {
    /// The first record of the open transaction that failed, as the transaction's error.
    pub(crate) failure: Option<TransactionError>,
    /// Records of the transaction without an outcome yet (pending, queued or in flight).
    pub(crate) busy: bool,
    /// The sender's producer id and epoch.
    pub(crate) producer: Option<(i64, i16)>,
    /// A batch with a sequence was failed unwritten-or-unknown ([`SenderCore::sequence_gap`]):
    /// an abort must bump the epoch.
    ///
    /// [`SenderCore::sequence_gap`]: crate::core::sender::SenderCore::sequence_gap
    pub(crate) sequence_gap: bool,
}

impl TxnView {
    /// The view of the producer a shell holds: its sender core and the shared completion
    /// context (where failed records record themselves and pending records are counted).
    pub(crate) fn of(core: &SenderCore, shared: &Shared) -> TxnView {
        TxnView {
            failure: shared.txn.first_failure().map(|e| txn_error_of(&e)),
            busy: core.has_in_flight() || shared.pending.get() > 0 || core.has_queued(),
            producer: core.producer(),
            sequence_gap: core.sequence_gap(),
        }
    }
}

/// The limits of the coordinator calls (from the producer's configuration).
#[derive(Clone, Debug)]
pub(crate) struct TxnRules {
    /// `delivery.timeout.ms`: how long one coordinator call is retried.
    pub(crate) call_timeout: Duration,
    /// `retry.backoff.ms` / `retry.backoff.max.ms`.
    pub(crate) retry_backoff: Duration,
    pub(crate) retry_backoff_max: Duration,
    /// `transaction.timeout.ms`, for InitProducerId.
    pub(crate) transaction_timeout: Duration,
}

/// How long a commit or abort waits before looking again whether every record of the
/// transaction has its outcome.
const END_POLL: Duration = Duration::from_millis(10);

/// Where one coordinator call is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// FindCoordinator is out.
    Finding,
    /// The request is out.
    Calling,
    /// Waiting to retry.
    Backoff(Instant),
}

/// One coordinator call with its retries.
#[derive(Debug)]
struct CoordCall {
    request: CoordRequest,
    key_type: i8,
    key: Arc<str>,
    /// The token of the FindCoordinator or request out (answers with another are stale).
    token: u64,
    attempt: u32,
    started: Instant,
    phase: Phase,
}

impl CoordCall {
    fn api(&self) -> TxnApi {
        self.request.api()
    }
}

/// What one answer means for its call.
enum Outcome {
    /// Retry after the backoff for `code`; `find`: look the coordinator up again first.
    Retry { code: i16, find: bool },
    /// The call ended (InitProducerId's id and epoch with it).
    Done(Result<Option<(i64, i16)>, TransactionError>),
}

/// The handle's running call and what is left of it.
#[derive(Debug)]
enum Job {
    Init,
    /// EndTxn (skipped when the coordinator has no transaction), then, with `bump`, a new
    /// epoch (KIP-360: the failed records may have left sequence gaps).
    End {
        bump: bool,
        producer: (i64, i16),
        /// EndTxn answered (or was not needed): what is out is the bump.
        ended: bool,
    },
    /// AddOffsetsToTxn (once per transaction), then TxnOffsetCommit to the group coordinator.
    Offsets {
        producer: (i64, i16),
        offsets: Vec<(TopicPartition, i64)>,
        group: ConsumerGroupMetadata,
        /// AddOffsetsToTxn answered (or was not needed): what is out is the offset commit.
        added: bool,
    },
}

#[derive(Debug)]
struct Running<R> {
    op: TxnOp,
    waiters: Vec<R>,
    job: Job,
    call: Option<CoordCall>,
}

/// Which of the two calls an answer is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Slot {
    Running,
    Adding,
}

/// See the module docs.
pub(crate) struct TxnCore<R> {
    id: Arc<str>,
    rules: TxnRules,
    // Guards the following: the state machine and the partitions change only in this core.
    pub(crate) sm: TxnStateMachine,
    pub(crate) partitions: TxnPartitions,
    /// Coordinators found so far: (key type, key) → (node id, address).
    coordinators: HashMap<(i8, Arc<str>), (i32, Arc<str>)>,
    /// The handle's calls not started yet, in order, each with its callers (a call repeated
    /// while it waits here joins it).
    queue: VecDeque<(TxnRequest, Vec<R>)>,
    running: Option<Running<R>>,
    /// AddPartitionsToTxn out, with the partitions it adds.
    adding: Option<(CoordCall, Vec<TopicPartition>)>,
    /// The last call that ended, its result and its callers' receipts: the result of a call
    /// repeated after it ended is this one if no caller took it (they timed out).
    last_done: Option<(TxnOp, Result<(), TransactionError>, Vec<Receipt>)>,
    /// A commit or abort waits for records to have their outcome: look again then.
    end_poll: Option<Instant>,
    next_token: u64,
}

impl<R: TxnWaiter> TxnCore<R> {
    pub(crate) fn new(id: &str, rules: TxnRules) -> Self {
        TxnCore {
            id: id.into(),
            rules,
            sm: TxnStateMachine::new(),
            partitions: TxnPartitions::default(),
            coordinators: HashMap::new(),
            queue: VecDeque::new(),
            running: None,
            adding: None,
            last_done: None,
            end_poll: None,
            next_token: 1,
        }
    }

    /// The transactional id.
    pub(crate) fn id(&self) -> &Arc<str> {
        &self.id
    }

    /// EndTxn (commit or abort) is running: nothing may be added to or sent in the transaction.
    pub(crate) fn ending(&self) -> bool {
        matches!(
            &self.running,
            Some(Running {
                op: TxnOp::Commit | TxnOp::Abort,
                ..
            })
        )
    }

    /// Whether a batch arriving at the sender now may join the transaction; the error it fails
    /// with otherwise ([`TxnStateMachine::batch_rule`]; a batch arriving while EndTxn is out is
    /// too late for this transaction).
    pub(crate) fn admit(&self) -> Result<(), TransactionError> {
        match self.sm.batch_rule(self.ending()) {
            BatchRule::Send => Ok(()),
            BatchRule::Fail(e) => Err(e),
            BatchRule::Wait => Err(TransactionError::InvalidState {
                operation: "send",
                state: self.sm.state(),
            }),
        }
    }

    /// A call of the handle.
    pub(crate) fn request(
        &mut self,
        now: Instant,
        request: TxnRequest,
        reply: R,
        view: &TxnView,
        out: &mut Vec<Action<R>>,
    ) {
        let op = request.op();
        let joins = request.joins();
        if let Some(r) = self.running.as_mut().filter(|r| joins && r.op == op) {
            return r.waiters.push(reply);
        }
        // Also while it waits for its turn (a commit waits for its records): else each
        // repetition would run after it, and find the transaction ended.
        let same = |queued: &TxnRequest| queued.op() == op && queued.joins();
        if let Some((_, waiters)) = self.queue.iter_mut().find(|(q, _)| joins && same(q)) {
            return waiters.push(reply);
        }
        self.queue.push_back((request, vec![reply]));
        self.pump(now, view, out);
    }

    /// Timers: retries whose backoff passed, a commit waiting for its records.
    pub(crate) fn tick(&mut self, now: Instant, view: &TxnView, out: &mut Vec<Action<R>>) {
        for slot in [Slot::Adding, Slot::Running] {
            let due = self
                .call(slot)
                .is_some_and(|c| matches!(c.phase, Phase::Backoff(t) if t <= now));
            if due {
                self.go(slot, out);
            }
        }
        if self.end_poll.is_some_and(|t| t <= now) {
            self.end_poll = None;
            self.pump(now, view, out);
        }
    }

    /// The earliest instant [`TxnCore::tick`] has something to do (the shell schedules each
    /// `WakeAt` instead).
    #[cfg(test)]
    pub(crate) fn next_wake(&self) -> Option<Instant> {
        let backoff = |c: &CoordCall| match c.phase {
            Phase::Backoff(t) => Some(t),
            _ => None,
        };
        [
            self.call(Slot::Adding).and_then(backoff),
            self.call(Slot::Running).and_then(backoff),
            self.end_poll,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Sends AddPartitionsToTxn for the partitions the drain found new (one request at a
    /// time), if the transaction may take batches now.
    pub(crate) fn add_partitions(
        &mut self,
        now: Instant,
        view: &TxnView,
        out: &mut Vec<Action<R>>,
    ) {
        let Some(producer) = view.producer else {
            return;
        };
        if self.adding.is_some()
            || self.partitions.pending.is_empty()
            || self.sm.batch_rule(self.ending()) != BatchRule::Send
        {
            return;
        }
        let partitions: Vec<TopicPartition> = std::mem::take(&mut self.partitions.pending)
            .into_iter()
            .collect();
        let call = new_call(
            &self.id,
            now,
            CoordRequest::AddPartitions {
                producer,
                partitions: partitions.clone(),
            },
        );
        self.adding = Some((call, partitions));
        self.go(Slot::Adding, out);
    }

    /// The answer to a FindCoordinator asked for with `token`.
    pub(crate) fn found(
        &mut self,
        now: Instant,
        token: u64,
        found: Found,
        view: &TxnView,
        out: &mut Vec<Action<R>>,
    ) {
        let Some(slot) = self.slot_of(token, Phase::Finding) else {
            return;
        };
        let outcome = match found {
            Found::Node { node, address } => {
                if let Some(c) = self.call(slot) {
                    let key = (c.key_type, c.key.clone());
                    self.coordinators.insert(key, (node, address));
                }
                return self.go(slot, out);
            }
            Found::Code(code) => self.outcome_of_code(slot, code),
            Found::Malformed => Outcome::Retry {
                code: 0,
                find: true,
            },
            Found::Lost => Outcome::Retry {
                code: 0,
                find: false,
            },
            Found::Fatal(reason) => Outcome::Done(Err(self.fatal(slot, &reason))),
        };
        self.outcome(now, slot, outcome, view, out);
    }

    /// The answer to a coordinator request sent with `token`.
    pub(crate) fn answered(
        &mut self,
        now: Instant,
        token: u64,
        answer: Answer,
        view: &TxnView,
        out: &mut Vec<Action<R>>,
    ) {
        let Some(slot) = self.slot_of(token, Phase::Calling) else {
            return;
        };
        let outcome = match answer {
            Answer::Codes(codes) => {
                let api = self.call(slot).map(CoordCall::api);
                match first_error(api == Some(TxnApi::AddPartitions), &codes) {
                    0 => Outcome::Done(Ok(None)),
                    code => self.outcome_of_code(slot, code),
                }
            }
            Answer::ProducerId { code: 0, id, epoch } if id < 0 || epoch < 0 => {
                let reason = format!("InitProducerId answered producer id {id} epoch {epoch}");
                Outcome::Done(Err(TransactionError::Fatal {
                    reason: reason.into(),
                }))
            }
            Answer::ProducerId { code: 0, id, epoch } => Outcome::Done(Ok(Some((id, epoch)))),
            Answer::ProducerId { code, .. } => self.outcome_of_code(slot, code),
            Answer::Lost => Outcome::Retry {
                code: 0,
                find: true,
            },
            Answer::Fatal(reason) => Outcome::Done(Err(self.fatal(slot, &reason))),
        };
        self.outcome(now, slot, outcome, view, out);
    }

    fn call(&self, slot: Slot) -> Option<&CoordCall> {
        match slot {
            Slot::Running => self.running.as_ref().and_then(|r| r.call.as_ref()),
            Slot::Adding => self.adding.as_ref().map(|(c, _)| c),
        }
    }

    fn call_mut(&mut self, slot: Slot) -> Option<&mut CoordCall> {
        match slot {
            Slot::Running => self.running.as_mut().and_then(|r| r.call.as_mut()),
            Slot::Adding => self.adding.as_mut().map(|(c, _)| c),
        }
    }

    fn slot_of(&self, token: u64, phase: Phase) -> Option<Slot> {
        [Slot::Running, Slot::Adding].into_iter().find(|s| {
            self.call(*s)
                .is_some_and(|c| c.token == token && c.phase == phase)
        })
    }

    /// Sends the call's request to its coordinator, or FindCoordinator first if it is not
    /// known.
    fn go(&mut self, slot: Slot, out: &mut Vec<Action<R>>) {
        let token = self.next_token;
        self.next_token = self.next_token.wrapping_add(1).max(1);
        let coordinators = &self.coordinators;
        let call = match slot {
            Slot::Running => self.running.as_mut().and_then(|r| r.call.as_mut()),
            Slot::Adding => self.adding.as_mut().map(|(c, _)| c),
        };
        let Some(call) = call else { return };
        call.token = token;
        match coordinators.get(&(call.key_type, call.key.clone())) {
            Some((node, address)) => {
                call.phase = Phase::Calling;
                out.push(Action::Call {
                    token,
                    node: *node,
                    address: address.clone(),
                    request: call.request.clone(),
                });
            }
            None => {
                call.phase = Phase::Finding;
                out.push(Action::FindCoordinator {
                    token,
                    key_type: call.key_type,
                    key: call.key.clone(),
                });
            }
        }
    }

    fn fatal(&self, slot: Slot, reason: &str) -> TransactionError {
        let api = self.call(slot).map(CoordCall::api);
        TransactionError::Fatal {
            reason: format!("{api:?}: {reason}").into(),
        }
    }

    /// Java's handling of the broker's code for this call ([`classify`]).
    fn outcome_of_code(&self, slot: Slot, code: i16) -> Outcome {
        let Some(api) = self.call(slot).map(CoordCall::api) else {
            return Outcome::Retry { code, find: false };
        };
        let named = || format!("{api:?}: {}", KafkaCode(code));
        match classify(api, code) {
            TxnOutcome::Ok => Outcome::Retry { code, find: false },
            TxnOutcome::Retry { find_coordinator } => Outcome::Retry {
                code,
                find: find_coordinator,
            },
            TxnOutcome::Fenced => Outcome::Done(Err(TransactionError::Fenced {
                code: KafkaCode(code),
            })),
            TxnOutcome::Abortable { .. } => Outcome::Done(Err(TransactionError::Abortable {
                reason: named().into(),
            })),
            TxnOutcome::Fatal => Outcome::Done(Err(TransactionError::Fatal {
                reason: named().into(),
            })),
        }
    }

    /// Carries out what an answer means: a retry after its backoff (or `Timeout` past the
    /// call's `delivery.timeout.ms`), or the end of the call.
    fn outcome(
        &mut self,
        now: Instant,
        slot: Slot,
        outcome: Outcome,
        view: &TxnView,
        out: &mut Vec<Action<R>>,
    ) {
        let res = match outcome {
            Outcome::Done(res) => res,
            Outcome::Retry { code, find } => {
                let rules = self.rules.clone();
                let Some(call) = self.call_mut(slot) else {
                    return;
                };
                let key = (call.key_type, call.key.clone());
                call.attempt = call.attempt.saturating_add(1);
                // CONCURRENT_TRANSACTIONS: the previous transaction is still ending; Java retries
                // it sooner.
                let base = if ErrorCode::from_code(code) == ErrorCode::ConcurrentTransactions {
                    Duration::from_millis(20).min(rules.retry_backoff)
                } else {
                    rules.retry_backoff
                };
                let wait = crate::backoff::exponential(base, rules.retry_backoff_max, call.attempt);
                let deadline = crate::time::deadline_after(call.started, rules.call_timeout);
                let (api, attempt, started) = (call.api(), call.attempt, call.started);
                tracing::debug!(
                    ?api,
                    code = %KafkaCode(code),
                    find_coordinator = find,
                    attempt,
                    "transactional call retried"
                );
                let at = now + wait;
                if at >= deadline {
                    Err(TransactionError::Timeout {
                        operation: api.operation(),
                        waited_ms: now.saturating_duration_since(started).as_millis() as u64,
                    })
                } else {
                    call.phase = Phase::Backoff(at);
                    if find {
                        self.coordinators.remove(&key);
                    }
                    out.push(Action::WakeAt(at));
                    return;
                }
            }
        };
        match slot {
            Slot::Adding => self.added(res.map(|_| ()), out),
            Slot::Running => self.step_done(now, res, view, out),
        }
    }

    /// AddPartitionsToTxn ended.
    fn added(&mut self, res: Result<(), TransactionError>, out: &mut Vec<Action<R>>) {
        let Some((_, partitions)) = self.adding.take() else {
            return;
        };
        match res {
            Ok(()) => {
                tracing::debug!(
                    partitions = partitions.len(),
                    "partitions added to the transaction"
                );
                self.partitions.added.extend(partitions);
            }
            Err(e) => {
                tracing::warn!(error = %e, "AddPartitionsToTxn failed");
                let e = txn_error_of(&ProduceError::Transaction(e));
                self.sm.fail(e.clone());
                if matches!(e, TransactionError::Fenced { .. }) {
                    out.push(Action::Fenced);
                }
                out.push(Action::FailPartitions(
                    partitions,
                    ProduceError::Transaction(e),
                ));
                out.push(Action::Publish(self.sm.state()));
            }
        }
        out.push(Action::Drain);
    }

    /// A step of the running call ended: the next step, or the end of the call.
    fn step_done(
        &mut self,
        now: Instant,
        res: Result<Option<(i64, i16)>, TransactionError>,
        view: &TxnView,
        out: &mut Vec<Action<R>>,
    ) {
        let (id, timeout_ms) = (self.id.clone(), self.timeout_ms());
        let Some(running) = self.running.as_mut() else {
            return;
        };
        running.call = None;
        let op = running.op;
        let next = match (&mut running.job, res) {
            (Job::Init, Ok(Some((id, epoch)))) => {
                out.push(Action::ProducerId(id, epoch));
                None
            }
            (Job::Init, Ok(None)) => {
                out.push(Action::ProducerIdUnknown);
                Some(Err(TransactionError::Fatal {
                    reason: "InitProducerId answered no producer id".into(),
                }))
            }
            (Job::Init, Err(e)) => {
                out.push(Action::ProducerIdUnknown);
                Some(Err(e))
            }
            (
                Job::End {
                    bump,
                    producer,
                    ended,
                },
                Ok(pid),
            ) => {
                if *ended {
                    if let Some((id, epoch)) = pid {
                        out.push(Action::ProducerId(id, epoch));
                    }
                    None
                } else {
                    // The coordinator ended it: a retried call skips EndTxn.
                    *ended = true;
                    self.partitions.clear();
                    if *bump {
                        let request = CoordRequest::InitProducerId {
                            current: Some(*producer),
                            transaction_timeout_ms: timeout_ms,
                        };
                        running.call = Some(new_call(&id, now, request));
                        return self.go(Slot::Running, out);
                    }
                    None
                }
            }
            (Job::End { .. }, Err(e)) => Some(Err(e)),
            (
                Job::Offsets {
                    producer,
                    offsets,
                    group,
                    added,
                },
                Ok(_),
            ) => {
                if *added {
                    None
                } else {
                    // AddOffsetsToTxn opens the transaction on the coordinator even if the
                    // offset commit then fails: an EndTxn is needed either way.
                    *added = true;
                    self.partitions.offsets_added = true;
                    let request = CoordRequest::TxnOffsetCommit {
                        producer: *producer,
                        offsets: std::mem::take(offsets),
                        group: group.clone(),
                    };
                    running.call = Some(new_call(&id, now, request));
                    return self.go(Slot::Running, out);
                }
            }
            (Job::Offsets { .. }, Err(e)) => Some(Err(e)),
        };
        self.finish(now, op, next.unwrap_or(Ok(())), view, out);
    }

    fn timeout_ms(&self) -> i32 {
        self.rules
            .transaction_timeout
            .as_millis()
            .min(i32::MAX as u128) as i32
    }

    /// The handle's running call ended: state, replies, the next call.
    fn finish(
        &mut self,
        now: Instant,
        op: TxnOp,
        res: Result<(), TransactionError>,
        view: &TxnView,
        out: &mut Vec<Action<R>>,
    ) {
        let mut view = view.clone();
        match &res {
            Ok(()) => {
                if matches!(op, TxnOp::Init | TxnOp::Commit | TxnOp::Abort) {
                    self.sm.complete();
                }
                if matches!(op, TxnOp::Commit | TxnOp::Abort) {
                    self.partitions.clear();
                    out.push(Action::ClearFailure);
                    view.failure = None;
                }
            }
            Err(e) => {
                tracing::warn!(
                    transactional_id = %self.id,
                    operation = op.name(),
                    error = %e,
                    "transactional call failed"
                );
                self.sm.fail(e.clone());
            }
        }
        let waiters = self.running.take().map(|r| r.waiters).unwrap_or_default();
        // Kept for a repeated call, which gets it unless a caller took it: as Java, a call
        // repeated after one returned its result is judged by the state.
        let receipts = waiters.iter().map(|w| w.receipt().clone()).collect();
        out.push(Action::Publish(self.sm.state()));
        for w in waiters {
            out.push(Action::Reply(w, res.clone()));
        }
        if let Err(TransactionError::Fenced { .. }) = &res {
            out.push(Action::Fenced);
        }
        self.last_done = Some((op, res, receipts));
        self.pump(now, &view, out);
        out.push(Action::Drain);
    }

    /// Runs queued calls of the handle until one needs the coordinator (or none is left).
    fn pump(&mut self, now: Instant, view: &TxnView, out: &mut Vec<Action<R>>) {
        let mut view = view.clone();
        loop {
            if self.running.is_some() {
                return;
            }
            let Some((req, replies)) = self.queue.pop_front() else {
                return;
            };
            let op = req.op();
            // A commit/abort/init repeated after it ended and no caller took its result (they
            // timed out): that result, until a caller takes it.
            if matches!(
                req,
                TxnRequest::Init
                    | TxnRequest::Commit
                    | TxnRequest::PrepareCommit
                    | TxnRequest::Abort
                    | TxnRequest::PrepareAbort
            ) && self.sm.state() == TxnState::Ready
            {
                if let Some((done, res, receipts)) = self.last_done.as_mut() {
                    if *done == op && !receipts.iter().any(Receipt::taken) {
                        let res = res.clone();
                        // The final step of the repeated call is its caller now (`Prepare*`
                        // only peeks): once it takes the result, a later call is judged by
                        // the state.
                        if matches!(
                            req,
                            TxnRequest::Init | TxnRequest::Commit | TxnRequest::Abort
                        ) {
                            *receipts = replies.iter().map(|r| r.receipt().clone()).collect();
                        }
                        out.push(Action::Publish(self.sm.state()));
                        reply_all(out, replies, res);
                        continue;
                    }
                }
            }
            if !matches!(req, TxnRequest::Commit | TxnRequest::Abort) {
                self.last_done = None;
            }
            match req {
                TxnRequest::Begin => {
                    let res = self.sm.start(TxnOp::Begin).map(|_| ());
                    if res.is_ok() {
                        self.partitions.clear();
                        out.push(Action::ClearFailure);
                        view.failure = None;
                    }
                    out.push(Action::Publish(self.sm.state()));
                    reply_all(out, replies, res);
                }
                TxnRequest::PrepareCommit => {
                    if let Some(e) = view.failure.clone() {
                        if self.sm.state() == TxnState::InTransaction {
                            self.sm.fail(e);
                        }
                    }
                    let res = self.sm.start(TxnOp::Commit).map(|_| ());
                    out.push(Action::Publish(self.sm.state()));
                    reply_all(out, replies, res);
                }
                TxnRequest::PrepareAbort => {
                    let res = self.sm.start(TxnOp::Abort).map(|_| ());
                    out.push(Action::Publish(self.sm.state()));
                    reply_all(out, replies, res);
                    if self.sm.state() == TxnState::Aborting {
                        // Batches not sent yet will not be: Java's abortUndrainedBatches.
                        out.push(Action::FailQueued(ProduceError::Transaction(
                            TransactionError::Aborted,
                        )));
                    }
                }
                TxnRequest::Commit | TxnRequest::Abort => {
                    let commit = matches!(req, TxnRequest::Commit);
                    let expected = if commit {
                        TxnState::Committing
                    } else {
                        TxnState::Aborting
                    };
                    if self.sm.state() != expected {
                        out.push(Action::Publish(self.sm.state()));
                        reply_all(out, replies, Err(self.sm.refuse(op)));
                        continue;
                    }
                    if commit {
                        if let Some(e) = view.failure.clone() {
                            // A failed record's error is fatal or abortable (`txn_error_of`):
                            // the state leaves `Committing`, and the commit fails with it.
                            self.sm.fail(e);
                            out.push(Action::Publish(self.sm.state()));
                            reply_all(out, replies, Err(self.sm.refuse(op)));
                            continue;
                        }
                    }
                    // EndTxn only once every record of the transaction has its result: the
                    // handle flushed, but a `send` that passed its state check before the
                    // commit may still be enqueueing (Java's `hasIncomplete`), and an
                    // AddPartitionsToTxn may still be out. Bounded: records fail by
                    // delivery.timeout.ms at the latest (and then the commit fails).
                    if self.adding.is_some() || view.busy {
                        self.queue.push_front((req, replies));
                        let at = now + END_POLL;
                        self.end_poll = Some(at);
                        out.push(Action::WakeAt(at));
                        return;
                    }
                    let producer = view.producer.unwrap_or((-1, -1));
                    let started = self.partitions.started();
                    // A new epoch restarts every sequence (KIP-360): after a failed record, and
                    // after the abort failed a batch that had a sequence (sent once, its answer
                    // lost: the next transaction's batches would find a gap).
                    let bump = !commit && (view.failure.is_some() || view.sequence_gap);
                    let (request, ended) = if started {
                        (Some(CoordRequest::EndTxn { producer, commit }), false)
                    } else if bump {
                        let request = CoordRequest::InitProducerId {
                            current: Some(producer),
                            transaction_timeout_ms: self.timeout_ms(),
                        };
                        (Some(request), true)
                    } else {
                        (None, true)
                    };
                    let call = request.map(|r| new_call(&self.id, now, r));
                    let go = call.is_some();
                    self.running = Some(Running {
                        op,
                        waiters: replies,
                        job: Job::End {
                            bump,
                            producer,
                            ended,
                        },
                        call,
                    });
                    if go {
                        self.go(Slot::Running, out);
                    } else {
                        self.finish(now, op, Ok(()), &view, out);
                    }
                    return;
                }
                TxnRequest::Init => {
                    if let Err(e) = self.sm.start(TxnOp::Init) {
                        out.push(Action::Publish(self.sm.state()));
                        reply_all(out, replies, Err(e));
                        continue;
                    }
                    out.push(Action::Publish(self.sm.state()));
                    out.push(Action::ProducerIdInitializing);
                    let request = CoordRequest::InitProducerId {
                        current: None,
                        transaction_timeout_ms: self.timeout_ms(),
                    };
                    let call = new_call(&self.id, now, request);
                    self.running = Some(Running {
                        op,
                        waiters: replies,
                        job: Job::Init,
                        call: Some(call),
                    });
                    self.go(Slot::Running, out);
                    return;
                }
                TxnRequest::SendOffsets { offsets, group } => {
                    if let Err(e) = self.sm.start(TxnOp::SendOffsets) {
                        out.push(Action::Publish(self.sm.state()));
                        reply_all(out, replies, Err(e));
                        continue;
                    }
                    let producer = view.producer.unwrap_or((-1, -1));
                    let added = self.partitions.offsets_added;
                    let request = if added {
                        CoordRequest::TxnOffsetCommit {
                            producer,
                            offsets: offsets.clone(),
                            group: group.clone(),
                        }
                    } else {
                        CoordRequest::AddOffsets {
                            producer,
                            group: group.group_id.as_str().into(),
                        }
                    };
                    let call = new_call(&self.id, now, request);
                    self.running = Some(Running {
                        op,
                        waiters: replies,
                        job: Job::Offsets {
                            producer,
                            offsets,
                            group,
                            added,
                        },
                        call: Some(call),
                    });
                    self.go(Slot::Running, out);
                    return;
                }
            }
        }
    }
}

/// The result of a call, for each of its callers.
fn reply_all<R>(out: &mut Vec<Action<R>>, replies: Vec<R>, res: Result<(), TransactionError>) {
    for r in replies {
        out.push(Action::Reply(r, res.clone()));
    }
}

/// A coordinator call of the transaction `id`, not sent yet.
fn new_call(id: &Arc<str>, now: Instant, request: CoordRequest) -> CoordCall {
    let (key_type, key) = match &request {
        CoordRequest::TxnOffsetCommit { group, .. } => {
            (KEY_GROUP, Arc::<str>::from(group.group_id.as_str()))
        }
        _ => (KEY_TRANSACTION, id.clone()),
    };
    CoordCall {
        request,
        key_type,
        key,
        token: 0,
        attempt: 0,
        started: now,
        phase: Phase::Finding,
    }
}

/// The error an answer's codes mean: the first that is not 0; for AddPartitionsToTxn the
/// first real one (`OPERATION_NOT_ATTEMPTED` only echoes another partition's).
fn first_error(add_partitions: bool, codes: &[i16]) -> i16 {
    let mut first = 0;
    for &c in codes {
        let echo = ErrorCode::from_code(first) == ErrorCode::OperationNotAttempted;
        if c != 0 && (first == 0 || (add_partitions && echo)) {
            first = c;
        }
    }
    first
}

impl<R: TxnWaiter> DrainGate for Option<TxnCore<R>> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codes::ErrorCode as E;

    /// A caller: its receipt is taken once it got its answer (one that gave up never does).
    #[derive(Debug, Clone)]
    struct Caller(u32, Receipt);

    impl TxnWaiter for Caller {
        fn receipt(&self) -> &Receipt {
            &self.1
        }
    }

    fn caller(n: u32) -> Caller {
        Caller(n, Receipt::default())
    }

    fn core() -> (TxnCore<Caller>, Instant) {
        let rules = TxnRules {
            call_timeout: Duration::from_millis(1_000),
            retry_backoff: Duration::from_millis(100),
            retry_backoff_max: Duration::from_millis(100),
            transaction_timeout: Duration::from_secs(60),
        };
        (TxnCore::new("tx", rules), Instant::now())
    }

    fn idle() -> TxnView {
        TxnView {
            failure: None,
            busy: false,
            producer: Some((7, 0)),
            sequence_gap: false,
        }
    }

    /// The calls the actions ask for: (token, request, or None for FindCoordinator).
    fn calls(out: &[Action<Caller>]) -> Vec<(u64, Option<CoordRequest>)> {
        out.iter()
            .filter_map(|a| match a {
                Action::FindCoordinator { token, .. } => Some((*token, None)),
                Action::Call { token, request, .. } => Some((*token, Some(request.clone()))),
                _ => None,
            })
            .collect()
    }

    fn replies(out: &[Action<Caller>]) -> Vec<(u32, Result<(), TransactionError>)> {
        out.iter()
            .filter_map(|a| match a {
                Action::Reply(c, r) => Some((c.0, r.clone())),
                _ => None,
            })
            .collect()
    }

    fn found(t: &mut TxnCore<Caller>, now: Instant, out: &mut Vec<Action<Caller>>) -> u64 {
        let (token, req) = calls(out).pop().expect("a call");
        assert!(req.is_none(), "FindCoordinator first");
        out.clear();
        let node = Found::Node {
            node: 1,
            address: "b1:9092".into(),
        };
        t.found(now, token, node, &idle(), out);
        calls(out).pop().expect("the request").0
    }

    /// init, begin, a partition added, commit: the whole happy path, with the coordinator
    /// found once and cached.
    fn ready_in_transaction(t: &mut TxnCore<Caller>, now: Instant) {
        let mut out = Vec::new();
        t.request(now, TxnRequest::Init, caller(1), &idle(), &mut out);
        assert!(out
            .iter()
            .any(|a| matches!(a, Action::ProducerIdInitializing)));
        let token = found(t, now, &mut out);
        out.clear();
        let answer = Answer::ProducerId {
            code: 0,
            id: 7,
            epoch: 0,
        };
        t.answered(now, token, answer, &idle(), &mut out);
        assert!(out.iter().any(|a| matches!(a, Action::ProducerId(7, 0))));
        assert_eq!(replies(&out), vec![(1, Ok(()))]);
        assert_eq!(t.sm.state(), TxnState::Ready);
        out.clear();
        t.request(now, TxnRequest::Begin, caller(2), &idle(), &mut out);
        assert_eq!(replies(&out), vec![(2, Ok(()))]);
        assert_eq!(t.sm.state(), TxnState::InTransaction);
    }

    #[test]
    fn a_transaction_commits_through_its_coordinator() {
        let (mut t, now) = core();
        ready_in_transaction(&mut t, now);
        let tp = TopicPartition::new("t", 0);
        let mut gate = Some(t);
        assert!(!gate.partition_ready(&tp), "not added yet");
        let mut t = gate.take().expect("core");
        let mut out = Vec::new();
        t.add_partitions(now, &idle(), &mut out);
        let [(token, Some(CoordRequest::AddPartitions { partitions, .. }))] = &calls(&out)[..]
        else {
            panic!("AddPartitionsToTxn to the cached coordinator: {out:?}");
        };
        assert_eq!(partitions, &vec![tp.clone()]);
        out.clear();
        t.answered(now, *token, Answer::Codes(vec![0]), &idle(), &mut out);
        assert!(out.iter().any(|a| matches!(a, Action::Drain)));
        let mut gate = Some(t);
        assert!(gate.partition_ready(&tp));
        let mut t = gate.take().expect("core");
        out.clear();
        t.request(now, TxnRequest::PrepareCommit, caller(3), &idle(), &mut out);
        assert_eq!(replies(&out), vec![(3, Ok(()))]);
        out.clear();
        // Records still without outcome: EndTxn waits.
        let busy = TxnView {
            busy: true,
            ..idle()
        };
        t.request(now, TxnRequest::Commit, caller(4), &busy, &mut out);
        assert!(calls(&out).is_empty());
        assert!(t.ending() || t.next_wake().is_some());
        out.clear();
        let later = now + END_POLL;
        t.tick(later, &idle(), &mut out);
        let [(token, Some(CoordRequest::EndTxn { commit: true, .. }))] = &calls(&out)[..] else {
            panic!("EndTxn: {out:?}");
        };
        assert!(t.ending());
        assert_eq!(t.admit().map_err(|_| ()), Err(()), "too late for this one");
        out.clear();
        t.answered(later, *token, Answer::Codes(vec![0]), &idle(), &mut out);
        assert_eq!(replies(&out), vec![(4, Ok(()))]);
        assert!(out.iter().any(|a| matches!(a, Action::ClearFailure)));
        assert_eq!(t.sm.state(), TxnState::Ready);
        assert!(!t.partitions.started());
    }

    #[test]
    fn a_moved_coordinator_is_found_again_after_the_backoff_and_retries_time_out() {
        let (mut t, now) = core();
        ready_in_transaction(&mut t, now);
        let mut out = Vec::new();
        t.partitions.offsets_added = true; // the coordinator has the transaction
        t.request(now, TxnRequest::PrepareAbort, caller(3), &idle(), &mut out);
        out.clear();
        t.request(now, TxnRequest::Abort, caller(4), &idle(), &mut out);
        let (token, _) = calls(&out)[0].clone();
        out.clear();
        // NOT_COORDINATOR: no call until the backoff passed, then FindCoordinator again.
        t.answered(
            now,
            token,
            Answer::Codes(vec![E::NotCoordinator.code()]),
            &idle(),
            &mut out,
        );
        assert!(calls(&out).is_empty());
        let at = t.next_wake().expect("a retry");
        assert!(at > now);
        t.tick(at - Duration::from_millis(1), &idle(), &mut out);
        assert!(calls(&out).is_empty(), "{out:?}");
        t.tick(at, &idle(), &mut out);
        let (token2, req) = calls(&out).pop().expect("FindCoordinator");
        assert!(req.is_none());
        // The first token is stale now.
        out.clear();
        t.answered(at, token, Answer::Codes(vec![0]), &idle(), &mut out);
        assert!(out.is_empty(), "a stale answer does nothing: {out:?}");
        // COORDINATOR_NOT_AVAILABLE until the call's delivery.timeout.ms: Timeout.
        let mut now2 = at;
        let mut token = token2;
        let res = loop {
            out.clear();
            t.found(
                now2,
                token,
                Found::Code(E::CoordinatorNotAvailable.code()),
                &idle(),
                &mut out,
            );
            if let Some((_, r)) = replies(&out).pop() {
                break r;
            }
            now2 = t.next_wake().expect("retried");
            out.clear();
            t.tick(now2, &idle(), &mut out);
            token = calls(&out).pop().expect("asked again").0;
        };
        assert!(
            matches!(res, Err(TransactionError::Timeout { .. })),
            "{res:?}"
        );
        assert!(now2.saturating_duration_since(now) <= Duration::from_millis(1_000));
    }

    #[test]
    fn a_call_repeated_while_it_runs_joins_and_after_it_ended_untaken_gets_its_result() {
        let (mut t, now) = core();
        let mut out = Vec::new();
        let first = caller(1);
        t.request(now, TxnRequest::Init, first, &idle(), &mut out);
        // The caller gives up (max.block.ms) and calls again: one InitProducerId.
        t.request(now, TxnRequest::Init, caller(2), &idle(), &mut out);
        assert_eq!(calls(&out).len(), 1, "joined: {out:?}");
        let token = found(&mut t, now, &mut out);
        out.clear();
        let answer = Answer::ProducerId {
            code: 0,
            id: 7,
            epoch: 0,
        };
        t.answered(now, token, answer, &idle(), &mut out);
        assert_eq!(replies(&out), vec![(1, Ok(())), (2, Ok(()))]);
        // Nobody took it (both had given up): the next init gets that result, and again
        // while its callers do not take it either; once one does, a call is judged by the
        // state.
        for n in [3, 4] {
            out.clear();
            t.request(now, TxnRequest::Init, caller(n), &idle(), &mut out);
            assert_eq!(replies(&out), vec![(n, Ok(()))]);
            assert!(calls(&out).is_empty());
        }
        out.clear();
        let taker = caller(5);
        t.request(now, TxnRequest::Init, taker.clone(), &idle(), &mut out);
        assert_eq!(replies(&out), vec![(5, Ok(()))]);
        taker.1.take();
        out.clear();
        t.request(now, TxnRequest::Init, caller(6), &idle(), &mut out);
        assert!(matches!(
            &replies(&out)[..],
            [(6, Err(TransactionError::InvalidState { .. }))]
        ));
    }

    /// Found by `tests/transactions.rs::timed_out_commit_is_joined_by_the_next_call` in CI, then
    /// by the transactional simulation once it delivered answers late: the core judged
    /// "heard" when it answered (the caller's receiver was still there), the caller gave up
    /// before the answer arrived, and the repeated commit found the transaction ended
    /// (`InvalidState`) instead of the commit's result. Only the receiver knows it got the
    /// answer; until it says so, the result is kept.
    #[test]
    fn a_result_answered_to_a_caller_that_gave_up_before_it_arrived_reaches_the_repeated_call() {
        let (mut t, now) = core();
        ready_in_transaction(&mut t, now);
        t.partitions.added.insert(TopicPartition::new("t", 0));
        let mut out = Vec::new();
        t.request(now, TxnRequest::PrepareCommit, caller(3), &idle(), &mut out);
        t.request(now, TxnRequest::Commit, caller(4), &idle(), &mut out);
        let [(token, Some(CoordRequest::EndTxn { .. }))] = &calls(&out)[..] else {
            panic!("one EndTxn: {out:?}");
        };
        let token = *token;
        out.clear();
        // Answered while caller 4 still waited; it gave up before the answer reached it.
        t.answered(now, token, Answer::Codes(vec![0]), &idle(), &mut out);
        assert_eq!(replies(&out), vec![(4, Ok(()))]);
        assert_eq!(t.sm.state(), TxnState::Ready);
        // The handle's repeated commit: the prepare step, then the end step.
        for (n, req) in [(5, TxnRequest::PrepareCommit), (6, TxnRequest::Commit)] {
            out.clear();
            let c = caller(n);
            t.request(now, req, c.clone(), &idle(), &mut out);
            assert_eq!(replies(&out), vec![(n, Ok(()))], "the commit's result");
            assert!(calls(&out).is_empty(), "not run again: {out:?}");
            c.1.take();
        }
        out.clear();
        t.request(now, TxnRequest::PrepareCommit, caller(7), &idle(), &mut out);
        assert!(matches!(
            &replies(&out)[..],
            [(7, Err(TransactionError::InvalidState { .. }))]
        ));
    }

    /// Found by the transactional simulation (seed 340, when its callers repeated the end step
    /// alone): a commit or abort repeated while it waited for its records was queued again
    /// behind itself, so its result went to the callers that had given up and the last one
    /// found the transaction ended (`InvalidState`). The handle repeats the prepare step
    /// first, which gets the kept result, so its users never saw it; the core's contract
    /// ("a repeated call joins") now holds whoever calls it.
    #[test]
    fn a_call_repeated_while_it_waits_for_its_records_joins_it() {
        let (mut t, now) = core();
        ready_in_transaction(&mut t, now);
        t.partitions.added.insert(TopicPartition::new("t", 0));
        let mut out = Vec::new();
        t.request(now, TxnRequest::PrepareCommit, caller(3), &idle(), &mut out);
        let busy = TxnView {
            busy: true,
            ..idle()
        };
        let callers = [caller(4), caller(5), caller(6)];
        for c in &callers {
            // Each gives up (max.block.ms) and the next calls again.
            t.request(now, TxnRequest::Commit, c.clone(), &busy, &mut out);
        }
        out.clear();
        t.tick(now + END_POLL, &idle(), &mut out);
        let [(token, Some(CoordRequest::EndTxn { .. }))] = &calls(&out)[..] else {
            panic!("one EndTxn: {out:?}");
        };
        out.clear();
        t.answered(now, *token, Answer::Codes(vec![0]), &idle(), &mut out);
        assert_eq!(replies(&out), vec![(4, Ok(())), (5, Ok(())), (6, Ok(()))]);
        assert_eq!(t.sm.state(), TxnState::Ready);
    }

    /// Found by the transactional simulation (seed 36): an abort that failed a batch which
    /// had a sequence (sent once, its answer lost) left a gap, and every batch of the next
    /// transaction to that partition was refused `OUT_OF_ORDER_SEQUENCE_NUMBER`.
    #[test]
    fn an_abort_that_failed_a_sequenced_batch_bumps_the_epoch() {
        let (mut t, now) = core();
        ready_in_transaction(&mut t, now);
        t.partitions.added.insert(TopicPartition::new("t", 0));
        let gap = TxnView {
            sequence_gap: true,
            ..idle()
        };
        let mut out = Vec::new();
        t.request(now, TxnRequest::PrepareAbort, caller(3), &idle(), &mut out);
        out.clear();
        t.request(now, TxnRequest::Abort, caller(4), &gap, &mut out);
        let token = calls(&out)[0].0;
        out.clear();
        t.answered(now, token, Answer::Codes(vec![0]), &gap, &mut out);
        assert!(
            matches!(
                &calls(&out)[..],
                [(
                    _,
                    Some(CoordRequest::InitProducerId {
                        current: Some((7, 0)),
                        ..
                    })
                )]
            ),
            "the abort bumps the epoch: {out:?}"
        );
    }

    #[test]
    fn a_fenced_add_fails_its_partitions_and_makes_the_producer_fatal() {
        let (mut t, now) = core();
        ready_in_transaction(&mut t, now);
        let tp = TopicPartition::new("t", 0);
        t.partitions.pending.insert(tp.clone());
        let mut out = Vec::new();
        t.add_partitions(now, &idle(), &mut out);
        let token = calls(&out)[0].0;
        out.clear();
        t.answered(
            now,
            token,
            Answer::Codes(vec![E::ProducerFenced.code()]),
            &idle(),
            &mut out,
        );
        assert!(out.iter().any(|a| matches!(a, Action::Fenced)));
        assert!(out.iter().any(|a| {
            matches!(
                a,
                Action::FailPartitions(
                    p,
                    ProduceError::Transaction(TransactionError::Fenced { .. })
                ) if p == &vec![tp.clone()]
            )
        }));
        assert_eq!(t.sm.state(), TxnState::FatalError);
        assert!(Some(t).refuse_queued().is_some());
    }

    #[test]
    fn an_abort_after_a_failed_record_bumps_the_epoch() {
        let (mut t, now) = core();
        ready_in_transaction(&mut t, now);
        t.partitions.added.insert(TopicPartition::new("t", 0));
        let failed = TxnView {
            failure: Some(TransactionError::Abortable {
                reason: "a record failed".into(),
            }),
            ..idle()
        };
        let mut out = Vec::new();
        t.request(now, TxnRequest::PrepareCommit, caller(3), &failed, &mut out);
        assert!(matches!(
            &replies(&out)[..],
            [(3, Err(TransactionError::Abortable { .. }))]
        ));
        out.clear();
        t.request(now, TxnRequest::PrepareAbort, caller(4), &failed, &mut out);
        assert!(out.iter().any(|a| matches!(a, Action::FailQueued(_))));
        out.clear();
        t.request(now, TxnRequest::Abort, caller(5), &failed, &mut out);
        let [(token, Some(CoordRequest::EndTxn { commit: false, .. }))] = &calls(&out)[..] else {
            panic!("EndTxn abort: {out:?}");
        };
        out.clear();
        t.answered(now, *token, Answer::Codes(vec![0]), &failed, &mut out);
        let [(token, Some(CoordRequest::InitProducerId { current, .. }))] = &calls(&out)[..] else {
            panic!("the bump: {out:?}");
        };
        assert_eq!(*current, Some((7, 0)));
        out.clear();
        let answer = Answer::ProducerId {
            code: 0,
            id: 7,
            epoch: 1,
        };
        t.answered(now, *token, answer, &failed, &mut out);
        assert!(out.iter().any(|a| matches!(a, Action::ProducerId(7, 1))));
        assert_eq!(replies(&out), vec![(5, Ok(()))]);
        assert_eq!(t.sm.state(), TxnState::Ready);
    }

    #[test]
    fn an_impossible_producer_id_is_fatal() {
        let (mut t, now) = core();
        let mut out = Vec::new();
        t.request(now, TxnRequest::Init, caller(1), &idle(), &mut out);
        let token = found(&mut t, now, &mut out);
        out.clear();
        let answer = Answer::ProducerId {
            code: 0,
            id: -1,
            epoch: 0,
        };
        t.answered(now, token, answer, &idle(), &mut out);
        assert!(matches!(
            &replies(&out)[..],
            [(1, Err(TransactionError::Fatal { .. }))]
        ));
        assert!(out.iter().any(|a| matches!(a, Action::ProducerIdUnknown)));
    }

    /// Answers every call out with success until none is; the replies given meanwhile.
    fn complete_calls(
        t: &mut TxnCore<Caller>,
        now: Instant,
        mut out: Vec<Action<Caller>>,
    ) -> Vec<(u32, Result<(), TransactionError>)> {
        let mut given = replies(&out);
        while let Some((token, req)) = calls(&out).pop() {
            out.clear();
            match req {
                None => {
                    let node = Found::Node {
                        node: 1,
                        address: "b1:9092".into(),
                    };
                    t.found(now, token, node, &idle(), &mut out)
                }
                Some(CoordRequest::InitProducerId { .. }) => {
                    let answer = Answer::ProducerId {
                        code: 0,
                        id: 7,
                        epoch: 1,
                    };
                    t.answered(now, token, answer, &idle(), &mut out)
                }
                Some(_) => t.answered(now, token, Answer::Codes(vec![0]), &idle(), &mut out),
            }
            given.extend(replies(&out));
        }
        given
    }

    /// Only a repeated init/commit/abort joins, and only a call of its own kind: a commit
    /// arriving while a prepare of it waits is not answered by the prepare, and a prepare
    /// arriving while a commit waits is not answered by the commit.
    #[test]
    fn only_a_repeated_call_joins_and_only_a_call_of_its_own_kind() {
        let (mut t, now) = core();
        ready_in_transaction(&mut t, now);
        let mut out = Vec::new();
        let offsets = TxnRequest::SendOffsets {
            offsets: vec![(TopicPartition::new("in", 0), 5)],
            group: ConsumerGroupMetadata::new("g"),
        };
        t.request(now, offsets, caller(3), &idle(), &mut out);
        // Queued behind the offsets: prepare, commit, and a prepare again.
        t.request(now, TxnRequest::PrepareCommit, caller(4), &idle(), &mut out);
        let committer = caller(5);
        t.request(
            now,
            TxnRequest::Commit,
            committer.clone(),
            &idle(),
            &mut out,
        );
        t.request(now, TxnRequest::PrepareCommit, caller(6), &idle(), &mut out);
        assert!(replies(&out).is_empty(), "{out:?}");
        let given = complete_calls(&mut t, now, out);
        let order: Vec<u32> = given.iter().map(|(c, _)| *c).collect();
        assert_eq!(order, vec![3, 4, 5, 6], "{given:?}");
        // The prepare queued behind the commit runs once it ended, before its caller could
        // take the answer: it gets the commit's result (as Java's cached result), not a rerun.
        assert!(given.iter().all(|(_, r)| r.is_ok()), "{given:?}");
        assert_eq!(t.sm.state(), TxnState::Ready);
        // Once the commit's caller took its answer, a prepare is judged by the state.
        committer.1.take();
        let mut out = Vec::new();
        t.request(now, TxnRequest::PrepareCommit, caller(7), &idle(), &mut out);
        assert!(
            matches!(
                &replies(&out)[..],
                [(7, Err(TransactionError::InvalidState { .. }))]
            ),
            "a prepare after the commit's answer was taken is judged by the state: {out:?}"
        );
    }

    /// AddPartitionsToTxn's error is the first real one, not `OPERATION_NOT_ATTEMPTED`; a
    /// producer id of 0 is a producer id.
    #[test]
    fn answers_are_read_as_the_coordinator_means_them() {
        let (mut t, now) = core();
        ready_in_transaction(&mut t, now);
        t.partitions.pending.insert(TopicPartition::new("t", 0));
        t.partitions.pending.insert(TopicPartition::new("t", 1));
        let mut out = Vec::new();
        t.add_partitions(now, &idle(), &mut out);
        let token = calls(&out)[0].0;
        out.clear();
        t.answered(
            now,
            token,
            Answer::Codes(vec![
                E::OperationNotAttempted.code(),
                E::TopicAuthorizationFailed.code(),
            ]),
            &idle(),
            &mut out,
        );
        let reason = out
            .iter()
            .find_map(|a| match a {
                Action::FailPartitions(_, e) => Some(e.to_string()),
                _ => None,
            })
            .unwrap_or_default();
        assert!(
            reason.contains(&KafkaCode(E::TopicAuthorizationFailed.code()).to_string()),
            "the real error: {reason}"
        );
        let (mut t, now) = core();
        let mut out = Vec::new();
        t.request(now, TxnRequest::Init, caller(1), &idle(), &mut out);
        let token = found(&mut t, now, &mut out);
        out.clear();
        let answer = Answer::ProducerId {
            code: 0,
            id: 0,
            epoch: 0,
        };
        t.answered(now, token, answer, &idle(), &mut out);
        assert_eq!(replies(&out), vec![(1, Ok(()))]);
        assert!(out.iter().any(|a| matches!(a, Action::ProducerId(0, 0))));
    }

    /// `CONCURRENT_TRANSACTIONS` (the previous transaction still ending) is retried sooner
    /// than other retriable answers: 20 ms, Java's short retry.
    #[test]
    fn concurrent_transactions_is_retried_sooner() {
        for (code, low, high) in [
            (E::ConcurrentTransactions, 0, 24),
            (E::CoordinatorLoadInProgress, 80, 120),
        ] {
            let (mut t, now) = core();
            ready_in_transaction(&mut t, now);
            t.partitions.pending.insert(TopicPartition::new("t", 0));
            let mut out = Vec::new();
            t.add_partitions(now, &idle(), &mut out);
            let token = calls(&out)[0].0;
            out.clear();
            t.answered(
                now,
                token,
                Answer::Codes(vec![code.code()]),
                &idle(),
                &mut out,
            );
            let at = t.next_wake().expect("a retry");
            let wait = at.saturating_duration_since(now);
            assert!(
                wait >= ms(low) && wait <= ms(high),
                "code {code:?}: retried after {wait:?}"
            );
        }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// InitProducerId asks for `transaction.timeout.ms`, saturated to what the field holds.
    #[test]
    fn init_asks_for_the_configured_transaction_timeout() {
        for (timeout, want) in [(Duration::from_secs(60), 60_000), (Duration::MAX, i32::MAX)] {
            let (t, now) = core();
            let mut t = TxnCore::<Caller>::new(
                "tx",
                TxnRules {
                    transaction_timeout: timeout,
                    ..t.rules.clone()
                },
            );
            let mut out = Vec::new();
            t.request(now, TxnRequest::Init, caller(1), &idle(), &mut out);
            let token = found(&mut t, now, &mut out);
            let _ = token;
            let asked = calls(&out).into_iter().find_map(|(_, r)| match r {
                Some(CoordRequest::InitProducerId {
                    transaction_timeout_ms,
                    ..
                }) => Some(transaction_timeout_ms),
                _ => None,
            });
            assert_eq!(asked, Some(want));
        }
    }

    /// A commit that timed out unheard is run again by the repeated commit (the state is
    /// still `Committing`): only a call that ended the transaction hands its result on.
    #[test]
    fn a_commit_that_timed_out_unheard_runs_again() {
        let (mut t, now) = core();
        ready_in_transaction(&mut t, now);
        t.partitions.offsets_added = true;
        let mut out = Vec::new();
        t.request(now, TxnRequest::PrepareCommit, caller(3), &idle(), &mut out);
        let first = caller(4);
        out.clear();
        t.request(now, TxnRequest::Commit, first, &idle(), &mut out);
        // CONCURRENT_TRANSACTIONS until the call's delivery.timeout.ms: Timeout, unheard.
        let mut at = now;
        loop {
            let token = calls(&out).pop().expect("EndTxn").0;
            out.clear();
            t.answered(
                at,
                token,
                Answer::Codes(vec![E::ConcurrentTransactions.code()]),
                &idle(),
                &mut out,
            );
            if !replies(&out).is_empty() {
                break;
            }
            at = t.next_wake().expect("retried");
            out.clear();
            t.tick(at, &idle(), &mut out);
        }
        assert!(matches!(
            &replies(&out)[..],
            [(4, Err(TransactionError::Timeout { .. }))]
        ));
        assert_eq!(t.sm.state(), TxnState::Committing);
        out.clear();
        t.request(at, TxnRequest::Commit, caller(5), &idle(), &mut out);
        assert!(
            matches!(
                &calls(&out)[..],
                [(_, Some(CoordRequest::EndTxn { commit: true, .. }))]
            ),
            "EndTxn again, not the old Timeout: {out:?}"
        );
    }

    /// An abort with no failed record and no sequence gap keeps the epoch (no InitProducerId).
    #[test]
    fn a_clean_abort_keeps_the_epoch() {
        let (mut t, now) = core();
        ready_in_transaction(&mut t, now);
        t.partitions.added.insert(TopicPartition::new("t", 0));
        let mut out = Vec::new();
        t.request(now, TxnRequest::PrepareAbort, caller(3), &idle(), &mut out);
        out.clear();
        t.request(now, TxnRequest::Abort, caller(4), &idle(), &mut out);
        let token = calls(&out)[0].0;
        out.clear();
        t.answered(now, token, Answer::Codes(vec![0]), &idle(), &mut out);
        assert!(calls(&out).is_empty(), "no bump: {out:?}");
        assert_eq!(replies(&out), vec![(4, Ok(()))]);
    }

    #[test]
    fn the_first_real_error_of_an_answer() {
        const NOT_TRIED: E = E::OperationNotAttempted;
        const DENIED: E = E::TopicAuthorizationFailed;
        for (add, codes, want) in [
            (true, vec![E::None, E::None], E::None),
            (true, vec![NOT_TRIED, DENIED, NOT_TRIED], DENIED),
            (true, vec![E::None, NOT_TRIED], NOT_TRIED),
            (false, vec![NOT_TRIED, DENIED], NOT_TRIED),
            (
                false,
                vec![E::None, E::UnknownTopicOrPartition, E::NotCoordinator],
                E::UnknownTopicOrPartition,
            ),
        ] {
            let codes: Vec<i16> = codes.iter().map(|c| c.code()).collect();
            assert_eq!(first_error(add, &codes), want.code(), "{add} {codes:?}");
        }
    }
}

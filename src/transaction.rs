//! Transactions (KIP-98, KIP-447): the state machine, the error classes and the types of the
//! transactional API ([`crate::Producer::init_transactions`] and friends).
//!
//! The state machine is plain code (unit-tested here, no broker); the [`crate::actors::sender`]
//! runs it and does the coordinator calls (`src/actors/sender/transactions.rs`).
//!
//! ```no_run
//! use actix_kafka::{ConsumerGroupMetadata, Producer, ProducerConfig, ProducerRecord, TopicPartition};
//!
//! async fn write_orders() -> Result<(), Box<dyn std::error::Error>> {
//! let config = ProducerConfig::from_map([
//!     ("bootstrap.servers", "127.0.0.1:9092"),
//!     ("transactional.id", "orders-writer-0"),   // stable per instance: fences its zombies
//! ])?;
//! let producer = Producer::start(config).await?;
//! producer.init_transactions().await?;            // once: fences older instances, aborts their open txn
//! producer.begin_transaction().await?;
//! producer.send(ProducerRecord::new("orders", "o-1").key("c-7")).await?;
//! producer.send(ProducerRecord::new("audit", "o-1 created")).await?;
//! // Optional (consume-transform-produce): the input offsets commit with the output.
//! producer
//!     .send_offsets_to_transaction([(TopicPartition::new("input", 0), 42)], &ConsumerGroupMetadata::new("orders"))
//!     .await?;
//! match producer.commit_transaction().await {     // flushes, then commits
//!     Ok(()) => {}
//!     Err(e) if e.is_abortable() => producer.abort_transaction().await?, // a record failed: undo, retry the work
//!     Err(e) => return Err(e.into()),             // fenced / fatal: close this producer
//! }
//! Ok(())
//! }
//! ```
//!
//! States and transitions follow Java's `TransactionManager`:
//!
//! ```text
//! Uninitialized ─init─▶ Initializing ─▶ Ready ─begin─▶ InTransaction ─commit─▶ Committing ─▶ Ready
//!                                          ▲              │   │                    │
//!                                          │              │   └─abort─▶ Aborting ──┴──▶ Ready
//!                                          │              ▼ (a record or call failed)
//!                                          └──abort── AbortableError
//!            any state ── PRODUCER_FENCED, INVALID_PRODUCER_EPOCH, authorization ──▶ FatalError
//! ```

use crate::codes::ErrorCode;
use crate::error::{KafkaCode, ProduceError};
use crate::record::TopicPartition;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// The consumer group a consume-transform-produce loop reads for (Java's
/// `ConsumerGroupMetadata`, KIP-447): the group coordinator checks generation and member so a
/// zombie consumer's offsets are refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsumerGroupMetadata {
    /// `group.id`.
    pub group_id: String,
    /// The group generation, `-1` if unknown (offsets then are not fenced by generation).
    pub generation_id: i32,
    /// The member id, `""` if unknown.
    pub member_id: String,
    /// `group.instance.id` (static membership, KIP-345), if any.
    pub group_instance_id: Option<String>,
}

impl ConsumerGroupMetadata {
    /// Metadata with only a group id (generation `-1`, no member): what Java's
    /// `new ConsumerGroupMetadata(groupId)` gives; no zombie fencing by generation.
    pub fn new(group_id: impl Into<String>) -> Self {
        ConsumerGroupMetadata {
            group_id: group_id.into(),
            generation_id: -1,
            member_id: String::new(),
            group_instance_id: None,
        }
    }
}

/// Why a transactional call failed. [`TransactionError::is_fatal`] and
/// [`TransactionError::is_abortable`] say what to do next:
///
/// | class | what to do |
/// |---|---|
/// | `Fenced`, `Fatal` | close the producer (a newer instance owns the `transactional.id`, or the cluster refuses us) |
/// | `Abortable` | call `abort_transaction`, then start a new transaction |
/// | `Timeout` | call the same method again: the operation goes on in the background |
/// | `InvalidState` | a programming error: the call is not allowed now |
/// | `Aborted` | (a record's result) its transaction was aborted before it was sent |
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransactionError {
    /// The call is not allowed in the current state (Java's `IllegalStateException`), e.g.
    /// `send` before `begin_transaction`, or `commit_transaction` with no transaction open.
    #[error("cannot {operation} in transaction state {state}")]
    InvalidState {
        /// What was called.
        operation: &'static str,
        /// The state it was called in.
        state: TxnState,
    },
    /// Another producer with the same `transactional.id` called `init_transactions`
    /// (`PRODUCER_FENCED`, `INVALID_PRODUCER_EPOCH`), or the broker aborted this transaction
    /// and bumped the epoch. Fatal: close the producer (Java's `ProducerFencedException`).
    #[error("producer fenced: {code}")]
    Fenced {
        /// The broker's code.
        code: KafkaCode,
    },
    /// Any other fatal error (`TRANSACTIONAL_ID_AUTHORIZATION_FAILED`, `INVALID_TXN_STATE`,
    /// an unsupported broker, ...): close the producer.
    #[error("fatal transaction error: {reason}")]
    Fatal {
        /// What failed.
        reason: Arc<str>,
    },
    /// The transaction cannot commit (a record failed, `TRANSACTION_ABORTABLE`, an offset
    /// commit refused); call `abort_transaction` (Java's `KafkaException` in `ABORTABLE_ERROR`).
    #[error("transaction must be aborted: {reason}")]
    Abortable {
        /// The first error of the transaction.
        reason: Arc<str>,
    },
    /// The record's transaction was aborted before the record was sent (Java's
    /// `TransactionAbortedException`).
    #[error("transaction aborted; the record was not sent")]
    Aborted,
    /// A transactional call on a producer without `transactional.id`.
    #[error("the producer is not transactional (no transactional.id)")]
    NotTransactional,
    /// The operation did not complete within `max.block.ms`; it continues, call it again to
    /// wait for it (Java's `TimeoutException`).
    #[error("{operation} did not complete within {waited_ms} ms (max.block.ms); call it again")]
    Timeout {
        /// What was called.
        operation: &'static str,
        /// How long the call waited, in ms.
        waited_ms: u64,
    },
}

impl TransactionError {
    /// Fenced or fatal: the producer cannot go on; close it.
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            TransactionError::Fenced { .. } | TransactionError::Fatal { .. }
        )
    }

    /// The transaction must be aborted (then the producer goes on).
    pub fn is_abortable(&self) -> bool {
        matches!(self, TransactionError::Abortable { .. })
    }
}

/// The transaction state (Java's `TransactionManager.State`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum TxnState {
    /// `init_transactions` not called yet.
    Uninitialized = 0,
    /// `init_transactions` running.
    Initializing = 1,
    /// No transaction open.
    Ready = 2,
    /// Between `begin_transaction` and commit/abort: `send` is allowed.
    InTransaction = 3,
    /// `commit_transaction` running.
    Committing = 4,
    /// `abort_transaction` running.
    Aborting = 5,
    /// The transaction must be aborted.
    AbortableError = 6,
    /// The producer must be closed.
    FatalError = 7,
}

impl TxnState {
    fn from_u8(v: u8) -> TxnState {
        match v {
            1 => TxnState::Initializing,
            2 => TxnState::Ready,
            3 => TxnState::InTransaction,
            4 => TxnState::Committing,
            5 => TxnState::Aborting,
            6 => TxnState::AbortableError,
            7 => TxnState::FatalError,
            _ => TxnState::Uninitialized,
        }
    }
}

impl fmt::Display for TxnState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            TxnState::Uninitialized => "UNINITIALIZED",
            TxnState::Initializing => "INITIALIZING",
            TxnState::Ready => "READY",
            TxnState::InTransaction => "IN_TRANSACTION",
            TxnState::Committing => "COMMITTING_TRANSACTION",
            TxnState::Aborting => "ABORTING_TRANSACTION",
            TxnState::AbortableError => "ABORTABLE_ERROR",
            TxnState::FatalError => "FATAL_ERROR",
        };
        f.write_str(s)
    }
}

/// The calls of the transactional API, for the state checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TxnOp {
    Init,
    Begin,
    SendOffsets,
    Commit,
    Abort,
}

impl TxnOp {
    pub(crate) fn name(self) -> &'static str {
        match self {
            TxnOp::Init => "init_transactions",
            TxnOp::Begin => "begin_transaction",
            TxnOp::SendOffsets => "send_offsets_to_transaction",
            TxnOp::Commit => "commit_transaction",
            TxnOp::Abort => "abort_transaction",
        }
    }
}

/// What the transaction state machine remembers (owned by the sender).
#[derive(Debug)]
pub(crate) struct TxnStateMachine {
    state: TxnState,
    /// The error that made the state `AbortableError` or `FatalError`.
    error: Option<TransactionError>,
}

impl TxnStateMachine {
    pub(crate) fn new() -> Self {
        TxnStateMachine {
            state: TxnState::Uninitialized,
            error: None,
        }
    }

    pub(crate) fn state(&self) -> TxnState {
        self.state
    }

    /// Starts `op` (Java's `maybeFailWithError` + `transitionTo`): the state it leads to, or why
    /// it is not allowed. `Commit` and `Abort` may be called again while they run (after a
    /// `Timeout`), and `Init` again after a failed attempt.
    pub(crate) fn start(&mut self, op: TxnOp) -> Result<TxnState, TransactionError> {
        use TxnState::*;
        let next = match (op, self.state) {
            (_, FatalError) => return Err(self.error_or_state(op)),
            (TxnOp::Init, Uninitialized | Initializing) => Initializing,
            (TxnOp::Begin, Ready) => InTransaction,
            (TxnOp::SendOffsets, InTransaction) => InTransaction,
            (TxnOp::Commit, InTransaction | Committing) => Committing,
            (TxnOp::Abort, InTransaction | AbortableError | Aborting) => Aborting,
            (TxnOp::SendOffsets | TxnOp::Commit, AbortableError) => {
                return Err(self.error_or_state(op))
            }
            (_, state) => {
                return Err(TransactionError::InvalidState {
                    operation: op.name(),
                    state,
                })
            }
        };
        self.state = next;
        Ok(next)
    }

    /// The error for `op` when it is not allowed now, without changing the state.
    pub(crate) fn refuse(&self, op: TxnOp) -> TransactionError {
        match self.state {
            TxnState::FatalError | TxnState::AbortableError => self.error_or_state(op),
            state => TransactionError::InvalidState {
                operation: op.name(),
                state,
            },
        }
    }

    /// The one rule for "may a batch go in this state" (issue 19; Java:
    /// `TransactionManager.isSendToPartitionAllowed` and `abortUndrainedBatches`). The sender
    /// applies it to a batch arriving, to the batches queued at each drain and before adding
    /// partitions; `ending`: EndTxn is out.
    pub(crate) fn batch_rule(&self, ending: bool) -> BatchRule {
        match self.state {
            TxnState::InTransaction | TxnState::Committing if !ending => BatchRule::Send,
            TxnState::InTransaction | TxnState::Committing => BatchRule::Wait,
            // Retried batches of an aborting transaction are not sent again.
            TxnState::Aborting => BatchRule::Fail(TransactionError::Aborted),
            // Batches that wait can never be sent in this transaction: they fail with its error.
            TxnState::FatalError | TxnState::AbortableError => {
                BatchRule::Fail(self.error_or_state(TxnOp::Commit))
            }
            state => BatchRule::Fail(TransactionError::InvalidState {
                operation: "send",
                state,
            }),
        }
    }

    fn error_or_state(&self, op: TxnOp) -> TransactionError {
        self.error
            .clone()
            .unwrap_or(TransactionError::InvalidState {
                operation: op.name(),
                state: self.state,
            })
    }

    /// The operation that moved to `Initializing`, `Committing` or `Aborting` ended well.
    pub(crate) fn complete(&mut self) {
        if matches!(
            self.state,
            TxnState::Initializing | TxnState::Committing | TxnState::Aborting
        ) {
            self.state = TxnState::Ready;
            self.error = None;
        }
    }

    /// Records an error: fatal errors end the producer; abortable ones the transaction (an
    /// `init_transactions` that fails with a retriable-for-the-user error goes back to
    /// `Uninitialized` so it can be called again).
    pub(crate) fn fail(&mut self, err: TransactionError) {
        if self.state == TxnState::FatalError {
            return;
        }
        if err.is_fatal() {
            self.state = TxnState::FatalError;
            self.error = Some(err);
        } else if self.state == TxnState::Initializing {
            self.state = TxnState::Uninitialized;
        } else if matches!(
            self.state,
            TxnState::InTransaction | TxnState::Committing | TxnState::AbortableError
        ) && err.is_abortable()
        {
            self.state = TxnState::AbortableError;
            self.error.get_or_insert(err);
        }
    }
}

/// What [`TxnStateMachine::batch_rule`] allows a batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum BatchRule {
    /// It may be sent (once the coordinator added its partition).
    Send,
    /// Not now: EndTxn is out (a queued batch waits; one arriving now is refused).
    Wait,
    /// It can never be sent in this transaction: it fails with this error.
    Fail(TransactionError),
}

/// How the coordinator's answer (or a failed produce inside a transaction) is handled: the
/// transactional calls' per-request outcome, beside the per-code [`crate::codes`] table (which
/// classes a code for a plain produce).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TxnOutcome {
    /// No error.
    Ok,
    /// Retry after a backoff; `true`: look the coordinator up again first.
    Retry { find_coordinator: bool },
    /// The transaction must be aborted; `true`: bump the epoch afterwards (KIP-360).
    Abortable { bump_epoch: bool },
    /// `PRODUCER_FENCED` / `INVALID_PRODUCER_EPOCH`.
    Fenced,
    /// Anything else the producer cannot recover from.
    Fatal,
}

/// The transactional calls, for [`classify`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TxnApi {
    InitProducerId,
    AddPartitions,
    AddOffsets,
    TxnOffsetCommit,
    EndTxn,
    /// A Produce response inside a transaction.
    Produce,
}

/// Java's handling of each error code per transactional request (`TransactionManager`'s
/// handlers): coordinator moves and loads are retried, fencing and authorization are fatal,
/// the rest makes the transaction abortable. Codes by name ([`ErrorCode`]), one row per rule.
pub(crate) fn classify(api: TxnApi, code: i16) -> TxnOutcome {
    use ErrorCode as E;
    use TxnOutcome::*;
    let coordinator_call = api != TxnApi::Produce;
    match (api, ErrorCode::from_code(code)) {
        (_, E::None) => Ok,
        // The coordinator moved or is not up: find it again.
        (_, E::CoordinatorNotAvailable | E::NotCoordinator) if coordinator_call => Retry {
            find_coordinator: true,
        },
        // It is loading, or still writing the markers of the last transaction.
        (_, E::CoordinatorLoadInProgress | E::ConcurrentTransactions) if coordinator_call => {
            Retry {
                find_coordinator: false,
            }
        }
        // A timed-out offset commit: the group coordinator may have moved.
        (TxnApi::TxnOffsetCommit, E::RequestTimedOut) => Retry {
            find_coordinator: true,
        },
        // An unknown partition while adding partitions / offsets: metadata lag.
        (TxnApi::AddPartitions | TxnApi::TxnOffsetCommit, E::UnknownTopicOrPartition) => Retry {
            find_coordinator: false,
        },
        (_, E::ProducerFenced | E::InvalidProducerEpoch) => Fenced,
        (_, E::TransactionalIdAuthorizationFailed | E::ClusterAuthorizationFailed) => Fatal,
        (_, E::InvalidTxnState | E::UnsupportedVersion | E::UnsupportedForMessageFormat) => Fatal,
        // Abort, then a new epoch resets the sequences (KIP-360).
        (_, E::UnknownProducerId | E::InvalidProducerIdMapping | E::OutOfOrderSequenceNumber) => {
            Abortable { bump_epoch: true }
        }
        // Every other failed record. (INVALID_PRODUCER_EPOCH above stays fatal on produce too,
        // as this project's issue asks; Java since KIP-588 makes it abortable there and fatal
        // on coordinator calls.)
        (TxnApi::Produce, _) => Abortable { bump_epoch: false },
        (
            _,
            E::TopicAuthorizationFailed
            | E::GroupAuthorizationFailed
            | E::UnknownMemberId
            | E::IllegalGeneration
            | E::FencedInstanceId
            | E::TransactionAbortable
            | E::OperationNotAttempted,
        ) => Abortable { bump_epoch: false },
        (TxnApi::InitProducerId, named) if named.is_retriable() => Retry {
            find_coordinator: true,
        },
        _ => Fatal,
    }
}

impl TxnApi {
    /// The user-facing call this request serves, for `Timeout` errors.
    pub(crate) fn operation(self) -> &'static str {
        match self {
            TxnApi::InitProducerId => "init_transactions",
            TxnApi::AddPartitions | TxnApi::Produce => "send",
            TxnApi::AddOffsets | TxnApi::TxnOffsetCommit => "send_offsets_to_transaction",
            TxnApi::EndTxn => "commit_transaction / abort_transaction",
        }
    }
}

/// The transaction error a failed record means: fenced (`PRODUCER_FENCED`,
/// `INVALID_PRODUCER_EPOCH`), fatal (authorization), else abortable.
pub(crate) fn txn_error_of(err: &ProduceError) -> TransactionError {
    match err {
        ProduceError::Transaction(e) if e.is_fatal() || e.is_abortable() => e.clone(),
        // A record that failed for a transactional reason that is neither (a timed-out
        // AddPartitionsToTxn, a state error): the transaction cannot commit.
        ProduceError::Transaction(e) => TransactionError::Abortable {
            reason: format!("a record of the transaction failed: {e}").into(),
        },
        ProduceError::Broker { code, .. } => match classify(TxnApi::Produce, code.0) {
            TxnOutcome::Fenced => TransactionError::Fenced { code: *code },
            TxnOutcome::Fatal => TransactionError::Fatal {
                reason: err.to_string().into(),
            },
            _ => TransactionError::Abortable {
                reason: format!("a record of the transaction failed: {err}").into(),
            },
        },
        ProduceError::Fatal(reason) => TransactionError::Fatal {
            reason: reason.clone(),
        },
        ProduceError::Connection(e) if e.is_auth() => TransactionError::Fatal {
            reason: e.to_string().into(),
        },
        _ => TransactionError::Abortable {
            reason: format!("a record of the transaction failed: {err}").into(),
        },
    }
}

/// What the send path and the record completions share with the sender about the open
/// transaction: whether `send` is allowed, and the first record that failed in it.
#[derive(Default)]
pub(crate) struct TxnShared {
    /// True when the producer is transactional.
    pub(crate) enabled: bool,
    /// The state as last set by the sender (read by `send`).
    state: std::sync::atomic::AtomicU8,
    /// Set by the first record that fails inside the transaction.
    failed: AtomicBool,
    first_failure: Mutex<Option<ProduceError>>,
}

impl TxnShared {
    pub(crate) fn new(enabled: bool) -> Self {
        TxnShared {
            enabled,
            ..Default::default()
        }
    }

    pub(crate) fn state(&self) -> TxnState {
        TxnState::from_u8(self.state.load(Ordering::Acquire))
    }

    pub(crate) fn set_state(&self, s: TxnState) {
        self.state.store(s as u8, Ordering::Release);
    }

    /// `send` inside a transaction: `Ok` in `InTransaction` with no failed record.
    pub(crate) fn check_send(&self) -> Result<(), ProduceError> {
        if !self.enabled {
            return Ok(());
        }
        let state = self.state();
        if state == TxnState::InTransaction && !self.failed.load(Ordering::Acquire) {
            return Ok(());
        }
        if state == TxnState::InTransaction || state == TxnState::AbortableError {
            if let Some(e) = self.first_failure() {
                return Err(ProduceError::Transaction(txn_error_of(&e)));
            }
        }
        Err(ProduceError::Transaction(TransactionError::InvalidState {
            operation: "send",
            state,
        }))
    }

    /// A record of the transaction failed (called by every failed record; the intended
    /// failures of an abort are not counted).
    pub(crate) fn record_failed(&self, err: &ProduceError) {
        if !self.enabled
            || matches!(err, ProduceError::Transaction(TransactionError::Aborted))
            || self.failed.load(Ordering::Acquire)
        {
            return;
        }
        if let Ok(mut f) = self.first_failure.lock() {
            f.get_or_insert_with(|| err.clone());
        }
        self.failed.store(true, Ordering::Release);
    }

    pub(crate) fn first_failure(&self) -> Option<ProduceError> {
        if !self.failed.load(Ordering::Acquire) {
            return None;
        }
        self.first_failure.lock().ok().and_then(|f| f.clone())
    }

    /// A new transaction starts clean.
    pub(crate) fn clear_failure(&self) {
        if let Ok(mut f) = self.first_failure.lock() {
            *f = None;
        }
        self.failed.store(false, Ordering::Release);
    }
}

/// The partitions of the open transaction (Java's `partitionsInTransaction` and
/// `newPartitionsInTransaction`).
#[derive(Debug, Default)]
pub(crate) struct TxnPartitions {
    pub(crate) added: std::collections::HashSet<TopicPartition>,
    pub(crate) pending: std::collections::BTreeSet<TopicPartition>,
    /// AddOffsetsToTxn succeeded: the coordinator has the transaction open even with no
    /// partition.
    pub(crate) offsets_added: bool,
}

impl TxnPartitions {
    /// Whether the coordinator knows of this transaction (EndTxn is needed).
    pub(crate) fn started(&self) -> bool {
        !self.added.is_empty() || self.offsets_added
    }

    pub(crate) fn clear(&mut self) {
        self.added.clear();
        self.pending.clear();
        self.offsets_added = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The batch rule for every state, ending or not (a validation table, as franz-go's).
    #[test]
    fn one_rule_says_where_a_batch_may_go() {
        use TxnState::*;
        let aborted = BatchRule::Fail(TransactionError::Aborted);
        let invalid = |state| {
            BatchRule::Fail(TransactionError::InvalidState {
                operation: "send",
                state,
            })
        };
        let cause = TransactionError::Fenced {
            code: KafkaCode(ErrorCode::ProducerFenced.code()),
        };
        let table = [
            (Uninitialized, false, invalid(Uninitialized)),
            (Initializing, false, invalid(Initializing)),
            (Ready, false, invalid(Ready)),
            (InTransaction, false, BatchRule::Send),
            (InTransaction, true, BatchRule::Wait),
            (Committing, false, BatchRule::Send),
            (Committing, true, BatchRule::Wait),
            (Aborting, false, aborted.clone()),
            (Aborting, true, aborted),
            (AbortableError, false, BatchRule::Fail(cause.clone())),
            (FatalError, true, BatchRule::Fail(cause.clone())),
        ];
        for (state, ending, want) in table {
            let m = TxnStateMachine {
                state,
                error: matches!(state, AbortableError | FatalError).then(|| cause.clone()),
            };
            assert_eq!(m.batch_rule(ending), want, "{state:?}, ending {ending}");
        }
    }

    #[test]
    fn happy_path_and_repeated_calls() {
        let mut m = TxnStateMachine::new();
        assert!(matches!(
            m.start(TxnOp::Begin),
            Err(TransactionError::InvalidState {
                state: TxnState::Uninitialized,
                ..
            })
        ));
        assert_eq!(m.start(TxnOp::Init), Ok(TxnState::Initializing));
        // A retried init after a timeout joins the running one.
        assert_eq!(m.start(TxnOp::Init), Ok(TxnState::Initializing));
        m.complete();
        assert_eq!(m.state(), TxnState::Ready);
        assert!(m.start(TxnOp::SendOffsets).is_err());
        assert!(m.start(TxnOp::Commit).is_err());
        assert_eq!(m.start(TxnOp::Begin), Ok(TxnState::InTransaction));
        assert!(m.start(TxnOp::Begin).is_err());
        assert_eq!(m.start(TxnOp::SendOffsets), Ok(TxnState::InTransaction));
        assert_eq!(m.start(TxnOp::Commit), Ok(TxnState::Committing));
        assert_eq!(m.start(TxnOp::Commit), Ok(TxnState::Committing));
        assert!(m.start(TxnOp::SendOffsets).is_err());
        m.complete();
        assert_eq!(m.state(), TxnState::Ready);
        assert_eq!(m.start(TxnOp::Begin), Ok(TxnState::InTransaction));
        assert_eq!(m.start(TxnOp::Abort), Ok(TxnState::Aborting));
        m.complete();
        assert_eq!(m.state(), TxnState::Ready);
        assert!(m.start(TxnOp::Init).is_err());
    }

    #[test]
    fn abortable_errors_need_an_abort() {
        let mut m = TxnStateMachine::new();
        m.start(TxnOp::Init).unwrap();
        m.complete();
        m.start(TxnOp::Begin).unwrap();
        m.fail(TransactionError::Abortable {
            reason: "record failed".into(),
        });
        assert_eq!(m.state(), TxnState::AbortableError);
        assert!(m.start(TxnOp::Commit).unwrap_err().is_abortable());
        assert!(m.start(TxnOp::SendOffsets).unwrap_err().is_abortable());
        assert!(m.start(TxnOp::Begin).is_err());
        assert_eq!(m.start(TxnOp::Abort), Ok(TxnState::Aborting));
        m.complete();
        assert_eq!(m.state(), TxnState::Ready);
    }

    #[test]
    fn fatal_errors_end_everything() {
        let mut m = TxnStateMachine::new();
        m.start(TxnOp::Init).unwrap();
        m.complete();
        m.start(TxnOp::Begin).unwrap();
        m.fail(TransactionError::Fenced {
            code: KafkaCode(ErrorCode::ProducerFenced.code()),
        });
        for op in [
            TxnOp::Begin,
            TxnOp::SendOffsets,
            TxnOp::Commit,
            TxnOp::Abort,
            TxnOp::Init,
        ] {
            assert!(m.start(op).unwrap_err().is_fatal(), "{op:?}");
        }
        // Later abortable errors do not hide the fatal one.
        m.fail(TransactionError::Abortable { reason: "x".into() });
        assert_eq!(m.state(), TxnState::FatalError);
    }

    #[test]
    fn failed_init_can_be_retried() {
        let mut m = TxnStateMachine::new();
        m.start(TxnOp::Init).unwrap();
        m.fail(TransactionError::Timeout {
            operation: "init_transactions",
            waited_ms: 1,
        });
        assert_eq!(m.state(), TxnState::Uninitialized);
        assert_eq!(m.start(TxnOp::Init), Ok(TxnState::Initializing));
    }

    #[test]
    fn error_classes_follow_java() {
        use TxnOutcome::*;
        for api in [
            TxnApi::InitProducerId,
            TxnApi::AddPartitions,
            TxnApi::AddOffsets,
            TxnApi::EndTxn,
        ] {
            assert_eq!(
                classify(api, ErrorCode::ConcurrentTransactions.code()),
                Retry {
                    find_coordinator: false
                }
            );
            assert_eq!(
                classify(api, ErrorCode::NotCoordinator.code()),
                Retry {
                    find_coordinator: true
                }
            );
            assert_eq!(
                classify(api, ErrorCode::CoordinatorNotAvailable.code()),
                Retry {
                    find_coordinator: true
                }
            );
            assert_eq!(
                classify(api, ErrorCode::CoordinatorLoadInProgress.code()),
                Retry {
                    find_coordinator: false
                }
            );
            assert_eq!(classify(api, ErrorCode::ProducerFenced.code()), Fenced);
            assert_eq!(
                classify(api, ErrorCode::InvalidProducerEpoch.code()),
                Fenced
            );
            assert_eq!(
                classify(api, ErrorCode::TransactionalIdAuthorizationFailed.code()),
                Fatal
            );
        }
        assert_eq!(
            classify(
                TxnApi::AddPartitions,
                ErrorCode::TopicAuthorizationFailed.code()
            ),
            Abortable { bump_epoch: false }
        );
        assert_eq!(
            classify(TxnApi::TxnOffsetCommit, ErrorCode::IllegalGeneration.code()),
            Abortable { bump_epoch: false }
        );
        assert_eq!(
            classify(TxnApi::EndTxn, ErrorCode::UnknownProducerId.code()),
            Abortable { bump_epoch: true }
        );
        assert_eq!(
            classify(TxnApi::Produce, ErrorCode::ProducerFenced.code()),
            Fenced
        );
        assert_eq!(
            classify(TxnApi::Produce, ErrorCode::NotLeaderOrFollower.code()),
            Abortable { bump_epoch: false }
        );
        assert_eq!(
            classify(TxnApi::EndTxn, ErrorCode::InvalidTxnState.code()),
            Fatal
        );
        // The group side of an offset commit, authorization and TRANSACTION_ABORTABLE abort
        // the transaction; an unknown code on a coordinator call is fatal.
        for named in [
            ErrorCode::GroupAuthorizationFailed,
            ErrorCode::UnknownMemberId,
            ErrorCode::FencedInstanceId,
            ErrorCode::TransactionAbortable,
            ErrorCode::OperationNotAttempted,
        ] {
            assert_eq!(
                classify(TxnApi::TxnOffsetCommit, named.code()),
                Abortable { bump_epoch: false },
                "{named:?}"
            );
        }
        assert_eq!(
            classify(TxnApi::EndTxn, ErrorCode::Other(999).code()),
            Fatal
        );
        assert_eq!(
            classify(TxnApi::InitProducerId, ErrorCode::NotEnoughReplicas.code()),
            Retry {
                find_coordinator: true
            }
        );
    }

    #[test]
    fn refuse_does_not_change_state_and_failures_are_abortable() {
        let mut m = TxnStateMachine::new();
        m.start(TxnOp::Init).unwrap();
        m.complete();
        m.start(TxnOp::Begin).unwrap();
        assert!(matches!(
            m.refuse(TxnOp::Commit),
            TransactionError::InvalidState { .. }
        ));
        assert_eq!(m.state(), TxnState::InTransaction);
        let timeout = ProduceError::Transaction(TransactionError::Timeout {
            operation: "send",
            waited_ms: 1,
        });
        assert!(txn_error_of(&timeout).is_abortable());
        m.fail(txn_error_of(&timeout));
        assert_eq!(m.state(), TxnState::AbortableError);
        assert!(m.refuse(TxnOp::Commit).is_abortable());
    }

    #[test]
    fn shared_send_check() {
        let s = TxnShared::new(true);
        assert!(s.check_send().is_err());
        s.set_state(TxnState::InTransaction);
        assert!(s.check_send().is_ok());
        s.record_failed(&ProduceError::Transaction(TransactionError::Aborted));
        assert!(s.check_send().is_ok(), "aborts do not count as failures");
        s.record_failed(&ProduceError::closed("x"));
        assert!(matches!(
            s.check_send(),
            Err(ProduceError::Transaction(
                TransactionError::Abortable { .. }
            ))
        ));
        s.clear_failure();
        assert!(s.check_send().is_ok());
        assert!(TxnShared::new(false).check_send().is_ok());
    }
}

//! The transactional side of the simulation (`transactional_simulation`): the [`TxnCore`] as
//! the `Sender` shell runs it, an application running transactions one after the other
//! (`init`, `begin`, sends, sometimes `send_offsets`, `commit` or `abort` after a flush, a call
//! given up after `max.block.ms` and called again, its answer sometimes arriving only after it
//! gave up), and a model transaction coordinator:
//! FindCoordinator, InitProducerId (fencing older epochs, aborting what they left open,
//! KIP-360 bumps), AddPartitionsToTxn, AddOffsetsToTxn, TxnOffsetCommit, EndTxn (retries of an
//! applied EndTxn answered as Kafka does), `CONCURRENT_TRANSACTIONS` while markers are written,
//! a coordinator that moves (`NOT_COORDINATOR`), loads (`COORDINATOR_LOAD_IN_PROGRESS`) and
//! loses requests and answers, and another instance of the same transactional id that fences
//! this one. Partitions verify a transactional batch against the coordinator (KIP-890 part 1,
//! on by default since Kafka 3.6): appended only inside the open transaction of its epoch.
//!
//! Invariants, at the end of each seed:
//! - **read_committed**: per partition, the records of committed transactions the model log
//!   shows (markers applied) are exactly the records of the transactions whose commit returned
//!   `Ok`, in the order sent; nothing of an aborted or fenced transaction is visible; a
//!   transaction whose end is unknown to the application (fenced or fatal while committing) is
//!   all or nothing; no model transaction holds records of two of the application's;
//! - the offsets committed are those of the committed transactions;
//! - a commit that returned `Ok` had every record delivered;
//! - no answer the producer reads says a batch was sent outside its transaction;
//! - the application is never left waiting: every call is answered, and its run ends.

use super::*;
use crate::codes::ErrorCode as E;
use crate::core::txn::{
    Action as TxnAction, Answer, CoordRequest, Found, Receipt, TxnCore, TxnRequest, TxnRules,
    TxnView, TxnWaiter, KEY_TRANSACTION,
};
use crate::transaction::{ConsumerGroupMetadata, TransactionError, TxnState};
use std::collections::{BTreeSet, HashSet};
use std::sync::atomic::AtomicBool;

/// What the transactional model did over a run of seeds (printed by the test).
pub(super) static COMMITTED: AtomicU64 = AtomicU64::new(0);
pub(super) static ABORTED: AtomicU64 = AtomicU64::new(0);
pub(super) static UNKNOWN: AtomicU64 = AtomicU64::new(0);
pub(super) static FENCED_RUNS: AtomicU64 = AtomicU64::new(0);
pub(super) static COORDINATOR_MOVES_SEEN: AtomicU64 = AtomicU64::new(0);
pub(super) static GIVEN_UP: AtomicU64 = AtomicU64::new(0);

/// A caller of the transactional API: `gone` once it gave up (`max.block.ms`, at
/// `give_up_at`); its receipt is taken once an answer reached it while it still waited (as the
/// handle does).
#[derive(Debug, Clone)]
pub(super) struct SimCaller {
    id: u64,
    gone: Arc<AtomicBool>,
    give_up_at: Option<u64>,
    receipt: Receipt,
}

impl SimCaller {
    fn gone(&self) -> bool {
        self.gone.load(Ordering::SeqCst)
    }
}

impl TxnWaiter for SimCaller {
    fn receipt(&self) -> &Receipt {
        &self.receipt
    }
}

/// What a transactional seed chose (from a generator of its own).
#[derive(Debug, Clone)]
pub(super) struct TxnParams {
    coordinator_moves: usize,
    /// When another instance of the transactional id calls InitProducerId.
    fence_at: Option<u64>,
    p_coord_error: f64,
    p_coord_lost: f64,
    p_abort: f64,
    max_open_ms: u64,
    p_offsets: f64,
    p_give_up: f64,
}

impl TxnParams {
    fn of(rng: &mut fastrand::Rng, window: u64) -> TxnParams {
        let calm = rng.u8(..4) == 0;
        let f = |rng: &mut fastrand::Rng, max: f64| if calm { 0.0 } else { rng.f64() * max };
        TxnParams {
            coordinator_moves: if calm { 0 } else { rng.usize(0..=4) },
            fence_at: (rng.u8(..5) == 0).then(|| rng.u64(0..window)),
            p_coord_error: f(rng, 0.2),
            p_coord_lost: f(rng, 0.1),
            p_abort: rng.f64() * 0.4,
            max_open_ms: rng.u64(20..=1_500),
            p_offsets: rng.f64() * 0.5,
            p_give_up: rng.f64() * 0.3,
        }
    }
}

/// What the application knows of one of its transactions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Fate {
    Open,
    Committed,
    Aborted,
    /// Fenced or fatal while ending: committed or not, the application cannot tell.
    Unknown,
}

/// The call the application waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Call {
    Init,
    Begin,
    Offsets,
    Prepare { commit: bool },
    End { commit: bool },
}

enum Phase {
    Start,
    /// `init_transactions` is out.
    Initializing,
    /// A transaction is open: records are sent.
    Open,
    /// The transaction is being ended: the flush first.
    Flushing {
        commit: bool,
        flush: FlushWait,
    },
    /// Then EndTxn.
    Ending,
    /// Between transactions, until the probe may begin.
    Between,
    /// Nothing more: the run's window is over, or the producer is fatal.
    Done,
}

/// A FindCoordinator or coordinator request out, as the model coordinator sees it.
enum ModelCall {
    Find {
        token: u64,
        key_type: i8,
        answer: Option<Found>,
    },
    Request {
        token: u64,
        node: i32,
        request: CoordRequest,
        answer: Option<Answer>,
    },
}

/// The model transaction coordinator (and the group coordinator, for TxnOffsetCommit).
struct SimCoord {
    node: i32,
    group_node: i32,
    pid: i64,
    epoch: i16,
    /// The open transaction (the model's number) and what it holds.
    ongoing: Option<u32>,
    partitions: BTreeSet<usize>,
    offsets_added: bool,
    pending_offsets: Vec<i64>,
    committed: HashSet<u32>,
    committed_offsets: Vec<i64>,
    next_txn: u32,
    /// Markers are being written: `CONCURRENT_TRANSACTIONS` until then.
    busy_until: u64,
    /// The last EndTxn applied: (producer id, epoch, commit), for its retry.
    last_end: Option<(i64, i16, bool)>,
    /// The last KIP-360 bump: what it was asked with and what it answered, for its retry.
    last_bump: Option<((i64, i16), (i64, i16))>,
}

/// Everything transactional in a seed.
pub(super) struct TxnSim {
    p: TxnParams,
    rng: fastrand::Rng,
    phase: Phase,
    call: Option<(Call, SimCaller)>,
    next_caller: u64,
    /// Answers on their way to a caller that gives up before they arrive (by event id).
    late: HashMap<u64, (SimCaller, Result<(), TransactionError>)>,
    /// Whether an answer is late (its own generator, so other seeds keep their runs).
    late_rng: fastrand::Rng,
    /// The current transaction's number (index into `fates`).
    current: usize,
    fates: Vec<Fate>,
    /// Transactions whose `send_offsets` returned `Ok`.
    offsets: HashSet<usize>,
    /// No transaction begins after this.
    window_ms: u64,
    coord: SimCoord,
    calls: HashMap<u64, ModelCall>,
    next_call: u64,
    /// The model transaction each appended record went into.
    record_txn: HashMap<u64, u32>,
    /// The application's transaction of each record (by record id).
    record_app: Vec<usize>,
    /// The faults stopped: the next transaction is the probe, the application's last.
    quiet: bool,
    /// The probe: a transaction begun after the faults stopped, with a batch for every
    /// partition; it must commit (unless the producer was fenced before).
    probe: Option<usize>,
    probes_left: usize,
    /// The probe begins no sooner (as the plain simulation's probes): what the faults left in
    /// flight (a lost metadata request) has timed out and the longest retry backoff passed.
    probe_not_before: u64,
    /// The probe's `send_offsets` returned (it must have succeeded).
    probe_offsets_done: bool,
    /// Why the application stopped early (only a fence may stop it).
    stopped: Option<TransactionError>,
    fenced: bool,
}

impl TxnSim {
    pub(super) fn new(seed: u64, brokers: usize, window_ms: u64) -> TxnSim {
        let mut rng = fastrand::Rng::with_seed(seed ^ 0x7a_5eed);
        let p = TxnParams::of(&mut rng, window_ms);
        let node = rng.i32(0..brokers as i32);
        let group_node = rng.i32(0..brokers as i32);
        TxnSim {
            p,
            rng,
            phase: Phase::Start,
            call: None,
            next_caller: 0,
            late: HashMap::new(),
            late_rng: fastrand::Rng::with_seed(seed ^ 0x4e91),
            current: 0,
            fates: Vec::new(),
            offsets: HashSet::new(),
            window_ms,
            coord: SimCoord {
                node,
                group_node,
                pid: -1,
                epoch: -1,
                ongoing: None,
                partitions: BTreeSet::new(),
                offsets_added: false,
                pending_offsets: Vec::new(),
                committed: HashSet::new(),
                committed_offsets: Vec::new(),
                next_txn: 0,
                busy_until: 0,
                last_end: None,
                last_bump: None,
            },
            calls: HashMap::new(),
            next_call: 0,
            record_txn: HashMap::new(),
            record_app: Vec::new(),
            quiet: false,
            probe: None,
            probes_left: 0,
            probe_not_before: 0,
            probe_offsets_done: false,
            stopped: None,
            fenced: false,
        }
    }

    /// Records may be sent now (a transaction is open and `send` would accept them).
    pub(super) fn open(&self) -> bool {
        matches!(self.phase, Phase::Open)
    }

    pub(super) fn done(&self) -> bool {
        matches!(self.phase, Phase::Done)
    }

    /// A record of the current transaction was made.
    pub(super) fn record_made(&mut self) {
        self.record_app.push(self.current);
    }
}

/// The `Sender` shell's transactional configuration, for the core.
pub(super) fn txn_core(p: &Params) -> TxnCore<SimCaller> {
    TxnCore::new(
        "sim-tx",
        TxnRules {
            call_timeout: Duration::from_millis(p.delivery_timeout_ms),
            retry_backoff: Duration::from_millis(p.retry_backoff_ms),
            retry_backoff_max: Duration::from_millis(p.retry_backoff_ms * 10),
            transaction_timeout: Duration::from_secs(60),
        },
    )
}

impl Sim {
    /// The events of the transactional model, scheduled at the start.
    pub(super) fn txn_start(&mut self) {
        let Some(t) = self.txn.as_mut() else { return };
        let window = t.window_ms;
        let moves: Vec<u64> = (0..t.p.coordinator_moves)
            .map(|_| t.rng.u64(0..window))
            .collect();
        let fence = t.p.fence_at;
        for at in moves {
            self.at(at, Ev::CoordMove);
        }
        if let Some(at) = fence {
            self.at(at, Ev::Fence);
        }
        self.at(0, Ev::App(0));
    }

    /// The faults of the transactional model stop too.
    pub(super) fn txn_quiet(&mut self) {
        let settle = self.p.request_timeout_ms + self.p.retry_backoff_ms * 10 + TICK_MS;
        if let Some(t) = self.txn.as_mut() {
            t.quiet = true;
            t.probe_not_before = self.now_ms + settle;
            t.p.p_coord_error = 0.0;
            t.p.p_coord_lost = 0.0;
        }
    }

    fn txn_view(&self) -> TxnView {
        TxnView::of(&self.core, &self.shared)
    }

    /// As the shell's `drain`: the sender's drain, then AddPartitionsToTxn for what it found.
    pub(super) fn drain_all(&mut self) {
        for _ in 0..8 {
            let mut out = Vec::new();
            self.core
                .drain(self.now(), &self.cluster, &mut self.txn_core, &mut out);
            self.execute(out);
            let (view, now) = (self.txn_view(), self.now());
            let Some(core) = self.txn_core.as_mut() else {
                return;
            };
            let mut tout = Vec::new();
            core.add_partitions(now, &view, &mut tout);
            if !self.run_txn(tout) {
                return;
            }
        }
    }

    /// Carries out the transaction core's actions as the shell does; `true` if it asked for a
    /// drain.
    fn run_txn(&mut self, actions: Vec<TxnAction<SimCaller>>) -> bool {
        let mut drain = false;
        for action in actions {
            match action {
                TxnAction::FindCoordinator {
                    token, key_type, ..
                } => {
                    // Something sent: the progress check counts it.
                    self.last_sent_ms = self.now_ms;
                    self.coord_send(ModelCall::Find {
                        token,
                        key_type,
                        answer: None,
                    })
                }
                TxnAction::Call {
                    token,
                    node,
                    request,
                    ..
                } => {
                    self.last_sent_ms = self.now_ms;
                    self.coord_send(ModelCall::Request {
                        token,
                        node,
                        request,
                        answer: None,
                    })
                }
                TxnAction::Reply(caller, res) => self.app_answer(caller, res),
                TxnAction::Publish(state) => self.shared.txn.set_state(state),
                TxnAction::ClearFailure => self.shared.txn.clear_failure(),
                TxnAction::FailQueued(err) => self.core.fail_queued(err),
                TxnAction::FailPartitions(tps, err) => {
                    for tp in &tps {
                        self.core.fail_partition(tp, &err);
                    }
                }
                TxnAction::ProducerIdInitializing => {
                    self.core.pid = super::super::sender::ProducerIdState::Initializing
                }
                TxnAction::ProducerIdUnknown => {
                    self.core.pid = super::super::sender::ProducerIdState::Unknown
                }
                TxnAction::ProducerId(id, epoch) => self.core.set_producer_id(id, epoch),
                TxnAction::Fenced => {}
                TxnAction::Drain => drain = true,
                TxnAction::WakeAt(at) => {
                    let ms = at.saturating_duration_since(self.base).as_millis() as u64;
                    self.at(ms.max(self.now_ms), Ev::TxnTick);
                }
            }
        }
        drain
    }

    /// A call of the application.
    fn app_request(&mut self, request: TxnRequest, call: Call) {
        let now = self.now();
        let Some(t) = self.txn.as_mut() else { return };
        let mut caller = SimCaller {
            id: t.next_caller,
            gone: Arc::new(AtomicBool::new(false)),
            give_up_at: None,
            receipt: Receipt::default(),
        };
        t.next_caller += 1;
        // Sometimes the caller gives up after a while (max.block.ms) and calls again.
        let joins = matches!(call, Call::Init | Call::End { .. });
        if joins && t.rng.f64() < t.p.p_give_up {
            let at = self.now_ms + t.rng.u64(1..=self.p.max_block_ms);
            caller.give_up_at = Some(at);
        }
        t.call = Some((call, caller.clone()));
        if let Some(at) = caller.give_up_at {
            self.at(at, Ev::GiveUp(caller.id));
        }
        let view = self.txn_view();
        let Some(core) = self.txn_core.as_mut() else {
            return;
        };
        let mut out = Vec::new();
        core.request(now, request, caller, &view, &mut out);
        if self.run_txn(out) {
            self.drain_all();
        }
    }

    fn request_of(call: Call, current: usize) -> TxnRequest {
        match call {
            Call::Init => TxnRequest::Init,
            Call::Begin => TxnRequest::Begin,
            Call::Offsets => TxnRequest::SendOffsets {
                offsets: vec![(TopicPartition::new("in", 0), current as i64)],
                group: ConsumerGroupMetadata::new("sim-group"),
            },
            Call::Prepare { commit: true } => TxnRequest::PrepareCommit,
            Call::Prepare { commit: false } => TxnRequest::PrepareAbort,
            Call::End { commit: true } => TxnRequest::Commit,
            Call::End { commit: false } => TxnRequest::Abort,
        }
    }

    fn app_call(&mut self, call: Call) {
        let current = self.txn.as_ref().map_or(0, |t| t.current);
        self.app_request(Self::request_of(call, current), call);
    }

    /// The core answered a caller: the answer reaches it now, or (sometimes, for a caller that
    /// gives up) only after it gave up, as a reply the handle's timeout beat.
    fn app_answer(&mut self, caller: SimCaller, res: Result<(), TransactionError>) {
        let now_ms = self.now_ms;
        let Some(t) = self.txn.as_mut() else { return };
        if let Some(at) = caller.give_up_at.filter(|&at| at > now_ms) {
            if t.late_rng.u8(..4) == 0 {
                let id = t.next_caller;
                t.next_caller += 1;
                t.late.insert(id, (caller, res));
                return self.at(at, Ev::TxnReply(id));
            }
        }
        self.app_reply(caller, res)
    }

    /// A late answer arrives.
    pub(super) fn txn_late_reply(&mut self, id: u64) {
        let Some(t) = self.txn.as_mut() else { return };
        if let Some((caller, res)) = t.late.remove(&id) {
            self.app_reply(caller, res);
        }
    }

    /// The application goes on after its call ended.
    fn app_reply(&mut self, caller: SimCaller, res: Result<(), TransactionError>) {
        let (trace, now_ms) = (self.trace, self.now_ms);
        let Some(t) = self.txn.as_mut() else { return };
        match &t.call {
            Some((_, c)) if c.id == caller.id && !caller.gone() => {}
            _ => return, // its caller gave up (the call made after it counts)
        }
        // The answer reached a caller (as the handle's `txn_call` marks it).
        caller.receipt.take();
        let Some((call, _)) = t.call.take() else {
            return;
        };
        if trace {
            eprintln!("         app: {call:?} -> {res:?}");
        }
        let fatal = matches!(&res, Err(e) if e.is_fatal());
        let cur = t.current;
        enum Next {
            Begin,
            Call(Call),
            Timers(u64, Option<u64>),
            Probe(u64),
            Flush(bool),
            Nothing,
        }
        let next = match (call, res) {
            (Call::Init, Ok(())) => Next::Begin,
            (Call::Init, Err(_)) if !fatal => Next::Call(Call::Init),
            (Call::Begin, Ok(())) if t.probe == Some(cur) => {
                t.phase = Phase::Open;
                Next::Probe(now_ms + t.rng.u64(1..=t.p.max_open_ms))
            }
            (Call::Begin, Ok(())) => {
                t.phase = Phase::Open;
                let end = now_ms + t.rng.u64(1..=t.p.max_open_ms);
                let offsets = (t.rng.f64() < t.p.p_offsets).then(|| t.rng.u64(now_ms..=end));
                Next::Timers(end, offsets)
            }
            (Call::Offsets, Ok(())) => {
                t.offsets.insert(cur);
                t.probe_offsets_done |= t.probe == Some(cur);
                Next::Nothing
            }
            (Call::Offsets, Err(_)) if !fatal => {
                t.probe_offsets_done |= t.probe == Some(cur);
                Next::Nothing
            }
            (Call::Prepare { commit }, Ok(())) => Next::Flush(commit),
            (Call::Prepare { commit: true } | Call::End { commit: true }, Err(e))
                if e.is_abortable() =>
            {
                Next::Call(Call::Prepare { commit: false })
            }
            // As Java's docs ask: call it again.
            (Call::End { commit }, Err(TransactionError::Timeout { .. })) => {
                Next::Call(Call::End { commit })
            }
            (Call::End { commit }, Ok(())) => {
                if let Some(fate) = t.fates.get_mut(cur) {
                    *fate = match (*fate, commit) {
                        (Fate::Unknown, _) => Fate::Unknown,
                        (_, true) => Fate::Committed,
                        (_, false) => Fate::Aborted,
                    };
                }
                Next::Begin
            }
            (call, Err(e)) => {
                // Fatal (fenced, authorization) or not allowed: the producer must be closed.
                if matches!(call, Call::End { .. } | Call::Prepare { .. })
                    || t.fates.get(cur) == Some(&Fate::Open)
                {
                    if let Some(f) = t.fates.get_mut(cur) {
                        *f = Fate::Unknown;
                    }
                }
                if trace {
                    eprintln!("         app stops: {e}");
                }
                t.stopped = Some(e);
                t.phase = Phase::Done;
                Next::Nothing
            }
        };
        match next {
            Next::Begin => self.app_begin(),
            Next::Call(call) => self.app_call(call),
            Next::Timers(end, offsets) => {
                self.at(end, Ev::App(cur));
                if let Some(at) = offsets {
                    self.at(at, Ev::AppOffsets(cur));
                }
            }
            Next::Probe(end) => {
                if let Some(t) = self.txn.as_mut() {
                    t.probes_left = self.p.partitions;
                }
                for partition in 0..self.p.partitions {
                    self.at(now_ms, Ev::Probe(partition));
                }
                // Offsets too: the group coordinator's side must work once the faults stop.
                self.at(now_ms, Ev::AppOffsets(cur));
                self.at(end, Ev::App(cur));
            }
            Next::Flush(commit) => {
                let shared = self.shared.clone();
                if let Some(t) = self.txn.as_mut() {
                    t.phase = Phase::Flushing {
                        commit,
                        flush: Box::pin(async move { shared.pending.wait_flushed().await }),
                    };
                }
                self.poll_app();
            }
            Next::Nothing => {}
        }
    }

    /// The next transaction, while the window lasts.
    fn app_begin(&mut self) {
        let Some(t) = self.txn.as_mut() else { return };
        if t.quiet && t.probe.is_some() {
            t.phase = Phase::Done;
            return;
        }
        if t.quiet && self.now_ms < t.probe_not_before {
            t.phase = Phase::Between;
            let at = t.probe_not_before;
            return self.at(at, Ev::App(usize::MAX));
        }
        t.current = t.fates.len();
        t.fates.push(Fate::Open);
        if t.quiet {
            t.probe = Some(t.current);
        }
        self.app_call(Call::Begin);
    }

    /// The application's timers.
    pub(super) fn app_event(&mut self, ev: Ev) {
        let now_ms = self.now_ms;
        let abortable = self.shared.txn.state() == TxnState::AbortableError
            || self.shared.txn.first_failure().is_some();
        // The probes wait for the transaction to take them, unless it cannot any more (the
        // producer failed meanwhile): then the application ends it and learns why.
        let sendable = self.shared.txn.check_send().is_ok();
        let Some(t) = self.txn.as_mut() else { return };
        if matches!((ev, &t.phase), (Ev::App(usize::MAX), Phase::Between)) {
            return self.app_begin();
        }
        let call = match ev {
            Ev::App(_) if matches!(t.phase, Phase::Start) => {
                t.phase = Phase::Initializing;
                Call::Init
            }
            Ev::App(n) if t.current == n && t.open() => {
                let probing =
                    t.probe == Some(n) && (t.probes_left > 0 || !t.probe_offsets_done) && sendable;
                if t.call.is_some() || probing {
                    // One call at a time, as a program makes them.
                    return self.at(now_ms + 20, Ev::App(n));
                }
                let commit = !abortable && (t.probe == Some(n) || t.rng.f64() >= t.p.p_abort);
                Call::Prepare { commit }
            }
            Ev::AppOffsets(n) if t.current == n && t.open() && t.call.is_none() => Call::Offsets,
            // The probe's offsets wait for a call in progress.
            Ev::AppOffsets(n) if t.probe == Some(n) && t.open() => {
                return self.at(now_ms + 20, Ev::AppOffsets(n));
            }
            Ev::GiveUp(id) => {
                let Some((call, caller)) = t.call.clone() else {
                    return;
                };
                if caller.id != id {
                    return;
                }
                GIVEN_UP.fetch_add(1, Ordering::Relaxed);
                caller.gone.store(true, Ordering::SeqCst);
                match call {
                    // As the handle's `commit_transaction` / `abort_transaction` called again:
                    // the prepare step, the flush, then the end.
                    Call::End { commit } => Call::Prepare { commit },
                    call => call,
                }
            }
            _ => return,
        };
        self.app_call(call);
    }

    /// A probe batch went into the probe transaction.
    pub(super) fn txn_probe_made(&mut self) {
        if let Some(t) = self.txn.as_mut() {
            t.probes_left = t.probes_left.saturating_sub(1);
        }
    }

    /// A flush the application waits on returned: EndTxn.
    pub(super) fn poll_app(&mut self) {
        let Some(t) = self.txn.as_mut() else { return };
        let Phase::Flushing { commit, flush } = &mut t.phase else {
            return;
        };
        if !poll_once(flush) {
            return;
        }
        let commit = *commit;
        t.phase = Phase::Ending;
        self.app_call(Call::End { commit });
    }

    pub(super) fn txn_tick(&mut self) {
        let (view, now) = (self.txn_view(), self.now());
        let Some(core) = self.txn_core.as_mut() else {
            return;
        };
        let mut out = Vec::new();
        core.tick(now, &view, &mut out);
        if self.run_txn(out) {
            self.drain_all();
        }
    }

    /// A FindCoordinator or coordinator request leaves: lost, or applied after a latency.
    fn coord_send(&mut self, call: ModelCall) {
        let lat = self.latency();
        let timeout = self.p.request_timeout_ms;
        let Some(t) = self.txn.as_mut() else { return };
        let id = t.next_call;
        t.next_call += 1;
        let lost = t.rng.f64() < t.p.p_coord_lost / 2.0;
        if self.trace {
            match &call {
                ModelCall::Find {
                    token, key_type, ..
                } => eprintln!(
                    "         coordinator call {id}: FindCoordinator key type {key_type} (token \
                     {token}) lost {lost}"
                ),
                ModelCall::Request {
                    token,
                    node,
                    request,
                    ..
                } => eprintln!(
                    "         coordinator call {id}: {request:?} to {node} (token {token}) lost \
                     {lost}"
                ),
            }
        }
        t.calls.insert(id, call);
        if lost {
            // Never read by the coordinator: the caller's request timeout ends it.
            self.at(self.now_ms + timeout, Ev::CoordAnswer(id));
        } else {
            self.at(self.now_ms + 1 + lat, Ev::CoordApply(id));
        }
    }

    /// The coordinator reads a call and answers it (the answer may be lost).
    pub(super) fn coord_apply(&mut self, id: u64) {
        let now_ms = self.now_ms;
        let lat = self.latency();
        let timeout = self.p.request_timeout_ms;
        let Some(t) = self.txn.as_mut() else { return };
        let error = t.rng.f64() < t.p.p_coord_error;
        let lose_answer = t.rng.f64() < t.p.p_coord_lost / 2.0;
        let Some(call) = t.calls.get_mut(&id) else {
            return;
        };
        match call {
            ModelCall::Find {
                key_type, answer, ..
            } => {
                let node = if *key_type == KEY_TRANSACTION {
                    t.coord.node
                } else {
                    t.coord.group_node
                };
                *answer = Some(if error {
                    Found::Code(E::CoordinatorNotAvailable.code())
                } else {
                    Found::Node {
                        node,
                        address: format!("sim-{node}:9092").into(),
                    }
                });
            }
            ModelCall::Request {
                node,
                request,
                answer,
                ..
            } => {
                *answer = Some(coordinator_answer(
                    &mut t.coord,
                    &mut t.rng,
                    now_ms,
                    *node,
                    request,
                    error,
                ));
            }
        }
        // Lost answers are applied and never come: the request timeout ends the call.
        let at = if lose_answer {
            now_ms + timeout
        } else {
            now_ms + 1 + lat
        };
        self.at(at, Ev::CoordAnswer(id));
    }

    /// The answer (or the timeout) of a call reaches the producer.
    pub(super) fn coord_answer(&mut self, id: u64) {
        let view = self.txn_view();
        let now = self.now();
        let Some(t) = self.txn.as_mut() else { return };
        let Some(call) = t.calls.remove(&id) else {
            return;
        };
        if self.trace {
            match &call {
                ModelCall::Find { answer, .. } => {
                    eprintln!("         coordinator call {id} answered {answer:?}")
                }
                ModelCall::Request { answer, .. } => {
                    eprintln!("         coordinator call {id} answered {answer:?}")
                }
            }
        }
        let mut out = Vec::new();
        match call {
            ModelCall::Find { token, answer, .. } => {
                let Some(core) = self.txn_core.as_mut() else {
                    return;
                };
                core.found(now, token, answer.unwrap_or(Found::Lost), &view, &mut out)
            }
            ModelCall::Request {
                token,
                answer,
                request,
                ..
            } => {
                if let Some(Answer::Codes(codes)) = &answer {
                    if codes.contains(&E::InvalidTxnState.code()) {
                        self.violation(format!(
                            "transactions: the coordinator answered INVALID_TXN_STATE to \
                             {request:?}"
                        ));
                    }
                }
                let Some(core) = self.txn_core.as_mut() else {
                    return;
                };
                core.answered(now, token, answer.unwrap_or(Answer::Lost), &view, &mut out)
            }
        }
        if self.run_txn(out) {
            self.drain_all();
        }
    }

    /// Another instance of the transactional id starts: InitProducerId fences this one and
    /// aborts the transaction it left open.
    pub(super) fn fence(&mut self) {
        let now_ms = self.now_ms;
        let Some(t) = self.txn.as_mut() else { return };
        if t.quiet || t.coord.pid < 0 {
            return;
        }
        FENCED_RUNS.fetch_add(1, Ordering::Relaxed);
        t.fenced = true;
        if self.trace {
            eprintln!("         another instance fences epoch {}", t.coord.epoch);
        }
        end_ongoing(&mut t.coord, &mut t.rng, now_ms, false);
        t.coord.epoch += 1;
        t.coord.last_bump = None;
        t.coord.last_end = None;
    }

    pub(super) fn coord_move(&mut self) {
        let brokers = self.p.brokers as i32;
        let Some(t) = self.txn.as_mut() else { return };
        if t.quiet || brokers < 2 {
            return;
        }
        COORDINATOR_MOVES_SEEN.fetch_add(1, Ordering::Relaxed);
        if t.rng.bool() {
            t.coord.node = (t.coord.node + 1) % brokers;
        } else {
            t.coord.group_node = (t.coord.group_node + 1) % brokers;
        }
    }

    /// The partition's check of a transactional batch before it is appended (KIP-890 part
    /// 1): `None` to append it into that transaction, else the error code.
    pub(super) fn verify_txn_batch(
        &mut self,
        partition: usize,
        producer_id: i64,
        epoch: i16,
    ) -> Result<u32, i16> {
        let Some(t) = self.txn.as_ref() else {
            return Err(E::UnknownServerError.code());
        };
        let c = &t.coord;
        if producer_id != c.pid || epoch < c.epoch {
            return Err(E::InvalidProducerEpoch.code());
        }
        match c.ongoing {
            Some(n) if epoch == c.epoch && c.partitions.contains(&partition) => Ok(n),
            _ => Err(E::InvalidTxnState.code()), // not in an open transaction
        }
    }

    /// The records of a verified batch went into model transaction `n`.
    pub(super) fn txn_appended(&mut self, ids: &[u64], n: u32) {
        if let Some(t) = self.txn.as_mut() {
            for id in ids {
                t.record_txn.insert(*id, n);
            }
        }
    }

    /// The invariants of the module docs, at the end of a seed.
    pub(super) fn txn_finish(&self, v: &mut Vec<String>) {
        let Some(t) = self.txn.as_ref() else { return };
        for f in &t.fates {
            match f {
                Fate::Committed => COMMITTED.fetch_add(1, Ordering::Relaxed),
                Fate::Aborted => ABORTED.fetch_add(1, Ordering::Relaxed),
                _ => UNKNOWN.fetch_add(1, Ordering::Relaxed),
            };
        }
        if !t.done() {
            let waits = t.call.as_ref().map(|(c, _)| format!("{c:?}"));
            v.push(format!(
                "transactions: the application never finished (transaction {}, waiting for \
                 {waits:?}, producer {:?})",
                t.current,
                self.shared.txn.state()
            ));
        }
        match (&t.stopped, t.fenced) {
            (Some(TransactionError::Fenced { .. }), true) => {}
            (Some(e), fenced) => v.push(format!(
                "transactions: the application stopped in transaction {} ({} fence): {e}",
                t.current,
                if fenced { "after a" } else { "with no" }
            )),
            (None, _) => match t.probe.map(|n| (n, t.fates.get(n))) {
                Some((n, Some(Fate::Committed))) if !t.offsets.contains(&n) => v.push(format!(
                    "liveness: the send_offsets of the transaction begun after the faults \
                     stopped ({n}) failed"
                )),
                Some((_, Some(Fate::Committed))) => {}
                Some((n, fate)) => v.push(format!(
                    "liveness: the transaction begun after the faults stopped ({n}) ended {fate:?}"
                )),
                None => v.push("liveness: no transaction after the faults stopped".into()),
            },
        }
        let book = lock(&self.book);
        // One application transaction per model transaction.
        let mut owner: HashMap<u32, usize> = HashMap::new();
        for (rid, n) in &t.record_txn {
            let app = t
                .record_app
                .get(*rid as usize)
                .copied()
                .unwrap_or(usize::MAX);
            if let Some(other) = owner.insert(*n, app) {
                if other != app {
                    v.push(format!(
                        "transactions: model transaction {n} holds records of the application's \
                         transactions {other} and {app} (record {rid})"
                    ));
                }
            }
        }
        let fate = |rid: u64| {
            t.record_app
                .get(rid as usize)
                .and_then(|a| t.fates.get(*a))
                .copied()
        };
        for (p, m) in self.model.iter().enumerate() {
            let visible: Vec<u64> = m
                .log
                .iter()
                .copied()
                .filter(|rid| {
                    t.record_txn
                        .get(rid)
                        .is_some_and(|n| t.coord.committed.contains(n))
                })
                .collect();
            let shown: Vec<u64> = visible
                .iter()
                .copied()
                .filter(|rid| fate(*rid) != Some(Fate::Unknown))
                .collect();
            let expected: Vec<u64> = book
                .records
                .iter()
                .enumerate()
                .filter(|(rid, r)| r.partition == p && fate(*rid as u64) == Some(Fate::Committed))
                .map(|(rid, _)| rid as u64)
                .collect();
            if shown != expected {
                let first = shown
                    .iter()
                    .zip(&expected)
                    .position(|(a, b)| a != b)
                    .unwrap_or(shown.len().min(expected.len()));
                v.push(format!(
                    "read_committed: partition {p} shows {} records of committed transactions, \
                     {} expected; first difference at {first}: shown {:?}, expected {:?} (fates \
                     {:?})",
                    shown.len(),
                    expected.len(),
                    shown.get(first).map(|r| (r, fate(*r))),
                    expected.get(first),
                    t.fates
                ));
            }
        }
        for (rid, r) in book.records.iter().enumerate() {
            if fate(rid as u64) == Some(Fate::Committed)
                && !matches!(r.outcome, Some(Outcome { result: Ok(_), .. }))
            {
                v.push(format!(
                    "transactions: record {rid} of committed transaction {:?} has outcome {:?}",
                    t.record_app.get(rid),
                    r.outcome
                ));
            }
        }
        // All or nothing for a transaction whose end is unknown.
        for (a, f) in t.fates.iter().enumerate() {
            if *f != Fate::Unknown {
                continue;
            }
            let in_log: Vec<u64> = t
                .record_txn
                .keys()
                .copied()
                .filter(|rid| t.record_app.get(*rid as usize) == Some(&a))
                .collect();
            let shown = in_log
                .iter()
                .filter(|rid| {
                    t.record_txn
                        .get(rid)
                        .is_some_and(|n| t.coord.committed.contains(n))
                })
                .count();
            if shown != 0 && shown != in_log.len() {
                v.push(format!(
                    "read_committed: transaction {a} (end unknown) shows {shown} of its {} records",
                    in_log.len()
                ));
            }
        }
        let committed: BTreeSet<i64> = t.coord.committed_offsets.iter().copied().collect();
        for (a, f) in t.fates.iter().enumerate() {
            let has = committed.contains(&(a as i64));
            let ok = match f {
                Fate::Committed => has == t.offsets.contains(&a),
                Fate::Unknown => true,
                _ => !has,
            };
            if !ok {
                v.push(format!(
                    "transactions: offsets of transaction {a} ({f:?}, sent {}) committed: {has}",
                    t.offsets.contains(&a)
                ));
            }
        }
    }

    /// An answer the producer reads must not say its batch was outside its transaction.
    pub(super) fn txn_check_answer(&self, resp: &ProduceResponse) {
        if self.txn.is_none() {
            return;
        }
        for t in &resp.responses {
            for p in &t.partition_responses {
                if p.error_code == E::InvalidTxnState.code() {
                    self.violation(format!(
                        "transactions: partition {} answered INVALID_TXN_STATE: a batch sent \
                         outside its transaction",
                        p.index
                    ));
                }
            }
        }
    }
}

/// Ends the open transaction: markers (commit: its records and offsets become visible).
fn end_ongoing(c: &mut SimCoord, rng: &mut fastrand::Rng, now_ms: u64, commit: bool) {
    if let Some(n) = c.ongoing.take() {
        if commit {
            c.committed.insert(n);
            c.committed_offsets.append(&mut c.pending_offsets);
        }
        c.busy_until = now_ms + rng.u64(0..=60);
    }
    c.pending_offsets.clear();
    c.partitions.clear();
    c.offsets_added = false;
}

/// The model coordinator applies `request`, sent to `node`.
fn coordinator_answer(
    c: &mut SimCoord,
    rng: &mut fastrand::Rng,
    now_ms: u64,
    node: i32,
    request: &CoordRequest,
    error: bool,
) -> Answer {
    let fail = |code: i16| match request {
        CoordRequest::InitProducerId { .. } => Answer::ProducerId {
            code,
            id: -1,
            epoch: -1,
        },
        _ => Answer::Codes(vec![code]),
    };
    let owner = match request {
        CoordRequest::TxnOffsetCommit { .. } => c.group_node,
        _ => c.node,
    };
    if node != owner {
        return fail(E::NotCoordinator.code());
    }
    if error {
        return fail(E::CoordinatorLoadInProgress.code());
    }
    let concurrent = now_ms < c.busy_until;
    let current = |producer: (i64, i16)| producer == (c.pid, c.epoch);
    match request {
        CoordRequest::InitProducerId { current: None, .. } => {
            if concurrent {
                return fail(E::ConcurrentTransactions.code());
            }
            end_ongoing(c, rng, now_ms, false);
            if c.pid < 0 {
                c.pid = 5000;
                c.epoch = 0;
            } else {
                c.epoch += 1;
            }
            c.last_bump = None;
            c.last_end = None;
            Answer::ProducerId {
                code: 0,
                id: c.pid,
                epoch: c.epoch,
            }
        }
        CoordRequest::InitProducerId {
            current: Some(asked),
            ..
        } => {
            if let Some((was, answered)) = c.last_bump {
                if was == *asked {
                    return Answer::ProducerId {
                        code: 0,
                        id: answered.0,
                        epoch: answered.1,
                    };
                }
            }
            if !current(*asked) {
                return fail(E::ProducerFenced.code());
            }
            if concurrent {
                return fail(E::ConcurrentTransactions.code());
            }
            end_ongoing(c, rng, now_ms, false);
            c.epoch += 1;
            c.last_bump = Some((*asked, (c.pid, c.epoch)));
            Answer::ProducerId {
                code: 0,
                id: c.pid,
                epoch: c.epoch,
            }
        }
        CoordRequest::AddPartitions {
            producer,
            partitions,
        } => {
            if !current(*producer) {
                return Answer::Codes(vec![E::ProducerFenced.code(); partitions.len().max(1)]);
            }
            if concurrent {
                return Answer::Codes(vec![
                    E::ConcurrentTransactions.code();
                    partitions.len().max(1)
                ]);
            }
            if c.ongoing.is_none() {
                c.ongoing = Some(c.next_txn);
                c.next_txn += 1;
            }
            for tp in partitions {
                c.partitions.insert(tp.partition as usize);
            }
            Answer::Codes(vec![0; partitions.len()])
        }
        CoordRequest::AddOffsets { producer, .. } => {
            if !current(*producer) {
                return fail(E::ProducerFenced.code());
            }
            if concurrent {
                return fail(E::ConcurrentTransactions.code());
            }
            if c.ongoing.is_none() {
                c.ongoing = Some(c.next_txn);
                c.next_txn += 1;
            }
            c.offsets_added = true;
            Answer::Codes(vec![0])
        }
        CoordRequest::TxnOffsetCommit {
            producer, offsets, ..
        } => {
            if !current(*producer) {
                return fail(E::ProducerFenced.code());
            }
            if c.ongoing.is_none() || !c.offsets_added {
                // Not in the transaction: the producer skipped AddOffsetsToTxn.
                return fail(E::InvalidTxnState.code());
            }
            c.pending_offsets.extend(offsets.iter().map(|(_, o)| *o));
            Answer::Codes(vec![0; offsets.len()])
        }
        CoordRequest::EndTxn { producer, commit } => {
            if !current(*producer) {
                return fail(E::ProducerFenced.code());
            }
            if c.ongoing.is_none() {
                // A retry of the EndTxn applied already is answered as it was.
                return if c.last_end == Some((producer.0, producer.1, *commit)) {
                    Answer::Codes(vec![0])
                } else {
                    fail(E::InvalidTxnState.code())
                };
            }
            end_ongoing(c, rng, now_ms, *commit);
            c.last_end = Some((producer.0, producer.1, *commit));
            Answer::Codes(vec![0])
        }
    }
}

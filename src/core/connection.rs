//! The decisions of one broker connection (issue 19), as a plain state machine: its lifecycle
//! (one [`Lifecycle`] instead of flags), the calls waiting for a session, correlation ids, the
//! in-flight FIFO, request timeouts, `connections.max.idle.ms`, the reconnect backoff and
//! KIP-368 re-authentication.
//!
//! Time is an argument and every effect is an [`Action`]: the shell
//! (`actors/connection.rs`) dials, writes frames, starts and ends a session's reader, writer and
//! timers, answers calls, emits health events and counts metrics; it moves bytes and decides
//! nothing. The simulation (`core/sim.rs`) drives the same core against a model socket.
//!
//! `Q` is a call not yet written (the shell's request and reply; the simulation's request id),
//! `C` what answers a request in flight once its response frame is read.

use crate::error::ConnectionError;
use crate::health::HealthEvent;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The settings the decisions use, from [`crate::config::ProducerConfig`].
#[derive(Debug, Clone)]
pub(crate) struct ConnectionRules {
    /// `request.timeout.ms`: the oldest request in flight unanswered this long resets the session.
    pub request_timeout: Duration,
    /// `connections.max.idle.ms`: a session with nothing in flight or waiting this long closes.
    pub max_idle: Duration,
    /// `reconnect.backoff.ms`.
    pub reconnect_backoff: Duration,
    /// `reconnect.backoff.max.ms`.
    pub reconnect_backoff_max: Duration,
    /// SASL is configured (for the hint when a listener closes before answering).
    pub sasl: bool,
}

/// Where a connection is in its life.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Lifecycle {
    /// No session and no attempt: not connected yet, or closed after `connections.max.idle.ms`
    /// (not a failure). A call dials at once and waits for the session.
    Idle,
    /// A connect attempt is under way; calls wait for it, or, while `refusing` is set (the
    /// last attempt failed with it), fail fast with it so their callers retry on their own
    /// backoff and deadlines instead of waiting out ours. `reauth`: the attempt replaces a
    /// session due for re-authentication (KIP-368), not a failed one. `asked`: a call came
    /// since the attempt began.
    Connecting {
        /// The error of the previous failed attempt.
        refusing: Option<ConnectionError>,
        /// This attempt re-authenticates (no health event, a re-authentication count).
        reauth: bool,
        /// A call arrived since the attempt began.
        asked: bool,
    },
    /// A session is up: calls are written at once.
    Up,
    /// The session is due for re-authentication: calls wait until what is in flight is
    /// answered, then a fresh session takes over. Nothing in flight is lost or sent twice.
    Draining,
    /// The last attempt failed and nobody asked for this broker during it (a dead bootstrap
    /// server): nothing is dialled until a call comes; that call fails fast with `error` and
    /// an attempt follows after the backoff.
    Dormant {
        /// Why the last attempt failed.
        error: ConnectionError,
    },
    /// The session or attempt failed: the shell restarts (a fresh actor context, which drops
    /// the old session's tasks) and [`ConnectionCore::start`] dials after the backoff.
    Down {
        /// Set when an attempt failed: the next attempt refuses calls with it meanwhile.
        refusing: Option<ConnectionError>,
    },
    /// Replaced by the pool (the broker's address changed): never connects again; calls fail
    /// with `error`.
    Retired {
        /// What calls get.
        error: ConnectionError,
    },
}

pub(crate) use crate::metrics::Count;

/// What the shell carries out, in order.
#[derive(Debug)]
pub(crate) enum Action<Q, C> {
    /// Start a connect attempt after `delay` (TCP, TLS, ApiVersions, SASL), then report
    /// [`ConnectionCore::connected`] or [`ConnectionCore::connect_failed`].
    Dial {
        /// The reconnect backoff (zero for a first attempt or after idleness).
        delay: Duration,
    },
    /// A session is up: start its reader, its writer and its timers for `session`; if
    /// `reauth_in` is set, call [`ConnectionCore::reauth_due`] then (KIP-368).
    Open {
        /// The session's number, for stale timers and resets.
        session: u64,
        /// When re-authentication is due.
        reauth_in: Option<Duration>,
    },
    /// Write `call` on `session` with `correlation_id`; a call that expects a response is then
    /// registered with [`ConnectionCore::sent`].
    Send {
        /// The call.
        call: Q,
        /// Its correlation id.
        correlation_id: i32,
        /// The session it goes on (always the current, open one).
        session: u64,
    },
    /// Answer a call that was never written with an error.
    Refuse(Q, ConnectionError),
    /// Answer a request in flight with an error.
    Fail(C, ConnectionError),
    /// End the session: drop its writer (frames still queued are never written on it), its
    /// reader and its timers, and close the socket.
    CloseSession,
    /// Stop the actor's context; the supervisor restarts it and the shell calls
    /// [`ConnectionCore::start`].
    Restart,
    /// Emit a health event (and log it).
    Health(HealthEvent),
    /// Add to a metric.
    Count(Count),
}

/// A request written and not answered yet.
#[derive(Debug)]
struct InFlight<C> {
    correlation_id: i32,
    sent: Instant,
    done: C,
}

/// One broker connection's state. See the module docs.
#[derive(Debug)]
pub(crate) struct ConnectionCore<Q, C> {
    rules: ConnectionRules,
    node_id: i32,
    broker: Arc<str>,
    state: Lifecycle,
    /// Consecutive failed sessions and attempts; drives the reconnect backoff.
    failures: u32,
    /// Incremented on every session opened.
    session: u64,
    next_correlation_id: i32,
    /// Calls waiting for a session (guards: only `Idle`, `Connecting`, `Draining` and `Down`
    /// hold any; `Up` writes them at once).
    queued: Vec<Q>,
    /// Requests written on the current session, oldest first (Kafka answers in order).
    in_flight: VecDeque<InFlight<C>>,
    /// The last call or response (for `connections.max.idle.ms`).
    last_used: Instant,
    /// Responses read in the current session.
    responses: u64,
    /// When the current episode of trouble began, and its failed attempts (see
    /// [`crate::health`]).
    down_since: Option<(Instant, u32)>,
    /// Counted in `connection-count`.
    counted: bool,
}

impl<Q, C> ConnectionCore<Q, C> {
    /// A connection to `broker` (`host:port`), known as `node_id`; not started.
    pub(crate) fn new(
        rules: ConnectionRules,
        node_id: i32,
        broker: Arc<str>,
        now: Instant,
    ) -> Self {
        ConnectionCore {
            rules,
            node_id,
            broker,
            state: Lifecycle::Down { refusing: None },
            failures: 0,
            session: 0,
            next_correlation_id: 1,
            queued: Vec::new(),
            in_flight: VecDeque::new(),
            last_used: now,
            responses: 0,
            down_since: None,
            counted: false,
        }
    }

    #[cfg(test)]
    /// Where it is.
    pub(crate) fn state(&self) -> &Lifecycle {
        &self.state
    }

    #[cfg(test)]
    /// Requests in flight.
    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    #[cfg(test)]
    /// Calls waiting for a session.
    pub(crate) fn queued(&self) -> usize {
        self.queued.len()
    }

    fn disconnected(&self, reason: impl Into<Arc<str>>) -> ConnectionError {
        ConnectionError::Disconnected {
            broker: self.broker.clone(),
            reason: reason.into(),
        }
    }

    fn backoff(&self) -> Duration {
        if self.failures == 0 {
            return Duration::ZERO;
        }
        crate::backoff::exponential(
            self.rules.reconnect_backoff,
            self.rules.reconnect_backoff_max,
            self.failures,
        )
    }

    /// The actor started, first or after a restart: dial (after the backoff), unless retired.
    pub(crate) fn start(&mut self, _now: Instant) -> Vec<Action<Q, C>> {
        let refusing = match &mut self.state {
            Lifecycle::Down { refusing } => refusing.take(),
            Lifecycle::Retired { .. } => return Vec::new(),
            _ => None,
        };
        let mut out = Vec::new();
        self.dial(self.backoff(), refusing, false, &mut out);
        out
    }

    fn dial(
        &mut self,
        delay: Duration,
        refusing: Option<ConnectionError>,
        reauth: bool,
        out: &mut Vec<Action<Q, C>>,
    ) {
        self.state = Lifecycle::Connecting {
            refusing,
            reauth,
            asked: !self.queued.is_empty(),
        };
        out.push(Action::Dial { delay });
    }

    /// A call arrives (`now`).
    pub(crate) fn call(&mut self, now: Instant, call: Q) -> Vec<Action<Q, C>> {
        self.last_used = now;
        let mut out = Vec::new();
        match &mut self.state {
            Lifecycle::Up => self.send(call, &mut out),
            Lifecycle::Retired { error } => out.push(Action::Refuse(call, error.clone())),
            Lifecycle::Connecting {
                refusing, asked, ..
            } => {
                *asked = true;
                match refusing {
                    Some(e) => out.push(Action::Refuse(call, e.clone())),
                    None => self.queued.push(call),
                }
            }
            Lifecycle::Draining | Lifecycle::Down { .. } => self.queued.push(call),
            Lifecycle::Idle => {
                self.queued.push(call);
                self.dial(Duration::ZERO, None, false, &mut out);
            }
            Lifecycle::Dormant { error } => {
                // Fail fast, as while reconnecting, and dial again after the backoff.
                let error = error.clone();
                out.push(Action::Refuse(call, error.clone()));
                let delay = self.backoff();
                self.dial(delay, Some(error), false, &mut out);
                if let Lifecycle::Connecting { asked, .. } = &mut self.state {
                    *asked = true;
                }
            }
        }
        out
    }

    fn send(&mut self, call: Q, out: &mut Vec<Action<Q, C>>) {
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id = self.next_correlation_id.wrapping_add(1).max(1);
        out.push(Action::Send {
            call,
            correlation_id,
            session: self.session,
        });
    }

    /// The request of an [`Action::Send`] was handed to the session's writer and expects a
    /// response: it joins the in-flight FIFO.
    pub(crate) fn sent(&mut self, now: Instant, correlation_id: i32, done: C) {
        self.in_flight.push_back(InFlight {
            correlation_id,
            sent: now,
            done,
        });
    }

    /// The connect attempt succeeded; `jitter` in `0..1` spreads re-authentication over 85-95%
    /// of the broker's session `lifetime` (KIP-368).
    pub(crate) fn connected(
        &mut self,
        now: Instant,
        lifetime: Option<Duration>,
        jitter: f64,
    ) -> Vec<Action<Q, C>> {
        let reauth = matches!(self.state, Lifecycle::Connecting { reauth: true, .. });
        let mut out = Vec::new();
        if !reauth {
            if let Some((since, attempt)) = self.down_since.take() {
                out.push(Action::Health(HealthEvent::BrokerRestarted {
                    node_id: self.node_id,
                    address: self.broker.clone(),
                    attempt,
                    down_for: now.saturating_duration_since(since),
                }));
            }
            out.push(Action::Health(HealthEvent::BrokerUp {
                node_id: self.node_id,
                address: self.broker.clone(),
            }));
        }
        out.push(Action::Count(Count::Created));
        if !std::mem::replace(&mut self.counted, true) {
            out.push(Action::Count(Count::Opened));
        }
        if self.rules.sasl {
            out.push(Action::Count(if reauth {
                Count::Reauthenticated
            } else {
                Count::Authenticated
            }));
        }
        self.failures = 0;
        self.state = Lifecycle::Up;
        self.last_used = now;
        self.responses = 0;
        self.session += 1;
        // Never sooner than 100 ms: a broker granting less gets its sessions expired instead of
        // a reconnect loop.
        let reauth_in = lifetime.map(|l| {
            l.mul_f64(0.85 + 0.10 * jitter.clamp(0.0, 1.0))
                .max(Duration::from_millis(100))
        });
        out.push(Action::Open {
            session: self.session,
            reauth_in,
        });
        for call in std::mem::take(&mut self.queued) {
            self.send(call, &mut out);
        }
        out
    }

    /// The connect attempt failed with `err`.
    pub(crate) fn connect_failed(
        &mut self,
        _now: Instant,
        err: ConnectionError,
    ) -> Vec<Action<Q, C>> {
        let mut out = Vec::new();
        if matches!(err, ConnectionError::Authentication { .. }) {
            out.push(Action::Count(Count::AuthenticationFailed));
        }
        self.trouble(_now, &err, &mut out);
        self.failures = self.failures.saturating_add(1);
        let asked = match &self.state {
            Lifecycle::Connecting { asked, .. } => *asked,
            _ => true,
        };
        for call in std::mem::take(&mut self.queued) {
            out.push(Action::Refuse(call, err.clone()));
        }
        if !asked && self.in_flight.is_empty() {
            // Nobody asked for this broker during the attempt: stay down quietly until a call
            // comes (it fails fast and dials again after the backoff).
            self.state = Lifecycle::Dormant { error: err };
            return out;
        }
        self.state = Lifecycle::Down {
            refusing: Some(err),
        };
        out.push(Action::Restart);
        out
    }

    /// The first failure of an episode emits `BrokerDown`; later ones count its attempts.
    fn trouble(&mut self, now: Instant, err: &ConnectionError, out: &mut Vec<Action<Q, C>>) {
        match &mut self.down_since {
            Some((_, attempts)) => *attempts = attempts.saturating_add(1),
            None => {
                self.down_since = Some((now, 1));
                out.push(Action::Health(HealthEvent::BrokerDown {
                    node_id: self.node_id,
                    address: self.broker.clone(),
                    cause: err.clone(),
                }));
            }
        }
    }

    fn uncount(&mut self, out: &mut Vec<Action<Q, C>>) {
        if std::mem::take(&mut self.counted) {
            out.push(Action::Count(Count::Closed));
        }
    }

    /// Ends the session or attempt as failed with `err`: what is in flight fails, what waits
    /// stays for the next session, and the actor restarts after the backoff.
    fn shut(&mut self, now: Instant, err: ConnectionError, out: &mut Vec<Action<Q, C>>) {
        self.uncount(out);
        self.trouble(now, &err, out);
        out.push(Action::CloseSession);
        for f in self.in_flight.drain(..) {
            out.push(Action::Fail(f.done, err.clone()));
        }
        self.failures = self.failures.saturating_add(1);
        self.state = Lifecycle::Down { refusing: None };
        out.push(Action::Restart);
    }

    /// A response frame with `correlation_id` (`None`: too short to have one) was read on the
    /// current session. Returns what it answers; a frame that is not the answer to the oldest
    /// request in flight resets the session.
    pub(crate) fn response(
        &mut self,
        now: Instant,
        correlation_id: Option<i32>,
    ) -> (Option<C>, Vec<Action<Q, C>>) {
        let mut out = Vec::new();
        if !matches!(self.state, Lifecycle::Up | Lifecycle::Draining) {
            return (None, out); // a frame of a session already ended
        }
        self.last_used = now;
        match self.in_flight.front() {
            Some(front) if Some(front.correlation_id) == correlation_id => {
                self.responses += 1;
                let done = self.in_flight.pop_front().map(|f| f.done);
                self.maybe_reauthenticate(&mut out);
                (done, out)
            }
            front => {
                let reason = format!(
                    "unexpected correlation id {:?} (expected {:?})",
                    correlation_id,
                    front.map(|f| f.correlation_id)
                );
                let err = ConnectionError::Malformed {
                    broker: self.broker.clone(),
                    reason: reason.into(),
                };
                self.shut(now, err, &mut out);
                (None, out)
            }
        }
    }

    /// The session's watchdog (every quarter of `request.timeout.ms`, 10 ms .. 1 s): closes an
    /// idle session; resets one whose oldest request waited longer than `request.timeout.ms`
    /// (requests are answered in order, so the session is stuck, as the Java client judges).
    pub(crate) fn tick(&mut self, now: Instant) -> Vec<Action<Q, C>> {
        let mut out = Vec::new();
        match self.state {
            Lifecycle::Up
                if self.in_flight.is_empty()
                    && self.queued.is_empty()
                    && now.saturating_duration_since(self.last_used) >= self.rules.max_idle =>
            {
                // Not a failure: no health event, no backoff; the next call reconnects.
                self.uncount(&mut out);
                out.push(Action::CloseSession);
                self.state = Lifecycle::Idle;
            }
            Lifecycle::Up | Lifecycle::Draining
                if self.in_flight.front().is_some_and(|f| {
                    now.saturating_duration_since(f.sent) > self.rules.request_timeout
                }) =>
            {
                let err = ConnectionError::RequestTimeout {
                    broker: self.broker.clone(),
                    timeout_ms: self.rules.request_timeout.as_millis() as u64,
                };
                self.shut(now, err, &mut out);
            }
            _ => {}
        }
        out
    }

    /// KIP-368: session `session`'s re-authentication is due.
    pub(crate) fn reauth_due(&mut self, _now: Instant, session: u64) -> Vec<Action<Q, C>> {
        let mut out = Vec::new();
        if session == self.session && self.state == Lifecycle::Up {
            self.state = Lifecycle::Draining;
            self.maybe_reauthenticate(&mut out);
        }
        out
    }

    /// Once nothing is in flight, a draining session is replaced by a fresh one.
    fn maybe_reauthenticate(&mut self, out: &mut Vec<Action<Q, C>>) {
        if self.state == Lifecycle::Draining && self.in_flight.is_empty() {
            out.push(Action::CloseSession);
            self.dial(Duration::ZERO, None, true, out);
        }
    }

    /// Reset the session (`session`: the one it is about, `None`: whichever is current) with
    /// `err`: after a caller's request timeout (as Java's `NetworkClient`, so a retry never
    /// travels beside the unanswered original), a write that failed or stalled, a read error.
    /// A reset for an older session is ignored.
    pub(crate) fn reset(
        &mut self,
        now: Instant,
        session: Option<u64>,
        err: ConnectionError,
    ) -> Vec<Action<Q, C>> {
        let mut out = Vec::new();
        if session.is_some_and(|s| s != self.session) {
            return out;
        }
        match self.state {
            Lifecycle::Retired { .. } | Lifecycle::Dormant { .. } | Lifecycle::Idle => {}
            _ => self.shut(now, err, &mut out),
        }
        out
    }

    /// Convenience: [`Self::reset`] with a `Disconnected` error for `reason`.
    pub(crate) fn reset_for(
        &mut self,
        now: Instant,
        session: Option<u64>,
        reason: impl Into<Arc<str>>,
    ) -> Vec<Action<Q, C>> {
        let err = self.disconnected(reason);
        self.reset(now, session, err)
    }

    /// The session's reader ended (the broker closed the socket).
    pub(crate) fn closed_by_peer(&mut self, now: Instant) -> Vec<Action<Q, C>> {
        if !matches!(self.state, Lifecycle::Up | Lifecycle::Draining) {
            return Vec::new(); // the old session of a re-authentication, or already ended
        }
        let err = if self.responses == 0 && !self.in_flight.is_empty() && !self.rules.sasl {
            // Kafka answers ApiVersions before authentication, then drops a client that skips
            // the SaslHandshake it expects.
            self.disconnected(
                "closed by the broker before answering (a SASL listener does this to clients \
                 that do not authenticate: check security.protocol)",
            )
        } else {
            self.disconnected("closed by the broker")
        };
        let mut out = Vec::new();
        self.shut(now, err, &mut out);
        out
    }

    /// The pool replaced this connection (the broker's address changed): it closes, fails what
    /// it holds and never connects again.
    pub(crate) fn retire(&mut self, _now: Instant) -> Vec<Action<Q, C>> {
        let err = self.disconnected("connection replaced: the broker's address changed");
        let mut out = Vec::new();
        self.uncount(&mut out);
        out.push(Action::CloseSession);
        for f in self.in_flight.drain(..) {
            out.push(Action::Fail(f.done, err.clone()));
        }
        for call in std::mem::take(&mut self.queued) {
            out.push(Action::Refuse(call, err.clone()));
        }
        self.state = Lifecycle::Retired { error: err };
        out.push(Action::Restart);
        out
    }

    /// The actor's context stopped (before a supervisor restart, or for good once no address
    /// of it is left): what is in flight or waiting is answered, and until the next attempt
    /// succeeds calls fail fast (their callers retry on their own backoff).
    pub(crate) fn ended(&mut self) -> Vec<Action<Q, C>> {
        let err = self.disconnected("connection actor stopped");
        let mut out = Vec::new();
        self.uncount(&mut out);
        for f in self.in_flight.drain(..) {
            out.push(Action::Fail(f.done, err.clone()));
        }
        for call in std::mem::take(&mut self.queued) {
            out.push(Action::Refuse(call, err.clone()));
        }
        if let Lifecycle::Down { refusing } = &mut self.state {
            refusing.get_or_insert(err);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Core = ConnectionCore<u32, u32>;

    fn rules() -> ConnectionRules {
        ConnectionRules {
            request_timeout: Duration::from_millis(1000),
            max_idle: Duration::from_millis(5000),
            reconnect_backoff: Duration::from_millis(50),
            reconnect_backoff_max: Duration::from_millis(1000),
            sasl: false,
        }
    }

    fn core(t0: Instant) -> Core {
        ConnectionCore::new(rules(), 1, "b:9092".into(), t0)
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Sends in `out`: (call, correlation id, session).
    fn sends(out: &[Action<u32, u32>]) -> Vec<(u32, i32, u64)> {
        out.iter()
            .filter_map(|a| match a {
                Action::Send {
                    call,
                    correlation_id,
                    session,
                } => Some((*call, *correlation_id, *session)),
                _ => None,
            })
            .collect()
    }

    fn failed(out: &[Action<u32, u32>]) -> Vec<u32> {
        out.iter()
            .filter_map(|a| match a {
                Action::Fail(c, _) | Action::Refuse(c, _) => Some(*c),
                _ => None,
            })
            .collect()
    }

    fn has(out: &[Action<u32, u32>], f: impl Fn(&Action<u32, u32>) -> bool) -> bool {
        out.iter().any(f)
    }

    fn up(c: &mut Core, t: Instant) {
        let out = c.start(t);
        assert!(has(&out, |a| matches!(a, Action::Dial { .. })));
        c.connected(t, None, 0.5);
        assert_eq!(c.state(), &Lifecycle::Up);
    }

    #[test]
    fn calls_wait_for_the_first_session_then_go_out_in_order() {
        let t0 = Instant::now();
        let mut c = core(t0);
        let out = c.start(t0);
        assert!(matches!(out[..], [Action::Dial { delay }] if delay.is_zero()));
        for n in 0..3 {
            assert!(c.call(t0, n).is_empty());
        }
        let out = c.connected(t0, None, 0.0);
        assert_eq!(sends(&out), vec![(0, 1, 1), (1, 2, 1), (2, 3, 1)]);
        assert!(has(&out, |a| matches!(
            a,
            Action::Health(HealthEvent::BrokerUp { .. })
        )));
        assert!(has(&out, |a| matches!(a, Action::Count(Count::Opened))));
        // Answered in order; the wrong one resets the session and fails what is in flight.
        for (call, cid, _) in sends(&out) {
            c.sent(t0, cid, call + 100);
        }
        assert_eq!(c.response(t0, Some(1)).0, Some(100));
        let (done, out) = c.response(t0, Some(3));
        assert_eq!(done, None);
        assert_eq!(failed(&out), vec![101, 102]);
        assert!(has(&out, |a| matches!(a, Action::CloseSession)));
        assert!(has(&out, |a| matches!(a, Action::Restart)));
        assert!(matches!(c.state(), Lifecycle::Down { refusing: None }));
    }

    /// The error a call fails with (its text).
    fn failure(out: &[Action<u32, u32>]) -> Option<String> {
        out.iter().find_map(|a| match a {
            Action::Fail(_, e) | Action::Refuse(_, e) => Some(e.to_string()),
            _ => None,
        })
    }

    /// A broker that closes the socket: what is in flight fails; before any answer on a
    /// plaintext connection the error says to check `security.protocol` (a SASL listener
    /// drops a client that skips the handshake), after an answer or with SASL it does not.
    #[test]
    fn a_close_by_the_broker_fails_what_is_in_flight_with_a_hint_only_before_any_answer() {
        let t0 = Instant::now();
        for (sasl, answered, hint) in [
            (false, false, true),
            (false, true, false),
            (true, false, false),
        ] {
            let mut c =
                ConnectionCore::new(ConnectionRules { sasl, ..rules() }, 1, "b:9092".into(), t0);
            up(&mut c, t0);
            if answered {
                let (call, cid, _) = sends(&c.call(t0, 1))[0];
                c.sent(t0, cid, call);
                assert_eq!(c.response(t0, Some(cid)).0, Some(1));
            }
            let (call, cid, _) = sends(&c.call(t0, 2))[0];
            c.sent(t0, cid, call);
            let out = c.closed_by_peer(t0);
            assert_eq!(failed(&out), vec![2], "sasl {sasl} answered {answered}");
            let text = failure(&out).unwrap_or_default();
            assert_eq!(
                text.contains("security.protocol"),
                hint,
                "sasl {sasl} answered {answered}: {text}"
            );
            assert!(has(&out, |a| matches!(a, Action::Restart)));
            // Ended already: a second close (the old reader) does nothing.
            assert!(c.closed_by_peer(t0).is_empty());
        }
    }

    /// KIP-368: re-authentication is due for the current session only, and with nothing in
    /// flight the session is replaced at once (no backoff, no health episode).
    #[test]
    fn a_reauthentication_due_with_nothing_in_flight_reconnects_at_once() {
        let t0 = Instant::now();
        let mut c = core(t0);
        c.start(t0);
        let out = c.connected(t0, Some(ms(10_000)), 0.5);
        let Some(session) = out.iter().find_map(|a| match a {
            Action::Open { session, reauth_in } => {
                assert_eq!(*reauth_in, Some(ms(9_000)));
                Some(*session)
            }
            _ => None,
        }) else {
            panic!("a session: {out:?}");
        };
        assert!(c.reauth_due(t0, session + 1).is_empty(), "not this session");
        let out = c.reauth_due(t0 + ms(9_000), session);
        assert!(has(&out, |a| matches!(a, Action::CloseSession)));
        assert!(has(
            &out,
            |a| matches!(a, Action::Dial { delay } if delay.is_zero())
        ));
        assert!(!has(&out, |a| matches!(a, Action::Health(_))));
        assert!(matches!(
            c.state(),
            Lifecycle::Connecting { reauth: true, .. }
        ));
        // Not `Up` any more: a second timer for it does nothing.
        assert!(c.reauth_due(t0 + ms(9_000), session).is_empty());
    }

    #[test]
    fn a_request_older_than_the_request_timeout_resets_the_session() {
        let t0 = Instant::now();
        let mut c = core(t0);
        up(&mut c, t0);
        let out = c.call(t0, 7);
        let (call, cid, _) = sends(&out)[0];
        c.sent(t0, cid, call);
        assert!(
            c.tick(t0 + ms(1000)).is_empty(),
            "not older than the timeout yet"
        );
        let out = c.tick(t0 + ms(1001));
        assert_eq!(failed(&out), vec![7]);
        assert!(out.iter().any(|a| matches!(
            a,
            Action::Fail(
                _,
                ConnectionError::RequestTimeout {
                    timeout_ms: 1000,
                    ..
                }
            )
        )));
        assert!(has(&out, |a| matches!(a, Action::Restart)));
        // Restarted: the next attempt waits out the backoff; calls meanwhile fail fast.
        assert!(c.ended().is_empty());
        let out = c.start(t0 + ms(1001));
        assert!(matches!(out[..], [Action::Dial { delay }] if delay >= ms(40)));
        assert_eq!(failed(&c.call(t0 + ms(1002), 8)), vec![8]);
        let out = c.connected(t0 + ms(1100), None, 0.0);
        assert!(has(&out, |a| matches!(
            a,
            Action::Health(HealthEvent::BrokerRestarted { attempt: 1, .. })
        )));
    }

    #[test]
    fn after_a_failed_attempt_calls_fail_fast_and_an_unasked_broker_stays_dormant() {
        let t0 = Instant::now();
        let mut c = core(t0);
        c.start(t0);
        let refused = ConnectionError::Connect {
            broker: "b:9092".into(),
            reason: "refused".into(),
        };
        // Nobody asked: dormant, no restart, no dialling.
        let out = c.connect_failed(t0, refused.clone());
        assert!(!has(&out, |a| matches!(
            a,
            Action::Restart | Action::Dial { .. }
        )));
        assert!(has(&out, |a| matches!(
            a,
            Action::Health(HealthEvent::BrokerDown { .. })
        )));
        assert!(matches!(c.state(), Lifecycle::Dormant { .. }));
        // A call fails fast and dials after the backoff; calls during that attempt fail fast too.
        let out = c.call(t0 + ms(10), 1);
        assert_eq!(failed(&out), vec![1]);
        assert!(has(
            &out,
            |a| matches!(a, Action::Dial { delay } if !delay.is_zero())
        ));
        assert_eq!(failed(&c.call(t0 + ms(11), 2)), vec![2]);
        // It was asked for: this failure restarts, and the restart refuses until it connects.
        let out = c.connect_failed(t0 + ms(100), refused.clone());
        assert!(has(&out, |a| matches!(a, Action::Restart)));
        assert!(
            !has(&out, |a| matches!(a, Action::Health(_))),
            "one BrokerDown per episode"
        );
        c.start(t0 + ms(100));
        assert_eq!(failed(&c.call(t0 + ms(101), 3)), vec![3]);
        let out = c.connected(t0 + ms(300), None, 0.0);
        assert!(has(&out, |a| matches!(
            a,
            Action::Health(HealthEvent::BrokerRestarted { attempt: 2, .. })
        )));
        assert!(sends(&c.call(t0 + ms(301), 4)).len() == 1);
    }

    #[test]
    fn an_idle_session_closes_quietly_and_the_next_call_reconnects_at_once() {
        let t0 = Instant::now();
        let mut c = core(t0);
        up(&mut c, t0);
        assert!(c.tick(t0 + ms(4999)).is_empty());
        let out = c.tick(t0 + ms(5000));
        assert!(has(&out, |a| matches!(a, Action::CloseSession)));
        assert!(has(&out, |a| matches!(a, Action::Count(Count::Closed))));
        assert!(!has(&out, |a| matches!(
            a,
            Action::Health(_) | Action::Restart
        )));
        assert_eq!(c.state(), &Lifecycle::Idle);
        let out = c.call(t0 + ms(6000), 1);
        assert!(matches!(out[..], [Action::Dial { delay }] if delay.is_zero()));
        let out = c.connected(t0 + ms(6001), None, 0.0);
        assert_eq!(sends(&out), vec![(1, 1, 2)]);
        assert!(!has(&out, |a| matches!(
            a,
            Action::Health(HealthEvent::BrokerRestarted { .. })
        )));
    }

    #[test]
    fn reauthentication_waits_for_what_is_in_flight_and_loses_nothing() {
        let t0 = Instant::now();
        let mut c = core(t0);
        c.start(t0);
        let out = c.connected(t0, Some(ms(10_000)), 1.0);
        assert!(has(&out, |a| matches!(
            a,
            Action::Open { session: 1, reauth_in: Some(d) } if *d == ms(9500)
        )));
        let (call, cid, _) = sends(&c.call(t0, 1))[0];
        c.sent(t0, cid, call);
        assert!(c.reauth_due(t0, 0).is_empty(), "a stale session's timer");
        assert!(
            c.reauth_due(t0, 1).is_empty(),
            "waits for the request in flight"
        );
        assert!(c.call(t0, 2).is_empty(), "new calls wait");
        let (done, out) = c.response(t0, Some(cid));
        assert_eq!(done, Some(1));
        assert!(has(&out, |a| matches!(a, Action::CloseSession)));
        assert!(has(
            &out,
            |a| matches!(a, Action::Dial { delay } if delay.is_zero())
        ));
        assert!(
            c.closed_by_peer(t0).is_empty(),
            "the old session's reader ending"
        );
        let out = c.connected(t0, Some(ms(10)), 0.0);
        assert!(!has(&out, |a| matches!(a, Action::Health(_))));
        assert!(has(&out, |a| matches!(
            a,
            Action::Open { session: 2, reauth_in: Some(d) } if *d == ms(100)
        )));
        assert_eq!(sends(&out), vec![(2, 2, 2)]);
    }

    #[test]
    fn a_retired_connection_fails_everything_and_never_dials() {
        let t0 = Instant::now();
        let mut c = core(t0);
        up(&mut c, t0);
        let (call, cid, _) = sends(&c.call(t0, 1))[0];
        c.sent(t0, cid, call);
        let out = c.retire(t0);
        assert_eq!(failed(&out), vec![1]);
        assert!(c.start(t0).is_empty());
        assert_eq!(failed(&c.call(t0, 2)), vec![2]);
        assert!(c.reset_for(t0, None, "x").is_empty());
    }

    #[test]
    fn a_reset_of_an_older_session_is_ignored() {
        let t0 = Instant::now();
        let mut c = core(t0);
        up(&mut c, t0);
        assert!(c.reset_for(t0, Some(0), "old").is_empty());
        let out = c.reset_for(t0, Some(1), "now");
        assert!(has(&out, |a| matches!(a, Action::Restart)));
        // A frame of the ended session changes nothing.
        assert!(c.response(t0, Some(1)).1.is_empty());
    }

    /// Correlation ids wrap to 1, never 0 or negative.
    #[test]
    fn correlation_ids_wrap_to_one() {
        let t0 = Instant::now();
        let mut c = core(t0);
        up(&mut c, t0);
        c.next_correlation_id = i32::MAX;
        let a = sends(&c.call(t0, 1));
        let b = sends(&c.call(t0, 2));
        assert_eq!((a[0].1, b[0].1), (i32::MAX, 1));
    }
}

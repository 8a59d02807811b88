//! The actors: one file each, with the messages they accept beside them.
//!
//! - [`producer::KafkaProducer`]: the address users send records to.
//! - [`metadata::MetadataManager`]: brokers, topics, leaders.
//! - [`accumulator::PartitionAccumulator`]: one per partition, builds batches.
//! - [`sender::Sender`]: drains ready batches by leader into Produce requests.
//! - [`connection::BrokerConnection`]: one supervised TCP session per broker.
pub mod accumulator;
pub mod connection;
pub mod metadata;
pub mod producer;
pub mod sender;

/// Runs `f`, catching a panic. An actix actor whose handler panics is dropped with everything it
/// holds; the sender and the metadata manager run their core calls through this instead: the
/// panic is logged and reported ([`crate::HealthEvent::InternalError`]), the actor keeps its
/// state and goes on. `None` if `f` panicked.
pub(crate) fn guarded<T>(
    actor: &'static str,
    health: &crate::health::HealthHub,
    f: impl FnOnce() -> T,
) -> Option<T> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(v) => Some(v),
        Err(payload) => {
            let reason: std::sync::Arc<str> = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).into())
                .or_else(|| payload.downcast_ref::<String>().map(|s| s.as_str().into()))
                .unwrap_or_else(|| "panic".into());
            tracing::error!(
                actor,
                %reason,
                "panic in an actor caught; it keeps its state and goes on"
            );
            health.emit(crate::HealthEvent::InternalError { actor, reason });
            None
        }
    }
}

/// An actor's single pending wake-up: [`WakeTimer::schedule`] keeps only the earliest.
#[derive(Default)]
pub(crate) struct WakeTimer(Option<(std::time::Instant, actix::SpawnHandle)>);

impl WakeTimer {
    /// Runs `fire` at `at` unless a wake-up at or before `at` is already pending (a later one
    /// is cancelled). `timer` finds this timer in the actor, to clear it when it fires.
    pub(crate) fn schedule<A>(
        act: &mut A,
        timer: fn(&mut A) -> &mut WakeTimer,
        at: std::time::Instant,
        ctx: &mut actix::Context<A>,
        fire: fn(&mut A, &mut actix::Context<A>),
    ) where
        A: actix::Actor<Context = actix::Context<A>>,
    {
        use actix::AsyncContext;
        if let Some((when, handle)) = timer(act).0 {
            if when <= at {
                return;
            }
            ctx.cancel_future(handle);
        }
        let delay = at.saturating_duration_since(std::time::Instant::now());
        let handle = ctx.run_later(delay, move |act, ctx| {
            timer(act).0 = None;
            fire(act, ctx);
        });
        timer(act).0 = Some((at, handle));
    }
}

//! `MetadataManager`: the producer's view of the cluster.
//!
//! A thin shell around `MetadataCore` (`src/core/metadata.rs`), which decides what to ask
//! and when: it bootstraps from `bootstrap.servers`, sends Metadata requests for the topics in
//! use, and writes brokers, partitions and leaders into the shared [`Cluster`]. It refreshes
//! every `metadata.max.age.ms`, on demand ([`RefreshMetadata`], sent by the sender on
//! `NOT_LEADER_OR_FOLLOWER`, disconnects, unknown leaders), and while `send` waits for a topic
//! or a partition of it ([`WaitForTopic`], bounded by `max.block.ms`). After each update it
//! tells its subscribers ([`MetadataUpdated`]) so that parked batches move to the new leaders.

use crate::actors::connection::{call, ConnectionPool};
use crate::actors::WakeTimer;
use crate::cluster::{Cluster, TopicInfo};
use crate::config::ProducerConfig;
use crate::core::metadata::{MetadataAction, MetadataCore};
use crate::error::ProduceError;
use actix::prelude::*;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{MetadataRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// Waits until metadata for `topic` is known, at most `max.block.ms`.
///
/// # Errors
/// [`ProduceError::UnknownTopic`] (the cluster kept answering `UNKNOWN_TOPIC_OR_PARTITION`),
/// [`ProduceError::TopicError`] (invalid name, not authorized), or
/// [`ProduceError::MetadataTimeout`] (no metadata at all, e.g. brokers unreachable).
#[derive(Message)]
#[rtype(result = "Result<Arc<TopicInfo>, ProduceError>")]
pub struct WaitForTopic {
    /// Topic name.
    pub topic: Arc<str>,
    /// Wait until the topic has at least this many partitions (an explicit partition beyond
    /// the cached count); 0 for any. If it never does: [`ProduceError::InvalidPartition`].
    pub min_partitions: i32,
}

/// Fetches metadata for a topic with nobody waiting (what `try_send` asks when the topic is
/// not cached: it fails at once and leaves no waiter).
#[derive(Message)]
#[rtype(result = "()")]
pub struct FetchTopic(pub Arc<str>);

/// Asks for a metadata refresh soon (coalesced with one in progress).
#[derive(Message, Default)]
#[rtype(result = "()")]
pub struct RefreshMetadata;

/// Sent to subscribers after each metadata update.
#[derive(Message, Clone, Copy)]
#[rtype(result = "()")]
pub struct MetadataUpdated;

/// A partition's current leader from a Produce answer (KIP-951): applied if its leader epoch
/// is newer than the cached one, else a refresh is asked for.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ApplyLeaderHint(pub crate::core::sender::LeaderHint);

/// Registers a subscriber for [`MetadataUpdated`].
#[derive(Message)]
#[rtype(result = "()")]
pub struct Subscribe(pub Recipient<MetadataUpdated>);

/// Called with each topic dropped from the cache as idle (see [`MetadataManager::on_forget`]).
pub type ForgetHook = Arc<dyn Fn(&str) + Send + Sync>;

/// See the module docs.
pub struct MetadataManager {
    cluster: Arc<Cluster>,
    pool: Arc<ConnectionPool>,
    config: Arc<ProducerConfig>,
    core: MetadataCore,
    subscribers: Vec<Recipient<MetadataUpdated>>,
    wake: WakeTimer,
    /// Told of every topic dropped as idle (the producer's partitioner forgets it).
    on_forget: Option<ForgetHook>,
}

impl MetadataManager {
    /// A manager writing into `cluster`.
    pub fn new(
        config: Arc<ProducerConfig>,
        cluster: Arc<Cluster>,
        pool: Arc<ConnectionPool>,
    ) -> Self {
        MetadataManager {
            core: MetadataCore::new(config.clone(), Instant::now()),
            config,
            cluster,
            pool,
            subscribers: Vec::new(),
            wake: WakeTimer::default(),
            on_forget: None,
        }
    }

    /// Calls `f` with every topic dropped from the cache as idle (`metadata.max.idle.ms`).
    pub fn on_forget(mut self, f: ForgetHook) -> Self {
        self.on_forget = Some(f);
        self
    }

    /// A core call, with a panic caught (see [`crate::actors::guarded`]).
    fn guarded(&mut self, f: impl FnOnce(&mut MetadataCore, &Cluster)) {
        let health = self.pool.health();
        let (core, cluster) = (&mut self.core, &*self.cluster);
        crate::actors::guarded("metadata", health, || f(core, cluster));
    }

    fn execute(&mut self, actions: Vec<MetadataAction>, ctx: &mut Context<Self>) {
        for action in actions {
            match action {
                MetadataAction::Request { topics, bootstrap } => {
                    self.request(topics, bootstrap, ctx)
                }
                MetadataAction::Wake(at) => self.schedule_wake(at, ctx),
                MetadataAction::Updated => {
                    self.pool.forget_missing(&self.cluster);
                    for s in &self.subscribers {
                        s.do_send(MetadataUpdated);
                    }
                }
                MetadataAction::Changed => self
                    .pool
                    .health()
                    .emit(crate::health::HealthEvent::MetadataChanged),
                MetadataAction::Forgotten(topic) => {
                    if let Some(f) = &self.on_forget {
                        f(&topic);
                    }
                }
            }
        }
    }

    fn schedule_wake(&mut self, at: Instant, ctx: &mut Context<Self>) {
        WakeTimer::schedule(
            self,
            |a| &mut a.wake,
            at,
            ctx,
            |act, ctx| {
                let mut out = Vec::new();
                act.guarded(|core, cluster| core.tick(Instant::now(), cluster, &mut out));
                act.execute(out, ctx);
            },
        );
    }

    fn request(&mut self, topics: Vec<Arc<str>>, bootstrap: bool, ctx: &mut Context<Self>) {
        let known = if bootstrap {
            Vec::new()
        } else {
            self.cluster.brokers()
        };
        let Some((broker, conn)) = self.pool.any(&known) else {
            let mut out = Vec::new();
            let err = crate::error::ConnectionError::Connect {
                broker: "bootstrap.servers".into(),
                reason: "no bootstrap servers".into(),
            };
            self.guarded(|core, cluster| {
                core.on_response(Instant::now(), Err(err), cluster, &mut out)
            });
            return self.execute(out, ctx);
        };
        let topics: Vec<MetadataRequestTopic> = topics
            .iter()
            .map(|t| {
                MetadataRequestTopic::default()
                    .with_name(Some(TopicName(StrBytes::from_string(t.to_string()))))
            })
            .collect();
        let request = MetadataRequest::default()
            .with_topics(Some(topics))
            .with_allow_auto_topic_creation(self.config.allow_auto_create_topics);
        let timeout = self.config.request_timeout;
        let fut = async move { call(&conn, broker, request, true, timeout).await };
        ctx.spawn(fut.into_actor(self).map(|res, act, ctx| {
            let mut out = Vec::new();
            act.guarded(|core, cluster| core.on_response(Instant::now(), res, cluster, &mut out));
            act.execute(out, ctx);
        }));
    }
}

impl Actor for MetadataManager {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(0);
        let mut out = Vec::new();
        self.guarded(|core, cluster| core.tick(Instant::now(), cluster, &mut out));
        self.execute(out, ctx);
        // A safety net besides the core's wake-ups: waiters fail close to max.block.ms.
        let tick = (self.config.max_block / 20)
            .clamp(Duration::from_millis(5), Duration::from_millis(250));
        ctx.run_interval(tick, |act, ctx| {
            let mut out = Vec::new();
            act.guarded(|core, cluster| core.tick(Instant::now(), cluster, &mut out));
            out.retain(|a| !matches!(a, MetadataAction::Wake(_)));
            act.execute(out, ctx);
        });
    }
}

impl Handler<FetchTopic> for MetadataManager {
    type Result = ();

    fn handle(&mut self, msg: FetchTopic, ctx: &mut Context<Self>) {
        let mut out = Vec::new();
        self.guarded(|core, cluster| core.want_topic(Instant::now(), msg.0, cluster, &mut out));
        self.execute(out, ctx);
    }
}

impl Handler<WaitForTopic> for MetadataManager {
    type Result = ResponseFuture<Result<Arc<TopicInfo>, ProduceError>>;

    fn handle(&mut self, msg: WaitForTopic, ctx: &mut Context<Self>) -> Self::Result {
        let (tx, rx) = oneshot::channel();
        let mut out = Vec::new();
        self.guarded(|core, cluster| {
            core.wait_for_topic(
                Instant::now(),
                msg.topic,
                msg.min_partitions,
                tx,
                cluster,
                &mut out,
            )
        });
        self.execute(out, ctx);
        Box::pin(async move {
            rx.await
                .unwrap_or_else(|_| Err(ProduceError::closed("metadata manager stopped")))
        })
    }
}

impl Handler<RefreshMetadata> for MetadataManager {
    type Result = ();
    fn handle(&mut self, _: RefreshMetadata, ctx: &mut Context<Self>) {
        let mut out = Vec::new();
        self.guarded(|core, cluster| core.refresh_requested(Instant::now(), cluster, &mut out));
        self.execute(out, ctx);
    }
}

impl Handler<ApplyLeaderHint> for MetadataManager {
    type Result = ();
    fn handle(&mut self, msg: ApplyLeaderHint, ctx: &mut Context<Self>) {
        let mut out = Vec::new();
        self.guarded(|core, cluster| core.leader_hint(Instant::now(), &msg.0, cluster, &mut out));
        self.execute(out, ctx);
    }
}

impl Handler<Subscribe> for MetadataManager {
    type Result = ();
    fn handle(&mut self, msg: Subscribe, _: &mut Context<Self>) {
        self.subscribers.push(msg.0);
    }
}

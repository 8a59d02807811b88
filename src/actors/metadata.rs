//! `MetadataManager`: the producer's view of the cluster.
//!
//! It bootstraps from `bootstrap.servers`, sends Metadata requests for the topics in use, and
//! writes brokers, partitions and leaders into the shared [`Cluster`]. It refreshes every
//! `metadata.max.age.ms`, on demand ([`RefreshMetadata`], sent by the sender on
//! `NOT_LEADER_OR_FOLLOWER`, disconnects, unknown leaders), and while `send` waits for a topic
//! ([`WaitForTopic`], bounded by `max.block.ms`). After each update it tells its subscribers
//! ([`MetadataUpdated`]) so that parked batches move to the new leaders.

use crate::actors::connection::{call, ConnectionPool};
use crate::cluster::{BrokerInfo, Cluster, TopicInfo};
use crate::config::ProducerConfig;
use crate::error::{KafkaCode, ProduceError};
use actix::prelude::*;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use std::collections::{HashMap, HashSet};
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
}

/// Asks for a metadata refresh soon (coalesced with one in progress).
#[derive(Message, Default)]
#[rtype(result = "()")]
pub struct RefreshMetadata;

/// Sent to subscribers after each metadata update.
#[derive(Message, Clone, Copy)]
#[rtype(result = "()")]
pub struct MetadataUpdated;

/// Registers a subscriber for [`MetadataUpdated`].
#[derive(Message)]
#[rtype(result = "()")]
pub struct Subscribe(pub Recipient<MetadataUpdated>);

struct Waiter {
    since: Instant,
    reply: oneshot::Sender<Result<Arc<TopicInfo>, ProduceError>>,
}

/// See the module docs.
pub struct MetadataManager {
    config: Arc<ProducerConfig>,
    cluster: Arc<Cluster>,
    pool: Arc<ConnectionPool>,
    topics: HashSet<Arc<str>>,
    waiters: HashMap<Arc<str>, Vec<Waiter>>,
    topic_errors: HashMap<Arc<str>, KafkaCode>,
    last_error: Option<Arc<str>>,
    in_progress: bool,
    again: bool,
    retry_scheduled: bool,
    /// When the last Metadata request was sent; on-demand refreshes are at most one per
    /// `retry.backoff.ms` (later ones are deferred, not dropped).
    last_started: Option<Instant>,
    deferred: bool,
    subscribers: Vec<Recipient<MetadataUpdated>>,
}

impl MetadataManager {
    /// A manager writing into `cluster`.
    pub fn new(
        config: Arc<ProducerConfig>,
        cluster: Arc<Cluster>,
        pool: Arc<ConnectionPool>,
    ) -> Self {
        MetadataManager {
            config,
            cluster,
            pool,
            topics: HashSet::new(),
            waiters: HashMap::new(),
            topic_errors: HashMap::new(),
            last_error: None,
            in_progress: false,
            again: false,
            retry_scheduled: false,
            last_started: None,
            deferred: false,
            subscribers: Vec::new(),
        }
    }

    fn refresh(&mut self, ctx: &mut Context<Self>) {
        if self.in_progress {
            self.again = true;
            return;
        }
        let known = self.cluster.brokers();
        let Some((broker, conn)) = self.pool.any(&known) else {
            self.last_error = Some("no bootstrap servers".into());
            return;
        };
        self.in_progress = true;
        self.again = false;
        self.last_started = Some(Instant::now());
        let topics: Vec<MetadataRequestTopic> = self
            .topics
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
            act.in_progress = false;
            match res {
                Ok(Some(resp)) => act.apply(resp),
                Ok(None) => {}
                Err(e) if e.is_auth() => {
                    // Wrong credentials or an untrusted certificate: retrying until
                    // max.block.ms cannot help. Every waiting send fails now with the cause.
                    act.last_error = Some(e.to_string().into());
                    for (_, waiters) in act.waiters.drain() {
                        for w in waiters {
                            let _ = w.reply.send(Err(ProduceError::Connection(e.clone())));
                        }
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %e, "metadata request failed");
                    act.last_error = Some(e.to_string().into());
                }
            }
            for s in &act.subscribers {
                s.do_send(MetadataUpdated);
            }
            if act.again {
                act.refresh(ctx);
            } else if !act.waiters.is_empty() {
                act.schedule_retry(ctx);
            }
        }));
    }

    fn schedule_retry(&mut self, ctx: &mut Context<Self>) {
        if self.retry_scheduled {
            return;
        }
        self.retry_scheduled = true;
        ctx.run_later(self.config.retry_backoff, |act, ctx| {
            act.retry_scheduled = false;
            if !act.waiters.is_empty() {
                act.refresh(ctx);
            }
        });
    }

    fn apply(&mut self, resp: MetadataResponse) {
        let mut changed = false;
        if !resp.brokers.is_empty() {
            let mut before: Vec<(i32, Arc<str>)> = self
                .cluster
                .brokers
                .iter()
                .map(|b| (b.node_id, b.address.clone()))
                .collect();
            let mut after: Vec<(i32, Arc<str>)> = resp
                .brokers
                .iter()
                .map(|b| {
                    (
                        b.node_id.0,
                        format!("{}:{}", b.host.as_str(), b.port).into(),
                    )
                })
                .collect();
            before.sort();
            after.sort();
            changed |= before != after;
        }
        self.apply_inner(resp, &mut changed);
        if changed {
            self.pool
                .health()
                .emit(crate::health::HealthEvent::MetadataChanged);
        }
    }

    fn apply_inner(&mut self, resp: MetadataResponse, changed: &mut bool) {
        if !resp.brokers.is_empty() {
            let ids: HashSet<i32> = resp.brokers.iter().map(|b| b.node_id.0).collect();
            for b in &resp.brokers {
                let address: Arc<str> = format!("{}:{}", b.host.as_str(), b.port).into();
                self.cluster.brokers.insert(
                    b.node_id.0,
                    BrokerInfo {
                        node_id: b.node_id.0,
                        address,
                    },
                );
            }
            self.cluster.brokers.retain(|id, _| ids.contains(id));
        }
        for t in resp.topics {
            let Some(name) = t.name.as_ref().map(|n| n.0.as_str().to_owned()) else {
                continue;
            };
            let name: Arc<str> = self
                .topics
                .get(name.as_str())
                .cloned()
                .unwrap_or_else(|| name.into());
            let code = KafkaCode(t.error_code);
            let built = (t.error_code == 0 && !t.partitions.is_empty()).then(|| {
                TopicInfo::from_metadata(
                    name.clone(),
                    t.partitions.iter().map(|p| {
                        (
                            p.partition_index,
                            p.leader_id.0,
                            p.leader_epoch,
                            p.error_code,
                        )
                    }),
                )
            });
            if let Some(Err(reason)) = &built {
                // A broker that answers this is broken or hostile: keep the last good view and
                // keep waiting (send fails with MetadataTimeout by max.block.ms).
                tracing::warn!(topic = %name, %reason, "invalid metadata ignored");
                continue;
            }
            if let Some(Ok(mut info)) = built {
                info.topic_id = *t.topic_id.as_bytes();
                if let Some(prev) = self.cluster.topic(&name) {
                    let (merged, kept) = info.merged_with(&prev);
                    if kept > 0 {
                        tracing::debug!(topic = %name, partitions = kept, "stale leader epochs in metadata ignored (KIP-320)");
                    }
                    info = merged;
                }
                let info = Arc::new(info);
                if let Some(prev) = self.cluster.topics.insert(name.clone(), info.clone()) {
                    *changed |= *prev != *info;
                } else {
                    *changed = true;
                }
                self.topic_errors.remove(&name);
                for w in self.waiters.remove(&name).unwrap_or_default() {
                    let _ = w.reply.send(Ok(info.clone()));
                }
            } else if code.is_retriable() || t.error_code == 0 {
                // UNKNOWN_TOPIC_OR_PARTITION, LEADER_NOT_AVAILABLE (being created): keep waiting.
                self.topic_errors.insert(name, code);
            } else {
                // INVALID_TOPIC_EXCEPTION, TOPIC_AUTHORIZATION_FAILED, ...: final.
                self.topic_errors.insert(name.clone(), code);
                self.topics.remove(&name);
                for w in self.waiters.remove(&name).unwrap_or_default() {
                    let _ = w.reply.send(Err(ProduceError::TopicError {
                        topic: name.clone(),
                        code,
                    }));
                }
            }
        }
    }

    fn expire_waiters(&mut self) {
        let max_block = self.config.max_block;
        let mut empty = Vec::new();
        for (topic, waiters) in self.waiters.iter_mut() {
            let mut i = 0;
            while i < waiters.len() {
                if waiters[i].since.elapsed() >= max_block {
                    let w = waiters.swap_remove(i);
                    let waited_ms = w.since.elapsed().as_millis() as u64;
                    let err = match self.topic_errors.get(topic) {
                        Some(code) if code.0 == 3 => ProduceError::UnknownTopic {
                            topic: topic.clone(),
                            waited_ms,
                        },
                        _ => ProduceError::MetadataTimeout {
                            topic: topic.clone(),
                            waited_ms,
                            reason: self
                                .last_error
                                .clone()
                                .unwrap_or_else(|| "no metadata response".into()),
                        },
                    };
                    let _ = w.reply.send(Err(err));
                } else {
                    i += 1;
                }
            }
            if waiters.is_empty() {
                empty.push(topic.clone());
            }
        }
        for t in empty {
            self.waiters.remove(&t);
        }
    }
}

impl Actor for MetadataManager {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(0);
        let age = self.config.metadata_max_age;
        ctx.run_interval(age, |act, ctx| act.refresh(ctx));
        // Waiters are checked often enough that `send` fails close to max.block.ms.
        let tick = (self.config.max_block / 20)
            .clamp(Duration::from_millis(5), Duration::from_millis(250));
        ctx.run_interval(tick, |act, _| act.expire_waiters());
    }
}

impl Handler<WaitForTopic> for MetadataManager {
    type Result = ResponseFuture<Result<Arc<TopicInfo>, ProduceError>>;

    fn handle(&mut self, msg: WaitForTopic, ctx: &mut Context<Self>) -> Self::Result {
        if let Some(info) = self.cluster.topic(&msg.topic) {
            return Box::pin(async move { Ok(info) });
        }
        let (tx, rx) = oneshot::channel();
        self.topics.insert(msg.topic.clone());
        self.waiters
            .entry(msg.topic.clone())
            .or_default()
            .push(Waiter {
                since: Instant::now(),
                reply: tx,
            });
        self.refresh(ctx);
        Box::pin(async move {
            rx.await
                .unwrap_or_else(|_| Err(ProduceError::closed("metadata manager stopped")))
        })
    }
}

impl Handler<RefreshMetadata> for MetadataManager {
    type Result = ();
    fn handle(&mut self, _: RefreshMetadata, ctx: &mut Context<Self>) {
        let backoff = self.config.retry_backoff;
        match self.last_started {
            Some(t) if t.elapsed() < backoff => {
                if !self.deferred {
                    self.deferred = true;
                    ctx.run_later(backoff - t.elapsed(), |act, ctx| {
                        act.deferred = false;
                        act.refresh(ctx);
                    });
                }
            }
            _ => self.refresh(ctx),
        }
    }
}

impl Handler<Subscribe> for MetadataManager {
    type Result = ();
    fn handle(&mut self, msg: Subscribe, _: &mut Context<Self>) {
        self.subscribers.push(msg.0);
    }
}

//! The metadata manager's decisions, without actix, sockets or a clock: [`MetadataCore`].
//!
//! It keeps the topics in use, the `send` calls waiting for a topic (or for a partition of it)
//! with their `max.block.ms` deadlines, the last error per topic, and the pacing of Metadata
//! requests: one at a time, on-demand refreshes at most one per `retry.backoff.ms` (deferred,
//! never dropped), a periodic refresh every `metadata.max.age.ms`. It applies answers to the
//! shared [`Cluster`] (partition indexes must be exactly `0..n`, stale leader epochs ignored,
//! KIP-320), drops topics idle for `metadata.max.idle.ms`, and goes back to
//! `bootstrap.servers` when no known broker answers (KIP-899). The
//! [`crate::actors::metadata::MetadataManager`] actor carries out its [`MetadataAction`]s.

use crate::cluster::{BrokerInfo, Cluster, TopicInfo};
use crate::codes::ErrorCode;
use crate::config::ProducerConfig;
use crate::core::sender::LeaderHint;
use crate::error::{ConnectionError, KafkaCode, ProduceError};
use kafka_protocol::messages::MetadataResponse;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::oneshot;

/// The answer a waiting `send` gets.
pub(crate) type TopicReply = oneshot::Sender<Result<Arc<TopicInfo>, ProduceError>>;

/// What the core asks its shell to do.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum MetadataAction {
    /// Send a Metadata request for these topics: to a known broker, or to a bootstrap server
    /// when `bootstrap`. Answer with [`MetadataCore::on_response`].
    Request {
        topics: Vec<Arc<str>>,
        bootstrap: bool,
    },
    /// Call [`MetadataCore::tick`] at this instant.
    Wake(Instant),
    /// A request ended: tell the subscribers (the sender drains again).
    Updated,
    /// Brokers or partitions changed (a health event).
    Changed,
    /// A topic idle for `metadata.max.idle.ms` left the cache: drop what else is kept for it
    /// (the partitioner's sticky entry).
    Forgotten(Arc<str>),
}

struct Waiter {
    since: Instant,
    /// The partition count the caller needs (an explicit partition beyond the cached count
    /// waits for metadata that has it, as Java's `waitOnMetadata`); 0 for any.
    min_partitions: i32,
    reply: TopicReply,
}

/// See the module docs.
pub(crate) struct MetadataCore {
    config: Arc<ProducerConfig>,
    topics: HashSet<Arc<str>>,
    waiters: HashMap<Arc<str>, Vec<Waiter>>,
    topic_errors: HashMap<Arc<str>, KafkaCode>,
    last_error: Option<Arc<str>>,
    in_progress: bool,
    again: bool,
    last_started: Option<Instant>,
    /// An on-demand refresh deferred to this instant (pacing).
    deferred: Option<Instant>,
    /// A retry for waiting topics at this instant.
    retry_at: Option<Instant>,
    /// The periodic refresh (`metadata.max.age.ms`) is due at this instant.
    next_periodic: Instant,
    /// Since when a refresh has been trying without an answer (KIP-1102's trigger counts from
    /// here), `None` after an answer.
    unanswered_since: Option<Instant>,
    /// Metadata requests to known brokers failed in a row.
    failures: usize,
    /// The request out goes to the bootstrap servers.
    bootstrapping: bool,
    /// A broker answered `REBOOTSTRAP_REQUIRED` (Metadata v13, KIP-1102): the next request
    /// goes to the bootstrap servers (with `metadata.recovery.strategy=rebootstrap`).
    rebootstrap_required: bool,
    /// Partitions whose cached leader came from a Produce answer's hint (KIP-951) since the
    /// last Metadata answer for their topic: that answer replaces them whatever its epoch.
    hinted: HashMap<Arc<str>, HashSet<i32>>,
}

impl MetadataCore {
    pub(crate) fn new(config: Arc<ProducerConfig>, now: Instant) -> Self {
        MetadataCore {
            next_periodic: now + config.metadata_max_age,
            config,
            topics: HashSet::new(),
            waiters: HashMap::new(),
            topic_errors: HashMap::new(),
            last_error: None,
            in_progress: false,
            again: false,
            last_started: None,
            deferred: None,
            retry_at: None,
            unanswered_since: None,
            failures: 0,
            bootstrapping: false,
            rebootstrap_required: false,
            hinted: HashMap::new(),
        }
    }

    /// A `send` needs `topic` (with at least `min_partitions` partitions): answered from the
    /// cache, or once metadata has it, or with an error by `max.block.ms`.
    pub(crate) fn wait_for_topic(
        &mut self,
        now: Instant,
        topic: Arc<str>,
        min_partitions: i32,
        reply: TopicReply,
        cluster: &Cluster,
        out: &mut Vec<MetadataAction>,
    ) {
        cluster.touch(&topic, now);
        if let Some(info) = cluster.topic(&topic) {
            if info.partition_count() >= min_partitions {
                let _ = reply.send(Ok(info));
                return;
            }
        }
        self.topics.insert(topic.clone());
        self.waiters.entry(topic).or_default().push(Waiter {
            since: now,
            min_partitions,
            reply,
        });
        self.refresh(now, cluster, out);
        self.wake(out);
    }

    /// A `try_send` found no metadata for `topic`: fetch it, with nobody waiting (a
    /// `try_send` does not wait, so it leaves no waiter and no task behind: N calls cost one
    /// entry in the topic set, not N waiters living `max.block.ms`).
    pub(crate) fn want_topic(
        &mut self,
        now: Instant,
        topic: Arc<str>,
        cluster: &Cluster,
        out: &mut Vec<MetadataAction>,
    ) {
        cluster.touch(&topic, now);
        if cluster.topic(&topic).is_some() {
            return;
        }
        // Also when it is in the set already: the request that was to fetch it may have
        // failed, and with nobody waiting nothing else retries it (the refresh is paced to one
        // per `retry.backoff.ms`, so N calls still cost one request per backoff).
        self.topics.insert(topic);
        self.refresh_requested(now, cluster, out);
    }

    /// A refresh asked for by the sender (stale leader, unknown leader, disconnect): paced to
    /// one per `retry.backoff.ms`, deferred rather than dropped.
    pub(crate) fn refresh_requested(
        &mut self,
        now: Instant,
        cluster: &Cluster,
        out: &mut Vec<MetadataAction>,
    ) {
        let backoff = self.config.retry_backoff;
        match self.last_started {
            Some(t) if now < t + backoff => {
                self.deferred.get_or_insert(t + backoff);
                self.wake(out);
            }
            _ => self.refresh(now, cluster, out),
        }
    }

    fn refresh(&mut self, now: Instant, cluster: &Cluster, out: &mut Vec<MetadataAction>) {
        if self.in_progress {
            self.again = true;
            return;
        }
        self.in_progress = true;
        self.again = false;
        self.deferred = None;
        self.last_started = Some(now);
        // KIP-899: when every known broker failed in turn (or nothing answered for the trigger
        // time), go back to the bootstrap servers.
        let known = cluster.brokers.len();
        let since = *self.unanswered_since.get_or_insert(now);
        let required = std::mem::take(&mut self.rebootstrap_required);
        let bootstrap = self.config.metadata_rebootstrap
            && (required
                || known > 0
                    && (self.failures >= known
                        || now >= since + self.config.metadata_rebootstrap_trigger));
        self.bootstrapping = bootstrap;
        if bootstrap && required {
            tracing::info!("the broker asked for a rebootstrap (REBOOTSTRAP_REQUIRED, KIP-1102)");
        } else if bootstrap {
            tracing::info!(
                failures = self.failures,
                "no known broker answers; rebootstrapping (KIP-899)"
            );
        }
        let mut topics: Vec<Arc<str>> = self.topics.iter().cloned().collect();
        topics.sort();
        out.push(MetadataAction::Request { topics, bootstrap });
    }

    /// The answer to [`MetadataAction::Request`] (`Ok(None)`: no answer).
    pub(crate) fn on_response(
        &mut self,
        now: Instant,
        res: Result<Option<MetadataResponse>, ConnectionError>,
        cluster: &Cluster,
        out: &mut Vec<MetadataAction>,
    ) {
        self.in_progress = false;
        let mut rebootstrap = false;
        match res {
            Ok(Some(resp)) if resp.error_code != 0 => {
                // Metadata v13's top-level error (KIP-1102): nothing in the answer is applied.
                // REBOOTSTRAP_REQUIRED: the next request (paced by retry.backoff.ms) goes to
                // the bootstrap servers; any other code counts as a failed request.
                let code = KafkaCode(resp.error_code);
                tracing::debug!(%code, "metadata answered with an error");
                self.failed();
                self.last_error = Some(format!("metadata answered {code}").into());
                if code.named() == ErrorCode::RebootstrapRequired {
                    self.rebootstrap_required = true;
                    rebootstrap = true;
                }
            }
            Ok(Some(resp)) => {
                self.failures = 0;
                self.unanswered_since = None;
                self.next_periodic = now + self.config.metadata_max_age;
                if self.apply(resp, cluster) {
                    out.push(MetadataAction::Changed);
                }
            }
            Ok(None) => self.failed(),
            Err(e) if e.is_auth() => {
                // Wrong credentials or an untrusted certificate: retrying until max.block.ms
                // cannot help. Every waiting send fails now with the cause.
                self.last_error = Some(e.to_string().into());
                for (_, waiters) in self.waiters.drain() {
                    for w in waiters {
                        let _ = w.reply.send(Err(ProduceError::Connection(e.clone())));
                    }
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, "metadata request failed");
                self.failed();
                self.last_error = Some(e.to_string().into());
            }
        }
        out.push(MetadataAction::Updated);
        if self.again {
            self.refresh(now, cluster, out);
        } else if rebootstrap {
            self.refresh_requested(now, cluster, out);
        } else if !self.waiters.is_empty() && self.retry_at.is_none() {
            self.retry_at = Some(now + self.config.retry_backoff);
        }
        self.wake(out);
    }

    /// A partition's current leader from a Produce answer (KIP-951): written into `cluster` if
    /// its leader epoch is newer than the cached one and the leader's address is known (or
    /// given); otherwise a (paced) refresh.
    pub(crate) fn leader_hint(
        &mut self,
        now: Instant,
        hint: &LeaderHint,
        cluster: &Cluster,
        out: &mut Vec<MetadataAction>,
    ) {
        let tp = &hint.topic_partition;
        let Some(info) = cluster.topic(&tp.topic) else {
            return self.refresh_requested(now, cluster, out);
        };
        let Some(current) = usize::try_from(tp.partition)
            .ok()
            .and_then(|i| info.partitions.get(i))
        else {
            return self.refresh_requested(now, cluster, out);
        };
        if hint.leader_epoch <= current.leader_epoch {
            // Not newer than what we have: the cache is at least as fresh.
            if hint.leader != current.leader {
                self.refresh_requested(now, cluster, out);
            }
            return;
        }
        let known = cluster.brokers.contains_key(&hint.leader);
        match (&hint.address, known) {
            (_, true) => {}
            (Some(address), false) => {
                cluster.brokers.insert(
                    hint.leader,
                    BrokerInfo {
                        node_id: hint.leader,
                        address: address.clone(),
                    },
                );
            }
            (None, false) => return self.refresh_requested(now, cluster, out),
        }
        let mut updated = (*info).clone();
        if let Some(p) = usize::try_from(tp.partition)
            .ok()
            .and_then(|i| updated.partitions.get_mut(i))
        {
            p.leader = hint.leader;
            p.leader_epoch = hint.leader_epoch;
            self.hinted
                .entry(tp.topic.clone())
                .or_default()
                .insert(tp.partition);
        }
        tracing::debug!(
            %tp,
            leader = hint.leader,
            epoch = hint.leader_epoch,
            "new leader from a Produce answer (KIP-951)"
        );
        cluster.topics.insert(tp.topic.clone(), Arc::new(updated));
        out.push(MetadataAction::Updated);
        out.push(MetadataAction::Changed);
    }

    /// A request got no answer: count it against the known brokers; after a bootstrap round,
    /// try the known brokers again (the bootstrap servers may be gone for good).
    fn failed(&mut self) {
        if self.bootstrapping {
            self.failures = 0;
        } else {
            self.failures += 1;
        }
    }

    /// Timers: waiters past `max.block.ms`, deferred and periodic refreshes, idle topics.
    pub(crate) fn tick(&mut self, now: Instant, cluster: &Cluster, out: &mut Vec<MetadataAction>) {
        self.expire_waiters(now, cluster);
        self.evict_idle(now, cluster, out);
        let mut due = false;
        if self.deferred.is_some_and(|at| at <= now) {
            self.deferred = None;
            due = true;
        }
        if self.retry_at.is_some_and(|at| at <= now) {
            self.retry_at = None;
            due |= !self.waiters.is_empty();
        }
        if now >= self.next_periodic {
            self.next_periodic = now + self.config.metadata_max_age;
            due = true;
        }
        if due {
            self.refresh(now, cluster, out);
        }
        self.wake(out);
    }

    /// The next instant `tick` has work.
    fn wake(&self, out: &mut Vec<MetadataAction>) {
        let mut at = self.next_periodic;
        for t in [self.deferred, self.retry_at].into_iter().flatten() {
            at = at.min(t);
        }
        for w in self.waiters.values().flatten() {
            at = at.min(w.since + self.config.max_block);
        }
        out.push(MetadataAction::Wake(at));
    }

    /// Applies an answer to `cluster`; returns whether brokers or partitions changed.
    fn apply(&mut self, resp: MetadataResponse, cluster: &Cluster) -> bool {
        let mut changed = false;
        if !resp.brokers.is_empty() {
            let mut before: Vec<(i32, Arc<str>)> = cluster
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
            let ids: HashSet<i32> = after.iter().map(|(id, _)| *id).collect();
            for (node_id, address) in after {
                cluster
                    .brokers
                    .insert(node_id, BrokerInfo { node_id, address });
            }
            cluster.brokers.retain(|id, _| ids.contains(id));
            for b in &resp.brokers {
                match b.rack.as_ref().filter(|r| !r.is_empty()) {
                    Some(rack) => {
                        let same = cluster
                            .racks
                            .get(&b.node_id.0)
                            .is_some_and(|r| &**r == rack.as_str());
                        if !same {
                            cluster.racks.insert(b.node_id.0, rack.as_str().into());
                        }
                    }
                    None => {
                        cluster.racks.remove(&b.node_id.0);
                    }
                }
            }
            cluster.racks.retain(|id, _| ids.contains(id));
        }
        for t in resp.topics {
            let Some(name) = t.name.as_ref().map(|n| n.0.as_str().to_owned()) else {
                continue;
            };
            // Only topics still in use (one dropped as idle while the request was out stays
            // out of the cache: the next send asks for it again).
            let Some(name) = self.topics.get(name.as_str()).cloned() else {
                continue;
            };
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
                if let Some(prev) = cluster.topic(&name) {
                    let hinted = self.hinted.remove(&name).unwrap_or_default();
                    let (merged, kept) = info.merged_with_hints(&prev, |p| hinted.contains(&p));
                    if kept > 0 {
                        tracing::debug!(
                            topic = %name,
                            partitions = kept,
                            "stale leader epochs in metadata ignored (KIP-320)"
                        );
                    }
                    info = merged;
                }
                let info = Arc::new(info);
                match cluster.topics.insert(name.clone(), info.clone()) {
                    Some(prev) => changed |= *prev != *info,
                    None => changed = true,
                }
                self.topic_errors.remove(&name);
                let count = info.partition_count();
                if let Some(waiters) = self.waiters.remove(&name) {
                    let (ready, waiting): (Vec<Waiter>, Vec<Waiter>) =
                        waiters.into_iter().partition(|w| count >= w.min_partitions);
                    for w in ready {
                        let _ = w.reply.send(Ok(info.clone()));
                    }
                    if !waiting.is_empty() {
                        self.waiters.insert(name.clone(), waiting);
                    }
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
        changed
    }

    fn expire_waiters(&mut self, now: Instant, cluster: &Cluster) {
        let max_block = self.config.max_block;
        for (topic, waiters) in self.waiters.iter_mut() {
            let (expired, kept): (Vec<Waiter>, Vec<Waiter>) = std::mem::take(waiters)
                .into_iter()
                .partition(|w| now >= w.since + max_block);
            *waiters = kept;
            for w in expired {
                let waited_ms = now.saturating_duration_since(w.since).as_millis() as u64;
                let known = cluster.topic(topic);
                let err = match (known, self.topic_errors.get(topic)) {
                    // The topic is known, the partition asked for is not.
                    (Some(info), _) if w.min_partitions > info.partition_count() => {
                        ProduceError::InvalidPartition {
                            topic: topic.clone(),
                            partition: w.min_partitions - 1,
                            partitions: info.partition_count(),
                        }
                    }
                    (_, Some(code)) if code.named() == ErrorCode::UnknownTopicOrPartition => {
                        ProduceError::UnknownTopic {
                            topic: topic.clone(),
                            waited_ms,
                        }
                    }
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
            }
        }
        self.waiters.retain(|_, w| !w.is_empty());
    }

    /// `metadata.max.idle.ms`: topics nothing was sent to for that long (and for
    /// `delivery.timeout.ms`, so none of their records is pending) leave the refresh set and
    /// the cache.
    fn evict_idle(&mut self, now: Instant, cluster: &Cluster, out: &mut Vec<MetadataAction>) {
        let idle = self
            .config
            .metadata_max_idle
            .max(self.config.delivery_timeout);
        let stale: Vec<Arc<str>> = self
            .topics
            .iter()
            .filter(|t| !self.waiters.contains_key(*t))
            .filter(|t| cluster.last_used(t).is_some_and(|at| now >= at + idle))
            .cloned()
            .collect();
        for t in stale {
            tracing::debug!(topic = %t, "topic idle for metadata.max.idle.ms; metadata dropped");
            self.topics.remove(&t);
            self.topic_errors.remove(&t);
            self.hinted.remove(&t);
            cluster.forget(&t);
            out.push(MetadataAction::Forgotten(t));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codes::ErrorCode as E;
    use kafka_protocol::messages::metadata_response::{
        MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
    };
    use kafka_protocol::messages::{BrokerId, TopicName};
    use kafka_protocol::protocol::StrBytes;
    use std::time::Duration;

    fn core(props: &[(&str, &str)]) -> (MetadataCore, Cluster, Instant) {
        let mut b = ProducerConfig::builder().bootstrap_servers(["b:9092"]);
        for (k, v) in props {
            b = b.set(k, v).unwrap_or_else(|e| panic!("{e}"));
        }
        let config = Arc::new(b.build().unwrap_or_else(|e| panic!("{e}")));
        let now = Instant::now();
        (MetadataCore::new(config, now), Cluster::default(), now)
    }

    fn answer(topic: &str, partitions: i32, brokers: &[i32]) -> MetadataResponse {
        MetadataResponse::default()
            .with_brokers(
                brokers
                    .iter()
                    .map(|id| {
                        MetadataResponseBroker::default()
                            .with_node_id(BrokerId(*id))
                            .with_host(StrBytes::from_string(format!("h{id}")))
                            .with_port(9092)
                    })
                    .collect(),
            )
            .with_topics(vec![MetadataResponseTopic::default()
                .with_name(Some(TopicName(StrBytes::from_string(topic.into()))))
                .with_partitions(
                    (0..partitions)
                        .map(|i| {
                            MetadataResponsePartition::default()
                                .with_partition_index(i)
                                .with_leader_id(BrokerId(brokers.first().copied().unwrap_or(0)))
                        })
                        .collect(),
                )])
    }

    fn requests(out: &[MetadataAction]) -> Vec<bool> {
        out.iter()
            .filter_map(|a| match a {
                MetadataAction::Request { bootstrap, .. } => Some(*bootstrap),
                _ => None,
            })
            .collect()
    }

    /// Found by the simulation once it drove this core (seed 243): a topic asked for with
    /// nobody waiting (`try_send`, the sender's `WantTopic`) whose request failed was never
    /// asked for again (no waiter schedules a retry, and a second `want_topic` found it in the
    /// set), so the sender's batches for it waited until `delivery.timeout.ms`.
    #[test]
    fn a_wanted_topic_whose_request_failed_is_asked_for_again() {
        let (mut m, cluster, t0) = core(&[("retry.backoff.ms", "100")]);
        let mut out = Vec::new();
        m.want_topic(t0, "t".into(), &cluster, &mut out);
        assert_eq!(requests(&out).len(), 1);
        out.clear();
        let lost = ConnectionError::RequestTimeout {
            broker: "b:9092".into(),
            timeout_ms: 30_000,
        };
        m.on_response(
            t0 + Duration::from_millis(10),
            Err(lost),
            &cluster,
            &mut out,
        );
        out.clear();
        m.want_topic(
            t0 + Duration::from_millis(200),
            "t".into(),
            &cluster,
            &mut out,
        );
        assert_eq!(requests(&out).len(), 1, "asked for again: {out:?}");
    }

    /// The brokers' racks (`partitioner.rack.aware`, KIP-1123) follow each Metadata answer: a
    /// rack set, changed, unset (null or empty) or the broker gone.
    #[test]
    fn broker_racks_follow_the_metadata_answers() {
        let (mut m, cluster, t0) = core(&[]);
        let mut out = Vec::new();
        let with_racks = |racks: &[(i32, Option<&str>)]| {
            let mut a = answer("t", 1, &racks.iter().map(|(id, _)| *id).collect::<Vec<_>>());
            for (b, (_, rack)) in a.brokers.iter_mut().zip(racks) {
                b.rack = rack.map(|r| StrBytes::from_string(r.into()));
            }
            a
        };
        let racks = |cluster: &Cluster| {
            let mut v: Vec<(i32, String)> = cluster
                .racks
                .iter()
                .map(|r| (*r.key(), r.value().to_string()))
                .collect();
            v.sort();
            v
        };
        m.want_topic(t0, "t".into(), &cluster, &mut out);
        let a = with_racks(&[(1, Some("az1")), (2, Some("az2")), (3, None)]);
        m.on_response(t0, Ok(Some(a)), &cluster, &mut out);
        assert_eq!(racks(&cluster), [(1, "az1".into()), (2, "az2".into())]);
        let a = with_racks(&[(1, Some("az3")), (2, Some("")), (3, Some("az1"))]);
        m.on_response(t0, Ok(Some(a)), &cluster, &mut out);
        assert_eq!(racks(&cluster), [(1, "az3".into()), (3, "az1".into())]);
        let a = with_racks(&[(3, Some("az1"))]);
        m.on_response(t0, Ok(Some(a)), &cluster, &mut out);
        assert_eq!(racks(&cluster), [(3, "az1".into())]);
    }

    /// Metadata v13's top-level error (KIP-1102): nothing of such an answer is applied;
    /// `REBOOTSTRAP_REQUIRED` sends the next request (paced by `retry.backoff.ms`) to the
    /// bootstrap servers, another code is a failed request retried as usual.
    #[test]
    fn a_top_level_metadata_error_is_not_applied_and_rebootstrap_required_rebootstraps() {
        let (mut m, cluster, t0) = core(&[("retry.backoff.ms", "100")]);
        let mut out = Vec::new();
        m.want_topic(t0, "t".into(), &cluster, &mut out);
        m.on_response(t0, Ok(Some(answer("t", 2, &[1]))), &cluster, &mut out);
        assert_eq!(cluster.topic("t").map(|t| t.partition_count()), Some(2));
        out.clear();
        // Another code: not applied, no rebootstrap.
        m.refresh_requested(t0 + Duration::from_millis(200), &cluster, &mut out);
        assert_eq!(requests(&out), vec![false]);
        out.clear();
        let mut refused = answer("t", 5, &[7]);
        refused.error_code = E::UnknownServerError.code();
        m.on_response(
            t0 + Duration::from_millis(210),
            Ok(Some(refused)),
            &cluster,
            &mut out,
        );
        assert_eq!(cluster.topic("t").map(|t| t.partition_count()), Some(2));
        assert!(
            !cluster.brokers.contains_key(&7),
            "brokers of a refused answer are not kept"
        );
        assert!(requests(&out).is_empty(), "{out:?}");
        // REBOOTSTRAP_REQUIRED: the next request goes to the bootstrap servers, after the
        // backoff.
        out.clear();
        m.refresh_requested(t0 + Duration::from_millis(400), &cluster, &mut out);
        out.clear();
        let mut rebootstrap = answer("t", 5, &[7]);
        rebootstrap.error_code = E::RebootstrapRequired.code();
        let at = t0 + Duration::from_millis(410);
        m.on_response(at, Ok(Some(rebootstrap)), &cluster, &mut out);
        assert_eq!(cluster.topic("t").map(|t| t.partition_count()), Some(2));
        assert!(requests(&out).is_empty(), "paced: {out:?}");
        out.clear();
        m.tick(t0 + Duration::from_millis(500), &cluster, &mut out);
        assert_eq!(requests(&out), vec![true], "rebootstrap: {out:?}");
    }

    #[test]
    fn an_explicit_partition_beyond_the_cache_waits_for_metadata_that_has_it() {
        let (mut m, cluster, t0) = core(&[("max.block.ms", "1000")]);
        let mut out = Vec::new();
        let (tx, mut rx) = oneshot::channel();
        m.wait_for_topic(t0, "t".into(), 0, tx, &cluster, &mut out);
        m.on_response(t0, Ok(Some(answer("t", 2, &[1]))), &cluster, &mut out);
        assert_eq!(
            rx.try_recv().map(|r| r.map(|i| i.partition_count())),
            Ok(Ok(2))
        );
        // Partition 3 asked for: a refresh, no answer until metadata has 4 partitions.
        let (tx, mut rx) = oneshot::channel();
        out.clear();
        m.wait_for_topic(t0, "t".into(), 4, tx, &cluster, &mut out);
        assert_eq!(requests(&out), vec![false]);
        m.on_response(t0, Ok(Some(answer("t", 2, &[1]))), &cluster, &mut out);
        assert!(rx.try_recv().is_err(), "answered with too few partitions");
        m.on_response(t0, Ok(Some(answer("t", 4, &[1]))), &cluster, &mut out);
        assert_eq!(
            rx.try_recv().map(|r| r.map(|i| i.partition_count())),
            Ok(Ok(4))
        );
        // Never there: InvalidPartition by max.block.ms.
        let (tx, mut rx) = oneshot::channel();
        m.wait_for_topic(t0, "t".into(), 9, tx, &cluster, &mut out);
        m.tick(t0 + Duration::from_millis(999), &cluster, &mut out);
        assert!(rx.try_recv().is_err());
        m.tick(t0 + Duration::from_millis(1000), &cluster, &mut out);
        match rx.try_recv() {
            Ok(Err(ProduceError::InvalidPartition {
                partition: 8,
                partitions: 4,
                ..
            })) => {}
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn refreshes_are_paced_one_per_retry_backoff_and_deferred_not_dropped() {
        let (mut m, cluster, t0) = core(&[("retry.backoff.ms", "100")]);
        let mut out = Vec::new();
        m.refresh_requested(t0, &cluster, &mut out);
        m.on_response(t0, Ok(Some(answer("t", 1, &[1]))), &cluster, &mut out);
        out.clear();
        m.refresh_requested(t0 + Duration::from_millis(10), &cluster, &mut out);
        assert!(requests(&out).is_empty());
        m.tick(t0 + Duration::from_millis(99), &cluster, &mut out);
        assert!(requests(&out).is_empty());
        m.tick(t0 + Duration::from_millis(100), &cluster, &mut out);
        assert_eq!(requests(&out), vec![false]);
    }

    #[test]
    fn no_known_broker_answering_goes_back_to_the_bootstrap_servers() {
        let (mut m, cluster, t0) = core(&[("retry.backoff.ms", "10")]);
        let mut out = Vec::new();
        m.refresh_requested(t0, &cluster, &mut out);
        m.on_response(t0, Ok(Some(answer("t", 1, &[1, 2]))), &cluster, &mut out);
        let err = || {
            Err(ConnectionError::Connect {
                broker: "h1:9092".into(),
                reason: "refused".into(),
            })
        };
        let mut t = t0;
        let mut seen = Vec::new();
        for _ in 0..3 {
            t += Duration::from_millis(20);
            out.clear();
            m.refresh_requested(t, &cluster, &mut out);
            seen.extend(requests(&out));
            m.on_response(t, err(), &cluster, &mut out);
        }
        // Two known brokers tried, then the bootstrap servers, then the known ones again.
        assert_eq!(seen, vec![false, false, true]);
        t += Duration::from_millis(20);
        out.clear();
        m.refresh_requested(t, &cluster, &mut out);
        assert_eq!(requests(&out), vec![false]);
        m.on_response(t, Ok(Some(answer("t", 1, &[1, 2]))), &cluster, &mut out);
        // A routine refresh long after the last answer goes to a known broker: the trigger
        // counts from an unanswered attempt, not from the last answer (KIP-1102).
        out.clear();
        let later = t + Duration::from_secs(3600);
        m.refresh_requested(later, &cluster, &mut out);
        assert_eq!(requests(&out), vec![false]);
        // With metadata.recovery.strategy=none: never.
        let (mut m, cluster, t0) = core(&[("metadata.recovery.strategy", "none")]);
        m.on_response(t0, Ok(Some(answer("t", 1, &[1]))), &cluster, &mut out);
        for i in 0..3 {
            out.clear();
            let t = t0 + Duration::from_secs(i + 1);
            m.refresh_requested(t, &cluster, &mut out);
            assert_eq!(requests(&out), vec![false]);
            m.on_response(t, err(), &cluster, &mut out);
        }
    }

    #[test]
    fn a_newer_leader_from_a_produce_answer_is_applied_at_once() {
        let (mut m, cluster, t0) = core(&[]);
        let mut out = Vec::new();
        let (tx, _rx) = oneshot::channel();
        m.wait_for_topic(t0, "t".into(), 0, tx, &cluster, &mut out);
        m.on_response(t0, Ok(Some(answer("t", 2, &[1]))), &cluster, &mut out);
        let hint = |leader, leader_epoch, address: Option<&str>| LeaderHint {
            topic_partition: crate::record::TopicPartition::new("t", 1),
            leader,
            leader_epoch,
            address: address.map(Arc::from),
        };
        // Epoch 5 > 0 with the new broker's address: applied, no Metadata request.
        out.clear();
        m.leader_hint(t0, &hint(7, 5, Some("h7:9092")), &cluster, &mut out);
        assert!(requests(&out).is_empty(), "{out:?}");
        assert!(out.contains(&MetadataAction::Updated));
        assert!(out.contains(&MetadataAction::Changed));
        let leader = cluster
            .leader("t", 1)
            .map(|b| (b.node_id, b.address.to_string()));
        assert_eq!(leader, Some((7, "h7:9092".to_string())));
        // An older epoch is ignored (KIP-320 order).
        out.clear();
        let t1 = t0 + Duration::from_millis(200);
        m.leader_hint(t1, &hint(1, 3, None), &cluster, &mut out);
        assert_eq!(cluster.leader("t", 1).map(|b| b.node_id), Some(7));
        // (It disagrees with the cache: a refresh is asked for; let it end unanswered.)
        assert_eq!(requests(&out), vec![false]);
        m.on_response(t1, Ok(None), &cluster, &mut out);
        // A newer leader whose address nobody gave: a refresh instead.
        out.clear();
        let later = t0 + Duration::from_secs(1);
        m.leader_hint(later, &hint(9, 6, None), &cluster, &mut out);
        assert_eq!(requests(&out), vec![false]);
        assert_eq!(cluster.leader("t", 1).map(|b| b.node_id), Some(7));
    }

    /// A hint with leader epoch `i32::MAX` (a broken or hostile broker) no longer pins the
    /// partition: the next Metadata answer replaces what only a hint said, whatever its epoch;
    /// an entry a Metadata answer gave keeps the KIP-320 order.
    #[test]
    fn a_hint_with_an_absurd_epoch_gives_way_to_the_next_metadata_answer() {
        let (mut m, cluster, t0) = core(&[]);
        let mut out = Vec::new();
        let (tx, _rx) = oneshot::channel();
        m.wait_for_topic(t0, "t".into(), 0, tx, &cluster, &mut out);
        let with_epoch = |epoch: i32| {
            let mut a = answer("t", 2, &[1]);
            for p in &mut a.topics[0].partitions {
                p.leader_epoch = epoch;
            }
            a
        };
        m.on_response(t0, Ok(Some(with_epoch(3))), &cluster, &mut out);
        let hint = LeaderHint {
            topic_partition: crate::record::TopicPartition::new("t", 1),
            leader: 7,
            leader_epoch: i32::MAX,
            address: Some(Arc::from("h7:9092")),
        };
        m.leader_hint(t0, &hint, &cluster, &mut out);
        assert_eq!(cluster.leader("t", 1).map(|b| b.node_id), Some(7));
        m.on_response(t0, Ok(Some(with_epoch(4))), &cluster, &mut out);
        assert_eq!(
            cluster.leader("t", 1).map(|b| b.node_id),
            Some(1),
            "pinned by the hint"
        );
        // From a Metadata answer, epoch 4 now: an older answer (3) is still ignored.
        let mut stale = with_epoch(3);
        stale.topics[0].partitions[1].leader_id = BrokerId(9);
        m.on_response(t0, Ok(Some(stale)), &cluster, &mut out);
        assert_eq!(cluster.leader("t", 1).map(|b| b.node_id), Some(1));
    }

    #[test]
    fn idle_topics_leave_the_cache() {
        let (mut m, cluster, t0) = core(&[
            ("metadata.max.idle.ms", "5000"),
            ("delivery.timeout.ms", "6000"),
            ("linger.ms", "0"),
            ("request.timeout.ms", "5000"),
        ]);
        let mut out = Vec::new();
        let (tx, _rx) = oneshot::channel();
        m.wait_for_topic(t0, "t".into(), 0, tx, &cluster, &mut out);
        m.on_response(t0, Ok(Some(answer("t", 1, &[1]))), &cluster, &mut out);
        assert!(cluster.topic("t").is_some());
        cluster.touch("t", t0 + Duration::from_secs(1));
        // Idle for max(metadata.max.idle.ms, delivery.timeout.ms) = 6 s after the last use.
        m.tick(t0 + Duration::from_millis(6999), &cluster, &mut out);
        assert!(cluster.topic("t").is_some());
        m.tick(t0 + Duration::from_secs(7), &cluster, &mut out);
        assert!(cluster.topic("t").is_none());
        out.clear();
        m.refresh_requested(t0 + Duration::from_secs(8), &cluster, &mut out);
        assert!(matches!(&out[0], MetadataAction::Request { topics, .. } if topics.is_empty()));
    }

    /// Issue 19 defect 2: `try_send` without cached metadata leaves no waiter behind, however
    /// often it is called; one Metadata request asks for the topic.
    #[test]
    fn wanting_a_topic_leaves_no_waiter() {
        let (mut m, cluster, t0) = core(&[]);
        let mut out = Vec::new();
        for i in 0..10_000u64 {
            m.want_topic(
                t0 + Duration::from_micros(i),
                "t".into(),
                &cluster,
                &mut out,
            );
        }
        assert_eq!(m.waiters.values().map(Vec::len).sum::<usize>(), 0);
        assert_eq!(requests(&out).len(), 1, "{:?}", requests(&out));
        m.on_response(t0, Ok(Some(answer("t", 1, &[1]))), &cluster, &mut out);
        assert!(cluster.topic("t").is_some());
    }

    fn reply() -> (
        TopicReply,
        oneshot::Receiver<Result<Arc<TopicInfo>, ProduceError>>,
    ) {
        oneshot::channel()
    }

    fn with_topic_code(mut a: MetadataResponse, code: ErrorCode) -> MetadataResponse {
        a.topics[0].error_code = code.code();
        a
    }

    fn wake_at(out: &[MetadataAction]) -> Option<Instant> {
        out.iter().rev().find_map(|a| match a {
            MetadataAction::Wake(at) => Some(*at),
            _ => None,
        })
    }

    /// The first request, with no broker known yet, goes to `bootstrap.servers` as a
    /// bootstrap, not a KIP-899 rebootstrap (there is no known set to give up on).
    #[test]
    fn the_first_request_is_not_a_rebootstrap() {
        let (mut m, cluster, t0) = core(&[]);
        let mut out = Vec::new();
        let (tx, _rx) = reply();
        m.wait_for_topic(t0, "t".into(), 0, tx, &cluster, &mut out);
        assert_eq!(requests(&out), vec![false]);
    }

    /// Wrong credentials or an untrusted certificate: every waiting `send` fails at once with
    /// the cause, not at `max.block.ms`; other failures keep it waiting.
    #[test]
    fn an_authentication_failure_answers_the_waiters_at_once() {
        let (mut m, cluster, t0) = core(&[]);
        let mut out = Vec::new();
        let (tx, mut rx) = reply();
        m.wait_for_topic(t0, "t".into(), 0, tx, &cluster, &mut out);
        let lost = ConnectionError::Disconnected {
            broker: "b:9092".into(),
            reason: "reset".into(),
        };
        m.on_response(t0, Err(lost), &cluster, &mut out);
        assert!(rx.try_recv().is_err(), "still waiting");
        out.clear();
        m.tick(t0 + Duration::from_secs(1), &cluster, &mut out);
        assert_eq!(requests(&out), vec![false]);
        let denied = ConnectionError::Authentication {
            broker: "b:9092".into(),
            reason: "bad password".into(),
        };
        m.on_response(
            t0 + Duration::from_secs(1),
            Err(denied.clone()),
            &cluster,
            &mut out,
        );
        match rx.try_recv() {
            Ok(Err(ProduceError::Connection(e))) => assert_eq!(e, denied),
            other => panic!("{other:?}"),
        }
    }

    /// A failed request with `send`s waiting is retried after `retry.backoff.ms`, not sooner
    /// and not only at the periodic refresh; with nobody waiting, no retry is scheduled (the
    /// next wake-up is the periodic refresh).
    #[test]
    fn a_failed_request_is_retried_after_the_backoff_while_sends_wait() {
        let (mut m, cluster, t0) = core(&[
            ("retry.backoff.ms", "100"),
            ("metadata.max.age.ms", "60000"),
        ]);
        let lost = || {
            Err(ConnectionError::Disconnected {
                broker: "b:9092".into(),
                reason: "reset".into(),
            })
        };
        let mut out = Vec::new();
        let (tx, _rx) = reply();
        m.wait_for_topic(t0, "t".into(), 0, tx, &cluster, &mut out);
        let t1 = t0 + Duration::from_millis(5);
        out.clear();
        m.on_response(t1, lost(), &cluster, &mut out);
        assert!(requests(&out).is_empty());
        assert_eq!(wake_at(&out), Some(t1 + Duration::from_millis(100)));
        out.clear();
        m.tick(t1 + Duration::from_millis(99), &cluster, &mut out);
        assert!(requests(&out).is_empty(), "{out:?}");
        m.tick(t1 + Duration::from_millis(100), &cluster, &mut out);
        assert_eq!(requests(&out), vec![false]);
        // Nobody waiting: a failure schedules nothing before the periodic refresh.
        let (mut m, cluster, t0) = core(&[
            ("retry.backoff.ms", "100"),
            ("metadata.max.age.ms", "60000"),
        ]);
        out.clear();
        m.refresh_requested(t0, &cluster, &mut out);
        out.clear();
        m.on_response(t0, lost(), &cluster, &mut out);
        assert_eq!(wake_at(&out), Some(t0 + Duration::from_secs(60)));
    }

    /// The periodic refresh comes every `metadata.max.age.ms`, also while one is unanswered: a
    /// tick just after it starts asks for nothing more.
    #[test]
    fn the_periodic_refresh_is_once_per_max_age() {
        let (mut m, cluster, t0) = core(&[("metadata.max.age.ms", "1000")]);
        let mut out = Vec::new();
        m.tick(t0 + Duration::from_millis(999), &cluster, &mut out);
        assert!(requests(&out).is_empty());
        let t1 = t0 + Duration::from_millis(1000);
        m.tick(t1, &cluster, &mut out);
        assert_eq!(requests(&out), vec![false]);
        out.clear();
        m.tick(t1 + Duration::from_millis(1), &cluster, &mut out);
        m.on_response(
            t1 + Duration::from_millis(2),
            Ok(Some(answer("t", 1, &[1]))),
            &cluster,
            &mut out,
        );
        assert!(requests(&out).is_empty(), "asked again at once: {out:?}");
    }

    /// `Changed` (a health event, and what wakes the sender for new leaders) is emitted when
    /// brokers or partitions change, and only then.
    #[test]
    fn changed_only_when_brokers_or_partitions_change() {
        let (mut m, cluster, t0) = core(&[]);
        let mut out = Vec::new();
        let (tx, _rx) = reply();
        m.wait_for_topic(t0, "t".into(), 0, tx, &cluster, &mut out);
        let changed = |m: &mut MetadataCore, a: MetadataResponse| {
            let mut out = Vec::new();
            m.on_response(t0, Ok(Some(a)), &cluster, &mut out);
            out.contains(&MetadataAction::Changed)
        };
        assert!(changed(&mut m, answer("t", 1, &[1])), "a new topic");
        assert!(!changed(&mut m, answer("t", 1, &[1])), "the same answer");
        assert!(changed(&mut m, answer("t", 1, &[1, 2])), "a broker joined");
        assert!(!changed(&mut m, answer("t", 1, &[1, 2])));
        assert!(
            changed(&mut m, answer("t", 2, &[1, 2])),
            "a partition added"
        );
        assert!(changed(&mut m, answer("t", 2, &[1])), "a broker left");
    }

    /// Topic-level errors: a retriable one (LEADER_NOT_AVAILABLE while the topic is created)
    /// keeps the `send` waiting, also when the answer lists partitions beside it; a final one
    /// (TOPIC_AUTHORIZATION_FAILED) fails it at once. At `max.block.ms` an unknown topic is
    /// `UnknownTopic`, anything else `MetadataTimeout`.
    #[test]
    fn topic_errors_keep_waiting_or_fail_by_their_class() {
        let (mut m, cluster, t0) = core(&[("max.block.ms", "1000")]);
        let mut out = Vec::new();
        let (tx, mut rx) = reply();
        m.wait_for_topic(t0, "t".into(), 0, tx, &cluster, &mut out);
        let busy = with_topic_code(answer("t", 1, &[1]), ErrorCode::LeaderNotAvailable);
        m.on_response(t0, Ok(Some(busy)), &cluster, &mut out);
        assert!(
            rx.try_recv().is_err(),
            "answered from an answer with a topic error"
        );
        assert!(cluster.topic("t").is_none());
        m.tick(t0 + Duration::from_millis(1000), &cluster, &mut out);
        match rx.try_recv() {
            Ok(Err(ProduceError::MetadataTimeout { .. })) => {}
            other => panic!("{other:?}"),
        }
        let (tx, mut rx) = reply();
        let t1 = t0 + Duration::from_secs(2);
        m.wait_for_topic(t1, "u".into(), 0, tx, &cluster, &mut out);
        let unknown = with_topic_code(answer("u", 0, &[1]), ErrorCode::UnknownTopicOrPartition);
        m.on_response(t1, Ok(Some(unknown)), &cluster, &mut out);
        assert!(rx.try_recv().is_err());
        m.tick(t1 + Duration::from_millis(1000), &cluster, &mut out);
        match rx.try_recv() {
            Ok(Err(ProduceError::UnknownTopic {
                waited_ms: 1000, ..
            })) => {}
            other => panic!("{other:?}"),
        }
        let (tx, mut rx) = reply();
        let t2 = t1 + Duration::from_secs(2);
        m.wait_for_topic(t2, "v".into(), 0, tx, &cluster, &mut out);
        let denied = with_topic_code(answer("v", 0, &[1]), ErrorCode::TopicAuthorizationFailed);
        m.on_response(t2, Ok(Some(denied)), &cluster, &mut out);
        match rx.try_recv() {
            Ok(Err(ProduceError::TopicError { code, .. })) => {
                assert_eq!(code.named(), ErrorCode::TopicAuthorizationFailed)
            }
            other => panic!("{other:?}"),
        }
    }
}

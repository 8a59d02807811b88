//! The sender's transactional side (KIP-98, KIP-447): the [`Transactional`] message and the
//! shell of the transaction manager, [`crate::core::txn::TxnCore`], which decides everything:
//! which call of the handle runs when, the coordinator calls they are made of, their retries
//! and what each answer does. This file feeds it the handle's requests, the answers and the
//! timers, and carries out its actions: FindCoordinator and the coordinator requests (built
//! here at the negotiated version), replies, the state `send` reads, the sender core's batches
//! and producer id, health events.

use super::Sender;
use crate::actors::connection::call;
use crate::core::sender::ProducerIdState;
use crate::core::txn::{
    Action, Answer, CoordRequest, Found, TxnCore, TxnRules, TxnView, TxnWaiter,
};
pub(crate) use crate::core::txn::{Receipt, TxnRequest};
use crate::error::ConnectionError;
use crate::record::TopicPartition;
use crate::transaction::TransactionError;
use actix::prelude::*;
use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::txn_offset_commit_request::{
    TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
};
use kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddPartitionsToTxnRequest, EndTxnRequest, FindCoordinatorRequest,
    GroupId, InitProducerIdRequest, TopicName, TransactionalId, TxnOffsetCommitRequest,
};
use kafka_protocol::protocol::StrBytes;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::oneshot;

/// A transactional call, answered on `reply` when it is done. The caller awaits the reply under
/// its `max.block.ms` and takes the reply's receipt once the answer reached it, so the core
/// knows whether the result reached anyone (else it keeps it for the repeated call).
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Transactional {
    pub(crate) request: TxnRequest,
    pub(crate) reply: Reply,
}

/// Where a transactional call's answer goes, and the receipt its receiver takes.
pub(crate) struct Reply {
    pub(crate) tx: oneshot::Sender<Result<(), TransactionError>>,
    pub(crate) receipt: Receipt,
}

impl TxnWaiter for Reply {
    fn receipt(&self) -> &Receipt {
        &self.receipt
    }
}

/// The transaction core as the sender holds it.
pub(super) type Txn = TxnCore<Reply>;

/// The core for `transactional.id` `id`, with the configured limits.
pub(super) fn txn_core(id: &str, config: &crate::config::ProducerConfig) -> Txn {
    TxnCore::new(
        id,
        TxnRules {
            call_timeout: config.delivery_timeout,
            retry_backoff: config.retry_backoff,
            retry_backoff_max: config.retry_backoff_max,
            transaction_timeout: config.transaction_timeout,
        },
    )
}

impl Handler<Transactional> for Sender {
    type Result = ();

    fn handle(&mut self, msg: Transactional, ctx: &mut Context<Self>) {
        let Transactional { request, reply } = msg;
        if self.txn.is_none() {
            let _ = reply.tx.send(Err(TransactionError::NotTransactional));
            return;
        }
        self.txn_step(ctx, |t, now, view, out| {
            t.request(now, request, reply, view, out)
        });
    }
}

/// A coordinator answer on its way.
type Pending = Pin<Box<dyn Future<Output = Answer>>>;

impl Sender {
    /// Runs `step` on the transaction core with the time and the view of now, then carries
    /// out what it decided (every way into the core goes through here).
    fn txn_step(
        &mut self,
        ctx: &mut Context<Self>,
        step: impl FnOnce(&mut Txn, Instant, &TxnView, &mut Vec<Action<Reply>>),
    ) {
        let view = TxnView::of(&self.core, &self.shared);
        let Some(t) = self.txn.as_mut() else { return };
        let mut out = Vec::new();
        step(t, Instant::now(), &view, &mut out);
        if !out.is_empty() {
            self.txn_execute(out, ctx);
        }
    }

    /// Sends AddPartitionsToTxn for the partitions the drain found new.
    pub(super) fn txn_add_partitions(&mut self, ctx: &mut Context<Self>) {
        self.txn_step(ctx, |t, now, view, out| t.add_partitions(now, view, out));
    }

    fn txn_tick(&mut self, ctx: &mut Context<Self>) {
        self.txn_step(ctx, |t, now, view, out| t.tick(now, view, out));
    }

    fn txn_found(&mut self, token: u64, found: Found, ctx: &mut Context<Self>) {
        self.txn_step(ctx, |t, now, view, out| {
            t.found(now, token, found, view, out)
        });
    }

    fn txn_answered(&mut self, token: u64, answer: Answer, ctx: &mut Context<Self>) {
        self.txn_step(ctx, |t, now, view, out| {
            t.answered(now, token, answer, view, out)
        });
    }

    /// Carries out what the transaction core decided, in order.
    fn txn_execute(&mut self, actions: Vec<Action<Reply>>, ctx: &mut Context<Self>) {
        let mut drain = false;
        for action in actions {
            match action {
                Action::FindCoordinator {
                    token,
                    key_type,
                    key,
                } => self.find_coordinator(token, key_type, key, ctx),
                Action::Call {
                    token,
                    node,
                    address,
                    request,
                } => self.coordinator_request(token, node, address, request, ctx),
                Action::Reply(reply, res) => {
                    let _ = reply.tx.send(res);
                }
                Action::Publish(state) => self.shared.txn.set_state(state),
                Action::ClearFailure => self.shared.txn.clear_failure(),
                Action::FailQueued(err) => {
                    self.core.fail_queued(err);
                    self.settle();
                }
                Action::FailPartitions(partitions, err) => {
                    for tp in &partitions {
                        self.core.fail_partition(tp, &err);
                    }
                    self.settle();
                }
                Action::ProducerIdInitializing => self.core.pid = ProducerIdState::Initializing,
                Action::ProducerIdUnknown => self.core.pid = ProducerIdState::Unknown,
                Action::ProducerId(id, epoch) => self.core.set_producer_id(id, epoch),
                Action::Fenced => {
                    if let Some((id, epoch)) = self.core.producer() {
                        self.shared
                            .health
                            .emit(crate::health::HealthEvent::ProducerFenced {
                                producer_id: id,
                                epoch,
                            });
                    }
                }
                Action::Drain => drain = true,
                Action::WakeAt(at) => {
                    let wait = at.saturating_duration_since(Instant::now());
                    ctx.run_later(wait, |act, ctx| act.txn_tick(ctx));
                }
            }
        }
        if drain {
            self.drain(ctx);
        }
    }

    /// FindCoordinator through any broker; the answer goes to the core.
    fn find_coordinator(
        &mut self,
        token: u64,
        key_type: i8,
        key: Arc<str>,
        ctx: &mut Context<Self>,
    ) {
        let Some((address, conn)) = self.pool.any(&self.cluster.brokers()) else {
            return self.txn_found(
                token,
                Found::Fatal("no broker to ask for the coordinator".into()),
                ctx,
            );
        };
        let request = FindCoordinatorRequest::default()
            .with_key(StrBytes::from_string(key.to_string()))
            .with_key_type(key_type);
        let timeout = self.config.request_timeout;
        let fut = async move { call(&conn, address, request, true, timeout).await };
        ctx.spawn(fut.into_actor(self).map(move |res, act, ctx| {
            let found = match res {
                Ok(Some(resp)) if resp.error_code != 0 => Found::Code(resp.error_code),
                Ok(Some(resp)) if resp.port <= 0 || resp.port > 65535 || resp.host.is_empty() => {
                    Found::Malformed
                }
                Ok(Some(resp)) => {
                    let node = resp.node_id.0;
                    // The address metadata knows this node by, so one connection serves both.
                    let address: Arc<str> = act
                        .cluster
                        .brokers()
                        .into_iter()
                        .find(|b| b.node_id == node)
                        .map(|b| b.address)
                        .unwrap_or_else(|| format!("{}:{}", resp.host.as_str(), resp.port).into());
                    Found::Node { node, address }
                }
                Ok(None) => Found::Lost,
                Err(e) if e.is_retriable() => Found::Lost,
                Err(e) => Found::Fatal(e.to_string().into()),
            };
            act.txn_found(token, found, ctx);
        }));
    }

    /// A coordinator request at the negotiated version; its answer goes to the core.
    fn coordinator_request(
        &mut self,
        token: u64,
        node: i32,
        address: Arc<str>,
        request: CoordRequest,
        ctx: &mut Context<Self>,
    ) {
        let Some(t) = self.txn.as_ref() else { return };
        let id = TransactionalId(StrBytes::from_string(t.id().to_string()));
        let conn = self.pool.get(node, &address);
        let timeout = self.config.request_timeout;
        let fut: Pending = match request {
            CoordRequest::InitProducerId {
                current,
                transaction_timeout_ms,
            } => {
                let (old_id, old_epoch) = current.unwrap_or((-1, -1));
                let r = InitProducerIdRequest::default()
                    .with_transactional_id(Some(id))
                    .with_transaction_timeout_ms(transaction_timeout_ms)
                    .with_producer_id(old_id.into())
                    .with_producer_epoch(old_epoch);
                Box::pin(async move {
                    answer(call(&conn, address, r, true, timeout).await, |r| {
                        Answer::ProducerId {
                            code: r.error_code,
                            id: r.producer_id.0,
                            epoch: r.producer_epoch,
                        }
                    })
                })
            }
            CoordRequest::AddPartitions {
                producer: (pid, epoch),
                partitions,
            } => {
                let r = AddPartitionsToTxnRequest::default()
                    .with_v3_and_below_transactional_id(id)
                    .with_v3_and_below_producer_id(pid.into())
                    .with_v3_and_below_producer_epoch(epoch)
                    .with_v3_and_below_topics(add_partitions_topics(&partitions));
                Box::pin(async move {
                    answer(call(&conn, address, r, true, timeout).await, |r| {
                        Answer::Codes(
                            r.results_by_topic_v3_and_below
                                .iter()
                                .flat_map(|t| {
                                    t.results_by_partition
                                        .iter()
                                        .map(|p| p.partition_error_code)
                                })
                                .collect(),
                        )
                    })
                })
            }
            CoordRequest::AddOffsets {
                producer: (pid, epoch),
                group,
            } => {
                let r = AddOffsetsToTxnRequest::default()
                    .with_transactional_id(id)
                    .with_producer_id(pid.into())
                    .with_producer_epoch(epoch)
                    .with_group_id(GroupId(StrBytes::from_string(group.to_string())));
                Box::pin(async move {
                    answer(call(&conn, address, r, true, timeout).await, |r| {
                        Answer::Codes(vec![r.error_code])
                    })
                })
            }
            CoordRequest::TxnOffsetCommit {
                producer: (pid, epoch),
                offsets,
                group,
            } => {
                let mut r = TxnOffsetCommitRequest::default()
                    .with_transactional_id(id)
                    .with_group_id(GroupId(StrBytes::from_string(group.group_id.clone())))
                    .with_producer_id(pid.into())
                    .with_producer_epoch(epoch)
                    .with_topics(offset_commit_topics(&offsets));
                // KIP-447 fields (v3+): only when known, so older versions still encode.
                if group.generation_id >= 0 || !group.member_id.is_empty() {
                    r = r
                        .with_generation_id(group.generation_id)
                        .with_member_id(StrBytes::from_string(group.member_id.clone()));
                }
                if let Some(gid) = &group.group_instance_id {
                    r = r.with_group_instance_id(Some(StrBytes::from_string(gid.clone())));
                }
                Box::pin(async move {
                    answer(call(&conn, address, r, true, timeout).await, |r| {
                        Answer::Codes(
                            r.topics
                                .iter()
                                .flat_map(|t| t.partitions.iter().map(|p| p.error_code))
                                .collect(),
                        )
                    })
                })
            }
            CoordRequest::EndTxn {
                producer: (pid, epoch),
                commit,
            } => {
                let r = EndTxnRequest::default()
                    .with_transactional_id(id)
                    .with_producer_id(pid.into())
                    .with_producer_epoch(epoch)
                    .with_committed(commit);
                Box::pin(async move {
                    answer(call(&conn, address, r, true, timeout).await, |r| {
                        Answer::Codes(vec![r.error_code])
                    })
                })
            }
        };
        ctx.spawn(
            fut.into_actor(self)
                .map(move |answer, act, ctx| act.txn_answered(token, answer, ctx)),
        );
    }
}

/// A response as the core reads it: lost (no response, a retriable connection error) or not
/// retriable, else what `read` takes of it.
fn answer<T>(res: Result<Option<T>, ConnectionError>, read: impl FnOnce(T) -> Answer) -> Answer {
    match res {
        Ok(Some(r)) => read(r),
        Ok(None) => Answer::Lost,
        Err(e) if e.is_retriable() => {
            tracing::debug!(error = %e, "coordinator call failed; retrying");
            Answer::Lost
        }
        Err(e) => Answer::Fatal(e.to_string().into()),
    }
}

fn add_partitions_topics(tps: &[TopicPartition]) -> Vec<AddPartitionsToTxnTopic> {
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
    topics
}

fn offset_commit_topics(offsets: &[(TopicPartition, i64)]) -> Vec<TxnOffsetCommitRequestTopic> {
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
    topics
}

//! Broker health as typed actix messages: subscribe any `Recipient<HealthEvent>` with
//! [`crate::Producer::subscribe_health`] (readiness probes, dashboards, alerts).
//!
//! A connection's trouble is one *episode*: the first failure logs one WARN and sends one
//! [`HealthEvent::BrokerDown`]; reconnect attempts inside the episode are silent (DEBUG); the
//! first success logs the recovery and sends [`HealthEvent::BrokerRestarted`] then
//! [`HealthEvent::BrokerUp`]. Re-authentication (KIP-368) is not an episode.

use crate::error::ConnectionError;
use actix::prelude::*;
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// A change in the producer's view of the cluster.
#[derive(Message, Clone, Debug, PartialEq)]
#[rtype(result = "()")]
#[non_exhaustive]
pub enum HealthEvent {
    /// A connection to broker `node_id` is up (first connect, or back after an episode).
    /// Bootstrap connections have negative ids (`-1`, `-2`, ...).
    BrokerUp {
        /// Broker id (`node.id`), negative for a bootstrap address.
        node_id: i32,
        /// `host:port`.
        address: Arc<str>,
    },
    /// The connection to a broker was lost or could not be made; sent once per episode.
    BrokerDown {
        /// Broker id, negative for a bootstrap address.
        node_id: i32,
        /// `host:port`.
        address: Arc<str>,
        /// The first error of the episode.
        cause: ConnectionError,
    },
    /// Connected again after an episode of `attempt` failed connection attempts, which lasted
    /// `down_for`.
    BrokerRestarted {
        /// Broker id, negative for a bootstrap address.
        node_id: i32,
        /// `host:port`.
        address: Arc<str>,
        /// Failed attempts in the episode (the connection actor's supervisor restarts).
        attempt: u32,
        /// How long the broker was unreachable.
        down_for: Duration,
    },
    /// Metadata changed: brokers, partition counts or leaders.
    MetadataChanged,
    /// A broker refused our producer id/epoch as fenced (`PRODUCER_FENCED`,
    /// `INVALID_PRODUCER_EPOCH`): another producer took it over, or the broker bumped it. The
    /// records of that batch fail.
    ProducerFenced {
        /// The producer id that was refused.
        producer_id: i64,
        /// Its epoch.
        epoch: i16,
    },
    /// An actor's handler panicked (a bug): the panic was caught, the actor kept its state
    /// (its batches, its waiters) and goes on. Records the panic interrupted fail with
    /// [`crate::ProduceError::Closed`]; no record is lost silently.
    InternalError {
        /// The actor: `sender` or `metadata`.
        actor: &'static str,
        /// The panic message.
        reason: std::sync::Arc<str>,
    },
}

/// The subscribers of one producer.
#[derive(Default)]
pub(crate) struct HealthHub {
    subscribers: RwLock<Vec<Recipient<HealthEvent>>>,
}

impl HealthHub {
    pub(crate) fn subscribe(&self, r: Recipient<HealthEvent>) {
        if let Ok(mut s) = self.subscribers.write() {
            s.push(r);
        }
    }

    /// Sends `event` to every live subscriber (without waiting; a full or closed mailbox drops
    /// it for that subscriber only).
    pub(crate) fn emit(&self, event: HealthEvent) {
        let Ok(subs) = self.subscribers.read() else {
            return;
        };
        if subs.is_empty() {
            return;
        }
        for s in subs.iter() {
            if s.connected() {
                let _ = s.try_send(event.clone());
            }
        }
    }
}

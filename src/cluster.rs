//! Cluster view shared between actors: brokers, topics, partition leaders.
//!
//! Written only by the [`crate::actors::metadata::MetadataManager`]; read lock-free-ish
//! (`dashmap`) by the producer front end (partition counts) and the
//! [`crate::actors::sender::Sender`] (leaders).

use dashmap::DashMap;
use std::sync::Arc;

/// One partition as metadata describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionInfo {
    /// Leader broker id, `-1` when there is no leader.
    pub leader: i32,
    /// Leader epoch (KIP-320), `-1` when unknown.
    pub leader_epoch: i32,
}

/// One topic as metadata describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicInfo {
    /// Topic name.
    pub name: Arc<str>,
    /// Partitions, indexed by partition id.
    pub partitions: Vec<PartitionInfo>,
}

impl TopicInfo {
    /// Number of partitions.
    pub fn partition_count(&self) -> i32 {
        self.partitions.len() as i32
    }
}

/// A broker's advertised address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrokerInfo {
    /// Broker id (`node.id`).
    pub node_id: i32,
    /// `host:port`.
    pub address: Arc<str>,
}

/// Shared, concurrently readable cluster metadata.
#[derive(Default, Debug)]
pub struct Cluster {
    pub(crate) topics: DashMap<Arc<str>, Arc<TopicInfo>>,
    pub(crate) brokers: DashMap<i32, BrokerInfo>,
}

impl Cluster {
    /// Cached metadata of `topic`, if any.
    pub fn topic(&self, topic: &str) -> Option<Arc<TopicInfo>> {
        self.topics.get(topic).map(|t| t.value().clone())
    }

    /// Leader broker of a partition, if known and present in the broker list.
    pub fn leader(&self, topic: &str, partition: i32) -> Option<BrokerInfo> {
        let t = self.topics.get(topic)?;
        let p = t.partitions.get(usize::try_from(partition).ok()?)?;
        if p.leader < 0 {
            return None;
        }
        self.brokers.get(&p.leader).map(|b| b.value().clone())
    }

    /// All known brokers.
    pub fn brokers(&self) -> Vec<BrokerInfo> {
        self.brokers.iter().map(|b| b.value().clone()).collect()
    }
}

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
    /// Topic id (Metadata v10+, KIP-516), all zero when the broker did not say.
    pub topic_id: [u8; 16],
}

impl TopicInfo {
    /// Builds a topic from the partitions of a Metadata response, given as
    /// `(partition_index, leader_id, leader_epoch, error_code)`. The partition indexes must be
    /// exactly `0..n` for the `n` partitions listed (any order, each once): the table is sized
    /// from the response's real count, never from an index read off the wire, so a hostile
    /// `partition_index` (e.g. 2147483647) cannot make us allocate or index out of bounds.
    ///
    /// # Errors
    /// A description of the first index that is negative, too large or repeated.
    pub(crate) fn from_metadata(
        name: Arc<str>,
        partitions: impl ExactSizeIterator<Item = (i32, i32, i32, i16)>,
    ) -> Result<TopicInfo, String> {
        let n = partitions.len();
        let mut table: Vec<Option<PartitionInfo>> = vec![None; n];
        for (index, leader, leader_epoch, error_code) in partitions {
            let slot = usize::try_from(index)
                .ok()
                .and_then(|i| table.get_mut(i))
                .ok_or_else(|| {
                    format!("partition index {index} outside 0..{n} in metadata of `{name}`")
                })?;
            if slot.is_some() {
                return Err(format!(
                    "partition {index} listed twice in metadata of `{name}`"
                ));
            }
            *slot = Some(PartitionInfo {
                leader: if error_code == 0 || leader >= 0 {
                    leader
                } else {
                    -1
                },
                leader_epoch,
            });
        }
        // n slots, n distinct in-range indexes: every slot is filled.
        let partitions = table.into_iter().flatten().collect();
        Ok(TopicInfo {
            name,
            partitions,
            topic_id: [0; 16],
        })
    }

    /// This (newer) metadata merged with the cached `prev` by leader epoch (KIP-320): a
    /// partition whose leader epoch is older than the cached one comes from a broker with stale
    /// metadata, and the cached partition is kept (Java's `Metadata` does the same). A different
    /// topic id (the topic was deleted and re-created, epochs restart) takes the new metadata
    /// whole. Returns the merged topic and how many partitions were kept from `prev`.
    #[cfg(test)]
    pub(crate) fn merged_with(self, prev: &TopicInfo) -> (TopicInfo, usize) {
        self.merged_with_hints(prev, |_| false)
    }

    /// [`TopicInfo::merged_with`], where the cached entry of each partition `hinted` says
    /// came only from a Produce answer's hint (KIP-951), not from a Metadata answer: such an
    /// entry gives way to the Metadata answer whatever its epoch, so a hint with an absurd
    /// epoch (`i32::MAX` from a broken or hostile broker) cannot pin the partition's leader.
    pub(crate) fn merged_with_hints(
        mut self,
        prev: &TopicInfo,
        hinted: impl Fn(i32) -> bool,
    ) -> (TopicInfo, usize) {
        let unknown = [0u8; 16];
        if self.topic_id != prev.topic_id && self.topic_id != unknown && prev.topic_id != unknown {
            return (self, 0);
        }
        let mut kept = 0;
        for (i, (new, old)) in self
            .partitions
            .iter_mut()
            .zip(prev.partitions.iter())
            .enumerate()
        {
            if hinted(i as i32) {
                continue;
            }
            if new.leader_epoch >= 0 && old.leader_epoch > new.leader_epoch {
                *new = old.clone();
                kept += 1;
            }
        }
        (self, kept)
    }

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
    pub(crate) topics: crate::FastMap<Arc<str>, Arc<TopicInfo>>,
    pub(crate) brokers: DashMap<i32, BrokerInfo>,
    /// Each broker's `broker.rack` as metadata gives it (brokers without one are absent), for
    /// `partitioner.rack.aware` (KIP-1123).
    pub(crate) racks: DashMap<i32, Arc<str>>,
    /// When a batch of each topic last reached the sender (or a `send` waited for it):
    /// `metadata.max.idle.ms`.
    pub(crate) used: crate::FastMap<Arc<str>, std::time::Instant>,
}

impl Cluster {
    /// Records that `topic` is in use at `now`.
    pub(crate) fn touch(&self, topic: &str, now: std::time::Instant) {
        match self.used.get_mut(topic) {
            Some(mut at) => *at = (*at).max(now),
            None => {
                self.used.insert(topic.into(), now);
            }
        }
    }

    /// When `topic` was last in use.
    pub(crate) fn last_used(&self, topic: &str) -> Option<std::time::Instant> {
        self.used.get(topic).map(|at| *at)
    }

    /// Drops what is cached of `topic`.
    pub(crate) fn forget(&self, topic: &str) {
        self.topics.remove(topic);
        self.used.remove(topic);
    }

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

    /// Whether partition `partition` of `info` has its leader in rack `rack`.
    pub(crate) fn led_in_rack(&self, info: &TopicInfo, partition: i32, rack: &str) -> bool {
        usize::try_from(partition)
            .ok()
            .and_then(|p| info.partitions.get(p))
            .filter(|p| p.leader >= 0)
            .and_then(|p| self.racks.get(&p.leader))
            .is_some_and(|r| &**r == rack)
    }

    /// All known brokers.
    pub fn brokers(&self) -> Vec<BrokerInfo> {
        self.brokers.iter().map(|b| b.value().clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_leader_epochs_are_ignored_unless_the_topic_id_changed() {
        let t = |parts: &[(i32, i32)], id: u8| {
            let mut info = TopicInfo::from_metadata(
                "t".into(),
                parts
                    .iter()
                    .enumerate()
                    .map(|(i, (l, e))| (i as i32, *l, *e, 0))
                    .collect::<Vec<_>>()
                    .into_iter(),
            )
            .unwrap();
            info.topic_id = [id; 16];
            info
        };
        let cached = t(&[(1, 5), (2, 7)], 9);
        // Partition 0 from a lagging broker (epoch 4 < 5): kept; partition 1 newer: taken.
        let (merged, kept) = t(&[(3, 4), (1, 8)], 9).merged_with(&cached);
        assert_eq!(kept, 1);
        assert_eq!(merged.partitions[0], cached.partitions[0]);
        assert_eq!(merged.partitions[1].leader, 1);
        // Unknown epochs (-1) are taken as they are.
        let (merged, kept) = t(&[(3, -1), (1, 8)], 9).merged_with(&cached);
        assert_eq!((kept, merged.partitions[0].leader), (0, 3));
        // Re-created topic (another id): epochs restart, the new metadata wins.
        let (merged, kept) = t(&[(3, 0), (1, 0)], 10).merged_with(&cached);
        assert_eq!((kept, merged.partitions[0].leader), (0, 3));
        // More partitions than cached: the new ones are taken.
        let (merged, _) = t(&[(1, 5), (2, 7), (3, 0)], 9).merged_with(&cached);
        assert_eq!(merged.partition_count(), 3);
    }

    fn topic(parts: &[(i32, i32)]) -> Result<TopicInfo, String> {
        TopicInfo::from_metadata(
            "t".into(),
            parts
                .iter()
                .map(|&(i, leader)| (i, leader, 0, 0))
                .collect::<Vec<_>>()
                .into_iter(),
        )
    }

    #[test]
    fn partitions_in_any_order() {
        let t = topic(&[(2, 7), (0, 5), (1, 6)]).unwrap();
        let leaders: Vec<i32> = t.partitions.iter().map(|p| p.leader).collect();
        assert_eq!(leaders, vec![5, 6, 7]);
    }

    #[test]
    fn hostile_partition_indexes_are_errors_not_allocations() {
        assert!(topic(&[(i32::MAX, 1)])
            .unwrap_err()
            .contains("outside 0..1"));
        assert!(topic(&[(0, 1), (200_000_000, 1)]).is_err());
        assert!(topic(&[(-1, 1)]).is_err());
        assert!(topic(&[(0, 1), (0, 2)]).unwrap_err().contains("twice"));
        // A gap: indexes 0 and 2 of two partitions.
        assert!(topic(&[(0, 1), (2, 1)]).is_err());
    }

    #[test]
    fn leaderless_partition() {
        let t = TopicInfo::from_metadata("t".into(), vec![(0, -1, 3, 5)].into_iter()).unwrap();
        assert_eq!(t.partitions[0].leader, -1);
    }
}

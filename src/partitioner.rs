//! Choosing a partition for records sent without an explicit one.
//!
//! [`DefaultPartitioner`] reproduces the Java client's built-in partitioning (Kafka 3.3+,
//! KIP-794): keyed records go to `to_positive(murmur2(key)) % num_partitions`, so they land on
//! the same partition as with the Java producer; keyless records use the "uniform sticky"
//! strategy. [`RoundRobinPartitioner`] mirrors Java's `RoundRobinPartitioner`. Custom strategies
//! implement [`Partitioner`].

use dashmap::DashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Java's 32-bit murmur2 hash (`org.apache.kafka.common.utils.Utils.murmur2`), seed
/// `0x9747b28c`, bit-for-bit: the hash the Java producer uses to map keys to partitions.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;

    // Java: `int h = seed ^ length` with an int length.
    let mut h = SEED ^ (data.len() as u32);
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = chunks.remainder();
    if !tail.is_empty() {
        // Java's fall-through `switch (length % 4)`.
        if tail.len() == 3 {
            h ^= u32::from(tail[2]) << 16;
        }
        if tail.len() >= 2 {
            h ^= u32::from(tail[1]) << 8;
        }
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// Java's `Utils.toPositive`: `n & 0x7fffffff` (not `abs`, which overflows on `i32::MIN`).
pub fn to_positive(n: i32) -> i32 {
    n & 0x7fff_ffff
}

/// The partition of a keyed record under Java's default partitioning:
/// `to_positive(murmur2(key)) % num_partitions`; 0 when `num_partitions` is not positive
/// (never panics; the caller checks the answer against the partition count).
pub fn partition_for_key(key: &[u8], num_partitions: i32) -> i32 {
    if num_partitions <= 0 {
        return 0;
    }
    to_positive(murmur2(key)) % num_partitions
}

/// Chooses a partition for records without an explicit one.
///
/// Called once per record, possibly from many threads at once, before the record is appended
/// to a batch.
pub trait Partitioner: Send + Sync + 'static {
    /// The partition for a record of `topic`.
    ///
    /// * `key`: the serialized key, `None` for a null key.
    /// * `value_len`: serialized value size in bytes (0 when null).
    /// * `num_partitions`: the topic's partition count, > 0.
    ///
    /// Must return a partition in `0..num_partitions`.
    fn partition(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        value_len: usize,
        num_partitions: i32,
    ) -> i32;

    /// As [`Partitioner::partition`], given the topic's metadata (`info.partitions`, with
    /// each partition's leader, `-1` when it has none). The producer calls this one; by default
    /// it calls [`Partitioner::partition`] with the partition count. The default partitioner
    /// uses it to move keyless records only to partitions that have a leader (Java's
    /// `availablePartitionsForTopic`).
    fn partition_with_metadata(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        value_len: usize,
        info: &crate::cluster::TopicInfo,
    ) -> i32 {
        self.partition(topic, key, value_len, info.partition_count())
    }

    /// Nothing was sent to `topic` for `metadata.max.idle.ms` and its metadata left the
    /// producer's cache: drop any state kept for it (a sticky partition, a counter). By
    /// default nothing. A record of the topic sent later starts afresh.
    fn forget_topic(&self, topic: &str) {
        let _ = topic;
    }
}

/// Kafka's default partitioning (Java 3.3+ built-in partitioner, KIP-794).
///
/// * Keyed records (unless `ignore_keys`, config `partitioner.ignore.keys`):
///   `to_positive(murmur2(key)) % num_partitions`, identical to the Java producer.
/// * Keyless records, or all records when `ignore_keys`: uniform sticky. Each topic sticks to
///   one partition until about `batch_size` bytes were assigned to it (each record counts its
///   key + value bytes, at least 1), then moves to another partition chosen uniformly at random
///   (different from the current one when the topic has more than one partition). This fills
///   whole batches one partition at a time, which keeps batches large and latency low.
///
/// Unlike Java, partitions are not weighted by broker queue sizes
/// (`partitioner.adaptive.partitioning.enable`): the choice is uniform.
///
/// With `partitioner.rack.aware` (KIP-1123), which the producer applies to the partitioner it
/// builds itself, a new sticky partition is one whose leader is in `client.rack` when such a
/// partition has a leader, else any partition with a leader (Java 4.1+'s rule). Keyed records
/// are hashed over all partitions as before.
///
/// Thread-safe: the per-topic state is a single atomic word behind a sharded map, so the
/// common path is one shared shard read lock and one compare-and-swap.
#[derive(Debug)]
pub struct DefaultPartitioner {
    /// Bytes after which the sticky partition changes (≥ 1, ≤ `u32::MAX`).
    sticky_bytes: u32,
    ignore_keys: bool,
    /// Per topic: sticky partition (high 32 bits) and bytes assigned to it (low 32 bits).
    sticky: crate::FastMap<Box<str>, AtomicU64>,
    /// `partitioner.rack.aware`: the producer's `client.rack`, and the cluster view that says
    /// where each leader is.
    rack: Option<(Arc<str>, Arc<crate::cluster::Cluster>)>,
}

/// Initial per-topic state: partition -1 (invalid), so the first record picks one at random.
const UNSET: u64 = u64::MAX;

#[inline]
fn pack(partition: i32, bytes: u32) -> u64 {
    (u64::from(partition as u32) << 32) | u64::from(bytes)
}

#[inline]
fn unpack(state: u64) -> (i32, u32) {
    ((state >> 32) as u32 as i32, state as u32)
}

/// A random partition in `0..n`, different from `current` when possible.
fn random_partition(n: i32, current: i32) -> i32 {
    if n <= 1 {
        return 0;
    }
    if (0..n).contains(&current) {
        // Uniform over the n - 1 other partitions.
        let p = fastrand::i32(0..n - 1);
        if p >= current {
            p + 1
        } else {
            p
        }
    } else {
        fastrand::i32(0..n)
    }
}

impl DefaultPartitioner {
    /// A partitioner that changes the sticky partition after `batch_size` bytes (normally the
    /// producer's `batch.size`; 0 moves after every record) and hashes keys unless
    /// `ignore_keys` (`partitioner.ignore.keys`).
    pub fn new(batch_size: usize, ignore_keys: bool) -> Self {
        DefaultPartitioner {
            sticky_bytes: batch_size.clamp(1, u32::MAX as usize) as u32,
            ignore_keys,
            sticky: crate::FastMap::default(),
            rack: None,
        }
    }

    /// `partitioner.rack.aware` with `client.rack` = `rack`: new sticky partitions are chosen
    /// among those led in `rack` (racks read from `cluster`) while any is.
    pub(crate) fn rack_aware(
        mut self,
        rack: Arc<str>,
        cluster: Arc<crate::cluster::Cluster>,
    ) -> Self {
        self.rack = Some((rack, cluster));
        self
    }

    /// Keyed: murmur2 over all `n` partitions; keyless (or `ignore_keys`): uniform sticky.
    fn choose(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        value_len: usize,
        n: i32,
        info: Option<&crate::cluster::TopicInfo>,
    ) -> i32 {
        let n = n.max(1);
        match key {
            Some(k) if !self.ignore_keys => partition_for_key(k, n),
            _ => {
                let bytes = value_len.saturating_add(key.map_or(0, <[u8]>::len));
                self.sticky_partition(topic, bytes, n, info)
            }
        }
    }

    /// Uniform sticky choice for a record of `bytes` bytes; with `info`, a new sticky partition
    /// is one that has a leader (if any has).
    fn sticky_partition(
        &self,
        topic: &str,
        bytes: usize,
        n: i32,
        info: Option<&crate::cluster::TopicInfo>,
    ) -> i32 {
        let has_leader = |p: i32| {
            info.is_none_or(|i| {
                usize::try_from(p)
                    .ok()
                    .and_then(|p| i.partitions.get(p))
                    .is_some_and(|p| p.leader >= 0)
            })
        };
        let pick = |current: i32| -> i32 {
            if info.is_none() {
                return random_partition(n, current);
            }
            let mut available: Vec<i32> = (0..n).filter(|p| has_leader(*p)).collect();
            if let (Some((rack, cluster)), Some(info)) = (&self.rack, info) {
                let local: Vec<i32> = available
                    .iter()
                    .copied()
                    .filter(|p| cluster.led_in_rack(info, *p, rack))
                    .collect();
                if !local.is_empty() {
                    available = local;
                }
            }
            let others: Vec<i32> = available
                .iter()
                .copied()
                .filter(|p| *p != current)
                .collect();
            let from = if others.is_empty() {
                &available
            } else {
                &others
            };
            if from.is_empty() {
                return random_partition(n, current);
            }
            from.get(fastrand::usize(..from.len()))
                .copied()
                .unwrap_or(0)
        };
        let bytes = bytes.clamp(1, u32::MAX as usize) as u32;
        let state = match self.sticky.get(topic) {
            Some(state) => state,
            // First record of this topic: the unset state makes the loop pick a random start.
            None => self
                .sticky
                .entry(topic.into())
                .or_insert(AtomicU64::new(UNSET))
                .downgrade(),
        };
        let mut current = state.load(Ordering::Acquire);
        loop {
            let (mut p, mut used) = unpack(current);
            if !(0..n).contains(&p) {
                // Partition count shrank, or the state is not initialised yet: pick one.
                p = pick(p);
                used = 0;
            } else if !has_leader(p) {
                // The partition lost its leader: move, if some partition has one (else stay:
                // stickiness is kept while nothing is available).
                let q = pick(p);
                if has_leader(q) {
                    p = q;
                    used = 0;
                }
            }
            let used = used.saturating_add(bytes);
            let next = if used >= self.sticky_bytes {
                pack(pick(p), 0)
            } else {
                pack(p, used)
            };
            match state.compare_exchange_weak(current, next, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return p,
                Err(actual) => current = actual,
            }
        }
    }
}

impl Partitioner for DefaultPartitioner {
    fn partition(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        value_len: usize,
        num_partitions: i32,
    ) -> i32 {
        debug_assert!(num_partitions > 0, "num_partitions must be > 0");
        self.choose(topic, key, value_len, num_partitions, None)
    }

    fn partition_with_metadata(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        value_len: usize,
        info: &crate::cluster::TopicInfo,
    ) -> i32 {
        self.choose(topic, key, value_len, info.partition_count(), Some(info))
    }

    fn forget_topic(&self, topic: &str) {
        self.sticky.remove(topic);
    }
}

/// Round robin over all partitions of each topic, ignoring keys (Java's
/// `RoundRobinPartitioner`): the n-th record sent to a topic goes to partition
/// `n % num_partitions`, starting at 0. Thread-safe; one atomic increment per record.
#[derive(Debug, Default)]
pub struct RoundRobinPartitioner {
    counters: DashMap<Box<str>, AtomicU64>,
}

impl RoundRobinPartitioner {
    /// A round-robin partitioner with all topic counters at 0.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Partitioner for RoundRobinPartitioner {
    fn partition(
        &self,
        topic: &str,
        _key: Option<&[u8]>,
        _value_len: usize,
        num_partitions: i32,
    ) -> i32 {
        debug_assert!(num_partitions > 0, "num_partitions must be > 0");
        let n = num_partitions.max(1) as u64;
        let next = match self.counters.get(topic) {
            Some(c) => c.fetch_add(1, Ordering::Relaxed),
            None => self
                .counters
                .entry(topic.into())
                .or_insert(AtomicU64::new(0))
                .fetch_add(1, Ordering::Relaxed),
        };
        (next % n) as i32
    }

    fn forget_topic(&self, topic: &str) {
        self.counters.remove(topic);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::collections::HashMap;
    use std::sync::Arc;

    /// Topic `t` whose partition `i` is led by `leaders[i]` (-1: no leader).
    fn with_leaders(leaders: &[i32]) -> crate::cluster::TopicInfo {
        crate::cluster::TopicInfo {
            name: "t".into(),
            partitions: leaders
                .iter()
                .map(|l| crate::cluster::PartitionInfo {
                    leader: *l,
                    leader_epoch: 0,
                })
                .collect(),
            topic_id: [0; 16],
        }
    }

    #[test]
    fn murmur2_matches_java_vectors() {
        // From Kafka's UtilsTest.testMurmur2.
        let cases: &[(&[u8], i32)] = &[
            (b"21", -973_932_308),
            (b"foobar", -790_332_482),
            (b"a-little-bit-long-string", -985_981_536),
            (b"a-little-bit-longer-string", -1_486_304_829),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58_897_971,
            ),
            (b"abc", 479_470_107), // Java: new byte[] {'a', 'b', 'c'}
        ];
        for (data, want) in cases {
            assert_eq!(murmur2(data), *want, "{:?}", String::from_utf8_lossy(data));
        }
    }

    #[test]
    fn murmur2_all_tail_lengths_and_empty() {
        // Every tail length is exercised and results differ; empty input is defined.
        let data = b"0123456789abcdef";
        let hashes: Vec<i32> = (0..=data.len()).map(|n| murmur2(&data[..n])).collect();
        let mut dedup = hashes.clone();
        dedup.sort_unstable();
        dedup.dedup();
        assert_eq!(dedup.len(), hashes.len());
        assert_eq!(murmur2(b""), murmur2(&[]));
    }

    #[test]
    fn to_positive_masks_sign_bit() {
        assert_eq!(to_positive(5), 5);
        assert_eq!(to_positive(-1), i32::MAX);
        assert_eq!(to_positive(i32::MIN), 0);
        assert_eq!(to_positive(-973_932_308), -973_932_308 & 0x7fff_ffff);
    }

    #[test]
    fn keyed_partition_is_stable_and_java_compatible() {
        let p = DefaultPartitioner::new(16384, false);
        for n in [1, 3, 7, 100] {
            for key in [&b"21"[..], b"foobar", b"", b"user-42"] {
                let want = to_positive(murmur2(key)) % n;
                for _ in 0..5 {
                    assert_eq!(p.partition("t", Some(key), 100, n), want);
                    assert_eq!(p.partition("other", Some(key), 0, n), want);
                }
            }
        }
        // "foobar" -> murmur2 -790332482 -> toPositive 1357151166 -> % 10 = 6.
        assert_eq!(p.partition("t", Some(b"foobar"), 0, 10), 6);
    }

    #[test]
    fn sticky_stays_then_moves_after_batch_size() {
        let p = DefaultPartitioner::new(1000, false);
        let n = 8;
        let first = p.partition("t", None, 100, n);
        // 100 bytes per record: records 1..=9 stay (total 100..=900, then 1000 reaches the
        // threshold on the 10th record, which still goes to the sticky partition).
        for _ in 1..10 {
            assert_eq!(p.partition("t", None, 100, n), first);
        }
        let second = p.partition("t", None, 100, n);
        assert_ne!(second, first, "moves after batch_size bytes");
        for _ in 1..10 {
            assert_eq!(p.partition("t", None, 100, n), second);
        }
        assert_ne!(p.partition("t", None, 100, n), second);
    }

    #[test]
    fn sticky_is_per_topic_and_ignore_keys() {
        let p = DefaultPartitioner::new(1 << 20, true);
        let a = p.partition("a", Some(b"k1"), 10, 50);
        for i in 0..100 {
            let key = format!("key-{i}");
            assert_eq!(p.partition("a", Some(key.as_bytes()), 10, 50), a);
        }
        // Another topic has its own state (and still stays put).
        let b = p.partition("b", None, 10, 50);
        for _ in 0..100 {
            assert_eq!(p.partition("b", None, 10, 50), b);
        }
    }

    #[test]
    fn sticky_spreads_over_all_partitions() {
        let p = DefaultPartitioner::new(100, false);
        let n = 6;
        let mut seen = HashMap::new();
        for _ in 0..6000 {
            *seen.entry(p.partition("t", None, 100, n)).or_insert(0) += 1;
        }
        assert_eq!(seen.len(), n as usize);
        for (&part, &count) in &seen {
            assert!((0..n).contains(&part));
            assert!(count > 600, "partition {part} got only {count} of 6000");
        }
    }

    #[test]
    fn sticky_null_values_still_move_and_single_partition() {
        let p = DefaultPartitioner::new(3, false);
        let mut changes = 0;
        let mut last = p.partition("t", None, 0, 4);
        for _ in 0..30 {
            let now = p.partition("t", None, 0, 4);
            if now != last {
                changes += 1;
            }
            last = now;
        }
        assert!(
            changes >= 9,
            "tombstones count at least one byte: {changes}"
        );
        let one = DefaultPartitioner::new(0, false);
        for _ in 0..10 {
            assert_eq!(one.partition("t", None, 10, 1), 0);
        }
    }

    /// `partitioner.rack.aware` (KIP-1123): keyless records go only to partitions led in
    /// `client.rack` while one is; none there (or its leaders gone): every partition with a
    /// leader. Keyed records are hashed over all partitions as before.
    #[test]
    fn rack_aware_prefers_partitions_led_in_the_client_rack() {
        use crate::cluster::{Cluster, TopicInfo};
        let cluster = Arc::new(Cluster::default());
        for (id, rack) in [(0, "a"), (1, "b"), (2, "c")] {
            cluster.racks.insert(id, rack.into());
        }
        let topic = with_leaders;
        let info = topic(&[0, 1, 2, 0, 1, 2]);
        let spread = |p: &DefaultPartitioner, info: &TopicInfo| {
            let mut seen = std::collections::BTreeSet::new();
            for _ in 0..2000 {
                seen.insert(p.partition_with_metadata("t", None, 10, info));
            }
            seen
        };
        let in_b = DefaultPartitioner::new(10, false).rack_aware("b".into(), cluster.clone());
        assert_eq!(spread(&in_b, &info), [1, 4].into());
        // Keys are hashed over all six partitions, whatever the rack.
        for k in 0..100u32 {
            let key = k.to_be_bytes();
            assert_eq!(
                in_b.partition_with_metadata("t", Some(&key), 10, &info),
                partition_for_key(&key, 6)
            );
        }
        // No partition led in the rack: all partitions with a leader.
        let in_z = DefaultPartitioner::new(10, false).rack_aware("z".into(), cluster.clone());
        assert_eq!(spread(&in_z, &info), (0..6).collect());
        // The rack's leaders gone: the others.
        let without_b = topic(&[0, -1, 2, 0, -1, 2]);
        let p = DefaultPartitioner::new(10, false).rack_aware("b".into(), cluster.clone());
        assert_eq!(spread(&p, &without_b), [0, 2, 3, 5].into());
        // Not rack-aware: all partitions.
        assert_eq!(
            spread(&DefaultPartitioner::new(10, false), &info),
            (0..6).collect()
        );
    }

    #[test]
    fn sticky_handles_partition_count_changes() {
        let p = DefaultPartitioner::new(1 << 30, false);
        for _ in 0..50 {
            assert!((0..100).contains(&p.partition("t", None, 1, 100)));
            let shrunk = p.partition("t", None, 1, 2);
            assert!((0..2).contains(&shrunk));
            assert_eq!(p.partition("t", None, 1, 2), shrunk);
        }
    }

    #[test]
    fn keyless_records_move_only_to_partitions_with_a_leader() {
        let leaders = [1, -1, 2, -1, -1, 3];
        let info = with_leaders(&leaders);
        let p = DefaultPartitioner::new(100, false);
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..2000 {
            seen.insert(p.partition_with_metadata("t", None, 60, &info));
        }
        assert_eq!(seen, [0, 2, 5].into_iter().collect());
        // Keyed records still hash over all partitions (Java: the key decides).
        let keyed = p.partition_with_metadata("t", Some(b"k"), 1, &info);
        assert_eq!(keyed, partition_for_key(b"k", 6));
        // No partition with a leader: any partition.
        let none = with_leaders(&[-1, -1, -1]);
        let q = p.partition_with_metadata("u", None, 60, &none);
        assert!((0..3).contains(&q));
    }

    #[test]
    fn round_robin_cycles_per_topic() {
        let p = RoundRobinPartitioner::new();
        let got: Vec<i32> = (0..7).map(|_| p.partition("t", Some(b"k"), 1, 3)).collect();
        assert_eq!(got, [0, 1, 2, 0, 1, 2, 0]);
        assert_eq!(p.partition("u", None, 1, 3), 0);
        assert_eq!(p.partition("t", None, 1, 3), 1);
        let d = RoundRobinPartitioner::default();
        assert_eq!(d.partition("t", None, 0, 5), 0);
    }

    #[test]
    fn always_in_range_under_concurrency() {
        let parts: Vec<Arc<dyn Partitioner>> = vec![
            Arc::new(DefaultPartitioner::new(500, false)),
            Arc::new(DefaultPartitioner::new(0, true)),
            Arc::new(RoundRobinPartitioner::new()),
        ];
        for p in parts {
            let threads: Vec<_> = (0..4)
                .map(|t| {
                    let p = Arc::clone(&p);
                    std::thread::spawn(move || {
                        for i in 0..5000usize {
                            let n = 1 + ((i + t) % 13) as i32;
                            let key = i.to_le_bytes();
                            let key = (i % 2 == 0).then_some(&key[..]);
                            let topic = ["a", "b", "c"][i % 3];
                            let part = p.partition(topic, key, i % 700, n);
                            assert!((0..n).contains(&part), "{part} not in 0..{n}");
                        }
                    })
                })
                .collect();
            for t in threads {
                t.join().unwrap();
            }
        }
    }

    #[test]
    fn round_robin_concurrent_is_balanced() {
        let p = Arc::new(RoundRobinPartitioner::new());
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let p = Arc::clone(&p);
                std::thread::spawn(move || {
                    let mut counts = [0u32; 4];
                    for _ in 0..1000 {
                        counts[p.partition("t", None, 0, 4) as usize] += 1;
                    }
                    counts
                })
            })
            .collect();
        let mut total = [0u32; 4];
        for t in threads {
            for (a, b) in total.iter_mut().zip(t.join().unwrap()) {
                *a += b;
            }
        }
        assert_eq!(total, [1000; 4]);
    }
}

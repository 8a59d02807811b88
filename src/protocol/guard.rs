//! A non-allocating walk over a response frame before `kafka-protocol` decodes it.
//!
//! `kafka-protocol` sizes a `Vec` from the element count read off the wire
//! (`Vec::with_capacity(n)`), so a few hostile bytes claiming 2^31 elements would ask for
//! hundreds of GB and abort the process. This walker follows the schemas of the four responses
//! this producer decodes (protocol guide, `ProduceResponse` v3-11, `MetadataResponse` v1-13,
//! `ApiVersionsResponse` v0-4, `InitProducerIdResponse` v0-5, `SaslHandshakeResponse` v0-1,
//! `SaslAuthenticateResponse` v0-2, `FindCoordinatorResponse` v1-6, `AddPartitionsToTxnResponse`
//! v0-3, `AddOffsetsToTxnResponse`, `TxnOffsetCommitResponse` and `EndTxnResponse` v0-4) and
//! checks that every array element and every string actually fits in the bytes that are left,
//! including inside the tagged fields kafka-protocol decodes itself (Produce's `CurrentLeader`
//! and `NodeEndpoints`, ApiVersions' features), which must fill their declared size exactly. A
//! frame that passes can only make the decoder allocate in proportion to its own size.

use kafka_protocol::messages::ApiKey;

struct Walk<'a> {
    buf: &'a [u8],
    pos: usize,
    flexible: bool,
}

type R = Result<(), String>;

impl<'a> Walk<'a> {
    fn left(&self) -> usize {
        self.buf.len() - self.pos
    }
    fn skip(&mut self, n: usize, what: &str) -> R {
        if n > self.left() {
            return Err(format!("{what}: {n} bytes needed, {} left", self.left()));
        }
        self.pos += n;
        Ok(())
    }
    fn uvarint(&mut self) -> Result<u64, String> {
        let mut v = 0u64;
        for shift in (0..35).step_by(7) {
            let b = *self.buf.get(self.pos).ok_or("truncated varint")?;
            self.pos += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                // kafka-protocol reads varints into 32 bits: a larger value would mean
                // something else to it than to this walk.
                if v > u64::from(u32::MAX) {
                    return Err(format!("varint {v} above 32 bits"));
                }
                return Ok(v);
            }
        }
        Err("varint too long".into())
    }
    fn i16(&mut self) -> Result<i16, String> {
        let b = self
            .buf
            .get(self.pos..self.pos + 2)
            .ok_or("truncated int16")?;
        self.pos += 2;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }
    fn i32(&mut self) -> Result<i32, String> {
        let b = self
            .buf
            .get(self.pos..self.pos + 4)
            .ok_or("truncated int32")?;
        self.pos += 4;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    /// A string (nullable or not): length prefix, then bytes that must be there.
    fn string(&mut self) -> R {
        let len: i64 = if self.flexible {
            self.uvarint()? as i64 - 1
        } else {
            i64::from(self.i16()?)
        };
        if len < -1 {
            return Err(format!("negative string length {len}"));
        }
        self.skip(len.max(0) as usize, "string")
    }
    /// An array: count prefix, then `elem` per element; each element must use at least
    /// `min_elem` bytes, so the count is checked against what is left before walking.
    fn array(&mut self, min_elem: usize, mut elem: impl FnMut(&mut Self) -> R) -> R {
        let n: i64 = if self.flexible {
            self.uvarint()? as i64 - 1
        } else {
            i64::from(self.i32()?)
        };
        if n < -1 {
            return Err(format!("negative array length {n}"));
        }
        let n = n.max(0) as usize;
        if n.saturating_mul(min_elem.max(1)) > self.left() {
            return Err(format!(
                "array of {n} elements cannot fit in {} bytes",
                self.left()
            ));
        }
        for _ in 0..n {
            elem(self)?;
        }
        Ok(())
    }
    /// BYTES / COMPACT_BYTES (nullable or not): length prefix, then bytes that must be there.
    fn bytes(&mut self) -> R {
        let len: i64 = if self.flexible {
            self.uvarint()? as i64 - 1
        } else {
            i64::from(self.i32()?)
        };
        if len < -1 {
            return Err(format!("negative bytes length {len}"));
        }
        self.skip(len.max(0) as usize, "bytes")
    }
    /// A tagged-field section whose fields are all skipped as opaque bytes.
    fn tagged(&mut self) -> R {
        self.tagged_with(|_, _| None)
    }
    /// A tagged-field section. `known(walk, tag)` walks the fields kafka-protocol decodes
    /// itself (it ignores their declared size and sizes `Vec`s from counts inside them), inside
    /// the field's declared size, which they must fill exactly; `None` skips a field.
    fn tagged_with(&mut self, mut known: impl FnMut(&mut Self, u64) -> Option<R>) -> R {
        if !self.flexible {
            return Ok(());
        }
        let n = self.uvarint()?;
        if n as usize > self.left() {
            return Err(format!("{n} tagged fields cannot fit"));
        }
        for _ in 0..n {
            let tag = self.uvarint()?;
            let size = self.uvarint()? as usize;
            if size > self.left() {
                return Err(format!(
                    "tagged field {tag}: {size} bytes needed, {} left",
                    self.left()
                ));
            }
            let end = self.pos + size;
            let full = self.buf;
            self.buf = full.get(..end).ok_or("tagged field out of bounds")?;
            let walked = known(self, tag);
            self.buf = full;
            match walked {
                None => self.pos = end,
                Some(r) => {
                    r.map_err(|e| format!("tagged field {tag}: {e}"))?;
                    if self.pos != end {
                        return Err(format!(
                            "tagged field {tag}: {} bytes left over",
                            end - self.pos
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}

fn flexible(key: ApiKey, v: i16) -> bool {
    match key {
        ApiKey::Produce => v >= 9,
        ApiKey::Metadata => v >= 9,
        ApiKey::ApiVersions => v >= 3,
        ApiKey::InitProducerId => v >= 2,
        ApiKey::SaslAuthenticate => v >= 2,
        ApiKey::FindCoordinator
        | ApiKey::AddPartitionsToTxn
        | ApiKey::AddOffsetsToTxn
        | ApiKey::TxnOffsetCommit
        | ApiKey::EndTxn => v >= 3,
        _ => false,
    }
}

/// Checks a response body (after the response header) of API `key` at `version`.
///
/// # Errors
/// What does not fit, for [`crate::error::ConnectionError::Malformed`]. Unknown APIs pass.
pub fn check_body(key: i16, version: i16, body: &[u8]) -> R {
    let Ok(key) = ApiKey::try_from(key) else {
        return Ok(());
    };
    let flex = flexible(key, version);
    let mut w = Walk {
        buf: body,
        pos: 0,
        flexible: flex,
    };
    let v = version;
    let min_str = if flex { 1 } else { 2 };
    let min_arr = if flex { 1 } else { 4 };
    match key {
        ApiKey::Produce => {
            w.array(min_str + min_arr, |w| {
                w.string()?;
                w.array(14, |w| {
                    w.skip(4 + 2 + 8, "partition")?;
                    if v >= 2 {
                        w.skip(8, "log_append_time")?;
                    }
                    if v >= 5 {
                        w.skip(8, "log_start_offset")?;
                    }
                    if v >= 8 {
                        w.array(4 + min_str, |w| {
                            w.skip(4, "batch_index")?;
                            w.string()?;
                            w.tagged()
                        })?;
                        w.string()?;
                    }
                    // Tag 0 (v10+): CurrentLeader {leader_id, leader_epoch} (KIP-951).
                    w.tagged_with(|w, tag| {
                        (tag == 0 && v >= 10).then(|| {
                            w.skip(4 + 4, "current_leader")?;
                            w.tagged()
                        })
                    })
                })?;
                w.tagged()
            })?;
            if v >= 1 {
                w.skip(4, "throttle_time")?;
            }
            // Tag 0 (v10+): NodeEndpoints [{node_id, host, port, rack}] (KIP-951).
            w.tagged_with(|w, tag| {
                (tag == 0 && v >= 10).then(|| {
                    w.array(4 + 1 + 4 + 1, |w| {
                        w.skip(4, "node_id")?;
                        w.string()?;
                        w.skip(4, "port")?;
                        w.string()?;
                        w.tagged()
                    })
                })
            })
        }
        ApiKey::Metadata => {
            if v >= 3 {
                w.skip(4, "throttle_time")?;
            }
            w.array(4 + min_str + 4, |w| {
                w.skip(4, "node_id")?;
                w.string()?;
                w.skip(4, "port")?;
                if v >= 1 {
                    w.string()?;
                }
                w.tagged()
            })?;
            if v >= 2 {
                w.string()?;
            }
            if v >= 1 {
                w.skip(4, "controller_id")?;
            }
            w.array(2 + min_str + min_arr, |w| {
                w.skip(2, "error_code")?;
                w.string()?;
                if v >= 10 {
                    w.skip(16, "topic_id")?;
                }
                if v >= 1 {
                    w.skip(1, "is_internal")?;
                }
                w.array(10 + 2 * min_arr, |w| {
                    w.skip(2 + 4 + 4, "partition")?;
                    if v >= 7 {
                        w.skip(4, "leader_epoch")?;
                    }
                    w.array(4, |w| w.skip(4, "replica"))?;
                    w.array(4, |w| w.skip(4, "isr"))?;
                    if v >= 5 {
                        w.array(4, |w| w.skip(4, "offline"))?;
                    }
                    w.tagged()
                })?;
                if v >= 8 {
                    w.skip(4, "topic_authorized_operations")?;
                }
                w.tagged()
            })?;
            if (8..=10).contains(&v) {
                w.skip(4, "cluster_authorized_operations")?;
            }
            if v >= 13 {
                w.skip(2, "error_code")?;
            }
            w.tagged()
        }
        ApiKey::ApiVersions => {
            w.skip(2, "error_code")?;
            w.array(6, |w| {
                w.skip(6, "api_version")?;
                w.tagged()
            })?;
            if v >= 1 {
                w.skip(4, "throttle_time")?;
            }
            // v3 tags: 0 SupportedFeatures and 2 FinalizedFeatures [{name, min, max}],
            // 1 FinalizedFeaturesEpoch (int64), 3 ZkMigrationReady (bool).
            w.tagged_with(|w, tag| match tag {
                0 | 2 => Some(w.array(min_str + 4, |w| {
                    w.string()?;
                    w.skip(4, "feature versions")?;
                    w.tagged()
                })),
                1 => Some(w.skip(8, "finalized_features_epoch")),
                3 => Some(w.skip(1, "zk_migration_ready")),
                _ => None,
            })
        }
        ApiKey::InitProducerId => {
            w.skip(4 + 2 + 8 + 2, "init_producer_id")?;
            w.tagged()
        }
        ApiKey::SaslHandshake => {
            w.skip(2, "error_code")?;
            w.array(min_str, |w| w.string())
        }
        ApiKey::SaslAuthenticate => {
            w.skip(2, "error_code")?;
            w.string()?;
            w.bytes()?;
            if v >= 1 {
                w.skip(8, "session_lifetime_ms")?;
            }
            w.tagged()
        }
        ApiKey::FindCoordinator => {
            if v >= 1 {
                w.skip(4, "throttle_time")?;
            }
            if v >= 4 {
                w.array(4 + 4 + 2 + 3 * min_str, |w| {
                    w.string()?;
                    w.skip(4, "node_id")?;
                    w.string()?;
                    w.skip(4 + 2, "port, error_code")?;
                    w.string()?;
                    w.tagged()
                })?;
            } else {
                w.skip(2, "error_code")?;
                if v >= 1 {
                    w.string()?;
                }
                w.skip(4, "node_id")?;
                w.string()?;
                w.skip(4, "port")?;
            }
            w.tagged()
        }
        ApiKey::AddPartitionsToTxn | ApiKey::TxnOffsetCommit => {
            w.skip(4, "throttle_time")?;
            w.array(min_str + min_arr, |w| {
                w.string()?;
                w.array(6, |w| {
                    w.skip(6, "partition result")?;
                    w.tagged()
                })?;
                w.tagged()
            })?;
            w.tagged()
        }
        ApiKey::AddOffsetsToTxn | ApiKey::EndTxn => {
            w.skip(4 + 2, "throttle_time, error_code")?;
            if key == ApiKey::EndTxn && v >= 5 {
                w.skip(8 + 2, "producer id, epoch")?;
            }
            w.tagged()
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::produce_response::{
        PartitionProduceResponse, TopicProduceResponse,
    };
    use kafka_protocol::messages::{MetadataResponse, ProduceResponse, TopicName};
    use kafka_protocol::protocol::{Encodable, StrBytes};

    /// A Produce answer with every field set that `v` has: record errors with messages
    /// (v8+), a current leader and node endpoints (tagged, v10+).
    fn produce_response(v: i16) -> Vec<u8> {
        use kafka_protocol::messages::produce_response::{
            BatchIndexAndErrorMessage, LeaderIdAndEpoch, NodeEndpoint,
        };
        let r = ProduceResponse::default()
            .with_responses(vec![TopicProduceResponse::default()
                .with_name(TopicName(StrBytes::from_static_str("t")))
                .with_partition_responses(vec![
                    PartitionProduceResponse::default()
                        .with_index(0)
                        .with_error_code(87)
                        .with_base_offset(42)
                        .with_record_errors(if v >= 8 {
                            vec![
                                BatchIndexAndErrorMessage::default()
                                    .with_batch_index(3)
                                    .with_batch_index_error_message(Some(
                                        StrBytes::from_static_str("no key"),
                                    )),
                                BatchIndexAndErrorMessage::default().with_batch_index(8),
                            ]
                        } else {
                            Vec::new()
                        })
                        .with_error_message(
                            (v >= 8).then(|| StrBytes::from_static_str("invalid record")),
                        )
                        .with_current_leader(if v >= 10 {
                            LeaderIdAndEpoch::default()
                                .with_leader_id(2.into())
                                .with_leader_epoch(7)
                        } else {
                            LeaderIdAndEpoch::default()
                        }),
                    PartitionProduceResponse::default().with_index(1),
                ])])
            .with_node_endpoints(if v >= 10 {
                vec![NodeEndpoint::default()
                    .with_node_id(2.into())
                    .with_host(StrBytes::from_static_str("h2"))
                    .with_port(9092)
                    .with_rack(Some(StrBytes::from_static_str("r1")))]
            } else {
                Vec::new()
            });
        let mut buf = bytes::BytesMut::new();
        r.encode(&mut buf, v).unwrap();
        buf.to_vec()
    }

    #[test]
    fn valid_responses_pass_every_version() {
        for v in 3..=11 {
            let body = produce_response(v);
            assert_eq!(check_body(0, v, &body), Ok(()), "produce v{v}");
        }
        for v in 1..=13 {
            let mut buf = bytes::BytesMut::new();
            MetadataResponse::default().encode(&mut buf, v).unwrap();
            assert_eq!(check_body(3, v, &buf), Ok(()), "metadata v{v}");
        }
    }

    /// The versions added for Kafka 4 (issue 22 item 5): Metadata v13's top-level error code
    /// after the topics, walked and required; ApiVersions v4 and InitProducerId v5 as v3/v4.
    #[test]
    fn the_kafka_4_versions_are_walked() {
        use kafka_protocol::messages::metadata_response::{
            MetadataResponsePartition, MetadataResponseTopic,
        };
        use kafka_protocol::messages::{ApiVersionsResponse, InitProducerIdResponse};
        let md = MetadataResponse::default()
            .with_error_code(129)
            .with_topics(vec![MetadataResponseTopic::default()
                .with_name(Some(TopicName(StrBytes::from_static_str("t"))))
                .with_partitions(vec![MetadataResponsePartition::default()])]);
        let mut buf = bytes::BytesMut::new();
        md.encode(&mut buf, 13).unwrap();
        assert_eq!(check_body(3, 13, &buf), Ok(()));
        // The error code is the last field before the tags: cut it, and the walk refuses.
        let mut cut = buf.to_vec();
        cut.truncate(cut.len() - 3);
        cut.push(0);
        assert!(
            check_body(3, 13, &cut).is_err(),
            "a v13 answer without its error code"
        );
        let mut buf = bytes::BytesMut::new();
        ApiVersionsResponse::default().encode(&mut buf, 4).unwrap();
        assert_eq!(check_body(18, 4, &buf), Ok(()));
        let mut buf = bytes::BytesMut::new();
        InitProducerIdResponse::default()
            .encode(&mut buf, 5)
            .unwrap();
        assert_eq!(check_body(22, 5, &buf), Ok(()));
    }

    #[test]
    fn tagged_fields_kafka_protocol_decodes_are_walked() {
        use kafka_protocol::messages::api_versions_response::{
            FinalizedFeatureKey, SupportedFeatureKey,
        };
        use kafka_protocol::messages::metadata_response::{
            MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
        };
        use kafka_protocol::messages::ApiVersionsResponse;
        // ApiVersions v3 with every tagged field set passes.
        let r = ApiVersionsResponse::default()
            .with_supported_features(vec![SupportedFeatureKey::default()
                .with_name(StrBytes::from_static_str("metadata.version"))
                .with_min_version(1)
                .with_max_version(20)])
            .with_finalized_features_epoch(7)
            .with_finalized_features(vec![FinalizedFeatureKey::default()
                .with_name(StrBytes::from_static_str("metadata.version"))
                .with_max_version_level(20)
                .with_min_version_level(1)])
            .with_zk_migration_ready(true);
        let mut buf = bytes::BytesMut::new();
        r.encode(&mut buf, 3).unwrap();
        assert_eq!(check_body(18, 3, &buf), Ok(()));
        // A populated Metadata answer passes every version.
        for v in 1..=12 {
            let r = MetadataResponse::default()
                .with_brokers(vec![MetadataResponseBroker::default()
                    .with_node_id(1.into())
                    .with_host(StrBytes::from_static_str("h"))
                    .with_port(9092)
                    .with_rack(Some(StrBytes::from_static_str("r")))])
                .with_cluster_id(Some(StrBytes::from_static_str("c")))
                .with_topics(vec![MetadataResponseTopic::default()
                    .with_name(Some(TopicName(StrBytes::from_static_str("t"))))
                    .with_partitions(vec![MetadataResponsePartition::default()
                        .with_partition_index(0)
                        .with_leader_id(1.into())
                        .with_replica_nodes(vec![1.into(), 2.into()])
                        .with_isr_nodes(vec![1.into()])
                        .with_offline_replicas(vec![2.into()])])]);
            let mut buf = bytes::BytesMut::new();
            r.encode(&mut buf, v).unwrap();
            assert_eq!(check_body(3, v, &buf), Ok(()), "metadata v{v}");
        }
        // Produce v10, no topics, throttle 0, then tag 0 (NodeEndpoints) claiming 2^31
        // endpoints in 5 bytes: refused (the decoder would size a Vec from it).
        let hostile = [
            0x01, 0, 0, 0, 0, 0x01, 0x00, 0x05, 0xff, 0xff, 0xff, 0xff, 0x07,
        ];
        let err = check_body(0, 10, &hostile).unwrap_err();
        assert!(err.contains("cannot fit"), "{err}");
        // A known tag whose declared size is not what it holds: refused (the decoder would
        // read on from another place than the walk).
        let mut body = Vec::new();
        body.extend([0x01, 0, 0, 0, 0]);
        body.extend([0x01, 0x00, 0x03, 0x01, 0x00, 0x00]); // 0 endpoints + 2 stray bytes
        let err = check_body(0, 10, &body).unwrap_err();
        assert!(err.contains("left over"), "{err}");
        // Unknown tags are skipped.
        let body = [0x01, 0, 0, 0, 0, 0x01, 0x09, 0x02, 0xaa, 0xbb];
        assert_eq!(check_body(0, 10, &body), Ok(()));
    }

    #[test]
    fn huge_counts_and_truncation_are_refused() {
        // Produce v8 (classic): topic array count 0x7fffffff in 8 bytes.
        let hostile = [0x7f, 0xff, 0xff, 0xff, 0, 0, 0, 0];
        assert!(check_body(0, 8, &hostile)
            .unwrap_err()
            .contains("cannot fit"));
        // Flexible v9: compact array count 2^28.
        let hostile = [0x80, 0x80, 0x80, 0x80, 0x01, 0, 0, 0];
        assert!(check_body(0, 9, &hostile).is_err());
        let mut body = produce_response(9);
        body.truncate(body.len() - 3);
        assert!(check_body(0, 9, &body).is_err());
        assert!(check_body(3, 12, &[0xff; 3]).is_err());
        assert!(check_body(18, 0, &[0, 0, 0x7f, 0xff, 0xff, 0xff]).is_err());
        // SaslHandshake: 2^31-1 mechanisms; SaslAuthenticate: auth_bytes of 2^31-1.
        assert!(check_body(17, 1, &[0, 0, 0x7f, 0xff, 0xff, 0xff]).is_err());
        assert!(check_body(36, 1, &[0, 0, 0xff, 0xff, 0x7f, 0xff, 0xff, 0xff]).is_err());
        assert!(check_body(36, 2, &[0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x07]).is_err());
        // AddPartitionsToTxn v1: 2^31-1 topics; TxnOffsetCommit v3: a topic claiming 2^27
        // partitions; FindCoordinator v1: a host of 32767 bytes.
        assert!(check_body(24, 1, &[0, 0, 0, 0, 0x7f, 0xff, 0xff, 0xff]).is_err());
        assert!(check_body(28, 3, &[0, 0, 0, 0, 2, 2, b't', 0x80, 0x80, 0x80, 0x40]).is_err());
        assert!(check_body(
            10,
            1,
            &[0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 0, 1, 0x7f, 0xff]
        )
        .is_err());
    }

    #[test]
    fn transactional_responses_pass() {
        use kafka_protocol::messages::add_partitions_to_txn_response::{
            AddPartitionsToTxnPartitionResult, AddPartitionsToTxnTopicResult,
        };
        use kafka_protocol::messages::txn_offset_commit_response::{
            TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
        };
        use kafka_protocol::messages::{
            AddOffsetsToTxnResponse, AddPartitionsToTxnResponse, EndTxnResponse,
            FindCoordinatorResponse, TxnOffsetCommitResponse,
        };
        fn enc<T: Encodable>(m: &T, v: i16) -> Vec<u8> {
            let mut buf = bytes::BytesMut::new();
            m.encode(&mut buf, v).unwrap();
            buf.to_vec()
        }
        for v in 1..=3 {
            let r = FindCoordinatorResponse::default()
                .with_host(StrBytes::from_static_str("broker-1"))
                .with_port(9092);
            assert_eq!(
                check_body(10, v, &enc(&r, v)),
                Ok(()),
                "find coordinator v{v}"
            );
        }
        for v in 0..=3 {
            let r = AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(vec![
                AddPartitionsToTxnTopicResult::default()
                    .with_name(TopicName(StrBytes::from_static_str("t")))
                    .with_results_by_partition(vec![
                        AddPartitionsToTxnPartitionResult::default().with_partition_index(3)
                    ]),
            ]);
            assert_eq!(
                check_body(24, v, &enc(&r, v)),
                Ok(()),
                "add partitions v{v}"
            );
        }
        for v in 0..=4 {
            let r = TxnOffsetCommitResponse::default().with_topics(vec![
                TxnOffsetCommitResponseTopic::default()
                    .with_name(TopicName(StrBytes::from_static_str("t")))
                    .with_partitions(vec![TxnOffsetCommitResponsePartition::default()]),
            ]);
            assert_eq!(
                check_body(28, v, &enc(&r, v)),
                Ok(()),
                "txn offset commit v{v}"
            );
            let r = AddOffsetsToTxnResponse::default();
            assert_eq!(check_body(25, v, &enc(&r, v)), Ok(()), "add offsets v{v}");
            let r = EndTxnResponse::default();
            assert_eq!(check_body(26, v, &enc(&r, v)), Ok(()), "end txn v{v}");
        }
    }
}

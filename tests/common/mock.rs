//! librdkafka's in-process mock cluster for fault injection (leader moves, brokers going down,
//! request errors, request tracking).

use super::*;

/// librdkafka's in-process mock cluster with `brokers` brokers (ids `1..=brokers`), through the
/// rdkafka crate's safe API. It lives until dropped; it is `!Send` (keep it on the test's thread,
/// which is fine with `#[tokio::test]` / `#[actix_rt::test]`). See [`MockKafka`] for a `Send`
/// wrapper with per-broker errors and request tracking.
///
/// ```ignore
/// let mc = mock_cluster(3);
/// let bootstrap = mc.bootstrap_servers();               // "127.0.0.1:p1,127.0.0.1:p2,..."
/// mc.create_topic("t", 4, 1).unwrap();                  // no CreateTopics API: create here
/// mc.partition_leader("t", 0, Some(2)).unwrap();        // move a leader (None = leaderless)
/// mc.broker_down(1).unwrap();                           // drop connections + refuse new ones
/// mc.broker_up(1).unwrap();                             // (-1 = all brokers; no leader change)
/// mc.broker_round_trip_time(2, Duration::from_millis(500)).unwrap();
/// // The next 2 Produce requests (to any broker) fail with NOT_LEADER_OR_FOLLOWER:
/// mc.request_errors(RDKafkaApiKey::Produce,
///     &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION; 2]);
/// // RD_KAFKA_RESP_ERR__TRANSPORT as an injected error makes the broker drop the connection.
/// mc.clear_request_errors(RDKafkaApiKey::Produce);
/// mc.topic_error("t", RDKafkaRespErr::RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE).unwrap(); // Metadata
/// ```
///
/// Supported API versions of the mock (librdkafka 2.12): ApiVersions 0-2 (v3 requests get
/// UNSUPPORTED_VERSION), Metadata 0-12, Produce 0-10, InitProducerId 0-4, Fetch 0-16,
/// ListOffsets 0-7. No CreateTopics; unknown topics are auto-created on Metadata/Produce.
pub fn mock_cluster(brokers: i32) -> MockCluster<'static, DefaultProducerContext> {
    MockCluster::new(brokers).expect("create librdkafka mock cluster")
}

/// One request received by a [`MockKafka`] broker while request tracking was on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MockRequest {
    pub broker_id: i32,
    /// Kafka API key (0 = Produce, 3 = Metadata, 18 = ApiVersions, 22 = InitProducerId, ...).
    pub api_key: i16,
    /// librdkafka's monotonic clock, microseconds.
    pub timestamp_us: i64,
}

/// librdkafka mock cluster owned directly through the C API: everything [`mock_cluster`] offers
/// plus per-broker error injection with delays and request tracking. `Send + Sync` (the mock API
/// is thread-safe). Broker ids are `1..=brokers`.
pub struct MockKafka {
    raw: *mut rdsys::rd_kafka_mock_cluster_t,
    /// The (never connecting) librdkafka handle the mock cluster runs on; must outlive `raw`.
    _handle: BaseProducer,
    pub brokers: i32,
}

unsafe impl Send for MockKafka {}
unsafe impl Sync for MockKafka {}

pub(super) fn mock_result(op: &str, err: rdsys::rd_kafka_resp_err_t) -> Result<(), String> {
    if err == RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR {
        Ok(())
    } else {
        Err(format!("mock {op}: {:?}", RDKafkaErrorCode::from(err)))
    }
}

impl MockKafka {
    /// A mock cluster with `brokers` brokers.
    pub fn new(brokers: i32) -> MockKafka {
        assert!(brokers > 0);
        // No bootstrap.servers: this handle never connects anywhere, it only hosts the cluster.
        let handle: BaseProducer = ClientConfig::new()
            .set("log_level", "0")
            .create()
            .expect("create librdkafka handle for the mock cluster");
        let raw = unsafe {
            rdsys::rd_kafka_mock_cluster_new(handle.client().native_ptr(), brokers as c_int)
        };
        assert!(!raw.is_null(), "rd_kafka_mock_cluster_new failed");
        MockKafka {
            raw,
            _handle: handle,
            brokers,
        }
    }

    /// Comma-separated `host:port` list of all mock brokers.
    pub fn bootstrap(&self) -> String {
        unsafe { CStr::from_ptr(rdsys::rd_kafka_mock_cluster_bootstraps(self.raw)) }
            .to_string_lossy()
            .into_owned()
    }

    /// Creates a topic (replication factor min(brokers, 3)); leaders are spread over the brokers.
    pub fn create_topic(&self, topic: &str, partitions: i32) {
        let t = CString::new(topic).unwrap();
        let err = unsafe {
            rdsys::rd_kafka_mock_topic_create(self.raw, t.as_ptr(), partitions, self.brokers.min(3))
        };
        mock_result("topic_create", err).unwrap();
    }

    /// Moves the leader of `topic`/`partition` to `broker` (`None`: no leader).
    pub fn set_leader(&self, topic: &str, partition: i32, broker: Option<i32>) {
        let t = CString::new(topic).unwrap();
        let err = unsafe {
            rdsys::rd_kafka_mock_partition_set_leader(
                self.raw,
                t.as_ptr(),
                partition,
                broker.unwrap_or(-1),
            )
        };
        mock_result("partition_set_leader", err).unwrap();
    }

    /// Closes the broker's connections and refuses new ones (-1: all). Leaders do not move.
    pub fn broker_down(&self, broker: i32) {
        mock_result("broker_set_down", unsafe {
            rdsys::rd_kafka_mock_broker_set_down(self.raw, broker)
        })
        .unwrap();
    }

    /// Lets the broker accept connections again (-1: all).
    pub fn broker_up(&self, broker: i32) {
        mock_result("broker_set_up", unsafe {
            rdsys::rd_kafka_mock_broker_set_up(self.raw, broker)
        })
        .unwrap();
    }

    /// Sets `broker`'s `broker.rack` (Metadata answers carry it from then on).
    pub fn set_rack(&self, broker: i32, rack: &str) {
        let r = CString::new(rack).unwrap();
        mock_result("broker_set_rack", unsafe {
            rdsys::rd_kafka_mock_broker_set_rack(self.raw, broker, r.as_ptr())
        })
        .unwrap();
    }

    /// Delays every response of `broker` (-1: all) by `rtt`.
    pub fn set_rtt(&self, broker: i32, rtt: Duration) {
        let ms = rtt.as_millis().min(c_int::MAX as u128) as c_int;
        mock_result("broker_set_rtt", unsafe {
            rdsys::rd_kafka_mock_broker_set_rtt(self.raw, broker, ms)
        })
        .unwrap();
    }

    /// The next `errors.len()` requests with `api` (to any broker) fail with these errors, in
    /// order. `RD_KAFKA_RESP_ERR__TRANSPORT` makes the broker close the connection instead.
    pub fn push_request_errors(&self, api: RDKafkaApiKey, errors: &[RDKafkaRespErr]) {
        unsafe {
            rdsys::rd_kafka_mock_push_request_errors_array(
                self.raw,
                api as i16,
                errors.len(),
                errors.as_ptr(),
            )
        }
    }

    /// Like [`push_request_errors`](Self::push_request_errors) but only for requests to
    /// `broker`, each response delayed by its duration (NO_ERROR + delay = slow success).
    pub fn push_broker_request_errors(
        &self,
        broker: i32,
        api: RDKafkaApiKey,
        errors: &[(RDKafkaRespErr, Duration)],
    ) {
        for (err, rtt) in errors {
            let ms = rtt.as_millis().min(c_int::MAX as u128) as c_int;
            let r = unsafe {
                rdsys::rd_kafka_mock_broker_push_request_error_rtts(
                    self.raw,
                    broker,
                    api as i16,
                    1,
                    *err as c_int,
                    ms,
                )
            };
            mock_result("broker_push_request_error_rtts", r).unwrap();
        }
    }

    /// Drops the queued errors for `api` (cluster-wide stack).
    pub fn clear_request_errors(&self, api: RDKafkaApiKey) {
        unsafe { rdsys::rd_kafka_mock_clear_request_errors(self.raw, api as i16) }
    }

    /// Error returned for `topic` in Metadata responses (NO_ERROR to clear).
    pub fn set_topic_error(&self, topic: &str, err: RDKafkaRespErr) {
        let t = CString::new(topic).unwrap();
        unsafe { rdsys::rd_kafka_mock_topic_set_error(self.raw, t.as_ptr(), err) }
    }

    /// Restricts the versions the mock advertises for `api` (`None, None` disables it).
    pub fn set_api_versions(&self, api: RDKafkaApiKey, min: Option<i16>, max: Option<i16>) {
        let r = unsafe {
            rdsys::rd_kafka_mock_set_apiversion(
                self.raw,
                api as i16,
                min.unwrap_or(-1),
                max.unwrap_or(-1),
            )
        };
        mock_result("set_apiversion", r).unwrap();
    }

    /// Starts recording requests (see [`requests`](Self::requests)).
    pub fn start_request_tracking(&self) {
        unsafe { rdsys::rd_kafka_mock_start_request_tracking(self.raw) }
    }

    pub fn stop_request_tracking(&self) {
        unsafe { rdsys::rd_kafka_mock_stop_request_tracking(self.raw) }
    }

    /// Requests received since tracking started (or since
    /// [`clear_requests`](Self::clear_requests)).
    pub fn requests(&self) -> Vec<MockRequest> {
        let mut cnt: usize = 0;
        unsafe {
            let arr = rdsys::rd_kafka_mock_get_requests(self.raw, &mut cnt);
            if arr.is_null() {
                return Vec::new();
            }
            let out = (0..cnt)
                .map(|i| {
                    let r = *arr.add(i);
                    MockRequest {
                        broker_id: rdsys::rd_kafka_mock_request_id(r),
                        api_key: rdsys::rd_kafka_mock_request_api_key(r),
                        timestamp_us: rdsys::rd_kafka_mock_request_timestamp(r),
                    }
                })
                .collect();
            rdsys::rd_kafka_mock_request_destroy_array(arr, cnt);
            out
        }
    }

    /// Tracked requests with API key `api`.
    pub fn requests_of(&self, api: RDKafkaApiKey) -> Vec<MockRequest> {
        self.requests()
            .into_iter()
            .filter(|r| r.api_key == api as i16)
            .collect()
    }

    pub fn clear_requests(&self) {
        unsafe { rdsys::rd_kafka_mock_clear_requests(self.raw) }
    }
}

impl Drop for MockKafka {
    fn drop(&mut self) {
        unsafe { rdsys::rd_kafka_mock_cluster_destroy(self.raw) }
    }
}

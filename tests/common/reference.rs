//! librdkafka as a reference producer (Java compatible `murmur2_random` partitioner).

use super::*;

/// A librdkafka `FutureProducer` with the Java-compatible `murmur2_random` partitioner,
/// `acks=all`, `linger.ms=0`.
pub fn rdkafka_producer(bootstrap: &str) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("partitioner", "murmur2_random")
        .set("acks", "all")
        .set("linger.ms", "0")
        .set("message.timeout.ms", "30000")
        .create()
        .expect("create rdkafka producer")
}

/// Produces one keyed record with librdkafka (`murmur2_random` partitioner, i.e. what the Java
/// client's default partitioner does for keyed records) and returns `(partition, offset)`.
/// The partition is the reference answer for "which partition does this key go to".
pub async fn rdkafka_produce_keyed(
    bootstrap: &str,
    topic: &str,
    key: &[u8],
    value: &[u8],
) -> (i32, i64) {
    let producer = rdkafka_producer(bootstrap);
    let delivery = producer
        .send(
            FutureRecord::to(topic).key(key).payload(value),
            Duration::from_secs(30),
        )
        .await
        .unwrap_or_else(|(e, _)| panic!("rdkafka produce to {topic} on {bootstrap}: {e}"));
    (delivery.partition, delivery.offset)
}

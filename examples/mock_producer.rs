//! Testing application code with `MockProducer` (feature `mock`):
//!
//! ```text
//! cargo run --example mock_producer --features mock
//! ```
//!
//! `OrderService` publishes through any [`RecordSender`]: the real `Producer` in production, the
//! mock here. The mock records what was sent and fails the second delivery on command, so the
//! service's error handling is exercised without a broker.
use actix_kafka::mock::MockProducer;
use actix_kafka::{KafkaCode, ProduceError, ProducerRecord, RecordSender};

struct OrderService<S: RecordSender> {
    producer: S,
}

impl<S: RecordSender> OrderService<S> {
    /// Publishes an order event keyed by customer; returns the offset, or why it failed.
    async fn place(&self, customer: &str, order: &str) -> Result<i64, ProduceError> {
        let record = ProducerRecord::new("orders", order.to_string()).key(customer.to_string());
        let delivery = self.producer.send_record(record).await?;
        Ok(delivery.await?.offset)
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mock = MockProducer::new(false);
    let service = OrderService {
        producer: mock.clone(),
    };
    let first = tokio::spawn({
        let svc = OrderService {
            producer: mock.clone(),
        };
        async move { svc.place("alice", "order-1").await }
    });
    while mock.pending() < 1 {
        tokio::task::yield_now().await;
    }
    mock.complete_next();
    assert_eq!(first.await.unwrap().unwrap(), 0);

    let second = tokio::spawn(async move { service.place("bob", "order-2").await });
    while mock.pending() < 1 {
        tokio::task::yield_now().await;
    }
    mock.error_next(KafkaCode(19)); // NOT_ENOUGH_REPLICAS
    let err = second.await.unwrap().unwrap_err();
    println!("second order failed as arranged: {err}");

    let sent: Vec<_> = mock.history().iter().map(|r| r.key.clone()).collect();
    assert_eq!(sent.len(), 2);
    println!("the mock saw {} records: {sent:?}", sent.len());
}

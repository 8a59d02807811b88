//! Broker health events (`Producer::subscribe_health`): a broker killed and restarted gives one
//! `BrokerDown` per connection, then `BrokerRestarted` and `BrokerUp`; records sent meanwhile
//! are delivered.
mod common;

use actix::prelude::*;
use actix_kafka::{HealthEvent, Producer, ProducerConfig, ProducerRecord};
use common::{unique_topic, TestBroker};
use std::time::Duration;
use tokio::sync::mpsc;

struct Collector(mpsc::UnboundedSender<HealthEvent>);

impl Actor for Collector {
    type Context = Context<Self>;
}

impl Handler<HealthEvent> for Collector {
    type Result = ();
    fn handle(&mut self, event: HealthEvent, _: &mut Context<Self>) {
        let _ = self.0.send(event);
    }
}

async fn next_matching(
    rx: &mut mpsc::UnboundedReceiver<HealthEvent>,
    seen: &mut Vec<HealthEvent>,
    what: &str,
    want: impl Fn(&HealthEvent) -> bool,
) -> HealthEvent {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(e)) => {
                seen.push(e.clone());
                if want(&e) {
                    return e;
                }
            }
            _ => panic!("no {what} event; seen: {seen:#?}"),
        }
    }
}

#[actix_rt::test]
async fn broker_down_then_up_events() {
    let mut broker = TestBroker::dedicated();
    let topic = unique_topic("health");
    broker.create_topic(&topic, 1);
    let producer = Producer::start(
        ProducerConfig::builder()
            .bootstrap_servers([broker.bootstrap.clone()])
            .build()
            .unwrap(),
    )
    .await
    .unwrap();
    let (tx, mut rx) = mpsc::unbounded_channel();
    producer.subscribe_health(Collector(tx).start().recipient());
    let mut seen = Vec::new();
    producer
        .send_and_wait(ProducerRecord::new(topic.as_str(), "before"))
        .await
        .unwrap();
    next_matching(&mut rx, &mut seen, "BrokerUp", |e| {
        matches!(e, HealthEvent::BrokerUp { node_id: 1, .. })
    })
    .await;

    let b = tokio::task::spawn_blocking(move || {
        broker.stop();
        broker
    });
    let mut broker = b.await.unwrap();
    next_matching(&mut rx, &mut seen, "BrokerDown", |e| {
        matches!(e, HealthEvent::BrokerDown { node_id: 1, .. })
    })
    .await;
    // A record sent while the broker is down is delivered once it is back.
    let delivery = producer
        .send(ProducerRecord::new(topic.as_str(), "during"))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let b = tokio::task::spawn_blocking(move || {
        broker.restart();
        broker
    });
    let broker = b.await.unwrap();
    let restarted = next_matching(&mut rx, &mut seen, "BrokerRestarted", |e| {
        matches!(e, HealthEvent::BrokerRestarted { node_id: 1, .. })
    })
    .await;
    next_matching(&mut rx, &mut seen, "BrokerUp again", |e| {
        matches!(e, HealthEvent::BrokerUp { node_id: 1, .. })
    })
    .await;
    let md = delivery.await.expect("delivered after the restart");
    assert_eq!(md.offset, 1);
    producer.close(Duration::from_secs(5)).await;
    let downs = seen
        .iter()
        .filter(|e| matches!(e, HealthEvent::BrokerDown { node_id: 1, .. }))
        .count();
    assert_eq!(downs, 1, "one BrokerDown per episode: {seen:#?}");
    println!("HEALTH events: {seen:#?}\nrestart: {restarted:?}");
    drop(broker);
}

/// A Produce answer PRODUCER_FENCED (from the test proxy) fails that record with the broker's
/// code and sends `ProducerFenced` with the producer id and epoch that were refused.
#[actix_rt::test]
async fn producer_fenced_event() {
    let broker = TestBroker::start();
    let topic = unique_topic("fenced");
    broker.create_topic(&topic, 1);
    let proxy = common::proxy::Proxy::start(broker.bootstrap.parse().unwrap());
    let producer = Producer::start(
        ProducerConfig::builder()
            .bootstrap_servers([proxy.bootstrap()])
            .build()
            .unwrap(),
    )
    .await
    .unwrap();
    let (tx, mut rx) = mpsc::unbounded_channel();
    producer.subscribe_health(Collector(tx).start().recipient());
    producer
        .send_and_wait(ProducerRecord::new(topic.as_str(), "ok"))
        .await
        .unwrap();
    proxy.fail_next_requests(common::proxy::PRODUCE, 90, 1); // PRODUCER_FENCED
    let err = producer
        .send_and_wait(ProducerRecord::new(topic.as_str(), "fenced"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            actix_kafka::ProduceError::Broker {
                code: actix_kafka::KafkaCode(90),
                ..
            }
        ),
        "{err:?}"
    );
    let mut seen = Vec::new();
    let e = next_matching(&mut rx, &mut seen, "ProducerFenced", |e| {
        matches!(e, HealthEvent::ProducerFenced { .. })
    })
    .await;
    let stats = producer.sender_stats().await.unwrap();
    assert_eq!(
        e,
        HealthEvent::ProducerFenced {
            producer_id: stats.producer_id.0,
            epoch: stats.producer_id.1
        }
    );
    producer.close(Duration::from_secs(5)).await;
}

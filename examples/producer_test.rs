//! Port of the Java `ProducerTest` demo: integer keys (`IntegerSerializer`), string values
//! `Message_N` (`StringSerializer`), async mode printing partition, offset and elapsed ms from
//! the callback, sync mode awaiting each send.
//!
//! ```text
//! cargo run --example producer_test -- [--bootstrap 127.0.0.1:9092] [--topic test]
//!     [--sync] [--count 20] [--sleep-ms 500]
//! ```
//! The Java demo loops forever; `--count` bounds it (0 = forever).
use actix_kafka::serializer::{IntegerSerializer, StringSerializer};
use actix_kafka::{Producer, ProducerConfig, ProducerRecord};
use std::time::{Duration, Instant};

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

#[actix::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let bootstrap = arg("--bootstrap")
        .or_else(|| std::env::var("KAFKA_BOOTSTRAP").ok())
        .unwrap_or_else(|| "localhost:9092".into());
    let topic = arg("--topic").unwrap_or_else(|| "test".into());
    let is_async = !std::env::args().any(|a| a == "--sync");
    let count: u64 = arg("--count").map_or(Ok(20), |s| s.parse())?;
    let sleep_ms: u64 = arg("--sleep-ms").map_or(Ok(500), |s| s.parse())?;

    let config = ProducerConfig::from_map([
        ("bootstrap.servers", bootstrap.as_str()),
        ("client.id", "DemoProducer"),
    ])?;
    let producer = Producer::start(config).await?;
    let mut message_no: i32 = 1;
    while count == 0 || (message_no as u64) <= count {
        let message_str = format!("Message_{message_no}");
        let start_time = Instant::now();
        let record = ProducerRecord::serialized(
            topic.as_str(),
            Some(&message_no),
            &IntegerSerializer,
            Some(message_str.as_str()),
            &StringSerializer,
        )?;
        if is_async {
            let (key, message) = (message_no, message_str.clone());
            producer
                .send_with_callback(record, move |result| {
                    let elapsed = start_time.elapsed().as_millis();
                    match result {
                        Ok(md) => println!(
                            "message({key}, {message}) sent to partition({}), offset({}) in \
                             {elapsed} ms",
                            md.partition, md.offset
                        ),
                        Err(e) => eprintln!("message({key}, {message}) failed: {e}"),
                    }
                })
                .await?;
        } else {
            let md = producer.send(record).await?.await?;
            println!(
                "message({message_no}, {message_str}) sent to partition({}), offset({}) in {} ms",
                md.partition,
                md.offset,
                start_time.elapsed().as_millis()
            );
            tokio::time::sleep(Duration::from_millis(sleep_ms)).await;
        }
        println!("send message : ({message_no} , {message_str})");
        message_no += 1;
    }
    producer.close(Duration::from_secs(30)).await;
    Ok(())
}

use actix_kafka::{Producer, ProducerConfig, ProducerRecord};
use std::time::{Duration, Instant};
#[actix::main]
async fn main() {
    tracing_subscriber::fmt().with_env_filter(std::env::var("RUST_LOG").unwrap_or("info".into())).init();
    let cfg = ProducerConfig::builder().bootstrap_servers(["127.0.0.1:19092"]).max_block(Duration::from_secs(5)).build().unwrap();
    let p = Producer::start(cfg).await.unwrap();
    let n: usize = std::env::args().nth(1).map(|s| s.parse().unwrap()).unwrap_or(10);
    let t = Instant::now();
    let mut futs = Vec::new();
    for i in 0..n {
        futs.push(p.send(ProducerRecord::new("smoke", format!("value-{i}")).key(format!("k{i}"))).await.unwrap());
    }
    let mut last = None;
    for f in futs { last = Some(f.await); }
    println!("{:?} in {:?}", last, t.elapsed());
    println!("{:?}", p.sender_stats().await);
    p.close(Duration::from_secs(1)).await;
}

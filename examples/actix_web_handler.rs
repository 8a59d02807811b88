//! The README's actix-web handler, as written there (feature `actix-web`: `ProduceError` is an
//! `actix_web::ResponseError`, so the handler uses `?` and errors become 503/504/413/...):
//!
//! ```text
//! KAFKA_BOOTSTRAP=127.0.0.1:9092 cargo run --example actix_web_handler --features actix-web
//! curl -d 'hello' http://127.0.0.1:8080/publish/events
//! ```
use actix_kafka::{ProduceError, Producer, ProducerConfig, ProducerRecord};
use actix_web::{post, web, App, HttpResponse, HttpServer};
use std::time::Duration;

#[post("/publish/{topic}")]
async fn publish(
    producer: web::Data<Producer>,
    topic: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ProduceError> {
    let md = producer
        .send_and_wait(ProducerRecord::new(topic.into_inner(), body))
        .await?;
    Ok(HttpResponse::Ok().body(format!("{}@{}", md.partition, md.offset)))
}

#[actix_web::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let bootstrap = std::env::var("KAFKA_BOOTSTRAP").unwrap_or_else(|_| "127.0.0.1:9092".into());
    let config = ProducerConfig::builder()
        .bootstrap_servers([bootstrap])
        .build()?;
    let producer = Producer::start(config).await?;
    let data = web::Data::new(producer.clone());
    HttpServer::new(move || App::new().app_data(data.clone()).service(publish))
        .bind("127.0.0.1:8080")?
        .run()
        .await?;
    producer.close(Duration::from_secs(10)).await; // deliver or fail what is pending
    Ok(())
}

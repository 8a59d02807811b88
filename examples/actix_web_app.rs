//! Embedding the producer in an actix-web app: `POST /publish/{topic}` produces the request body
//! (optional `?key=`) and answers with the record's partition and offset once the broker has
//! acknowledged it; `GET /metrics` shows the producer's metrics.
//!
//! ```text
//! KAFKA_BOOTSTRAP=127.0.0.1:9092 cargo run --example actix_web_app -- [LISTEN_ADDR]
//! curl -d 'hello' 'http://127.0.0.1:8080/publish/events?key=user-1'
//! ```
use actix_kafka::{ProduceError, Producer, ProducerConfig, ProducerRecord};
use actix_web::{get, post, web, App, HttpResponse, HttpServer};
use std::collections::HashMap;

#[post("/publish/{topic}")]
async fn publish(
    producer: web::Data<Producer>,
    topic: web::Path<String>,
    query: web::Query<HashMap<String, String>>,
    body: web::Bytes,
) -> HttpResponse {
    let mut record = ProducerRecord::new(topic.into_inner(), body);
    if let Some(k) = query.get("key") {
        record = record.key(k.clone());
    }
    let result = async { producer.send(record).await?.await }.await;
    match result {
        Ok(md) => HttpResponse::Ok().body(format!(
            "{{\"topic\":\"{}\",\"partition\":{},\"offset\":{},\"timestamp\":{}}}\n",
            md.topic, md.partition, md.offset, md.timestamp
        )),
        Err(e @ (ProduceError::QueueFull { .. } | ProduceError::MetadataTimeout { .. })) => {
            HttpResponse::ServiceUnavailable().body(format!("{e}\n"))
        }
        Err(e) => HttpResponse::BadGateway().body(format!("{e}\n")),
    }
}

#[get("/metrics")]
async fn metrics(producer: web::Data<Producer>) -> HttpResponse {
    let m = producer.metrics();
    let text: String = m.values.iter().map(|(k, v)| format!("{k} {v}\n")).collect();
    HttpResponse::Ok().body(text)
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let bootstrap = std::env::var("KAFKA_BOOTSTRAP").unwrap_or_else(|_| "localhost:9092".into());
    let listen = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8080".into());
    let config = ProducerConfig::from_map([("bootstrap.servers", bootstrap)])
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let producer = Producer::start(config)
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let data = web::Data::new(producer.clone());
    println!("listening on http://{listen}");
    HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .service(publish)
            .service(metrics)
    })
    .bind(listen)?
    .run()
    .await?;
    producer.close(std::time::Duration::from_secs(10)).await;
    Ok(())
}

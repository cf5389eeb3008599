//! Herald inside an actix-web service: an HTTP endpoint that produces its request body, and
//! the producer's metrics for Prometheus.
//!
//! ```text
//! cargo run --example actix_web -- --bootstrap-servers localhost:9092 --listen 127.0.0.1:8080
//! curl -d 'hello' 'http://127.0.0.1:8080/topics/greetings?key=user-1'
//! {"offset":0,"partition":2,"topic":"greetings"}
//! curl http://127.0.0.1:8080/metrics
//! ```
//!
//! `POST /topics/{topic}` produces the body as the value, with the optional `?key=` as the
//! key, and answers once the broker acknowledged it (per `acks`): 200 with the record's
//! topic, partition and offset; 400 when the record itself is at fault (a bad topic name, or
//! a body within max.request.size whose record, with its overhead, is still too large); 500
//! for everything else (broker errors, timeouts). A body larger than max.request.size never
//! reaches the handler: actix-web's `PayloadConfig` limit, set to it, refuses it with its own
//! 413 Payload Too Large (a plain-text body, not the JSON error).
//!
//! `GET /metrics` answers in Prometheus' text format: Herald publishes through the `metrics`
//! facade, and this service installs `metrics-exporter-prometheus` as the recorder (before
//! the producer starts, so the metrics' descriptions reach it) and renders it per request.
//!
//! The broker comes from `--bootstrap-servers` or `KAFKA_BOOTSTRAP_SERVERS`; with neither, an
//! embedded one starts (librdkafka's mock cluster, which creates topics on first use).
//! Ctrl-C stops the server, then the producer is closed so nothing accepted is lost.

use std::time::Duration;

use actix::Addr;
use actix_web::{get, post, web, App, HttpResponse, HttpServer};
use clap::Parser;
use herald::ErrorKind;
use herald_actors::{Produce, Producer, Router};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use rdkafka::mocking::MockCluster;
use serde::Deserialize;

#[path = "common/key_value.rs"]
mod key_value;

#[derive(Debug, Parser)]
#[command(about = "An HTTP endpoint that produces request bodies to Kafka with Herald")]
struct Args {
    /// Kafka brokers (host:port,...). Falls back to KAFKA_BOOTSTRAP_SERVERS, then to an
    /// embedded broker.
    #[arg(long)]
    bootstrap_servers: Option<String>,
    /// Address to serve HTTP on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: String,
    /// A producer setting (repeatable, Java's names or librdkafka's aliases), e.g.
    /// `-X security.protocol=SASL_SSL -X sasl.mechanism=SCRAM-SHA-512`.
    #[arg(short = 'X', value_name = "KEY=VALUE", value_parser = key_value::KeyValue)]
    config: Vec<(String, String)>,
}

#[derive(Debug, Deserialize)]
struct ProduceParams {
    key: Option<String>,
}

/// Produces the body to `topic`. The handler runs on an actix-web worker thread; the router
/// lives on the main thread, and its `Addr` is all a worker needs to reach it.
#[post("/topics/{topic}")]
async fn produce(
    router: web::Data<Addr<Router>>,
    topic: web::Path<String>,
    params: web::Query<ProduceParams>,
    body: web::Bytes,
) -> HttpResponse {
    let mut record = Produce::new(topic.into_inner()).value(body);
    if let Some(key) = params.into_inner().key {
        record = record.key(key);
    }
    // `send` resolves once the record is acknowledged, or failed for good after Herald's own
    // retries (up to delivery.timeout.ms): the handler has nothing to retry.
    match router.send(record).await {
        Ok(Ok(md)) => HttpResponse::Ok().json(serde_json::json!({
            "topic": &*md.topic,
            "partition": md.partition,
            "offset": md.offset,
        })),
        Ok(Err(e)) => {
            let error = serde_json::json!({ "error": e.to_string() });
            match e.kind() {
                ErrorKind::InvalidTopic { .. }
                | ErrorKind::RecordTooLarge { .. }
                | ErrorKind::PartitionOutOfRange { .. } => HttpResponse::BadRequest().json(error),
                _ => HttpResponse::InternalServerError().json(error),
            }
        }
        // The router's mailbox closed: the producer is shutting down.
        Err(e) => {
            HttpResponse::InternalServerError().json(serde_json::json!({ "error": e.to_string() }))
        }
    }
}

/// Every metric of the process in Prometheus' text exposition format.
#[get("/metrics")]
async fn metrics(prometheus: web::Data<PrometheusHandle>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(prometheus.render())
}

#[actix_web::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .init();
    }

    // Dropping the embedded broker stops it, so it lives as long as `main`.
    let (bootstrap, _embedded) = match args
        .bootstrap_servers
        .or_else(|| std::env::var("KAFKA_BOOTSTRAP_SERVERS").ok())
    {
        Some(servers) => (servers, None),
        None => {
            let cluster = MockCluster::new(3)?;
            let servers = cluster.bootstrap_servers();
            println!("No --bootstrap-servers or KAFKA_BOOTSTRAP_SERVERS: started an embedded broker at {servers}");
            (servers, Some(cluster))
        }
    };

    let prometheus = web::Data::new(PrometheusBuilder::new().install_recorder()?);

    // One producer for the whole service, started on the main actix system. Its actors batch
    // the records of every worker together.
    let settings = std::iter::once(("bootstrap.servers".to_string(), bootstrap)).chain(args.config);
    let producer = Producer::from_pairs(settings)?;
    let router = web::Data::new(producer.router().clone());
    // Accept bodies up to the producer's max.request.size; Herald rejects larger records.
    let max_body = producer.config().max_request_size;

    println!("Listening on http://{}", args.listen);
    HttpServer::new(move || {
        App::new()
            .app_data(router.clone())
            .app_data(prometheus.clone())
            .app_data(web::PayloadConfig::new(max_body))
            .service(produce)
            .service(metrics)
    })
    .bind(&args.listen)?
    .run()
    .await?;

    // The server stopped (Ctrl-C): deliver what is still buffered before exiting.
    if !producer.close(Duration::from_secs(10)).await {
        eprintln!("some records were not delivered before the close timeout");
    }
    Ok(())
}

//! Metrics as an operator sees them: the actix-web example, run as a user runs it against a
//! broker, produces over HTTP, and its `/metrics` page (Prometheus' text format) is scraped.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::examples::example;
use crate::support::mock::Mock;
use crate::support::unique_topic;

/// The example's process, stopped with SIGINT (its Ctrl-C path) when dropped.
struct Server {
    child: Child,
    address: String,
}

impl Server {
    fn start(bootstrap: &str, client_id: &str) -> Server {
        // A port that was free a moment ago.
        let port = crate::support::PortBand::Listeners
            .bind(1, |p| TcpListener::bind(("127.0.0.1", p)).ok())
            .pop()
            .and_then(|l| l.local_addr().ok())
            .expect("a free port")
            .port();
        let address = format!("127.0.0.1:{port}");
        let child = Command::new(example("actix_web"))
            .args(["--bootstrap-servers", bootstrap, "--listen", &address])
            .args(["-X", &format!("client.id={client_id}")])
            // Short windows, so the rates read over a span this test can wait for.
            .args([
                "-X",
                "metrics.sample.window.ms=5000",
                "-X",
                "metrics.num.samples=2",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the actix_web example");
        let server = Server { child, address };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(&server.address).is_err() {
            assert!(
                Instant::now() < deadline,
                "the example never listened on {}",
                server.address
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    /// One HTTP/1.1 request; the status code and the body.
    fn request(&self, method: &str, path: &str, body: &[u8]) -> (u16, String) {
        let mut stream = TcpStream::connect(&self.address).expect("connect to the example");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("read timeout");
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            self.address,
            body.len()
        );
        stream.write_all(head.as_bytes()).expect("write request");
        stream.write_all(body).expect("write body");
        let mut response = Vec::new();
        stream.read_to_end(&mut response).expect("read response");
        let response = String::from_utf8(response).expect("a UTF-8 response");
        let (head, body) = response.split_once("\r\n\r\n").expect("head and body");
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("a status line: {head}"));
        (status, body.to_string())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // SIGINT: actix-web stops, then the example closes its producer.
        interrupt(self.child.id());
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// SIGINT through the `kill` command (this crate forbids `unsafe`, which libc's would need).
fn interrupt(pid: u32) {
    let _ = Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status();
}

/// A scrape: each series (name with its labels, as printed) and its value.
fn parse(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let value = match value {
                "NaN" => f64::NAN,
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                v => v.parse().ok()?,
            };
            Some((series.to_string(), value))
        })
        .collect()
}

/// The value of the series `name` whose labels include every one of `labels`.
fn value(scrape: &BTreeMap<String, f64>, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    scrape
        .iter()
        .find(|(series, _)| {
            let (n, rest) = series.split_once('{').unwrap_or((series.as_str(), ""));
            n == name
                && labels
                    .iter()
                    .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")))
        })
        .map(|(_, v)| *v)
}

/// Produces through the example's HTTP endpoint, then scrapes `/metrics`: the record, request
/// and buffer metrics have the values the run implies, per producer, topic and broker.
#[test]
fn actix_web_example_serves_prometheus_metrics_after_producing() {
    let mock = Mock::start(1);
    let topic = unique_topic("metrics-scrape");
    mock.create_topic(&topic, 3, 1);
    let client_id = "metrics-it";
    let server = Server::start(&mock.bootstrap(), client_id);
    const RECORDS: usize = 25;
    for i in 0..RECORDS {
        let (status, body) = server.request(
            "POST",
            &format!("/topics/{topic}?key=k{i}"),
            format!("value {i}").as_bytes(),
        );
        assert_eq!(status, 200, "{body}");
    }
    let client = ("client_id", client_id);
    let on_topic = [client, ("topic", topic.as_str())];
    // The publisher refreshes the facade once a second.
    let deadline = Instant::now() + Duration::from_secs(15);
    let scrape = loop {
        let (status, text) = server.request("GET", "/metrics", b"");
        assert_eq!(status, 200, "{text}");
        let scrape = parse(&text);
        let sent = value(&scrape, "kafka_producer_topic_record_send_total", &on_topic);
        if sent == Some(RECORDS as f64) {
            println!("{text}");
            break scrape;
        }
        assert!(
            Instant::now() < deadline,
            "record-send-total never reached {RECORDS}:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let get = |name: &str, labels: &[(&str, &str)]| {
        value(&scrape, name, labels).unwrap_or_else(|| panic!("{name} {labels:?} not scraped"))
    };
    let records = RECORDS as f64;
    assert_eq!(get("kafka_producer_record_send_total", &[client]), records);
    assert_eq!(get("kafka_producer_record_error_total", &[client]), 0.0);
    assert_eq!(
        get("kafka_producer_topic_record_error_total", &on_topic),
        0.0
    );
    // Rates over the 2 x 5 s windows: every record was acknowledged within them.
    let rate = get("kafka_producer_record_send_rate", &[client]);
    assert!(
        rate > 0.0 && rate <= records / 5.0,
        "record-send-rate {rate}"
    );
    // Each HTTP request waited for its outcome: one record per batch (linger.ms=5 can only
    // join records that arrive together), so one record per Produce request.
    let per_request = get("kafka_producer_records_per_request_avg", &[client]);
    assert_eq!(per_request, 1.0, "records per Produce request");
    let requests = get("kafka_producer_request_total", &[client]);
    let responses = get("kafka_producer_response_total", &[client]);
    assert!(
        requests >= records + 2.0,
        "ApiVersions, Metadata and a Produce request per record: {requests}"
    );
    assert_eq!(requests, responses, "every request answered");
    assert!(get("kafka_producer_outgoing_byte_total", &[client]) > 25.0 * 7.0);
    let latency = get("kafka_producer_request_latency_avg", &[client]);
    let latency_max = get("kafka_producer_request_latency_max", &[client]);
    assert!(latency > 0.0 && latency <= latency_max && latency_max < 30_000.0);
    let batch = get("kafka_producer_batch_size_avg", &[client]);
    assert!(
        batch > 61.0 && batch < 1_000.0,
        "a v2 batch header and a small record: {batch}"
    );
    assert_eq!(get("kafka_producer_compression_rate_avg", &[client]), 1.0);
    // Java's record-size: the largest record as a batch holding it alone. The largest here,
    // key "k24" and value "value 24", is 18 bytes of record (its length, attributes, two
    // deltas, key and value with their lengths, a header count of 0) after the batch's 61.
    assert_eq!(get("kafka_producer_record_size_max", &[client]), 79.0);
    // One record per batch: each batch's largest record is all of it.
    let record_size = get("kafka_producer_record_size_avg", &[client]);
    assert!((record_size - batch).abs() < 1e-9, "{record_size} {batch}");
    // Every connection authenticated (at once, without SASL); none refused.
    let authenticated = get("kafka_producer_successful_authentication_total", &[client]);
    assert!(authenticated >= 1.0, "{authenticated}");
    let refused = get("kafka_producer_failed_authentication_total", &[client]);
    assert_eq!(refused, 0.0);
    let total = get("kafka_producer_buffer_total_bytes", &[client]);
    assert_eq!(total, 33_554_432.0);
    // Every batch completed: its memory is back.
    assert_eq!(
        get("kafka_producer_buffer_available_bytes", &[client]),
        total
    );
    assert_eq!(get("kafka_producer_waiting_threads", &[client]), 0.0);
    assert_eq!(
        get("kafka_producer_bufferpool_wait_time_ns_total", &[client]),
        0.0
    );
    let queue_time = get("kafka_producer_record_queue_time_max", &[client]);
    assert!((0.0..10_000.0).contains(&queue_time), "{queue_time}");
    // The mock's broker is node 1: its requests, responses and Produce latency.
    let node = [client, ("node_id", "1")];
    assert!(get("kafka_producer_node_request_total", &node) >= 1.0);
    assert!(get("kafka_producer_node_request_latency_avg", &node) > 0.0);
    assert_eq!(get("herald_in_flight_requests", &node), 0.0);
    let open = get("kafka_producer_connection_count", &[client]);
    let created = get("kafka_producer_connection_creation_total", &[client]);
    let closed = get("kafka_producer_connection_close_total", &[client]);
    assert!(open >= 1.0, "the leader's connection is open");
    assert_eq!(open, created - closed, "open = established - closed");
    assert_eq!(get("kafka_producer_requests_in_flight", &[client]), 0.0);
    assert_eq!(get("kafka_producer_batch_split_total", &[client]), 0.0);
    let age = get("kafka_producer_metadata_age", &[client]);
    assert!(
        (0.0..60.0).contains(&age),
        "metadata refreshed at start: {age} s ago"
    );
    for kind in [
        "router",
        "accumulator",
        "connection",
        "metadata",
        "interceptor",
    ] {
        let restarts = get("herald_actor_restarts_total", &[client, ("kind", kind)]);
        assert_eq!(restarts, 0.0, "{kind}");
    }
    assert_eq!(get("herald_records_waiting_metadata", &[client]), 0.0);
    assert_eq!(get("herald_records_waiting_memory", &[client]), 0.0);
    drop(server);
}

/// A Prometheus recorder for this test process, installed once (a process has one global
/// recorder; only the tests of this module read it, each through its own `client_id`).
fn recorder() -> &'static metrics_exporter_prometheus::PrometheusHandle {
    static HANDLE: std::sync::OnceLock<metrics_exporter_prometheus::PrometheusHandle> =
        std::sync::OnceLock::new();
    HANDLE.get_or_init(|| {
        metrics_exporter_prometheus::PrometheusBuilder::new()
            .install_recorder()
            .expect("the only recorder of the test process")
    })
}

/// Scrapes until `done` holds for the scrape (the publisher refreshes once a second).
async fn scrape_until(
    what: &str,
    done: impl Fn(&BTreeMap<String, f64>) -> bool,
) -> BTreeMap<String, f64> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = recorder().render();
        let scrape = parse(&text);
        if done(&scrape) {
            return scrape;
        }
        assert!(
            Instant::now() < deadline,
            "{what} never seen; last scrape:\n{text}"
        );
        actix_rt::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Herald's own gauges while records wait: for a topic's metadata (no broker answers) and
/// for buffer.memory (one batch holds all of it while the broker is slow), then the wait
/// time and the errors once it is over.
#[actix_rt::test]
async fn waiting_records_show_in_the_herald_gauges() {
    use herald_actors::{Produce, Producer};

    recorder();
    // Metadata: nothing listens on the discard port, so records wait for max.block.ms.
    let client = ("client_id", "waiting-metadata-it");
    let producer = Producer::from_pairs([
        ("bootstrap.servers", "127.0.0.1:9"),
        ("client.id", client.1),
        // Long enough for a publish (every second) to see them even on a loaded machine.
        ("max.block.ms", "6000"),
    ])
    .expect("producer");
    let outcomes: Vec<_> = (0..5)
        .map(|i| producer.send(Produce::new("waiting-topic").value(format!("{i}"))))
        .collect();
    scrape_until("5 records waiting for metadata", |s| {
        value(s, "herald_records_waiting_metadata", &[client]) == Some(5.0)
    })
    .await;
    for outcome in futures_util::future::join_all(outcomes).await {
        assert!(outcome.is_err(), "no broker: the record times out");
    }
    // Both in one scrape: a publish reads the error total and the gauge at two moments, so
    // one publish can show the gauge already at 0 and the errors not yet counted.
    let after = scrape_until("the wait over and its errors counted", |s| {
        value(s, "herald_records_waiting_metadata", &[client]) == Some(0.0)
            && value(s, "kafka_producer_record_error_total", &[client]) == Some(5.0)
    })
    .await;
    assert_eq!(
        value(&after, "kafka_producer_record_error_total", &[client]),
        Some(5.0)
    );
    producer.close(Duration::from_secs(5)).await;

    // Memory: buffer.memory is one batch; each record needs a batch of its own, and the
    // broker takes 2 s per request, so each stall spans at least one publish.
    let mock = Mock::start(1);
    let topic = unique_topic("waiting-memory");
    mock.create_topic(&topic, 1, 1);
    let client = ("client_id", "waiting-memory-it");
    let producer = Producer::from_pairs([
        ("bootstrap.servers", mock.bootstrap().as_str()),
        ("client.id", client.1),
        ("batch.size", "16384"),
        ("buffer.memory", "16384"),
        ("linger.ms", "0"),
    ])
    .expect("producer");
    // Metadata first, at full speed.
    producer
        .send(Produce::new(topic.clone()).value("warm-up"))
        .await
        .expect("warm-up record");
    mock.cluster
        .broker_round_trip_time(1, Duration::from_millis(2000))
        .expect("a slow broker");
    let value_of_12k = vec![b'x'; 12_000];
    // Through the router's mailbox, which the intake's bound does not cover: the second
    // record waits in the router until the first one's batch gives its memory back, the
    // third behind it.
    let outcomes: Vec<_> = (0..3)
        .map(|_| {
            producer
                .router()
                .send(Produce::new(topic.clone()).value(value_of_12k.clone()))
        })
        .collect();
    let stalled = scrape_until("the router waiting for memory", |s| {
        value(s, "kafka_producer_waiting_threads", &[client]) == Some(1.0)
    })
    .await;
    let waiting = value(&stalled, "herald_records_waiting_memory", &[client]).unwrap_or(0.0)
        + value(&stalled, "herald_intake_records", &[client]).unwrap_or(0.0);
    assert!(
        waiting >= 1.0,
        "records held while memory is short: {waiting}"
    );
    assert_eq!(
        value(&stalled, "kafka_producer_buffer_available_bytes", &[client]),
        Some(0.0),
        "one batch holds all of buffer.memory"
    );
    for outcome in futures_util::future::join_all(outcomes).await {
        outcome
            .expect("the router answers")
            .expect("delivered once memory came back");
    }
    let done = scrape_until("every record acknowledged", |s| {
        value(s, "kafka_producer_record_send_total", &[client]) == Some(4.0)
    })
    .await;
    assert_eq!(
        value(&done, "kafka_producer_waiting_threads", &[client]),
        Some(0.0)
    );
    assert_eq!(
        value(&done, "herald_records_waiting_memory", &[client]),
        Some(0.0)
    );
    let waited = value(
        &done,
        "kafka_producer_bufferpool_wait_time_ns_total",
        &[client],
    );
    // At least one stall lasted about a round trip of the slow broker.
    assert!(
        waited.is_some_and(|ns| ns >= 1e9),
        "bufferpool wait {waited:?} ns"
    );
    assert!(producer.close(Duration::from_secs(10)).await);
    // Close publishes once more, after the connections have closed.
    let closed = parse(&recorder().render());
    assert_eq!(
        value(&closed, "kafka_producer_connection_count", &[client]),
        Some(0.0)
    );
    let created = value(
        &closed,
        "kafka_producer_connection_creation_total",
        &[client],
    );
    assert!(created.is_some_and(|n| n >= 1.0), "{created:?}");
    assert_eq!(
        value(&closed, "kafka_producer_connection_close_total", &[client]),
        created,
        "every connection established was closed"
    );
}

/// The throttle time a broker asks for in its Produce responses (a quota) reaches
/// `produce-throttle-time-avg` / `-max`. A scripted broker answers every Produce with 250 ms.
#[actix_rt::test]
async fn produce_throttle_time_from_the_broker_is_published() {
    use herald_actors::{Produce, Producer};
    use kafka_protocol::messages::produce_response::{
        PartitionProduceResponse, TopicProduceResponse,
    };
    use kafka_protocol::messages::{ApiKey, ProduceRequest, ProduceResponse};

    use crate::support::fake_broker::{self, Action, FakeBroker};

    recorder();
    let standard = fake_broker::standard_handler(&[("throttled", 1)]);
    let fake = FakeBroker::start(move |ctx| {
        if ctx.api() != Some(ApiKey::Produce) {
            return standard(ctx);
        }
        let request: ProduceRequest = ctx.decode();
        let topics = request
            .topic_data
            .iter()
            .map(|t| {
                let partitions = t.partition_data.iter().map(|p| {
                    PartitionProduceResponse::default()
                        .with_index(p.index)
                        .with_base_offset(0)
                        .with_log_append_time_ms(-1)
                });
                TopicProduceResponse::default()
                    .with_name(t.name.clone())
                    .with_partition_responses(partitions.collect())
            })
            .collect();
        let response = ProduceResponse::default()
            .with_responses(topics)
            .with_throttle_time_ms(250);
        vec![Action::Respond(fake_broker::encode(
            &response,
            ctx.api_version,
        ))]
    });
    let client = ("client_id", "throttle-it");
    let producer = Producer::from_pairs([
        ("bootstrap.servers", fake.bootstrap().as_str()),
        ("client.id", client.1),
        // The scripted broker does not hand out producer ids.
        ("enable.idempotence", "false"),
    ])
    .expect("producer");
    for i in 0..3 {
        let record = Produce::new("throttled").value(format!("{i}"));
        producer.send(record).await.expect("acknowledged");
    }
    assert!(producer.close(Duration::from_secs(10)).await);
    // Close published the final figures.
    let scrape = parse(&recorder().render());
    let get = |name: &str| value(&scrape, name, &[client]);
    assert_eq!(get("kafka_producer_produce_throttle_time_max"), Some(250.0));
    assert_eq!(get("kafka_producer_produce_throttle_time_avg"), Some(250.0));
    assert_eq!(get("kafka_producer_record_send_total"), Some(3.0));
    let per_request = get("kafka_producer_records_per_request_avg");
    assert_eq!(
        per_request,
        Some(1.0),
        "one record per request, each awaited"
    );
}

/// A batch the broker refuses as too large is split until it fits, and each split counts in
/// `batch-split-total`: a scripted broker takes one record per batch, so a batch of four is
/// split three times (4 into 2 + 2, each 2 into 1 + 1).
#[actix_rt::test]
async fn batches_split_after_message_too_large_are_counted() {
    use std::sync::atomic::{AtomicI64, Ordering};

    use herald_actors::{Produce, Producer};
    use kafka_protocol::messages::{ApiKey, ProduceRequest};

    use crate::support::fake_broker::{self, Action, FakeBroker};

    recorder();
    let standard = fake_broker::standard_handler(&[("split", 1)]);
    let next_offset = AtomicI64::new(0);
    let fake = FakeBroker::start(move |ctx| {
        if ctx.api() != Some(ApiKey::Produce) {
            return standard(ctx);
        }
        let request: ProduceRequest = ctx.decode();
        let mut answers = Vec::new();
        for t in &request.topic_data {
            for p in &t.partition_data {
                let records = p.records.clone().unwrap_or_default();
                let batches = herald::batch::decode::decode_batches(&records).expect("a batch");
                let count: usize = batches.iter().map(|b| b.records.len()).sum();
                let answer = if count > 1 {
                    (-1, 10) // MESSAGE_TOO_LARGE
                } else {
                    (next_offset.fetch_add(1, Ordering::Relaxed), 0)
                };
                answers.push((t.name.to_string(), p.index, answer.0, answer.1));
            }
        }
        let answers: Vec<(&str, i32, i64, i16)> = answers
            .iter()
            .map(|(t, p, o, e)| (t.as_str(), *p, *o, *e))
            .collect();
        vec![Action::Respond(fake_broker::produce_response_with_errors(
            ctx.api_version,
            &answers,
        ))]
    });
    let client = ("client_id", "split-it");
    let producer = Producer::from_pairs([
        ("bootstrap.servers", fake.bootstrap().as_str()),
        ("client.id", client.1),
        ("enable.idempotence", "false"),
        // The four records wait for one another in one batch.
        ("linger.ms", "200"),
    ])
    .expect("producer");
    let sends: Vec<_> = (0..4)
        .map(|i| producer.send(Produce::new("split").partition(0).value(format!("{i}"))))
        .collect();
    for outcome in futures_util::future::join_all(sends).await {
        outcome.expect("delivered once split to one record per batch");
    }
    assert!(producer.close(Duration::from_secs(10)).await);
    let scrape = parse(&recorder().render());
    let get = |name: &str| value(&scrape, name, &[client]);
    assert_eq!(get("kafka_producer_batch_split_total"), Some(3.0));
    assert_eq!(get("kafka_producer_record_send_total"), Some(4.0));
    assert_eq!(get("kafka_producer_record_error_total"), Some(0.0));
}

/// A retriable refusal counts the batch's records in `record-retry-total`, for the producer
/// and for the topic: a scripted broker answers the first Produce with NOT_ENOUGH_REPLICAS.
#[actix_rt::test]
async fn retried_records_are_counted_for_the_producer_and_the_topic() {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use herald_actors::{Produce, ProduceBatch, Producer};
    use kafka_protocol::messages::{ApiKey, ProduceRequest};

    use crate::support::fake_broker::{self, Action, FakeBroker};

    recorder();
    let standard = fake_broker::standard_handler(&[("retried", 1)]);
    let produces = AtomicUsize::new(0);
    let fake = FakeBroker::start(move |ctx| {
        if ctx.api() != Some(ApiKey::Produce) || produces.fetch_add(1, Ordering::Relaxed) > 0 {
            return standard(ctx);
        }
        let request: ProduceRequest = ctx.decode();
        let refused: Vec<(String, i32)> = request
            .topic_data
            .iter()
            .flat_map(|t| {
                t.partition_data
                    .iter()
                    .map(|p| (t.name.to_string(), p.index))
            })
            .collect();
        let refused: Vec<(&str, i32, i64, i16)> = refused
            .iter()
            .map(|(t, p)| (t.as_str(), *p, -1, 19)) // NOT_ENOUGH_REPLICAS
            .collect();
        vec![Action::Respond(fake_broker::produce_response_with_errors(
            ctx.api_version,
            &refused,
        ))]
    });
    let client = ("client_id", "retry-it");
    let producer = Producer::from_pairs([
        ("bootstrap.servers", fake.bootstrap().as_str()),
        ("client.id", client.1),
        ("enable.idempotence", "false"),
        ("retry.backoff.ms", "10"),
    ])
    .expect("producer");
    // Five records in one batch: the first request carries them all.
    let batch = (0..5)
        .map(|i| Produce::new("retried").partition(0).value(format!("{i}")))
        .collect();
    for outcome in producer
        .router()
        .send(ProduceBatch(batch))
        .await
        .expect("router")
    {
        outcome.expect("delivered on the retry");
    }
    assert!(producer.close(Duration::from_secs(10)).await);
    let scrape = parse(&recorder().render());
    let topic = [client, ("topic", "retried")];
    assert_eq!(
        value(&scrape, "kafka_producer_record_retry_total", &[client]),
        Some(5.0)
    );
    assert_eq!(
        value(&scrape, "kafka_producer_topic_record_retry_total", &topic),
        Some(5.0)
    );
    assert_eq!(
        value(&scrape, "kafka_producer_topic_record_send_total", &topic),
        Some(5.0)
    );
    assert_eq!(
        value(&scrape, "kafka_producer_topic_record_error_total", &topic),
        Some(0.0)
    );
}

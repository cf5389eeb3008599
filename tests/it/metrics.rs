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
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
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
    // join records that arrive together), so at least one request and at most one per record.
    let produce_requests = get("kafka_producer_records_per_request_avg", &[client]);
    assert!(
        (1.0..=records).contains(&produce_requests),
        "{produce_requests}"
    );
    let requests = get("kafka_producer_request_total", &[client]);
    let responses = get("kafka_producer_response_total", &[client]);
    assert!(
        requests >= 2.0,
        "ApiVersions, Metadata, Produce: {requests}"
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

//! Connection setup against a listener of our own that accepts TCP connections and then says
//! nothing, named as the scripted fake it is: a real broker frozen mid-handshake behaves the
//! same on the wire, but only our own listener can say when each connection attempt arrived.
//!
//! `socket.connection.setup.timeout.ms` bounds each attempt to set a connection up (the TLS
//! handshake, and with SASL the authentication exchange), and doubles with each attempt that
//! failed, up to `socket.connection.setup.timeout.max.ms`, as Java's does. Without SASL the
//! first request (ApiVersions) is a request like any other: `request.timeout.ms` bounds it.

use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use herald_actors::{Produce, Producer};

use crate::support::{init_tracing, unique_topic};

/// A listener that takes every connection, keeps it open without a byte either way, and
/// notes when it arrived.
struct Silent {
    address: String,
    arrivals: Arc<Mutex<Vec<Instant>>>,
}

impl Silent {
    fn start() -> Silent {
        let listener = crate::support::PortBand::Listeners
            .bind(1, |p| TcpListener::bind(("127.0.0.1", p)).ok())
            .pop()
            .expect("bind");
        let address = listener.local_addr().expect("address").to_string();
        let arrivals = Arc::new(Mutex::new(Vec::new()));
        let noted = arrivals.clone();
        std::thread::spawn(move || {
            let mut held: Vec<TcpStream> = Vec::new();
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                noted.lock().unwrap().push(Instant::now());
                held.push(stream);
            }
        });
        Silent { address, arrivals }
    }

    /// The gaps between consecutive connection attempts, in seconds.
    fn gaps(&self) -> Vec<f64> {
        let arrivals = self.arrivals.lock().unwrap();
        arrivals
            .windows(2)
            .map(|w| (w[1] - w[0]).as_secs_f64())
            .collect()
    }
}

/// Starts a producer on `silent` with `security` settings and a record that needs metadata
/// (so that it keeps connecting), lets it try for `watch`, and closes it.
async fn attempts(silent: &Silent, security: &[(&str, &str)], watch: Duration) -> Vec<f64> {
    let mut pairs = vec![
        ("bootstrap.servers", silent.address.as_str()),
        ("socket.connection.setup.timeout.ms", "300"),
        ("socket.connection.setup.timeout.max.ms", "1200"),
        // Constant (set alone) and short, so the gaps are the setup timeouts.
        ("reconnect.backoff.ms", "10"),
        ("request.timeout.ms", "30000"),
    ];
    pairs.extend_from_slice(security);
    let producer = Producer::from_pairs(pairs).expect("valid config");
    let waiting = producer.send(Produce::new(unique_topic("setup")).value("v"));
    actix_rt::time::sleep(watch).await;
    producer.close(Duration::from_millis(100)).await;
    assert!(waiting.await.is_err(), "no broker ever answered");
    silent.gaps()
}

/// With TLS and with SASL, a handshake the broker never answers ends after the setup timeout
/// (300 ms, ±20% jitter as in Java), the next attempt waits twice as long, and so on up to the
/// maximum (1.2 s). Without either, the silent ApiVersions waits for `request.timeout.ms`
/// (30 s): one attempt only.
#[actix_rt::test]
async fn setup_timeouts_double_up_to_their_maximum_and_apiversions_waits_for_the_request_timeout() {
    init_tracing();
    let (tls, sasl, plain) = (Silent::start(), Silent::start(), Silent::start());
    let watch = Duration::from_millis(4_500);
    let (tls_gaps, sasl_gaps, plain_gaps) = futures_util::join!(
        attempts(&tls, &[("security.protocol", "SSL")], watch),
        attempts(
            &sasl,
            &[
                ("security.protocol", "SASL_PLAINTEXT"),
                ("sasl.mechanism", "PLAIN"),
                ("sasl.username", "user"),
                ("sasl.password", "secret"),
            ],
            watch,
        ),
        attempts(&plain, &[], Duration::from_millis(2_500)),
    );
    // Each gap is a setup timeout plus a 10 ms backoff; the SASL one is checked every 50 ms.
    for (what, gaps) in [("TLS", &tls_gaps), ("SASL", &sasl_gaps)] {
        assert!(gaps.len() >= 3, "{what}: attempts {gaps:?}");
        // Upper bounds leave a busy machine 100-250 ms of lateness; lower ones need none.
        println!("{what}: gaps {gaps:?}");
        assert!((0.24..0.5).contains(&gaps[0]), "{what}: first {gaps:?}");
        assert!((0.48..0.9).contains(&gaps[1]), "{what}: doubled {gaps:?}");
        for gap in &gaps[2..] {
            assert!((0.96..1.5).contains(gap), "{what}: at the maximum {gaps:?}");
        }
    }
    let plain_attempts = plain.arrivals.lock().unwrap().len();
    assert_eq!(plain_attempts, 1, "one attempt only: gaps {plain_gaps:?}");
}

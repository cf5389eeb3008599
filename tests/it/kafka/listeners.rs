//! Every listener of the test brokers comes up and enforces what it should, checked with
//! librdkafka's producer (not Herald): the security work tests Herald against these same
//! listeners, so they must be known good first.

use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};

use crate::support::kafka::{certs, shared, Listener, SharedLogsOnFailure};
use crate::support::{init_tracing, unique_topic};

/// Produces one record with `config`; the delivery error if it fails within `within`.
async fn produce_one(
    mut config: ClientConfig,
    topic: &str,
    within: Duration,
) -> Result<(), String> {
    let producer: FutureProducer = config
        .set("message.timeout.ms", within.as_millis().to_string())
        .set("log_level", "2")
        .create()
        .map_err(|e| e.to_string())?;
    producer
        .send(
            FutureRecord::to(topic).key("k").payload("v"),
            Duration::from_secs(10),
        )
        .await
        .map(|_| ())
        .map_err(|(e, _)| e.to_string())
}

#[actix_rt::test]
async fn every_listener_and_mechanism_accepts_librdkafka() {
    init_tracing();
    let _logs = SharedLogsOnFailure;
    let kafka = shared();
    let topic = unique_topic("listeners");
    kafka.create_topic(&topic, 1, 1).await;
    let cases = [
        (Listener::Plaintext, ""),
        (Listener::Ssl, ""),
        (Listener::Mtls, ""),
        (Listener::SaslPlaintext, "PLAIN"),
        (Listener::SaslPlaintext, "SCRAM-SHA-256"),
        (Listener::SaslPlaintext, "SCRAM-SHA-512"),
        (Listener::SaslPlaintext, "OAUTHBEARER"),
        (Listener::SaslSsl, "PLAIN"),
        (Listener::SaslSsl, "SCRAM-SHA-256"),
        (Listener::SaslSsl, "SCRAM-SHA-512"),
        (Listener::SaslSsl, "OAUTHBEARER"),
    ];
    for (listener, mechanism) in cases {
        produce_one(
            kafka.rdkafka_config(listener, mechanism),
            &topic,
            Duration::from_secs(20),
        )
        .await
        .unwrap_or_else(|e| panic!("{listener:?} {mechanism}: {e}"));
    }
}

/// The listeners refuse what they must: no client certificate on MTLS, a wrong password, a CA
/// that did not sign the brokers' certificate. (If they accepted these, the security tests of
/// Herald's failures would prove nothing.)
#[actix_rt::test]
async fn listeners_refuse_bad_credentials() {
    init_tracing();
    let _logs = SharedLogsOnFailure;
    let kafka = shared();
    let topic = unique_topic("refusals");
    kafka.create_topic(&topic, 1, 1).await;

    let mut no_cert = kafka.rdkafka_config(Listener::Ssl, "");
    no_cert.set("bootstrap.servers", kafka.bootstrap_on(Listener::Mtls));
    let mut wrong_password = kafka.rdkafka_config(Listener::SaslPlaintext, "SCRAM-SHA-512");
    wrong_password.set("sasl.password", "not-the-password");
    let mut wrong_plain = kafka.rdkafka_config(Listener::SaslSsl, "PLAIN");
    wrong_plain.set("sasl.password", "not-the-password");
    let mut untrusted = kafka.rdkafka_config(Listener::Ssl, "");
    untrusted.set("ssl.ca.location", certs().untrusted_ca().to_str().unwrap());
    for (what, config) in [
        ("MTLS without a client certificate", no_cert),
        ("SCRAM-SHA-512 with a wrong password", wrong_password),
        ("PLAIN over TLS with a wrong password", wrong_plain),
        ("TLS trusting another CA", untrusted),
    ] {
        // A refusal shows as a record that is never delivered.
        let got = produce_one(config, &topic, Duration::from_secs(3)).await;
        assert!(got.is_err(), "{what}: the broker accepted it");
        println!("{what}: refused ({})", got.unwrap_err());
    }
}

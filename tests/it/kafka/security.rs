//! TLS and SASL against Apache Kafka's own listeners (`support::kafka`): Herald produces
//! through each listener and mechanism, librdkafka's consumer reads back what the broker
//! holds (over PLAINTEXT of the same broker, or over SASL_SSL where the test is about it).
//! Refusals (wrong password, untrusted CA, ...) must fail the records at once with an
//! authentication error naming the broker and the mechanism or the TLS reason, never the
//! password, instead of retrying until max.block.ms or delivery.timeout.ms.

use std::time::Duration;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use herald::sasl::{Token, UnsecuredJws};
use herald::{ErrorKind, ProducerConfig};
use herald_actors::fault_injection::Crash;
use herald_actors::{Produce, Producer, TokenError, TokenProvider};
use rdkafka::config::ClientConfig;

use crate::produce::{produce_and_verify_with, CODECS};
use crate::support::consumer::{read_back, read_indexes};
use crate::support::kafka::{
    certs, shared, Kafka, Listener, Options, SharedLogsOnFailure, KEY_PASSWORD, OAUTH_PRINCIPAL,
    PASSWORD, STORE_PASSWORD, USER,
};
use crate::support::{init_tracing, unique_topic};

/// Far above how long any refusal may take: a record that fails with an authentication
/// error before these passed did not just time out.
const LONG_WAIT_MS: &str = "120000";

fn path(p: std::path::PathBuf) -> String {
    p.to_str().unwrap().to_string()
}

fn jaas(module: &str, user: &str, password: &str) -> String {
    format!(
        "org.apache.kafka.common.security.{module} required username=\"{user}\" \
         password=\"{password}\";"
    )
}

fn plain_jaas(user: &str, password: &str) -> String {
    jaas("plain.PlainLoginModule", user, password)
}

fn scram_jaas(user: &str, password: &str) -> String {
    jaas("scram.ScramLoginModule", user, password)
}

/// Produces `records` (values "0", "1", ...) with `pairs`, and returns each outcome's error
/// text, panicking on a success or on anything but an authentication error.
pub(crate) async fn expect_authentication_failure(
    pairs: &[(&str, &str)],
    records: usize,
) -> Vec<String> {
    let mut pairs = pairs.to_vec();
    pairs.extend([
        ("max.block.ms", LONG_WAIT_MS),
        ("delivery.timeout.ms", LONG_WAIT_MS),
        ("request.timeout.ms", "30000"),
    ]);
    let producer = Producer::from_pairs(pairs).expect("valid config");
    expect_refused(producer, records).await
}

/// [`expect_authentication_failure`] with a producer already started.
async fn expect_refused(producer: Producer, records: usize) -> Vec<String> {
    let topic = unique_topic("refused");
    let sends: Vec<_> = (0..records)
        .map(|i| {
            producer
                .router()
                .send(Produce::new(topic.clone()).value(i.to_string()))
        })
        .collect();
    // Well below max.block.ms: a hang or a silent retry fails here.
    let outcomes = tokio::time::timeout(
        Duration::from_secs(60),
        futures_util::future::join_all(sends),
    )
    .await
    .expect("refused records must fail promptly, not wait for max.block.ms");
    let errors = outcomes
        .into_iter()
        .map(|o| {
            let e = o
                .expect("mailbox")
                .expect_err("the broker refused this client");
            assert!(
                matches!(e.kind(), ErrorKind::Authentication(_)),
                "not an authentication error: {e:?}"
            );
            let text = format!("{e} {e:?}");
            assert!(!text.contains(PASSWORD), "the password leaked: {text}");
            assert!(
                !text.contains("wrong-secret"),
                "the password leaked: {text}"
            );
            text
        })
        .collect();
    // Counted as Java's selector counts them: refused, and no connection made ready.
    let metrics = producer.metrics().await;
    assert!(metrics.failed_authentication_total >= 1, "{metrics:?}");
    assert_eq!(metrics.successful_authentication_total, 0, "{metrics:?}");
    producer.close(Duration::from_secs(5)).await;
    errors
}

#[actix_rt::test]
async fn tls_server_authentication_with_pem_and_pkcs12_truststores_and_librdkafka_alias() {
    init_tracing();
    let _logs = SharedLogsOnFailure;
    let kafka = shared();
    let ca = path(certs().ca());
    let ca_pem = std::fs::read_to_string(certs().ca()).unwrap();
    let truststore = path(certs().truststore_p12());
    let ssl = kafka.bootstrap_on(Listener::Ssl);
    let cases: [&[(&str, &str)]; 4] = [
        &[
            ("ssl.truststore.type", "PEM"),
            ("ssl.truststore.location", &ca),
        ],
        &[
            ("ssl.truststore.type", "PKCS12"),
            ("ssl.truststore.location", &truststore),
            ("ssl.truststore.password", STORE_PASSWORD),
        ],
        &[("ssl.ca.location", &ca)],
        &[
            ("ssl.truststore.type", "PEM"),
            ("ssl.truststore.certificates", &ca_pem),
        ],
    ];
    for trust in cases {
        let topic = unique_topic("tls");
        kafka.create_topic(&topic, 3, 1).await;
        let mut extra = vec![("security.protocol", "SSL")];
        extra.extend_from_slice(trust);
        let mut read = ClientConfig::new();
        read.set("bootstrap.servers", kafka.bootstrap());
        produce_and_verify_with(&ssl, read, &topic, 3, 200, &extra, None).await;
    }
}

#[actix_rt::test]
async fn mutual_tls_with_pem_keys_pkcs12_and_librdkafka_aliases() {
    init_tracing();
    let _logs = SharedLogsOnFailure;
    let kafka = shared();
    let c = certs();
    let (ca, cert, key, p12) = (
        path(c.ca()),
        path(c.client_cert()),
        path(c.client_key()),
        path(c.client_p12()),
    );
    let cert_pem = std::fs::read_to_string(c.client_cert()).unwrap();
    let key_pem = std::fs::read_to_string(c.client_key()).unwrap();
    let mtls = kafka.bootstrap_on(Listener::Mtls);
    let cases: [&[(&str, &str)]; 3] = [
        &[
            ("ssl.keystore.type", "PEM"),
            ("ssl.keystore.certificate.chain", &cert_pem),
            ("ssl.keystore.key", &key_pem),
        ],
        &[
            ("ssl.keystore.type", "PKCS12"),
            ("ssl.keystore.location", &p12),
            ("ssl.keystore.password", STORE_PASSWORD),
        ],
        &[
            ("ssl.certificate.location", &cert),
            ("ssl.key.location", &key),
        ],
    ];
    for identity in cases {
        let topic = unique_topic("mtls");
        kafka.create_topic(&topic, 2, 1).await;
        let mut extra = vec![
            ("security.protocol", "SSL"),
            ("ssl.truststore.type", "PEM"),
            ("ssl.truststore.location", &ca),
        ];
        extra.extend_from_slice(identity);
        let mut read = ClientConfig::new();
        read.set("bootstrap.servers", kafka.bootstrap());
        produce_and_verify_with(&mtls, read, &topic, 2, 100, &extra, None).await;
    }
    // Without a client certificate the MTLS listener refuses the handshake.
    let errors = expect_authentication_failure(
        &[
            ("bootstrap.servers", &mtls),
            ("security.protocol", "SSL"),
            ("ssl.ca.location", &ca),
        ],
        3,
    )
    .await;
    for e in errors {
        assert!(e.contains("TLS"), "{e}");
        assert!(e.contains(&mtls), "names the broker: {e}");
    }
}

/// Java users' stores as Kafka's defaults make them: JKS, by keytool. A JKS truststore with
/// its password and an RSA keystore whose key has a password of its own
/// (`ssl.key.password`); then a truststore given without a password (read unchecked, as the
/// JDK reads it) and no types named, with keytool's own EC key, which the JDK encodes
/// without its public key, under the store's password. Each case through the listener that
/// requires a client certificate. Last, the client's own keystore (JKS, then PKCS12) given
/// as the truststore:
/// as with Java's trust managers, a key entry is trusted for its own certificate, not for
/// the CA in its chain, so the broker's certificate (signed by that CA) is refused.
#[actix_rt::test]
async fn mutual_tls_with_jks_stores_made_by_keytool() {
    init_tracing();
    let _logs = SharedLogsOnFailure;
    let kafka = shared();
    let c = certs();
    let (truststore, rsa, ec) = (
        path(c.truststore_jks()),
        path(c.client_jks()),
        path(c.client_ec_jks()),
    );
    let mtls = kafka.bootstrap_on(Listener::Mtls);
    let cases: [&[(&str, &str)]; 2] = [
        &[
            ("ssl.truststore.type", "JKS"),
            ("ssl.truststore.location", &truststore),
            ("ssl.truststore.password", STORE_PASSWORD),
            ("ssl.keystore.type", "JKS"),
            ("ssl.keystore.location", &rsa),
            ("ssl.keystore.password", STORE_PASSWORD),
            ("ssl.key.password", KEY_PASSWORD),
        ],
        &[
            ("ssl.truststore.location", &truststore),
            ("ssl.keystore.location", &ec),
            ("ssl.keystore.password", STORE_PASSWORD),
        ],
    ];
    for stores in cases {
        let topic = unique_topic("mtls-jks");
        kafka.create_topic(&topic, 2, 1).await;
        let mut extra = vec![("security.protocol", "SSL")];
        extra.extend_from_slice(stores);
        let mut read = ClientConfig::new();
        read.set("bootstrap.servers", kafka.bootstrap());
        produce_and_verify_with(&mtls, read, &topic, 2, 100, &extra, None).await;
    }
    let p12 = path(c.client_p12());
    for keystore in [&rsa, &p12] {
        for e in expect_authentication_failure(
            &[
                ("bootstrap.servers", &kafka.bootstrap_on(Listener::Ssl)),
                ("security.protocol", "SSL"),
                ("ssl.truststore.location", keystore),
                ("ssl.truststore.password", STORE_PASSWORD),
            ],
            1,
        )
        .await
        {
            assert!(
                e.contains("TLS") && e.contains("UnknownIssuer"),
                "{keystore}: {e}"
            );
        }
    }
}

/// The brokers' certificate names 127.0.0.1 and localhost. The same broker reached as
/// `::ffff:127.0.0.1` (the IPv4-mapped IPv6 address: same socket, another name) must be
/// refused while host-name verification is on (the default), and accepted with it off.
#[actix_rt::test]
async fn host_name_verification_on_by_default_and_off_when_empty() {
    init_tracing();
    let _logs = SharedLogsOnFailure;
    let kafka = shared();
    let ca = path(certs().ca());
    let ssl = kafka.bootstrap_on(Listener::Ssl);
    let port = ssl.rsplit_once(':').unwrap().1;
    let mapped = format!("[::ffff:127.0.0.1]:{port}");
    let errors = expect_authentication_failure(
        &[
            ("bootstrap.servers", &mapped),
            ("security.protocol", "SSL"),
            ("ssl.ca.location", &ca),
        ],
        2,
    )
    .await;
    for e in errors {
        assert!(e.contains("TLS") && e.contains("not valid for name"), "{e}");
    }
    // Off: the same address works (the brokers it learns from metadata are 127.0.0.1).
    let topic = unique_topic("no-hostname-check");
    kafka.create_topic(&topic, 1, 1).await;
    let mut read = ClientConfig::new();
    read.set("bootstrap.servers", kafka.bootstrap());
    produce_and_verify_with(
        &mapped,
        read,
        &topic,
        1,
        50,
        &[
            ("security.protocol", "SSL"),
            ("ssl.ca.location", &ca),
            ("ssl.endpoint.identification.algorithm", ""),
        ],
        None,
    )
    .await;
}

#[actix_rt::test]
async fn sasl_plaintext_every_mechanism_with_java_keys_and_librdkafka_aliases() {
    init_tracing();
    let _logs = SharedLogsOnFailure;
    let kafka = shared();
    let sasl = kafka.bootstrap_on(Listener::SaslPlaintext);
    for (mechanism, jaas) in [
        ("PLAIN", plain_jaas(USER, PASSWORD)),
        ("SCRAM-SHA-256", scram_jaas(USER, PASSWORD)),
        ("SCRAM-SHA-512", scram_jaas(USER, PASSWORD)),
    ] {
        let java: &[(&str, &str)] = &[
            ("security.protocol", "SASL_PLAINTEXT"),
            ("sasl.mechanism", mechanism),
            ("sasl.jaas.config", &jaas),
        ];
        let librdkafka: &[(&str, &str)] = &[
            ("security.protocol", "SASL_PLAINTEXT"),
            ("sasl.mechanisms", mechanism),
            ("sasl.username", USER),
            ("sasl.password", PASSWORD),
        ];
        for extra in [java, librdkafka] {
            let topic = unique_topic("sasl");
            kafka.create_topic(&topic, 2, 1).await;
            let mut read = ClientConfig::new();
            read.set("bootstrap.servers", kafka.bootstrap());
            produce_and_verify_with(&sasl, read, &topic, 2, 100, extra, None).await;
        }
    }
}

/// OAUTHBEARER with an unsecured JWS built by Herald from the JAAS options, checked by
/// Kafka's default (unsecured) validator.
#[actix_rt::test]
async fn oauthbearer_unsecured_jws() {
    init_tracing();
    let _logs = SharedLogsOnFailure;
    let kafka = shared();
    let jaas = format!(
        "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required \
         unsecuredLoginStringClaim_sub=\"{OAUTH_PRINCIPAL}\";"
    );
    for listener in [Listener::SaslPlaintext, Listener::SaslSsl] {
        let topic = unique_topic("oauth");
        kafka.create_topic(&topic, 1, 1).await;
        let ca = path(certs().ca());
        let mut read = ClientConfig::new();
        read.set("bootstrap.servers", kafka.bootstrap());
        produce_and_verify_with(
            &kafka.bootstrap_on(listener),
            read,
            &topic,
            1,
            50,
            &[
                ("security.protocol", listener.security_protocol()),
                ("ssl.ca.location", &ca),
                ("sasl.mechanism", "OAUTHBEARER"),
                ("sasl.jaas.config", &jaas),
            ],
            None,
        )
        .await;
    }
}

/// A broker whose unsecured validator requires a scope (`unsecuredValidatorRequiredScope`)
/// takes the token of a JAAS config that sets the scope as Kafka's handler does, with
/// `unsecuredLoginListClaim_scope`, and refuses one without it. Herald once dropped list
/// (and number) claims silently, and the broker refused the token.
#[actix_rt::test]
async fn oauthbearer_unsecured_jws_with_a_list_scope_claim() {
    init_tracing();
    let validator = format!(
        "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required \
         unsecuredLoginStringClaim_sub=\"{OAUTH_PRINCIPAL}\" unsecuredValidatorRequiredScope=\"kafka\";"
    );
    let kafka = Kafka::start(Options::single().prop(
        "listener.name.sasl_plaintext.oauthbearer.sasl.jaas.config",
        &validator,
    ));
    let bootstrap = kafka.bootstrap_on(Listener::SaslPlaintext);
    let jaas = |claims: &str| {
        format!(
            "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required \
             unsecuredLoginStringClaim_sub=\"{OAUTH_PRINCIPAL}\" {claims};"
        )
    };
    let scoped =
        jaas(r#"unsecuredLoginListClaim_scope=",kafka,produce" unsecuredLoginNumberClaim_n="1""#);
    let topic = unique_topic("oauth-scope");
    kafka.create_topic(&topic, 1, 1).await;
    let mut read = ClientConfig::new();
    read.set("bootstrap.servers", kafka.bootstrap());
    produce_and_verify_with(
        &bootstrap,
        read,
        &topic,
        1,
        20,
        &[
            ("security.protocol", "SASL_PLAINTEXT"),
            ("sasl.mechanism", "OAUTHBEARER"),
            ("sasl.jaas.config", &scoped),
        ],
        None,
    )
    .await;
    let unscoped = jaas("unsecuredLoginStringClaim_other=\"x\"");
    let e = expect_authentication_failure(
        &[
            ("bootstrap.servers", &bootstrap),
            ("security.protocol", "SASL_PLAINTEXT"),
            ("sasl.mechanism", "OAUTHBEARER"),
            ("sasl.jaas.config", &unscoped),
        ],
        1,
    )
    .await;
    assert!(e[0].contains("insufficient_scope"), "{e:?}");
}

/// A static token in `sasl.jaas.config` (Herald's `token` option): here an unsecured JWS
/// made by the test, which Kafka's default validator accepts.
#[actix_rt::test]
async fn oauthbearer_static_token_from_jaas() {
    init_tracing();
    let _logs = SharedLogsOnFailure;
    let kafka = shared();
    let token = UnsecuredJws::new(OAUTH_PRINCIPAL)
        .lifetime(Duration::from_secs(3600))
        .build(SystemTime::now())
        .unwrap();
    let jaas = format!(
        "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required \
         token=\"{}\";",
        token.value().expose()
    );
    let topic = unique_topic("oauth-static");
    kafka.create_topic(&topic, 1, 1).await;
    let mut read = ClientConfig::new();
    read.set("bootstrap.servers", kafka.bootstrap());
    produce_and_verify_with(
        &kafka.bootstrap_on(Listener::SaslPlaintext),
        read,
        &topic,
        1,
        50,
        &[
            ("security.protocol", "SASL_PLAINTEXT"),
            ("sasl.mechanism", "OAUTHBEARER"),
            ("sasl.jaas.config", &jaas),
        ],
        None,
    )
    .await;
}

/// An application's token provider: unsecured JWSs for [`OAUTH_PRINCIPAL`] valid for
/// `lifetime`, counting the calls; or failing when `lifetime` is `None`.
struct Jws {
    calls: Arc<AtomicU32>,
    lifetime: Option<Duration>,
}

impl TokenProvider for Jws {
    fn token(&self) -> Pin<Box<dyn Future<Output = Result<Token, TokenError>> + Send>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let lifetime = self.lifetime;
        Box::pin(async move {
            let lifetime = lifetime.ok_or("identity provider unreachable")?;
            Ok(UnsecuredJws::new(OAUTH_PRINCIPAL)
                .lifetime(lifetime)
                .build(SystemTime::now())?)
        })
    }
}

fn token_producer(bootstrap: &str, provider: Jws, extra: &[(&str, &str)]) -> Producer {
    let mut pairs = vec![
        ("bootstrap.servers", bootstrap),
        ("security.protocol", "SASL_PLAINTEXT"),
        ("sasl.mechanism", "OAUTHBEARER"),
        ("linger.ms", "2"),
    ];
    pairs.extend_from_slice(extra);
    let config = ProducerConfig::from_pairs(pairs).expect("valid config");
    Producer::builder(config)
        .token_provider(provider)
        .start()
        .expect("starts without sasl.jaas.config")
}

/// Sends `rounds` rounds of 20 records 100 ms apart; every one must succeed.
async fn flow(producer: &Producer, topic: &str, rounds: usize) -> usize {
    flow_from(producer, topic, 0, rounds).await
}

/// [`flow`] going on after `sent` records (values count on from there); returns the total.
async fn flow_from(producer: &Producer, topic: &str, mut sent: usize, rounds: usize) -> usize {
    for _ in 0..rounds {
        let sends: Vec<_> = (sent..sent + 20)
            .map(|i| {
                producer.router().send(
                    Produce::new(topic.to_string())
                        .key(format!("k{}", i % 7))
                        .value(i.to_string()),
                )
            })
            .collect();
        for (i, o) in futures_util::future::join_all(sends)
            .await
            .into_iter()
            .enumerate()
        {
            o.expect("mailbox")
                .unwrap_or_else(|e| panic!("record {} failed: {e}", sent + i));
        }
        sent += 20;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    sent
}

/// Reads `topic` back: every record of `0..sent` once, in send order per partition.
async fn assert_once_in_order(kafka: &Kafka, topic: &str, partitions: i32, sent: usize) {
    let back = read_back(
        &kafka.bootstrap(),
        topic,
        partitions,
        sent,
        Duration::from_secs(120),
    )
    .await;
    let mut all: Vec<usize> = Vec::new();
    for p in 0..partitions {
        let got = read_indexes(&back, p);
        let mut sorted = got.clone();
        sorted.sort_unstable();
        assert_eq!(got, sorted, "partition {p} out of send order");
        all.extend(got);
    }
    all.sort_unstable();
    assert_eq!(
        all,
        (0..sent).collect::<Vec<_>>(),
        "every record exactly once"
    );
}

/// Tokens from the application's provider, without sasl.jaas.config; a provider that fails
/// fails the records at once with its reason.
#[actix_rt::test]
async fn oauthbearer_token_provider() {
    init_tracing();
    let _logs = SharedLogsOnFailure;
    let kafka = shared();
    let topic = unique_topic("oauth-provider");
    kafka.create_topic(&topic, 2, 1).await;
    let calls = Arc::new(AtomicU32::new(0));
    let sasl = kafka.bootstrap_on(Listener::SaslPlaintext);
    let producer = token_producer(
        &sasl,
        Jws {
            calls: calls.clone(),
            lifetime: Some(Duration::from_secs(3600)),
        },
        &[],
    );
    let sent = flow(&producer, &topic, 5).await;
    assert!(producer.close(Duration::from_secs(10)).await);
    // One token serves every connection while it is fresh.
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_once_in_order(kafka, &topic, 2, sent).await;

    let failing = token_producer(
        &sasl,
        Jws {
            calls: Arc::default(),
            lifetime: None,
        },
        &[
            ("max.block.ms", LONG_WAIT_MS),
            ("delivery.timeout.ms", LONG_WAIT_MS),
        ],
    );
    for e in expect_refused(failing, 2).await {
        assert!(
            e.contains("token provider failed: identity provider unreachable"),
            "{e}"
        );
    }
}

/// Every codec once over SASL_SSL with SCRAM-SHA-512, read back by librdkafka over SASL_SSL.
#[actix_rt::test]
async fn sasl_ssl_scram_sha_512_every_codec() {
    init_tracing();
    let _logs = SharedLogsOnFailure;
    let kafka = shared();
    let ca = path(certs().ca());
    let jaas = scram_jaas(USER, PASSWORD);
    let bootstrap = kafka.bootstrap_on(Listener::SaslSsl);
    for codec in CODECS {
        let topic = unique_topic(&format!("sasl-ssl-{codec}"));
        kafka.create_topic(&topic, 3, 1).await;
        produce_and_verify_with(
            &bootstrap,
            kafka.rdkafka_config(Listener::SaslSsl, "SCRAM-SHA-512"),
            &topic,
            3,
            300,
            &[
                ("security.protocol", "SASL_SSL"),
                ("ssl.truststore.location", &ca),
                ("sasl.mechanism", "SCRAM-SHA-512"),
                ("sasl.jaas.config", &jaas),
                ("compression.type", codec),
            ],
            None,
        )
        .await;
    }
}

#[actix_rt::test]
async fn refusals_fail_records_promptly_with_the_reason() {
    init_tracing();
    let _logs = SharedLogsOnFailure;
    let kafka = shared();
    let ca = path(certs().ca());
    let untrusted = path(certs().untrusted_ca());
    let sasl = kafka.bootstrap_on(Listener::SaslPlaintext);
    let sasl_ssl = kafka.bootstrap_on(Listener::SaslSsl);
    let wrong = scram_jaas(USER, "wrong-secret");
    let unknown = plain_jaas("mallory", "wrong-secret");

    // A wrong password: SCRAM over SASL_PLAINTEXT, with the Java key.
    for e in expect_authentication_failure(
        &[
            ("bootstrap.servers", &sasl),
            ("security.protocol", "SASL_PLAINTEXT"),
            ("sasl.mechanism", "SCRAM-SHA-512"),
            ("sasl.jaas.config", &wrong),
        ],
        3,
    )
    .await
    {
        assert!(e.contains(&sasl), "names the broker: {e}");
        assert!(e.contains("SCRAM-SHA-512"), "names the mechanism: {e}");
        assert!(e.contains("SASL_AUTHENTICATION_FAILED"), "{e}");
    }
    // An unknown user: PLAIN over SASL_SSL, with librdkafka's aliases for the password.
    let e = expect_authentication_failure(
        &[
            ("bootstrap.servers", &sasl_ssl),
            ("security.protocol", "SASL_SSL"),
            ("ssl.ca.location", &ca),
            ("sasl.mechanism", "PLAIN"),
            ("sasl.jaas.config", &unknown),
        ],
        1,
    )
    .await;
    assert!(e[0].contains("PLAIN") && e[0].contains(&sasl_ssl), "{e:?}");
    let e = expect_authentication_failure(
        &[
            ("bootstrap.servers", &sasl_ssl),
            ("security.protocol", "SASL_SSL"),
            ("ssl.ca.location", &ca),
            ("sasl.mechanisms", "SCRAM-SHA-256"),
            ("sasl.username", USER),
            ("sasl.password", "wrong-secret"),
        ],
        1,
    )
    .await;
    assert!(e[0].contains("SCRAM-SHA-256"), "{e:?}");
    // A CA that did not sign the broker's certificate.
    for e in expect_authentication_failure(
        &[
            ("bootstrap.servers", &kafka.bootstrap_on(Listener::Ssl)),
            ("security.protocol", "SSL"),
            ("ssl.truststore.location", &untrusted),
        ],
        2,
    )
    .await
    {
        assert!(e.contains("TLS") && e.contains("UnknownIssuer"), "{e}");
    }
}

/// Large records over TLS through a small socket send buffer: the socket fills while a
/// request is written, so TLS may hold the tail of its records when the request's last piece
/// is taken (whether it does depends on where the request ends against the socket's
/// drains, hence records of many sizes). The writer must push that tail out (flush) instead
/// of leaving it for its next request: each record is acknowledged within seconds, far below
/// `request.timeout.ms` (60 s), whose expiry would otherwise be the only thing to free it (as
/// a lost request, written again). Read back once each, whole, in order.
#[actix_rt::test]
async fn large_records_over_tls_with_a_small_send_buffer_are_not_held_back() {
    init_tracing();
    let _logs = SharedLogsOnFailure;
    let kafka = shared();
    let ca = path(certs().ca());
    let topic = unique_topic("tls-large");
    kafka.create_topic(&topic, 1, 1).await;
    let producer = Producer::from_pairs([
        (
            "bootstrap.servers",
            kafka.bootstrap_on(Listener::Ssl).as_str(),
        ),
        ("security.protocol", "SSL"),
        ("ssl.ca.location", &ca),
        ("send.buffer.bytes", "4096"),
        ("linger.ms", "0"),
        ("request.timeout.ms", "60000"),
        ("delivery.timeout.ms", "180000"),
    ])
    .expect("valid config");
    // From 900 KiB (below the broker's message.max.bytes, 1 MiB and a little, with the
    // batch's overhead) down in steps that are no multiple of TLS's 16 KiB records or of
    // rustls's 64 KiB buffer, so that requests end at many points of a socket drain.
    const RECORDS: usize = 12;
    let value = |i: usize| {
        let mut v = format!("{i}:").into_bytes();
        v.resize((900 - 37 * i) * 1024, b'a' + i as u8);
        v
    };
    for i in 0..RECORDS {
        let sent = std::time::Instant::now();
        let send = producer
            .router()
            .send(Produce::new(topic.clone()).value(value(i)));
        let md = tokio::time::timeout(Duration::from_secs(15), send)
            .await
            .unwrap_or_else(|_| {
                panic!("record {i} not acknowledged within 15 s: its request was held back")
            })
            .expect("mailbox")
            .unwrap_or_else(|e| panic!("record {i} failed: {e}"));
        assert_eq!(md.offset, i as i64, "record {i}");
        println!("record {i} acknowledged in {:?}", sent.elapsed());
    }
    let metrics = producer.metrics().await;
    assert_eq!(metrics.record_retry_total, 0, "{metrics:?}");
    assert!(producer.close(Duration::from_secs(10)).await);
    let back = read_back(
        &kafka.bootstrap(),
        &topic,
        1,
        RECORDS,
        Duration::from_secs(30),
    )
    .await;
    let values: Vec<Vec<u8>> = back
        .get(&0)
        .map(|p| {
            p.iter()
                .map(|c| c.value.clone().unwrap_or_default())
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(values.len(), RECORDS, "each record once");
    for (i, v) in values.iter().enumerate() {
        assert!(*v == value(i), "record {i} read back whole, in order");
    }
}

/// `ssl.cipher.suites` with Java's names: a TLS 1.2 suite the broker's RSA certificate can
/// use carries records (read back by librdkafka), and one it cannot (ECDSA) leaves no suite
/// in common, so the handshake is refused and the records fail with the TLS reason: the
/// choice really narrows what is offered. `ssl.protocol` as Java configs carry it
/// (`TLSv1.2`, often set for old JDKs) is taken too, and caps the versions offered: with a
/// TLS 1.3 suite beside the TLS 1.2 one, records go over TLS 1.2.
#[actix_rt::test]
async fn cipher_suites_chosen_by_java_names_are_the_only_ones_offered() {
    init_tracing();
    let _logs = SharedLogsOnFailure;
    let kafka = shared();
    let ca = path(certs().ca());
    let ssl = kafka.bootstrap_on(Listener::Ssl);
    let topic = unique_topic("tls-suite");
    kafka.create_topic(&topic, 2, 1).await;
    let mut read = ClientConfig::new();
    read.set("bootstrap.servers", kafka.bootstrap());
    let suite = [
        ("security.protocol", "SSL"),
        ("ssl.ca.location", ca.as_str()),
        ("ssl.enabled.protocols", "TLSv1.2"),
        ("ssl.cipher.suites", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"),
    ];
    produce_and_verify_with(&ssl, read, &topic, 2, 100, &suite, None).await;
    for e in expect_authentication_failure(
        &[
            ("bootstrap.servers", &ssl),
            ("security.protocol", "SSL"),
            ("ssl.ca.location", &ca),
            ("ssl.enabled.protocols", "TLSv1.2"),
            (
                "ssl.cipher.suites",
                "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
            ),
        ],
        2,
    )
    .await
    {
        assert!(e.contains("TLS") && e.contains("HandshakeFailure"), "{e}");
    }
    let topic = unique_topic("tls-protocol");
    kafka.create_topic(&topic, 2, 1).await;
    let mut read = ClientConfig::new();
    read.set("bootstrap.servers", kafka.bootstrap());
    let capped = [
        ("security.protocol", "SSL"),
        ("ssl.truststore.location", ca.as_str()),
        ("ssl.truststore.type", "PEM"),
        ("ssl.protocol", "TLSv1.2"),
        (
            "ssl.cipher.suites",
            "TLS_AES_128_GCM_SHA256,TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        ),
    ];
    produce_and_verify_with(&ssl, read, &topic, 2, 100, &capped, None).await;
}

/// A broker certificate that expired (signed by the trusted CA, valid only on 2020-01-01)
/// is refused like an untrusted one: the records fail at once, and the reason says the
/// certificate expired. A private broker presents it on its SSL listener.
#[actix_rt::test]
async fn an_expired_broker_certificate_fails_records_with_the_reason() {
    init_tracing();
    let expired = path(certs().expired_server_p12());
    let kafka =
        Kafka::start(Options::single().prop("listener.name.ssl.ssl.keystore.location", &expired));
    let ca = path(certs().ca());
    for e in expect_authentication_failure(
        &[
            ("bootstrap.servers", &kafka.bootstrap_on(Listener::Ssl)),
            ("security.protocol", "SSL"),
            ("ssl.truststore.location", &ca),
        ],
        2,
    )
    .await
    {
        assert!(
            e.contains("TLS") && e.contains("certificate expired"),
            "{e}"
        );
    }
}

/// The console producer exits 1 and prints why when the broker refuses it.
#[actix_rt::test]
async fn console_producer_exits_1_when_authentication_fails() {
    init_tracing();
    let _logs = SharedLogsOnFailure;
    let kafka = shared();
    let wrong = scram_jaas(USER, "wrong-secret");
    let output = crate::examples::console_producer(
        &[
            "-b",
            &kafka.bootstrap_on(Listener::SaslPlaintext),
            "-t",
            &unique_topic("console-refused"),
            "-X",
            "security.protocol=SASL_PLAINTEXT",
            "-X",
            "sasl.mechanism=SCRAM-SHA-256",
            "-X",
            &format!("sasl.jaas.config={wrong}"),
            "-X",
            &format!("max.block.ms={LONG_WAIT_MS}"),
        ],
        b"a\nb\n".to_vec(),
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("authentication failed") && stderr.contains("SCRAM-SHA-256"),
        "{stderr}"
    );
    assert!(!stderr.contains("wrong-secret"), "{stderr}");
}

/// KIP-368: with `connections.max.reauth.ms` of 3 s, the broker gives each session that
/// lifetime and closes connections that let it lapse. Records keep flowing for several
/// lifetimes, with SCRAM and with OAUTHBEARER tokens from a provider (refreshed as they near
/// expiry): none fails, none is retried or written twice, order per partition holds. The
/// same private broker enables only SCRAM-SHA-512 and OAUTHBEARER: PLAIN is refused as a
/// mechanism.
#[actix_rt::test]
async fn reauthentication_keeps_records_flowing_and_a_disabled_mechanism_is_refused() {
    init_tracing();
    let kafka = Kafka::start(
        Options::single()
            .prop("connections.max.reauth.ms", "3000")
            .prop("sasl.enabled.mechanisms", "SCRAM-SHA-512,OAUTHBEARER"),
    );
    let topic = unique_topic("reauth");
    kafka.create_topic(&topic, 2, 1).await;
    let jaas = scram_jaas(USER, PASSWORD);
    let sasl = kafka.bootstrap_on(Listener::SaslPlaintext);
    let producer = Producer::from_pairs([
        ("bootstrap.servers", sasl.as_str()),
        ("security.protocol", "SASL_PLAINTEXT"),
        ("sasl.mechanism", "SCRAM-SHA-512"),
        ("sasl.jaas.config", &jaas),
        ("linger.ms", "2"),
        ("metadata.max.age.ms", "1000"),
    ])
    .expect("valid config");
    let sent = flow(&producer, &topic, 100).await;
    let metrics = producer.metrics().await;
    assert_eq!(metrics.record_error_total, 0);
    // Without re-authentication the broker would close each connection after 3 s, and the
    // batches in flight would be retried.
    assert!(
        metrics.successful_reauthentication_total >= 2,
        "{metrics:?}"
    );
    assert_eq!(metrics.record_retry_total, 0, "{metrics:?}");
    // Re-authentications are not first authentications, and took some time each.
    assert_eq!(metrics.failed_reauthentication_total, 0, "{metrics:?}");
    assert!(metrics.reauthentication_latency_max > 0.0, "{metrics:?}");
    assert!(
        (1..=metrics.connection_creation_total).contains(&metrics.successful_authentication_total),
        "{metrics:?}"
    );
    println!("re-authentication: {metrics:?}");
    assert!(producer.close(Duration::from_secs(10)).await);
    assert_once_in_order(&kafka, &topic, 2, sent).await;

    // OAUTHBEARER tokens from a provider, valid for 4 s: each re-authentication (within 3 s)
    // after 80% of a token's lifetime takes a new one, before the old one expires.
    let topic = unique_topic("reauth-oauth");
    kafka.create_topic(&topic, 2, 1).await;
    let calls = Arc::new(AtomicU32::new(0));
    let producer = token_producer(
        &sasl,
        Jws {
            calls: calls.clone(),
            lifetime: Some(Duration::from_secs(4)),
        },
        &[("metadata.max.age.ms", "1000")],
    );
    let sent = flow(&producer, &topic, 70).await;
    let metrics = producer.metrics().await;
    assert!(
        metrics.successful_reauthentication_total >= 2,
        "{metrics:?}"
    );
    assert_eq!(metrics.record_retry_total, 0, "{metrics:?}");
    assert!(producer.close(Duration::from_secs(10)).await);
    assert!(calls.load(Ordering::SeqCst) >= 2, "tokens were refreshed");
    assert_once_in_order(&kafka, &topic, 2, sent).await;

    // Re-authentication does not keep an idle connection open (Java re-authenticates only
    // with something to send): with connections.max.idle.ms 8 s and sessions of 3 s, the
    // connections close once idle, where renewing every session kept them open for good.
    // A record sent after its session lapsed while idle (4 s, seconds from either edge)
    // renews it first, then goes.
    let topic = unique_topic("reauth-idle");
    kafka.create_topic(&topic, 1, 1).await;
    let producer = Producer::from_pairs([
        ("bootstrap.servers", sasl.as_str()),
        ("security.protocol", "SASL_PLAINTEXT"),
        ("sasl.mechanism", "SCRAM-SHA-512"),
        ("sasl.jaas.config", &jaas),
        ("connections.max.idle.ms", "8000"),
        ("metadata.max.age.ms", "600000"),
    ])
    .expect("valid config");
    let send = |i: u64| producer.send(Produce::new(topic.clone()).value(i.to_string()));
    send(0).await.expect("delivered");
    tokio::time::sleep(Duration::from_secs(4)).await;
    send(1).await.expect("delivered after the session lapsed");
    let before = producer.metrics().await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    send(2).await.expect("delivered on a new connection");
    let after = producer.metrics().await;
    println!("idle re-authentication: {before:?} then {after:?}");
    assert!(
        after.connection_creation_total > before.connection_creation_total,
        "the idle connection was closed: {after:?}"
    );
    assert!(
        after.successful_reauthentication_total >= 1,
        "the lapsed session was renewed: {after:?}"
    );
    assert_eq!(after.record_retry_total, 0, "{after:?}");
    assert_eq!(after.record_requeue_unsent_total, 0, "{after:?}");
    assert_eq!(after.failed_reauthentication_total, 0, "{after:?}");
    assert!(producer.close(Duration::from_secs(10)).await);
    assert_once_in_order(&kafka, &topic, 1, 3).await;

    for e in expect_authentication_failure(
        &[
            ("bootstrap.servers", &sasl),
            ("security.protocol", "SASL_PLAINTEXT"),
            ("sasl.mechanism", "PLAIN"),
            ("sasl.jaas.config", &plain_jaas(USER, PASSWORD)),
        ],
        2,
    )
    .await
    {
        assert!(
            e.contains("UNSUPPORTED_SASL_MECHANISM") && e.contains("SCRAM-SHA-512"),
            "names the mechanisms the broker enables: {e}"
        );
    }
}

/// A token provider for [`reauthentication_survives_connection_restarts`]: unsecured JWSs
/// for [`OAUTH_PRINCIPAL`] valid for 4 s; on the calls numbered in `crash_on` it first crashes
/// the producer's connections (fault injection) and answers only 200 ms later, so the crash
/// takes the connection while it waits for that token.
struct CrashingJws {
    calls: Arc<AtomicU32>,
    crash_on: &'static [u32],
    crashes: Arc<AtomicU32>,
    connections: Arc<std::sync::Mutex<Vec<actix::Recipient<Crash>>>>,
}

impl TokenProvider for CrashingJws {
    fn token(&self) -> Pin<Box<dyn Future<Output = Result<Token, TokenError>> + Send>> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        let crash = self.crash_on.contains(&n);
        if crash {
            let connections = self.connections.lock().unwrap();
            for c in connections.iter() {
                c.do_send(Crash::Panic);
            }
            self.crashes
                .fetch_add(connections.len() as u32, Ordering::SeqCst);
        }
        Box::pin(async move {
            if crash {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Ok(UnsecuredJws::new(OAUTH_PRINCIPAL)
                .lifetime(Duration::from_secs(4))
                .build(SystemTime::now())?)
        })
    }
}

/// KIP-368 across supervised restarts of the connection actors: a restart while a connection
/// is ready keeps its re-authentication due, and one that cuts a re-authentication while it
/// waits for its token (every re-authentication here takes a new token: 4 s tokens, 3 s
/// sessions) starts that re-authentication again. No connection is dropped for a lapsed
/// session (none is made after the first ones, none authenticates anew), no record fails or
/// is retried, and each is written once, in order.
#[actix_rt::test]
async fn reauthentication_survives_connection_restarts() {
    init_tracing();
    let kafka = Kafka::start(
        Options::single()
            .prop("connections.max.reauth.ms", "3000")
            .prop("sasl.enabled.mechanisms", "OAUTHBEARER"),
    );
    let topic = unique_topic("reauth-restart");
    kafka.create_topic(&topic, 2, 1).await;
    let sasl = kafka.bootstrap_on(Listener::SaslPlaintext);
    let calls = Arc::new(AtomicU32::new(0));
    let crashes = Arc::new(AtomicU32::new(0));
    let connections = Arc::new(std::sync::Mutex::new(Vec::new()));
    let config = ProducerConfig::from_pairs([
        ("bootstrap.servers", sasl.as_str()),
        ("security.protocol", "SASL_PLAINTEXT"),
        ("sasl.mechanism", "OAUTHBEARER"),
        ("linger.ms", "2"),
        ("metadata.max.age.ms", "1000"),
    ])
    .expect("valid config");
    let producer = Producer::builder(config)
        .token_provider(CrashingJws {
            calls: calls.clone(),
            // The first call is the first authentication; the later ones re-authentications
            // (a connection dropped and made again would show in the metrics below).
            crash_on: &[2, 4],
            crashes: crashes.clone(),
            connections: connections.clone(),
        })
        .start()
        .expect("starts");
    let mut sent = flow_from(&producer, &topic, 0, 5).await;
    let fi = producer.fault_injection();
    *connections.lock().unwrap() = fi.connections();
    let before = producer.metrics().await;
    let mut crashed = 0;
    let mut reauthenticated_at_last_crash = 0;
    for _ in 0..2 {
        sent = flow_from(&producer, &topic, sent, 20).await;
        for c in fi.connections() {
            c.do_send(Crash::Panic);
            crashed += 1;
        }
        reauthenticated_at_last_crash = producer.metrics().await.successful_reauthentication_total;
    }
    sent = flow_from(&producer, &topic, sent, 60).await;
    let metrics = producer.metrics().await;
    println!("re-authentication across restarts: {metrics:?}");
    assert!(
        calls.load(Ordering::SeqCst) > 4 && crashes.load(Ordering::SeqCst) > 0,
        "the provider crashed connections waiting for their tokens: {} calls",
        calls.load(Ordering::SeqCst)
    );
    let restarts = fi.restarts_of("connection").unwrap();
    assert_eq!(
        restarts,
        crashed + u64::from(crashes.load(Ordering::SeqCst)),
        "every crash was followed by one restart"
    );
    assert_eq!(
        (
            metrics.connection_creation_total,
            metrics.successful_authentication_total
        ),
        (
            before.connection_creation_total,
            before.successful_authentication_total
        ),
        "no connection was dropped and made again: {metrics:?}"
    );
    assert!(
        metrics.successful_reauthentication_total >= reauthenticated_at_last_crash + 2,
        "re-authentications go on after the restarts: {metrics:?}"
    );
    assert_eq!(metrics.failed_reauthentication_total, 0, "{metrics:?}");
    assert_eq!(metrics.record_error_total, 0, "{metrics:?}");
    assert_eq!(metrics.record_retry_total, 0, "{metrics:?}");
    assert!(producer.broken().is_none());
    assert!(producer.close(Duration::from_secs(10)).await);
    assert_once_in_order(&kafka, &topic, 2, sent).await;
}

/// A token provider whose `hang_on`-th call never answers; the others answer with unsecured
/// JWSs for [`OAUTH_PRINCIPAL`] valid for 4 s.
struct HangingJws {
    calls: Arc<AtomicU32>,
    hang_on: u32,
}

impl TokenProvider for HangingJws {
    fn token(&self) -> Pin<Box<dyn Future<Output = Result<Token, TokenError>> + Send>> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        if n == self.hang_on {
            return Box::pin(std::future::pending());
        }
        Box::pin(async move {
            Ok(UnsecuredJws::new(OAUTH_PRINCIPAL)
                .lifetime(Duration::from_secs(4))
                .build(SystemTime::now())?)
        })
    }
}

/// A re-authentication whose token provider never answers (its second call: 4 s tokens, 3 s
/// sessions, so the first re-authentication needs a new token) gives up after
/// `socket.connection.setup.timeout.ms`, as a first authentication does: the connection is
/// dropped and made again with the next token, and the records it held back go on (long
/// before delivery.timeout.ms), each written once, in order.
#[actix_rt::test]
async fn a_reauthentication_waits_for_its_token_no_longer_than_the_setup_timeout() {
    init_tracing();
    let kafka = Kafka::start(
        Options::single()
            .prop("connections.max.reauth.ms", "3000")
            .prop("sasl.enabled.mechanisms", "OAUTHBEARER"),
    );
    let topic = unique_topic("reauth-hang");
    kafka.create_topic(&topic, 2, 1).await;
    let sasl = kafka.bootstrap_on(Listener::SaslPlaintext);
    let calls = Arc::new(AtomicU32::new(0));
    let config = ProducerConfig::from_pairs([
        ("bootstrap.servers", sasl.as_str()),
        ("security.protocol", "SASL_PLAINTEXT"),
        ("sasl.mechanism", "OAUTHBEARER"),
        ("linger.ms", "2"),
        ("socket.connection.setup.timeout.ms", "1000"),
        ("delivery.timeout.ms", LONG_WAIT_MS),
        ("max.block.ms", LONG_WAIT_MS),
    ])
    .expect("valid config");
    let producer = Producer::builder(config)
        .token_provider(HangingJws {
            calls: calls.clone(),
            hang_on: 2,
        })
        .start()
        .expect("starts");
    let sent = flow_from(&producer, &topic, 0, 5).await;
    let before = producer.metrics().await;
    let sent = tokio::time::timeout(
        Duration::from_secs(60),
        flow_from(&producer, &topic, sent, 55),
    )
    .await
    .expect("records go on after the hanging token fetch is given up");
    let metrics = producer.metrics().await;
    println!("re-authentication with a hanging provider: {metrics:?}");
    assert!(
        calls.load(Ordering::SeqCst) >= 3,
        "a new token after the hang"
    );
    assert!(
        metrics.connection_creation_total > before.connection_creation_total,
        "the connection was dropped and made again: {metrics:?}"
    );
    assert_eq!(metrics.record_error_total, 0, "{metrics:?}");
    assert!(producer.close(Duration::from_secs(10)).await);
    assert_once_in_order(&kafka, &topic, 2, sent).await;
}

/// The formatted config of a SASL producer holds no password.
#[test]
fn formatted_security_config_hides_secrets() {
    let jaas = scram_jaas(USER, PASSWORD);
    let config = herald::ProducerConfig::from_pairs([
        ("bootstrap.servers", "127.0.0.1:9092"),
        ("security.protocol", "SASL_SSL"),
        ("sasl.mechanism", "SCRAM-SHA-512"),
        ("sasl.jaas.config", jaas.as_str()),
        ("sasl.password", PASSWORD),
        ("ssl.keystore.password", STORE_PASSWORD),
    ])
    .unwrap();
    let text = format!("{config:?} {:?}", config.to_pairs());
    assert!(!text.contains(PASSWORD), "{text}");
    assert!(!text.contains(STORE_PASSWORD), "{text}");
}

/// The quickstart example over SASL_SSL with librdkafka's names, which both Herald and the
/// example's librdkafka read-back take: the examples reach a secured cluster as they are.
#[actix_rt::test]
async fn quickstart_over_sasl_ssl_with_librdkafka_names() {
    init_tracing();
    let _logs = SharedLogsOnFailure;
    let kafka = shared();
    let topic = unique_topic("quickstart-sasl-ssl");
    kafka.create_topic(&topic, 3, 1).await;
    let ca = path(certs().ca());
    let settings = [
        "security.protocol=SASL_SSL".to_string(),
        format!("ssl.ca.location={ca}"),
        "sasl.mechanisms=SCRAM-SHA-512".to_string(),
        format!("sasl.username={USER}"),
        format!("sasl.password={PASSWORD}"),
    ];
    let mut args = vec![
        "--bootstrap-servers".to_string(),
        kafka.bootstrap_on(Listener::SaslSsl),
        "--topic".to_string(),
        topic.clone(),
        "--records".to_string(),
        "2000".to_string(),
    ];
    for s in settings {
        args.push("-X".to_string());
        args.push(s);
    }
    let (stdout, stderr) = tokio::task::spawn_blocking(move || crate::examples::quickstart(&args))
        .await
        .unwrap();
    assert!(stdout.contains("Read back 2000 records"), "{stdout}");
    assert!(
        !format!("{stdout}{stderr}").contains(PASSWORD),
        "no password in the output"
    );
}

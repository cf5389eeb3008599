//! OAUTHBEARER tokens from an OAuth token endpoint (`sasl.oauthbearer.token.endpoint.url`,
//! KIP-768's client credentials grant) and from a token file, against Apache Kafka's
//! unsecured-token validator; librdkafka reads back what the broker holds.
//!
//! The token endpoint is a small HTTP server of the test's own (it is an identity provider,
//! not a broker): it checks the grant and the client's Basic credentials and answers with
//! an unsecured JWS for the principal the broker accepts, or with an OAuth error.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use herald::sasl::UnsecuredJws;
use rdkafka::config::ClientConfig;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::kafka::security::expect_authentication_failure;
use crate::produce::produce_and_verify_with;
use crate::support::kafka::{certs, shared, Kafka, Listener, SharedLogsOnFailure, OAUTH_PRINCIPAL};
use crate::support::{init_tracing, unique_topic};

const CLIENT_ID: &str = "herald-app";
const CLIENT_SECRET: &str = "client-secret-7";

/// A token endpoint on loopback.
struct TokenServer {
    url: String,
    /// Each request as received (head and body).
    requests: Arc<Mutex<Vec<String>>>,
}

impl TokenServer {
    /// Answers the statuses in `first` (with an empty body) to the first requests, then
    /// tokens valid for an hour to requests with the right credentials.
    async fn start(first: &[u16]) -> TokenServer {
        TokenServer::start_with(first, None, Arc::new(client_credentials)).await
    }

    /// Tokens to requests whose form `body` passes `check`.
    async fn start_checking(check: impl Fn(&str) -> bool + Send + Sync + 'static) -> TokenServer {
        TokenServer::start_with(&[], None, Arc::new(move |_: &str, body: &str| check(body))).await
    }

    /// The same over TLS, with the test CA's certificate for `localhost`.
    async fn start_https() -> TokenServer {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let dir = &certs().dir;
        let chain = CertificateDer::pem_file_iter(dir.join("server.pem"))
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_file(dir.join("server.key")).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        TokenServer::start_with(&[], Some(acceptor), Arc::new(client_credentials)).await
    }

    async fn start_with(
        first: &[u16],
        tls: Option<tokio_rustls::TlsAcceptor>,
        check: Check,
    ) -> TokenServer {
        let listener = crate::support::PortBand::Listeners
            .bind(1, |p| std::net::TcpListener::bind(("127.0.0.1", p)).ok())
            .pop()
            .unwrap();
        listener.set_nonblocking(true).unwrap();
        let listener = tokio::net::TcpListener::from_std(listener).unwrap();
        let port = listener.local_addr().unwrap().port();
        let url = match tls {
            Some(_) => format!("https://localhost:{port}/oauth2/token"),
            None => format!("http://127.0.0.1:{port}/oauth2/token"),
        };
        let requests = Arc::new(Mutex::new(Vec::new()));
        let first = Arc::new(Mutex::new(first.iter().copied().collect::<VecDeque<u16>>()));
        let seen = requests.clone();
        actix_rt::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (seen, first, check) = (seen.clone(), first.clone(), check.clone());
                match &tls {
                    // A client that refuses the certificate ends here.
                    Some(acceptor) => match acceptor.accept(stream).await {
                        Ok(stream) => actix_rt::spawn(serve(stream, seen, first, check)),
                        Err(e) => {
                            seen.lock().unwrap().push(format!("TLS refused: {e}"));
                            continue;
                        }
                    },
                    None => actix_rt::spawn(serve(stream, seen, first, check)),
                };
            }
        });
        TokenServer { url, requests }
    }

    fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

/// Answers one request, then keeps the connection open for a while, as a server that
/// ignores `Connection: close` does: the client must stop reading at the body's end.
async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    seen: Arc<Mutex<Vec<String>>>,
    first: Arc<Mutex<VecDeque<u16>>>,
    check: Check,
) {
    let request = read_request(&mut stream).await;
    seen.lock().unwrap().push(request.clone());
    let (status, body) = match first.lock().unwrap().pop_front() {
        Some(status) => (status, String::new()),
        None => answer(&request, &check),
    };
    let response = format!(
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.flush().await;
    tokio::time::sleep(Duration::from_secs(60)).await;
}

/// Reads one request: the head, then `Content-Length` bytes of body.
async fn read_request<S: AsyncRead + Unpin>(stream: &mut S) -> String {
    let mut data = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        let n = stream.read(&mut buf).await.unwrap_or(0);
        if n == 0 {
            break;
        }
        data.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&data).to_string();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse::<usize>().unwrap())
                })
                .unwrap_or(0);
            if body.len() >= length {
                return text;
            }
        }
    }
    String::from_utf8_lossy(&data).to_string()
}

/// Whether a request (head, form body) may have a token.
type Check = Arc<dyn Fn(&str, &str) -> bool + Send + Sync>;

/// A client credentials grant with the right Basic credentials.
fn client_credentials(head: &str, body: &str) -> bool {
    let basic = format!(
        "Authorization: Basic {}",
        STANDARD.encode(format!("{CLIENT_ID}:{CLIENT_SECRET}"))
    );
    head.lines().any(|l| l == basic)
        && body
            .split('&')
            .any(|p| p == "grant_type=client_credentials")
}

/// 200 with a token for a request `check` passes, 401 with an OAuth error otherwise.
fn answer(request: &str, check: &Check) -> (u16, String) {
    let (head, body) = request.split_once("\r\n\r\n").unwrap_or((request, ""));
    if !head.starts_with("POST /oauth2/token HTTP/1.1\r\n") || !check(head, body) {
        return (
            401,
            r#"{"error":"invalid_client","error_description":"Client authentication failed"}"#
                .to_string(),
        );
    }
    (
        200,
        format!(
            r#"{{"access_token":"{}","token_type":"Bearer","expires_in":3600}}"#,
            token()
        ),
    )
}

/// An unsecured JWS for the principal the broker accepts, valid for an hour.
fn token() -> String {
    UnsecuredJws::new(OAUTH_PRINCIPAL)
        .lifetime(Duration::from_secs(3600))
        .build(SystemTime::now())
        .unwrap()
        .value()
        .expose()
        .to_string()
}

/// OAUTHBEARER through the SASL_PLAINTEXT listener with tokens from `url`, then `extra`.
fn oauth<'a>(
    bootstrap: &'a str,
    url: &'a str,
    jaas: &'a str,
    extra: &[(&'a str, &'a str)],
) -> Vec<(&'a str, &'a str)> {
    let mut pairs = vec![
        ("bootstrap.servers", bootstrap),
        ("security.protocol", "SASL_PLAINTEXT"),
        ("sasl.mechanism", "OAUTHBEARER"),
        ("sasl.jaas.config", jaas),
        ("sasl.oauthbearer.token.endpoint.url", url),
    ];
    pairs.extend_from_slice(extra);
    pairs
}

/// Produces `n` records with `pairs` to a new topic of `partitions`; librdkafka reads them
/// back over PLAINTEXT.
async fn produce(kafka: &Kafka, partitions: i32, n: usize, pairs: &[(&str, &str)]) {
    let topic = unique_topic("oauth-endpoint");
    kafka.create_topic(&topic, partitions, 1).await;
    let mut read = ClientConfig::new();
    read.set("bootstrap.servers", kafka.bootstrap());
    let (bootstrap, rest) = pairs.split_first().expect("bootstrap.servers first");
    produce_and_verify_with(bootstrap.1, read, &topic, partitions, n, rest, None).await;
}

fn jaas(secret: &str) -> String {
    format!(
        "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required \
         clientId=\"{CLIENT_ID}\" clientSecret=\"{secret}\" scope=\"kafka produce\";"
    )
}

/// Records go through with a token from the endpoint, asked once for the producer's
/// connections (they share the token), with the client credentials grant and the scope; a
/// Java config's callback handler key loads as is.
#[actix_rt::test]
async fn kafka_oauthbearer_token_from_client_credentials() {
    init_tracing();
    let _logs = SharedLogsOnFailure;
    let kafka = shared();
    let server = TokenServer::start(&[]).await;
    let (bootstrap, jaas) = (
        kafka.bootstrap_on(Listener::SaslPlaintext),
        jaas(CLIENT_SECRET),
    );
    let handler = (
        "sasl.login.callback.handler.class",
        "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginCallbackHandler",
    );
    produce(
        kafka,
        3,
        60,
        &oauth(&bootstrap, &server.url, &jaas, &[handler]),
    )
    .await;
    let requests = server.requests();
    assert_eq!(
        requests.len(),
        1,
        "one token for every connection: {requests:?}"
    );
    let (_, body) = requests[0].split_once("\r\n\r\n").unwrap();
    assert_eq!(body, "grant_type=client_credentials&scope=kafka+produce");
}

/// 503 and 429 are retried with backoff, then the token works.
#[actix_rt::test]
async fn kafka_oauthbearer_token_endpoint_errors_are_retried() {
    init_tracing();
    let _logs = SharedLogsOnFailure;
    let kafka = shared();
    let server = TokenServer::start(&[503, 429]).await;
    let (bootstrap, jaas) = (
        kafka.bootstrap_on(Listener::SaslPlaintext),
        jaas(CLIENT_SECRET),
    );
    let backoff = ("sasl.login.retry.backoff.ms", "50");
    produce(
        kafka,
        1,
        20,
        &oauth(&bootstrap, &server.url, &jaas, &[backoff]),
    )
    .await;
    assert_eq!(server.requests().len(), 3, "{:?}", server.requests());
}

/// A wrong client secret: the endpoint's 401 fails the records at once as an
/// authentication error that names the endpoint and its OAuth error, not the secret, and
/// is not retried.
#[actix_rt::test]
async fn kafka_oauthbearer_refused_client_credentials_fail_the_records() {
    init_tracing();
    let _logs = SharedLogsOnFailure;
    let kafka = shared();
    let server = TokenServer::start(&[]).await;
    let (bootstrap, jaas) = (
        kafka.bootstrap_on(Listener::SaslPlaintext),
        jaas("wrong-secret"),
    );
    let pairs = oauth(&bootstrap, &server.url, &jaas, &[]);
    let errors = expect_authentication_failure(&pairs, 3).await;
    for e in &errors {
        assert!(e.contains(&format!("token endpoint {}", server.url)), "{e}");
        assert!(
            e.contains("HTTP 401: invalid_client (Client authentication failed)"),
            "{e}"
        );
    }
    // A refusal is final: asked once per connection attempt that needed a token, not retried
    // with backoff (the producer then fails the records instead of asking again).
    let requests = server.requests();
    assert!(!requests.is_empty() && requests.len() <= 3, "{requests:?}");
}

/// `file:` URL: the token is read from a file (as an agent on the host keeps one current).
#[actix_rt::test]
async fn kafka_oauthbearer_token_from_a_file() {
    init_tracing();
    let _logs = SharedLogsOnFailure;
    let kafka = shared();
    let dir = std::env::temp_dir().join(unique_topic("herald-token"));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("token.jwt");
    std::fs::write(&file, format!("{}\n", token())).unwrap();
    let url = format!("file://{}", file.display());
    let bootstrap = kafka.bootstrap_on(Listener::SaslPlaintext);
    let jaas = "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required;";
    produce(kafka, 1, 20, &oauth(&bootstrap, &url, jaas, &[])).await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// An https endpoint: trusted through the CA that `ssl.ca.location` names (beside the
/// system's roots), its name checked; without that CA the handshake is refused, the records
/// fail as an authentication error that says so, and nothing is retried.
#[actix_rt::test]
async fn kafka_oauthbearer_token_from_an_https_endpoint() {
    init_tracing();
    let _logs = SharedLogsOnFailure;
    let kafka = shared();
    let server = TokenServer::start_https().await;
    let (bootstrap, jaas) = (
        kafka.bootstrap_on(Listener::SaslPlaintext),
        jaas(CLIENT_SECRET),
    );
    let ca = certs().ca().to_str().unwrap().to_string();
    let trusted = oauth(&bootstrap, &server.url, &jaas, &[("ssl.ca.location", &ca)]);
    produce(kafka, 1, 20, &trusted).await;
    assert_eq!(server.requests().len(), 1, "{:?}", server.requests());

    let errors =
        expect_authentication_failure(&oauth(&bootstrap, &server.url, &jaas, &[]), 2).await;
    for e in &errors {
        assert!(e.contains(&format!("token endpoint {}", server.url)), "{e}");
        assert!(e.contains("TLS handshake failed"), "{e}");
    }
    // The endpoint notes a refused handshake when the client's alert arrives, which can be
    // just after the client gave up.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while server.requests().len() < 2 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let requests = server.requests();
    assert!(
        requests.len() >= 2 && requests[1..].iter().all(|r| r.starts_with("TLS refused")),
        "the untrusted client reached the endpoint and was refused there: {requests:?}"
    );
    assert!(
        requests.len() <= 3,
        "a refused certificate is not retried: {requests:?}"
    );
}

/// The JWT bearer grant (Kafka 4.1's `JwtBearerJwtRetriever`): each token request carries an
/// assertion signed with the configured key, which the endpoint verifies with the public
/// key, with the configured claims and times. RS256 with the harness's RSA key, ES256
/// with a P-256 key made here; and a ready-made assertion from a file.
#[actix_rt::test]
async fn kafka_oauthbearer_jwt_bearer_grant() {
    use ring::signature::{self, KeyPair};
    init_tracing();
    let _logs = SharedLogsOnFailure;
    let kafka = shared();
    let bootstrap = kafka.bootstrap_on(Listener::SaslPlaintext);
    let dir = std::env::temp_dir().join(unique_topic("herald-assertion"));
    std::fs::create_dir_all(&dir).unwrap();
    let rng = ring::rand::SystemRandom::new();
    let ec_pkcs8 =
        signature::EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .unwrap();
    let ec_pem = format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        STANDARD.encode(ec_pkcs8.as_ref())
    );
    std::fs::write(dir.join("ec.pem"), ec_pem).unwrap();
    let ec_public = signature::EcdsaKeyPair::from_pkcs8(
        &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        ec_pkcs8.as_ref(),
        &rng,
    )
    .unwrap()
    .public_key()
    .as_ref()
    .to_vec();
    let rsa_pem = std::fs::read(certs().dir.join("client.key")).unwrap();
    let rsa_der = {
        use rustls::pki_types::pem::PemObject;
        rustls::pki_types::PrivatePkcs8KeyDer::from_pem_slice(&rsa_pem).unwrap()
    };
    let rsa_public = signature::RsaKeyPair::from_pkcs8(rsa_der.secret_pkcs8_der())
        .unwrap()
        .public()
        .as_ref()
        .to_vec();
    let rsa_key = certs().dir.join("client.key").to_str().unwrap().to_string();
    let ec_key = dir.join("ec.pem").to_str().unwrap().to_string();
    // A template adds a claim and a header field (to the RS256 assertions).
    std::fs::write(
        dir.join("template.json"),
        r#"{"header":{"kid":"key-7"},"payload":{"tenant":"t1"}}"#,
    )
    .unwrap();
    let template = dir.join("template.json").to_str().unwrap().to_string();
    let jaas = "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required;";
    let retriever = (
        "sasl.oauthbearer.jwt.retriever.class",
        "org.apache.kafka.common.security.oauthbearer.JwtBearerJwtRetriever",
    );
    for (algorithm, key, public, templated) in [
        ("RS256", rsa_key.as_str(), rsa_public, true),
        ("ES256", ec_key.as_str(), ec_public, false),
    ] {
        let verify = move |body: &str| verify_assertion(body, algorithm, &public, templated);
        let server = TokenServer::start_checking(verify).await;
        let mut extra = vec![
            retriever,
            ("sasl.oauthbearer.assertion.algorithm", algorithm),
            ("sasl.oauthbearer.assertion.private.key.file", key),
            ("sasl.oauthbearer.assertion.claim.iss", "herald-test"),
            ("sasl.oauthbearer.assertion.claim.sub", "service-account-1"),
            (
                "sasl.oauthbearer.assertion.claim.aud",
                "https://idp.example/token",
            ),
            ("sasl.oauthbearer.assertion.claim.jti.include", "true"),
            ("sasl.oauthbearer.scope", "kafka"),
        ];
        if templated {
            extra.push(("sasl.oauthbearer.assertion.template.file", &template));
        }
        produce(kafka, 1, 20, &oauth(&bootstrap, &server.url, jaas, &extra)).await;
        let requests = server.requests();
        assert_eq!(requests.len(), 1, "{algorithm}: {requests:?}");
    }

    // A ready-made assertion, read from a file: the endpoint sees it as written.
    std::fs::write(dir.join("assertion.jwt"), "made.else.where\n").unwrap();
    let server = TokenServer::start_checking(|body: &str| {
        body.split('&').any(|p| p == "assertion=made.else.where")
    })
    .await;
    let file = dir.join("assertion.jwt").to_str().unwrap().to_string();
    let extra = [
        retriever,
        ("sasl.oauthbearer.assertion.file", file.as_str()),
    ];
    produce(kafka, 1, 20, &oauth(&bootstrap, &server.url, jaas, &extra)).await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// Whether the form `body` is a JWT bearer grant whose assertion `public` signed with
/// `algorithm`, with the claims the test configured: iss, sub, aud, a jti, exp 300 s after
/// iat and nbf 60 s before it, the scope, and `templated`, the template's.
fn verify_assertion(body: &str, algorithm: &str, public: &[u8], templated: bool) -> bool {
    use ring::signature;
    let field = |name: &str| {
        body.split('&')
            .find_map(|p| p.strip_prefix(&format!("{name}=")))
            .map(str::to_string)
    };
    if field("grant_type").as_deref()
        != Some("urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer")
        || field("scope").as_deref() != Some("kafka")
    {
        return false;
    }
    let Some(assertion) = field("assertion") else {
        return false;
    };
    let parts: Vec<&str> = assertion.split('.').collect();
    let [header, payload, sig] = parts[..] else {
        return false;
    };
    let decode = |part: &str| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part)
            .unwrap_or_default()
    };
    let input = format!("{header}.{payload}");
    let scheme: &dyn signature::VerificationAlgorithm = match algorithm {
        "RS256" => &signature::RSA_PKCS1_2048_8192_SHA256,
        _ => &signature::ECDSA_P256_SHA256_FIXED,
    };
    if signature::UnparsedPublicKey::new(scheme, public)
        .verify(input.as_bytes(), &decode(sig))
        .is_err()
    {
        return false;
    }
    let header: serde_json::Value = serde_json::from_slice(&decode(header)).unwrap_or_default();
    let claims: serde_json::Value = serde_json::from_slice(&decode(payload)).unwrap_or_default();
    let num = |name: &str| claims[name].as_u64().unwrap_or_default();
    header["alg"] == algorithm
        && claims["iss"] == "herald-test"
        && claims["sub"] == "service-account-1"
        && claims["aud"] == "https://idp.example/token"
        && claims["jti"].as_str().is_some_and(|j| j.len() == 36)
        && num("exp") == num("iat") + 300
        && num("nbf") == num("iat") - 60
        && (!templated || (claims["tenant"] == "t1" && header["kid"] == "key-7"))
}

//! The [`TokenProvider`] behind `sasl.oauthbearer.token.endpoint.url`: one HTTP/1.1
//! exchange per token (the core's [`TokenEndpoint`] writes the request and reads the
//! answer), or a read of the token file for a `file:` URL, with Java's retries.
//!
//! It runs inside the connection's token future (see [`crate::token`]), so a slow endpoint
//! holds up only the connections waiting for a token, and [`TokenSource`](crate::token)
//! makes concurrent connections share one request. Each attempt is bounded by
//! `sasl.login.connect.timeout.ms` and `sasl.login.read.timeout.ms`; a failure the endpoint
//! may recover from (no connection, a timeout, a 5xx, 408 or 429) is retried after
//! `sasl.login.retry.backoff.ms`, doubling up to `sasl.login.retry.backoff.max.ms`, until
//! the waits would pass that maximum in all (with a backoff of 0 it is asked once, as
//! Java's is). A refusal (another 4xx, a redirect, an untrusted certificate) or a token
//! Java's validator would refuse ends it at once.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use herald::sasl::token_endpoint::{response_complete, MAX_RESPONSE};
use herald::sasl::token_endpoint::{AssertionAlgorithm, AssertionSource, AssertionTemplate};
use herald::sasl::{EndpointError, EndpointUrl, Secret, Token, TokenEndpoint};
use herald::ConfigError;
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{
    EcdsaKeyPair, RsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING, RSA_PKCS1_SHA256,
};
use rustls::pki_types::PrivateKeyDer;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::tls::Tls;
use crate::token::{TokenError, TokenProvider};

/// Tokens from a token endpoint.
pub(crate) struct EndpointTokens {
    endpoint: Arc<TokenEndpoint>,
    /// For `https`.
    tls: Option<Tls>,
    /// For assertions signed here (the JWT bearer grant).
    signer: Option<Arc<Signer>>,
}

impl EndpointTokens {
    /// Reads the assertion's key and template, if any, so that a missing file or a wrong
    /// passphrase fails `start` rather than every connection.
    pub(crate) fn new(
        endpoint: Arc<TokenEndpoint>,
        tls: Option<Tls>,
    ) -> Result<EndpointTokens, ConfigError> {
        let signer = match endpoint.assertion.as_ref().map(|a| &a.source) {
            Some(AssertionSource::Signed(template)) => Some(Arc::new(Signer::load(template)?)),
            _ => None,
        };
        Ok(EndpointTokens {
            endpoint,
            tls,
            signer,
        })
    }
}

impl TokenProvider for EndpointTokens {
    fn token(&self) -> Pin<Box<dyn Future<Output = Result<Token, TokenError>> + Send>> {
        let endpoint = self.endpoint.clone();
        let tls = self.tls.clone();
        let signer = self.signer.clone();
        Box::pin(async move { with_retries(&endpoint, tls.as_ref(), signer.as_deref()).await })
    }
}

/// Signs assertions: the template (with its file merged in) and the private key.
pub(crate) struct Signer {
    template: AssertionTemplate,
    key: SigningKey,
    rng: SystemRandom,
}

enum SigningKey {
    Rsa(RsaKeyPair),
    Ecdsa(EcdsaKeyPair),
}

impl Signer {
    fn load(template: &AssertionTemplate) -> Result<Signer, ConfigError> {
        const KEY: &str = "sasl.oauthbearer.assertion.private.key.file";
        let unusable = |key: &str, reason: String| ConfigError::Unusable {
            key: key.into(),
            reason,
        };
        let mut template = template.clone();
        if let Some(path) = template.template_file.clone() {
            let key = "sasl.oauthbearer.assertion.template.file";
            let json = std::fs::read(&path)
                .map_err(|e| unusable(key, format!("cannot read {}: {e}", path.display())))?;
            template = template
                .with_template(&json)
                .map_err(|e| unusable(key, e.into()))?;
        }
        let path = &template.private_key_file;
        let pem = std::fs::read(path)
            .map_err(|e| unusable(KEY, format!("cannot read {}: {e}", path.display())))?;
        let passphrase = (
            "sasl.oauthbearer.assertion.private.key.passphrase",
            template.passphrase.as_ref(),
        );
        let PrivateKeyDer::Pkcs8(der) = crate::tls::private_key(KEY, &pem, passphrase)? else {
            return Err(unusable(
                KEY,
                "expected a PKCS#8 private key (BEGIN PRIVATE KEY or BEGIN ENCRYPTED PRIVATE KEY)"
                    .into(),
            ));
        };
        let rng = SystemRandom::new();
        let key = match template.algorithm {
            AssertionAlgorithm::Rs256 => RsaKeyPair::from_pkcs8(der.secret_pkcs8_der())
                .map(SigningKey::Rsa)
                .map_err(|e| unusable(KEY, format!("not an RSA key for RS256: {e}")))?,
            AssertionAlgorithm::Es256 => EcdsaKeyPair::from_pkcs8(
                &ECDSA_P256_SHA256_FIXED_SIGNING,
                der.secret_pkcs8_der(),
                &rng,
            )
            .map(SigningKey::Ecdsa)
            .map_err(|e| unusable(KEY, format!("not a P-256 key for ES256: {e}")))?,
        };
        Ok(Signer { template, key, rng })
    }

    /// A fresh assertion, signed.
    fn assertion(&self) -> Result<String, Failure> {
        let jti = self.template.jti.then(|| self.uuid()).flatten();
        let input = self
            .template
            .signing_input(SystemTime::now(), jti.as_deref());
        let failed = |_| Failure::fatal("signing the assertion failed");
        let signature = match &self.key {
            SigningKey::Rsa(k) => {
                let mut sig = vec![0u8; k.public().modulus_len()];
                k.sign(&RSA_PKCS1_SHA256, &self.rng, input.as_bytes(), &mut sig)
                    .map_err(failed)?;
                sig
            }
            SigningKey::Ecdsa(k) => k
                .sign(&self.rng, input.as_bytes())
                .map_err(failed)?
                .as_ref()
                .to_vec(),
        };
        Ok(AssertionTemplate::signed(&input, &signature))
    }

    /// A random (version 4) UUID for `jti`.
    fn uuid(&self) -> Option<String> {
        let mut b = [0u8; 16];
        self.rng.fill(&mut b).ok()?;
        b[6] = (b[6] & 0x0f) | 0x40;
        b[8] = (b[8] & 0x3f) | 0x80;
        let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
        Some(format!(
            "{}-{}-{}-{}-{}",
            &h[0..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..32]
        ))
    }
}

/// One failed attempt: why, and whether to try again.
struct Failure {
    reason: String,
    retriable: bool,
}

impl Failure {
    fn retriable(reason: impl Into<String>) -> Failure {
        Failure {
            reason: reason.into(),
            retriable: true,
        }
    }

    fn fatal(reason: impl Into<String>) -> Failure {
        Failure {
            reason: reason.into(),
            retriable: false,
        }
    }
}

impl From<EndpointError> for Failure {
    fn from(e: EndpointError) -> Failure {
        Failure {
            retriable: e.retriable(),
            reason: e.to_string(),
        }
    }
}

async fn with_retries(
    endpoint: &TokenEndpoint,
    tls: Option<&Tls>,
    signer: Option<&Signer>,
) -> Result<Token, TokenError> {
    let mut backoff = endpoint.retry_backoff;
    let mut waited = Duration::ZERO;
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        let failure = match attempt(endpoint, tls, signer).await {
            Ok(token) => {
                tracing::debug!(endpoint = %endpoint.url, attempts, "OAUTHBEARER token obtained");
                return Ok(token);
            }
            Err(f) => f,
        };
        // A zero wait ends it too, as it ends Java's `Retry` (`sasl.login.retry.backoff.ms=0`):
        // doubling zero never adds up to the maximum, and nothing would stop the asking.
        let give_up = !failure.retriable
            || backoff.is_zero()
            || waited + backoff > endpoint.retry_backoff_max;
        tracing::warn!(
            endpoint = %endpoint.url,
            attempts,
            retry = !give_up,
            reason = %failure.reason,
            "token endpoint failed"
        );
        if give_up {
            let tries = if attempts == 1 {
                String::new()
            } else {
                format!(" (after {attempts} attempts)")
            };
            return Err(
                format!("token endpoint {}: {}{tries}", endpoint.url, failure.reason).into(),
            );
        }
        tokio::time::sleep(backoff).await;
        waited += backoff;
        backoff = (backoff * 2).min(endpoint.retry_backoff_max);
    }
}

/// Reads a file off the I/O thread (it may be on a slow mount).
async fn read_file(path: &std::path::Path, what: &str) -> Result<String, Failure> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || std::fs::read_to_string(path))
        .await
        .map_err(|e| Failure::retriable(format!("reading the {what}: {e}")))?
        .map_err(|e| Failure::retriable(format!("cannot read the {what}: {e}")))
}

async fn attempt(
    endpoint: &TokenEndpoint,
    tls: Option<&Tls>,
    signer: Option<&Signer>,
) -> Result<Token, Failure> {
    match &endpoint.url {
        EndpointUrl::File(path) => {
            let text = read_file(path, "token file").await?;
            Ok(endpoint.token_from_jwt(text.trim(), SystemTime::now())?)
        }
        EndpointUrl::Http {
            tls: https,
            host,
            port,
            ..
        } => {
            // The assertion is kept to strike it out of an error that echoes it.
            let assertion = match (endpoint.assertion.as_ref().map(|a| &a.source), signer) {
                (Some(AssertionSource::File(path)), _) => {
                    Some(Secret::new(read_file(path, "assertion file").await?.trim()))
                }
                (Some(AssertionSource::Signed(_)), Some(signer)) => {
                    Some(Secret::new(signer.assertion()?))
                }
                _ => None,
            };
            let request = match &assertion {
                Some(a) => endpoint.assertion_request(a.expose()),
                None => endpoint.request(),
            };
            let request = request.ok_or_else(|| Failure::fatal("no client credentials"))?;
            let timed_out = |what: &str| {
                Failure::retriable(format!(
                    "no {what} within {} ms (sasl.login.connect.timeout.ms)",
                    endpoint.connect_timeout.as_millis()
                ))
            };
            let connect = TcpStream::connect((host.as_str(), *port));
            let tcp = tokio::time::timeout(endpoint.connect_timeout, connect)
                .await
                .map_err(|_| timed_out("connection"))?
                .map_err(|e| Failure::retriable(format!("cannot connect: {e}")))?;
            let response = if *https {
                let tls =
                    tls.ok_or_else(|| Failure::fatal("no TLS configuration for an https URL"))?;
                let stream = tokio::time::timeout(endpoint.connect_timeout, tls.connect(host, tcp))
                    .await
                    .map_err(|_| timed_out("TLS handshake"))?
                    .map_err(|e| Failure {
                        // An untrusted certificate, or a host that cannot be one's name, will
                        // not change by asking again.
                        retriable: !matches!(
                            e.kind(),
                            std::io::ErrorKind::InvalidData | std::io::ErrorKind::InvalidInput
                        ),
                        reason: format!("TLS handshake failed: {e}"),
                    })?;
                exchange(endpoint, stream, request.as_bytes()).await?
            } else {
                exchange(endpoint, tcp, request.as_bytes()).await?
            };
            let token = match &assertion {
                Some(a) => {
                    endpoint.token_from_assertion_response(&response, a.expose(), SystemTime::now())
                }
                None => endpoint.token_from_response(&response, SystemTime::now()),
            };
            Ok(token?)
        }
    }
}

/// Writes the request and reads the response to the end of the body its headers announce,
/// or else to the end of the stream (the request asks for `Connection: close`), within
/// `sasl.login.read.timeout.ms`.
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    endpoint: &TokenEndpoint,
    mut stream: S,
    request: &[u8],
) -> Result<Vec<u8>, Failure> {
    let io = async {
        stream.write_all(request).await?;
        stream.flush().await?;
        let mut response = Vec::new();
        let mut chunk = [0u8; 8192];
        // To the end of the stream, or of the body its headers announce (a server may keep
        // the connection open despite `Connection: close`).
        while response.len() <= MAX_RESPONSE && !response_complete(&response) {
            match stream.read(&mut chunk).await {
                Ok(0) => break,
                Ok(n) => response.extend_from_slice(&chunk[..n]),
                // A TLS peer that closes without close_notify: what was read stands, and a
                // body cut short fails its Content-Length or chunk check.
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !response.is_empty() => {
                    break
                }
                Err(e) => return Err(e),
            }
        }
        Ok::<_, std::io::Error>(response)
    };
    let response = tokio::time::timeout(endpoint.read_timeout, io)
        .await
        .map_err(|_| {
            Failure::retriable(format!(
                "no complete response within {} ms (sasl.login.read.timeout.ms)",
                endpoint.read_timeout.as_millis()
            ))
        })?
        .map_err(|e| Failure::retriable(format!("connection failed: {e}")))?;
    if response.len() > MAX_RESPONSE {
        return Err(Failure::fatal(format!(
            "the response is larger than {MAX_RESPONSE} bytes"
        )));
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use herald::sasl::ClientCredentials;

    use super::*;

    /// An endpoint at a port that refuses connections (a retriable failure), asked with
    /// `backoff` and `max`.
    fn refusing(backoff: Duration, max: Duration) -> TokenEndpoint {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        TokenEndpoint {
            url: EndpointUrl::parse(&format!("http://127.0.0.1:{port}/token")).unwrap(),
            credentials: Some(ClientCredentials {
                client_id: "app".into(),
                client_secret: Secret::new("secret"),
                scope: None,
            }),
            assertion: None,
            extensions: BTreeMap::new(),
            sub_claim: "sub".into(),
            scope_claim: "scope".into(),
            header_urlencode: false,
            connect_timeout: Duration::from_secs(1),
            read_timeout: Duration::from_secs(1),
            retry_backoff: backoff,
            retry_backoff_max: max,
        }
    }

    /// `sasl.login.retry.backoff.ms=0` (Java accepts it): Java's `Retry` then waits 0 ms,
    /// which ends its loop after the first attempt. Asking again at once without end would
    /// hammer the endpoint, and a background renewal would never finish.
    #[tokio::test]
    async fn a_zero_backoff_gives_up_after_one_attempt() {
        for max in [Duration::ZERO, Duration::from_secs(10)] {
            let endpoint = refusing(Duration::ZERO, max);
            let got =
                tokio::time::timeout(Duration::from_secs(5), with_retries(&endpoint, None, None))
                    .await
                    .unwrap_or_else(|_| panic!("still retrying after 5 s (max {max:?})"));
            let e = got.unwrap_err().to_string();
            assert!(e.contains("cannot connect"), "{e}");
            assert!(!e.contains("attempts"), "{e}");
        }
    }
}

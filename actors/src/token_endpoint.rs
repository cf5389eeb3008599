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
//! the waits would pass that maximum in all. A refusal (another 4xx) or a token Java's
//! validator would refuse ends it at once.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use herald::sasl::token_endpoint::{response_complete, MAX_RESPONSE};
use herald::sasl::{EndpointError, EndpointUrl, Token, TokenEndpoint};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::token::{TokenError, TokenProvider};

/// Tokens from a token endpoint.
pub(crate) struct EndpointTokens {
    endpoint: Arc<TokenEndpoint>,
    /// For `https`.
    tls: Option<tokio_rustls::TlsConnector>,
}

impl EndpointTokens {
    pub(crate) fn new(
        endpoint: Arc<TokenEndpoint>,
        tls: Option<tokio_rustls::TlsConnector>,
    ) -> EndpointTokens {
        EndpointTokens { endpoint, tls }
    }
}

impl TokenProvider for EndpointTokens {
    fn token(&self) -> Pin<Box<dyn Future<Output = Result<Token, TokenError>> + Send>> {
        let endpoint = self.endpoint.clone();
        let tls = self.tls.clone();
        Box::pin(async move { with_retries(&endpoint, tls.as_ref()).await })
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
    tls: Option<&tokio_rustls::TlsConnector>,
) -> Result<Token, TokenError> {
    let mut backoff = endpoint.retry_backoff;
    let mut waited = Duration::ZERO;
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        let failure = match attempt(endpoint, tls).await {
            Ok(token) => {
                tracing::debug!(endpoint = %endpoint.url, attempts, "OAUTHBEARER token obtained");
                return Ok(token);
            }
            Err(f) => f,
        };
        let give_up = !failure.retriable || waited + backoff > endpoint.retry_backoff_max;
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

async fn attempt(
    endpoint: &TokenEndpoint,
    tls: Option<&tokio_rustls::TlsConnector>,
) -> Result<Token, Failure> {
    match &endpoint.url {
        EndpointUrl::File(path) => {
            let path = path.clone();
            // A blocking read, off the I/O thread (the file may be on a slow mount).
            let text = tokio::task::spawn_blocking(move || std::fs::read_to_string(path))
                .await
                .map_err(|e| Failure::retriable(format!("reading the token file: {e}")))?
                .map_err(|e| Failure::retriable(format!("cannot read the token file: {e}")))?;
            Ok(endpoint.token_from_jwt(text.trim(), SystemTime::now())?)
        }
        EndpointUrl::Http {
            tls: https,
            host,
            port,
            ..
        } => {
            let request = endpoint.request().ok_or_else(|| Failure {
                reason: "no client credentials".into(),
                retriable: false,
            })?;
            let connect = async {
                let tcp = TcpStream::connect((host.as_str(), *port))
                    .await
                    .map_err(|e| Failure::retriable(format!("cannot connect: {e}")))?;
                Ok::<_, Failure>(tcp)
            };
            let tcp = tokio::time::timeout(endpoint.connect_timeout, connect)
                .await
                .map_err(|_| {
                    Failure::retriable(format!(
                        "no connection within {} ms (sasl.login.connect.timeout.ms)",
                        endpoint.connect_timeout.as_millis()
                    ))
                })??;
            let response = if *https {
                let connector = tls.ok_or_else(|| Failure {
                    reason: "no TLS configuration for an https URL".into(),
                    retriable: false,
                })?;
                let name =
                    rustls::pki_types::ServerName::try_from(host.clone()).map_err(|_| Failure {
                        reason: format!("{host} is not a valid TLS server name"),
                        retriable: false,
                    })?;
                let handshake =
                    tokio::time::timeout(endpoint.connect_timeout, connector.connect(name, tcp))
                        .await
                        .map_err(|_| {
                            Failure::retriable(format!(
                                "no TLS handshake within {} ms (sasl.login.connect.timeout.ms)",
                                endpoint.connect_timeout.as_millis()
                            ))
                        })?
                        .map_err(|e| Failure {
                            // An untrusted certificate will not become trusted by asking again.
                            retriable: e.kind() != std::io::ErrorKind::InvalidData,
                            reason: format!("TLS handshake failed: {e}"),
                        })?;
                exchange(endpoint, handshake, request.as_bytes()).await?
            } else {
                exchange(endpoint, tcp, request.as_bytes()).await?
            };
            Ok(endpoint.token_from_response(&response, SystemTime::now())?)
        }
    }
}

/// Writes the request and reads the response to the end of the stream (the request asks
/// for `Connection: close`), within `sasl.login.read.timeout.ms`.
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
        return Err(Failure {
            reason: format!("the response is larger than {MAX_RESPONSE} bytes"),
            retriable: false,
        });
    }
    Ok(response)
}
